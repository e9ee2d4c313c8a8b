/*
 * model.h - one interface over the two model families the config declares:
 * the MLP of nn.h (model type "mlp") and the convolutional nets of net.h
 * ("cnn", "rgbd_seg"). train.c, experiment.c, checkpoint.c and the worker
 * see only this; the families keep their own layouts and kernels.
 *
 * Outputs per sample (out_dim): classes for a classifier (softmax for
 * task classify, sigmoid for task multilabel), classes x H x W logits for a
 * segmenter (task segment; a prediction is then a label map of H*W classes).
 */
#ifndef MKE_MODEL_H
#define MKE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "net.h"
#include "nn.h"

struct model {
	enum model_type type;
	enum task_kind task;
	struct mlp mlp;            /* type MODEL_MLP */
	struct net net;            /* otherwise */
	int classes;
	int map_hw;                /* segment: pixels per label map, else 0 */
	size_t out_dim;            /* logits per sample */
	size_t nparams;
	float *params, *grads;     /* the family's single allocations */
	void *scratch;             /* loss gradients and label maps (nets) */
	struct model_par *par;     /* threads over the batch (nets), NULL: one */
};

/* The per-sample input shapes a model sees: (F,C,H,W) per model input. */
struct model_shapes {
	int ninputs;
	int shape[2][4];
};

/* Build the MLP architecture a model spec describes for the given input
 * widths (in model-input order) and class count. */
void model_arch(struct mlp_arch *arch, const struct model_spec *ms, const int *dims, int classes);

/* Lay out the model a spec describes for the given input shapes. 0, or -1
 * with a message naming the model. */
int model_init(struct model *m, const struct run_config *c, const struct model_spec *ms,
	       const struct model_shapes *in);
/* A net model straight from its architecture (benchmarks, tests): task
 * classify (NET_CLASSIFY) or segment. 0, or -1 with a message. */
int model_init_net(struct model *m, const struct net_arch *a);
/* PyTorch's default inits from (seed, RNG_INIT, ...). */
void model_init_params(struct model *m, uint64_t seed);
/* The same inits drawn as torch.manual_seed(seed) and PyTorch's layers
 * would (a config's "init": "torch", nn.h mlp_init_params_torch). MLP
 * models only: 0, or -1 with a message for a net. */
int model_init_params_torch(struct model *m, uint64_t seed);
void model_release(struct model *m);

/* Run a net's passes on T threads in this process (T >= 1; an MLP ignores
 * it, its layers are too small to split): each pass cuts the batch into T
 * contiguous slices (in training whole batch-norm micro-batches; a batch of
 * one micro-batch runs unsplit) through replicas of the net that share
 * m->params. Results equal the unsplit pass's up to float summation order;
 * ctx->reduce (MPI) is called as often as unsplit, from the calling thread.
 * The BLAS should then run one thread per caller (openblas_set_num_threads).
 * 0, or -1 with a message. */
int model_set_threads(struct model *m, int T);
int model_threads(const struct model *m);

/* A batch: inputs[k] (B, per-sample size of input k); ctx NULL = evaluation. */
void model_forward(struct model *m, const float *const *inputs, int B, const struct fwd_ctx *ctx);
/* The last forward's logits (B, out_dim). */
const float *model_logits(const struct model *m);
void model_zero_grad(struct model *m);

/* The targets of a batch, one kind per task: labels (B) or soft (B,classes)
 * for classify; soft (B,classes) in [0,1] for multilabel; maps (B,map_hw)
 * with -1 = ignore for segment. */
struct batch_targets {
	const int *labels;
	const float *soft;
	const int *maps;
};

/* The loss of the last training forward and its backward, ACCUMULATING into
 * m->grads. grad_scale multiplies d(sum of losses): 1/global batch for
 * classify, 1/(global batch*classes) for multilabel, 1/(global count of
 * labeled pixels) for segment (see model_loss_count). Returns the summed loss. */
double model_loss_backward(struct model *m, const struct batch_targets *t, enum loss_kind kind,
			   float grad_scale, const struct fwd_ctx *ctx);
/* Segment: labeled pixels of maps (B, map_hw) after the last forward's
 * augmentation (which model_loss_backward applies to the maps); else B. */
long model_loss_count(struct model *m, const struct batch_targets *t, int B);

/* Probabilities of the last forward into out (B, out_dim): softmax over
 * classes (classify; per pixel for segment) or sigmoid (multilabel). */
void model_probs(const struct model *m, float *out, int B);

/* Checkpoint tensors (PyTorch names and shapes): parameters, then buffers. */
int model_ntensors(const struct model *m);
const char *model_tensor(const struct model *m, int i, float **data, int *ndim, int64_t shape[4]);
/* Batch-norm layers' num_batches_tracked (net only): count, names, value. */
int model_nbn(const struct model *m);
const char *model_bn_name(const struct model *m, int j);

#endif
