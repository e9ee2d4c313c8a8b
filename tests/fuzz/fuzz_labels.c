/*
 * fuzz_labels.c - labels_read() (common/labels.h), the reader of pseudo-label
 * shard files, on arbitrary bytes.
 *
 * labels_read takes a path, so each input is written to an anonymous
 * in-memory file and read back through /proc/self/fd/N (fuzz_path() in
 * fuzz_common.h): no disk I/O and nothing left behind, at a cost of a few
 * microseconds an input.
 */
#include <stdlib.h>

#include "fuzz_common.h"
#include "labels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_path(data, size);
	struct label_shard s;
	if (labels_read(&s, path) == 0) {
		char *id = malloc((size_t)s.idlen + 1);
		for (int i = 0; i < s.n; i++)
			(void)labels_id(&s, i, id);
		free(id);
		labels_release(&s);
	}
	return 0;
}
