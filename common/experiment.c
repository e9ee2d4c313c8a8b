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
#include "util.h"

int exp_data_load(struct exp_data *d, const struct run_config *c)
{
	memset(d, 0, sizeof *d);
	if (dataset_load(&d->labeled, c, c->labeled, 1) != 0)
		return -1;
	if (d->labeled.n == 0 || !d->labeled.labels)
		return mke_error("manifest '%s': the labeled set needs rows with a 'label' column", c->labeled);
	if (c->unlabeled && dataset_load(&d->unlabeled, c, c->unlabeled, c->nmod) != 0)
		return -1;
	if (c->test && dataset_load(&d->test, c, c->test, c->nmod) != 0)
		return -1;
	if (c->test && !d->test.labels)
		return mke_error("manifest '%s': the test set needs a 'label' column", c->test);
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
	}
	td->ids = ds->ids;
	td->labels = ds->labels;
}

static void init_model(struct mlp *m, const struct run_config *c, const struct model_spec *ms,
		       const struct train_data *td, uint64_t seed)
{
	struct mlp_arch arch;
	model_arch(&arch, ms, td->dim, c->classes);
	mlp_init(m, &arch);
	mlp_init_params(m, seed);
}

struct fit_state {
	struct fit_ctl *ctl;
	struct mlp *m;
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

static int fit(struct mlp *m, const struct run_config *c, const struct train_spec *spec,
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
	int rc = train_mlp(m, &o, td, &t);
	if (rc == 0 && ctl && ctl->ckpt_path && ctl->writer) {
		int steps = spec->batch_size <= 0 || spec->batch_size >= td->n
				    ? 1 : (td->n + spec->batch_size - 1) / spec->batch_size;
		rc = fit_save(&fs, spec->epochs, (long)spec->epochs * steps);
	}
	optim_release(&o);
	return rc;
}

int train_teacher(struct mlp *m, const struct run_config *c, const struct exp_data *d, uint64_t seed,
		  struct fit_ctl *ctl)
{
	const struct model_spec *ms = &c->models[c->teacher_model];
	struct train_data td;
	bind_inputs(&td, &d->labeled, ms);
	init_model(m, c, ms, &td, seed);
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

int train_student(struct mlp *m, const struct run_config *c, const struct exp_data *d,
		  const struct variant_spec *v, struct regularizer reg, uint64_t seed, const float *probs,
		  struct fit_ctl *ctl)
{
	const struct model_spec *ms = &c->models[v->model];
	const struct dataset *u = &d->unlabeled;
	int K = c->classes, n = u->n;
	struct train_data td;
	bind_inputs(&td, u, ms);
	int *hard = NULL;
	float *soft = NULL;
	/* noisy student: D_u followed by D_l, on modality a */
	float *xa = NULL;
	uint32_t *ids = NULL;

	if (v->kind == VAR_MM_STUDENT_SUP) {
		if (!u->labels)
			return mke_error("variant 'mm_student_sup' needs true labels in the unlabeled manifest '%s'",
					 c->unlabeled);
		td.labels = u->labels;
	} else {
		int extra = v->kind == VAR_NOISY_STUDENT ? d->labeled.n : 0;
		int total = n + extra;
		hard = xmalloc(sizeof(int) * (size_t)total);
		pseudo_targets(probs, n, K, hard);
		if (c->soft_pseudo) {
			soft = xmalloc(sizeof(float) * (size_t)total * (size_t)K);
			memcpy(soft, probs, sizeof(float) * (size_t)n * (size_t)K);
		}
		if (extra) {
			const struct dataset *l = &d->labeled;
			int w = u->dim[0];
			xa = xmalloc(sizeof(float) * (size_t)total * (size_t)w);
			ids = xmalloc(sizeof(uint32_t) * (size_t)total);
			memcpy(xa, u->x[0], sizeof(float) * (size_t)n * (size_t)w);
			memcpy(xa + (size_t)n * w, l->x[0], sizeof(float) * (size_t)extra * (size_t)w);
			memcpy(ids, u->ids, sizeof(uint32_t) * (size_t)n);
			memcpy(ids + n, l->ids, sizeof(uint32_t) * (size_t)extra);
			for (int i = 0; i < extra; i++) {
				hard[n + i] = l->labels[i];
				if (soft) {
					float *row = soft + (size_t)(n + i) * K;
					memset(row, 0, sizeof(float) * (size_t)K);
					if (l->labels[i] >= 0)
						row[l->labels[i]] = 1.0f;
				}
			}
			td.n = total;
			td.x[0] = xa;
			td.ids = ids;
		}
		td.labels = hard;
		td.soft = soft;
	}
	init_model(m, c, ms, &td, seed);
	int rc = fit(m, c, &v->train, &td, reg, seed, ctl);
	free(hard);
	free(soft);
	free(xa);
	free(ids);
	return rc;
}

double eval_model(struct mlp *m, const struct dataset *test, const struct model_spec *ms, int classes)
{
	struct train_data td;
	bind_inputs(&td, test, ms);
	float *probs = xmalloc(sizeof(float) * (size_t)test->n * (size_t)classes);
	predict_probs(m, &td, probs);
	double acc = accuracy_of(probs, test->labels, test->n, classes);
	free(probs);
	return acc;
}

double rectification(struct mlp *m, const struct exp_data *d, const struct model_spec *ms,
		     const int *pseudo, int classes)
{
	const struct dataset *u = &d->unlabeled;
	if (!d->has_unlabeled_labels)
		return -1.0;
	struct train_data td;
	bind_inputs(&td, u, ms);
	float *probs = xmalloc(sizeof(float) * (size_t)u->n * (size_t)classes);
	predict_probs(m, &td, probs);
	int wrong = 0, fixed = 0;
	for (int i = 0; i < u->n; i++) {
		if (pseudo[i] == u->labels[i])
			continue;
		wrong++;
		fixed += argmax_row(probs + (size_t)i * classes, classes) == u->labels[i];
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
	int K = c->classes, G = c->ngrid, V = c->nvariants, S = c->nseeds;
	r->ngrid = G;
	r->nvariants = V;
	r->nseeds = S;
	r->acc = xcalloc((size_t)G * V * S, sizeof(double));
	r->rect = xcalloc((size_t)G * V * S, sizeof(double));
	r->teacher_seed_acc = xcalloc((size_t)S, sizeof(double));
	const struct model_spec *tms = &c->models[c->teacher_model];

	/* the teacher of record, and its pseudo-labels */
	struct mlp teacher;
	int rc = train_teacher(&teacher, c, &d, c->teacher_seed, NULL);
	if (rc != 0)
		goto out_teacher;
	r->teacher_acc = eval_model(&teacher, &d.test, tms, K);
	float *probs = xmalloc(sizeof(float) * (size_t)d.unlabeled.n * (size_t)K);
	int *pseudo = xmalloc(sizeof(int) * (size_t)d.unlabeled.n);
	struct train_data ud;
	bind_inputs(&ud, &d.unlabeled, tms);
	predict_probs(&teacher, &ud, probs);
	pseudo_targets(probs, d.unlabeled.n, K, pseudo);
	r->pseudo_acc = d.has_unlabeled_labels ? accuracy_of(probs, d.unlabeled.labels, d.unlabeled.n, K) : -1.0;
	if (progress)
		mke_info("teacher (seed %llu): test accuracy %.2f%%, pseudo-label accuracy %.2f%%",
			 (unsigned long long)c->teacher_seed, 100 * r->teacher_acc, 100 * r->pseudo_acc);

	/* the teacher's spread over seeds, for the record */
	for (int s = 0; s < S && rc == 0; s++) {
		struct mlp t;
		rc = train_teacher(&t, c, &d, c->seeds[s], NULL);
		if (rc == 0)
			r->teacher_seed_acc[s] = eval_model(&t, &d.test, tms, K);
		mlp_release(&t);
	}

	for (int g = 0; g < G && rc == 0; g++) {
		for (int v = 0; v < V && rc == 0; v++) {
			const struct variant_spec *vs = &c->variants[v];
			const struct model_spec *ms = &c->models[vs->model];
			struct regularizer reg = variant_reg(vs, &c->grid[g]);
			for (int s = 0; s < S && rc == 0; s++) {
				struct mlp m;
				rc = train_student(&m, c, &d, vs, reg, c->seeds[s], probs, NULL);
				size_t at = ((size_t)g * V + v) * S + s;
				if (rc == 0) {
					r->acc[at] = eval_model(&m, &d.test, ms, K);
					r->rect[at] = rectification(&m, &d, ms, pseudo, K);
				}
				mlp_release(&m);
			}
			if (progress && rc == 0) {
				double mu, sd;
				mean_std(r->acc + ((size_t)g * V + v) * S, S, 0, &mu, &sd, NULL);
				mke_info("%-16s %-18s %6.2f ± %.2f", c->grid[g].name, variant_name(vs->kind),
					 100 * mu, 100 * sd);
			}
		}
	}
	free(probs);
	free(pseudo);
out_teacher:
	mlp_release(&teacher);
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
