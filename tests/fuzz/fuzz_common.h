/*
 * fuzz_common.h - shared set-up for the libFuzzer targets in tests/fuzz/.
 *
 * Library code reports every rejected input with mke_error() on stderr; at
 * tens of thousands of inputs a second that printing dominates the run. The
 * targets therefore point the stdio stream `stderr` at /dev/null. File
 * descriptor 2 stays open: libFuzzer and the sanitizers write their reports
 * to it directly, so a crash is still printed in full.
 */
#ifndef MKE_FUZZ_COMMON_H
#define MKE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

static inline void fuzz_quiet(void)
{
	mke_quiet = 1;
	if (getenv("MKE_FUZZ_VERBOSE"))   /* see the library's messages when debugging */
		return;
	FILE *null = fopen("/dev/null", "w");
	if (null)
		stderr = null;   /* glibc: stderr is an assignable FILE * */
}

/*
 * For parsers that take a path: write the input to one anonymous in-memory
 * file (memfd_create, made on the first call and reused) and return its name,
 * "/proc/self/fd/N". No disk I/O and nothing left behind; each open() of the
 * name gets its own file offset. Aborts if the file cannot be written.
 */
static inline const char *fuzz_path(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("fuzz_input", 0);
		if (fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	return path;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

#endif
