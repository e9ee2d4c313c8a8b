/*
 * cmd_report.c - `mke report RUN -o report.html`: one self-contained HTML page.
 *
 * Design. The page is for mailing around or attaching to a ticket, so it
 * holds everything itself: inline CSS, no script, no fonts or images from
 * elsewhere, and every chart is inline SVG drawn here from numbers in the
 * run's database (opened read-only through run_open, like `mke status`).
 * The variants table uses run_result_load() from cmd_status.c, so the page
 * and `mke status` can never disagree about a mean, a std or a gain.
 *
 * Sections: the run header (id, name, status, phase, host, times, error),
 * the phases, the variants table in the paper's order (teacher, UM, NOISY,
 * MM no-reg, MM, MM sup) with test accuracy mean ± std over seeds, gain over
 * the teacher and rectification, learning curves (train_loss against step,
 * one line per variant kind, the mean over its seeds), a per-class view when
 * the metrics hold one (keys with "class" or "confusion" in them; the
 * pipeline records none today, and the page says so and shows pseudo-label
 * accuracy and rectification bars instead), and the shards' lease-to-done
 * strips coloured by attempts.
 *
 * Every string that comes from the database is HTML-escaped (esc()); numbers
 * are printed with printf in the C locale. The page is built in memory and
 * written with write_file_atomic (mode 0640), so a reader never sees half.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "store.h"
#include "util.h"

/* ---- a growing buffer ------------------------------------------------------------- */

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t len)
{
	if (b->n + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (b->n + len + 1 > cap)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, len);
	b->n += len;
	b->p[b->n] = '\0';
}

static void puts_b(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void MKE_PRINTF(2, 3) pf(struct buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		put(b, small, (size_t)n);
		return;
	}
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	put(b, big, (size_t)n);
	free(big);
}

/* HTML-escape s (NULL prints as "-"): text and attribute values alike. */
static void esc(struct buf *b, const char *s)
{
	if (!s) {
		puts_b(b, "-");
		return;
	}
	for (; *s; s++) {
		switch (*s) {
		case '&': puts_b(b, "&amp;"); break;
		case '<': puts_b(b, "&lt;"); break;
		case '>': puts_b(b, "&gt;"); break;
		case '"': puts_b(b, "&quot;"); break;
		case '\'': puts_b(b, "&#39;"); break;
		default: put(b, s, 1);
		}
	}
}

/* ---- what the page shows, loaded from the database ------------------------------- */

/* One learning curve: the mean over seeds of train_loss at each step. */
struct curve {
	char *kind;
	long long *step;
	double *sum;
	int *cnt;
	int n;
};

struct shard_row {
	long long id, rows, leased_ms, done_ms;
	int attempts, state;
};

struct class_metric {
	char *variant, *key;
	long long step;
	double value;
};

struct report {
	struct store_run r;
	const char *db_path;
	struct store_phase ph[PHASE_N];
	int have_ph[PHASE_N];
	struct run_result res;
	struct curve *cv;
	int ncv;
	struct shard_row *sh;
	int nsh;
	struct class_metric *cm;
	int ncm;
};

/* "mm_student/81" -> index of the curve of kind "mm_student" (created). */
static struct curve *curve_for(struct report *rp, const char *variant)
{
	size_t len = strcspn(variant, "/");
	for (int i = 0; i < rp->ncv; i++)
		if (strlen(rp->cv[i].kind) == len && strncmp(rp->cv[i].kind, variant, len) == 0)
			return &rp->cv[i];
	rp->cv = xrealloc(rp->cv, sizeof *rp->cv * (size_t)(rp->ncv + 1));
	struct curve *c = &rp->cv[rp->ncv++];
	memset(c, 0, sizeof *c);
	c->kind = xmalloc(len + 1);
	memcpy(c->kind, variant, len);
	c->kind[len] = '\0';
	return c;
}

static int on_loss(void *arg, const struct store_metric *m)
{
	struct report *rp = arg;
	if (!m->variant || !*m->variant || !isfinite(m->value))
		return 0;
	struct curve *c = curve_for(rp, m->variant);
	/* binary search for the step; insert in order when new */
	int lo = 0, hi = c->n;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (c->step[mid] < m->step)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == c->n || c->step[lo] != m->step) {
		c->step = xrealloc(c->step, sizeof *c->step * (size_t)(c->n + 1));
		c->sum = xrealloc(c->sum, sizeof *c->sum * (size_t)(c->n + 1));
		c->cnt = xrealloc(c->cnt, sizeof *c->cnt * (size_t)(c->n + 1));
		size_t tail = (size_t)(c->n - lo);
		memmove(c->step + lo + 1, c->step + lo, tail * sizeof *c->step);
		memmove(c->sum + lo + 1, c->sum + lo, tail * sizeof *c->sum);
		memmove(c->cnt + lo + 1, c->cnt + lo, tail * sizeof *c->cnt);
		c->step[lo] = m->step;
		c->sum[lo] = 0;
		c->cnt[lo] = 0;
		c->n++;
	}
	c->sum[lo] += m->value;
	c->cnt[lo]++;
	return 0;
}

static int curve_rank(const char *kind)
{
	int v = variant_from_name(kind);
	return v < 0 ? 1000 : v;
}

static int by_curve(const void *a, const void *b)
{
	const struct curve *x = a, *y = b;
	int rx = curve_rank(x->kind), ry = curve_rank(y->kind);
	return rx != ry ? (rx < ry ? -1 : 1) : strcmp(x->kind, y->kind);
}

static int on_shard(void *arg, const struct store_shard *s)
{
	struct report *rp = arg;
	rp->sh = xrealloc(rp->sh, sizeof *rp->sh * (size_t)(rp->nsh + 1));
	struct shard_row *r = &rp->sh[rp->nsh++];
	r->id = s->shard_id;
	r->rows = s->row_count;
	r->leased_ms = s->leased_ms;
	r->done_ms = s->done_ms;
	r->attempts = s->attempts;
	r->state = (int)s->state;
	return 0;
}

static int on_phase(void *arg, const struct store_phase *p)
{
	struct report *rp = arg;
	if ((int)p->phase < 0 || p->phase >= PHASE_N)
		return 0;
	rp->ph[p->phase] = *p;
	rp->ph[p->phase].detail = NULL;
	rp->have_ph[p->phase] = 1;
	return 0;
}

/* Per-class metrics, if any run ever records them. */
static int on_latest(void *arg, const struct store_metric *m)
{
	struct report *rp = arg;
	if (!strstr(m->key, "class") && !strstr(m->key, "confusion"))
		return 0;
	rp->cm = xrealloc(rp->cm, sizeof *rp->cm * (size_t)(rp->ncm + 1));
	struct class_metric *c = &rp->cm[rp->ncm++];
	c->variant = xstrdup(m->variant ? m->variant : "");
	c->key = xstrdup(m->key);
	c->step = m->step;
	c->value = m->value;
	return 0;
}

static void report_release(struct report *rp)
{
	store_run_release(&rp->r);
	run_result_release(&rp->res);
	for (int i = 0; i < rp->ncv; i++) {
		free(rp->cv[i].kind);
		free(rp->cv[i].step);
		free(rp->cv[i].sum);
		free(rp->cv[i].cnt);
	}
	free(rp->cv);
	free(rp->sh);
	for (int i = 0; i < rp->ncm; i++) {
		free(rp->cm[i].variant);
		free(rp->cm[i].key);
	}
	free(rp->cm);
}

static int report_load(struct store *db, const char *run, struct report *rp)
{
	if (store_phases_each(db, run, on_phase, rp) != 0 || run_result_load(db, run, &rp->res) != 0 ||
	    store_metrics_each(db, run, NULL, "train_loss", on_loss, rp) != 0 ||
	    store_shards_each(db, run, -1, on_shard, rp) != 0 ||
	    store_metrics_latest(db, run, on_latest, rp) != 0)
		return -1;
	if (rp->ncv > 1)
		qsort(rp->cv, (size_t)rp->ncv, sizeof *rp->cv, by_curve);
	return 0;
}

/* ---- formatting helpers ----------------------------------------------------------- */

/* A colour per variant kind, in the paper's order; unknown kinds cycle. */
static const char *kind_colour(const char *kind, int i)
{
	static const char *const by_kind[VAR_COUNT] = {
		"#444444", "#1f77b4", "#ff7f0e", "#9467bd", "#2ca02c", "#d62728",
	};
	static const char *const extra[] = {"#8c564b", "#e377c2", "#17becf", "#bcbd22"};
	int v = variant_from_name(kind);
	if (v >= 0 && v < VAR_COUNT)
		return by_kind[v];
	return extra[i % 4];
}

/* The paper's names for the table's first column. */
static const char *kind_label(const char *kind)
{
	static const char *const labels[VAR_COUNT] = {
		"teacher", "UM student", "NOISY student", "MM student no-reg", "MM student", "MM student sup",
	};
	int v = variant_from_name(kind);
	return v >= 0 && v < VAR_COUNT ? labels[v] : kind;
}

static void pct_cell(struct buf *b, int n, double mean, double std)
{
	if (n > 1 && isfinite(std))
		pf(b, "<td class=num>%.2f ± %.2f</td>", 100 * mean, 100 * std);
	else if (n >= 1)
		pf(b, "<td class=num>%.2f</td>", 100 * mean);
	else
		puts_b(b, "<td class=num>–</td>");
}

/* A "nice" tick step for a range: 1, 2 or 5 times a power of ten. */
static double nice_step(double range, int want)
{
	if (!(range > 0))
		return 1;
	double raw = range / want, p = pow(10, floor(log10(raw))), f = raw / p;
	return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(char *s, size_t n, double v, double step)
{
	int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	if (dec > 6)
		dec = 6;
	snprintf(s, n, "%.*f", dec, fabs(v) < step * 1e-6 ? 0.0 : v);
}

/* ---- sections ------------------------------------------------------------------- */

static void section_header(struct buf *b, const struct report *rp)
{
	const struct store_run *r = &rp->r;
	char t[64];
	puts_b(b, "<h1>MKE run ");
	esc(b, r->id);
	puts_b(b, "</h1>\n<table class=kv>\n");
	puts_b(b, "<tr><th>name</th><td>");
	esc(b, r->name);
	pf(b, "</td></tr>\n<tr><th>status</th><td class=\"st-%s\">%s</td></tr>\n",
	   run_status_name(r->status), run_status_name(r->status));
	pf(b, "<tr><th>phase</th><td>%s</td></tr>\n", run_phase_name(r->phase));
	if (r->error) {
		puts_b(b, "<tr><th>error</th><td class=err>");
		esc(b, r->error);
		puts_b(b, "</td></tr>\n");
	}
	puts_b(b, "<tr><th>host</th><td>");
	esc(b, r->host);
	puts_b(b, "</td></tr>\n<tr><th>git revision</th><td>");
	esc(b, r->git_rev);
	puts_b(b, "</td></tr>\n<tr><th>run directory</th><td>");
	esc(b, r->run_dir);
	puts_b(b, "</td></tr>\n<tr><th>database</th><td>");
	esc(b, rp->db_path);
	puts_b(b, "</td></tr>\n");
	if (r->slurm_job_id) {
		puts_b(b, "<tr><th>Slurm job</th><td>");
		esc(b, r->slurm_job_id);
		puts_b(b, "</td></tr>\n");
	}
	fmt_time(t, sizeof t, r->created_ms);
	puts_b(b, "<tr><th>created</th><td>");
	esc(b, t);
	fmt_time(t, sizeof t, r->started_ms);
	puts_b(b, "</td></tr>\n<tr><th>started</th><td>");
	esc(b, t);
	fmt_time(t, sizeof t, r->ended_ms);
	puts_b(b, "</td></tr>\n<tr><th>ended</th><td>");
	esc(b, t);
	puts_b(b, "</td></tr>\n");
	if (r->started_ms > 0 && r->ended_ms >= r->started_ms) {
		fmt_duration(t, sizeof t, (double)(r->ended_ms - r->started_ms) / 1000.0);
		puts_b(b, "<tr><th>took</th><td>");
		esc(b, t);
		puts_b(b, "</td></tr>\n");
	}
	puts_b(b, "</table>\n");

	puts_b(b, "<h2>Phases</h2>\n<table class=grid>\n"
		  "<tr><th>phase</th><th>status</th><th>started</th><th>took</th><th>attempts</th></tr>\n");
	for (int p = PHASE_TEACHER; p < PHASE_DONE; p++) {
		pf(b, "<tr><td>%s</td>", run_phase_name(p));
		if (!rp->have_ph[p]) {
			puts_b(b, "<td>pending</td><td></td><td></td><td></td></tr>\n");
			continue;
		}
		const struct store_phase *ph = &rp->ph[p];
		char d[32];
		fmt_time(t, sizeof t, ph->started_ms);
		fmt_duration(d, sizeof d,
			     ph->ended_ms > 0 && ph->started_ms > 0 ? (double)(ph->ended_ms - ph->started_ms) / 1000.0
								    : -1);
		pf(b, "<td>%s</td><td>", phase_status_name(ph->status));
		esc(b, t);
		puts_b(b, "</td><td class=num>");
		esc(b, d);
		pf(b, "</td><td class=num>%d</td></tr>\n", ph->attempts);
	}
	puts_b(b, "</table>\n");
}

static void variant_row(struct buf *b, const struct kind_result *k, double teacher, double pla)
{
	int is_teacher = strcmp(k->kind, "teacher") == 0;
	puts_b(b, "<tr><td>");
	esc(b, kind_label(k->kind));
	puts_b(b, " <span class=kind>");
	esc(b, k->kind);
	pf(b, "</span></td><td class=num>%d</td>", k->n_acc);
	pct_cell(b, k->n_acc, k->acc_mean, k->acc_std);
	if (!is_teacher && k->n_acc > 0 && isfinite(teacher)) {
		double g = 100 * (k->acc_mean - teacher);
		pf(b, "<td class=\"num %s\">%+.2f</td>", g > 0 ? "up" : g < 0 ? "down" : "", g);
	} else {
		puts_b(b, "<td class=num>–</td>");
	}
	if (is_teacher && isfinite(pla))
		pf(b, "<td class=num>%.2f</td>", 100 * pla);
	else
		puts_b(b, "<td class=num>–</td>");
	pct_cell(b, k->n_rect, k->rect_mean, k->rect_std);
	puts_b(b, "</tr>\n");
}

static void section_variants(struct buf *b, const struct report *rp)
{
	const struct run_result *res = &rp->res;
	double teacher = res->teacher.n_acc ? res->teacher.acc_mean : NAN;
	puts_b(b, "<h2>Variants</h2>\n");
	if (!res->teacher.n_acc && !res->nkinds) {
		puts_b(b, "<p class=note>No test accuracy recorded yet.</p>\n");
		return;
	}
	puts_b(b, "<table class=grid id=variants>\n<tr><th>variant</th><th>seeds</th>"
		  "<th>test accuracy %<br>(mean ± std)</th><th>gain over teacher<br>(points)</th>"
		  "<th>pseudo-label<br>accuracy %</th><th>rectification %<br>(mean ± std)</th></tr>\n");
	variant_row(b, &res->teacher, teacher, res->pseudo_label_accuracy);
	for (int i = 0; i < res->nkinds; i++)
		variant_row(b, &res->kinds[i], teacher, NAN);
	puts_b(b, "</table>\n");
	const struct kind_result *best = run_result_best(res);
	if (best && isfinite(teacher)) {
		double g = 100 * (best->acc_mean - teacher);
		puts_b(b, "<p class=result>");
		if (g > 0)
			puts_b(b, "Best pseudo-label student: <b>");
		else
			puts_b(b, "No student beats the teacher; best: <b>");
		esc(b, kind_label(best->kind));
		pf(b, "</b>, %.2f%% against the teacher's %.2f%% (%+.2f points).</p>\n", 100 * best->acc_mean,
		   100 * teacher, g);
	}
	puts_b(b, "<p class=note>Test accuracy is the latest value of each seed, mean and sample std "
		  "over the seeds (the same numbers as <code>mke status</code>). Rectification: of the "
		  "pseudo-labels the teacher got wrong, the share the student gets right.</p>\n");
}

/* A line chart of train_loss against step. */
static void section_curves(struct buf *b, const struct report *rp)
{
	puts_b(b, "<h2>Learning curves</h2>\n");
	long long smax = 0;
	double ymax = 0;
	int npts = 0;
	for (int i = 0; i < rp->ncv; i++)
		for (int j = 0; j < rp->cv[i].n; j++) {
			const struct curve *c = &rp->cv[i];
			double v = c->sum[j] / c->cnt[j];
			if (c->step[j] > smax)
				smax = c->step[j];
			if (v > ymax)
				ymax = v;
			npts++;
		}
	if (npts == 0) {
		puts_b(b, "<p class=note>No train_loss recorded yet.</p>\n");
		return;
	}
	const double W = 860, H = 420, L = 64, R = 190, T = 20, B = 50;
	double pw = W - L - R, ph = H - T - B;
	double xs = nice_step((double)smax, 8), ys = nice_step(ymax, 6);
	double xmax = ceil((double)smax / xs) * xs, ytop = ceil(ymax / ys) * ys;
	if (!(xmax > 0))
		xmax = 1;
	if (!(ytop > 0))
		ytop = 1;
	pf(b, "<svg class=chart id=curves xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	      "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"train loss against step\">\n",
	   W, H, W, H);
	pf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" stroke=\"#999\"/>\n", L, T,
	   pw, ph);
	char s[32];
	for (double x = 0; x <= xmax + xs * 1e-6; x += xs) {
		double px = L + x / xmax * pw;
		fmt_tick(s, sizeof s, x, xs);
		pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
		   px, T, px, T + ph, px, T + ph, px, T + ph + 5, px, T + ph + 18, s);
	}
	for (double y = 0; y <= ytop + ys * 1e-6; y += ys) {
		double py = T + ph - y / ytop * ph;
		fmt_tick(s, sizeof s, y, ys);
		pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
		   L, py, L + pw, py, L - 5, py, L, py, L - 8, py + 4, s);
	}
	pf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", L + pw / 2, H - 8);
	pf(b, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">"
	      "train loss (mean over seeds)</text>\n",
	   T + ph / 2, T + ph / 2);
	for (int i = 0; i < rp->ncv; i++) {
		const struct curve *c = &rp->cv[i];
		const char *col = kind_colour(c->kind, i);
		pf(b, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" d=\"", col);
		for (int j = 0; j < c->n; j++) {
			double v = c->sum[j] / c->cnt[j];
			pf(b, "%s%.1f %.1f", j ? " L" : "M", L + (double)c->step[j] / xmax * pw,
			   T + ph - v / ytop * ph);
		}
		puts_b(b, "\"><title>");
		esc(b, c->kind);
		puts_b(b, "</title></path>\n");
		double ly = T + 14 + 20 * i, lx = L + pw + 14;
		pf(b, "<path d=\"M%.1f %.1f h24\" stroke=\"%s\" stroke-width=\"3\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\">",
		   lx, ly, col, lx + 30, ly + 4);
		esc(b, kind_label(c->kind));
		puts_b(b, "</text>\n");
	}
	puts_b(b, "</svg>\n");
}

/* Per-class metrics when recorded; else pseudo-label accuracy and rectification bars. */
static void section_classes(struct buf *b, const struct report *rp)
{
	puts_b(b, "<h2>Per-class accuracy</h2>\n");
	if (rp->ncm > 0) {
		puts_b(b, "<table class=grid id=classes>\n<tr><th>variant</th><th>metric</th><th>step</th>"
			  "<th>value</th></tr>\n");
		for (int i = 0; i < rp->ncm; i++) {
			puts_b(b, "<tr><td>");
			esc(b, rp->cm[i].variant);
			puts_b(b, "</td><td>");
			esc(b, rp->cm[i].key);
			pf(b, "</td><td class=num>%lld</td><td class=num>%.4g</td></tr>\n", rp->cm[i].step,
			   rp->cm[i].value);
		}
		puts_b(b, "</table>\n");
		return;
	}
	puts_b(b, "<p class=note>This run's metrics hold no per-class accuracy or confusion matrix "
		  "(the pipeline records test accuracy, train loss, pseudo-label accuracy and "
		  "rectification), so this shows the pseudo-label accuracy and each student's "
		  "rectification (mean over seeds, the whisker one std) instead.</p>\n");
	const struct run_result *res = &rp->res;
	int nbars = (isfinite(res->pseudo_label_accuracy) ? 1 : 0);
	for (int i = 0; i < res->nkinds; i++)
		if (res->kinds[i].n_rect > 0)
			nbars++;
	if (nbars == 0) {
		puts_b(b, "<p class=note>Neither is recorded yet.</p>\n");
		return;
	}
	const double W = 860, L = 190, R = 70, T = 10, BH = 22, GAP = 8, B = 40;
	double pw = W - L - R, H = T + nbars * (BH + GAP) + B;
	pf(b, "<svg class=chart id=bars xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	      "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"pseudo-label accuracy and rectification\">\n",
	   W, H, W, H);
	double axis_y = T + nbars * (BH + GAP);
	for (int t = 0; t <= 100; t += 20) {
		double x = L + t / 100.0 * pw;
		pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d%%</text>\n",
		   x, T, x, axis_y, x, axis_y + 16, t);
	}
	pf(b, "<path d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" stroke=\"#333\"/>\n", L, T, axis_y, L + pw);
	int row = 0;
	for (int i = -1; i < res->nkinds; i++) {
		const char *label, *col;
		double mean, std = NAN;
		if (i < 0) {
			if (!isfinite(res->pseudo_label_accuracy))
				continue;
			label = "pseudo-label accuracy";
			col = "#444444";
			mean = res->pseudo_label_accuracy;
		} else {
			const struct kind_result *k = &res->kinds[i];
			if (k->n_rect == 0)
				continue;
			label = kind_label(k->kind);
			col = kind_colour(k->kind, i);
			mean = k->rect_mean;
			std = k->n_rect > 1 ? k->rect_std : NAN;
		}
		double y = T + row * (BH + GAP) + GAP / 2, w = fmax(0, fmin(1, mean)) * pw;
		pf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", L - 8, y + BH / 2 + 4);
		esc(b, label);
		if (i >= 0)
			puts_b(b, " rect.");
		pf(b, "</text><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>", L, y, w, BH,
		   col);
		if (isfinite(std) && std > 0) {
			double x0 = L + fmax(0, mean - std) * pw, x1 = L + fmin(1, mean + std) * pw;
			pf(b, "<path d=\"M%.1f %.1f H%.1f M%.1f %.1f v%.1f M%.1f %.1f v%.1f\" stroke=\"#000\"/>", x0,
			   y + BH / 2, x1, x0, y + 5, BH - 10, x1, y + 5, BH - 10);
		}
		pf(b, "<text x=\"%.1f\" y=\"%.1f\">%.1f%%</text>\n", L + fmin(1, mean + (isfinite(std) ? std : 0)) * pw + 6,
		   y + BH / 2 + 4, 100 * mean);
		row++;
	}
	puts_b(b, "</svg>\n");
}

static int by_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Shard strips: one per shard, from its (last) lease to done. */
static void section_shards(struct buf *b, const struct report *rp)
{
	puts_b(b, "<h2>Shards</h2>\n");
	if (rp->nsh == 0) {
		puts_b(b, "<p class=note>No shards recorded (the run has not reached the shard phase).</p>\n");
		return;
	}
	long counts[SHARD_NSTATES] = {0};
	long long t0 = 0, t1 = 0, rows = 0;
	int retried = 0, ntimed = 0;
	double *dur = xmalloc(sizeof *dur * (size_t)rp->nsh);
	for (int i = 0; i < rp->nsh; i++) {
		const struct shard_row *s = &rp->sh[i];
		if (s->state >= 0 && s->state < SHARD_NSTATES)
			counts[s->state]++;
		rows += s->rows;
		if (s->attempts > 1)
			retried++;
		if (s->leased_ms > 0 && (t0 == 0 || s->leased_ms < t0))
			t0 = s->leased_ms;
		long long end = s->done_ms > 0 ? s->done_ms : s->leased_ms;
		if (end > t1)
			t1 = end;
		if (s->leased_ms > 0 && s->done_ms >= s->leased_ms)
			dur[ntimed++] = (double)(s->done_ms - s->leased_ms);
	}
	puts_b(b, "<p>");
	for (int s = 0; s < SHARD_NSTATES; s++)
		pf(b, "%s%s %ld", s ? ", " : "", shard_state_name(s), counts[s]);
	pf(b, "; %d shards, %lld samples; %d retried (more than one attempt).", rp->nsh, rows, retried);
	if (ntimed > 0) {
		qsort(dur, (size_t)ntimed, sizeof *dur, by_double);
		pf(b, " Lease to done: min %.0f ms, median %.0f ms, max %.0f ms.", dur[0], dur[ntimed / 2],
		   dur[ntimed - 1]);
	}
	puts_b(b, "</p>\n");
	free(dur);
	if (t0 == 0 || t1 <= t0) {
		if (t0 == 0)
			puts_b(b, "<p class=note>No shard has been leased yet.</p>\n");
		else
			t1 = t0 + 1;
		if (t0 == 0)
			return;
	}
	double span = (double)(t1 - t0);
	double bh = 600.0 / rp->nsh;
	if (bh > 14)
		bh = 14;
	if (bh < 1)
		bh = 1;
	const double W = 860, L = 64, R = 150, T = 10, B = 44;
	double pw = W - L - R, ph = bh * rp->nsh, H = T + ph + B;
	pf(b, "<svg class=chart id=shards xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	      "viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"shard lease to done times\">\n",
	   W, H, W, H);
	double xs = nice_step(span, 8);
	char s[32];
	for (double x = 0; x <= span + xs * 1e-6; x += xs) {
		double px = L + x / span * pw;
		fmt_tick(s, sizeof s, x / 1000.0, xs / 1000.0);
		pf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
		   px, T, px, T + ph + 4, px, T + ph + 18, s);
	}
	pf(b, "<path d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" stroke=\"#333\"/>\n", L, T, T + ph, L + pw);
	pf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">seconds since the first lease</text>\n",
	   L + pw / 2, H - 6);
	pf(b, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">shard</text>\n",
	   T + ph / 2, T + ph / 2);
	for (int i = 0; i < rp->nsh; i++) {
		const struct shard_row *sh = &rp->sh[i];
		if (sh->leased_ms <= 0)
			continue;
		long long end = sh->done_ms > 0 ? sh->done_ms : t1;
		double x0 = L + (double)(sh->leased_ms - t0) / span * pw, x1 = L + (double)(end - t0) / span * pw;
		if (x1 - x0 < 2)
			x1 = x0 + 2;
		const char *col = sh->state == SHARD_DEAD ? "#d62728" : sh->done_ms <= 0 ? "#bbbbbb"
								: sh->attempts > 1 ? "#ff7f0e" : "#1f77b4";
		pf(b, "<path d=\"M%.1f %.1f H%.1f V%.1f H%.1f Z\" fill=\"%s\"><title>shard %lld: %s, %d attempt%s, "
		      "%lld ms</title></path>\n",
		   x0, T + i * bh, x1, T + (i + 1) * bh - (bh > 3 ? 1 : 0), x0, col, sh->id, shard_state_name(sh->state),
		   sh->attempts, sh->attempts == 1 ? "" : "s", sh->done_ms > 0 ? sh->done_ms - sh->leased_ms : -1);
	}
	if (rp->nsh <= 40)
		for (int i = 0; i < rp->nsh; i += rp->nsh > 20 ? 5 : 1)
			pf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\">%lld</text>\n", L - 4,
			   T + i * bh + bh - 3, rp->sh[i].id);
	static const char *const leg[][2] = {
		{"#1f77b4", "done, 1 attempt"}, {"#ff7f0e", "done, retried"},
		{"#bbbbbb", "leased, not done"}, {"#d62728", "dead"},
	};
	for (int i = 0; i < 4; i++)
		pf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"10\" fill=\"%s\"/>"
		      "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
		   L + pw + 12, T + 4 + 18 * i, leg[i][0], L + pw + 32, T + 13 + 18 * i, leg[i][1]);
	puts_b(b, "</svg>\n");
}

static const char css[] =
	"body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:24px auto;"
	"max-width:900px;padding:0 16px;background:#fafafa}"
	"h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}"
	"table{border-collapse:collapse;background:#fff}"
	"table.kv th{text-align:left;padding:2px 14px 2px 0;color:#555;font-weight:600}"
	"table.kv td{padding:2px 0}"
	"table.grid th,table.grid td{border:1px solid #ccc;padding:4px 8px}"
	"table.grid th{background:#f0f0f0;font-weight:600}"
	"td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
	".up{color:#1a7f37}.down{color:#b42318}.err{color:#b42318}.kind{color:#888;font-size:12px}"
	".st-done{color:#1a7f37;font-weight:600}.st-failed,.st-cancelled{color:#b42318;font-weight:600}"
	".note{color:#555;font-size:13px}.result{font-size:15px}"
	"svg.chart{background:#fff;border:1px solid #ddd;font:12px sans-serif;max-width:100%;height:auto}"
	"footer{margin-top:32px;color:#888;font-size:12px}";

static void build_page(struct buf *b, const struct report *rp)
{
	puts_b(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>MKE run ");
	esc(b, rp->r.id);
	puts_b(b, "</title>\n<style>");
	puts_b(b, css);
	puts_b(b, "</style>\n</head>\n<body>\n");
	section_header(b, rp);
	section_variants(b, rp);
	section_curves(b, rp);
	section_classes(b, rp);
	section_shards(b, rp);
	char t[64];
	fmt_time(t, sizeof t, (long long)(wall_seconds() * 1000.0));
	puts_b(b, "<footer>Written by <code>mke report</code> on ");
	esc(b, t);
	puts_b(b, " from the run's database; self-contained (no scripts, no external resources).</footer>\n"
		  "</body>\n</html>\n");
}

/* ---- the command ---------------------------------------------------------------- */

int cmd_report(int argc, char **argv)
{
	const char *run = NULL, *db_opt = NULL, *outpath = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--db") == 0 && i + 1 < argc) {
			db_opt = argv[++i];
		} else if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			outpath = argv[++i];
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage("report", 1);
			return 2;
		} else if (!run) {
			run = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			cmd_usage("report", 1);
			return 2;
		}
	}
	if (!outpath) {
		fprintf(stderr, "error: mke report needs -o FILE\n");
		cmd_usage("report", 1);
		return 2;
	}
	struct store *db;
	char *db_path;
	struct report rp;
	memset(&rp, 0, sizeof rp);
	if (run_open(run, db_opt, &db, &db_path, &rp.r) != 0)
		return 1;
	rp.db_path = db_path;
	int rc = report_load(db, rp.r.id, &rp);
	struct buf b = {0};
	if (rc == 0) {
		build_page(&b, &rp);
		rc = write_file_atomic(outpath, b.p, b.n, 0640);
	}
	if (rc == 0)
		mke_info("wrote %s (%zu bytes)", outpath, b.n);
	free(b.p);
	report_release(&rp);
	store_close(db);
	free(db_path);
	return rc == 0 ? 0 : 1;
}
