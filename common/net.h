/*
 * net.h - convolutional models: a fixed list of layers (a small graph in
 * topological order) built from an architecture, over the kernels of cnn.h
 * and nn.h, with the memory discipline of struct mlp: parameters, gradients,
 * buffers (batch-norm running statistics) and activations are one allocation
 * each, activations sized once per batch shape, never per step.
 *
 * Models (docs/models.md):
 *   branch "conv3"  the paper's RAVDESS CNN: nstage x [conv3x3 + BN + ReLU +
 *                   maxpool 2], flattened -> channels[nstage-1] x H' x W'
 *                   features (where a pattern is stays known to the head)
 *   branch "resnet" stem conv3x3(channels[0]) + BN + ReLU + maxpool 2, then nstage stages
 *                   of `blocks` basic residual blocks (conv3x3-BN-ReLU-conv3x3-BN
 *                   + shortcut, 1x1 conv stride 2 + BN where the shape changes;
 *                   stage s > 0 starts with stride 2), global average pool
 *   branch "video"  a conv3 stack applied to each of F frames (as a batch of
 *                   B*F images), global average pool per frame, then the mean
 *                   over frames (temporal pooling)
 *   classify        late fusion: the branch features concatenated in input
 *                   order -> [Linear(head_hidden) + ReLU] -> Linear(classes)
 *   segment         "rgbd_seg": an encoder per input (stage s: conv3x3 + BN +
 *                   ReLU, then maxpool 2 before every stage but the first),
 *                   per-stage fusion (input 1's stage output is added into
 *                   input 0's, FuseNet style), a decoder (bilinear upsample x2,
 *                   concat with the fused skip of the stage above, conv3x3 + BN
 *                   + ReLU) and a 1x1 conv to classes at full resolution.
 *
 * Regularizer placement (struct regularizer, nn.h):
 *  - input noise: on each input tensor (per sample flat), input k at stream
 *    offset sum of the earlier inputs' per-sample sizes; its own batch mean.
 *  - hidden noise: after the ReLU of each branch's (encoder's) first block
 *    (conv3, video: stage 0 before its pool; resnet: the stem), branch k at
 *    offset sum of the earlier branches' first-block sizes.
 *  - dropout: on the fused feature vector and after the head's hidden layer
 *    (classify); on the bottleneck (segment).
 *  - hflip / scale-crop: images (inputs with crop_w 0 and H,W > 1; all F
 *    frames of a video alike) of a sample get the same transform (cnn.h
 *    augment_*); net_augment_labels applies it to label maps. random_crop:
 *    spectrogram inputs (crop_w > 0) wider than crop_w take a random window
 *    in training, the centre window otherwise; they are never flipped.
 *
 * Tensor names are those of the PyTorch module tests/fixtures/gen_net.py
 * builds (e.g. "branch0.stage1.0.conv1.weight", "branch0.stage1.0.bn1.running_mean",
 * "head.1.weight", "enc1.stage0.conv.weight", "classifier.weight"), so a
 * checkpoint loads with load_state_dict. Batch-norm layers also carry
 * "num_batches_tracked" (int64 in PyTorch, stored by checkpoint.c).
 */
#ifndef MKE_NET_H
#define MKE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "cnn.h"
#include "nn.h"

#define NET_MAX_INPUTS 2
#define NET_MAX_STAGE 6

enum net_task { NET_CLASSIFY = 0, NET_SEGMENT = 1 };
enum net_branch_type { NET_CONV3 = 0, NET_RESNET = 1, NET_VIDEO = 2 };

/* One input's per-sample data shape: F frames (1 unless video) of C x H x W.
 * A spectrogram is C=1, H=frequency bins, W=time frames. */
struct net_input {
	int F, C, H, W;
};

struct net_branch {
	enum net_branch_type type;
	int nstage;
	int channels[NET_MAX_STAGE];
	int blocks;                   /* resnet: basic blocks per stage (>= 1) */
};

struct net_arch {
	enum net_task task;
	int ninputs;
	struct net_input in[NET_MAX_INPUTS];
	int crop_w[NET_MAX_INPUTS];   /* spectrograms: time frames the model sees (<= in.W);
					 0: not a spectrogram, the model sees in.W */
	/* classify */
	struct net_branch branch[NET_MAX_INPUTS];
	int head_hidden;              /* 0: a Linear head directly on the fused features */
	/* segment: the encoder's stages (every input the same widths) */
	int seg_nstage;
	int seg_channels[NET_MAX_STAGE];
	int classes;
	int bn_micro;                 /* batch-norm statistics micro-batch (default 8) */
	float bn_momentum;            /* default 0.1 */
	float bn_eps;                 /* default 1e-5 */
};

struct net {
	struct net_arch arch;
	size_t nparams, nbuffers;
	float *params;   /* one allocation, nparams floats */
	float *grads;    /* one allocation, nparams floats */
	float *buffers;  /* BN running mean/var, one allocation */
	long bn_batches; /* num_batches_tracked (the same for every BN layer) */
	float *logits;   /* after net_forward: (B,classes) or (B,classes,H,W) */
	int B;
	int train;
	void *priv;      /* the layer list, activations, scratch */
};

/* Floats of one sample's logits: classes, or classes*H*W of input 0
 * (segment). */
size_t net_logits_per_sample(const struct net_arch *a);

/* Lay out the layers; parameters zeroed, BN gamma 1 / running_var 1. 0, or
 * -1 with a message naming what is wrong in the arch. */
int net_init(struct net *n, const struct net_arch *a);
/* PyTorch's default inits: Conv2d and Linear kaiming_uniform(a=sqrt(5)) for
 * weights (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and U(-1/sqrt(fan_in), ...)
 * for biases; BN weight 1, bias 0. Draws (seed, RNG_INIT, tensor index, 0). */
void net_init_params(struct net *n, uint64_t seed);
void net_release(struct net *n);

/* Forward a batch: inputs[k] is (B, F*C*H*W of in[k]). ctx NULL means
 * evaluation (running statistics, no regularizer, centre crops); otherwise
 * training with ctx->reg, BN over micro-batches, and one ctx->reduce call
 * for all BN statistics (after the noise reductions), so every rank calls
 * reduce the same number of times. Inputs are borrowed until net_backward. */
void net_forward(struct net *n, const float *const *inputs, int B, const struct fwd_ctx *ctx);
/* Backward from dlogits (shape of n->logits); ACCUMULATES into n->grads. */
void net_backward(struct net *n, const float *dlogits, const struct fwd_ctx *ctx);
void net_zero_grad(struct net *n);
/* Apply the last training forward's flip/scale-crop to label maps (B,H,W)
 * of input 0's size; a plain copy when the forward had no such transform. */
void net_augment_labels(const struct net *n, int *out, const int *labels, int ignore);

/* Tensors: parameters first (in n->params order, tiling it exactly), then
 * buffers (running_mean, running_var per BN layer, tiling n->buffers).
 * Returns the name (owned by n) and sets *data, *ndim and shape[0..ndim)
 * (PyTorch shapes); *is_param says which allocation. NULL when out of range. */
int net_ntensors(const struct net *n);
const char *net_tensor(const struct net *n, int i, float **data, int *ndim, int shape[4],
		       int *is_param);
int net_find_tensor(const struct net *n, const char *name);
/* Number of BN layers (each has a num_batches_tracked in PyTorch's state dict)
 * and the name prefix of BN layer j, e.g. "branch0.stage0.bn". */
int net_nbn(const struct net *n);
const char *net_bn_name(const struct net *n, int j);

/* Convolution layers, in forward order (for benchmarks): the number, and
 * layer i's shape, images per sample (F for a video branch, else 1), whether
 * it computes an input gradient in training (0 for a layer on a model
 * input), and its weight's tensor name. NULL when out of range. */
int net_nconv(const struct net *n);
const struct conv2d_shape *net_conv(const struct net *n, int i, int *nimg, int *dinp,
				    const char **name);

#endif
