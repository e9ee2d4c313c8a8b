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
