/*
 * cnn.h - convolutional layers, losses and metrics, as forward/backward pairs
 * over flat float buffers (the conventions of nn.h):
 *
 *  - Tensors are NCHW, row-major, float32; the batch is the leading dimension.
 *  - Weights use PyTorch's layouts (Conv2d: (OC, C, KH, KW), BatchNorm2d:
 *    weight/bias/running_mean/running_var (C)), so checkpoints load into
 *    PyTorch unchanged.
 *  - Every *_backward ACCUMULATES (+=) into the gradient buffers it is given
 *    (input gradients included), so zeroing gradients is one memset.
 *  - Scratch space is passed in by the caller (allocated once per shape, see
 *    *_scratch), never allocated per call.
 *  - Nothing here knows about MPI: batch-wide sums go through reduce_fn
 *    (nn.h) where a layer needs them.
 */
#ifndef MKE_CNN_H
#define MKE_CNN_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"

/* ---- conv2d ------------------------------------------------------------ */

struct conv2d_shape {
	int C, H, W;          /* input channels and size */
	int OC, KH, KW;       /* output channels, kernel */
	int stride, pad, dil; /* the same in both directions */
	int OH, OW;           /* output size: set by conv2d_shape_init */
};

/* Fills OH, OW as PyTorch does: (H + 2*pad - dil*(KH-1) - 1)/stride + 1.
 * -1 (and a message through mke_error) when the output would be empty. */
int conv2d_shape_init(struct conv2d_shape *s, int C, int H, int W, int OC, int KH, int KW,
		      int stride, int pad, int dil);
/* Floats of scratch conv2d_forward/backward need for a batch of B
 * (the im2col buffer; 0 for a 1x1, stride-1, pad-0 convolution). */
size_t conv2d_scratch(const struct conv2d_shape *s, int B);

/* inp (B,C,H,W), weight (OC,C,KH,KW), bias (OC) or NULL; out (B,OC,OH,OW).
 * im2col + cblas_sgemm. */
void conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
		    const struct conv2d_shape *s, int B, float *scratch);
/* conv2d_forward followed by a per-channel affine map and an optional ReLU,
 * applied while each output tile is in cache: out = f(conv*scale[oc] +
 * shift[oc]), f = max(0, .) when relu. An evaluation-mode batch norm (and
 * its ReLU) after a convolution is this with scale = gamma/sqrt(var+eps),
 * shift = beta - mean*scale (batchnorm_eval_affine), so the pair makes one
 * pass over the output instead of three. */
struct conv_epilogue {
	const float *scale, *shift; /* (OC) */
	int relu;
};
void conv2d_forward_ep(float *out, const float *inp, const float *weight, const float *bias,
		       const struct conv2d_shape *s, int B, float *scratch,
		       const struct conv_epilogue *ep);
/* A 3x3, stride-1, pad-1 convolution of 16 or more channels in and out
 * takes Winograd's F(4x4, 3x3) or F(2x2, 3x3) (winograd.h, the tile by
 * the output's size) in conv2d_forward(_ep) and conv2d_backward: 4x or
 * 2.25x fewer multiplications, results equal to the im2col path's up to
 * float rounding. 0 turns it off (tests, benches), 2 or 4 forces that tile
 * for every such shape, 1 restores the choice by shape; so does
 * MKE_WINOGRAD=0, 2 or 4 in the environment, read at the first
 * convolution. */
void conv2d_winograd_enable(int on);
/* Plain loops; the reference conv2d_forward is tested against. */
void conv2d_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
			  const struct conv2d_shape *s, int B);
/* dout (B,OC,OH,OW). dinp (B,C,H,W) may be NULL (no input gradient); dbias
 * may be NULL. dinp, dweight, dbias accumulate. */
void conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
		     const float *inp, const float *weight, const struct conv2d_shape *s, int B,
		     float *scratch);
/* The same, a Winograd input gradient taking its transformed weights from
 * wc (below) when they were made from these weights: the training forward
 * of the step made them, so each step transforms a layer's weights once. */
struct conv_wcache;
void conv2d_backward_wc(float *dinp, float *dweight, float *dbias, const float *dout,
			const float *inp, const float *weight, const struct conv2d_shape *s, int B,
			float *scratch, struct conv_wcache *wc);
/*
 * The transformed weights of one Winograd convolution, kept between calls.
 * Given one, conv2d_forward_wc transforms the weights only when they differ
 * (memcmp) from the copy kept with the transform, or the tile changed: every
 * evaluation pass after the first between two weight updates reuses it, and
 * so does a training step's input gradient (conv2d_backward_wc). The
 * price is the transform (4x the weights for F(4x4), 16/9 for F(2x2)) and a
 * copy of the weights, per convolution and per thread that owns one (one
 * cache is never shared between threads). Zero-initialise; release with
 * conv_wcache_release. NULL, or a convolution that is not Winograd's:
 * conv2d_forward_ep. Nets use one per convolution, in evaluation (decision
 * 27) and training (decision 31).
 */
struct conv_wcache {
	float *U, *w;  /* the transform, and the weights it was made from */
	size_t nu, nw; /* their floats */
	int m;         /* its tile side (winograd.h wino_tile) */
	long made;     /* transforms made (a count for tests) */
};
void conv_wcache_release(struct conv_wcache *c);
void conv2d_forward_wc(float *out, const float *inp, const float *weight, const float *bias,
		       const struct conv2d_shape *s, int B, float *scratch,
		       const struct conv_epilogue *ep, struct conv_wcache *wc);

/* ---- batch norm -------------------------------------------------------- */

/*
 * BatchNorm2d with statistics over FIXED micro-batches: the B samples are
 * cut into groups of `micro` consecutive samples ([0,micro), [micro,2micro),
 * ..., the last may be shorter) and each group is normalised with its own
 * mean and biased variance over (samples of the group, H, W). A rank's slice
 * of a global batch is a whole number of micro-batches, so the result does
 * not depend on the rank count. micro >= B is PyTorch's BatchNorm2d in
 * training mode.
 *
 * inp, out (B,C,HW); gamma, beta (C). save_mean, save_rstd (ngroups, C) are
 * kept for the backward pass, ngroups = ceil(B/micro). out may not equal inp.
 * batch_sum (2*C), if not NULL, is OVERWRITTEN with this call's sum over its
 * groups of (group mean, group unbiased variance), channel-major pairs
 * [mean_c..., var_c...]: the caller sums it over ranks (and over the global
 * number of groups) and then calls batchnorm_update_running.
 * relu != 0 fuses a ReLU: out = max(0, BN(inp)), in the same pass.
 *
 * sp, when not NULL, says the call's B samples are this thread's part of ONE
 * group split over threads (model.c, when a training batch is a single
 * micro-batch): the per-channel sums go through sp->reduce, so every thread
 * normalises with the whole group's statistics (micro is then ignored, and
 * save_mean, save_rstd hold one group). batch_sum then holds the whole
 * group's (mean, variance), in every thread; dgamma, dbeta in the backward
 * only this thread's samples' part, for the caller to sum.
 */
struct bn_split {
	reduce_fn reduce; /* a thread-level allreduce: every thread calls it the
			   * same number of times with the same n */
	void *arg;
};
void batchnorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp,
		       const float *gamma, const float *beta, int B, int C, int HW, int micro,
		       float eps, double *batch_sum, int relu, const struct bn_split *sp);
/* Training forward of a batch norm + fused ReLU that only a 2x2 stride-2
 * max pool reads, and that pool: the pool's output and argmax (B,C,H/2,W/2)
 * as maxpool2d_forward gives them on batchnorm_forward's output, bit for
 * bit, computed two rows at a time; the batch norm's own output is not
 * written (batchnorm_pool_backward does not need it). Statistics and
 * batch_sum as batchnorm_forward. scratch: 2*W floats (H*W serve both). */
void batchnorm_pool_forward(float *pool_out, int *argmax, float *save_mean, float *save_rstd,
			    const float *inp, const float *gamma, const float *beta, int B, int C,
			    int H, int W, int micro, float eps, double *batch_sum, float *scratch,
			    const struct bn_split *sp);
/* Evaluation: normalise with running_mean/running_var (relu as above). */
void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
			    const float *running_mean, const float *running_var, int B, int C, int HW,
			    float eps, int relu);
/* The per-channel scale and shift batchnorm_forward_eval applies
 * (out = inp*scale + shift), for conv2d_forward_ep. */
void batchnorm_eval_affine(float *scale, float *shift, const float *gamma, const float *beta,
			   const float *running_mean, const float *running_var, int C, float eps);
/* PyTorch's update with the average over `groups` micro-batches (all ranks):
 * running = (1-momentum)*running + momentum*(batch_sum/groups). */
void batchnorm_update_running(float *running_mean, float *running_var, const double *batch_sum,
			      int groups, int C, float momentum);
/* dgamma, dbeta accumulate; dinp (may be NULL) is SET when set != 0 (its
 * only writer need not zero it first), else added to. relu_out, if not NULL,
 * is the output of a fused forward (relu != 0): dout is then the gradient of
 * that output and is gated by relu_out > 0 on the fly (the ReLU's backward). */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
			const float *inp, const float *save_mean, const float *save_rstd,
			const float *gamma, int B, int C, int HW, int micro,
			const float *relu_out, int set, const struct bn_split *sp);

/* The backward of batch norm + its fused ReLU + a 2x2 stride-2 max pool
 * that alone reads the ReLU's output, from the pool's gradient dpool, its
 * argmax and its output pool_out (B,C,H/2,W/2); inp, dinp (B,C,H,W). The
 * same result as maxpool2d_backward into a zeroed buffer then
 * batchnorm_backward with relu_out, bit for bit, without that buffer.
 * dinp (may be NULL) is SET when set != 0, else added to; dgamma, dbeta
 * accumulate. scratch: min(micro, B)*H*W floats (a micro-batch's gated
 * gradient planes). */
void batchnorm_pool_backward(float *dinp, float *dgamma, float *dbeta, const float *dpool,
			     const int *argmax, const float *pool_out, const float *inp,
			     const float *save_mean, const float *save_rstd, const float *gamma,
			     int B, int C, int H, int W, int micro, int set, float *scratch,
			     const struct bn_split *sp);

/* ---- pooling, resizing, joining ---------------------------------------- */

/* Max pooling, kernel k, stride, padding pad (implicit -inf), floor mode.
 * inp (B,C,H,W), out (B,C,OH,OW) with OH = (H + 2*pad - k)/stride + 1;
 * argmax (B,C,OH,OW) receives the flat index into H*W of each maximum. */
void maxpool2d_forward(float *out, int *argmax, const float *inp, int B, int C, int H, int W,
		       int k, int stride, int pad);
void maxpool2d_backward(float *dinp, const float *dout, const int *argmax, int B, int C, int H,
			int W, int OH, int OW);
/* Average pooling, no padding, floor mode (PyTorch AvgPool2d(k, stride)). */
void avgpool2d_forward(float *out, const float *inp, int B, int C, int H, int W, int k, int stride);
void avgpool2d_backward(float *dinp, const float *dout, int B, int C, int H, int W, int k,
			int stride);
/* (B,C,HW) -> (B,C): mean over the spatial positions. */
void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW);
void global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW);
/* (B,F,D) -> (B,D): mean over F frames (temporal pooling of a video branch). */
void frame_mean_forward(float *out, const float *inp, int B, int F, int D);
void frame_mean_backward(float *dinp, const float *dout, int B, int F, int D);

/* Bilinear resize (B,C,H,W) -> (B,C,OH,OW) with PyTorch's
 * F.interpolate(mode='bilinear', align_corners=False) semantics. */
void upsample_bilinear_forward(float *out, const float *inp, int B, int C, int H, int W, int OH,
			       int OW);
void upsample_bilinear_backward(float *dinp, const float *dout, int B, int C, int H, int W, int OH,
				int OW);

/* Channel concatenation: a (B,Ca,HW), b (B,Cb,HW) -> out (B,Ca+Cb,HW). */
void concat_forward(float *out, const float *a, const float *b, int B, int Ca, int Cb, int HW);
/* da, db (either may be NULL) accumulate their parts of dout. */
void concat_backward(float *da, float *db, const float *dout, int B, int Ca, int Cb, int HW);
/* Residual add: out = a + b over n floats (out may equal a); backward is
 * da += dout, db += dout (add_inplace below). */
void add_forward(float *out, const float *a, const float *b, size_t n);
/* y += x over n floats. */
void add_inplace(float *y, const float *x, size_t n);

/* ---- data augmentation (regularizers on the inputs) --------------------- */

/*
 * Per-sample random transforms keyed by (seed, RNG_AUGMENT, step, id), so a
 * sample gets the same transform on every rank and in every modality of the
 * same sample (modality k draws at stream index 0, like every other modality,
 * so RGB, depth and the label map of one sample flip and crop together).
 *
 * augment_params draws, for each of B samples: flip (0/1 with probability
 * 1/2 when hflip), scale s uniform in [smin, smax] (1 when smin == smax == 0
 * or 1), and the crop origin (uniform fractions fy, fx in [0,1)).
 */
struct augment {
	int flip;
	float scale;
	float fy, fx;
};
void augment_params(struct augment *a, int B, int hflip, float smin, float smax, uint64_t seed,
		    uint32_t step, const uint32_t *ids);
/* Apply to images (B,C,H,W), in -> out (same shape, out != inp): resize by
 * the sample's scale (bilinear, align_corners=False), take the H x W window
 * at the crop origin (fy*(sH-H), fx*(sW-W)) when the scaled image is larger,
 * else centre it and pad with 0; flip horizontally when flip. */
void augment_image(float *out, const float *inp, const struct augment *a, int B, int C, int H,
		   int W);
/* The same geometric transform on label maps (B,H,W) with nearest-neighbour
 * sampling; padding takes the value `ignore`. */
void augment_labels(int *out, const int *inp, const struct augment *a, int B, int H, int W,
		    int ignore);
/* Random crop in time of spectrograms (B,F,T) -> out (B,F,Tc), Tc <= T: the
 * window start is uniform in [0, T-Tc] keyed like augment_params (a NULL ids
 * means ids[b] = b); with train 0 the centre window. */
void time_crop(float *out, const float *inp, int B, int F, int T, int Tc, int train, uint64_t seed,
	       uint32_t step, const uint32_t *ids);

/* ---- losses ------------------------------------------------------------ */

/* The unnormalised softmax of np pixels over K class planes: z[k*zs + i]
 * the logits, m[i] their maximum, e[k*es + i] = exp(z - m) (exp_sub, nn.h)
 * and se[i] the sum over k. For pixel_xent and model_probs. */
void pixel_softmax_block(float *e, size_t es, float *m, float *se, const float *z, size_t zs,
			 int K, int np);
/* Per-pixel softmax cross-entropy. logits (B,K,HW); labels (B,HW) with
 * values in [0,K) or `ignore` (any value outside [0,K) is ignored too).
 * Returns the SUM of the per-pixel losses over non-ignored pixels and
 * sets *count to their number; dlogits (B,K,HW), if not NULL, ACCUMULATES
 * d(sum)/dlogits * grad_scale (PyTorch's mean is grad_scale = 1/count over
 * the global batch). */
double pixel_xent(float *dlogits, const float *logits, const int *labels, int B, int K, int HW,
		  int ignore, float grad_scale, long *count);
/* Binary cross-entropy with logits for multi-label targets: logits and
 * targets (B,K), targets in [0,1]. Returns the SUM over all B*K terms
 * (numerically stable form); dlogits accumulates (sigmoid(x)-t)*grad_scale. */
double bce_logits(float *dlogits, const float *logits, const float *targets, int B, int K,
		  float grad_scale);

/* ---- metrics ----------------------------------------------------------- */

/* conf (K*K, row = true class, column = predicted) ACCUMULATES the argmax
 * over K of logits (B,K,HW) against labels (B,HW); ignored pixels (outside
 * [0,K)) are skipped. Doubles so ranks can sum it with a reduce_fn. */
void confusion_update(double *conf, const float *logits, const int *labels, int B, int K, int HW);
/* Mean over classes with a nonzero union of IoU = tp / (tp + fp + fn);
 * per_class (K, may be NULL) gets each class's IoU or -1 where the union is
 * empty. Pixel accuracy = trace/sum via confusion_pixel_acc. */
double confusion_miou(const double *conf, int K, double *per_class);
double confusion_pixel_acc(const double *conf, int K);
/* Mean average precision over classes with at least one positive, each
 * class's AP as sklearn.metrics.average_precision_score computes it (step
 * integration of precision over recall, ties in score grouped). scores and
 * targets (n,K), targets 0/1. per_class (K, may be NULL) gets -1 for a class
 * with no positive. */
double mean_average_precision(const float *scores, const float *targets, int n, int K,
			      double *per_class);

#endif
