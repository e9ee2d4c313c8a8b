/*
 * config.h - the JSON run config (schemas/run-config.schema.json), parsed
 * with cJSON and validated strictly: an unknown key or a value of the wrong
 * type is an error that names the file and the key's full path, e.g.
 *   error: config 'x.json': key 'models.mm.hiden' is not known (known: inputs, fusion, hidden, branches)
 *   error: config 'x.json': key 'teacher.epochs' must be an integer, got string
 *
 * Paths in the config are relative to the config file's directory (or to
 * data.root, itself relative to the config file); the parser resolves them.
 *
 * Ownership: every pointer in struct run_config is owned by it and freed by
 * config_release(). Defaults for absent keys are those of the schema.
 */
#ifndef MKE_CONFIG_H
#define MKE_CONFIG_H

#include <stdint.h>

#include "net.h"
#include "nn.h"

enum modality_kind { MOD_INLINE = 0, MOD_NPY, MOD_IMAGE, MOD_DEPTH, MOD_AUDIO, MOD_FRAMES, MOD_LABELMAP };

/* The variants of the paper's tables (DESIGN.md). */
enum variant_kind {
	VAR_TEACHER = 0,      /* D_l, modality a, true labels */
	VAR_UM_STUDENT,       /* D_u, a, pseudo-labels, with T */
	VAR_NOISY_STUDENT,    /* D_u + D_l, a, pseudo-labels (true on D_l), input noise + dropout */
	VAR_MM_STUDENT_NOREG, /* D_u, a+b, pseudo-labels, no T */
	VAR_MM_STUDENT,       /* D_u, a+b, pseudo-labels, with T (MKE) */
	VAR_MM_STUDENT_SUP,   /* D_u, a+b, true labels, with T (upper bound) */
	VAR_COUNT
};
/* "teacher", "um_student", ... ; -1 / NULL when unknown. Static strings. */
const char *variant_name(enum variant_kind k);
int variant_from_name(const char *s);
/* "inline", "npy", ... ; NULL when unknown. Static strings. */
const char *modality_kind_name(enum modality_kind k);

struct modality_spec {
	char *column;             /* manifest column */
	enum modality_kind kind;
	int dim;                  /* flattened width; 0 = take it from the data */
	/* decoding options (common/media.h); 0 = not given */
	int height, width;        /* image, depth, frames: bilinear resize to height x width;
				     labelmap: nearest */
	int channels;             /* image: 1, 3 or 4 (0: the file's, alpha dropped) */
	int sample_rate;          /* audio: resample to this rate (default 16000) */
	float seconds;            /* audio: tile or crop to this duration (0: as is) */
	int frames;               /* frames: frames sampled per cell (default 8) */
};

struct model_spec {
	char *name;
	int ninputs;              /* 1 or 2 */
	int inputs[2];            /* modality index: 0 = a, 1 = b; ascending ("a" before "b") */
	enum fusion fusion;
	int depth;                /* trunk hidden layers */
	int hidden[MLP_MAX_LAYERS];
	int branch_depth[2];      /* late fusion: per-input hidden layers, indexed like inputs[] */
	int branch_hidden[2][MLP_MAX_LAYERS];
	/* "type": "mlp" (the fields above), "cnn" (a net.h classifier: one
	   convolutional branch per input, late fusion, head hidden[0] when
	   depth is 1) or "rgbd_seg" (the net.h encoder-decoder) */
	enum model_type { MODEL_MLP = 0, MODEL_CNN = 1, MODEL_RGBD_SEG = 2 } type;
	struct net_branch cbranch[2]; /* cnn: per input, indexed like inputs[] */
	int crop[2];              /* cnn: time frames of a spectrogram input (0: all) */
	int seg_nstage;           /* rgbd_seg: encoder stages and their widths */
	int seg_channels[NET_MAX_STAGE];
	int bn_micro;             /* batch-norm statistics micro-batch (default 8) */
};

struct train_spec {
	int epochs;
	int batch_size;           /* 0 = full batch */
	struct optim_config optim;
};

struct variant_spec {
	enum variant_kind kind;
	int model;                /* index into run_config.models */
	struct train_spec train;
	int has_reg;              /* reg overrides the setting's regularizer */
	struct regularizer reg;
};

struct grid_setting {
	char *name;               /* row label, e.g. "input noise 2" */
	struct regularizer reg;
};

struct pipeline_spec {
	int shard_size;           /* samples per shard (default 64) */
	int lease_ms;             /* lease length (default 30000) */
	int heartbeat_ms;         /* lease renewal period (default lease/3) */
	int max_attempts;         /* deliveries before dead-letter (default 3) */
	int checkpoint_every;     /* optimizer steps between checkpoints (default 100) */
	char *redis_url;          /* NULL: private redis-server */
	char *redis_password;     /* NULL: MKE_REDIS_PASSWORD or none */
};

enum task_kind {
	TASK_CLASSIFY = 0,   /* one class per sample; accuracy */
	TASK_SEGMENT = 1,    /* a class per pixel of data.target (labelmap); mIoU */
	TASK_MULTILABEL = 2, /* ';'-separated classes per sample; BCE, mAP */
};

/* data.target: the label-map column of a segmentation task. */
struct target_spec {
	char *column;
	int height, width;        /* nearest-neighbour resize to this (0: the file's) */
	int ignore_value;         /* PNG value meaning unlabeled (default 0) -> -1 */
	int first_class;          /* PNG value of class 0 (default 1): class = v - first_class */
};

struct run_config {
	char *path;               /* the config file */
	char *name;
	/* data */
	char *data_root;          /* resolved data.root, or the config file's directory */
	char *labeled, *unlabeled, *test;   /* resolved manifest paths; unlabeled/test may be NULL */
	char *cache_dir;          /* resolved data.cache_dir for URL cells; NULL: common/fetch.h's default */
	int cache_mb;             /* data.cache_mb: decoded samples kept per dataset, MB (0: the default) */
	int prefetch;             /* data.prefetch (default 1): decode batch s+1 while s computes */
	int threads;              /* threads (default 1): threads of this process over a
				     convolutional model's batch (model_set_threads) */
	int classes;
	enum task_kind task;      /* data.task (default classify) */
	struct target_spec target; /* task segment */
	int nclass_names;
	char **class_names;       /* optional; labels may name classes */
	struct modality_spec mod[2];        /* a, b */
	int nmod;                 /* 1 or 2 */
	/* models */
	int nmodels;
	struct model_spec *models;
	/* teacher */
	int teacher_model;
	struct train_spec teacher_train;
	uint64_t teacher_seed;
	struct regularizer teacher_reg;
	/* students (defaults for every variant) */
	struct train_spec student_train;
	struct regularizer reg;   /* T when there is no grid */
	enum loss_kind loss;
	/* parameter init: INIT_PHILOX (rng.h's keyed streams, the default) or
	 * INIT_TORCH (PyTorch's generator, so a seed names PyTorch's weights) */
	enum init_kind { INIT_PHILOX = 0, INIT_TORCH = 1 } init;
	int soft_pseudo;          /* 1: soft probabilities as targets; 0: argmax */
	/* what to run */
	int nvariants;
	struct variant_spec *variants;  /* in table column order; never VAR_TEACHER */
	int nseeds;
	uint64_t *seeds;          /* student seeds; default {0} */
	int ngrid;
	struct grid_setting *grid; /* default: one setting named "default" with reg */
	struct pipeline_spec pipeline;
};

/* Parse and validate. Errors name the file and the key path; returns -1.
 * *c need not be initialized; on failure it is left zeroed (releasing it is
 * harmless), on success the caller releases it with config_release(). */
int config_load(struct run_config *c, const char *path);
/* Same from a string; `path` names it in errors and anchors relative paths. */
int config_parse(struct run_config *c, const char *text, const char *path);
void config_release(struct run_config *c);
/* Index of the model called name in c->models, or -1. */
int config_model(const struct run_config *c, const char *name);

#endif
