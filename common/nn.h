/*
 * nn.h - the network engine: layers as forward/backward pairs over flat
 * float buffers (in the manner of llm.c), losses, an MLP model with early or
 * late fusion of up to two modality branches, and optimizers.
 *
 * Conventions:
 *  - Row-major. Batches are the leading dimension.
 *  - Weights use PyTorch's nn.Linear layout (OC, C), so checkpoints load into
 *    PyTorch unchanged.
 *  - Every *_backward ACCUMULATES (+=) into the gradient buffers it is given,
 *    so zeroing gradients is one memset of the gradient allocation.
 *  - Parameters, gradients, optimizer moments and activations are each one
 *    allocation; a model's tensors are views into them (see struct mlp).
 *  - Randomness (dropout, noise, init) comes from rng.h, keyed by
 *    (seed, purpose, step, sample id), never from a sequential generator.
 *
 * Nothing here knows about MPI: batch-wide statistics (the mean |x| of the
 * noise regularizer) go through the optional reduce hook of struct fwd_ctx,
 * which the data-parallel worker points at MPI_Allreduce.
 */
#ifndef MKE_NN_H
#define MKE_NN_H

#include <stddef.h>
#include <stdint.h>

/* ---- layers ------------------------------------------------------------ */

/* inp is (B,C), weight is (OC,C), bias is (OC) or NULL; out is (B,OC).
 * Uses cblas_sgemm. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
		    int B, int C, int OC);
/* Plain loops; the reference linear_forward is tested against. */
void linear_forward_naive(float *out, const float *inp, const float *weight, const float *bias,
			  int B, int C, int OC);
/* dout is (B,OC); dinp (B,C) may be NULL (no input gradient wanted);
 * dweight (OC,C) and dbias (OC, may be NULL) accumulate. */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
		     const float *inp, const float *weight, int B, int C, int OC);
void linear_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
			   const float *inp, const float *weight, int B, int C, int OC);

/* Feature-major twins, the layout inside the MLP: a (C,N) buffer holds
 * feature c of sample n at [c*N + n], so the batch is the vector dimension.
 * inp is (C,N), weight is (OC,C), bias is (OC) or NULL; out is (OC,N);
 * relu nonzero applies max(.,0). AVX2/FMA kernels when the CPU has them. */
void linear_forward_fm(float *out, const float *inp, const float *weight, const float *bias,
		       int N, int C, int OC, int relu);
void linear_forward_fm_naive(float *out, const float *inp, const float *weight, const float *bias,
			     int N, int C, int OC, int relu);
/* dout is (OC,N); dinp (C,N) may be NULL; dinp, dweight (OC,C) and dbias (OC,
 * may be NULL) accumulate. */
void linear_backward_fm(float *dinp, float *dweight, float *dbias, const float *dout,
			const float *inp, const float *weight, int N, int C, int OC);
void linear_backward_fm_naive(float *dinp, float *dweight, float *dbias, const float *dout,
			      const float *inp, const float *weight, int N, int C, int OC);

/* out[i] = max(inp[i], 0); out may equal inp. */
void relu_forward(float *out, const float *inp, size_t n);
/* dinp[i] += dout[i] * (out[i] > 0) */
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Inverted dropout. inp, out, mask are (B,C); mask[b,c] is 0 or 1/(1-p),
 * drawn from rng (seed, RNG_DROPOUT, step, ids[b]) at index layer*C + c:
 * element c is dropped when that 16-bit uniform (rng_uniform16_batch: half
 * words, low half first) is < p. p == 0 copies (mask all 1).
 * ids NULL means ids[b] = b. out may equal inp. */
void dropout_forward(float *out, float *mask, const float *inp, int B, int C, float p,
		     uint64_t seed, uint32_t step, uint32_t layer, const uint32_t *ids);
/* The same with the stream index given directly: element c uses index
 * offset + c. dropout_forward is dropout_forward_at with offset layer*C.
 * mlp_forward uses this so that layers of different widths never share draws
 * (see struct mlp). */
void dropout_forward_at(float *out, float *mask, const float *inp, int B, int C, float p,
			uint64_t seed, uint32_t step, uint64_t offset, const uint32_t *ids);
/* dinp += dout * mask */
void dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* Gaussian noise scaled by the batch's mean absolute value:
 *     out = inp + s * mean(|inp|) * eps,   eps ~ N(0,1)
 * inp, out, eps are (B,C); eps[b,c] is drawn from (seed, purpose, step, ids[b])
 * at index c and stored for the backward pass. `mean_abs` is the mean of |inp|
 * over the whole (global) batch, computed by the caller (see nn_mean_abs) so
 * that a data-parallel caller can reduce it across ranks. out may not equal inp. */
void noise_forward(float *out, float *eps, const float *inp, int B, int C, float s,
		   float mean_abs, uint64_t seed, uint32_t purpose, uint32_t step,
		   const uint32_t *ids);
/* The same with eps[b,c] drawn at stream index offset + c (noise_forward is
 * offset 0); late fusion noises branch k at offset sum(in_dim[0..k)) so that
 * it draws exactly the values early fusion draws for those columns. ids NULL
 * means ids[b] = b (also for noise_forward). */
void noise_forward_at(float *out, float *eps, const float *inp, int B, int C, float s,
		      float mean_abs, uint64_t seed, uint32_t purpose, uint32_t step,
		      uint64_t offset, const uint32_t *ids);
/* Gradient of the above as autograd computes it, through mean(|inp|) too:
 *     dinp[b,c] += dout[b,c] + s * sign(inp[b,c]) / N * sum(dout * eps)
 * where N is the global element count and `dot` = sum(dout*eps) over the
 * global batch (the caller reduces it, see noise_dot). */
void noise_backward(float *dinp, const float *dout, const float *inp, int B, int C, float s,
		    double dot, double global_count);
/* Local pieces of the batch-wide sums above: sum |x| and sum dout*eps. */
double nn_sum_abs(const float *x, size_t n);
double noise_dot(const float *dout, const float *eps, size_t n);

/* ---- losses ------------------------------------------------------------ */

enum loss_kind {
	LOSS_CE = 0,             /* softmax cross-entropy on logits (standard) */
	LOSS_DOUBLE_SOFTMAX = 1, /* CE applied to softmax(logits): the paper's original
				    TwoMoon code; compatibility only */
};

/* logits is (B,K). Targets are hard labels (labels, B ints) when soft is
 * NULL, else soft targets (soft, (B,K) rows summing to 1). Returns the SUM of
 * the per-sample losses; dlogits (B,K), if not NULL, is ACCUMULATED with
 * d(sum of losses)/dlogits * grad_scale (pass 1/global_batch for a mean).
 * probs (B,K), if not NULL, receives softmax(logits). */
double softmax_xent(float *dlogits, float *probs, const float *logits, const int *labels,
		    const float *soft, int B, int K, enum loss_kind kind, float grad_scale);

/* softmax_xent on feature-major logits (K,N) whose columns [0,B) are the
 * batch (labels (B) or soft (B,K) as above), in float with vectorized exp/log:
 * the same sum and gradients up to float rounding. dlogits (K,N) is
 * OVERWRITTEN, columns [B,N) with 0; it may not alias logits. */
double softmax_xent_fm(float *dlogits, const float *logits, const int *labels, const float *soft,
		       int B, int N, int K, enum loss_kind kind, float grad_scale);

/* y[i] = exp(x[i] - m[i]) for i < n, in float: 8 lanes of a Cephes
 * polynomial (about 1 ulp; arguments below -87 give exp(-87)) where AVX2
 * is there, else expf. y may equal x. */
void exp_sub(float *y, const float *x, const float *m, int n);

/* softmax of each row of (B,K) into out (may equal inp). */
void softmax_rows(float *out, const float *inp, int B, int K);

/* ---- the MLP model ----------------------------------------------------- */

#define MLP_MAX_BRANCH 2
#define MLP_MAX_LAYERS 8

enum fusion { FUSION_EARLY = 0, FUSION_LATE = 1 };

/*
 * Architecture. Early fusion concatenates the branch inputs (in branch order)
 * and feeds the trunk; branch_depth/branch_hidden are ignored. Late fusion
 * runs each branch's own hidden layers (Linear+ReLU each; a branch of depth 0
 * passes its input through), concatenates the branch outputs in branch order
 * and feeds the trunk. The trunk is hidden[0..depth) Linear+ReLU layers and
 * then a Linear head to `classes`. With one branch and branch_depth 0 the
 * fusion does not matter.
 */
struct mlp_arch {
	int nbranch;
	int in_dim[MLP_MAX_BRANCH];
	enum fusion fusion;
	int branch_depth[MLP_MAX_BRANCH];
	int branch_hidden[MLP_MAX_BRANCH][MLP_MAX_LAYERS];
	int depth;
	int hidden[MLP_MAX_LAYERS];
	int classes;
};

/* The consistency regularizer T; all zero is the identity. Where each piece
 * goes in struct mlp:
 *  - input noise: on the fused input (early fusion) or on each branch input
 *    (late fusion, branch k at stream offset sum(in_dim[0..k)), so both
 *    fusions draw the same eps); mean |x| over the global batch of that input.
 *    Draws (seed, RNG_INPUT_NOISE, step, id).
 *  - hidden noise: after the ReLU of the first hidden layer: the first trunk
 *    layer in early fusion; in late fusion the first layer of every branch
 *    that has one (each with its own batch mean, stream offset = sum of the
 *    widths of the earlier branches' first layers), or the first trunk layer
 *    when no branch has a layer. Draws (seed, RNG_HIDDEN_NOISE, step, id).
 *  - dropout: after every hidden layer's ReLU (branch and trunk layers, not
 *    the head), after the hidden noise where both apply. Hidden layer l (in
 *    the order of m->lin) uses stream offset = sum of the widths of the
 *    hidden layers before it. Draws (seed, RNG_DROPOUT, step, id). */
struct regularizer {
	float input_noise;  /* alpha: x + alpha*mean|x|*N(0,1) on the (fused) input */
	float hidden_noise; /* beta: h + beta*mean|h|*N(0,1) after the first hidden layer's ReLU */
	float dropout;      /* p: dropout after every hidden layer's ReLU */
	/* input transforms of convolutional models (net.h; the MLP ignores them) */
	int hflip;          /* flip images horizontally with probability 1/2 */
	float scale_min, scale_max; /* scale-crop: resize by U(min,max), crop back; 0,0: off */
	int random_crop;    /* spectrograms: a random time window (else the centre one) */
};

/* Batch-wide sums across data-parallel ranks: vals[0..n) are summed in place
 * over all ranks. NULL in a single process. */
typedef void (*reduce_fn)(double *vals, int n, void *arg);

/* What a training forward pass needs besides the inputs. */
struct draw_memo;
struct fwd_ctx {
	struct regularizer reg;
	uint64_t seed;
	uint32_t step;          /* keys the noise/dropout draws */
	const uint32_t *ids;    /* (B) sample ids, key the per-sample draws; NULL: row index */
	int global_batch;       /* rows over all ranks (for the noise mean); <= 0: B */
	reduce_fn reduce;       /* NULL: single process */
	void *reduce_arg;
	reduce_fn bn_reduce;    /* not NULL: this pass's samples are one thread's part of a
				 * batch-norm micro-batch split over threads (model.c), whose
				 * sums go through it (struct bn_split, cnn.h) */
	void *bn_reduce_arg;
	struct draw_memo *memo; /* NULL, or where the hidden noise and dropout draws are kept
				 * for the next model of this seed (rng.h) */
};

struct linear_view {
	int in, out;
	float *w, *b;   /* params */
	float *dw, *db; /* grads */
};

/*
 * The model. lin[] is ordered: branch 0's layers, branch 1's layers (late
 * fusion only), trunk layers, head. params holds, for each lin[l] in order,
 * its weight (out,in) then its bias (out), contiguous, so the tensors of
 * mlp_tensor() tile params exactly; grads has the same layout.
 */
struct mlp {
	struct mlp_arch arch;
	int nlinear;                          /* branch layers + trunk + head */
	struct linear_view lin[MLP_MAX_BRANCH * MLP_MAX_LAYERS + MLP_MAX_LAYERS + 1];
	char names[MLP_MAX_BRANCH * MLP_MAX_LAYERS + MLP_MAX_LAYERS + 1][2][32];
	size_t nparams;
	float *params;  /* one allocation, nparams floats */
	float *grads;   /* one allocation, nparams floats */
	/* activations: one allocation, sized for max_batch rows */
	int max_batch;
	float *acts;
	size_t nacts;
	float *logits;  /* (B, classes) view into acts after mlp_forward */
	int B;          /* rows of the last forward */
	int train;      /* last forward was a training pass */
	/* private bookkeeping for backward */
	void *priv;
};

/* Lay out a model for arch; parameters and gradients zeroed, no activations
 * yet. 0 on success; on a bad arch reports what is wrong and returns -1
 * (m is then left released). */
int mlp_init(struct mlp *m, const struct mlp_arch *arch);
/* PyTorch's default nn.Linear init: weight and bias U(-1/sqrt(in), 1/sqrt(in)),
 * drawn from (seed, RNG_INIT, layer, tensor). */
void mlp_init_params(struct mlp *m, uint64_t seed);
/* The same init drawn as PyTorch draws it after torch.manual_seed(seed):
 * one PyTorch CPU generator stream (rng.h), each layer in lin[] order its
 * weight (kaiming_uniform_ with a = sqrt(5)) then its bias, so a seed names
 * the initial weights of nn.Linear layers constructed in that order. */
void mlp_init_params_torch(struct mlp *m, uint64_t seed);
void mlp_release(struct mlp *m);

/* Forward a batch. inputs[k] is (B, in_dim[k]) for each branch. ctx NULL means
 * evaluation (no regularizer); otherwise a training pass with ctx->reg.
 * Activations are (re)allocated only when B exceeds every earlier B (or a
 * regularizer buffer is needed for the first time). Result in m->logits
 * (B, classes). The inputs are borrowed, not copied: they must stay unchanged
 * until mlp_backward has run. When a regularizer needs a batch mean, ctx->reduce
 * is called (by every rank, the same number of times). */
void mlp_forward(struct mlp *m, const float *const *inputs, int B, const struct fwd_ctx *ctx);
/* Backward from dlogits (B, classes) of the last forward; ACCUMULATES into
 * m->grads. ctx must be the one given to mlp_forward (its reduce hook is
 * called once per noise site of the hidden layers). No input gradient is
 * computed. */
void mlp_backward(struct mlp *m, const float *dlogits, const struct fwd_ctx *ctx);
void mlp_zero_grad(struct mlp *m);
/* softmax_xent of the last forward's logits against labels (B) or soft (B,K)
 * with grad_scale, then mlp_backward from its gradient, in one pass over the
 * model's internal layout (the loss in float, see softmax_xent_fm). Returns
 * the summed loss; ACCUMULATES into m->grads like mlp_backward. */
double mlp_loss_backward(struct mlp *m, const int *labels, const float *soft, enum loss_kind kind,
			 float grad_scale, const struct fwd_ctx *ctx);

/* Whether training forwards of MLPs with few inputs and two hidden layers
 * (and no hidden noise or dropout) take the piecewise-linear path (nn.c; on
 * by default) where it pays: the same results up to float rounding at a
 * fraction of the work. Off, every forward takes the dense path. For tests
 * and benchmarks. */
void mlp_piecewise_enable(int on);
/* whether m's last forward took that path */
int mlp_took_piecewise(const struct mlp *m);

/* Tensor names are PyTorch-style, as a module with ModuleLists `branch0`,
 * `branch1`, `trunk` of nn.Linear and an nn.Linear `head` names them (the
 * number counts Linear layers only, ReLU/dropout are not modules):
 *     branch<k>.<j>.weight (out,in)   branch<k>.<j>.bias (out)   late fusion only
 *     trunk.<j>.weight     (out,in)   trunk.<j>.bias     (out)
 *     head.weight          (classes,in)   head.bias      (classes)
 * Tensor i in [0, 2*nlinear) is lin[i/2]'s weight (i even) or bias (i odd).
 * Returns the name (owned by m) and sets *data (into m->params), *rows and
 * *cols (any may be NULL): a weight is rows=out, cols=in; a bias is rows=out,
 * cols=1 but its PyTorch shape is 1-D (out). NULL when i is out of range. */
int mlp_ntensors(const struct mlp *m);
const char *mlp_tensor(const struct mlp *m, int i, float **data, int *rows, int *cols);
/* Index of the tensor called name, or -1. */
int mlp_find_tensor(const struct mlp *m, const char *name);

/* ---- optimizers -------------------------------------------------------- */

enum optim_kind { OPTIM_SGD = 0, OPTIM_ADAMW = 1 };

/* SGD: PyTorch's torch.optim.SGD with dampening 0 and nesterov off:
 *     g = grad + wd*p; buf = g (first step) or momentum*buf + g; p -= lr*buf
 * AdamW: torch.optim.AdamW (amsgrad off):
 *     p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
 *     p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
struct optim_config {
	enum optim_kind kind;
	float lr;
	float momentum;     /* SGD */
	float weight_decay; /* SGD: L2 added to the gradient (PyTorch SGD); AdamW: decoupled */
	float beta1, beta2, eps; /* AdamW */
};

/* One allocation for the state (momentum buffer, or the two Adam moments). */
struct optim {
	struct optim_config cfg;
	size_t n;
	long t;        /* steps taken */
	float *state;  /* n floats (SGD with momentum) or 2n (AdamW); NULL for plain SGD */
};

/* State zeroed; t = 0. optim_release frees it. */
void optim_init(struct optim *o, const struct optim_config *cfg, size_t n);
/* One update with PyTorch's semantics (torch.optim.SGD / torch.optim.AdamW). */
void optim_step(struct optim *o, float *params, const float *grads);
void optim_release(struct optim *o);

#endif
