/*
 * winograd4.c - the transforms of Winograd's F(4x4, 3x3) (Lavin & Gray
 * 2016, points 0, 1, -1, 2, -2 and infinity), for winograd.c, which runs
 * them around the same chunked sgemm as F(2x2, 3x3) with 36 products in
 * place of 16. Each 4x4 block of outputs comes from the 6x6 input block
 * around it (rows 4th-1 .. 4th+4, columns 4tw-1 .. 4tw+4):
 *
 *     Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 *
 *           | 4  0 -5  0  1  0 |         | 1/4    0     0   |
 *           | 0 -4 -4  1  1  0 |         | -1/6 -1/6  -1/6  |
 *     B^T = | 0  4 -4 -1  1  0 |    G =  | -1/6  1/6  -1/6  |
 *           | 0 -2 -1  2  1  0 |         | 1/24  1/12  1/6  |
 *           | 0  2 -1 -2  1  0 |         | 1/24 -1/12  1/6  |
 *           | 0  4  0 -5  0  1 |         | 0      0     1   |
 *
 *           | 1  1  1  1  1  0 |
 *     A^T = | 0  1 -1  2 -2  0 |
 *           | 0  1  1  4  4  0 |
 *           | 0  1 -1  8 -8  1 |
 *
 * and the backward pass is the exact gradient of it, as in winograd.c:
 * Yh = A dY A^T (6x6 from each 4x4 tile of the output gradient), dg =
 * G^T dU G, and the input gradient B dV B^T in 6x6 blocks that overlap
 * their neighbours by two rows and two columns, added.
 *
 * A row of input is split into its four column phases (column 4q+p-1 at
 * phase p, index q), so tile tw reads phases 0..3 at q = tw and phases 0, 1
 * at q = tw+1, and every transform is a loop over the tiles of a row with
 * unit strides. The loops are plain C, compiled twice (for AVX2 and FMA
 * hosts, util.h cpu_avx2, and without) from one always-inline body; the
 * compiler vectorises both (-O3, Makefile). No contraction into FMA
 * (-std=c11), so both give the same floats.
 */
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "winograd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define WINO_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#endif
#define INLINE static inline __attribute__((always_inline))

/* U[xi][oc][c] = (G g G^T)[xi] for every kernel g = weight[oc][c] */
void wino4_weight_transform(float *U, const float *weight, int OC, int C)
{
	size_t plane = (size_t)OC * C;
	for (int oc = 0; oc < OC; oc++)
		for (int c = 0; c < C; c++) {
			const float *g = weight + ((size_t)oc * C + c) * 9;
			float p[6][3], *u = U + (size_t)oc * C + c;
			for (int j = 0; j < 3; j++) {
				float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
				p[0][j] = g0 / 4;
				p[1][j] = -(g0 + g1 + g2) / 6;
				p[2][j] = -(g0 - g1 + g2) / 6;
				p[3][j] = g0 / 24 + g1 / 12 + g2 / 6;
				p[4][j] = g0 / 24 - g1 / 12 + g2 / 6;
				p[5][j] = g2;
			}
			for (int i = 0; i < 6; i++) {
				float g0 = p[i][0], g1 = p[i][1], g2 = p[i][2];
				u[(6 * i + 0) * plane] = g0 / 4;
				u[(6 * i + 1) * plane] = -(g0 + g1 + g2) / 6;
				u[(6 * i + 2) * plane] = -(g0 - g1 + g2) / 6;
				u[(6 * i + 3) * plane] = g0 / 24 + g1 / 12 + g2 / 6;
				u[(6 * i + 4) * plane] = g0 / 24 - g1 / 12 + g2 / 6;
				u[(6 * i + 5) * plane] = g2;
			}
		}
}

/* (G^T z) for a 6-vector z: the three sums dg takes */
INLINE void gt6(float o[3], const float z[6])
{
	o[0] = z[0] / 4 - (z[1] + z[2]) / 6 + (z[3] + z[4]) / 24;
	o[1] = (z[2] - z[1]) / 6 + (z[3] - z[4]) / 12;
	o[2] = -(z[1] + z[2]) / 6 + (z[3] + z[4]) / 6 + z[5];
}

/* weight[oc][c] += G^T dU[.][oc][c] G */
void wino4_weight_grad_transform(float *dweight, const float *dU, int OC, int C)
{
	size_t plane = (size_t)OC * C;
	for (int oc = 0; oc < OC; oc++)
		for (int c = 0; c < C; c++) {
			const float *z = dU + (size_t)oc * C + c;
			float q[3][6], col[6], o[3];
			for (int j = 0; j < 6; j++) {
				for (int i = 0; i < 6; i++)
					col[i] = z[(6 * i + j) * plane];
				gt6(o, col);
				q[0][j] = o[0], q[1][j] = o[1], q[2][j] = o[2];
			}
			float *g = dweight + ((size_t)oc * C + c) * 9;
			for (int i = 0; i < 3; i++) {
				gt6(o, q[i]);
				g[3 * i + 0] += o[0];
				g[3 * i + 1] += o[1];
				g[3 * i + 2] += o[2];
			}
		}
}

/* V (36, C, T): B^T d B for the tiles of tile rows [r0, r0+nr). The strip
 * holds the six input rows of a tile row as phases (4*PP floats a row) */
INLINE void input_body(const struct wino_buf *w, const float *inp, const struct conv2d_shape *s,
		       int r0, int nr)
{
	size_t plane = (size_t)s->H * s->W, ld = w->T, vstride = (size_t)s->C * ld;
	int TW = w->TW, PP = w->PP, W = s->W;
	size_t rs = (size_t)4 * PP;
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int c = 0; c < s->C; c++) {
			const float *x = inp + ((size_t)b * s->C + c) * plane;
			for (int i = 0; i < 6; i++) {
				float *restrict p = w->strip + i * rs;
				int ih = 4 * th - 1 + i;
				if (ih < 0 || ih >= s->H) {
					memset(p, 0, rs * sizeof(float));
					continue;
				}
				/* phase m, index q: column 4q+m-1; the columns of q in
				 * [1, qi) all lie inside the row, the rest are checked */
				const float *xr = x + (size_t)ih * W, *restrict x3 = xr + 3;
				int qi = W >= 3 ? (W - 3) / 4 + 1 : 1;
				#pragma GCC ivdep
				for (int u = 0; u < qi - 1; u++) {
					p[1 + u] = x3[4 * u];
					p[PP + 1 + u] = x3[4 * u + 1];
					p[2 * PP + 1 + u] = x3[4 * u + 2];
					p[3 * PP + 1 + u] = x3[4 * u + 3];
				}
				for (int q = 0; q < PP; q = q ? q + 1 : qi)
					for (int m = 0; m < 4; m++) {
						int col = 4 * q + m - 1;
						p[m * PP + q] = col >= 0 && col < W ? xr[col] : 0.0f;
					}
			}
			/* B^T down the columns */
			float *restrict d0 = w->strip, *restrict d1 = d0 + rs, *restrict d2 = d1 + rs;
			float *restrict d3 = d2 + rs, *restrict d4 = d3 + rs, *restrict d5 = d4 + rs;
			#pragma GCC ivdep
			for (size_t j = 0; j < rs; j++) {
				float a0 = d0[j], a1 = d1[j], a2 = d2[j], a3 = d3[j], a4 = d4[j],
				      a5 = d5[j];
				d0[j] = 4 * a0 - 5 * a2 + a4;
				d1[j] = -4 * (a1 + a2) + a3 + a4;
				d2[j] = 4 * (a1 - a2) - a3 + a4;
				d3[j] = 2 * (a3 - a1) - a2 + a4;
				d4[j] = 2 * (a1 - a3) - a2 + a4;
				d5[j] = 4 * a1 - 5 * a3 + a5;
			}
			/* B along the rows, into rows 6i+l of V */
			for (int i = 0; i < 6; i++) {
				const float *restrict p0 = w->strip + i * rs, *restrict p1 = p0 + PP;
				const float *restrict p2 = p1 + PP, *restrict p3 = p2 + PP;
				float *restrict v0 = w->V + (size_t)(6 * i) * vstride + c * ld +
						     (size_t)k * TW;
				float *restrict v1 = v0 + vstride, *restrict v2 = v1 + vstride;
				float *restrict v3 = v2 + vstride, *restrict v4 = v3 + vstride;
				float *restrict v5 = v4 + vstride;
				#pragma GCC ivdep
				for (int tw = 0; tw < TW; tw++) {
					float e0 = p0[tw], e1 = p1[tw], e2 = p2[tw], e3 = p3[tw];
					float e4 = p0[tw + 1], e5 = p1[tw + 1];
					v0[tw] = 4 * e0 - 5 * e2 + e4;
					v1[tw] = -4 * (e1 + e2) + e3 + e4;
					v2[tw] = 4 * (e1 - e2) - e3 + e4;
					v3[tw] = 2 * (e3 - e1) - e2 + e4;
					v4[tw] = 2 * (e1 - e3) - e2 + e4;
					v5[tw] = 4 * e1 - 5 * e3 + e5;
				}
			}
		}
	}
}

/* o = A^T z for the 6-vector z */
INLINE void at6(float o[4], float z0, float z1, float z2, float z3, float z4, float z5)
{
	float a = z1 + z2, d = z1 - z2, a2 = z3 + z4, d2 = z3 - z4;
	o[0] = z0 + a + a2;
	o[1] = d + 2 * d2;
	o[2] = a + 4 * a2;
	o[3] = d + 8 * d2 + z5;
}

/* out (tile rows [r0, r0+nr)) = epilogue(A^T M A + bias): the 16 outputs
 * of each tile into row[4k+l][tw], then interleaved into the output rows */
INLINE void output_body(const struct wino_buf *w, float *out, const float *bias,
			const struct conv_epilogue *ep, const struct conv2d_shape *s, int r0, int nr)
{
	size_t plane = (size_t)s->OH * s->OW, ld = w->T, mstride = (size_t)s->OC * ld;
	int TW = w->TW, OW = s->OW, full = OW / 4;
	size_t ys = (size_t)TW + 16;
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int oc = 0; oc < s->OC; oc++) {
			const float *restrict m = w->M + (size_t)oc * ld + (size_t)k * TW;
			float *restrict y = w->row;
			float bv = bias ? bias[oc] : 0.0f;
			float sc = ep ? ep->scale[oc] : 1.0f, sh = ep ? ep->shift[oc] : 0.0f;
			int relu = ep && ep->relu;
			size_t ms = mstride;
			/* straight-line code, no inner loops, so the tile loop vectorises */
#define AT_ROW(t, i)                                                                     \
	at6(t, mm[(6 * i) * ms], mm[(6 * i + 1) * ms], mm[(6 * i + 2) * ms],              \
	    mm[(6 * i + 3) * ms], mm[(6 * i + 4) * ms], mm[(6 * i + 5) * ms])
#define AT_COL(l)                                                                        \
	do {                                                                             \
		at6(v, t0[l], t1[l], t2[l], t3[l], t4[l], t5[l]);                        \
		y[l * ys + tw] = v[0], y[(4 + l) * ys + tw] = v[1];                      \
		y[(8 + l) * ys + tw] = v[2], y[(12 + l) * ys + tw] = v[3];               \
	} while (0)
			#pragma GCC ivdep
			for (int tw = 0; tw < TW; tw++) {
				const float *mm = m + tw;
				float t0[4], t1[4], t2[4], t3[4], t4[4], t5[4], v[4];
				AT_ROW(t0, 0), AT_ROW(t1, 1), AT_ROW(t2, 2);
				AT_ROW(t3, 3), AT_ROW(t4, 4), AT_ROW(t5, 5);
				AT_COL(0);
				AT_COL(1);
				AT_COL(2);
				AT_COL(3);
			}
#undef AT_ROW
#undef AT_COL
			/* the bias and the epilogue */
			for (int r = 0; r < 16 && (bias || ep); r++) {
				float *restrict yr = y + r * ys;
				for (int tw = 0; tw < TW; tw++)
					yr[tw] = (yr[tw] + bv) * sc + sh;
				for (int tw = 0; relu && tw < TW; tw++)
					yr[tw] = yr[tw] > 0.0f ? yr[tw] : 0.0f;
			}
			float *o = out + ((size_t)b * s->OC + oc) * plane;
			for (int q = 0; q < 4 && 4 * th + q < s->OH; q++) {
				float *restrict orow = o + (size_t)(4 * th + q) * OW;
				const float *restrict y0 = y + (size_t)(4 * q) * ys, *restrict y1 = y0 + ys;
				const float *restrict y2 = y1 + ys, *restrict y3 = y2 + ys;
				#pragma GCC ivdep
				for (int tw = 0; tw < full; tw++) {
					orow[4 * tw] = y0[tw];
					orow[4 * tw + 1] = y1[tw];
					orow[4 * tw + 2] = y2[tw];
					orow[4 * tw + 3] = y3[tw];
				}
				for (int l = 0; 4 * full + l < OW; l++)
					orow[4 * full + l] = y[(4 * q + l) * ys + full];
			}
		}
	}
}

/* Yh (36, OC, T) = A dY A^T for tile rows [r0, r0+nr): each 4x4 block of
 * the output gradient (zero past OH, OW), its rows as phases in row[] */
INLINE void grad_body(const struct wino_buf *w, const float *dout, const struct conv2d_shape *s,
		      int r0, int nr)
{
	size_t plane = (size_t)s->OH * s->OW, ld = w->T, ystride = (size_t)s->OC * ld;
	int TW = w->TW, OW = s->OW, full = OW / 4;
	size_t es = (size_t)TW + 16;
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int oc = 0; oc < s->OC; oc++) {
			const float *g = dout + ((size_t)b * s->OC + oc) * plane;
			float *e = w->row; /* e[4h+l][tw] = dY[4th+h][4tw+l] */
			for (int h = 0; h < 4; h++) {
				int oh = 4 * th + h;
				float *restrict e0 = e + (size_t)(4 * h) * es, *restrict e1 = e0 + es;
				float *restrict e2 = e1 + es, *restrict e3 = e2 + es;
				if (oh >= s->OH) {
					for (int tw = 0; tw < TW; tw++)
						e0[tw] = e1[tw] = e2[tw] = e3[tw] = 0.0f;
					continue;
				}
				const float *restrict gr = g + (size_t)oh * OW;
				#pragma GCC ivdep
				for (int tw = 0; tw < full; tw++) {
					e0[tw] = gr[4 * tw];
					e1[tw] = gr[4 * tw + 1];
					e2[tw] = gr[4 * tw + 2];
					e3[tw] = gr[4 * tw + 3];
				}
				for (int l = 0; full < TW && l < 4; l++)
					e[(4 * h + l) * es + full] =
						4 * full + l < OW ? gr[4 * full + l] : 0.0f;
			}
			float *restrict y = w->M + (size_t)oc * ld + (size_t)k * TW;
			#pragma GCC ivdep
			for (int tw = 0; tw < TW; tw++) {
				float a[4][6];
				for (int h = 0; h < 4; h++) {
					const float *eh = e + (size_t)(4 * h) * es + tw;
					float g0 = eh[0], g1 = eh[es], g2 = eh[2 * es], g3 = eh[3 * es];
					float p = g0 + g2, q = g1 + g3, p4 = g0 + 4 * g2,
					      q4 = 2 * g1 + 8 * g3;
					a[h][0] = g0;
					a[h][1] = p + q;
					a[h][2] = p - q;
					a[h][3] = p4 + q4;
					a[h][4] = p4 - q4;
					a[h][5] = g3;
				}
				for (int j = 0; j < 6; j++) {
					float g0 = a[0][j], g1 = a[1][j], g2 = a[2][j], g3 = a[3][j];
					float p = g0 + g2, q = g1 + g3, p4 = g0 + 4 * g2,
					      q4 = 2 * g1 + 8 * g3;
					float *yj = y + (size_t)j * ystride + tw;
					yj[0] = g0;
					yj[6 * ystride] = p + q;
					yj[12 * ystride] = p - q;
					yj[18 * ystride] = p4 + q4;
					yj[24 * ystride] = p4 - q4;
					yj[30 * ystride] = g3;
				}
			}
		}
	}
}

/* o = B z for the 6-vector z: B^T's columns */
INLINE void bt6(float o[6], float z0, float z1, float z2, float z3, float z4, float z5)
{
	o[0] = 4 * z0;
	o[1] = 4 * (z2 - z1 + z5) + 2 * (z4 - z3);
	o[2] = -5 * z0 - 4 * (z1 + z2) - z3 - z4;
	o[3] = z1 - z2 + 2 * (z3 - z4) - 5 * z5;
	o[4] = z0 + z1 + z2 + z3 + z4;
	o[5] = z5;
}

/* dinp (tile rows [r0, r0+nr)) += B dV B^T, the 6x6 blocks overlapping:
 * block (i, j) of tile tw lands on input row 4th-1+i, column 4tw-1+j.
 * row[(6i+j)*ws + 1 + tw] holds it, with zeros at 0 and 1+TW */
INLINE void input_grad_body(const struct wino_buf *w, float *dinp, const struct conv2d_shape *s,
			    int r0, int nr)
{
	size_t plane = (size_t)s->H * s->W, ld = w->T, vstride = (size_t)s->C * ld;
	int TW = w->TW;
	size_t ws = (size_t)TW + 16;
	float *wr = w->row, *strip = w->strip;
	for (int r = 0; r < 36; r++) {
		wr[r * ws] = 0.0f;
		wr[r * ws + 1 + (size_t)TW] = 0.0f;
	}
	for (int k = 0; k < nr; k++) {
		int b = (r0 + k) / w->TH, th = (r0 + k) % w->TH;
		for (int c = 0; c < s->C; c++) {
			const float *restrict z = w->V + (size_t)c * ld + (size_t)k * TW;
			float *restrict wt = wr + 1;
			size_t vs = vstride;
			/* straight-line code, no inner loops, so the tile loop vectorises:
			 * q_i[l] = (B dV)[i][l] down the columns, then B along the rows */
#define B_COL(l)                                                                         \
	do {                                                                             \
		bt6(o, zz[l * vs], zz[(6 + l) * vs], zz[(12 + l) * vs], zz[(18 + l) * vs],  \
		    zz[(24 + l) * vs], zz[(30 + l) * vs]);                               \
		q0[l] = o[0], q1[l] = o[1], q2[l] = o[2];                                \
		q3[l] = o[3], q4[l] = o[4], q5[l] = o[5];                                \
	} while (0)
#define B_ROW(q, i)                                                                      \
	do {                                                                             \
		bt6(o, q[0], q[1], q[2], q[3], q[4], q[5]);                              \
		float *r_ = wt + (6 * i) * ws + tw;                                      \
		r_[0] = o[0], r_[ws] = o[1], r_[2 * ws] = o[2];                          \
		r_[3 * ws] = o[3], r_[4 * ws] = o[4], r_[5 * ws] = o[5];                 \
	} while (0)
			#pragma GCC ivdep
			for (int tw = 0; tw < TW; tw++) {
				const float *zz = z + tw;
				float q0[6], q1[6], q2[6], q3[6], q4[6], q5[6], o[6];
				B_COL(0);
				B_COL(1);
				B_COL(2);
				B_COL(3);
				B_COL(4);
				B_COL(5);
				B_ROW(q0, 0);
				B_ROW(q1, 1);
				B_ROW(q2, 2);
				B_ROW(q3, 3);
				B_ROW(q4, 4);
				B_ROW(q5, 5);
			}
#undef B_COL
#undef B_ROW
			float *x = dinp + ((size_t)b * s->C + c) * plane;
			for (int i = 0; i < 6; i++) {
				int ih = 4 * th - 1 + i;
				if (ih < 0 || ih >= s->H)
					continue;
				/* strip[x]: input column x-1; tiles tw and tw-1 meet there */
				const float *restrict w0 = wr + (size_t)(6 * i) * ws, *restrict w1 = w0 + ws;
				const float *restrict w2 = w1 + ws, *restrict w3 = w2 + ws;
				const float *restrict w4 = w3 + ws, *restrict w5 = w4 + ws;
				float *restrict st = strip;
				#pragma GCC ivdep
				for (int q = 0; q <= TW; q++) {
					st[4 * q] = w0[1 + q] + w4[q];
					st[4 * q + 1] = w1[1 + q] + w5[q];
					st[4 * q + 2] = w2[1 + q];
					st[4 * q + 3] = w3[1 + q];
				}
				float *restrict xr = x + (size_t)ih * s->W;
				#pragma GCC ivdep
				for (int j = 0; j < s->W; j++)
					xr[j] += st[1 + j];
			}
		}
	}
}

/* Each body twice: for AVX2 and FMA (chosen at run time) and plain */
#ifdef WINO_X86
AVX2 static void input_avx2(const struct wino_buf *w, const float *inp,
			    const struct conv2d_shape *s, int r0, int nr)
{
	input_body(w, inp, s, r0, nr);
}

AVX2 static void output_avx2(const struct wino_buf *w, float *out, const float *bias,
			     const struct conv_epilogue *ep, const struct conv2d_shape *s, int r0,
			     int nr)
{
	output_body(w, out, bias, ep, s, r0, nr);
}

AVX2 static void grad_avx2(const struct wino_buf *w, const float *dout,
			   const struct conv2d_shape *s, int r0, int nr)
{
	grad_body(w, dout, s, r0, nr);
}

AVX2 static void input_grad_avx2(const struct wino_buf *w, float *dinp,
				 const struct conv2d_shape *s, int r0, int nr)
{
	input_grad_body(w, dinp, s, r0, nr);
}
#endif

void wino4_input_transform(const struct wino_buf *w, const float *inp,
			   const struct conv2d_shape *s, int r0, int nr)
{
#ifdef WINO_X86
	if (cpu_avx2()) {
		input_avx2(w, inp, s, r0, nr);
		return;
	}
#endif
	input_body(w, inp, s, r0, nr);
}

void wino4_output_transform(const struct wino_buf *w, float *out, const float *bias,
			    const struct conv_epilogue *ep, const struct conv2d_shape *s, int r0,
			    int nr)
{
#ifdef WINO_X86
	if (cpu_avx2()) {
		output_avx2(w, out, bias, ep, s, r0, nr);
		return;
	}
#endif
	output_body(w, out, bias, ep, s, r0, nr);
}

void wino4_grad_transform(const struct wino_buf *w, const float *dout,
			  const struct conv2d_shape *s, int r0, int nr)
{
#ifdef WINO_X86
	if (cpu_avx2()) {
		grad_avx2(w, dout, s, r0, nr);
		return;
	}
#endif
	grad_body(w, dout, s, r0, nr);
}

void wino4_input_grad_transform(const struct wino_buf *w, float *dinp,
				const struct conv2d_shape *s, int r0, int nr)
{
#ifdef WINO_X86
	if (cpu_avx2()) {
		input_grad_avx2(w, dinp, s, r0, nr);
		return;
	}
#endif
	input_grad_body(w, dinp, s, r0, nr);
}
