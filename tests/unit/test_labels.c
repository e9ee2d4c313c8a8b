/* test_labels.c - pseudo-label shard files round-trip and reject bad files. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "labels.h"
#include "test.h"
#include "util.h"

static void test_roundtrip(void)
{
	char dir[] = "/tmp/mke-labels-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *path = xasprintf("%s/shard-0.npy", dir);
	char *ids[3] = {"a", "sample-002", "zz"};
	float probs[6] = {0.25f, 0.75f, 1.0f, 0.0f, 0.5f, 0.5f};
	char d1[65], d2[65];
	CHECK(labels_write(path, ids, probs, 3, 2, d1) == 0);
	struct label_shard s;
	CHECK(labels_read(&s, path) == 0);
	CHECK(s.n == 3 && s.classes == 2 && s.idlen == 10);
	char buf[64];
	CHECK(strcmp(labels_id(&s, 1, buf), "sample-002") == 0);
	CHECK(strcmp(labels_id(&s, 2, buf), "zz") == 0);
	CHECK(memcmp(s.probs, probs, sizeof probs) == 0);
	labels_release(&s);
	/* same content, same bytes, same digest */
	CHECK(labels_write(path, ids, probs, 3, 2, d2) == 0);
	CHECK(strcmp(d1, d2) == 0);
	/* the data section starts on a 64-byte boundary, as numpy writes it */
	size_t len;
	char *raw = read_file(path, &len);
	CHECK(raw && (len - 3 * (10 + 8)) % 64 == 0);
	/* truncated file is refused */
	FILE *f = fopen(path, "wb");
	fwrite(raw, 1, len - 5, f);
	fclose(f);
	CHECK(labels_read(&s, path) != 0);
	free(raw);
	unlink(path);
	rmdir(dir);
	free(path);
}

int main(void)
{
	RUN(test_roundtrip);
	return test_summary();
}
