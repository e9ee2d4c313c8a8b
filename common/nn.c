/*
 * nn.c - layers, losses and the MLP model of the network engine (nn.h).
 *
 * Design. Every layer is a forward/backward pair over flat row-major float
 * buffers whose shapes the first comment states; backward passes ACCUMULATE
 * into parameter gradients. linear uses OpenBLAS sgemm with the weight in
 * PyTorch's (OC,C) layout (forward is inp * W^T); a plain-loop _naive twin sits
 * beside it and the unit tests hold one to the other.
 *
 * Random draws (dropout masks, noise) are pure functions of
 * (seed, purpose, step, sample id, index) through rng.h, so a sample gets the
 * same mask on any rank and in any batch. Streams are entered at an index by
 * moving the Philox block counter (rng_seek_*), not by drawing and discarding.
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

/* ---- stream positioning ----------------------------------------------- */

/*
 * rng.c draws 4 words per Philox block, the block number being ctr[0]; a
 * uniform takes one word and a pair of normals (Box-Muller) two, so uniform i
 * and normal i both live in block i/4. Setting ctr[0] and drawing the i%4
 * values before it reproduces a fresh stream's i-th value exactly (the unit
 * tests check this against drawing from the start).
 */
static void rng_seek_uniform(struct rng *r, uint64_t seed, uint32_t purpose, uint32_t epoch,
			     uint32_t sample, uint64_t index)
{
	rng_init(r, seed, purpose, epoch, sample);
	r->ctr[0] = (uint32_t)(index / 4);
	for (uint64_t i = 0; i < index % 4; i++)
		(void)rng_u32(r);
}

static void rng_seek_normal(struct rng *r, uint64_t seed, uint32_t purpose, uint32_t epoch,
			    uint32_t sample, uint64_t index)
{
	rng_init(r, seed, purpose, epoch, sample);
	r->ctr[0] = (uint32_t)(index / 4);
	for (uint64_t i = 0; i < index % 4; i++)
		(void)rng_normal(r);
}

static uint32_t row_id(const uint32_t *ids, int b)
{
	return ids ? ids[b] : (uint32_t)b;
}

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
	for (int b = 0; b < B; b++) {
		struct rng r;
		rng_seek_uniform(&r, seed, RNG_DROPOUT, step, row_id(ids, b), offset);
		float *mk = mask + (size_t)b * C;
		float *o = out + (size_t)b * C;
		const float *x = inp + (size_t)b * C;
		for (int c = 0; c < C; c++) {
			mk[c] = rng_uniform(&r) < p ? 0.0f : keep;
			o[c] = x[c] * mk[c];
		}
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
	for (int b = 0; b < B; b++) {
		struct rng r;
		rng_seek_normal(&r, seed, purpose, step, row_id(ids, b), offset);
		float *e = eps + (size_t)b * C;
		float *o = out + (size_t)b * C;
		const float *x = inp + (size_t)b * C;
		for (int c = 0; c < C; c++) {
			e[c] = rng_normal(&r);
			o[c] = x[c] + k * e[c];
		}
	}
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

/* ---- the MLP model ----------------------------------------------------- */

#define MLP_MAX_LIN (MLP_MAX_BRANCH * MLP_MAX_LAYERS + MLP_MAX_LAYERS + 1)

/* Which regularizer buffers a forward needs (and the allocation has). */
enum { NEED_NOISE_IN = 1, NEED_NOISE_H = 2, NEED_DROPOUT = 4 };

/* One hidden layer's activations, all (B, out). */
struct hidden_acts {
	float *h;    /* ReLU output */
	float *o;    /* after noise and dropout (== h when neither applies) */
	float *eps;  /* noise draws, NULL unless this layer carries hidden noise */
	float *mask; /* dropout mask, NULL without dropout */
	float *g;    /* backward scratch: gradient w.r.t. o, then w.r.t. the pre-activation */
};

struct mlp_priv {
	int cap_flags;                 /* NEED_* buffers the allocation holds */
	int flags;                     /* NEED_* the last forward used */
	int cin;                       /* early fusion input width: sum(in_dim) */
	int ct;                        /* trunk input width */
	int first[MLP_MAX_BRANCH];     /* late: index of branch k's first layer */
	int trunk0, head;              /* lin index of trunk layer 0 and of the head */
	int noise_layer[MLP_MAX_LIN];  /* 1: hidden noise follows this layer's ReLU */
	uint64_t noise_off[MLP_MAX_LIN];
	uint64_t drop_off[MLP_MAX_LIN];
	float *xcat;                   /* early fusion of two branches: (B, cin) */
	float *xn, *xeps;              /* input noise out/draws: (B, cin), per-branch blocks in late */
	float *cat, *dcat;             /* late fusion: trunk input (B, ct) and its gradient */
	struct hidden_acts ha[MLP_MAX_LIN];
	const float *lin_in[MLP_MAX_LIN]; /* each layer's input in the last forward */
	double gbatch;                 /* global batch of the last forward */
	float beta, p;                 /* hidden noise scale and dropout rate of the last forward */
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

void mlp_release(struct mlp *m)
{
	free(m->params);
	free(m->grads);
	free(m->acts);
	free(m->priv);
	memset(m, 0, sizeof(*m));
}

void mlp_zero_grad(struct mlp *m)
{
	memset(m->grads, 0, m->nparams * sizeof(float));
}

/* Hand out n floats at *off from base (or just count when base is NULL). */
static float *carve(float *base, size_t *off, size_t n)
{
	float *p = base ? base + *off : NULL;
	*off += n;
	return p;
}

/* Point every activation buffer into base for B rows and flags; returns the
 * floats needed. With base NULL only counts. */
static size_t mlp_layout(struct mlp *m, float *base, int B, int flags)
{
	struct mlp_priv *P = m->priv;
	size_t off = 0, rows = (size_t)B;
	P->xcat = !is_late(m) && m->arch.nbranch > 1 ? carve(base, &off, rows * P->cin) : NULL;
	P->xn = P->xeps = NULL;
	if (flags & NEED_NOISE_IN) {
		P->xn = carve(base, &off, rows * P->cin);
		P->xeps = carve(base, &off, rows * P->cin);
	}
	P->cat = P->dcat = NULL;
	if (is_late(m)) {
		P->cat = carve(base, &off, rows * P->ct);
		P->dcat = carve(base, &off, rows * P->ct);
	}
	for (int l = 0; l < P->head; l++) {
		struct hidden_acts *ha = &P->ha[l];
		size_t n = rows * m->lin[l].out;
		int noise = (flags & NEED_NOISE_H) && P->noise_layer[l];
		ha->h = carve(base, &off, n);
		ha->g = carve(base, &off, n);
		ha->eps = noise ? carve(base, &off, n) : NULL;
		ha->mask = (flags & NEED_DROPOUT) ? carve(base, &off, n) : NULL;
		ha->o = noise || (flags & NEED_DROPOUT) ? carve(base, &off, n) : ha->h;
	}
	m->logits = carve(base, &off, rows * m->arch.classes);
	return off;
}

/* Make acts hold B rows with the buffers flags need, and point the buffers of
 * this pass (only those flags asks for; the others are NULL) into it. A
 * layout for fewer flags needs fewer floats, so it always fits. */
static void mlp_reserve(struct mlp *m, int B, int flags)
{
	struct mlp_priv *P = m->priv;
	if (!m->acts || B > m->max_batch || (flags & ~P->cap_flags)) {
		int cap = B > m->max_batch ? B : m->max_batch;
		int cflags = P->cap_flags | flags;
		size_t n = mlp_layout(m, NULL, cap, cflags);
		free(m->acts);
		m->acts = xmalloc(n * sizeof(float));
		m->nacts = n;
		m->max_batch = cap;
		P->cap_flags = cflags;
	}
	mlp_layout(m, m->acts, m->max_batch, flags);
}

static void ctx_reduce(const struct fwd_ctx *ctx, double *vals, int n)
{
	if (ctx && ctx->reduce)
		ctx->reduce(vals, n, ctx->reduce_arg);
}

/* Linear + ReLU of hidden layer l: h = relu(in W^T + b). Returns sum |h| over
 * the local rows (ReLU output is never negative) when this layer carries
 * noise, else 0. */
static double hidden_linear(struct mlp *m, int l, const float *in, int B)
{
	// in is (B, lin[l].in); h is (B, lin[l].out)
	struct mlp_priv *P = m->priv;
	struct linear_view *v = &m->lin[l];
	float *h = P->ha[l].h;
	size_t n = (size_t)B * v->out;
	P->lin_in[l] = in;
	linear_forward_nobias(h, in, v->w, B, v->in, v->out);
	for (int b = 0; b < B; b++) {
		float *row = h + (size_t)b * v->out;
		for (int o = 0; o < v->out; o++) {
			/* branchless ReLU (the sign is random, a branch mispredicts);
			 * differs from relu_forward only for z = -inf (NaN, not 0),
			 * which needs non-finite weights or inputs */
			float z = row[o] + v->b[o];
			row[o] = (z > 0.0f ? 1.0f : 0.0f) * z;
		}
	}
	return P->ha[l].eps ? nn_sum_abs(h, n) : 0.0;
}

/* Noise (if this layer carries it) and dropout after hidden layer l's ReLU:
 * o = (h + beta*mean*eps) * mask. */
static void hidden_reg(struct mlp *m, int l, int B, const struct fwd_ctx *ctx, double sum_abs)
{
	// h, o, eps, mask are (B, lin[l].out)
	struct mlp_priv *P = m->priv;
	struct hidden_acts *ha = &P->ha[l];
	int C = m->lin[l].out;
	if (ha->eps) {
		float mean = (float)(sum_abs / (P->gbatch * C));
		noise_forward_at(ha->o, ha->eps, ha->h, B, C, P->beta, mean, ctx->seed,
				 RNG_HIDDEN_NOISE, ctx->step, P->noise_off[l], ctx->ids);
	}
	if (ha->mask)
		dropout_forward_at(ha->o, ha->mask, ha->eps ? ha->o : ha->h, B, C, P->p, ctx->seed,
				   ctx->step, P->drop_off[l], ctx->ids);
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

/* Input noise on x (B, C) into out/eps at stream offset off. */
static void input_noise(struct mlp *m, float *out, float *eps, const float *x, int B, int C,
			double sum_abs, uint64_t off, const struct fwd_ctx *ctx)
{
	struct mlp_priv *P = m->priv;
	float mean = (float)(sum_abs / (P->gbatch * C));
	noise_forward_at(out, eps, x, B, C, ctx->reg.input_noise, mean, ctx->seed, RNG_INPUT_NOISE,
			 ctx->step, off, ctx->ids);
}

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

	const float *x;
	if (!is_late(m)) {
		if (a->nbranch == 1) {
			x = inputs[0];
		} else {
			for (int b = 0; b < B; b++) {
				float *row = P->xcat + (size_t)b * P->cin;
				for (int k = 0, c = 0; k < a->nbranch; c += a->in_dim[k], k++)
					memcpy(row + c, inputs[k] + (size_t)b * a->in_dim[k],
					       (size_t)a->in_dim[k] * sizeof(float));
			}
			x = P->xcat;
		}
		if (flags & NEED_NOISE_IN) {
			double s = nn_sum_abs(x, (size_t)B * P->cin);
			ctx_reduce(ctx, &s, 1);
			input_noise(m, P->xn, P->xeps, x, B, P->cin, s, 0, ctx);
			x = P->xn;
		}
	} else {
		/* branch inputs, noised with one reduce for all branches */
		const float *xb[MLP_MAX_BRANCH];
		double s[MLP_MAX_BRANCH];
		size_t boff = 0;
		for (int k = 0; k < a->nbranch; k++)
			xb[k] = inputs[k];
		if (flags & NEED_NOISE_IN) {
			for (int k = 0; k < a->nbranch; k++)
				s[k] = nn_sum_abs(inputs[k], (size_t)B * a->in_dim[k]);
			ctx_reduce(ctx, s, a->nbranch);
			for (int k = 0, c = 0; k < a->nbranch; c += a->in_dim[k], k++) {
				float *out = P->xn + boff, *eps = P->xeps + boff;
				input_noise(m, out, eps, inputs[k], B, a->in_dim[k], s[k], (uint64_t)c, ctx);
				xb[k] = out;
				boff += (size_t)B * a->in_dim[k];
			}
		}
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
		/* concatenate the branch outputs */
		for (int b = 0; b < B; b++) {
			float *row = P->cat + (size_t)b * P->ct;
			for (int k = 0, c = 0; k < a->nbranch; k++) {
				int w = branch_out(m, k);
				memcpy(row + c, xb[k] + (size_t)b * w, (size_t)w * sizeof(float));
				c += w;
			}
		}
		x = P->cat;
	}

	for (int l = P->trunk0; l < P->head; l++)
		x = hidden_forward(m, l, x, B, ctx);
	struct linear_view *h = &m->lin[P->head];
	P->lin_in[P->head] = x;
	linear_forward(m->logits, x, h->w, h->b, B, h->in, h->out);
}

/* Backward through hidden layer l's dropout; returns the local sum(g*eps)
 * when the layer carries noise (g is then the gradient w.r.t. the noise output). */
static double hidden_back_mask(struct mlp *m, int l, int B)
{
	struct hidden_acts *ha = &((struct mlp_priv *)m->priv)->ha[l];
	size_t n = (size_t)B * m->lin[l].out;
	float *g = ha->g;
	double dot = 0.0;
	if (ha->mask)
		for (size_t i = 0; i < n; i++)
			g[i] *= ha->mask[i];
	if (ha->eps)
		dot = noise_dot(g, ha->eps, n);
	return dot;
}

/* Finish hidden layer l's backward given the global noise dot: through the
 * noise (dh = g + beta*sign(h)/N*dot), the ReLU and the linear layer, whose
 * input gradient overwrites dinp (NULL: not wanted). */
static void hidden_back_finish(struct mlp *m, int l, int B, double dot, float *dinp)
{
	// g, h are (B, out); dinp is (B, in)
	struct mlp_priv *P = m->priv;
	struct hidden_acts *ha = &P->ha[l];
	struct linear_view *v = &m->lin[l];
	size_t n = (size_t)B * v->out;
	float k = ha->eps ? (float)((double)P->beta * dot / (P->gbatch * v->out)) : 0.0f;
	float *g = ha->g;
	const float *h = ha->h;
	for (size_t i = 0; i < n; i++)
		g[i] = (h[i] > 0.0f ? 1.0f : 0.0f) * (g[i] + k); /* branchless: h's sign is random */
	linear_backward_beta(dinp, 0.0f, v->dw, v->db, g, P->lin_in[l], v->w, B, v->in, v->out);
}

void mlp_backward(struct mlp *m, const float *dlogits, const struct fwd_ctx *ctx)
{
	// dlogits is (B, classes); accumulates into m->grads
	struct mlp_priv *P = m->priv;
	const struct mlp_arch *a = &m->arch;
	int B = m->B;
	int late = is_late(m);
	/* where the trunk input's gradient goes: the concat buffer, or nowhere */
	float *dtrunk_in = late ? P->dcat : NULL;

	struct linear_view *h = &m->lin[P->head];
	float *dx = P->head > P->trunk0 ? P->ha[P->head - 1].g : dtrunk_in;
	linear_backward_beta(dx, 0.0f, h->dw, h->db, dlogits, P->lin_in[P->head], h->w, B, h->in,
			     h->out);
	for (int l = P->head - 1; l >= P->trunk0; l--) {
		double dot = hidden_back_mask(m, l, B);
		if (P->ha[l].eps)
			ctx_reduce(ctx, &dot, 1);
		hidden_back_finish(m, l, B, dot, l > P->trunk0 ? P->ha[l - 1].g : dtrunk_in);
	}
	if (!late)
		return;

	/* split the concat gradient into the branches' last layers */
	for (int k = 0, c = 0; k < a->nbranch; k++) {
		int d = branch_depth(m, k), w = branch_out(m, k);
		if (d) {
			float *g = P->ha[P->first[k] + d - 1].g;
			for (int b = 0; b < B; b++)
				memcpy(g + (size_t)b * w, P->dcat + (size_t)b * P->ct + c,
				       (size_t)w * sizeof(float));
		}
		c += w;
	}
	double dots[MLP_MAX_BRANCH];
	int n = 0;
	for (int k = 0; k < a->nbranch; k++) {
		int d = branch_depth(m, k), l0 = P->first[k];
		if (d == 0)
			continue;
		for (int l = l0 + d - 1; l > l0; l--) {
			hidden_back_mask(m, l, B);
			hidden_back_finish(m, l, B, 0.0, P->ha[l - 1].g);
		}
		dots[n++] = hidden_back_mask(m, l0, B);
	}
	/* every branch's first layer carries the noise; one reduce, as in forward */
	if (n && (P->flags & NEED_NOISE_H))
		ctx_reduce(ctx, dots, n);
	n = 0;
	for (int k = 0; k < a->nbranch; k++)
		if (branch_depth(m, k))
			hidden_back_finish(m, P->first[k], B, dots[n++], NULL);
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
