/*
 * test_threads.c - a net model on T threads (model_set_threads) against the
 * same model on one: the same parameters and inputs give the same logits,
 * loss, gradients (accumulated onto what m->grads held), batch-norm running
 * statistics and evaluation logits, and make the same calls of the caller's
 * reduce, for each family of model (conv3 with one and two inputs, resnet +
 * video, rgbd_seg with flips and scale-crops), with and without noise and
 * dropout, for even and uneven splits, one whose slices outnumber the
 * micro-batches, a single micro-batch cut over the threads (batch norm's
 * sums shared), and a batch too small to split. Also the pool (par.h) alone,
 * and a segmenter's model_probs against a softmax in double.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "net.h"
#include "par.h"
#include "rng.h"
#include "archs.h"
#include "test.h"
#include "util.h"

static void fill_normal(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 4321, RNG_DATA, tag, 1);
	rng_fill_normal(&r, x, n);
}

static size_t in_size(const struct net_arch *a, int k)
{
	const struct net_input *i = &a->in[k];
	return (size_t)i->F * i->C * i->H * i->W;
}

static struct net_arch arch_conv3(int ninputs)
{
	struct net_arch a = { .task = NET_CLASSIFY, .ninputs = ninputs, .classes = 3,
			      .bn_micro = 8, .head_hidden = ninputs > 1 ? 5 : 0 };
	for (int k = 0; k < ninputs; k++) {
		a.in[k] = (struct net_input){ 1, 1, 12, 10 };
		a.branch[k] = (struct net_branch){ .type = NET_CONV3, .nstage = 2,
						   .channels = { 4, 6 } };
	}
	return a;
}

static struct net_arch arch_late(void)
{
	return arch_late_micro(8);
}

static struct net_arch arch_seg(void)
{
	struct net_arch a = { .task = NET_SEGMENT, .ninputs = 2, .classes = 5, .seg_nstage = 3,
			      .seg_channels = { 4, 6, 8 }, .bn_micro = 8 };
	a.in[0] = (struct net_input){ 1, 3, 8, 12 };
	a.in[1] = (struct net_input){ 1, 1, 8, 12 };
	return a;
}

/* the caller's reduce: one rank (sums stay), counting the calls */
static void count_reduce(double *vals, int n, void *arg)
{
	(void)vals;
	(void)n;
	(*(int *)arg)++;
}

/* The largest |x[i]| */
static float max_abs(const float *x, size_t n)
{
	float m = 0.0f;
	for (size_t i = 0; i < n; i++)
		m = fmaxf(m, fabsf(x[i]));
	return m;
}

struct side {
	struct model m;
	int reduces;
};

/* Two training steps and an evaluation of model a on 1 and T threads;
 * every result compared. multilabel: the classify arch trained as
 * multilabel with soft targets; ids: give sample ids (else row indices). */
static void run(struct net_arch a, int T, int B, struct regularizer reg, int multilabel,
		int ids_given, uint32_t tag)
{
	struct side s[2];
	for (int k = 0; k < 2; k++) {
		memset(&s[k], 0, sizeof(s[k]));
		CHECK(model_init_net(&s[k].m, &a) == 0);
		model_init_params(&s[k].m, 5 + tag);
		if (multilabel)
			s[k].m.task = TASK_MULTILABEL;
	}
	CHECK(model_set_threads(&s[1].m, T) == 0);
	CHECK(model_threads(&s[1].m) == T);
	struct model *m0 = &s[0].m;
	size_t per = m0->out_dim, np = m0->nparams;
	float *x[NET_MAX_INPUTS] = { 0 };
	const float *in[NET_MAX_INPUTS] = { 0 };
	for (int k = 0; k < a.ninputs; k++) {
		x[k] = xmalloc((size_t)B * in_size(&a, k) * sizeof(float));
		fill_normal(x[k], (size_t)B * in_size(&a, k), tag * 10 + k);
		in[k] = x[k];
	}
	int *labels = xmalloc((size_t)B * sizeof(int));
	float *soft = xmalloc((size_t)B * a.classes * sizeof(float));
	int *maps = NULL;
	for (int b = 0; b < B; b++)
		labels[b] = (b * 7 + (int)tag) % a.classes;
	for (int i = 0; i < B * a.classes; i++)
		soft[i] = (float)((i * 37 + (int)tag) % 11) / 10.0f;
	if (m0->map_hw) {
		maps = xmalloc((size_t)B * m0->map_hw * sizeof(int));
		for (int i = 0; i < B * m0->map_hw; i++)
			maps[i] = (i * 13 + i / 7) % (a.classes + 1) - 1; /* -1: ignored */
	}
	struct batch_targets tg = { .labels = multilabel ? NULL : labels,
				    .soft = multilabel ? soft : NULL, .maps = maps };
	uint32_t *ids = xmalloc((size_t)B * sizeof(uint32_t));
	for (int b = 0; b < B; b++)
		ids[b] = 500 + 3 * (uint32_t)b;

	for (uint32_t step = 0; step < 2; step++) {
		double loss[2];
		long count[2];
		for (int k = 0; k < 2; k++) {
			struct fwd_ctx ctx = { .reg = reg, .seed = 77, .step = step,
					       .ids = ids_given ? ids : NULL,
					       .reduce = count_reduce, .reduce_arg = &s[k].reduces };
			struct model *m = &s[k].m;
			/* gradients accumulate onto what is there */
			for (size_t i = 0; i < np; i++)
				m->grads[i] = 0.01f * (float)(i % 5);
			model_forward(m, in, B, &ctx);
			count[k] = model_loss_count(m, &tg, B);
			float scale = m0->map_hw ? 1.0f / (float)(count[k] > 0 ? count[k] : 1)
						 : 1.0f / (float)B;
			loss[k] = model_loss_backward(m, &tg, LOSS_CE, scale, &ctx);
		}
		const float *l0 = model_logits(&s[0].m), *l1 = model_logits(&s[1].m);
		float lmax = max_abs(l0, (size_t)B * per);
		int bad = 0;
		for (size_t i = 0; i < (size_t)B * per; i++)
			bad += fabsf(l0[i] - l1[i]) > 1e-5f * lmax;
		CHECK_MSG(bad == 0, "tag %u step %u: %d logits differ", tag, step, bad);
		CHECK(count[0] == count[1]);
		CHECK_REL(loss[0], loss[1], 1e-5);
		CHECK_MSG(s[0].reduces == s[1].reduces, "tag %u: %d vs %d reduces", tag,
			  s[0].reduces, s[1].reduces);
		float gmax = max_abs(s[0].m.grads, np);
		bad = 0;
		double worst = 0.0;
		for (size_t i = 0; i < np; i++) {
			double d = fabs((double)s[0].m.grads[i] - s[1].m.grads[i]);
			worst = fmax(worst, d / gmax);
			bad += d > 1e-4 * gmax;
		}
		CHECK_MSG(bad == 0, "tag %u step %u: %d gradients differ (worst %.2g of the largest)",
			  tag, step, bad, worst);
		const struct net *n0 = &s[0].m.net, *n1 = &s[1].m.net;
		bad = 0;
		for (size_t i = 0; i < n0->nbuffers; i++)
			bad += fabsf(n0->buffers[i] - n1->buffers[i]) >
			       1e-5f * (1.0f + fabsf(n0->buffers[i]));
		CHECK_MSG(bad == 0, "tag %u step %u: %d running statistics differ", tag, step, bad);
		CHECK(n0->bn_batches == n1->bn_batches);
		/* the optimizer's step: the replicas must see the new parameters */
		for (int k = 0; k < 2; k++)
			for (size_t i = 0; i < np; i++)
				s[k].m.params[i] -= 0.05f * s[k].m.grads[i];
	}
	/* running statistics set from outside (a checkpoint): evaluation uses them */
	for (int k = 0; k < 2; k++) {
		struct net *n = &s[k].m.net;
		for (size_t i = 0; i < n->nbuffers; i++)
			n->buffers[i] += 0.1f * (float)(i % 3);
		model_forward(&s[k].m, in, B, NULL);
	}
	const float *e0 = model_logits(&s[0].m), *e1 = model_logits(&s[1].m);
	float emax = max_abs(e0, (size_t)B * per);
	int bad = 0;
	for (size_t i = 0; i < (size_t)B * per; i++)
		bad += fabsf(e0[i] - e1[i]) > 1e-5f * emax;
	CHECK_MSG(bad == 0, "tag %u: %d evaluation logits differ", tag, bad);

	for (int k = 0; k < a.ninputs; k++)
		free(x[k]);
	free(labels);
	free(soft);
	free(maps);
	free(ids);
	for (int k = 0; k < 2; k++)
		model_release(&s[k].m);
}

static const struct regularizer none = { 0 };
static const struct regularizer all = { .input_noise = 0.3f, .hidden_noise = 0.5f,
					.dropout = 0.25f };

static void test_conv3_one_input(void)
{
	run(arch_conv3(1), 2, 24, none, 0, 0, 1);   /* slices 8 + 16 */
	run(arch_conv3(1), 2, 24, all, 0, 1, 2);
	run(arch_conv3(1), 3, 24, all, 0, 0, 3);    /* 8 + 8 + 8 */
	run(arch_conv3(1), 2, 20, all, 1, 1, 4);    /* a partial micro-batch last */
}

static void test_conv3_two_inputs(void)
{
	run(arch_conv3(2), 2, 16, none, 0, 1, 11);
	run(arch_conv3(2), 2, 24, all, 0, 0, 12);
}

static void test_resnet_video(void)
{
	run(arch_late(), 2, 24, all, 0, 1, 21);
	/* four threads, two micro-batches: two threads with empty slices */
	run(arch_late(), 4, 16, all, 0, 0, 22);
}

/* every regularizer and the image augmentations (flips, scale-crops) */
static struct regularizer all_aug(void)
{
	struct regularizer aug = all;
	aug.hflip = 1;
	aug.scale_min = 0.8f;
	aug.scale_max = 1.25f;
	return aug;
}

static void test_rgbd_seg(void)
{
	struct regularizer aug = all_aug();
	run(arch_seg(), 2, 24, none, 0, 0, 31);
	run(arch_seg(), 2, 20, aug, 0, 1, 32);
}

/* One micro-batch of at least T samples: its samples over the threads,
 * batch norm's sums across them (struct bn_split); even and uneven slices,
 * every family, the fused batch norm + pool of conv3 and rgbd_seg. */
static void test_split_micro_batch(void)
{
	run(arch_conv3(1), 2, 8, all, 0, 1, 41);    /* 4 + 4 */
	run(arch_conv3(1), 2, 5, all, 0, 0, 42);    /* 2 + 3 */
	run(arch_conv3(1), 3, 7, none, 0, 0, 43);   /* 2 + 2 + 3 */
	run(arch_conv3(2), 4, 8, all, 1, 1, 44);
	run(arch_late(), 2, 8, all, 0, 1, 45);
	run(arch_seg(), 2, 8, all_aug(), 0, 1, 46);
	run(arch_seg(), 3, 6, none, 0, 0, 47);
}

/* Fewer samples than threads in one micro-batch: the model runs unsplit,
 * on m->net (evaluation splits). */
static void test_unsplit(void)
{
	run(arch_conv3(1), 4, 3, all, 0, 1, 48);
	struct net_arch a = arch_conv3(1);
	struct model m;
	CHECK(model_init_net(&m, &a) == 0);
	CHECK(model_set_threads(&m, 2) == 0);
	float x[8 * 120] = { 0 };
	const float *in[1] = { x };
	struct fwd_ctx ctx = { .seed = 1 };
	model_forward(&m, in, 1, &ctx);
	CHECK(model_logits(&m) == m.net.logits);
	model_forward(&m, in, 8, &ctx);
	CHECK(model_logits(&m) != m.net.logits); /* split over the micro-batch */
	model_forward(&m, in, 8, NULL);
	CHECK(model_logits(&m) != m.net.logits);
	CHECK(model_set_threads(&m, 0) != 0);
	CHECK(model_set_threads(&m, 1) == 0 && model_threads(&m) == 1);
	model_release(&m);
}

/* model_probs of a segmenter (blocks of 64 pixels, exp_sub) against each
 * pixel's softmax in double, on maps of 8x12 (a block and a partial one)
 * and 16x16, logits spread over +-40 so the max shift matters */
static void test_seg_probs(void)
{
	for (int v = 0; v < 2; v++) {
		struct net_arch a = arch_seg();
		a.in[0].H = a.in[1].H = 8 + 8 * v;
		a.in[0].W = a.in[1].W = 12 + 4 * v;
		struct model m;
		CHECK(model_init_net(&m, &a) == 0);
		model_init_params(&m, 3);
		int B = 3, K = a.classes, HW = m.map_hw;
		float *x[2], *probs = xmalloc(sizeof(float) * (size_t)B * K * HW);
		const float *in[2];
		for (int k = 0; k < 2; k++) {
			x[k] = xmalloc((size_t)B * in_size(&a, k) * sizeof(float));
			fill_normal(x[k], (size_t)B * in_size(&a, k), 60 + (uint32_t)k);
			in[k] = x[k];
		}
		model_forward(&m, in, B, NULL);
		float *lg = (float *)model_logits(&m);
		for (size_t i = 0; i < (size_t)B * K * HW; i++)
			lg[i] = 40.0f * sinf((float)i * 0.37f) + lg[i];
		model_probs(&m, probs, B);
		int bad = 0;
		for (int b = 0; b < B; b++)
			for (int p = 0; p < HW; p++) {
				const float *z = lg + (size_t)b * K * HW + p;
				double mx = z[0], s = 0.0;
				for (int k = 1; k < K; k++)
					mx = fmax(mx, z[(size_t)k * HW]);
				for (int k = 0; k < K; k++)
					s += exp(z[(size_t)k * HW] - mx);
				for (int k = 0; k < K; k++) {
					double want = exp(z[(size_t)k * HW] - mx) / s;
					double got = probs[((size_t)b * K + k) * HW + p];
					/* float's rounding of z - max, times its size */
					double tol = 4e-7 * (1.0 + mx - z[(size_t)k * HW]) * want;
					bad += fabs(got - want) > tol + 1e-37;
				}
			}
		CHECK_MSG(bad == 0, "map %d: %d probabilities off", v, bad);
		for (int k = 0; k < 2; k++)
			free(x[k]);
		free(probs);
		model_release(&m);
	}
}

/* The pool alone: every thread runs the job, barriers hold, reduces sum in
 * thread order and call the outer reduce once each. */
struct pool_job {
	struct par_pool *p;
	int ran[4];
	double got[4][3];
	int outer;
};

static void outer_double(double *vals, int n, void *arg)
{
	for (int i = 0; i < n; i++)
		vals[i] *= 2.0;
	(*(int *)arg)++;
}

static void pool_fn(void *arg, int t)
{
	struct pool_job *j = arg;
	j->ran[t]++;
	for (int r = 0; r < 5; r++) {
		double v[3] = { t, 1.0, r };
		par_reduce(j->p, t, v, 3, outer_double, &j->outer);
		if (r == 4)
			memcpy(j->got[t], v, sizeof(v));
	}
}

static void test_pool(void)
{
	struct pool_job j;
	memset(&j, 0, sizeof(j));
	j.p = par_new(4);
	CHECK(par_threads(j.p) == 4);
	for (int k = 0; k < 3; k++)
		par_run(j.p, pool_fn, &j);
	for (int t = 0; t < 4; t++) {
		CHECK(j.ran[t] == 3);
		CHECK(j.got[t][0] == 2.0 * (0 + 1 + 2 + 3));
		CHECK(j.got[t][1] == 2.0 * 4);
		CHECK(j.got[t][2] == 2.0 * 4 * 4);
	}
	CHECK(j.outer == 3 * 5);
	par_free(j.p);
}

int main(void)
{
	RUN(test_pool);
	RUN(test_conv3_one_input);
	RUN(test_conv3_two_inputs);
	RUN(test_resnet_video);
	RUN(test_rgbd_seg);
	RUN(test_split_micro_batch);
	RUN(test_unsplit);
	RUN(test_seg_probs);
	return test_summary();
}
