/*
 * model.c - see model.h. Maps a config's model spec onto the MLP (nn.h) or a
 * convolutional net (net.h), and owns the choice of loss per task.
 *
 * Threads (model_set_threads). A net's batch is cut into T contiguous
 * slices, each run by one thread of a persistent pool (par.h) through its
 * own replica of the net: replica 0 is m->net itself, replicas 1..T-1 have
 * their own activations, gradients and batch-norm buffers but point at
 * m->net's parameters, which nothing writes during a pass. The buffers are
 * copied from m->net before every forward, so every replica sees the same
 * running statistics and, after a training forward, ends with the same
 * update; only m->net's are kept. The replicas' batch-wide sums (noise
 * means, batch-norm sums, noise dots) go through par_reduce, the
 * thread-level allreduce, then the caller's ctx->reduce once (MPI ranks), so
 * a split step makes the same reduce calls as an unsplit one. Training slices
 * are whole batch-norm micro-batches (net.h) and draws are keyed by sample id,
 * so a split batch computes what the unsplit one does up to float summation
 * order. The slices' logits are gathered into one (B, out_dim) array; the
 * loss and backward run per slice, and the replicas' gradients are summed
 * into m->grads (each thread one range of the parameters).
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "par.h"
#include "util.h"

/* Loss-gradient and label-map scratch, grown with B. maps_of is the target
 * maps whose (augmented) copy maps holds, so that model_loss_count and
 * model_loss_backward transform a step's label maps once. */
struct model_scratch {
	int cap;
	float *dlogits;
	int *maps;
	const int *maps_of;
};

void model_arch(struct mlp_arch *arch, const struct model_spec *ms, const int *dims, int classes)
{
	memset(arch, 0, sizeof *arch);
	arch->nbranch = ms->ninputs;
	for (int k = 0; k < ms->ninputs; k++)
		arch->in_dim[k] = dims[k];
	arch->fusion = ms->fusion;
	for (int k = 0; k < ms->ninputs && ms->fusion == FUSION_LATE; k++) {
		arch->branch_depth[k] = ms->branch_depth[k];
		memcpy(arch->branch_hidden[k], ms->branch_hidden[k], sizeof arch->branch_hidden[k]);
	}
	arch->depth = ms->depth;
	memcpy(arch->hidden, ms->hidden, sizeof arch->hidden);
	arch->classes = classes;
}

/* Threads over a net's batch (see the top of this file). */
struct model_par {
	struct par_pool *pool;
	int T;
	struct net *rep;            /* (T) replica t > 0; rep[0] unused (m->net) */
	struct model *m;
	int active;                 /* the last forward was split: logits below */
	int B, train;
	int bn_split;               /* training slices cut one batch-norm micro-batch */
	int *lo;                    /* (T+1) slice t is samples [lo[t], lo[t+1]) */
	float *logits;              /* (cap, out_dim) the gathered logits */
	uint32_t *ids;              /* (cap) 0..cap-1: the ids of a ctx without any */
	int cap;
	struct fwd_ctx *tctx;       /* (T) each thread's ctx for this pass */
	struct par_red *red;        /* (T) */
	const struct fwd_ctx *ctx;  /* the caller's */
	const float *const *inputs;
	const struct batch_targets *tg;
	enum loss_kind kind;
	float grad_scale;
	double *loss;               /* (T) */
};

/* A thread's reduce hook: par_reduce, then the caller's reduce. */
struct par_red {
	struct model_par *mp;
	int t;
};

static struct model_scratch *scratch_of(const struct model *m)
{
	return (struct model_scratch *)m->scratch;
}

/* Lay out m->net for arch a and point the model's fields at it. */
static int net_setup(struct model *m, const struct net_arch *a)
{
	if (net_init(&m->net, a) != 0)
		return -1;
	m->out_dim = net_logits_per_sample(a);
	m->map_hw = a->task == NET_SEGMENT ? a->in[0].H * a->in[0].W : 0;
	m->nparams = m->net.nparams;
	m->params = m->net.params;
	m->grads = m->net.grads;
	return 0;
}

int model_init(struct model *m, const struct run_config *c, const struct model_spec *ms,
	       const struct model_shapes *in)
{
	memset(m, 0, sizeof *m);
	m->type = ms->type;
	m->task = c->task;
	m->classes = c->classes;
	m->scratch = xcalloc(1, sizeof(struct model_scratch));
	if (ms->ninputs != in->ninputs)
		return mke_error("model '%s': takes %d inputs, the data gives %d", ms->name,
				 ms->ninputs, in->ninputs);
	if (ms->type == MODEL_MLP) {
		if (c->task == TASK_SEGMENT)
			return mke_error("model '%s': task 'segment' needs a model of type "
					 "'rgbd_seg'", ms->name);
		int dims[2];
		for (int k = 0; k < in->ninputs; k++)
			dims[k] = in->shape[k][0] * in->shape[k][1] * in->shape[k][2] *
				  in->shape[k][3];
		struct mlp_arch arch;
		model_arch(&arch, ms, dims, c->classes);
		if (mlp_init(&m->mlp, &arch) != 0)
			return -1;
		m->out_dim = (size_t)c->classes;
		m->nparams = m->mlp.nparams;
		m->params = m->mlp.params;
		m->grads = m->mlp.grads;
		return 0;
	}
	if ((ms->type == MODEL_RGBD_SEG) != (c->task == TASK_SEGMENT))
		return mke_error("model '%s': type '%s' does not fit task '%s'", ms->name,
				 ms->type == MODEL_RGBD_SEG ? "rgbd_seg" : "cnn",
				 c->task == TASK_SEGMENT ? "segment" : "classify");
	struct net_arch a;
	memset(&a, 0, sizeof a);
	a.task = ms->type == MODEL_RGBD_SEG ? NET_SEGMENT : NET_CLASSIFY;
	a.ninputs = in->ninputs;
	for (int k = 0; k < in->ninputs; k++) {
		a.in[k].F = in->shape[k][0];
		a.in[k].C = in->shape[k][1];
		a.in[k].H = in->shape[k][2];
		a.in[k].W = in->shape[k][3];
		a.crop_w[k] = ms->crop[k];
		/* a spectrogram is cropped in time, never flipped or scaled: a crop
		 * width marks it as such for net.h (the whole width by default) */
		if (c->mod[ms->inputs[k]].kind == MOD_AUDIO && a.crop_w[k] == 0)
			a.crop_w[k] = a.in[k].W;
		a.branch[k] = ms->cbranch[k];
	}
	a.head_hidden = ms->depth > 0 ? ms->hidden[0] : 0;
	a.seg_nstage = ms->seg_nstage;
	memcpy(a.seg_channels, ms->seg_channels, sizeof a.seg_channels);
	a.classes = c->classes;
	a.bn_micro = ms->bn_micro > 0 ? ms->bn_micro : 8;
	a.bn_momentum = 0.1f;
	a.bn_eps = 1e-5f;
	if (net_setup(m, &a) != 0)
		return mke_error("model '%s': the architecture does not fit the data (see above)",
				 ms->name);
	return model_set_threads(m, c->threads > 0 ? c->threads : 1);
}

int model_init_net(struct model *m, const struct net_arch *a)
{
	memset(m, 0, sizeof *m);
	m->type = a->task == NET_SEGMENT ? MODEL_RGBD_SEG : MODEL_CNN;
	m->task = a->task == NET_SEGMENT ? TASK_SEGMENT : TASK_CLASSIFY;
	m->classes = a->classes;
	m->scratch = xcalloc(1, sizeof(struct model_scratch));
	return net_setup(m, a);
}

void model_init_params(struct model *m, uint64_t seed)
{
	if (m->type == MODEL_MLP)
		mlp_init_params(&m->mlp, seed);
	else
		net_init_params(&m->net, seed);
}

int model_init_params_torch(struct model *m, uint64_t seed)
{
	if (m->type != MODEL_MLP)
		return mke_error("init \"torch\" draws only MLP models' parameters");
	mlp_init_params_torch(&m->mlp, seed);
	return 0;
}

void model_release(struct model *m)
{
	model_set_threads(m, 1);
	struct model_scratch *s = scratch_of(m);
	if (s) {
		free(s->dlogits);
		free(s->maps);
		free(s);
	}
	if (m->type == MODEL_MLP)
		mlp_release(&m->mlp);
	else
		net_release(&m->net);
	memset(m, 0, sizeof *m);
}

/* ---- threads ----------------------------------------------------------- */

static void par_release(struct model_par *mp)
{
	for (int t = 1; t < mp->T; t++) {
		mp->rep[t].params = NULL; /* m->net's */
		net_release(&mp->rep[t]);
	}
	par_free(mp->pool);
	free(mp->rep);
	free(mp->lo);
	free(mp->logits);
	free(mp->ids);
	free(mp->tctx);
	free(mp->red);
	free(mp->loss);
	free(mp);
}

int model_set_threads(struct model *m, int T)
{
	if (T < 1)
		return mke_error("threads %d: give 1 or more", T);
	if (m->type == MODEL_MLP)
		return 0; /* its layers are too small to split */
	int cur = m->par ? m->par->T : 1;
	if (T == cur)
		return 0;
	if (m->par)
		par_release(m->par);
	m->par = NULL;
	if (T == 1)
		return 0;
	struct model_par *mp = xcalloc(1, sizeof(*mp));
	mp->m = m;
	mp->pool = par_new(T);
	mp->T = par_threads(mp->pool);
	mp->rep = xcalloc((size_t)mp->T, sizeof(*mp->rep));
	for (int t = 1; t < mp->T; t++) {
		if (net_init(&mp->rep[t], &m->net.arch) != 0) {
			mp->T = t;
			par_release(mp);
			return mke_error("threads: could not build replica %d of the net", t);
		}
		free(mp->rep[t].params);
		mp->rep[t].params = m->net.params;
	}
	mp->lo = xcalloc((size_t)mp->T + 1, sizeof(int));
	mp->tctx = xcalloc((size_t)mp->T, sizeof(*mp->tctx));
	mp->red = xcalloc((size_t)mp->T, sizeof(*mp->red));
	mp->loss = xcalloc((size_t)mp->T, sizeof(double));
	for (int t = 0; t < mp->T; t++)
		mp->red[t] = (struct par_red){ mp, t };
	m->par = mp;
	return 0;
}

int model_threads(const struct model *m)
{
	return m->par ? m->par->T : 1;
}

/* Cut B samples into the pool's slices (mp->lo): in training whole
 * micro-batches of batch norm, as even as possible (a trailing partial one
 * last), or a batch of one micro-batch and at least T samples cut into T
 * slices of samples (mp->bn_split); in evaluation single samples. Returns
 * the slices that hold samples; below 2 the pass runs unsplit. */
static int par_slices(struct model_par *mp, const struct net *n, int B, int train)
{
	int unit = train ? n->arch.bn_micro : 1;
	int G = (B + unit - 1) / unit;
	mp->bn_split = 0;
	if (train && G == 1 && B >= mp->T) {
		/* one micro-batch: its samples over every thread, batch norm's
		 * sums across them (struct bn_split, cnn.h) */
		unit = 1;
		G = B;
		mp->bn_split = 1;
	}
	int ns = G < mp->T ? G : mp->T;
	for (int t = 0; t <= mp->T; t++) {
		int g = t < ns ? (int)((long)G * t / ns) : G;
		mp->lo[t] = g * unit < B ? g * unit : B;
	}
	return ns;
}

static struct net *replica(struct model *m, int t)
{
	return t == 0 ? &m->net : &m->par->rep[t];
}

static void par_reduce_hook(double *vals, int n, void *arg)
{
	struct par_red *r = arg;
	const struct fwd_ctx *ctx = r->mp->ctx;
	par_reduce(r->mp->pool, r->t, vals, n, ctx->reduce, ctx->reduce_arg);
}

/* A split micro-batch's batch-norm sums: over the threads only (each rank
 * has its own micro-batches). */
static void par_bn_hook(double *vals, int n, void *arg)
{
	struct par_red *r = arg;
	par_reduce(r->mp->pool, r->t, vals, n, NULL, NULL);
}

/* Each thread's ctx for a training pass: its slice's ids, the whole batch's
 * size for the noise means, and the thread reduce. */
static void par_contexts(struct model_par *mp, const struct fwd_ctx *ctx, int B)
{
	mp->ctx = ctx;
	for (int t = 0; t < mp->T; t++) {
		struct fwd_ctx *c = &mp->tctx[t];
		*c = *ctx;
		c->ids = (ctx->ids ? ctx->ids : mp->ids) + mp->lo[t];
		c->global_batch = ctx->global_batch > 0 ? ctx->global_batch : B;
		c->reduce = par_reduce_hook;
		c->reduce_arg = &mp->red[t];
		c->bn_reduce = mp->bn_split ? par_bn_hook : NULL;
		c->bn_reduce_arg = mp->bn_split ? &mp->red[t] : NULL;
	}
}

static void par_forward_job(void *arg, int t)
{
	struct model_par *mp = arg;
	struct model *m = mp->m;
	struct net *n = replica(m, t);
	int lo = mp->lo[t], b = mp->lo[t + 1] - lo;
	if (!mp->train && b == 0)
		return;
	const float *in[NET_MAX_INPUTS];
	for (int k = 0; k < n->arch.ninputs; k++) {
		const struct net_input *ik = &n->arch.in[k];
		in[k] = mp->inputs[k] + (size_t)lo * ik->F * ik->C * ik->H * ik->W;
	}
	/* an empty slice still takes part in every reduce */
	net_forward(n, in, b, mp->train ? &mp->tctx[t] : NULL);
	memcpy(mp->logits + (size_t)lo * m->out_dim, n->logits,
	       (size_t)b * m->out_dim * sizeof(float));
}

/* The forward of a net over the pool's threads; 0 when B is too small to
 * split (the caller runs it unsplit). */
static int par_forward(struct model *m, const float *const *inputs, int B,
		       const struct fwd_ctx *ctx)
{
	struct model_par *mp = m->par;
	mp->active = 0;
	if (par_slices(mp, &m->net, B, ctx != NULL) < 2)
		return 0;
	if (B > mp->cap) {
		free(mp->logits);
		free(mp->ids);
		mp->logits = xmalloc((size_t)B * m->out_dim * sizeof(float));
		mp->ids = xmalloc((size_t)B * sizeof(uint32_t));
		for (int i = 0; i < B; i++)
			mp->ids[i] = (uint32_t)i;
		mp->cap = B;
	}
	for (int t = 1; t < mp->T; t++) {
		memcpy(mp->rep[t].buffers, m->net.buffers, m->net.nbuffers * sizeof(float));
		mp->rep[t].bn_batches = m->net.bn_batches;
	}
	mp->B = B;
	mp->train = ctx != NULL;
	mp->inputs = inputs;
	if (ctx)
		par_contexts(mp, ctx, B);
	par_run(mp->pool, par_forward_job, mp);
	mp->active = 1;
	return 1;
}

void model_forward(struct model *m, const float *const *inputs, int B, const struct fwd_ctx *ctx)
{
	if (m->type == MODEL_MLP)
		mlp_forward(&m->mlp, inputs, B, ctx);
	else if (!m->par || !par_forward(m, inputs, B, ctx))
		net_forward(&m->net, inputs, B, ctx);
}

const float *model_logits(const struct model *m)
{
	if (m->type == MODEL_MLP)
		return m->mlp.logits;
	return m->par && m->par->active ? m->par->logits : m->net.logits;
}

void model_zero_grad(struct model *m)
{
	if (m->type == MODEL_MLP)
		mlp_zero_grad(&m->mlp);
	else
		net_zero_grad(&m->net);
}

static void scratch_grow(struct model_scratch *s, int B, size_t out_dim, int map_hw)
{
	if (B <= s->cap)
		return;
	free(s->dlogits);
	free(s->maps);
	s->dlogits = xmalloc(sizeof(float) * (size_t)B * out_dim);
	s->maps = map_hw ? xmalloc(sizeof(int) * (size_t)B * (size_t)map_hw) : NULL;
	s->cap = B;
	s->maps_of = NULL;
}

/* The last forward's targets t->maps as the loss sees them (flipped and
 * scale-cropped like the inputs in training), made once per step. */
static const int *step_maps(struct model *m, const struct batch_targets *t)
{
	struct model_scratch *s = scratch_of(m);
	struct model_par *mp = m->par && m->par->active ? m->par : NULL;
	struct net *n = &m->net;
	int B = mp ? mp->B : n->B, train = mp ? mp->train : n->train;
	scratch_grow(s, B, m->out_dim, m->map_hw);
	if (s->maps_of != t->maps) {
		size_t hw = (size_t)m->map_hw;
		if (!train)
			memcpy(s->maps, t->maps, sizeof(int) * (size_t)B * hw);
		else if (!mp)
			net_augment_labels(n, s->maps, t->maps, -1);
		else
			for (int k = 0; k < mp->T; k++)
				if (mp->lo[k + 1] > mp->lo[k])
					net_augment_labels(replica(m, k), s->maps + mp->lo[k] * hw,
							   t->maps + mp->lo[k] * hw, -1);
		s->maps_of = t->maps;
	}
	return s->maps;
}

long model_loss_count(struct model *m, const struct batch_targets *t, int B)
{
	if (m->task != TASK_SEGMENT)
		return B;
	const int *maps = step_maps(m, t);
	size_t n = (size_t)B * (size_t)m->map_hw;
	long count = 0;
	for (size_t i = 0; i < n; i++)
		count += maps[i] >= 0 && maps[i] < m->classes;
	return count;
}

/* The loss of a net's rows [lo, lo+B) of the batch (logits, dlogits: those
 * rows' own), its gradient into dlogits. maps: the step's label maps. */
static double net_loss(const struct model *m, float *dlogits, const float *logits,
		       const struct batch_targets *t, const int *maps, int lo, int B,
		       enum loss_kind kind, float grad_scale)
{
	int K = m->classes;
	memset(dlogits, 0, sizeof(float) * (size_t)B * m->out_dim);
	if (B == 0)
		return 0.0;
	if (m->task == TASK_SEGMENT) {
		long count = 0;
		return pixel_xent(dlogits, logits, maps + (size_t)lo * m->map_hw, B, K, m->map_hw,
				  -1, grad_scale, &count);
	}
	const float *soft = t->soft ? t->soft + (size_t)lo * K : NULL;
	if (m->task == TASK_MULTILABEL)
		return bce_logits(dlogits, logits, soft, B, K, grad_scale);
	const int *labels = soft || !t->labels ? NULL : t->labels + lo;
	return softmax_xent(dlogits, NULL, logits, labels, soft, B, K, kind, grad_scale);
}

static void par_backward_job(void *arg, int t)
{
	struct model_par *mp = arg;
	struct model *m = mp->m;
	struct model_scratch *s = scratch_of(m);
	struct net *n = replica(m, t);
	int lo = mp->lo[t], b = mp->lo[t + 1] - lo;
	float *dl = s->dlogits + (size_t)lo * m->out_dim;
	mp->loss[t] = net_loss(m, dl, n->logits, mp->tg, s->maps, lo, b, mp->kind, mp->grad_scale);
	if (t > 0)
		net_zero_grad(n);
	net_backward(n, dl, &mp->tctx[t]);
	par_barrier(mp->pool);
	/* this thread's range of the parameters: the replicas' gradients into m's */
	size_t P = m->net.nparams;
	size_t i0 = P * (size_t)t / (size_t)mp->T, i1 = P * (size_t)(t + 1) / (size_t)mp->T;
	for (int u = 1; u < mp->T; u++) {
		const float *g = mp->rep[u].grads;
		for (size_t i = i0; i < i1; i++)
			m->grads[i] += g[i];
	}
}

/* model_loss_backward of a split training forward. */
static double par_loss_backward(struct model *m, const struct batch_targets *t,
				enum loss_kind kind, float grad_scale, const struct fwd_ctx *ctx)
{
	struct model_par *mp = m->par;
	struct model_scratch *s = scratch_of(m);
	struct fwd_ctx none = { 0 };
	if (!ctx)
		ctx = &none;
	if (!mp->train) {
		mke_warn("model_loss_backward after an evaluation forward: nothing to do");
		return 0.0;
	}
	scratch_grow(s, mp->B, m->out_dim, m->map_hw);
	if (m->task == TASK_SEGMENT)
		step_maps(m, t);
	s->maps_of = NULL; /* the next step transforms its own maps */
	par_contexts(mp, ctx, mp->B);
	mp->tg = t;
	mp->kind = kind;
	mp->grad_scale = grad_scale;
	par_run(mp->pool, par_backward_job, mp);
	double l = 0.0;
	for (int k = 0; k < mp->T; k++)
		l += mp->loss[k];
	return l;
}

double model_loss_backward(struct model *m, const struct batch_targets *t, enum loss_kind kind,
			   float grad_scale, const struct fwd_ctx *ctx)
{
	int K = m->classes;
	if (m->type == MODEL_MLP) {
		if (m->task != TASK_MULTILABEL)
			return mlp_loss_backward(&m->mlp, t->soft ? NULL : t->labels, t->soft, kind,
						 grad_scale, ctx);
		int B = m->mlp.B;
		struct model_scratch *s = scratch_of(m);
		scratch_grow(s, B, m->out_dim, 0);
		memset(s->dlogits, 0, sizeof(float) * (size_t)B * (size_t)K);
		double l = bce_logits(s->dlogits, m->mlp.logits, t->soft, B, K, grad_scale);
		mlp_backward(&m->mlp, s->dlogits, ctx);
		return l;
	}
	struct net *n = &m->net;
	struct model_scratch *s = scratch_of(m);
	if (m->par && m->par->active)
		return par_loss_backward(m, t, kind, grad_scale, ctx);
	int B = n->B;
	scratch_grow(s, B, m->out_dim, m->map_hw);
	const int *maps = m->task == TASK_SEGMENT ? step_maps(m, t) : NULL;
	s->maps_of = NULL; /* the next step transforms its own maps */
	double l = net_loss(m, s->dlogits, n->logits, t, maps, 0, B, kind, grad_scale);
	net_backward(n, s->dlogits, ctx);
	return l;
}

void model_probs(const struct model *m, float *out, int B)
{
	const float *lg = model_logits(m);
	int K = m->classes;
	if (m->task == TASK_MULTILABEL) {
		size_t n = (size_t)B * (size_t)K;
		for (size_t i = 0; i < n; i++)
			out[i] = 1.0f / (1.0f + expf(-lg[i]));
		return;
	}
	if (m->task != TASK_SEGMENT) {
		softmax_rows(out, lg, B, K);
		return;
	}
	/* each pixel's softmax over the K planes, 64 pixels at a time */
	int HW = m->map_hw;
	for (int b = 0; b < B; b++) {
		const float *x = lg + (size_t)b * K * HW;
		float *y = out + (size_t)b * K * HW;
		for (int p0 = 0; p0 < HW; p0 += 64) {
			int np = HW - p0 < 64 ? HW - p0 : 64;
			float mx[64], sum[64];
			pixel_softmax_block(y + p0, (size_t)HW, mx, sum, x + p0, (size_t)HW, K, np);
			for (int i = 0; i < np; i++)
				sum[i] = 1.0f / sum[i];
			for (int k = 0; k < K; k++) {
				float *yk = y + (size_t)k * HW + p0;
				for (int i = 0; i < np; i++)
					yk[i] *= sum[i];
			}
		}
	}
}

int model_ntensors(const struct model *m)
{
	return m->type == MODEL_MLP ? mlp_ntensors(&m->mlp) : net_ntensors(&m->net);
}

const char *model_tensor(const struct model *m, int i, float **data, int *ndim, int64_t shape[4])
{
	if (m->type == MODEL_MLP) {
		int rows, cols;
		const char *name = mlp_tensor(&m->mlp, i, data, &rows, &cols);
		if (!name)
			return NULL;
		/* biases are 1-D in PyTorch's state_dict, weights (out, in) */
		size_t nl = strlen(name);
		int is_bias = nl > 5 && strcmp(name + nl - 5, ".bias") == 0;
		*ndim = is_bias ? 1 : 2;
		shape[0] = rows;
		shape[1] = cols;
		return name;
	}
	int sh[4], is_param;
	const char *name = net_tensor(&m->net, i, data, ndim, sh, &is_param);
	for (int k = 0; name && k < *ndim; k++)
		shape[k] = sh[k];
	return name;
}

int model_nbn(const struct model *m)
{
	return m->type == MODEL_MLP ? 0 : net_nbn(&m->net);
}

const char *model_bn_name(const struct model *m, int j)
{
	return m->type == MODEL_MLP ? NULL : net_bn_name(&m->net, j);
}
