/*
 * test_net.c - the convolutional models (net.h) against finite differences,
 * against PyTorch (tests/fixtures/net_torch.txt, written by
 * tests/fixtures/gen_net.py), and against themselves split over two "ranks".
 *
 * Finite differences: the objective is sum(r * logits) in double over the
 * float logits of a training forward (batch statistics, micro >= B), with
 * fixed random r, so its gradient is net_backward(r). ReLU and max pooling
 * make it piecewise smooth; a coordinate whose two one-sided slopes disagree
 * straddles a kink and is skipped (and counted; at most a quarter may be).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "net.h"
#include "nn.h"
#include "rng.h"
#include "fixture.h"
#include "archs.h"
#include "test.h"
#include "util.h"

#ifndef FD_H
#define FD_H 1e-3f
#endif

/* ---- helpers ----------------------------------------------------------- */

static void fill_normal(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 1234, RNG_DATA, tag, 1);
	rng_fill_normal(&r, x, n);
}

static size_t in_size(const struct net_arch *a, int k)
{
	const struct net_input *i = &a->in[k];
	return (size_t)i->F * i->C * i->H * i->W;
}

static double wsum(const float *x, const float *w, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * w[i];
	return s;
}

/* the small architectures of the tests (and of the fixture, gen_net.py) */
static struct net_arch arch_conv3(void)
{
	struct net_arch a = { .task = NET_CLASSIFY, .ninputs = 1, .classes = 3, .bn_micro = 64 };
	a.in[0] = (struct net_input){ 1, 1, 12, 10 };
	a.branch[0] = (struct net_branch){ .type = NET_CONV3, .nstage = 2, .channels = { 4, 6 } };
	return a;
}

static struct net_arch arch_late(void)
{
	return arch_late_micro(64);
}

static struct net_arch arch_seg2(void)
{
	struct net_arch a = { .task = NET_SEGMENT, .ninputs = 2, .classes = 5, .seg_nstage = 3,
			      .seg_channels = { 4, 6, 8 }, .bn_micro = 64 };
	a.in[0] = (struct net_input){ 1, 3, 10, 12 };
	a.in[1] = (struct net_input){ 1, 1, 10, 12 };
	return a;
}

static struct net_arch arch_seg1(void)
{
	struct net_arch a = { .task = NET_SEGMENT, .ninputs = 1, .classes = 4, .seg_nstage = 2,
			      .seg_channels = { 3, 5 }, .bn_micro = 64 };
	a.in[0] = (struct net_input){ 1, 3, 8, 8 };
	return a;
}

/* ---- finite differences ------------------------------------------------ */

struct fd {
	struct net n;
	struct fwd_ctx ctx;
	float *x[NET_MAX_INPUTS];
	float *r;   /* objective weights, the shape of the logits */
	int B;
	size_t nlog;
};

static double fd_obj(struct fd *t)
{
	const float *in[NET_MAX_INPUTS] = { t->x[0], t->x[1] };
	net_forward(&t->n, in, t->B, &t->ctx);
	return wsum(t->n.logits, t->r, t->nlog);
}

/* Central difference of the objective in coordinate p with step h*max(|p|,0.5)
 * into *num; 1 (a kink) when the one-sided slopes disagree. */
static int fd_coord(struct fd *t, float *p, float h, double *num)
{
	float p0 = *p;
	h *= fmaxf(fabsf(p0), 0.5f);
	volatile float hp = p0 + h, hm = p0 - h;
	double J0 = fd_obj(t);
	*p = hp;
	double Jp = fd_obj(t);
	*p = hm;
	double Jm = fd_obj(t);
	*p = p0;
	double sp = (Jp - J0) / ((double)hp - p0), sm = (J0 - Jm) / ((double)p0 - hm);
	*num = (Jp - Jm) / ((double)hp - hm);
	return fabs(sp - sm) > 0.05 * fmax(fabs(sp), fabs(sm)) + 1e-3;
}

static void fd_run(const struct net_arch *a, int B, struct regularizer reg, uint32_t tag)
{
	struct fd t;
	memset(&t, 0, sizeof(t));
	CHECK(net_init(&t.n, a) == 0);
	net_init_params(&t.n, 7 + tag);
	/* move the batch-norm affine parameters off 1 / 0 so their gradients are generic */
	for (int i = 0; i < net_ntensors(&t.n); i++) {
		float *d;
		int nd, sh[4], isp;
		const char *name = net_tensor(&t.n, i, &d, &nd, sh, &isp);
		if (isp && strstr(name, "bn") && nd == 1)
			for (int j = 0; j < sh[0]; j++)
				d[j] += 0.2f * sinf((float)(3 * i + j));
	}
	t.B = B;
	for (int k = 0; k < a->ninputs; k++) {
		t.x[k] = xmalloc((size_t)B * in_size(a, k) * sizeof(float));
		fill_normal(t.x[k], (size_t)B * in_size(a, k), tag * 10 + k);
	}
	t.nlog = (size_t)B * net_logits_per_sample(a);
	t.r = xmalloc(t.nlog * sizeof(float));
	fill_normal(t.r, t.nlog, tag * 10 + 9);
	t.ctx = (struct fwd_ctx){ .reg = reg, .seed = 99, .step = 3 };

	fd_obj(&t);
	net_zero_grad(&t.n);
	net_backward(&t.n, t.r, &t.ctx);
	float *grad = xmalloc(t.n.nparams * sizeof(float));
	memcpy(grad, t.n.grads, t.n.nparams * sizeof(float));

	float gref = 0.0f;
	for (size_t i = 0; i < t.n.nparams; i++)
		gref = fmaxf(gref, fabsf(grad[i]));
	int checked = 0, kinks = 0, bad = 0;
	double worst = 0.0;
	for (int i = 0; i < net_ntensors(&t.n); i++) {
		float *d;
		int nd, sh[4], isp;
		const char *name = net_tensor(&t.n, i, &d, &nd, sh, &isp);
		if (!isp)
			continue;
		size_t cnt = 1;
		for (int j = 0; j < nd; j++)
			cnt *= (size_t)sh[j];
		size_t pick[3] = { 0, cnt / 2, cnt - 1 };
		for (int s = 0; s < 3; s++) {
			size_t j = pick[s];
			if (s && pick[s] == pick[s - 1])
				continue;
			double an = grad[d - t.n.params + j], num = 0.0, err = INFINITY;
			int kink = 0;
			/* a large step meets ReLU / max-pool kinks, a small one float
			 * rounding: the coordinate passes at either */
			for (int k = 0; k < 2 && err > 1.0; k++) {
				double e;
				if (fd_coord(&t, d + j, k ? FD_H / 4 : FD_H, &num)) {
					kink++;
					continue;
				}
				e = fabs(num - an) / (1e-2 * (fabs(num) + fabs(an)) + 1e-3 * gref);
				if (e < err)
					err = e;
			}
			if (kink == 2) {
				kinks++;
				continue;
			}
			checked++;
			if (err > worst)
				worst = err;
			if (err > 1.0) {
				bad++;
				fprintf(stderr, "  %s[%zu]: finite difference %.6g, backward %.6g\n",
					name, j, num, an);
			}
		}
	}
	CHECK(bad == 0);
	CHECK_MSG(kinks * 4 <= checked + kinks, "%d kinks of %d coordinates", kinks,
		  checked + kinks);
	printf("  fd %u: %d coordinates, %d kinks skipped, worst error %.2f of the tolerance\n",
	       tag, checked, kinks, worst);
	free(grad);
	free(t.r);
	for (int k = 0; k < a->ninputs; k++)
		free(t.x[k]);
	net_release(&t.n);
}

static void test_fd_conv3(void)
{
	struct net_arch a = arch_conv3();
	fd_run(&a, 3, (struct regularizer){ 0 }, 1);
	a.head_hidden = 5;
	fd_run(&a, 3, (struct regularizer){ .dropout = 0.3f, .hidden_noise = 0.5f }, 2);
}

static void test_fd_late(void)
{
	struct net_arch a = arch_late();
	fd_run(&a, 3, (struct regularizer){ 0 }, 3);
	fd_run(&a, 3, (struct regularizer){ .input_noise = 0.3f, .hidden_noise = 0.5f,
					    .dropout = 0.2f }, 4);
}

static void test_fd_seg(void)
{
	struct net_arch a = arch_seg2();
	fd_run(&a, 2, (struct regularizer){ 0 }, 5);
	fd_run(&a, 2, (struct regularizer){ .hidden_noise = 0.5f, .dropout = 0.2f }, 6);
	a = arch_seg1();
	fd_run(&a, 2, (struct regularizer){ 0 }, 7);
}

/* ---- the PyTorch fixture ----------------------------------------------- */


static const struct fx_tensor *fx_find(const struct fixture *f, const char *cs, const char *what,
				       const char *name)
{
	char full[160];
	snprintf(full, sizeof(full), "%s/%s%s", cs, what, name ? name : "");
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, full) == 0)
			return &f->t[i];
	return NULL;
}

static const struct fx_tensor *fx_get(const struct fixture *f, const char *cs, const char *what,
				      const char *name)
{
	const struct fx_tensor *t = fx_find(f, cs, what, name);
	if (!t)
		fprintf(stderr, "  fixture has no tensor '%s/%s%s'\n", cs, what, name ? name : "");
	return t;
}

/* 1e-4 relative with an absolute floor scaled to the tensor's largest entry:
 * float32 sums in another order (im2col + sgemm vs PyTorch's kernels), through
 * batch norm's division by a batch standard deviation, leave a few 1e-7 of the
 * largest values on entries that cancel to near zero. */
static double max_rel, max_norm; /* worst of the floored relative and of |d| / max|want| */

static void check_torch(const char *what, const float *got, const float *want, size_t n)
{
	double big = 0.0;
	for (size_t i = 0; i < n; i++)
		big = fmax(big, fabs(want[i]));
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		double scale = fmax(fmax(fabs(got[i]), fabs(want[i])), 1e-3 * big);
		if (scale > 0 && d / scale > max_rel)
			max_rel = d / scale;
		if (big > 0 && d / big > max_norm)
			max_norm = d / big;
		CHECK_MSG(d <= 1e-4 * scale + 1e-7, "%s[%zu]: %.9g vs torch %.9g", what, i,
			  (double)got[i], (double)want[i]);
	}
}

static void torch_case(const struct fixture *f, const char *cs, const struct net_arch *a, int B)
{
	struct net n;
	CHECK(net_init(&n, a) == 0);
	/* every parameter of the net is in the fixture under the same name, and
	 * every fixture parameter is in the net */
	int nparam = 0;
	for (int i = 0; i < net_ntensors(&n); i++) {
		float *d;
		int nd, sh[4], isp;
		const char *name = net_tensor(&n, i, &d, &nd, sh, &isp);
		if (!isp)
			continue;
		nparam++;
		size_t cnt = 1;
		for (int j = 0; j < nd; j++)
			cnt *= (size_t)sh[j];
		const struct fx_tensor *t = fx_get(f, cs, "param/", name);
		CHECK_MSG(t && t->n == cnt, "%s/%s", cs, name);
		if (t && t->n == cnt)
			memcpy(d, t->v, cnt * sizeof(float));
	}
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "%s/param/", cs);
	for (int i = 0; i < f->n; i++)
		if (strncmp(f->t[i].name, prefix, strlen(prefix)) == 0) {
			const char *name = f->t[i].name + strlen(prefix);
			CHECK_MSG(net_find_tensor(&n, name) >= 0, "net has no tensor '%s'", name);
			nparam--;
		}
	CHECK(nparam == 0);

	const struct fx_tensor *x0 = fx_get(f, cs, "x0", NULL);
	const struct fx_tensor *x1 = a->ninputs > 1 ? fx_get(f, cs, "x1", NULL) : NULL;
	const struct fx_tensor *lab = fx_get(f, cs, "labels", NULL);
	if (!x0 || !lab || (a->ninputs > 1 && !x1)) {
		net_release(&n);
		return;
	}
	CHECK(x0->n == (size_t)B * in_size(a, 0));
	const float *in[2] = { x0->v, x1 ? x1->v : NULL };
	int *labels = xmalloc(lab->n * sizeof(int));
	for (size_t i = 0; i < lab->n; i++)
		labels[i] = (int)lab->v[i];

	struct fwd_ctx ctx = { .seed = 1, .step = 0 };
	net_forward(&n, in, B, &ctx);
	size_t nlog = (size_t)B * net_logits_per_sample(a);
	const struct fx_tensor *t = fx_get(f, cs, "logits", NULL);
	if (t && t->n == nlog)
		check_torch("logits", n.logits, t->v, nlog);
	float *dlogits = xcalloc(nlog, sizeof(float));
	double loss;
	if (a->task == NET_SEGMENT) {
		long count = 0;
		int HW = a->in[0].H * a->in[0].W;
		pixel_xent(NULL, n.logits, labels, B, a->classes, HW, 255, 0.0f, &count);
		CHECK(count > 0);
		loss = pixel_xent(dlogits, n.logits, labels, B, a->classes, HW, 255,
				  1.0f / (float)count, &count) / (double)count;
	} else {
		loss = softmax_xent(dlogits, NULL, n.logits, labels, NULL, B, a->classes, LOSS_CE,
				    1.0f / (float)B) / B;
	}
	t = fx_get(f, cs, "loss", NULL);
	if (t) {
		float lf = (float)loss;
		check_torch("loss", &lf, t->v, 1);
	}
	net_zero_grad(&n);
	net_backward(&n, dlogits, &ctx);
	for (int i = 0; i < net_ntensors(&n); i++) {
		float *d;
		int nd, sh[4], isp;
		const char *name = net_tensor(&n, i, &d, &nd, sh, &isp);
		size_t cnt = 1;
		for (int j = 0; j < nd; j++)
			cnt *= (size_t)sh[j];
		t = fx_get(f, cs, isp ? "grad/" : "buf/", name);
		if (!t || t->n != cnt) {
			CHECK_MSG(0, "%s: no or a different fixture tensor", name);
			continue;
		}
		char what[160];
		snprintf(what, sizeof(what), "%s/%s%s", cs, isp ? "grad/" : "buf/", name);
		check_torch(what, isp ? n.grads + (d - n.params) : d, t->v, cnt);
	}
	t = fx_get(f, cs, "num_batches_tracked", NULL);
	if (t)
		CHECK(n.bn_batches == (long)t->v[0]);

	/* evaluation with the running statistics */
	net_forward(&n, in, B, NULL);
	t = fx_get(f, cs, "eval_logits", NULL);
	if (t && t->n == nlog)
		check_torch("eval_logits", n.logits, t->v, nlog);

	free(dlogits);
	free(labels);
	net_release(&n);
}

static void test_torch_fixture(void)
{
	char *path = path_join(test_fixtures(), "net_torch.txt");
	struct fixture f;
	int rc = fixture_load(&f, path);
	CHECK_MSG(rc == 0, "cannot load '%s'", path);
	free(path);
	if (rc == 0) {
		struct net_arch a;
		max_rel = max_norm = 0.0;
		a = arch_conv3();
		torch_case(&f, "conv3", &a, 4);
		a = arch_late();
		torch_case(&f, "late", &a, 3);
		a = arch_seg2();
		torch_case(&f, "seg2", &a, 2);
		a = arch_seg1();
		torch_case(&f, "seg1", &a, 2);
		printf("  torch: worst difference %.2e relative (floor 1e-3 of the tensor's "
		       "largest), %.2e of the tensor's largest\n", max_rel, max_norm);
	}
	fixture_release(&f);
}

/* ---- data parallel: two threads as two ranks --------------------------- */

#define DP_MAXV 4096

struct dp_shared {
	pthread_barrier_t bar;
	double slot[2][DP_MAXV];
};

struct dp_rank {
	struct dp_shared *sh;
	int rank, reduces;
	struct net n;
	const float *x[NET_MAX_INPUTS];
	const uint32_t *ids;
	const float *r; /* dlogits */
	int B, global_B;
	struct regularizer reg;
};

static void dp_reduce(double *vals, int n, void *arg)
{
	struct dp_rank *r = arg;
	if (n > DP_MAXV)
		abort();
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
	net_forward(&r->n, r->x, r->B, &ctx);
	net_backward(&r->n, r->r, &ctx);
	return NULL;
}

/* B = 16 in one process against two ranks of H and 16-H (micro-batches of
 * 8): the same logits, the same summed gradients, the same running
 * statistics. */
static void dp_run(struct net_arch a, struct regularizer reg, int want_reduces, uint32_t tag,
		   int H)
{
	enum { B = 16 };
	a.bn_micro = 8;
	struct net whole;
	CHECK(net_init(&whole, &a) == 0);
	net_init_params(&whole, 40 + tag);
	float *x[NET_MAX_INPUTS] = { 0 };
	for (int k = 0; k < a.ninputs; k++) {
		x[k] = xmalloc(B * in_size(&a, k) * sizeof(float));
		fill_normal(x[k], B * in_size(&a, k), 100 + tag * 10 + k);
	}
	size_t per = net_logits_per_sample(&a);
	float *r = xmalloc(B * per * sizeof(float));
	fill_normal(r, B * per, 100 + tag * 10 + 9);
	uint32_t ids[B];
	for (int b = 0; b < B; b++)
		ids[b] = 1000 + 7 * (uint32_t)b;
	struct fwd_ctx ctx = { .reg = reg, .seed = 2024, .step = 9, .ids = ids };
	const float *in[NET_MAX_INPUTS] = { x[0], x[1] };
	net_forward(&whole, in, B, &ctx);
	net_zero_grad(&whole);
	net_backward(&whole, r, &ctx);

	struct dp_shared *sh = xmalloc(sizeof(*sh));
	pthread_barrier_init(&sh->bar, NULL, 2);
	struct dp_rank rk[2];
	pthread_t th[2];
	for (int k = 0; k < 2; k++) {
		memset(&rk[k], 0, sizeof(rk[k]));
		rk[k].sh = sh;
		rk[k].rank = k;
		CHECK(net_init(&rk[k].n, &a) == 0);
		memcpy(rk[k].n.params, whole.params, whole.nparams * sizeof(float));
		for (int i = 0; i < a.ninputs; i++)
			rk[k].x[i] = x[i] + (size_t)k * H * in_size(&a, i);
		rk[k].ids = ids + k * H;
		rk[k].r = r + (size_t)k * H * per;
		rk[k].B = k ? B - H : H;
		rk[k].global_B = B;
		rk[k].reg = reg;
		pthread_create(&th[k], NULL, dp_main, &rk[k]);
	}
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	pthread_barrier_destroy(&sh->bar);
	free(sh);
	for (int k = 0; k < 2; k++)
		CHECK_MSG(rk[k].reduces == want_reduces, "rank %d: %d reduces", k, rk[k].reduces);
	double worst = 0.0;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < (size_t)rk[k].B * per; i++) {
			float w = whole.logits[k * H * per + i];
			CHECK_NEAR(rk[k].n.logits[i], w, 1e-5 + 1e-5 * fabsf(w));
		}
	float gmax = 0.0f;
	for (size_t i = 0; i < whole.nparams; i++)
		gmax = fmaxf(gmax, fabsf(whole.grads[i]));
	for (size_t i = 0; i < whole.nparams; i++) {
		float s = rk[0].n.grads[i] + rk[1].n.grads[i], w = whole.grads[i];
		double d = fabs((double)s - w);
		worst = fmax(worst, d / (fabsf(w) + 1e-3 * gmax));
		CHECK_MSG(d <= 1e-4 * fabsf(w) + 1e-6 * gmax, "grad[%zu]: %.9g vs %.9g", i, s, w);
	}
	for (size_t i = 0; i < whole.nbuffers; i++)
		for (int k = 0; k < 2; k++)
			CHECK_NEAR(rk[k].n.buffers[i], whole.buffers[i],
				   1e-5 + 1e-5 * fabsf(whole.buffers[i]));
	printf("  ranks %u: worst gradient difference %.2e (relative)\n", tag, worst);
	for (int k = 0; k < 2; k++)
		net_release(&rk[k].n);
	for (int k = 0; k < a.ninputs; k++)
		free(x[k]);
	free(r);
	net_release(&whole);
}

static void test_rank_split(void)
{
	struct regularizer none = { 0 };
	struct regularizer all = { .input_noise = 0.3f, .hidden_noise = 0.5f, .dropout = 0.25f };
	/* forward: BN statistics (+ input noise means + hidden noise means);
	 * backward: hidden noise dots */
	dp_run(arch_conv3(), none, 1, 1, 8);
	dp_run(arch_conv3(), all, 4, 2, 8);
	dp_run(arch_late(), all, 4, 3, 8);
	dp_run(arch_seg2(), all, 4, 4, 8);
	struct regularizer aug = all;
	aug.hflip = 1;
	aug.scale_min = 0.8f;
	aug.scale_max = 1.25f;
	dp_run(arch_seg1(), aug, 4, 5, 8);
	/* a rank without samples still takes part in every reduce */
	dp_run(arch_late(), all, 4, 6, 16);
}

/* ---- memory ------------------------------------------------------------ */

/* Activations are carved once per batch size: the same buffers step after
 * step, and a smaller batch fits in them. */
static void test_acts_stable(void)
{
	struct net_arch a = arch_late();
	struct net n;
	CHECK(net_init(&n, &a) == 0);
	net_init_params(&n, 3);
	enum { B = 6 };
	float *x[2];
	for (int k = 0; k < 2; k++) {
		x[k] = xmalloc(B * in_size(&a, k) * sizeof(float));
		fill_normal(x[k], B * in_size(&a, k), 300 + k);
	}
	const float *in[2] = { x[0], x[1] };
	float dl[B * 4];
	fill_normal(dl, B * 4, 310);
	struct fwd_ctx ctx = { .reg = { .dropout = 0.1f, .hidden_noise = 0.2f }, .seed = 1 };
	net_forward(&n, in, B, &ctx);
	net_backward(&n, dl, &ctx);
	float *logits = n.logits;
	for (uint32_t s = 1; s < 4; s++) {
		ctx.step = s;
		net_forward(&n, in, B, &ctx);
		net_backward(&n, dl, &ctx);
		CHECK(n.logits == logits);
	}
	/* evaluation and a smaller batch fit; then the same buffers again */
	net_forward(&n, in, B, NULL);
	net_forward(&n, in, B - 2, &ctx);
	net_forward(&n, in, B, &ctx);
	CHECK(n.logits == logits);
	for (int k = 0; k < 2; k++)
		free(x[k]);
	net_release(&n);
}

/* ---- inputs: crops, flips ---------------------------------------------- */

/* A spectrogram wider than crop_w: evaluation sees the centre window, the
 * same logits as a model without crop given that window. */
static void test_time_crop(void)
{
	struct net_arch a = arch_conv3(), b = arch_conv3();
	a.crop_w[0] = 6;
	b.in[0].W = 6;
	struct net na, nb;
	CHECK(net_init(&na, &a) == 0);
	CHECK(net_init(&nb, &b) == 0);
	net_init_params(&na, 5);
	memcpy(nb.params, na.params, na.nparams * sizeof(float));
	enum { B = 3 };
	size_t n0 = in_size(&a, 0), n1 = in_size(&b, 0);
	float *x = xmalloc(B * n0 * sizeof(float)), *xc = xmalloc(B * n1 * sizeof(float));
	fill_normal(x, B * n0, 400);
	for (int s = 0; s < B * 12; s++)
		memcpy(xc + s * 6, x + s * 10 + 2, 6 * sizeof(float));
	const float *ia[1] = { x }, *ib[1] = { xc };
	net_forward(&na, ia, B, NULL);
	net_forward(&nb, ib, B, NULL);
	for (int i = 0; i < B * 3; i++)
		CHECK_NEAR(na.logits[i], nb.logits[i], 1e-6);
	/* training with random_crop: the window time_crop picks */
	struct fwd_ctx ctx = { .reg = { .random_crop = 1 }, .seed = 8, .step = 2 };
	net_forward(&na, ia, B, &ctx);
	time_crop(xc, x, B, 12, 10, 6, 1, 8, 2, NULL);
	net_forward(&nb, ib, B, &ctx);
	for (int i = 0; i < B * 3; i++)
		CHECK_NEAR(na.logits[i], nb.logits[i], 1e-6);
	free(x);
	free(xc);
	net_release(&na);
	net_release(&nb);
}

/* Flip / scale-crop: the forward equals one on inputs transformed by
 * augment_image with augment_params' draws, both modalities alike, and
 * net_augment_labels gives the matching label maps. */
static void test_augment(void)
{
	struct net_arch a = arch_seg2();
	struct net n;
	CHECK(net_init(&n, &a) == 0);
	net_init_params(&n, 6);
	enum { B = 4, H = 10, W = 12 };
	float *x[2], *xt[2];
	for (int k = 0; k < 2; k++) {
		size_t cnt = B * in_size(&a, k);
		x[k] = xmalloc(cnt * sizeof(float));
		xt[k] = xmalloc(cnt * sizeof(float));
		fill_normal(x[k], cnt, 500 + k);
	}
	uint32_t ids[B] = { 3, 9, 27, 81 };
	struct fwd_ctx ctx = { .reg = { .hflip = 1, .scale_min = 0.75f, .scale_max = 1.5f },
			       .seed = 31, .step = 4, .ids = ids };
	struct augment aug[B];
	augment_params(aug, B, 1, 0.75f, 1.5f, 31, 4, ids);
	int flips = 0;
	for (int b = 0; b < B; b++)
		flips += aug[b].flip;
	CHECK(flips > 0 && flips < B);
	for (int k = 0; k < 2; k++)
		augment_image(xt[k], x[k], aug, B, a.in[k].C, H, W);
	const float *in[2] = { x[0], x[1] }, *tin[2] = { xt[0], xt[1] };
	size_t nlog = B * net_logits_per_sample(&a);
	float *l1 = xmalloc(nlog * sizeof(float));
	struct fwd_ctx plain = { .seed = 31, .step = 4, .ids = ids };
	net_forward(&n, tin, B, &plain);
	memcpy(l1, n.logits, nlog * sizeof(float));
	net_forward(&n, in, B, &ctx);
	for (size_t i = 0; i < nlog; i++)
		CHECK_NEAR(n.logits[i], l1[i], 1e-5);
	int lab[B * H * W], got[B * H * W], want[B * H * W];
	for (int i = 0; i < B * H * W; i++)
		lab[i] = i % 5;
	net_augment_labels(&n, got, lab, 255);
	augment_labels(want, lab, aug, B, H, W, 255);
	CHECK(memcmp(got, want, sizeof(got)) == 0);
	/* without a transform, a copy */
	net_forward(&n, in, B, &plain);
	net_augment_labels(&n, got, lab, 255);
	CHECK(memcmp(got, lab, sizeof(got)) == 0);
	free(l1);
	for (int k = 0; k < 2; k++) {
		free(x[k]);
		free(xt[k]);
	}
	net_release(&n);
}

/* ---- layout, names, errors --------------------------------------------- */

static void test_tensors(void)
{
	struct net_arch a = arch_late();
	struct net n;
	CHECK(net_init(&n, &a) == 0);
	/* parameters tile params, buffers tile buffers, in order */
	size_t po = 0, bo = 0;
	int seen_buffer = 0;
	for (int i = 0; i < net_ntensors(&n); i++) {
		float *d;
		int nd, sh[4], isp;
		const char *name = net_tensor(&n, i, &d, &nd, sh, &isp);
		CHECK(name != NULL);
		size_t cnt = 1;
		for (int j = 0; j < nd; j++)
			cnt *= (size_t)sh[j];
		if (isp) {
			CHECK(!seen_buffer);
			CHECK(d == n.params + po);
			po += cnt;
		} else {
			seen_buffer = 1;
			CHECK(d == n.buffers + bo);
			bo += cnt;
		}
		CHECK(net_find_tensor(&n, name) == i);
	}
	CHECK(po == n.nparams);
	CHECK(bo == n.nbuffers);
	CHECK(net_tensor(&n, net_ntensors(&n), NULL, NULL, NULL, NULL) == NULL);
	CHECK(net_find_tensor(&n, "nope") == -1);
	/* fresh: BN gamma 1, running_var 1 */
	int i = net_find_tensor(&n, "branch0.stage1.0.bn1.weight");
	float *d;
	int nd, sh[4], isp;
	CHECK(i >= 0 && net_tensor(&n, i, &d, &nd, sh, &isp) && nd == 1 && sh[0] == 6 && d[0] == 1);
	i = net_find_tensor(&n, "branch1.stage0.bn.running_var");
	CHECK(i >= 0 && net_tensor(&n, i, &d, &nd, sh, &isp) && !isp && d[3] == 1);
	i = net_find_tensor(&n, "branch1.stage0.conv.weight");
	CHECK(i >= 0 && net_tensor(&n, i, &d, &nd, sh, &isp) && nd == 4 && sh[0] == 4 &&
	      sh[1] == 3 && sh[2] == 3 && sh[3] == 3);
	CHECK(net_nbn(&n) == 12);
	CHECK(strcmp(net_bn_name(&n, 0), "branch0.stem.bn") == 0);
	CHECK(net_bn_name(&n, 12) == NULL);
	/* init: within PyTorch's bounds, deterministic */
	net_init_params(&n, 5);
	i = net_find_tensor(&n, "head.4.weight");
	net_tensor(&n, i, &d, &nd, sh, &isp);
	float w0 = d[0], bound = 1.0f / sqrtf(7.0f);
	int inside = 1;
	for (int j = 0; j < sh[0] * sh[1]; j++)
		inside &= fabsf(d[j]) <= bound;
	CHECK(inside);
	net_init_params(&n, 5);
	CHECK(d[0] == w0);
	net_release(&n);
}

static void expect_error(struct net_arch a, const char *want)
{
	struct net n;
	capture_begin();
	int rc = net_init(&n, &a);
	char *msg = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strstr(msg, want) != NULL, "message '%s' lacks '%s'", msg, want);
	free(msg);
}

static void test_arch_errors(void)
{
	struct net_arch a = arch_conv3();
	a.ninputs = 3;
	expect_error(a, "3 inputs");
	a = arch_conv3();
	a.branch[0].nstage = 4; /* 12x10 cannot pool 4 times */
	a.branch[0].channels[2] = a.branch[0].channels[3] = 4;
	expect_error(a, "max pool");
	a = arch_late();
	a.branch[0].blocks = 0;
	expect_error(a, "blocks");
	a = arch_conv3();
	a.in[0].F = 2;
	expect_error(a, "frames");
	a = arch_seg2();
	a.in[1].H = 9;
	expect_error(a, "segmentation input 1");
	a = arch_conv3();
	a.crop_w[0] = 11;
	expect_error(a, "crop_w");
	a = arch_seg1();
	a.classes = 0;
	expect_error(a, "classes");
}

int main(void)
{
	RUN(test_tensors);
	RUN(test_arch_errors);
	RUN(test_torch_fixture);
	RUN(test_fd_conv3);
	RUN(test_fd_late);
	RUN(test_fd_seg);
	RUN(test_rank_split);
	RUN(test_acts_stable);
	RUN(test_time_crop);
	RUN(test_augment);
	return test_summary();
}
