/*
 * fuzz_labels.c - labels_read() (common/labels.h), the reader of pseudo-label
 * shard files, on arbitrary bytes.
 *
 * labels_read takes a path, so each input is written to an anonymous
 * in-memory file (memfd_create) and read back through /proc/self/fd/N: no
 * disk I/O and nothing left behind, at a cost of a few microseconds an input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "labels.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("fuzz_labels", 0);
		if (fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
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
