/*
 * net.c - convolutional models (net.h) as a fixed list of layers over the
 * kernels of cnn.h and nn.h.
 *
 * Design. net_init turns an architecture into two tables: tensors (one per
 * activation, with its floats per sample) and layers (an op, the tensors it
 * reads and writes, its shapes, and offsets of its parameters in n->params
 * and of its running statistics in n->buffers), in topological order. Forward
 * walks the layers in order, backward in reverse; there is no other control
 * flow, so every model is the same two loops.
 *
 * Memory. params, grads and buffers are one allocation each (their tensors,
 * for names and init, are in a third table). Activations, their gradients,
 * the regularizers' draws, pooling argmaxes, batch-norm saved statistics and
 * the convolution scratch are carved from ONE allocation (net_priv.acts). It
 * grows only when a pass needs more than every pass before (a larger batch,
 * the first pass with a regularizer), so steps of one batch size re-point
 * the same buffers and never allocate. Tensors that need no storage of their
 * own share it: a ReLU works in place on its batch-norm output, and a noise
 * or dropout layer that is off in this pass (evaluation, or a zero
 * regularizer) passes its input through. Buffers are planned by lifetime
 * (plan_values, plan_grads): in training every forward value is kept for the
 * backward pass, but a gradient lives only from the first backward step that
 * adds into it to the step that consumes it (and is zeroed when it starts);
 * in evaluation a value lives only until its last reader, so a forward pass
 * of a deep model needs a few maps' worth of memory.
 *
 * Data parallelism. Batch-wide sums go through ctx->reduce, called the same
 * number of times on every rank: once for the input noise means (one value
 * per input), once for the hidden noise means (one per branch), once for all
 * batch-norm running statistics (after the others) in forward, and once for
 * the hidden noise dots in backward. A run of consecutive noise layers in the
 * list shares one reduce; net_init places them so. Batch norm normalises over
 * fixed micro-batches of samples (cnn.h), so a rank's slice that is a whole
 * number of micro-batches gives the same result on any number of ranks.
 */
#include "net.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

/* what a pass needs; a layout carves only these buffers */
enum {
	NEED_GRAD = 1,     /* training: gradients, batch-norm saved statistics */
	NEED_NOISE_IN = 2,
	NEED_NOISE_H = 4,
	NEED_DROPOUT = 8,
	NEED_AUG = 16,     /* flip / scale-crop of image inputs */
};

enum op {
	OP_CONV,       /* conv2d, optional bias */
	OP_BN,         /* batch norm (micro-batch statistics in training) */
	OP_RELU,       /* in place: out shares in's storage */
	OP_MAXPOOL,    /* 2x2, stride 2 */
	OP_GAP,        /* (n,C,HW) -> (n,C) */
	OP_FRAME_MEAN, /* (B,F,D) -> (B,D) */
	OP_UPSAMPLE,   /* bilinear (C,H,W) -> (C,OH,OW) */
	OP_CONCAT,     /* channels: (Ca,HW) + (Cb,HW) */
	OP_ADD,
	OP_LINEAR,
	OP_DROPOUT,
	OP_NOISE,      /* input or hidden noise (purpose says which) */
};

struct tensor {
	size_t sz;      /* floats per sample */
	int share;      /* tensor whose storage this one uses unless own_flags apply; -1 none */
	int own_flags;  /* with share >= 0: storage of its own when the pass has any of these */
	int nograd;     /* computed from the inputs alone: no gradient */
	int fresh;      /* this pass: its gradient is set by one layer, not zeroed first */
	int novalue;    /* this pass: its values are never written or read (no storage) */
	int input;      /* model input k + 1 (storage set by the forward), else 0 */
	float *x, *g;
	int first, last; /* planning: the steps that bound its buffer's life */
	size_t boff, bn; /* planning: its block in the region */
};

struct layer {
	enum op op;
	int in, in2, out;        /* tensor indices (in2: concat / add) */
	int nimg;                /* images per sample: F for the video branch, else 1 */
	int C, H, W, OC, OH, OW; /* shapes per image as the op needs them */
	struct conv2d_shape cs;
	long w, b;               /* param offsets, -1 none */
	long rm;                 /* BN: running_mean offset in buffers (running_var follows) */
	int bn;                  /* BN: its index (net_bn_name) */
	int bsum;                /* BN: offset of its 2*C sums in the reduce array */
	int fused;               /* BN: applies the ReLU that follows it (and gates its
				    gradient); RELU: done by the BN before it, a no-op */
	int fold;                /* CONV: the next layer is a BN of its output alone, which
				    evaluation folds into the convolution's epilogue; BN:
				    folded so (a no-op in evaluation) */
	int pool;                /* BN, this training pass: the 2x2 max pool that alone reads
				    its ReLU's output, whose backward it does in one
				    (batchnorm_pool_backward); -1 none */
	int pooled;              /* MAXPOOL: forward and backward done by the BN before it */
	int set;                 /* BN: alone reads its input, so SETS that gradient */
	uint32_t purpose;        /* noise: RNG_INPUT_NOISE / RNG_HIDDEN_NOISE */
	uint64_t off;            /* noise, dropout: stream offset */
	float scale;             /* noise: the gain of the last training forward */
	/* per-pass buffers, pointed by the layout */
	float *save_mean, *save_rstd; /* BN (ngroups, C) */
	int *argmax;                  /* maxpool */
	float *draw;                  /* dropout mask / noise eps */
	struct conv_wcache wc;        /* CONV: its Winograd weights between passes */
};

struct ptensor {
	char name[80];
	size_t off, count;
	int ndim, shape[4];
	int is_param;
	int init;   /* INIT_* */
	int fan_in;
};

enum { INIT_ZERO, INIT_ONE, INIT_UNIFORM };

struct net_priv {
	struct tensor *t;
	int nt, cap_t;
	struct layer *l;
	int nl, cap_l;
	struct ptensor *pt;
	int npt, cap_pt;
	int nbn;
	char (*bn_names)[64];
	int in_t[NET_MAX_INPUTS];   /* the model's input tensors (after crop / augment) */
	size_t in_sz[NET_MAX_INPUTS]; /* floats per sample the model sees (cropped) */
	int image[NET_MAX_INPUTS];  /* input k is an image (flip / scale-crop apply) */
	int cw[NET_MAX_INPUTS];     /* width the model sees */
	int logits_t;
	int nbsum;                  /* doubles of BN sums; the reduce array has one more */
	double *bsum;
	/* activations */
	float *acts;
	size_t nacts;
	int max_batch;              /* samples augs holds */
	float *scratch;             /* conv scratch */
	float *ep_scale, *ep_shift; /* (max OC) a folded BN's affine map, evaluation */
	float *crop[NET_MAX_INPUTS], *aug[NET_MAX_INPUTS];
	int *lo, *hi;               /* (nl) the step of each layer in this pass, -1: off */
	int *bhead[2], *bnext[2];   /* lifetimes: heads (nl), links (nt) */
	struct blk {
		size_t off, n;
	} *freel;                   /* (nt) blocks given back */
	int nfree;
	struct augment *augs;       /* (max_batch) the last training forward's transforms */
	int augmented;
	int flags;
	double gbatch;
	struct bn_split bsp;        /* the last training forward's split micro-batch (fwd_ctx
				     * bn_reduce), for its backward; reduce NULL: none */
};

/* the batch-norm split of the pass, or NULL */
static const struct bn_split *bn_split_of(const struct net_priv *P)
{
	return P->bsp.reduce ? &P->bsp : NULL;
}

/* ---- building ---------------------------------------------------------- */

static int t_new(struct net_priv *P, size_t sz, int share, int own_flags)
{
	if (P->nt == P->cap_t) {
		P->cap_t = P->cap_t ? 2 * P->cap_t : 32;
		P->t = xrealloc(P->t, (size_t)P->cap_t * sizeof(*P->t));
	}
	struct tensor *t = &P->t[P->nt];
	memset(t, 0, sizeof(*t));
	t->sz = sz;
	t->share = share;
	t->own_flags = own_flags;
	t->nograd = share >= 0 ? P->t[share].nograd : 0;
	return P->nt++;
}

static struct layer *l_new(struct net_priv *P, enum op op, int in, int out)
{
	if (P->nl == P->cap_l) {
		P->cap_l = P->cap_l ? 2 * P->cap_l : 32;
		P->l = xrealloc(P->l, (size_t)P->cap_l * sizeof(*P->l));
	}
	struct layer *L = &P->l[P->nl++];
	memset(L, 0, sizeof(*L));
	L->op = op;
	L->in = in;
	L->in2 = -1;
	L->out = out;
	L->nimg = 1;
	L->w = L->b = L->rm = -1;
	P->t[out].nograd = P->t[in].nograd; /* layers with parameters reset it */
	return L;
}

/* Record a parameter (is_param) or buffer tensor; returns its offset. */
static long pt_new(struct net *n, int is_param, int init, int fan_in, int ndim, const int *shape,
		   const char *fmt, ...) MKE_PRINTF(7, 8);

static long pt_new(struct net *n, int is_param, int init, int fan_in, int ndim, const int *shape,
		   const char *fmt, ...)
{
	struct net_priv *P = n->priv;
	if (P->npt == P->cap_pt) {
		P->cap_pt = P->cap_pt ? 2 * P->cap_pt : 32;
		P->pt = xrealloc(P->pt, (size_t)P->cap_pt * sizeof(*P->pt));
	}
	struct ptensor *p = &P->pt[P->npt++];
	memset(p, 0, sizeof(*p));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->name, sizeof(p->name), fmt, ap);
	va_end(ap);
	p->count = 1;
	p->ndim = ndim;
	for (int i = 0; i < ndim; i++) {
		p->shape[i] = shape[i];
		p->count *= (size_t)shape[i];
	}
	p->is_param = is_param;
	p->init = init;
	p->fan_in = fan_in;
	size_t *total = is_param ? &n->nparams : &n->nbuffers;
	p->off = *total;
	*total += p->count;
	return (long)p->off;
}

/* A feature map being built: tensor t holds nimg images of C x H x W per sample. */
struct fmap {
	int t, nimg, C, H, W;
};

static size_t fm_size(const struct fmap *f)
{
	return (size_t)f->nimg * f->C * f->H * f->W;
}

/* l_new for a layer that reads the feature map x: its images and shape */
static struct layer *l_new_fm(struct net_priv *P, enum op op, struct fmap x, int out)
{
	struct layer *L = l_new(P, op, x.t, out);
	L->nimg = x.nimg;
	L->C = x.C;
	L->H = x.H;
	L->W = x.W;
	return L;
}

static struct fmap conv(struct net *n, struct fmap x, int OC, int k, int stride, int pad,
			int bias, const char *name)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	struct conv2d_shape cs;
	if (conv2d_shape_init(&cs, x.C, x.H, x.W, OC, k, k, stride, pad, 1)) {
		y.t = -1;
		return y;
	}
	y.C = OC;
	y.H = cs.OH;
	y.W = cs.OW;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new(P, OP_CONV, x.t, y.t);
	P->t[y.t].nograd = 0;
	L->nimg = x.nimg;
	L->cs = cs;
	int shape[4] = { OC, x.C, k, k };
	int fan = x.C * k * k;
	L->w = pt_new(n, 1, INIT_UNIFORM, fan, 4, shape, "%s.weight", name);
	if (bias)
		L->b = pt_new(n, 1, INIT_UNIFORM, fan, 1, shape, "%s.bias", name);
	return y;
}

static struct fmap bn(struct net *n, struct fmap x, const char *name)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.t = t_new(P, fm_size(&x), -1, 0);
	struct layer *L = l_new_fm(P, OP_BN, x, y.t);
	P->t[y.t].nograd = 0;
	int shape[1] = { x.C };
	L->w = pt_new(n, 1, INIT_ONE, 0, 1, shape, "%s.weight", name);
	L->b = pt_new(n, 1, INIT_ZERO, 0, 1, shape, "%s.bias", name);
	L->bsum = P->nbsum;
	P->nbsum += 2 * x.C;
	P->bn_names = xrealloc(P->bn_names, (size_t)(P->nbn + 1) * sizeof(*P->bn_names));
	snprintf(P->bn_names[P->nbn++], sizeof(P->bn_names[0]), "%s", name);
	L->bn = P->nbn - 1; /* its buffers come after every parameter (net_init) */
	return y;
}

static struct fmap relu(struct net *n, struct fmap x)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.t = t_new(P, fm_size(&x), x.t, 0);
	l_new(P, OP_RELU, x.t, y.t);
	return y;
}

static struct fmap conv_bn_relu(struct net *n, struct fmap x, int OC, int stride,
				const char *prefix)
{
	char name[64];
	snprintf(name, sizeof(name), "%s.conv", prefix);
	x = conv(n, x, OC, 3, stride, 1, 0, name);
	if (x.t < 0)
		return x;
	snprintf(name, sizeof(name), "%s.bn", prefix);
	return relu(n, bn(n, x, name));
}

static struct fmap maxpool(struct net *n, struct fmap x)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.H = x.H / 2;
	y.W = x.W / 2;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new_fm(P, OP_MAXPOOL, x, y.t);
	L->OH = y.H;
	L->OW = y.W;
	return y;
}

/* global average pool per image: (nimg, C, H, W) -> (nimg, C, 1, 1) */
static struct fmap gap(struct net *n, struct fmap x)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.H = y.W = 1;
	y.t = t_new(P, fm_size(&y), -1, 0);
	l_new_fm(P, OP_GAP, x, y.t);
	return y;
}

static struct fmap frame_mean(struct net *n, struct fmap x)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.nimg = 1;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new(P, OP_FRAME_MEAN, x.t, y.t);
	L->nimg = x.nimg;
	L->C = x.C * x.H * x.W;
	return y;
}

static struct fmap upsample(struct net *n, struct fmap x, int OH, int OW)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.H = OH;
	y.W = OW;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new(P, OP_UPSAMPLE, x.t, y.t);
	L->C = x.C;
	L->H = x.H;
	L->W = x.W;
	L->OH = OH;
	L->OW = OW;
	return y;
}

/* channel concatenation of a and b (same nimg = 1, H, W) */
static struct fmap concat(struct net *n, struct fmap a, struct fmap b)
{
	struct net_priv *P = n->priv;
	struct fmap y = a;
	y.C = a.C + b.C;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new(P, OP_CONCAT, a.t, y.t);
	L->in2 = b.t;
	L->C = a.C;
	L->OC = b.C;
	L->H = a.H;
	L->W = a.W;
	P->t[y.t].nograd = P->t[a.t].nograd && P->t[b.t].nograd;
	return y;
}

static struct fmap add(struct net *n, struct fmap a, struct fmap b)
{
	struct net_priv *P = n->priv;
	struct fmap y = a;
	y.t = t_new(P, fm_size(&y), -1, 0);
	struct layer *L = l_new(P, OP_ADD, a.t, y.t);
	L->in2 = b.t;
	P->t[y.t].nograd = P->t[a.t].nograd && P->t[b.t].nograd;
	return y;
}

static struct fmap linear(struct net *n, struct fmap x, int OC, const char *name)
{
	struct net_priv *P = n->priv;
	struct fmap y = { .nimg = 1, .C = OC, .H = 1, .W = 1 };
	int C = (int)fm_size(&x);
	y.t = t_new(P, (size_t)OC, -1, 0);
	struct layer *L = l_new(P, OP_LINEAR, x.t, y.t);
	P->t[y.t].nograd = 0;
	L->C = C;
	L->OC = OC;
	int shape[2] = { OC, C };
	L->w = pt_new(n, 1, INIT_UNIFORM, C, 2, shape, "%s.weight", name);
	L->b = pt_new(n, 1, INIT_UNIFORM, C, 1, shape, "%s.bias", name);
	return y;
}

static struct fmap dropout(struct net *n, struct fmap x, uint64_t off)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	y.t = t_new(P, fm_size(&x), x.t, NEED_DROPOUT);
	struct layer *L = l_new(P, OP_DROPOUT, x.t, y.t);
	L->off = off;
	return y;
}

static struct fmap noise(struct net *n, struct fmap x, uint32_t purpose, uint64_t off)
{
	struct net_priv *P = n->priv;
	struct fmap y = x;
	int need = purpose == RNG_INPUT_NOISE ? NEED_NOISE_IN : NEED_NOISE_H;
	y.t = t_new(P, fm_size(&x), x.t, need);
	struct layer *L = l_new(P, OP_NOISE, x.t, y.t);
	L->purpose = purpose;
	L->off = off;
	return y;
}

/* ---- the models -------------------------------------------------------- */

static int arch_check(const struct net_arch *a)
{
	if (a->task != NET_CLASSIFY && a->task != NET_SEGMENT)
		return mke_error("net: unknown task %d", (int)a->task);
	if (a->ninputs < 1 || a->ninputs > NET_MAX_INPUTS)
		return mke_error("net: %d inputs (1 or %d)", a->ninputs, NET_MAX_INPUTS);
	if (a->classes < 1)
		return mke_error("net: %d classes", a->classes);
	if (a->head_hidden < 0)
		return mke_error("net: head_hidden %d is negative", a->head_hidden);
	for (int k = 0; k < a->ninputs; k++) {
		const struct net_input *in = &a->in[k];
		if (in->F < 1 || in->C < 1 || in->H < 1 || in->W < 1)
			return mke_error("net: input %d has shape %dx%dx%dx%d", k, in->F, in->C,
					 in->H, in->W);
		if (a->crop_w[k] < 0 || a->crop_w[k] > in->W)
			return mke_error("net: input %d crop_w %d is outside [0, %d]", k,
					 a->crop_w[k], in->W);
		if (a->crop_w[k] > 0 && in->F != 1)
			return mke_error("net: input %d has %d frames and a crop_w", k, in->F);
		if (a->task == NET_CLASSIFY) {
			const struct net_branch *br = &a->branch[k];
			if (br->type != NET_CONV3 && br->type != NET_RESNET && br->type != NET_VIDEO)
				return mke_error("net: branch %d has unknown type %d", k,
						 (int)br->type);
			if (br->nstage < 1 || br->nstage > NET_MAX_STAGE)
				return mke_error("net: branch %d has %d stages (1..%d)", k,
						 br->nstage, NET_MAX_STAGE);
			for (int s = 0; s < br->nstage; s++)
				if (br->channels[s] < 1)
					return mke_error("net: branch %d stage %d has %d channels",
							 k, s, br->channels[s]);
			if (br->type == NET_RESNET && br->blocks < 1)
				return mke_error("net: resnet branch %d has %d blocks per stage", k,
						 br->blocks);
			if (br->type != NET_VIDEO && in->F != 1)
				return mke_error("net: input %d has %d frames but branch %d is not "
						 "'video'", k, in->F, k);
		} else if (in->F != 1) {
			return mke_error("net: segmentation input %d has %d frames", k, in->F);
		}
	}
	if (a->task == NET_SEGMENT) {
		if (a->seg_nstage < 1 || a->seg_nstage > NET_MAX_STAGE)
			return mke_error("net: %d segmentation stages (1..%d)", a->seg_nstage,
					 NET_MAX_STAGE);
		for (int s = 0; s < a->seg_nstage; s++)
			if (a->seg_channels[s] < 1)
				return mke_error("net: segmentation stage %d has %d channels", s,
						 a->seg_channels[s]);
		int w0 = a->crop_w[0] ? a->crop_w[0] : a->in[0].W;
		for (int k = 1; k < a->ninputs; k++) {
			int w = a->crop_w[k] ? a->crop_w[k] : a->in[k].W;
			if (a->in[k].H != a->in[0].H || w != w0)
				return mke_error("net: segmentation input %d is %dx%d, input 0 is "
						 "%dx%d", k, a->in[k].H, w, a->in[0].H, w0);
		}
	}
	return 0;
}

/* a pooled size must stay >= 1 */
static int pool_ok(struct fmap x, const char *what, int k)
{
	if (x.H < 2 || x.W < 2)
		return mke_error("net: %s %d is %dx%d before a 2x2 max pool; use a larger input "
				 "or fewer stages", what, k, x.H, x.W);
	return 0;
}

/* The branch's first block (up to its first ReLU, where the hidden noise
 * goes), and the rest of it. */
static int branch_first(struct net *n, int k, struct fmap x, struct fmap *out)
{
	const struct net_branch *br = &n->arch.branch[k];
	char prefix[64];
	if (br->type == NET_RESNET)
		snprintf(prefix, sizeof(prefix), "branch%d.stem", k);
	else
		snprintf(prefix, sizeof(prefix), "branch%d.stage0", k);
	*out = conv_bn_relu(n, x, br->channels[0], 1, prefix);
	return out->t < 0 ? -1 : 0;
}

static struct fmap basic_block(struct net *n, struct fmap x, int OC, int stride,
			       const char *prefix)
{
	char name[80];
	struct fmap y;
	snprintf(name, sizeof(name), "%s.conv1", prefix);
	y = conv(n, x, OC, 3, stride, 1, 0, name);
	if (y.t < 0)
		return y;
	snprintf(name, sizeof(name), "%s.bn1", prefix);
	y = relu(n, bn(n, y, name));
	snprintf(name, sizeof(name), "%s.conv2", prefix);
	y = conv(n, y, OC, 3, 1, 1, 0, name);
	snprintf(name, sizeof(name), "%s.bn2", prefix);
	y = bn(n, y, name);
	struct fmap sc = x;
	if (stride != 1 || OC != x.C) {
		snprintf(name, sizeof(name), "%s.downsample.0", prefix);
		sc = conv(n, x, OC, 1, stride, 0, 0, name);
		if (sc.t < 0)
			return sc;
		snprintf(name, sizeof(name), "%s.downsample.1", prefix);
		sc = bn(n, sc, name);
	}
	return relu(n, add(n, y, sc));
}

static int branch_rest(struct net *n, int k, struct fmap x, struct fmap *out)
{
	const struct net_branch *br = &n->arch.branch[k];
	char prefix[64];
	if (br->type == NET_RESNET) {
		/* the stem's max pool, as in ResNet: every stage at a quarter of
		 * the input's positions */
		if (pool_ok(x, "branch", k))
			return -1;
		x = maxpool(n, x);
		for (int s = 0; s < br->nstage; s++) {
			for (int j = 0; j < br->blocks; j++) {
				snprintf(prefix, sizeof(prefix), "branch%d.stage%d.%d", k, s, j);
				x = basic_block(n, x, br->channels[s], s > 0 && j == 0 ? 2 : 1,
						prefix);
				if (x.t < 0)
					return -1;
			}
		}
		*out = gap(n, x);
		return 0;
	}
	for (int s = 0; s < br->nstage; s++) {
		if (s > 0) {
			snprintf(prefix, sizeof(prefix), "branch%d.stage%d", k, s);
			x = conv_bn_relu(n, x, br->channels[s], 1, prefix);
			if (x.t < 0)
				return -1;
		}
		if (pool_ok(x, "branch", k))
			return -1;
		x = maxpool(n, x);
	}
	if (br->type == NET_CONV3) {
		/* flatten: the same tensor seen as one C*H*W vector per sample */
		x.C *= x.H * x.W;
		x.H = x.W = 1;
		*out = x;
		return 0;
	}
	x = gap(n, x);
	x = frame_mean(n, x);
	*out = x;
	return 0;
}

static int build_classify(struct net *n, struct fmap *in, struct fmap *logits)
{
	const struct net_arch *a = &n->arch;
	struct fmap h[NET_MAX_INPUTS] = {0};
	for (int k = 0; k < a->ninputs; k++)
		if (branch_first(n, k, in[k], &h[k]))
			return -1;
	uint64_t off = 0;
	for (int k = 0; k < a->ninputs; k++) {
		h[k] = noise(n, h[k], RNG_HIDDEN_NOISE, off);
		off += fm_size(&h[k]);
	}
	for (int k = 0; k < a->ninputs; k++)
		if (branch_rest(n, k, h[k], &h[k]))
			return -1;
	struct fmap f = h[0];
	for (int k = 1; k < a->ninputs; k++)
		f = concat(n, f, h[k]);
	/* head: Sequential(Dropout, Linear, ReLU, Dropout, Linear) or (Dropout, Linear) */
	size_t D = fm_size(&f);
	f = dropout(n, f, 0);
	if (a->head_hidden > 0) {
		f = relu(n, linear(n, f, a->head_hidden, "head.1"));
		f = dropout(n, f, D);
		f = linear(n, f, a->classes, "head.4");
	} else {
		f = linear(n, f, a->classes, "head.1");
	}
	*logits = f;
	return 0;
}

static int build_segment(struct net *n, struct fmap *in, struct fmap *logits)
{
	const struct net_arch *a = &n->arch;
	int S = a->seg_nstage;
	struct fmap e[NET_MAX_INPUTS], skip[NET_MAX_STAGE];
	char prefix[64];
	for (int s = 0; s < S; s++) {
		for (int k = 0; k < a->ninputs; k++) {
			struct fmap x = s == 0 ? in[k] : k == 0 ? skip[s - 1] : e[k];
			if (s > 0) {
				if (pool_ok(x, "encoder stage", s))
					return -1;
				x = maxpool(n, x);
			}
			snprintf(prefix, sizeof(prefix), "enc%d.stage%d", k, s);
			e[k] = conv_bn_relu(n, x, a->seg_channels[s], 1, prefix);
			if (e[k].t < 0)
				return -1;
		}
		if (s == 0) {
			uint64_t off = 0;
			for (int k = 0; k < a->ninputs; k++) {
				e[k] = noise(n, e[k], RNG_HIDDEN_NOISE, off);
				off += fm_size(&e[k]);
			}
		}
		skip[s] = e[0];
		for (int k = 1; k < a->ninputs; k++)
			skip[s] = add(n, skip[s], e[k]);
	}
	struct fmap x = dropout(n, skip[S - 1], 0);
	for (int s = S - 2; s >= 0; s--) {
		x = upsample(n, x, skip[s].H, skip[s].W);
		x = concat(n, x, skip[s]);
		snprintf(prefix, sizeof(prefix), "dec.stage%d", s);
		x = conv_bn_relu(n, x, a->seg_channels[s], 1, prefix);
		if (x.t < 0)
			return -1;
	}
	*logits = conv(n, x, a->classes, 1, 1, 0, 1, "classifier");
	return logits->t < 0 ? -1 : 0;
}

size_t net_logits_per_sample(const struct net_arch *a)
{
	if (a->task == NET_SEGMENT) {
		int W = a->crop_w[0] ? a->crop_w[0] : a->in[0].W;
		return (size_t)a->classes * a->in[0].H * W;
	}
	return (size_t)a->classes;
}

int net_init(struct net *n, const struct net_arch *arch)
{
	memset(n, 0, sizeof(*n));
	if (arch_check(arch))
		return -1;
	n->arch = *arch;
	struct net_arch *a = &n->arch;
	if (a->bn_micro <= 0)
		a->bn_micro = 8;
	if (a->bn_momentum <= 0.0f)
		a->bn_momentum = 0.1f;
	if (a->bn_eps <= 0.0f)
		a->bn_eps = 1e-5f;
	struct net_priv *P = xcalloc(1, sizeof(*P));
	n->priv = P;

	/* the inputs (after crop / augment) and the input noise on them */
	struct fmap in[NET_MAX_INPUTS];
	uint64_t off = 0;
	for (int k = 0; k < a->ninputs; k++) {
		const struct net_input *ik = &a->in[k];
		P->cw[k] = a->crop_w[k] ? a->crop_w[k] : ik->W;
		P->image[k] = a->crop_w[k] == 0 && ik->H > 1 && ik->W > 1;
		struct fmap x = { .nimg = ik->F, .C = ik->C, .H = ik->H, .W = P->cw[k] };
		x.t = t_new(P, fm_size(&x), -1, 0);
		P->t[x.t].nograd = 1;
		P->t[x.t].input = k + 1;
		P->in_t[k] = x.t;
		P->in_sz[k] = fm_size(&x);
		in[k] = x;
	}
	for (int k = 0; k < a->ninputs; k++) {
		in[k] = noise(n, in[k], RNG_INPUT_NOISE, off);
		off += P->in_sz[k];
	}
	struct fmap logits;
	int rc = a->task == NET_CLASSIFY ? build_classify(n, in, &logits)
					 : build_segment(n, in, &logits);
	if (rc) {
		net_release(n);
		return -1;
	}
	P->logits_t = logits.t;
	/* BN then a ReLU in place on its output: one pass (cnn.h relu) */
	for (int i = 0; i + 1 < P->nl; i++)
		if (P->l[i].op == OP_BN && P->l[i + 1].op == OP_RELU &&
		    P->l[i + 1].in == P->l[i].out)
			P->l[i].fused = P->l[i + 1].fused = 1;
	/* a convolution whose output only a BN reads: in evaluation the BN's
	 * affine map (and ReLU) is the convolution's epilogue */
	int maxoc = 0;
	for (int i = 0; i + 1 < P->nl; i++) {
		struct layer *L = &P->l[i];
		if (L->op != OP_CONV || P->l[i + 1].op != OP_BN || P->l[i + 1].in != L->out)
			continue;
		int readers = 0;
		for (int j = 0; j < P->nl; j++)
			readers += (P->l[j].in == L->out) + (P->l[j].in2 == L->out);
		for (int t = 0; t < P->nt; t++)
			readers += P->t[t].share == L->out;
		if (readers != 1 || L->out == P->logits_t)
			continue;
		L->fold = P->l[i + 1].fold = 1;
		if (L->cs.OC > maxoc)
			maxoc = L->cs.OC;
	}
	P->ep_scale = xmalloc(2 * ((size_t)maxoc + 1) * sizeof(float));
	P->ep_shift = P->ep_scale + maxoc + 1;

	/* buffers: running_mean, running_var per BN layer, after all parameters
	 * in the tensor table */
	for (int i = 0; i < P->nl; i++) {
		struct layer *L = &P->l[i];
		if (L->op != OP_BN)
			continue;
		int shape[1] = { L->C };
		const char *bname = P->bn_names[L->bn];
		L->rm = pt_new(n, 0, INIT_ZERO, 0, 1, shape, "%s.running_mean", bname);
		pt_new(n, 0, INIT_ONE, 0, 1, shape, "%s.running_var", bname);
	}
	P->bsum = xcalloc((size_t)P->nbsum + 1, sizeof(double));
	P->lo = xmalloc((size_t)P->nl * sizeof(int));
	P->hi = xmalloc((size_t)P->nl * sizeof(int));
	for (int k = 0; k < 2; k++) {
		P->bhead[k] = xmalloc((size_t)P->nl * sizeof(int));
		P->bnext[k] = xmalloc((size_t)P->nt * sizeof(int));
	}
	P->freel = xmalloc((size_t)P->nt * sizeof(*P->freel));
	n->params = xcalloc(n->nparams ? n->nparams : 1, sizeof(float));
	n->grads = xcalloc(n->nparams ? n->nparams : 1, sizeof(float));
	n->buffers = xcalloc(n->nbuffers ? n->nbuffers : 1, sizeof(float));
	for (int i = 0; i < P->npt; i++) {
		const struct ptensor *p = &P->pt[i];
		float *base = p->is_param ? n->params : n->buffers;
		if (p->init == INIT_ONE)
			for (size_t j = 0; j < p->count; j++)
				base[p->off + j] = 1.0f;
	}
	return 0;
}

void net_init_params(struct net *n, uint64_t seed)
{
	struct net_priv *P = n->priv;
	for (int i = 0; i < P->npt; i++) {
		const struct ptensor *p = &P->pt[i];
		float *x = (p->is_param ? n->params : n->buffers) + p->off;
		if (p->init == INIT_UNIFORM) {
			float bound = 1.0f / sqrtf((float)p->fan_in);
			struct rng r;
			rng_init(&r, seed, RNG_INIT, (uint32_t)i, 0);
			for (size_t j = 0; j < p->count; j++)
				x[j] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
		} else {
			float v = p->init == INIT_ONE ? 1.0f : 0.0f;
			for (size_t j = 0; j < p->count; j++)
				x[j] = v;
		}
	}
	n->bn_batches = 0;
}

void net_release(struct net *n)
{
	struct net_priv *P = n->priv;
	if (P) {
		for (int i = 0; i < P->nl; i++)
			conv_wcache_release(&P->l[i].wc);
		free(P->t);
		free(P->l);
		free(P->pt);
		free(P->bn_names);
		free(P->bsum);
		free(P->ep_scale);
		free(P->acts);
		free(P->augs);
		free(P->lo);
		free(P->hi);
		for (int k = 0; k < 2; k++) {
			free(P->bhead[k]);
			free(P->bnext[k]);
		}
		free(P->freel);
		free(P);
	}
	free(n->params);
	free(n->grads);
	free(n->buffers);
	memset(n, 0, sizeof(*n));
}

void net_zero_grad(struct net *n)
{
	memset(n->grads, 0, n->nparams * sizeof(float));
}

/* ---- activations ------------------------------------------------------- */

static int owns(const struct tensor *t, int flags)
{
	return !t->input && (t->share < 0 || (t->own_flags & flags));
}

/* the tensor whose storage t uses in a pass with flags */
static int root_of(const struct net_priv *P, int t, int flags)
{
	while (!P->t[t].input && !owns(&P->t[t], flags))
		t = P->t[t].share;
	return t;
}

/* whether layer L runs in a pass with flags (an off regularizer passes through) */
static int layer_on(const struct net_priv *P, const struct layer *L, int flags)
{
	return L->op == OP_RELU || owns(&P->t[L->out], flags);
}

/* Cut the layers that run into steps: one layer, or a run of consecutive
 * noise layers (they share one reduce). lo[i], hi[i]: the step of layer i;
 * -1 when it does not run. */
static void plan_steps(struct net_priv *P, int flags)
{
	for (int i = 0; i < P->nl;) {
		if (!layer_on(P, &P->l[i], flags)) {
			P->lo[i] = P->hi[i] = -1;
			i++;
			continue;
		}
		int j = i + 1;
		if (P->l[i].op == OP_NOISE)
			while (j < P->nl && P->l[j].op == OP_NOISE && layer_on(P, &P->l[j], flags))
				j++;
		for (int k = i; k < j; k++) {
			P->lo[k] = i;
			P->hi[k] = j - 1;
		}
		i = j;
	}
}

/* the layers running in a pass with flags, other than `skip`, that read
 * storage root r */
static int root_readers(const struct net_priv *P, int r, int skip, int flags, int *reader)
{
	int n = 0;
	for (int k = 0; k < P->nl; k++) {
		const struct layer *L = &P->l[k];
		if (k == skip || P->lo[k] < 0)
			continue;
		if (root_of(P, L->in, flags) == r || (L->in2 >= 0 && root_of(P, L->in2, flags) == r)) {
			n++;
			*reader = k;
		}
	}
	return n;
}

/* Training, with flags: which batch norms do their max pool's backward
 * (their ReLU's output read by that pool alone) and which set their input's
 * gradient (they alone read the input); those gradients are not zeroed. */
static void plan_fusion(struct net_priv *P, int flags)
{
	int lr = root_of(P, P->logits_t, flags);
	for (int t = 0; t < P->nt; t++)
		P->t[t].fresh = P->t[t].novalue = 0;
	for (int i = 0; i < P->nl; i++)
		P->l[i].pool = -1, P->l[i].pooled = P->l[i].set = 0;
	if (!(flags & NEED_GRAD))
		return;
	for (int i = 0; i < P->nl; i++) {
		struct layer *L = &P->l[i];
		if (L->op != OP_BN || P->lo[i] < 0)
			continue;
		int k = -1, c = root_of(P, L->in, flags);
		if (!P->t[c].input && !P->t[c].nograd && c != lr &&
		    root_readers(P, c, -1, flags, &k) == 1 && k == i) {
			L->set = 1;
			P->t[c].fresh = 1;
		}
		if (!L->fused || i + 1 >= P->nl)
			continue;
		int r = root_of(P, P->l[i + 1].out, flags);
		if (r == lr || root_readers(P, r, i + 1, flags, &k) != 1 || P->l[k].op != OP_MAXPOOL)
			continue;
		L->pool = k;
		P->l[k].pooled = 1;
		P->t[r].fresh = 1; /* nothing writes its gradient now, */
		P->t[r].novalue = 1; /* nor its values */
	}
}

/* Lifetimes: bucket 0 of a step lists the tensors whose buffer is taken at
 * it, bucket 1 those whose buffer is given back after it. */
static void bucket_push(struct net_priv *P, int which, int step, int t)
{
	P->bnext[which][t] = P->bhead[which][step];
	P->bhead[which][step] = t;
}

/* Take a block for tensor t (B samples): the best fit among the blocks given
 * back, else new space at *top. Offsets in floats from the region's start. */
static void block_get(struct net_priv *P, size_t *top, int t, int B)
{
	struct tensor *T = &P->t[t];
	size_t n = ((size_t)B * T->sz + 7) & ~(size_t)7;
	int best = -1;
	for (int i = 0; i < P->nfree; i++)
		if (P->freel[i].n >= n && (best < 0 || P->freel[i].n < P->freel[best].n))
			best = i;
	if (best >= 0) {
		T->boff = P->freel[best].off;
		T->bn = P->freel[best].n;
		P->freel[best] = P->freel[--P->nfree];
	} else {
		T->boff = *top;
		T->bn = n;
		*top += n;
	}
}

static void block_put(struct net_priv *P, int t)
{
	P->freel[P->nfree].off = P->t[t].boff;
	P->freel[P->nfree].n = P->t[t].bn;
	P->nfree++;
}

/*
 * Evaluation: a tensor's values live from the step that writes them to the
 * last step that reads them, so the activations of a forward pass share a
 * few buffers. Returns the floats of the region; with base, points the
 * tensors into it (tensors of the same storage share their root's pointer).
 */
static size_t plan_values(struct net_priv *P, float *base, int B, int flags)
{
	for (int i = 0; i < P->nl; i++)
		P->bhead[0][i] = P->bhead[1][i] = -1;
	for (int t = 0; t < P->nt; t++)
		P->t[t].first = P->t[t].last = -1;
	for (int i = 0; i < P->nl; i++) {
		const struct layer *L = &P->l[i];
		if (P->lo[i] < 0)
			continue;
		int ro = root_of(P, L->out, flags);
		struct tensor *T = &P->t[ro];
		/* a folded BN's output is written by the convolution's step */
		int first = L->op == OP_BN && L->fold ? P->lo[i - 1] : P->lo[i];
		if (T->first < 0 || first < T->first)
			T->first = first;
		int ins[2] = { L->in, L->in2 };
		for (int k = 0; k < 2; k++) {
			if (ins[k] < 0)
				continue;
			int r = root_of(P, ins[k], flags);
			if (r != ro && P->hi[i] > P->t[r].last)
				P->t[r].last = P->hi[i];
		}
	}
	int lr = root_of(P, P->logits_t, flags);
	for (int t = 0; t < P->nt; t++) {
		const struct tensor *T = &P->t[t];
		if (T->input || !owns(T, flags) || T->first < 0)
			continue;
		bucket_push(P, 0, T->first, t);
		if (T->last >= 0 && t != lr)
			bucket_push(P, 1, T->last, t);
	}
	size_t top = 0;
	P->nfree = 0;
	for (int i = 0; i < P->nl; i++) {
		if (P->lo[i] == i)
			for (int t = P->bhead[0][i]; t >= 0; t = P->bnext[0][t])
				block_get(P, &top, t, B);
		if (P->hi[i] == i)
			for (int t = P->bhead[1][i]; t >= 0; t = P->bnext[1][t])
				block_put(P, t);
	}
	for (int t = 0; t < P->nt; t++) {
		struct tensor *T = &P->t[t];
		if (T->input)
			continue;
		int r = root_of(P, t, flags);
		T->x = base && !P->t[r].input && P->t[r].first >= 0 ? base + P->t[r].boff : NULL;
	}
	return top;
}

/*
 * Training: a tensor's gradient lives from the first step of the backward
 * pass that adds into it (its last reader in forward order) to the step that
 * wrote the tensor, where it is consumed; it is zeroed when taken (bucket 0
 * of that step, which net_backward clears), the logits' is copied in.
 */
static size_t plan_grads(struct net_priv *P, float *base, int B, int flags)
{
	for (int i = 0; i < P->nl; i++)
		P->bhead[0][i] = P->bhead[1][i] = -1;
	for (int t = 0; t < P->nt; t++)
		P->t[t].first = P->t[t].last = -1;
	for (int i = 0; i < P->nl; i++) {
		const struct layer *L = &P->l[i];
		if (P->lo[i] < 0)
			continue;
		int ro = root_of(P, L->out, flags);
		struct tensor *T = &P->t[ro];
		if (T->nograd)
			continue;
		if (T->first < 0 || P->lo[i] < T->first)
			T->first = P->lo[i];
		int ins[2] = { L->in, L->in2 };
		for (int k = 0; k < 2; k++) {
			if (ins[k] < 0)
				continue;
			int r = root_of(P, ins[k], flags);
			if (r != ro && !P->t[r].nograd && P->hi[i] > P->t[r].last)
				P->t[r].last = P->hi[i];
		}
	}
	/* a BN that does its pool's backward reads the pool's output gradient:
	 * that gradient lives until the BN's step (other layers may run between) */
	for (int i = 0; i < P->nl; i++) {
		const struct layer *L = &P->l[i];
		if (L->op != OP_BN || L->pool < 0)
			continue;
		struct tensor *T = &P->t[root_of(P, P->l[L->pool].out, flags)];
		if (T->first > P->lo[i])
			T->first = P->lo[i];
	}
	int lr = root_of(P, P->logits_t, flags);
	size_t top = 0;
	P->nfree = 0;
	block_get(P, &top, lr, B);
	for (int t = 0; t < P->nt; t++) {
		const struct tensor *T = &P->t[t];
		if (T->input || T->nograd || !owns(T, flags) || t == lr || T->last < 0)
			continue;
		bucket_push(P, 0, T->last, t);
		if (T->first >= 0)
			bucket_push(P, 1, T->first, t);
	}
	for (int i = P->nl - 1; i >= 0; i--) {
		if (P->hi[i] == i)
			for (int t = P->bhead[0][i]; t >= 0; t = P->bnext[0][t])
				block_get(P, &top, t, B);
		if (P->lo[i] == i)
			for (int t = P->bhead[1][i]; t >= 0; t = P->bnext[1][t])
				block_put(P, t);
	}
	for (int t = 0; t < P->nt; t++) {
		struct tensor *T = &P->t[t];
		int r = root_of(P, t, flags);
		const struct tensor *R = &P->t[r];
		int has = !R->input && !R->nograd && (r == lr || R->last >= 0);
		T->g = base && has ? base + R->boff : NULL;
	}
	return top;
}

/* Point every buffer of a pass with B samples and flags into base; returns
 * the floats needed (base NULL: only counts). */
static size_t net_layout(struct net *n, float *base, int B, int flags)
{
	struct net_priv *P = n->priv;
	const struct net_arch *a = &n->arch;
	size_t off = 0;
	int train = flags & NEED_GRAD;
	int groups = (B + a->bn_micro - 1) / a->bn_micro;
	plan_steps(P, flags);
	plan_fusion(P, flags);
	if (train) {
		/* the backward pass reads the forward's values: each its own */
		for (int i = 0; i < P->nt; i++) {
			struct tensor *t = &P->t[i];
			if (owns(t, flags))
				t->x = t->novalue ? NULL : carve_floats(base, &off, (size_t)B * t->sz);
			else if (!t->input)
				t->x = P->t[t->share].x;
		}
		size_t ng = plan_grads(P, NULL, B, flags);
		plan_grads(P, carve_floats(base, &off, ng), B, flags);
	} else {
		size_t nv = plan_values(P, NULL, B, flags);
		plan_values(P, carve_floats(base, &off, nv), B, flags);
		for (int i = 0; i < P->nt; i++)
			P->t[i].g = NULL;
	}
	size_t scratch = 0, amax = 0;
	for (int i = 0; i < P->nl; i++) {
		struct layer *L = &P->l[i];
		L->save_mean = L->save_rstd = L->draw = NULL;
		L->argmax = NULL;
		size_t sz = P->t[L->in].sz;
		switch (L->op) {
		case OP_CONV: {
			size_t s = conv2d_scratch(&L->cs, B * L->nimg);
			if (s > scratch)
				scratch = s;
			break;
		}
		case OP_BN:
			if (train) {
				L->save_mean = carve_floats(base, &off, (size_t)groups * L->C);
				L->save_rstd = carve_floats(base, &off, (size_t)groups * L->C);
			}
			/* with its pool: a micro-batch of gated gradient planes
			 * (the convolutions' scratch is free while a BN runs) */
			if (L->pool >= 0) {
				int nb = B * L->nimg, mb = a->bn_micro * L->nimg;
				size_t need = (size_t)(mb < nb ? mb : nb) * L->H * L->W;
				if (need > scratch)
					scratch = need;
			}
			break;
		case OP_MAXPOOL:
			/* kept for backward in training; one shared buffer in evaluation */
			if (train)
				L->argmax = (int *)carve_floats(base, &off, (size_t)B * P->t[L->out].sz);
			else if ((size_t)B * P->t[L->out].sz > amax)
				amax = (size_t)B * P->t[L->out].sz;
			break;
		case OP_DROPOUT:
		case OP_NOISE:
			if (owns(&P->t[L->out], flags))
				L->draw = carve_floats(base, &off, (size_t)B * sz);
			break;
		default:
			break;
		}
	}
	if (!train) {
		int *am = (int *)carve_floats(base, &off, amax);
		for (int i = 0; i < P->nl; i++)
			if (P->l[i].op == OP_MAXPOOL)
				P->l[i].argmax = am;
	}
	P->scratch = carve_floats(base, &off, scratch);
	for (int k = 0; k < a->ninputs; k++) {
		P->crop[k] = P->aug[k] = NULL;
		if (P->cw[k] < a->in[k].W)
			P->crop[k] = carve_floats(base, &off, (size_t)B * P->in_sz[k]);
		if ((flags & NEED_AUG) && P->image[k])
			P->aug[k] = carve_floats(base, &off, (size_t)B * P->in_sz[k]);
	}
	return off;
}

/* Make acts hold a pass of B samples with flags, and point this pass's
 * buffers into it. It grows only when a pass needs more than any before
 * (a larger batch, or the first pass with a regularizer), so steps of the
 * same batch size reuse the same buffers. */
static void net_reserve(struct net *n, int B, int flags)
{
	struct net_priv *P = n->priv;
	size_t need = net_layout(n, NULL, B, flags);
	if (!P->acts || need > P->nacts) {
		free(P->acts);
		P->acts = xalloc_floats32(need);
		P->nacts = need;
	}
	if (B > P->max_batch) {
		free(P->augs);
		P->augs = xcalloc((size_t)B, sizeof(*P->augs));
		P->max_batch = B;
	}
	net_layout(n, P->acts, B, flags);
}

static void ctx_reduce(const struct fwd_ctx *ctx, double *vals, int n)
{
	if (ctx && ctx->reduce)
		ctx->reduce(vals, n, ctx->reduce_arg);
}

/* ---- forward ----------------------------------------------------------- */

/* The noise layers [i, j): one reduce of their sums |x|, then the noise. */
static void noise_run_forward(struct net *n, int i, int j, int B, const struct fwd_ctx *ctx)
{
	struct net_priv *P = n->priv;
	double s[2 * NET_MAX_INPUTS];
	int m = 0;
	for (int l = i; l < j; l++) {
		const struct layer *L = &P->l[l];
		s[m++] = nn_sum_abs(P->t[L->in].x, (size_t)B * P->t[L->in].sz);
	}
	ctx_reduce(ctx, s, m);
	m = 0;
	for (int l = i; l < j; l++) {
		struct layer *L = &P->l[l];
		size_t sz = P->t[L->in].sz;
		float mean = (float)(s[m++] / (P->gbatch * (double)sz));
		L->scale = L->purpose == RNG_INPUT_NOISE ? ctx->reg.input_noise
							 : ctx->reg.hidden_noise;
		noise_forward_at(P->t[L->out].x, L->draw, P->t[L->in].x, B, (int)sz, L->scale, mean,
				 ctx->seed, L->purpose, ctx->step, L->off, ctx->ids);
	}
}

static void layer_forward(struct net *n, struct layer *L, int B, const struct fwd_ctx *ctx)
{
	struct net_priv *P = n->priv;
	const struct net_arch *a = &n->arch;
	float *out = P->t[L->out].x;
	const float *in = P->t[L->in].x;
	const float *w = L->w >= 0 ? n->params + L->w : NULL;
	const float *b = L->b >= 0 ? n->params + L->b : NULL;
	int nb = B * L->nimg;
	switch (L->op) {
	case OP_CONV:
		if (!ctx && L->fold) {
			/* the BN after it (and its ReLU) as the epilogue, into the BN's output */
			const struct layer *N = L + 1;
			batchnorm_eval_affine(P->ep_scale, P->ep_shift, n->params + N->w,
					      n->params + N->b, n->buffers + N->rm,
					      n->buffers + N->rm + N->C, N->C, a->bn_eps);
			struct conv_epilogue ep = { P->ep_scale, P->ep_shift, N->fused };
			conv2d_forward_wc(P->t[N->out].x, in, w, b, &L->cs, nb, P->scratch, &ep,
					  &L->wc);
		} else {
			/* evaluation keeps the transformed weights (decision 27), and
			 * so does training, for the step's input gradient */
			conv2d_forward_wc(out, in, w, b, &L->cs, nb, P->scratch, NULL, &L->wc);
		}
		break;
	case OP_BN:
		if (!ctx && L->fold)
			break; /* done by the convolution before it */
		if (ctx && L->pool >= 0) {
			/* its ReLU's output read by the pool alone: only the pool's */
			const struct layer *M = &P->l[L->pool];
			batchnorm_pool_forward(P->t[M->out].x, M->argmax, L->save_mean, L->save_rstd,
					       in, w, b, nb, L->C, L->H, L->W, a->bn_micro * L->nimg,
					       a->bn_eps, P->bsum + L->bsum, P->scratch, bn_split_of(P));
		} else if (ctx) {
			batchnorm_forward(out, L->save_mean, L->save_rstd, in, w, b, nb, L->C,
					  L->H * L->W, a->bn_micro * L->nimg, a->bn_eps,
					  P->bsum + L->bsum, L->fused, bn_split_of(P));
		} else {
			batchnorm_forward_eval(out, in, w, b, n->buffers + L->rm,
					       n->buffers + L->rm + L->C, nb, L->C, L->H * L->W,
					       a->bn_eps, L->fused);
		}
		break;
	case OP_RELU:
		if (!L->fused)
			relu_forward(out, in, (size_t)B * P->t[L->in].sz);
		break;
	case OP_MAXPOOL:
		if (!L->pooled) /* else done by the BN before it */
			maxpool2d_forward(out, L->argmax, in, nb, L->C, L->H, L->W, 2, 2, 0);
		break;
	case OP_GAP:
		global_avgpool_forward(out, in, nb, L->C, L->H * L->W);
		break;
	case OP_FRAME_MEAN:
		frame_mean_forward(out, in, B, L->nimg, L->C);
		break;
	case OP_UPSAMPLE:
		upsample_bilinear_forward(out, in, B, L->C, L->H, L->W, L->OH, L->OW);
		break;
	case OP_CONCAT:
		concat_forward(out, in, P->t[L->in2].x, B, L->C, L->OC, L->H * L->W);
		break;
	case OP_ADD:
		add_forward(out, in, P->t[L->in2].x, (size_t)B * P->t[L->out].sz);
		break;
	case OP_LINEAR:
		linear_forward(out, in, w, b, B, L->C, L->OC);
		break;
	case OP_DROPOUT:
		dropout_forward_at(out, L->draw, in, B, (int)P->t[L->in].sz, ctx->reg.dropout,
				   ctx->seed, ctx->step, L->off, ctx->ids);
		break;
	case OP_NOISE:
		break; /* noise_run_forward */
	}
}

/* Crop spectrograms, flip / scale-crop images: the model's input tensors. */
static void prepare_inputs(struct net *n, const float *const *inputs, int B,
			   const struct fwd_ctx *ctx)
{
	struct net_priv *P = n->priv;
	const struct net_arch *a = &n->arch;
	P->augmented = 0;
	if (P->flags & NEED_AUG) {
		augment_params(P->augs, B, ctx->reg.hflip, ctx->reg.scale_min, ctx->reg.scale_max,
			       ctx->seed, ctx->step, ctx->ids);
		P->augmented = 1;
	}
	for (int k = 0; k < a->ninputs; k++) {
		const struct net_input *ik = &a->in[k];
		const float *x = inputs[k];
		if (P->crop[k]) {
			time_crop(P->crop[k], x, B, ik->F * ik->C * ik->H, ik->W, P->cw[k],
				  ctx && ctx->reg.random_crop, ctx ? ctx->seed : 0,
				  ctx ? ctx->step : 0, ctx ? ctx->ids : NULL);
			x = P->crop[k];
		}
		if (P->aug[k]) {
			augment_image(P->aug[k], x, P->augs, B, ik->F * ik->C, ik->H, P->cw[k]);
			x = P->aug[k];
		}
		/* the input tensors are read, never written */
		P->t[P->in_t[k]].x = (float *)(uintptr_t)x;
		for (int i = 0; i < P->nt; i++)
			if (!owns(&P->t[i], P->flags) && P->t[i].share == P->in_t[k])
				P->t[i].x = P->t[P->in_t[k]].x;
	}
}

void net_forward(struct net *n, const float *const *inputs, int B, const struct fwd_ctx *ctx)
{
	// inputs[k] is (B, F*C*H*W of in[k]); logits is (B, classes) or (B, classes, H, W)
	struct net_priv *P = n->priv;
	const struct net_arch *a = &n->arch;
	int flags = 0;
	if (ctx) {
		flags |= NEED_GRAD;
		if (ctx->reg.input_noise != 0.0f)
			flags |= NEED_NOISE_IN;
		if (ctx->reg.hidden_noise != 0.0f)
			flags |= NEED_NOISE_H;
		if (ctx->reg.dropout > 0.0f)
			flags |= NEED_DROPOUT;
		int scale = !(ctx->reg.scale_min == ctx->reg.scale_max &&
			      (ctx->reg.scale_min == 0.0f || ctx->reg.scale_min == 1.0f));
		int any_image = 0;
		for (int k = 0; k < a->ninputs; k++)
			any_image |= P->image[k];
		if (any_image && (ctx->reg.hflip || scale))
			flags |= NEED_AUG;
	}
	P->flags = flags;
	net_reserve(n, B, flags);
	n->B = B;
	n->train = ctx != NULL;
	P->gbatch = ctx && ctx->global_batch > 0 ? ctx->global_batch : B;
	P->bsp = (struct bn_split){ ctx ? ctx->bn_reduce : NULL, ctx ? ctx->bn_reduce_arg : NULL };
	prepare_inputs(n, inputs, B, ctx);
	if (B == 0)
		memset(P->bsum, 0, (size_t)P->nbsum * sizeof(double));

	for (int i = 0; i < P->nl;) {
		struct layer *L = &P->l[i];
		if (P->lo[i] < 0) {
			i++;
			continue;
		}
		/* a rank without samples still takes part in every reduce */
		if (L->op == OP_NOISE)
			noise_run_forward(n, i, P->hi[i] + 1, B, ctx);
		else if (B > 0)
			layer_forward(n, L, B, ctx);
		i = P->hi[i] + 1;
	}
	n->logits = P->t[P->logits_t].x;

	if (ctx && P->nbn) {
		/* one reduce for every running statistic, and the group count */
		P->bsum[P->nbsum] = (double)((B + a->bn_micro - 1) / a->bn_micro);
		ctx_reduce(ctx, P->bsum, P->nbsum + 1);
		int groups = (int)llround(P->bsum[P->nbsum]);
		for (int i = 0; i < P->nl; i++) {
			const struct layer *L = &P->l[i];
			if (L->op == OP_BN)
				batchnorm_update_running(n->buffers + L->rm, n->buffers + L->rm + L->C,
							 P->bsum + L->bsum, groups, L->C,
							 a->bn_momentum);
		}
		n->bn_batches++;
	}
}

/* ---- backward ---------------------------------------------------------- */

/* The noise layers [i, j) backward (hidden noise; input noise has no input
 * gradient to give): one reduce of their sums dout*eps. */
static void noise_run_backward(struct net *n, int i, int j, int B, const struct fwd_ctx *ctx)
{
	struct net_priv *P = n->priv;
	double dot[2 * NET_MAX_INPUTS];
	int m = 0;
	for (int l = i; l < j; l++) {
		const struct layer *L = &P->l[l];
		dot[m++] = noise_dot(P->t[L->out].g, L->draw, (size_t)B * P->t[L->in].sz);
	}
	ctx_reduce(ctx, dot, m);
	m = 0;
	for (int l = i; l < j; l++) {
		const struct layer *L = &P->l[l];
		size_t sz = P->t[L->in].sz;
		noise_backward(P->t[L->in].g, P->t[L->out].g, P->t[L->in].x, B, (int)sz,
			       L->scale, dot[m++], P->gbatch * (double)sz);
	}
}

/* g[i] = 0 where y[i] <= 0: the backward of a ReLU in place (y its output).
 * Blocks of 8 so that -O2 vectorizes it (SLP) without a branch per element. */
static void relu_mask(float *restrict g, const float *restrict y, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			g[i + j] = y[i + j] > 0.0f ? g[i + j] : 0.0f;
	for (; i < n; i++)
		g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

static void layer_backward(struct net *n, struct layer *L, int B)
{
	struct net_priv *P = n->priv;
	const struct net_arch *a = &n->arch;
	const struct tensor *ti = &P->t[L->in], *to = &P->t[L->out];
	float *din = ti->g;
	const float *dout = to->g;
	const float *w = L->w >= 0 ? n->params + L->w : NULL;
	float *dw = L->w >= 0 ? n->grads + L->w : NULL;
	float *db = L->b >= 0 ? n->grads + L->b : NULL;
	int nb = B * L->nimg;
	switch (L->op) {
	case OP_CONV:
		conv2d_backward_wc(din, dw, db, dout, ti->x, w, &L->cs, nb, P->scratch, &L->wc);
		break;
	case OP_BN:
		if (L->pool >= 0) {
			const struct layer *M = &P->l[L->pool];
			batchnorm_pool_backward(din, dw, db, P->t[M->out].g, M->argmax,
						P->t[M->out].x, ti->x, L->save_mean, L->save_rstd, w,
						nb, L->C, L->H, L->W, a->bn_micro * L->nimg, L->set,
						P->scratch, bn_split_of(P));
		} else {
			batchnorm_backward(din, dw, db, dout, ti->x, L->save_mean, L->save_rstd, w,
					   nb, L->C, L->H * L->W, a->bn_micro * L->nimg,
					   L->fused ? to->x : NULL, L->set, bn_split_of(P));
		}
		break;
	case OP_RELU:
		/* in place: the gradient buffer is shared with the input's */
		if (!L->fused)
			relu_mask(to->g, to->x, (size_t)B * to->sz);
		break;
	case OP_MAXPOOL:
		if (din && !L->pooled)
			maxpool2d_backward(din, dout, L->argmax, nb, L->C, L->H, L->W, L->OH, L->OW);
		break;
	case OP_GAP:
		if (din)
			global_avgpool_backward(din, dout, nb, L->C, L->H * L->W);
		break;
	case OP_FRAME_MEAN:
		if (din)
			frame_mean_backward(din, dout, B, L->nimg, L->C);
		break;
	case OP_UPSAMPLE:
		if (din)
			upsample_bilinear_backward(din, dout, B, L->C, L->H, L->W, L->OH, L->OW);
		break;
	case OP_CONCAT:
		concat_backward(din, P->t[L->in2].g, dout, B, L->C, L->OC, L->H * L->W);
		break;
	case OP_ADD: {
		size_t cnt = (size_t)B * to->sz;
		if (din)
			add_inplace(din, dout, cnt);
		if (P->t[L->in2].g)
			add_inplace(P->t[L->in2].g, dout, cnt);
		break;
	}
	case OP_LINEAR:
		linear_backward(din, dw, db, dout, ti->x, w, B, L->C, L->OC);
		break;
	case OP_DROPOUT:
		if (din)
			dropout_backward(din, dout, L->draw, (size_t)B * ti->sz);
		break;
	case OP_NOISE:
		break; /* noise_run_backward */
	}
}

void net_backward(struct net *n, const float *dlogits, const struct fwd_ctx *ctx)
{
	// dlogits has the shape of n->logits; accumulates into n->grads
	struct net_priv *P = n->priv;
	int B = n->B;
	if (!(P->flags & NEED_GRAD)) {
		mke_warn("net_backward after an evaluation forward: nothing to do");
		return;
	}
	const struct tensor *lt = &P->t[P->logits_t];
	memcpy(lt->g, dlogits, (size_t)B * lt->sz * sizeof(float));
	for (int i = P->nl - 1; i >= 0;) {
		struct layer *L = &P->l[i];
		if (P->lo[i] < 0) {
			i--;
			continue;
		}
		/* the gradients first added to in this step start at zero */
		for (int t = P->bhead[0][i]; t >= 0; t = P->bnext[0][t])
			if (!P->t[t].fresh)
				memset(P->t[t].g, 0, (size_t)B * P->t[t].sz * sizeof(float));
		if (P->t[L->out].g) {
			if (L->op == OP_NOISE)
				noise_run_backward(n, P->lo[i], i + 1, B, ctx);
			else if (B > 0)
				layer_backward(n, L, B);
		}
		i = P->lo[i] - 1;
	}
}

void net_augment_labels(const struct net *n, int *out, const int *labels, int ignore)
{
	const struct net_priv *P = n->priv;
	int H = n->arch.in[0].H, W = P->cw[0];
	if (P->augmented && P->image[0])
		augment_labels(out, labels, P->augs, n->B, H, W, ignore);
	else
		memcpy(out, labels, (size_t)n->B * H * W * sizeof(int));
}

/* ---- tensors ----------------------------------------------------------- */

int net_ntensors(const struct net *n)
{
	const struct net_priv *P = n->priv;
	return P ? P->npt : 0;
}

const char *net_tensor(const struct net *n, int i, float **data, int *ndim, int shape[4],
		       int *is_param)
{
	const struct net_priv *P = n->priv;
	if (!P || i < 0 || i >= P->npt)
		return NULL;
	const struct ptensor *p = &P->pt[i];
	if (data)
		*data = (p->is_param ? n->params : n->buffers) + p->off;
	if (ndim)
		*ndim = p->ndim;
	if (shape)
		for (int d = 0; d < 4; d++)
			shape[d] = d < p->ndim ? p->shape[d] : 1;
	if (is_param)
		*is_param = p->is_param;
	return p->name;
}

int net_find_tensor(const struct net *n, const char *name)
{
	const struct net_priv *P = n->priv;
	for (int i = 0; P && i < P->npt; i++)
		if (strcmp(P->pt[i].name, name) == 0)
			return i;
	return -1;
}

int net_nbn(const struct net *n)
{
	const struct net_priv *P = n->priv;
	return P ? P->nbn : 0;
}

const char *net_bn_name(const struct net *n, int j)
{
	const struct net_priv *P = n->priv;
	if (!P || j < 0 || j >= P->nbn)
		return NULL;
	return P->bn_names[j];
}

int net_nconv(const struct net *n)
{
	const struct net_priv *P = n->priv;
	int k = 0;
	for (int i = 0; i < P->nl; i++)
		k += P->l[i].op == OP_CONV;
	return k;
}

const struct conv2d_shape *net_conv(const struct net *n, int i, int *nimg, int *dinp,
				    const char **name)
{
	const struct net_priv *P = n->priv;
	for (int j = 0; j < P->nl; j++) {
		const struct layer *L = &P->l[j];
		if (L->op != OP_CONV || i-- > 0)
			continue;
		*nimg = L->nimg;
		*dinp = !P->t[L->in].nograd;
		*name = "";
		for (int k = 0; k < P->npt; k++)
			if (P->pt[k].is_param && (long)P->pt[k].off == L->w)
				*name = P->pt[k].name;
		return &L->cs;
	}
	return NULL;
}
