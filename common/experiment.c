/*
 * experiment.c - MKE end to end in one process (see experiment.h).
 *
 * Owns the meaning of the paper's variants: which data, which inputs and
 * which targets each student trains on (DESIGN.md's table), and the
 * diagnostics (pseudo-label accuracy, rectification).
 */
#include "experiment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cnn.h"
#include "rng.h"
#include "util.h"

int exp_data_load(struct exp_data *d, const struct run_config *c)
{
	memset(d, 0, sizeof *d);
	if (dataset_load(&d->labeled, c, c->labeled, 1) != 0)
		return -1;
	if (d->labeled.n == 0 || (c->task == TASK_SEGMENT ? !d->labeled.pixel_labels
							  : !d->labeled.labels))
		return mke_error(c->task == TASK_SEGMENT
					 ? "manifest '%s': the labeled set needs label maps in the "
					   "data.target column"
					 : "manifest '%s': the labeled set needs rows with a 'label' column",
				 c->labeled);
	if (c->unlabeled && dataset_load(&d->unlabeled, c, c->unlabeled, c->nmod) != 0)
		return -1;
	if (c->test && dataset_load(&d->test, c, c->test, c->nmod) != 0)
		return -1;
	if (c->test && (c->task == TASK_SEGMENT ? !d->test.pixel_labels : !d->test.labels))
		return mke_error(c->task == TASK_SEGMENT
					 ? "manifest '%s': the test set needs label maps in the "
					   "data.target column"
					 : "manifest '%s': the test set needs a 'label' column",
				 c->test);
	if (c->task == TASK_SEGMENT) {
		d->has_unlabeled_labels = d->unlabeled.n > 0 && d->unlabeled.pixel_labels != NULL;
		return 0;
	}
	d->has_unlabeled_labels = d->unlabeled.n > 0 && d->unlabeled.labels != NULL;
	for (int i = 0; d->has_unlabeled_labels && i < d->unlabeled.n; i++)
		if (d->unlabeled.labels[i] < 0)
			d->has_unlabeled_labels = 0;
	return 0;
}

void exp_data_release(struct exp_data *d)
{
	dataset_release(&d->labeled);
	dataset_release(&d->unlabeled);
	dataset_release(&d->test);
}

void bind_inputs(struct train_data *td, const struct dataset *ds, const struct model_spec *ms)
{
	memset(td, 0, sizeof *td);
	td->n = ds->n;
	td->ninputs = ms->ninputs;
	for (int k = 0; k < ms->ninputs; k++) {
		td->x[k] = ds->x[ms->inputs[k]];
		td->dim[k] = ds->dim[ms->inputs[k]];
		memcpy(td->shape[k], ds->shape[ms->inputs[k]], sizeof td->shape[k]);
	}
	for (int k = 0; k < ms->ninputs; k++)
		td->src.mod[k] = ms->inputs[k];
	td->src.ds[0] = ds;
	td->src.n1 = ds->n;
	td->prefetch = ds->prefetch;
	td->ids = ds->ids;
	td->labels = ds->labels;
	td->soft = ds->multi;
	td->maps = ds->pixel_labels;
	td->map_hw = ds->pixel_labels ? ds->label_h * ds->label_w : 0;
}

static int init_model(struct model *m, const struct run_config *c, const struct model_spec *ms,
		      const struct train_data *td, uint64_t seed)
{
	struct model_shapes sh;
	train_data_shapes(td, &sh);
	if (model_init(m, c, ms, &sh) != 0)
		return -1;
	if (m->map_hw && td->maps && m->map_hw != td->map_hw)
		return mke_error("model '%s': predicts %d pixels per sample but the label maps "
				 "have %d; give data.target the height and width of modality a",
				 ms->name, m->map_hw, td->map_hw);
	if (c->init == INIT_TORCH)
		return model_init_params_torch(m, seed);
	model_init_params(m, seed);
	return 0;
}

struct fit_state {
	struct fit_ctl *ctl;
	struct model *m;
	struct optim *o;
	uint64_t seed;
	long last_ckpt_step;
};

static int fit_save(struct fit_state *fs, int epoch, long step)
{
	struct ckpt_meta meta = {.epoch = epoch, .step = step, .seed = fs->seed};
	snprintf(meta.variant, sizeof meta.variant, "%s", fs->ctl->variant ? fs->ctl->variant : "");
	fs->last_ckpt_step = step;
	return checkpoint_save(fs->ctl->ckpt_path, fs->m, fs->o, &meta);
}

static int fit_epoch(int epoch, long step, double loss, void *arg)
{
	struct fit_state *fs = arg;
	struct fit_ctl *ctl = fs->ctl;
	if (ctl->ckpt_path && ctl->ckpt_every > 0 &&
	    step / ctl->ckpt_every > fs->last_ckpt_step / ctl->ckpt_every) {
		/* every rank reaches this point at the same step; they agree on
		 * the writer's result so that all stop together (a rank that
		 * stopped alone would leave the others waiting in a collective) */
		double failed = 0.0;
		if (ctl->writer)
			failed = fit_save(fs, epoch, step) != 0;
		else
			fs->last_ckpt_step = step;
		if (ctl->dp && ctl->dp->world > 1 && ctl->dp->reduce)
			ctl->dp->reduce(&failed, 1, ctl->dp->arg);
		if (failed > 0.0)
			return -1;
	}
	return ctl->on_epoch ? ctl->on_epoch(epoch, step, loss, ctl->arg) : 0;
}

static int fit(struct model *m, const struct run_config *c, const struct train_spec *spec,
	       const struct train_data *td, struct regularizer reg, uint64_t seed, struct fit_ctl *ctl)
{
	struct optim o;
	optim_init(&o, &spec->optim, m->nparams);
	struct train_opts t = {
		.spec = spec,
		.reg = reg,
		.seed = seed,
		.loss = c->loss,
		.classes = c->classes,
	};
	struct fit_state fs = {.ctl = ctl, .m = m, .o = &o, .seed = seed};
	if (ctl) {
		t.dp = ctl->dp;
		t.memo = ctl->memo;
		t.on_epoch = fit_epoch;
		t.arg = &fs;
		ctl->resumed_epoch = 0;
		if (ctl->resume && ctl->ckpt_path && access(ctl->ckpt_path, R_OK) == 0) {
			struct ckpt_meta meta;
			if (checkpoint_load(ctl->ckpt_path, m, &o, &meta) != 0) {
				optim_release(&o);
				return -1;
			}
			t.start_epoch = meta.epoch < spec->epochs ? meta.epoch : spec->epochs;
			fs.last_ckpt_step = meta.step;
			ctl->resumed_epoch = t.start_epoch;
		}
	}
	int rc = train_model(m, &o, td, &t);
	if (rc == 0 && ctl && ctl->ckpt_path && ctl->writer) {
		int steps = spec->batch_size <= 0 || spec->batch_size >= td->n
				    ? 1 : (td->n + spec->batch_size - 1) / spec->batch_size;
		rc = fit_save(&fs, spec->epochs, (long)spec->epochs * steps);
	}
	optim_release(&o);
	return rc;
}

/* Bytes the experiment's draw memo may keep: MKE_DRAW_MEMO_MB (0 turns it
 * off), 128 MB by default (the TwoMoon table keeps 74 MB a seed: the UM
 * student's 32 x 272 hidden-noise draws and the MM student's 2 x 272 input
 * noise draws of 2000 steps). */
static size_t exp_memo_bytes(void)
{
	const char *e = getenv("MKE_DRAW_MEMO_MB");
	long mb = e && *e ? strtol(e, NULL, 10) : 128;
	return mb > 0 ? (size_t)mb << 20 : 0;
}

int train_teacher(struct model *m, const struct run_config *c, const struct exp_data *d,
		  uint64_t seed, struct fit_ctl *ctl)
{
	const struct model_spec *ms = &c->models[c->teacher_model];
	struct train_data td;
	bind_inputs(&td, &d->labeled, ms);
	if (init_model(m, c, ms, &td, seed) != 0)
		return -1;
	return fit(m, c, &c->teacher_train, &td, c->teacher_reg, seed, ctl);
}

void pseudo_targets(const float *probs, int n, int classes, int *hard)
{
	for (int i = 0; i < n; i++)
		hard[i] = argmax_row(probs + (size_t)i * classes, classes);
}

struct regularizer variant_reg(const struct variant_spec *v, const struct grid_setting *g)
{
	struct regularizer none = {0};
	if (v->has_reg)
		return v->reg;
	if (v->kind == VAR_MM_STUDENT_NOREG)
		return none;
	return g ? g->reg : none;
}

/* Rows [0,n) of a then rows [0,m) of b, each w elements of size sz. */
static void *cat_rows(const void *a, int n, const void *b, int m, size_t w, size_t sz)
{
	char *out = xmalloc(sz * w * (size_t)(n + m));
	memcpy(out, a, sz * w * (size_t)n);
	memcpy(out + sz * w * (size_t)n, b, sz * w * (size_t)m);
	return out;
}

int train_student(struct model *m, const struct run_config *c, const struct exp_data *d,
		  const struct variant_spec *v, struct regularizer reg, uint64_t seed,
		  const struct pseudo *ps, struct fit_ctl *ctl)
{
	const struct model_spec *ms = &c->models[v->model];
	const struct dataset *u = &d->unlabeled, *l = &d->labeled;
	int K = c->classes, n = u->n;
	struct train_data td;
	bind_inputs(&td, u, ms);
	/* what this function allocates; freed at the end */
	int *hard = NULL, *maps = NULL;
	float *soft = NULL, *xa = NULL;
	uint32_t *ids = NULL;

	if (v->kind == VAR_MM_STUDENT_SUP) {
		int ok = c->task == TASK_SEGMENT     ? u->pixel_labels != NULL
			 : c->task == TASK_MULTILABEL ? u->multi != NULL
						      : u->labels != NULL;
		if (!ok)
			return mke_error("variant 'mm_student_sup' needs true labels in the "
					 "unlabeled manifest '%s'", c->unlabeled);
		/* bind_inputs bound the true targets */
	} else {
		/* pseudo-labels on D_u; the noisy student adds D_l (modality a) with
		 * its true targets */
		int extra = v->kind == VAR_NOISY_STUDENT ? l->n : 0;
		if (c->task == TASK_SEGMENT) {
			int HW = td.map_hw = l->label_h * l->label_w;
			maps = extra ? cat_rows(ps->maps, n, l->pixel_labels, extra, (size_t)HW,
						sizeof(int))
				     : cat_rows(ps->maps, n, NULL, 0, (size_t)HW, sizeof(int));
			td.maps = maps;
			td.labels = NULL;
		} else if (c->task == TASK_MULTILABEL) {
			soft = extra ? cat_rows(ps->probs, n, l->multi, extra, (size_t)K, sizeof(float))
				     : cat_rows(ps->probs, n, NULL, 0, (size_t)K, sizeof(float));
			td.soft = soft;
			td.labels = NULL;
		} else {
			hard = xmalloc(sizeof(int) * (size_t)(n + extra));
			pseudo_targets(ps->probs, n, K, hard);
			for (int i = 0; i < extra; i++)
				hard[n + i] = l->labels[i];
			if (c->soft_pseudo) {
				soft = xcalloc((size_t)(n + extra) * (size_t)K, sizeof(float));
				memcpy(soft, ps->probs, sizeof(float) * (size_t)n * (size_t)K);
				for (int i = 0; i < extra; i++)
					if (l->labels[i] >= 0)
						soft[(size_t)(n + i) * K + l->labels[i]] = 1.0f;
			}
			td.labels = hard;
			td.soft = soft;
		}
		if (extra) {
			/* resident inputs are concatenated; a lazy one reads D_l's
			   rows after D_u's through the source */
			size_t w = (size_t)u->dim[0];
			if (u->x[0] && l->x[0])
				xa = cat_rows(u->x[0], n, l->x[0], extra, w, sizeof(float));
			ids = cat_rows(u->ids, n, l->ids, extra, 1, sizeof(uint32_t));
			td.n = n + extra;
			td.x[0] = xa;
			td.src.ds[1] = l;
			td.ids = ids;
		}
	}
	int rc = init_model(m, c, ms, &td, seed);
	if (rc == 0)
		rc = fit(m, c, &v->train, &td, reg, seed, ctl);
	free(hard);
	free(soft);
	free(maps);
	free(xa);
	free(ids);
	return rc;
}

double eval_model(struct model *m, const struct dataset *test, const struct model_spec *ms)
{
	return eval_model_classes(m, test, ms, NULL);
}

double eval_model_classes(struct model *m, const struct dataset *test,
			  const struct model_spec *ms, double *per_class)
{
	struct train_data td;
	bind_inputs(&td, test, ms);
	return evaluate_classes(m, &td, NULL, per_class);
}

int pseudo_make(struct pseudo *ps, struct model *teacher, const struct run_config *c,
		const struct exp_data *d)
{
	memset(ps, 0, sizeof *ps);
	const struct dataset *u = &d->unlabeled;
	struct train_data ud;
	bind_inputs(&ud, u, &c->models[c->teacher_model]);
	ps->n = u->n;
	ps->quality = -1.0;
	if (c->task == TASK_SEGMENT) {
		ps->map_hw = teacher->map_hw;
		ps->maps = xmalloc(sizeof(int) * (size_t)u->n * (size_t)ps->map_hw);
		predict_maps(teacher, &ud, ps->maps);
	} else {
		ps->probs = xmalloc(sizeof(float) * (size_t)u->n * (size_t)c->classes);
		predict_probs(teacher, &ud, ps->probs);
	}
	pseudo_quality(ps, c, d);
	return 0;
}

void pseudo_quality(struct pseudo *ps, const struct run_config *c, const struct exp_data *d)
{
	const struct dataset *u = &d->unlabeled;
	int K = c->classes;
	ps->quality = -1.0;
	if (!d->has_unlabeled_labels)
		return;
	if (c->task == TASK_SEGMENT) {
		double *cm = xcalloc((size_t)K * K, sizeof(double));
		size_t np = (size_t)u->n * (size_t)ps->map_hw;
		for (size_t i = 0; i < np; i++) {
			int t = u->pixel_labels[i], p = ps->maps[i];
			if (t >= 0 && t < K && p >= 0 && p < K)
				cm[(size_t)t * K + p] += 1.0;
		}
		ps->quality = confusion_miou(cm, K, NULL);
		free(cm);
	} else if (c->task == TASK_MULTILABEL) {
		if (u->multi)
			ps->quality = mean_average_precision(ps->probs, u->multi, u->n, K, NULL);
	} else {
		ps->quality = accuracy_of(ps->probs, u->labels, u->n, K);
	}
}

void pseudo_release(struct pseudo *ps)
{
	free(ps->probs);
	free(ps->maps);
	memset(ps, 0, sizeof *ps);
}

/* Of the targets the teacher got wrong on D_u, the fraction the student gets
 * right: samples (classify), pixels (segment), sample x class decisions at
 * 0.5 (multilabel). */
double rectification(struct model *m, const struct exp_data *d, const struct model_spec *ms,
		     const struct pseudo *ps, const struct run_config *c)
{
	const struct dataset *u = &d->unlabeled;
	if (!d->has_unlabeled_labels)
		return -1.0;
	int K = c->classes;
	struct train_data td;
	bind_inputs(&td, u, ms);
	long wrong = 0, fixed = 0;
	if (c->task == TASK_SEGMENT) {
		size_t np = (size_t)u->n * (size_t)ps->map_hw;
		int *maps = xmalloc(sizeof(int) * np);
		predict_maps(m, &td, maps);
		for (size_t i = 0; i < np; i++) {
			int t = u->pixel_labels[i];
			if (t < 0 || t >= K || ps->maps[i] == t)
				continue;
			wrong++;
			fixed += maps[i] == t;
		}
		free(maps);
		return wrong ? (double)fixed / wrong : -1.0;
	}
	float *probs = xmalloc(sizeof(float) * (size_t)u->n * (size_t)K);
	predict_probs(m, &td, probs);
	for (int i = 0; i < u->n; i++) {
		if (c->task == TASK_MULTILABEL) {
			if (!u->multi)
				break;
			for (int k = 0; k < K; k++) {
				size_t at = (size_t)i * K + k;
				int t = u->multi[at] > 0.5f;
				if ((ps->probs[at] > 0.5f) == t)
					continue;
				wrong++;
				fixed += (probs[at] > 0.5f) == t;
			}
			continue;
		}
		int pseudo = argmax_row(ps->probs + (size_t)i * K, K);
		if (pseudo == u->labels[i])
			continue;
		wrong++;
		fixed += argmax_row(probs + (size_t)i * K, K) == u->labels[i];
	}
	free(probs);
	return wrong ? (double)fixed / wrong : -1.0;
}

void mean_std(const double *v, int n, int skip_neg, double *mean, double *std, int *count)
{
	double s = 0.0, s2 = 0.0;
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (skip_neg && v[i] < 0)
			continue;
		s += v[i];
		k++;
	}
	double mu = k ? s / k : 0.0;
	for (int i = 0; i < n; i++) {
		if (skip_neg && v[i] < 0)
			continue;
		s2 += (v[i] - mu) * (v[i] - mu);
	}
	*mean = mu;
	*std = k > 1 ? sqrt(s2 / (k - 1)) : 0.0;
	if (count)
		*count = k;
}

int experiment_run(const struct run_config *c, struct exp_result *r, int progress)
{
	memset(r, 0, sizeof *r);
	struct exp_data d;
	if (exp_data_load(&d, c) != 0) {
		exp_data_release(&d);
		return -1;
	}
	if (d.unlabeled.n == 0 || d.test.n == 0) {
		exp_data_release(&d);
		return mke_error("config '%s': an experiment needs data.unlabeled and data.test", c->path);
	}
	double t0 = now_seconds();
	int G = c->ngrid, V = c->nvariants, S = c->nseeds;
	r->ngrid = G;
	r->nvariants = V;
	r->nseeds = S;
	r->acc = xcalloc((size_t)G * V * S, sizeof(double));
	r->rect = xcalloc((size_t)G * V * S, sizeof(double));
	r->teacher_seed_acc = xcalloc((size_t)S, sizeof(double));
	const struct model_spec *tms = &c->models[c->teacher_model];

	/* the teacher of record, and its pseudo-labels */
	struct model teacher;
	struct pseudo ps = {0};
	const char *metric = task_metric_name(c->task);
	int rc = train_teacher(&teacher, c, &d, c->teacher_seed, NULL);
	if (rc != 0)
		goto out_teacher;
	r->teacher_acc = eval_model(&teacher, &d.test, tms);
	pseudo_make(&ps, &teacher, c, &d);
	r->pseudo_acc = ps.quality;
	if (progress)
		mke_info("teacher (seed %llu): test %s %.2f%%, pseudo-label %s %.2f%%",
			 (unsigned long long)c->teacher_seed, metric, 100 * r->teacher_acc, metric,
			 100 * r->pseudo_acc);

	/* the teacher's spread over seeds, for the record */
	for (int s = 0; s < S && rc == 0; s++) {
		struct model t;
		rc = train_teacher(&t, c, &d, c->seeds[s], NULL);
		if (rc == 0)
			r->teacher_seed_acc[s] = eval_model(&t, &d.test, tms);
		model_release(&t);
	}

	/* Seeds outside: every student of one seed draws the same input and
	 * hidden noise (a function of seed, purpose, step, sample and index,
	 * rng.h) whatever the setting's strength, so the memo hands it from one
	 * model to the next instead of drawing it again. */
	struct draw_memo *memo = draw_memo_new(exp_memo_bytes());
	for (int s = 0; s < S && rc == 0; s++) {
		double ts = now_seconds();
		for (int g = 0; g < G && rc == 0; g++) {
			for (int v = 0; v < V && rc == 0; v++) {
				const struct variant_spec *vs = &c->variants[v];
				const struct model_spec *ms = &c->models[vs->model];
				struct regularizer reg = variant_reg(vs, &c->grid[g]);
				struct fit_ctl ctl = {.memo = memo};
				struct model m;
				rc = train_student(&m, c, &d, vs, reg, c->seeds[s], &ps, &ctl);
				size_t at = ((size_t)g * V + v) * S + s;
				if (rc == 0) {
					r->acc[at] = eval_model(&m, &d.test, ms);
					r->rect[at] = rectification(&m, &d, ms, &ps, c);
				}
				model_release(&m);
			}
		}
		if (progress && rc == 0)
			mke_info("seed %llu (%d/%d): %d students in %.1f s",
				 (unsigned long long)c->seeds[s], s + 1, S, G * V, now_seconds() - ts);
	}
	draw_memo_free(memo);
	for (int g = 0; g < G && rc == 0 && progress; g++) {
		for (int v = 0; v < V; v++) {
			double mu, sd;
			mean_std(r->acc + ((size_t)g * V + v) * S, S, 0, &mu, &sd, NULL);
			mke_info("%-16s %-18s %6.2f ± %.2f", c->grid[g].name,
				 variant_name(c->variants[v].kind), 100 * mu, 100 * sd);
		}
	}
	pseudo_release(&ps);
out_teacher:
	model_release(&teacher);
	r->seconds = now_seconds() - t0;
	exp_data_release(&d);
	return rc < 0 ? -1 : 0;
}

void exp_result_release(struct exp_result *r)
{
	free(r->acc);
	free(r->rect);
	free(r->teacher_seed_acc);
	memset(r, 0, sizeof *r);
}
