/*
 * bench_flops.c - the nominal FLOPs of `mke experiment CONFIG`, for
 * tests/bench/run.sh (the TwoMoon table's floor: FLOPs over the one-core
 * sgemm rate).
 *
 *     bench_flops CONFIG
 * prints
 *     teacher_gflop <one teacher> <teachers trained>
 *     student_gflop <variant> <one student> <students trained>
 *     gflop <total>
 *
 * Nominal means dense GEMM arithmetic, whatever path the engine takes: a
 * Linear layer in -> out on R rows costs 2*R*in*out forward, 2*R*in*out for
 * its weight gradient and 2*R*in*out for its input gradient, except a layer
 * that reads a model input (it has none); biases, activations, noise and the
 * loss are not counted. An epoch covers every row once whatever the batch
 * size, so a model costs epochs * rows * (its cost per row). Counts follow
 * experiment_run(): the teacher of record plus one per seed, and a student
 * per (grid setting, variant, seed). MLP models only.
 */
#include <stdio.h>

#include "config.h"
#include "experiment.h"
#include "model.h"
#include "util.h"

/* Nominal FLOPs of one row through an MLP's training step: forward, weight
 * and input gradients (none for a layer on a model input). -1: not an MLP. */
static double row_flops(const struct run_config *c, const struct model_spec *ms,
			const struct dataset *ds)
{
	if (ms->type != MODEL_MLP)
		return mke_error("model '%s': nominal FLOPs are counted for MLP models only", ms->name);
	int dims[2];
	for (int k = 0; k < ms->ninputs; k++)
		dims[k] = ds->dim[ms->inputs[k]];
	struct mlp_arch a;
	model_arch(&a, ms, dims, c->classes);
	struct mlp m;
	if (mlp_init(&m, &a) != 0)
		return -1;
	/* lin[] is branch 0's layers, branch 1's (late fusion), trunk, head */
	int on_input[sizeof m.lin / sizeof m.lin[0]] = { 0 };
	if (a.fusion == FUSION_EARLY) {
		on_input[0] = 1;
	} else {
		for (int k = 0, l = 0; k < a.nbranch; l += a.branch_depth[k], k++)
			if (a.branch_depth[k])
				on_input[l] = 1;
	}
	double f = 0;
	for (int l = 0; l < m.nlinear; l++)
		f += 2.0 * m.lin[l].in * m.lin[l].out * (on_input[l] ? 2 : 3);
	mlp_release(&m);
	return f;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bench_flops CONFIG\n");
		return 2;
	}
	struct run_config c;
	struct exp_data d;
	if (config_load(&c, argv[1]) != 0)
		return 1;
	if (exp_data_load(&d, &c) != 0)
		return 1;
	int rc = 0;
	double total = 0;
	const struct model_spec *tms = &c.models[c.teacher_model];
	double f = row_flops(&c, tms, &d.labeled);
	if (f < 0) {
		rc = 1;
	} else {
		double one = f * d.labeled.n * c.teacher_train.epochs;
		int n = 1 + c.nseeds;
		printf("teacher_gflop %.4f %d\n", one * 1e-9, n);
		total += one * n;
	}
	for (int v = 0; v < c.nvariants && rc == 0; v++) {
		const struct variant_spec *vs = &c.variants[v];
		f = row_flops(&c, &c.models[vs->model], &d.unlabeled);
		if (f < 0) {
			rc = 1;
			break;
		}
		int rows = d.unlabeled.n + (vs->kind == VAR_NOISY_STUDENT ? d.labeled.n : 0);
		double one = f * rows * vs->train.epochs;
		int n = c.ngrid * c.nseeds;
		printf("student_gflop %s %.4f %d\n", variant_name(vs->kind), one * 1e-9, n);
		total += one * n;
	}
	if (rc == 0)
		printf("gflop %.2f\n", total * 1e-9);
	exp_data_release(&d);
	config_release(&c);
	return rc;
}
