/*
 * train.c - mini-batch SGD/AdamW training of an MLP and evaluation; see
 * train.h for the data-parallel contract.
 */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

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

void predict_probs(struct mlp *m, const struct train_data *d, float *probs)
{
	const int chunk = 4096;
	int K = m->arch.classes;
	for (int lo = 0; lo < d->n; lo += chunk) {
		int B = d->n - lo < chunk ? d->n - lo : chunk;
		const float *in[MLP_MAX_BRANCH];
		for (int k = 0; k < d->ninputs; k++)
			in[k] = d->x[k] + (size_t)lo * d->dim[k];
		mlp_forward(m, in, B, NULL);
		softmax_rows(probs + (size_t)lo * K, m->logits, B, K);
	}
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

int train_mlp(struct mlp *m, struct optim *o, const struct train_data *d, const struct train_opts *t)
{
	const struct train_spec *spec = t->spec;
	int n = d->n, K = t->classes;
	int gb = spec->batch_size <= 0 || spec->batch_size >= n ? n : spec->batch_size;
	int full = gb == n;
	int rank = t->dp ? t->dp->rank : 0, world = t->dp ? t->dp->world : 1;
	int steps_per_epoch = (n + gb - 1) / gb;
	int maxb = gb / world + 1;

	/* Full-batch training walks the data in order, so a rank's slice is a
	 * contiguous range of d and is bound in place; shuffled mini-batches are
	 * gathered into the batch buffers. */
	int *order = full ? NULL : xmalloc(sizeof(int) * (size_t)n);
	float *xb[MLP_MAX_BRANCH] = {0};
	uint32_t *idb = NULL;
	int *lb = NULL;
	float *sb = NULL;
	if (!full) {
		for (int k = 0; k < d->ninputs; k++)
			xb[k] = xmalloc(sizeof(float) * (size_t)maxb * (size_t)d->dim[k]);
		idb = xmalloc(sizeof(uint32_t) * (size_t)maxb);
		lb = xmalloc(sizeof(int) * (size_t)maxb);
		sb = d->soft ? xmalloc(sizeof(float) * (size_t)maxb * (size_t)K) : NULL;
	}

	int rc = 0;
	for (int epoch = t->start_epoch; epoch < spec->epochs; epoch++) {
		if (!full)
			epoch_order(order, n, t->seed, epoch);
		double loss_sum = 0.0;
		for (int s = 0; s < steps_per_epoch; s++) {
			int g0 = s * gb, g1 = g0 + gb < n ? g0 + gb : n, B = g1 - g0;
			int lo = g0 + (int)((long)B * rank / world);
			int hi = g0 + (int)((long)B * (rank + 1) / world);
			int b = hi - lo;
			const float *in[MLP_MAX_BRANCH];
			const uint32_t *ids;
			const int *labels;
			const float *soft;
			if (full) {
				for (int k = 0; k < d->ninputs; k++)
					in[k] = d->x[k] + (size_t)lo * d->dim[k];
				ids = d->ids + lo;
				labels = d->labels ? d->labels + lo : NULL;
				soft = d->soft ? d->soft + (size_t)lo * K : NULL;
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
				}
				for (int k = 0; k < d->ninputs; k++)
					in[k] = xb[k];
				ids = idb;
				labels = lb;
				soft = sb;
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
			mlp_zero_grad(m);
			mlp_forward(m, in, b, &ctx);
			double l = mlp_loss_backward(m, soft ? NULL : labels, soft, t->loss,
						     1.0f / (float)B, &ctx);
			if (t->dp && world > 1) {
				t->dp->allreduce(m->grads, m->nparams, t->dp->arg);
				t->dp->reduce(&l, 1, t->dp->arg);
			}
			optim_step(o, m->params, m->grads);
			loss_sum += l;
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
	return rc;
}
