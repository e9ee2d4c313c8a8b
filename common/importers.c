/*
 * importers.c - native dataset files -> mke manifests (importers.h,
 * docs/importers.md).
 *
 * One small CSV reader serves the dataset dialects (AudioSet's comment lines
 * and `, "` separators; VGGSound's quoted labels); manifest.c's strict
 * reader stays strict. Every importer reads its native file whole, checks
 * each row, looks for the media the row names, and writes the manifest in
 * one atomic write; rows it cannot use are reported as file:line and counted
 * in struct import_stats. NYU's labeled .mat is read with libhdf5 one
 * sample at a time (the full file is 2.8 GB), its splits.mat and
 * classMapping40.mat (MATLAB v5, or any version) with libmatio, and its PNGs
 * written with libpng.
 */
#include "importers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>
#include <matio.h>
#include <png.h>

#include "util.h"

int import_max_reports = 100;

/* ---- reporting ------------------------------------------------------------ */

struct reports {
	int shown, hidden;
};

static void row_report(struct reports *rp, const char *path, int line, const char *fmt, ...)
	MKE_PRINTF(4, 5);
static void row_report(struct reports *rp, const char *path, int line, const char *fmt, ...)
{
	if (import_max_reports > 0 && rp->shown >= import_max_reports) {
		rp->hidden++;
		return;
	}
	rp->shown++;
	va_list ap;
	va_start(ap, fmt);
	if (line > 0)
		fprintf(stderr, "%s:%d: ", path, line);
	else
		fprintf(stderr, "%s: ", path);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void reports_flush(struct reports *rp, const char *path)
{
	if (rp->hidden)
		fprintf(stderr, "%s: %d more problem%s not shown\n", path, rp->hidden,
			rp->hidden == 1 ? "" : "s");
}

/* ---- strings ---------------------------------------------------------------- */

static void sbuf_grow(struct sbuf *b, size_t more)
{
	if (b->n + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->n + more + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void sbuf_puts(struct sbuf *b, const char *s)
{
	size_t k = strlen(s);
	sbuf_grow(b, k);
	memcpy(b->p + b->n, s, k + 1);
	b->n += k;
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int k = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (k < 0)
		abort();
	sbuf_puts(b, s);
	free(s);
}

void sbuf_csv(struct sbuf *b, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		sbuf_puts(b, s);
		return;
	}
	sbuf_grow(b, 2 * strlen(s) + 2);
	b->p[b->n++] = '"';
	for (; *s; s++) {
		if (*s == '"')
			b->p[b->n++] = '"';
		b->p[b->n++] = *s;
	}
	b->p[b->n++] = '"';
	b->p[b->n] = '\0';
}

void sbuf_release(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* ---- the dataset-CSV reader ------------------------------------------------- */

void csv_in_init(struct csv_in *r, const char *path, const char *text, size_t len, int comments,
		 int skip_space)
{
	memset(r, 0, sizeof *r);
	r->path = path;
	r->s = text;
	r->n = len;
	r->line = 1;
	r->comments = comments;
	r->skip_space = skip_space;
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		r->i = 3;
}

static void fields_clear(struct csv_in *r)
{
	for (int k = 0; k < r->nf; k++)
		free(r->f[k]);
	r->nf = 0;
}

void csv_in_release(struct csv_in *r)
{
	fields_clear(r);
	free(r->f);
	r->f = NULL;
	r->capf = 0;
}

static void field_push(struct csv_in *r, struct sbuf *b)
{
	if (r->nf == r->capf) {
		r->capf = r->capf ? 2 * r->capf : 8;
		r->f = xrealloc(r->f, (size_t)r->capf * sizeof *r->f);
	}
	r->f[r->nf++] = b->p ? b->p : xstrdup("");
	memset(b, 0, sizeof *b);
}

/* Consume a line end at s[i] (CRLF, LF or CR); 1 if there was one. */
static int eat_eol(struct csv_in *r)
{
	if (r->i < r->n && r->s[r->i] == '\r') {
		r->i++;
		if (r->i < r->n && r->s[r->i] == '\n')
			r->i++;
		r->line++;
		return 1;
	}
	if (r->i < r->n && r->s[r->i] == '\n') {
		r->i++;
		r->line++;
		return 1;
	}
	return 0;
}

static void skip_line(struct csv_in *r)
{
	while (r->i < r->n && r->s[r->i] != '\n' && r->s[r->i] != '\r')
		r->i++;
	eat_eol(r);
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

int csv_in_next(struct csv_in *r)
{
	fields_clear(r);
	/* blank and comment lines */
	for (;;) {
		if (r->i >= r->n)
			return 0;
		char c = r->s[r->i];
		if (c == '\n' || c == '\r') {
			eat_eol(r);
			continue;
		}
		if (r->comments && c == '#') {
			skip_line(r);
			continue;
		}
		break;
	}
	r->rec_line = r->line;
	struct sbuf b = {0};
	const char *why = NULL;
	for (;;) {
		if (r->skip_space)
			while (r->i < r->n && is_blank(r->s[r->i]))
				r->i++;
		if (r->i < r->n && r->s[r->i] == '"') {
			int open_line = r->line;
			r->i++;
			for (;;) {
				if (r->i >= r->n) {
					why = "a quoted field is not closed";
					r->rec_line = open_line;
					break;
				}
				char c = r->s[r->i++];
				if (c == '"') {
					if (r->i < r->n && r->s[r->i] == '"') {
						r->i++;
						sbuf_grow(&b, 1);
						b.p[b.n++] = '"';
						b.p[b.n] = '\0';
						continue;
					}
					break;
				}
				if (c == '\n' || (c == '\r' && !(r->i < r->n && r->s[r->i] == '\n')))
					r->line++;
				if (c == '\0') {
					why = "a NUL byte in a field";
					continue;
				}
				sbuf_grow(&b, 1);
				b.p[b.n++] = c;
				b.p[b.n] = '\0';
			}
			if (r->skip_space)
				while (r->i < r->n && is_blank(r->s[r->i]))
					r->i++;
			if (!why && r->i < r->n && r->s[r->i] != ',' && r->s[r->i] != '\n' &&
			    r->s[r->i] != '\r')
				why = "text after a closing quote";
		} else {
			while (r->i < r->n && r->s[r->i] != ',' && r->s[r->i] != '\n' &&
			       r->s[r->i] != '\r') {
				char c = r->s[r->i++];
				if (c == '"' && !why)
					why = "a quote inside an unquoted field";
				if (c == '\0' && !why)
					why = "a NUL byte in a field";
				sbuf_grow(&b, 1);
				b.p[b.n++] = c;
				b.p[b.n] = '\0';
			}
			if (r->skip_space)
				while (b.n && is_blank(b.p[b.n - 1]))
					b.p[--b.n] = '\0';
		}
		field_push(r, &b);
		if (why)
			break;
		if (r->i < r->n && r->s[r->i] == ',') {
			r->i++;
			continue;
		}
		eat_eol(r);
		return 1;
	}
	sbuf_release(&b);
	fprintf(stderr, "%s:%d: %s; row skipped\n", r->path, r->rec_line, why);
	if (r->i < r->n)
		skip_line(r);
	fields_clear(r);
	return -1;
}

/* ---- paths and files ------------------------------------------------------------ */

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static int exists(const char *path, int want_dir)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

char *path_relative(const char *dir, const char *target)
{
	char *a = realpath(dir, NULL), *b = realpath(target, NULL);
	if (!a || !b) {
		free(a);
		char *r = b ? b : xstrdup(target);
		return r;
	}
	/* longest common prefix ending at a path boundary */
	size_t k = 0, last = 0;
	while (a[k] && a[k] == b[k]) {
		if (a[k] == '/')
			last = k;
		k++;
	}
	if (!a[k] && (!b[k] || b[k] == '/'))
		last = k;
	else if (!b[k] && a[k] == '/')
		last = k;
	struct sbuf s = {0};
	for (const char *p = a + last; *p; p++)
		if (*p == '/')
			sbuf_puts(&s, s.n ? "/.." : "..");
	const char *rest = b + last;
	while (*rest == '/')
		rest++;
	if (*rest) {
		if (s.n)
			sbuf_puts(&s, "/");
		sbuf_puts(&s, rest);
	}
	if (!s.n)
		sbuf_puts(&s, ".");
	free(a);
	free(b);
	return s.p;
}

/* cell for file name in a directory whose path relative to the manifest is
 * prefix ("." means the manifest's own directory). Caller frees. */
static char *rel_cell(const char *prefix, const char *name)
{
	if (strcmp(prefix, ".") == 0)
		return xstrdup(name);
	return xasprintf("%s/%s", prefix, name);
}

/* The directory that will hold out, created; caller frees. */
static char *out_dir_of(const char *out)
{
	char *d = path_dirname(out);
	if (mkdir_p(d, 0755) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

static int write_text(const char *path, const struct sbuf *b)
{
	return write_file_atomic(path, b->p ? b->p : "", b->n, 0644);
}

static int write_classes(const char *out, char **names, int n)
{
	struct sbuf b = {0};
	for (int k = 0; k < n; k++)
		sbuf_printf(&b, "%s\n", names[k]);
	char *p = xasprintf("%s.classes.txt", out);
	int rc = write_text(p, &b);
	free(p);
	sbuf_release(&b);
	return rc;
}

/* ---- PNG writing ------------------------------------------------------------------ */

struct png_err {
	const char *path;
	char msg[200];
};

static void png_on_error(png_structp png, png_const_charp msg)
{
	struct png_err *e = png_get_error_ptr(png);
	snprintf(e->msg, sizeof e->msg, "%s", msg);
	png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

int png_write(const char *path, int w, int h, int channels, int bits, const void *px)
{
	if ((channels != 1 && channels != 3) || (bits != 8 && bits != 16) || w < 1 || h < 1)
		return mke_error("PNG '%s': cannot write %d channels of %d bits", path, channels,
				 bits);
	FILE *f = fopen(path, "wb");
	if (!f)
		return mke_error("cannot create '%s': %s", path, strerror(errno));
	struct png_err e = {.path = path};
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, png_on_error,
						  png_on_warning);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	size_t rowbytes = (size_t)w * (size_t)channels * (size_t)(bits / 8);
	unsigned char *row = xmalloc(rowbytes);
	if (!png || !info) {
		fclose(f);
		free(row);
		png_destroy_write_struct(&png, &info);
		return mke_error("PNG '%s': libpng could not start", path);
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		fclose(f);
		free(row);
		return mke_error("PNG '%s': %s", path, e.msg);
	}
	png_init_io(png, f);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bits,
		     channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < h; y++) {
		if (bits == 8) {
			memcpy(row, (const uint8_t *)px + (size_t)y * rowbytes, rowbytes);
		} else {
			const uint16_t *s = (const uint16_t *)px + (size_t)y * w * channels;
			for (size_t k = 0; k < (size_t)w * channels; k++) {
				row[2 * k] = (unsigned char)(s[k] >> 8);   /* PNG is big-endian */
				row[2 * k + 1] = (unsigned char)(s[k] & 0xff);
			}
		}
		png_write_row(png, row);
	}
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	free(row);
	if (fclose(f) != 0)
		return mke_error("cannot write '%s': %s", path, strerror(errno));
	return 0;
}

/* ---- class lists ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index of s in the sorted array v[0..n), or -1. */
static int find_sorted(char **v, int n, const char *s)
{
	char **p = bsearch(&s, v, (size_t)n, sizeof *v, cmp_str);
	return p ? (int)(p - v) : -1;
}

/* Sort and make unique v[0..*n); frees the dropped duplicates. */
static void sort_unique(char **v, int *n)
{
	qsort(v, (size_t)*n, sizeof *v, cmp_str);
	int m = 0;
	for (int k = 0; k < *n; k++) {
		if (m && strcmp(v[m - 1], v[k]) == 0)
			free(v[k]);
		else
			v[m++] = v[k];
	}
	*n = m;
}

/* The start-seconds field as whole seconds: "30", "30.000". */
static int parse_start(const char *s, long *out)
{
	double d;
	if (parse_double(s, &d) != 0 || !(d >= 0) || d > 1e7)
		return -1;
	*out = lround(floor(d + 1e-6));
	return 0;
}

/* Look for a clip under media: stem.wav, else stem.mp4 (*mp4 set). The file
 * name found, or NULL. Caller frees. */
static char *find_clip(const char *media, const char *stem, int *mp4)
{
	static const char *const ext[] = {"wav", "mp4"};
	for (int k = 0; k < 2; k++) {
		char *name = xasprintf("%s.%s", stem, ext[k]);
		char *p = path_join(media, name);
		int ok = exists(p, 0);
		free(p);
		if (ok) {
			*mp4 = k == 1;
			return name;
		}
		free(name);
	}
	return NULL;
}

static int media_check(const char *media)
{
	if (!exists(media, 1))
		return mke_error("media directory '%s' does not exist (give --media DIR)", media);
	return 0;
}

/* ---- VGGSound ---------------------------------------------------------------------- */

struct clip_row {
	int line;
	char *id, *label, *split, *audio, *frames;
};

static void clip_rows_free(struct clip_row *v, int n)
{
	for (int k = 0; k < n; k++) {
		free(v[k].id);
		free(v[k].label);
		free(v[k].split);
		free(v[k].audio);
		free(v[k].frames);
	}
	free(v);
}

/* Write id,label,split,audio[,frames] rows. */
static int write_clip_manifest(const char *out, struct clip_row *v, int n)
{
	int any_frames = 0;
	for (int k = 0; k < n; k++)
		any_frames |= v[k].frames != NULL;
	struct sbuf b = {0};
	sbuf_puts(&b, any_frames ? "id,label,split,audio,frames\n" : "id,label,split,audio\n");
	for (int k = 0; k < n; k++) {
		sbuf_csv(&b, v[k].id);
		sbuf_puts(&b, ",");
		sbuf_csv(&b, v[k].label);
		sbuf_puts(&b, ",");
		sbuf_csv(&b, v[k].split);
		sbuf_puts(&b, ",");
		sbuf_csv(&b, v[k].audio);
		if (any_frames) {
			sbuf_puts(&b, ",");
			sbuf_csv(&b, v[k].frames ? v[k].frames : "");
		}
		sbuf_puts(&b, "\n");
	}
	int rc = write_text(out, &b);
	sbuf_release(&b);
	return rc;
}

int import_vggsound(const char *csv_path, const char *media_dir, const char *out,
		    struct import_stats *st)
{
	memset(st, 0, sizeof *st);
	if (media_check(media_dir) != 0)
		return -1;
	size_t len;
	char *text = read_file(csv_path, &len);
	if (!text)
		return -1;
	char *odir = out_dir_of(out);
	if (!odir) {
		free(text);
		return -1;
	}
	char *prefix = path_relative(odir, media_dir);
	struct reports rp = {0};
	struct csv_in r;
	csv_in_init(&r, csv_path, text, len, 0, 0);
	/* first pass: rows and the class list (every row's label, media or not) */
	int cap = 0, n = 0, ncls = 0, capcls = 0, got, rc = -1;
	struct clip_row *v = NULL;
	char **cls = NULL;
	while ((got = csv_in_next(&r)) != 0) {
		if (got < 0) {
			st->bad++;
			continue;
		}
		st->rows++;
		long start;
		if (r.nf != 4) {
			row_report(&rp, csv_path, r.rec_line, "expected 4 fields (youtube_id,"
				   "start_seconds,label,split), got %d; row skipped", r.nf);
			st->bad++;
			continue;
		}
		if (!r.f[0][0] || !r.f[2][0] || parse_start(r.f[1], &start) != 0) {
			row_report(&rp, csv_path, r.rec_line, "empty id or label, or start_seconds "
				   "'%s' is not a number; row skipped", r.f[1]);
			st->bad++;
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			v = xrealloc(v, (size_t)cap * sizeof *v);
		}
		struct clip_row *c = &v[n++];
		memset(c, 0, sizeof *c);
		c->line = r.rec_line;
		c->id = xasprintf("%s_%06ld", r.f[0], start);
		c->label = xstrdup(r.f[2]);
		c->split = xstrdup(r.f[3]);
		if (ncls == capcls) {
			capcls = capcls ? 2 * capcls : 64;
			cls = xrealloc(cls, (size_t)capcls * sizeof *cls);
		}
		cls[ncls++] = xstrdup(r.f[2]);
	}
	sort_unique(cls, &ncls);
	st->classes = ncls;
	/* second pass: media, class indices */
	int m = 0;
	for (int k = 0; k < n; k++) {
		struct clip_row *c = &v[k];
		int mp4 = 0;
		char *clip = find_clip(media_dir, c->id, &mp4);
		if (!clip) {
			row_report(&rp, csv_path, c->line, "no clip '%s.wav' or '%s.mp4' in '%s'; "
				   "row skipped", c->id, c->id, media_dir);
			st->missing++;
			free(c->id);
			free(c->label);
			free(c->split);
			continue;
		}
		struct clip_row keep = *c;
		keep.audio = rel_cell(prefix, clip);
		free(clip);
		/* frames: the clip's frame folder, else the MP4 itself (its video
		 * track, decoded by common/av.c) */
		char *fd = path_join(media_dir, keep.id);
		if (exists(fd, 1))
			keep.frames = rel_cell(prefix, keep.id);
		else if (mp4)
			keep.frames = xstrdup(keep.audio);
		free(fd);
		int idx = find_sorted(cls, ncls, keep.label);
		free(keep.label);
		keep.label = xasprintf("%d", idx);
		v[m++] = keep;
	}
	st->written = m;
	reports_flush(&rp, csv_path);
	if (write_clip_manifest(out, v, m) == 0 && write_classes(out, cls, ncls) == 0)
		rc = 0;
	clip_rows_free(v, m);
	for (int k = 0; k < ncls; k++)
		free(cls[k]);
	free(cls);
	csv_in_release(&r);
	free(prefix);
	free(odir);
	free(text);
	return rc;
}

/* ---- AudioSet ---------------------------------------------------------------------- */

struct as_class {
	char *mid, *name;
	int index;
};

static int cmp_as_mid(const void *a, const void *b)
{
	return strcmp(((const struct as_class *)a)->mid, ((const struct as_class *)b)->mid);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

/* class_labels_indices.csv: header index,mid,display_name; indices 0..n-1. */
static int as_classes_load(const char *path, struct as_class **out, int *nout)
{
	size_t len;
	char *text = read_file(path, &len);
	if (!text)
		return -1;
	struct csv_in r;
	csv_in_init(&r, path, text, len, 1, 1);
	struct as_class *v = NULL;
	int n = 0, cap = 0, got, rc = 0, header = 1;
	while ((got = csv_in_next(&r)) != 0) {
		if (got < 0) {
			rc = -1;
			break;
		}
		if (header) {
			header = 0;
			if (r.nf >= 3 && strcmp(r.f[0], "index") == 0 && strcmp(r.f[1], "mid") == 0)
				continue;
		}
		long idx;
		if (r.nf != 3 || parse_long(r.f[0], &idx) != 0 || idx != n || !r.f[1][0]) {
			rc = mke_error("'%s' line %d: expected 'index,mid,display_name' with index "
				       "%d", path, r.rec_line, n);
			break;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 128;
			v = xrealloc(v, (size_t)cap * sizeof *v);
		}
		v[n].mid = xstrdup(r.f[1]);
		v[n].name = xstrdup(r.f[2]);
		v[n].index = n;
		n++;
	}
	csv_in_release(&r);
	free(text);
	if (!rc && n == 0)
		rc = mke_error("'%s': no classes", path);
	if (rc) {
		for (int k = 0; k < n; k++) {
			free(v[k].mid);
			free(v[k].name);
		}
		free(v);
		return -1;
	}
	*out = v;
	*nout = n;
	return 0;
}

int import_audioset(const char *segments, const char *labels_csv, const char *media_dir,
		    const char *split, const char *out, struct import_stats *st)
{
	memset(st, 0, sizeof *st);
	if (media_check(media_dir) != 0)
		return -1;
	struct as_class *cls;
	int ncls;
	if (as_classes_load(labels_csv, &cls, &ncls) != 0)
		return -1;
	st->classes = ncls;
	char **names = xmalloc((size_t)ncls * sizeof *names);
	for (int k = 0; k < ncls; k++)
		names[k] = cls[k].name;
	struct as_class *bymid = xmalloc((size_t)ncls * sizeof *bymid);
	memcpy(bymid, cls, (size_t)ncls * sizeof *bymid);
	qsort(bymid, (size_t)ncls, sizeof *bymid, cmp_as_mid);
	if (!split) {
		const char *base = strrchr(segments, '/');
		split = strstr(base ? base + 1 : segments, "eval") ? "test" : "train";
	}
	int rc = -1;
	size_t len;
	char *text = read_file(segments, &len);
	char *odir = text ? out_dir_of(out) : NULL;
	if (!odir) {
		free(text);
		goto done_classes;
	}
	char *prefix = path_relative(odir, media_dir);
	struct reports rp = {0};
	struct csv_in r;
	csv_in_init(&r, segments, text, len, 1, 1);
	struct clip_row *v = NULL;
	int n = 0, cap = 0, got, nmp4 = 0;
	int *idx = NULL, capidx = 0;
	while ((got = csv_in_next(&r)) != 0) {
		if (got < 0) {
			st->bad++;
			continue;
		}
		st->rows++;
		long start;
		double end;
		if (r.nf != 4) {
			row_report(&rp, segments, r.rec_line, "expected 4 fields (YTID, "
				   "start_seconds, end_seconds, positive_labels), got %d; row skipped",
				   r.nf);
			st->bad++;
			continue;
		}
		if (!r.f[0][0] || parse_start(r.f[1], &start) != 0 ||
		    parse_double(r.f[2], &end) != 0) {
			row_report(&rp, segments, r.rec_line, "empty YTID or start/end is not a "
				   "number; row skipped");
			st->bad++;
			continue;
		}
		/* positive_labels: mids separated by commas */
		int nidx = 0, unknown = 0;
		char *labels = xstrdup(r.f[3]), *save = NULL;
		for (char *t = strtok_r(labels, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			while (is_blank(*t))
				t++;
			size_t tl = strlen(t);
			while (tl && is_blank(t[tl - 1]))
				t[--tl] = '\0';
			if (!tl)
				continue;
			struct as_class key = {.mid = t};
			struct as_class *c = bsearch(&key, bymid, (size_t)ncls, sizeof *bymid,
						     cmp_as_mid);
			if (!c) {
				row_report(&rp, segments, r.rec_line, "label '%s' is not in '%s'; "
					   "row skipped", t, labels_csv);
				unknown = 1;
				break;
			}
			if (nidx == capidx) {
				capidx = capidx ? 2 * capidx : 8;
				idx = xrealloc(idx, (size_t)capidx * sizeof *idx);
			}
			idx[nidx++] = c->index;
		}
		free(labels);
		if (unknown || !nidx) {
			if (!unknown)
				row_report(&rp, segments, r.rec_line, "no positive_labels; row skipped");
			st->bad++;
			continue;
		}
		char *stem = xasprintf("%s_%06ld", r.f[0], start);
		int mp4 = 0;
		char *clip = find_clip(media_dir, stem, &mp4);
		if (!clip) {
			int m2;
			clip = find_clip(media_dir, r.f[0], &m2);
			mp4 = m2;
		}
		if (!clip) {
			row_report(&rp, segments, r.rec_line, "no clip '%s.wav' (or '%s.wav') in "
				   "'%s'; row skipped", stem, r.f[0], media_dir);
			st->missing++;
			free(stem);
			continue;
		}
		nmp4 += mp4;
		qsort(idx, (size_t)nidx, sizeof *idx, cmp_int);
		struct sbuf lb = {0};
		for (int k = 0; k < nidx; k++)
			if (!k || idx[k] != idx[k - 1])
				sbuf_printf(&lb, "%s%d", k ? ";" : "", idx[k]);
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			v = xrealloc(v, (size_t)cap * sizeof *v);
		}
		struct clip_row *c = &v[n++];
		memset(c, 0, sizeof *c);
		c->line = r.rec_line;
		c->id = stem;
		c->label = lb.p;
		c->split = xstrdup(split);
		c->audio = rel_cell(prefix, clip);
		free(clip);
	}
	st->written = n;
	if (nmp4)
		mke_warn("'%s': %d row%s point at .mp4 clips: extract WAVs before training",
			 segments, nmp4, nmp4 == 1 ? "" : "s");
	reports_flush(&rp, segments);
	if (write_clip_manifest(out, v, n) == 0 && write_classes(out, names, ncls) == 0)
		rc = 0;
	clip_rows_free(v, n);
	free(idx);
	csv_in_release(&r);
	free(prefix);
	free(odir);
	free(text);
done_classes:
	for (int k = 0; k < ncls; k++) {
		free(cls[k].mid);
		free(cls[k].name);
	}
	free(cls);
	free(bymid);
	free(names);
	return rc;
}

/* ---- RAVDESS ------------------------------------------------------------------------- */

int ravdess_parse(const char *name, int f[RAV_NFIELDS])
{
	static const int lo[RAV_NFIELDS] = {1, 1, 1, 1, 1, 1, 1};
	static const int hi[RAV_NFIELDS] = {3, 2, 8, 2, 2, 2, 24};
	const char *p = name;
	for (int k = 0; k < RAV_NFIELDS; k++) {
		if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]))
			return -1;
		f[k] = (p[0] - '0') * 10 + (p[1] - '0');
		if (f[k] < lo[k] || f[k] > hi[k])
			return -1;
		p += 2;
		if (k < RAV_NFIELDS - 1 && *p++ != '-')
			return -1;
	}
	return *p == '\0' || *p == '.' ? 0 : -1;
}

const char *ravdess_split(int actor)
{
	return actor <= 20 ? "train" : "test";
}

struct rav_entry {
	char *name;        /* base name */
	char *path;        /* full path */
	int dir;
};

static int cmp_rav(const void *a, const void *b)
{
	return strcmp(((const struct rav_entry *)a)->name, ((const struct rav_entry *)b)->name);
}

struct rav_list {
	struct rav_entry *v;
	int n, cap;
};

/* Every file and directory under dir whose name parses as RAVDESS. */
static int rav_walk(const char *dir, struct rav_list *l, int depth)
{
	if (depth > 8)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return mke_error("cannot open directory '%s': %s", dir, strerror(errno));
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p = path_join(dir, e->d_name);
		int isdir = exists(p, 1);
		int f[RAV_NFIELDS];
		if (ravdess_parse(e->d_name, f) == 0) {
			if (l->n == l->cap) {
				l->cap = l->cap ? 2 * l->cap : 256;
				l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
			}
			l->v[l->n++] = (struct rav_entry){xstrdup(e->d_name), xstrdup(p), isdir};
		}
		if (isdir && rav_walk(p, l, depth + 1) != 0)
			rc = -1;
		free(p);
	}
	closedir(d);
	return rc;
}

static const struct rav_entry *rav_find(const struct rav_list *l, const char *name, int dir)
{
	struct rav_entry key = {.name = (char *)name};
	const struct rav_entry *e = bsearch(&key, l->v, (size_t)l->n, sizeof *l->v, cmp_rav);
	return e && e->dir == dir ? e : NULL;
}

/* The face of audio file stem "03-rest": the first of 01-rest.png, .jpg,
 * 02-rest.png, .jpg (a face image), then the folders 01-rest/, 02-rest/. */
static const struct rav_entry *rav_face(const struct rav_list *l, const char *rest)
{
	static const char *const ext[] = {"png", "jpg", "jpeg"};
	for (int m = 1; m <= 2; m++)
		for (int k = 0; k < 3; k++) {
			char *nm = xasprintf("%02d-%s.%s", m, rest, ext[k]);
			const struct rav_entry *e = rav_find(l, nm, 0);
			free(nm);
			if (e)
				return e;
		}
	for (int m = 1; m <= 2; m++) {
		char *nm = xasprintf("%02d-%s", m, rest);
		const struct rav_entry *e = rav_find(l, nm, 1);
		free(nm);
		if (e)
			return e;
	}
	return NULL;
}

int import_ravdess(const char *dir, const char *out, struct import_stats *st)
{
	memset(st, 0, sizeof *st);
	st->classes = 8;
	if (!exists(dir, 1))
		return mke_error("RAVDESS directory '%s' does not exist", dir);
	struct rav_list l = {0};
	if (rav_walk(dir, &l, 0) != 0) {
		free(l.v);
		return -1;
	}
	qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_rav);
	int rc = -1;
	char *odir = out_dir_of(out);
	struct reports rp = {0};
	struct sbuf b = {0};
	sbuf_puts(&b, "id,label,split,face,audio\n");
	for (int k = 0; odir && k < l.n; k++) {
		const struct rav_entry *e = &l.v[k];
		int f[RAV_NFIELDS];
		ravdess_parse(e->name, f);
		const char *dot = strrchr(e->name, '.');
		if (e->dir || f[RAV_MODALITY] != 3 || !dot || strcmp(dot, ".wav") != 0)
			continue;
		st->rows++;
		if (k && strcmp(l.v[k - 1].name, e->name) == 0) {
			row_report(&rp, e->path, 0, "a second '%s' in '%s'; skipped", e->name, dir);
			st->bad++;
			continue;
		}
		char *rest = xstrndup(e->name + 3, (size_t)(dot - e->name - 3));
		const struct rav_entry *face = rav_face(&l, rest);
		if (!face) {
			row_report(&rp, e->path, 0, "no face for this clip (looked for 01-%s.png/"
				   ".jpg, 02-%s.png/.jpg and folders 01-%s/, 02-%s/); skipped", rest,
				   rest, rest, rest);
			st->missing++;
			free(rest);
			continue;
		}
		char *id = xstrndup(e->name, (size_t)(dot - e->name));
		char *fc = path_relative(odir, face->path), *ac = path_relative(odir, e->path);
		sbuf_csv(&b, id);
		sbuf_printf(&b, ",%d,%s,", f[RAV_EMOTION] - 1, ravdess_split(f[RAV_ACTOR]));
		sbuf_csv(&b, fc);
		sbuf_puts(&b, ",");
		sbuf_csv(&b, ac);
		sbuf_puts(&b, "\n");
		st->written++;
		free(id);
		free(fc);
		free(ac);
		free(rest);
	}
	reports_flush(&rp, dir);
	if (odir && write_text(out, &b) == 0) {
		static const char *const emo[] = {"neutral", "calm", "happy", "sad", "angry",
						  "fearful", "disgust", "surprised"};
		rc = write_classes(out, (char **)emo, 8);
	}
	sbuf_release(&b);
	for (int k = 0; k < l.n; k++) {
		free(l.v[k].name);
		free(l.v[k].path);
	}
	free(l.v);
	free(odir);
	return rc;
}

/* The 40 class names of the NYU-40 task (Gupta et al. 2013), line k = class
 * k; used when a mapping gives no names (a CSV without a name column, a
 * .mat without className) and by `mke gen nyuv2` for its className. */
const char *const nyu40_names[NYU_CLASSES + 1] = {
	"unlabeled", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door",
	"window", "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain",
	"dresser", "pillow", "mirror", "floor mat", "clothes", "ceiling", "books",
	"refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
	"person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
	"otherfurniture", "otherprop"};

/* ---- MATLAB files through matio ------------------------------------------------------ */

static void matio_drop(int level, char *msg)
{
	(void)level;
	(void)msg;
}

/* Open a MATLAB v4, v5 or v7.3 file read-only; matio's own log lines are
 * dropped (failures are reported with the file, the variable and what to
 * do). NULL, reported, when it cannot be read. */
static mat_t *mat_open(const char *path, const char *what)
{
	static int quiet;
	if (!quiet) {
		Mat_LogInitFunc("mke", matio_drop);
		quiet = 1;
	}
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		mke_error("cannot open %s '%s': %s", what, path, strerror(errno));
		return NULL;
	}
	fclose(fp);
	mat_t *m = Mat_Open(path, MAT_ACC_RDONLY);
	if (!m)
		mke_error("'%s' is not a MATLAB file (v4, v5 or v7.3) that libmatio can read; "
			  "expected %s", path, what);
	return m;
}

/* MATLAB's name of v's class, for reports. */
static const char *mat_class_name(const matvar_t *v)
{
	static const char *const n[] = {"empty", "cell", "struct", "object", "char", "sparse",
					"double", "single", "int8", "uint8", "int16", "uint16",
					"int32", "uint32", "int64", "uint64", "function", "opaque"};
	return (unsigned)v->class_type < sizeof n / sizeof *n ? n[v->class_type] : "?";
}

/* Element i of a real numeric matvar as a double. */
static double mat_elem(const matvar_t *v, size_t i)
{
	const void *d = v->data;
	switch (v->class_type) {
	case MAT_C_DOUBLE: return ((const double *)d)[i];
	case MAT_C_SINGLE: return ((const float *)d)[i];
	case MAT_C_INT8: return ((const int8_t *)d)[i];
	case MAT_C_UINT8: return ((const uint8_t *)d)[i];
	case MAT_C_INT16: return ((const int16_t *)d)[i];
	case MAT_C_UINT16: return ((const uint16_t *)d)[i];
	case MAT_C_INT32: return ((const int32_t *)d)[i];
	case MAT_C_UINT32: return ((const uint32_t *)d)[i];
	case MAT_C_INT64: return (double)((const int64_t *)d)[i];
	case MAT_C_UINT64: return (double)((const uint64_t *)d)[i];
	default: return NAN;
	}
}

/* Elements of v, and whether it is a vector (every dimension but one is 1). */
static size_t mat_count(const matvar_t *v, int *vector)
{
	size_t n = 1;
	int big = 0;
	for (int k = 0; k < v->rank; k++) {
		n *= v->dims[k];
		big += v->dims[k] != 1;
	}
	*vector = big <= 1;
	return v->rank > 0 ? n : 0;
}

/* The variable `name` of m, a real numeric vector, as *n doubles (caller
 * frees *out). Reports name the file, the variable and, with hint, what the
 * file should hold. */
static int mat_vector(mat_t *m, const char *file, const char *name, const char *hint,
		      double **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	matvar_t *v = Mat_VarRead(m, name);
	if (!v)
		return mke_error("'%s': no variable '%s'; %s", file, name, hint);
	int vec, rc = 0;
	size_t k = mat_count(v, &vec);
	if (v->class_type < MAT_C_DOUBLE || v->class_type > MAT_C_UINT64 || v->isComplex ||
	    (k && !v->data)) {
		rc = mke_error("'%s': variable '%s' is a %s%s array, not real numbers; %s", file,
			       name, v->isComplex ? "complex " : "", mat_class_name(v), hint);
	} else if (!vec) {
		rc = mke_error("'%s': variable '%s' is %zux%zu%s, not a vector; %s", file, name,
			       v->dims[0], v->rank > 1 ? v->dims[1] : (size_t)1,
			       v->rank > 2 ? "x..." : "", hint);
	} else {
		*out = xmalloc((k ? k : 1) * sizeof **out);
		for (size_t i = 0; i < k; i++)
			(*out)[i] = mat_elem(v, i);
		*n = k;
	}
	Mat_VarFree(v);
	return rc;
}

/* A MATLAB char array as a NUL-terminated UTF-8 string (UTF-16 code units
 * encoded; a surrogate pair becomes '?'). NULL when v is not a char array. */
static char *mat_string(const matvar_t *v)
{
	int vec;
	if (!v)
		return NULL;
	size_t n = mat_count(v, &vec);
	if (v->class_type != MAT_C_CHAR || (n && !v->data))
		return NULL;
	struct sbuf b = {0};
	sbuf_puts(&b, "");
	for (size_t i = 0; i < n; i++) {
		unsigned c = v->data_size == 1 ? ((const uint8_t *)v->data)[i]
			   : v->data_size == 2 ? ((const uint16_t *)v->data)[i]
			   : ((const uint32_t *)v->data)[i];
		if (v->data_size == 1 || c < 0x80) {
			sbuf_printf(&b, "%c", (char)c);
		} else if (c < 0x800) {
			sbuf_printf(&b, "%c%c", (char)(0xc0 | c >> 6), (char)(0x80 | (c & 63)));
		} else if (c >= 0xd800 && c < 0xe000) {
			sbuf_puts(&b, "?");
		} else {
			sbuf_printf(&b, "%c%c%c", (char)(0xe0 | c >> 12), (char)(0x80 | (c >> 6 & 63)),
				    (char)(0x80 | (c & 63)));
		}
	}
	return b.p;
}

/* The cell array `name` of m holding n strings into names[1..n] (owned).
 * 1 when it is absent, 0 when read, -1 reported. */
static int mat_strings(mat_t *m, const char *file, const char *name, int n, char **names,
		       const char *hint)
{
	matvar_t *v = Mat_VarRead(m, name);
	if (!v)
		return 1;
	int vec, rc = 0;
	size_t k = mat_count(v, &vec);
	if (v->class_type != MAT_C_CELL || !vec || k != (size_t)n) {
		rc = mke_error("'%s': variable '%s' is a %s with %zu elements, expected a cell "
			       "array of %d strings; %s", file, name, mat_class_name(v), k, n, hint);
	}
	for (int i = 0; !rc && i < n; i++) {
		char *s = mat_string(Mat_VarGetCell(v, i));
		if (!s || !*s || strpbrk(s, "\r\n")) {
			rc = mke_error("'%s': %s{%d} is %s; %s", file, name, i + 1,
				       !s ? "not a string" : *s ? "a name with a line break"
							     : "an empty name", hint);
			free(s);
		} else {
			names[i + 1] = s;
		}
	}
	Mat_VarFree(v);
	return rc;
}

/* ---- NYU Depth V2 ------------------------------------------------------------------- */

#define NYU_MAP_HINT                                                                      \
	"the official classMapping40.mat (Gupta et al., CVPR 2013) holds mapClass (1x894, "   \
	"the 40-class id of each NYU class id) and className (1x40 cell); docs/importers.md " \
	"says where to get it"
#define NYU_SPLIT_HINT                                                                 \
	"the NYU Depth V2 toolbox's splits.mat holds trainNdxs (795x1) and testNdxs (654x1), " \
	"1-based image indices; docs/importers.md"

int nyu_default_is_test(int i, int n)
{
	if (n <= 0)
		return 0;
	long long ntest = ((long long)n * 654 + 1449 / 2) / 1449;
	return (long long)(i + 1) * ntest / n > (long long)i * ntest / n;
}

void nyu_class_map_release(struct nyu_class_map *cm)
{
	for (int k = 0; k <= NYU_CLASSES_RAW; k++)
		free(cm->names[k]);
	memset(cm, 0, sizeof *cm);
}

/* Classes without a name from the mapping get the NYU-40 names. */
static void nyu_default_names(struct nyu_class_map *cm)
{
	for (int k = 0; k <= NYU_CLASSES; k++)
		if (!cm->names[k])
			cm->names[k] = xstrdup(nyu40_names[k]);
}

/* mapClass and className of classMapping40.mat (any MATLAB version). */
static int nyu_map_mat(struct nyu_class_map *cm, const char *path)
{
	mat_t *m = mat_open(path, "classMapping40.mat (" NYU_MAP_HINT ")");
	if (!m)
		return -1;
	double *v = NULL;
	size_t n = 0;
	int rc = mat_vector(m, path, "mapClass", NYU_MAP_HINT, &v, &n);
	if (!rc && n != NYU_CLASSES_RAW)
		rc = mke_error("'%s': mapClass has %zu values, expected %d (one per NYU class id "
			       "1..%d); is this the 894-class NYU Depth V2 mapping? %s", path, n,
			       NYU_CLASSES_RAW, NYU_CLASSES_RAW, NYU_MAP_HINT);
	for (size_t i = 0; !rc && i < n; i++) {
		if (!(v[i] >= 1 && v[i] <= NYU_CLASSES) || v[i] != floor(v[i]))
			rc = mke_error("'%s': mapClass(%zu) = %g, not a 40-class id in 1..%d; the "
				       "file is damaged or not the 40-class mapping (%s)", path,
				       i + 1, v[i], NYU_CLASSES, NYU_MAP_HINT);
		else
			cm->map[i + 1] = (uint16_t)v[i];
	}
	free(v);
	if (!rc) {
		int got = mat_strings(m, path, "className", NYU_CLASSES, cm->names, NYU_MAP_HINT);
		if (got < 0)
			rc = -1;
		else if (got > 0)
			mke_warn("'%s': no className; the classes get the NYU-40 names", path);
	}
	Mat_Close(m);
	return rc;
}

/* The text form: `nyu_id,class40[,name]` rows, # comments and a header
 * allowed; every id 1..894 once (0, if present, maps to 0). */
static int nyu_map_csv(struct nyu_class_map *cm, const char *path)
{
	size_t len;
	char *text = read_file(path, &len);
	if (!text)
		return mke_error("cannot read the NYU class mapping '%s'", path);
	struct csv_in r;
	csv_in_init(&r, path, text, len, 1, 1);
	unsigned char seen[NYU_CLASSES_RAW + 1] = {0};
	int got, rc = 0, first = 1;
	while (!rc && (got = csv_in_next(&r)) != 0) {
		if (got < 0) {
			rc = -1;
			break;
		}
		if (first && r.nf >= 1 && !isdigit((unsigned char)r.f[0][0])) {
			first = 0;   /* a header */
			continue;
		}
		first = 0;
		long a, b;
		if ((r.nf != 2 && r.nf != 3) || parse_long(r.f[0], &a) != 0 ||
		    parse_long(r.f[1], &b) != 0 || a < 0 || a > NYU_CLASSES_RAW ||
		    b < (a ? 1 : 0) || b > (a ? NYU_CLASSES : 0)) {
			rc = mke_error("'%s' line %d: expected 'nyu_id,class40[,name]' with nyu_id "
				       "in 1..%d and class40 in 1..%d (or the row 0,0)", path,
				       r.rec_line, NYU_CLASSES_RAW, NYU_CLASSES);
		} else if (seen[a]++) {
			rc = mke_error("'%s' line %d: NYU class %ld is mapped twice", path,
				       r.rec_line, a);
		} else if (r.nf == 3 && b > 0 && r.f[2][0]) {
			if (!cm->names[b])
				cm->names[b] = xstrdup(r.f[2]);
			else if (strcmp(cm->names[b], r.f[2]) != 0)
				rc = mke_error("'%s' line %d: class %ld is named '%s' here and '%s' "
					       "earlier", path, r.rec_line, b, r.f[2],
					       cm->names[b]);
		}
		if (!rc)
			cm->map[a] = (uint16_t)b;
	}
	for (int k = 1; !rc && k <= NYU_CLASSES_RAW; k++)
		if (!seen[k])
			rc = mke_error("'%s': NYU class %d has no row; the mapping needs one row "
				       "per id 1..%d", path, k, NYU_CLASSES_RAW);
	csv_in_release(&r);
	free(text);
	return rc ? -1 : 0;
}

int nyu_class_map_load(struct nyu_class_map *cm, const char *path)
{
	memset(cm, 0, sizeof *cm);
	cm->nclasses = NYU_CLASSES;
	char head[20] = {0};
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return mke_error("cannot open the NYU class mapping '%s': %s (%s)", path,
				 strerror(errno), NYU_MAP_HINT);
	size_t got = fread(head, 1, sizeof head - 1, fp);
	fclose(fp);
	size_t len = strlen(path);
	int mat = (got >= 6 && memcmp(head, "MATLAB", 6) == 0) ||
		  (len > 4 && strcmp(path + len - 4, ".mat") == 0);
	int rc = mat ? nyu_map_mat(cm, path) : nyu_map_csv(cm, path);
	if (rc == 0)
		nyu_default_names(cm);
	else
		nyu_class_map_release(cm);
	return rc;
}

/* Raw labels: class k is NYU id k, named from the labeled .mat's `names`
 * (894x1 cell) when matio can read it, else "nyu_K". */
static void nyu_class_map_raw(struct nyu_class_map *cm, const char *mat)
{
	memset(cm, 0, sizeof *cm);
	cm->nclasses = NYU_CLASSES_RAW;
	for (int k = 0; k <= NYU_CLASSES_RAW; k++)
		cm->map[k] = (uint16_t)k;
	cm->names[0] = xstrdup("unlabeled");
	mat_t *m = Mat_Open(mat, MAT_ACC_RDONLY);
	matvar_t *v = m ? Mat_VarRead(m, "names") : NULL;
	int vec, ok = v && v->class_type == MAT_C_CELL &&
		      mat_count(v, &vec) == NYU_CLASSES_RAW && vec;
	for (int k = 1; ok && k <= NYU_CLASSES_RAW; k++) {
		char *s = mat_string(Mat_VarGetCell(v, k - 1));
		ok = s && *s && !strpbrk(s, "\r\n");
		cm->names[k] = s;
	}
	Mat_VarFree(v);
	if (m)
		Mat_Close(m);
	if (!ok) {
		mke_warn("'%s': no readable 'names' (894 strings); raw class k is named nyu_k",
			 mat);
		for (int k = 1; k <= NYU_CLASSES_RAW; k++) {
			free(cm->names[k]);
			cm->names[k] = xasprintf("nyu_%d", k);
		}
	}
}

/* split[i] = 1 train, 2 test, 0 neither, from splits.mat (1-based indices
 * into the n images of mat). */
static int nyu_splits_load(const char *path, const char *mat, int n, unsigned char *split)
{
	mat_t *m = mat_open(path, "splits.mat (" NYU_SPLIT_HINT ")");
	if (!m)
		return -1;
	static const char *const names[2] = {"trainNdxs", "testNdxs"};
	int rc = 0;
	memset(split, 0, (size_t)n);
	for (int s = 0; s < 2 && !rc; s++) {
		double *v = NULL;
		size_t k = 0;
		rc = mat_vector(m, path, names[s], NYU_SPLIT_HINT, &v, &k);
		for (size_t j = 0; j < k && !rc; j++) {
			double x = v[j];
			if (!(x >= 1 && x <= n) || x != floor(x))
				rc = mke_error("'%s': %s(%zu) = %g is not an image index in 1..%d "
					       "('%s' has %d images); use the splits.mat that goes "
					       "with this labeled .mat", path, names[s], j + 1, x, n,
					       mat, n);
			else if (split[(int)x - 1])
				rc = mke_error("'%s': image %d is listed twice (in %s and %s); "
					       "the file is damaged", path, (int)x,
					       names[split[(int)x - 1] - 1], names[s]);
			else
				split[(int)x - 1] = (unsigned char)(s + 1);
		}
		free(v);
	}
	Mat_Close(m);
	int neither = 0;
	for (int i = 0; !rc && i < n; i++)
		neither += !split[i];
	if (neither)
		mke_warn("'%s': %d of the %d images are in neither trainNdxs nor testNdxs; their "
			 "split cell is empty", path, neither, n);
	return rc;
}

/* HDF5 reports go through mke_error; its own error stack printing is off. */
static void h5_quiet(void)
{
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

struct h5var {
	hid_t d, space;
	int rank;
	hsize_t dims[4];
};

static int h5var_open(struct h5var *v, hid_t f, const char *file, const char *name, int rank)
{
	memset(v, 0, sizeof *v);
	v->d = v->space = -1;
	if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
		return mke_error("'%s': no dataset '%s' (is this nyu_depth_v2_labeled.mat?)", file,
				 name);
	v->d = H5Dopen2(f, name, H5P_DEFAULT);
	if (v->d < 0)
		return mke_error("'%s': cannot open dataset '%s'", file, name);
	v->space = H5Dget_space(v->d);
	v->rank = v->space >= 0 ? H5Sget_simple_extent_ndims(v->space) : -1;
	if (v->rank != rank)
		return mke_error("'%s': dataset '%s' has %d dimensions, expected %d", file, name,
				 v->rank, rank);
	H5Sget_simple_extent_dims(v->space, v->dims, NULL);
	return 0;
}

static void h5var_close(struct h5var *v)
{
	if (v->space >= 0)
		H5Sclose(v->space);
	if (v->d >= 0)
		H5Dclose(v->d);
}

/* Read sample i (the first dimension) of v as mem_type into buf. */
static int h5var_read(struct h5var *v, hsize_t i, hid_t mem_type, void *buf, const char *file,
		      const char *name)
{
	hsize_t start[4] = {i, 0, 0, 0}, count[4];
	count[0] = 1;
	for (int k = 1; k < v->rank; k++)
		count[k] = v->dims[k];
	hid_t mem = H5Screate_simple(v->rank, count, NULL);
	int rc = 0;
	if (H5Sselect_hyperslab(v->space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
	    H5Dread(v->d, mem_type, mem, v->space, H5P_DEFAULT, buf) < 0)
		rc = mke_error("'%s': cannot read sample %llu of '%s'", file,
			       (unsigned long long)i, name);
	H5Sclose(mem);
	return rc;
}

int import_nyuv2(const char *mat, const char *splits_mat, const char *class_map,
		 const char *out_dir, struct import_stats *st)
{
	memset(st, 0, sizeof *st);
	h5_quiet();
	if (H5Fis_hdf5(mat) <= 0)
		return mke_error("'%s' is not a MATLAB v7.3 (HDF5) file; expected "
				 "nyu_depth_v2_labeled.mat", mat);
	struct nyu_class_map cm;
	if (class_map) {
		if (nyu_class_map_load(&cm, class_map) != 0)
			return -1;
	} else {
		nyu_class_map_raw(&cm, mat);
	}
	st->classes = cm.nclasses;
	const uint16_t *map = cm.map;
	hid_t f = H5Fopen(mat, H5F_ACC_RDONLY, H5P_DEFAULT);
	if (f < 0) {
		nyu_class_map_release(&cm);
		return mke_error("cannot open '%s' with libhdf5", mat);
	}
	struct h5var im, dp, lb;
	int rc = -1;
	unsigned char *split = NULL;
	uint8_t *rgb_in = NULL, *rgb = NULL;
	float *dep_in = NULL;
	uint16_t *lab_in = NULL, *dep = NULL, *lab = NULL;
	struct sbuf b = {0};
	memset(&dp, 0, sizeof dp);
	memset(&lb, 0, sizeof lb);
	dp.d = dp.space = lb.d = lb.space = -1;
	if (h5var_open(&im, f, mat, "images", 4) || h5var_open(&dp, f, mat, "depths", 3) ||
	    h5var_open(&lb, f, mat, "labels", 3))
		goto out;
	/* MATLAB's H x W x 3 x N is N x 3 x W x H in HDF5's (C) order */
	hsize_t n = im.dims[0], W = im.dims[2], H = im.dims[3];
	if (im.dims[1] != 3 || dp.dims[0] != n || lb.dims[0] != n || dp.dims[1] != W ||
	    dp.dims[2] != H || lb.dims[1] != W || lb.dims[2] != H || n == 0 || n > 1000000 ||
	    W * H == 0 || W * H > (1u << 26)) {
		mke_error("'%s': shapes do not agree: images %llux%llux%llux%llu, depths "
			  "%llux%llux%llu, labels %llux%llux%llu (expected Nx3xWxH, NxWxH, NxWxH)",
			  mat, (unsigned long long)im.dims[0], (unsigned long long)im.dims[1],
			  (unsigned long long)im.dims[2], (unsigned long long)im.dims[3],
			  (unsigned long long)dp.dims[0], (unsigned long long)dp.dims[1],
			  (unsigned long long)dp.dims[2], (unsigned long long)lb.dims[0],
			  (unsigned long long)lb.dims[1], (unsigned long long)lb.dims[2]);
		goto out;
	}
	split = xmalloc((size_t)n);
	if (splits_mat) {
		if (nyu_splits_load(splits_mat, mat, (int)n, split) != 0)
			goto out;
	} else {
		for (hsize_t i = 0; i < n; i++)
			split[i] = nyu_default_is_test((int)i, (int)n) ? 2 : 1;
	}
	static const char *const sub[] = {"rgb", "depth", "label"};
	for (int k = 0; k < 3; k++) {
		char *p = path_join(out_dir, sub[k]);
		int bad = mkdir_p(p, 0755);
		free(p);
		if (bad)
			goto out;
	}
	size_t px = (size_t)W * (size_t)H;
	rgb_in = xmalloc(3 * px);
	rgb = xmalloc(3 * px);
	dep_in = xmalloc(px * sizeof *dep_in);
	lab_in = xmalloc(px * sizeof *lab_in);
	dep = xmalloc(px * sizeof *dep);
	lab = xmalloc(px * sizeof *lab);
	sbuf_puts(&b, "id,split,rgb,depth,labelmap\n");
	int nbadlab = 0;
	for (hsize_t i = 0; i < n; i++) {
		st->rows++;
		if (h5var_read(&im, i, H5T_NATIVE_UINT8, rgb_in, mat, "images") ||
		    h5var_read(&dp, i, H5T_NATIVE_FLOAT, dep_in, mat, "depths") ||
		    h5var_read(&lb, i, H5T_NATIVE_UINT16, lab_in, mat, "labels"))
			goto out;
		/* stored [c][x][y]; written row-major [y][x][c] */
		for (hsize_t x = 0; x < W; x++)
			for (hsize_t y = 0; y < H; y++) {
				size_t s = x * H + y, o = y * W + x;
				for (int c = 0; c < 3; c++)
					rgb[3 * o + c] = rgb_in[c * px + s];
				float m = dep_in[s] * 1000.0f;
				dep[o] = !(m > 0) ? 0 : m >= 65535.0f ? 65535 : (uint16_t)lrintf(m);
				uint16_t l = lab_in[s];
				if (l > NYU_CLASSES_RAW) {
					nbadlab++;
					l = 0;
				}
				lab[o] = map[l];
			}
		char name[32];
		snprintf(name, sizeof name, "%04llu.png", (unsigned long long)i);
		char *pr = xasprintf("%s/rgb/%s", out_dir, name);
		char *pd = xasprintf("%s/depth/%s", out_dir, name);
		char *pl = xasprintf("%s/label/%s", out_dir, name);
		int bad = png_write(pr, (int)W, (int)H, 3, 8, rgb) ||
			  png_write(pd, (int)W, (int)H, 1, 16, dep) ||
			  png_write(pl, (int)W, (int)H, 1, 16, lab);
		free(pr);
		free(pd);
		free(pl);
		if (bad)
			goto out;
		static const char *const sn[] = {"", "train", "test"};
		sbuf_printf(&b, "nyu_%04llu,%s,rgb/%s,depth/%s,label/%s\n", (unsigned long long)i,
			    sn[split[i]], name, name, name);
		st->written++;
	}
	if (nbadlab)
		mke_warn("'%s': %d label pixels above %d were written as 0 (unlabeled)", mat,
			 nbadlab, NYU_CLASSES_RAW);
	char *mp = path_join(out_dir, "manifest.csv");
	rc = write_text(mp, &b);
	/* line k names label value k; 0 is unlabeled (the ignore label) */
	if (!rc)
		rc = write_classes(mp, cm.names, cm.nclasses + 1);
	free(mp);
out:
	h5var_close(&im);
	h5var_close(&dp);
	h5var_close(&lb);
	H5Fclose(f);
	nyu_class_map_release(&cm);
	free(split);
	free(rgb_in);
	free(rgb);
	free(dep_in);
	free(lab_in);
	free(dep);
	free(lab);
	sbuf_release(&b);
	return rc;
}
