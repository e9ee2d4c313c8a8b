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
 * manifest_count() runs the same pass over a mapped file keeping only the
 * ids (for `mke shard`: a million rows in ~30 MB instead of ~160 MB).
 *
 * dataset_load() decodes cells by the config's modality kinds (inline
 * numbers, .npy files, and through common/media.h images, depth maps, label
 * maps, audio and folders of frames; videos and audio in video containers
 * through common/av.h when the tree has it), records each modality's (F, C,
 * H, W) shape, maps labels (class lists for multi-label tasks, label-map
 * files for segmentation), confines path cells to the manifest's directory
 * or the data root, and quarantines rows whose cells do not decode, again
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
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "fetch.h"
#include "media.h"
#include "meter.h"
#include "npy.h"
#include "spectrogram.h"
#include "util.h"

/* The video decoder (FFmpeg's libraries, common/av.h) */
#include "av.h"
#define MKE_HAVE_AV 1

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

/* Two ways to hold the keys. A load (m set) keeps every row's cells anyway,
 * so a slot names a row of m and the key is that row's id cell. A count (m
 * NULL, manifest_count) keeps no rows: each id is copied into one arena as
 * its line number (4 bytes) and its text with the NUL, and a slot names an
 * entry of off[]: 21 to 29 bytes a row plus the id (5 in the arena, 8 in
 * off[], 8 to 16 in slots at a load of at most a half). */
struct id_table {
	size_t cap, n;          /* cap is a power of two */
	uint32_t *slot;         /* entry index + 1; 0 = empty */
	const struct manifest *m;
	size_t *off;            /* count: entry -> arena offset (n of them) */
	char *arena;
	size_t used, room;      /* arena bytes used / allocated */
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
	if (t->m)
		return t->m->rows[slot - 1].cells[t->m->id_col];
	return t->arena + t->off[slot - 1] + sizeof(int);
}

static int ids_line(const struct id_table *t, uint32_t slot)
{
	if (t->m)
		return t->m->rows[slot - 1].line;
	int line;
	memcpy(&line, t->arena + t->off[slot - 1], sizeof line);
	return line;
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
	if (!t->m)
		t->off = xrealloc(t->off, (cap / 2) * sizeof *t->off);
}

/* Copy (line, id) into the arena as entry t->n (count mode). */
static void ids_keep(struct id_table *t, const char *id, int line)
{
	size_t len = strlen(id) + 1;
	if (t->used + sizeof line + len > t->room) {
		t->room = t->room ? 2 * t->room : 1 << 16;
		while (t->used + sizeof line + len > t->room)
			t->room *= 2;
		t->arena = xrealloc(t->arena, t->room);
	}
	t->off[t->n] = t->used;
	memcpy(t->arena + t->used, &line, sizeof line);
	memcpy(t->arena + t->used + sizeof line, id, len);
	t->used += sizeof line + len;
}

/* Insert an id seen on `line`. A load passes the row index `row` of t->m
 * (its cells must stay in place while the table lives; m->rows may move; row
 * indices, not pointers, keep the table at 4 bytes a slot); a count passes
 * -1 and the id is copied. Returns 0, or the line where the id was first
 * seen. */
static int ids_insert(struct id_table *t, const char *id, int line, int row)
{
	if (2 * (t->n + 1) > t->cap)
		ids_grow(t);
	size_t j = fnv1a(id) & (t->cap - 1);
	while (t->slot[j]) {
		if (strcmp(ids_key(t, t->slot[j]), id) == 0)
			return ids_line(t, t->slot[j]);
		j = (j + 1) & (t->cap - 1);
	}
	if (t->m)
		t->slot[j] = (uint32_t)row + 1;
	else {
		ids_keep(t, id, line);
		t->slot[j] = (uint32_t)t->n + 1;
	}
	t->n++;
	return 0;
}

static void ids_release(struct id_table *t)
{
	free(t->slot);
	free(t->off);
	free(t->arena);
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
	for (int r = 0; m->rows && r < m->nrows; r++)
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

/* Pages of a mapped manifest dropped behind the parse cursor every this
 * many bytes (manifest_count). */
#define DROP_WINDOW ((size_t)4 << 20)

/* Give back the whole pages of a mapped manifest before p->i: they have been
 * parsed (every record copies its fields out), so the mapping's resident
 * size stays under DROP_WINDOW plus a page however large the file is. */
static void csv_drop(struct csv *p, size_t *dropped)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t end = p->i / page * page;
	if (end <= *dropped)
		return;
	madvise((char *)p->s + *dropped, end - *dropped, MADV_DONTNEED);
	*dropped = end;
}

/*
 * The reader's one pass over a manifest's text: header, then every record,
 * each bad one reported and counted. keep: the rows' cells are kept in
 * m->rows (a load); else only their ids, in the id table's arena, and
 * m->nrows just counts (a count). mapped: text is a page-aligned read-only
 * mapping whose parsed pages may be dropped.
 */
static int parse_text(struct manifest *m, const char *text, size_t len, const char *path,
		      int keep, int mapped)
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
	struct id_table ids = { .m = keep ? m : NULL };
	int cap = 0;
	size_t dropped = 0;
	if (read_header(m, &p, &r)) {
		rec_release(&r);
		manifest_release(m);
		return -1;
	}
	while (csv_next(&p, &r)) {
		if (mapped && p.i - dropped >= DROP_WINDOW)
			csv_drop(&p, &dropped);
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
		if (keep) {
			if (m->nrows == cap) {
				cap = cap ? 2 * cap : 64;
				m->rows = xrealloc(m->rows, (size_t)cap * sizeof *m->rows);
			}
			m->rows[m->nrows].line = r.line;
			m->rows[m->nrows].cells = row_cells(&r, m->ncols);
		}
		int first = ids_insert(&ids, id, r.line, m->nrows);
		if (first) {
			report(&rp, r.line, "duplicate id '%s' (first at line %d)", id, first);
			if (keep)
				free(m->rows[m->nrows].cells);
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

int manifest_parse(struct manifest *m, const char *text, size_t len, const char *path)
{
	return parse_text(m, text, len, path, 1, 0);
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

/* Count from text read whole, as manifest_load reads it: the files that are
 * not mapped (empty, not regular, or mmap refused) and their errors. */
static int count_read(struct manifest *m, const char *path)
{
	size_t len;
	char *text = read_file(path, &len);
	if (!text)
		return mke_error("manifest '%s' cannot be read", path);
	int rc = parse_text(m, text, len, path, 0, 0);
	free(text);
	return rc;
}

int manifest_count(const char *path, int *rows, int *bad)
{
	struct manifest m;
	memset(&m, 0, sizeof m);
	*rows = *bad = 0;
	struct stat st;
	void *map = MAP_FAILED;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (uintmax_t)st.st_size <= SIZE_MAX)
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (fd >= 0)
		close(fd);
	int rc;
	if (map == MAP_FAILED) {
		rc = count_read(&m, path);
	} else {
		madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
		rc = parse_text(&m, map, (size_t)st.st_size, path, 0, 1);
		munmap(map, (size_t)st.st_size);
	}
	if (rc)
		return -1;
	*rows = m.nrows;
	*bad = m.nbad;
	m.nrows = 0; /* counted, not held */
	manifest_release(&m);
	return 0;
}

/* ---- datasets --------------------------------------------------------------- */

/* A growable float vector for one decoded cell, with its (F, C, H, W). */
struct vec {
	float *v;
	size_t n, cap;
	int shape[4];
};

static void vec_push(struct vec *a, float x)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->v = xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = x;
}

static void set_shape(int shape[4], int f, int c, int h, int w)
{
	shape[0] = f;
	shape[1] = c;
	shape[2] = h;
	shape[3] = w;
}

/* Hand a decoded buffer of n floats over to out. */
static void vec_take(struct vec *out, float *v, size_t n)
{
	free(out->v);
	out->v = v;
	out->n = out->cap = n;
}

/* ---- where path cells may lead ------------------------------------------------ */

/*
 * A path cell that is relative and has no ".." component stays under the
 * manifest's directory and is opened as it is (symbolic links inside the
 * data are the data owner's to place). An absolute path, or one with "..",
 * is resolved with realpath() (symbolic links and all) and must then lie
 * under the manifest's directory or the data root, both resolved the same
 * way; otherwise the row is quarantined. MKE_ALLOW_OUTSIDE_PATHS=1 in the
 * environment lifts the rule. A path that does not resolve (a missing file)
 * is left to the decoder, which reports it as missing. URL cells are fetched
 * into the cache and are not paths in this sense.
 */
struct confine {
	int allow;           /* MKE_ALLOW_OUTSIDE_PATHS=1 */
	char *dir, *root;    /* realpath() of the manifest's directory and the data root */
	const char *dir_name, *root_name;   /* as given, for messages */
};

static void confine_init(struct confine *cf, const char *dir, const char *root)
{
	const char *e = getenv("MKE_ALLOW_OUTSIDE_PATHS");
	cf->allow = e && strcmp(e, "1") == 0;
	cf->dir_name = dir && dir[0] ? dir : ".";
	cf->root_name = root && root[0] ? root : cf->dir_name;
	cf->dir = realpath(cf->dir_name, NULL);
	cf->root = realpath(cf->root_name, NULL);
}

static void confine_release(struct confine *cf)
{
	free(cf->dir);
	free(cf->root);
}

static int has_dotdot(const char *p)
{
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return 1;
		s += n;
		while (*s == '/')
			s++;
	}
	return 0;
}

static int path_under(const char *base, const char *p)
{
	if (!base)
		return 0;
	size_t n = strlen(base);
	if (n == 1 && base[0] == '/')
		return 1;
	return strncmp(base, p, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

/* 0 when cell, resolved to path, may be opened; -1 with why[] set. */
static int confine_check(const struct confine *cf, const char *cell, const char *path, char *why,
			 size_t nwhy)
{
	if (cf->allow || (cell[0] != '/' && !has_dotdot(cell)))
		return 0;
	char *real = realpath(path, NULL);
	if (!real)
		return 0;
	int ok = path_under(cf->dir, real) || path_under(cf->root, real);
	free(real);
	if (ok)
		return 0;
	snprintf(why, nwhy, "cannot load '%.200s': the path leads outside the manifest's "
		 "directory '%.200s' and the data root '%.200s'; move the file under one of "
		 "them, set data.root to a directory that holds it, or set "
		 "MKE_ALLOW_OUTSIDE_PATHS=1 to allow paths outside them",
		 path, cf->dir_name, cf->root_name);
	return -1;
}

/* The file a path cell names: the fetched copy when there is one, else the
 * cell resolved against dir and confined. NULL with why[] set. */
static char *cell_path(const char *cell, const char *fetched, const char *dir,
		       const struct confine *cf, char *why, size_t nwhy)
{
	if (fetched)
		return xstrdup(fetched);
	if (!cell[0]) {
		snprintf(why, nwhy, "is empty");
		return NULL;
	}
	char *path = path_join(dir, cell);
	if (confine_check(cf, cell, path, why, nwhy)) {
		free(path);
		return NULL;
	}
	return path;
}

/* ---- cell decoders -------------------------------------------------------------- */

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
	if (out->n > (size_t)INT_MAX) {
		snprintf(why, nwhy, "has too many values");
		return -1;
	}
	set_shape(out->shape, 1, 1, 1, (int)out->n);
	return 0;
}

/* An .npy file: shape (1, 1, 1, n) for 0 or 1 dims; 2-4 dims keep their
 * trailing dims; more fold the leading ones into F. */
static int decode_npy(const char *path, struct vec *out, char *why, size_t nwhy)
{
	out->n = 0;
	struct npy_array a;
	memset(&a, 0, sizeof a);
	if (npy_load(&a, path)) {
		snprintf(why, nwhy, "cannot load '%.200s'", path);
		return -1;
	}
	int rc = 0;
	if (a.count > (size_t)(1 << 30)) {
		snprintf(why, nwhy, "'%.200s' has %zu values, too many for one sample", path,
			 a.count);
		rc = -1;
	} else if (!a.count) {
		snprintf(why, nwhy, "'%.200s' holds no values", path);
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
		int s[4] = { 1, 1, 1, 1 };
		int nd = a.ndim;
		for (int i = 0; i < nd; i++) {
			int slot = 4 - nd + i;
			if (slot < 0)
				s[0] *= (int)a.shape[i];
			else if (slot == 0)
				s[0] *= (int)a.shape[i];
			else
				s[slot] = (int)a.shape[i];
		}
		memcpy(out->shape, s, sizeof s);
		free(out->v);
		out->v = a.data;
		out->n = out->cap = a.count;
		a.data = NULL;
	}
	npy_release(&a);
	return rc;
}

/* Does name end in one of exts (case-insensitive)? */
static int has_ext(const char *name, const char *const *exts)
{
	size_t n = strlen(name);
	for (int i = 0; exts[i]; i++) {
		size_t e = strlen(exts[i]);
		if (n > e && strcasecmp(name + n - e, exts[i]) == 0)
			return 1;
	}
	return 0;
}

static const char *const video_exts[] = { ".mp4", ".mkv", ".webm", ".avi", NULL };
static const char *const av_audio_exts[] = { ".mp4", ".m4a", ".mkv", ".webm", NULL };
static const char *const frame_exts[] = { ".jpg", ".jpeg", ".png", NULL };

/* Audio samples to the log-spectrogram of spectrogram.h (1 x 257 x T,
 * z-scored), tiled or cropped to the modality's duration first. Takes x. */
static int audio_to_spectrogram(const struct modality_spec *ms, const char *path, float *x,
				size_t n, struct spectrogram *sp, struct vec *out, char *why,
				size_t nwhy)
{
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
		snprintf(why, nwhy, "'%.200s' has %zu samples at %d Hz, fewer than one %d-point "
			 "window (set 'seconds' to tile short clips)", path, n, ms->sample_rate,
			 SPEC_NPERSEG);
		free(x);
		return -1;
	}
	if (T > (size_t)INT_MAX) {
		snprintf(why, nwhy, "'%.200s' is too long", path);
		free(x);
		return -1;
	}
	float *s = xmalloc((size_t)SPEC_NFREQ * T * sizeof *s);
	spectrogram_compute(sp, x, n, ms->sample_rate, 1, s);
	free(x);
	vec_take(out, s, (size_t)SPEC_NFREQ * T);
	set_shape(out->shape, 1, 1, SPEC_NFREQ, (int)T);
	return 0;
}

/* Nearest-neighbour resize of an h x w map of ids to th x tw: source index
 * floor(dst * in / out), PyTorch's F.interpolate(mode='nearest'). */
static int *ids_resize(const int *src, int h, int w, int th, int tw)
{
	int *dst = xmalloc((size_t)th * (size_t)tw * sizeof *dst);
	for (int y = 0; y < th; y++) {
		int sy = (int)((int64_t)y * h / th);
		for (int x = 0; x < tw; x++)
			dst[(size_t)y * tw + x] = src[(size_t)sy * w + (int)((int64_t)x * w / tw)];
	}
	return dst;
}

/*
 * An image, depth, labelmap or audio cell at path (name: the cell as written,
 * whose extension picks the audio decoder). Images and depth maps are resized
 * when the modality gives height and width (bilinear) and flattened C x H x W;
 * label maps likewise with nearest-neighbour, their raw ids as floats;
 * audio is resampled to the modality's rate, tiled or cropped to its duration
 * when it gives one, and turned into the log-spectrogram of spectrogram.h
 * (257 x T, z-scored). The decoders report why a file fails (naming it);
 * why[] gets the line for the manifest's report.
 */
static int decode_media(const struct modality_spec *ms, const char *name, const char *path,
			struct spectrogram *sp, struct vec *out, char *why, size_t nwhy)
{
	out->n = 0;
	int rc = 0;
	if (ms->kind == MOD_IMAGE || ms->kind == MOD_DEPTH) {
		struct media_image im;
		rc = ms->kind == MOD_IMAGE ? image_load(&im, path, ms->channels)
					   : depth_load(&im, path);
		if (!rc) {
			if (ms->height)
				image_resize(&im, ms->height, ms->width);
			vec_take(out, im.x, (size_t)im.c * (size_t)im.h * (size_t)im.w);
			set_shape(out->shape, 1, im.c, im.h, im.w);
		}
	} else if (ms->kind == MOD_LABELMAP) {
		int *ids, h, w;
		rc = labelmap_load(&ids, &h, &w, path);
		if (!rc) {
			if (ms->height && (h != ms->height || w != ms->width)) {
				int *r = ids_resize(ids, h, w, ms->height, ms->width);
				free(ids);
				ids = r;
				h = ms->height;
				w = ms->width;
			}
			size_t n = (size_t)h * (size_t)w;
			float *x = xmalloc(n * sizeof *x);
			for (size_t i = 0; i < n; i++)
				x[i] = (float)ids[i];
			free(ids);
			vec_take(out, x, n);
			set_shape(out->shape, 1, 1, h, w);
		}
	} else {
		float *x;
		size_t n;
		if (has_ext(name, av_audio_exts)) {
#ifdef MKE_HAVE_AV
			char avwhy[600] = "";
			if (av_decode_audio(path, ms->sample_rate, &x, &n, avwhy, sizeof avwhy)) {
				snprintf(why, nwhy, "cannot decode '%.200s': %.600s", path, avwhy);
				return -1;
			}
#else
			snprintf(why, nwhy, "cannot decode '%.200s': audio in .mp4, .m4a, .mkv or "
				 ".webm files needs the video decoder (common/av.h), which this build "
				 "lacks", path);
			return -1;
#endif
		} else if (audio_load(path, ms->sample_rate, &x, &n, NULL)) {
			rc = -1;
		}
		if (!rc)
			return audio_to_spectrogram(ms, path, x, n, sp, out, why, nwhy);
	}
	if (rc)
		snprintf(why, nwhy, "cannot decode '%.200s'", path);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a frames cell: a folder's .jpg/.jpeg/.png files sorted by
 * name (dot files skipped), or a ';'-separated list, each confined like a
 * path cell. Returns the count (> 0), or -1 with why[] set. */
static int frame_files(const char *cell, const char *fetched, const char *dir,
		       const struct confine *cf, char ***files, char *why, size_t nwhy)
{
	*files = NULL;
	int n = 0, cap = 0;
	if (!fetched && strchr(cell, ';')) {
		const char *s = cell;
		for (;;) {
			size_t len = strcspn(s, ";");
			while (len && isspace((unsigned char)*s)) {
				s++;
				len--;
			}
			size_t e = len;
			while (e && isspace((unsigned char)s[e - 1]))
				e--;
			char *item = xasprintf("%.*s", (int)e, s);
			char *p = item[0] ? cell_path(item, NULL, dir, cf, why, nwhy) : NULL;
			if (!item[0])
				snprintf(why, nwhy, "has an empty item in its list of frames");
			free(item);
			if (!p)
				goto fail;
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				*files = xrealloc(*files, (size_t)cap * sizeof **files);
			}
			(*files)[n++] = p;
			s += len;
			if (*s != ';')
				break;
			s++;
		}
		return n;
	}
	char *path = cell_path(cell, fetched, dir, cf, why, nwhy);
	if (!path)
		return -1;
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(why, nwhy, "cannot load '%.200s': %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*files = xmalloc(sizeof **files);
		(*files)[0] = path;
		return 1;
	}
	DIR *dp = opendir(path);
	if (!dp) {
		snprintf(why, nwhy, "cannot open the frame folder '%.200s': %s", path,
			 strerror(errno));
		free(path);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(dp))) {
		if (de->d_name[0] == '.' || !has_ext(de->d_name, frame_exts))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			*files = xrealloc(*files, (size_t)cap * sizeof **files);
		}
		(*files)[n++] = xstrdup(de->d_name);
	}
	closedir(dp);
	if (!n) {
		snprintf(why, nwhy, "the frame folder '%.200s' holds no .jpg, .jpeg or .png file",
			 path);
		free(path);
		free(*files);
		*files = NULL;
		return -1;
	}
	qsort(*files, (size_t)n, sizeof **files, cmp_str);
	for (int i = 0; i < n; i++) {
		char *p = path_join(path, (*files)[i]);
		free((*files)[i]);
		(*files)[i] = p;
	}
	free(path);
	return n;
fail:
	for (int i = 0; i < n; i++)
		free((*files)[i]);
	free(*files);
	*files = NULL;
	return -1;
}

/* Frame i of F taken from n: the middle of the i-th of F equal segments,
 * floor((2i + 1) n / 2F) (n < F repeats frames). */
static int frame_index(int i, int F, int n)
{
	return (int)((int64_t)(2 * i + 1) * n / (2 * (int64_t)F));
}

/*
 * A frames cell: a folder of frames, a ';'-separated list of frame files, or
 * a video file (.mp4, .mkv, .webm, .avi: common/av.h). F = the modality's
 * frames are taken uniformly (frame_index), decoded as RGB in [0, 1] like the
 * image kind and resized bilinearly to the modality's height x width (absent:
 * the first sampled frame's size): F x 3 x H x W.
 */
static int decode_frames(const struct modality_spec *ms, const char *cell, const char *fetched,
			 const char *dir, const struct confine *cf, struct vec *out, char *why,
			 size_t nwhy)
{
	out->n = 0;
	int F = ms->frames > 0 ? ms->frames : 8;
	if (!cell[0]) {
		snprintf(why, nwhy, "is empty");
		return -1;
	}
	if (has_ext(cell, video_exts)) {
		char *path = cell_path(cell, fetched, dir, cf, why, nwhy);
		if (!path)
			return -1;
#ifdef MKE_HAVE_AV
		if (!ms->height) {
			snprintf(why, nwhy, "'%.200s' is a video: the modality needs 'height' and "
				 "'width' to decode it", path);
			free(path);
			return -1;
		}
		size_t n = (size_t)F * 3 * (size_t)ms->height * (size_t)ms->width;
		float *x = xmalloc(n * sizeof *x);
		char avwhy[600] = "";
		if (av_decode_frames(path, F, ms->height, ms->width, x, avwhy, sizeof avwhy)) {
			snprintf(why, nwhy, "cannot decode '%.200s': %.600s", path, avwhy);
			free(x);
			free(path);
			return -1;
		}
		vec_take(out, x, n);
		set_shape(out->shape, F, 3, ms->height, ms->width);
		free(path);
		return 0;
#else
		snprintf(why, nwhy, "cannot decode '%.200s': video files need the video decoder "
			 "(common/av.h), which this build lacks; give a folder of frames", path);
		free(path);
		return -1;
#endif
	}
	char **files;
	int n = frame_files(cell, fetched, dir, cf, &files, why, nwhy);
	if (n < 0)
		return -1;
	int rc = 0, H = ms->height, W = ms->width, prev = -1;
	size_t plane = 0;
	float *x = NULL;
	for (int i = 0; i < F && !rc; i++) {
		int j = frame_index(i, F, n);
		if (j == prev) {
			memcpy(x + (size_t)i * plane, x + (size_t)(i - 1) * plane,
			       plane * sizeof *x);
			continue;
		}
		prev = j;
		struct media_image im;
		if (image_load(&im, files[j], 3)) {
			snprintf(why, nwhy, "cannot decode frame '%.200s'", files[j]);
			rc = -1;
			break;
		}
		if (!x) {
			if (!H) {
				H = im.h;
				W = im.w;
			}
			plane = (size_t)3 * (size_t)H * (size_t)W;
			if (plane > ((size_t)1 << 30) / (size_t)F) {
				snprintf(why, nwhy, "%d frames of 3 x %d x %d are too many values for "
					 "one sample", F, H, W);
				media_image_release(&im);
				rc = -1;
				break;
			}
			x = xmalloc((size_t)F * plane * sizeof *x);
		}
		image_resize(&im, H, W);
		memcpy(x + (size_t)i * plane, im.x, plane * sizeof *x);
		media_image_release(&im);
	}
	for (int i = 0; i < n; i++)
		free(files[i]);
	free(files);
	if (rc) {
		free(x);
		return -1;
	}
	vec_take(out, x, (size_t)F * plane);
	set_shape(out->shape, F, 3, H, W);
	return 0;
}

/* ---- URL cells ------------------------------------------------------------------ */

/*
 * Fetch the URL cells of the file-backed columns as one batch: col[k] for k
 * < ncol (-1: skip). path[k][r] and err[k][r] get row r's cached file or why
 * it could not be fetched (both NULL for a cell that is not a URL); path[k]
 * stays NULL when the column has no URL. A column '<column>_sha256', or
 * 'sha256' for the first column, gives the digest a URL's content must have
 * (an empty cell: no check).
 */
/* A file:// URL's local path, percent-escapes decoded (what libcurl opens);
 * NULL when the URL names another host. Caller frees. */
static char *file_url_path(const char *url)
{
	const char *p = url + 7;
	if (strncmp(p, "localhost/", 10) == 0)
		p += 9;
	if (*p != '/')
		return NULL;
	char *out = xmalloc(strlen(p) + 1), *o = out;
	for (; *p; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = { p[1], p[2], 0 };
			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static void fetch_cells(const struct manifest *m, const struct run_config *c, int ncol,
			const int *col, const struct confine *cf, char **path[], char **err[])
{
	size_t cap = (size_t)ncol * (size_t)m->nrows + 1;
	const char **urls = xmalloc(cap * sizeof *urls), **shas = xmalloc(cap * sizeof *shas);
	int *where = xmalloc(cap * sizeof *where), n = 0;
	for (int k = 0; k < ncol; k++) {
		if (col[k] < 0)
			continue;
		char *name = xasprintf("%s_sha256", m->cols[col[k]]);
		int sc = manifest_col(m, name);
		free(name);
		if (sc < 0 && k == 0)
			sc = manifest_col(m, "sha256");
		for (int r = 0; r < m->nrows; r++) {
			const char *s = m->rows[r].cells[col[k]];
			if (!fetch_is_url(s))
				continue;
			/* a file:// URL reads a local file: the paths' confinement holds */
			if (strncmp(s, "file://", 7) == 0) {
				char why[1024] = "";
				char *fp = file_url_path(s);
				int refused = fp && confine_check(cf, fp, fp, why, sizeof why) != 0;
				free(fp);
				if (refused) {
					if (!path[k]) {
						path[k] = xcalloc((size_t)m->nrows, sizeof *path[k]);
						err[k] = xcalloc((size_t)m->nrows, sizeof *err[k]);
					}
					err[k][r] = xstrdup(why);
					continue;
				}
			}
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
		o.progress = "fetch";
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

/* ---- labels ---------------------------------------------------------------------- */

/* Class index of a label (len bytes at s, spaces trimmed): -1 empty, -2 unknown. */
static int decode_class(const char *s, size_t n, const struct run_config *c)
{
	while (n && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (!n)
		return -1;
	for (int k = 0; k < c->nclass_names; k++)
		if (strlen(c->class_names[k]) == n && strncmp(c->class_names[k], s, n) == 0)
			return k;
	char buf[32];
	if (n >= sizeof buf)
		return -2;
	memcpy(buf, s, n);
	buf[n] = '\0';
	long v;
	if (parse_long(buf, &v) == 0 && v >= 0 && v < c->classes)
		return (int)v;
	return -2;
}

static int decode_label(const char *cell, const struct run_config *c)
{
	return decode_class(cell, strlen(cell), c);
}

/* A multi-label cell "a;b;c" (names or indices) into the multi-hot row hot
 * (classes floats, zeroed here). Returns the first class listed, -1 for an
 * empty cell, -2 with why[] set for an unknown or empty item. */
static int decode_multi(const char *cell, const struct run_config *c, float *hot, char *why,
			size_t nwhy)
{
	memset(hot, 0, (size_t)c->classes * sizeof *hot);
	const char *s = cell;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		return -1;
	int first = -1;
	for (;;) {
		size_t len = strcspn(s, ";");
		int k = decode_class(s, len, c);
		if (k < 0) {
			if (k == -1)
				snprintf(why, nwhy, "empty class in the label list '%.100s'", cell);
			else
				snprintf(why, nwhy, "unknown label '%.*s' in '%.100s'",
					 (int)(len > 60 ? 60 : len), s, cell);
			return -2;
		}
		hot[k] = 1;
		if (first < 0)
			first = k;
		s += len;
		if (*s != ';')
			break;
		s++;
	}
	return first;
}

/*
 * A segmentation target: the label map at path mapped to class ids (value
 * == ignore_value -> -1, else value - first_class, -1 when outside [0,
 * classes); *nout counts those) and resized nearest-neighbour to th x tw
 * (0: the file's size, returned in *th, *tw). *ids is owned by the caller.
 */
static int decode_target(const struct run_config *c, const char *path, int **ids, int *th,
			 int *tw, size_t *nout, char *why, size_t nwhy)
{
	int *v, h, w;
	*ids = NULL;
	*nout = 0;
	if (labelmap_load(&v, &h, &w, path)) {
		snprintf(why, nwhy, "cannot decode '%.200s'", path);
		return -1;
	}
	size_t n = (size_t)h * (size_t)w;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == c->target.ignore_value) {
			v[i] = -1;
			continue;
		}
		int64_t k = (int64_t)v[i] - c->target.first_class;
		if (k < 0 || k >= c->classes) {
			v[i] = -1;
			(*nout)++;
		} else {
			v[i] = (int)k;
		}
	}
	if (!*th) {
		*th = h;
		*tw = w;
	} else if (h != *th || w != *tw) {
		int *r = ids_resize(v, h, w, *th, *tw);
		free(v);
		v = r;
	}
	*ids = v;
	return 0;
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

static void src_free(struct dataset_src *s);

void dataset_release(struct dataset *d)
{
	for (int k = 0; k < 2; k++)
		free(d->x[k]);
	free(d->labels);
	free(d->pixel_labels);
	free(d->multi);
	free(d->ids);
	if (d->names)
		for (int i = 0; i < d->n; i++)
			free(d->names[i]);
	free(d->names);
	free(d->row);
	src_free(d->src);
	memset(d, 0, sizeof *d);
}

/* Decode a cell of modality ms into out. */
static int decode_cell(const struct modality_spec *ms, const char *cell, const char *fetched,
		       const char *dir, const struct confine *cf, struct spectrogram *sp,
		       struct vec *out, char *why, size_t nwhy)
{
	if (ms->kind == MOD_INLINE)
		return decode_inline(cell, out, why, nwhy);
	if (ms->kind == MOD_FRAMES)
		return decode_frames(ms, cell, fetched, dir, cf, out, why, nwhy);
	char *path = cell_path(cell, fetched, dir, cf, why, nwhy);
	if (!path)
		return -1;
	int rc = ms->kind == MOD_NPY ? decode_npy(path, out, why, nwhy)
				     : decode_media(ms, cell, path, sp, out, why, nwhy);
	free(path);
	return rc;
}

static const char *shape_text(const int s[4], char *buf, size_t n)
{
	snprintf(buf, n, "%d x %d x %d x %d", s[0], s[1], s[2], s[3]);
	return buf;
}

/* ---- lazy modalities: the sample source ---------------------------------------- */

/*
 * What a dataset keeps to decode its lazy modalities again: the manifest's
 * rows, the fetched copies of URL cells, the modality specs, the confinement
 * of paths, and the LRU cache of decoded rows (key row * 2 + modality). One
 * lock guards the cache and the late-quarantine record; decoding runs outside
 * it, so a prefetch thread and the caller decode at once.
 */
struct dataset_src {
	struct manifest m;
	struct modality_spec mod[2];   /* copies; column names owned */
	int col[2];
	int lazy[2];
	char **fpath[2];               /* (m.nrows) fetched files of URL cells, or NULL */
	char *root;
	struct confine cf;
	struct sample_cache cache;
	pthread_mutex_t lock;
	unsigned char *late;           /* (m.nrows) quarantined after the load */
	long nlate;
	struct reporter rp;
};

/* FFTW's planner is not thread-safe: plans are made and destroyed under this. */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

static int sp_init(struct spectrogram *sp)
{
	pthread_mutex_lock(&plan_lock);
	int rc = spectrogram_init(sp);
	pthread_mutex_unlock(&plan_lock);
	return rc;
}

static void sp_release(struct spectrogram *sp)
{
	pthread_mutex_lock(&plan_lock);
	spectrogram_release(sp);
	pthread_mutex_unlock(&plan_lock);
}

size_t dataset_cache_bytes(const struct run_config *c)
{
	size_t mb = c->cache_mb > 0 ? (size_t)c->cache_mb : DATASET_CACHE_MB_DEFAULT;
	return mb << 20;
}

static void src_free(struct dataset_src *s)
{
	if (!s)
		return;
	report_flush(&s->rp);
	if (s->nlate)
		mke_warn("manifest '%s': %ld row%s quarantined after the load (their files no "
			 "longer decode); they read as zeros", s->m.path, s->nlate,
			 s->nlate == 1 ? "" : "s");
	for (int k = 0; k < 2; k++) {
		free(s->mod[k].column);
		for (int r = 0; s->fpath[k] && r < s->m.nrows; r++)
			free(s->fpath[k][r]);
		free(s->fpath[k]);
	}
	confine_release(&s->cf);
	free(s->root);
	cache_release(&s->cache);
	pthread_mutex_destroy(&s->lock);
	free(s->late);
	manifest_release(&s->m);
	free(s);
}

/* Quarantine source row r after the load: reported once, counted. */
static void src_late(struct dataset_src *s, int r, int k, const char *why)
{
	pthread_mutex_lock(&s->lock);
	if (!s->late[r]) {
		s->late[r] = 1;
		s->nlate++;
		report(&s->rp, s->m.rows[r].line, "column '%s': %s (quarantined after the load; "
		       "the sample reads as zeros)", s->mod[k].column, why);
	}
	pthread_mutex_unlock(&s->lock);
}

int dataset_row(const struct dataset *d, int k, int i, float *out)
{
	size_t n = (size_t)d->dim[k];
	if (d->x[k]) {
		memcpy(out, d->x[k] + (size_t)i * n, n * sizeof(float));
		return 0;
	}
	struct dataset_src *s = d->src;
	int r = d->row[i], key = r * 2 + k, hit, late;
	pthread_mutex_lock(&s->lock);
	late = s->late[r];
	hit = !late && cache_get(&s->cache, key, out, n);
	pthread_mutex_unlock(&s->lock);
	if (hit)
		return 0;
	if (late) {
		memset(out, 0, n * sizeof(float));
		return -1;
	}
	const struct modality_spec *ms = &s->mod[k];
	struct spectrogram sp;
	int have_sp = ms->kind == MOD_AUDIO;
	struct vec v = { 0 };
	char why[1200] = "";
	int bad;
	if (have_sp && sp_init(&sp)) {
		snprintf(why, sizeof why, "cannot make the spectrogram's FFT plan");
		have_sp = 0;
		bad = 1;
	} else {
		bad = decode_cell(ms, s->m.rows[r].cells[s->col[k]],
				  s->fpath[k] ? s->fpath[k][r] : NULL, s->m.dir, &s->cf,
				  have_sp ? &sp : NULL, &v, why, sizeof why);
	}
	if (have_sp)
		sp_release(&sp);
	if (!bad && (v.n != n || memcmp(v.shape, d->shape[k], sizeof v.shape) != 0)) {
		snprintf(why, sizeof why, "decodes to %zu values, the load had %zu", v.n, n);
		bad = 1;
	}
	if (bad) {
		free(v.v);
		src_late(s, r, k, why);
		memset(out, 0, n * sizeof(float));
		return -1;
	}
	memcpy(out, v.v, n * sizeof(float));
	pthread_mutex_lock(&s->lock);
	cache_put(&s->cache, key, v.v, n);
	pthread_mutex_unlock(&s->lock);
	free(v.v);
	return 0;
}

void dataset_stats(const struct dataset *d, struct dataset_stats *st)
{
	memset(st, 0, sizeof *st);
	struct dataset_src *s = d->src;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	st->hits = s->cache.hits;
	st->misses = s->cache.misses;
	st->evictions = s->cache.evictions;
	st->late = s->nlate;
	st->cached = s->cache.used;
	st->budget = s->cache.budget;
	pthread_mutex_unlock(&s->lock);
	st->lazy = s->lazy[0] + s->lazy[1];
}

void dataset_subset(struct dataset *d, const unsigned char *keep)
{
	int j = 0;
	size_t hw = (size_t)d->label_h * (size_t)d->label_w;
	for (int i = 0; i < d->n; i++) {
		if (!keep[i]) {
			free(d->names[i]);
			continue;
		}
		for (int k = 0; k < d->nmod; k++)
			if (d->x[k])
				memmove(d->x[k] + (size_t)j * d->dim[k], d->x[k] + (size_t)i * d->dim[k],
					sizeof(float) * (size_t)d->dim[k]);
		if (d->row)
			d->row[j] = d->row[i];
		if (d->labels)
			d->labels[j] = d->labels[i];
		if (d->multi)
			memmove(d->multi + (size_t)j * d->classes, d->multi + (size_t)i * d->classes,
				sizeof(float) * (size_t)d->classes);
		if (d->pixel_labels)
			memmove(d->pixel_labels + j * hw, d->pixel_labels + i * hw, sizeof(int) * hw);
		d->ids[j] = d->ids[i];
		d->names[j] = d->names[i];
		j++;
	}
	d->n = j;
}

int dataset_load(struct dataset *d, const struct run_config *c, const char *manifest_path,
		 int nmod)
{
	return dataset_open(d, c, manifest_path, nmod, dataset_cache_bytes(c));
}

/* A source for the lazy modalities of a dataset being loaded from m (rows
 * are cached as the load decodes them; the rest is handed over at the end). */
static struct dataset_src *src_new(const struct run_config *c, const struct manifest *m,
				   int nmod, const int *col, size_t cache_bytes)
{
	struct dataset_src *s = xcalloc(1, sizeof *s);
	for (int k = 0; k < nmod; k++) {
		s->mod[k] = c->mod[k];
		s->mod[k].column = xstrdup(c->mod[k].column);
		s->col[k] = col[k];
		s->lazy[k] = c->mod[k].kind != MOD_INLINE;
	}
	s->root = c->data_root ? xstrdup(c->data_root) : NULL;
	cache_init(&s->cache, m->nrows * 2, cache_bytes);
	pthread_mutex_init(&s->lock, NULL);
	s->late = xcalloc((size_t)m->nrows + 1, 1);
	return s;
}

int dataset_open(struct dataset *d, const struct run_config *c, const char *manifest_path,
		 int nmod, size_t cache_bytes)
{
	memset(d, 0, sizeof *d);
	if (nmod < 1 || nmod > 2)
		return mke_error("dataset '%s': %d modalities asked for; 1 or 2 are possible",
				 manifest_path, nmod);
	if (nmod > c->nmod)
		return mke_error("config '%s': modality b is needed for '%s' but "
				 "data.modalities does not declare it", c->path, manifest_path);
	for (int k = 0; k < nmod; k++)
		if (!modality_kind_name(c->mod[k].kind))
			return mke_error("config '%s': data.modalities.%c: unknown kind %d",
					 c->path, 'a' + k, (int)c->mod[k].kind);
	struct manifest m;
	if (manifest_load(&m, manifest_path))
		return -1;
	d->nbad = m.nbad;
	struct spectrogram sp;
	int have_sp = 0;
	for (int k = 0; k < nmod && !have_sp; k++) {
		if (c->mod[k].kind != MOD_AUDIO)
			continue;
		if (sp_init(&sp)) {
			manifest_release(&m);
			return -1;
		}
		have_sp = 1;
	}
	/* col[0], col[1]: the modalities; col[2]: the segmentation target */
	int col[3] = { -1, -1, -1 };
	for (int k = 0; k < nmod; k++) {
		col[k] = manifest_col(&m, c->mod[k].column);
		if (col[k] < 0) {
			mke_error("manifest '%s' has no column '%s' (modality %c in config '%s')",
				  manifest_path, c->mod[k].column, 'a' + k, c->path);
			if (have_sp)
				sp_release(&sp);
			manifest_release(&m);
			return -1;
		}
	}
	int seg = c->task == TASK_SEGMENT && c->target.column;
	if (seg)
		col[2] = manifest_col(&m, c->target.column);
	int multi = c->task == TASK_MULTILABEL && m.label_col >= 0;

	size_t cap = m.nrows ? (size_t)m.nrows : 1;
	d->nmod = nmod;
	d->classes = c->classes;
	d->prefetch = c->prefetch;
	d->ids = xmalloc(cap * sizeof *d->ids);
	d->names = xcalloc(cap, sizeof *d->names);
	if (m.label_col >= 0)
		d->labels = xmalloc(cap * sizeof *d->labels);
	if (multi)
		d->multi = xcalloc(cap * (size_t)c->classes, sizeof *d->multi);
	for (int k = 0; k < nmod; k++)
		d->dim[k] = c->mod[k].dim;
	if (seg) {
		d->label_h = c->target.height;
		d->label_w = c->target.width;
	}

	int fcol[3] = { -1, -1, -1 };
	for (int k = 0; k < 3; k++)
		if (col[k] >= 0 && (k == 2 || c->mod[k].kind != MOD_INLINE))
			fcol[k] = col[k];
	char **fpath[3] = { NULL, NULL, NULL }, **ferr[3] = { NULL, NULL, NULL };
	struct confine cf;
	confine_init(&cf, m.dir, c->data_root);
	fetch_cells(&m, c, 3, fcol, &cf, fpath, ferr);
	struct reporter rp = { .path = manifest_path };
	struct vec cell[2] = { { 0 }, { 0 } };
	float *hot = multi ? xmalloc((size_t)c->classes * sizeof *hot) : NULL;
	int *tids = NULL, nout_maps = 0;
	int rc = 0, nrows = m.nrows;
	struct meter dm;
	meter_start(&dm, "decode", "rows", m.nrows);
	for (int r = 0; r < m.nrows; r++) {
		const struct manifest_row *row = &m.rows[r];
		char why[1200] = "";
		meter_update(&dm, r, 0);
		int bad = 0, label = -1;
		if (m.label_col >= 0) {
			const char *lc = row->cells[m.label_col];
			if (multi) {
				label = decode_multi(lc, c, hot, why, sizeof why);
				if (label == -2) {
					report(&rp, row->line, "%s", why);
					d->nquarantined++;
					continue;
				}
			} else {
				label = decode_label(lc, c);
				if (label == -2) {
					report(&rp, row->line, "unknown label '%.100s'", lc);
					d->nquarantined++;
					continue;
				}
			}
		}
		for (int k = 0; k < nmod && !bad; k++) {
			const char *s = row->cells[col[k]];
			const char *fetched = fpath[k] ? fpath[k][r] : NULL;
			char sh[2][64];
			if (fpath[k] && ferr[k][r]) {
				snprintf(why, sizeof why, "%s", ferr[k][r]);
				bad = 1;
			} else {
				bad = decode_cell(&c->mod[k], s, fetched, m.dir, &cf, &sp, &cell[k],
						  why, sizeof why);
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
			} else if (!bad && d->n > 0 &&
				   memcmp(cell[k].shape, d->shape[k], sizeof d->shape[k]) != 0) {
				snprintf(why, sizeof why, "has shape %s, the first row's is %s",
					 shape_text(cell[k].shape, sh[0], sizeof sh[0]),
					 shape_text(d->shape[k], sh[1], sizeof sh[1]));
				bad = 1;
			}
			if (bad)
				report(&rp, row->line, "column '%s'%s %s", c->mod[k].column,
				       strncmp(why, "is ", 3) == 0 || strncmp(why, "has ", 4) == 0
					       ? "" : ":", why);
		}
		/* the segmentation target: tids = the row's map, NULL = all ignored */
		free(tids);
		tids = NULL;
		if (!bad && col[2] >= 0 && row->cells[col[2]][0]) {
			const char *s = row->cells[col[2]];
			const char *fetched = fpath[2] ? fpath[2][r] : NULL;
			int th = c->target.height, tw = c->target.width;
			size_t nout = 0;
			char *path = NULL;
			if (fpath[2] && ferr[2][r]) {
				snprintf(why, sizeof why, "%s", ferr[2][r]);
				bad = 1;
			} else if (!(path = cell_path(s, fetched, m.dir, &cf, why, sizeof why))) {
				bad = 1;
			} else if (decode_target(c, path, &tids, &th, &tw, &nout, why, sizeof why)) {
				bad = 1;
			} else if (d->label_h && (th != d->label_h || tw != d->label_w)) {
				snprintf(why, sizeof why, "label map '%.200s' is %d x %d, the first "
					 "was %d x %d (set data.target.height and width to resize "
					 "them all)", path, th, tw, d->label_h, d->label_w);
				bad = 1;
			} else if (nout) {
				report(&rp, row->line, "column '%s': %zu pixel%s of '%.200s' hold "
				       "values outside [%d, %d) that are not the ignore value %d; "
				       "they are ignored (-1)", c->target.column, nout,
				       nout == 1 ? "" : "s", path, c->target.first_class,
				       c->target.first_class + c->classes, c->target.ignore_value);
				nout_maps++;
			}
			if (bad && fetched) {
				char *safe = fetch_redact(s);
				size_t len = strlen(why);
				snprintf(why + len, sizeof why - len, " (fetched from '%.300s')", safe);
				free(safe);
			}
			if (bad)
				report(&rp, row->line, "column '%s'%s %s", c->target.column,
				       strncmp(why, "is ", 3) == 0 ? "" : ":", why);
			else if (!d->label_h) {
				d->label_h = th;
				d->label_w = tw;
			}
			free(path);
		}
		if (bad) {
			d->nquarantined++;
			continue;
		}
		/* the first good row fixes the shapes and whether the media
		   modalities are resident (their decoded size fits the budget) */
		if (d->n == 0) {
			double bytes = 0;
			for (int k = 0; k < nmod; k++)
				if (c->mod[k].kind != MOD_INLINE)
					bytes += (double)cap * (double)cell[k].n * sizeof(float);
			if (bytes > (double)cache_bytes) {
				d->src = src_new(c, &m, nmod, col, cache_bytes);
				d->row = xmalloc(cap * sizeof *d->row);
				if (cache_bytes)
					mke_info("manifest '%s': %.0f MB decoded is more than the "
						 "%zu MB cache (data.cache_mb); decoding per batch",
						 manifest_path, bytes / (1 << 20), cache_bytes >> 20);
			}
		}
		for (int k = 0; k < nmod; k++) {
			if (d->src && d->src->lazy[k]) {
				if (d->n == 0) {
					d->dim[k] = (int)cell[k].n;
					memcpy(d->shape[k], cell[k].shape, sizeof d->shape[k]);
				}
				cache_put(&d->src->cache, r * 2 + k, cell[k].v, cell[k].n);
				continue;
			}
			if (!d->x[k]) {
				d->dim[k] = (int)cell[k].n;
				memcpy(d->shape[k], cell[k].shape, sizeof d->shape[k]);
				if (cap > SIZE_MAX / sizeof(float) / (size_t)d->dim[k]) {
					rc = mke_error("dataset '%s' is too large", manifest_path);
					goto out;
				}
				d->x[k] = xmalloc(cap * (size_t)d->dim[k] * sizeof(float));
			}
			memcpy(d->x[k] + (size_t)d->n * (size_t)d->dim[k], cell[k].v,
			       (size_t)d->dim[k] * sizeof(float));
		}
		if (col[2] >= 0 && d->label_h) {
			size_t hw = (size_t)d->label_h * (size_t)d->label_w;
			if (!d->pixel_labels) {
				if (cap > SIZE_MAX / sizeof(int) / hw) {
					rc = mke_error("dataset '%s' is too large", manifest_path);
					goto out;
				}
				d->pixel_labels = xmalloc(cap * hw * sizeof(int));
				for (size_t i = 0; i < (size_t)d->n * hw; i++)
					d->pixel_labels[i] = -1;
			}
			int *dst = d->pixel_labels + (size_t)d->n * hw;
			if (tids)
				memcpy(dst, tids, hw * sizeof *dst);
			else
				for (size_t i = 0; i < hw; i++)
					dst[i] = -1;
		}
		if (d->labels)
			d->labels[d->n] = label;
		if (multi)
			memcpy(d->multi + (size_t)d->n * (size_t)c->classes, hot,
			       (size_t)c->classes * sizeof *hot);
		if (d->row)
			d->row[d->n] = r;
		d->names[d->n] = xstrdup(row->cells[m.id_col]);
		d->ids[d->n] = sample_id_hash(d->names[d->n]);
		d->n++;
	}
	dm.done = m.nrows;
	meter_end(&dm);
	report_flush(&rp);
	if (d->nquarantined)
		mke_warn("manifest '%s': %d row%s quarantined (cells or labels that do not "
			 "decode), %d loaded", manifest_path, d->nquarantined,
			 d->nquarantined == 1 ? "" : "s", d->n);
	if (nout_maps)
		mke_warn("manifest '%s': %d label map%s in column '%s' hold%s values outside the "
			 "classes; those pixels are ignored", manifest_path, nout_maps,
			 nout_maps == 1 ? "" : "s", c->target.column, nout_maps == 1 ? "s" : "");
	if (!d->n) {
		rc = mke_error("manifest '%s' has no usable rows (%d bad, %d quarantined)",
			       manifest_path, m.nbad, d->nquarantined);
		goto out;
	}
	if (col[2] >= 0 && !d->pixel_labels)
		mke_warn("manifest '%s': column '%s' has no label map (every cell is empty), so "
			 "its size is unknown; the rows have no pixel labels", manifest_path,
			 c->target.column);
	check_collisions(d, manifest_path);
	if (d->src) {
		/* the source keeps the rows and the fetched files of its modalities */
		struct dataset_src *sc = d->src;
		sc->m = m;
		memset(&m, 0, sizeof m);
		for (int k = 0; k < nmod; k++)
			if (sc->lazy[k]) {
				sc->fpath[k] = fpath[k];
				fpath[k] = NULL;
			}
		confine_init(&sc->cf, sc->m.dir, sc->root);
		sc->rp.path = sc->m.path;
		/* the cache's counters start with training, not the load */
		sc->cache.hits = sc->cache.misses = sc->cache.evictions = 0;
	}
out:
	free(tids);
	free(hot);
	confine_release(&cf);
	for (int k = 0; k < 2; k++)
		free(cell[k].v);
	for (int k = 0; k < 3; k++) {
		for (int r = 0; ferr[k] && r < nrows; r++) {
			if (fpath[k])
				free(fpath[k][r]);
			free(ferr[k][r]);
		}
		free(fpath[k]);
		free(ferr[k]);
	}
	if (have_sp)
		sp_release(&sp);
	manifest_release(&m);
	if (rc)
		dataset_release(d);
	return rc;
}
