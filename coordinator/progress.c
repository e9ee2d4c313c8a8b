/*
 * progress.c - see progress.h.
 */
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "meter.h"
#include "store.h"
#include "util.h"

#define REDRAW_S 0.2     /* the live line: at most five redraws a second */
#define JSON_EVERY_S 1.0 /* json progress events: at most one a second */

void progress_init(struct progress *p, enum progress_mode mode)
{
	memset(p, 0, sizeof *p);
	p->mode = mode;
	p->tty = mode == PROGRESS_TEXT && isatty(STDERR_FILENO);
	p->interval = mode == PROGRESS_JSON ? JSON_EVERY_S : 10.0;
	const char *env = getenv("MKE_PROGRESS_INTERVAL");
	if (env && *env && mode != PROGRESS_JSON) {
		double v = atof(env);
		if (v > 0)
			p->interval = v;
	}
	p->done = p->total = p->epoch = p->epochs = -1;
	if (mode != PROGRESS_TEXT)
		mke_quiet = 1; /* info lines are text mode's */
}

/* The fraction of the phase done, in [0,1], or -1 when unknown. */
static double fraction(const struct progress *p)
{
	double ep = p->epoch >= 0 && p->epochs > 0 ? (double)p->epoch / (double)p->epochs : -1;
	if (ep > 1)
		ep = 1;
	if (p->phase && strcmp(p->phase, "student") == 0 && p->total > 0 && p->done >= 0) {
		double f = ((double)p->done + (ep > 0 && p->done < p->total ? ep : 0)) / (double)p->total;
		return f > 1 ? 1 : f;
	}
	if (p->total > 0 && p->done >= 0)
		return p->done >= p->total ? 1 : (double)p->done / (double)p->total;
	return ep;
}

/* Seconds left at the phase's average pace, or -1 when unknown. */
static double eta(const struct progress *p, double elapsed)
{
	double f = fraction(p);
	if (f <= 0 || elapsed < 0.5)
		return -1;
	return elapsed * (1 - f) / f;
}

/* "model 3/10 mm_student/81, epoch 1200/2000" and the like. */
static void describe(const struct progress *p, char *buf, size_t n)
{
	buf[0] = '\0';
	size_t k = 0;
	int student = p->phase && strcmp(p->phase, "student") == 0;
	if (p->total > 0 && p->done >= 0)
		k += (size_t)snprintf(buf + k, n - k, student ? "model %ld/%ld" : "%ld/%ld shards",
				      student && p->done < p->total ? p->done + 1 : p->done, p->total);
	if (k < n && p->item[0] && student)
		k += (size_t)snprintf(buf + k, n - k, " %s", p->item);
	if (k < n && p->epoch >= 0 && p->epochs > 0)
		snprintf(buf + k, n - k, "%sepoch %ld/%ld", k ? ", " : "", p->epoch, p->epochs);
}

void progress_clear(struct progress *p)
{
	if (p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->drawn = 0;
	}
}

void progress_event(struct progress *p, const char *name, cJSON *ev)
{
	if (p->mode == PROGRESS_JSON) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "event", name);
		cJSON_AddNumberToObject(o, "ts", floor(wall_seconds() * 1000.0));
		cJSON *run = cJSON_DetachItemFromObjectCaseSensitive(ev, "run");
		if (run)
			cJSON_AddItemToObject(o, "run", run);
		else if (p->run_id)
			cJSON_AddStringToObject(o, "run", p->run_id);
		for (cJSON *c = ev ? ev->child : NULL; c;) {
			cJSON *next = c->next;
			cJSON_AddItemToObject(o, c->string, cJSON_DetachItemViaPointer(ev, c));
			c = next;
		}
		char *s = cJSON_PrintUnformatted(o);
		if (s) {
			fputs(s, stdout);
			fputc('\n', stdout);
			fflush(stdout);
			free(s);
		}
		cJSON_Delete(o);
	}
	cJSON_Delete(ev);
}

void progress_phase(struct progress *p, const char *phase)
{
	p->phase = phase;
	p->phase_t0 = now_seconds();
	p->done = p->total = p->epoch = p->epochs = -1;
	p->item[0] = '\0';
	p->dirty = 0;
	p->last_out = p->phase_t0;
	progress_clear(p);
	if (p->mode == PROGRESS_JSON) {
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "phase", phase);
		progress_event(p, "phase", ev);
	} else {
		mke_info("run %s: phase %s", p->run_id, phase);
	}
}

void progress_tick(struct progress *p, int force)
{
	if (p->mode == PROGRESS_QUIET || !p->phase || !p->dirty)
		return;
	double now = now_seconds(), since = now - p->last_out;
	if (!force && since < (p->tty ? REDRAW_S : p->interval))
		return;
	double elapsed = now - p->phase_t0, f = fraction(p), left = eta(p, elapsed);
	char what[160], t_el[32], t_left[32];
	describe(p, what, sizeof what);
	fmt_duration(t_el, sizeof t_el, elapsed);
	fmt_duration(t_left, sizeof t_left, left);
	p->last_out = now;
	p->dirty = 0;
	if (p->mode == PROGRESS_JSON) {
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "phase", p->phase);
		if (f >= 0)
			cJSON_AddNumberToObject(ev, "fraction", floor(f * 1e4) / 1e4);
		if (p->total > 0) {
			cJSON_AddNumberToObject(ev, "done", (double)p->done);
			cJSON_AddNumberToObject(ev, "total", (double)p->total);
			cJSON_AddStringToObject(ev, "unit", strcmp(p->phase, "student") == 0 ? "models" : "shards");
		}
		if (p->item[0])
			cJSON_AddStringToObject(ev, "model", p->item);
		if (p->epoch >= 0 && p->epochs > 0) {
			cJSON_AddNumberToObject(ev, "epoch", (double)p->epoch);
			cJSON_AddNumberToObject(ev, "epochs", (double)p->epochs);
		}
		cJSON_AddNumberToObject(ev, "elapsed_s", floor(elapsed * 10) / 10);
		if (left >= 0)
			cJSON_AddNumberToObject(ev, "eta_s", ceil(left));
		progress_event(p, "progress", ev);
		return;
	}
	char rate[48] = "";
	if (p->phase && strcmp(p->phase, "label") == 0 && p->done > 0 && elapsed > 0)
		snprintf(rate, sizeof rate, "%.1f shards/s", (double)p->done / elapsed);
	if (p->tty) {
		/* teacher  [########............]  41%  epoch 412/1000  3.1s  ETA 4.4s */
		char bar[32];
		meter_bar(bar, sizeof bar, f, 20);
		int pct = f >= 0 ? (int)(f * 100) : -1;
		fprintf(stderr, "\r\033[K%-8s %s", p->phase, bar);
		if (pct >= 0)
			fprintf(stderr, " %3d%%", pct);
		fprintf(stderr, "  %s%s%s  %s", what, rate[0] ? "  " : "", rate, t_el);
		if (left >= 0)
			fprintf(stderr, "  ETA %s", t_left);
		fflush(stderr);
		p->drawn = 1;
	} else {
		/* run X: label 53% (9/17 shards, 2.1 shards/s), 4.3s, ETA 3.8s */
		char pct[16] = "";
		if (f >= 0)
			snprintf(pct, sizeof pct, " %d%%", (int)(f * 100));
		fprintf(stderr, "run %s: %s%s (%s%s%s), %s%s%s\n", p->run_id, p->phase, pct, what,
			rate[0] && what[0] ? ", " : "", rate, t_el, left >= 0 ? ", ETA " : "", left >= 0 ? t_left : "");
	}
}

/* ---- the summary ------------------------------------------------------------ */

static int add_phase(void *arg, const struct store_phase *ph)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "phase", run_phase_name(ph->phase));
	cJSON_AddStringToObject(o, "status", phase_status_name(ph->status));
	if (ph->started_ms && ph->ended_ms)
		cJSON_AddNumberToObject(o, "seconds", (double)(ph->ended_ms - ph->started_ms) / 1000.0);
	else
		cJSON_AddNullToObject(o, "seconds");
	cJSON_AddNumberToObject(o, "attempts", ph->attempts);
	if (ph->detail)
		cJSON_AddStringToObject(o, "detail", ph->detail);
	cJSON_AddItemToArray(arg, o);
	return 0;
}

static int add_metric(void *arg, const struct store_metric *m)
{
	const char *v = m->variant && *m->variant ? m->variant : "run";
	cJSON *byv = cJSON_GetObjectItemCaseSensitive(arg, v);
	if (!byv)
		byv = cJSON_AddObjectToObject(arg, v);
	if (isfinite(m->value))
		cJSON_AddNumberToObject(byv, m->key, m->value);
	else
		cJSON_AddNullToObject(byv, m->key);
	return 0;
}

static void add_num(cJSON *o, const char *key, double v)
{
	if (isfinite(v))
		cJSON_AddNumberToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

cJSON *run_summary(struct store *db, const char *run)
{
	struct store_run r;
	memset(&r, 0, sizeof r);
	if (store_run_get(db, run, &r) != 1) {
		store_run_release(&r);
		return NULL;
	}
	cJSON *s = cJSON_CreateObject();
	cJSON_AddStringToObject(s, "run", r.id);
	if (r.name)
		cJSON_AddStringToObject(s, "name", r.name);
	cJSON_AddStringToObject(s, "status", run_status_name(r.status));
	cJSON_AddStringToObject(s, "phase", run_phase_name(r.phase));
	if (r.error)
		cJSON_AddStringToObject(s, "error", r.error);
	else
		cJSON_AddNullToObject(s, "error");
	if (r.host)
		cJSON_AddStringToObject(s, "host", r.host);
	if (r.run_dir)
		cJSON_AddStringToObject(s, "dir", r.run_dir);
	if (r.slurm_job_id)
		cJSON_AddStringToObject(s, "slurm_job", r.slurm_job_id);
	else
		cJSON_AddNullToObject(s, "slurm_job");
	cJSON_AddNumberToObject(s, "started_ms", (double)r.started_ms);
	cJSON_AddNumberToObject(s, "ended_ms", (double)r.ended_ms);
	if (r.started_ms && r.ended_ms)
		cJSON_AddNumberToObject(s, "seconds", (double)(r.ended_ms - r.started_ms) / 1000.0);
	else
		cJSON_AddNullToObject(s, "seconds");
	store_phases_each(db, run, add_phase, cJSON_AddArrayToObject(s, "phases"));
	store_metrics_latest(db, run, add_metric, cJSON_AddObjectToObject(s, "metrics"));

	struct run_result res;
	if (run_result_load(db, run, &res) == 0) {
		cJSON *o = cJSON_AddObjectToObject(s, "result");
		add_num(o, "teacher_accuracy", res.teacher.acc_mean);
		add_num(o, "pseudo_label_accuracy", res.pseudo_label_accuracy);
		cJSON *vs = cJSON_AddArrayToObject(o, "variants");
		for (int i = 0; i < res.nkinds; i++) {
			const struct kind_result *k = &res.kinds[i];
			cJSON *v = cJSON_CreateObject();
			cJSON_AddStringToObject(v, "kind", k->kind);
			cJSON_AddNumberToObject(v, "seeds", k->n_acc);
			add_num(v, "accuracy_mean", k->acc_mean);
			add_num(v, "accuracy_std", k->acc_std);
			add_num(v, "rectification_mean", k->rect_mean);
			cJSON_AddItemToArray(vs, v);
		}
		const struct kind_result *best = run_result_best(&res);
		if (best) {
			cJSON *b = cJSON_AddObjectToObject(o, "best_student");
			cJSON_AddStringToObject(b, "kind", best->kind);
			add_num(b, "accuracy", best->acc_mean);
			add_num(b, "gain_points", 100 * (best->acc_mean - res.teacher.acc_mean));
		}
		run_result_release(&res);
	}
	store_run_release(&r);
	return s;
}

/* The string at key, or def. */
static const char *str_of(const cJSON *o, const char *key, const char *def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : def;
}

static double num_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

void run_summary_print(const cJSON *s, int header)
{
	char buf[32];
	if (header) {
		printf("run %s\n", str_of(s, "run", "-"));
		if (str_of(s, "dir", NULL))
			printf("  dir     %s\n", str_of(s, "dir", "-"));
	}
	const char *err = str_of(s, "error", NULL);
	fmt_duration(buf, sizeof buf, num_of(s, "seconds"));
	printf("  status  %s in %s%s%s", str_of(s, "status", "-"), buf, err ? " (" : "", err ? err : "");
	printf("%s:", err ? ")" : "");
	const cJSON *ph;
	int first = 1;
	cJSON_ArrayForEach(ph, cJSON_GetObjectItemCaseSensitive(s, "phases"))
	{
		fmt_duration(buf, sizeof buf, num_of(ph, "seconds"));
		printf("%s %s %s", first ? "" : ",", str_of(ph, "phase", "-"), buf);
		const char *st = str_of(ph, "status", NULL);
		if (st && strcmp(st, "done") != 0)
			printf(" (%s)", st);
		first = 0;
	}
	printf("\n");
	const cJSON *res = cJSON_GetObjectItemCaseSensitive(s, "result");
	const cJSON *best = cJSON_GetObjectItemCaseSensitive(res, "best_student");
	double t = num_of(res, "teacher_accuracy");
	if (best && isfinite(num_of(best, "accuracy")) && isfinite(t))
		printf("  result  %s %.2f%% vs teacher %.2f%% (%+.2f points)\n", str_of(best, "kind", "-"),
		       100 * num_of(best, "accuracy"), 100 * t, num_of(best, "gain_points"));
	else if (isfinite(t))
		printf("  result  teacher %.2f%%\n", 100 * t);
	fflush(stdout);
}
