/*
 * fuzz_image.h - the body shared by the image targets (fuzz_pnm, fuzz_png,
 * fuzz_jpeg): the three image entry points of common/media.h on one input.
 *
 * image_load decodes with palettes expanded, labelmap_load and depth_load
 * with palette indices kept (the other path through the PNG decoder). The
 * format is chosen by the file's magic bytes, not by the target, so the
 * targets differ only in their seed corpus (tests/fuzz/corpus/NAME/), which
 * starts each one deep inside its own decoder.
 */
#ifndef MKE_FUZZ_IMAGE_H
#define MKE_FUZZ_IMAGE_H

#include <stdlib.h>

#include "fuzz_common.h"
#include "media.h"

static inline void fuzz_image(const uint8_t *data, size_t size)
{
	const char *path = fuzz_path(data, size);
	static const int channels[4] = { 0, 1, 3, 4 };
	struct media_image im;
	if (image_load(&im, path, channels[size % 4]) == 0) {
		volatile float sink = 0;
		for (size_t i = 0; i < (size_t)im.c * (size_t)im.h * (size_t)im.w; i++)
			sink += im.x[i];
		(void)sink;
		image_resize(&im, 3, 5);   /* reads every source row and column it maps */
		media_image_release(&im);
	}
	int *ids, h, w;
	if (labelmap_load(&ids, &h, &w, path) == 0) {
		volatile int isink = 0;
		for (size_t i = 0; i < (size_t)h * (size_t)w; i++)
			isink += ids[i];
		(void)isink;
		free(ids);
		/* single channel: worth a depth decode too (16-bit or refused) */
		if (depth_load(&im, path) == 0)
			media_image_release(&im);
	}
}

#endif
