/*
 * test_nn.c - the network engine against finite differences, against its own
 * naive kernels, against PyTorch (tests/fixtures/mlp_torch.txt, written by
 * tests/fixtures/gen_mlp.py) and against itself split over two "ranks".
 *
 * Finite differences: every objective is a double sum over the float outputs
 * of the code under test, differenced centrally with the exact float step.
 * ReLU makes some objectives piecewise smooth; a coordinate whose two
 * one-sided slopes disagree straddles a kink and is skipped (and counted;
 * each test bounds how many may be).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "rng.h"
#include "fixture.h"
#include "test.h"
#include "util.h"

/* ---- helpers ----------------------------------------------------------- */

static void fill_uniform(float *x, size_t n, float lo, float hi, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 1234, RNG_DATA, tag, 0);
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * rng_uniform(&r);
}

static void fill_normal(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 1234, RNG_DATA, tag, 1);
	rng_fill_normal(&r, x, n);
}

/* Values in [lo,hi) in magnitude with a random sign: kept away from 0, where
 * ReLU and |x| have their kinks. */
static void fill_away_from_zero(float *x, size_t n, float lo, float hi, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 1234, RNG_DATA, tag, 2);
	for (size_t i = 0; i < n; i++) {
		float v = lo + (hi - lo) * rng_uniform(&r);
		x[i] = rng_uniform(&r) < 0.5f ? -v : v;
	}
}

static double wsum(const float *x, const float *w, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * w[i];
	return s;
}

typedef double (*objective_fn)(void *arg);

/* One-sided differences of f in x[i] with step h (the steps actually taken
 * in float): *dp forward, *dm backward, given f0 = f at x. */
static void one_sided(float *x, size_t i, float h, objective_fn f, void *arg, double f0,
		      double *dp, double *dm)
{
	float xi = x[i], xp = xi + h, xm = xi - h;
	x[i] = xp;
	double fp = f(arg);
	x[i] = xm;
	double fm = f(arg);
	x[i] = xi;
	*dp = (fp - f0) / ((double)xp - xi);
	*dm = (f0 - fm) / ((double)xi - xm);
}

/*
 * Check ana[0..n) against the central difference of f in x[0..n) with step
 * h/2. A ReLU kink at distance d <= h/2 from the point adds a slope jump J
 * to the differences: the central differences at h and h/2 then differ by
 * J*d/(2h), and the curvature estimates (dp-dm at h) and 2*(dp-dm at h/2),
 * equal for a smooth f, differ by J*|1 - 3d/h|; the two never vanish
 * together, so a coordinate where either exceeds kink is skipped (a kink
 * beyond h/2 only costs a needless skip). Returns the number skipped.
 */
static int fd_check(const char *what, float *x, size_t n, const float *ana, objective_fn f,
		    void *arg, float h, double rtol, double atol, double kink)
{
	int skipped = 0;
	double f0 = f(arg);
	for (size_t i = 0; i < n; i++) {
		double dp1, dm1, dp2, dm2;
		one_sided(x, i, h, f, arg, f0, &dp1, &dm1);
		one_sided(x, i, h / 2, f, arg, f0, &dp2, &dm2);
		double c1 = (dp1 + dm1) / 2, num = (dp2 + dm2) / 2;
		if (fabs(c1 - num) > kink || fabs((dp1 - dm1) - 2 * (dp2 - dm2)) > kink) {
			skipped++;
			continue;
		}
		CHECK_MSG(fabs(num - ana[i]) <= atol + rtol * fmax(fabs(num), fabs(ana[i])),
			  "%s[%zu]: numeric %.9g analytic %.9g", what, i, num, (double)ana[i]);
	}
	return skipped;
}

/* ---- stream positioning ------------------------------------------------ */

/* noise_forward_at / dropout_forward_at at offset o draw what a wider call
 * at offset 0 draws in columns o..: the Philox block seek is exact. */
static void test_stream_offsets(void)
{
	enum { B = 3, C = 5, W = 40 };
	uint32_t ids[B] = { 7, 123456, 9 };
	float x[B * W], out[B * W], eps[B * W], mask[B * W];
	float xo[B * C], o2[B * C], e2[B * C], m2[B * C];
	fill_normal(x, B * W, 1);
	noise_forward(out, eps, x, B, W, 0.5f, 1.0f, 42, RNG_INPUT_NOISE, 3, ids);
	dropout_forward(out, mask, x, B, W, 0.5f, 42, 3, 0, ids);
	for (int off = 0; off + C <= W; off++) {
		for (int b = 0; b < B; b++)
			memcpy(xo + b * C, x + b * W + off, C * sizeof(float));
		noise_forward_at(o2, e2, xo, B, C, 0.5f, 1.0f, 42, RNG_INPUT_NOISE, 3,
				 (uint64_t)off, ids);
		dropout_forward_at(o2, m2, xo, B, C, 0.5f, 42, 3, (uint64_t)off, ids);
		for (int b = 0; b < B; b++)
			for (int c = 0; c < C; c++) {
				CHECK(e2[b * C + c] == eps[b * W + off + c]);
				CHECK(m2[b * C + c] == mask[b * W + off + c]);
			}
	}
	/* rooted in rng.h: eps[b,c] is the c-th normal of (seed, purpose, step, id),
	 * mask[b,c] is 0 when the c-th 16-bit uniform of (seed, RNG_DROPOUT, step,
	 * id) < p: half c%2 (low first) of word c/2, over 65536 */
	for (int b = 0; b < B; b++) {
		struct rng rn, ru;
		rng_init(&rn, 42, RNG_INPUT_NOISE, 3, ids[b]);
		rng_init(&ru, 42, RNG_DROPOUT, 3, ids[b]);
		uint32_t w = 0;
		for (int c = 0; c < W; c++) {
			CHECK(eps[b * W + c] == rng_normal(&rn));
			if (c % 2 == 0)
				w = rng_u32(&ru);
			float u = (float)(c % 2 ? w >> 16 : w & 0xffffu) / 65536.0f;
			CHECK(mask[b * W + c] == (u < 0.5f ? 0.0f : 2.0f));
		}
	}
	/* dropout_forward's layer L is offset L*C */
	dropout_forward(o2, m2, xo, B, C, 0.3f, 42, 3, 4, ids);
	dropout_forward_at(out, mask, xo, B, C, 0.3f, 42, 3, 4 * C, ids);
	CHECK(memcmp(m2, mask, sizeof(m2)) == 0);
	/* ids NULL means row index */
	uint32_t rows[B] = { 0, 1, 2 };
	noise_forward(o2, e2, xo, B, C, 1.0f, 1.0f, 42, RNG_HIDDEN_NOISE, 0, rows);
	noise_forward(out, eps, xo, B, C, 1.0f, 1.0f, 42, RNG_HIDDEN_NOISE, 0, NULL);
	CHECK(memcmp(e2, eps, sizeof(e2)) == 0);
}

/* ---- linear ------------------------------------------------------------ */

static void test_linear_fast_vs_naive(void)
{
	static const int shapes[][3] = { { 1, 1, 1 }, { 3, 5, 2 }, { 270, 2, 16 }, { 270, 16, 16 },
					 { 64, 33, 17 }, { 5, 128, 3 }, { 17, 7, 40 } };
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int B = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
		size_t nin = (size_t)B * C, nw = (size_t)OC * C, nout = (size_t)B * OC;
		float *inp = xmalloc(nin * sizeof(float)), *w = xmalloc(nw * sizeof(float));
		float *bias = xmalloc(OC * sizeof(float)), *dout = xmalloc(nout * sizeof(float));
		float *o1 = xmalloc(nout * sizeof(float)), *o2 = xmalloc(nout * sizeof(float));
		float *di1 = xmalloc(nin * sizeof(float)), *di2 = xmalloc(nin * sizeof(float));
		float *dw1 = xmalloc(nw * sizeof(float)), *dw2 = xmalloc(nw * sizeof(float));
		float *db1 = xmalloc(OC * sizeof(float)), *db2 = xmalloc(OC * sizeof(float));
		fill_normal(inp, nin, 10 + s);
		fill_normal(w, nw, 20 + s);
		fill_normal(bias, OC, 30 + s);
		fill_normal(dout, nout, 40 + s);
		/* gradients start non-zero: backward must accumulate */
		fill_normal(di1, nin, 50 + s);
		fill_normal(dw1, nw, 60 + s);
		fill_normal(db1, OC, 70 + s);
		memcpy(di2, di1, nin * sizeof(float));
		memcpy(dw2, dw1, nw * sizeof(float));
		memcpy(db2, db1, OC * sizeof(float));
		double tol = 1e-5 * sqrt((double)(C > B ? C : B) + OC);
		for (int withbias = 0; withbias < 2; withbias++) {
			const float *bp = withbias ? bias : NULL;
			linear_forward(o1, inp, w, bp, B, C, OC);
			linear_forward_naive(o2, inp, w, bp, B, C, OC);
			for (size_t i = 0; i < nout; i++)
				CHECK_NEAR(o1[i], o2[i], tol * (1 + fabsf(o2[i])));
		}
		linear_backward(di1, dw1, db1, dout, inp, w, B, C, OC);
		linear_backward_naive(di2, dw2, db2, dout, inp, w, B, C, OC);
		for (size_t i = 0; i < nin; i++)
			CHECK_NEAR(di1[i], di2[i], tol * (1 + fabsf(di2[i])));
		for (size_t i = 0; i < nw; i++)
			CHECK_NEAR(dw1[i], dw2[i], tol * (1 + fabsf(dw2[i])));
		for (int i = 0; i < OC; i++)
			CHECK_NEAR(db1[i], db2[i], tol * (1 + fabsf(db2[i])));
		/* NULL dinp and dbias are allowed */
		linear_backward(NULL, dw1, NULL, dout, inp, w, B, C, OC);
		linear_backward_naive(NULL, dw2, NULL, dout, inp, w, B, C, OC);
		for (size_t i = 0; i < nw; i++)
			CHECK_NEAR(dw1[i], dw2[i], 2 * tol * (1 + fabsf(dw2[i])));
		free(inp), free(w), free(bias), free(dout), free(o1), free(o2);
		free(di1), free(di2), free(dw1), free(dw2), free(db1), free(db2);
	}
}

/* The feature-major kernels against their naive twins: every tile shape of
 * the AVX2 kernels (rows 1..4 past multiples of 4, columns 8/16/24 and a
 * non-multiple-of-8 tail; the dW kernel's 2 x 4 head tiles with 1 to 3
 * columns left, its 8 x 1 tiles with rows left; the bias sums 4 rows at a
 * time with rows left), and layers big enough to go to sgemm. */
static void test_linear_fm_fast_vs_naive(void)
{
	static const int shapes[][3] = { { 1, 1, 1 },     { 8, 3, 5 },      { 272, 1, 32 },
					 { 272, 32, 32 }, { 272, 32, 2 },   { 272, 2, 16 },
					 { 270, 16, 16 }, { 32, 7, 6 },     { 45, 33, 17 },
					 { 16, 130, 140 }, { 104, 5, 3 },   { 48, 5, 2 },
					 { 64, 7, 2 },    { 40, 1, 13 },    { 24, 1, 8 } };
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
		size_t nin = (size_t)N * C, nw = (size_t)OC * C, nout = (size_t)N * OC;
		float *inp = xmalloc(nin * sizeof(float)), *w = xmalloc(nw * sizeof(float));
		float *bias = xmalloc(OC * sizeof(float)), *dout = xmalloc(nout * sizeof(float));
		float *o1 = xmalloc(nout * sizeof(float)), *o2 = xmalloc(nout * sizeof(float));
		float *di1 = xmalloc(nin * sizeof(float)), *di2 = xmalloc(nin * sizeof(float));
		float *dw1 = xmalloc(nw * sizeof(float)), *dw2 = xmalloc(nw * sizeof(float));
		float *db1 = xmalloc(OC * sizeof(float)), *db2 = xmalloc(OC * sizeof(float));
		fill_normal(inp, nin, 110 + s);
		fill_normal(w, nw, 120 + s);
		fill_normal(bias, OC, 130 + s);
		fill_normal(dout, nout, 140 + s);
		fill_normal(di1, nin, 150 + s);
		fill_normal(dw1, nw, 160 + s);
		fill_normal(db1, OC, 170 + s);
		memcpy(di2, di1, nin * sizeof(float));
		memcpy(dw2, dw1, nw * sizeof(float));
		memcpy(db2, db1, OC * sizeof(float));
		double tol = 1e-5 * sqrt((double)(C > N ? C : N) + OC);
		for (int v = 0; v < 4; v++) {
			const float *bp = v & 1 ? bias : NULL;
			int relu = v >> 1;
			linear_forward_fm(o1, inp, w, bp, N, C, OC, relu);
			linear_forward_fm_naive(o2, inp, w, bp, N, C, OC, relu);
			for (size_t i = 0; i < nout; i++)
				CHECK_NEAR(o1[i], o2[i], tol * (1 + fabsf(o2[i])));
			for (size_t i = 0; relu && i < nout; i++)
				CHECK(o1[i] >= 0.0f);
		}
		linear_backward_fm(di1, dw1, db1, dout, inp, w, N, C, OC);
		linear_backward_fm_naive(di2, dw2, db2, dout, inp, w, N, C, OC);
		for (size_t i = 0; i < nin; i++)
			CHECK_NEAR(di1[i], di2[i], tol * (1 + fabsf(di2[i])));
		for (size_t i = 0; i < nw; i++)
			CHECK_NEAR(dw1[i], dw2[i], tol * (1 + fabsf(dw2[i])));
		for (int i = 0; i < OC; i++)
			CHECK_NEAR(db1[i], db2[i], tol * (1 + fabsf(db2[i])));
		linear_backward_fm(NULL, dw1, NULL, dout, inp, w, N, C, OC);
		linear_backward_fm_naive(NULL, dw2, NULL, dout, inp, w, N, C, OC);
		for (size_t i = 0; i < nw; i++)
			CHECK_NEAR(dw1[i], dw2[i], 2 * tol * (1 + fabsf(dw2[i])));
		/* the feature-major layer is the row-major one transposed */
		float *inr = xmalloc(nin * sizeof(float)), *outr = xmalloc(nout * sizeof(float));
		for (int n = 0; n < N; n++)
			for (int c = 0; c < C; c++)
				inr[(size_t)n * C + c] = inp[(size_t)c * N + n];
		linear_forward_naive(outr, inr, w, bias, N, C, OC);
		linear_forward_fm(o1, inp, w, bias, N, C, OC, 0);
		for (int n = 0; n < N; n++)
			for (int o = 0; o < OC; o++)
				CHECK_NEAR(o1[(size_t)o * N + n], outr[(size_t)n * OC + o],
					   tol * (1 + fabsf(outr[(size_t)n * OC + o])));
		free(inr), free(outr);
		free(inp), free(w), free(bias), free(dout), free(o1), free(o2);
		free(di1), free(di2), free(dw1), free(dw2), free(db1), free(db2);
	}
}

enum { LB = 4, LC = 5, LOC = 3 };
struct linear_fd {
	float inp[LB * LC], w[LOC * LC], b[LOC], out[LB * LOC], wout[LB * LOC];
};

static double linear_obj(void *arg)
{
	struct linear_fd *t = arg;
	linear_forward(t->out, t->inp, t->w, t->b, LB, LC, LOC);
	return wsum(t->out, t->wout, LB * LOC);
}

static void test_linear_grad(void)
{
	struct linear_fd t;
	float dinp[LB * LC] = { 0 }, dw[LOC * LC] = { 0 }, db[LOC] = { 0 };
	fill_normal(t.inp, LB * LC, 1);
	fill_normal(t.w, LOC * LC, 2);
	fill_normal(t.b, LOC, 3);
	fill_normal(t.wout, LB * LOC, 4);
	linear_backward(dinp, dw, db, t.wout, t.inp, t.w, LB, LC, LOC);
	/* the objective is linear in each variable, so a wide step is exact and
	 * keeps float rounding of the outputs small against it */
	int sk = fd_check("dinp", t.inp, LB * LC, dinp, linear_obj, &t, 0.5f, 1e-5, 1e-6, 1e-3);
	sk += fd_check("dweight", t.w, LOC * LC, dw, linear_obj, &t, 0.5f, 1e-5, 1e-6, 1e-3);
	sk += fd_check("dbias", t.b, LOC, db, linear_obj, &t, 0.5f, 1e-5, 1e-6, 1e-3);
	CHECK(sk == 0);
}

/* ---- relu, dropout, noise ---------------------------------------------- */

enum { EB = 6, EC = 7 };
struct elem_fd {
	float x[EB * EC], out[EB * EC], w[EB * EC], mask[EB * EC], eps[EB * EC];
	uint32_t ids[EB];
	float s, p;
	int which; /* 0 relu, 1 dropout, 2 noise */
};

static double elem_obj(void *arg)
{
	struct elem_fd *t = arg;
	size_t n = EB * EC;
	if (t->which == 0) {
		relu_forward(t->out, t->x, n);
	} else if (t->which == 1) {
		dropout_forward(t->out, t->mask, t->x, EB, EC, t->p, 5, 2, 1, t->ids);
	} else {
		float mean = (float)(nn_sum_abs(t->x, n) / (double)n);
		noise_forward(t->out, t->eps, t->x, EB, EC, t->s, mean, 5, RNG_HIDDEN_NOISE, 2, t->ids);
	}
	return wsum(t->out, t->w, n);
}

static void elem_setup(struct elem_fd *t, int which)
{
	memset(t, 0, sizeof(*t));
	fill_away_from_zero(t->x, EB * EC, 0.25f, 2.0f, 5);
	fill_normal(t->w, EB * EC, 6);
	for (int b = 0; b < EB; b++)
		t->ids[b] = 1000 + 17 * b;
	t->which = which;
	t->s = 0.7f;
	t->p = 0.4f;
}

static void test_relu_grad(void)
{
	struct elem_fd t;
	float d[EB * EC] = { 0 };
	elem_setup(&t, 0);
	elem_obj(&t);
	relu_backward(d, t.w, t.out, EB * EC);
	/* |x| >= 0.25: a step of 0.2 stays clear of the kink */
	CHECK(fd_check("relu", t.x, EB * EC, d, elem_obj, &t, 0.2f, 1e-5, 1e-6, 1e-3) == 0);
	/* out may equal inp */
	float y[4] = { -1, 2, 0, -3 };
	relu_forward(y, y, 4);
	CHECK(y[0] == 0 && y[1] == 2 && y[2] == 0 && y[3] == 0);
}

static void test_dropout(void)
{
	struct elem_fd t;
	float d[EB * EC] = { 0 };
	elem_setup(&t, 1);
	elem_obj(&t);
	dropout_backward(d, t.w, t.mask, EB * EC);
	CHECK(fd_check("dropout", t.x, EB * EC, d, elem_obj, &t, 0.5f, 1e-5, 1e-6, 1e-3) == 0);
	for (int i = 0; i < EB * EC; i++)
		CHECK(t.mask[i] == 0.0f || t.mask[i] == 1.0f / (1.0f - t.p));

	/* rate, per-sample keying, p == 0 */
	enum { N = 2000, C = 50 };
	float *x = xmalloc(N * C * sizeof(float)), *m = xmalloc(N * C * sizeof(float));
	uint32_t *ids = xmalloc(N * sizeof(uint32_t));
	for (int i = 0; i < N * C; i++)
		x[i] = 1.0f;
	for (int b = 0; b < N; b++)
		ids[b] = (uint32_t)b % 1000; /* rows b and b+1000 are the same sample */
	dropout_forward(x, m, x, N, C, 0.3f, 99, 4, 2, ids);
	double dropped = 0;
	for (int i = 0; i < N * C; i++)
		dropped += m[i] == 0.0f;
	CHECK_NEAR(dropped / (N * C), 0.3, 0.01);
	CHECK(memcmp(m, m + 1000 * C, 1000 * C * sizeof(float)) == 0);
	CHECK(memcmp(x, m, N * C * sizeof(float)) == 0); /* in place, x was all ones */
	dropout_forward(x, m, x, N, C, 0.0f, 99, 4, 2, ids);
	CHECK(m[0] == 1.0f && m[N * C - 1] == 1.0f);
	free(x), free(m), free(ids);
}

static void test_noise_grad(void)
{
	struct elem_fd t;
	size_t n = EB * EC;
	float d[EB * EC] = { 0 }, dplain[EB * EC];
	elem_setup(&t, 2);
	elem_obj(&t);
	double dot = noise_dot(t.w, t.eps, n);
	noise_backward(d, t.w, t.x, EB, EC, t.s, dot, (double)n);
	/* a wide step: the mean is a float, quantized at ~1e-7 relative */
	CHECK(fd_check("noise", t.x, n, d, elem_obj, &t, 0.2f, 1e-5, 1e-6, 1e-3) == 0);
	/* the mean-|x| path matters: without it the gradient is measurably off */
	double off = 0;
	for (size_t i = 0; i < n; i++) {
		dplain[i] = t.w[i];
		off = fmax(off, fabs(dplain[i] - d[i]));
	}
	CHECK(off > 1e-2);
	/* the draws are standard normal */
	enum { N = 4000, C = 25 };
	float *x = xcalloc(N * C, sizeof(float)), *o = xmalloc(N * C * sizeof(float));
	float *e = xmalloc(N * C * sizeof(float));
	noise_forward(o, e, x, N, C, 2.0f, 0.5f, 7, RNG_INPUT_NOISE, 0, NULL);
	double s1 = 0, s2 = 0;
	for (int i = 0; i < N * C; i++) {
		s1 += e[i];
		s2 += (double)e[i] * e[i];
		CHECK(o[i] == e[i]); /* x = 0, s*mean = 1 */
	}
	CHECK_NEAR(s1 / (N * C), 0.0, 0.01);
	CHECK_NEAR(s2 / (N * C), 1.0, 0.02);
	CHECK_NEAR(nn_sum_abs(e, 4), fabs(e[0]) + fabs(e[1]) + fabs(e[2]) + fabs(e[3]), 1e-6);
	free(x), free(o), free(e);
}

/* ---- losses ------------------------------------------------------------ */

enum { SB = 5, SK = 4 };
struct xent_fd {
	float z[SB * SK], soft[SB * SK];
	int labels[SB];
	int use_soft;
	enum loss_kind kind;
};

static double xent_obj(void *arg)
{
	struct xent_fd *t = arg;
	return softmax_xent(NULL, NULL, t->z, t->labels, t->use_soft ? t->soft : NULL, SB, SK,
			    t->kind, 1.0f);
}

static void test_softmax_xent(void)
{
	struct xent_fd t;
	fill_normal(t.z, SB * SK, 8);
	for (int i = 0; i < SB * SK; i++)
		t.z[i] *= 2.0f;
	fill_uniform(t.soft, SB * SK, 0.0f, 1.0f, 9);
	for (int b = 0; b < SB; b++) {
		float s = 0;
		for (int k = 0; k < SK; k++)
			s += t.soft[b * SK + k];
		for (int k = 0; k < SK; k++)
			t.soft[b * SK + k] /= s;
		t.labels[b] = (b * 3) % SK;
	}
	for (int kind = 0; kind < 2; kind++) {
		for (int soft = 0; soft < 2; soft++) {
			t.kind = (enum loss_kind)kind;
			t.use_soft = soft;
			float d[SB * SK], d3[SB * SK], probs[SB * SK];
			for (int i = 0; i < SB * SK; i++)
				d[i] = d3[i] = 0.25f; /* accumulates on top */
			double L = softmax_xent(d, probs, t.z, t.labels, soft ? t.soft : NULL, SB, SK,
						t.kind, 1.0f);
			softmax_xent(d3, NULL, t.z, t.labels, soft ? t.soft : NULL, SB, SK, t.kind,
				     1.0f / 3.0f);
			for (int i = 0; i < SB * SK; i++) {
				d[i] -= 0.25f;
				CHECK_NEAR(d3[i] - 0.25f, d[i] / 3.0f, 1e-6);
			}
			CHECK(fd_check(kind ? "double softmax" : "xent", t.z, SB * SK, d, xent_obj, &t,
				       1e-3f, 1e-4, 1e-6, 1e-2) == 0);
			/* the sum of the per-sample losses, computed here in double */
			double ref = 0;
			for (int b = 0; b < SB; b++) {
				const float *z = t.z + b * SK;
				double q[SK], mx = z[0], se = 0, r[SK], se2 = 0;
				for (int k = 1; k < SK; k++)
					mx = fmax(mx, z[k]);
				for (int k = 0; k < SK; k++)
					se += exp(z[k] - mx);
				for (int k = 0; k < SK; k++) {
					q[k] = exp(z[k] - mx) / se;
					CHECK_NEAR(probs[b * SK + k], q[k], 1e-6);
				}
				const double *v = q;
				if (kind == LOSS_CE) {
					for (int k = 0; k < SK; k++)
						r[k] = q[k];
				} else {
					for (int k = 0; k < SK; k++)
						se2 += exp(q[k]);
					for (int k = 0; k < SK; k++)
						r[k] = exp(q[k]) / se2;
					v = r;
				}
				for (int k = 0; k < SK; k++) {
					double tk = soft ? t.soft[b * SK + k] : (k == t.labels[b]);
					ref -= tk * log(v[k]);
				}
			}
			CHECK_REL(L, ref, 1e-6);
		}
	}
	/* rows wider than the stack cache of softmax_xent: the recomputing path,
	 * against the double formulas */
	enum { WB = 3, WK = 70 };
	float wz[WB * WK], wsoft[WB * WK], wd[WB * WK];
	int wl[WB] = { 0, 69, 33 };
	fill_normal(wz, WB * WK, 13);
	fill_uniform(wsoft, WB * WK, 0.0f, 1.0f / WK, 14);
	for (int kind = 0; kind < 2; kind++) {
		for (int soft = 0; soft < 2; soft++) {
			memset(wd, 0, sizeof(wd));
			double L = softmax_xent(wd, NULL, wz, wl, soft ? wsoft : NULL, WB, WK,
						(enum loss_kind)kind, 0.5f);
			double ref = 0;
			for (int b = 0; b < WB; b++) {
				const float *z = wz + b * WK;
				double q[WK], r[WK], se = 0, se2 = 0, T = 0, dqq = 0;
				for (int k = 0; k < WK; k++)
					se += exp(z[k]);
				for (int k = 0; k < WK; k++) {
					q[k] = exp(z[k]) / se;
					se2 += exp(q[k]);
				}
				for (int k = 0; k < WK; k++)
					r[k] = kind ? exp(q[k]) / se2 : q[k];
				for (int k = 0; k < WK; k++) {
					double tk = soft ? wsoft[b * WK + k] : (k == wl[b]);
					T += tk;
					ref -= tk * log(r[k]);
				}
				for (int k = 0; k < WK; k++) {
					double tk = soft ? wsoft[b * WK + k] : (k == wl[b]);
					dqq += (r[k] * T - tk) * q[k];
				}
				for (int k = 0; k < WK; k++) {
					double tk = soft ? wsoft[b * WK + k] : (k == wl[b]);
					double g = kind ? q[k] * (r[k] * T - tk - dqq) : q[k] * T - tk;
					CHECK_NEAR(wd[b * WK + k], 0.5 * g, 1e-7);
				}
			}
			CHECK_REL(L, ref, 1e-9);
		}
	}

	float p[SK * 2];
	softmax_rows(p, t.z, 2, SK);
	for (int k = 0; k < SK; k++)
		CHECK_NEAR(p[k], exp(t.z[k]) / (exp(t.z[0]) + exp(t.z[1]) + exp(t.z[2]) + exp(t.z[3])),
			   1e-6);
}

/* ---- the MLP ----------------------------------------------------------- */

/* softmax_xent_fm (float, feature-major) against softmax_xent (double):
 * K = 2 as in TwoMoon and K = 5; a batch that is not a multiple of 8 (the
 * padding columns get zero gradient and add no loss) and one that is. */
static void test_softmax_xent_fm(void)
{
	static const int cases[][2] = { { 27, 2 }, { 16, 2 }, { 13, 5 }, { 1, 3 }, { 11, 20 } };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int B = cases[c][0], K = cases[c][1];
		for (int pad = 0; pad < 2; pad++) {
			int N = pad ? ((B + 7) & ~7) : B;
			float *z = xmalloc((size_t)B * K * sizeof(float));
			float *zt = xmalloc((size_t)N * K * sizeof(float));
			float *soft = xmalloc((size_t)B * K * sizeof(float));
			float *d = xmalloc((size_t)B * K * sizeof(float));
			float *dt = xmalloc((size_t)N * K * sizeof(float));
			int *labels = xmalloc((size_t)B * sizeof(int));
			fill_normal(z, (size_t)B * K, 200 + c);
			fill_uniform(soft, (size_t)B * K, 0.0f, 1.0f, 210 + c);
			for (int b = 0; b < B; b++) {
				labels[b] = (b * 7) % K;
				for (int k = 0; k < K; k++)
					z[b * K + k] *= 3.0f;
			}
			for (size_t i = 0; i < (size_t)N * K; i++)
				zt[i] = 5.0f; /* padding logits are arbitrary */
			for (int b = 0; b < B; b++)
				for (int k = 0; k < K; k++)
					zt[(size_t)k * N + b] = z[b * K + k];
			for (int kind = 0; kind < 2; kind++)
				for (int sf = 0; sf < 2; sf++) {
					const float *sp = sf ? soft : NULL;
					memset(d, 0, (size_t)B * K * sizeof(float));
					for (size_t i = 0; i < (size_t)N * K; i++)
						dt[i] = 7.0f; /* overwritten */
					double L = softmax_xent(d, NULL, z, labels, sp, B, K,
								(enum loss_kind)kind, 0.5f);
					double Lt = softmax_xent_fm(dt, zt, labels, sp, B, N, K,
								    (enum loss_kind)kind, 0.5f);
					CHECK_NEAR(Lt, L, 1e-5 * (1 + fabs(L)));
					for (int b = 0; b < N; b++)
						for (int k = 0; k < K; k++) {
							float got = dt[(size_t)k * N + b];
							float want = b < B ? d[b * K + k] : 0.0f;
							CHECK_NEAR(got, want, 1e-6 * (1 + fabsf(want)));
						}
				}
			free(z), free(zt), free(soft), free(d), free(dt), free(labels);
		}
	}
}

static struct mlp_arch arch_early2(void)
{
	struct mlp_arch a = { 0 };
	a.nbranch = 2;
	a.in_dim[0] = 3;
	a.in_dim[1] = 2;
	a.fusion = FUSION_EARLY;
	a.depth = 2;
	a.hidden[0] = 8;
	a.hidden[1] = 6;
	a.classes = 3;
	return a;
}

static struct mlp_arch arch_late2(void)
{
	struct mlp_arch a = { 0 };
	a.nbranch = 2;
	a.in_dim[0] = 3;
	a.in_dim[1] = 2;
	a.fusion = FUSION_LATE;
	a.branch_depth[0] = 2;
	a.branch_hidden[0][0] = 6;
	a.branch_hidden[0][1] = 4;
	a.branch_depth[1] = 1;
	a.branch_hidden[1][0] = 5;
	a.depth = 1;
	a.hidden[0] = 7;
	a.classes = 3;
	return a;
}

enum { MB = 12 };
struct mlp_fd {
	struct mlp m;
	float x0[MB * 8], x1[MB * 8];
	int labels[MB];
	uint32_t ids[MB];
	struct fwd_ctx ctx;
	int B;
};

static double mlp_obj(void *arg)
{
	struct mlp_fd *t = arg;
	const float *in[2] = { t->x0, t->x1 };
	mlp_forward(&t->m, in, t->B, &t->ctx);
	return softmax_xent(NULL, NULL, t->m.logits, t->labels, NULL, t->B, t->m.arch.classes,
			    LOSS_CE, 1.0f);
}

static void mlp_fd_setup(struct mlp_fd *t, const struct mlp_arch *a, struct regularizer reg)
{
	memset(t, 0, sizeof(*t));
	CHECK(mlp_init(&t->m, a) == 0);
	mlp_init_params(&t->m, 77);
	t->B = MB;
	fill_normal(t->x0, MB * a->in_dim[0], 11);
	fill_normal(t->x1, MB * a->in_dim[1], 12);
	for (int b = 0; b < MB; b++) {
		t->labels[b] = b % a->classes;
		t->ids[b] = 500 + 3 * b;
	}
	t->ctx.reg = reg;
	t->ctx.seed = 2024;
	t->ctx.step = 9;
	t->ctx.ids = t->ids;
	t->ctx.global_batch = MB;
}

/*
 * A double-precision reference of the MLP, written from nn.h's description
 * (fusion, where each regularizer goes, its stream offsets, the batch mean of
 * |x| inside the noise), used to check mlp_forward's logits and, by finite
 * differences in double, mlp_backward's gradients. Its draws come from the
 * public noise/dropout functions, which test_stream_offsets ties to rng.h.
 */
enum { RW = 16 }; /* widest layer or input in these tests */

struct ref {
	const struct mlp *m;      /* arch and parameter layout */
	double *P;                /* the parameters, in double */
	const float *x[2];
	const int *labels;
	int B;
	const struct fwd_ctx *ctx;
	double logits[MB * RW];
};

/* eps (B,C) of (purpose, offset) or the dropout mask of offset */
static void ref_draws(double *out, int B, int C, const struct fwd_ctx *c, int dropout,
		      uint32_t purpose, uint64_t off)
{
	float one[MB * RW], o[MB * RW], d[MB * RW];
	for (int i = 0; i < MB * RW; i++)
		one[i] = 1.0f;
	if (dropout)
		dropout_forward_at(o, d, one, B, C, c->reg.dropout, c->seed, c->step, off, c->ids);
	else
		noise_forward_at(o, d, one, B, C, 1.0f, 1.0f, c->seed, purpose, c->step, off, c->ids);
	for (int i = 0; i < B * C; i++)
		out[i] = d[i];
}

/* x += s * mean(|x|) * eps, the mean over all B*C entries */
static void ref_noise(double *x, int B, int C, double s, const struct fwd_ctx *c,
		      uint32_t purpose, uint64_t off)
{
	double e[MB * RW], mean = 0;
	ref_draws(e, B, C, c, 0, purpose, off);
	for (int i = 0; i < B * C; i++)
		mean += fabs(x[i]);
	mean /= B * C;
	for (int i = 0; i < B * C; i++)
		x[i] += s * mean * e[i];
}

/* y (B,out) = x (B,in) W^T + b for lin[l], then ReLU unless head */
static void ref_linear(const struct ref *r, int l, const double *x, double *y, int relu)
{
	const struct linear_view *v = &r->m->lin[l];
	const double *W = r->P + (v->w - r->m->params), *bias = r->P + (v->b - r->m->params);
	for (int b = 0; b < r->B; b++)
		for (int o = 0; o < v->out; o++) {
			double s = bias[o];
			for (int c = 0; c < v->in; c++)
				s += W[o * v->in + c] * x[b * v->in + c];
			y[b * v->out + o] = relu && s < 0 ? 0 : s;
		}
}

/* a hidden layer: Linear, ReLU, noise if noisy, dropout; offsets advance */
static void ref_hidden(const struct ref *r, int l, const double *x, double *y, int noisy,
		       uint64_t noff, uint64_t *doff)
{
	const struct fwd_ctx *c = r->ctx;
	int C = r->m->lin[l].out;
	ref_linear(r, l, x, y, 1);
	if (c && noisy && c->reg.hidden_noise != 0)
		ref_noise(y, r->B, C, c->reg.hidden_noise, c, RNG_HIDDEN_NOISE, noff);
	if (c && c->reg.dropout > 0) {
		double mk[MB * RW];
		ref_draws(mk, r->B, C, c, 1, 0, *doff);
		for (int i = 0; i < r->B * C; i++)
			y[i] *= mk[i];
	}
	*doff += (uint64_t)C;
}

/* forward into r->logits; returns the summed cross-entropy */
static double ref_loss(void *arg)
{
	struct ref *r = arg;
	const struct mlp_arch *a = &r->m->arch;
	const struct fwd_ctx *c = r->ctx;
	int B = r->B, l = 0, cw = 0, any_branch_layer = 0;
	double alpha = c ? c->reg.input_noise : 0;
	double cat[MB * 2 * RW], xk[MB * RW], y[MB * RW];
	uint64_t doff = 0, ioff = 0, noff = 0;
	int width[2], catw = 0;
	/* per-branch inputs, noised per branch (late) or after the concat (early) */
	double br[2][MB * RW];
	for (int k = 0; k < a->nbranch; k++) {
		width[k] = a->in_dim[k];
		for (int i = 0; i < B * width[k]; i++)
			br[k][i] = r->x[k][i];
		if (a->fusion == FUSION_LATE && alpha != 0)
			ref_noise(br[k], B, width[k], alpha, c, RNG_INPUT_NOISE, ioff);
		ioff += (uint64_t)a->in_dim[k];
		if (a->fusion != FUSION_LATE)
			continue;
		for (int j = 0; j < a->branch_depth[k]; j++, l++) {
			ref_hidden(r, l, br[k], y, j == 0, noff, &doff);
			if (j == 0)
				noff += (uint64_t)r->m->lin[l].out;
			width[k] = r->m->lin[l].out;
			memcpy(br[k], y, (size_t)B * width[k] * sizeof(double));
			any_branch_layer = 1;
		}
	}
	for (int k = 0; k < a->nbranch; k++)
		catw += width[k];
	for (int b = 0; b < B; b++) {
		cw = 0;
		for (int k = 0; k < a->nbranch; k++) {
			memcpy(cat + b * catw + cw, br[k] + b * width[k], width[k] * sizeof(double));
			cw += width[k];
		}
	}
	if (a->fusion != FUSION_LATE && alpha != 0)
		ref_noise(cat, B, catw, alpha, c, RNG_INPUT_NOISE, 0);
	memcpy(xk, cat, (size_t)B * catw * sizeof(double));
	for (int j = 0; j < a->depth; j++, l++) {
		ref_hidden(r, l, xk, y, j == 0 && !any_branch_layer, 0, &doff);
		memcpy(xk, y, (size_t)B * r->m->lin[l].out * sizeof(double));
	}
	ref_linear(r, l, xk, r->logits, 0);
	double L = 0;
	int K = a->classes;
	for (int b = 0; b < B; b++) {
		double mx = r->logits[b * K], se = 0;
		for (int k = 1; k < K; k++)
			mx = fmax(mx, r->logits[b * K + k]);
		for (int k = 0; k < K; k++)
			se += exp(r->logits[b * K + k] - mx);
		L += mx + log(se) - r->logits[b * K + r->labels[b]];
	}
	return L;
}

/* fd_check for a double objective of double x, step h and h/2 (see fd_check) */
static int fd_check_d(const char *what, double *x, size_t n, const float *ana, objective_fn f,
		      void *arg, double h, double rtol, double atol, double kink)
{
	int skipped = 0;
	double f0 = f(arg);
	for (size_t i = 0; i < n; i++) {
		double xi = x[i], d[2][2];
		for (int s = 0; s < 2; s++) {
			double hs = s ? h / 2 : h;
			x[i] = xi + hs;
			d[s][0] = (f(arg) - f0) / hs;
			x[i] = xi - hs;
			d[s][1] = (f0 - f(arg)) / hs;
			x[i] = xi;
		}
		double c1 = (d[0][0] + d[0][1]) / 2, num = (d[1][0] + d[1][1]) / 2;
		if (fabs(c1 - num) > kink ||
		    fabs((d[0][0] - d[0][1]) - 2 * (d[1][0] - d[1][1])) > kink) {
			skipped++;
			continue;
		}
		CHECK_MSG(fabs(num - ana[i]) <= atol + rtol * fmax(fabs(num), fabs(ana[i])),
			  "%s[%zu]: numeric %.9g analytic %.9g", what, i, num, (double)ana[i]);
	}
	return skipped;
}

/* mlp_forward against the reference, and mlp_backward's gradients of the
 * summed loss against central differences of the reference in double, with
 * every regularizer on: noise (its mean-|h| path included) and dropout are
 * deterministic given (seed, step, ids). */
static void mlp_fd_run(const struct mlp_arch *a, const char *what, int has_hidden)
{
	struct regularizer reg = { .input_noise = 0.3f, .hidden_noise = 0.8f, .dropout = 0.25f };
	struct mlp_fd *t = xmalloc(sizeof(*t));
	mlp_fd_setup(t, a, reg);
	float dlogits[MB * 8] = { 0 };
	mlp_obj(t);
	softmax_xent(dlogits, NULL, t->m.logits, t->labels, NULL, MB, a->classes, LOSS_CE, 1.0f);
	mlp_zero_grad(&t->m);
	mlp_backward(&t->m, dlogits, &t->ctx);
	float *ana = xmalloc(t->m.nparams * sizeof(float));
	memcpy(ana, t->m.grads, t->m.nparams * sizeof(float));

	struct ref r = { .m = &t->m, .x = { t->x0, t->x1 }, .labels = t->labels, .B = MB,
			 .ctx = &t->ctx };
	r.P = xmalloc(t->m.nparams * sizeof(double));
	for (size_t i = 0; i < t->m.nparams; i++)
		r.P[i] = t->m.params[i];
	ref_loss(&r);
	for (int i = 0; i < MB * a->classes; i++)
		CHECK_MSG(fabs(t->m.logits[i] - r.logits[i]) <= 1e-5 * (1 + fabs(r.logits[i])),
			  "%s: logit %d: %.9g vs reference %.9g", what, i, (double)t->m.logits[i],
			  r.logits[i]);
	/* float gradients against double differences: 1e-4 relative, 1e-6 absolute */
	int sk = fd_check_d(what, r.P, t->m.nparams, ana, ref_loss, &r, 1e-5, 1e-4, 1e-6, 1e-6);
	CHECK_MSG(sk <= (int)t->m.nparams / 50, "%s: %d of %zu coordinates skipped as kinks",
		  what, sk, t->m.nparams);
	free(r.P);

	/* the hidden noise is exercised: dropping beta changes the gradient */
	t->ctx.reg.hidden_noise = has_hidden ? 0.0f : 0.8f;
	mlp_obj(t);
	memset(dlogits, 0, sizeof(dlogits));
	softmax_xent(dlogits, NULL, t->m.logits, t->labels, NULL, MB, a->classes, LOSS_CE, 1.0f);
	mlp_zero_grad(&t->m);
	mlp_backward(&t->m, dlogits, &t->ctx);
	double diff = 0;
	for (size_t i = 0; i < t->m.nparams; i++)
		diff = fmax(diff, fabs(t->m.grads[i] - ana[i]));
	CHECK(has_hidden ? diff > 1e-3 : diff == 0.0);
	free(ana);
	mlp_release(&t->m);
	free(t);
}

static void test_mlp_grad_early(void)
{
	struct mlp_arch a = arch_early2();
	mlp_fd_run(&a, "mlp early", 1);
}

static void test_mlp_grad_late(void)
{
	struct mlp_arch a = arch_late2();
	mlp_fd_run(&a, "mlp late", 1);
}

/* A late-fusion model where one branch has no layers (its input goes straight
 * to the concat), and a linear model (no hidden layer at all). */
static void test_mlp_grad_edge_archs(void)
{
	struct mlp_arch a = arch_late2();
	a.branch_depth[1] = 0;
	mlp_fd_run(&a, "mlp late, bare branch", 1);
	struct mlp_arch b = arch_early2();
	b.depth = 0;
	mlp_fd_run(&b, "mlp linear", 0);
}

/* mlp_forward equals the public layers composed as nn.h documents (fusion,
 * noise sites, stream offsets): the keys are part of the contract. */
static void test_mlp_matches_documented_composition(void)
{
	struct regularizer reg = { .input_noise = 0.3f, .hidden_noise = 0.8f, .dropout = 0.25f };
	struct mlp_fd *t = xmalloc(sizeof(*t));
	struct mlp_arch a = arch_early2();
	mlp_fd_setup(t, &a, reg);
	const float *in[2] = { t->x0, t->x1 };
	mlp_forward(&t->m, in, MB, &t->ctx);

	enum { W = 16 };
	float x[MB * W], xn[MB * W], e[MB * W], h[MB * W], hn[MB * W], mk[MB * W], y[MB * W];
	float z[MB * W];
	const struct fwd_ctx *c = &t->ctx;
	for (int b = 0; b < MB; b++) {
		memcpy(x + b * 5, t->x0 + b * 3, 3 * sizeof(float));
		memcpy(x + b * 5 + 3, t->x1 + b * 2, 2 * sizeof(float));
	}
	noise_forward(xn, e, x, MB, 5, reg.input_noise,
		      (float)(nn_sum_abs(x, MB * 5) / (MB * 5)), c->seed, RNG_INPUT_NOISE, c->step,
		      c->ids);
	linear_forward(h, xn, t->m.lin[0].w, t->m.lin[0].b, MB, 5, 8);
	relu_forward(h, h, MB * 8);
	noise_forward(hn, e, h, MB, 8, reg.hidden_noise, (float)(nn_sum_abs(h, MB * 8) / (MB * 8)),
		      c->seed, RNG_HIDDEN_NOISE, c->step, c->ids);
	dropout_forward_at(y, mk, hn, MB, 8, reg.dropout, c->seed, c->step, 0, c->ids);
	linear_forward(h, y, t->m.lin[1].w, t->m.lin[1].b, MB, 8, 6);
	relu_forward(h, h, MB * 6);
	dropout_forward_at(y, mk, h, MB, 6, reg.dropout, c->seed, c->step, 8, c->ids);
	linear_forward(z, y, t->m.lin[2].w, t->m.lin[2].b, MB, 6, 3);
	for (int i = 0; i < MB * 3; i++)
		CHECK_NEAR(t->m.logits[i], z[i], 1e-5);
	mlp_release(&t->m);

	/* late fusion: branch k's input noise at offset sum(in_dim[<k]); hidden
	 * noise on each branch's first layer, offset by the earlier first widths;
	 * dropout offsets are the cumulative hidden widths in lin order */
	struct mlp_arch l = arch_late2();
	mlp_fd_setup(t, &l, reg);
	mlp_forward(&t->m, in, MB, &t->ctx);
	float a0[MB * W], a1[MB * W], cat[MB * W];
	struct linear_view *L = t->m.lin;
	/* branch 0: 3 -> 6 -> 4 (lin 0, 1); branch 1: 2 -> 5 (lin 2); trunk 9 -> 7 (lin 3) */
	noise_forward_at(xn, e, t->x0, MB, 3, reg.input_noise,
			 (float)(nn_sum_abs(t->x0, MB * 3) / (MB * 3)), c->seed, RNG_INPUT_NOISE,
			 c->step, 0, c->ids);
	linear_forward(h, xn, L[0].w, L[0].b, MB, 3, 6);
	relu_forward(h, h, MB * 6);
	noise_forward_at(hn, e, h, MB, 6, reg.hidden_noise, (float)(nn_sum_abs(h, MB * 6) / (MB * 6)),
			 c->seed, RNG_HIDDEN_NOISE, c->step, 0, c->ids);
	dropout_forward_at(y, mk, hn, MB, 6, reg.dropout, c->seed, c->step, 0, c->ids);
	linear_forward(a0, y, L[1].w, L[1].b, MB, 6, 4);
	relu_forward(a0, a0, MB * 4);
	dropout_forward_at(a0, mk, a0, MB, 4, reg.dropout, c->seed, c->step, 6, c->ids);
	noise_forward_at(xn, e, t->x1, MB, 2, reg.input_noise,
			 (float)(nn_sum_abs(t->x1, MB * 2) / (MB * 2)), c->seed, RNG_INPUT_NOISE,
			 c->step, 3, c->ids);
	linear_forward(h, xn, L[2].w, L[2].b, MB, 2, 5);
	relu_forward(h, h, MB * 5);
	noise_forward_at(hn, e, h, MB, 5, reg.hidden_noise, (float)(nn_sum_abs(h, MB * 5) / (MB * 5)),
			 c->seed, RNG_HIDDEN_NOISE, c->step, 6, c->ids);
	dropout_forward_at(a1, mk, hn, MB, 5, reg.dropout, c->seed, c->step, 10, c->ids);
	for (int b = 0; b < MB; b++) {
		memcpy(cat + b * 9, a0 + b * 4, 4 * sizeof(float));
		memcpy(cat + b * 9 + 4, a1 + b * 5, 5 * sizeof(float));
	}
	linear_forward(h, cat, L[3].w, L[3].b, MB, 9, 7);
	relu_forward(h, h, MB * 7);
	dropout_forward_at(y, mk, h, MB, 7, reg.dropout, c->seed, c->step, 15, c->ids);
	linear_forward(z, y, L[4].w, L[4].b, MB, 7, 3);
	for (int i = 0; i < MB * 3; i++)
		CHECK_NEAR(t->m.logits[i], z[i], 1e-5);
	mlp_release(&t->m);
	free(t);
}

static void test_mlp_names_and_init(void)
{
	struct mlp m;
	struct mlp_arch a = arch_late2();
	CHECK(mlp_init(&m, &a) == 0);
	static const char *want[] = { "branch0.0.weight", "branch0.0.bias", "branch0.1.weight",
				      "branch0.1.bias",   "branch1.0.weight", "branch1.0.bias",
				      "trunk.0.weight",   "trunk.0.bias",   "head.weight",
				      "head.bias" };
	CHECK(mlp_ntensors(&m) == 10);
	size_t total = 0;
	for (int i = 0; i < mlp_ntensors(&m); i++) {
		float *d;
		int r, c;
		const char *name = mlp_tensor(&m, i, &d, &r, &c);
		CHECK(name && strcmp(name, want[i]) == 0);
		CHECK(d == m.params + total); /* tensors tile params in order */
		CHECK(mlp_find_tensor(&m, want[i]) == i);
		total += (size_t)r * c;
	}
	CHECK(total == m.nparams);
	CHECK(mlp_tensor(&m, 10, NULL, NULL, NULL) == NULL);
	CHECK(mlp_find_tensor(&m, "trunk.1.weight") == -1);
	int r, c;
	mlp_tensor(&m, 6, NULL, &r, &c);
	CHECK(r == 7 && c == 9); /* trunk.0 takes 4 + 5 concatenated features */
	mlp_tensor(&m, 9, NULL, &r, &c);
	CHECK(r == 3 && c == 1);

	/* PyTorch's default init: U(-1/sqrt(in), 1/sqrt(in)), deterministic in seed */
	mlp_init_params(&m, 5);
	float *copy = xmalloc(m.nparams * sizeof(float));
	memcpy(copy, m.params, m.nparams * sizeof(float));
	for (int l = 0; l < m.nlinear; l++) {
		float bound = 1.0f / sqrtf((float)m.lin[l].in), mx = 0;
		for (int i = 0; i < m.lin[l].in * m.lin[l].out; i++)
			mx = fmaxf(mx, fabsf(m.lin[l].w[i]));
		for (int i = 0; i < m.lin[l].out; i++)
			mx = fmaxf(mx, fabsf(m.lin[l].b[i]));
		CHECK(mx <= bound && mx > 0.3f * bound);
	}
	mlp_init_params(&m, 5);
	CHECK(memcmp(copy, m.params, m.nparams * sizeof(float)) == 0);
	mlp_init_params(&m, 6);
	CHECK(memcmp(copy, m.params, m.nparams * sizeof(float)) != 0);
	free(copy);
	mlp_release(&m);

	/* early fusion ignores branch layers; bad archs are refused */
	a = arch_early2();
	a.branch_depth[0] = 3;
	CHECK(mlp_init(&m, &a) == 0);
	CHECK(mlp_ntensors(&m) == 6 && m.lin[0].in == 5);
	CHECK(strcmp(mlp_tensor(&m, 0, NULL, NULL, NULL), "trunk.0.weight") == 0);
	mlp_release(&m);
	a.classes = 0;
	fprintf(stderr, "  (an error about 'classes' is expected here)\n");
	CHECK(mlp_init(&m, &a) != 0);
}

/* Batches of different sizes, eval passes and training passes interleave
 * without disturbing each other; activations only grow. */
/* mlp_loss_backward is softmax_xent + mlp_backward in one: same loss and
 * gradients (up to the float loss), with every regularizer on. */
static void test_mlp_loss_backward(void)
{
	struct mlp_arch archs[2] = { arch_early2(), arch_late2() };
	enum { B = 21 };
	for (int ai = 0; ai < 2; ai++)
		for (int kind = 0; kind < 2; kind++) {
			struct mlp m;
			CHECK(mlp_init(&m, &archs[ai]) == 0);
			mlp_init_params(&m, 5 + ai);
			float x0[B * 3], x1[B * 2], dl[B * 3];
			int labels[B];
			uint32_t ids[B];
			fill_normal(x0, B * 3, 300 + ai);
			fill_normal(x1, B * 2, 310 + ai);
			for (int b = 0; b < B; b++) {
				labels[b] = b % 3;
				ids[b] = 1000 + 3 * (uint32_t)b;
			}
			struct fwd_ctx ctx = { .reg = { 0.5f, 0.7f, 0.3f }, .seed = 11, .step = 4,
					       .ids = ids };
			const float *in[2] = { x0, x1 };
			float *g1 = xmalloc(m.nparams * sizeof(float));
			mlp_zero_grad(&m);
			mlp_forward(&m, in, B, &ctx);
			memset(dl, 0, sizeof dl);
			double L1 = softmax_xent(dl, NULL, m.logits, labels, NULL, B, 3,
						 (enum loss_kind)kind, 1.0f / B);
			mlp_backward(&m, dl, &ctx);
			memcpy(g1, m.grads, m.nparams * sizeof(float));
			mlp_zero_grad(&m);
			mlp_forward(&m, in, B, &ctx);
			double L2 = mlp_loss_backward(&m, labels, NULL, (enum loss_kind)kind, 1.0f / B,
						      &ctx);
			CHECK_NEAR(L2, L1, 1e-5 * (1 + fabs(L1)));
			for (size_t i = 0; i < m.nparams; i++)
				CHECK_NEAR(m.grads[i], g1[i], 1e-5 * (1 + fabsf(g1[i])));
			free(g1);
			mlp_release(&m);
		}
}

/* The piecewise-linear path of few-input MLPs (nn.c) against the dense path:
 * logits, loss and every gradient, hard and soft targets, with and without
 * input noise, through mlp_loss_backward and mlp_backward, for the TwoMoon
 * UM student's shape (one input, 32 wide), other widths and input counts,
 * and a batch with padding; and the MM student's shape stays dense. */
static void test_mlp_piecewise(void)
{
	static const int shapes[4][4] = {
		{ 1, 32, 32, 2 }, { 2, 4, 16, 2 }, { 1, 20, 16, 3 }, { 3, 3, 8, 3 }
	};
	for (int si = 0; si < 4; si++)
		for (int noisy = 0; noisy < 2; noisy++)
			for (int soft = 0; soft < 2; soft++) {
				enum { B = 201 };
				int cin = shapes[si][0], H0 = shapes[si][1], H1 = shapes[si][2];
				int K = shapes[si][3];
				struct mlp_arch a = { .nbranch = 1, .in_dim = { cin }, .depth = 2,
						      .hidden = { H0, H1 }, .classes = K,
						      .fusion = FUSION_EARLY };
				struct mlp m;
				CHECK(mlp_init(&m, &a) == 0);
				mlp_init_params(&m, 31 + (uint64_t)si);
				float x[B * 3], sf[B * 3], dl[B * 3], dl2[B * 3];
				int labels[B];
				uint32_t ids[B];
				fill_normal(x, (size_t)B * cin, 900 + (uint32_t)si);
				fill_uniform(sf, (size_t)B * K, 0.0f, 1.0f, 901);
				for (int b = 0; b < B; b++) {
					labels[b] = (b * 7) % K;
					ids[b] = 40 + 5 * (uint32_t)b;
				}
				/* repeated rows: one pattern several times */
				for (int c = 0; c < cin; c++)
					x[5 * cin + c] = x[6 * cin + c] = x[7 * cin + c];
				struct fwd_ctx ctx = { .reg = { .input_noise = noisy ? 0.7f : 0.0f },
						       .seed = 3, .step = 8, .ids = ids };
				const float *in[1] = { x };
				float *g[2][2], lg[2][B * 3];
				double L[2];
				for (int pw = 0; pw < 2; pw++) {
					mlp_piecewise_enable(pw == 0);
					/* fused loss and backward */
					mlp_zero_grad(&m);
					mlp_forward(&m, in, B, &ctx);
					/* on AVX2 machines the first pass is piecewise-linear */
					CHECK(mlp_took_piecewise(&m) == (pw == 0 && !getenv("MKE_NO_AVX2")));
					memcpy(lg[pw], m.logits, sizeof(float) * B * (size_t)K);
					L[pw] = mlp_loss_backward(&m, soft ? NULL : labels, soft ? sf : NULL,
								  LOSS_DOUBLE_SOFTMAX, 1.0f / B, &ctx);
					g[pw][0] = xmalloc(m.nparams * sizeof(float));
					memcpy(g[pw][0], m.grads, m.nparams * sizeof(float));
					/* the gradient of the logits given */
					mlp_zero_grad(&m);
					mlp_forward(&m, in, B, &ctx);
					memset(dl, 0, sizeof dl);
					softmax_xent(dl, NULL, m.logits, soft ? NULL : labels,
						     soft ? sf : NULL, B, K, LOSS_CE, 1.0f / B);
					if (pw == 0)
						memcpy(dl2, dl, sizeof dl);
					mlp_backward(&m, dl2, &ctx);
					g[pw][1] = xmalloc(m.nparams * sizeof(float));
					memcpy(g[pw][1], m.grads, m.nparams * sizeof(float));
				}
				mlp_piecewise_enable(1);
				for (int i = 0; i < B * K; i++)
					CHECK_NEAR(lg[0][i], lg[1][i], 1e-5 * (1 + fabsf(lg[1][i])));
				CHECK_NEAR(L[0], L[1], 1e-5 * (1 + fabs(L[1])));
				for (int w = 0; w < 2; w++) {
					double scale = 0;
					for (size_t i = 0; i < m.nparams; i++)
						scale = fmax(scale, fabs(g[1][w][i]));
					CHECK(scale > 0);
					for (size_t i = 0; i < m.nparams; i++)
						CHECK_NEAR(g[0][w][i], g[1][w][i], 1e-5 * scale);
					free(g[0][w]);
					free(g[1][w]);
				}
				mlp_release(&m);
			}
	/* two inputs into 16 units can form 137 patterns: too many for 201 rows */
	struct mlp_arch a = { .nbranch = 1, .in_dim = { 2 }, .depth = 2, .hidden = { 16, 16 },
			      .classes = 2, .fusion = FUSION_EARLY };
	struct mlp m;
	CHECK(mlp_init(&m, &a) == 0);
	mlp_init_params(&m, 3);
	float x[2 * 201];
	uint32_t ids[201];
	fill_normal(x, 2 * 201, 77);
	for (int b = 0; b < 201; b++)
		ids[b] = (uint32_t)b;
	struct fwd_ctx ctx = { .seed = 1, .ids = ids };
	const float *in[1] = { x };
	mlp_forward(&m, in, 201, &ctx);
	CHECK(!mlp_took_piecewise(&m));
	mlp_release(&m);
}

static void test_mlp_batches(void)
{
	struct regularizer reg = { .input_noise = 0.3f, .hidden_noise = 0.8f, .dropout = 0.25f };
	struct mlp_fd *t = xmalloc(sizeof(*t));
	struct mlp_arch a = arch_late2();
	mlp_fd_setup(t, &a, reg);
	const float *in[2] = { t->x0, t->x1 };
	float ev[MB * 3], tr[MB * 3];
	mlp_forward(&t->m, in, MB, NULL);
	memcpy(ev, t->m.logits, sizeof(ev));
	CHECK(t->m.max_batch == MB && !t->m.train);
	mlp_forward(&t->m, in, MB, &t->ctx);
	memcpy(tr, t->m.logits, sizeof(tr));
	CHECK(t->m.train);
	float *acts = t->m.acts;
	size_t nacts = t->m.nacts;
	mlp_forward(&t->m, in, 5, &t->ctx);
	CHECK(t->m.acts == acts && t->m.nacts == nacts && t->m.max_batch == MB);
	/* an eval pass is row-wise: 5 rows give the first 5 rows of 12 */
	mlp_forward(&t->m, in, 5, NULL);
	for (int i = 0; i < 5 * 3; i++)
		CHECK(t->m.logits[i] == ev[i]);
	mlp_forward(&t->m, in, MB, &t->ctx);
	for (int i = 0; i < MB * 3; i++)
		CHECK(t->m.logits[i] == tr[i]);
	/* a regularizer-free training pass is an eval pass */
	struct fwd_ctx none = t->ctx;
	memset(&none.reg, 0, sizeof(none.reg));
	mlp_forward(&t->m, in, MB, &none);
	for (int i = 0; i < MB * 3; i++)
		CHECK(t->m.logits[i] == ev[i]);
	mlp_release(&t->m);
	free(t);
}

/* ---- data parallel: two threads as two ranks --------------------------- */

struct dp_shared {
	pthread_barrier_t bar;
	double slot[2][8];
};

struct dp_rank {
	struct dp_shared *sh;
	int rank, reduces;
	struct mlp m;
	const float *x0, *x1;
	const int *labels;
	const uint32_t *ids;
	int B, global_B;
	struct regularizer reg;
};

static void dp_reduce(double *vals, int n, void *arg)
{
	struct dp_rank *r = arg;
	memcpy(r->sh->slot[r->rank], vals, (size_t)n * sizeof(double));
	pthread_barrier_wait(&r->sh->bar);
	for (int i = 0; i < n; i++)
		vals[i] = r->sh->slot[0][i] + r->sh->slot[1][i];
	pthread_barrier_wait(&r->sh->bar);
	r->reduces++;
}

static void *dp_main(void *arg)
{
	struct dp_rank *r = arg;
	struct fwd_ctx ctx = { .reg = r->reg, .seed = 2024, .step = 9, .ids = r->ids,
			       .global_batch = r->global_B, .reduce = dp_reduce, .reduce_arg = r };
	const float *in[2] = { r->x0, r->x1 };
	float dlogits[MB * 3] = { 0 };
	mlp_forward(&r->m, in, r->B, &ctx);
	softmax_xent(dlogits, NULL, r->m.logits, r->labels, NULL, r->B, 3, LOSS_CE,
		     1.0f / (float)r->global_B);
	mlp_backward(&r->m, dlogits, &ctx);
	return NULL;
}

static void dp_run(const struct mlp_arch *a, int want_reduces)
{
	struct regularizer reg = { .input_noise = 0.3f, .hidden_noise = 0.8f, .dropout = 0.25f };
	struct mlp_fd *t = xmalloc(sizeof(*t));
	mlp_fd_setup(t, a, reg);
	/* one process, whole batch */
	float dlogits[MB * 3] = { 0 };
	mlp_obj(t);
	softmax_xent(dlogits, NULL, t->m.logits, t->labels, NULL, MB, 3, LOSS_CE, 1.0f / MB);
	mlp_zero_grad(&t->m);
	mlp_backward(&t->m, dlogits, &t->ctx);

	struct dp_shared sh;
	pthread_barrier_init(&sh.bar, NULL, 2);
	struct dp_rank r[2];
	pthread_t th[2];
	int split = 5;
	for (int k = 0; k < 2; k++) {
		int first = k ? split : 0;
		memset(&r[k], 0, sizeof(r[k]));
		r[k].sh = &sh;
		r[k].rank = k;
		CHECK(mlp_init(&r[k].m, a) == 0);
		memcpy(r[k].m.params, t->m.params, t->m.nparams * sizeof(float));
		r[k].x0 = t->x0 + first * a->in_dim[0];
		r[k].x1 = t->x1 + first * a->in_dim[1];
		r[k].labels = t->labels + first;
		r[k].ids = t->ids + first;
		r[k].B = k ? MB - split : split;
		r[k].global_B = MB;
		r[k].reg = reg;
		pthread_create(&th[k], NULL, dp_main, &r[k]);
	}
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	pthread_barrier_destroy(&sh.bar);
	for (int k = 0; k < 2; k++)
		CHECK(r[k].reduces == want_reduces);
	for (int i = 0; i < split * 3; i++)
		CHECK_NEAR(r[0].m.logits[i], t->m.logits[i], 1e-5);
	for (int i = 0; i < (MB - split) * 3; i++)
		CHECK_NEAR(r[1].m.logits[i], t->m.logits[split * 3 + i], 1e-5);
	for (size_t i = 0; i < t->m.nparams; i++)
		CHECK_NEAR(r[0].m.grads[i] + r[1].m.grads[i], t->m.grads[i],
			   1e-5 + 1e-4 * fabsf(t->m.grads[i]));
	for (int k = 0; k < 2; k++)
		mlp_release(&r[k].m);
	mlp_release(&t->m);
	free(t);
}

/* Two ranks with half a batch each and the reduce hook produce the logits and
 * (summed) gradients of one process with the whole batch. */
static void test_mlp_data_parallel(void)
{
	struct mlp_arch e = arch_early2(), l = arch_late2();
	/* early: input mean, hidden mean, hidden dot; late: the same, batched over branches */
	dp_run(&e, 3);
	dp_run(&l, 3);
}

/* ---- optimizers -------------------------------------------------------- */

/* The update rules written out in double for a few steps. */
static void test_optim_rules(void)
{
	enum { N = 6 };
	float p[N], g[N];
	double pd[N], buf[N], m1[N], m2[N];
	fill_normal(p, N, 30);
	for (int i = 0; i < N; i++)
		pd[i] = p[i];
	struct optim_config sc = { .kind = OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f,
				   .weight_decay = 0.01f };
	struct optim o;
	optim_init(&o, &sc, N);
	for (int t = 0; t < 4; t++) {
		fill_normal(g, N, 31 + t);
		optim_step(&o, p, g);
		for (int i = 0; i < N; i++) {
			double d = g[i] + (double)sc.weight_decay * pd[i];
			buf[i] = t == 0 ? d : (double)sc.momentum * buf[i] + d;
			pd[i] -= (double)sc.lr * buf[i];
			CHECK_NEAR(p[i], pd[i], 1e-5);
		}
	}
	CHECK(o.t == 4);
	optim_release(&o);

	/* plain SGD has no state */
	sc.momentum = 0.0f;
	sc.weight_decay = 0.0f;
	optim_init(&o, &sc, N);
	CHECK(o.state == NULL);
	float q = p[0];
	optim_step(&o, p, g);
	CHECK_NEAR(p[0], q - 0.1f * g[0], 1e-7);
	optim_release(&o);

	struct optim_config ac = { .kind = OPTIM_ADAMW, .lr = 0.01f, .weight_decay = 0.1f,
				   .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f };
	for (int i = 0; i < N; i++) {
		pd[i] = p[i];
		m1[i] = m2[i] = 0;
	}
	optim_init(&o, &ac, N);
	for (int t = 1; t <= 5; t++) {
		fill_normal(g, N, 40 + t);
		optim_step(&o, p, g);
		for (int i = 0; i < N; i++) {
			double b1 = ac.beta1, b2 = ac.beta2;
			pd[i] *= 1.0 - (double)ac.lr * ac.weight_decay;
			m1[i] = b1 * m1[i] + (1 - b1) * g[i];
			m2[i] = b2 * m2[i] + (1 - b2) * g[i] * g[i];
			double mh = m1[i] / (1 - pow(b1, t)), vh = m2[i] / (1 - pow(b2, t));
			pd[i] -= (double)ac.lr * mh / (sqrt(vh) + ac.eps);
			CHECK_NEAR(p[i], pd[i], 1e-6);
		}
	}
	optim_release(&o);
}

/* ---- the PyTorch fixture ----------------------------------------------- */


static const struct fx_tensor *fx_get(const struct fixture *f, const char *cs, const char *what)
{
	char name[96];
	snprintf(name, sizeof(name), "%s/%s", cs, what);
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	fprintf(stderr, "  fixture has no tensor '%s'\n", name);
	return NULL;
}

/*
 * Agreement with PyTorch: 1e-5 relative, with an absolute floor of 1e-7 for
 * values near zero, where a relative bound is meaningless: float32 sums of
 * O(0.1) terms in a different order (sgemm vs PyTorch's kernels) differ by a
 * few 1e-8 in absolute terms, which for an entry that cancels to ~1e-4 is far
 * more than 1e-5 relative.
 */
#define TORCH_RTOL 1e-5
#define TORCH_ATOL 1e-7

static void check_torch(const char *what, const float *got, const float *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		CHECK_MSG(fabs((double)got[i] - want[i]) <=
				  TORCH_ATOL + TORCH_RTOL * fmax(fabs(got[i]), fabs(want[i])),
			  "%s[%zu]: %.9g vs torch %.9g", what, i, (double)got[i], (double)want[i]);
}

struct torch_case {
	const char *name;
	struct mlp_arch arch;
	int B;
	enum loss_kind kind;
	int soft;
};

/* loss (mean over the batch, as nn.CrossEntropyLoss) and, if grads, the
 * gradients into m->grads */
static double torch_loss(struct mlp *m, const float *const *in, const struct torch_case *c,
			 const int *labels, const float *soft, float *dlogits)
{
	mlp_forward(m, in, c->B, NULL);
	if (dlogits) {
		memset(dlogits, 0, (size_t)c->B * c->arch.classes * sizeof(float));
		mlp_zero_grad(m);
	}
	double L = softmax_xent(dlogits, NULL, m->logits, labels, soft, c->B, c->arch.classes,
				c->kind, 1.0f / (float)c->B);
	if (dlogits)
		mlp_backward(m, dlogits, NULL);
	return L / c->B;
}

static void torch_case_run(const struct fixture *f, const struct torch_case *c)
{
	struct mlp m;
	const struct fx_tensor *t;
	CHECK(mlp_init(&m, &c->arch) == 0);
	for (int i = 0; i < mlp_ntensors(&m); i++) {
		float *d;
		int r, k;
		const char *name = mlp_tensor(&m, i, &d, &r, &k);
		t = fx_get(f, c->name, name);
		CHECK(t && t->n == (size_t)r * k);
		if (t && t->n == (size_t)r * k)
			memcpy(d, t->v, t->n * sizeof(float)); /* (out,in), as nn.Linear */
	}
	const struct fx_tensor *x0 = fx_get(f, c->name, "x0");
	const struct fx_tensor *x1 = c->arch.nbranch > 1 ? fx_get(f, c->name, "x1") : NULL;
	const struct fx_tensor *tg = fx_get(f, c->name, c->soft ? "soft" : "labels");
	const struct fx_tensor *logits = fx_get(f, c->name, "logits");
	const struct fx_tensor *loss = fx_get(f, c->name, "loss");
	if (!x0 || (c->arch.nbranch > 1 && !x1) || !tg || !logits || !loss) {
		CHECK(0);
		mlp_release(&m);
		return;
	}
	CHECK(x0->n == (size_t)c->B * c->arch.in_dim[0]);
	int labels[64] = { 0 };
	const float *soft = c->soft ? tg->v : NULL;
	for (int b = 0; b < c->B && !c->soft; b++)
		labels[b] = (int)tg->v[b];
	const float *in[2] = { x0->v, x1 ? x1->v : NULL };
	float dlogits[64 * 8];

	double L = torch_loss(&m, in, c, labels, soft, dlogits);
	CHECK(logits->n == (size_t)c->B * c->arch.classes);
	check_torch("logits", m.logits, logits->v, logits->n);
	float Lf = (float)L;
	check_torch("loss", &Lf, loss->v, 1);
	for (int i = 0; i < mlp_ntensors(&m); i++) {
		float *d;
		int r, k;
		char what[64];
		const char *name = mlp_tensor(&m, i, &d, &r, &k);
		snprintf(what, sizeof(what), "grad/%s", name);
		t = fx_get(f, c->name, what);
		CHECK(t && t->n == (size_t)r * k);
		if (t)
			check_torch(what, m.grads + (d - m.params), t->v, t->n);
	}

	/* 10 steps of each optimizer from the fixture's weights */
	float *init = xmalloc(m.nparams * sizeof(float));
	memcpy(init, m.params, m.nparams * sizeof(float));
	static const struct optim_config cfgs[2] = {
		{ .kind = OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f },
		{ .kind = OPTIM_ADAMW, .lr = 0.01f, .weight_decay = 0.1f, .beta1 = 0.9f,
		  .beta2 = 0.999f, .eps = 1e-8f },
	};
	static const char *names[2] = { "sgd_losses", "adamw_losses" };
	for (int k = 0; k < 2; k++) {
		t = fx_get(f, c->name, names[k]);
		CHECK(t && t->n == 11);
		if (!t || t->n != 11)
			continue;
		struct optim o;
		float losses[11];
		memcpy(m.params, init, m.nparams * sizeof(float));
		optim_init(&o, &cfgs[k], m.nparams);
		for (int s = 0; s < 10; s++) {
			losses[s] = (float)torch_loss(&m, in, c, labels, soft, dlogits);
			optim_step(&o, m.params, m.grads);
		}
		losses[10] = (float)torch_loss(&m, in, c, labels, soft, NULL);
		optim_release(&o);
		check_torch(names[k], losses, t->v, 11);
	}
	free(init);
	mlp_release(&m);
}

static void test_torch_fixture(void)
{
	char *path = path_join(test_fixtures(), "mlp_torch.txt");
	struct fixture f;
	int rc = fixture_load(&f, path);
	CHECK_MSG(rc == 0, "cannot load '%s'", path);
	free(path);
	if (rc) {
		fixture_release(&f);
		return;
	}
	struct torch_case c = { 0 };
	/* ce and dsm: 5 -> 7 -> 6 -> 3, batch 11, hard labels */
	c.arch.nbranch = 1;
	c.arch.in_dim[0] = 5;
	c.arch.depth = 2;
	c.arch.hidden[0] = 7;
	c.arch.hidden[1] = 6;
	c.arch.classes = 3;
	c.B = 11;
	c.name = "ce";
	c.kind = LOSS_CE;
	torch_case_run(&f, &c);
	c.name = "dsm";
	c.kind = LOSS_DOUBLE_SOFTMAX;
	torch_case_run(&f, &c);
	/* early2: inputs 2 and 3 -> 7 -> 6 -> 3, batch 8, soft targets, double softmax */
	c.name = "early2";
	c.arch.nbranch = 2;
	c.arch.in_dim[0] = 2;
	c.arch.in_dim[1] = 3;
	c.B = 8;
	c.soft = 1;
	torch_case_run(&f, &c);
	/* late: branch0 2 -> 4, branch1 3 -> 5 -> 3, trunk 6, batch 9, soft, CE */
	memset(&c.arch, 0, sizeof(c.arch));
	c.name = "late";
	c.arch.nbranch = 2;
	c.arch.fusion = FUSION_LATE;
	c.arch.in_dim[0] = 2;
	c.arch.in_dim[1] = 3;
	c.arch.branch_depth[0] = 1;
	c.arch.branch_hidden[0][0] = 4;
	c.arch.branch_depth[1] = 2;
	c.arch.branch_hidden[1][0] = 5;
	c.arch.branch_hidden[1][1] = 3;
	c.arch.depth = 1;
	c.arch.hidden[0] = 6;
	c.arch.classes = 3;
	c.B = 9;
	c.kind = LOSS_CE;
	torch_case_run(&f, &c);
	fixture_release(&f);
}

int main(void)
{
	RUN(test_stream_offsets);
	RUN(test_linear_fast_vs_naive);
	RUN(test_linear_fm_fast_vs_naive);
	RUN(test_linear_grad);
	RUN(test_relu_grad);
	RUN(test_dropout);
	RUN(test_noise_grad);
	RUN(test_softmax_xent);
	RUN(test_softmax_xent_fm);
	RUN(test_mlp_names_and_init);
	RUN(test_mlp_grad_early);
	RUN(test_mlp_grad_late);
	RUN(test_mlp_grad_edge_archs);
	RUN(test_mlp_matches_documented_composition);
	RUN(test_mlp_loss_backward);
	RUN(test_mlp_piecewise);
	RUN(test_mlp_batches);
	RUN(test_mlp_data_parallel);
	RUN(test_optim_rules);
	RUN(test_torch_fixture);
	return test_summary();
}
