/*
 * dp_train.c - data-parallel scaling of the student phase on a convolutional
 * model: train.c's train_model with the worker's MPI hooks (worker/dp_mpi.c),
 * the code path of every mke-worker rank, on synthetic data.
 *
 *   mpirun -np P mpi_dp_train STEPS [PROFILE]
 *
 * The model is the VGGSound audio CNN of docs/models.md (bench_cnn's
 * vggsound_audio): a resnet branch [32,64,128,256] of one basic block per
 * stage on a 1x257x500 spectrogram, 309 classes, batch-norm statistics over
 * micro-batches of 8, global batch 16 (8 a rank at P = 2), AdamW. One warm-up
 * step, then STEPS steps, timed from a barrier to the slowest rank's return;
 * the step count is an argument, the same on every rank, so no rank stops on
 * its own clock. PROFILE = 1 puts a barrier before every hook call and times
 * it apart from the reduction: the barrier is the wait for the slower rank
 * (imbalance, or a rank not scheduled), the rest is the reduction itself.
 *
 * Prints on rank 0:
 *   dp_train WORLD STEPS WALL_S PARAMS
 *   dp_rank R COMPUTE_CPU_S ALLREDUCE_S REDUCE_S WAIT_S ALLREDUCE_CALLS REDUCE_CALLS
 * (COMPUTE_CPU_S: the rank's process CPU time during the timed steps outside
 * the hooks; the other times are wall seconds inside them.)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "dp_mpi.h"
#include "model.h"
#include "rng.h"
#include "train.h"
#include "util.h"

void openblas_set_num_threads(int n);

enum { BATCH = 16, CLASSES = 309, H = 257, W = 500 };

/* the hooks' time, per rank */
struct prof {
	int barrier;
	double allreduce_s, reduce_s, wait_s, hook_cpu_s;
	long allreduce_n, reduce_n;
};

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wait for every rank first when profiling; that wait is counted apart. */
static void prof_wait(struct prof *p)
{
	if (!p->barrier)
		return;
	double t = MPI_Wtime();
	MPI_Barrier(MPI_COMM_WORLD);
	p->wait_s += MPI_Wtime() - t;
}

/* The hooks, timed: wall time of the wait and of the reduction, and the CPU
 * time spent inside them (Open MPI spins while it waits), so that the rest of
 * a rank's CPU time is its share of the compute. */
static void timed_allreduce(float *buf, size_t n, void *arg)
{
	struct prof *p = arg;
	double c = cpu_seconds();
	prof_wait(p);
	double t = MPI_Wtime();
	dp_mpi_allreduce(buf, n, NULL);
	p->allreduce_s += MPI_Wtime() - t;
	p->allreduce_n++;
	p->hook_cpu_s += cpu_seconds() - c;
}

static void timed_reduce(double *vals, int n, void *arg)
{
	struct prof *p = arg;
	double c = cpu_seconds();
	prof_wait(p);
	double t = MPI_Wtime();
	dp_mpi_reduce(vals, n, NULL);
	p->reduce_s += MPI_Wtime() - t;
	p->reduce_n++;
	p->hook_cpu_s += cpu_seconds() - c;
}

/* The VGGSound audio student: one resnet branch on a spectrogram. */
static int audio_model(struct model *m, struct run_config *c, struct model_spec *ms)
{
	memset(c, 0, sizeof *c);
	memset(ms, 0, sizeof *ms);
	c->task = TASK_CLASSIFY;
	c->classes = CLASSES;
	c->mod[0].kind = MOD_AUDIO;
	ms->name = "vggsound_audio";
	ms->type = MODEL_CNN;
	ms->ninputs = 1;
	ms->cbranch[0].type = NET_RESNET;
	ms->cbranch[0].nstage = 4;
	ms->cbranch[0].blocks = 1;
	for (int s = 0; s < 4; s++)
		ms->cbranch[0].channels[s] = 32 << s;
	ms->bn_micro = 8;
	struct model_shapes in = {.ninputs = 1, .shape = {{1, 1, H, W}}};
	if (model_init(m, c, ms, &in) != 0)
		return -1;
	model_init_params(m, 1);
	return 0;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	openblas_set_num_threads(1);
	int steps = argc > 1 ? atoi(argv[1]) : 3;
	struct prof prof = {.barrier = argc > 2 && atoi(argv[2]) == 1};
	if (steps < 1 || steps > 1000) {
		fprintf(stderr, "usage: mpirun -np P mpi_dp_train STEPS [PROFILE]\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	struct dp_hooks dp = dp_mpi_hooks();
	dp.allreduce = timed_allreduce;
	dp.reduce = timed_reduce;
	dp.arg = &prof;

	struct run_config c;
	struct model_spec ms;
	struct model m;
	if (audio_model(&m, &c, &ms) != 0)
		MPI_Abort(MPI_COMM_WORLD, 1);
	/* every rank holds the same data (train.h): synthetic, keyed by a seed */
	int n = steps * BATCH;
	size_t dim = (size_t)H * W;
	float *x = xmalloc(sizeof(float) * (size_t)n * dim);
	struct rng r;
	rng_init(&r, 7, RNG_DATA, 0, 0);
	rng_fill_normal(&r, x, (size_t)n * dim);
	uint32_t *ids = xmalloc(sizeof(uint32_t) * (size_t)n);
	int *labels = xmalloc(sizeof(int) * (size_t)n);
	for (int i = 0; i < n; i++) {
		ids[i] = (uint32_t)i;
		labels[i] = (int)((i * 2654435761u) % CLASSES);
	}
	struct train_data d = {.n = n, .ninputs = 1, .x = {x}, .dim = {(int)dim},
			       .shape = {{1, 1, H, W}}, .ids = ids, .labels = labels};
	struct train_spec spec = {.epochs = 1, .batch_size = BATCH,
				  .optim = {.kind = OPTIM_ADAMW, .lr = 0.003f, .beta1 = 0.9f,
					    .beta2 = 0.999f, .eps = 1e-8f}};
	struct train_opts t = {.spec = &spec, .seed = 1, .loss = LOSS_CE, .classes = CLASSES, .dp = &dp};
	struct optim o;
	optim_init(&o, &spec.optim, m.nparams);

	/* warm-up: one step on the first batch (page faults, MPI connections) */
	struct train_data d1 = d;
	d1.n = BATCH;
	train_model(&m, &o, &d1, &t);
	memset(&prof, 0, sizeof prof);
	prof.barrier = argc > 2 && atoi(argv[2]) == 1;

	MPI_Barrier(MPI_COMM_WORLD);
	double c0 = cpu_seconds(), t0 = MPI_Wtime();
	int rc = train_model(&m, &o, &d, &t);
	double wall = MPI_Wtime() - t0, cpu = cpu_seconds() - c0;
	MPI_Allreduce(MPI_IN_PLACE, &wall, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
	double mine[6] = {cpu - prof.hook_cpu_s, prof.allreduce_s, prof.reduce_s, prof.wait_s,
			  (double)prof.allreduce_n, (double)prof.reduce_n};
	double *all = xmalloc(sizeof(double) * 6 * (size_t)dp.world);
	MPI_Gather(mine, 6, MPI_DOUBLE, all, 6, MPI_DOUBLE, 0, MPI_COMM_WORLD);
	if (dp.rank == 0) {
		printf("dp_train %d %d %.4f %zu\n", dp.world, steps, wall, m.nparams);
		for (int k = 0; k < dp.world; k++) {
			const double *v = all + 6 * k;
			printf("dp_rank %d %.4f %.4f %.4f %.4f %.0f %.0f\n", k, v[0], v[1], v[2], v[3], v[4],
			       v[5]);
		}
		fflush(stdout);
	}
	free(all);
	optim_release(&o);
	model_release(&m);
	free(x);
	free(ids);
	free(labels);
	MPI_Finalize();
	return rc == 0 ? 0 : 1;
}
