/*
 * fuzz_jpeg.c - image_load(), labelmap_load() and depth_load()
 * (common/media.h) on arbitrary bytes, seeded with JPEG through libjpeg-
 * turbo: gray and YCbCr, CMYK refused, warnings (corrupt or truncated data)
 * turned into errors, the longjmp error path. The body is fuzz_image() in
 * fuzz_image.h; see there.
 */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_image(data, size);
	return 0;
}
