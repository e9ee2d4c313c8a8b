/*
 * cmd_export.c - `mke export RUN`: one table of a run's database as CSV or
 * JSON, for spreadsheets, pandas and plotting scripts.
 *
 * Each table is a list of typed columns (text, integer, real), so one writer
 * serves both formats and every table:
 *
 *   CSV   RFC 4180: a header row, CRLF line ends, a cell quoted when it holds
 *         , " CR or LF, quotes doubled. NULL is an empty cell. Reals are
 *         written in the shortest form that reads back to the same double.
 *         Spreadsheets run a cell that starts with = + - @ TAB or CR as a
 *         formula (CSV injection), and run ids, variant names, worker errors
 *         and event payloads come from outside; such a text cell gets a
 *         leading single quote. Numbers are written as numbers (a negative
 *         value in a numeric column stays a number), and so is a text cell
 *         that is exactly a plain decimal number such as "-3" or "-0.5".
 *   JSON  an array of objects, one per line; NULL and non-finite reals are
 *         null; text is escaped, invalid UTF-8 becomes U+FFFD. Nothing is
 *         neutralized: JSON is read by programs, which want the exact text.
 *
 * The runs table leaves out the run's config: it may hold a Redis password.
 * Output goes to stdout, or to -o FILE through write_file_atomic (mode 0640),
 * so a reader never sees half a file.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "store.h"
#include "util.h"

/* ---- an output buffer ------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t n, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n + 1)
			cap *= 2;
		b->p = xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

/* ---- typed cells ---------------------------------------------------------------------- */

enum col_type { COL_TEXT, COL_INT, COL_REAL };

struct col {
	const char *name;
	enum col_type type;
};

struct cell {
	int null;
	const char *s;
	long long i;
	double d;
};

static struct cell text(const char *s)
{
	return (struct cell){.null = s == NULL, .s = s};
}

static struct cell integer(long long i)
{
	return (struct cell){.i = i};
}

/* An integer where 0 (or less) stands for NULL, as store.h reports timestamps. */
static struct cell stamp(long long ms)
{
	return (struct cell){.null = ms <= 0, .i = ms};
}

static struct cell real(double d)
{
	return (struct cell){.null = isnan(d), .d = d};
}

/* The shortest %g form that reads back to the same double. */
static void fmt_real(char *buf, size_t n, double d)
{
	if (isinf(d)) {
		snprintf(buf, n, d > 0 ? "inf" : "-inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

/* -?digits(.digits)?([eE][+-]?digits)? : a spreadsheet reads it as a number. */
static int plain_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s < '0' || *s > '9')
		return 0;
	while (*s >= '0' && *s <= '9')
		s++;
	if (*s == '.') {
		s++;
		if (*s < '0' || *s > '9')
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (*s < '0' || *s > '9')
			return 0;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

static void csv_text(struct sbuf *b, const char *s)
{
	int inject = s[0] && strchr("=+-@\t\r", s[0]) && !plain_number(s);
	int quote = strpbrk(s, ",\"\r\n") != NULL;
	if (quote)
		sb_putc(b, '"');
	if (inject)
		sb_putc(b, '\'');
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			sb_putc(b, '"');
		sb_putc(b, *p);
	}
	if (quote)
		sb_putc(b, '"');
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static int utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (n == 0 || (n == 2 && c < 0xc2) || (n == 4 && c > 0xf4))
		return 0;
	for (int i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0)))
		return 0; /* overlong, or a surrogate */
	if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90)))
		return 0;
	return n;
}

static void json_text(struct sbuf *b, const char *s)
{
	sb_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		if (*p == '"' || *p == '\\') {
			sb_putc(b, '\\');
			sb_putc(b, (char)*p++);
		} else if (*p < 0x20) {
			char esc[8];
			switch (*p) {
			case '\n': sb_puts(b, "\\n"); break;
			case '\r': sb_puts(b, "\\r"); break;
			case '\t': sb_puts(b, "\\t"); break;
			default:
				snprintf(esc, sizeof esc, "\\u%04x", *p);
				sb_puts(b, esc);
			}
			p++;
		} else {
			int n = utf8_len(p);
			if (n == 0) {
				sb_puts(b, "\\ufffd");
				p++;
			} else {
				sb_put(b, (const char *)p, (size_t)n);
				p += n;
			}
		}
	}
	sb_putc(b, '"');
}

/* ---- the table writer -------------------------------------------------------------------- */

struct writer {
	int json;
	struct sbuf out;
	const struct col *cols;
	int ncols;
	long rows;
};

static void w_begin(struct writer *w, const struct col *cols, int ncols)
{
	w->cols = cols;
	w->ncols = ncols;
	if (w->json) {
		sb_puts(&w->out, "[");
		return;
	}
	for (int c = 0; c < ncols; c++) {
		if (c)
			sb_putc(&w->out, ',');
		csv_text(&w->out, cols[c].name);
	}
	sb_puts(&w->out, "\r\n");
}

static void w_row(struct writer *w, const struct cell *cells)
{
	struct sbuf *b = &w->out;
	char num[64];
	if (w->json)
		sb_puts(b, w->rows ? ",\n{" : "\n{");
	for (int c = 0; c < w->ncols; c++) {
		const struct cell *x = &cells[c];
		if (w->json) {
			if (c)
				sb_putc(b, ',');
			json_text(b, w->cols[c].name);
			sb_putc(b, ':');
		} else if (c) {
			sb_putc(b, ',');
		}
		if (x->null || (w->cols[c].type == COL_REAL && w->json && !isfinite(x->d))) {
			if (w->json)
				sb_puts(b, "null");
			continue;
		}
		switch (w->cols[c].type) {
		case COL_TEXT:
			if (w->json)
				json_text(b, x->s);
			else
				csv_text(b, x->s);
			break;
		case COL_INT:
			snprintf(num, sizeof num, "%lld", x->i);
			sb_puts(b, num);
			break;
		case COL_REAL:
			fmt_real(num, sizeof num, x->d);
			sb_puts(b, num);
			break;
		}
	}
	sb_puts(b, w->json ? "}" : "\r\n");
	w->rows++;
}

static void w_end(struct writer *w)
{
	if (w->json)
		sb_puts(&w->out, w->rows ? "\n]\n" : "]\n");
}

/* ---- the tables ------------------------------------------------------------------------- */

struct ctx {
	struct writer *w;
	const char *run;
};

static const struct col metric_cols[] = {
	{"run_id", COL_TEXT}, {"variant", COL_TEXT}, {"key", COL_TEXT},
	{"step", COL_INT},    {"value", COL_REAL},   {"ts_ms", COL_INT},
};

static int metric_row(void *arg, const struct store_metric *m)
{
	struct ctx *x = arg;
	struct cell c[] = {text(x->run), text(m->variant ? m->variant : ""), text(m->key),
			   integer(m->step), real(m->value), stamp(m->ts_ms)};
	w_row(x->w, c);
	return 0;
}

static const struct col shard_cols[] = {
	{"run_id", COL_TEXT},  {"shard_id", COL_INT}, {"first_row", COL_INT}, {"row_count", COL_INT},
	{"state", COL_TEXT},   {"attempts", COL_INT}, {"worker", COL_TEXT},   {"leased_ms", COL_INT},
	{"done_ms", COL_INT},  {"sha256", COL_TEXT},  {"path", COL_TEXT},     {"error", COL_TEXT},
	{"updated_ms", COL_INT},
};

static int shard_row(void *arg, const struct store_shard *s)
{
	struct ctx *x = arg;
	struct cell c[] = {text(x->run),          integer(s->shard_id), integer(s->first_row),
			   integer(s->row_count), text(shard_state_name(s->state)),
			   integer(s->attempts),  text(s->worker),      stamp(s->leased_ms),
			   stamp(s->done_ms),     text(s->sha256),      text(s->path),
			   text(s->error),        stamp(s->updated_ms)};
	w_row(x->w, c);
	return 0;
}

static const struct col param_cols[] = {
	{"run_id", COL_TEXT}, {"key", COL_TEXT}, {"value", COL_TEXT},
};

static int param_row(void *arg, const char *key, const char *value)
{
	struct ctx *x = arg;
	struct cell c[] = {text(x->run), text(key), text(value)};
	w_row(x->w, c);
	return 0;
}

static const struct col event_cols[] = {
	{"id", COL_INT},   {"run_id", COL_TEXT},  {"ts_ms", COL_INT},     {"kind", COL_TEXT},
	{"rank", COL_INT}, {"payload", COL_TEXT}, {"source_id", COL_TEXT},
};

static int event_row(void *arg, const struct store_event *e)
{
	struct ctx *x = arg;
	struct cell rank = {.null = e->rank < 0, .i = e->rank};
	struct cell c[] = {integer(e->id),      text(x->run), integer(e->ts_ms), text(e->kind),
			   rank,                text(e->payload), text(e->source_id)};
	w_row(x->w, c);
	return 0;
}

static const struct col run_cols[] = {
	{"id", COL_TEXT},         {"name", COL_TEXT},         {"status", COL_TEXT},
	{"phase", COL_TEXT},      {"created_ms", COL_INT},    {"started_ms", COL_INT},
	{"ended_ms", COL_INT},    {"host", COL_TEXT},         {"git_rev", COL_TEXT},
	{"run_dir", COL_TEXT},    {"config_path", COL_TEXT},  {"slurm_job_id", COL_TEXT},
	{"error", COL_TEXT},
};

static int run_row(void *arg, const struct store_run *r)
{
	struct ctx *x = arg;
	struct cell c[] = {text(r->id),          text(r->name),           text(run_status_name(r->status)),
			   text(run_phase_name(r->phase)), stamp(r->created_ms), stamp(r->started_ms),
			   stamp(r->ended_ms),   text(r->host),           text(r->git_rev),
			   text(r->run_dir),     text(r->config_path),    text(r->slurm_job_id),
			   text(r->error)};
	w_row(x->w, c);
	return 0;
}

#define NCOLS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Every run `mke runs` would list, each read from its own database. */
static int export_all_runs(struct writer *w, const char *db_opt)
{
	struct run_list l;
	int rc = run_list_scan(db_opt, &l);
	struct store *db = NULL;
	const char *open_path = NULL;
	struct ctx x = {.w = w};
	for (int i = 0; rc == 0 && i < l.n; i++) {
		if (!open_path || strcmp(open_path, l.v[i].db_path) != 0) {
			store_close(db);
			open_path = l.v[i].db_path;
			if (!(db = store_open(open_path, STORE_READONLY)))
				rc = -1;
		}
		struct store_run r;
		if (rc == 0 && store_run_get(db, l.v[i].id, &r) == 1) {
			run_row(&x, &r);
			store_run_release(&r);
		}
	}
	store_close(db);
	run_list_release(&l);
	return rc;
}

enum table { T_NONE = -1, T_METRICS, T_SHARDS, T_PARAMS, T_EVENTS, T_RUNS };

int cmd_export(int argc, char **argv)
{
	static const char *const flags[] = {"--metrics", "--shards", "--params", "--events", "--runs"};
	const char *run = NULL, *db_opt = NULL, *format = "csv", *outpath = NULL;
	int table = T_NONE;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int t = -1;
		for (int k = 0; k < 5; k++)
			if (strcmp(a, flags[k]) == 0)
				t = k;
		if (t >= 0) {
			if (table >= 0 && table != t) {
				fprintf(stderr, "error: %s and %s are exclusive: export one table at a time\n",
					flags[table], a);
				return 2;
			}
			table = t;
		} else if (strcmp(a, "--format") == 0 && i + 1 < argc) {
			format = argv[++i];
		} else if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			outpath = argv[++i];
		} else if (strcmp(a, "--db") == 0 && i + 1 < argc) {
			db_opt = argv[++i];
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage("export", 1);
			return 2;
		} else if (!run) {
			run = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return 2;
		}
	}
	if (strcmp(format, "csv") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "error: --format must be 'csv' or 'json', not '%s'\n", format);
		return 2;
	}
	if (table == T_NONE)
		table = T_METRICS;
	if (!run && table != T_RUNS) {
		fprintf(stderr, "error: which run? 'mke export RUN %s'; see 'mke runs'\n", flags[table]);
		cmd_usage("export", 1);
		return 2;
	}
	if (outpath && strcmp(outpath, "-") == 0)
		outpath = NULL;

	struct writer w = {.json = strcmp(format, "json") == 0};
	int rc = 0;
	if (!run) {
		w_begin(&w, run_cols, NCOLS(run_cols));
		rc = export_all_runs(&w, db_opt);
	} else {
		struct store *db;
		char *db_path;
		struct store_run r;
		if (run_open(run, db_opt, &db, &db_path, &r) != 0)
			return 1;
		struct ctx x = {.w = &w, .run = r.id};
		switch (table) {
		case T_METRICS:
			w_begin(&w, metric_cols, NCOLS(metric_cols));
			rc = store_metrics_each(db, r.id, NULL, NULL, metric_row, &x);
			break;
		case T_SHARDS:
			w_begin(&w, shard_cols, NCOLS(shard_cols));
			rc = store_shards_each(db, r.id, -1, shard_row, &x);
			break;
		case T_PARAMS:
			w_begin(&w, param_cols, NCOLS(param_cols));
			rc = store_params_each(db, r.id, param_row, &x);
			break;
		case T_EVENTS:
			w_begin(&w, event_cols, NCOLS(event_cols));
			rc = store_events_each(db, r.id, 0, event_row, &x);
			break;
		default:
			w_begin(&w, run_cols, NCOLS(run_cols));
			run_row(&x, &r);
			break;
		}
		store_run_release(&r);
		store_close(db);
		free(db_path);
	}
	w_end(&w);
	if (rc == 0 && outpath) {
		rc = write_file_atomic(outpath, w.out.p, w.out.n, 0640);
		if (rc == 0)
			mke_info("wrote %ld rows to '%s'", w.rows, outpath);
	} else if (rc == 0) {
		if (fwrite(w.out.p, 1, w.out.n, stdout) != w.out.n || fflush(stdout) != 0)
			rc = mke_error("cannot write the export to stdout");
	}
	free(w.out.p);
	return rc == 0 ? 0 : 1;
}
