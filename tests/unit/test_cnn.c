/*
 * test_cnn.c - the convolutional layers of cnn.h against finite differences,
 * conv2d against its naive reference, everything against PyTorch
 * (tests/fixtures/cnn_torch.txt, written by tests/fixtures/gen_cnn.py), batch
 * norm's micro-batches against separate calls, and the augmentation's
 * determinism and agreement between images and label maps.
 *
 * Finite differences: the objective is sum(out * w) for fixed random w,
 * summed in double over the float outputs, differenced centrally with the
 * exact float step; the analytic gradient is the backward pass with dout = w
 * into buffers that start non-zero (so accumulation is checked too).
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "rng.h"
#include "fixture.h"
#include "test.h"
#include "util.h"
#include "winograd.h"

/* ---- helpers ----------------------------------------------------------- */

static void fill_normal(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 4321, RNG_DATA, tag, 1);
	rng_fill_normal(&r, x, n);
}

static float *randn(size_t n, uint32_t tag)
{
	float *x = xmalloc((n ? n : 1) * sizeof(float));
	fill_normal(x, n, tag);
	return x;
}

static float *dup_floats(const float *x, size_t n)
{
	float *y = xmalloc((n ? n : 1) * sizeof(float));
	memcpy(y, x, n * sizeof(float));
	return y;
}

static double wsum(const float *x, const float *w, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * w[i];
	return s;
}

typedef double (*objective_fn)(void *arg);

/* ana[i] - start[i] (the accumulated part) against the central difference
 * of f in x[i] with step h; returns the largest relative error seen. */
static double fd_check(const char *what, float *x, size_t n, const float *ana, const float *start,
		       objective_fn f, void *arg, float h, double rtol, double atol)
{
	double worst = 0.0;
	for (size_t i = 0; i < n; i++) {
		float xi = x[i], xp = xi + h, xm = xi - h;
		x[i] = xp;
		double fp = f(arg);
		x[i] = xm;
		double fm = f(arg);
		x[i] = xi;
		double num = (fp - fm) / ((double)xp - xm);
		double a = (double)ana[i] - (start ? start[i] : 0.0);
		double err = fabs(num - a) / fmax(atol, fmax(fabs(num), fabs(a)));
		if (err > worst)
			worst = err;
		CHECK_MSG(fabs(num - a) <= atol + rtol * fmax(fabs(num), fabs(a)),
			  "%s[%zu]: numeric %.9g analytic %.9g", what, i, num, a);
	}
	return worst;
}

/* ---- conv2d ------------------------------------------------------------ */

/* F(4x4, 3x3) rounds worse than F(2x2) or im2col (its transforms multiply
 * by up to 8 and divide by 24): shapes that take it are held to this many
 * times im2col's tolerance (the worst error measured, docs/layers.md, is
 * 1.35 times it) */
#define WINO4_TOL 4.0

static void conv2d_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
				  const float *inp, const float *weight,
				  const struct conv2d_shape *s, int B)
{
	for (int b = 0; b < B; b++)
		for (int oc = 0; oc < s->OC; oc++)
			for (int oh = 0; oh < s->OH; oh++)
				for (int ow = 0; ow < s->OW; ow++) {
					float g = dout[(((size_t)b * s->OC + oc) * s->OH + oh) * s->OW +
						       ow];
					if (dbias)
						dbias[oc] += g;
					for (int c = 0; c < s->C; c++)
						for (int kh = 0; kh < s->KH; kh++)
							for (int kw = 0; kw < s->KW; kw++) {
								int ih = oh * s->stride - s->pad +
									 kh * s->dil;
								int iw = ow * s->stride - s->pad +
									 kw * s->dil;
								if (ih < 0 || ih >= s->H || iw < 0 ||
								    iw >= s->W)
									continue;
								size_t xi = (((size_t)b * s->C + c) *
										     s->H + ih) * s->W + iw;
								size_t wi = (((size_t)oc * s->C + c) *
										     s->KH + kh) * s->KW + kw;
								dweight[wi] += g * inp[xi];
								if (dinp)
									dinp[xi] += g * weight[wi];
							}
				}
}

/* input and weight gradients against the naive ones, relative tolerances */
static void check_conv_grads(size_t t, const float *di1, const float *di2, size_t nin, double tol,
			     const float *dw1, const float *dw2, size_t nw, double tolw)
{
	for (size_t i = 0; i < nin; i++)
		CHECK_MSG(fabs(di1[i] - di2[i]) <= tol * (1 + fabs(di2[i])),
			  "shape %zu dinp[%zu]: %.9g vs naive %.9g", t, i, di1[i], di2[i]);
	for (size_t i = 0; i < nw; i++)
		CHECK_MSG(fabs(dw1[i] - dw2[i]) <= tolw * (1 + fabs(dw2[i])),
			  "shape %zu dweight[%zu]: %.9g vs naive %.9g", t, i, dw1[i], dw2[i]);
}

static void test_conv_shape(void)
{
	struct conv2d_shape s;
	CHECK(conv2d_shape_init(&s, 3, 257, 500, 16, 3, 3, 1, 1, 1) == 0);
	CHECK(s.OH == 257 && s.OW == 500);
	CHECK(conv2d_shape_init(&s, 3, 257, 500, 16, 3, 3, 2, 1, 1) == 0);
	CHECK(s.OH == 129 && s.OW == 250);
	CHECK(conv2d_shape_init(&s, 3, 10, 9, 16, 3, 3, 1, 0, 2) == 0);
	CHECK(s.OH == 6 && s.OW == 5);
	CHECK(conv2d_shape_init(&s, 8, 7, 7, 16, 1, 1, 2, 0, 1) == 0);
	CHECK(s.OH == 4 && s.OW == 4);
	CHECK(conv2d_scratch(&s, 4) > 0);
	CHECK(conv2d_shape_init(&s, 8, 7, 7, 16, 1, 1, 1, 0, 1) == 0);
	CHECK(conv2d_scratch(&s, 4) == 0);
	capture_begin();
	int rc = conv2d_shape_init(&s, 3, 2, 9, 4, 3, 3, 1, 0, 1);
	char *msg = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strstr(msg, "empty") != NULL, "message: %s", msg);
	free(msg);
	capture_begin();
	rc = conv2d_shape_init(&s, 3, 9, 9, 4, 3, 3, 0, 0, 1);
	free(capture_end());
	CHECK(rc == -1);
}

/* fast against naive on shapes that take every path: tiles of rows (a large
 * output), groups of samples (a small one), 1x1 direct, strides, dilation */
static void test_conv_fast_vs_naive(void)
{
	static const int shapes[][11] = {
		/* B  C   H   W  OC KH KW st pad dil bias */
		{ 2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1 },
		{ 3, 5, 9, 8, 6, 3, 3, 2, 1, 1, 1 },
		{ 2, 4, 11, 10, 3, 3, 3, 1, 2, 2, 0 },
		{ 3, 6, 5, 7, 5, 1, 1, 1, 0, 1, 1 },
		{ 5, 6, 9, 7, 5, 1, 1, 2, 0, 1, 0 },
		{ 1, 2, 13, 12, 3, 5, 3, 3, 2, 1, 1 },
		{ 2, 64, 50, 50, 8, 3, 3, 1, 1, 1, 1 },   /* rows tiled: 2500 > 1820 columns */
		{ 9, 16, 6, 5, 7, 3, 3, 1, 1, 1, 1 },     /* one group of 9 samples */
		{ 30, 64, 7, 9, 4, 3, 3, 1, 1, 1, 1 },    /* two groups of 15 */
		{ 7, 32, 8, 16, 12, 3, 3, 2, 1, 1, 0 },
		{ 4, 3, 20, 9, 2, 3, 2, 1, 0, 3, 1 },
		/* few channels and taps, stride 1 (same convs take im2col's block copy),
		 * odd widths, 1x1, no padding, 5x5 */
		{ 3, 1, 9, 11, 5, 3, 3, 1, 1, 1, 1 },
		{ 2, 3, 10, 21, 7, 3, 3, 1, 1, 1, 0 },
		{ 2, 2, 6, 8, 9, 3, 5, 1, 2, 1, 1 },
		{ 3, 4, 5, 9, 6, 1, 1, 1, 0, 1, 1 },      /* 1x1 over 4 channels */
		{ 2, 5, 6, 9, 3, 1, 1, 1, 0, 1, 1 },      /* 5 channels */
		{ 2, 1, 12, 13, 2, 3, 3, 1, 0, 1, 1 },    /* no padding */
		{ 2, 1, 20, 40, 33, 3, 3, 1, 1, 1, 0 },
		{ 2, 4, 6, 12, 5, 3, 3, 1, 1, 1, 1 },     /* 36 taps */
		{ 2, 6, 9, 8, 3, 3, 3, 1, 0, 1, 1 },      /* OC < C, no padding */
		{ 3, 7, 9, 10, 4, 5, 5, 1, 1, 1, 0 },     /* 5x5 */
		/* Winograd F(2x2,3x3): 3x3 stride 1 pad 1, >= 16 channels each side,
		 * sides >= 8; odd and even sides, tiles in two chunks mid-image
		 * (test_winograd_small takes the sides below 8) */
		{ 2, 16, 9, 11, 16, 3, 3, 1, 1, 1, 1 },
		{ 3, 32, 8, 10, 24, 3, 3, 1, 1, 1, 0 },
		{ 1, 24, 15, 20, 40, 3, 3, 1, 1, 1, 1 },
		{ 3, 16, 120, 50, 16, 3, 3, 1, 1, 1, 1 },
	};
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		const int *v = shapes[t];
		struct conv2d_shape s;
		int B = v[0];
		CHECK(conv2d_shape_init(&s, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]) ==
		      0);
		size_t nin = (size_t)B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.KH * s.KW;
		size_t nout = (size_t)B * s.OC * s.OH * s.OW;
		float *x = randn(nin, 100 + t), *w = randn(nw, 200 + t), *bias = randn(s.OC, 300 + t);
		float *dout = randn(nout, 400 + t);
		float *o1 = randn(nout, 1), *o2 = randn(nout, 2);
		size_t ns = conv2d_scratch(&s, B);
		float *scratch = xmalloc((ns ? ns : 1) * sizeof(float));
		const float *bp = v[10] ? bias : NULL;
		conv2d_forward(o1, x, w, bp, &s, B, scratch);
		conv2d_forward_naive(o2, x, w, bp, &s, B);
		/* F(4x4)'s looser tolerance where the shape takes it */
		double k = wino_applies(&s) && wino_tile(&s) == 4 ? WINO4_TOL : 1.0;
		double tol = k * 1e-5 * sqrt((double)s.C * s.KH * s.KW);
		for (size_t i = 0; i < nout; i++)
			CHECK_MSG(fabs(o1[i] - o2[i]) <= tol * (1 + fabs(o2[i])),
				  "shape %zu out[%zu]: %.9g vs naive %.9g", t, i, o1[i], o2[i]);
		/* the epilogue (an evaluation BN + ReLU folded in): relu(naive*scale + shift) */
		float *sc = randn(s.OC, 800 + t), *sh = randn(s.OC, 900 + t);
		for (int r = 0; r < 2; r++) {
			struct conv_epilogue ep = { sc, sh, r };
			conv2d_forward_ep(o1, x, w, bp, &s, B, scratch, &ep);
			for (size_t i = 0; i < nout; i++) {
				int oc = (int)(i / ((size_t)s.OH * s.OW) % (size_t)s.OC);
				float want = o2[i] * sc[oc] + sh[oc];
				if (r && want < 0.0f)
					want = 0.0f;
				CHECK_MSG(fabs(o1[i] - want) <= tol * (1 + fabs(o2[i] * sc[oc]) + fabs(sh[oc])),
					  "shape %zu relu %d out[%zu]: %.9g vs %.9g", t, r, i, o1[i], want);
			}
		}
		free(sc), free(sh);
		float *di1 = randn(nin, 500 + t), *dw1 = randn(nw, 600 + t), *db1 = randn(s.OC, 700);
		float *di2 = dup_floats(di1, nin), *dw2 = dup_floats(dw1, nw);
		float *db2 = dup_floats(db1, s.OC);
		conv2d_backward(di1, dw1, v[10] ? db1 : NULL, dout, x, w, &s, B, scratch);
		conv2d_backward_naive(di2, dw2, v[10] ? db2 : NULL, dout, x, w, &s, B);
		double tolw = k * 1e-5 * sqrt((double)B * s.OH * s.OW);
		check_conv_grads(t, di1, di2, nin, tol, dw1, dw2, nw, tolw);
		for (int i = 0; i < s.OC; i++)
			CHECK_NEAR(db1[i], db2[i], tolw * (1 + fabs(db2[i])));
		/* the scratch for B serves every smaller batch */
		for (int b2 = B - 1; b2 >= 1 && b2 >= B - 3; b2--) {
			conv2d_forward(o1, x, w, bp, &s, b2, scratch);
			conv2d_forward_naive(o2, x, w, bp, &s, b2);
			for (size_t i = 0; i < nout / B * b2; i++)
				CHECK_NEAR(o1[i], o2[i], tol * (1 + fabs(o2[i])));
			conv2d_backward(di2, dw2, NULL, dout, x, w, &s, b2, scratch);
		}
		/* no input gradient: the weight gradient is the same */
		float *dw3 = randn(nw, 600 + t);
		conv2d_backward(NULL, dw3, NULL, dout, x, w, &s, B, scratch);
		for (size_t i = 0; i < nw; i++)
			CHECK_NEAR(dw3[i], dw1[i], tolw * (1 + fabs(dw1[i])));
		free(x), free(w), free(bias), free(dout), free(o1), free(o2), free(scratch);
		free(di1), free(dw1), free(db1), free(di2), free(dw2), free(db2), free(dw3);
	}
}

/* wino_forward / wino_backward called directly on the sides conv2d leaves
 * to im2col (a 1x1 image, 5x3, 7x2): the same results as the naive loops */
static void test_winograd_small(void)
{
	static const int shapes[][5] = {
		/* B  C  H  W  OC */
		{ 2, 16, 1, 1, 16 },
		{ 4, 20, 5, 3, 17 },
		{ 3, 5, 7, 2, 3 },
		{ 1, 16, 6, 6, 32 },
	};
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		const int *v = shapes[t];
		struct conv2d_shape s;
		int B = v[0];
		CHECK(conv2d_shape_init(&s, v[1], v[2], v[3], v[4], 3, 3, 1, 1, 1) == 0);
		size_t nin = (size_t)B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * 9;
		size_t nout = (size_t)B * s.OC * s.OH * s.OW;
		float *x = randn(nin, 1100 + t), *w = randn(nw, 1200 + t), *bias = randn(s.OC, 1300 + t);
		float *dout = randn(nout, 1400 + t), *o1 = randn(nout, 3), *o2 = randn(nout, 4);
		float *scratch = xmalloc(wino_scratch(&s) * sizeof(float));
		wino_forward(o1, x, w, bias, &s, B, scratch, NULL, NULL);
		conv2d_forward_naive(o2, x, w, bias, &s, B);
		double tol = 1e-5 * sqrt((double)s.C * 9);
		for (size_t i = 0; i < nout; i++)
			CHECK_MSG(fabs(o1[i] - o2[i]) <= tol * (1 + fabs(o2[i])),
				  "shape %zu out[%zu]: %.9g vs naive %.9g", t, i, o1[i], o2[i]);
		float *di1 = randn(nin, 1500 + t), *dw1 = randn(nw, 1600 + t);
		float *di2 = dup_floats(di1, nin), *dw2 = dup_floats(dw1, nw);
		wino_backward(di1, dw1, dout, x, w, &s, B, scratch, NULL);
		conv2d_backward_naive(di2, dw2, NULL, dout, x, w, &s, B);
		double tolw = 1e-5 * sqrt((double)B * s.OH * s.OW);
		check_conv_grads(t, di1, di2, nin, tol, dw1, dw2, nw, tolw);
		free(x), free(w), free(bias), free(dout), free(o1), free(o2), free(scratch);
		free(di1), free(dw1), free(di2), free(dw2);
	}
}

/* Largest |a - b| / (1 + |b|) over n floats */
static double max_rel(const float *a, const float *b, size_t n)
{
	double worst = 0.0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
		if (e > worst)
			worst = e;
	}
	return worst;
}

/* F(2x2) and F(4x4) forced on each shape (conv2d_winograd_enable(2, 4)),
 * on one BLAS thread and on two (the batch cut over two threads), against
 * the naive convolution: forward with bias and the epilogue, input and
 * weight gradients. Sides odd, even and not multiples of 4, tiles in
 * chunks that straddle images, 384 channels in. F(4x4) has WINO4_TOL
 * times im2col's tolerance; MKE_TEST_VERBOSE=1 prints the worst errors */
static void test_winograd_tiles(void)
{
	static const int shapes[][6] = {
		/* B  C   H   W  OC bias */
		{ 2, 16, 16, 16, 16, 1 },
		{ 3, 16, 17, 19, 24, 1 },
		{ 2, 32, 18, 22, 16, 0 },
		{ 1, 24, 9, 13, 40, 1 },
		{ 4, 20, 5, 3, 17, 1 },
		{ 2, 16, 1, 1, 16, 1 },    /* a 1x1 image */
		{ 3, 16, 7, 2, 18, 0 },
		{ 3, 16, 121, 50, 16, 1 }, /* 17 tile rows a chunk, 31 an image */
		{ 2, 64, 30, 40, 32, 1 },
		{ 1, 384, 12, 16, 32, 0 },
	};
	int blas = openblas_get_num_threads();
	double worst[2][3] = {{0}};
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		const int *v = shapes[t];
		struct conv2d_shape s;
		int B = v[0];
		CHECK(conv2d_shape_init(&s, v[1], v[2], v[3], v[4], 3, 3, 1, 1, 1) == 0);
		size_t nin = (size_t)B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * 9;
		size_t nout = (size_t)B * s.OC * s.OH * s.OW;
		float *x = randn(nin, 2100 + t), *w = randn(nw, 2200 + t), *bias = randn(s.OC, 2300 + t);
		float *dout = randn(nout, 2400 + t), *sc = randn(s.OC, 2500 + t);
		float *sh = randn(s.OC, 2600 + t), *o1 = randn(nout, 5), *o2 = randn(nout, 6);
		float *o3 = randn(nout, 7);
		const float *bp = v[5] ? bias : NULL;
		conv2d_forward_naive(o2, x, w, bp, &s, B);
		float *di2 = randn(nin, 2700 + t), *dw2 = randn(nw, 2800 + t);
		float *di0 = dup_floats(di2, nin), *dw0 = dup_floats(dw2, nw);
		conv2d_backward_naive(di2, dw2, NULL, dout, x, w, &s, B);
		for (int mi = 0; mi < 2; mi++)
			for (int nt = 1; nt <= 2; nt++) {
				int m = mi ? 4 : 2;
				conv2d_winograd_enable(m);
				openblas_set_num_threads(nt);
				CHECK(wino_applies(&s) || s.OH < WINO_MIN_SIDE);
				CHECK(wino_tile(&s) == m);
				double k = m == 4 ? WINO4_TOL : 1.0;
				double tol = k * 1e-5 * sqrt((double)s.C * 9);
				double tolw = k * 1e-5 * sqrt((double)B * s.OH * s.OW);
				float *scratch = xmalloc(wino_scratch(&s) * sizeof(float));
				wino_forward(o1, x, w, bp, &s, B, scratch, NULL, NULL);
				for (size_t i = 0; i < nout; i++)
					CHECK_MSG(fabs(o1[i] - o2[i]) <= tol * (1 + fabs(o2[i])),
						  "F(%dx%d) %d threads shape %zu out[%zu]: %.9g vs naive %.9g",
						  m, m, nt, t, i, o1[i], o2[i]);
				double e = max_rel(o1, o2, nout) / (1e-5 * sqrt((double)s.C * 9));
				worst[mi][0] = fmax(worst[mi][0], e);
				struct conv_epilogue ep = { sc, sh, 1 };
				wino_forward(o3, x, w, bp, &s, B, scratch, &ep, NULL);
				for (size_t i = 0; i < nout; i++) {
					int oc = (int)(i / ((size_t)s.OH * s.OW) % (size_t)s.OC);
					float want = o1[i] * sc[oc] + sh[oc];
					want = want > 0.0f ? want : 0.0f;
					CHECK_NEAR(o3[i], want, 1e-5 * (1 + fabs(want)));
				}
				float *di1 = dup_floats(di0, nin), *dw1 = dup_floats(dw0, nw);
				wino_backward(di1, dw1, dout, x, w, &s, B, scratch, NULL);
				for (size_t i = 0; i < nin; i++)
					CHECK_MSG(fabs(di1[i] - di2[i]) <= tol * (1 + fabs(di2[i])),
						  "F(%dx%d) %d threads shape %zu dinp[%zu]: %.9g vs naive %.9g",
						  m, m, nt, t, i, di1[i], di2[i]);
				for (size_t i = 0; i < nw; i++)
					CHECK_MSG(fabs(dw1[i] - dw2[i]) <= tolw * (1 + fabs(dw2[i])),
						  "F(%dx%d) %d threads shape %zu dweight[%zu]: %.9g vs naive %.9g",
						  m, m, nt, t, i, dw1[i], dw2[i]);
				/* dinp - di0: the gradient alone, for the error figure */
				for (size_t i = 0; i < nin; i++)
					di1[i] -= di0[i];
				float *dref = dup_floats(di2, nin);
				for (size_t i = 0; i < nin; i++)
					dref[i] -= di0[i];
				e = max_rel(di1, dref, nin) / (1e-5 * sqrt((double)s.C * 9));
				worst[mi][1] = fmax(worst[mi][1], e);
				e = max_rel(dw1, dw2, nw) / (1e-5 * sqrt((double)B * s.OH * s.OW));
				worst[mi][2] = fmax(worst[mi][2], e);
				/* no input gradient: the same weight gradient */
				float *dw3 = dup_floats(dw0, nw);
				wino_backward(NULL, dw3, dout, x, w, &s, B, scratch, NULL);
				for (size_t i = 0; i < nw; i++)
					CHECK_NEAR(dw3[i], dw1[i], 1e-6 * (1 + fabs(dw1[i])));
				free(scratch), free(di1), free(dw1), free(dref), free(dw3);
			}
		free(x), free(w), free(bias), free(dout), free(sc), free(sh), free(o1), free(o2);
		free(o3), free(di2), free(dw2), free(di0), free(dw0);
	}
	openblas_set_num_threads(blas);
	conv2d_winograd_enable(1);
	if (getenv("MKE_TEST_VERBOSE"))
		fprintf(stderr, "winograd error / im2col tolerance: F(2x2) out %.2f dinp %.2f "
				"dweight %.2f; F(4x4) out %.2f dinp %.2f dweight %.2f\n",
			worst[0][0], worst[0][1], worst[0][2], worst[1][0], worst[1][1],
			worst[1][2]);
}

/* the Winograd shape of the cache tests (both tiles apply), and its input,
 * weight and output sizes for a batch of B */
static void wcache_shape(struct conv2d_shape *s, int B, size_t *nin, size_t *nw, size_t *nout)
{
	CHECK(conv2d_shape_init(s, 24, 20, 18, 32, 3, 3, 1, 1, 1) == 0);
	*nin = (size_t)B * s->C * s->H * s->W;
	*nw = (size_t)s->OC * s->C * 9;
	*nout = (size_t)B * s->OC * s->OH * s->OW;
}

/* A kept transform (struct conv_wcache) gives bit for bit what a fresh one
 * gives, is made once while the weights stay, and again when one weight or
 * the tile changes; the scratch is poisoned before each call, so nothing of
 * the transform may come from it. */
static void test_wcache(void)
{
	struct conv2d_shape s;
	int B = 2;
	size_t nin, nw, nout;
	wcache_shape(&s, B, &nin, &nw, &nout);
	float *x = randn(nin, 3100), *w = randn(nw, 3101), *bias = randn(s.OC, 3102);
	float *o1 = randn(nout, 1), *o2 = randn(nout, 2);
	struct conv_wcache wc = {0};
	for (int m = 4; m >= 2; m -= 2) {
		conv2d_winograd_enable(m);
		size_t nsc = conv2d_scratch(&s, B);
		float *scratch = xmalloc(nsc * sizeof(float));
		long made = wc.made;
		for (int pass = 0; pass < 3; pass++) {
			/* the same weights: one transform in all (the first pass of
			 * this tile), whatever the scratch holds */
			for (size_t i = 0; i < nsc; i++)
				scratch[i] = NAN;
			conv2d_forward_wc(o1, x, w, bias, &s, B, scratch, NULL, &wc);
			conv2d_forward(o2, x, w, bias, &s, B, scratch);
			CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0);
			CHECK_MSG(wc.made == made + 1, "F(%dx%d) pass %d: %ld transforms, want %ld",
				  m, m, pass, wc.made - made, 1L);
			CHECK(wc.m == m);
		}
		/* one weight changed, the last one: made again, and used */
		w[nw - 1] += 0.5f;
		for (size_t i = 0; i < nsc; i++)
			scratch[i] = NAN;
		conv2d_forward_wc(o1, x, w, bias, &s, B, scratch, NULL, &wc);
		conv2d_forward(o2, x, w, bias, &s, B, scratch);
		CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0);
		CHECK(wc.made == made + 2);
		free(scratch);
	}
	conv_wcache_release(&wc);
	CHECK(wc.U == NULL && wc.made == 0);
	conv2d_winograd_enable(1);
	free(x), free(w), free(bias), free(o1), free(o2);
}

/* the backward's input gradient takes the forward's transform from the
 * cache (no transform of its own) and equals the uncached backward bit for
 * bit; after a weight change the cache is remade, not read stale */
static void test_wcache_backward(void)
{
	struct conv2d_shape s;
	int B = 2;
	size_t nin, nw, nout;
	wcache_shape(&s, B, &nin, &nw, &nout);
	float *x = randn(nin, 3200), *w = randn(nw, 3201), *dout = randn(nout, 3202);
	float *o = randn(nout, 3), *di1 = xmalloc(nin * sizeof(float)), *di2 = xmalloc(nin * sizeof(float));
	float *dw1 = xmalloc(nw * sizeof(float)), *dw2 = xmalloc(nw * sizeof(float));
	struct conv_wcache wc = {0};
	for (int m = 4; m >= 2; m -= 2) {
		conv2d_winograd_enable(m);
		size_t nsc = conv2d_scratch(&s, B);
		float *scratch = xmalloc(nsc * sizeof(float));
		for (int change = 0; change < 2; change++) {
			conv2d_forward_wc(o, x, w, NULL, &s, B, scratch, NULL, &wc);
			long made = wc.made;
			if (change)
				w[nw / 2] -= 0.25f; /* as an optimizer step between the passes would */
			memset(di1, 0, nin * sizeof(float)), memset(di2, 0, nin * sizeof(float));
			memset(dw1, 0, nw * sizeof(float)), memset(dw2, 0, nw * sizeof(float));
			for (size_t i = 0; i < nsc; i++)
				scratch[i] = NAN;
			conv2d_backward_wc(di1, dw1, NULL, dout, x, w, &s, B, scratch, &wc);
			CHECK_MSG(wc.made == made + change, "F(%dx%d) change %d: %ld transforms",
				  m, m, change, wc.made - made);
			conv2d_backward(di2, dw2, NULL, dout, x, w, &s, B, scratch);
			CHECK(memcmp(di1, di2, nin * sizeof(float)) == 0);
			CHECK(memcmp(dw1, dw2, nw * sizeof(float)) == 0);
		}
		free(scratch);
	}
	conv_wcache_release(&wc);
	conv2d_winograd_enable(1);
	free(x), free(w), free(dout), free(o), free(di1), free(di2), free(dw1), free(dw2);
}

struct conv_arg {
	struct conv2d_shape s;
	int B;
	float *x, *w, *b, *out, *wt, *scratch;
};

static double conv_obj(void *p)
{
	struct conv_arg *a = p;
	conv2d_forward(a->out, a->x, a->w, a->b, &a->s, a->B, a->scratch);
	return wsum(a->out, a->wt, (size_t)a->B * a->s.OC * a->s.OH * a->s.OW);
}

static void test_conv_grad_fd(void)
{
	static const int shapes[][10] = {
		{ 2, 2, 6, 5, 3, 3, 3, 2, 1, 1 },
		{ 2, 2, 7, 7, 2, 3, 3, 1, 2, 2 },
		{ 3, 3, 4, 3, 2, 1, 1, 1, 0, 1 },
		{ 2, 16, 8, 9, 16, 3, 3, 1, 1, 1 }, /* Winograd F(2x2) */
		{ 1, 16, 9, 10, 16, 3, 3, 1, 1, 1 }, /* F(4x4), forced */
	};
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		const int *v = shapes[t];
		struct conv_arg a;
		conv2d_winograd_enable(t == 4 ? 4 : 1);
		a.B = v[0];
		CHECK(conv2d_shape_init(&a.s, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]) ==
		      0);
		size_t nin = (size_t)a.B * a.s.C * a.s.H * a.s.W;
		size_t nw = (size_t)a.s.OC * a.s.C * a.s.KH * a.s.KW;
		size_t nout = (size_t)a.B * a.s.OC * a.s.OH * a.s.OW, ns = conv2d_scratch(&a.s, a.B);
		a.x = randn(nin, 10 + t), a.w = randn(nw, 20 + t), a.b = randn(a.s.OC, 30 + t);
		a.wt = randn(nout, 40 + t), a.out = xmalloc(nout * sizeof(float));
		/* outputs of order 1 however many taps, or the float rounding of the
		 * objective swamps its central differences */
		for (size_t i = 0; i < nw; i++)
			a.w[i] /= sqrtf((float)(a.s.C * a.s.KH * a.s.KW));
		a.scratch = xmalloc((ns ? ns : 1) * sizeof(float));
		float *dx = randn(nin, 50), *dw = randn(nw, 51), *db = randn(a.s.OC, 52);
		float *dx0 = dup_floats(dx, nin), *dw0 = dup_floats(dw, nw), *db0 = dup_floats(db, a.s.OC);
		conv2d_backward(dx, dw, db, a.wt, a.x, a.w, &a.s, a.B, a.scratch);
		/* the objective is linear in each input, so a long step is as exact
		 * and shrinks F(4x4)'s rounding noise (10x F(2x2)'s) in the difference */
		float h = t == 4 ? 0.25f : 1e-2f;
		fd_check("conv dx", a.x, nin, dx, dx0, conv_obj, &a, h, 1e-3, 1e-3);
		fd_check("conv dw", a.w, nw, dw, dw0, conv_obj, &a, h, 1e-3, 1e-3);
		fd_check("conv db", a.b, a.s.OC, db, db0, conv_obj, &a, h, 1e-3, 1e-3);
		free(a.x), free(a.w), free(a.b), free(a.wt), free(a.out), free(a.scratch);
		free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
	}
	conv2d_winograd_enable(1);
}

/* ---- batch norm -------------------------------------------------------- */

struct bn_arg {
	int B, C, HW, micro;
	float *x, *g, *b, *out, *mean, *rstd, *wt;
};

static double bn_obj(void *p)
{
	struct bn_arg *a = p;
	batchnorm_forward(a->out, a->mean, a->rstd, a->x, a->g, a->b, a->B, a->C, a->HW, a->micro,
			  1e-5f, NULL, 0, NULL);
	return wsum(a->out, a->wt, (size_t)a->B * a->C * a->HW);
}

static void test_batchnorm_grad_fd(void)
{
	static const int cases[][4] = { { 4, 3, 5, 4 }, { 5, 2, 6, 2 }, { 3, 2, 1, 8 } };
	for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
		struct bn_arg a = { cases[t][0], cases[t][1], cases[t][2], cases[t][3],
				    NULL, NULL, NULL, NULL, NULL, NULL, NULL };
		size_t n = (size_t)a.B * a.C * a.HW, ng = (size_t)(a.B + a.micro - 1) / a.micro;
		a.x = randn(n, 60 + t), a.g = randn(a.C, 61 + t), a.b = randn(a.C, 62 + t);
		a.wt = randn(n, 63 + t), a.out = xmalloc(n * sizeof(float));
		a.mean = xmalloc(ng * a.C * sizeof(float)), a.rstd = xmalloc(ng * a.C * sizeof(float));
		float *dx = randn(n, 70), *dg = randn(a.C, 71), *db = randn(a.C, 72);
		float *dx0 = dup_floats(dx, n), *dg0 = dup_floats(dg, a.C), *db0 = dup_floats(db, a.C);
		bn_obj(&a);
		batchnorm_backward(dx, dg, db, a.wt, a.x, a.mean, a.rstd, a.g, a.B, a.C, a.HW,
				   a.micro, NULL, 0, NULL);
		fd_check("bn dx", a.x, n, dx, dx0, bn_obj, &a, 1e-2f, 2e-3, 2e-3);
		fd_check("bn dgamma", a.g, a.C, dg, dg0, bn_obj, &a, 1e-2f, 2e-3, 2e-3);
		fd_check("bn dbeta", a.b, a.C, db, db0, bn_obj, &a, 1e-2f, 2e-3, 2e-3);
		free(a.x), free(a.g), free(a.b), free(a.wt), free(a.out), free(a.mean), free(a.rstd);
		free(dx), free(dg), free(db), free(dx0), free(dg0), free(db0);
	}
}

/* B = 16 in micro-batches of 8 is two separate calls on 8: outputs, saved
 * statistics, the running-statistics sums and every gradient */
static void test_batchnorm_micro(void)
{
	enum { B = 16, C = 3, HW = 10, M = 8 };
	size_t n = (size_t)B * C * HW, half = n / 2;
	float *x = randn(n, 80), *g = randn(C, 81), *b = randn(C, 82), *dy = randn(n, 83);
	float out[B * C * HW], mean[2 * C], rstd[2 * C], o2[B * C * HW], m2[2 * C], r2[2 * C];
	double bs[2 * C], bs1[2 * C], bs2[2 * C];
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, bs, 0, NULL);
	batchnorm_forward(o2, m2, r2, x, g, b, M, C, HW, M, 1e-5f, bs1, 0, NULL);
	batchnorm_forward(o2 + half, m2 + C, r2 + C, x + half, g, b, M, C, HW, 100, 1e-5f, bs2, 0, NULL);
	CHECK(memcmp(out, o2, sizeof(out)) == 0);
	CHECK(memcmp(mean, m2, sizeof(mean)) == 0);
	CHECK(memcmp(rstd, r2, sizeof(rstd)) == 0);
	for (int i = 0; i < 2 * C; i++)
		CHECK_NEAR(bs[i], bs1[i] + bs2[i], 1e-12 * (1 + fabs(bs[i])));
	/* micro >= B is one group over the whole batch */
	batchnorm_forward(o2, m2, r2, x, g, b, B, C, HW, B, 1e-5f, NULL, 0, NULL);
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, 1000, 1e-5f, NULL, 0, NULL);
	CHECK(memcmp(out, o2, sizeof(out)) == 0);
	/* backward */
	float dx[B * C * HW], dx2[B * C * HW], dg[C] = { 0 }, db[C] = { 0 }, dg2[C] = { 0 },
						db2[C] = { 0 };
	memset(dx, 0, sizeof(dx));
	memset(dx2, 0, sizeof(dx2));
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, NULL, 0, NULL);
	batchnorm_backward(dx, dg, db, dy, x, mean, rstd, g, B, C, HW, M, NULL, 0, NULL);
	batchnorm_backward(dx2, dg2, db2, dy, x, mean, rstd, g, M, C, HW, M, NULL, 0, NULL);
	batchnorm_backward(dx2 + half, dg2, db2, dy + half, x + half, mean + C, rstd + C, g, M, C,
			   HW, M, NULL, 0, NULL);
	CHECK(memcmp(dx, dx2, sizeof(dx)) == 0);
	for (int c = 0; c < C; c++) {
		CHECK_NEAR(dg[c], dg2[c], 1e-5 * (1 + fabs(dg[c])));
		CHECK_NEAR(db[c], db2[c], 1e-5 * (1 + fabs(db[c])));
	}
	/* dinp NULL still gives dgamma, dbeta */
	float dg3[C] = { 0 }, db3[C] = { 0 };
	batchnorm_backward(NULL, dg3, db3, dy, x, mean, rstd, g, B, C, HW, M, NULL, 0, NULL);
	CHECK(memcmp(dg3, dg, sizeof(dg)) == 0 && memcmp(db3, db, sizeof(db)) == 0);
	/* the running update averages the groups' statistics */
	float rm[C] = { 0.5f, -1.0f, 2.0f }, rv[C] = { 1.0f, 2.0f, 0.5f };
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, bs, 0, NULL);
	batchnorm_update_running(rm, rv, bs, 2, C, 0.1f);
	for (int c = 0; c < C; c++) {
		double want = 0.9 * (c == 0 ? 0.5 : c == 1 ? -1.0 : 2.0) + 0.1 * (mean[c] + mean[C + c]) / 2;
		CHECK_NEAR(rm[c], want, 1e-6);
	}
	free(x), free(g), free(b), free(dy);
}

/* the fused ReLU: forward is max(0, BN) of the plain forward, bit for bit
 * (train and eval); backward with relu_out is the plain backward of dout
 * zeroed where the output is not positive */
static void test_batchnorm_relu(void)
{
	enum { B = 6, C = 3, HW = 37, M = 4 };
	size_t n = (size_t)B * C * HW;
	float *x = randn(n, 90), *g = randn(C, 91), *b = randn(C, 92), *dy = randn(n, 93);
	float *o1 = xmalloc(n * sizeof(float)), *o2 = xmalloc(n * sizeof(float));
	float *dyr = xmalloc(n * sizeof(float));
	float mean[2 * C], rstd[2 * C], rm[C] = { 0.1f, -0.2f, 0.3f }, rv[C] = { 1.0f, 0.5f, 2.0f };
	int npos = 0, nneg = 0;
	batchnorm_forward(o1, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, NULL, 0, NULL);
	batchnorm_forward(o2, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, NULL, 1, NULL);
	for (size_t i = 0; i < n; i++) {
		CHECK(o2[i] == (o1[i] > 0.0f ? o1[i] : 0.0f));
		npos += o1[i] > 0.0f;
		nneg += o1[i] < 0.0f;
		dyr[i] = o1[i] > 0.0f ? dy[i] : 0.0f;
	}
	CHECK(npos > 0 && nneg > 0);
	float *dx1 = xcalloc(n, sizeof(float)), *dx2 = xcalloc(n, sizeof(float));
	float dg1[C] = { 0 }, db1[C] = { 0 }, dg2[C] = { 0 }, db2[C] = { 0 };
	batchnorm_backward(dx1, dg1, db1, dyr, x, mean, rstd, g, B, C, HW, M, NULL, 0, NULL);
	batchnorm_backward(dx2, dg2, db2, dy, x, mean, rstd, g, B, C, HW, M, o2, 0, NULL);
	CHECK(memcmp(dx1, dx2, n * sizeof(float)) == 0);
	CHECK(memcmp(dg1, dg2, sizeof(dg1)) == 0 && memcmp(db1, db2, sizeof(db1)) == 0);
	batchnorm_forward_eval(o1, x, g, b, rm, rv, B, C, HW, 1e-5f, 0);
	batchnorm_forward_eval(o2, x, g, b, rm, rv, B, C, HW, 1e-5f, 1);
	for (size_t i = 0; i < n; i++)
		CHECK(o2[i] == (o1[i] > 0.0f ? o1[i] : 0.0f));
	free(x), free(g), free(b), free(dy), free(o1), free(o2), free(dyr), free(dx1), free(dx2);
}

/* batch norm + ReLU + 2x2 max pool forward and backward in one: bit for bit
 * the unfused batchnorm_forward then maxpool2d_forward, and
 * maxpool2d_backward into a zeroed buffer then batchnorm_backward,
 * set and added, with odd sides (a last row and column outside every
 * window), planes over one sum chunk (512) and micro-batches; ties in the
 * input so the pool's first-maximum rule matters */
static void test_batchnorm_pool(void)
{
	static const int shapes[][2] = { { 8, 8 }, { 7, 9 }, { 33, 31 }, { 2, 3 } };
	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
		int B = 5, C = 3, H = shapes[si][0], W = shapes[si][1], M = 2;
		int HW = H * W, OH = H / 2, OW = W / 2;
		size_t n = (size_t)B * C * HW, np = (size_t)B * C * OH * OW;
		float *x = randn(n, 100 + (uint32_t)si), *g = randn(C, 110), *b = randn(C, 111);
		float *dp = randn(np, 112 + (uint32_t)si);
		for (size_t i = 0; i < n; i += 7)
			x[i] = x[i / 2]; /* some equal values */
		float *y = xmalloc(n * sizeof(float)), *po = xmalloc(np * sizeof(float));
		int *am = xmalloc(np * sizeof(int));
		float mean[3 * 3], rstd[3 * 3], mean2[3 * 3], rstd2[3 * 3];
		double bs1[2 * 3], bs2[2 * 3];
		batchnorm_forward(y, mean, rstd, x, g, b, B, C, HW, M, 1e-5f, bs1, 1, NULL);
		maxpool2d_forward(po, am, y, B, C, H, W, 2, 2, 0);
		/* the forward in one: the same pool output, argmax and statistics */
		float *po2 = xmalloc(np * sizeof(float));
		int *am2 = xmalloc(np * sizeof(int));
		float *scr = xmalloc((size_t)M * HW * sizeof(float));
		batchnorm_pool_forward(po2, am2, mean2, rstd2, x, g, b, B, C, H, W, M, 1e-5f, bs2, scr, NULL);
		CHECK(memcmp(po, po2, np * sizeof(float)) == 0);
		CHECK(memcmp(am, am2, np * sizeof(int)) == 0);
		CHECK(memcmp(mean, mean2, sizeof(mean)) == 0 && memcmp(rstd, rstd2, sizeof(rstd)) == 0);
		CHECK(memcmp(bs1, bs2, sizeof(bs1)) == 0);
		free(po2), free(am2);
		float *dy = xcalloc(n, sizeof(float));
		maxpool2d_backward(dy, dp, am, B, C, H, W, OH, OW);
		float *dx1 = xcalloc(n, sizeof(float)), *dx2 = xmalloc(n * sizeof(float));
		float *base = randn(n, 120), *dx3 = xmalloc(n * sizeof(float));
		float *dx4 = xmalloc(n * sizeof(float));
		float dg1[3] = { 0 }, db1[3] = { 0 }, dg2[3] = { 0 }, db2[3] = { 0 };
		float dg3[3] = { 0 }, db3[3] = { 0 };
		batchnorm_backward(dx1, dg1, db1, dy, x, mean, rstd, g, B, C, HW, M, y, 0, NULL);
		for (size_t i = 0; i < n; i++)
			dx2[i] = NAN; /* set must write every position */
		batchnorm_pool_backward(dx2, dg2, db2, dp, am, po, x, mean, rstd, g, B, C, H, W, M, 1,
					scr, NULL);
		CHECK(memcmp(dx1, dx2, n * sizeof(float)) == 0);
		CHECK(memcmp(dg1, dg2, sizeof(dg1)) == 0 && memcmp(db1, db2, sizeof(db1)) == 0);
		/* added: onto a buffer that already holds a gradient */
		memcpy(dx3, base, n * sizeof(float));
		memcpy(dx4, base, n * sizeof(float));
		batchnorm_backward(dx3, dg3, db3, dy, x, mean, rstd, g, B, C, HW, M, y, 0, NULL);
		batchnorm_pool_backward(dx4, dg2, db2, dp, am, po, x, mean, rstd, g, B, C, H, W, M, 0,
					scr, NULL);
		CHECK(memcmp(dx3, dx4, n * sizeof(float)) == 0);
		/* no input gradient: parameters only */
		float dg4[3] = { 0 }, db4[3] = { 0 };
		batchnorm_pool_backward(NULL, dg4, db4, dp, am, po, x, mean, rstd, g, B, C, H, W, M, 1,
					scr, NULL);
		CHECK(memcmp(dg1, dg4, sizeof(dg1)) == 0 && memcmp(db1, db4, sizeof(db1)) == 0);
		int nz = 0;
		for (size_t i = 0; i < n; i++)
			nz += dx1[i] != 0.0f;
		CHECK(nz > 0);
		free(x), free(g), free(b), free(dp), free(y), free(po), free(am), free(dy);
		free(dx1), free(dx2), free(base), free(dx3), free(dx4), free(scr);
	}
}

/* a large plane far from zero: the chunked float sums against a double
 * two-pass reference */
static void test_batchnorm_large(void)
{
	enum { B = 2, C = 2, HW = 129 * 250 + 3 };
	size_t n = (size_t)B * C * HW;
	float *x = randn(n, 85), *out = xmalloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = 100.0f + 0.01f * x[i] + (i % (2 * HW) < HW ? 0.0f : 7.0f);
	float g[C] = { 1.0f, 2.0f }, b[C] = { 0.0f, 1.0f }, mean[C], rstd[C];
	double bs[2 * C];
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, B, 1e-5f, bs, 0, NULL);
	for (int c = 0; c < C; c++) {
		double s = 0.0, ss = 0.0;
		for (int k = 0; k < B; k++)
			for (int i = 0; i < HW; i++)
				s += x[((size_t)k * C + c) * HW + i];
		double m = s / (B * HW);
		for (int k = 0; k < B; k++)
			for (int i = 0; i < HW; i++) {
				double d = x[((size_t)k * C + c) * HW + i] - m;
				ss += d * d;
			}
		CHECK_REL(mean[c], m, 1e-7);
		CHECK_REL(rstd[c], 1.0 / sqrt(ss / (B * HW) + 1e-5), 1e-5);
		CHECK_REL(bs[C + c], ss / (B * HW - 1), 1e-5);
	}
	free(x), free(out);
}

/* ---- pooling, resizing, joining ---------------------------------------- */

enum pool_kind { P_MAX, P_AVG, P_GAP, P_FRAME, P_UP };

struct pool_arg {
	enum pool_kind kind;
	int B, C, H, W, k, stride, pad, OH, OW;
	float *x, *out, *wt;
	int *argmax;
	size_t nout;
};

static double pool_obj(void *p)
{
	struct pool_arg *a = p;
	switch (a->kind) {
	case P_MAX:
		maxpool2d_forward(a->out, a->argmax, a->x, a->B, a->C, a->H, a->W, a->k, a->stride,
				  a->pad);
		break;
	case P_AVG:
		avgpool2d_forward(a->out, a->x, a->B, a->C, a->H, a->W, a->k, a->stride);
		break;
	case P_GAP:
		global_avgpool_forward(a->out, a->x, a->B, a->C, a->H * a->W);
		break;
	case P_FRAME:
		frame_mean_forward(a->out, a->x, a->B, a->C, a->H * a->W);
		break;
	case P_UP:
		upsample_bilinear_forward(a->out, a->x, a->B, a->C, a->H, a->W, a->OH, a->OW);
		break;
	}
	return wsum(a->out, a->wt, a->nout);
}

static void pool_backward(struct pool_arg *a, float *dx)
{
	switch (a->kind) {
	case P_MAX:
		maxpool2d_backward(dx, a->wt, a->argmax, a->B, a->C, a->H, a->W, a->OH, a->OW);
		break;
	case P_AVG:
		avgpool2d_backward(dx, a->wt, a->B, a->C, a->H, a->W, a->k, a->stride);
		break;
	case P_GAP:
		global_avgpool_backward(dx, a->wt, a->B, a->C, a->H * a->W);
		break;
	case P_FRAME:
		frame_mean_backward(dx, a->wt, a->B, a->C, a->H * a->W);
		break;
	case P_UP:
		upsample_bilinear_backward(dx, a->wt, a->B, a->C, a->H, a->W, a->OH, a->OW);
		break;
	}
}

static void test_pool_grad_fd(void)
{
	static const int cases[][10] = {
		/* kind B C H W k stride pad OH OW (OH, OW for P_UP only) */
		{ P_MAX, 2, 2, 7, 6, 3, 2, 1, 0, 0 },
		{ P_MAX, 1, 3, 6, 6, 2, 2, 0, 0, 0 },
		{ P_AVG, 2, 2, 7, 6, 2, 2, 0, 0, 0 },
		{ P_AVG, 1, 2, 9, 8, 3, 2, 0, 0, 0 },
		{ P_GAP, 2, 3, 4, 5, 0, 0, 0, 0, 0 },
		{ P_FRAME, 2, 3, 1, 5, 0, 0, 0, 0, 0 },
		{ P_UP, 2, 2, 3, 4, 0, 0, 0, 7, 9 },
		{ P_UP, 1, 2, 8, 6, 0, 0, 0, 3, 4 },
		{ P_UP, 1, 1, 4, 4, 0, 0, 0, 8, 8 },
	};
	for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
		const int *v = cases[t];
		struct pool_arg a = { v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
				      NULL, NULL, NULL, NULL, 0 };
		size_t nin = (size_t)a.B * a.C * a.H * a.W;
		switch (a.kind) {
		case P_MAX:
			a.OH = (a.H + 2 * a.pad - a.k) / a.stride + 1;
			a.OW = (a.W + 2 * a.pad - a.k) / a.stride + 1;
			break;
		case P_AVG:
			a.OH = (a.H - a.k) / a.stride + 1, a.OW = (a.W - a.k) / a.stride + 1;
			break;
		case P_GAP:
			a.OH = a.OW = 1;
			break;
		case P_FRAME: /* (B, F=C, D=H*W) -> (B, D): OH*OW stands for D/C */
			a.OH = 1, a.OW = 1;
			break;
		case P_UP:
			break;
		}
		a.nout = a.kind == P_FRAME ? (size_t)a.B * a.H * a.W
					   : (size_t)a.B * a.C * a.OH * a.OW;
		a.x = xmalloc(nin * sizeof(float));
		/* distinct values 0.1 apart, shuffled: no maximum changes within the step */
		struct rng r;
		rng_init(&r, 5, RNG_DATA, (uint32_t)t, 0);
		for (size_t i = 0; i < nin; i++)
			a.x[i] = 0.1f * (float)i;
		for (size_t i = nin - 1; i > 0; i--) {
			size_t j = rng_below(&r, (uint32_t)(i + 1));
			float tmp = a.x[i];
			a.x[i] = a.x[j], a.x[j] = tmp;
		}
		a.wt = randn(a.nout, 90 + t), a.out = xmalloc(a.nout * sizeof(float));
		a.argmax = xmalloc(a.nout * sizeof(int));
		float *dx = randn(nin, 91), *dx0 = dup_floats(dx, nin);
		pool_obj(&a);
		pool_backward(&a, dx);
		fd_check("pool dx", a.x, nin, dx, dx0, pool_obj, &a, 1e-2f, 1e-3, 1e-3);
		free(a.x), free(a.wt), free(a.out), free(a.argmax), free(dx), free(dx0);
	}
}

static void test_upsample_identity_and_x2(void)
{
	/* same size: the identity; x2 of a constant: the constant */
	enum { H = 4, W = 5 };
	float x[H * W], y[H * W], c[H * W], u[4 * H * W];
	fill_normal(x, H * W, 95);
	upsample_bilinear_forward(y, x, 1, 1, H, W, H, W);
	CHECK(memcmp(x, y, sizeof(x)) == 0);
	for (int i = 0; i < H * W; i++)
		c[i] = 2.5f;
	upsample_bilinear_forward(u, c, 1, 1, H, W, 2 * H, 2 * W);
	for (int i = 0; i < 4 * H * W; i++)
		CHECK_NEAR(u[i], 2.5f, 1e-6);
	/* x2 of a ramp along W: interior 0.25/0.75 mixes, edges clamped */
	float r[W], ru[2 * W];
	for (int i = 0; i < W; i++)
		r[i] = (float)i;
	upsample_bilinear_forward(ru, r, 1, 1, 1, W, 1, 2 * W);
	CHECK_NEAR(ru[0], 0.0, 1e-7);
	CHECK_NEAR(ru[1], 0.25, 1e-7);
	CHECK_NEAR(ru[2], 0.75, 1e-7);
	CHECK_NEAR(ru[2 * W - 1], (float)(W - 1), 1e-7);
}

/* The x2 path (up2_forward / up2_backward) against PyTorch's half-pixel
 * formula written out per output: the forward bit for bit, the backward's
 * scatter within float rounding; sides of 1 and 2 (clamped taps), odd and
 * even, several planes. */
static void test_upsample_x2_path(void)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 2, 1, 5 }, { 1, 3, 1 }, { 3, 2, 2 },
					 { 2, 5, 4 }, { 2, 15, 20 } };
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		int BC = shapes[t][0], H = shapes[t][1], W = shapes[t][2], OH = 2 * H, OW = 2 * W;
		size_t nin = (size_t)BC * H * W, nout = (size_t)BC * OH * OW;
		float *x = randn(nin, 300 + t), *dy = randn(nout, 310 + t);
		float *y = xmalloc(nout * sizeof(float)), *want = xmalloc(nout * sizeof(float));
		float *dx = xcalloc(nin, sizeof(float));
		double *dref = xcalloc(nin, sizeof(double));
		for (int bc = 0; bc < BC; bc++)
			for (int oh = 0; oh < OH; oh++)
				for (int ow = 0; ow < OW; ow++) {
					float sh = fmaxf(0.5f * ((float)oh + 0.5f) - 0.5f, 0.0f);
					float sw = fmaxf(0.5f * ((float)ow + 0.5f) - 0.5f, 0.0f);
					int h0 = (int)sh, w0 = (int)sw;
					int h1 = h0 < H - 1 ? h0 + 1 : h0, w1 = w0 < W - 1 ? w0 + 1 : w0;
					float lh = sh - (float)h0, lw = sw - (float)w0;
					const float *p = x + (size_t)bc * H * W;
					size_t o = ((size_t)bc * OH + oh) * OW + ow;
					want[o] = (1.0f - lh) * ((1.0f - lw) * p[h0 * W + w0] + lw * p[h0 * W + w1]) +
						  lh * ((1.0f - lw) * p[h1 * W + w0] + lw * p[h1 * W + w1]);
					double g = dy[o], *d = dref + (size_t)bc * H * W;
					d[h0 * W + w0] += (1.0 - lh) * (1.0 - lw) * g;
					d[h0 * W + w1] += (1.0 - lh) * lw * g;
					d[h1 * W + w0] += lh * (1.0 - lw) * g;
					d[h1 * W + w1] += lh * lw * g;
				}
		upsample_bilinear_forward(y, x, 1, BC, H, W, OH, OW);
		CHECK_MSG(memcmp(y, want, nout * sizeof(float)) == 0, "%dx%d: forward differs", H, W);
		upsample_bilinear_backward(dx, dy, 1, BC, H, W, OH, OW);
		for (size_t i = 0; i < nin; i++)
			CHECK_NEAR(dx[i], dref[i], 1e-5 * (1.0 + fabs(dref[i])));
		free(x), free(dy), free(y), free(want), free(dx), free(dref);
	}
}

static void test_concat_add(void)
{
	enum { B = 2, Ca = 2, Cb = 3, HW = 4 };
	float a[B * Ca * HW], b[B * Cb * HW], out[B * (Ca + Cb) * HW];
	for (int i = 0; i < B * Ca * HW; i++)
		a[i] = (float)i;
	for (int i = 0; i < B * Cb * HW; i++)
		b[i] = 100.0f + (float)i;
	concat_forward(out, a, b, B, Ca, Cb, HW);
	CHECK(out[0] == 0.0f && out[Ca * HW] == 100.0f);
	CHECK(out[(Ca + Cb) * HW] == (float)(Ca * HW));
	CHECK(out[(Ca + Cb) * HW + Ca * HW] == 100.0f + Cb * HW);
	float da[B * Ca * HW], db[B * Cb * HW];
	for (int i = 0; i < B * Ca * HW; i++)
		da[i] = 1.0f;
	memset(db, 0, sizeof(db));
	concat_backward(da, db, out, B, Ca, Cb, HW);
	for (int i = 0; i < B * Ca * HW; i++)
		CHECK(da[i] == a[i] + 1.0f);
	for (int i = 0; i < B * Cb * HW; i++)
		CHECK(db[i] == b[i]);
	concat_backward(NULL, db, out, B, Ca, Cb, HW);
	CHECK(db[5] == 2 * b[5]);
	float s[B * Ca * HW];
	add_forward(s, a, da, B * Ca * HW);
	CHECK(s[3] == a[3] + da[3]);
	add_forward(s, s, a, B * Ca * HW); /* out == a */
	CHECK(s[3] == 2 * a[3] + da[3]);
	add_inplace(s, a, B * Ca * HW);
	CHECK(s[3] == 3 * a[3] + da[3]);
}

/* ---- losses ------------------------------------------------------------ */

struct loss_arg {
	int B, K, HW, ignore;
	float *z, *t;
	int *labels;
};

static double xent_obj(void *p)
{
	struct loss_arg *a = p;
	return pixel_xent(NULL, a->z, a->labels, a->B, a->K, a->HW, a->ignore, 1.0f, NULL);
}

static double bce_obj(void *p)
{
	struct loss_arg *a = p;
	return bce_logits(NULL, a->z, a->t, a->B, a->K, 1.0f);
}

static void test_loss_grad_fd(void)
{
	struct loss_arg a = { 3, 4, 5, 255, NULL, NULL, NULL };
	size_t n = (size_t)a.B * a.K * a.HW;
	a.z = randn(n, 110);
	a.labels = xmalloc((size_t)a.B * a.HW * sizeof(int));
	for (int i = 0; i < a.B * a.HW; i++)
		a.labels[i] = i % 7 == 3 ? 255 : i % 11 == 5 ? -1 : i % a.K;
	float *dz = randn(n, 111), *dz0 = dup_floats(dz, n);
	long count;
	double L = pixel_xent(dz, a.z, a.labels, a.B, a.K, a.HW, a.ignore, 1.0f, &count);
	long want = 0;
	for (int i = 0; i < a.B * a.HW; i++)
		want += a.labels[i] >= 0 && a.labels[i] < a.K;
	CHECK(count == want);
	CHECK(L > 0.0);
	fd_check("xent dlogits", a.z, n, dz, dz0, xent_obj, &a, 1e-2f, 1e-3, 1e-4);
	/* ignored pixels get no gradient; grad_scale scales */
	float *d2 = xcalloc(n, sizeof(float)), *d3 = xcalloc(n, sizeof(float));
	pixel_xent(d2, a.z, a.labels, a.B, a.K, a.HW, a.ignore, 1.0f, NULL);
	pixel_xent(d3, a.z, a.labels, a.B, a.K, a.HW, a.ignore, 0.25f, NULL);
	for (int b = 0; b < a.B; b++)
		for (int p = 0; p < a.HW; p++) {
			int y = a.labels[b * a.HW + p];
			for (int k = 0; k < a.K; k++) {
				size_t i = ((size_t)b * a.K + k) * a.HW + p;
				if (y < 0 || y >= a.K)
					CHECK(d2[i] == 0.0f);
				CHECK_NEAR(d3[i], 0.25f * d2[i], 1e-7);
			}
		}
	free(a.z), free(a.labels), free(dz), free(dz0), free(d2), free(d3);

	struct loss_arg c = { 4, 3, 1, 0, NULL, NULL, NULL };
	n = (size_t)c.B * c.K;
	c.z = randn(n, 112), c.t = xmalloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		c.t[i] = (float)(i % 5) / 4.0f;
	c.z[0] = 40.0f, c.z[1] = -40.0f; /* the stable form */
	dz = randn(n, 113), dz0 = dup_floats(dz, n);
	L = bce_logits(dz, c.z, c.t, c.B, c.K, 1.0f);
	CHECK(isfinite(L));
	fd_check("bce dlogits", c.z, n, dz, dz0, bce_obj, &c, 1e-2f, 1e-3, 1e-4);
	free(c.z), free(c.t), free(dz), free(dz0);
}

/* ---- metrics ----------------------------------------------------------- */

static void test_confusion(void)
{
	/* B=1, K=3, HW=6: predictions 0,1,2,2,1,0 against labels 0,1,1,2,9,0 */
	enum { K = 3, HW = 6 };
	int pred[HW] = { 0, 1, 2, 2, 1, 0 }, lab[HW] = { 0, 1, 1, 2, 9, 0 };
	float z[K * HW];
	for (int k = 0; k < K; k++)
		for (int p = 0; p < HW; p++)
			z[k * HW + p] = k == pred[p] ? 1.0f : -(float)k;
	double conf[K * K] = { 0 }, per[K];
	confusion_update(conf, z, lab, 1, K, HW);
	CHECK(conf[0] == 2 && conf[4] == 1 && conf[5] == 1 && conf[8] == 1);
	double sum = 0;
	for (int i = 0; i < K * K; i++)
		sum += conf[i];
	CHECK(sum == 5); /* the label 9 pixel is skipped */
	/* IoU: class 0 2/2, class 1 1/2, class 2 1/2 */
	CHECK_NEAR(confusion_miou(conf, K, per), (1.0 + 0.5 + 0.5) / 3, 1e-12);
	CHECK_NEAR(per[1], 0.5, 1e-12);
	CHECK_NEAR(confusion_pixel_acc(conf, K), 4.0 / 5.0, 1e-12);
	/* a class absent from labels and predictions is left out of the mean */
	double c4[16] = { 3, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4 }, p4[4];
	double m = confusion_miou(c4, 4, p4);
	CHECK(p4[2] == -1.0);
	CHECK_NEAR(m, (3.0 / 4 + 2.0 / 3 + 1.0) / 3, 1e-12);
}

static void test_map_hand(void)
{
	/* scores .9 .8 .7 .6 with targets 1 0 1 0: AP = 0.5*1 + 0.5*(2/3) */
	float s[4] = { 0.9f, 0.8f, 0.7f, 0.6f }, t[4] = { 1, 0, 1, 0 };
	double per[1];
	CHECK_NEAR(mean_average_precision(s, t, 4, 1, per), 0.5 + 0.5 * 2.0 / 3.0, 1e-12);
	/* all tied: precision at the one threshold = positives / n */
	float s2[4] = { 0.5f, 0.5f, 0.5f, 0.5f };
	CHECK_NEAR(mean_average_precision(s2, t, 4, 1, per), 0.5, 1e-12);
	/* no positive: -1 and left out */
	float s3[4] = { 0.1f, 0.9f, 0.2f, 0.8f }, t3[4] = { 1, 0, 0, 0 };
	double per2[2];
	CHECK_NEAR(mean_average_precision(s3, t3, 2, 2, per2), 0.5, 1e-12);
	CHECK(per2[1] == -1.0);
}

/* ---- augmentation ------------------------------------------------------ */

static void test_augment_params(void)
{
	enum { B = 2000 };
	uint32_t ids[B];
	for (int i = 0; i < B; i++)
		ids[i] = 1000 + 7 * i;
	struct augment *a = xmalloc(B * sizeof(*a)), *b = xmalloc(B * sizeof(*b));
	augment_params(a, B, 1, 0.5f, 2.0f, 42, 3, ids);
	augment_params(b, B, 1, 0.5f, 2.0f, 42, 3, ids);
	CHECK(memcmp(a, b, B * sizeof(*a)) == 0);
	int flips = 0;
	for (int i = 0; i < B; i++) {
		flips += a[i].flip;
		CHECK(a[i].scale >= 0.5f && a[i].scale <= 2.0f);
		CHECK(a[i].fy >= 0.0f && a[i].fy < 1.0f && a[i].fx >= 0.0f && a[i].fx < 1.0f);
	}
	CHECK(flips > 900 && flips < 1100);
	/* a sample's transform depends on its id, not its position in the batch */
	struct augment one;
	augment_params(&one, 1, 1, 0.5f, 2.0f, 42, 3, &ids[17]);
	CHECK(memcmp(&one, &a[17], sizeof(one)) == 0);
	/* another step, another transform */
	augment_params(b, B, 1, 0.5f, 2.0f, 42, 4, ids);
	CHECK(memcmp(a, b, B * sizeof(*a)) != 0);
	/* no flip, no scale */
	augment_params(b, B, 0, 0.0f, 0.0f, 42, 3, ids);
	for (int i = 0; i < B; i++)
		CHECK(b[i].flip == 0 && b[i].scale == 1.0f && b[i].fy == a[i].fy);
	augment_params(b, 3, 0, 1.0f, 1.0f, 42, 3, NULL);
	CHECK(b[0].scale == 1.0f);
	free(a), free(b);
}

static void test_augment_flip_pattern(void)
{
	enum { H = 3, W = 4, C = 2 };
	float img[C * H * W], out[C * H * W];
	int lab[H * W], lout[H * W];
	for (int c = 0; c < C; c++)
		for (int i = 0; i < H * W; i++)
			img[c * H * W + i] = (float)(100 * c + i);
	for (int i = 0; i < H * W; i++)
		lab[i] = i;
	struct augment a = { 1, 1.0f, 0.3f, 0.7f };
	augment_image(out, img, &a, 1, C, H, W);
	augment_labels(lout, lab, &a, 1, H, W, 255);
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				CHECK(out[(c * H + y) * W + x] == img[(c * H + y) * W + W - 1 - x]);
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++)
			CHECK(lout[y * W + x] == lab[y * W + W - 1 - x]);
	/* no flip, scale 1: the identity */
	a.flip = 0;
	augment_image(out, img, &a, 1, C, H, W);
	CHECK(memcmp(out, img, sizeof(img)) == 0);
	augment_labels(lout, lab, &a, 1, H, W, 255);
	CHECK(memcmp(lout, lab, sizeof(lab)) == 0);
}

/* without flip, augment_image is upsample_bilinear_forward to the scaled
 * size, then the crop window (zoom in) or the centred image padded with 0
 * (zoom out), bit for bit */
static void test_augment_vs_resize(void)
{
	enum { C = 2, H = 8, W = 10 };
	float x[C * H * W], out[C * H * W], big[C * 12 * 15], small[C * 4 * 5];
	fill_normal(x, C * H * W, 120);
	struct augment a = { 0, 1.5f, 0.5f, 0.99f };
	augment_image(out, x, &a, 1, C, H, W);
	upsample_bilinear_forward(big, x, 1, C, H, W, 12, 15);
	int oy = 2, ox = 4; /* floor(0.5*(12-8)), floor(0.99*(15-10)) */
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int xx = 0; xx < W; xx++)
				CHECK(out[(c * H + y) * W + xx] == big[(c * 12 + y + oy) * 15 + xx + ox]);
	struct augment z = { 0, 0.5f, 0.3f, 0.3f };
	augment_image(out, x, &z, 1, C, H, W);
	upsample_bilinear_forward(small, x, 1, C, H, W, 4, 5);
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int xx = 0; xx < W; xx++) {
				int in = y >= 2 && y < 6 && xx >= 2 && xx < 7; /* offsets (8-4)/2, (10-5)/2 */
				float want = in ? small[(c * 4 + y - 2) * 5 + xx - 2] : 0.0f;
				CHECK(out[(c * H + y) * W + xx] == want);
			}
}

/* The one-hot image of a label map (piecewise constant in big blocks) goes
 * through the same geometry: where channel k of the resized image is exactly
 * 1 the label map says k; where every channel is 0 (padding) it says
 * `ignore`; elsewhere (bilinear mixes at block edges) some channel is > 0
 * there and the label is one of those classes. */
static void test_augment_labels_agree(void)
{
	enum { B = 24, K = 4, H = 16, W = 20, HW = H * W };
	float *img = xcalloc(B * K * HW, sizeof(float)), *out = xmalloc(B * K * HW * sizeof(float));
	int *lab = xmalloc(B * HW * sizeof(int)), *lout = xmalloc(B * HW * sizeof(int));
	for (int b = 0; b < B; b++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				int v = (y >= H / 2) * 2 + (x >= W / 3);
				lab[b * HW + y * W + x] = v;
				img[(b * K + v) * HW + y * W + x] = 1.0f;
			}
	struct augment a[B];
	augment_params(a, B, 1, 0.6f, 1.7f, 9, 1, NULL);
	augment_image(out, img, a, B, K, H, W);
	augment_labels(lout, lab, a, B, H, W, 255);
	long exact = 0, padded = 0, total = (long)B * HW;
	for (int b = 0; b < B; b++)
		for (int i = 0; i < HW; i++) {
			int l = lout[b * HW + i], one = -1, any = 0;
			for (int k = 0; k < K; k++) {
				float v = out[(b * K + k) * HW + i];
				one = v == 1.0f ? k : one;
				any |= v > 0.0f;
			}
			if (!any) {
				CHECK(l == 255);
				padded++;
			} else if (one >= 0) {
				CHECK_MSG(l == one, "sample %d pixel %d: image class %d label %d", b, i,
					  one, l);
				exact++;
			} else {
				CHECK(l >= 0 && l < K && out[(b * K + l) * HW + i] > 0.0f);
			}
		}
	CHECK(padded > 0);
	CHECK_MSG(exact + padded > total * 7 / 10, "exact %ld padded %ld of %ld", exact, padded,
		  total);
	/* samples that zoom in are not padded */
	for (int b = 0; b < B; b++)
		if (a[b].scale >= 1.0f)
			for (int i = 0; i < HW; i++)
				CHECK(lout[b * HW + i] != 255);
	free(img), free(out), free(lab), free(lout);
}

static void test_time_crop(void)
{
	enum { B = 50, F = 3, T = 40, Tc = 25 };
	float *x = xmalloc(B * F * T * sizeof(float)), *o = xmalloc(B * F * Tc * sizeof(float));
	float *o2 = xmalloc(B * F * Tc * sizeof(float));
	for (int i = 0; i < B * F * T; i++)
		x[i] = (float)(i % T) + 1000.0f * (float)(i / T);
	time_crop(o, x, B, F, T, Tc, 0, 1, 2, NULL);
	for (int b = 0; b < B; b++)
		CHECK(o[(size_t)b * F * Tc] == x[(size_t)b * F * T] + (T - Tc) / 2);
	uint32_t ids[B];
	for (int i = 0; i < B; i++)
		ids[i] = (uint32_t)i;
	time_crop(o, x, B, F, T, Tc, 1, 1, 2, NULL);
	time_crop(o2, x, B, F, T, Tc, 1, 1, 2, ids);
	CHECK(memcmp(o, o2, B * F * Tc * sizeof(float)) == 0);
	int lo = T, hi = -1;
	for (int b = 0; b < B; b++) {
		int t0 = (int)(o[(size_t)b * F * Tc] - x[(size_t)b * F * T]);
		CHECK(t0 >= 0 && t0 <= T - Tc);
		lo = t0 < lo ? t0 : lo, hi = t0 > hi ? t0 : hi;
		for (int f = 0; f < F; f++)
			for (int t = 0; t < Tc; t++)
				CHECK(o[((size_t)b * F + f) * Tc + t] ==
				      x[((size_t)b * F + f) * T + t0 + t]);
	}
	CHECK(hi > lo); /* not all the same window */
	time_crop(o2, x, B, F, T, Tc, 1, 1, 3, ids);
	CHECK(memcmp(o, o2, B * F * Tc * sizeof(float)) != 0);
	time_crop(o2, x, 1, F, T, T, 1, 1, 3, ids); /* Tc == T: a copy */
	CHECK(memcmp(o2, x, F * T * sizeof(float)) == 0);
	free(x), free(o), free(o2);
}

/* ---- the PyTorch fixture ----------------------------------------------- */


/* the tensor "<cs>/<what>" with n values; NULL (and a failed check) if absent */
static const float *fx(const struct fixture *f, const char *cs, const char *what, size_t n)
{
	char name[96];
	snprintf(name, sizeof(name), "%s/%s", cs, what);
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0) {
			CHECK_MSG(f->t[i].n == n, "%s has %zu values, want %zu", name, f->t[i].n, n);
			return f->t[i].n == n ? f->t[i].v : NULL;
		}
	CHECK_MSG(0, "fixture has no tensor '%s'", name);
	return NULL;
}

/* the shape tensor, as ints */
static int fx_shape(const struct fixture *f, const char *cs, int *v, int n)
{
	const float *s = fx(f, cs, "shape", (size_t)n);
	if (!s)
		return -1;
	for (int i = 0; i < n; i++)
		v[i] = (int)s[i];
	return 0;
}

/* 1e-5 relative, 1e-5 absolute for values near zero (float32 sums in another
 * order); the worst relative error (over values above 1e-2) is kept */
static double torch_worst;
static char torch_worst_what[64];

static void check_torch(const char *what, const float *got, const float *want, size_t n)
{
	if (!want)
		return;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]), m = fmax(fabs(got[i]), fabs(want[i]));
		if (m > 1e-2 && d / m > torch_worst) {
			torch_worst = d / m;
			snprintf(torch_worst_what, sizeof(torch_worst_what), "%s[%zu] = %.3g", what,
				 i, (double)want[i]);
		}
		CHECK_MSG(d <= 1e-5 + 1e-5 * m, "%s[%zu]: %.9g vs torch %.9g", what, i,
			  (double)got[i], (double)want[i]);
	}
}

static void torch_conv(const struct fixture *f, const char *cs)
{
	int v[11];
	if (fx_shape(f, cs, v, 11))
		return;
	int B = v[0];
	struct conv2d_shape s;
	CHECK(conv2d_shape_init(&s, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]) == 0);
	size_t nin = (size_t)B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.KH * s.KW;
	size_t nout = (size_t)B * s.OC * s.OH * s.OW;
	const float *x = fx(f, cs, "x", nin), *w = fx(f, cs, "weight", nw);
	const float *bias = v[10] ? fx(f, cs, "bias", s.OC) : NULL;
	const float *dout = fx(f, cs, "dout", nout);
	if (!x || !w || !dout || (v[10] && !bias))
		return;
	size_t ns = conv2d_scratch(&s, B);
	float *scratch = xmalloc((ns ? ns : 1) * sizeof(float)), *out = xmalloc(nout * sizeof(float));
	float *dx = xcalloc(nin, sizeof(float)), *dw = xcalloc(nw, sizeof(float));
	float *db = xcalloc(s.OC, sizeof(float));
	conv2d_forward(out, x, w, bias, &s, B, scratch);
	check_torch(cs, out, fx(f, cs, "out", nout), nout);
	conv2d_forward_naive(out, x, w, bias, &s, B);
	check_torch(cs, out, fx(f, cs, "out", nout), nout);
	conv2d_backward(dx, dw, v[10] ? db : NULL, dout, x, w, &s, B, scratch);
	check_torch(cs, dx, fx(f, cs, "dx", nin), nin);
	check_torch(cs, dw, fx(f, cs, "dweight", nw), nw);
	if (v[10])
		check_torch(cs, db, fx(f, cs, "dbias", s.OC), s.OC);
	free(scratch), free(out), free(dx), free(dw), free(db);
}

static void torch_bn(const struct fixture *f)
{
	int v[4];
	if (fx_shape(f, "bn", v, 4))
		return;
	int B = v[0], C = v[1], HW = v[2] * v[3];
	size_t n = (size_t)B * C * HW;
	const float *x = fx(f, "bn", "x", n), *g = fx(f, "bn", "gamma", C);
	const float *b = fx(f, "bn", "beta", C), *dout = fx(f, "bn", "dout", n);
	const float *rm0 = fx(f, "bn", "rm0", C), *rv0 = fx(f, "bn", "rv0", C);
	if (!x || !g || !b || !dout || !rm0 || !rv0)
		return;
	float *out = xmalloc(n * sizeof(float)), *dx = xcalloc(n, sizeof(float));
	float mean[16], rstd[16], dg[16] = { 0 }, dbt[16] = { 0 }, rm[16], rv[16];
	double bs[32];
	CHECK(C <= 16);
	batchnorm_forward(out, mean, rstd, x, g, b, B, C, HW, B, 1e-5f, bs, 0, NULL);
	check_torch("bn out", out, fx(f, "bn", "out", n), n);
	batchnorm_backward(dx, dg, dbt, dout, x, mean, rstd, g, B, C, HW, B, NULL, 0, NULL);
	check_torch("bn dx", dx, fx(f, "bn", "dx", n), n);
	check_torch("bn dgamma", dg, fx(f, "bn", "dgamma", C), C);
	check_torch("bn dbeta", dbt, fx(f, "bn", "dbeta", C), C);
	memcpy(rm, rm0, C * sizeof(float));
	memcpy(rv, rv0, C * sizeof(float));
	batchnorm_update_running(rm, rv, bs, 1, C, 0.1f);
	check_torch("bn running_mean", rm, fx(f, "bn", "rm1", C), C);
	check_torch("bn running_var", rv, fx(f, "bn", "rv1", C), C);
	batchnorm_forward_eval(out, x, g, b, rm, rv, B, C, HW, 1e-5f, 0);
	check_torch("bn eval", out, fx(f, "bn", "out_eval", n), n);
	free(out), free(dx);
}

/* maxpool, avgpool, adaptive pool, interpolate: x, out, dout, dx */
static void torch_simple(const struct fixture *f, const char *cs, enum pool_kind kind)
{
	int v[7] = { 0 }, nshape = kind == P_MAX ? 7 : kind == P_AVG ? 6 : kind == P_UP ? 6 : 4;
	if (fx_shape(f, cs, v, nshape))
		return;
	int B = v[0], C = v[1], H = v[2], W = v[3], OH = 1, OW = 1;
	if (kind == P_MAX)
		OH = (H + 2 * v[6] - v[4]) / v[5] + 1, OW = (W + 2 * v[6] - v[4]) / v[5] + 1;
	else if (kind == P_AVG)
		OH = (H - v[4]) / v[5] + 1, OW = (W - v[4]) / v[5] + 1;
	else if (kind == P_UP)
		OH = v[4], OW = v[5];
	size_t nin = (size_t)B * C * H * W, nout = (size_t)B * C * OH * OW;
	const float *x = fx(f, cs, "x", nin), *dout = fx(f, cs, "dout", nout);
	if (!x || !dout)
		return;
	float *out = xmalloc(nout * sizeof(float)), *dx = xcalloc(nin, sizeof(float));
	int *am = xmalloc(nout * sizeof(int));
	switch (kind) {
	case P_MAX:
		maxpool2d_forward(out, am, x, B, C, H, W, v[4], v[5], v[6]);
		maxpool2d_backward(dx, dout, am, B, C, H, W, OH, OW);
		break;
	case P_AVG:
		avgpool2d_forward(out, x, B, C, H, W, v[4], v[5]);
		avgpool2d_backward(dx, dout, B, C, H, W, v[4], v[5]);
		break;
	case P_GAP:
		global_avgpool_forward(out, x, B, C, H * W);
		global_avgpool_backward(dx, dout, B, C, H * W);
		break;
	case P_UP:
		upsample_bilinear_forward(out, x, B, C, H, W, OH, OW);
		upsample_bilinear_backward(dx, dout, B, C, H, W, OH, OW);
		break;
	case P_FRAME:
		break;
	}
	check_torch(cs, out, fx(f, cs, "out", nout), nout);
	check_torch(cs, dx, fx(f, cs, "dx", nin), nin);
	free(out), free(dx), free(am);
}

static void torch_losses(const struct fixture *f)
{
	int v[4];
	if (fx_shape(f, "xent", v, 4) == 0) {
		int B = v[0], K = v[1], HW = v[2] * v[3];
		size_t n = (size_t)B * K * HW;
		const float *z = fx(f, "xent", "logits", n), *lf = fx(f, "xent", "labels", B * HW);
		const float *loss = fx(f, "xent", "loss", 1), *cnt = fx(f, "xent", "count", 1);
		if (z && lf && loss && cnt) {
			int *lab = xmalloc((size_t)B * HW * sizeof(int));
			for (int i = 0; i < B * HW; i++)
				lab[i] = (int)lf[i];
			float *dz = xcalloc(n, sizeof(float));
			long count;
			double L = pixel_xent(NULL, z, lab, B, K, HW, 255, 1.0f, &count);
			CHECK(count == (long)cnt[0]);
			pixel_xent(dz, z, lab, B, K, HW, 255, 1.0f / (float)count, NULL);
			float mean = (float)(L / count);
			check_torch("xent loss", &mean, loss, 1);
			check_torch("xent dlogits", dz, fx(f, "xent", "dlogits", n), n);
			free(lab), free(dz);
		}
	}
	if (fx_shape(f, "bce", v, 2) == 0) {
		int B = v[0], K = v[1];
		size_t n = (size_t)B * K;
		const float *z = fx(f, "bce", "logits", n), *t = fx(f, "bce", "targets", n);
		const float *loss = fx(f, "bce", "loss", 1);
		if (z && t && loss) {
			float *dz = xcalloc(n, sizeof(float));
			float mean = (float)(bce_logits(dz, z, t, B, K, 1.0f / (float)n) / (double)n);
			check_torch("bce loss", &mean, loss, 1);
			check_torch("bce dlogits", dz, fx(f, "bce", "dlogits", n), n);
			free(dz);
		}
	}
	if (fx_shape(f, "map", v, 2) == 0) {
		int n = v[0], K = v[1];
		const float *s = fx(f, "map", "scores", (size_t)n * K);
		const float *t = fx(f, "map", "targets", (size_t)n * K);
		const float *ap = fx(f, "map", "ap", K), *mean = fx(f, "map", "mean", 1);
		if (s && t && ap && mean) {
			double per[16];
			float m = (float)mean_average_precision(s, t, n, K, per), pf[16];
			CHECK(K <= 16);
			for (int k = 0; k < K; k++)
				pf[k] = (float)per[k];
			check_torch("map", &m, mean, 1);
			check_torch("map per class", pf, ap, K);
		}
	}
}

static void test_torch_fixture(void)
{
	char *path = path_join(test_fixtures(), "cnn_torch.txt");
	struct fixture f;
	int rc = fixture_load(&f, path);
	CHECK_MSG(rc == 0, "cannot load %s (regenerate: /usr/bin/python3 tests/fixtures/gen_cnn.py)",
		  path);
	free(path);
	if (rc != 0) {
		fixture_release(&f);
		return;
	}
	static const char *convs[] = { "conv_a", "conv_b", "conv_c", "conv_d", "conv_e" };
	for (size_t i = 0; i < sizeof(convs) / sizeof(convs[0]); i++)
		torch_conv(&f, convs[i]);
	torch_bn(&f);
	torch_simple(&f, "maxpool_a", P_MAX);
	torch_simple(&f, "maxpool_b", P_MAX);
	torch_simple(&f, "avgpool_a", P_AVG);
	torch_simple(&f, "avgpool_b", P_AVG);
	torch_simple(&f, "gap", P_GAP);
	torch_simple(&f, "up_a", P_UP);
	torch_simple(&f, "up_b", P_UP);
	torch_losses(&f);
	printf("  max relative error vs PyTorch (values > 1e-2): %.3g at %s\n", torch_worst,
	       torch_worst_what);
	fixture_release(&f);
}

int main(void)
{
	RUN(test_conv_shape);
	RUN(test_conv_fast_vs_naive);
	RUN(test_winograd_small);
	RUN(test_winograd_tiles);
	RUN(test_wcache);
	RUN(test_wcache_backward);
	RUN(test_conv_grad_fd);
	RUN(test_batchnorm_grad_fd);
	RUN(test_batchnorm_micro);
	RUN(test_batchnorm_relu);
	RUN(test_batchnorm_pool);
	RUN(test_batchnorm_large);
	RUN(test_pool_grad_fd);
	RUN(test_upsample_identity_and_x2);
	RUN(test_upsample_x2_path);
	RUN(test_concat_add);
	RUN(test_loss_grad_fd);
	RUN(test_confusion);
	RUN(test_map_hand);
	RUN(test_augment_params);
	RUN(test_augment_flip_pattern);
	RUN(test_augment_vs_resize);
	RUN(test_augment_labels_agree);
	RUN(test_time_crop);
	RUN(test_torch_fixture);
	return test_summary();
}
