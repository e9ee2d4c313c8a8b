/*
 * winograd.c - 3x3, stride-1, pad-1 convolutions by Winograd's F(2x2, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * Each 2x2 block of outputs ("tile") is computed from the 4x4 block of input
 * around it as
 *
 *     Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 *
 * where g is a 3x3 kernel and (.) the elementwise product: 16 products per
 * tile and channel pair instead of 36. Summed over the input channels, the
 * 16 elementwise products become 16 independent matrix products
 *
 *     M[xi] (OC x T) = U[xi] (OC x C) V[xi] (C x T),   xi = 0..15
 *
 * over T tiles, done by cblas_sgemm: 2.25 times fewer flops than the im2col
 * product, on matrices with a short inner dimension (C instead of 9C).
 *
 * The backward pass is the exact gradient of that formula. With
 * Yh = A dY A^T (each 2x2 tile of the output gradient, 4x4 after):
 *
 *     dU[xi] = Yh[xi] V[xi]^T        dg = G^T dU G      (weight gradient)
 *     dV[xi] = U[xi]^T Yh[xi]        dd = B dV B^T      (input gradient,
 *                                                        4x4 blocks that
 *                                                        overlap, added)
 *
 * so the weight and input gradients are 32 more products with the same
 * short inner dimensions. The tiles of the whole batch are numbered row by
 * row of tiles, image after image, and taken a fixed number of tile rows at
 * a time (wino_rows), so the scratch depends on the shape, not on B.
 *
 * The transforms are plain loops over whole rows of tiles that the compiler
 * vectorises, with AVX2 versions; docs/layers.md says when this path is
 * taken and what it costs.
 *
 * F(4x4, 3x3) (winograd4.c: 6x6 input tiles, 36 products per tile instead
 * of 144) runs through the same chunks, threads and sgemm here with 36
 * points in place of 16; wino_tile picks it for outputs of at least
 * WINO4_MIN_SIDE on each side, where it measured faster.
 */
#include "winograd.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WINO_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#endif

/* A chunk of tiles holds about 2^WINO_SHIFT floats of transformed input
 * and output (2^18: 1 MB, about L2; 2^19 to 2^21 measured slower on the
 * NYU net), and at least WINO_MINT tiles so the sgemm stay wide */
#ifndef WINO_SHIFT
#define WINO_SHIFT 18
#endif
#ifndef WINO_MINT
#define WINO_MINT 64
#endif

/* -1: not yet read from the environment; 0 off, 1 the tile by shape, 2 or
 * 4 that tile for every shape (MKE_WINOGRAD=0, 2, 4) */
static int wino_on = -1;


void conv2d_winograd_enable(int on)
{
	wino_on = on;
}

static int wino_mode(void)
{
	if (wino_on < 0) {
		const char *e = getenv("MKE_WINOGRAD");
		wino_on = !e || !*e ? 1 : strcmp(e, "0") == 0 ? 0 : strcmp(e, "2") == 0 ? 2 :
					 strcmp(e, "4") == 0 ? 4 : 1;
	}
	return wino_on;
}

int wino_applies(const struct conv2d_shape *s)
{
	return wino_mode() && s->KH == 3 && s->KW == 3 && s->stride == 1 && s->dil == 1 &&
	       s->pad == 1 && s->C >= WINO_MIN_C && s->OC >= WINO_MIN_C &&
	       s->OH >= WINO_MIN_SIDE && s->OW >= WINO_MIN_SIDE;
}

/* F(4x4) from WINO4_MIN_SIDE outputs on each side: below it (15x20,
 * 128 -> 256 channels, 0.8x) the larger tiles' ragged edges and the
 * 2.25x larger transformed weights cost more than the products saved */
int wino_tile(const struct conv2d_shape *s)
{
	int mode = wino_mode();
	if (mode == 2 || mode == 4)
		return mode;
	return s->OH >= WINO4_MIN_SIDE && s->OW >= WINO4_MIN_SIDE ? 4 : 2;
}

/* Tile rows per chunk: about 2^WINO_SHIFT floats of transformed input and
 * output, at least WINO_MINT tiles */
static int wino_rows(const struct conv2d_shape *s, int m, int TW)
{
	size_t per_tile = (size_t)(m + 2) * (m + 2) * (size_t)(s->C + s->OC);
	size_t tiles = ((size_t)1 << WINO_SHIFT) / per_tile;
	if (tiles < WINO_MINT)
		tiles = WINO_MINT;
	int rows = (int)(tiles / (size_t)TW);
	return rows < 1 ? 1 : rows;
}

/* The buffers of thread t for tile side m (U is shared; dU, V, M, strip
 * and row are each thread's): U, dU (X*OC*C each), V (X*C*T), M or Yh
 * (X*OC*T), the strip (F(2x2): 4 rows of SW floats; F(4x4): 6 rows of 4
 * phases of PP floats) and the rows (16 of TW+16 for
 * F(2x2), 36 for F(4x4)). Returns the floats WINO_THREADS threads need */
static size_t wino_layout(struct wino_buf *w, const struct conv2d_shape *s, int m, float *base,
			  int t)
{
	w->m = m, w->X = (m + 2) * (m + 2);
	w->TH = (s->OH + m - 1) / m, w->TW = (s->OW + m - 1) / m;
	/* F(2x2): 2TW+2 columns, rounded up to whole vectors, and 16 more that
	 * the vector loops may read past the last tile; F(4x4): phases of
	 * TW+1 columns, rounded up likewise */
	w->PP = (w->TW + 1 + 7) & ~7;
	w->SW = m == 2 ? ((2 * w->TW + 2 + 7) & ~7) + 16 : 4 * w->PP + 16;
	w->rows = wino_rows(s, m, w->TW);
	w->T = (size_t)w->rows * w->TW;
	size_t X = (size_t)w->X, uc = X * s->OC * s->C;
	size_t nstrip = m == 2 ? (size_t)4 * w->SW : (size_t)24 * w->PP;
	size_t per = uc + X * (s->C + s->OC) * w->T + nstrip +
		     (m == 2 ? 16 : 36) * (size_t)(w->TW + 16);
	w->U = base;
	size_t off = uc + (size_t)t * per;
	w->dU = base ? base + off : NULL, off += uc;
	w->V = base ? base + off : NULL, off += X * s->C * w->T;
	w->M = base ? base + off : NULL, off += X * s->OC * w->T;
	w->strip = base ? base + off : NULL, off += nstrip;
	w->row = base ? base + off : NULL;
	return uc + (size_t)WINO_THREADS * per;
}

size_t wino_scratch(const struct conv2d_shape *s)
{
	struct wino_buf w;
	return wino_layout(&w, s, wino_tile(s), NULL, 0);
}

/* U[xi][oc][c] = (G g G^T)[xi] for every kernel g = weight[oc][c] */
static void weight_transform(float *U, const float *weight, int OC, int C)
{
	size_t plane = (size_t)OC * C;
	for (int oc = 0; oc < OC; oc++)
		for (int c = 0; c < C; c++) {
			const float *g = weight + ((size_t)oc * C + c) * 9;
			float p[4][3];
			for (int j = 0; j < 3; j++) {
				p[0][j] = g[j];
				p[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
				p[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
				p[3][j] = g[6 + j];
			}
			float *u = U + (size_t)oc * C + c;
			for (int i = 0; i < 4; i++) {
				u[(4 * i + 0) * plane] = p[i][0];
				u[(4 * i + 1) * plane] = 0.5f * (p[i][0] + p[i][1] + p[i][2]);
				u[(4 * i + 2) * plane] = 0.5f * (p[i][0] - p[i][1] + p[i][2]);
				u[(4 * i + 3) * plane] = p[i][2];
			}
		}
}

/* weight[oc][c] += G^T dU[.][oc][c] G */
static void weight_grad_transform(float *dweight, const float *dU, int OC, int C)
{
	size_t plane = (size_t)OC * C;
	for (int oc = 0; oc < OC; oc++)
		for (int c = 0; c < C; c++) {
			const float *z = dU + (size_t)oc * C + c;
			float q[3][4];
			for (int j = 0; j < 4; j++) {
				float z0 = z[j * plane], z1 = z[(4 + j) * plane];
				float z2 = z[(8 + j) * plane], z3 = z[(12 + j) * plane];
				q[0][j] = z0 + 0.5f * (z1 + z2);
				q[1][j] = 0.5f * (z1 - z2);
				q[2][j] = 0.5f * (z1 + z2) + z3;
			}
			float *g = dweight + ((size_t)oc * C + c) * 9;
			for (int i = 0; i < 3; i++) {
				g[3 * i + 0] += q[i][0] + 0.5f * (q[i][1] + q[i][2]);
				g[3 * i + 1] += 0.5f * (q[i][1] - q[i][2]);
				g[3 * i + 2] += 0.5f * (q[i][1] + q[i][2]) + q[i][3];
			}
		}
}

#ifdef WINO_X86
/* e = p[0, 2, .., 14], o = p[1, 3, .., 15] */
AVX2 static inline void deinterleave(const float *p, __m256 *e, __m256 *o)
{
	__m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
	__m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
	__m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
	*e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
	*o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* p[0..16) = e[0], o[0], e[1], o[1], .. */
AVX2 static inline void interleave(float *p, __m256 e, __m256 o)
{
	__m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
	_mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
	_mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* input_strip's combination down the columns, SW a multiple of 8 */
AVX2 static void strip_combine_avx2(float *strip, int SW)
{
	float *d0 = strip, *d1 = strip + SW, *d2 = strip + 2 * SW, *d3 = strip + 3 * SW;
	for (int j = 0; j < SW; j += 8) {
		__m256 a = _mm256_loadu_ps(d0 + j), b = _mm256_loadu_ps(d1 + j);
		__m256 c = _mm256_loadu_ps(d2 + j), e = _mm256_loadu_ps(d3 + j);
		_mm256_storeu_ps(d0 + j, _mm256_sub_ps(a, c));
		_mm256_storeu_ps(d1 + j, _mm256_add_ps(b, c));
		_mm256_storeu_ps(d2 + j, _mm256_sub_ps(c, b));
		_mm256_storeu_ps(d3 + j, _mm256_sub_ps(b, e));
	}
}

/* input_tiles for the tiles [0, TW & ~7); returns where it stopped */
AVX2 static int input_tiles_avx2(float *V, size_t ld, size_t t0, const float *strip, int SW,
				 int TW)
{
	int tw = 0;
	for (int i = 0; i < 4; i++) {
		const float *r = strip + (size_t)i * SW;
		float *v0 = V + (size_t)(4 * i) * ld + t0, *v1 = v0 + ld, *v2 = v1 + ld,
		      *v3 = v2 + ld;
		for (tw = 0; tw + 8 <= TW; tw += 8) {
			__m256 a, b, c, e;
			deinterleave(r + 2 * tw, &a, &b);
			deinterleave(r + 2 * tw + 2, &c, &e);
			_mm256_storeu_ps(v0 + tw, _mm256_sub_ps(a, c));
			_mm256_storeu_ps(v1 + tw, _mm256_add_ps(b, c));
			_mm256_storeu_ps(v2 + tw, _mm256_sub_ps(c, b));
			_mm256_storeu_ps(v3 + tw, _mm256_sub_ps(b, e));
		}
	}
	return tw;
}

/* output_transform's tiles [0, TW & ~7) of one channel into the four y
 * rows; returns where it stopped */
AVX2 static int output_tiles_avx2(float *const y[4], const float *m, size_t mstride, int TW,
				  float bv, float sc, float sh, int relu)
{
	const __m256 vb = _mm256_set1_ps(bv), vs = _mm256_set1_ps(sc), vh = _mm256_set1_ps(sh);
	const __m256 zero = _mm256_setzero_ps();
	int tw = 0;
	for (; tw + 8 <= TW; tw += 8) {
		__m256 u0[4], u1[4];
		for (int j = 0; j < 4; j++) {
			__m256 m0 = _mm256_loadu_ps(m + j * mstride + tw);
			__m256 m1 = _mm256_loadu_ps(m + (4 + j) * mstride + tw);
			__m256 m2 = _mm256_loadu_ps(m + (8 + j) * mstride + tw);
			__m256 m3 = _mm256_loadu_ps(m + (12 + j) * mstride + tw);
			u0[j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
			u1[j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
		}
		__m256 v[4] = {
			_mm256_add_ps(_mm256_add_ps(u0[0], u0[1]), u0[2]),
			_mm256_sub_ps(_mm256_sub_ps(u0[1], u0[2]), u0[3]),
			_mm256_add_ps(_mm256_add_ps(u1[0], u1[1]), u1[2]),
			_mm256_sub_ps(_mm256_sub_ps(u1[1], u1[2]), u1[3]),
		};
		for (int q = 0; q < 4; q++) {
			__m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(v[q], vb), vs), vh);
			if (relu)
				t = _mm256_max_ps(t, zero);
			_mm256_storeu_ps(y[q] + tw, t);
		}
	}
	return tw;
}

/* orow[2tw] = ye[tw], orow[2tw+1] = yo[tw] while both fit in OW; returns
 * the first tile not written */
AVX2 static int interleave_row_avx2(float *orow, const float *ye, const float *yo, int TW, int OW)
{
	int tw = 0;
	for (; tw + 8 <= TW && 2 * tw + 16 <= OW; tw += 8)
		interleave(orow + 2 * tw, _mm256_loadu_ps(ye + tw), _mm256_loadu_ps(yo + tw));
	return tw;
}

/* e[tw] = gr[2tw], o[tw] = gr[2tw+1] while 16 values fit in OW; returns
 * the first tile not read */
AVX2 static int deinterleave_row_avx2(float *e, float *o, const float *gr, int TW, int OW)
{
	int tw = 0;
	for (; tw + 8 <= TW && 2 * tw + 16 <= OW; tw += 8) {
		__m256 ev, od;
		deinterleave(gr + 2 * tw, &ev, &od);
		_mm256_storeu_ps(e + tw, ev);
		_mm256_storeu_ps(o + tw, od);
	}
	return tw;
}

/* grad_transform's tiles [0, TW & ~7) of one channel; returns where it
 * stopped */
AVX2 static int grad_tiles_avx2(float *y, size_t ystride, const float *e0, const float *o0,
				const float *e1, const float *o1, int TW)
{
	int tw = 0;
	for (; tw + 8 <= TW; tw += 8) {
		__m256 a = _mm256_loadu_ps(e0 + tw), b = _mm256_loadu_ps(e1 + tw);
		__m256 c = _mm256_loadu_ps(o0 + tw), d = _mm256_loadu_ps(o1 + tw);
		__m256 ue[4] = {a, _mm256_add_ps(a, b), _mm256_sub_ps(a, b),
				_mm256_sub_ps(_mm256_setzero_ps(), b)};
		__m256 uo[4] = {c, _mm256_add_ps(c, d), _mm256_sub_ps(c, d),
				_mm256_sub_ps(_mm256_setzero_ps(), d)};
		for (int i = 0; i < 4; i++) {
			_mm256_storeu_ps(y + (4 * i + 0) * ystride + tw, ue[i]);
			_mm256_storeu_ps(y + (4 * i + 1) * ystride + tw, _mm256_add_ps(ue[i], uo[i]));
			_mm256_storeu_ps(y + (4 * i + 2) * ystride + tw, _mm256_sub_ps(ue[i], uo[i]));
			_mm256_storeu_ps(y + (4 * i + 3) * ystride + tw,
					 _mm256_sub_ps(_mm256_setzero_ps(), uo[i]));
		}
	}
	return tw;
}

/* input_grad_transform for one channel's tile row: the 4x4 blocks of
 * B dV B^T of tiles [0, TW & ~7) into the 16 rows w[4i+j] (row stride ws,
 * w[.][1 + tw]); returns where it stopped */
AVX2 static int input_grad_tiles_avx2(float *w, size_t ws, const float *z, size_t vstride, int TW)
{
	int tw = 0;
	const __m256 zero = _mm256_setzero_ps();
	for (; tw + 8 <= TW; tw += 8) {
		__m256 q[4][4];
		for (int j = 0; j < 4; j++) {
			__m256 z0 = _mm256_loadu_ps(z + j * vstride + tw);
			__m256 z1 = _mm256_loadu_ps(z + (4 + j) * vstride + tw);
			__m256 z2 = _mm256_loadu_ps(z + (8 + j) * vstride + tw);
			__m256 z3 = _mm256_loadu_ps(z + (12 + j) * vstride + tw);
			q[0][j] = z0;
			q[1][j] = _mm256_add_ps(_mm256_sub_ps(z1, z2), z3);
			q[2][j] = _mm256_add_ps(_mm256_sub_ps(z1, z0), z2);
			q[3][j] = _mm256_sub_ps(zero, z3);
		}
		for (int i = 0; i < 4; i++) {
			float *r = w + (size_t)(4 * i) * ws + 1 + tw;
			_mm256_storeu_ps(r, q[i][0]);
			_mm256_storeu_ps(r + ws, _mm256_add_ps(_mm256_sub_ps(q[i][1], q[i][2]), q[i][3]));
			_mm256_storeu_ps(r + 2 * ws,
					 _mm256_add_ps(_mm256_sub_ps(q[i][1], q[i][0]), q[i][2]));
			_mm256_storeu_ps(r + 3 * ws, _mm256_sub_ps(zero, q[i][3]));
		}
	}
	return tw;
}

/* strip[2k] = w0[1+k] + w2[k], strip[2k+1] = w1[1+k] + w3[k] for k in [0, n & ~7) */
AVX2 static int overlap_row_avx2(float *strip, const float *w0, const float *w1, const float *w2,
				 const float *w3, int n)
{
	int k = 0;
	for (; k + 8 <= n; k += 8) {
		__m256 e = _mm256_add_ps(_mm256_loadu_ps(w0 + 1 + k), _mm256_loadu_ps(w2 + k));
		__m256 o = _mm256_add_ps(_mm256_loadu_ps(w1 + 1 + k), _mm256_loadu_ps(w3 + k));
		interleave(strip + 2 * k, e, o);
	}
	return k;
}

/* x[j] += r[j] for j in [0, n & ~7) */
AVX2 static int add_row_avx2(float *x, const float *r, int n)
{
	int j = 0;
	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(x + j, _mm256_add_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(r + j)));
	return j;
}
#endif

/* The 4 input rows of tile row th of plane x (H,W), zero-padded, as strip
 * rows of SW floats: strip[i][j] = x[2th-1+i][j-1], then B^T applied down
 * the columns (r0 = d0-d2, r1 = d1+d2, r2 = d2-d1, r3 = d1-d3) */
static void input_strip(float *strip, const float *x, int H, int W, int th, int SW)
{
	float *d[4] = {strip, strip + SW, strip + 2 * SW, strip + 3 * SW};
	for (int i = 0; i < 4; i++) {
		int ih = 2 * th - 1 + i;
		if (ih < 0 || ih >= H) {
			memset(d[i], 0, (size_t)SW * sizeof(float));
			continue;
		}
		/* the row between its zero borders, each float written once */
		d[i][0] = 0.0f;
		memcpy(d[i] + 1, x + (size_t)ih * W, (size_t)W * sizeof(float));
		memset(d[i] + 1 + W, 0, (size_t)(SW - 1 - W) * sizeof(float));
	}
#ifdef WINO_X86
	if (cpu_avx2()) {
		strip_combine_avx2(strip, SW);
		return;
	}
#endif
	for (int j = 0; j < SW; j++) {
		float a = d[0][j], b = d[1][j], c = d[2][j], e = d[3][j];
		d[0][j] = a - c;
		d[1][j] = b + c;
		d[2][j] = c - b;
		d[3][j] = b - e;
	}
}

/* V[xi][c][t0 + tw] for the TW tiles of one strip: B applied along the rows */
static void input_tiles(float *V, size_t ld, size_t t0, const float *strip, int SW, int TW)
{
	int tw0 = 0;
#ifdef WINO_X86
	if (cpu_avx2())
		tw0 = input_tiles_avx2(V, ld, t0, strip, SW, TW);
#endif
	for (int i = 0; i < 4; i++) {
		const float *r = strip + (size_t)i * SW;
		float *v0 = V + (size_t)(4 * i) * ld + t0, *v1 = v0 + ld, *v2 = v1 + ld,
		      *v3 = v2 + ld;
		for (int tw = tw0; tw < TW; tw++) {
			float a = r[2 * tw], b = r[2 * tw + 1], c = r[2 * tw + 2], e = r[2 * tw + 3];
			v0[tw] = a - c;
			v1[tw] = b + c;
			v2[tw] = c - b;
			v3[tw] = b - e;
		}
	}
}

/* V (16, C, ld) for tile rows [r0, r0+nr) of the batch */
static void input_transform(float *V, size_t ld, float *strip, const float *inp,
			    const struct conv2d_shape *s, const struct wino_buf *w, int r0, int nr)
{
	size_t plane = (size_t)s->H * s->W;
	size_t vstride = (size_t)s->C * ld; /* between xi rows */
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int c = 0; c < s->C; c++) {
			input_strip(strip, inp + ((size_t)b * s->C + c) * plane, s->H, s->W, th,
				    w->SW);
			/* rows xi*C + c of V, columns k*TW.. */
			input_tiles(V + (size_t)c * ld, vstride, (size_t)k * w->TW, strip, w->SW,
				    w->TW);
		}
	}
}

/* Yh (16, OC, ld) = A dY A^T for tile rows [r0, r0+nr): each 2x2 block of
 * the output gradient (zero past OH, OW), 4x4 after */
static void grad_transform(float *Yh, size_t ld, float *row, const float *dout,
			   const struct conv2d_shape *s, const struct wino_buf *w, int r0, int nr)
{
	size_t plane = (size_t)s->OH * s->OW, ystride = (size_t)s->OC * ld;
	int TW = w->TW, avx2 = cpu_avx2();
	float *e0 = row, *o0 = row + TW, *e1 = row + 2 * TW, *o1 = row + 3 * TW;
	(void)avx2;
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int oc = 0; oc < s->OC; oc++) {
			const float *g = dout + ((size_t)b * s->OC + oc) * plane;
			/* even and odd columns of output rows 2th, 2th+1 */
			for (int h = 0; h < 2; h++) {
				int oh = 2 * th + h;
				float *e = h ? e1 : e0, *o = h ? o1 : o0;
				if (oh >= s->OH) {
					memset(e, 0, (size_t)TW * sizeof(float));
					memset(o, 0, (size_t)TW * sizeof(float));
					continue;
				}
				const float *gr = g + (size_t)oh * s->OW;
				int tw = 0;
#ifdef WINO_X86
				if (avx2)
					tw = deinterleave_row_avx2(e, o, gr, TW, s->OW);
#endif
				for (; tw < TW; tw++) {
					e[tw] = gr[2 * tw];
					o[tw] = 2 * tw + 1 < s->OW ? gr[2 * tw + 1] : 0.0f;
				}
			}
			float *y = Yh + (size_t)oc * ld + (size_t)k * TW;
			int tw = 0;
#ifdef WINO_X86
			if (avx2)
				tw = grad_tiles_avx2(y, ystride, e0, o0, e1, o1, TW);
#endif
			for (; tw < TW; tw++) {
				/* u = A g: rows g0, g0+g1, g0-g1, -g1; then each row times A^T */
				float ue[4] = {e0[tw], e0[tw] + e1[tw], e0[tw] - e1[tw], -e1[tw]};
				float uo[4] = {o0[tw], o0[tw] + o1[tw], o0[tw] - o1[tw], -o1[tw]};
				for (int i = 0; i < 4; i++) {
					y[(4 * i + 0) * ystride + tw] = ue[i];
					y[(4 * i + 1) * ystride + tw] = ue[i] + uo[i];
					y[(4 * i + 2) * ystride + tw] = ue[i] - uo[i];
					y[(4 * i + 3) * ystride + tw] = -uo[i];
				}
			}
		}
	}
}

/* out (tile rows [r0, r0+nr)) = epilogue(A^T M A + bias) */
static void output_transform(float *out, const float *M, size_t ld, float *row, const float *bias,
			     const struct conv_epilogue *ep, const struct conv2d_shape *s,
			     const struct wino_buf *w, int r0, int nr)
{
	size_t plane = (size_t)s->OH * s->OW, mstride = (size_t)s->OC * ld;
	int TW = w->TW, avx2 = cpu_avx2();
	float *y[4] = {row, row + TW, row + 2 * TW, row + 3 * TW}; /* y00 y01 y10 y11 */
	(void)avx2;
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int oc = 0; oc < s->OC; oc++) {
			const float *m = M + (size_t)oc * ld + (size_t)k * TW;
			float bv = bias ? bias[oc] : 0.0f;
			float sc = ep ? ep->scale[oc] : 1.0f, sh = ep ? ep->shift[oc] : 0.0f;
			int relu = ep && ep->relu, tw = 0;
#ifdef WINO_X86
			if (avx2)
				tw = output_tiles_avx2(y, m, mstride, TW, bv, sc, sh, relu);
#endif
			for (; tw < TW; tw++) {
				float u0[4], u1[4];
				for (int j = 0; j < 4; j++) {
					float m0 = m[j * mstride + tw], m1 = m[(4 + j) * mstride + tw];
					float m2 = m[(8 + j) * mstride + tw],
					      m3 = m[(12 + j) * mstride + tw];
					u0[j] = m0 + m1 + m2;
					u1[j] = m1 - m2 - m3;
				}
				float v[4] = {u0[0] + u0[1] + u0[2], u0[1] - u0[2] - u0[3],
					      u1[0] + u1[1] + u1[2], u1[1] - u1[2] - u1[3]};
				for (int q = 0; q < 4; q++) {
					float t = (v[q] + bv) * sc + sh;
					y[q][tw] = relu && !(t > 0.0f) ? 0.0f : t;
				}
			}
			float *o = out + ((size_t)b * s->OC + oc) * plane;
			for (int h = 0; h < 2 && 2 * th + h < s->OH; h++) {
				float *orow = o + (size_t)(2 * th + h) * s->OW;
				const float *ye = y[2 * h], *yo = y[2 * h + 1];
				tw = 0;
#ifdef WINO_X86
				if (avx2)
					tw = interleave_row_avx2(orow, ye, yo, TW, s->OW);
#endif
				for (; tw < TW; tw++) {
					orow[2 * tw] = ye[tw];
					if (2 * tw + 1 < s->OW)
						orow[2 * tw + 1] = yo[tw];
				}
			}
		}
	}
}

/* dinp (tile rows [r0, r0+nr)) += B dV B^T, the 4x4 blocks overlapping:
 * block (i, j) of tile tw lands on input row 2th-1+i, column 2tw-1+j */
static void input_grad_transform(float *dinp, const float *dV, size_t ld, float *strip,
				 float *row, const struct conv2d_shape *s,
				 const struct wino_buf *w, int r0, int nr)
{
	size_t plane = (size_t)s->H * s->W, vstride = (size_t)s->C * ld;
	int TW = w->TW, avx2 = cpu_avx2();
	size_t ws = (size_t)TW + 16;
	(void)avx2;
	/* wr[4i+j][1 + tw]: block (i, j) of tile tw; [0] and [1+TW] stay 0 */
	float *wr = row;
	for (int r = 0; r < 16; r++) {
		wr[r * ws] = 0.0f;
		wr[r * ws + 1 + (size_t)TW] = 0.0f;
	}
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int c = 0; c < s->C; c++) {
			const float *z = dV + (size_t)c * ld + (size_t)k * TW;
			int tw = 0;
#ifdef WINO_X86
			if (avx2)
				tw = input_grad_tiles_avx2(wr, ws, z, vstride, TW);
#endif
			for (; tw < TW; tw++) {
				float q[4][4];
				for (int j = 0; j < 4; j++) {
					float z0 = z[j * vstride + tw], z1 = z[(4 + j) * vstride + tw];
					float z2 = z[(8 + j) * vstride + tw],
					      z3 = z[(12 + j) * vstride + tw];
					/* B z down the columns */
					q[0][j] = z0;
					q[1][j] = z1 - z2 + z3;
					q[2][j] = z1 - z0 + z2;
					q[3][j] = -z3;
				}
				for (int i = 0; i < 4; i++) {
					float *r = wr + (size_t)(4 * i) * ws + 1 + tw;
					r[0] = q[i][0];
					r[ws] = q[i][1] - q[i][2] + q[i][3];
					r[2 * ws] = q[i][1] - q[i][0] + q[i][2];
					r[3 * ws] = -q[i][3];
				}
			}
			float *x = dinp + ((size_t)b * s->C + c) * plane;
			for (int i = 0; i < 4; i++) {
				int ih = 2 * th - 1 + i;
				if (ih < 0 || ih >= s->H)
					continue;
				/* strip[x]: input column x-1; tiles tw and tw-1 meet there */
				const float *w0 = wr + (size_t)(4 * i) * ws, *w1 = w0 + ws,
					    *w2 = w1 + ws, *w3 = w2 + ws;
				int n = TW + 1, kk = 0;
#ifdef WINO_X86
				if (avx2)
					kk = overlap_row_avx2(strip, w0, w1, w2, w3, n);
#endif
				for (; kk < n; kk++) {
					strip[2 * kk] = w0[1 + kk] + w2[kk];
					strip[2 * kk + 1] = w1[1 + kk] + w3[kk];
				}
				float *xr = x + (size_t)ih * s->W;
				int j = 0;
#ifdef WINO_X86
				if (avx2)
					j = add_row_avx2(xr, strip + 1, s->W);
#endif
				for (; j < s->W; j++)
					xr[j] += strip[1 + j];
			}
		}
	}
}

/* One thread's share: the tile rows of images [b0, b1) */
struct wino_job {
	const struct conv2d_shape *s;
	struct wino_buf w;
	int b0, b1;
	float *out, *dinp;
	const float *inp, *bias, *dout;
	const struct conv_epilogue *ep;
	pthread_t tid;
};

static void forward_rows(struct wino_job *j)
{
	const struct conv2d_shape *s = j->s;
	const struct wino_buf *w = &j->w;
	int OC = s->OC, C = s->C, R = j->b1 * w->TH;
	for (int r0 = j->b0 * w->TH; r0 < R; r0 += w->rows) {
		int nr = R - r0 < w->rows ? R - r0 : w->rows;
		int n = nr * w->TW;
		if (w->m == 4)
			wino4_input_transform(w, j->inp, s, r0, nr);
		else
			input_transform(w->V, w->T, w->strip, j->inp, s, w, r0, nr);
		for (int xi = 0; xi < w->X; xi++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, n, C, 1.0f,
				    w->U + (size_t)xi * OC * C, C, w->V + (size_t)xi * C * w->T,
				    (int)w->T, 0.0f, w->M + (size_t)xi * OC * w->T, (int)w->T);
		if (w->m == 4)
			wino4_output_transform(w, j->out, j->bias, j->ep, s, r0, nr);
		else
			output_transform(j->out, w->M, w->T, w->row, j->bias, j->ep, s, w, r0,
					 nr);
	}
}

/* dU (this thread's, zeroed first) and dinp for the job's tile rows */
static void backward_rows(struct wino_job *j)
{
	const struct conv2d_shape *s = j->s;
	const struct wino_buf *w = &j->w;
	int OC = s->OC, C = s->C, R = j->b1 * w->TH;
	memset(w->dU, 0, (size_t)w->X * OC * C * sizeof(float));
	for (int r0 = j->b0 * w->TH; r0 < R; r0 += w->rows) {
		int nr = R - r0 < w->rows ? R - r0 : w->rows;
		int n = nr * w->TW;
		if (w->m == 4) {
			wino4_input_transform(w, j->inp, s, r0, nr);
			wino4_grad_transform(w, j->dout, s, r0, nr);
		} else {
			input_transform(w->V, w->T, w->strip, j->inp, s, w, r0, nr);
			grad_transform(w->M, w->T, w->row, j->dout, s, w, r0, nr);
		}
		for (int xi = 0; xi < w->X; xi++) {
			const float *yh = w->M + (size_t)xi * OC * w->T;
			float *v = w->V + (size_t)xi * C * w->T;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, C, n, 1.0f, yh,
				    (int)w->T, v, (int)w->T, 1.0f, w->dU + (size_t)xi * OC * C, C);
			if (j->dinp) /* V is spent: dV takes its place */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, n, OC, 1.0f,
					    w->U + (size_t)xi * OC * C, C, yh, (int)w->T, 0.0f, v,
					    (int)w->T);
		}
		if (j->dinp && w->m == 4)
			wino4_input_grad_transform(w, j->dinp, s, r0, nr);
		else if (j->dinp)
			input_grad_transform(j->dinp, w->V, w->T, w->strip, w->row, s, w, r0, nr);
	}
}

static void *forward_thread(void *arg)
{
	forward_rows(arg);
	return NULL;
}

static void *backward_thread(void *arg)
{
	backward_rows(arg);
	return NULL;
}

/*
 * Threads for one call: a caller that gave OpenBLAS several threads (a
 * 2-thread BLAS pass) gets the batch cut into whole images over as many
 * threads, each with single-threaded sgemm, since the transforms would
 * otherwise run on one core between the threaded products. Images, not
 * tile rows, so no two threads add into the same row of dinp. A caller on
 * one BLAS thread (the batch threads of model_set_threads) gets one.
 */
static int wino_nthreads(int B)
{
	int T = openblas_get_num_threads();
	if (T > WINO_THREADS)
		T = WINO_THREADS;
	if (T > B)
		T = B;
	return T < 1 ? 1 : T;
}

/* Run fn over T jobs (images cut evenly), the BLAS on one thread meanwhile */
static void run_jobs(struct wino_job *jobs, int T, int B, void *(*fn)(void *))
{
	for (int t = 0; t < T; t++) {
		jobs[t].b0 = B * t / T;
		jobs[t].b1 = B * (t + 1) / T;
	}
	if (T == 1) {
		fn(&jobs[0]);
		return;
	}
	int blas = openblas_get_num_threads();
	openblas_set_num_threads(1);
	int started = 1;
	for (int t = 1; t < T; t++, started++)
		if (pthread_create(&jobs[t].tid, NULL, fn, &jobs[t]) != 0)
			break;
	fn(&jobs[0]);
	/* a thread that could not start: its images on this one */
	for (int t = started; t < T; t++)
		fn(&jobs[t]);
	for (int t = 1; t < started; t++)
		pthread_join(jobs[t].tid, NULL);
	openblas_set_num_threads(blas);
}

void conv_wcache_release(struct conv_wcache *c)
{
	free(c->U);
	free(c->w);
	*c = (struct conv_wcache){0};
}

/* U for weight at tile side m: transformed into the scratch's U (at its
 * start, wino_layout; no cache),
 * or the cache's, transformed only when weight or m changed since it was
 * made (a cache that cannot grow: the scratch's) */
static const float *wino_weights(struct conv_wcache *wc, float *scratch_u, const float *weight,
				 const struct conv2d_shape *s, int m)
{
	size_t nw = (size_t)s->OC * s->C * 9, nu = (size_t)(m + 2) * (m + 2) * s->OC * s->C;
	float *U = scratch_u;
	if (wc) {
		if (wc->U && wc->m == m && wc->nu == nu && wc->nw == nw &&
		    memcmp(wc->w, weight, nw * sizeof(float)) == 0)
			return wc->U;
		if (wc->nu != nu || wc->nw != nw) {
			free(wc->U);
			free(wc->w);
			wc->U = malloc(nu * sizeof(float));
			wc->w = malloc(nw * sizeof(float));
			wc->nu = nu, wc->nw = nw;
			if (!wc->U || !wc->w) {
				long made = wc->made;
				conv_wcache_release(wc);
				wc->made = made;
				wc = NULL;
			}
		}
		if (wc)
			U = wc->U;
	}
	if (m == 4)
		wino4_weight_transform(U, weight, s->OC, s->C);
	else
		weight_transform(U, weight, s->OC, s->C);
	if (wc) {
		memcpy(wc->w, weight, nw * sizeof(float));
		wc->m = m;
		wc->made++;
	}
	return U;
}

void wino_forward(float *out, const float *inp, const float *weight, const float *bias,
		  const struct conv2d_shape *s, int B, float *scratch,
		  const struct conv_epilogue *ep, struct conv_wcache *wc)
{
	struct wino_job jobs[WINO_THREADS];
	int T = wino_nthreads(B), m = wino_tile(s);
	for (int t = 0; t < T; t++) {
		jobs[t] = (struct wino_job){.s = s, .out = out, .inp = inp, .bias = bias, .ep = ep};
		wino_layout(&jobs[t].w, s, m, scratch, t);
	}
	const float *U = wino_weights(wc, scratch, weight, s, m);
	for (int t = 0; t < T; t++)
		jobs[t].w.U = U;
	run_jobs(jobs, T, B, forward_thread);
}

void wino_backward(float *dinp, float *dweight, const float *dout, const float *inp,
		   const float *weight, const struct conv2d_shape *s, int B, float *scratch,
		   struct conv_wcache *wc)
{
	struct wino_job jobs[WINO_THREADS];
	int T = wino_nthreads(B), m = wino_tile(s);
	for (int t = 0; t < T; t++) {
		jobs[t] = (struct wino_job){.s = s, .dinp = dinp, .inp = inp, .dout = dout};
		wino_layout(&jobs[t].w, s, m, scratch, t);
	}
	/* the forward's transform when wc still holds it, else into the
	 * scratch's U, where wino_layout pointed every job */
	if (dinp) {
		const float *U = wino_weights(wc, scratch, weight, s, m);
		for (int t = 0; t < T; t++)
			jobs[t].w.U = U;
	}
	run_jobs(jobs, T, B, backward_thread);
	/* the threads' weight gradients, summed in thread order */
	size_t n = (size_t)jobs[0].w.X * s->OC * s->C;
	for (int t = 1; t < T; t++)
		for (size_t i = 0; i < n; i++)
			jobs[0].w.dU[i] += jobs[t].w.dU[i];
	if (m == 4)
		wino4_weight_grad_transform(dweight, jobs[0].w.dU, s->OC, s->C);
	else
		weight_grad_transform(dweight, jobs[0].w.dU, s->OC, s->C);
}
