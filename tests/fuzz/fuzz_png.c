/*
 * fuzz_png.c - image_load(), labelmap_load() and depth_load()
 * (common/media.h) on arbitrary bytes, seeded with PNG through libpng: every
 * colour type and bit depth, palettes with and without tRNS, the transforms
 * media.c asks for and its longjmp error path. The body is fuzz_image() in
 * fuzz_image.h; see there.
 */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_image(data, size);
	return 0;
}
