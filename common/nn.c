/*
 * nn.c - layers, losses and the MLP model of the network engine (nn.h).
 *
 * Design. Every layer is a forward/backward pair over flat row-major float
 * buffers whose shapes the first comment states; backward passes ACCUMULATE
 * into parameter gradients. linear uses OpenBLAS sgemm with the weight in
 * PyTorch's (OC,C) layout (forward is inp * W^T); a plain-loop _naive twin sits
 * beside it and the unit tests hold one to the other.
 *
 * The MLP itself runs feature-major (see "feature-major kernels"): inputs are
 * transposed once per forward to (features, batch) and every layer is a small
 * GEMM whose vector dimension is the batch, done by register-blocked AVX2/FMA
 * kernels chosen at run time (plain loops on other CPUs, sgemm for big
 * layers). The row-major layer functions above are the public, tested
 * building blocks; the feature-major ones have their own _naive twins.
 *
 * Random draws (dropout masks, noise) are pure functions of
 * (seed, purpose, step, sample id, index) through rng.h's bulk functions, so a
 * sample gets the same mask on any rank and in any batch, in either layout.
 *
 * struct mlp owns three allocations: params, grads (same layout: per linear
 * layer weight then bias) and acts (activations, regularizer draws and the
 * backward scratch, carved for the largest batch seen; regularizer buffers are
 * carved only once a forward needs them). Everything the backward pass needs
 * to find its way back (layer inputs, where input gradients go, which layers
 * carry noise) lives in struct mlp_priv, so forward and backward do no
 * allocation after the first call at a given batch size.
 *
 * The noise regularizer's batch mean |x| and its backward sum(dout*eps) are
 * global-batch statistics: the local sums go through ctx->reduce (an
 * MPI_Allreduce in the data-parallel worker), so N ranks with B/N rows each
 * compute the same gradients as one process with B rows.
 */
#include "nn.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NN_X86 1
#endif

/* ---- linear ------------------------------------------------------------ */

/* out = inp W^T without the bias (the MLP adds it fused with the ReLU) */
static void linear_forward_nobias(float *out, const float *inp, const float *weight, int B,
				  int C, int OC)
{
	// inp is (B,C), weight is (OC,C); out is (B,OC)
	if (B <= 0 || OC <= 0)
		return;
	if (C <= 0) {
		memset(out, 0, (size_t)B * OC * sizeof(float));
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, C, 1.0f, inp, C, weight, C,
		    0.0f, out, OC);
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
		    int B, int C, int OC)
{
	// inp is (B,C), weight is (OC,C), bias is (OC) or NULL; out is (B,OC)
	linear_forward_nobias(out, inp, weight, B, C, OC);
	if (bias)
		for (int b = 0; b < B; b++)
			for (int o = 0; o < OC; o++)
				out[(size_t)b * OC + o] += bias[o];
}

void linear_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
			  int B, int C, int OC)
{
	// inp is (B,C), weight is (OC,C), bias is (OC) or NULL; out is (B,OC)
	for (int b = 0; b < B; b++) {
		const float *x = inp + (size_t)b * C;
		for (int o = 0; o < OC; o++) {
			const float *w = weight + (size_t)o * C;
			float v = bias ? bias[o] : 0.0f;
			for (int c = 0; c < C; c++)
				v += x[c] * w[c];
			out[(size_t)b * OC + o] = v;
		}
	}
}

/* dinp_beta 1 accumulates into dinp (the public contract), 0 overwrites it
 * (the MLP's scratch, which saves a memset). */
static void linear_backward_beta(float *dinp, float dinp_beta, float *dweight, float *dbias,
				 const float *dout, const float *inp, const float *weight,
				 int B, int C, int OC)
{
	// dout is (B,OC), inp is (B,C), weight is (OC,C); dinp (B,C), dweight (OC,C), dbias (OC)
	if (B <= 0 || C <= 0 || OC <= 0)
		return;
	if (dinp)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, OC, 1.0f, dout, OC,
			    weight, C, dinp_beta, dinp, C);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, B, 1.0f, dout, OC, inp, C,
		    1.0f, dweight, C);
	if (dbias) {
		/* column sums in a local block: no aliasing with dout, so the
		 * compiler keeps them out of memory */
		enum { CHUNK = 64 };
		for (int o0 = 0; o0 < OC; o0 += CHUNK) {
			int n = OC - o0 < CHUNK ? OC - o0 : CHUNK;
			float acc[CHUNK] = { 0 };
			for (int b = 0; b < B; b++) {
				const float *g = dout + (size_t)b * OC + o0;
				for (int o = 0; o < n; o++)
					acc[o] += g[o];
			}
			for (int o = 0; o < n; o++)
				dbias[o0 + o] += acc[o];
		}
	}
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
		     const float *inp, const float *weight, int B, int C, int OC)
{
	// dout is (B,OC), inp is (B,C), weight is (OC,C); dinp (B,C), dweight (OC,C), dbias (OC)
	linear_backward_beta(dinp, 1.0f, dweight, dbias, dout, inp, weight, B, C, OC);
}

void linear_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
			   const float *inp, const float *weight, int B, int C, int OC)
{
	// dout is (B,OC), inp is (B,C), weight is (OC,C); dinp (B,C), dweight (OC,C), dbias (OC)
	for (int b = 0; b < B; b++) {
		const float *g = dout + (size_t)b * OC;
		const float *x = inp + (size_t)b * C;
		for (int o = 0; o < OC; o++) {
			const float *w = weight + (size_t)o * C;
			float *dw = dweight + (size_t)o * C;
			for (int c = 0; c < C; c++) {
				if (dinp)
					dinp[(size_t)b * C + c] += g[o] * w[c];
				dw[c] += g[o] * x[c];
			}
			if (dbias)
				dbias[o] += g[o];
		}
	}
}

/* ---- relu -------------------------------------------------------------- */

void relu_forward(float *out, const float *inp, size_t n)
{
	// inp, out are (n)
	for (size_t i = 0; i < n; i++)
		out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
	// dout, out, dinp are (n)
	for (size_t i = 0; i < n; i++)
		if (out[i] > 0.0f)
			dinp[i] += dout[i];
}

/* ---- dropout ----------------------------------------------------------- */

void dropout_forward_at(float *out, float *mask, const float *inp, int B, int C, float p,
			uint64_t seed, uint32_t step, uint64_t offset, const uint32_t *ids)
{
	// inp, out, mask are (B,C); ids is (B)
	size_t n = (size_t)B * C;
	if (p <= 0.0f) {
		for (size_t i = 0; i < n; i++)
			mask[i] = 1.0f;
		if (out != inp)
			memmove(out, inp, n * sizeof(float));
		return;
	}
	float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
	rng_uniform16_batch(mask, 1, (size_t)C, B, C, seed, RNG_DROPOUT, step, ids, offset);
	for (size_t i = 0; i < n; i++) {
		mask[i] = mask[i] < p ? 0.0f : keep;
		out[i] = inp[i] * mask[i];
	}
}

void dropout_forward(float *out, float *mask, const float *inp, int B, int C, float p,
		     uint64_t seed, uint32_t step, uint32_t layer, const uint32_t *ids)
{
	// inp, out, mask are (B,C); ids is (B)
	dropout_forward_at(out, mask, inp, B, C, p, seed, step, (uint64_t)layer * (uint64_t)C, ids);
}

void dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
	// dout, mask, dinp are (n)
	for (size_t i = 0; i < n; i++)
		dinp[i] += dout[i] * mask[i];
}

/* ---- Gaussian noise ---------------------------------------------------- */

void noise_forward_at(float *out, float *eps, const float *inp, int B, int C, float s,
		      float mean_abs, uint64_t seed, uint32_t purpose, uint32_t step,
		      uint64_t offset, const uint32_t *ids)
{
	// inp, out, eps are (B,C); ids is (B)
	float k = s * mean_abs;
	size_t n = (size_t)B * C;
	rng_normal_batch(eps, 1, (size_t)C, B, C, seed, purpose, step, ids, offset);
	for (size_t i = 0; i < n; i++)
		out[i] = inp[i] + k * eps[i];
}

void noise_forward(float *out, float *eps, const float *inp, int B, int C, float s,
		   float mean_abs, uint64_t seed, uint32_t purpose, uint32_t step,
		   const uint32_t *ids)
{
	// inp, out, eps are (B,C); ids is (B)
	noise_forward_at(out, eps, inp, B, C, s, mean_abs, seed, purpose, step, 0, ids);
}

void noise_backward(float *dinp, const float *dout, const float *inp, int B, int C, float s,
		    double dot, double global_count)
{
	// dout, inp, dinp are (B,C); dot = sum(dout*eps) over the global batch
	size_t n = (size_t)B * C;
	float k = (float)((double)s * dot / global_count);
	for (size_t i = 0; i < n; i++) {
		float sg = inp[i] > 0.0f ? 1.0f : inp[i] < 0.0f ? -1.0f : 0.0f;
		dinp[i] += dout[i] + k * sg;
	}
}

double nn_sum_abs(const float *x, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += fabsf(x[i]);
	return s;
}

double noise_dot(const float *dout, const float *eps, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)dout[i] * eps[i];
	return s;
}

/* ---- losses ------------------------------------------------------------ */

void softmax_rows(float *out, const float *inp, int B, int K)
{
	// inp, out are (B,K)
	for (int b = 0; b < B; b++) {
		const float *z = inp + (size_t)b * K;
		float *o = out + (size_t)b * K;
		float mx = -INFINITY;
		for (int k = 0; k < K; k++)
			mx = z[k] > mx ? z[k] : mx;
		double sum = 0.0;
		for (int k = 0; k < K; k++)
			sum += exp((double)z[k] - mx);
		double lse = mx + log(sum);
		for (int k = 0; k < K; k++)
			o[k] = (float)exp((double)z[k] - lse);
	}
}

/* Rows of up to XENT_CACHE classes keep their softmax values on the stack;
 * wider rows recompute them from z (no scratch memory for any K). */
#define XENT_CACHE 64

/* log(sum(exp(z))) of one row in double; with cache, q[k] = softmax(z)[k] */
static double row_lse(const float *z, int K, double *q)
{
	float mx = -INFINITY;
	for (int k = 0; k < K; k++)
		mx = z[k] > mx ? z[k] : mx;
	double sum = 0.0;
	for (int k = 0; k < K; k++) {
		double e = exp((double)z[k] - mx);
		if (q)
			q[k] = e;
		sum += e;
	}
	if (q)
		for (int k = 0; k < K; k++)
			q[k] /= sum;
	return mx + log(sum);
}

static double row_q(const double *q, const float *z, double lse, int k)
{
	return q ? q[k] : exp((double)z[k] - lse);
}

/*
 * Per row, with t the target (one-hot or soft) and T = sum(t):
 *   CE:              q = softmax(z), loss = T*lse(z) - t.z,  dz = q*T - t
 *   double softmax:  q = softmax(z), r = softmax(q), loss = T*lse(q) - t.q,
 *                    dq = r*T - t,  dz = q * (dq - dq.q)
 * in double. probs is written in the last pass over a row, element by
 * element, so it may alias logits.
 */
double softmax_xent(float *dlogits, float *probs, const float *logits, const int *labels,
		    const float *soft, int B, int K, enum loss_kind kind, float grad_scale)
{
	// logits, dlogits, probs, soft are (B,K); labels is (B)
	double qbuf[XENT_CACHE], ebuf[XENT_CACHE];
	double *qc = K <= XENT_CACHE ? qbuf : NULL;
	double total = 0.0;
	for (int b = 0; b < B; b++) {
		const float *z = logits + (size_t)b * K;
		const float *t = soft ? soft + (size_t)b * K : NULL;
		int y = soft ? -1 : labels[b];
		float *dz = dlogits ? dlogits + (size_t)b * K : NULL;
		float *pr = probs ? probs + (size_t)b * K : NULL;
		double T = 1.0;
		if (t) {
			T = 0.0;
			for (int k = 0; k < K; k++)
				T += t[k];
		}
		double lse = row_lse(z, K, qc);
		if (kind == LOSS_CE) {
			double tz = 0.0;
			if (t) {
				for (int k = 0; k < K; k++)
					tz += (double)t[k] * z[k];
			} else {
				tz = z[y];
			}
			total += T * lse - tz;
			for (int k = 0; k < K; k++) {
				double q = row_q(qc, z, lse, k);
				if (dz) {
					double tk = t ? t[k] : (k == y);
					dz[k] += (float)((q * T - tk) * grad_scale);
				}
				if (pr)
					pr[k] = (float)q;
			}
		} else {
			/* q in [0,1], so exp(q) needs no max shift */
			double *ec = qc ? ebuf : NULL;
			double s2 = 0.0, tq = 0.0;
			for (int k = 0; k < K; k++) {
				double q = row_q(qc, z, lse, k), e = exp(q);
				if (ec)
					ec[k] = e;
				s2 += e;
				tq += (t ? t[k] : (k == y)) * q;
			}
			double lse2 = log(s2);
			total += T * lse2 - tq;
			double dqq = 0.0;
			if (dz) {
				for (int k = 0; k < K; k++) {
					double q = row_q(qc, z, lse, k);
					double r = ec ? ec[k] / s2 : exp(q - lse2);
					dqq += (r * T - (t ? t[k] : (k == y))) * q;
				}
			}
			for (int k = 0; k < K; k++) {
				double q = row_q(qc, z, lse, k);
				if (dz) {
					double r = ec ? ec[k] / s2 : exp(q - lse2);
					double dq = r * T - (t ? t[k] : (k == y));
					dz[k] += (float)(q * (dq - dqq) * grad_scale);
				}
				if (pr)
					pr[k] = (float)q;
			}
		}
	}
	return total;
}

/* ---- feature-major kernels --------------------------------------------- */

/*
 * Inside the MLP a batch is stored feature-major: feature c of sample b is at
 * [c*N + b], N the batch rounded up to 8. The batch is then the vector
 * dimension of every op, whatever the layer widths (1 to 32 in the TwoMoon
 * models, where row-major sgemm calls cost more in overhead than in
 * arithmetic). The kernels below are register-blocked FMA loops for AVX2
 * (selected at run time), plain loops otherwise, and OpenBLAS for layers too
 * large to keep in L1.
 */


/* layers with more weights than this go to sgemm (as does everything on a
 * CPU without AVX2/FMA) */
#define FM_BLAS_MIN (128 * 128)

/* What the Y = A X kernels do to each result before storing it, in this
 * order: + bias[i], + the old y[i,n], max(., 0), * mul[i,n], then 0 where
 * gate[i,n] <= 0. mul and gate have y's layout; the backward pass uses them to
 * fold the dropout mask and the ReLU of the layer below into the store. */
struct ax_epi {
	const float *bias;
	int acc, relu;
	const float *mul, *gate;
};

/* the epilogue of rows from i on (bias and per-element pointers advanced) */
static struct ax_epi epi_rows(const struct ax_epi *e, int i, size_t N)
{
	struct ax_epi r = *e;
	if (r.bias)
		r.bias += i;
	if (r.mul)
		r.mul += (size_t)i * N;
	if (r.gate)
		r.gate += (size_t)i * N;
	return r;
}

static float epi_apply(const struct ax_epi *e, int i, size_t at, float v, float old)
{
	if (e->bias)
		v += e->bias[i];
	if (e->acc)
		v += old;
	if (e->relu)
		v = v > 0.0f ? v : 0.0f;
	if (e->mul)
		v *= e->mul[at];
	if (e->gate)
		v = e->gate[at] > 0.0f ? v : 0.0f;
	return v;
}

#ifdef NN_X86
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))
/* the groups' chains of one step interleaved (util.h) */
#define EACH MKE_EACH
/* column groups xent2_fm_avx2 takes at a time */
#define XENT2_U 4

/* y[i, 0..8*NV) = epilogue(sum_k a[i*ais + k*aks] x[k, ...]) for MR rows; y,
 * x and the epilogue's mul and gate start at the tile's first column */
/* The epilogue's steps as bits of a compile-time kind EK (EK < 0: read them
 * from e at run time), so that a specialised kernel tests nothing per store */
#define EPI_BIAS 1
#define EPI_ACC 2
#define EPI_RELU 4
#define EPI_MUL 8
#define EPI_GATE 16
#define EPI_HAS(EK, bit, rt) ((EK) < 0 ? (rt) : ((EK) & (bit)) != 0)

static int epi_kind(const struct ax_epi *e)
{
	return (e->bias ? EPI_BIAS : 0) | (e->acc ? EPI_ACC : 0) | (e->relu ? EPI_RELU : 0) |
	       (e->mul ? EPI_MUL : 0) | (e->gate ? EPI_GATE : 0);
}

AVX2 INLINE void ax_tile(const int MR, const int NV, const int EK, float *y, size_t N,
			 const float *a, size_t ais, size_t aks, const float *x, int K,
			 const struct ax_epi *e, size_t n)
{
	const float *bias = EPI_HAS(EK, EPI_BIAS, e->bias != NULL) ? e->bias : NULL;
	__m256 c[4][3];
#pragma GCC unroll 4
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
		for (int v = 0; v < NV; v++)
			c[i][v] = bias ? _mm256_set1_ps(bias[i]) : _mm256_setzero_ps();
	for (int k = 0; k < K; k++) {
		const float *xk = x + (size_t)k * N + n;
		__m256 xv[3];
#pragma GCC unroll 3
		for (int v = 0; v < NV; v++)
			xv[v] = _mm256_loadu_ps(xk + 8 * v);
#pragma GCC unroll 4
		for (int i = 0; i < MR; i++) {
			__m256 av = _mm256_broadcast_ss(a + (size_t)i * ais + (size_t)k * aks);
#pragma GCC unroll 3
			for (int v = 0; v < NV; v++)
				c[i][v] = _mm256_fmadd_ps(av, xv[v], c[i][v]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
		for (int v = 0; v < NV; v++) {
			size_t at = (size_t)i * N + n + 8 * v;
			float *yp = y + at;
			__m256 r = c[i][v];
			if (EPI_HAS(EK, EPI_ACC, e->acc))
				r = _mm256_add_ps(r, _mm256_loadu_ps(yp));
			if (EPI_HAS(EK, EPI_RELU, e->relu))
				r = _mm256_max_ps(r, _mm256_setzero_ps());
			if (EPI_HAS(EK, EPI_MUL, e->mul != NULL))
				r = _mm256_mul_ps(r, _mm256_loadu_ps(e->mul + at));
			if (EPI_HAS(EK, EPI_GATE, e->gate != NULL))
				r = _mm256_and_ps(r, _mm256_cmp_ps(_mm256_loadu_ps(e->gate + at),
								   _mm256_setzero_ps(), _CMP_GT_OQ));
			_mm256_storeu_ps(yp, r);
		}
}

AVX2 INLINE void ax_rows(const int MR, const int EK, float *y, size_t N, const float *a,
			 size_t ais, size_t aks, const float *x, int K, const struct ax_epi *e,
			 size_t n0, size_t n1)
{
	size_t n = n0;
	for (; n + 24 <= n1; n += 24)
		ax_tile(MR, 3, EK, y, N, a, ais, aks, x, K, e, n);
	if (n + 16 <= n1) {
		ax_tile(MR, 2, EK, y, N, a, ais, aks, x, K, e, n);
		n += 16;
	}
	if (n + 8 <= n1)
		ax_tile(MR, 1, EK, y, N, a, ais, aks, x, K, e, n);
}

/* Y (M,N) = epilogue(A (M,K) X (K,N)) over columns [0, N & ~7), for
 * epilogue kind EK */
AVX2 INLINE void ax_kind(const int EK, float *y, const float *a, size_t ais, size_t aks,
			 const float *x, int M, int K, size_t N, const struct ax_epi *e)
{
	size_t nv = N & ~(size_t)7;
	/* column blocks outside, so the block of X stays in L1 across the rows */
	for (size_t n0 = 0; n0 < nv; n0 += 96) {
		size_t n1 = n0 + 96 < nv ? n0 + 96 : nv;
		int i = 0;
		for (; i + 4 <= M; i += 4) {
			struct ax_epi ei = epi_rows(e, i, N);
			ax_rows(4, EK, y + (size_t)i * N, N, a + (size_t)i * ais, ais, aks, x, K, &ei,
				n0, n1);
		}
		struct ax_epi ei = epi_rows(e, i, N);
		float *yi = y + (size_t)i * N;
		const float *ai = a + (size_t)i * ais;
		switch (M - i) {
		case 3:
			ax_rows(3, EK, yi, N, ai, ais, aks, x, K, &ei, n0, n1);
			break;
		case 2:
			ax_rows(2, EK, yi, N, ai, ais, aks, x, K, &ei, n0, n1);
			break;
		case 1:
			ax_rows(1, EK, yi, N, ai, ais, aks, x, K, &ei, n0, n1);
			break;
		}
	}
}

/* ax_kind specialised for the epilogues the MLP uses (hidden forward, head,
 * input gradient plain / gated / masked and gated, accumulate), the
 * run-time epilogue otherwise */
AVX2 static void ax_avx2(float *y, const float *a, size_t ais, size_t aks, const float *x, int M,
			 int K, size_t N, const struct ax_epi *e)
{
	/* one case per specialised kind */
#define AX_KIND(k)                                                 \
	case k:                                                    \
		ax_kind(k, y, a, ais, aks, x, M, K, N, e);         \
		break
	switch (epi_kind(e)) {
		AX_KIND(EPI_BIAS | EPI_RELU);
		AX_KIND(EPI_BIAS);
		AX_KIND(0);
		AX_KIND(EPI_GATE);
		AX_KIND(EPI_MUL | EPI_GATE);
		AX_KIND(EPI_ACC);
	default:
		ax_kind(-1, y, a, ais, aks, x, M, K, N, e);
		break;
	}
#undef AX_KIND
}

/* sums of four vectors: [sum a, sum b, sum c, sum d] */
AVX2 INLINE __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
	__m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
	return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* Y[i, p] += sum_n G[i, n] X[p, n] for MR rows i and PR rows p: 4x2 at most,
 * so accumulators and loaded vectors (8 + 4 + 2) stay in the 16 registers */
AVX2 INLINE void gxt_tile(const int MR, const int PR, float *y, size_t ys, const float *g,
			  const float *x, size_t N, size_t nv)
{
	__m256 c[4][2];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
#pragma GCC unroll 2
		for (int p = 0; p < 2; p++)
			c[i][p] = _mm256_setzero_ps();
	for (size_t n = 0; n < nv; n += 8) {
		__m256 gv[4], xv[2];
#pragma GCC unroll 2
		for (int p = 0; p < PR; p++)
			xv[p] = _mm256_loadu_ps(x + (size_t)p * N + n);
#pragma GCC unroll 4
		for (int i = 0; i < MR; i++) {
			gv[i] = _mm256_loadu_ps(g + (size_t)i * N + n);
			/* keep the vector in a register: folded into each FMA it would be
			 * loaded PR times, and loads, not FMAs, would bound the loop */
			__asm__("" : "+x"(gv[i]));
#pragma GCC unroll 2
			for (int p = 0; p < PR; p++)
				c[i][p] = _mm256_fmadd_ps(gv[i], xv[p], c[i][p]);
		}
	}
#pragma GCC unroll 2
	for (int p = 0; p < PR; p++) {
		float s[4];
		_mm_storeu_ps(s, hsum4(c[0][p], c[1][p], c[2][p], c[3][p]));
#pragma GCC unroll 4
		for (int i = 0; i < MR; i++)
			y[(size_t)i * ys + p] += s[i];
	}
}

/* gxt_tile for the shapes where 4x2 leaves too few chains: MR rows by PR
 * columns with MR * PR = 8 (the head's 2 x 4, a one-input layer's 8 x 1).
 * Each sum is reduced as in gxt_tile (hsum4's tree), so the results are the
 * same bit for bit. */
AVX2 INLINE void gxt_tile8(const int MR, const int PR, float *y, size_t ys, const float *g,
			   const float *x, size_t N, size_t nv)
{
	__m256 c[8][4];
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int p = 0; p < PR; p++)
			c[i][p] = _mm256_setzero_ps();
	for (size_t n = 0; n < nv; n += 8) {
		__m256 xv[4];
#pragma GCC unroll 4
		for (int p = 0; p < PR; p++)
			xv[p] = _mm256_loadu_ps(x + (size_t)p * N + n);
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++) {
			__m256 gv = _mm256_loadu_ps(g + (size_t)i * N + n);
#pragma GCC unroll 4
			for (int p = 0; p < PR; p++)
				c[i][p] = _mm256_fmadd_ps(gv, xv[p], c[i][p]);
		}
	}
	float s[4];
	if (PR == 4) {
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++) {
			_mm_storeu_ps(s, hsum4(c[i][0], c[i][1], c[i][2], c[i][3]));
#pragma GCC unroll 4
			for (int p = 0; p < 4; p++)
				y[(size_t)i * ys + p] += s[p];
		}
	} else {
#pragma GCC unroll 2
		for (int i = 0; i < MR; i += 4) {
			_mm_storeu_ps(s, hsum4(c[i][0], c[i + 1][0], c[i + 2][0], c[i + 3][0]));
#pragma GCC unroll 4
			for (int r = 0; r < 4; r++)
				y[(size_t)(i + r) * ys] += s[r];
		}
	}
}

AVX2 INLINE void gxt_rows(const int MR, float *y, size_t ys, const float *g, const float *x, int P,
			  size_t N, size_t nv)
{
	int p = 0;
	for (; p + 2 <= P; p += 2)
		gxt_tile(MR, 2, y + p, ys, g, x + (size_t)p * N, N, nv);
	if (p < P)
		gxt_tile(MR, 1, y + p, ys, g, x + (size_t)p * N, N, nv);
}

/* Y (M,P) += G (M,N) X (P,N)^T over columns [0, N & ~7): 4 x 2 tiles (a
 * function of its own, so that the shapes below do not change its code) */
AVX2 __attribute__((noinline)) static void gxt_4x2(float *y, const float *g, const float *x, int M,
						   int P, size_t N)
{
	size_t nv = N & ~(size_t)7;
	int i = 0;
	for (; i + 4 <= M; i += 4)
		gxt_rows(4, y + (size_t)i * P, (size_t)P, g + (size_t)i * N, x, P, N, nv);
	float *yi = y + (size_t)i * P;
	const float *gi = g + (size_t)i * N;
	switch (M - i) {
	case 3:
		gxt_rows(3, yi, (size_t)P, gi, x, P, N, nv);
		break;
	case 2:
		gxt_rows(2, yi, (size_t)P, gi, x, P, N, nv);
		break;
	case 1:
		gxt_rows(1, yi, (size_t)P, gi, x, P, N, nv);
		break;
	}
}

/* Y (M,P) += G (M,N) X (P,N)^T over columns [0, N & ~7); the head's two
 * rows and a one-input layer's column take tiles of 8 chains */
AVX2 static void gxt_avx2(float *y, const float *g, const float *x, int M, int P, size_t N)
{
	size_t nv = N & ~(size_t)7;
	if (M == 2 && P >= 4) {
		int p = 0;
		for (; p + 4 <= P; p += 4)
			gxt_tile8(2, 4, y + p, (size_t)P, g, x + (size_t)p * N, N, nv);
		/* the columns left, as gxt_4x2 takes them (y's rows stay P apart) */
		if (p < P)
			gxt_rows(2, y + p, (size_t)P, g, x + (size_t)p * N, P - p, N, nv);
		return;
	}
	if (P == 1 && M >= 8) {
		int i = 0;
		for (; i + 8 <= M; i += 8)
			gxt_tile8(8, 1, y + i, 1, g + (size_t)i * N, x, N, nv);
		if (i < M)
			gxt_4x2(y + i, g + (size_t)i * N, x, M - i, 1, N);
		return;
	}
	gxt_4x2(y, g, x, M, P, N);
}
#endif

/* Y (M,N) = epilogue(A X), A[i,k] = a[i*ais + k*aks], over columns [n0, N):
 * the plain version (and the tail columns past a multiple of 8 for AVX2) */
static void ax_plain(float *y, const float *a, size_t ais, size_t aks, const float *x, int M, int K,
		     size_t N, size_t n0, const struct ax_epi *e)
{
	for (int i = 0; i < M; i++)
		for (size_t n = n0; n < N; n++) {
			float v = 0.0f;
			for (int k = 0; k < K; k++)
				v += a[(size_t)i * ais + (size_t)k * aks] * x[(size_t)k * N + n];
			size_t at = (size_t)i * N + n;
			y[at] = epi_apply(e, i, at, v, y[at]);
		}
}

static void gxt_plain(float *y, const float *g, const float *x, int M, int P, size_t N, size_t n0)
{
	for (int i = 0; i < M; i++)
		for (int p = 0; p < P; p++) {
			const float *gi = g + (size_t)i * N, *xp = x + (size_t)p * N;
			float s = 0.0f;
			for (size_t n = n0; n < N; n++)
				s += gi[n] * xp[n];
			y[(size_t)i * P + p] += s;
		}
}

/* Y (M,N) = epilogue(A X); A is (M,K) (trans 0: a is (M,K)) or the transpose
 * of a (K,M) matrix (trans 1) */
static void fm_ax(float *y, const float *a, int trans, const float *x, int M, int K, size_t N,
		  const struct ax_epi *e)
{
	size_t ais = trans ? 1 : (size_t)K, aks = trans ? (size_t)M : 1;
	if (M <= 0 || N == 0)
		return;
	if ((size_t)M * K >= FM_BLAS_MIN || !cpu_avx2()) {
		cblas_sgemm(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, CblasNoTrans, M,
			    (int)N, K, 1.0f, a, trans ? M : K, x, (int)N, e->acc ? 1.0f : 0.0f, y,
			    (int)N);
		if (e->bias || e->relu || e->mul || e->gate) {
			struct ax_epi rest = *e;
			rest.acc = 0;
			for (int i = 0; i < M; i++)
				for (size_t n = 0; n < N; n++) {
					size_t at = (size_t)i * N + n;
					y[at] = epi_apply(&rest, i, at, y[at], 0.0f);
				}
		}
		return;
	}
	size_t n0 = 0;
#ifdef NN_X86
	ax_avx2(y, a, ais, aks, x, M, K, N, e);
	n0 = N & ~(size_t)7;
#endif
	ax_plain(y, a, ais, aks, x, M, K, N, n0, e);
}

/* Y (M,P) += G (M,N) X (P,N)^T */
static void fm_gxt(float *y, const float *g, const float *x, int M, int P, size_t N)
{
	if (M <= 0 || P <= 0 || N == 0)
		return;
	if ((size_t)M * P >= FM_BLAS_MIN || !cpu_avx2()) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, P, (int)N, 1.0f, g, (int)N, x,
			    (int)N, 1.0f, y, P);
		return;
	}
	size_t n0 = 0;
#ifdef NN_X86
	gxt_avx2(y, g, x, M, P, N);
	n0 = N & ~(size_t)7;
#endif
	if (n0 < N)
		gxt_plain(y, g, x, M, P, N, n0);
}

/* The elementwise passes. Each has an AVX2 body over whole vectors (the MLP's
 * buffers are always whole vectors) and a plain loop for the rest. */
#ifdef NN_X86
AVX2 static size_t ew_mul_avx2(float *g, const float *mk, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(mk + i)));
	return i;
}

AVX2 static size_t ew_relu_back_avx2(float *g, const float *h, float k, size_t n)
{
	size_t i = 0;
	__m256 kv = _mm256_set1_ps(k), zero = _mm256_setzero_ps();
	for (; i + 8 <= n; i += 8) {
		__m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(h + i), zero, _CMP_GT_OQ);
		__m256 v = _mm256_add_ps(_mm256_loadu_ps(g + i), kv);
		_mm256_storeu_ps(g + i, _mm256_and_ps(pos, v));
	}
	return i;
}

/* 8 lanes of sum |x| (abs) or sum x*e (e not NULL) over whole vectors */
AVX2 static size_t ew_sum8_avx2(float acc[8], const float *x, const float *e, int absx, size_t n)
{
	size_t i = 0;
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256 am = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	for (; i + 16 <= n; i += 16) {
		__m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
		if (e) {
			a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(e + i), a0);
			a1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(e + i + 8), a1);
		} else if (absx) {
			a0 = _mm256_add_ps(a0, _mm256_and_ps(x0, am));
			a1 = _mm256_add_ps(a1, _mm256_and_ps(x1, am));
		} else {
			a0 = _mm256_add_ps(a0, x0);
			a1 = _mm256_add_ps(a1, x1);
		}
	}
	for (; i + 8 <= n; i += 8) {
		__m256 x0 = _mm256_loadu_ps(x + i);
		if (e)
			a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(e + i), a0);
		else
			a0 = _mm256_add_ps(a0, absx ? _mm256_and_ps(x0, am) : x0);
	}
	_mm256_storeu_ps(acc, _mm256_add_ps(a0, a1));
	return i;
}
#endif

/* g *= mask */
static void ew_mul(float *g, const float *mk, size_t n)
{
	size_t i = 0;
#ifdef NN_X86
	if (cpu_avx2())
		i = ew_mul_avx2(g, mk, n);
#endif
	for (; i < n; i++)
		g[i] *= mk[i];
}

/* through the noise and the ReLU: g = h > 0 ? g + k : 0 */
static void ew_relu_back(float *g, const float *h, float k, size_t n)
{
	size_t i = 0;
#ifdef NN_X86
	if (cpu_avx2())
		i = ew_relu_back_avx2(g, h, k, n);
#endif
	for (; i < n; i++)
		g[i] = h[i] > 0.0f ? g[i] + k : 0.0f;
}

/* sum of x[0..n) (|x| when absx; x*e when e is given) in float lanes */
static float ew_sum(const float *x, const float *e, int absx, size_t n)
{
	float acc[8] = { 0 }, s = 0.0f;
	size_t i = 0;
#ifdef NN_X86
	if (cpu_avx2())
		i = ew_sum8_avx2(acc, x, e, absx, n);
#endif
	for (; i < n; i++)
		s += e ? x[i] * e[i] : absx ? fabsf(x[i]) : x[i];
	for (int l = 0; l < 8; l++)
		s += acc[l];
	return s;
}

#ifdef NN_X86
/* ew_sum of 4 rows of whole vectors at once, rows N apart (and e's): each
 * row's sum is ew_sum's (the same two vector chains, then the 8 lanes in
 * order), the four rows' chains interleaved */
AVX2 static void ew_sum4_avx2(float s[4], const float *x, const float *e, int absx, size_t N)
{
	__m256 a0[4], a1[4];
	const __m256 am = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	for (int r = 0; r < 4; r++)
		a0[r] = a1[r] = _mm256_setzero_ps();
	/* ew_sum8_avx2's chains: 16 values a step, a last 8 into a0 */
#define SUM4_STEP(a, at)                                                                   \
	do {                                                                               \
		__m256 v = _mm256_loadu_ps(x + (size_t)r * N + (at));                      \
		if (e)                                                                     \
			a = _mm256_fmadd_ps(v, _mm256_loadu_ps(e + (size_t)r * N + (at)), a); \
		else                                                                       \
			a = _mm256_add_ps(a, absx ? _mm256_and_ps(v, am) : v);            \
	} while (0)
	size_t i = 0;
	for (; i + 16 <= N; i += 16)
		for (int r = 0; r < 4; r++) {
			SUM4_STEP(a0[r], i);
			SUM4_STEP(a1[r], i + 8);
		}
	for (; i + 8 <= N; i += 8)
		for (int r = 0; r < 4; r++)
			SUM4_STEP(a0[r], i);
#undef SUM4_STEP
	float acc[4][8];
	for (int r = 0; r < 4; r++) {
		_mm256_storeu_ps(acc[r], _mm256_add_ps(a0[r], a1[r]));
		s[r] = 0.0f;
	}
	for (int l = 0; l < 8; l++)
		for (int r = 0; r < 4; r++)
			s[r] += acc[r][l];
}
#endif

/* sums of rows [0, rows) of x (|x| with absx, x*e with e): one float sum
 * per row, as ew_sum gives it, added in row order into out[r * os]
 * (accumulate) or into the double *d */
static void fm_rows_sum(float *out, size_t os, double *d, const float *x, const float *e,
			int absx, int rows, size_t N)
{
	int r = 0;
#ifdef NN_X86
	if (N % 8 == 0 && cpu_avx2())
		for (; r + 4 <= rows; r += 4) {
			float s4[4];
			ew_sum4_avx2(s4, x + (size_t)r * N, e ? e + (size_t)r * N : NULL, absx, N);
			for (int q = 0; q < 4; q++) {
				if (out)
					out[(size_t)(r + q) * os] += s4[q];
				else
					*d += s4[q];
			}
		}
#endif
	for (; r < rows; r++) {
		float v = ew_sum(x + (size_t)r * N, e ? e + (size_t)r * N : NULL, absx, N);
		if (out)
			out[(size_t)r * os] += v;
		else
			*d += v;
	}
}

/* db[i] += sum_n g[i, n] */
static void fm_rowsum(float *db, const float *g, int M, size_t N)
{
	fm_rows_sum(db, 1, NULL, g, NULL, 0, M, N);
}

void linear_forward_fm(float *out, const float *inp, const float *weight, const float *bias,
		       int N, int C, int OC, int relu)
{
	// inp is (C,N), weight is (OC,C), bias is (OC) or NULL; out is (OC,N)
	struct ax_epi e = { .bias = bias, .relu = relu };
	fm_ax(out, weight, 0, inp, OC, C, (size_t)N, &e);
}

void linear_forward_fm_naive(float *out, const float *inp, const float *weight, const float *bias,
			     int N, int C, int OC, int relu)
{
	// inp is (C,N), weight is (OC,C), bias is (OC) or NULL; out is (OC,N)
	for (int o = 0; o < OC; o++)
		for (int n = 0; n < N; n++) {
			float v = bias ? bias[o] : 0.0f;
			for (int c = 0; c < C; c++)
				v += weight[(size_t)o * C + c] * inp[(size_t)c * N + n];
			out[(size_t)o * N + n] = relu && v < 0.0f ? 0.0f : v;
		}
}

void linear_backward_fm(float *dinp, float *dweight, float *dbias, const float *dout,
			const float *inp, const float *weight, int N, int C, int OC)
{
	// dout is (OC,N), inp is (C,N), weight is (OC,C); dinp (C,N), dweight (OC,C), dbias (OC)
	struct ax_epi e = { .acc = 1 };
	if (dinp)
		fm_ax(dinp, weight, 1, dout, C, OC, (size_t)N, &e);
	fm_gxt(dweight, dout, inp, OC, C, (size_t)N);
	if (dbias)
		fm_rowsum(dbias, dout, OC, (size_t)N);
}

void linear_backward_fm_naive(float *dinp, float *dweight, float *dbias, const float *dout,
			      const float *inp, const float *weight, int N, int C, int OC)
{
	// dout is (OC,N), inp is (C,N), weight is (OC,C); dinp (C,N), dweight (OC,C), dbias (OC)
	for (int o = 0; o < OC; o++)
		for (int n = 0; n < N; n++) {
			float g = dout[(size_t)o * N + n];
			for (int c = 0; c < C; c++) {
				if (dinp)
					dinp[(size_t)c * N + n] += g * weight[(size_t)o * C + c];
				dweight[(size_t)o * C + c] += g * inp[(size_t)c * N + n];
			}
			if (dbias)
				dbias[o] += g;
		}
}

/* ---- the loss on feature-major logits ---------------------------------- */

/* Target t[k] of column b: soft row, or one-hot of labels[b]. */
static float xent_target(const int *labels, const float *soft, int K, int b, int k)
{
	return soft ? soft[(size_t)b * K + k] : (float)(labels[b] == k);
}

/* One column of softmax_xent in float (the formulas of softmax_xent); dz is
 * the column's first gradient entry, stride N. Returns the column's loss. */
static float xent_fm_col(float *dz, const float *z, size_t N, const int *labels, const float *soft,
			 int b, int K, enum loss_kind kind, float gs)
{
	float mx = -INFINITY, sum = 0.0f, T = 1.0f;
	for (int k = 0; k < K; k++)
		mx = z[(size_t)k * N] > mx ? z[(size_t)k * N] : mx;
	for (int k = 0; k < K; k++)
		sum += expf(z[(size_t)k * N] - mx);
	float lse = mx + logf(sum);
	if (soft) {
		T = 0.0f;
		for (int k = 0; k < K; k++)
			T += soft[(size_t)b * K + k];
	}
	if (kind == LOSS_CE) {
		float tz = 0.0f;
		for (int k = 0; k < K; k++) {
			float t = xent_target(labels, soft, K, b, k), zk = z[(size_t)k * N];
			tz += t * zk;
			dz[(size_t)k * N] = (expf(zk - lse) * T - t) * gs;
		}
		return T * lse - tz;
	}
	float s2 = 0.0f, tq = 0.0f, dqq = 0.0f;
	for (int k = 0; k < K; k++) {
		float q = expf(z[(size_t)k * N] - lse);
		dz[(size_t)k * N] = q;
		s2 += expf(q);
		tq += xent_target(labels, soft, K, b, k) * q;
	}
	float lse2 = logf(s2);
	for (int k = 0; k < K; k++) {
		float q = dz[(size_t)k * N];
		dqq += (expf(q - lse2) * T - xent_target(labels, soft, K, b, k)) * q;
	}
	for (int k = 0; k < K; k++) {
		float q = dz[(size_t)k * N];
		float dq = expf(q - lse2) * T - xent_target(labels, soft, K, b, k);
		dz[(size_t)k * N] = q * (dq - dqq) * gs;
	}
	return T * lse2 - tq;
}

#ifdef NN_X86
/* Cephes expf and logf (logf for positive normal numbers), 8 lanes */
AVX2 INLINE __m256 exp8(__m256 x)
{
	x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
	__m256 fx = _mm256_floor_ps(
		_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	__m256 y = _mm256_set1_ps(1.9875691500E-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
	y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
	y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
	__m256i e = _mm256_slli_epi32(
		_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

AVX2 INLINE __m256 log8(__m256 x)
{
	__m256i bits = _mm256_castps_si256(x);
	__m256 fe = _mm256_cvtepi32_ps(
		_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
	__m256 m = _mm256_castsi256_ps(_mm256_or_si256(
		_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
	__m256 lt = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
	__m256 t = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
	fe = _mm256_sub_ps(fe, _mm256_and_ps(lt, _mm256_set1_ps(1.0f)));
	t = _mm256_add_ps(t, _mm256_and_ps(lt, m));
	__m256 z = _mm256_mul_ps(t, t);
	__m256 y = _mm256_set1_ps(7.0376836292E-2f);
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.1514610310E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(1.1676998740E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.2420140846E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(1.4249322787E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-1.6668057665E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(2.0000714765E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(-2.4999993993E-1f));
	y = _mm256_fmadd_ps(y, t, _mm256_set1_ps(3.3333331174E-1f));
	y = _mm256_mul_ps(_mm256_mul_ps(y, t), z);
	y = _mm256_fmadd_ps(fe, _mm256_set1_ps(-2.12194440e-4f), y);
	y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
	__m256 r = _mm256_add_ps(t, y);
	return _mm256_fmadd_ps(fe, _mm256_set1_ps(0.693359375f), r);
}

/* targets of columns b0..b0+8 for class k (0 past B) */
AVX2 INLINE __m256 xent_t8(const int *labels, const float *soft, int K, int b0, int nb, int k)
{
	if (!soft) {
		__m256i lab = _mm256_set1_epi32(-1);
		if (nb == 8)
			lab = _mm256_loadu_si256((const __m256i *)(labels + b0));
		else {
			int tmp[8];
			for (int l = 0; l < 8; l++)
				tmp[l] = l < nb ? labels[b0 + l] : -1;
			lab = _mm256_loadu_si256((const __m256i *)tmp);
		}
		__m256 eq = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lab, _mm256_set1_epi32(k)));
		return _mm256_and_ps(eq, _mm256_set1_ps(1.0f));
	}
	float t[8];
	for (int l = 0; l < 8; l++)
		t[l] = l < nb ? soft[(size_t)(b0 + l) * K + k] : 0.0f;
	return _mm256_loadu_ps(t);
}

/* softmax_xent_fm for K = 2 in closed form: softmax over two classes is the
 * sigmoid of the difference, so a column costs one exponential and one
 * logarithm for CE, two and one for double softmax (q1 = sigmoid(z1 - z0),
 * r1 = sigmoid(q1 - q0), log(e^q0 + e^q1) = q0 + log(1 + e^(q1 - q0))). */
/* xent2_fm_avx2's work on the U column groups from g on (U a constant of
 * the call, so that every step below is unrolled): each step runs over the
 * groups before the next, so that their chains of exponentials, divisions
 * and logarithms overlap; the same operations per group, and the loss added
 * to *acc group by group, as one group at a time would */
AVX2 INLINE void xent2_groups(const int U, size_t g, float *dlogits, const float *logits,
			      const int *labels, const float *soft, int B, size_t N,
			      enum loss_kind kind, __m256 gs, __m256 *acc)
{
	const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
	const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	__m256 valid[XENT2_U], z0[XENT2_U], z1[XENT2_U], t0[XENT2_U], t1[XENT2_U];
	__m256 T[XENT2_U], d[XENT2_U], e[XENT2_U], big[XENT2_U], q0[XENT2_U], q1[XENT2_U];
	__m256 loss[XENT2_U], g0[XENT2_U], g1[XENT2_U];
	EACH({
		size_t b0 = (g + (size_t)u) * 8;
		int nb = B - (int)b0 < 8 ? B - (int)b0 : 8;
		valid[u] = _mm256_castsi256_ps(
			_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane));
		z0[u] = _mm256_loadu_ps(logits + b0);
		z1[u] = _mm256_loadu_ps(logits + N + b0);
		t0[u] = xent_t8(labels, soft, 2, (int)b0, nb, 0);
		t1[u] = xent_t8(labels, soft, 2, (int)b0, nb, 1);
		T[u] = soft ? _mm256_add_ps(t0[u], t1[u]) : one;
	});
	/* q1 = sigmoid(d) from e = exp(-|d|): the larger class gets 1/(1+e) */
	EACH(d[u] = _mm256_sub_ps(z1[u], z0[u]));
	EACH(e[u] = exp8(_mm256_sub_ps(zero, _mm256_and_ps(d[u], absm))));
	EACH(big[u] = _mm256_div_ps(one, _mm256_add_ps(one, e[u])));
	EACH({
		__m256 small = _mm256_mul_ps(e[u], big[u]);
		__m256 pos = _mm256_cmp_ps(d[u], zero, _CMP_GE_OQ);
		q1[u] = _mm256_blendv_ps(small, big[u], pos);
		q0[u] = _mm256_blendv_ps(big[u], small, pos);
	});
	if (kind == LOSS_CE) {
		EACH({
			__m256 lse = _mm256_add_ps(_mm256_max_ps(z0[u], z1[u]),
						   log8(_mm256_add_ps(one, e[u])));
			loss[u] = _mm256_fmsub_ps(T[u], lse,
						  _mm256_fmadd_ps(t1[u], z1[u],
								  _mm256_mul_ps(t0[u], z0[u])));
			g0[u] = _mm256_fmsub_ps(q0[u], T[u], t0[u]);
			g1[u] = _mm256_fmsub_ps(q1[u], T[u], t1[u]);
		});
	} else {
		__m256 e2[XENT2_U], s2[XENT2_U], r0[XENT2_U], lse2[XENT2_U];
		EACH(e2[u] = exp8(_mm256_sub_ps(q1[u], q0[u])));
		EACH(s2[u] = _mm256_add_ps(one, e2[u]));
		EACH(r0[u] = _mm256_div_ps(one, s2[u]));
		EACH(lse2[u] = _mm256_add_ps(q0[u], log8(s2[u])));
		EACH({
			__m256 r1 = _mm256_mul_ps(e2[u], r0[u]);
			loss[u] = _mm256_fmsub_ps(T[u], lse2[u],
						  _mm256_fmadd_ps(t1[u], q1[u],
								  _mm256_mul_ps(t0[u], q0[u])));
			__m256 dq0 = _mm256_fmsub_ps(r0[u], T[u], t0[u]);
			__m256 dq1 = _mm256_fmsub_ps(r1, T[u], t1[u]);
			__m256 dqq = _mm256_fmadd_ps(dq1, q1[u], _mm256_mul_ps(dq0, q0[u]));
			g0[u] = _mm256_mul_ps(q0[u], _mm256_sub_ps(dq0, dqq));
			g1[u] = _mm256_mul_ps(q1[u], _mm256_sub_ps(dq1, dqq));
		});
	}
	for (int u = 0; u < U; u++) {
		size_t b0 = (g + (size_t)u) * 8;
		_mm256_storeu_ps(dlogits + b0, _mm256_and_ps(valid[u], _mm256_mul_ps(g0[u], gs)));
		_mm256_storeu_ps(dlogits + N + b0,
				 _mm256_and_ps(valid[u], _mm256_mul_ps(g1[u], gs)));
		*acc = _mm256_add_ps(*acc, _mm256_and_ps(valid[u], loss[u]));
	}
}

AVX2 static double xent2_fm_avx2(float *dlogits, const float *logits, const int *labels,
				 const float *soft, int B, size_t N, enum loss_kind kind,
				 float grad_scale)
{
	const __m256 gs = _mm256_set1_ps(grad_scale), zero = _mm256_setzero_ps();
	__m256 acc = zero;
	/* the groups of 8 columns that hold samples, XENT2_U at a time */
	size_t ng = ((size_t)B + 7) / 8 < N / 8 ? ((size_t)B + 7) / 8 : N / 8;
	for (size_t g = 0; g < ng; g += XENT2_U) {
		switch (ng - g < XENT2_U ? ng - g : XENT2_U) {
		case 1:
			xent2_groups(1, g, dlogits, logits, labels, soft, B, N, kind, gs, &acc);
			break;
		case 2:
			xent2_groups(2, g, dlogits, logits, labels, soft, B, N, kind, gs, &acc);
			break;
		case 3:
			xent2_groups(3, g, dlogits, logits, labels, soft, B, N, kind, gs, &acc);
			break;
		default:
			xent2_groups(XENT2_U, g, dlogits, logits, labels, soft, B, N, kind, gs,
				     &acc);
			break;
		}
	}
	/* columns past the samples' groups */
	for (size_t b0 = ng * 8; b0 < N; b0 += 8) {
		_mm256_storeu_ps(dlogits + b0, zero);
		_mm256_storeu_ps(dlogits + N + b0, zero);
	}
	float l[8];
	_mm256_storeu_ps(l, acc);
	double total = 0.0;
	for (int i = 0; i < 8; i++)
		total += l[i];
	return total;
}

/* softmax_xent_fm for N a multiple of 8 and K <= XENT_FM_K: each group of 8
 * columns keeps its logits, targets and exponentials in registers, so a row
 * costs 2K exponentials and 2 logarithms */
#define XENT_FM_K 16
AVX2 static double xent_fm_avx2(float *dlogits, const float *logits, const int *labels,
				const float *soft, int B, size_t N, int K, enum loss_kind kind,
				float grad_scale)
{
	double total = 0.0;
	const __m256 gs = _mm256_set1_ps(grad_scale), zero = _mm256_setzero_ps();
	const __m256 one = _mm256_set1_ps(1.0f);
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	for (size_t b0 = 0; b0 < N; b0 += 8) {
		const float *z = logits + b0;
		float *dz = dlogits + b0;
		int nb = (size_t)B > b0 ? (B - (int)b0 < 8 ? B - (int)b0 : 8) : 0;
		if (nb == 0) {
			for (int k = 0; k < K; k++)
				_mm256_storeu_ps(dz + (size_t)k * N, zero);
			continue;
		}
		__m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane));
		__m256 zc[XENT_FM_K], tc[XENT_FM_K], e[XENT_FM_K];
		__m256 mx = _mm256_set1_ps(-INFINITY), sum = zero, T = zero;
		for (int k = 0; k < K; k++) {
			zc[k] = _mm256_loadu_ps(z + (size_t)k * N);
			tc[k] = xent_t8(labels, soft, K, (int)b0, nb, k);
			mx = _mm256_max_ps(mx, zc[k]);
			T = _mm256_add_ps(T, tc[k]);
		}
		if (!soft)
			T = one;
		for (int k = 0; k < K; k++) {
			e[k] = exp8(_mm256_sub_ps(zc[k], mx));
			sum = _mm256_add_ps(sum, e[k]);
		}
		__m256 inv = _mm256_div_ps(one, sum);
		__m256 loss;
		if (kind == LOSS_CE) {
			__m256 lse = _mm256_add_ps(mx, log8(sum)), tz = zero;
			for (int k = 0; k < K; k++) {
				__m256 q = _mm256_mul_ps(e[k], inv);
				tz = _mm256_fmadd_ps(tc[k], zc[k], tz);
				__m256 d = _mm256_fmsub_ps(q, T, tc[k]);
				_mm256_storeu_ps(dz + (size_t)k * N,
						 _mm256_and_ps(valid, _mm256_mul_ps(d, gs)));
			}
			loss = _mm256_fmsub_ps(T, lse, tz);
		} else {
			/* q = softmax(z) in zc, exp(q) in e */
			__m256 s2 = zero, tq = zero, dqq = zero;
			for (int k = 0; k < K; k++) {
				zc[k] = _mm256_mul_ps(e[k], inv);
				e[k] = exp8(zc[k]);
				s2 = _mm256_add_ps(s2, e[k]);
				tq = _mm256_fmadd_ps(tc[k], zc[k], tq);
			}
			__m256 inv2 = _mm256_div_ps(one, s2);
			for (int k = 0; k < K; k++) {
				/* dq = softmax(q) T - t, kept in tc */
				tc[k] = _mm256_fmsub_ps(_mm256_mul_ps(e[k], inv2), T, tc[k]);
				dqq = _mm256_fmadd_ps(tc[k], zc[k], dqq);
			}
			for (int k = 0; k < K; k++) {
				__m256 d = _mm256_mul_ps(_mm256_mul_ps(zc[k], _mm256_sub_ps(tc[k], dqq)), gs);
				_mm256_storeu_ps(dz + (size_t)k * N, _mm256_and_ps(valid, d));
			}
			loss = _mm256_fmsub_ps(T, log8(s2), tq);
		}
		loss = _mm256_and_ps(valid, loss);
		__m128 h = _mm_add_ps(_mm256_castps256_ps128(loss), _mm256_extractf128_ps(loss, 1));
		h = _mm_add_ps(h, _mm_movehl_ps(h, h));
		h = _mm_add_ss(h, _mm_movehdup_ps(h));
		total += _mm_cvtss_f32(h);
	}
	return total;
}
#endif

#ifdef NN_X86
AVX2 static int exp_sub_avx2(float *y, const float *x, const float *m, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i),
							 _mm256_loadu_ps(m + i))));
	return i;
}
#endif

void exp_sub(float *y, const float *x, const float *m, int n)
{
	int i = 0;
#ifdef NN_X86
	if (cpu_avx2())
		i = exp_sub_avx2(y, x, m, n);
#endif
	for (; i < n; i++)
		y[i] = expf(x[i] - m[i]);
}

double softmax_xent_fm(float *dlogits, const float *logits, const int *labels, const float *soft,
		       int B, int N, int K, enum loss_kind kind, float grad_scale)
{
	// logits, dlogits are (K,N); labels is (B); soft is (B,K)
#ifdef NN_X86
	if (cpu_avx2() && N % 8 == 0 && K == 2)
		return xent2_fm_avx2(dlogits, logits, labels, soft, B, (size_t)N, kind, grad_scale);
	if (cpu_avx2() && N % 8 == 0 && K <= XENT_FM_K)
		return xent_fm_avx2(dlogits, logits, labels, soft, B, (size_t)N, K, kind, grad_scale);
#endif
	double total = 0.0;
	for (int b = 0; b < N; b++) {
		if (b >= B) {
			for (int k = 0; k < K; k++)
				dlogits[(size_t)k * N + b] = 0.0f;
			continue;
		}
		total += xent_fm_col(dlogits + b, logits + b, (size_t)N, labels, soft, b, K, kind,
				     grad_scale);
	}
	return total;
}

/* ---- the MLP model ----------------------------------------------------- */

#define MLP_MAX_LIN (MLP_MAX_BRANCH * MLP_MAX_LAYERS + MLP_MAX_LAYERS + 1)

/* Which regularizer buffers a forward needs (and the allocation has). */
enum { NEED_NOISE_IN = 1, NEED_NOISE_H = 2, NEED_DROPOUT = 4 };

/* One hidden layer's activations, all feature-major (out, N). */
struct hidden_acts {
	float *h;    /* ReLU output */
	float *o;    /* after noise and dropout (== h when neither applies) */
	float *eps;  /* noise draws, NULL unless this layer carries hidden noise */
	float *mask; /* dropout mask, NULL without dropout */
	const float *epsv; /* the noise draws this step used: eps, or a draw memo's block */
	float *g;    /* backward scratch: gradient w.r.t. o, then w.r.t. the pre-activation */
};

/*
 * Every activation is feature-major with row length N = B rounded up to 8.
 * Padding columns [B, N) hold zeros in every forward buffer up to the head's
 * input, and in every gradient, so whole-row vector ops (sums, dot products,
 * the dW kernel) need no tail handling; only the head's padding logits are
 * not zero, and they are never read as data.
 */
struct pl_state;
#ifdef NN_X86
static void pl_free(struct pl_state *s);
#endif

struct mlp_priv {
	int cap_flags;                 /* NEED_* buffers the allocation holds */
	int flags;                     /* NEED_* the last forward used */
	int N;                         /* row length of the last forward */
	int cin;                       /* sum(in_dim) */
	int ct;                        /* trunk input width */
	int coff[MLP_MAX_BRANCH];      /* first row of branch k's input in xin */
	int first[MLP_MAX_BRANCH];     /* late: index of branch k's first layer */
	int trunk0, head;              /* lin index of trunk layer 0 and of the head */
	int noise_layer[MLP_MAX_LIN];  /* 1: hidden noise follows this layer's ReLU */
	uint64_t noise_off[MLP_MAX_LIN];
	uint64_t drop_off[MLP_MAX_LIN];
	float *xin;                    /* the inputs, transposed: (cin, N), branch k at row coff[k] */
	float *xn, *xeps;              /* input noise out/draws: (cin, N) */
	float *cat, *dcat;             /* late fusion: trunk input (ct, N) and its gradient */
	float *zt, *dzt;               /* the head's output (classes, N) and its gradient */
	struct hidden_acts ha[MLP_MAX_LIN];
	const float *lin_in[MLP_MAX_LIN]; /* each layer's input in the last forward */
	int gated[MLP_MAX_LIN];        /* backward: g already went through mask and ReLU */
	double gbatch;                 /* global batch of the last forward */
	float beta, p;                 /* hidden noise scale and dropout rate of the last forward */
	struct pl_state *pl;           /* the piecewise-linear path's scratch (one-input MLPs) */
	int pl_on;                     /* the last forward took that path */
};

static int is_late(const struct mlp *m)
{
	return m->arch.fusion == FUSION_LATE;
}

static int branch_depth(const struct mlp *m, int k)
{
	return is_late(m) ? m->arch.branch_depth[k] : 0;
}

static int branch_out(const struct mlp *m, int k)
{
	int d = branch_depth(m, k);
	return d ? m->arch.branch_hidden[k][d - 1] : m->arch.in_dim[k];
}

static int arch_check(const struct mlp_arch *a)
{
	if (a->nbranch < 1 || a->nbranch > MLP_MAX_BRANCH)
		return mke_error("mlp: 'nbranch' is %d; use 1 or %d", a->nbranch, MLP_MAX_BRANCH);
	if (a->fusion != FUSION_EARLY && a->fusion != FUSION_LATE)
		return mke_error("mlp: unknown fusion %d; use early or late", (int)a->fusion);
	for (int k = 0; k < a->nbranch; k++) {
		if (a->in_dim[k] <= 0)
			return mke_error("mlp: branch %d has input width %d; give a positive 'in_dim'",
					 k, a->in_dim[k]);
		if (a->fusion != FUSION_LATE)
			continue;
		if (a->branch_depth[k] < 0 || a->branch_depth[k] > MLP_MAX_LAYERS)
			return mke_error("mlp: branch %d has depth %d; use 0..%d", k,
					 a->branch_depth[k], MLP_MAX_LAYERS);
		for (int j = 0; j < a->branch_depth[k]; j++)
			if (a->branch_hidden[k][j] <= 0)
				return mke_error("mlp: branch %d layer %d has width %d; use a positive width",
						 k, j, a->branch_hidden[k][j]);
	}
	if (a->depth < 0 || a->depth > MLP_MAX_LAYERS)
		return mke_error("mlp: trunk depth is %d; use 0..%d", a->depth, MLP_MAX_LAYERS);
	for (int j = 0; j < a->depth; j++)
		if (a->hidden[j] <= 0)
			return mke_error("mlp: trunk layer %d has width %d; use a positive width", j,
					 a->hidden[j]);
	if (a->classes <= 0)
		return mke_error("mlp: 'classes' is %d; use a positive count", a->classes);
	return 0;
}

/* Append a linear layer named by the printf-style prefix (e.g. "trunk.%d"). */
static void add_linear(struct mlp *m, int in, int out, const char *fmt, ...) MKE_PRINTF(4, 5);
static void add_linear(struct mlp *m, int in, int out, const char *fmt, ...)
{
	int l = m->nlinear++;
	char prefix[24];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	m->lin[l].in = in;
	m->lin[l].out = out;
	/* at most 23 + 7 chars: always fits the 32 of names */
	snprintf(m->names[l][0], sizeof(m->names[l][0]), "%s.weight", prefix);
	snprintf(m->names[l][1], sizeof(m->names[l][1]), "%s.bias", prefix);
}

int mlp_init(struct mlp *m, const struct mlp_arch *arch)
{
	memset(m, 0, sizeof(*m));
	if (arch_check(arch))
		return -1;
	m->arch = *arch;
	struct mlp_priv *P = xcalloc(1, sizeof(*P));
	m->priv = P;
	const struct mlp_arch *a = &m->arch;

	for (int k = 0; k < a->nbranch; k++) {
		P->coff[k] = P->cin;
		P->cin += a->in_dim[k];
		P->first[k] = m->nlinear;
		for (int j = 0; j < branch_depth(m, k); j++)
			add_linear(m, j ? a->branch_hidden[k][j - 1] : a->in_dim[k],
				   a->branch_hidden[k][j], "branch%d.%d", k, j);
		P->ct += branch_out(m, k);
	}
	P->trunk0 = m->nlinear;
	for (int j = 0; j < a->depth; j++)
		add_linear(m, j ? a->hidden[j - 1] : P->ct, a->hidden[j], "trunk.%d", j);
	P->head = m->nlinear;
	add_linear(m, a->depth ? a->hidden[a->depth - 1] : P->ct, a->classes, "head");

	/* which layers carry hidden noise, and every hidden layer's stream offsets */
	uint64_t noff = 0, doff = 0;
	for (int k = 0; k < a->nbranch; k++) {
		if (branch_depth(m, k) > 0) {
			int l = P->first[k];
			P->noise_layer[l] = 1;
			P->noise_off[l] = noff;
			noff += (uint64_t)m->lin[l].out;
		}
	}
	if (noff == 0 && a->depth > 0)
		P->noise_layer[P->trunk0] = 1;
	for (int l = 0; l < P->head; l++) {
		P->drop_off[l] = doff;
		doff += (uint64_t)m->lin[l].out;
	}

	for (int l = 0; l < m->nlinear; l++)
		m->nparams += (size_t)m->lin[l].out * m->lin[l].in + m->lin[l].out;
	m->params = xcalloc(m->nparams, sizeof(float));
	m->grads = xcalloc(m->nparams, sizeof(float));
	size_t off = 0;
	for (int l = 0; l < m->nlinear; l++) {
		struct linear_view *v = &m->lin[l];
		v->w = m->params + off;
		v->dw = m->grads + off;
		off += (size_t)v->out * v->in;
		v->b = m->params + off;
		v->db = m->grads + off;
		off += (size_t)v->out;
	}
	return 0;
}

void mlp_init_params(struct mlp *m, uint64_t seed)
{
	for (int l = 0; l < m->nlinear; l++) {
		struct linear_view *v = &m->lin[l];
		float bound = 1.0f / sqrtf((float)v->in);
		struct rng r;
		rng_init(&r, seed, RNG_INIT, (uint32_t)l, 0);
		for (size_t i = 0; i < (size_t)v->out * v->in; i++)
			v->w[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
		rng_init(&r, seed, RNG_INIT, (uint32_t)l, 1);
		for (int i = 0; i < v->out; i++)
			v->b[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
	}
}

void mlp_init_params_torch(struct mlp *m, uint64_t seed)
{
	struct mt19937 g;
	mt19937_seed(&g, seed);
	for (int l = 0; l < m->nlinear; l++) {
		struct linear_view *v = &m->lin[l];
		/* torch.nn.init's arithmetic, in double as Python does it */
		double a = sqrt(5.0), fan_in = v->in;
		double gain = sqrt(2.0 / (1.0 + pow(a, 2.0)));
		double wb = sqrt(3.0) * (gain / sqrt(fan_in));
		double bb = 1.0 / sqrt(fan_in);
		for (size_t i = 0; i < (size_t)v->out * v->in; i++)
			v->w[i] = mt19937_uniform(&g, (float)-wb, (float)wb);
		for (int i = 0; i < v->out; i++)
			v->b[i] = mt19937_uniform(&g, (float)-bb, (float)bb);
	}
}

void mlp_release(struct mlp *m)
{
	free(m->params);
	free(m->grads);
	free(m->acts);
#ifdef NN_X86
	if (m->priv)
		pl_free(((struct mlp_priv *)m->priv)->pl);
#endif
	free(m->priv);
	memset(m, 0, sizeof(*m));
}

void mlp_zero_grad(struct mlp *m)
{
	memset(m->grads, 0, m->nparams * sizeof(float));
}

static int row_len(int B)
{
	return (B + 7) & ~7;
}

/* Point every activation buffer into base for B rows and flags; returns the
 * floats needed. With base NULL only counts. Buffers are (width, row_len(B)). */
static size_t mlp_layout(struct mlp *m, float *base, int B, int flags)
{
	struct mlp_priv *P = m->priv;
	size_t off = 0, N = (size_t)row_len(B);
	P->N = (int)N;
	P->xin = carve_floats(base, &off, N * P->cin);
	P->xn = P->xeps = NULL;
	if (flags & NEED_NOISE_IN) {
		P->xn = carve_floats(base, &off, N * P->cin);
		P->xeps = carve_floats(base, &off, N * P->cin);
	}
	P->cat = P->dcat = NULL;
	if (is_late(m)) {
		P->cat = carve_floats(base, &off, N * P->ct);
		P->dcat = carve_floats(base, &off, N * P->ct);
	}
	for (int l = 0; l < P->head; l++) {
		struct hidden_acts *ha = &P->ha[l];
		size_t n = N * m->lin[l].out;
		int noise = (flags & NEED_NOISE_H) && P->noise_layer[l];
		ha->h = carve_floats(base, &off, n);
		ha->g = carve_floats(base, &off, n);
		ha->eps = noise ? carve_floats(base, &off, n) : NULL;
		ha->mask = (flags & NEED_DROPOUT) ? carve_floats(base, &off, n) : NULL;
		ha->o = noise || (flags & NEED_DROPOUT) ? carve_floats(base, &off, n) : ha->h;
	}
	P->zt = carve_floats(base, &off, N * m->arch.classes);
	P->dzt = carve_floats(base, &off, N * m->arch.classes);
	m->logits = carve_floats(base, &off, (size_t)B * m->arch.classes);
	return off;
}

/* Make acts hold B rows with the buffers flags need, and point the buffers of
 * this pass (only those flags asks for; the others are NULL) into it. A
 * layout for fewer rows or fewer flags needs fewer floats, so it always fits. */
static void mlp_reserve(struct mlp *m, int B, int flags)
{
	struct mlp_priv *P = m->priv;
	if (!m->acts || B > m->max_batch || (flags & ~P->cap_flags)) {
		int cap = B > m->max_batch ? B : m->max_batch;
		int cflags = P->cap_flags | flags;
		size_t n = mlp_layout(m, NULL, cap, cflags);
		free(m->acts);
		m->acts = xalloc_floats32(n);
		m->nacts = n;
		m->max_batch = cap;
		P->cap_flags = cflags;
	}
	mlp_layout(m, m->acts, B, flags);
}

static void ctx_reduce(const struct fwd_ctx *ctx, double *vals, int n)
{
	if (ctx && ctx->reduce)
		ctx->reduce(vals, n, ctx->reduce_arg);
}

/* ---- feature-major elementwise passes (rows of N floats) ---- */

/* sum |x| over rows x N: rows in float lanes, their sums in double */
static double fm_sum_abs(const float *x, int rows, size_t N)
{
	double s = 0.0;
	fm_rows_sum(NULL, 0, &s, x, NULL, 1, rows, N);
	return s;
}

/* sum g*e over rows x N, as fm_sum_abs */
static double fm_dot(const float *g, const float *e, int rows, size_t N)
{
	double s = 0.0;
	fm_rows_sum(NULL, 0, &s, g, e, 0, rows, N);
	return s;
}

#ifdef NN_X86
/* the padding is inside each row's last vector: a load, the padding lanes
 * cleared, a store (a masked store per row took 0.8 % of the TwoMoon table
 * on the AMD build machine; this does not show in its profile) */
AVX2 static void zero_pad_avx2(float *x, int rows, int B, int N)
{
	__m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	__m256 keep = _mm256_castsi256_ps(
		_mm256_cmpgt_epi32(_mm256_set1_epi32(B - (N - 8)), lane));
	for (int r = 0; r < rows; r++) {
		float *v = x + (size_t)r * N + N - 8;
		_mm256_storeu_ps(v, _mm256_and_ps(_mm256_loadu_ps(v), keep));
	}
}
#endif

/* zero columns [B, N) of rows x N */
static void fm_zero_pad(float *x, int rows, int B, int N)
{
	if (B == N)
		return;
#ifdef NN_X86
	if (cpu_avx2() && N % 8 == 0 && N - B < 8) {
		zero_pad_avx2(x, rows, B, N);
		return;
	}
#endif
	for (int r = 0; r < rows; r++)
		memset(x + (size_t)r * N + B, 0, (size_t)(N - B) * sizeof(float));
}

/* x (B, C) row-major into xt (C, N) with zero padding columns */
static void fm_transpose_in(float *xt, const float *x, int B, int C, int N)
{
	for (int c = 0; c < C; c++) {
		float *row = xt + (size_t)c * N;
		for (int b = 0; b < B; b++)
			row[b] = x[(size_t)b * C + c];
	}
	fm_zero_pad(xt, C, B, N);
}

/* Gaussian noise (draws at offset off of purpose) on rows x N: eps is drawn
 * for columns [0,B) and zero past them; out = x + k*eps */
static void fm_noise(float *out, float *eps, const float *x, int rows, int B, int N, float k,
		     const struct fwd_ctx *ctx, uint32_t purpose, uint64_t off)
{
	/* the draws themselves are not needed after this (inputs get no gradient) */
	rng_noise_fm_memo(ctx->memo, eps, out, x, k, (size_t)N, B, rows, ctx->seed, purpose,
			  ctx->step, ctx->ids, off);
}

/* ---- forward ---- */

/* Linear + ReLU of hidden layer l on in (lin[l].in, N) into h (lin[l].out, N).
 * Returns sum |h| over the local rows when this layer carries noise, else 0. */
static double hidden_linear(struct mlp *m, int l, const float *in, int B)
{
	struct mlp_priv *P = m->priv;
	struct linear_view *v = &m->lin[l];
	float *h = P->ha[l].h;
	P->lin_in[l] = in;
	struct ax_epi e = { .bias = v->b, .relu = 1 };
	fm_ax(h, v->w, 0, in, v->out, v->in, (size_t)P->N, &e);
	fm_zero_pad(h, v->out, B, P->N);
	return P->ha[l].eps ? fm_sum_abs(h, v->out, (size_t)P->N) : 0.0;
}

/* Noise (if this layer carries it) and dropout after hidden layer l's ReLU:
 * o = (h + beta*mean*eps) * mask. */
static void hidden_reg(struct mlp *m, int l, int B, const struct fwd_ctx *ctx, double sum_abs)
{
	struct mlp_priv *P = m->priv;
	struct hidden_acts *ha = &P->ha[l];
	int C = m->lin[l].out, N = P->N;
	if (ha->eps) {
		float mean = (float)(sum_abs / (P->gbatch * C));
		ha->epsv = rng_noise_fm_memo(ctx->memo, ha->eps, ha->o, ha->h, P->beta * mean,
					     (size_t)N, B, C, ctx->seed, RNG_HIDDEN_NOISE, ctx->step,
					     ctx->ids, P->noise_off[l]);
	}
	if (ha->mask) {
		const float *src = ha->eps ? ha->o : ha->h;
		rng_dropout_fm_memo(ctx->memo, ha->mask, ha->o, src, P->p, (size_t)N, B, C,
				    ctx->seed, RNG_DROPOUT, ctx->step, ctx->ids, P->drop_off[l]);
	}
}

/* A whole hidden layer: linear, ReLU, then noise (with its reduce) and
 * dropout where they apply. Returns the layer's output. */
static const float *hidden_forward(struct mlp *m, int l, const float *in, int B,
				   const struct fwd_ctx *ctx)
{
	struct mlp_priv *P = m->priv;
	double s = hidden_linear(m, l, in, B);
	if (P->ha[l].eps)
		ctx_reduce(ctx, &s, 1);
	if (ctx)
		hidden_reg(m, l, B, ctx, s);
	return P->ha[l].o;
}

static int pl_enabled = 1;

void mlp_piecewise_enable(int on)
{
	pl_enabled = on;
}

int mlp_took_piecewise(const struct mlp *m)
{
	return ((const struct mlp_priv *)m->priv)->pl_on;
}

#ifdef NN_X86
/* ---- MLPs of few inputs: the first layer taken piecewise-linearly ----
 *
 * When the input has a few features x (cin <= PL_MAX_IN) and two ReLU
 * layers follow (x -> H0 -> H1 -> classes: the TwoMoon students), unit j of
 * the first layer, h0_j = relu(w_j . x + b_j), is active on one side of a
 * hyperplane, so the rows of a batch fall into patterns of active units (at
 * most H0 + 1 with one input; in general at most B). A row's pattern is made
 * of the dense path's own tests (its bias-then-FMA pre-activation > 0). On
 * the rows of pattern s, with active set A_s, the second layer's
 * pre-activation is linear in x:
 *     pre1 = sum_c x_c U_s^c + V_s,  U_s^c = sum_{j in A_s} w_jc W1[:,j],
 *                                   V_s = b1 + sum_{j in A_s} b_j W1[:,j].
 * A training step then costs per-row vector work of O((cin + K) H1) and
 * per-pattern sums of O(|A_s| (cin + 1) H1) instead of three B x H0 x H1
 * products: the forward writes each row's activations and logits from its
 * pattern's (U, V), and of the first two layers' gradients the backward needs
 * only the per-pattern sums G_s = sum g1 and GX_s^c = sum x_c g1 (g1 the
 * gradient of pre1):
 *     dW1[:,j] += sum_c w_jc RGX_j^c + b_j RG_j,  db1 += sum_s G_s,
 *     dW0[j][c] += W1[:,j] . RGX_j^c,  db0[j] += W1[:,j] . RG_j,
 * with RG_j, RGX_j^c the sums over the patterns where unit j is active. The
 * result equals the dense path's up to float rounding (another summation
 * order). Used in training (ctx given) without hidden noise or dropout
 * (input noise is fine), for B >= PL_MIN_ROWS and at least 4 rows per
 * possible pattern, H0 <= 32, H1 a multiple of 8 up to 64, K <= 8, on AVX2.
 */
#define PL_MIN_ROWS 128
#define PL_MAX_H1 64
#define PL_MAX_IN 4

struct pl_state {
	int cap, B, S;     /* rows allocated, rows of the last forward, patterns */
	int cin, nslot;    /* inputs; hash slots (a power of 2 > 2 cap) */
	uint32_t *pat;     /* (cap + 8) each row's pattern of active first-layer units */
	int *seg;          /* (cap) each row's pattern index */
	int *order;        /* (cap) the rows grouped by pattern: pattern t's are */
	int *start;        /* (cap + 1) order[start[t] .. start[t+1]) */
	uint32_t *spat;    /* (cap) pattern t */
	int *slot;         /* (nslot) hash of a pattern -> its index, -1 empty */
	float *x;          /* (cin, cap) the rows' inputs */
	float *U, *V;      /* (cap, cin, H1) and (cap, H1) */
	float *G, *GX;     /* backward: (cap, H1) and (cap, cin, H1) */
	float *A, *C;      /* (H0, cin, H1) w_jc W1[:,j] and (H0, H1) b_j W1[:,j] */
	float *RG, *RGX;   /* (H0, H1) and (H0, cin, H1) */
	float *W1T;        /* (H0, H1) the second layer's weights, transposed */
};

static void pl_free(struct pl_state *s)
{
	if (!s)
		return;
	free(s->pat);
	free(s->seg);
	free(s->order);
	free(s->start);
	free(s->spat);
	free(s->slot);
	free(s->x);
	free(s->U);
	free(s->V);
	free(s->G);
	free(s->GX);
	free(s->A);
	free(s->C);
	free(s->RG);
	free(s->RGX);
	free(s->W1T);
	free(s);
}

/* The most patterns H0 units on cin inputs can form: sum_{i <= cin} C(H0, i)
 * (the regions of H0 hyperplanes in cin dimensions) */
static long pl_max_patterns(int H0, int cin)
{
	long n = 0, binom = 1;
	for (int i = 0; i <= cin && i <= H0; i++) {
		n += binom;
		binom = binom * (H0 - i) / (i + 1);
	}
	return n;
}

/* Whether this forward takes the piecewise-linear path: the shape fits, and
 * the patterns are few against the rows (per-pattern work is then small;
 * the TwoMoon UM student: 33 patterns at most for 270 rows; the MM student,
 * 16 units on two inputs, could form 137 and stays dense) */
static int pl_applies(const struct mlp *m, const struct fwd_ctx *ctx, int B, int flags)
{
	const struct mlp_priv *P = m->priv;
	const struct mlp_arch *a = &m->arch;
	return ctx && pl_enabled && cpu_avx2() && !is_late(m) && P->cin <= PL_MAX_IN &&
	       a->depth == 2 && P->trunk0 == 0 && B >= PL_MIN_ROWS &&
	       !(flags & (NEED_NOISE_H | NEED_DROPOUT)) && m->lin[0].out <= 32 &&
	       m->lin[1].out % 8 == 0 && m->lin[1].out <= PL_MAX_H1 && a->classes <= 8 &&
	       4 * pl_max_patterns(m->lin[0].out, P->cin) <= B;
}

/* pl's scratch for B rows of m; 0 without memory */
static int pl_prepare(struct mlp *m, int B)
{
	struct mlp_priv *P = m->priv;
	struct pl_state *s = P->pl;
	int H0 = m->lin[0].out, H1 = m->lin[1].out, cin = P->cin;
	if (s && s->cap >= B)
		return 1;
	pl_free(s);
	s = P->pl = calloc(1, sizeof *s);
	if (!s)
		return 0;
	size_t n = (size_t)B, h = (size_t)H1, c = (size_t)cin;
	s->cap = B;
	s->cin = cin;
	long maxpat = pl_max_patterns(H0, cin);
	if (maxpat > B)
		maxpat = B;
	s->nslot = 1;
	while (s->nslot <= 2 * maxpat)
		s->nslot *= 2;
	s->pat = malloc(sizeof(uint32_t) * (n + 8));
	s->seg = malloc(sizeof(int) * n);
	s->order = malloc(sizeof(int) * n);
	s->start = malloc(sizeof(int) * (n + 1));
	s->spat = malloc(sizeof(uint32_t) * n);
	s->slot = malloc(sizeof(int) * (size_t)s->nslot);
	s->x = malloc(sizeof(float) * c * n);
	s->U = malloc(sizeof(float) * n * c * h);
	s->V = malloc(sizeof(float) * n * h);
	s->G = malloc(sizeof(float) * n * h);
	s->GX = malloc(sizeof(float) * n * c * h);
	s->A = malloc(sizeof(float) * (size_t)H0 * c * h);
	s->C = malloc(sizeof(float) * (size_t)H0 * h);
	s->RG = malloc(sizeof(float) * (size_t)H0 * h);
	s->RGX = malloc(sizeof(float) * (size_t)H0 * c * h);
	s->W1T = malloc(sizeof(float) * (size_t)H0 * h);
	if (!s->W1T || !s->pat || !s->seg || !s->order || !s->start || !s->spat || !s->slot || !s->x ||
	    !s->U || !s->V || !s->G || !s->GX || !s->A || !s->C || !s->RG || !s->RGX) {
		pl_free(s);
		P->pl = NULL;
		return 0;
	}
	return 1;
}

/* sum of the 8 lanes */
AVX2 INLINE float pl_hsum(__m256 v)
{
	__m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	t = _mm_add_ps(t, _mm_movehl_ps(t, t));
	t = _mm_add_ss(t, _mm_movehdup_ps(t));
	return _mm_cvtss_f32(t);
}

/* Every row's pattern and its index, the rows grouped by pattern; x is the
 * feature-major input (cin, N) */
AVX2 static void pl_patterns(struct mlp *m, struct pl_state *s, const float *x, int B, int N)
{
	const struct linear_view *l0 = &m->lin[0];
	int H0 = l0->out, cin = s->cin;
	for (int b0 = 0; b0 < N; b0 += 8) {
		__m256 xv[PL_MAX_IN];
		for (int c = 0; c < cin; c++)
			xv[c] = _mm256_loadu_ps(x + (size_t)c * N + b0);
		__m256i p = _mm256_setzero_si256();
		for (int j = 0; j < H0; j++) {
			/* as the dense path's kernel: the bias, then one FMA per input */
			__m256 pre = _mm256_set1_ps(l0->b[j]);
			for (int c = 0; c < cin; c++)
				pre = _mm256_fmadd_ps(_mm256_set1_ps(l0->w[(size_t)j * cin + c]), xv[c],
						      pre);
			__m256i on = _mm256_castps_si256(_mm256_cmp_ps(pre, _mm256_setzero_ps(),
								       _CMP_GT_OQ));
			p = _mm256_or_si256(p, _mm256_and_si256(on, _mm256_set1_epi32((int)(1u << j))));
		}
		_mm256_storeu_si256((__m256i *)(s->pat + b0), p);
	}
	for (int c = 0; c < cin; c++)
		memcpy(s->x + (size_t)c * B, x + (size_t)c * N, sizeof(float) * (size_t)B);
	for (int i = 0; i < s->nslot; i++)
		s->slot[i] = -1;
	int S = 0;
	uint32_t mask = (uint32_t)s->nslot - 1;
	int shift = 32 - __builtin_ctz((unsigned)s->nslot);
	for (int b = 0; b < B; b++) {
		/* the product's top bits: a Fibonacci hash */
		uint32_t p = s->pat[b], h = (p * 2654435761u) >> shift;
		while (s->slot[h] >= 0 && s->spat[s->slot[h]] != p)
			h = (h + 1) & mask;
		if (s->slot[h] < 0) {
			s->spat[S] = p;
			s->slot[h] = S++;
		}
		s->seg[b] = s->slot[h];
	}
	s->S = S;
	/* the rows grouped by pattern (a counting sort) */
	memset(s->start, 0, sizeof(int) * (size_t)(S + 1));
	for (int b = 0; b < B; b++)
		s->start[s->seg[b] + 1]++;
	for (int t = 0; t < S; t++)
		s->start[t + 1] += s->start[t];
	for (int b = 0; b < B; b++)
		s->order[s->start[s->seg[b]]++] = b;
	for (int t = S; t > 0; t--)
		s->start[t] = s->start[t - 1];
	s->start[0] = 0;
}

/* pl_forward's rows, for CIN inputs and NV vectors of H1 (constants for the
 * TwoMoon UM student's shape) */
AVX2 INLINE void pl_fwd_rows(const int CIN, const int NV, struct mlp *m, struct pl_state *s, int B,
			     int N)
{
	struct mlp_priv *P = m->priv;
	const struct linear_view *hd = &m->lin[2];
	int K = hd->out, H1 = 8 * NV;
	size_t ch = (size_t)CIN * H1;
	for (int t = 0; t < s->S; t++) {
		__m256 u[PL_MAX_IN][PL_MAX_H1 / 8], v[PL_MAX_H1 / 8];
		for (int k = 0; k < NV; k++) {
			v[k] = _mm256_loadu_ps(s->V + (size_t)t * H1 + 8 * k);
			for (int c = 0; c < CIN; c++)
				u[c][k] = _mm256_loadu_ps(s->U + (size_t)t * ch + (size_t)c * H1 + 8 * k);
		}
		for (int i = s->start[t]; i < s->start[t + 1]; i++) {
			int r = s->order[i];
			__m256 xv[PL_MAX_IN], h[PL_MAX_H1 / 8];
			for (int c = 0; c < CIN; c++)
				xv[c] = _mm256_set1_ps(s->x[(size_t)c * B + r]);
			for (int k = 0; k < NV; k++) {
				__m256 a = v[k];
				for (int c = 0; c < CIN; c++)
					a = _mm256_fmadd_ps(xv[c], u[c][k], a);
				h[k] = _mm256_max_ps(a, _mm256_setzero_ps());
			}
			for (int c = 0; c < K; c++) {
				const float *wc = hd->w + (size_t)c * H1;
				__m256 acc = _mm256_mul_ps(h[0], _mm256_loadu_ps(wc));
				for (int k = 1; k < NV; k++)
					acc = _mm256_fmadd_ps(h[k], _mm256_loadu_ps(wc + 8 * k), acc);
				float z = pl_hsum(acc) + hd->b[c];
				P->zt[(size_t)c * N + r] = z;
				m->logits[(size_t)r * K + c] = z;
			}
		}
	}
}

/* pl_backward's rows for KV vectors of H1 from vector k0 (KV 1 or 2: the
 * rows' chains of both interleave): the head's dW into dw, g1's sums per
 * pattern into G and GX (CIN, NV as in pl_fwd_rows) */
AVX2 INLINE void pl_bwd_rows(const int CIN, const int NV, const int KV, struct mlp *m,
			     struct pl_state *s, int k0, __m256 dw[][8])
{
	struct mlp_priv *P = m->priv;
	const struct linear_view *hd = &m->lin[2];
	int K = hd->out, H1 = 8 * NV, B = s->B;
	size_t N = (size_t)P->N, ch = (size_t)CIN * H1;
	__m256 wk[2][8];
	for (int q = 0; q < KV; q++)
		for (int c = 0; c < K; c++)
			wk[q][c] = _mm256_loadu_ps(hd->w + (size_t)c * H1 + 8 * (k0 + q));
	for (int t = 0; t < s->S; t++) {
		__m256 u[2][PL_MAX_IN], v[2], gs[2], gxs[2][PL_MAX_IN];
		for (int q = 0; q < KV; q++) {
			int k = k0 + q;
			v[q] = _mm256_loadu_ps(s->V + (size_t)t * H1 + 8 * k);
			for (int c = 0; c < CIN; c++) {
				u[q][c] = _mm256_loadu_ps(s->U + (size_t)t * ch + (size_t)c * H1 + 8 * k);
				gxs[q][c] = _mm256_setzero_ps();
			}
			gs[q] = _mm256_setzero_ps();
		}
		for (int i = s->start[t]; i < s->start[t + 1]; i++) {
			int r = s->order[i];
			__m256 xv[PL_MAX_IN];
			for (int c = 0; c < CIN; c++)
				xv[c] = _mm256_set1_ps(s->x[(size_t)c * B + r]);
			for (int q = 0; q < KV; q++) {
				__m256 a = v[q];
				for (int c = 0; c < CIN; c++)
					a = _mm256_fmadd_ps(xv[c], u[q][c], a);
				__m256 h = _mm256_max_ps(a, _mm256_setzero_ps());
				__m256 g = _mm256_setzero_ps();
				for (int c = 0; c < K; c++) {
					__m256 dz = _mm256_set1_ps(P->dzt[(size_t)c * N + r]);
					dw[q][c] = _mm256_fmadd_ps(dz, h, dw[q][c]);
					g = _mm256_fmadd_ps(dz, wk[q][c], g);
				}
				g = _mm256_and_ps(g, _mm256_cmp_ps(h, _mm256_setzero_ps(), _CMP_GT_OQ));
				gs[q] = _mm256_add_ps(gs[q], g);
				for (int c = 0; c < CIN; c++)
					gxs[q][c] = _mm256_fmadd_ps(xv[c], g, gxs[q][c]);
			}
		}
		for (int q = 0; q < KV; q++) {
			int k = k0 + q;
			_mm256_storeu_ps(s->G + (size_t)t * H1 + 8 * k, gs[q]);
			for (int c = 0; c < CIN; c++)
				_mm256_storeu_ps(s->GX + (size_t)t * ch + (size_t)c * H1 + 8 * k,
						 gxs[q][c]);
		}
	}
}

/* The forward: each pattern's (U, V), then per row the H1 activations and
 * the logits into zt (feature-major) and m->logits */
AVX2 static void pl_forward(struct mlp *m, struct pl_state *s, int B, int N)
{
	struct mlp_priv *P = m->priv;
	const struct linear_view *l0 = &m->lin[0], *l1 = &m->lin[1], *hd = &m->lin[2];
	int H0 = l0->out, H1 = l1->out, K = hd->out, nv = H1 / 8, cin = s->cin;
	size_t ch = (size_t)cin * H1;
	/* the first layer folded into the second: A[j][c] = w_jc W1[:,j],
	 * C[j] = b_j W1[:,j] */
	for (int i = 0; i < H1; i++)
		for (int j = 0; j < H0; j++)
			s->W1T[(size_t)j * H1 + i] = l1->w[(size_t)i * H0 + j];
	for (int j = 0; j < H0; j++) {
		const float *wt = s->W1T + (size_t)j * H1;
		float *Aj = s->A + (size_t)j * ch, *Cj = s->C + (size_t)j * H1;
		for (int c = 0; c <= cin; c++) {
			/* A's rows, then C's (the bias as one more input) */
			__m256 f = _mm256_set1_ps(c < cin ? l0->w[(size_t)j * cin + c] : l0->b[j]);
			float *d = c < cin ? Aj + (size_t)c * H1 : Cj;
			for (int k = 0; k < nv; k++)
				_mm256_storeu_ps(d + 8 * k, _mm256_mul_ps(f, _mm256_loadu_ps(wt + 8 * k)));
		}
	}
	for (int t = 0; t < s->S; t++) {
		float *U = s->U + (size_t)t * ch, *V = s->V + (size_t)t * H1;
		__m256 u[PL_MAX_IN * PL_MAX_H1 / 8], v[PL_MAX_H1 / 8];
		for (int k = 0; k < nv; k++)
			v[k] = _mm256_loadu_ps(l1->b + 8 * k);
		for (size_t k = 0; k < ch / 8; k++)
			u[k] = _mm256_setzero_ps();
		for (uint32_t p = s->spat[t]; p; p &= p - 1) {
			int j = __builtin_ctz(p);
			const float *Aj = s->A + (size_t)j * ch, *Cj = s->C + (size_t)j * H1;
			for (size_t k = 0; k < ch / 8; k++)
				u[k] = _mm256_add_ps(u[k], _mm256_loadu_ps(Aj + 8 * k));
			for (int k = 0; k < nv; k++)
				v[k] = _mm256_add_ps(v[k], _mm256_loadu_ps(Cj + 8 * k));
		}
		for (size_t k = 0; k < ch / 8; k++)
			_mm256_storeu_ps(U + 8 * k, u[k]);
		for (int k = 0; k < nv; k++)
			_mm256_storeu_ps(V + 8 * k, v[k]);
	}
	/* per row: h1 = relu(x . U + V), z = W2 h1 + b2, a pattern at a time */
	if (cin == 1 && nv == 4)
		pl_fwd_rows(1, 4, m, s, B, N); /* the TwoMoon UM student, unrolled */
	else
		pl_fwd_rows(cin, nv, m, s, B, N);
	for (int c = 0; c < K; c++)
		for (int r = B; r < N; r++)
			P->zt[(size_t)c * N + r] = 0.0f;
}

/* The backward from dzt: accumulates every layer's gradients */
AVX2 static void pl_backward(struct mlp *m, struct pl_state *s)
{
	struct mlp_priv *P = m->priv;
	struct linear_view *l0 = &m->lin[0], *l1 = &m->lin[1], *hd = &m->lin[2];
	int H0 = l0->out, H1 = l1->out, K = hd->out, nv = H1 / 8, B = s->B, S = s->S;
	int cin = s->cin;
	size_t N = (size_t)P->N, ch = (size_t)cin * H1;
	/* the head's gradients and, per row, g1 into its pattern's sums */
	for (int c = 0; c < K; c++)
		hd->db[c] += ew_sum(P->dzt + (size_t)c * N, NULL, 0, (size_t)B);
	for (int k = 0; k < nv; k += 2) {
		int kv = nv - k < 2 ? 1 : 2;
		__m256 dw[2][8];
		for (int q = 0; q < kv; q++)
			for (int c = 0; c < K; c++)
				dw[q][c] = _mm256_setzero_ps();
		if (cin == 1 && nv == 4)
			pl_bwd_rows(1, 4, 2, m, s, k, dw);
		else if (kv == 2)
			pl_bwd_rows(cin, nv, 2, m, s, k, dw);
		else
			pl_bwd_rows(cin, nv, 1, m, s, k, dw);
		for (int q = 0; q < kv; q++)
			for (int c = 0; c < K; c++) {
				float *d = hd->dw + (size_t)c * H1 + 8 * (k + q);
				_mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), dw[q][c]));
			}
	}
	/* the first two layers from the pattern sums: db1 = the sum of all; per
	 * unit j, the sums over the patterns where it is active */
	float *RG = s->RG, *RGX = s->RGX;
	memset(RG, 0, sizeof(float) * (size_t)H0 * H1);
	memset(RGX, 0, sizeof(float) * (size_t)H0 * ch);
	for (int t = 0; t < S; t++) {
		const float *G = s->G + (size_t)t * H1, *GX = s->GX + (size_t)t * ch;
		for (int k = 0; k < nv; k++) {
			float *d = l1->db + 8 * k;
			_mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(G + 8 * k)));
		}
		for (uint32_t p = s->spat[t]; p; p &= p - 1) {
			int j = __builtin_ctz(p);
			for (int k = 0; k < nv; k++) {
				float *a = RG + (size_t)j * H1 + 8 * k;
				_mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a),
								  _mm256_loadu_ps(G + 8 * k)));
			}
			for (size_t k = 0; k < ch; k += 8) {
				float *b = RGX + (size_t)j * ch + k;
				_mm256_storeu_ps(b, _mm256_add_ps(_mm256_loadu_ps(b),
								  _mm256_loadu_ps(GX + k)));
			}
		}
	}
	for (int j = 0; j < H0; j++) {
		const float *g = RG + (size_t)j * H1, *gx = RGX + (size_t)j * ch;
		const float *w = l0->w + (size_t)j * cin, *wt = s->W1T + (size_t)j * H1;
		/* dW1[:,j] += b_j RG_j + sum_c w_jc RGX_j^c; dW0[j][c] += W1[:,j] . RGX_j^c;
		 * db0[j] += W1[:,j] . RG_j */
		__m256 e0 = _mm256_setzero_ps(), d0[PL_MAX_IN];
		for (int c = 0; c < cin; c++)
			d0[c] = _mm256_setzero_ps();
		for (int k = 0; k < nv; k++) {
			__m256 wv = _mm256_loadu_ps(wt + 8 * k), gv = _mm256_loadu_ps(g + 8 * k);
			__m256 dv = _mm256_mul_ps(_mm256_set1_ps(l0->b[j]), gv);
			e0 = _mm256_fmadd_ps(wv, gv, e0);
			for (int c = 0; c < cin; c++) {
				__m256 xv = _mm256_loadu_ps(gx + (size_t)c * H1 + 8 * k);
				dv = _mm256_fmadd_ps(_mm256_set1_ps(w[c]), xv, dv);
				d0[c] = _mm256_fmadd_ps(wv, xv, d0[c]);
			}
			float dvs[8];
			_mm256_storeu_ps(dvs, dv);
			for (int i = 0; i < 8; i++)
				l1->dw[(size_t)(8 * k + i) * H0 + j] += dvs[i];
		}
		for (int c = 0; c < cin; c++)
			l0->dw[(size_t)j * cin + c] += pl_hsum(d0[c]);
		l0->db[j] += pl_hsum(e0);
	}
}
#endif

void mlp_forward(struct mlp *m, const float *const *inputs, int B, const struct fwd_ctx *ctx)
{
	// inputs[k] is (B, in_dim[k]); logits is (B, classes)
	struct mlp_priv *P = m->priv;
	const struct mlp_arch *a = &m->arch;
	int flags = 0;
	if (ctx) {
		if (ctx->reg.input_noise != 0.0f)
			flags |= NEED_NOISE_IN;
		if (ctx->reg.hidden_noise != 0.0f)
			flags |= NEED_NOISE_H;
		if (ctx->reg.dropout > 0.0f)
			flags |= NEED_DROPOUT;
	}
	mlp_reserve(m, B, flags);
	m->B = B;
	m->train = ctx != NULL;
	P->flags = flags;
	P->gbatch = ctx && ctx->global_batch > 0 ? ctx->global_batch : B;
	P->beta = ctx ? ctx->reg.hidden_noise : 0.0f;
	P->p = ctx ? ctx->reg.dropout : 0.0f;
	int N = P->N;

	for (int k = 0; k < a->nbranch; k++)
		fm_transpose_in(P->xin + (size_t)P->coff[k] * N, inputs[k], B, a->in_dim[k], N);
	const float *x = P->xin;
	if (flags & NEED_NOISE_IN) {
		/* one batch mean per branch input (early fusion: of the fused input);
		 * the draws of branch k sit at stream offset coff[k] either way */
		int nm = is_late(m) ? a->nbranch : 1;
		double s[MLP_MAX_BRANCH];
		for (int k = 0; k < nm; k++) {
			int rows = is_late(m) ? a->in_dim[k] : P->cin;
			s[k] = fm_sum_abs(P->xin + (size_t)P->coff[k] * N, rows, (size_t)N);
		}
		ctx_reduce(ctx, s, nm);
		for (int k = 0; k < nm; k++) {
			int rows = is_late(m) ? a->in_dim[k] : P->cin;
			size_t at = (size_t)P->coff[k] * N;
			float mean = (float)(s[k] / (P->gbatch * rows));
			fm_noise(P->xn + at, P->xeps + at, P->xin + at, rows, B, N,
				 ctx->reg.input_noise * mean, ctx, RNG_INPUT_NOISE,
				 (uint64_t)P->coff[k]);
		}
		x = P->xn;
	}
	P->pl_on = 0;
#ifdef NN_X86
	if (pl_applies(m, ctx, B, flags) && pl_prepare(m, B)) {
		pl_patterns(m, P->pl, x, B, N);
		P->pl->B = B;
		pl_forward(m, P->pl, B, N);
		P->pl_on = 1;
		return;
	}
#endif
	if (is_late(m)) {
		const float *xb[MLP_MAX_BRANCH];
		double s[MLP_MAX_BRANCH];
		for (int k = 0; k < a->nbranch; k++)
			xb[k] = x + (size_t)P->coff[k] * N;
		/* first branch layers (which carry the hidden noise) together: one reduce */
		int nfirst = 0;
		for (int k = 0; k < a->nbranch; k++) {
			if (branch_depth(m, k) == 0)
				continue;
			s[k] = hidden_linear(m, P->first[k], xb[k], B);
			nfirst++;
		}
		if (nfirst && (flags & NEED_NOISE_H)) {
			double v[MLP_MAX_BRANCH];
			int n = 0;
			for (int k = 0; k < a->nbranch; k++)
				if (branch_depth(m, k))
					v[n++] = s[k];
			ctx_reduce(ctx, v, n);
			n = 0;
			for (int k = 0; k < a->nbranch; k++)
				if (branch_depth(m, k))
					s[k] = v[n++];
		}
		for (int k = 0; k < a->nbranch; k++) {
			int d = branch_depth(m, k);
			if (d == 0)
				continue;
			int l = P->first[k];
			if (ctx)
				hidden_reg(m, l, B, ctx, s[k]);
			xb[k] = P->ha[l].o;
			for (int j = 1; j < d; j++)
				xb[k] = hidden_forward(m, l + j, xb[k], B, ctx);
		}
		/* concatenate the branch outputs: feature-major, that is stacking rows */
		for (int k = 0, c = 0; k < a->nbranch; k++) {
			int w = branch_out(m, k);
			memcpy(P->cat + (size_t)c * N, xb[k], (size_t)w * N * sizeof(float));
			c += w;
		}
		x = P->cat;
	}

	for (int l = P->trunk0; l < P->head; l++)
		x = hidden_forward(m, l, x, B, ctx);
	struct linear_view *h = &m->lin[P->head];
	P->lin_in[P->head] = x;
	struct ax_epi e = { .bias = h->b };
	fm_ax(P->zt, h->w, 0, x, h->out, h->in, (size_t)N, &e);
	/* the row-major logits of the API */
	int K = a->classes;
	for (int k = 0; k < K; k++) {
		const float *zk = P->zt + (size_t)k * N;
		for (int b = 0; b < B; b++)
			m->logits[(size_t)b * K + k] = zk[b];
	}
}

/* ---- backward ---- */

/* dst = W_l^T g, the input gradient of layer l. When dst is the gradient of
 * hidden layer t (t >= 0) and t carries no noise, t's dropout mask and ReLU
 * are applied in the same pass (they need no batch-wide sum first). */
static void back_dx(struct mlp *m, int l, const float *g, float *dst, int t)
{
	struct mlp_priv *P = m->priv;
	struct linear_view *v = &m->lin[l];
	struct ax_epi e = { 0 };
	if (t >= 0 && !P->ha[t].eps) {
		e.mul = P->ha[t].mask;
		e.gate = P->ha[t].h;
		P->gated[t] = 1;
	}
	fm_ax(dst, v->w, 1, g, v->in, v->out, (size_t)P->N, &e);
}

/* Backward through hidden layer l's dropout; returns the local sum(g*eps)
 * when the layer carries noise (g is then the gradient w.r.t. the noise output). */
static double hidden_back_mask(struct mlp *m, int l)
{
	struct mlp_priv *P = m->priv;
	struct hidden_acts *ha = &P->ha[l];
	int rows = m->lin[l].out;
	size_t n = (size_t)rows * P->N;
	float *g = ha->g;
	if (P->gated[l])
		return 0.0;
	if (ha->mask)
		ew_mul(g, ha->mask, n);
	return ha->eps ? fm_dot(g, ha->epsv, rows, (size_t)P->N) : 0.0;
}

/* Finish hidden layer l's backward given the global noise dot: through the
 * noise (dh = g + beta*sign(h)/N*dot; h >= 0 after the ReLU), the ReLU and the
 * linear layer, whose input gradient overwrites the gradient of hidden layer
 * t (t < 0: dinp, which may be NULL: not wanted). */
static void hidden_back_finish(struct mlp *m, int l, double dot, int t, float *dinp)
{
	// g, h are (out, N); dinp is (in, N)
	struct mlp_priv *P = m->priv;
	struct hidden_acts *ha = &P->ha[l];
	struct linear_view *v = &m->lin[l];
	size_t N = (size_t)P->N, n = (size_t)v->out * N;
	float k = ha->eps ? (float)((double)P->beta * dot / (P->gbatch * v->out)) : 0.0f;
	float *g = ha->g;
	if (!P->gated[l])
		ew_relu_back(g, ha->h, k, n);
	fm_gxt(v->dw, g, P->lin_in[l], v->out, v->in, N);
	fm_rowsum(v->db, g, v->out, N);
	if (t >= 0)
		back_dx(m, l, g, P->ha[t].g, t);
	else if (dinp)
		back_dx(m, l, g, dinp, -1);
}

/* mlp_backward from the feature-major gradient of the head's output (P->dzt) */
static void mlp_backward_fm(struct mlp *m, const struct fwd_ctx *ctx)
{
	struct mlp_priv *P = m->priv;
	const struct mlp_arch *a = &m->arch;
	size_t N = (size_t)P->N;
	int late = is_late(m);
	/* where the trunk input's gradient goes: the concat buffer, or nowhere */
	float *dtrunk_in = late ? P->dcat : NULL;

	memset(P->gated, 0, sizeof P->gated);
	struct linear_view *h = &m->lin[P->head];
	fm_gxt(h->dw, P->dzt, P->lin_in[P->head], h->out, h->in, N);
	fm_rowsum(h->db, P->dzt, h->out, N);
	if (P->head > P->trunk0)
		back_dx(m, P->head, P->dzt, P->ha[P->head - 1].g, P->head - 1);
	else if (dtrunk_in)
		back_dx(m, P->head, P->dzt, dtrunk_in, -1);
	for (int l = P->head - 1; l >= P->trunk0; l--) {
		double dot = hidden_back_mask(m, l);
		if (P->ha[l].eps)
			ctx_reduce(ctx, &dot, 1);
		hidden_back_finish(m, l, dot, l > P->trunk0 ? l - 1 : -1, dtrunk_in);
	}
	if (!late)
		return;

	/* split the concat gradient (rows) into the branches' last layers */
	for (int k = 0, c = 0; k < a->nbranch; k++) {
		int d = branch_depth(m, k), w = branch_out(m, k);
		if (d)
			memcpy(P->ha[P->first[k] + d - 1].g, P->dcat + (size_t)c * N,
			       (size_t)w * N * sizeof(float));
		c += w;
	}
	double dots[MLP_MAX_BRANCH];
	int n = 0;
	for (int k = 0; k < a->nbranch; k++) {
		int d = branch_depth(m, k), l0 = P->first[k];
		if (d == 0)
			continue;
		for (int l = l0 + d - 1; l > l0; l--) {
			hidden_back_mask(m, l);
			hidden_back_finish(m, l, 0.0, l - 1, NULL);
		}
		dots[n++] = hidden_back_mask(m, l0);
	}
	/* every branch's first layer carries the noise; one reduce, as in forward */
	if (n && (P->flags & NEED_NOISE_H))
		ctx_reduce(ctx, dots, n);
	n = 0;
	for (int k = 0; k < a->nbranch; k++)
		if (branch_depth(m, k))
			hidden_back_finish(m, P->first[k], dots[n++], -1, NULL);
}

void mlp_backward(struct mlp *m, const float *dlogits, const struct fwd_ctx *ctx)
{
	// dlogits is (B, classes); accumulates into m->grads
	struct mlp_priv *P = m->priv;
	int K = m->arch.classes;
#ifdef NN_X86
	if (P->pl_on) {
		fm_transpose_in(P->dzt, dlogits, m->B, K, P->N);
		pl_backward(m, P->pl);
		return;
	}
#endif
	fm_transpose_in(P->dzt, dlogits, m->B, K, P->N);
	mlp_backward_fm(m, ctx);
}

double mlp_loss_backward(struct mlp *m, const int *labels, const float *soft, enum loss_kind kind,
			 float grad_scale, const struct fwd_ctx *ctx)
{
	struct mlp_priv *P = m->priv;
#ifdef NN_X86
	if (P->pl_on) {
		double loss = softmax_xent_fm(P->dzt, P->zt, labels, soft, m->B, P->N,
					      m->arch.classes, kind, grad_scale);
		pl_backward(m, P->pl);
		return loss;
	}
#endif
	double loss = softmax_xent_fm(P->dzt, P->zt, labels, soft, m->B, P->N, m->arch.classes,
				      kind, grad_scale);
	mlp_backward_fm(m, ctx);
	return loss;
}

int mlp_ntensors(const struct mlp *m)
{
	return 2 * m->nlinear;
}

const char *mlp_tensor(const struct mlp *m, int i, float **data, int *rows, int *cols)
{
	if (i < 0 || i >= 2 * m->nlinear)
		return NULL;
	const struct linear_view *v = &m->lin[i / 2];
	int bias = i % 2;
	if (data)
		*data = bias ? v->b : v->w;
	if (rows)
		*rows = v->out;
	if (cols)
		*cols = bias ? 1 : v->in;
	return m->names[i / 2][bias];
}

int mlp_find_tensor(const struct mlp *m, const char *name)
{
	for (int i = 0; i < 2 * m->nlinear; i++)
		if (strcmp(m->names[i / 2][i % 2], name) == 0)
			return i;
	return -1;
}
