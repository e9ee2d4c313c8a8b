/*
 * cnn.c - the convolutional layers, losses and metrics of cnn.h.
 *
 * Owns no state: every function works on buffers the caller passes in (the
 * layouts and the accumulate-into-gradients rule are cnn.h's). docs/layers.md
 * describes the kernels and how they are tested.
 *
 * conv2d is im2col + cblas_sgemm. The im2col buffer is bounded: a large
 * output (a spectrogram at full resolution) is cut into tiles of whole output
 * rows, each one sgemm writing straight into the output with ldc = OH*OW; a
 * small output (a late ResNet stage, 8x16) puts the columns of several
 * samples side by side so one sgemm sees a wide matrix, and the result is
 * scattered back to NCHW. A 1x1, stride-1, pad-0 convolution needs no
 * im2col: the input is the column matrix. conv_plan() picks the tiling from
 * the shape and B alone, so conv2d_scratch, forward and backward agree.
 */
#include "cnn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"
#include "winograd.h"

/* ---- sums ------------------------------------------------------------- */

/*
 * Sums over a channel's values (batch norm, the conv bias gradient): float partial sums in 8 lanes (which the
 * compiler vectorizes) over chunks of 512, each chunk added into a double, so
 * the rounding error stays that of a 64-term float sum however large HW is.
 */
#define BN_CHUNK 512

static double bn_sum(const float *x, int n)
{
	double total = 0.0;
	for (int i0 = 0; i0 < n; i0 += BN_CHUNK) {
		int m = n - i0 < BN_CHUNK ? n - i0 : BN_CHUNK, i = 0;
		float acc[8] = { 0 };
		for (; i + 8 <= m; i += 8)
			for (int j = 0; j < 8; j++)
				acc[j] += x[i0 + i + j];
		for (; i < m; i++)
			acc[0] += x[i0 + i];
		for (int j = 0; j < 8; j++)
			total += acc[j];
	}
	return total;
}

/* sum (x - mean)^2 */
static double bn_sumsq(const float *x, int n, float mean)
{
	double total = 0.0;
	for (int i0 = 0; i0 < n; i0 += BN_CHUNK) {
		int m = n - i0 < BN_CHUNK ? n - i0 : BN_CHUNK, i = 0;
		float acc[8] = { 0 };
		for (; i + 8 <= m; i += 8)
			for (int j = 0; j < 8; j++) {
				float d = x[i0 + i + j] - mean;
				acc[j] += d * d;
			}
		for (; i < m; i++) {
			float d = x[i0 + i] - mean;
			acc[0] += d * d;
		}
		for (int j = 0; j < 8; j++)
			total += acc[j];
	}
	return total;
}

/* dy where y > 0, else 0 (the gradient through a ReLU of output y), as a
 * product with the 0/1 mask so the loops below vectorize (a select in an
 * 8-lane block does not); +-0 and a non-finite dy where y <= 0 aside, the
 * same as the select. */
static inline float relu_gate(float dy, float y)
{
	return dy * (float)(y > 0.0f);
}

/* bn_sums_dy with dy gated by the ReLU output y */
static void bn_sums_dy_relu(const float *dy, const float *y, const float *x, int n, float mean,
			    double *sdy, double *sdyx)
{
	for (int i0 = 0; i0 < n; i0 += BN_CHUNK) {
		int m = n - i0 < BN_CHUNK ? n - i0 : BN_CHUNK, i = 0;
		float a[8] = { 0 }, b[8] = { 0 };
		for (; i + 8 <= m; i += 8)
			for (int j = 0; j < 8; j++) {
				float g = relu_gate(dy[i0 + i + j], y[i0 + i + j]);
				a[j] += g;
				b[j] += g * (x[i0 + i + j] - mean);
			}
		for (; i < m; i++) {
			float g = relu_gate(dy[i0 + i], y[i0 + i]);
			a[0] += g;
			b[0] += g * (x[i0 + i] - mean);
		}
		for (int j = 0; j < 8; j++) {
			*sdy += a[j];
			*sdyx += b[j];
		}
	}
}

/* sum dy and sum dy * (x - mean) */
static void bn_sums_dy(const float *dy, const float *x, int n, float mean, double *sdy,
		       double *sdyx)
{
	for (int i0 = 0; i0 < n; i0 += BN_CHUNK) {
		int m = n - i0 < BN_CHUNK ? n - i0 : BN_CHUNK, i = 0;
		float a[8] = { 0 }, b[8] = { 0 };
		for (; i + 8 <= m; i += 8)
			for (int j = 0; j < 8; j++) {
				a[j] += dy[i0 + i + j];
				b[j] += dy[i0 + i + j] * (x[i0 + i + j] - mean);
			}
		for (; i < m; i++) {
			a[0] += dy[i0 + i];
			b[0] += dy[i0 + i] * (x[i0 + i] - mean);
		}
		for (int j = 0; j < 8; j++) {
			*sdy += a[j];
			*sdyx += b[j];
		}
	}
}

/* ---- conv2d ------------------------------------------------------------ */

int conv2d_shape_init(struct conv2d_shape *s, int C, int H, int W, int OC, int KH, int KW,
		      int stride, int pad, int dil)
{
	memset(s, 0, sizeof(*s));
	if (C <= 0 || H <= 0 || W <= 0 || OC <= 0 || KH <= 0 || KW <= 0 || stride <= 0 ||
	    pad < 0 || dil <= 0)
		return mke_error("conv2d: bad shape C=%d H=%d W=%d OC=%d kernel %dx%d stride %d "
				 "pad %d dilation %d",
				 C, H, W, OC, KH, KW, stride, pad, dil);
	int nh = H + 2 * pad - dil * (KH - 1) - 1, nw = W + 2 * pad - dil * (KW - 1) - 1;
	if (nh < 0 || nw < 0)
		return mke_error("conv2d: input %dx%d is smaller than the %dx%d kernel "
				 "(dilation %d, pad %d): the output would be empty",
				 H, W, KH, KW, dil, pad);
	s->C = C, s->H = H, s->W = W;
	s->OC = OC, s->KH = KH, s->KW = KW;
	s->stride = stride, s->pad = pad, s->dil = dil;
	s->OH = nh / stride + 1;
	s->OW = nw / stride + 1;
	return 0;
}

/* How a batch is cut into sgemm calls. */
struct conv_plan {
	int direct;   /* 1x1, stride 1, pad 0: no im2col */
	int group;    /* samples per sgemm (> 1 only when a sample is one tile) */
	int rows;     /* output rows per tile when group == 1 */
	size_t ncol;  /* columns the scratch holds (>= those of any tile) */
	size_t CK;    /* rows of the column matrix, C*KH*KW */
};

/* Target columns per sgemm: wide enough that OpenBLAS runs at full speed,
 * small enough that the column tile stays around 4 MB (in L3). */
#ifndef CONV_TILE_FLOATS
#define CONV_TILE_FLOATS ((size_t)1 << 20)
#endif
#ifndef CONV_MIN_COLS
#define CONV_MIN_COLS 512
#endif
#ifndef CONV_MAX_COLS
#define CONV_MAX_COLS 8192
#endif

static void conv_plan(struct conv_plan *p, const struct conv2d_shape *s, int B)
{
	size_t OHW = (size_t)s->OH * s->OW;
	p->CK = (size_t)s->C * s->KH * s->KW;
	p->direct = s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
	size_t target = CONV_TILE_FLOATS / p->CK;
	if (target < CONV_MIN_COLS)
		target = CONV_MIN_COLS;
	if (target > CONV_MAX_COLS)
		target = CONV_MAX_COLS;
	if (p->direct) {
		p->group = 1, p->rows = s->OH, p->ncol = OHW;
	} else if (OHW >= target || B <= 1) {
		/* equal tiles of about target columns */
		p->group = 1;
		int rows = (int)(target / (size_t)s->OW);
		if (rows < 1)
			rows = 1;
		int ntiles = (s->OH + rows - 1) / rows;
		p->rows = (s->OH + ntiles - 1) / ntiles;
		p->ncol = (size_t)p->rows * s->OW;
	} else {
		/* the scratch is sized by the unbalanced group, which grows with B,
		 * so scratch for a batch B serves every smaller batch */
		size_t g = target / OHW;
		int g0 = g > (size_t)B ? B : (int)g;
		int ngroups = (B + g0 - 1) / g0;
		p->group = (B + ngroups - 1) / ngroups;
		p->rows = s->OH;
		p->ncol = (size_t)g0 * OHW;
	}
}

size_t conv2d_scratch(const struct conv2d_shape *s, int B)
{
	struct conv_plan p;
	if (wino_applies(s))
		return wino_scratch(s);
	conv_plan(&p, s, B);
	if (p.direct)
		return 0;
	/* the column tile, and where the group's (OC, group*OHW) result lands */
	return p.CK * p.ncol + (p.ncol > (size_t)s->OH * s->OW ? (size_t)s->OC * p.ncol : 0);
}

/* Output columns [lo,hi) whose input column ow*stride + off lies in [0,W). */
static void valid_cols(int off, int stride, int W, int OW, int *lo, int *hi)
{
	int l = off < 0 ? (-off + stride - 1) / stride : 0;
	int h = W - off > 0 ? (W - off + stride - 1) / stride : 0;
	*lo = l < OW ? l : OW;
	*hi = h < OW ? h : OW;
	if (*hi < *lo)
		*hi = *lo;
}

/*
 * One kernel tap's rows [oh0,oh1) of a stride-1 convolution whose output is
 * as wide as its input (OW == W, a "same" convolution): the rows whose input
 * row exists are one block of the input shifted by `off` columns, so one
 * memcpy for the block, then zeros at the |off| columns of each row that fall
 * in the padding (the copy put a neighbouring row's values there). Three
 * libc calls per 32-float row otherwise dominate at small widths.
 */
static void im2col_same_tap(float *dst, const float *plane, const struct conv2d_shape *s, int kh,
			    int off, int lo, int hi, int oh0, int oh1)
{
	int OW = s->OW, r0 = s->pad - kh * s->dil; /* output row r0 reads input row 0 */
	int a = oh0 > r0 ? oh0 : r0, b = oh1 < r0 + s->H ? oh1 : r0 + s->H;
	if (b < a)
		b = a;
	if (a > oh0)
		memset(dst, 0, (size_t)(a - oh0) * OW * sizeof(float));
	if (b < oh1)
		memset(dst + (size_t)(b - oh0) * OW, 0, (size_t)(oh1 - b) * OW * sizeof(float));
	if (b == a)
		return;
	float *d = dst + (size_t)(a - oh0) * OW;
	const float *src = plane + (size_t)(a - r0) * s->W;
	size_t n = (size_t)(b - a) * OW;
	if (off >= 0)
		memcpy(d, src + off, (n - (size_t)off) * sizeof(float));
	else
		memcpy(d - off, src, (n + (size_t)off) * sizeof(float));
	for (int r = 0; r < b - a; r++) {
		float *row = d + (size_t)r * OW;
		for (int ow = 0; ow < lo; ow++)
			row[ow] = 0.0f;
		for (int ow = hi; ow < OW; ow++)
			row[ow] = 0.0f;
	}
}

/* img (C,H,W) -> col rows (C*KH*KW) of output rows [oh0,oh1), row stride ld */
static void im2col(float *col, size_t ld, const float *img, const struct conv2d_shape *s,
		   int oh0, int oh1)
{
	int OW = s->OW, st = s->stride;
	int same = st == 1 && OW == s->W;
	for (int c = 0; c < s->C; c++)
		for (int kh = 0; kh < s->KH; kh++)
			for (int kw = 0; kw < s->KW; kw++) {
				float *dst = col + (((size_t)c * s->KH + kh) * s->KW + kw) * ld;
				int off = kw * s->dil - s->pad, lo, hi;
				valid_cols(off, st, s->W, OW, &lo, &hi);
				if (same && off < s->W && -off < s->W) {
					im2col_same_tap(dst, img + (size_t)c * s->H * s->W, s, kh,
							off, lo, hi, oh0, oh1);
					continue;
				}
				for (int oh = oh0; oh < oh1; oh++) {
					float *d = dst + (size_t)(oh - oh0) * OW;
					int ih = oh * st - s->pad + kh * s->dil;
					if (ih < 0 || ih >= s->H) {
						memset(d, 0, (size_t)OW * sizeof(float));
						continue;
					}
					const float *src = img + ((size_t)c * s->H + ih) * s->W + off;
					memset(d, 0, (size_t)lo * sizeof(float));
					if (st == 1)
						memcpy(d + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
					else
						for (int ow = lo; ow < hi; ow++)
							d[ow] = src[ow * st];
					memset(d + hi, 0, (size_t)(OW - hi) * sizeof(float));
				}
			}
}

/* dimg (C,H,W) += the col rows of output rows [oh0,oh1) folded back */
static void col2im(float *dimg, const float *col, size_t ld, const struct conv2d_shape *s,
		   int oh0, int oh1)
{
	int OW = s->OW, st = s->stride;
	for (int c = 0; c < s->C; c++)
		for (int kh = 0; kh < s->KH; kh++)
			for (int kw = 0; kw < s->KW; kw++) {
				const float *srow =
					col + (((size_t)c * s->KH + kh) * s->KW + kw) * ld;
				int off = kw * s->dil - s->pad, lo, hi;
				valid_cols(off, st, s->W, OW, &lo, &hi);
				for (int oh = oh0; oh < oh1; oh++) {
					int ih = oh * st - s->pad + kh * s->dil;
					if (ih < 0 || ih >= s->H)
						continue;
					const float *sp = srow + (size_t)(oh - oh0) * OW;
					float *d = dimg + ((size_t)c * s->H + ih) * s->W + off;
					if (st == 1)
						for (int ow = lo; ow < hi; ow++)
							d[ow] += sp[ow];
					else
						for (int ow = lo; ow < hi; ow++)
							d[ow * st] += sp[ow];
				}
			}
}

/* o[i] = ep(r[i] + bv) for one output channel's n values (ep NULL: r + bv);
 * o may be r */
static void conv_epilogue(float *o, const float *r, size_t n, float bv,
			  const struct conv_epilogue *ep, int oc)
{
	if (!ep) {
		for (size_t i = 0; i < n; i++)
			o[i] = r[i] + bv;
		return;
	}
	float sc = ep->scale[oc], sh = ep->shift[oc];
	if (ep->relu)
		for (size_t i = 0; i < n; i++) {
			float v = (r[i] + bv) * sc + sh;
			o[i] = v > 0.0f ? v : 0.0f;
		}
	else
		for (size_t i = 0; i < n; i++)
			o[i] = (r[i] + bv) * sc + sh;
}

void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
		    const struct conv2d_shape *s, int B, float *scratch)
{
	conv2d_forward_ep(out, inp, weight, bias, s, B, scratch, NULL);
}

void conv2d_forward_ep(float *out, const float *inp, const float *weight, const float *bias,
		       const struct conv2d_shape *s, int B, float *scratch,
		       const struct conv_epilogue *ep)
{
	conv2d_forward_wc(out, inp, weight, bias, s, B, scratch, ep, NULL);
}

void conv2d_forward_wc(float *out, const float *inp, const float *weight, const float *bias,
		       const struct conv2d_shape *s, int B, float *scratch,
		       const struct conv_epilogue *ep, struct conv_wcache *wc)
{
	// inp is (B,C,H,W), weight is (OC,C,KH,KW), bias is (OC); out is (B,OC,OH,OW)
	if (wino_applies(s)) {
		wino_forward(out, inp, weight, bias, s, B, scratch, ep, wc);
		return;
	}
	struct conv_plan p;
	conv_plan(&p, s, B);
	int OC = s->OC, CK = (int)p.CK;
	size_t OHW = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W;
	size_t out_sz = (size_t)OC * OHW;
	if (p.group > 1) {
		float *col = scratch, *res = scratch + p.CK * p.ncol;
		for (int b0 = 0; b0 < B; b0 += p.group) {
			int gn = B - b0 < p.group ? B - b0 : p.group;
			size_t ld = (size_t)gn * OHW;
			for (int j = 0; j < gn; j++)
				im2col(col + j * OHW, ld, inp + (size_t)(b0 + j) * in_sz, s, 0, s->OH);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)ld, CK, 1.0f,
				    weight, CK, col, (int)ld, 0.0f, res, (int)ld);
			for (int j = 0; j < gn; j++)
				for (int oc = 0; oc < OC; oc++)
					conv_epilogue(out + (size_t)(b0 + j) * out_sz + oc * OHW,
						      res + (size_t)oc * ld + j * OHW, OHW,
						      bias ? bias[oc] : 0.0f, ep, oc);
		}
		return;
	}
	for (int b = 0; b < B; b++) {
		const float *x = inp + (size_t)b * in_sz;
		float *o = out + (size_t)b * out_sz;
		float beta = 0.0f;
		if (bias && !ep) {
			for (int oc = 0; oc < OC; oc++)
				for (size_t i = 0; i < OHW; i++)
					o[oc * OHW + i] = bias[oc];
			beta = 1.0f;
		}
		if (p.direct) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)OHW, CK, 1.0f,
				    weight, CK, x, (int)OHW, beta, o, (int)OHW);
			if (ep)
				for (int oc = 0; oc < OC; oc++)
					conv_epilogue(o + oc * OHW, o + oc * OHW, OHW,
						      bias ? bias[oc] : 0.0f, ep, oc);
			continue;
		}
		for (int oh0 = 0; oh0 < s->OH; oh0 += p.rows) {
			int oh1 = oh0 + p.rows < s->OH ? oh0 + p.rows : s->OH;
			int n = (oh1 - oh0) * s->OW;
			float *ot = o + (size_t)oh0 * s->OW;
			im2col(scratch, (size_t)n, x, s, oh0, oh1);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, n, CK, 1.0f, weight,
				    CK, scratch, n, beta, ot, (int)OHW);
			/* while the tile is in cache */
			if (ep)
				for (int oc = 0; oc < OC; oc++)
					conv_epilogue(ot + oc * OHW, ot + oc * OHW, (size_t)n,
						      bias ? bias[oc] : 0.0f, ep, oc);
		}
	}
}

void conv2d_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
			  const struct conv2d_shape *s, int B)
{
	// inp is (B,C,H,W), weight is (OC,C,KH,KW), bias is (OC); out is (B,OC,OH,OW)
	for (int b = 0; b < B; b++)
		for (int oc = 0; oc < s->OC; oc++)
			for (int oh = 0; oh < s->OH; oh++)
				for (int ow = 0; ow < s->OW; ow++) {
					float acc = bias ? bias[oc] : 0.0f;
					for (int c = 0; c < s->C; c++)
						for (int kh = 0; kh < s->KH; kh++) {
							int ih = oh * s->stride - s->pad + kh * s->dil;
							if (ih < 0 || ih >= s->H)
								continue;
							for (int kw = 0; kw < s->KW; kw++) {
								int iw = ow * s->stride - s->pad +
									 kw * s->dil;
								if (iw < 0 || iw >= s->W)
									continue;
								acc += inp[(((size_t)b * s->C + c) * s->H +
									    ih) * s->W + iw] *
								       weight[(((size_t)oc * s->C + c) *
										       s->KH + kh) *
										      s->KW + kw];
							}
						}
					out[(((size_t)b * s->OC + oc) * s->OH + oh) * s->OW + ow] = acc;
				}
}

void conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
		     const float *inp, const float *weight, const struct conv2d_shape *s, int B,
		     float *scratch)
{
	conv2d_backward_wc(dinp, dweight, dbias, dout, inp, weight, s, B, scratch, NULL);
}

void conv2d_backward_wc(float *dinp, float *dweight, float *dbias, const float *dout,
			const float *inp, const float *weight, const struct conv2d_shape *s, int B,
			float *scratch, struct conv_wcache *wc)
{
	// dout is (B,OC,OH,OW); dinp (B,C,H,W), dweight (OC,C,KH,KW), dbias (OC) accumulate
	struct conv_plan p;
	conv_plan(&p, s, B);
	int OC = s->OC, CK = (int)p.CK;
	size_t OHW = (size_t)s->OH * s->OW, in_sz = (size_t)s->C * s->H * s->W;
	size_t out_sz = (size_t)OC * OHW;
	if (dbias)
		for (int b = 0; b < B; b++)
			for (int oc = 0; oc < OC; oc++) {
				dbias[oc] += (float)bn_sum(dout + (size_t)b * out_sz + oc * OHW, (int)OHW);
			}
	if (wino_applies(s)) {
		wino_backward(dinp, dweight, dout, inp, weight, s, B, scratch, wc);
		return;
	}
	if (p.group > 1) {
		float *col = scratch, *g = scratch + p.CK * p.ncol;
		for (int b0 = 0; b0 < B; b0 += p.group) {
			int gn = B - b0 < p.group ? B - b0 : p.group;
			size_t ld = (size_t)gn * OHW;
			for (int j = 0; j < gn; j++) {
				im2col(col + j * OHW, ld, inp + (size_t)(b0 + j) * in_sz, s, 0, s->OH);
				for (int oc = 0; oc < OC; oc++)
					memcpy(g + (size_t)oc * ld + j * OHW,
					       dout + (size_t)(b0 + j) * out_sz + oc * OHW,
					       OHW * sizeof(float));
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CK, (int)ld, 1.0f, g,
				    (int)ld, col, (int)ld, 1.0f, dweight, CK);
			if (!dinp)
				continue;
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, (int)ld, OC, 1.0f,
				    weight, CK, g, (int)ld, 0.0f, col, (int)ld);
			for (int j = 0; j < gn; j++)
				col2im(dinp + (size_t)(b0 + j) * in_sz, col + j * OHW, ld, s, 0, s->OH);
		}
		return;
	}
	for (int b = 0; b < B; b++) {
		const float *x = inp + (size_t)b * in_sz, *g = dout + (size_t)b * out_sz;
		if (p.direct) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CK, (int)OHW, 1.0f, g,
				    (int)OHW, x, (int)OHW, 1.0f, dweight, CK);
			if (dinp)
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, (int)OHW, OC,
					    1.0f, weight, CK, g, (int)OHW, 1.0f,
					    dinp + (size_t)b * in_sz, (int)OHW);
			continue;
		}
		for (int oh0 = 0; oh0 < s->OH; oh0 += p.rows) {
			int oh1 = oh0 + p.rows < s->OH ? oh0 + p.rows : s->OH;
			int n = (oh1 - oh0) * s->OW;
			const float *gt = g + (size_t)oh0 * s->OW;
			im2col(scratch, (size_t)n, x, s, oh0, oh1);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CK, n, 1.0f, gt,
				    (int)OHW, scratch, n, 1.0f, dweight, CK);
			if (!dinp)
				continue;
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, n, OC, 1.0f, weight,
				    CK, gt, (int)OHW, 0.0f, scratch, n);
			col2im(dinp + (size_t)b * in_sz, scratch, (size_t)n, s, oh0, oh1);
		}
	}
}

/* ---- batch norm -------------------------------------------------------- */

/* out = x*scale + shift over n floats, then max(0, .) when relu */
static void bn_affine(float *restrict out, const float *restrict x, int n, float scale,
		      float shift, int relu)
{
	if (relu)
		for (int i = 0; i < n; i++) {
			float v = x[i] * scale + shift;
			out[i] = v > 0.0f ? v : 0.0f;
		}
	else
		for (int i = 0; i < n; i++)
			out[i] = x[i] * scale + shift;
}

/* The statistics of channel c from its sum and its sum of squared
 * deviations ss about (float)mean, over n values: the mean and inverse std
 * (kept in *mean_out, *rstd_out), the group's (mean, unbiased variance)
 * added to batch_sum, and the affine map of BN(x) = x*scale + shift */
static void bn_stats_finish(float *scale, float *shift, float *mean_out, float *rstd_out,
			    double mean, double ss, double n, int C, int c, float gamma, float beta,
			    float eps, double *batch_sum)
{
	/* ss is about the float mean; move it to the exact one */
	double dm = mean - (double)(float)mean;
	ss -= n * dm * dm;
	if (ss < 0.0)
		ss = 0.0;
	double var = ss / n, rstd = 1.0 / sqrt(var + eps);
	*mean_out = (float)mean;
	*rstd_out = (float)rstd;
	if (batch_sum) {
		batch_sum[c] += mean;
		batch_sum[C + c] += n > 1.0 ? ss / (n - 1.0) : var;
	}
	*scale = (float)(gamma * rstd);
	*shift = (float)(beta - mean * gamma * rstd);
}

/* sum x, then sum (x - (float)mean)^2, of channel c over samples [b0, b1) */
static double bn_channel_sum(const float *inp, int b0, int b1, int C, int c, int HW)
{
	double sum = 0.0;
	for (int b = b0; b < b1; b++)
		sum += bn_sum(inp + ((size_t)b * C + c) * HW, HW);
	return sum;
}

static double bn_channel_sumsq(const float *inp, int b0, int b1, int C, int c, int HW,
			       double mean)
{
	double ss = 0.0;
	for (int b = b0; b < b1; b++)
		ss += bn_sumsq(inp + ((size_t)b * C + c) * HW, HW, (float)mean);
	return ss;
}

/* One (micro-batch group, channel) of a training forward: bn_stats_finish
 * over samples [b0, b1) of channel c */
static void bn_group_stats(float *scale, float *shift, float *mean_out, float *rstd_out,
			   const float *inp, int b0, int b1, int C, int c, int HW, float gamma,
			   float beta, float eps, double *batch_sum)
{
	double n = (double)(b1 - b0) * HW;
	double mean = bn_channel_sum(inp, b0, b1, C, c, HW) / n;
	double ss = bn_channel_sumsq(inp, b0, b1, C, c, HW, mean);
	bn_stats_finish(scale, shift, mean_out, rstd_out, mean, ss, n, C, c, gamma, beta, eps,
			batch_sum);
}

static void pool2x2_row(float *restrict orow, int *restrict arow, const float *restrict r0,
			const float *restrict r1, int OW, int W, int base);

/* BN(x) = x*scale + shift over channel c of samples [b0, b1): into out
 * (max(0, .) when relu), or with pool_out, max(0, BN) two rows at a time
 * pooled 2x2 into pool_out and argmax while in cache (out unused) */
static void bn_apply(float *out, float *pool_out, int *argmax, const float *inp, int b0, int b1,
		     int C, int c, int H, int W, float scale, float shift, int relu, float *rows)
{
	int HW = H * W, OH = H / 2, OW = W / 2, OHW = OH * OW;
	for (int b = b0; b < b1; b++) {
		const float *x = inp + ((size_t)b * C + c) * HW;
		if (!pool_out) {
			bn_affine(out + ((size_t)b * C + c) * HW, x, HW, scale, shift, relu);
			continue;
		}
		size_t op = ((size_t)b * C + c) * OHW;
		for (int oh = 0; oh < OH; oh++) {
			bn_affine(rows, x + (size_t)(2 * oh) * W, 2 * W, scale, shift, 1);
			pool2x2_row(pool_out + op + (size_t)oh * OW, argmax + op + (size_t)oh * OW,
				    rows, rows + W, OW, W, 2 * oh * W);
		}
	}
}

/* The training forward over (H,W) planes: out = BN(inp) (max(0, .) when
 * relu), or with pool_out, max(0, BN) two rows at a time pooled 2x2 into
 * pool_out and argmax while in cache (out unused) */
static void bn_train_forward(float *out, float *pool_out, int *argmax, float *save_mean,
			     float *save_rstd, const float *inp, const float *gamma,
			     const float *beta, int B, int C, int H, int W, int micro, float eps,
			     double *batch_sum, int relu, float *rows)
{
	int HW = H * W;
	if (micro <= 0 || micro > B)
		micro = B;
	if (batch_sum)
		memset(batch_sum, 0, 2 * (size_t)C * sizeof(double));
	for (int g = 0, b0 = 0; b0 < B; g++, b0 += micro) {
		int b1 = b0 + micro < B ? b0 + micro : B;
		for (int c = 0; c < C; c++) {
			float scale, shift;
			bn_group_stats(&scale, &shift, save_mean + (size_t)g * C + c,
				       save_rstd + (size_t)g * C + c, inp, b0, b1, C, c, HW, gamma[c],
				       beta[c], eps, batch_sum);
			bn_apply(out, pool_out, argmax, inp, b0, b1, C, c, H, W, scale, shift, relu,
				 rows);
		}
	}
}

/* bn_train_forward of this thread's samples of one group split over threads
 * (struct bn_split): every channel's sum, one reduce (with the count); every
 * channel's squared deviations, one reduce; then the affine map. The
 * arithmetic of bn_group_stats over the whole group, up to summation order. */
static void bn_split_forward(float *out, float *pool_out, int *argmax, float *save_mean,
			     float *save_rstd, const float *inp, const float *gamma,
			     const float *beta, int B, int C, int H, int W, float eps,
			     double *batch_sum, int relu, float *rows, const struct bn_split *sp)
{
	int HW = H * W;
	double *s = xmalloc((2 * (size_t)C + 1) * sizeof(double)), *ss = s + C + 1;
	for (int c = 0; c < C; c++)
		s[c] = bn_channel_sum(inp, 0, B, C, c, HW);
	s[C] = (double)B * HW;
	sp->reduce(s, C + 1, sp->arg);
	double n = s[C];
	for (int c = 0; c < C; c++) {
		s[c] = n > 0.0 ? s[c] / n : 0.0; /* the group's mean */
		ss[c] = bn_channel_sumsq(inp, 0, B, C, c, HW, s[c]);
	}
	sp->reduce(ss, C, sp->arg);
	if (batch_sum)
		memset(batch_sum, 0, 2 * (size_t)C * sizeof(double));
	for (int c = 0; c < C; c++) {
		float scale, shift;
		bn_stats_finish(&scale, &shift, save_mean + c, save_rstd + c, s[c], ss[c], n, C, c,
				gamma[c], beta[c], eps, batch_sum);
		bn_apply(out, pool_out, argmax, inp, 0, B, C, c, H, W, scale, shift, relu, rows);
	}
	free(s);
}

void batchnorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp,
		       const float *gamma, const float *beta, int B, int C, int HW, int micro,
		       float eps, double *batch_sum, int relu, const struct bn_split *sp)
{
	// inp, out are (B,C,HW); gamma, beta (C); save_mean, save_rstd (ngroups,C)
	if (sp)
		bn_split_forward(out, NULL, NULL, save_mean, save_rstd, inp, gamma, beta, B, C, 1,
				 HW, eps, batch_sum, relu, NULL, sp);
	else
		bn_train_forward(out, NULL, NULL, save_mean, save_rstd, inp, gamma, beta, B, C, 1,
				 HW, micro, eps, batch_sum, relu, NULL);
}

void batchnorm_pool_forward(float *pool_out, int *argmax, float *save_mean, float *save_rstd,
			    const float *inp, const float *gamma, const float *beta, int B, int C,
			    int H, int W, int micro, float eps, double *batch_sum, float *scratch,
			    const struct bn_split *sp)
{
	// inp is (B,C,H,W); pool_out, argmax (B,C,H/2,W/2); save_mean, save_rstd (ngroups,C);
	// scratch (2W)
	if (sp)
		bn_split_forward(NULL, pool_out, argmax, save_mean, save_rstd, inp, gamma, beta, B,
				 C, H, W, eps, batch_sum, 1, scratch, sp);
	else
		bn_train_forward(NULL, pool_out, argmax, save_mean, save_rstd, inp, gamma, beta, B,
				 C, H, W, micro, eps, batch_sum, 1, scratch);
}

void batchnorm_eval_affine(float *scale, float *shift, const float *gamma, const float *beta,
			   const float *running_mean, const float *running_var, int C, float eps)
{
	for (int c = 0; c < C; c++) {
		double rstd = 1.0 / sqrt((double)running_var[c] + eps);
		scale[c] = (float)(gamma[c] * rstd);
		shift[c] = (float)(beta[c] - running_mean[c] * gamma[c] * rstd);
	}
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
			    const float *running_mean, const float *running_var, int B, int C, int HW,
			    float eps, int relu)
{
	// inp, out are (B,C,HW); gamma, beta, running_mean, running_var (C)
	for (int c = 0; c < C; c++) {
		float scale, shift;
		batchnorm_eval_affine(&scale, &shift, gamma + c, beta + c, running_mean + c,
				      running_var + c, 1, eps);
		for (int b = 0; b < B; b++)
			bn_affine(out + ((size_t)b * C + c) * HW, inp + ((size_t)b * C + c) * HW, HW,
				  scale, shift, relu);
	}
}

void batchnorm_update_running(float *running_mean, float *running_var, const double *batch_sum,
			      int groups, int C, float momentum)
{
	// batch_sum is (2,C): summed group means, then summed unbiased variances
	if (groups <= 0)
		return;
	for (int c = 0; c < C; c++) {
		running_mean[c] = (float)((1.0 - momentum) * running_mean[c] +
					  momentum * (batch_sum[c] / groups));
		running_var[c] = (float)((1.0 - momentum) * running_var[c] +
					 momentum * (batch_sum[C + c] / groups));
	}
}

/*
 * Batch norm with its fused ReLU, read only by a 2x2 stride-2 max pool: the
 * backward of the three from the pool's gradient, without the (B,C,H,W)
 * gradient of the pool's input. Each image plane's gated gradient (the
 * pool's gradient at the windows' maxima where the pooled value, the ReLU's
 * output there, is > 0; zero elsewhere) is built in a plane-sized buffer
 * that stays in cache, then goes through the plain batch norm's loops, so
 * the result is bit for bit that of maxpool2d_backward then
 * batchnorm_backward with relu_out.
 */
static void pool_plane(float *restrict g, const float *dp, const int *am, const float *po,
		       int HW, int OHW)
{
	memset(g, 0, (size_t)HW * sizeof(float));
	for (int j = 0; j < OHW; j++)
		g[am[j]] = relu_gate(dp[j], po[j]);
}

/* one plane's dx = gamma*rstd * (dy - mean(dy) - xhat*mean(dy*xhat)), dy
 * gated by the fused ReLU's output y when given; set or added */
static void bn_dx(float *restrict dx, const float *restrict x, const float *restrict dy,
		  const float *restrict y, int HW, float mean, float rstd, float k, float mdy,
		  float mdyx, int set)
{
	if (y && set)
		for (int i = 0; i < HW; i++) {
			float xh = (x[i] - mean) * rstd;
			dx[i] = k * (relu_gate(dy[i], y[i]) - mdy - xh * mdyx);
		}
	else if (y)
		for (int i = 0; i < HW; i++) {
			float xh = (x[i] - mean) * rstd;
			dx[i] += k * (relu_gate(dy[i], y[i]) - mdy - xh * mdyx);
		}
	else if (set)
		for (int i = 0; i < HW; i++) {
			float xh = (x[i] - mean) * rstd;
			dx[i] = k * (dy[i] - mdy - xh * mdyx);
		}
	else
		for (int i = 0; i < HW; i++) {
			float xh = (x[i] - mean) * rstd;
			dx[i] += k * (dy[i] - mdy - xh * mdyx);
		}
}

/* The training backward over (H,W) planes, from dout (gated by relu_out
 * when given) or, with dpool, from a 2x2 pool's gradient (pool_plane; a
 * micro-batch's planes built once into g, for the sums and for dx) */
static void bn_train_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
			      const float *relu_out, const float *dpool, const int *argmax,
			      const float *pool_out, const float *inp, const float *save_mean,
			      const float *save_rstd, const float *gamma, int B, int C, int H, int W,
			      int micro, int set, float *g)
{
	int HW = H * W, OHW = (H / 2) * (W / 2);
	if (micro <= 0 || micro > B)
		micro = B;
	for (int gi = 0, b0 = 0; b0 < B; gi++, b0 += micro) {
		int b1 = b0 + micro < B ? b0 + micro : B;
		double n = (double)(b1 - b0) * HW;
		for (int c = 0; c < C; c++) {
			float mean = save_mean[(size_t)gi * C + c], rstd = save_rstd[(size_t)gi * C + c];
			double sdy = 0.0, sdyx = 0.0;
			for (int b = b0; b < b1; b++) {
				size_t o = ((size_t)b * C + c) * HW, op = ((size_t)b * C + c) * OHW;
				if (dpool) {
					/* the group's planes, kept for the dx pass */
					float *gb = g + (size_t)(b - b0) * HW;
					pool_plane(gb, dpool + op, argmax + op, pool_out + op, HW, OHW);
					bn_sums_dy(gb, inp + o, HW, mean, &sdy, &sdyx);
				} else if (relu_out) {
					bn_sums_dy_relu(dout + o, relu_out + o, inp + o, HW, mean, &sdy,
							&sdyx);
				} else {
					bn_sums_dy(dout + o, inp + o, HW, mean, &sdy, &sdyx);
				}
			}
			sdyx *= rstd; /* sum dy * xhat */
			dgamma[c] += (float)sdyx;
			dbeta[c] += (float)sdy;
			if (!dinp)
				continue;
			float k = gamma[c] * rstd, mdy = (float)(sdy / n), mdyx = (float)(sdyx / n);
			for (int b = b0; b < b1; b++) {
				size_t o = ((size_t)b * C + c) * HW;
				if (dpool) {
					bn_dx(dinp + o, inp + o, g + (size_t)(b - b0) * HW, NULL, HW, mean,
					      rstd, k, mdy, mdyx, set);
				} else {
					bn_dx(dinp + o, inp + o, dout + o, relu_out ? relu_out + o : NULL, HW,
					      mean, rstd, k, mdy, mdyx, set);
				}
			}
		}
	}
}

/* bn_train_backward of this thread's samples of one group split over
 * threads (struct bn_split): every channel's sums of dy and dy * (x - mean),
 * this thread's into dgamma and dbeta; with dinp, one reduce of them (and
 * the count) for the group's, then dx. From dpool, each plane's gated
 * gradient is built into g (H*W floats) in both passes. */
static void bn_split_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
			      const float *relu_out, const float *dpool, const int *argmax,
			      const float *pool_out, const float *inp, const float *save_mean,
			      const float *save_rstd, const float *gamma, int B, int C, int H, int W,
			      int set, float *g, const struct bn_split *sp)
{
	int HW = H * W, OHW = (H / 2) * (W / 2);
	double *s = xmalloc((2 * (size_t)C + 1) * sizeof(double));
	for (int c = 0; c < C; c++) {
		double sdy = 0.0, sdyx = 0.0;
		for (int b = 0; b < B; b++) {
			size_t o = ((size_t)b * C + c) * HW, op = ((size_t)b * C + c) * OHW;
			if (dpool) {
				pool_plane(g, dpool + op, argmax + op, pool_out + op, HW, OHW);
				bn_sums_dy(g, inp + o, HW, save_mean[c], &sdy, &sdyx);
			} else if (relu_out) {
				bn_sums_dy_relu(dout + o, relu_out + o, inp + o, HW, save_mean[c], &sdy,
						&sdyx);
			} else {
				bn_sums_dy(dout + o, inp + o, HW, save_mean[c], &sdy, &sdyx);
			}
		}
		sdyx *= save_rstd[c]; /* sum dy * xhat */
		dgamma[c] += (float)sdyx;
		dbeta[c] += (float)sdy;
		s[c] = sdy;
		s[C + c] = sdyx;
	}
	if (dinp) {
		s[2 * C] = (double)B * HW;
		sp->reduce(s, 2 * C + 1, sp->arg);
		double n = s[2 * C];
		for (int c = 0; c < C; c++) {
			float mean = save_mean[c], rstd = save_rstd[c], k = gamma[c] * rstd;
			float mdy = (float)(s[c] / n), mdyx = (float)(s[C + c] / n);
			for (int b = 0; b < B; b++) {
				size_t o = ((size_t)b * C + c) * HW, op = ((size_t)b * C + c) * OHW;
				if (dpool) {
					pool_plane(g, dpool + op, argmax + op, pool_out + op, HW, OHW);
					bn_dx(dinp + o, inp + o, g, NULL, HW, mean, rstd, k, mdy, mdyx, set);
				} else {
					bn_dx(dinp + o, inp + o, dout + o, relu_out ? relu_out + o : NULL, HW,
					      mean, rstd, k, mdy, mdyx, set);
				}
			}
		}
	}
	free(s);
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
			const float *inp, const float *save_mean, const float *save_rstd,
			const float *gamma, int B, int C, int HW, int micro, const float *relu_out,
			int set, const struct bn_split *sp)
{
	// dout, inp, dinp are (B,C,HW); save_mean, save_rstd (ngroups,C)
	if (sp)
		bn_split_backward(dinp, dgamma, dbeta, dout, relu_out, NULL, NULL, NULL, inp,
				  save_mean, save_rstd, gamma, B, C, 1, HW, set, NULL, sp);
	else
		bn_train_backward(dinp, dgamma, dbeta, dout, relu_out, NULL, NULL, NULL, inp,
				  save_mean, save_rstd, gamma, B, C, 1, HW, micro, set, NULL);
}

void batchnorm_pool_backward(float *dinp, float *dgamma, float *dbeta, const float *dpool,
			     const int *argmax, const float *pool_out, const float *inp,
			     const float *save_mean, const float *save_rstd, const float *gamma,
			     int B, int C, int H, int W, int micro, int set, float *scratch,
			     const struct bn_split *sp)
{
	// inp, dinp are (B,C,H,W); dpool, argmax, pool_out (B,C,H/2,W/2); scratch
	// (min(micro,B)*H*W)
	if (sp)
		bn_split_backward(dinp, dgamma, dbeta, NULL, NULL, dpool, argmax, pool_out, inp,
				  save_mean, save_rstd, gamma, B, C, H, W, set, scratch, sp);
	else
		bn_train_backward(dinp, dgamma, dbeta, NULL, NULL, dpool, argmax, pool_out, inp,
				  save_mean, save_rstd, gamma, B, C, H, W, micro, set, scratch);
}

/* ---- pooling, resizing, joining ---------------------------------------- */

/* The 2x2, stride-2, unpadded case (every model's pool): the window is
 * always inside the image, so no bounds, and the scan order and NaN rule of
 * the general loop below (the first maximum; a later NaN wins). */
/* one output row of a 2x2 stride-2 max pool over input rows r0 and r1 = r0 + W
 * of the image (base = the flat index of r0's first element) */
static void pool2x2_row(float *restrict orow, int *restrict arow, const float *restrict r0,
			const float *restrict r1, int OW, int W, int base)
{
	for (int ow = 0; ow < OW; ow++) {
		float v0 = r0[2 * ow], v1 = r0[2 * ow + 1];
		float v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
		float m = v0;
		int best = base + 2 * ow;
		if (v1 > m || v1 != v1) {
			m = v1;
			best = base + 2 * ow + 1;
		}
		if (v2 > m || v2 != v2) {
			m = v2;
			best = base + W + 2 * ow;
		}
		if (v3 > m || v3 != v3) {
			m = v3;
			best = base + W + 2 * ow + 1;
		}
		orow[ow] = m;
		arow[ow] = best;
	}
}

static void maxpool2x2_forward(float *restrict out, int *restrict argmax,
			       const float *restrict inp, int B, int C, int H, int W)
{
	int OH = H / 2, OW = W / 2;
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		const float *x = inp + bc * H * W;
		float *o = out + bc * OH * OW;
		int *a = argmax + bc * OH * OW;
		for (int oh = 0; oh < OH; oh++) {
			const float *r0 = x + (size_t)(2 * oh) * W;
			pool2x2_row(o + (size_t)oh * OW, a + (size_t)oh * OW, r0, r0 + W, OW, W,
				    2 * oh * W);
		}
	}
}

void maxpool2d_forward(float *out, int *argmax, const float *inp, int B, int C, int H, int W,
		       int k, int stride, int pad)
{
	// inp is (B,C,H,W); out, argmax are (B,C,OH,OW)
	int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
	if (k == 2 && stride == 2 && pad == 0) {
		maxpool2x2_forward(out, argmax, inp, B, C, H, W);
		return;
	}
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		const float *x = inp + bc * H * W;
		float *o = out + bc * OH * OW;
		int *a = argmax + bc * OH * OW;
		for (int oh = 0; oh < OH; oh++) {
			int h0 = oh * stride - pad, h1 = h0 + k < H ? h0 + k : H;
			if (h0 < 0)
				h0 = 0;
			for (int ow = 0; ow < OW; ow++) {
				int w0 = ow * stride - pad, w1 = w0 + k < W ? w0 + k : W;
				if (w0 < 0)
					w0 = 0;
				/* PyTorch: the first maximum; a NaN wins */
				int best = h0 * W + w0;
				float m = -INFINITY;
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++) {
						float v = x[h * W + w];
						if (v > m || isnan(v)) {
							m = v;
							best = h * W + w;
						}
					}
				o[oh * OW + ow] = m;
				a[oh * OW + ow] = best;
			}
		}
	}
}

void maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int B, int C, int H,
			int W, int OH, int OW)
{
	// dout, argmax are (B,C,OH,OW); dinp (B,C,H,W) accumulates
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		float *dx = dinp + bc * H * W;
		const float *dy = dout + bc * OH * OW;
		const int *a = argmax + bc * OH * OW;
		for (int i = 0; i < OH * OW; i++)
			dx[a[i]] += dy[i];
	}
}

void avgpool2d_forward(float *out, const float *inp, int B, int C, int H, int W, int k, int stride)
{
	// inp is (B,C,H,W); out is (B,C,OH,OW)
	int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
	float inv = 1.0f / (float)(k * k);
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		const float *x = inp + bc * H * W;
		float *o = out + bc * OH * OW;
		for (int oh = 0; oh < OH; oh++)
			for (int ow = 0; ow < OW; ow++) {
				float acc = 0.0f;
				for (int h = 0; h < k; h++)
					for (int w = 0; w < k; w++)
						acc += x[(oh * stride + h) * W + ow * stride + w];
				o[oh * OW + ow] = acc * inv;
			}
	}
}

void avgpool2d_backward(float *dinp, const float *dout, int B, int C, int H, int W, int k,
			int stride)
{
	// dout is (B,C,OH,OW); dinp (B,C,H,W) accumulates
	int OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
	float inv = 1.0f / (float)(k * k);
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		float *dx = dinp + bc * H * W;
		const float *dy = dout + bc * OH * OW;
		for (int oh = 0; oh < OH; oh++)
			for (int ow = 0; ow < OW; ow++) {
				float g = dy[oh * OW + ow] * inv;
				for (int h = 0; h < k; h++)
					for (int w = 0; w < k; w++)
						dx[(oh * stride + h) * W + ow * stride + w] += g;
			}
	}
}

void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW)
{
	// inp is (B,C,HW); out is (B,C)
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		const float *x = inp + bc * HW;
		double acc = 0.0;
		for (int i = 0; i < HW; i++)
			acc += x[i];
		out[bc] = (float)(acc / HW);
	}
}

void global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW)
{
	// dout is (B,C); dinp (B,C,HW) accumulates
	for (size_t bc = 0; bc < (size_t)B * C; bc++) {
		float g = dout[bc] / (float)HW;
		float *dx = dinp + bc * HW;
		for (int i = 0; i < HW; i++)
			dx[i] += g;
	}
}

void frame_mean_forward(float *out, const float *inp, int B, int F, int D)
{
	// inp is (B,F,D); out is (B,D)
	for (int b = 0; b < B; b++) {
		float *o = out + (size_t)b * D;
		memset(o, 0, (size_t)D * sizeof(float));
		for (int f = 0; f < F; f++) {
			const float *x = inp + ((size_t)b * F + f) * D;
			for (int d = 0; d < D; d++)
				o[d] += x[d];
		}
		for (int d = 0; d < D; d++)
			o[d] /= (float)F;
	}
}

void frame_mean_backward(float *dinp, const float *dout, int B, int F, int D)
{
	// dout is (B,D); dinp (B,F,D) accumulates
	float inv = 1.0f / (float)F;
	for (int b = 0; b < B; b++)
		for (int f = 0; f < F; f++) {
			float *dx = dinp + ((size_t)b * F + f) * D;
			const float *dy = dout + (size_t)b * D;
			for (int d = 0; d < D; d++)
				dx[d] += dy[d] * inv;
		}
}

/* PyTorch's source index for align_corners=False (area_pixel_compute_
 * source_index, clamped at 0): taps i0, i1 = min(i0+1, in-1), weight l1 on i1. */
static void bilinear_tap(int dst, int in, float scale, int *i0, int *i1, float *l1)
{
	float src = scale * ((float)dst + 0.5f) - 0.5f;
	if (src < 0.0f)
		src = 0.0f;
	int i = (int)src;
	if (i > in - 1)
		i = in - 1;
	*i0 = i;
	*i1 = i < in - 1 ? i + 1 : i;
	*l1 = src - (float)i;
}

/* The column taps of output columns [ow0, ow0+n), n <= UP_CHUNK: computed
 * once per chunk rather than once per (image, row). */
#define UP_CHUNK 256

struct up_taps {
	int w0[UP_CHUNK], w1[UP_CHUNK];
	float lw[UP_CHUNK];
};

static void up_taps_fill(struct up_taps *t, int ow0, int n, int W, float sw)
{
	for (int j = 0; j < n; j++)
		bilinear_tap(ow0 + j, W, sw, &t->w0[j], &t->w1[j], &t->lw[j]);
}

/*
 * x2 in both directions (every decoder upsampling of the segmenter): the
 * half-pixel taps are fixed, 0.25 / 0.75 with the edges clamped (output
 * column 2k from input columns k-1 and k, 2k+1 from k and k+1), so each
 * input row is interpolated along W once (up2_row), and each output row is
 * a blend of two of those rows that vectorizes. The expressions are the
 * general loop's, so the forward is bit for bit the same.
 */
static void up2_row(float *restrict hr, const float *restrict x, int W)
{
	int last = W - 1;
	hr[0] = 1.0f * x[0] + 0.0f * x[last > 0 ? 1 : 0];
	for (int k = 1; k < W; k++)
		hr[2 * k] = 0.25f * x[k - 1] + 0.75f * x[k];
	for (int k = 0; k < W; k++)
		hr[2 * k + 1] = 0.75f * x[k] + 0.25f * x[k < last ? k + 1 : last];
}

static void up2_forward(float *out, const float *inp, size_t BC, int H, int W)
{
	int OW = 2 * W;
	float *hr = xmalloc(sizeof(float) * (size_t)H * OW);
	for (size_t bc = 0; bc < BC; bc++) {
		const float *x = inp + bc * H * W;
		float *o = out + bc * 4 * H * W;
		for (int h = 0; h < H; h++)
			up2_row(hr + (size_t)h * OW, x + (size_t)h * W, W);
		for (int oh = 0; oh < 2 * H; oh++) {
			int h0, h1;
			float lh;
			bilinear_tap(oh, H, 0.5f, &h0, &h1, &lh);
			const float *restrict a = hr + (size_t)h0 * OW, *restrict b = hr + (size_t)h1 * OW;
			float *restrict orow = o + (size_t)oh * OW;
			float l0 = 1.0f - lh;
			for (int j = 0; j < OW; j++)
				orow[j] = l0 * a[j] + lh * b[j];
		}
	}
	free(hr);
}

/* The backward of up2_forward: the rows' gradients summed down (into gh, H
 * rows of 2W), then each row's taps gathered per input column; the same
 * sum as the general loop in another order. */
static void up2_backward(float *dinp, const float *dout, size_t BC, int H, int W)
{
	int OW = 2 * W, last = W - 1;
	float *gh = xmalloc(sizeof(float) * (size_t)H * OW);
	for (size_t bc = 0; bc < BC; bc++) {
		float *dx = dinp + bc * H * W;
		const float *dy = dout + bc * 4 * H * W;
		memset(gh, 0, sizeof(float) * (size_t)H * OW);
		for (int oh = 0; oh < 2 * H; oh++) {
			int h0, h1;
			float lh;
			bilinear_tap(oh, H, 0.5f, &h0, &h1, &lh);
			float *restrict a = gh + (size_t)h0 * OW, *restrict b = gh + (size_t)h1 * OW;
			const float *restrict g = dy + (size_t)oh * OW;
			float l0 = 1.0f - lh;
			if (a == b) {
				for (int j = 0; j < OW; j++)
					a[j] += (l0 + lh) * g[j];
				continue;
			}
			for (int j = 0; j < OW; j++) {
				a[j] += l0 * g[j];
				b[j] += lh * g[j];
			}
		}
		for (int h = 0; h < H; h++) {
			const float *g = gh + (size_t)h * OW;
			float *d = dx + (size_t)h * W;
			/* column k: 0.75 of outputs 2k and 2k+1, 0.25 of 2k-1 and 2k+2 */
			d[0] += g[0] + 0.75f * g[1] + (last > 0 ? 0.25f * g[2] : 0.25f * g[1]);
			for (int k = 1; k < last; k++)
				d[k] += 0.25f * g[2 * k - 1] + 0.75f * g[2 * k] + 0.75f * g[2 * k + 1] +
					0.25f * g[2 * k + 2];
			if (last > 0)
				d[last] += 0.25f * g[2 * last - 1] + 0.75f * g[2 * last] +
					   0.75f * g[2 * last + 1] + 0.25f * g[2 * last + 1];
		}
	}
	free(gh);
}

void upsample_bilinear_forward(float *out, const float *inp, int B, int C, int H, int W, int OH,
			       int OW)
{
	// inp is (B,C,H,W); out is (B,C,OH,OW)
	if (OH == 2 * H && OW == 2 * W) {
		up2_forward(out, inp, (size_t)B * C, H, W);
		return;
	}
	float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
	struct up_taps t;
	for (int ow0 = 0; ow0 < OW; ow0 += UP_CHUNK) {
		int n = OW - ow0 < UP_CHUNK ? OW - ow0 : UP_CHUNK;
		up_taps_fill(&t, ow0, n, W, sw);
		for (size_t bc = 0; bc < (size_t)B * C; bc++) {
			const float *x = inp + bc * H * W;
			float *o = out + bc * OH * OW + ow0;
			for (int oh = 0; oh < OH; oh++) {
				int h0, h1;
				float lh;
				bilinear_tap(oh, H, sh, &h0, &h1, &lh);
				const float *r0 = x + (size_t)h0 * W, *r1 = x + (size_t)h1 * W;
				float *orow = o + (size_t)oh * OW;
				for (int j = 0; j < n; j++) {
					float lw = t.lw[j];
					int w0 = t.w0[j], w1 = t.w1[j];
					orow[j] = (1.0f - lh) * ((1.0f - lw) * r0[w0] + lw * r0[w1]) +
						  lh * ((1.0f - lw) * r1[w0] + lw * r1[w1]);
				}
			}
		}
	}
}

void upsample_bilinear_backward(float *dinp, const float *dout, int B, int C, int H, int W, int OH,
				int OW)
{
	// dout is (B,C,OH,OW); dinp (B,C,H,W) accumulates
	if (OH == 2 * H && OW == 2 * W) {
		up2_backward(dinp, dout, (size_t)B * C, H, W);
		return;
	}
	float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
	struct up_taps t;
	for (int ow0 = 0; ow0 < OW; ow0 += UP_CHUNK) {
		int n = OW - ow0 < UP_CHUNK ? OW - ow0 : UP_CHUNK;
		up_taps_fill(&t, ow0, n, W, sw);
		for (size_t bc = 0; bc < (size_t)B * C; bc++) {
			float *dx = dinp + bc * H * W;
			const float *dy = dout + bc * OH * OW + ow0;
			for (int oh = 0; oh < OH; oh++) {
				int h0, h1;
				float lh;
				bilinear_tap(oh, H, sh, &h0, &h1, &lh);
				float *r0 = dx + (size_t)h0 * W, *r1 = dx + (size_t)h1 * W;
				const float *g = dy + (size_t)oh * OW;
				for (int j = 0; j < n; j++) {
					float lw = t.lw[j];
					int w0 = t.w0[j], w1 = t.w1[j];
					r0[w0] += (1.0f - lh) * (1.0f - lw) * g[j];
					r0[w1] += (1.0f - lh) * lw * g[j];
					r1[w0] += lh * (1.0f - lw) * g[j];
					r1[w1] += lh * lw * g[j];
				}
			}
		}
	}
}

void concat_forward(float *out, const float *a, const float *b, int B, int Ca, int Cb, int HW)
{
	// a is (B,Ca,HW), b is (B,Cb,HW); out is (B,Ca+Cb,HW)
	size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
	for (int i = 0; i < B; i++) {
		memcpy(out + i * (na + nb), a + i * na, na * sizeof(float));
		memcpy(out + i * (na + nb) + na, b + i * nb, nb * sizeof(float));
	}
}

void concat_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW)
{
	// dout is (B,Ca+Cb,HW); da (B,Ca,HW), db (B,Cb,HW) accumulate
	size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
	for (int i = 0; i < B; i++) {
		if (da)
			add_inplace(da + i * na, dout + i * (na + nb), na);
		if (db)
			add_inplace(db + i * nb, dout + i * (na + nb) + na, nb);
	}
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

void add_inplace(float *y, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

/* ---- data augmentation -------------------------------------------------- */

/* Stream (seed, RNG_AUGMENT, step, id): uniforms 0..3 are augment_params'
 * flip, scale, fy, fx (always drawn, so options do not move the others);
 * word 4 on is time_crop's. */
#define AUG_DRAWS 4

void augment_params(struct augment *a, int B, int hflip, float smin, float smax, uint64_t seed,
		    uint32_t step, const uint32_t *ids)
{
	int fixed = smin == smax && (smin == 0.0f || smin == 1.0f);
	for (int b = 0; b < B; b++) {
		struct rng r;
		rng_init(&r, seed, RNG_AUGMENT, step, ids ? ids[b] : (uint32_t)b);
		float uf = rng_uniform(&r), us = rng_uniform(&r);
		a[b].fy = rng_uniform(&r);
		a[b].fx = rng_uniform(&r);
		a[b].flip = hflip && uf < 0.5f;
		a[b].scale = fixed ? 1.0f : smin + (smax - smin) * us;
	}
}

/* One axis of the geometric transform: output index o of n maps to index q
 * of the scaled axis (sn = round(n*scale)); -1 where it falls in padding. */
struct aug_axis {
	int n, sn, shift;
	float inv; /* n / sn: the resize scale back to the input */
};

static void aug_axis_init(struct aug_axis *ax, int n, float scale, float f)
{
	long sn = lrintf((float)n * scale);
	ax->n = n;
	ax->sn = sn < 1 ? 1 : (int)sn;
	if (ax->sn >= n)
		ax->shift = (int)(f * (float)(ax->sn - n)); /* crop origin */
	else
		ax->shift = -((n - ax->sn) / 2); /* centred, padded */
	ax->inv = (float)n / (float)ax->sn;
}

static int aug_axis_map(const struct aug_axis *ax, int o)
{
	int q = o + ax->shift;
	return q >= 0 && q < ax->sn ? q : -1;
}

void augment_image(float *out, const float *inp, const struct augment *a, int B, int C, int H,
		   int W)
{
	// inp, out are (B,C,H,W)
	for (int b = 0; b < B; b++) {
		struct aug_axis ay, ax;
		aug_axis_init(&ay, H, a[b].scale, a[b].fy);
		aug_axis_init(&ax, W, a[b].scale, a[b].fx);
		for (int c = 0; c < C; c++) {
			const float *x = inp + ((size_t)b * C + c) * H * W;
			float *o = out + ((size_t)b * C + c) * H * W;
			for (int y = 0; y < H; y++) {
				int qy = aug_axis_map(&ay, y), h0 = 0, h1 = 0;
				float lh = 0.0f;
				if (qy >= 0)
					bilinear_tap(qy, H, ay.inv, &h0, &h1, &lh);
				for (int xo = 0; xo < W; xo++) {
					int src = a[b].flip ? W - 1 - xo : xo;
					int qx = aug_axis_map(&ax, src), w0, w1;
					float lw;
					if (qy < 0 || qx < 0) {
						o[y * W + xo] = 0.0f;
						continue;
					}
					bilinear_tap(qx, W, ax.inv, &w0, &w1, &lw);
					const float *r0 = x + (size_t)h0 * W, *r1 = x + (size_t)h1 * W;
					o[y * W + xo] =
						(1.0f - lh) * ((1.0f - lw) * r0[w0] + lw * r0[w1]) +
						lh * ((1.0f - lw) * r1[w0] + lw * r1[w1]);
				}
			}
		}
	}
}

/* PyTorch's nearest: floor(q * in/out), at most in-1 */
static int nearest_src(int q, int n, float inv)
{
	int i = (int)floorf((float)q * inv);
	return i < n - 1 ? i : n - 1;
}

void augment_labels(int *out, const int *inp, const struct augment *a, int B, int H, int W,
		    int ignore)
{
	// inp, out are (B,H,W)
	for (int b = 0; b < B; b++) {
		struct aug_axis ay, ax;
		aug_axis_init(&ay, H, a[b].scale, a[b].fy);
		aug_axis_init(&ax, W, a[b].scale, a[b].fx);
		const int *x = inp + (size_t)b * H * W;
		int *o = out + (size_t)b * H * W;
		for (int y = 0; y < H; y++) {
			int qy = aug_axis_map(&ay, y);
			for (int xo = 0; xo < W; xo++) {
				int qx = aug_axis_map(&ax, a[b].flip ? W - 1 - xo : xo);
				o[y * W + xo] = qy < 0 || qx < 0
							? ignore
							: x[nearest_src(qy, H, ay.inv) * W +
							    nearest_src(qx, W, ax.inv)];
			}
		}
	}
}

void time_crop(float *out, const float *inp, int B, int F, int T, int Tc, int train, uint64_t seed,
	       uint32_t step, const uint32_t *ids)
{
	// inp is (B,F,T); out is (B,F,Tc)
	for (int b = 0; b < B; b++) {
		int t0 = (T - Tc) / 2;
		if (train && T > Tc) {
			struct rng r;
			rng_init(&r, seed, RNG_AUGMENT, step, ids ? ids[b] : (uint32_t)b);
			for (int i = 0; i < AUG_DRAWS; i++)
				rng_u32(&r);
			t0 = (int)rng_below(&r, (uint32_t)(T - Tc + 1));
		}
		for (int f = 0; f < F; f++)
			memcpy(out + ((size_t)b * F + f) * Tc, inp + ((size_t)b * F + f) * T + t0,
			       (size_t)Tc * sizeof(float));
	}
}

/* ---- losses ------------------------------------------------------------ */

/* pixels per block of pixel_xent: the block's K rows of logits are read
 * contiguously, and its K exponentials kept for the gradient */
#define XENT_PIX 64

void pixel_softmax_block(float *e, size_t es, float *m, float *se, const float *z, size_t zs,
			 int K, int np)
{
	for (int i = 0; i < np; i++)
		m[i] = z[i];
	for (int k = 1; k < K; k++)
		for (int i = 0; i < np; i++) {
			float v = z[(size_t)k * zs + i];
			m[i] = v > m[i] ? v : m[i];
		}
	for (int i = 0; i < np; i++)
		se[i] = 0.0f;
	for (int k = 0; k < K; k++) {
		float *ek = e + (size_t)k * es;
		exp_sub(ek, z + (size_t)k * zs, m, np);
		for (int i = 0; i < np; i++)
			se[i] += ek[i];
	}
}

/* Each pixel's softmax in float (pixel_softmax_block), the loss in double. */
double pixel_xent(float *dlogits, const float *logits, const int *labels, int B, int K, int HW,
		  int ignore, float grad_scale, long *count)
{
	// logits, dlogits are (B,K,HW); labels (B,HW)
	double loss = 0.0;
	long n = 0;
	float *e = xmalloc(sizeof(float) * (size_t)K * XENT_PIX);
	for (int b = 0; b < B; b++) {
		const float *z = logits + (size_t)b * K * HW;
		float *dz = dlogits ? dlogits + (size_t)b * K * HW : NULL;
		const int *lab = labels + (size_t)b * HW;
		for (int p0 = 0; p0 < HW; p0 += XENT_PIX) {
			int np = HW - p0 < XENT_PIX ? HW - p0 : XENT_PIX;
			float m[XENT_PIX], se[XENT_PIX], g[XENT_PIX];
			pixel_softmax_block(e, XENT_PIX, m, se, z + p0, (size_t)HW, K, np);
			for (int i = 0; i < np; i++) {
				int y = lab[p0 + i];
				g[i] = 0.0f;
				if (y == ignore || y < 0 || y >= K)
					continue;
				loss += (double)m[i] + log((double)se[i]) - z[(size_t)y * HW + p0 + i];
				g[i] = grad_scale / se[i];
				n++;
			}
			if (!dz)
				continue;
			/* (softmax - onehot) * grad_scale: e * grad_scale / se, then the label's -grad_scale */
			for (int k = 0; k < K; k++) {
				const float *ek = e + (size_t)k * XENT_PIX;
				float *d = dz + (size_t)k * HW + p0;
				for (int i = 0; i < np; i++)
					d[i] += ek[i] * g[i];
			}
			for (int i = 0; i < np; i++) {
				int y = lab[p0 + i];
				if (y != ignore && y >= 0 && y < K)
					dz[(size_t)y * HW + p0 + i] -= grad_scale;
			}
		}
	}
	free(e);
	if (count)
		*count = n;
	return loss;
}

double bce_logits(float *dlogits, const float *logits, const float *targets, int B, int K,
		  float grad_scale)
{
	// logits, targets, dlogits are (B,K)
	double loss = 0.0;
	for (size_t i = 0; i < (size_t)B * K; i++) {
		double x = logits[i], t = targets[i];
		loss += (x > 0.0 ? x : 0.0) - x * t + log1p(exp(-fabs(x)));
		if (dlogits) {
			double sg = x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
			dlogits[i] += (float)((sg - t) * grad_scale);
		}
	}
	return loss;
}

/* ---- metrics ----------------------------------------------------------- */

void confusion_update(double *conf, const float *logits, const int *labels, int B, int K, int HW)
{
	// logits (B,K,HW), labels (B,HW); conf (K,K) accumulates
	for (int b = 0; b < B; b++) {
		const float *z = logits + (size_t)b * K * HW;
		for (int p = 0; p < HW; p++) {
			int y = labels[(size_t)b * HW + p];
			if (y < 0 || y >= K)
				continue;
			int best = 0;
			for (int k = 1; k < K; k++)
				if (z[(size_t)k * HW + p] > z[(size_t)best * HW + p])
					best = k;
			conf[(size_t)y * K + best] += 1.0;
		}
	}
}

double confusion_miou(const double *conf, int K, double *per_class)
{
	double sum = 0.0;
	int n = 0;
	for (int k = 0; k < K; k++) {
		double tp = conf[(size_t)k * K + k], row = 0.0, col = 0.0;
		for (int j = 0; j < K; j++) {
			row += conf[(size_t)k * K + j];
			col += conf[(size_t)j * K + k];
		}
		double uni = row + col - tp;
		double iou = uni > 0.0 ? tp / uni : -1.0;
		if (per_class)
			per_class[k] = iou;
		if (uni > 0.0) {
			sum += iou;
			n++;
		}
	}
	return n ? sum / n : 0.0;
}

double confusion_pixel_acc(const double *conf, int K)
{
	double tr = 0.0, all = 0.0;
	for (int k = 0; k < K; k++)
		for (int j = 0; j < K; j++) {
			all += conf[(size_t)k * K + j];
			if (j == k)
				tr += conf[(size_t)k * K + j];
		}
	return all > 0.0 ? tr / all : 0.0;
}

struct ap_item {
	float score;
	int pos;
};

static int ap_cmp(const void *pa, const void *pb)
{
	const struct ap_item *a = pa, *b = pb;
	return (a->score < b->score) - (a->score > b->score); /* descending */
}

double mean_average_precision(const float *scores, const float *targets, int n, int K,
			      double *per_class)
{
	// scores, targets are (n,K)
	struct ap_item *it = xmalloc(((size_t)n > 0 ? (size_t)n : 1) * sizeof(*it));
	double sum = 0.0;
	int used = 0;
	for (int k = 0; k < K; k++) {
		long npos = 0;
		for (int i = 0; i < n; i++) {
			it[i].score = scores[(size_t)i * K + k];
			it[i].pos = targets[(size_t)i * K + k] > 0.5f;
			npos += it[i].pos;
		}
		if (npos == 0) {
			if (per_class)
				per_class[k] = -1.0;
			continue;
		}
		qsort(it, (size_t)n, sizeof(*it), ap_cmp);
		/* one point per distinct score (ties grouped): AP = sum dR * P */
		double ap = 0.0, prev_r = 0.0;
		long tp = 0;
		for (int i = 0; i < n; i++) {
			tp += it[i].pos;
			if (i + 1 < n && it[i + 1].score == it[i].score)
				continue;
			double r = (double)tp / npos, prec = (double)tp / (i + 1);
			ap += (r - prev_r) * prec;
			prev_r = r;
		}
		if (per_class)
			per_class[k] = ap;
		sum += ap;
		used++;
	}
	free(it);
	return used ? sum / used : 0.0;
}
