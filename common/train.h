/*
 * train.h - the training and evaluation loops shared by `mke experiment`
 * (one process) and the mke-worker ranks (data-parallel over MPI).
 *
 * Data parallelism is expressed through struct dp_hooks so this file knows
 * nothing of MPI: every rank holds the same arrays, walks the same global
 * batches (a fixed global batch, a per-epoch permutation keyed by the seed),
 * takes the fixed slice [rank*B/W, (rank+1)*B/W) of each, and sums gradients
 * with the allreduce hook before an identical optimizer step on every rank.
 * Randomness is keyed by (seed, step, sample id), so the result does not
 * depend on the number of ranks beyond float summation order.
 */
#ifndef MKE_TRAIN_H
#define MKE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "nn.h"

/* Inputs and targets of one training or evaluation set, in model-input
 * order (not modality order): x[k] is (n, dim[k]). Borrowed pointers. */
struct train_data {
	int n;
	int ninputs;
	const float *x[MLP_MAX_BRANCH];
	int dim[MLP_MAX_BRANCH];
	const uint32_t *ids;   /* (n) sample ids keying the random draws */
	const int *labels;     /* (n) hard targets, or NULL */
	const float *soft;     /* (n, classes) soft targets, or NULL */
};

struct dp_hooks {
	int rank, world;
	/* Sum buf[0..n) over all ranks, in place. */
	void (*allreduce)(float *buf, size_t n, void *arg);
	reduce_fn reduce;      /* sums of doubles (batch statistics, loss) */
	void *arg;
};

/* Called after every epoch with the epoch just finished (1-based) and its mean
 * training loss. Return nonzero to stop training (e.g. cancelled). */
typedef int (*epoch_fn)(int epoch, long step, double loss, void *arg);

struct train_opts {
	const struct train_spec *spec;
	struct regularizer reg;
	uint64_t seed;
	enum loss_kind loss;
	int classes;
	const struct dp_hooks *dp;  /* NULL: one process */
	int start_epoch;            /* resume: epochs already done (0 for a fresh run) */
	epoch_fn on_epoch;          /* may be NULL */
	void *arg;
};

/* Build the MLP architecture a model spec describes for the given input
 * widths (in model-input order) and class count. */
void model_arch(struct mlp_arch *arch, const struct model_spec *ms, const int *dims, int classes);

/* Train m (already initialised) with o for spec->epochs epochs, starting after
 * start_epoch. Returns 0, 1 when on_epoch asked to stop, -1 on error. */
int train_mlp(struct mlp *m, struct optim *o, const struct train_data *d, const struct train_opts *t);

/* Evaluation-mode forward over d in chunks; probs (n, classes) receives the
 * softmax output. */
void predict_probs(struct mlp *m, const struct train_data *d, float *probs);
/* Fraction of rows whose argmax equals labels[i], over rows with labels >= 0. */
double accuracy_of(const float *probs, const int *labels, int n, int classes);
int argmax_row(const float *p, int classes);

#endif
