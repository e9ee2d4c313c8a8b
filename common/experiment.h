/*
 * experiment.h - the MKE algorithm in one process: teacher -> pseudo-labels
 * -> every student variant, over a grid of regularizer settings and seeds.
 * `mke experiment` prints what this computes; the distributed pipeline runs
 * the same steps (same train.c, same keyed randomness) across processes and is
 * tested against it.
 */
#ifndef MKE_EXPERIMENT_H
#define MKE_EXPERIMENT_H

#include "config.h"
#include "manifest.h"
#include "nn.h"
#include "train.h"

struct exp_data {
	struct dataset labeled, unlabeled, test;
	int has_unlabeled_labels;  /* every unlabeled row carries a true label */
};

/* Load the config's three manifests (labeled with modality a only). */
int exp_data_load(struct exp_data *d, const struct run_config *c);
void exp_data_release(struct exp_data *d);

/* Bind a model's inputs to a dataset's modality matrices (model-input order). */
void bind_inputs(struct train_data *td, const struct dataset *ds, const struct model_spec *ms);

/*
 * How a training run is driven beyond the algorithm: data-parallel hooks,
 * checkpoints and a per-epoch callback. NULL everywhere means a plain
 * in-process run. With ckpt_path, the writer saves a checkpoint every
 * ckpt_every optimizer steps and at the end (epoch == epochs), and with
 * resume a run whose checkpoint exists continues from it (a finished one is
 * not trained again).
 */
struct fit_ctl {
	const struct dp_hooks *dp;
	const char *ckpt_path;
	int ckpt_every;
	int resume;
	int writer;              /* this process writes checkpoints (rank 0) */
	const char *variant;     /* recorded in the checkpoint */
	epoch_fn on_epoch;       /* after the checkpoint logic; may be NULL */
	void *arg;
	int resumed_epoch;       /* out: the epoch training resumed from (0 if fresh) */
	struct draw_memo *memo;  /* NULL, or the draw memo shared by the models of a seed */
};

/* Train the teacher with a given seed; m is initialised by this call (the
 * caller releases it, also on failure). ctl may be NULL. */
int train_teacher(struct model *m, const struct run_config *c, const struct exp_data *d,
		  uint64_t seed, struct fit_ctl *ctl);

/* The teacher's pseudo-labels on D_u: probabilities (n, classes) for
 * classify (argmax = hard label) and multilabel (sigmoid, the soft targets),
 * label maps (n, map_hw) for segment; quality = the task's metric of the
 * pseudo-labels against D_u's true labels, -1 without them. */
struct pseudo {
	int n;
	float *probs;
	int *maps;
	int map_hw;
	double quality;
};
int pseudo_make(struct pseudo *ps, struct model *teacher, const struct run_config *c,
		const struct exp_data *d);
/* (Re)compute ps->quality from its probs/maps. */
void pseudo_quality(struct pseudo *ps, const struct run_config *c, const struct exp_data *d);
void pseudo_release(struct pseudo *ps);

/* Targets for students from the teacher's probabilities on the unlabeled
 * set: hard argmax in `hard` (n ints) and, for soft pseudo-labels, the
 * probabilities themselves. */
void pseudo_targets(const float *probs, int n, int classes, int *hard);

/* The regularizer a variant trains with under a grid setting. */
struct regularizer variant_reg(const struct variant_spec *v, const struct grid_setting *g);

/*
 * Train one student variant on the teacher's pseudo-labels ps. On return *m
 * is the trained model (initialised by this call; the caller releases it,
 * also on failure).
 */
int train_student(struct model *m, const struct run_config *c, const struct exp_data *d,
		  const struct variant_spec *v, struct regularizer reg, uint64_t seed,
		  const struct pseudo *ps, struct fit_ctl *ctl);

/* The task's test metric (accuracy, mAP or mIoU; train.h evaluate()). */
double eval_model(struct model *m, const struct dataset *test, const struct model_spec *ms);
/* The same with each class's share (train.h evaluate_classes). */
double eval_model_classes(struct model *m, const struct dataset *test,
			  const struct model_spec *ms, double *per_class);

/* Rectification: of the targets whose pseudo-label is wrong (samples,
 * pixels, or sample x class decisions), the fraction the student gets
 * right. -1 when none is wrong or the unlabeled set has no labels. */
double rectification(struct model *m, const struct exp_data *d, const struct model_spec *ms,
		     const struct pseudo *ps, const struct run_config *c);

struct exp_result {
	int ngrid, nvariants, nseeds;
	double teacher_acc;        /* the teacher (teacher.seed) on the test set (the task's metric) */
	double *teacher_seed_acc;  /* (nseeds) a teacher per student seed */
	double pseudo_acc;         /* -1 when the unlabeled set has no labels */
	double *acc;               /* (ngrid, nvariants, nseeds) test accuracy */
	double *rect;              /* (ngrid, nvariants, nseeds) rectification or -1 */
	double seconds;            /* wall time of all training */
};

/* Run everything the config declares. progress: print a line per cell. */
int experiment_run(const struct run_config *c, struct exp_result *r, int progress);
void exp_result_release(struct exp_result *r);
/* Mean and (sample) standard deviation of n values, skipping negatives when skip_neg. */
void mean_std(const double *v, int n, int skip_neg, double *mean, double *std, int *count);

#endif
