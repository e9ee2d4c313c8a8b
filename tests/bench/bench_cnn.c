/*
 * bench_cnn.c - throughput of the convolutional models (net.h), for
 * tests/bench/run.sh; tests/bench/cnn_torch.py measures the same modules
 * (tests/fixtures/gen_net.py) in PyTorch.
 *
 *     bench_cnn MODEL THREADS ITERS REPEATS
 *         MODEL: ravdess_fusion | ravdess_teacher | vggsound_audio | nyu_rgbd
 *         prints  train <samples/s>   (zero grad + forward + loss + backward + SGD)
 *                 infer <samples/s>   (forward in evaluation mode)
 *     bench_cnn sgemm THREADS
 *         prints  gflops <GFLOP/s of a 1024^3 cblas_sgemm>
 *     bench_cnn flops MODEL
 *         prints  infer_gflop <convolution GFLOP per sample, a forward>
 *                 train_gflop <the same for a training step: forward, weight
 *                              gradient, input gradient where training has one>
 *     bench_cnn layers MODEL THREADS ITERS REPEATS
 *         each convolution layer of MODEL alone at the model's batch size:
 *         prints  sgemm <GFLOP/s of a 1024^3 cblas_sgemm, this process>
 *         then per layer
 *           layer NAME CxHxW OC k stride images dinp GFLOP fwd_gflops fb_gflops gemm_gflops
 *         dinp: 1 when training computes its input gradient; GFLOP: one forward; fwd_gflops: conv2d_forward; fb_gflops: forward
 *         + conv2d_backward (weight gradient, and the input gradient unless
 *         the layer reads a model input, as in training), FLOPs 2*M*N*K per
 *         GEMM; gemm_gflops: one cblas_sgemm of the forward's shape
 *         (OC x images*OH*OW x C*k*k) on ready-made columns, the bound an
 *         im2col convolution can reach.
 *
 * MKE_BENCH_ONLY=train (or infer) times only that half, for a profiler.
 * MKE_BENCH_WINOGRAD=0 turns the Winograd convolutions off (cnn.h), so
 * the im2col path can be timed beside them.
 * One warm-up step, then REPEATS timings of ITERS steps each; the median.
 * Wall time, or CPU time with MKE_BENCH_CLOCK=cpu (bench_time.h). THREADS
 * threads: a training pass that splits into whole batch-norm micro-batches
 * runs on THREADS threads over the batch (model_set_threads, one BLAS thread
 * each), and so does inference unless arch_of says otherwise; any other pass
 * on a BLAS of THREADS threads (openblas_set_num_threads): per pass, the
 * faster of the two as measured. MKE_BENCH_THREADS=blas or batch uses one of
 * the two for both passes, for the side-by-side comparison.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_time.h"
#include "cnn.h"
#include "model.h"
#include "net.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

void openblas_set_num_threads(int n);

static void fill(float *x, size_t n, uint32_t tag)
{
	struct rng r;
	rng_init(&r, 99, RNG_DATA, tag, 0);
	rng_fill_normal(&r, x, n);
}

/* The benchmarked architectures; *B is the batch size; *infer_blas 1 where
 * inference at 2 threads is faster on a 2-thread BLAS than over the batch
 * (docs/scaling.md "Threads inside a process"). 0, or -1 if unknown. */
static int arch_of(const char *name, struct net_arch *a, int *B, int *infer_blas)
{
	*infer_blas = 0;
	memset(a, 0, sizeof(*a));
	a->bn_micro = 8;
	a->bn_momentum = 0.1f;
	a->bn_eps = 1e-5f;
	if (strcmp(name, "ravdess_fusion") == 0 || strcmp(name, "ravdess_teacher") == 0) {
		int two = strcmp(name, "ravdess_fusion") == 0;
		a->task = NET_CLASSIFY;
		a->ninputs = two ? 2 : 1;
		for (int k = 0; k < a->ninputs; k++) {
			a->in[k] = (struct net_input){ 1, 1, 64, 64 };
			a->branch[k].type = NET_CONV3;
			a->branch[k].nstage = 3;
			a->branch[k].channels[0] = 32;
			a->branch[k].channels[1] = 64;
			a->branch[k].channels[2] = 128;
		}
		a->head_hidden = two ? 128 : 0;
		a->classes = 8;
		*B = 32;
	} else if (strcmp(name, "vggsound_audio") == 0) {
		a->task = NET_CLASSIFY;
		a->ninputs = 1;
		a->in[0] = (struct net_input){ 1, 1, 257, 500 };
		a->branch[0].type = NET_RESNET;
		a->branch[0].nstage = 4;
		a->branch[0].blocks = 1;
		for (int s = 0; s < 4; s++)
			a->branch[0].channels[s] = 32 << s;
		a->classes = 309;
		*B = 16;
	} else if (strcmp(name, "nyu_rgbd") == 0) {
		a->task = NET_SEGMENT;
		a->ninputs = 2;
		a->in[0] = (struct net_input){ 1, 3, 120, 160 };
		a->in[1] = (struct net_input){ 1, 1, 120, 160 };
		a->seg_nstage = 4;
		for (int s = 0; s < 4; s++)
			a->seg_channels[s] = 32 << s;
		a->classes = 40;
		*B = 8;
		/* inference over the batch: with im2col, 2 threads x 4 images
		 * ran slower than a 2-thread BLAS (each thread's columns, 22 MB
		 * an image for a 32-channel layer, crowding the shared L3); with
		 * the Winograd convolutions 10% faster (21.4 / 36.0 / 29.2
		 * against 18.8 / 32.8 / 26.2 samples/s, three interleaved
		 * rounds, 2026-11-26) */
		*infer_blas = 0;
	} else {
		return -1;
	}
	return 0;
}

/* GFLOP/s of an M x N x K sgemm, median of `reps` after one warm-up */
static double sgemm_rate(int M, int N, int K, int reps)
{
	float *a = xmalloc(sizeof(float) * M * K), *b = xmalloc(sizeof(float) * (size_t)K * N);
	float *c = xmalloc(sizeof(float) * (size_t)M * N);
	fill(a, (size_t)M * K, 1);
	fill(b, (size_t)K * N, 2);
	double t[16];
	for (int r = -1; r < reps; r++) {
		double t0 = bench_now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f,
			    c, N);
		if (r >= 0)
			t[r] = bench_now() - t0;
	}
	free(a);
	free(b);
	free(c);
	return 2.0 * M * N * K / bench_median(t, reps) * 1e-9;
}

/* median seconds of `repeats` timings of `iters` calls of one conv layer,
 * forward only (fb 0) or forward + backward */
static double time_conv(const struct conv2d_shape *s, int nb, int dinp, int fb, int iters,
			int repeats, float **buf, float *scratch)
{
	double t[64];
	for (int r = -1; r < repeats; r++) {
		int its = r < 0 ? 1 : iters;
		double t0 = bench_now();
		for (int i = 0; i < its; i++) {
			conv2d_forward(buf[1], buf[0], buf[2], NULL, s, nb, scratch);
			if (fb)
				conv2d_backward(dinp ? buf[3] : NULL, buf[4], NULL, buf[5], buf[0], buf[2], s,
						nb, scratch);
		}
		if (r >= 0)
			t[r] = bench_now() - t0;
	}
	return bench_median(t, repeats) / iters;
}

/* bench_cnn layers MODEL THREADS ITERS REPEATS */
static int bench_layers(const struct net *n, int B, int iters, int repeats)
{
	printf("sgemm %.1f\n", sgemm_rate(1024, 1024, 1024, 5));
	for (int i = 0; i < net_nconv(n); i++) {
		int nimg, dinp;
		const char *name;
		const struct conv2d_shape *s = net_conv(n, i, &nimg, &dinp, &name);
		int nb = B * nimg;
		size_t in = (size_t)nb * s->C * s->H * s->W, out = (size_t)nb * s->OC * s->OH * s->OW;
		size_t CK = (size_t)s->C * s->KH * s->KW, wn = (size_t)s->OC * CK;
		size_t sz[6] = { in, out, wn, in, wn, out };
		float *buf[6];
		for (int k = 0; k < 6; k++) {
			buf[k] = xmalloc(sizeof(float) * sz[k]);
			fill(buf[k], sz[k], 20 + (uint32_t)k);
		}
		size_t ns = conv2d_scratch(s, nb);
		float *scratch = xmalloc(sizeof(float) * (ns ? ns : 1));
		double flop = 2.0 * (double)out * (double)CK;
		double tf = time_conv(s, nb, dinp, 0, iters, repeats, buf, scratch);
		double tb = time_conv(s, nb, dinp, 1, iters, repeats, buf, scratch);
		double gemm = sgemm_rate(s->OC, (int)(out / (size_t)s->OC), (int)CK, 3);
		printf("layer %s %dx%dx%d %d %d %d %d %d %.3f %.1f %.1f %.1f\n", name, s->C, s->H,
		       s->W, s->OC, s->KH, s->stride, nb, dinp, flop * 1e-9, flop / tf * 1e-9,
		       flop * (dinp ? 3 : 2) / tb * 1e-9, gemm);
		for (int k = 0; k < 6; k++)
			free(buf[k]);
		free(scratch);
	}
	return 0;
}

/* the convolutions' FLOPs per sample (2*M*N*K per GEMM): a forward, and a
 * training step (forward, weight gradient, and the input gradient of every
 * layer that does not read a model input) */
static void print_flops(const struct net *n)
{
	double inf = 0.0, train = 0.0;
	for (int i = 0; i < net_nconv(n); i++) {
		int nimg, dinp;
		const char *name;
		const struct conv2d_shape *s = net_conv(n, i, &nimg, &dinp, &name);
		double f = 2.0 * nimg * s->OC * s->OH * s->OW * (double)(s->C * s->KH * s->KW);
		inf += f;
		train += f * (dinp ? 3 : 2);
	}
	printf("infer_gflop %.4f\ntrain_gflop %.4f\n", inf * 1e-9, train * 1e-9);
}

static void bench_sgemm(void)
{
	enum { N = 1024 };
	float *a = xmalloc(sizeof(float) * N * N), *b = xmalloc(sizeof(float) * N * N);
	float *c = xmalloc(sizeof(float) * N * N);
	fill(a, (size_t)N * N, 1);
	fill(b, (size_t)N * N, 2);
	double t[5];
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
	for (int r = 0; r < 5; r++) {
		double t0 = bench_now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f,
			    c, N);
		t[r] = bench_now() - t0;
	}
	printf("gflops %.1f\n", 2.0 * N * N * N / bench_median(t, 5) * 1e-9);
	free(a);
	free(b);
	free(c);
}

int main(int argc, char **argv)
{
	const char *wino = getenv("MKE_BENCH_WINOGRAD");
	if (wino && strcmp(wino, "0") == 0)
		conv2d_winograd_enable(0);
	if (argc >= 3 && strcmp(argv[1], "sgemm") == 0) {
		openblas_set_num_threads(atoi(argv[2]));
		bench_sgemm();
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "flops") == 0) {
		struct net_arch fa;
		struct net fn;
		int fb, fi;
		if (arch_of(argv[2], &fa, &fb, &fi) != 0 || net_init(&fn, &fa) != 0) {
			fprintf(stderr, "bench_cnn: unknown model %s\n", argv[2]);
			return 2;
		}
		print_flops(&fn);
		net_release(&fn);
		return 0;
	}
	int layers = argc == 6 && strcmp(argv[1], "layers") == 0;
	if (layers) {
		argv++;
		argc--;
	}
	if (argc != 5) {
		fprintf(stderr, "usage: bench_cnn [layers] MODEL THREADS ITERS REPEATS | "
				"bench_cnn sgemm THREADS\n");
		return 2;
	}
	int threads = atoi(argv[2]), iters = atoi(argv[3]), repeats = atoi(argv[4]);
	if (threads < 1 || iters < 1 || repeats < 1 || repeats > 64) {
		fprintf(stderr, "bench_cnn: bad THREADS/ITERS/REPEATS\n");
		return 2;
	}
	openblas_set_num_threads(threads);
	struct net_arch a;
	int B, infer_blas;
	if (arch_of(argv[1], &a, &B, &infer_blas) != 0) {
		fprintf(stderr, "bench_cnn: unknown model %s\n", argv[1]);
		return 2;
	}
	struct model m;
	if (model_init_net(&m, &a) != 0)
		return 1;
	model_init_params(&m, 1);
	if (layers) {
		int rc = bench_layers(&m.net, B, iters, repeats);
		model_release(&m);
		return rc;
	}
	/* THREADS > 1: threads over the batch (model_set_threads, one BLAS
	 * thread each) where the pass splits, else a BLAS of THREADS threads;
	 * MKE_BENCH_THREADS=blas (or batch) forces one policy for both passes */
	const char *pol = getenv("MKE_BENCH_THREADS");
	int blas_only = pol && strcmp(pol, "blas") == 0;
	int batch_only = pol && strcmp(pol, "batch") == 0;
	/* training splits into whole micro-batches, or one micro-batch into
	 * slices of samples with batch norm's sums shared (model.c) */
	int tsplit = threads > 1 && !blas_only &&
		     (batch_only || B >= 2 * a.bn_micro || (B <= a.bn_micro && B >= threads));
	int isplit = threads > 1 && !blas_only && (batch_only || !infer_blas);
	if (threads > 1 && !blas_only && model_set_threads(&m, threads) != 0)
		return 1;

	float *x[NET_MAX_INPUTS] = { 0 };
	const float *in[NET_MAX_INPUTS] = { 0 };
	for (int k = 0; k < a.ninputs; k++) {
		size_t per = (size_t)a.in[k].F * a.in[k].C * a.in[k].H * a.in[k].W;
		x[k] = xmalloc(sizeof(float) * per * B);
		fill(x[k], per * B, 10 + (uint32_t)k);
		in[k] = x[k];
	}
	size_t nlab = a.task == NET_SEGMENT ? (size_t)B * a.in[0].H * a.in[0].W : (size_t)B;
	int *labels = xmalloc(sizeof(int) * nlab);
	for (size_t i = 0; i < nlab; i++)
		labels[i] = (int)((i * 2654435761u) % (unsigned)a.classes);
	struct batch_targets tg = { .labels = a.task == NET_SEGMENT ? NULL : labels,
				    .maps = a.task == NET_SEGMENT ? labels : NULL };
	float scale = a.task == NET_SEGMENT ? 1.0f / ((float)B * a.in[0].H * a.in[0].W)
					    : 1.0f / (float)B;

	struct optim o;
	struct optim_config oc = { .kind = OPTIM_SGD, .lr = 0.01f };
	optim_init(&o, &oc, m.nparams);
	struct fwd_ctx ctx = { .seed = 1 };
	double t[64];

	/* MKE_BENCH_ONLY=train or infer runs one of the two (for a profiler) */
	const char *only = getenv("MKE_BENCH_ONLY");
	int do_train = !only || strcmp(only, "infer") != 0;
	int do_infer = !only || strcmp(only, "train") != 0;

	/* training steps */
	openblas_set_num_threads(tsplit ? 1 : threads);
	for (int r = -1; do_train && r < repeats; r++) {
		int its = r < 0 ? 1 : iters; /* r = -1: warm-up */
		double t0 = bench_now();
		for (int i = 0; i < its; i++) {
			ctx.step = (uint32_t)i;
			model_zero_grad(&m);
			model_forward(&m, in, B, &ctx);
			model_loss_backward(&m, &tg, LOSS_CE, scale, &ctx);
			optim_step(&o, m.params, m.grads);
		}
		if (r >= 0)
			t[r] = bench_now() - t0;
	}
	if (do_train)
		printf("train %.2f\n", (double)B * iters / bench_median(t, repeats));

	/* inference */
	openblas_set_num_threads(isplit ? 1 : threads);
	for (int r = -1; do_infer && r < repeats; r++) {
		int its = r < 0 ? 1 : iters;
		double t0 = bench_now();
		for (int i = 0; i < its; i++)
			model_forward(&m, in, B, NULL);
		if (r >= 0)
			t[r] = bench_now() - t0;
	}
	if (do_infer)
		printf("infer %.2f\n", (double)B * iters / bench_median(t, repeats));

	optim_release(&o);
	for (int k = 0; k < a.ninputs; k++)
		free(x[k]);
	free(labels);
	model_release(&m);
	return 0;
}
