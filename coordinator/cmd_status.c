/*
 * cmd_status.c - `mke status [RUN]`: where a run stands and what it found.
 *
 * Everything comes from the run's SQLite database, opened read-only while
 * the coordinator may be writing it (WAL): the run row, its phases, the
 * shards by state, the live worker ranks (a "hello" with no "bye" since the
 * last "job_start"), label throughput from the shards' done_ms, the latest
 * value of every metric, and the variants table -- the teacher's test
 * accuracy and, per student kind, mean ± std over seeds of test accuracy and
 * rectification with the gain over the teacher. That last line ("mm_student
 * beats the teacher by +15 points") is what users come for, so `mke runs`
 * uses the same code (run_result_load) for its RESULT column.
 *
 * Status never talks to Redis: it works on a finished run, on a run whose
 * coordinator is dead, and on a copy of the database on a laptop.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "config.h"
#include "experiment.h"
#include "store.h"
#include "util.h"

/* A run with no event, metric or shard change for this long while it says
 * "running" probably lost its coordinator. */
#define STALE_MS (5 * 60 * 1000LL)

static long long now_ms(void)
{
	return (long long)(wall_seconds() * 1000.0);
}

/* ---- the result: variants grouped by kind ------------------------------------------ */

struct kind_acc {
	double *acc, *rect;
	int nacc, nrect;
};

struct result_build {
	struct run_result *res;
	struct kind_acc teacher;
	struct kind_acc *acc;   /* parallel to res->kinds */
};

static void push(double **v, int *n, double x)
{
	*v = xrealloc(*v, sizeof **v * (size_t)(*n + 1));
	(*v)[(*n)++] = x;
}

static int kind_index(struct result_build *b, const char *kind, size_t len)
{
	struct run_result *res = b->res;
	for (int i = 0; i < res->nkinds; i++)
		if (strlen(res->kinds[i].kind) == len && strncmp(res->kinds[i].kind, kind, len) == 0)
			return i;
	res->kinds = xrealloc(res->kinds, sizeof *res->kinds * (size_t)(res->nkinds + 1));
	b->acc = xrealloc(b->acc, sizeof *b->acc * (size_t)(res->nkinds + 1));
	struct kind_result *k = &res->kinds[res->nkinds];
	memset(k, 0, sizeof *k);
	k->kind = xmalloc(len + 1);
	memcpy(k->kind, kind, len);
	k->kind[len] = '\0';
	memset(&b->acc[res->nkinds], 0, sizeof *b->acc);
	return res->nkinds++;
}

static int result_metric(void *arg, const struct store_metric *m)
{
	struct result_build *b = arg;
	const char *v = m->variant ? m->variant : "";
	if (isnan(m->value))
		return 0;
	size_t len = strcspn(v, "/");
	int is_teacher = len == 7 && strncmp(v, "teacher", 7) == 0;
	if (strcmp(m->key, "pseudo_label_accuracy") == 0 && (is_teacher || !*v)) {
		b->res->pseudo_label_accuracy = m->value;
		return 0;
	}
	/* the worker names the task's metric beside test_accuracy (test_mIoU, test_mAP) */
	if (strcmp(m->key, "test_mIoU") == 0 || strcmp(m->key, "test_mAP") == 0) {
		snprintf(b->res->metric, sizeof b->res->metric, "%s", m->key + 5);
		return 0;
	}
	int acc = strcmp(m->key, "test_accuracy") == 0, rect = strcmp(m->key, "rectification") == 0;
	if (!*v || (!acc && !rect))
		return 0;
	struct kind_acc *k = &b->teacher;
	if (!is_teacher) {
		int i = kind_index(b, v, len); /* may move b->acc */
		k = &b->acc[i];
	}
	if (acc)
		push(&k->acc, &k->nacc, m->value);
	else
		push(&k->rect, &k->nrect, m->value);
	return 0;
}

static void summarize(struct kind_result *k, struct kind_acc *a)
{
	k->acc_mean = k->acc_std = k->rect_mean = k->rect_std = NAN;
	if (a->nacc > 0)
		mean_std(a->acc, a->nacc, 0, &k->acc_mean, &k->acc_std, &k->n_acc);
	if (a->nrect > 0)
		mean_std(a->rect, a->nrect, 0, &k->rect_mean, &k->rect_std, &k->n_rect);
	free(a->acc);
	free(a->rect);
}

/* The paper's order (config.h's variant kinds), unknown kinds after. */
static int kind_rank(const char *kind)
{
	int v = variant_from_name(kind);
	return v < 0 ? 1000 : v;
}

static int by_kind(const void *a, const void *b)
{
	const struct kind_result *x = a, *y = b;
	int rx = kind_rank(x->kind), ry = kind_rank(y->kind);
	return rx != ry ? (rx < ry ? -1 : 1) : strcmp(x->kind, y->kind);
}

int run_result_load(struct store *db, const char *run, struct run_result *res)
{
	memset(res, 0, sizeof *res);
	res->pseudo_label_accuracy = NAN;
	snprintf(res->metric, sizeof res->metric, "accuracy");
	res->teacher.kind = xstrdup("teacher");
	struct result_build b = {.res = res};
	int rc = store_metrics_latest(db, run, result_metric, &b);
	summarize(&res->teacher, &b.teacher);
	for (int i = 0; i < res->nkinds; i++)
		summarize(&res->kinds[i], &b.acc[i]);
	free(b.acc);
	if (res->nkinds > 1)
		qsort(res->kinds, (size_t)res->nkinds, sizeof *res->kinds, by_kind);
	return rc;
}

void run_result_release(struct run_result *res)
{
	free(res->teacher.kind);
	for (int i = 0; i < res->nkinds; i++)
		free(res->kinds[i].kind);
	free(res->kinds);
	memset(res, 0, sizeof *res);
}

static int is_upper_bound(const char *kind)
{
	size_t n = strlen(kind);
	return n >= 4 && strcmp(kind + n - 4, "_sup") == 0;
}

const struct kind_result *run_result_best(const struct run_result *res)
{
	const struct kind_result *best = NULL;
	for (int i = 0; i < res->nkinds; i++) {
		const struct kind_result *k = &res->kinds[i];
		if (k->n_acc > 0 && !is_upper_bound(k->kind) && (!best || k->acc_mean > best->acc_mean))
			best = k;
	}
	return best;
}

/* ---- everything status shows ----------------------------------------------------------- */

struct rank_info {
	int rank;
	long pid;
	char host[128];
	long long since_ms;
};

struct progress {
	long long done, total, ts_ms;
};

struct metric_row {
	char *variant, *key;
	long long step, ts_ms;
	double value;
};

struct status {
	struct store_run r;
	const char *db_path;
	char **pkey, **pval;
	int nparams;
	struct store_phase ph[PHASE_N];
	int have_ph[PHASE_N];
	char *ph_detail[PHASE_N];
	struct progress prog[PHASE_N];
	long counts[SHARD_NSTATES], nshards;
	long long rows_total, rows_done;
	long long *done_ms, *done_rows;
	long long first_lease_ms;   /* earliest lease among done shards */
	long ndone;
	double window_s, shards_per_s, samples_per_s, eta_s;
	const char *window;      /* "last_minute", "label_phase" or NULL */
	struct rank_info *ranks;
	int nranks, restarts;
	long long job_start_ms, last_activity_ms, now_ms;
	struct metric_row *m;
	int nm;
	struct run_result res;
};

static void status_release(struct status *st)
{
	store_run_release(&st->r);
	for (int i = 0; i < st->nparams; i++) {
		free(st->pkey[i]);
		free(st->pval[i]);
	}
	free(st->pkey);
	free(st->pval);
	for (int i = 0; i < PHASE_N; i++)
		free(st->ph_detail[i]);
	free(st->done_ms);
	free(st->done_rows);
	free(st->ranks);
	for (int i = 0; i < st->nm; i++) {
		free(st->m[i].variant);
		free(st->m[i].key);
	}
	free(st->m);
	run_result_release(&st->res);
	memset(st, 0, sizeof *st);
}

static void touch(struct status *st, long long ms)
{
	if (ms > st->last_activity_ms)
		st->last_activity_ms = ms;
}

static int on_param(void *arg, const char *key, const char *value)
{
	struct status *st = arg;
	st->pkey = xrealloc(st->pkey, sizeof *st->pkey * (size_t)(st->nparams + 1));
	st->pval = xrealloc(st->pval, sizeof *st->pval * (size_t)(st->nparams + 1));
	st->pkey[st->nparams] = xstrdup(key);
	st->pval[st->nparams] = xstrdup(value ? value : "");
	st->nparams++;
	return 0;
}

static int on_phase(void *arg, const struct store_phase *p)
{
	struct status *st = arg;
	if ((int)p->phase < 0 || p->phase >= PHASE_N)
		return 0;
	st->ph[p->phase] = *p;
	st->ph[p->phase].detail = NULL;
	st->have_ph[p->phase] = 1;
	free(st->ph_detail[p->phase]);
	st->ph_detail[p->phase] = p->detail && *p->detail ? xstrdup(p->detail) : NULL;
	touch(st, p->ended_ms > p->started_ms ? p->ended_ms : p->started_ms);
	return 0;
}

static int on_shard(void *arg, const struct store_shard *sh)
{
	struct status *st = arg;
	st->rows_total += sh->row_count;
	touch(st, sh->updated_ms);
	if (sh->state != SHARD_DONE)
		return 0;
	st->rows_done += sh->row_count;
	if (sh->leased_ms > 0 && (st->first_lease_ms == 0 || sh->leased_ms < st->first_lease_ms))
		st->first_lease_ms = sh->leased_ms;
	st->done_ms = xrealloc(st->done_ms, sizeof *st->done_ms * (size_t)(st->ndone + 1));
	st->done_rows = xrealloc(st->done_rows, sizeof *st->done_rows * (size_t)(st->ndone + 1));
	st->done_ms[st->ndone] = sh->done_ms;
	st->done_rows[st->ndone] = sh->row_count;
	st->ndone++;
	return 0;
}

static int find_rank(struct status *st, int rank)
{
	for (int i = 0; i < st->nranks; i++)
		if (st->ranks[i].rank == rank)
			return i;
	return -1;
}

/* Live ranks: hello adds, bye removes, a job start or exit clears. */
static int on_event(void *arg, const struct store_event *e)
{
	struct status *st = arg;
	touch(st, e->ts_ms);
	if (strcmp(e->kind, "job_start") == 0) {
		st->nranks = 0;
		st->job_start_ms = e->ts_ms;
		cJSON *j = e->payload ? cJSON_Parse(e->payload) : NULL;
		cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "restarts");
		if (cJSON_IsNumber(r))
			st->restarts = r->valueint;
		cJSON_Delete(j);
	} else if (strcmp(e->kind, "job_exit") == 0) {
		st->nranks = 0;
	} else if (strcmp(e->kind, "hello") == 0 && e->rank >= 0) {
		int i = find_rank(st, e->rank);
		if (i < 0) {
			st->ranks = xrealloc(st->ranks, sizeof *st->ranks * (size_t)(st->nranks + 1));
			i = st->nranks++;
		}
		struct rank_info *ri = &st->ranks[i];
		memset(ri, 0, sizeof *ri);
		ri->rank = e->rank;
		ri->since_ms = e->ts_ms;
		cJSON *j = e->payload ? cJSON_Parse(e->payload) : NULL;
		cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "host");
		cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pid");
		if (cJSON_IsString(h))
			snprintf(ri->host, sizeof ri->host, "%s", h->valuestring);
		if (cJSON_IsNumber(p))
			ri->pid = (long)p->valuedouble;
		cJSON_Delete(j);
	} else if (strcmp(e->kind, "bye") == 0 && e->rank >= 0) {
		int i = find_rank(st, e->rank);
		if (i >= 0)
			st->ranks[i] = st->ranks[--st->nranks];
	} else if (strcmp(e->kind, "progress") == 0 && e->payload) {
		cJSON *j = cJSON_Parse(e->payload);
		cJSON *ph = cJSON_GetObjectItemCaseSensitive(j, "phase");
		cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "done");
		cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "total");
		int p = cJSON_IsString(ph) ? run_phase_from_name(ph->valuestring) : -1;
		if (p >= 0 && cJSON_IsNumber(d) && cJSON_IsNumber(t) && e->ts_ms >= st->prog[p].ts_ms) {
			st->prog[p].done = (long long)d->valuedouble;
			st->prog[p].total = (long long)t->valuedouble;
			st->prog[p].ts_ms = e->ts_ms;
		}
		cJSON_Delete(j);
	}
	return 0;
}

static int on_metric(void *arg, const struct store_metric *m)
{
	struct status *st = arg;
	st->m = xrealloc(st->m, sizeof *st->m * (size_t)(st->nm + 1));
	struct metric_row *r = &st->m[st->nm++];
	r->variant = xstrdup(m->variant ? m->variant : "");
	r->key = xstrdup(m->key);
	r->step = m->step;
	r->value = m->value;
	r->ts_ms = m->ts_ms;
	touch(st, m->ts_ms);
	return 0;
}

/* Latest metrics by kind (the paper's order, teacher first), variant, key. */
static int by_variant(const void *a, const void *b)
{
	const struct metric_row *x = a, *y = b;
	char kx[64], ky[64];
	snprintf(kx, sizeof kx, "%.*s", (int)strcspn(x->variant, "/"), x->variant);
	snprintf(ky, sizeof ky, "%.*s", (int)strcspn(y->variant, "/"), y->variant);
	int rx = kind_rank(kx), ry = kind_rank(ky);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	int c = strcmp(x->variant, y->variant);
	return c ? c : strcmp(x->key, y->key);
}

static int run_over(const struct store_run *r)
{
	return r->status == RUN_DONE || r->status == RUN_FAILED || r->status == RUN_CANCELLED;
}

/* Shards per second over the last minute while labeling runs, else over the
 * whole label phase (from the first lease, which may precede the phase's
 * record); the ETA of a running label phase from that rate. */
static void throughput(struct status *st)
{
	st->window_s = st->shards_per_s = st->samples_per_s = st->eta_s = NAN;
	st->window = NULL;
	if (!st->have_ph[PHASE_LABEL] || st->ndone == 0)
		return;
	const struct store_phase *lp = &st->ph[PHASE_LABEL];
	int running = lp->status == PHASE_RUNNING && !run_over(&st->r);
	long long end = 0, start;
	for (long i = 0; i < st->ndone; i++)
		if (st->done_ms[i] > end)
			end = st->done_ms[i];
	if (running) {
		end = st->now_ms;
		start = end - 60000;
		if (lp->started_ms > start)
			start = lp->started_ms;
		st->window = "last_minute";
		if (end - start < 1000) { /* too short to say */
			st->window = NULL;
			return;
		}
	} else {
		start = lp->started_ms;
		if (st->first_lease_ms > 0 && st->first_lease_ms < start)
			start = st->first_lease_ms;
		start--; /* count a shard done in the phase's first millisecond */
		st->window = "label_phase";
	}
	if (end <= start) {
		st->window = NULL;
		return;
	}
	long n = 0;
	long long rows = 0;
	for (long i = 0; i < st->ndone; i++)
		if (st->done_ms[i] > start && st->done_ms[i] <= end) {
			n++;
			rows += st->done_rows[i];
		}
	st->window_s = (double)(end - start) / 1000.0;
	st->shards_per_s = (double)n / st->window_s;
	st->samples_per_s = (double)rows / st->window_s;
	long left = st->nshards - st->counts[SHARD_DONE] - st->counts[SHARD_DEAD];
	if (running && st->shards_per_s > 0)
		st->eta_s = (double)left / st->shards_per_s;
}

static int status_load(struct store *db, const char *run, const char *db_path, struct status *st)
{
	memset(st, 0, sizeof *st);
	st->db_path = db_path;
	st->now_ms = now_ms();
	int got = store_run_get(db, run, &st->r);
	if (got == 0)
		mke_error("run '%s' vanished from '%s'", run, db_path);
	if (got != 1)
		return -1;
	touch(st, st->r.ended_ms > st->r.started_ms ? st->r.ended_ms : st->r.started_ms);
	touch(st, st->r.created_ms);
	if (store_params_each(db, run, on_param, st) != 0 ||
	    store_phases_each(db, run, on_phase, st) != 0 ||
	    store_shard_counts(db, run, st->counts) != 0 ||
	    store_shards_each(db, run, -1, on_shard, st) != 0 ||
	    store_events_each(db, run, 0, on_event, st) != 0 ||
	    store_metrics_latest(db, run, on_metric, st) != 0 ||
	    run_result_load(db, run, &st->res) != 0)
		return -1;
	for (int i = 0; i < SHARD_NSTATES; i++)
		st->nshards += st->counts[i];
	if (st->nm > 1)
		qsort(st->m, (size_t)st->nm, sizeof *st->m, by_variant);
	if (run_over(&st->r))
		st->nranks = 0;
	throughput(st);
	return 0;
}

static double phase_seconds(const struct status *st, int p)
{
	const struct store_phase *ph = &st->ph[p];
	if (!st->have_ph[p] || ph->started_ms <= 0)
		return -1;
	long long end = ph->ended_ms > 0 ? ph->ended_ms
					 : ph->status == PHASE_RUNNING && !run_over(&st->r) ? st->now_ms : 0;
	return end > 0 ? (double)(end - ph->started_ms) / 1000.0 : -1;
}

static double run_seconds(const struct status *st)
{
	if (st->r.started_ms <= 0)
		return -1;
	long long end = st->r.ended_ms > 0 ? st->r.ended_ms : run_over(&st->r) ? 0 : st->now_ms;
	return end > 0 ? (double)(end - st->r.started_ms) / 1000.0 : -1;
}

static int is_fraction_key(const char *key)
{
	return strstr(key, "accuracy") || strstr(key, "rectification");
}

/* ---- text -------------------------------------------------------------------------- */

static void print_kind(FILE *out, const struct kind_result *k, double teacher)
{
	char acc[48] = "-", rect[48] = "", gain[32] = "";
	if (k->n_acc > 1)
		snprintf(acc, sizeof acc, "%.2f ± %.2f%%", 100 * k->acc_mean, 100 * k->acc_std);
	else if (k->n_acc == 1)
		snprintf(acc, sizeof acc, "%.2f%%", 100 * k->acc_mean);
	if (k->n_rect > 1)
		snprintf(rect, sizeof rect, "%.2f ± %.2f%%", 100 * k->rect_mean, 100 * k->rect_std);
	else if (k->n_rect == 1)
		snprintf(rect, sizeof rect, "%.2f%%", 100 * k->rect_mean);
	if (k->n_acc > 0 && !isnan(teacher) && strcmp(k->kind, "teacher") != 0)
		snprintf(gain, sizeof gain, "%+.2f", 100 * (k->acc_mean - teacher));
	/* "±" is two bytes and one column: pad by hand */
	fprintf(out, "  %-18s %5d  %-*s %-*s %s\n", k->kind, k->n_acc > k->n_rect ? k->n_acc : k->n_rect,
		18 + (strstr(acc, "±") ? 1 : 0), acc, 18 + (strstr(rect, "±") ? 1 : 0), rect, gain);
}

static void print_text(FILE *out, const struct status *st)
{
	const struct store_run *r = &st->r;
	char t[64], d[32];
	fprintf(out, "run       %s (%s)\n", r->id, r->name ? r->name : "");
	fprintf(out, "status    %s, phase %s", run_status_name(r->status), run_phase_name(r->phase));
	if (r->status == RUN_RUNNING && st->now_ms - st->last_activity_ms > STALE_MS) {
		fmt_duration(d, sizeof d, (double)(st->now_ms - st->last_activity_ms) / 1000.0);
		fprintf(out, " (nothing recorded for %s: is the coordinator alive? see 'mke resume %s')", d,
			r->id);
	}
	fputc('\n', out);
	if (r->error)
		fprintf(out, "error     %s\n", r->error);
	fprintf(out, "host      %s\n", r->host ? r->host : "-");
	fprintf(out, "dir       %s\n", r->run_dir ? r->run_dir : "-");
	fprintf(out, "db        %s\n", st->db_path);
	if (r->slurm_job_id)
		fprintf(out, "slurm job %s\n", r->slurm_job_id);
	fmt_time(t, sizeof t, r->started_ms > 0 ? r->started_ms : r->created_ms);
	fmt_duration(d, sizeof d, run_seconds(st));
	fprintf(out, "%-9s %s, %s %s\n", r->started_ms > 0 ? "started" : "created", t,
		run_over(r) ? "took" : "elapsed", d);
	if (st->nparams) {
		fprintf(out, "params   ");
		for (int i = 0; i < st->nparams; i++)
			fprintf(out, " %s=%s", st->pkey[i], st->pval[i]);
		fputc('\n', out);
	}

	fprintf(out, "\n  %-9s %-10s %8s  %s\n", "phase", "status", "time", "detail");
	for (int p = PHASE_TEACHER; p < PHASE_DONE; p++) {
		if (!st->have_ph[p]) {
			fprintf(out, "  %-9s %-10s %8s\n", run_phase_name(p), "-", "");
			continue;
		}
		fmt_duration(d, sizeof d, phase_seconds(st, p));
		char detail[256] = "";
		if (st->ph_detail[p])
			snprintf(detail, sizeof detail, "%s", st->ph_detail[p]);
		else if (st->prog[p].total > 0)
			snprintf(detail, sizeof detail, "%lld of %lld", st->prog[p].done, st->prog[p].total);
		if (st->ph[p].attempts > 1) {
			size_t n = strlen(detail);
			snprintf(detail + n, sizeof detail - n, "%s(attempt %d)", n ? " " : "", st->ph[p].attempts);
		}
		fprintf(out, "  %-9s %-10s %8s  %s\n", run_phase_name(p), phase_status_name(st->ph[p].status), d,
			detail);
	}

	fprintf(out, "\nshards   ");
	for (int s = 0; s < SHARD_NSTATES; s++)
		fprintf(out, " %s %ld ", shard_state_name(s), st->counts[s]);
	fprintf(out, " total %ld", st->nshards);
	if (st->rows_total)
		fprintf(out, "  (%lld of %lld samples labeled)", st->rows_done, st->rows_total);
	fputc('\n', out);
	if (!run_over(r)) {
		fprintf(out, "ranks     %d live", st->nranks);
		for (int i = 0; i < st->nranks; i++)
			fprintf(out, "%s%d %s:%ld", i ? ", " : ": ", st->ranks[i].rank, st->ranks[i].host,
				st->ranks[i].pid);
		if (st->restarts)
			fprintf(out, " (job restarted %d times)", st->restarts);
		fputc('\n', out);
	}
	if (st->window) {
		fprintf(out, "rate      %.2f shards/s, %.1f samples/s (%s)", st->shards_per_s, st->samples_per_s,
			strcmp(st->window, "last_minute") == 0 ? "last minute" : "label phase");
		if (!isnan(st->eta_s)) {
			fmt_duration(d, sizeof d, st->eta_s);
			fprintf(out, "; label ETA %s", d);
		}
		fputc('\n', out);
	}

	const struct run_result *res = &st->res;
	double teacher = res->teacher.n_acc ? res->teacher.acc_mean : NAN;
	if (res->teacher.n_acc || res->nkinds) {
		char head[32];
		snprintf(head, sizeof head, "test %s", res->metric);
		fprintf(out, "\n  %-18s %5s  %-18s %-18s %s\n", "variant", "seeds", head,
			"rectification", "vs teacher");
		if (res->teacher.n_acc)
			print_kind(out, &res->teacher, teacher);
		for (int i = 0; i < res->nkinds; i++)
			print_kind(out, &res->kinds[i], teacher);
		if (!isnan(res->pseudo_label_accuracy))
			fprintf(out, "pseudo-label %s %.2f%%\n", res->metric,
				100 * res->pseudo_label_accuracy);
		const struct kind_result *best = run_result_best(res);
		if (best && !isnan(teacher)) {
			double gain = 100 * (best->acc_mean - teacher);
			const char *when = r->status == RUN_DONE ? "" : "so far, ";
			if (gain > 0)
				fprintf(out, "result    %s%s beats the teacher by %+.2f points (%.2f%% vs %.2f%%)\n",
					when, best->kind, gain, 100 * best->acc_mean, 100 * teacher);
			else
				fprintf(out, "result    %sno student beats the teacher (best: %s %.2f%% vs %.2f%%)\n",
					when, best->kind, 100 * best->acc_mean, 100 * teacher);
		}
	}

	if (st->nm) {
		int w = 8;
		for (int i = 0; i < st->nm; i++)
			if ((int)strlen(st->m[i].variant) > w)
				w = (int)strlen(st->m[i].variant);
		fprintf(out, "\nlatest metrics (value @ step)");
		for (int i = 0; i < st->nm; i++) {
			const struct metric_row *m = &st->m[i];
			if (i == 0 || strcmp(m->variant, st->m[i - 1].variant) != 0)
				fprintf(out, "\n  %-*s", w, *m->variant ? m->variant : "(run)");
			if (isnan(m->value))
				fprintf(out, "  %s nan @%lld", m->key, m->step);
			else if (is_fraction_key(m->key))
				fprintf(out, "  %s %.2f%% @%lld", m->key, 100 * m->value, m->step);
			else
				fprintf(out, "  %s %.4g @%lld", m->key, m->value, m->step);
		}
		fputc('\n', out);
	}
}

/* ---- JSON -------------------------------------------------------------------------- */

static void add_num(cJSON *o, const char *key, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

static void add_ms(cJSON *o, const char *key, long long ms)
{
	add_num(o, key, ms > 0 ? (double)ms : NAN);
}

static void add_str(cJSON *o, const char *key, const char *s)
{
	if (s)
		cJSON_AddStringToObject(o, key, s);
	else
		cJSON_AddNullToObject(o, key);
}

static cJSON *kind_json(const struct kind_result *k, double teacher)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "kind", k->kind);
	cJSON_AddNumberToObject(o, "seeds", k->n_acc);
	add_num(o, "test_accuracy_mean", k->acc_mean);
	add_num(o, "test_accuracy_std", k->acc_std);
	add_num(o, "rectification_mean", k->rect_mean);
	add_num(o, "rectification_std", k->rect_std);
	cJSON_AddNumberToObject(o, "rectification_seeds", k->n_rect);
	add_num(o, "gain_points", strcmp(k->kind, "teacher") != 0 ? 100 * (k->acc_mean - teacher) : NAN);
	return o;
}

static cJSON *status_json(const struct status *st)
{
	const struct store_run *r = &st->r;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", r->id);
	add_str(o, "name", r->name);
	cJSON_AddStringToObject(o, "status", run_status_name(r->status));
	cJSON_AddStringToObject(o, "phase", run_phase_name(r->phase));
	add_str(o, "error", r->error);
	add_str(o, "host", r->host);
	add_str(o, "run_dir", r->run_dir);
	cJSON_AddStringToObject(o, "db", st->db_path);
	add_str(o, "config_path", r->config_path);
	add_str(o, "git_rev", r->git_rev);
	add_str(o, "slurm_job_id", r->slurm_job_id);
	add_ms(o, "created_ms", r->created_ms);
	add_ms(o, "started_ms", r->started_ms);
	add_ms(o, "ended_ms", r->ended_ms);
	double secs = run_seconds(st);
	add_num(o, "elapsed_s", secs >= 0 ? secs : NAN);
	add_ms(o, "last_activity_ms", st->last_activity_ms);

	cJSON *params = cJSON_AddObjectToObject(o, "params");
	for (int i = 0; i < st->nparams; i++)
		cJSON_AddStringToObject(params, st->pkey[i], st->pval[i]);

	cJSON *phases = cJSON_AddArrayToObject(o, "phases");
	for (int p = PHASE_TEACHER; p < PHASE_DONE; p++) {
		cJSON *ph = cJSON_CreateObject();
		cJSON_AddStringToObject(ph, "phase", run_phase_name(p));
		if (st->have_ph[p]) {
			cJSON_AddStringToObject(ph, "status", phase_status_name(st->ph[p].status));
			add_ms(ph, "started_ms", st->ph[p].started_ms);
			add_ms(ph, "ended_ms", st->ph[p].ended_ms);
			double s = phase_seconds(st, p);
			add_num(ph, "seconds", s >= 0 ? s : NAN);
			cJSON_AddNumberToObject(ph, "attempts", st->ph[p].attempts);
			add_str(ph, "detail", st->ph_detail[p]);
		} else {
			cJSON_AddStringToObject(ph, "status", "pending");
		}
		if (st->prog[p].total > 0) {
			cJSON *pr = cJSON_AddObjectToObject(ph, "progress");
			cJSON_AddNumberToObject(pr, "done", (double)st->prog[p].done);
			cJSON_AddNumberToObject(pr, "total", (double)st->prog[p].total);
		}
		cJSON_AddItemToArray(phases, ph);
	}

	cJSON *sh = cJSON_AddObjectToObject(o, "shards");
	for (int s = 0; s < SHARD_NSTATES; s++)
		cJSON_AddNumberToObject(sh, shard_state_name(s), st->counts[s]);
	cJSON_AddNumberToObject(sh, "total", st->nshards);
	cJSON_AddNumberToObject(sh, "samples_total", (double)st->rows_total);
	cJSON_AddNumberToObject(sh, "samples_done", (double)st->rows_done);

	cJSON *ranks = cJSON_AddArrayToObject(o, "ranks");
	for (int i = 0; i < st->nranks; i++) {
		cJSON *k = cJSON_CreateObject();
		cJSON_AddNumberToObject(k, "rank", st->ranks[i].rank);
		cJSON_AddStringToObject(k, "host", st->ranks[i].host);
		cJSON_AddNumberToObject(k, "pid", st->ranks[i].pid);
		add_ms(k, "since_ms", st->ranks[i].since_ms);
		cJSON_AddItemToArray(ranks, k);
	}
	cJSON_AddNumberToObject(o, "job_restarts", st->restarts);

	cJSON *tp = cJSON_AddObjectToObject(o, "throughput");
	add_str(tp, "window", st->window);
	add_num(tp, "window_s", st->window_s);
	add_num(tp, "shards_per_s", st->shards_per_s);
	add_num(tp, "samples_per_s", st->samples_per_s);
	add_num(tp, "label_eta_s", st->eta_s);

	cJSON *ms = cJSON_AddArrayToObject(o, "metrics");
	for (int i = 0; i < st->nm; i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "variant", st->m[i].variant);
		cJSON_AddStringToObject(m, "key", st->m[i].key);
		cJSON_AddNumberToObject(m, "step", (double)st->m[i].step);
		add_num(m, "value", st->m[i].value);
		add_ms(m, "ts_ms", st->m[i].ts_ms);
		cJSON_AddItemToArray(ms, m);
	}

	const struct run_result *res = &st->res;
	double teacher = res->teacher.n_acc ? res->teacher.acc_mean : NAN;
	cJSON *vars = cJSON_AddArrayToObject(o, "variants");
	if (res->teacher.n_acc)
		cJSON_AddItemToArray(vars, kind_json(&res->teacher, teacher));
	for (int i = 0; i < res->nkinds; i++)
		cJSON_AddItemToArray(vars, kind_json(&res->kinds[i], teacher));
	add_num(o, "teacher_accuracy", teacher);
	add_num(o, "pseudo_label_accuracy", res->pseudo_label_accuracy);
	const struct kind_result *best = run_result_best(res);
	if (best) {
		cJSON *b = cJSON_AddObjectToObject(o, "best_student");
		cJSON_AddStringToObject(b, "kind", best->kind);
		add_num(b, "test_accuracy", best->acc_mean);
		add_num(b, "gain_points", 100 * (best->acc_mean - teacher));
		if (!isnan(teacher))
			cJSON_AddBoolToObject(b, "beats_teacher", best->acc_mean > teacher);
		else
			cJSON_AddNullToObject(b, "beats_teacher");
	} else {
		cJSON_AddNullToObject(o, "best_student");
	}
	return o;
}

/* ---- Prometheus text exposition (--prometheus) ----------------------------------------- */

/* A label value: backslash, double quote and newline escaped, per the format. */
static void prom_label(FILE *out, const char *name, const char *v)
{
	fprintf(out, "%s=\"", name);
	for (const char *p = v ? v : ""; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", out);
		else if (*p == '"')
			fputs("\\\"", out);
		else if (*p == '\n')
			fputs("\\n", out);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void prom_value(FILE *out, double v)
{
	if (isnan(v))
		fputs(" NaN\n", out);
	else if (isinf(v))
		fputs(v > 0 ? " +Inf\n" : " -Inf\n", out);
	else
		fprintf(out, " %.17g\n", v);
}

static void prom_family(FILE *out, const char *name, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* One metric per latest value of key: name{run,variant}. */
static void prom_metric(FILE *out, const struct status *st, const char *key, const char *name, const char *help)
{
	int first = 1;
	for (int i = 0; i < st->nm; i++) {
		if (strcmp(st->m[i].key, key) != 0)
			continue;
		if (first)
			prom_family(out, name, help);
		first = 0;
		fputs(name, out);
		prom_label(out, "{run", st->r.id);
		prom_label(out, ",variant", st->m[i].variant);
		fputc('}', out);
		prom_value(out, st->m[i].value);
	}
}

static void print_prometheus(FILE *out, const struct status *st)
{
	const struct store_run *r = &st->r;
	prom_family(out, "mke_run_info", "The run, its name, status and phase (always 1).");
	fputs("mke_run_info", out);
	prom_label(out, "{run", r->id);
	prom_label(out, ",name", r->name);
	prom_label(out, ",status", run_status_name(r->status));
	prom_label(out, ",phase", run_phase_name(r->phase));
	if (r->slurm_job_id)
		prom_label(out, ",slurm_job_id", r->slurm_job_id);
	fputs("} 1\n", out);
	prom_family(out, "mke_shards", "Shards of the run's unlabeled set by state.");
	for (int s = 0; s < SHARD_NSTATES; s++) {
		fputs("mke_shards", out);
		prom_label(out, "{run", r->id);
		prom_label(out, ",state", shard_state_name(s));
		fputc('}', out);
		prom_value(out, (double)st->counts[s]);
	}
	prom_family(out, "mke_samples_per_second", "Pseudo-labelling throughput (NaN before any shard is done).");
	fputs("mke_samples_per_second", out);
	prom_label(out, "{run", r->id);
	fputc('}', out);
	prom_value(out, st->samples_per_s);
	prom_metric(out, st, "train_loss", "mke_train_loss", "Latest training loss of each variant.");
	prom_metric(out, st, "test_accuracy", "mke_test_accuracy", "Latest test accuracy of each variant (fraction).");
}

/* ---- the command -------------------------------------------------------------------- */

int cmd_status(int argc, char **argv)
{
	const char *run = NULL, *db_opt = NULL;
	int json = 0, watch = 0, prometheus = 0;
	double every = 2.0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--db") == 0 && i + 1 < argc) {
			db_opt = argv[++i];
		} else if (strcmp(a, "--json") == 0) {
			json = 1;
		} else if (strcmp(a, "--prometheus") == 0) {
			prometheus = 1;
		} else if (strcmp(a, "--watch") == 0 || strcmp(a, "-w") == 0) {
			watch = 1;
			double s;
			if (i + 1 < argc && parse_double(argv[i + 1], &s) == 0) {
				if (!(s >= 0.1 && s <= 86400)) {
					fprintf(stderr, "error: --watch takes seconds from 0.1 to 86400, not '%s'\n",
						argv[i + 1]);
					return 2;
				}
				every = s;
				i++;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage("status", 1);
			return 2;
		} else if (!run) {
			run = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			cmd_usage("status", 1);
			return 2;
		}
	}
	if (json && prometheus) {
		fprintf(stderr, "error: --json and --prometheus are two output formats; pick one\n");
		return 2;
	}
	struct store *db;
	char *db_path;
	struct store_run r;
	if (run_open(run, db_opt, &db, &db_path, &r) != 0)
		return 1;
	char *id = xstrdup(r.id);
	store_run_release(&r);
	int tty = isatty(STDOUT_FILENO), rc = 0;
	for (int first = 1;; first = 0) {
		struct status st;
		if (status_load(db, id, db_path, &st) != 0) {
			status_release(&st);
			rc = 1;
			break;
		}
		if (prometheus) {
			print_prometheus(stdout, &st);
		} else if (json) {
			cJSON *o = status_json(&st);
			char *s = watch ? cJSON_PrintUnformatted(o) : cJSON_Print(o);
			puts(s);
			free(s);
			cJSON_Delete(o);
		} else {
			if (watch && tty)
				fputs("\033[H\033[2J", stdout);
			else if (!first)
				fputc('\n', stdout);
			print_text(stdout, &st);
		}
		fflush(stdout);
		int over = run_over(&st.r);
		status_release(&st);
		if (!watch || over)
			break;
		struct timespec ts = {.tv_sec = (time_t)every,
				      .tv_nsec = (long)((every - (double)(time_t)every) * 1e9)};
		nanosleep(&ts, NULL);
	}
	store_close(db);
	free(db_path);
	free(id);
	return rc;
}
