/*
 * train.c - mini-batch SGD/AdamW training of an MLP and evaluation; see
 * train.h for the data-parallel contract.
 */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "rng.h"
#include "util.h"

int argmax_row(const float *p, int classes)
{
	int best = 0;
	for (int k = 1; k < classes; k++)
		if (p[k] > p[best])
			best = k;
	return best;
}

double accuracy_of(const float *probs, const int *labels, int n, int classes)
{
	int right = 0, total = 0;
	for (int i = 0; i < n; i++) {
		if (labels[i] < 0)
			continue;
		total++;
		right += argmax_row(probs + (size_t)i * classes, classes) == labels[i];
	}
	return total ? (double)right / total : 0.0;
}

void train_data_shapes(const struct train_data *d, struct model_shapes *s)
{
	memset(s, 0, sizeof *s);
	s->ninputs = d->ninputs;
	for (int k = 0; k < d->ninputs; k++) {
		if (d->shape[k][0] > 0) {
			memcpy(s->shape[k], d->shape[k], sizeof s->shape[k]);
		} else {
			s->shape[k][0] = s->shape[k][1] = s->shape[k][2] = 1;
			s->shape[k][3] = d->dim[k];
		}
	}
}

/* Evaluation chunk: large for the MLP, bounded activation memory for nets. */
static int eval_chunk(const struct model *m)
{
	return m->type == MODEL_MLP ? 4096 : 32;
}

static void forward_chunk(struct model *m, const struct train_data *d, int lo, int B)
{
	const float *in[MLP_MAX_BRANCH];
	for (int k = 0; k < d->ninputs; k++)
		in[k] = d->x[k] + (size_t)lo * d->dim[k];
	model_forward(m, in, B, NULL);
}

void predict_probs(struct model *m, const struct train_data *d, float *probs)
{
	const int chunk = eval_chunk(m);
	int K = m->classes;
	for (int lo = 0; lo < d->n; lo += chunk) {
		int B = d->n - lo < chunk ? d->n - lo : chunk;
		forward_chunk(m, d, lo, B);
		model_probs(m, probs + (size_t)lo * K, B);
	}
}

void predict_maps(struct model *m, const struct train_data *d, int *maps)
{
	const int chunk = eval_chunk(m);
	int K = m->classes, HW = m->map_hw;
	for (int lo = 0; lo < d->n; lo += chunk) {
		int B = d->n - lo < chunk ? d->n - lo : chunk;
		forward_chunk(m, d, lo, B);
		const float *lg = model_logits(m);
		for (int b = 0; b < B; b++) {
			const float *x = lg + (size_t)b * K * HW;
			int *out = maps + (size_t)(lo + b) * HW;
			for (int p = 0; p < HW; p++) {
				int best = 0;
				for (int k = 1; k < K; k++)
					if (x[(size_t)k * HW + p] > x[(size_t)best * HW + p])
						best = k;
				out[p] = best;
			}
		}
	}
}

const char *task_metric_name(enum task_kind t)
{
	return t == TASK_SEGMENT ? "mIoU" : t == TASK_MULTILABEL ? "mAP" : "accuracy";
}

double evaluate(struct model *m, const struct train_data *d, double *conf)
{
	return evaluate_classes(m, d, conf, NULL);
}

double evaluate_classes(struct model *m, const struct train_data *d, double *conf,
			double *per_class)
{
	int K = m->classes;
	if (m->task == TASK_SEGMENT) {
		const int chunk = eval_chunk(m);
		double *cm = conf ? conf : xmalloc(sizeof(double) * (size_t)K * K);
		memset(cm, 0, sizeof(double) * (size_t)K * K);
		for (int lo = 0; lo < d->n; lo += chunk) {
			int B = d->n - lo < chunk ? d->n - lo : chunk;
			forward_chunk(m, d, lo, B);
			confusion_update(cm, model_logits(m), d->maps + (size_t)lo * d->map_hw, B, K,
					 d->map_hw);
		}
		double miou = confusion_miou(cm, K, per_class);
		if (!conf)
			free(cm);
		return miou;
	}
	float *probs = xmalloc(sizeof(float) * (size_t)d->n * (size_t)K);
	predict_probs(m, d, probs);
	double r = probs_metric(m->task, probs, d, K, per_class);
	free(probs);
	return r;
}

double probs_metric(enum task_kind task, const float *probs, const struct train_data *d, int K,
		    double *per_class)
{
	double r;
	if (task == TASK_MULTILABEL) {
		r = mean_average_precision(probs, d->soft, d->n, K, per_class);
	} else {
		r = accuracy_of(probs, d->labels, d->n, K);
		/* per class: the fraction of its test samples classified right */
		for (int k = 0; per_class && k < K; k++) {
			int right = 0, total = 0;
			for (int i = 0; i < d->n; i++) {
				if (d->labels[i] != k)
					continue;
				total++;
				right += argmax_row(probs + (size_t)i * K, K) == k;
			}
			per_class[k] = total ? (double)right / total : -1.0;
		}
	}
	return r;
}

/* Per-epoch order of the samples for mini-batch training: a permutation keyed
 * by (seed, epoch). (Full-batch training uses the identity.) */
static void epoch_order(int *order, int n, uint64_t seed, int epoch)
{
	for (int i = 0; i < n; i++)
		order[i] = i;
	struct rng r;
	rng_init(&r, seed, RNG_SHUFFLE, (uint32_t)epoch, 0);
	for (int i = n - 1; i > 0; i--) {
		int j = (int)rng_below(&r, (uint32_t)i + 1);
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

/* Where rank r's slice of a global batch of B rows starts: r*B/world, moved
 * up to a multiple of micro when the model's batch norm groups micro rows
 * (0: no such groups), so that every rank's groups are the groups one
 * process would form and the result does not depend on the rank count. */
static int rank_cut(int B, int r, int world, int micro)
{
	int cut = (int)((long)B * r / world);
	if (micro > 1)
		cut = (cut + micro - 1) / micro * micro;
	return cut < B ? cut : B;
}

int train_model(struct model *m, struct optim *o, const struct train_data *d,
		const struct train_opts *t)
{
	int micro = m->type == MODEL_MLP ? 0 : m->net.arch.bn_micro;
	const struct train_spec *spec = t->spec;
	int n = d->n, K = t->classes;
	int gb = spec->batch_size <= 0 || spec->batch_size >= n ? n : spec->batch_size;
	int full = gb == n;
	int rank = t->dp ? t->dp->rank : 0, world = t->dp ? t->dp->world : 1;
	int steps_per_epoch = (n + gb - 1) / gb;
	int maxb = micro > 1 ? gb + 1 : gb / world + 1; /* rank slices, see rank_cut */

	/* Full-batch training walks the data in order, so a rank's slice is a
	 * contiguous range of d and is bound in place; shuffled mini-batches are
	 * gathered into the batch buffers. */
	int *order = full ? NULL : xmalloc(sizeof(int) * (size_t)n);
	float *xb[MLP_MAX_BRANCH] = {0};
	uint32_t *idb = NULL;
	int *lb = NULL;
	float *sb = NULL;
	int *mb = NULL;
	int HW = d->map_hw;
	if (!full) {
		for (int k = 0; k < d->ninputs; k++)
			xb[k] = xmalloc(sizeof(float) * (size_t)maxb * (size_t)d->dim[k]);
		idb = xmalloc(sizeof(uint32_t) * (size_t)maxb);
		lb = xmalloc(sizeof(int) * (size_t)maxb);
		sb = d->soft ? xmalloc(sizeof(float) * (size_t)maxb * (size_t)K) : NULL;
		mb = d->maps ? xmalloc(sizeof(int) * (size_t)maxb * (size_t)HW) : NULL;
	}

	int rc = 0;
	for (int epoch = t->start_epoch; epoch < spec->epochs; epoch++) {
		if (!full)
			epoch_order(order, n, t->seed, epoch);
		double loss_sum = 0.0;
		for (int s = 0; s < steps_per_epoch; s++) {
			int g0 = s * gb, g1 = g0 + gb < n ? g0 + gb : n, B = g1 - g0;
			int lo = g0 + rank_cut(B, rank, world, micro);
			int hi = g0 + rank_cut(B, rank + 1, world, micro);
			int b = hi - lo;
			const float *in[MLP_MAX_BRANCH];
			const uint32_t *ids;
			const int *labels;
			const float *soft;
			const int *maps;
			if (full) {
				for (int k = 0; k < d->ninputs; k++)
					in[k] = d->x[k] + (size_t)lo * d->dim[k];
				ids = d->ids + lo;
				labels = d->labels ? d->labels + lo : NULL;
				soft = d->soft ? d->soft + (size_t)lo * K : NULL;
				maps = d->maps ? d->maps + (size_t)lo * HW : NULL;
			} else {
				for (int i = 0; i < b; i++) {
					int r = order[lo + i];
					for (int k = 0; k < d->ninputs; k++)
						memcpy(xb[k] + (size_t)i * d->dim[k],
						       d->x[k] + (size_t)r * d->dim[k],
						       sizeof(float) * (size_t)d->dim[k]);
					idb[i] = d->ids[r];
					if (d->labels)
						lb[i] = d->labels[r];
					if (sb)
						memcpy(sb + (size_t)i * K, d->soft + (size_t)r * K,
						       sizeof(float) * (size_t)K);
					if (mb)
						memcpy(mb + (size_t)i * HW, d->maps + (size_t)r * HW,
						       sizeof(int) * (size_t)HW);
				}
				for (int k = 0; k < d->ninputs; k++)
					in[k] = xb[k];
				ids = idb;
				labels = lb;
				soft = sb;
				maps = mb;
			}
			struct fwd_ctx ctx = {
				.reg = t->reg,
				.seed = t->seed,
				.step = (uint32_t)((long)epoch * steps_per_epoch + s),
				.ids = ids,
				.global_batch = B,
				.reduce = t->dp ? t->dp->reduce : NULL,
				.reduce_arg = t->dp ? t->dp->arg : NULL,
			};
			struct batch_targets tg = {.labels = labels, .soft = soft, .maps = maps};
			model_zero_grad(m);
			model_forward(m, in, b, &ctx);
			/* the loss is a mean over the global batch: samples, sample x
			 * class terms (multilabel) or labeled pixels (segment) */
			double denom = (double)B;
			if (m->task == TASK_MULTILABEL) {
				denom = (double)B * K;
			} else if (m->task == TASK_SEGMENT) {
				denom = (double)model_loss_count(m, &tg, b);
				if (t->dp && world > 1)
					t->dp->reduce(&denom, 1, t->dp->arg);
			}
			float scale = denom > 0 ? (float)(1.0 / denom) : 0.0f;
			double l = model_loss_backward(m, &tg, t->loss, scale, &ctx);
			if (t->dp && world > 1) {
				t->dp->allreduce(m->grads, m->nparams, t->dp->arg);
				t->dp->reduce(&l, 1, t->dp->arg);
			}
			optim_step(o, m->params, m->grads);
			/* epoch loss: a per-sample mean (segment: per labeled pixel, x B) */
			loss_sum += m->task == TASK_CLASSIFY || denom <= 0 ? l : l * B / denom;
		}
		if (!isfinite(loss_sum)) {
			rc = mke_error("training diverged at epoch %d (loss is not finite); lower the learning rate", epoch + 1);
			break;
		}
		int stop = t->on_epoch ? t->on_epoch(epoch + 1, (long)(epoch + 1) * steps_per_epoch,
						       loss_sum / n, t->arg) : 0;
		if (stop) {
			rc = stop < 0 ? -1 : 1;
			break;
		}
	}
	free(order);
	for (int k = 0; k < d->ninputs; k++)
		free(xb[k]);
	free(idb);
	free(lb);
	free(sb);
	free(mb);
	return rc;
}
