/*
 * winograd.h - 3x3, stride-1, pad-1 convolutions by Winograd's F(2x2, 3x3)
 * (winograd.c), the path cnn.c's conv2d_forward_ep / conv2d_backward take
 * for the shapes wino_applies accepts. Same buffers and conventions as
 * cnn.h: forward writes out, backward accumulates into dinp and dweight
 * (the bias gradient stays with the caller).
 */
#ifndef MKE_WINOGRAD_H
#define MKE_WINOGRAD_H

#include <stddef.h>

#include "cnn.h"

/* Fewer channels than this on either side: the im2col path (a short inner
 * dimension leaves the 16 products too small to pay for the transforms) */
#ifndef WINO_MIN_C
#define WINO_MIN_C 16
#endif

/* An output side shorter than this: the im2col path (at 6x6 a 16 -> 32
 * conv ran 5% slower by Winograd, at 8x8 64 -> 128 13% faster) */
#ifndef WINO_MIN_SIDE
#define WINO_MIN_SIDE 8
#endif

/* Most threads one call runs on (when the caller's OpenBLAS has as many);
 * the scratch holds this many sets of per-thread buffers */
#ifndef WINO_THREADS
#define WINO_THREADS 4
#endif

/* 1 when the shape is a 3x3, stride-1, dilation-1, pad-1 convolution of at
 * least WINO_MIN_C channels in and out and an output of at least
 * WINO_MIN_SIDE on each side, and the path is enabled */
int wino_applies(const struct conv2d_shape *s);
/* Floats of scratch wino_forward / wino_backward need (any batch size) */
size_t wino_scratch(const struct conv2d_shape *s);
void wino_forward(float *out, const float *inp, const float *weight, const float *bias,
		  const struct conv2d_shape *s, int B, float *scratch,
		  const struct conv_epilogue *ep);
void wino_backward(float *dinp, float *dweight, const float *dout, const float *inp,
		   const float *weight, const struct conv2d_shape *s, int B, float *scratch);

#endif
