/*
 * optim.c - optimizers with PyTorch's exact update rules (torch.optim.SGD
 * and torch.optim.AdamW as of torch 1.13-2.x, single-tensor path), so a run
 * here and a run in PyTorch from the same weights and gradients follow the
 * same trajectory up to float rounding (tests/fixtures/gen_mlp.py checks it).
 *
 * The state is one allocation over the model's flat parameter vector: the
 * momentum buffer (SGD with momentum) or the two Adam moments m then v (AdamW),
 * so a checkpoint of the optimizer is one write. Arithmetic is float like
 * PyTorch's float32 tensors; the per-step scalars (bias corrections, step
 * size) are computed in double as Python does and then rounded once.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void optim_init(struct optim *o, const struct optim_config *cfg, size_t n)
{
	memset(o, 0, sizeof(*o));
	o->cfg = *cfg;
	o->n = n;
	if (cfg->kind == OPTIM_ADAMW)
		o->state = xcalloc(2 * n, sizeof(float));
	else if (cfg->momentum != 0.0f)
		o->state = xcalloc(n, sizeof(float));
}

/* torch.optim.SGD, dampening 0, no nesterov:
 *     d = g + wd*p;  buf = d on the first step, else momentum*buf + d;  p -= lr*buf */
static void sgd_step(struct optim *o, float *params, const float *grads)
{
	// params, grads, state (momentum buffer) are (n)
	const struct optim_config *c = &o->cfg;
	float lr = c->lr, wd = c->weight_decay, mu = c->momentum;
	float *buf = o->state;
	for (size_t i = 0; i < o->n; i++) {
		float d = grads[i];
		if (wd != 0.0f)
			d = d + wd * params[i];
		if (buf) {
			buf[i] = o->t == 0 ? d : buf[i] * mu + d;
			d = buf[i];
		}
		params[i] = params[i] + -lr * d;
	}
}

/* torch.optim.AdamW, amsgrad off:
 *     p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *     p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
static void adamw_step(struct optim *o, float *params, const float *grads)
{
	// params, grads are (n); state is m (n) then v (n)
	const struct optim_config *c = &o->cfg;
	double t = (double)(o->t + 1);
	float decay = (float)(1.0 - (double)c->lr * c->weight_decay);
	float b1 = c->beta1, b2 = c->beta2;
	float a1 = (float)(1.0 - (double)b1), a2 = (float)(1.0 - (double)b2);
	double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
	float step = (float)-((double)c->lr / bc1);
	float bc2s = (float)sqrt(bc2);
	float eps = c->eps;
	float *m = o->state, *v = o->state + o->n;
	for (size_t i = 0; i < o->n; i++) {
		float g = grads[i];
		params[i] *= decay;
		m[i] = m[i] * b1 + a1 * g;
		v[i] = v[i] * b2 + a2 * (g * g);
		float denom = sqrtf(v[i]) / bc2s + eps;
		params[i] = params[i] + step * (m[i] / denom);
	}
}

void optim_step(struct optim *o, float *params, const float *grads)
{
	if (o->cfg.kind == OPTIM_ADAMW)
		adamw_step(o, params, grads);
	else
		sgd_step(o, params, grads);
	o->t++;
}

void optim_release(struct optim *o)
{
	free(o->state);
	memset(o, 0, sizeof(*o));
}
