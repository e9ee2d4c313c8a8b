/*
 * fuzz_npy.c - npy_parse() (common/npy.h) on arbitrary bytes: magic,
 * version, the header dict grammar, shape overflow checks and the dtype
 * conversions to float32.
 */
#include "fuzz_common.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct npy_array a;
	if (npy_parse(&a, data, size, "fuzz.npy") == 0) {
		volatile float sink = 0;
		for (size_t i = 0; i < a.count; i++)   /* every converted value is readable */
			sink += a.data[i];
		(void)sink;
		npy_release(&a);
	}
	return 0;
}
