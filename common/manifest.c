/*
 * manifest.c - dataset manifests: an RFC 4180 CSV reader and the decoder
 * that turns a manifest's rows into a struct dataset for a run.
 *
 * The CSV reader is written here by hand. Debian's only C CSV library,
 * libcsv, has been unmaintained for years, and what a manifest needs is
 * small: quoted fields with "" escapes, commas and line breaks inside
 * quotes, CRLF, LF (or a lone CR) line ends, an optional UTF-8 BOM, an
 * optional final line break, blank lines skipped. It also needs what generic
 * readers do not give: the line on which each record starts, so that every
 * bad row can be reported as "file:line: reason" (a quoted field spanning
 * lines moves every later line number), and a way to skip one bad record and
 * go on. A record with a problem (wrong column count, stray or unterminated
 * quote, a field over 1 MB, a NUL byte, an empty or duplicate id) is
 * reported to stderr, counted in nbad and skipped; nothing is dropped
 * without a line saying so. Only a file without a usable header fails.
 *
 * dataset_load() decodes cells by the config's modality kinds (inline
 * numbers, .npy files, and through common/media.h images, depth maps and
 * audio), maps labels, and quarantines rows whose cells do not decode, again
 * with file:line and a count. Media are decoded one cell at a time; only the
 * flattened floats are kept. Cells that are URLs are fetched first, all of
 * a manifest's in one batch (common/fetch.h), and decoded from the cache; a
 * URL that cannot be fetched quarantines its row like a cell that does not
 * decode.
 *
 * Ownership: struct manifest and struct dataset own everything they point
 * to; manifest_release() and dataset_release() free it.
 */
#include "manifest.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "media.h"
#include "npy.h"
#include "spectrogram.h"
#include "util.h"

#define FIELD_MAX (1 << 20) /* longest field accepted, bytes */

int manifest_max_reports = 100;

/* ---- reporting ------------------------------------------------------------ */

struct reporter {
	const char *path;
	int shown, hidden;
};

/* "path:line: reason" on stderr, up to manifest_max_reports lines per load. */
static void report(struct reporter *rp, int line, const char *fmt, ...) MKE_PRINTF(3, 4);
static void report(struct reporter *rp, int line, const char *fmt, ...)
{
	if (manifest_max_reports > 0 && rp->shown >= manifest_max_reports) {
		rp->hidden++;
		return;
	}
	rp->shown++;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s:%d: ", rp->path, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void report_flush(struct reporter *rp)
{
	if (rp->hidden)
		fprintf(stderr, "%s: %d more problem%s not shown\n", rp->path, rp->hidden,
			rp->hidden == 1 ? "" : "s");
	rp->shown = rp->hidden = 0;
}

/* ---- the CSV reader ------------------------------------------------------- */

struct csv {
	const char *s;
	size_t n, i;
	int line;           /* line number at s[i] */
};

/* What can be wrong with a record as CSV; the first problem is kept. */
enum csv_problem {
	CSV_OK = 0,
	CSV_NUL,          /* a NUL byte in a field */
	CSV_TOO_LONG,     /* a field over FIELD_MAX bytes */
	CSV_UNTERMINATED, /* a quoted field runs to the end of the file */
	CSV_AFTER_QUOTE,  /* "ab"c: text after a closing quote */
	CSV_STRAY_QUOTE,  /* ab"c: a quote inside an unquoted field */
};

/* One record: fields stored NUL-separated in buf, starting at off[k]. */
struct record {
	int line;           /* where it starts */
	int blank;          /* an empty line */
	int nf;
	size_t *off;
	int cap_f;
	char *buf;
	size_t len, cap;
	enum csv_problem err;
	int err_col;        /* 0-based column of the problem */
	int err_line;       /* CSV_UNTERMINATED: line of the opening quote */
};

static void rec_put(struct record *r, char c)
{
	if (r->len + 1 >= r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->buf = xrealloc(r->buf, r->cap);
	}
	r->buf[r->len++] = c;
}

static void rec_error(struct record *r, enum csv_problem e, int col, int line)
{
	if (r->err)
		return;
	r->err = e;
	r->err_col = col;
	r->err_line = line;
}

/* The problem as text; column names from cols when there are (ncols of them). */
static const char *csv_problem_text(const struct record *r, char *const *cols, int ncols,
				    char *buf, size_t n)
{
	char cn[300];
	if (r->err_col < ncols)
		snprintf(cn, sizeof cn, "'%.256s'", cols[r->err_col]);
	else
		snprintf(cn, sizeof cn, "%d", r->err_col + 1);
	switch (r->err) {
	case CSV_NUL:
		snprintf(buf, n, "NUL byte in column %s", cn);
		break;
	case CSV_TOO_LONG:
		snprintf(buf, n, "field longer than 1 MB in column %s", cn);
		break;
	case CSV_UNTERMINATED:
		snprintf(buf, n, "unterminated quote in column %s (opened at line %d); the "
			 "rest of the file is skipped", cn, r->err_line);
		break;
	case CSV_AFTER_QUOTE:
		snprintf(buf, n, "unexpected text after the closing quote in column %s", cn);
		break;
	case CSV_STRAY_QUOTE:
		snprintf(buf, n, "quote inside an unquoted field in column %s (quote the "
			 "whole field and double the quote)", cn);
		break;
	default:
		snprintf(buf, n, "no problem");
	}
	return buf;
}

static int at_eol(const struct csv *p)
{
	return p->i >= p->n || p->s[p->i] == '\n' || p->s[p->i] == '\r';
}

/* Consume a line end (CRLF, LF or lone CR) if there is one. */
static void eat_eol(struct csv *p)
{
	if (p->i >= p->n)
		return;
	if (p->s[p->i] == '\r') {
		p->i++;
		if (p->i < p->n && p->s[p->i] == '\n')
			p->i++;
		p->line++;
	} else if (p->s[p->i] == '\n') {
		p->i++;
		p->line++;
	}
}

/* Append c to field k (of record r), enforcing the size limit and NULs. */
static void field_put(struct record *r, size_t start, char c, int col)
{
	if (c == '\0') {
		rec_error(r, CSV_NUL, col, 0);
		return;
	}
	if (r->len - start >= FIELD_MAX) {
		rec_error(r, CSV_TOO_LONG, col, 0);
		return;
	}
	rec_put(r, c);
}

/*
 * Read the next record into r. Returns 0 at the end of the input, 1 when a
 * record (possibly blank, possibly with r->err set) was read. Column numbers
 * in r->err are 1-based; the caller may rename them.
 */
static int csv_next(struct csv *p, struct record *r)
{
	r->nf = 0;
	r->len = 0;
	r->blank = 0;
	r->err = CSV_OK;
	r->line = p->line;
	if (p->i >= p->n)
		return 0;
	if (at_eol(p)) {
		eat_eol(p);
		r->blank = 1;
		return 1;
	}
	for (;;) {
		int col = r->nf;
		size_t start = r->len;
		if (r->nf == r->cap_f) {
			r->cap_f = r->cap_f ? 2 * r->cap_f : 16;
			r->off = xrealloc(r->off, (size_t)r->cap_f * sizeof *r->off);
		}
		r->off[r->nf++] = start;
		if (p->i < p->n && p->s[p->i] == '"') {
			int open = p->line;
			p->i++;
			for (;;) {
				if (p->i >= p->n) {
					rec_error(r, CSV_UNTERMINATED, col, open);
					break;
				}
				char c = p->s[p->i];
				if (c == '"') {
					if (p->i + 1 < p->n && p->s[p->i + 1] == '"') {
						field_put(r, start, '"', col);
						p->i += 2;
						continue;
					}
					p->i++;
					break;
				}
				if (c == '\n' || (c == '\r' && !(p->i + 1 < p->n &&
								p->s[p->i + 1] == '\n')))
					p->line++;
				field_put(r, start, c, col);
				p->i++;
			}
			if (!at_eol(p) && p->s[p->i] != ',') {
				rec_error(r, CSV_AFTER_QUOTE, col, 0);
				while (!at_eol(p) && p->s[p->i] != ',')
					p->i++;
			}
		} else {
			while (!at_eol(p) && p->s[p->i] != ',') {
				char c = p->s[p->i];
				if (c == '"')
					rec_error(r, CSV_STRAY_QUOTE, col, 0);
				field_put(r, start, c, col);
				p->i++;
			}
		}
		rec_put(r, '\0');
		if (p->i < p->n && p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		eat_eol(p);
		return 1;
	}
}

static void rec_release(struct record *r)
{
	free(r->off);
	free(r->buf);
}

/* ---- id table: open addressing over id strings ----------------------------- */

struct id_table {
	size_t cap, n;          /* cap is a power of two */
	uint32_t *slot;         /* row index + 1 into m->rows; 0 = empty */
	const struct manifest *m;
};

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

uint32_t sample_id_hash(const char *s)
{
	return fnv1a(s);
}

static const char *ids_key(const struct id_table *t, uint32_t slot)
{
	return t->m->rows[slot - 1].cells[t->m->id_col];
}

static void ids_grow(struct id_table *t)
{
	size_t cap = t->cap ? 2 * t->cap : 1024;
	uint32_t *slot = xcalloc(cap, sizeof *slot);
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->slot[i])
			continue;
		size_t j = fnv1a(ids_key(t, t->slot[i])) & (cap - 1);
		while (slot[j])
			j = (j + 1) & (cap - 1);
		slot[j] = t->slot[i];
	}
	free(t->slot);
	t->slot = slot;
	t->cap = cap;
}

/* Insert the id of row `row` of t->m (its cells must stay in place while the
 * table lives; m->rows may move). Row indices, not pointers, keep the table
 * at 4 bytes a slot for million-row manifests. Returns 0, or the line where
 * the id was first seen. */
static int ids_insert(struct id_table *t, int row)
{
	if (2 * (t->n + 1) > t->cap)
		ids_grow(t);
	const char *id = t->m->rows[row].cells[t->m->id_col];
	size_t j = fnv1a(id) & (t->cap - 1);
	while (t->slot[j]) {
		if (strcmp(ids_key(t, t->slot[j]), id) == 0)
			return t->m->rows[t->slot[j] - 1].line;
		j = (j + 1) & (t->cap - 1);
	}
	t->slot[j] = (uint32_t)row + 1;
	t->n++;
	return 0;
}

static void ids_release(struct id_table *t)
{
	free(t->slot);
}

/* ---- manifests -------------------------------------------------------------- */

int manifest_col(const struct manifest *m, const char *name)
{
	for (int k = 0; k < m->ncols; k++)
		if (strcmp(m->cols[k], name) == 0)
			return k;
	return -1;
}

void manifest_release(struct manifest *m)
{
	for (int r = 0; r < m->nrows; r++)
		free(m->rows[r].cells);
	free(m->rows);
	for (int k = 0; k < m->ncols; k++)
		free(m->cols[k]);
	free(m->cols);
	free(m->path);
	free(m->dir);
	memset(m, 0, sizeof *m);
}

static int read_header(struct manifest *m, struct csv *p, struct record *r)
{
	for (;;) {
		if (!csv_next(p, r))
			return mke_error("manifest '%s' is empty: a header line is required",
					 m->path);
		if (!r->blank)
			break;
	}
	if (r->err) {
		char why[400];
		return mke_error("manifest '%s' line %d: bad header: %s", m->path, r->line,
				 csv_problem_text(r, NULL, 0, why, sizeof why));
	}
	m->ncols = r->nf;
	m->cols = xcalloc((size_t)r->nf, sizeof *m->cols);
	for (int k = 0; k < r->nf; k++)
		m->cols[k] = xstrdup(r->buf + r->off[k]);
	for (int k = 0; k < m->ncols; k++) {
		if (!m->cols[k][0])
			return mke_error("manifest '%s' line %d: header column %d has no name",
					 m->path, r->line, k + 1);
		for (int q = 0; q < k; q++)
			if (strcmp(m->cols[q], m->cols[k]) == 0)
				return mke_error("manifest '%s' line %d: column '%s' appears "
						 "twice in the header (columns %d and %d)",
						 m->path, r->line, m->cols[k], q + 1, k + 1);
	}
	m->id_col = manifest_col(m, "id");
	m->label_col = manifest_col(m, "label");
	m->split_col = manifest_col(m, "split");
	if (m->id_col < 0) {
		char list[512] = "";
		size_t len = 0;
		for (int k = 0; k < m->ncols && len < sizeof list; k++) {
			int w = snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "",
					 m->cols[k]);
			if (w < 0)
				break;
			len += (size_t)w;
		}
		return mke_error("manifest '%s' has no 'id' column (columns: %s)", m->path, list);
	}
	return 0;
}

/* A row's cells as one allocation: ncols pointers, then the strings they
 * point to. One malloc per row instead of ncols + 1 keeps a 1M-row manifest
 * within the coordinator's memory budget (docs/scaling.md). */
static char **row_cells(const struct record *r, int ncols)
{
	size_t bytes = r->len; /* every field's text and its NUL */
	char **cells = xmalloc((size_t)ncols * sizeof *cells + bytes);
	char *s = (char *)(cells + ncols);
	memcpy(s, r->buf, bytes);
	for (int k = 0; k < ncols; k++)
		cells[k] = s + r->off[k];
	return cells;
}

int manifest_parse(struct manifest *m, const char *text, size_t len, const char *path)
{
	memset(m, 0, sizeof *m);
	m->path = xstrdup(path);
	m->dir = path_dirname(path);
	m->id_col = m->label_col = m->split_col = -1;

	struct csv p = { .s = text, .n = len, .i = 0, .line = 1 };
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		p.i = 3;
	struct record r = { 0 };
	struct reporter rp = { .path = path };
	struct id_table ids = { .m = m };
	int cap = 0;
	if (read_header(m, &p, &r)) {
		rec_release(&r);
		manifest_release(m);
		return -1;
	}
	while (csv_next(&p, &r)) {
		if (r.blank)
			continue;
		if (r.err) {
			char why[400];
			report(&rp, r.line, "%s",
			       csv_problem_text(&r, m->cols, m->ncols, why, sizeof why));
			m->nbad++;
			continue;
		}
		if (r.nf != m->ncols) {
			report(&rp, r.line, "expected %d columns, got %d", m->ncols, r.nf);
			m->nbad++;
			continue;
		}
		const char *id = r.buf + r.off[m->id_col];
		if (!id[0]) {
			report(&rp, r.line, "empty id");
			m->nbad++;
			continue;
		}
		if (m->nrows == cap) {
			cap = cap ? 2 * cap : 64;
			m->rows = xrealloc(m->rows, (size_t)cap * sizeof *m->rows);
		}
		struct manifest_row *row = &m->rows[m->nrows];
		row->line = r.line;
		row->cells = row_cells(&r, m->ncols);
		int first = ids_insert(&ids, m->nrows);
		if (first) {
			report(&rp, r.line, "duplicate id '%s' (first at line %d)", id, first);
			free(row->cells);
			m->nbad++;
			continue;
		}
		m->nrows++;
	}
	report_flush(&rp);
	if (m->nbad)
		mke_warn("manifest '%s': %d bad row%s skipped, %d read", path, m->nbad,
			 m->nbad == 1 ? "" : "s", m->nrows);
	ids_release(&ids);
	rec_release(&r);
	return 0;
}

int manifest_load(struct manifest *m, const char *path)
{
	memset(m, 0, sizeof *m);
	size_t len;
	char *text = read_file(path, &len);
	if (!text)
		return mke_error("manifest '%s' cannot be read", path);
	int rc = manifest_parse(m, text, len, path);
	free(text);
	return rc;
}

/* ---- datasets --------------------------------------------------------------- */

/* A growable float vector for one decoded cell. */
struct vec {
	float *v;
	size_t n, cap;
};

static void vec_push(struct vec *a, float x)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->v = xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = x;
}

/* Whitespace-separated finite numbers. Returns 0, or -1 with why[] set. */
static int decode_inline(const char *cell, struct vec *out, char *why, size_t nwhy)
{
	const char *s = cell;
	out->n = 0;
	for (;;) {
		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		const char *tok = s;
		while (*s && !isspace((unsigned char)*s))
			s++;
		int toklen = (int)(s - tok);
		char *end;
		double d = strtod(tok, &end);
		if (end != s) {
			snprintf(why, nwhy, "'%.*s' is not a number", toklen > 40 ? 40 : toklen,
				 tok);
			return -1;
		}
		if (!isfinite(d) || !isfinite((float)d)) {
			snprintf(why, nwhy, "'%.*s' is not a finite float",
				 toklen > 40 ? 40 : toklen, tok);
			return -1;
		}
		vec_push(out, (float)d);
	}
	if (!out->n) {
		snprintf(why, nwhy, "is empty");
		return -1;
	}
	return 0;
}

static int decode_npy(const char *cell, const char *dir, struct vec *out, char *why, size_t nwhy)
{
	out->n = 0;
	if (!cell[0]) {
		snprintf(why, nwhy, "is empty");
		return -1;
	}
	char *path = path_join(dir, cell);
	struct npy_array a;
	memset(&a, 0, sizeof a);
	if (npy_load(&a, path)) {
		snprintf(why, nwhy, "cannot load '%.200s'", path);
		free(path);
		return -1;
	}
	int rc = 0;
	if (a.count > (size_t)(1 << 30)) {
		snprintf(why, nwhy, "'%.200s' has %zu values, too many for one sample", path,
			 a.count);
		rc = -1;
	}
	for (size_t i = 0; i < a.count && !rc; i++) {
		if (!isfinite(a.data[i])) {
			snprintf(why, nwhy, "'%.200s' holds a non-finite value at index %zu", path,
				 i);
			rc = -1;
		}
	}
	if (!rc) {
		free(out->v);
		out->v = a.data;
		out->n = out->cap = a.count;
		a.data = NULL;
	}
	npy_release(&a);
	free(path);
	return rc;
}

/* Hand a decoded buffer of n floats over to out. */
static void vec_take(struct vec *out, float *v, size_t n)
{
	free(out->v);
	out->v = v;
	out->n = out->cap = n;
}

/*
 * An image, depth or audio cell: a path relative to dir. Images and depth
 * maps are resized when the modality gives height and width and flattened
 * C x H x W; audio is resampled to the modality's rate, tiled or cropped to
 * its duration when it gives one, and turned into the log-spectrogram of
 * spectrogram.h (257 x T, z-scored). The decoders report why a file fails
 * (naming it); why[] gets the line for the manifest's report.
 */
static int decode_media(const struct modality_spec *ms, const char *cell, const char *dir,
			struct spectrogram *sp, struct vec *out, char *why, size_t nwhy)
{
	out->n = 0;
	if (!cell[0]) {
		snprintf(why, nwhy, "is empty");
		return -1;
	}
	char *path = path_join(dir, cell);
	int rc = 0;
	if (ms->kind == MOD_IMAGE || ms->kind == MOD_DEPTH) {
		struct media_image im;
		rc = ms->kind == MOD_IMAGE ? image_load(&im, path, ms->channels)
					   : depth_load(&im, path);
		if (!rc) {
			if (ms->height)
				image_resize(&im, ms->height, ms->width);
			vec_take(out, im.x, (size_t)im.c * (size_t)im.h * (size_t)im.w);
		}
	} else {
		float *x;
		size_t n;
		rc = audio_load(path, ms->sample_rate, &x, &n, NULL);
		if (!rc) {
			if (ms->seconds > 0) {
				size_t len = (size_t)llround((double)ms->seconds * ms->sample_rate);
				float *y = xmalloc(len * sizeof *y);
				audio_fit(x, n, y, len);
				free(x);
				x = y;
				n = len;
			} else {
				audio_fit(x, n, x, n); /* clip to [-1, 1] */
			}
			size_t T = spectrogram_frames(n);
			if (!T) {
				snprintf(why, nwhy, "'%.200s' has %zu samples at %d Hz, fewer than "
					 "one %d-point window (set 'seconds' to tile short clips)",
					 path, n, ms->sample_rate, SPEC_NPERSEG);
				free(x);
				free(path);
				return -1;
			}
			float *s = xmalloc((size_t)SPEC_NFREQ * T * sizeof *s);
			spectrogram_compute(sp, x, n, ms->sample_rate, 1, s);
			free(x);
			vec_take(out, s, (size_t)SPEC_NFREQ * T);
		}
	}
	if (rc)
		snprintf(why, nwhy, "cannot decode '%.200s'", path);
	free(path);
	return rc;
}

/*
 * Fetch the URL cells of the file-backed modalities as one batch. For such a
 * modality k, path[k][r] and err[k][r] get row r's cached file or why it
 * could not be fetched (both NULL for a cell that is not a URL); path[k]
 * stays NULL when the column has no URL. A column '<column>_sha256', or
 * 'sha256' for modality a, gives the digest a URL's content must have (an
 * empty cell: no check).
 */
static void fetch_cells(const struct manifest *m, const struct run_config *c, int nmod,
			const int *col, char **path[2], char **err[2])
{
	size_t cap = 2 * (size_t)m->nrows + 1;
	const char **urls = xmalloc(cap * sizeof *urls), **shas = xmalloc(cap * sizeof *shas);
	int *where = xmalloc(cap * sizeof *where), n = 0;
	for (int k = 0; k < nmod; k++) {
		if (c->mod[k].kind == MOD_INLINE)
			continue;
		char *name = xasprintf("%s_sha256", c->mod[k].column);
		int sc = manifest_col(m, name);
		free(name);
		if (sc < 0 && k == 0)
			sc = manifest_col(m, "sha256");
		for (int r = 0; r < m->nrows; r++) {
			const char *s = m->rows[r].cells[col[k]];
			if (!fetch_is_url(s))
				continue;
			const char *sha = sc >= 0 ? m->rows[r].cells[sc] : NULL;
			urls[n] = s;
			shas[n] = sha && sha[0] ? sha : NULL;
			where[n++] = k * m->nrows + r;
		}
	}
	if (n) {
		struct fetch_opts o;
		fetch_opts_default(&o);
		o.cache_dir = c->cache_dir;
		char **p = xmalloc((size_t)n * sizeof *p), **e = xmalloc((size_t)n * sizeof *e);
		struct fetch_stats st;
		fetch_many(&o, urls, shas, n, p, e, &st);
		for (int i = 0; i < n; i++) {
			int k = where[i] / m->nrows, r = where[i] % m->nrows;
			if (!path[k]) {
				path[k] = xcalloc((size_t)m->nrows, sizeof *path[k]);
				err[k] = xcalloc((size_t)m->nrows, sizeof *err[k]);
			}
			path[k][r] = p[i];
			err[k][r] = e[i];
		}
		mke_info("manifest '%s': %d URL%s: %d from the cache, %d downloaded, %d failed",
			 m->path, n, n == 1 ? "" : "s", st.cached, st.downloaded, st.failed);
		free(p);
		free(e);
	}
	free(urls);
	free(shas);
	free(where);
}

/* Class index of a label cell: -1 empty, -2 unknown. */
static int decode_label(const char *cell, const struct run_config *c)
{
	while (isspace((unsigned char)*cell))
		cell++;
	size_t n = strlen(cell);
	while (n && isspace((unsigned char)cell[n - 1]))
		n--;
	if (!n)
		return -1;
	for (int k = 0; k < c->nclass_names; k++)
		if (strlen(c->class_names[k]) == n && strncmp(c->class_names[k], cell, n) == 0)
			return k;
	char buf[32];
	if (n >= sizeof buf)
		return -2;
	memcpy(buf, cell, n);
	buf[n] = '\0';
	long v;
	if (parse_long(buf, &v) == 0 && v >= 0 && v < c->classes)
		return (int)v;
	return -2;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Ids are unique strings, so equal hashes are collisions: they share random
 * draws. Rare below ~10^4 samples, expected at AudioSet's ~2*10^6; warn. */
static void check_collisions(const struct dataset *d, const char *path)
{
	if (d->n < 2)
		return;
	uint64_t *h = xmalloc((size_t)d->n * sizeof *h);
	for (int i = 0; i < d->n; i++)
		h[i] = (uint64_t)d->ids[i] << 32 | (uint32_t)i;
	qsort(h, (size_t)d->n, sizeof *h, cmp_u64);
	int ncoll = 0, ex0 = -1, ex1 = -1;
	for (int i = 1; i < d->n; i++) {
		if (h[i] >> 32 == h[i - 1] >> 32) {
			if (!ncoll) {
				ex0 = (int)(uint32_t)h[i - 1];
				ex1 = (int)(uint32_t)h[i];
			}
			ncoll++;
		}
	}
	if (ncoll)
		mke_warn("manifest '%s': %d id%s share a 32-bit sample hash with another "
			 "(e.g. '%s' and '%s'); their random draws coincide", path, ncoll,
			 ncoll == 1 ? "" : "s", d->names[ex0], d->names[ex1]);
	free(h);
}

void dataset_release(struct dataset *d)
{
	for (int k = 0; k < 2; k++)
		free(d->x[k]);
	free(d->labels);
	free(d->ids);
	if (d->names)
		for (int i = 0; i < d->n; i++)
			free(d->names[i]);
	free(d->names);
	memset(d, 0, sizeof *d);
}

int dataset_load(struct dataset *d, const struct run_config *c, const char *manifest_path,
		 int nmod)
{
	memset(d, 0, sizeof *d);
	if (nmod < 1 || nmod > 2)
		return mke_error("dataset '%s': %d modalities asked for; 1 or 2 are possible",
				 manifest_path, nmod);
	if (nmod > c->nmod)
		return mke_error("config '%s': modality b is needed for '%s' but "
				 "data.modalities does not declare it", c->path, manifest_path);
	for (int k = 0; k < nmod; k++) {
		enum modality_kind kind = c->mod[k].kind;
		if (kind != MOD_INLINE && kind != MOD_NPY && kind != MOD_IMAGE &&
		    kind != MOD_DEPTH && kind != MOD_AUDIO)
			return mke_error("config '%s': data.modalities.%c: kind '%s' is not "
					 "supported yet", c->path, 'a' + k,
					 modality_kind_name(kind));
	}
	struct manifest m;
	if (manifest_load(&m, manifest_path))
		return -1;
	d->nbad = m.nbad;
	struct spectrogram sp;
	int have_sp = 0;
	for (int k = 0; k < nmod && !have_sp; k++) {
		if (c->mod[k].kind != MOD_AUDIO)
			continue;
		if (spectrogram_init(&sp)) {
			manifest_release(&m);
			return -1;
		}
		have_sp = 1;
	}
	int col[2] = { -1, -1 };
	for (int k = 0; k < nmod; k++) {
		col[k] = manifest_col(&m, c->mod[k].column);
		if (col[k] < 0) {
			mke_error("manifest '%s' has no column '%s' (modality %c in config '%s')",
				  manifest_path, c->mod[k].column, 'a' + k, c->path);
			if (have_sp)
				spectrogram_release(&sp);
			manifest_release(&m);
			return -1;
		}
	}

	size_t cap = m.nrows ? (size_t)m.nrows : 1;
	d->nmod = nmod;
	d->ids = xmalloc(cap * sizeof *d->ids);
	d->names = xcalloc(cap, sizeof *d->names);
	if (m.label_col >= 0)
		d->labels = xmalloc(cap * sizeof *d->labels);
	for (int k = 0; k < nmod; k++)
		d->dim[k] = c->mod[k].dim;

	char **fpath[2] = { NULL, NULL }, **ferr[2] = { NULL, NULL };
	fetch_cells(&m, c, nmod, col, fpath, ferr);

	struct reporter rp = { .path = manifest_path };
	struct vec cell[2] = { { 0 }, { 0 } };
	int rc = 0;
	for (int r = 0; r < m.nrows; r++) {
		const struct manifest_row *row = &m.rows[r];
		char why[1200] = "";
		int bad = 0, label = -1;
		if (m.label_col >= 0) {
			label = decode_label(row->cells[m.label_col], c);
			if (label == -2) {
				report(&rp, row->line, "unknown label '%.100s'",
				       row->cells[m.label_col]);
				d->nquarantined++;
				continue;
			}
		}
		for (int k = 0; k < nmod && !bad; k++) {
			const char *s = row->cells[col[k]];
			int fetched = fpath[k] && fpath[k][r];
			if (fpath[k] && ferr[k][r]) {
				snprintf(why, sizeof why, "%s", ferr[k][r]);
				bad = 1;
			} else if (c->mod[k].kind == MOD_INLINE) {
				bad = decode_inline(s, &cell[k], why, sizeof why);
			} else if (c->mod[k].kind == MOD_NPY) {
				bad = decode_npy(fetched ? fpath[k][r] : s, m.dir, &cell[k], why,
						 sizeof why);
			} else {
				bad = decode_media(&c->mod[k], fetched ? fpath[k][r] : s, m.dir, &sp,
						   &cell[k], why, sizeof why);
			}
			if (bad && fetched) {
				char *safe = fetch_redact(s);
				size_t len = strlen(why);
				snprintf(why + len, sizeof why - len, " (fetched from '%.300s')", safe);
				free(safe);
			}
			if (!bad && d->dim[k] && cell[k].n != (size_t)d->dim[k]) {
				snprintf(why, sizeof why, "expected %d values, got %zu", d->dim[k],
					 cell[k].n);
				bad = 1;
			}
			if (bad)
				report(&rp, row->line, "column '%s'%s %s", c->mod[k].column,
				       strncmp(why, "is ", 3) == 0 ? "" : ":", why);
		}
		if (bad) {
			d->nquarantined++;
			continue;
		}
		for (int k = 0; k < nmod; k++) {
			if (!d->x[k]) {
				d->dim[k] = (int)cell[k].n;
				if (cap > SIZE_MAX / sizeof(float) / (size_t)d->dim[k]) {
					rc = mke_error("dataset '%s' is too large", manifest_path);
					goto out;
				}
				d->x[k] = xmalloc(cap * (size_t)d->dim[k] * sizeof(float));
			}
			memcpy(d->x[k] + (size_t)d->n * (size_t)d->dim[k], cell[k].v,
			       (size_t)d->dim[k] * sizeof(float));
		}
		if (d->labels)
			d->labels[d->n] = label;
		d->names[d->n] = xstrdup(row->cells[m.id_col]);
		d->ids[d->n] = sample_id_hash(d->names[d->n]);
		d->n++;
	}
	report_flush(&rp);
	if (d->nquarantined)
		mke_warn("manifest '%s': %d row%s quarantined (cells or labels that do not "
			 "decode), %d loaded", manifest_path, d->nquarantined,
			 d->nquarantined == 1 ? "" : "s", d->n);
	if (!d->n) {
		rc = mke_error("manifest '%s' has no usable rows (%d bad, %d quarantined)",
			       manifest_path, m.nbad, d->nquarantined);
		goto out;
	}
	check_collisions(d, manifest_path);
out:
	for (int k = 0; k < 2; k++) {
		free(cell[k].v);
		for (int r = 0; fpath[k] && r < m.nrows; r++) {
			free(fpath[k][r]);
			free(ferr[k][r]);
		}
		free(fpath[k]);
		free(ferr[k]);
	}
	if (have_sp)
		spectrogram_release(&sp);
	manifest_release(&m);
	if (rc)
		dataset_release(d);
	return rc;
}
