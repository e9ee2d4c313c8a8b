/*
 * winograd.h - 3x3, stride-1, pad-1 convolutions by Winograd's F(2x2, 3x3)
 * (winograd.c) or F(4x4, 3x3) (winograd4.c), the path cnn.c's
 * conv2d_forward_ep / conv2d_backward take for the shapes wino_applies
 * accepts; wino_tile picks the tile per shape. Same buffers and conventions
 * as cnn.h: forward writes out, backward accumulates into dinp and dweight
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

/* F(4x4, 3x3) for an output of at least this on each side, F(2x2, 3x3)
 * below (measured per layer: docs/layers.md) */
#ifndef WINO4_MIN_SIDE
#define WINO4_MIN_SIDE 16
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
/* The output tile side wino_forward / wino_backward use for the shape: 4
 * (F(4x4, 3x3)) or 2 (F(2x2, 3x3)); conv2d_winograd_enable(2 or 4) or
 * MKE_WINOGRAD=2 or 4 forces one for every shape */
int wino_tile(const struct conv2d_shape *s);
/* Floats of scratch wino_forward / wino_backward need (any batch size) */
size_t wino_scratch(const struct conv2d_shape *s);
/* wc (forward): the transformed weights kept between calls (cnn.h), or NULL */
void wino_forward(float *out, const float *inp, const float *weight, const float *bias,
		  const struct conv2d_shape *s, int B, float *scratch,
		  const struct conv_epilogue *ep, struct conv_wcache *wc);
/* wc (backward): the forward's cache, whose transform the input gradient
 * reuses when the weights are still the ones it was made from, or NULL */
void wino_backward(float *dinp, float *dweight, const float *dout, const float *inp,
		   const float *weight, const struct conv2d_shape *s, int B, float *scratch,
		   struct conv_wcache *wc);

/* For winograd.c and winograd4.c only: a thread's buffers in the scratch.
 * m: the output tile side (2 or 4), X = (m+2)^2 transformed points; TH, TW
 * tile rows and columns of an image; rows: tile rows a chunk takes, T =
 * rows*TW tiles; SW, PP: strip row and phase lengths (floats); U, dU
 * (X, OC, C), V (X, C, T), M (X, OC, T), strip and row: the transforms'
 * working rows */
struct wino_buf {
	int m, X, TH, TW, SW, PP, rows;
	size_t T;
	const float *U;
	float *dU, *V, *M, *strip, *row;
};

/* F(4x4, 3x3)'s transforms (winograd4.c), for tile rows [r0, r0+nr) of the
 * batch: the same jobs as winograd.c's F(2x2) ones */
void wino4_weight_transform(float *U, const float *weight, int OC, int C);
void wino4_weight_grad_transform(float *dweight, const float *dU, int OC, int C);
void wino4_input_transform(const struct wino_buf *w, const float *inp,
			   const struct conv2d_shape *s, int r0, int nr);
void wino4_output_transform(const struct wino_buf *w, float *out, const float *bias,
			    const struct conv_epilogue *ep, const struct conv2d_shape *s, int r0,
			    int nr);
void wino4_grad_transform(const struct wino_buf *w, const float *dout,
			  const struct conv2d_shape *s, int r0, int nr);
void wino4_input_grad_transform(const struct wino_buf *w, float *dinp,
				const struct conv2d_shape *s, int r0, int nr);

#endif
