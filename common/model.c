/*
 * model.c - see model.h. Maps a config's model spec onto the MLP (nn.h) or a
 * convolutional net (net.h), and owns the choice of loss per task.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
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

static struct model_scratch *scratch_of(const struct model *m)
{
	return (struct model_scratch *)m->scratch;
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
	if (net_init(&m->net, &a) != 0)
		return mke_error("model '%s': the architecture does not fit the data (see above)",
				 ms->name);
	m->out_dim = net_logits_per_sample(&a);
	m->map_hw = a.task == NET_SEGMENT ? a.in[0].H * a.in[0].W : 0;
	m->nparams = m->net.nparams;
	m->params = m->net.params;
	m->grads = m->net.grads;
	return 0;
}

void model_init_params(struct model *m, uint64_t seed)
{
	if (m->type == MODEL_MLP)
		mlp_init_params(&m->mlp, seed);
	else
		net_init_params(&m->net, seed);
}

void model_release(struct model *m)
{
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

void model_forward(struct model *m, const float *const *inputs, int B, const struct fwd_ctx *ctx)
{
	if (m->type == MODEL_MLP)
		mlp_forward(&m->mlp, inputs, B, ctx);
	else
		net_forward(&m->net, inputs, B, ctx);
}

const float *model_logits(const struct model *m)
{
	return m->type == MODEL_MLP ? m->mlp.logits : m->net.logits;
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
	struct net *n = &m->net;
	scratch_grow(s, n->B, m->out_dim, m->map_hw);
	if (s->maps_of != t->maps) {
		if (n->train)
			net_augment_labels(n, s->maps, t->maps, -1);
		else
			memcpy(s->maps, t->maps, sizeof(int) * (size_t)n->B * (size_t)m->map_hw);
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
	int B = n->B;
	scratch_grow(s, B, m->out_dim, m->map_hw);
	memset(s->dlogits, 0, sizeof(float) * (size_t)B * m->out_dim);
	double l;
	if (m->task == TASK_SEGMENT) {
		const int *maps = step_maps(m, t);
		s->maps_of = NULL; /* the next step transforms its own maps */
		long count = 0;
		l = pixel_xent(s->dlogits, n->logits, maps, B, K, m->map_hw, -1, grad_scale,
			       &count);
	} else if (m->task == TASK_MULTILABEL) {
		l = bce_logits(s->dlogits, n->logits, t->soft, B, K, grad_scale);
	} else {
		l = softmax_xent(s->dlogits, NULL, n->logits, t->soft ? NULL : t->labels, t->soft, B,
				 K, kind, grad_scale);
	}
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
	int HW = m->map_hw;
	for (int b = 0; b < B; b++) {
		const float *x = lg + (size_t)b * K * HW;
		float *y = out + (size_t)b * K * HW;
		for (int p = 0; p < HW; p++) {
			float mx = x[p];
			for (int k = 1; k < K; k++)
				mx = fmaxf(mx, x[(size_t)k * HW + p]);
			float sum = 0.0f;
			for (int k = 0; k < K; k++) {
				float e = expf(x[(size_t)k * HW + p] - mx);
				y[(size_t)k * HW + p] = e;
				sum += e;
			}
			for (int k = 0; k < K; k++)
				y[(size_t)k * HW + p] /= sum;
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
