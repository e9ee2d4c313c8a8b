/*
 * cmd_split.c - `mke split MANIFEST [--labeled F] [--test F] [--seed S]`:
 * cut one manifest (as the importers write it) into the three a run config
 * names: M-labeled.csv, M-unlabeled.csv and M-test.csv next to M, so their
 * relative path cells keep resolving.
 *
 * Test rows are those whose split is "test" (or "val", "eval"); without any,
 * a --test fraction of the rows. Of the rest, a --labeled fraction of each
 * class (at least one row per class that has rows; of all rows when the
 * manifest has no label column, as for segmentation) is the labeled set; the
 * others are the unlabeled set, which keeps its labels (the run uses them
 * only for diagnostics and the mm_student_sup upper bound). Rows are chosen
 * by a hash of (seed, id), so the same seed gives the same split on every
 * machine and a row's fate does not depend on the others.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "importers.h"
#include "manifest.h"
#include "util.h"

struct split_opts {
	const char *manifest;
	double labeled, test;
	unsigned long long seed;
};

static int parse_fraction(const char *opt, const char *v, double *out)
{
	char *end;
	double x = strtod(v, &end);
	if (end == v || *end || !(x > 0.0 && x < 1.0)) {
		fprintf(stderr, "error: %s must be a fraction in (0, 1), not '%s'\n", opt, v);
		return -1;
	}
	*out = x;
	return 0;
}

static int parse(int argc, char **argv, struct split_opts *o)
{
	memset(o, 0, sizeof *o);
	o->labeled = 0.1;
	o->test = 0.2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "--labeled") == 0 && has) {
			if (parse_fraction(a, argv[++i], &o->labeled))
				return -1;
		} else if (strcmp(a, "--test") == 0 && has) {
			if (parse_fraction(a, argv[++i], &o->test))
				return -1;
		} else if (strcmp(a, "--seed") == 0 && has) {
			long s;
			if (parse_long(argv[++i], &s) != 0 || s < 0) {
				fprintf(stderr, "error: --seed must be a non-negative integer, not '%s'\n",
					argv[i]);
				return -1;
			}
			o->seed = (unsigned long long)s;
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			return -1;
		} else if (!o->manifest) {
			o->manifest = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return -1;
		}
	}
	if (!o->manifest) {
		fprintf(stderr, "error: a MANIFEST is required\n");
		return -1;
	}
	return 0;
}

/* A uniform draw in [0,1) from (seed, id): splitmix64 over FNV-1a. */
static double row_draw(unsigned long long seed, const char *id)
{
	unsigned long long h = 1469598103934665603ULL ^ seed;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	h += 0x9e3779b97f4a7c15ULL;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return (double)(h >> 11) / 9007199254740992.0;
}

static int is_test_split(const char *s)
{
	return strcmp(s, "test") == 0 || strcmp(s, "val") == 0 || strcmp(s, "eval") == 0;
}

struct pick {
	int row;
	double key;
	const char *label;
};

static int by_label_key(const void *a, const void *b)
{
	const struct pick *x = a, *y = b;
	int c = strcmp(x->label, y->label);
	if (c)
		return c;
	return x->key < y->key ? -1 : x->key > y->key;
}

static void put_row(struct sbuf *b, const struct manifest *m, int r)
{
	for (int c = 0; c < m->ncols; c++) {
		if (c)
			sbuf_puts(b, ",");
		sbuf_csv(b, m->rows[r].cells[c]);
	}
	sbuf_puts(b, "\n");
}

static void put_header(struct sbuf *b, const struct manifest *m)
{
	for (int c = 0; c < m->ncols; c++) {
		if (c)
			sbuf_puts(b, ",");
		sbuf_csv(b, m->cols[c]);
	}
	sbuf_puts(b, "\n");
}

/* M.csv -> M-<part>.csv */
static char *part_path(const char *manifest, const char *part)
{
	size_t n = strlen(manifest);
	if (n > 4 && strcmp(manifest + n - 4, ".csv") == 0)
		n -= 4;
	return xasprintf("%.*s-%s.csv", (int)n, manifest, part);
}

int cmd_split(int argc, char **argv)
{
	struct split_opts o;
	if (parse(argc, argv, &o) != 0)
		return 2;
	struct manifest m;
	if (manifest_load(&m, o.manifest) != 0)
		return 1;
	/* 0 unlabeled, 1 labeled, 2 test */
	unsigned char *part = xcalloc((size_t)m.nrows + 1, 1);
	int has_test = 0;
	for (int r = 0; m.split_col >= 0 && r < m.nrows; r++)
		if (is_test_split(m.rows[r].cells[m.split_col]))
			part[r] = 2, has_test = 1;
	if (!has_test)
		for (int r = 0; r < m.nrows; r++)
			if (row_draw(o.seed ^ 0x7e57ULL, m.rows[r].cells[m.id_col]) < o.test)
				part[r] = 2;
	/* the labeled fraction of every class among the rows with a label */
	struct pick *p = xmalloc(sizeof *p * ((size_t)m.nrows + 1));
	int np = 0;
	for (int r = 0; r < m.nrows; r++) {
		/* no label column (a segmentation manifest: the targets are label
		 * maps): one stratum */
		const char *lab = m.label_col >= 0 ? m.rows[r].cells[m.label_col] : "";
		if (part[r] == 2 || (m.label_col >= 0 && !lab[0]))
			continue;
		p[np++] = (struct pick){r, row_draw(o.seed, m.rows[r].cells[m.id_col]), lab};
	}
	qsort(p, (size_t)np, sizeof *p, by_label_key);
	for (int i = 0; i < np;) {
		int j = i;
		while (j < np && strcmp(p[j].label, p[i].label) == 0)
			j++;
		int take = (int)(o.labeled * (j - i) + 0.5);
		if (take < 1)
			take = 1;
		for (int k = i; k < i + take && k < j; k++)
			part[p[k].row] = 1;
		i = j;
	}
	free(p);

	static const char *const names[] = { "unlabeled", "labeled", "test" };
	int count[3] = {0};
	int rc = 0;
	for (int q = 0; q < 3 && rc == 0; q++) {
		struct sbuf b = {0};
		put_header(&b, &m);
		for (int r = 0; r < m.nrows; r++)
			if (part[r] == q) {
				put_row(&b, &m, r);
				count[q]++;
			}
		char *path = part_path(o.manifest, names[q]);
		if (write_file_atomic(path, b.p ? b.p : "", b.n, 0644) != 0) {
			fprintf(stderr, "error: cannot write '%s'\n", path);
			rc = 1;
		}
		free(path);
		sbuf_release(&b);
	}
	if (rc == 0)
		printf("%s: %d labeled, %d unlabeled, %d test (%d bad rows skipped)\n", o.manifest,
		       count[1], count[0], count[2], m.nbad);
	free(part);
	manifest_release(&m);
	return rc;
}
