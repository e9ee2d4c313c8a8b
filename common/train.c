/*
 * train.c - mini-batch SGD/AdamW training of an MLP and evaluation; see
 * train.h for the data-parallel contract.
 */
#include "train.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "manifest.h"
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

void train_data_slice(struct train_data *d, int lo, int n, int classes)
{
	for (int k = 0; k < d->ninputs; k++)
		if (d->x[k])
			d->x[k] += (size_t)lo * d->dim[k];
	d->ids += lo;
	if (d->labels)
		d->labels += lo;
	if (d->soft)
		d->soft += (size_t)lo * classes;
	if (d->maps)
		d->maps += (size_t)lo * d->map_hw;
	d->src.row0 += lo;
	d->src.n1 -= lo;
	d->n = n;
}

int train_data_rows(const struct train_data *d, int k, const int *rows, int nr, float *out)
{
	size_t w = (size_t)d->dim[k];
	const struct train_source *s = &d->src;
	int bad = 0;
	for (int i = 0; i < nr; i++) {
		int r = rows[i];
		float *o = out + (size_t)i * w;
		if (d->x[k])
			memcpy(o, d->x[k] + (size_t)r * w, w * sizeof(float));
		else if (r < s->n1)
			bad += dataset_row(s->ds[0], s->mod[k], s->row0 + r, o) != 0;
		else
			bad += dataset_row(s->ds[1], s->mod[k], r - s->n1, o) != 0;
	}
	return bad;
}

/* Whether some input of d is read through its source. */
static int train_data_lazy(const struct train_data *d)
{
	for (int k = 0; k < d->ninputs; k++)
		if (!d->x[k])
			return 1;
	return 0;
}

/*
 * The batch loader: gathers the inputs of a list of rows into a batch
 * buffer. With prefetch, loader_request() starts a thread that fills the
 * other buffer while the caller computes on the one loader_take() returned
 * last; without, loader_take() gathers on the spot. The rows passed to
 * loader_request() must stay valid until the next loader_take().
 */
struct loader {
	const struct train_data *d;
	int prefetch;
	float *buf[2][MLP_MAX_BRANCH];  /* maxb rows of each input; buf[1] with prefetch */
	int cur, fill;                  /* the buffer handed out / being filled */
	int busy;                       /* a thread is filling buf[fill] */
	pthread_t th;
	const int *rows;
	int nr;
};

static void loader_init(struct loader *L, const struct train_data *d, int maxb, int prefetch)
{
	memset(L, 0, sizeof *L);
	L->d = d;
	L->prefetch = prefetch;
	for (int b = 0; b < 1 + (prefetch != 0); b++)
		for (int k = 0; k < d->ninputs; k++)
			L->buf[b][k] = xmalloc(sizeof(float) * (size_t)(maxb > 0 ? maxb : 1) *
					       (size_t)d->dim[k]);
	L->cur = prefetch ? 1 : 0;
}

static void *loader_main(void *arg)
{
	struct loader *L = arg;
	for (int k = 0; k < L->d->ninputs; k++)
		train_data_rows(L->d, k, L->rows, L->nr, L->buf[L->fill][k]);
	return NULL;
}

static void loader_request(struct loader *L, const int *rows, int nr)
{
	L->rows = rows;
	L->nr = nr;
	L->fill = L->prefetch ? 1 - L->cur : 0;
	L->busy = L->prefetch && pthread_create(&L->th, NULL, loader_main, L) == 0;
}

/* The inputs of the rows asked for last (waiting for the thread). */
static float **loader_take(struct loader *L)
{
	if (L->busy)
		pthread_join(L->th, NULL);
	else
		loader_main(L);
	L->busy = 0;
	L->cur = L->fill;
	return L->buf[L->cur];
}

static void loader_release(struct loader *L)
{
	if (L->busy)
		pthread_join(L->th, NULL);
	for (int b = 0; b < 2; b++)
		for (int k = 0; k < MLP_MAX_BRANCH; k++)
			free(L->buf[b][k]);
	memset(L, 0, sizeof *L);
}

/* Evaluation chunk: large for the MLP, bounded activation memory for nets
 * (32 samples a thread: model_set_threads cuts a chunk into one slice per
 * thread); small when the inputs are decoded per chunk (bounded batch
 * buffers). */
static int eval_chunk(const struct model *m, const struct train_data *d)
{
	if (m->type == MODEL_MLP && !train_data_lazy(d))
		return 4096;
	return 32 * model_threads(m);
}

/* Evaluation in chunks [lo, lo+B): in place for resident inputs, else
 * through a loader over the rows in order, the next chunk prefetched. */
struct chunks {
	int chunk, lazy;
	int *rows;
	struct loader L;
};

static void chunks_begin(struct chunks *c, const struct model *m, const struct train_data *d)
{
	memset(c, 0, sizeof *c);
	c->chunk = eval_chunk(m, d);
	c->lazy = train_data_lazy(d);
	if (!c->lazy)
		return;
	c->rows = xmalloc(sizeof(int) * (size_t)(d->n + 1));
	for (int i = 0; i < d->n; i++)
		c->rows[i] = i;
	loader_init(&c->L, d, c->chunk, d->prefetch);
	if (d->n > 0)
		loader_request(&c->L, c->rows, d->n < c->chunk ? d->n : c->chunk);
}

static void chunks_forward(struct chunks *c, struct model *m, const struct train_data *d, int lo,
			   int B)
{
	const float *in[MLP_MAX_BRANCH];
	if (!c->lazy) {
		for (int k = 0; k < d->ninputs; k++)
			in[k] = d->x[k] + (size_t)lo * d->dim[k];
	} else {
		float **x = loader_take(&c->L);
		for (int k = 0; k < d->ninputs; k++)
			in[k] = x[k];
		int next = lo + B;
		if (next < d->n)
			loader_request(&c->L, c->rows + next,
				       d->n - next < c->chunk ? d->n - next : c->chunk);
	}
	model_forward(m, in, B, NULL);
}

static void chunks_end(struct chunks *c)
{
	if (c->lazy)
		loader_release(&c->L);
	free(c->rows);
}

void predict_probs(struct model *m, const struct train_data *d, float *probs)
{
	struct chunks c;
	chunks_begin(&c, m, d);
	int K = m->classes;
	for (int lo = 0; lo < d->n; lo += c.chunk) {
		int B = d->n - lo < c.chunk ? d->n - lo : c.chunk;
		chunks_forward(&c, m, d, lo, B);
		model_probs(m, probs + (size_t)lo * K, B);
	}
	chunks_end(&c);
}

void predict_maps(struct model *m, const struct train_data *d, int *maps)
{
	struct chunks c;
	chunks_begin(&c, m, d);
	int K = m->classes, HW = m->map_hw;
	for (int lo = 0; lo < d->n; lo += c.chunk) {
		int B = d->n - lo < c.chunk ? d->n - lo : c.chunk;
		chunks_forward(&c, m, d, lo, B);
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
	chunks_end(&c);
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
		struct chunks c;
		chunks_begin(&c, m, d);
		double *cm = conf ? conf : xmalloc(sizeof(double) * (size_t)K * K);
		memset(cm, 0, sizeof(double) * (size_t)K * K);
		for (int lo = 0; lo < d->n; lo += c.chunk) {
			int B = d->n - lo < c.chunk ? d->n - lo : c.chunk;
			chunks_forward(&c, m, d, lo, B);
			confusion_update(cm, model_logits(m), d->maps + (size_t)lo * d->map_hw, B, K,
					 d->map_hw);
		}
		chunks_end(&c);
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

/* The per-epoch orders of the two epochs in flight (the current one and the
 * next, whose first batch is prefetched at the end of the current). */
struct orders {
	int *o[2];
	int epoch[2];
	int n, shuffle;
	uint64_t seed;
};

static const int *order_of(struct orders *O, int epoch)
{
	int s = epoch & 1;
	if (O->epoch[s] != epoch) {
		if (O->shuffle) {
			epoch_order(O->o[s], O->n, O->seed, epoch);
		} else {
			for (int i = 0; i < O->n; i++)
				O->o[s][i] = i;
		}
		O->epoch[s] = epoch;
	}
	return O->o[s];
}

/* Step geometry: global batch g0.. of B rows, this rank's rows [lo, lo+b). */
struct step_rows {
	int B, lo, b;
};

static struct step_rows step_at(int s, int gb, int n, int rank, int world, int micro)
{
	int g0 = s * gb, g1 = g0 + gb < n ? g0 + gb : n, B = g1 - g0;
	int lo = g0 + rank_cut(B, rank, world, micro);
	int hi = g0 + rank_cut(B, rank + 1, world, micro);
	return (struct step_rows){ .B = B, .lo = lo, .b = hi - lo };
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

	/* Full-batch training over resident inputs walks the data in order, so
	 * a rank's slice is a contiguous range of d and is bound in place;
	 * shuffled mini-batches (and any batch of lazy inputs) are gathered into
	 * the batch buffers, the inputs by the loader (which decodes lazy rows,
	 * the next step's ahead with prefetch: the orders are known ahead). */
	int lazy = train_data_lazy(d);
	int gather = !full || lazy;
	struct orders O = { .n = n, .shuffle = !full, .seed = t->seed, .epoch = { -1, -1 } };
	struct loader L;
	uint32_t *idb = NULL;
	int *lb = NULL;
	float *sb = NULL;
	int *mb = NULL;
	int HW = d->map_hw;
	if (gather) {
		O.o[0] = xmalloc(sizeof(int) * (size_t)n);
		O.o[1] = xmalloc(sizeof(int) * (size_t)n);
		loader_init(&L, d, maxb, lazy && d->prefetch);
		idb = xmalloc(sizeof(uint32_t) * (size_t)maxb);
		lb = xmalloc(sizeof(int) * (size_t)maxb);
		sb = d->soft ? xmalloc(sizeof(float) * (size_t)maxb * (size_t)K) : NULL;
		mb = d->maps ? xmalloc(sizeof(int) * (size_t)maxb * (size_t)HW) : NULL;
		if (t->start_epoch < spec->epochs) {
			struct step_rows sr = step_at(0, gb, n, rank, world, micro);
			loader_request(&L, order_of(&O, t->start_epoch) + sr.lo, sr.b);
		}
	}

	int rc = 0;
	for (int epoch = t->start_epoch; epoch < spec->epochs; epoch++) {
		double loss_sum = 0.0;
		for (int s = 0; s < steps_per_epoch; s++) {
			struct step_rows sr = step_at(s, gb, n, rank, world, micro);
			int B = sr.B, lo = sr.lo, b = sr.b;
			const float *in[MLP_MAX_BRANCH];
			const uint32_t *ids;
			const int *labels;
			const float *soft;
			const int *maps;
			if (!gather) {
				for (int k = 0; k < d->ninputs; k++)
					in[k] = d->x[k] + (size_t)lo * d->dim[k];
				ids = d->ids + lo;
				labels = d->labels ? d->labels + lo : NULL;
				soft = d->soft ? d->soft + (size_t)lo * K : NULL;
				maps = d->maps ? d->maps + (size_t)lo * HW : NULL;
			} else {
				const int *rows = order_of(&O, epoch) + lo;
				float **xb = loader_take(&L);
				/* ask for the next step's rows while this one computes */
				int ne = s + 1 < steps_per_epoch ? epoch : epoch + 1;
				if (ne < spec->epochs) {
					struct step_rows nx = step_at(s + 1 < steps_per_epoch ? s + 1 : 0,
								      gb, n, rank, world, micro);
					loader_request(&L, order_of(&O, ne) + nx.lo, nx.b);
				}
				for (int i = 0; i < b; i++) {
					int r = rows[i];
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
				labels = d->labels ? lb : NULL;
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
				.memo = t->memo,
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
	if (gather)
		loader_release(&L);
	free(O.o[0]);
	free(O.o[1]);
	free(idb);
	free(lb);
	free(sb);
	free(mb);
	return rc;
}
