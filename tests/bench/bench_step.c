/*
 * bench_step.c - micro-benchmarks of the network engine, for tests/bench/run.sh.
 *
 * Prints one line per measurement, medians over repeats:
 *     step <model> <regularizer> <microseconds per training step>
 *     gflops <kernel> <GFLOP/s>
 * A training step is what train_mlp does per full-batch epoch of the TwoMoon
 * protocol: zero the gradients, forward with the regularizer, double-softmax
 * loss and backward, one SGD step, on 270 rows. um_h32_1in_dense repeats the
 * UM student's rows without noise in the layers on the dense path (nn.h
 * mlp_piecewise_enable), beside the piecewise-linear one it takes by
 * default. Times are the thread's CPU time, so a busy machine inflates them
 * less than wall time would.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn.h"
#include "rng.h"
#include "util.h"

#include "bench_time.h"

enum { ROWS = 270, REPEATS = 7 };

/* CPU time of this thread: the machine may be shared, and a step is CPU-bound */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 99, RNG_DATA, tag, 0);
	rng_fill_normal(&r, x, n);
}

struct model {
	const char *name;
	int in, hidden;
};

static void bench_steps(const struct model *md, const char *rname, struct regularizer reg,
			int steps)
{
	struct mlp_arch a = { 0 };
	a.nbranch = 1;
	a.in_dim[0] = md->in;
	a.depth = 2;
	a.hidden[0] = a.hidden[1] = md->hidden;
	a.classes = 2;
	struct mlp m;
	if (mlp_init(&m, &a) != 0)
		exit(1);
	mlp_init_params(&m, 1);
	float *x = xmalloc(sizeof(float) * ROWS * (size_t)md->in);
	int labels[ROWS];
	uint32_t ids[ROWS];
	fill(x, (size_t)ROWS * md->in, 1);
	for (int i = 0; i < ROWS; i++) {
		labels[i] = x[(size_t)i * md->in] > 0;
		ids[i] = (uint32_t)i;
	}
	struct optim o;
	struct optim_config oc = { .kind = OPTIM_SGD, .lr = 0.01f };
	optim_init(&o, &oc, m.nparams);
	const float *in[1] = { x };
	double t[REPEATS];
	for (int r = 0; r < REPEATS; r++) {
		double t0 = now();
		for (int s = 0; s < steps; s++) {
			struct fwd_ctx ctx = { .reg = reg, .seed = 7, .step = (uint32_t)(r * steps + s),
					       .ids = ids, .global_batch = ROWS };
			mlp_zero_grad(&m);
			mlp_forward(&m, in, ROWS, &ctx);
			mlp_loss_backward(&m, labels, NULL, LOSS_DOUBLE_SOFTMAX, 1.0f / ROWS, &ctx);
			optim_step(&o, m.params, m.grads);
		}
		t[r] = (now() - t0) / steps * 1e6;
	}
	printf("step %s %s %.2f\n", md->name, rname, bench_median(t, REPEATS));
	optim_release(&o);
	mlp_release(&m);
	free(x);
}

/* GFLOP/s of one kernel call repeated */
static void bench_gemm(const char *name, int which, int B, int C, int OC, int calls)
{
	size_t nin = (size_t)B * C, nw = (size_t)OC * C, nout = (size_t)B * OC;
	float *inp = xmalloc(nin * sizeof(float)), *w = xmalloc(nw * sizeof(float));
	float *out = xmalloc(nout * sizeof(float)), *dw = xmalloc(nw * sizeof(float));
	float *din = xmalloc(nin * sizeof(float));
	fill(inp, nin, 2);
	fill(w, nw, 3);
	fill(out, nout, 4);
	memset(dw, 0, nw * sizeof(float));
	memset(din, 0, nin * sizeof(float));
	double t[REPEATS];
	for (int r = 0; r < REPEATS; r++) {
		double t0 = now();
		for (int i = 0; i < calls; i++) {
			if (which == 0) /* row-major forward, the layer before this engine */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, C, 1.0f, inp,
					    C, w, C, 0.0f, out, OC);
			else if (which == 1) /* feature-major forward (inp is (C,B)) */
				linear_forward_fm(out, inp, w, NULL, B, C, OC, 0);
			else /* feature-major backward: dinp and dweight */
				linear_backward_fm(din, dw, NULL, out, inp, w, B, C, OC);
		}
		double flops = 2.0 * B * C * OC * (which == 2 ? 2 : 1) * calls;
		t[r] = flops / (now() - t0) * 1e-9;
	}
	printf("gflops %s %.1f\n", name, bench_median(t, REPEATS));
	free(inp), free(w), free(out), free(dw), free(din);
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 400;
	if (steps <= 0)
		steps = 400;
	static const struct model models[] = { { "mm_h16_2in", 2, 16 }, { "um_h32_1in", 1, 32 } };
	static const struct {
		const char *name;
		struct regularizer reg;
	} regs[] = {
		{ "none", { .input_noise = 0 } },
		{ "input_noise_1", { .input_noise = 1 } },
		{ "hidden_noise_5", { .hidden_noise = 5 } },
		{ "dropout_0.5", { .dropout = 0.5f } },
	};
	/* argv[2], if given, picks one "model/regularizer" (for profiling) */
	const char *only = argc > 2 ? argv[2] : NULL;
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		for (size_t j = 0; j < sizeof(regs) / sizeof(regs[0]); j++) {
			char name[64];
			snprintf(name, sizeof name, "%s/%s", models[i].name, regs[j].name);
			if (!only || strcmp(only, name) == 0)
				bench_steps(&models[i], regs[j].name, regs[j].reg, steps);
		}
	if (only)
		return 0;
	/* the UM student's rows where it trains piecewise-linearly, again on the
	 * dense path: the two side by side */
	mlp_piecewise_enable(0);
	static const struct model dense = { "um_h32_1in_dense", 1, 32 };
	for (size_t j = 0; j < 2; j++)
		bench_steps(&dense, regs[j].name, regs[j].reg, steps);
	mlp_piecewise_enable(1);
	bench_gemm("sgemm_rowmajor_270x32x32", 0, 270, 32, 32, 20000);
	bench_gemm("sgemm_256x256x256", 0, 256, 256, 256, 200);
	bench_gemm("fm_forward_272x32x32", 1, 272, 32, 32, 20000);
	bench_gemm("fm_backward_272x32x32", 2, 272, 32, 32, 10000);
	bench_gemm("fm_forward_272x16x16", 1, 272, 16, 16, 40000);
	return 0;
}
