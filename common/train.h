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
#include "model.h"
#include "nn.h"

struct dataset;

/* Where the rows of an input whose x[k] is NULL come from (a lazy modality,
 * manifest.h): row i < n1 is sample row0 + i of ds[0], row i >= n1 is sample
 * i - n1 of ds[1] (the noisy student's D_l); mod[k] is input k's modality. */
struct train_source {
	const struct dataset *ds[2];
	int row0, n1;
	int mod[MLP_MAX_BRANCH];
};

/* Inputs and targets of one training or evaluation set, in model-input
 * order (not modality order): x[k] is (n, dim[k]), or NULL when input k is
 * read through src (decoded per batch; train_model and the evaluation
 * gather their batches, with prefetch decoding the next batch on a second
 * thread while this one computes). Borrowed pointers. */
struct train_data {
	int n;
	int ninputs;
	const float *x[MLP_MAX_BRANCH];
	struct train_source src;
	int prefetch;
	int dim[MLP_MAX_BRANCH];
	int shape[MLP_MAX_BRANCH][4]; /* per-sample (F,C,H,W) of x[k] */
	const uint32_t *ids;   /* (n) sample ids keying the random draws */
	const int *labels;     /* (n) hard targets, or NULL */
	const float *soft;     /* (n, classes) soft targets (classify) or multi-hot /
				  probability targets (multilabel), or NULL */
	const int *maps;       /* segment: (n, map_hw) per-pixel targets, -1 = ignore */
	int map_hw;
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
	struct draw_memo *memo;     /* NULL, or kept draws for the next model of this seed */
};


/* Train m (already initialised) with o for spec->epochs epochs, starting after
 * start_epoch. Returns 0, 1 when on_epoch asked to stop, -1 on error. For
 * task segment the loss is the mean over the global batch's labeled pixels
 * (one extra reduce per step for the count). */
int train_model(struct model *m, struct optim *o, const struct train_data *d,
		const struct train_opts *t);

/* Narrow d to its rows [lo, lo+n) (a shard, a rank's share); classes is the
 * width of soft. Rows read through src must all come from src.ds[0]. */
void train_data_slice(struct train_data *d, int lo, int n, int classes);
/* Input k of rows rows[0..nr) of d into out (nr, dim[k]); returns how many
 * rows were quarantined late (they read as zeros; manifest.h dataset_row). */
int train_data_rows(const struct train_data *d, int k, const int *rows, int nr, float *out);

/* The shapes of d's inputs, for model_init. */
void train_data_shapes(const struct train_data *d, struct model_shapes *s);

/* Evaluation-mode forward over d in chunks; probs (n, classes) receives the
 * softmax output (sigmoid for multilabel). Not for segment (see predict_maps). */
void predict_probs(struct model *m, const struct train_data *d, float *probs);
/* Segment: the argmax class of every pixel, maps (n, map_hw). */
void predict_maps(struct model *m, const struct train_data *d, int *maps);

/* The task's metric of m on d (which carries the true targets): accuracy
 * (classify: labels), mAP (multilabel: soft holds the multi-hot targets),
 * mIoU over the classes (segment: maps). conf, when not NULL, gets the
 * segment confusion matrix (classes x classes). */
double evaluate(struct model *m, const struct train_data *d, double *conf);
/* The same, and per_class (classes, may be NULL) gets each class's share:
 * recall (classify), IoU (segment) or AP (multilabel); -1 where a class has
 * no test sample (no union, no positive). */
double evaluate_classes(struct model *m, const struct train_data *d, double *conf,
			double *per_class);
/* The metric (and per-class shares) of probabilities probs (d->n, K) of
 * predict_probs against d's targets; task classify or multilabel. */
double probs_metric(enum task_kind task, const float *probs, const struct train_data *d, int K,
		    double *per_class);
/* Name of the metric evaluate() computes: "accuracy", "mAP" or "mIoU". */
const char *task_metric_name(enum task_kind t);
/* Fraction of rows whose argmax equals labels[i], over rows with labels >= 0. */
double accuracy_of(const float *probs, const int *labels, int n, int classes);
int argmax_row(const float *p, int classes);

#endif
