/*
 * fuzz_pnm.c - image_load(), labelmap_load() and depth_load()
 * (common/media.h) on arbitrary bytes, seeded with PPM/PGM (P2, P3, P5, P6),
 * parsed by hand in media.c: the header numbers and comments, maxval, the
 * plain and binary samples. The body is fuzz_image() in fuzz_image.h; see
 * there.
 */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_image(data, size);
	return 0;
}
