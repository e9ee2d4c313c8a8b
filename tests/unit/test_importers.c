/*
 * test_importers.c - the dataset importers and generators
 * (common/importers.h, common/gen.h): the CSV dialects (AudioSet comment
 * lines and `, "`, quoted labels with commas, line numbers across quoted
 * line breaks, malformed rows), missing media reported and skipped, RAVDESS
 * name parsing, the NYU 894->40 mapping (classMapping40.mat v5/v7.3 and
 * CSV, bad ones) and splits.mat (v5/v7.3, bad ones), relative paths, and
 * generator -> importer round trips down to the pixels of NYU's PNGs.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <matio.h>

#include "gen.h"
#include "importers.h"
#include "av.h"
#include "manifest.h"
#include "media.h"
#include "test.h"
#include "tmpdir.h"
#include "util.h"

static void put(const char *rel, const char *text)
{
	char *p = tpath(rel), *d = path_dirname(p);
	mkdir_p(d, 0755);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	free(d);
	free(p);
}

static char *slurp(const char *rel)
{
	char *p = tpath(rel);
	size_t n;
	char *s = read_file(p, &n);
	free(p);
	return s ? s : xstrdup("");
}

/* ---- the CSV reader ------------------------------------------------------------ */

static void test_csv_audioset_dialect(void)
{
	const char *t = "# Segments csv created Sun Mar  5 10:54:31 2017\n"
			"# num_ytids=2, num_segs=2\n"
			"# YTID, start_seconds, end_seconds, positive_labels\n"
			"--PJHxphWEs, 30.000, 40.000, \"/m/09x0r,/t/dd00088\"\r\n"
			"\n"
			"--ZhevVpy1s, 50.000, 60.000, \"/m/012xff\"\n";
	struct csv_in r;
	csv_in_init(&r, "seg.csv", t, strlen(t), 1, 1);
	CHECK(csv_in_next(&r) == 1);
	CHECK(r.nf == 4 && r.rec_line == 4);
	CHECK(strcmp(r.f[0], "--PJHxphWEs") == 0);
	CHECK(strcmp(r.f[1], "30.000") == 0);
	CHECK(strcmp(r.f[3], "/m/09x0r,/t/dd00088") == 0);
	CHECK(csv_in_next(&r) == 1);
	CHECK(r.nf == 4 && r.rec_line == 6 && strcmp(r.f[3], "/m/012xff") == 0);
	CHECK(csv_in_next(&r) == 0);
	csv_in_release(&r);
}

static void test_csv_quoted_and_bad(void)
{
	const char *t = "a,\"x, \"\"y\"\"\",3\n"
			"b,\"two\nlines\",4\n"
			"c,\"open\"junk,5\n"
			"d,ok,6\n"
			"# not a comment here\n"
			"e,\"never closed,7\n";
	struct csv_in r;
	csv_in_init(&r, "v.csv", t, strlen(t), 0, 0);
	CHECK(csv_in_next(&r) == 1);
	CHECK(r.nf == 3 && strcmp(r.f[1], "x, \"y\"") == 0);
	CHECK(csv_in_next(&r) == 1);
	CHECK(r.rec_line == 2 && strcmp(r.f[1], "two\nlines") == 0);
	CHECK(csv_in_next(&r) == -1);          /* text after a closing quote, line 4 */
	CHECK(csv_in_next(&r) == 1);
	CHECK(r.rec_line == 5 && strcmp(r.f[0], "d") == 0);
	CHECK(csv_in_next(&r) == 1);           /* comments off: a row */
	CHECK(r.nf == 1 && r.rec_line == 6);
	CHECK(csv_in_next(&r) == -1);          /* unterminated */
	CHECK(csv_in_next(&r) == 0);
	csv_in_release(&r);
}

static void test_sbuf_csv(void)
{
	struct sbuf b = {0};
	sbuf_csv(&b, "plain");
	sbuf_puts(&b, "|");
	sbuf_csv(&b, "a, \"b\"");
	CHECK(strcmp(b.p, "plain|\"a, \"\"b\"\"\"") == 0);
	sbuf_release(&b);
}

static void test_path_relative(void)
{
	tmp_make("mke-imp");
	put("m/a/x.wav", "");
	put("o/p/y", "");
	char *m = tpath("m/a"), *o = tpath("o/p"), *t = tpath(""), *r;
	r = path_relative(o, m);
	CHECK_MSG(strcmp(r, "../../m/a") == 0, "%s", r);
	free(r);
	r = path_relative(t, m);
	CHECK_MSG(strcmp(r, "m/a") == 0, "%s", r);
	free(r);
	r = path_relative(m, m);
	CHECK(strcmp(r, ".") == 0);
	free(r);
	free(m);
	free(o);
	free(t);
	tmp_clean();
}

/* ---- VGGSound and AudioSet --------------------------------------------------------- */

static void test_vggsound_import(void)
{
	tmp_make("mke-imp");
	put("vggsound.csv", "abc,30,\"male speech, man speaking\",train\n"
			    "def,5,dog barking,test\n"
			    "ghi,7,dog barking,train\n"
			    "bad,x,dog barking,train\n"
			    "jkl,12,cat purring,test\n");
	put("media/abc_000030.wav", "");
	put("media/abc_000030/0001.png", "");
	put("media/def_000005.wav", "");
	put("media/jkl_000012.mp4", "");
	char *csv = tpath("vggsound.csv"), *media = tpath("media"), *out = tpath("m/man.csv");
	struct import_stats st;
	CHECK(import_vggsound(csv, media, out, &st) == 0);
	CHECK(st.rows == 5 && st.written == 3 && st.missing == 1 && st.bad == 1);
	CHECK(st.classes == 3);
	struct manifest m;
	CHECK(manifest_load(&m, out) == 0);
	CHECK(m.nrows == 3 && m.nbad == 0 && m.ncols == 5);
	CHECK(manifest_col(&m, "frames") == 4 && manifest_col(&m, "audio") == 3);
	/* classes sorted: cat purring, dog barking, male speech, man speaking */
	CHECK(strcmp(m.rows[0].cells[0], "abc_000030") == 0);
	CHECK(strcmp(m.rows[0].cells[1], "2") == 0);
	CHECK(strcmp(m.rows[0].cells[3], "../media/abc_000030.wav") == 0);
	CHECK(strcmp(m.rows[0].cells[4], "../media/abc_000030") == 0);
	CHECK(strcmp(m.rows[1].cells[1], "1") == 0 && strcmp(m.rows[1].cells[2], "test") == 0);
	CHECK(strcmp(m.rows[1].cells[4], "") == 0);
	CHECK(strcmp(m.rows[2].cells[3], "../media/jkl_000012.mp4") == 0);
	CHECK(strcmp(m.rows[2].cells[4], "../media/jkl_000012.mp4") == 0);   /* frames too */
	manifest_release(&m);
	char *cls = slurp("m/man.csv.classes.txt");
	CHECK(strcmp(cls, "cat purring\ndog barking\nmale speech, man speaking\n") == 0);
	free(cls);
	/* no media directory at all: the import fails */
	char *nomedia = tpath("nope");
	CHECK(import_vggsound(csv, nomedia, out, &st) == -1);
	free(nomedia);
	free(csv);
	free(media);
	free(out);
	tmp_clean();
}

static void test_audioset_import(void)
{
	tmp_make("mke-imp");
	put("labels.csv", "index,mid,display_name\n"
			  "0,/m/09x0r,\"Speech\"\n"
			  "1,/m/05zppz,\"Male speech, man speaking\"\n"
			  "2,/m/0bt9lr,\"Dog\"\n");
	put("eval_segments.csv", "# Segments csv created Sun Mar  5 10:54:31 2017\n"
				 "# num_ytids=4, num_segs=4, num_unique_labels=3\n"
				 "# YTID, start_seconds, end_seconds, positive_labels\n"
				 "aaa, 30.000, 40.000, \"/m/05zppz,/m/09x0r\"\n"
				 "bbb, 0.000, 10.000, \"/m/0bt9lr\"\n"
				 "ccc, 0.000, 10.000, \"/m/zzzz\"\n"
				 "ddd, 5.000, 15.000, \"/m/0bt9lr\"\n");
	put("media/aaa_000030.wav", "");
	put("media/bbb.wav", "");
	put("media/ccc_000000.wav", "");
	char *seg = tpath("eval_segments.csv"), *lab = tpath("labels.csv");
	char *media = tpath("media"), *out = tpath("as.csv");
	struct import_stats st;
	CHECK(import_audioset(seg, lab, media, NULL, out, &st) == 0);
	CHECK(st.rows == 4 && st.written == 2 && st.missing == 1 && st.bad == 1);
	CHECK(st.classes == 3);
	struct manifest m;
	CHECK(manifest_load(&m, out) == 0);
	CHECK(m.nrows == 2);
	CHECK(strcmp(m.rows[0].cells[0], "aaa_000030") == 0);
	CHECK(strcmp(m.rows[0].cells[1], "0;1") == 0);
	CHECK(strcmp(m.rows[0].cells[2], "test") == 0);   /* "eval" in the file name */
	CHECK(strcmp(m.rows[1].cells[3], "media/bbb.wav") == 0);
	manifest_release(&m);
	char *cls = slurp("as.csv.classes.txt");
	CHECK(strcmp(cls, "Speech\nMale speech, man speaking\nDog\n") == 0);
	free(cls);
	CHECK(import_audioset(seg, lab, media, "unbalanced", out, &st) == 0);
	CHECK(manifest_load(&m, out) == 0);
	CHECK(m.nrows == 2 && strcmp(m.rows[1].cells[2], "unbalanced") == 0);
	manifest_release(&m);
	/* a class table with a gap in its indices is refused */
	put("labels.csv", "index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n");
	CHECK(import_audioset(seg, lab, media, NULL, out, &st) == -1);
	free(seg);
	free(lab);
	free(media);
	free(out);
	tmp_clean();
}

/* ---- RAVDESS ------------------------------------------------------------------------ */

static void test_ravdess_names(void)
{
	int f[RAV_NFIELDS];
	CHECK(ravdess_parse("03-01-05-01-02-01-12.wav", f) == 0);
	CHECK(f[RAV_MODALITY] == 3 && f[RAV_VOCAL] == 1 && f[RAV_EMOTION] == 5);
	CHECK(f[RAV_INTENSITY] == 1 && f[RAV_STATEMENT] == 2 && f[RAV_REPETITION] == 1);
	CHECK(f[RAV_ACTOR] == 12);
	CHECK(ravdess_parse("01-02-08-02-02-02-24", f) == 0 && f[RAV_ACTOR] == 24);
	CHECK(ravdess_parse("04-01-05-01-02-01-12.wav", f) == -1);   /* modality 04 */
	CHECK(ravdess_parse("03-01-09-01-02-01-12.wav", f) == -1);   /* emotion 09 */
	CHECK(ravdess_parse("03-01-05-01-02-01-25.wav", f) == -1);   /* actor 25 */
	CHECK(ravdess_parse("03-01-05-01-02-01-00.wav", f) == -1);
	CHECK(ravdess_parse("03-01-05-01-02-01.wav", f) == -1);      /* six fields */
	CHECK(ravdess_parse("03-01-05-01-02-01-12x.wav", f) == -1);
	CHECK(ravdess_parse("3-01-05-01-02-01-12.wav", f) == -1);
	CHECK(strcmp(ravdess_split(1), "train") == 0 && strcmp(ravdess_split(20), "train") == 0);
	CHECK(strcmp(ravdess_split(21), "test") == 0 && strcmp(ravdess_split(24), "test") == 0);
}

static void test_ravdess_import(void)
{
	tmp_make("mke-imp");
	put("audio/Actor_01/03-01-05-01-02-01-01.wav", "");
	put("video/Actor_01/01-01-05-01-02-01-01.png", "");
	put("audio/Actor_22/03-01-02-02-01-01-22.wav", "");
	put("video/Actor_22/02-01-02-02-01-01-22/0001.jpg", "");  /* a frame folder */
	put("audio/Actor_03/03-01-01-01-01-01-03.wav", "");         /* no face */
	put("audio/Actor_03/readme.txt", "");
	char *dir = tpath(""), *out = tpath("rav.csv");
	struct import_stats st;
	CHECK(import_ravdess(dir, out, &st) == 0);
	CHECK(st.rows == 3 && st.written == 2 && st.missing == 1);
	struct manifest m;
	CHECK(manifest_load(&m, out) == 0);
	CHECK(m.nrows == 2);
	CHECK(strcmp(m.rows[0].cells[0], "03-01-02-02-01-01-22") == 0);
	CHECK(strcmp(m.rows[0].cells[1], "1") == 0 && strcmp(m.rows[0].cells[2], "test") == 0);
	CHECK(strcmp(m.rows[0].cells[3], "video/Actor_22/02-01-02-02-01-01-22") == 0);
	CHECK(strcmp(m.rows[1].cells[1], "4") == 0 && strcmp(m.rows[1].cells[2], "train") == 0);
	CHECK(strcmp(m.rows[1].cells[3], "video/Actor_01/01-01-05-01-02-01-01.png") == 0);
	CHECK(strcmp(m.rows[1].cells[4], "audio/Actor_01/03-01-05-01-02-01-01.wav") == 0);
	manifest_release(&m);
	free(dir);
	free(out);
	tmp_clean();
}

/* ---- NYU Depth V2 ----------------------------------------------------------------- */

/* A test mapping that is not the generator's rule, so a test sees that the
 * mapping read from the file is the one applied: id k -> (7 k mod 40) + 1. */
static int test_map40(int k)
{
	return k ? (7 * k) % 40 + 1 : 0;
}

/* A MATLAB file (MAT_FT_MAT5 or MAT_FT_MAT73) at tmp/rel, to fill with
 * mat_doubles / mat_names and close. */
static mat_t *mat_new(const char *rel, enum mat_ft ver)
{
	char *p = tpath(rel);
	mat_t *m = Mat_CreateVer(p, ver == MAT_FT_MAT5 ? "MATLAB 5.0 MAT-file, mke test" : NULL,
				 ver);
	free(p);
	CHECK(m != NULL);
	return m;
}

static void mat_doubles(mat_t *m, const char *name, size_t rows, size_t cols, const double *v)
{
	size_t d[2] = {rows, cols};
	matvar_t *x = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d, (void *)v, 0);
	CHECK(x && Mat_VarWrite(m, x, MAT_COMPRESSION_ZLIB) == 0);
	Mat_VarFree(x);
}

/* A 1 x n cell of strings "<prefix>1" .. "<prefix>n" (UTF-16, as MATLAB). */
static void mat_names(mat_t *m, const char *name, int n, const char *prefix)
{
	size_t d[2] = {1, (size_t)n};
	matvar_t *c = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, d, NULL, 0);
	for (int k = 0; c && k < n; k++) {
		char s8[32];
		uint16_t s[32];
		snprintf(s8, sizeof s8, "%s%d", prefix, k + 1);
		size_t ds[2] = {1, strlen(s8)};
		for (size_t i = 0; i < ds[1]; i++)
			s[i] = (unsigned char)s8[i];
		Mat_VarSetCell(c, k, Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT16, 2, ds, s, 0));
	}
	CHECK(c && Mat_VarWrite(m, c, MAT_COMPRESSION_ZLIB) == 0);
	Mat_VarFree(c);
}

/* classMapping40.mat at tmp/rel: mapClass (1 x n, test_map40, value bad at
 * the 1-based index at, when at > 0) and, with names, className c1..c40. */
static void write_map(const char *rel, enum mat_ft ver, int n, int at, double bad, int names)
{
	double v[NYU_CLASSES_RAW + 8];
	for (int k = 1; k <= n; k++)
		v[k - 1] = k == at ? bad : test_map40(k);
	mat_t *m = mat_new(rel, ver);
	if (!m)
		return;
	mat_doubles(m, "mapClass", 1, (size_t)n, v);
	if (names)
		mat_names(m, "className", NYU_CLASSES, "c");
	Mat_Close(m);
}

/* Load rel expecting failure; 1 when stderr names the file and holds each
 * of the (up to three) words. */
static int map_fails(const char *rel, const char *w1, const char *w2, const char *w3)
{
	char *p = tpath(rel);
	struct nyu_class_map cm;
	capture_begin();
	int rc = nyu_class_map_load(&cm, p);
	char *err = capture_end();
	int ok = rc == -1 && strstr(err, p) && strstr(err, w1) && (!w2 || strstr(err, w2)) &&
		 (!w3 || strstr(err, w3));
	if (!ok)
		fprintf(stderr, "  unexpected report for %s: %s", rel, err);
	free(err);
	free(p);
	return ok;
}

static void test_nyu_class_map_mat(void)
{
	tmp_make("mke-imp");
	struct nyu_class_map cm;
	/* v5 (zlib) and v7.3 (HDF5), mapClass a row and a column */
	write_map("m5.mat", MAT_FT_MAT5, NYU_CLASSES_RAW, 0, 0, 1);
	mat_t *m = mat_new("m73.mat", MAT_FT_MAT73);
	double v[NYU_CLASSES_RAW];
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		v[k - 1] = test_map40(k);
	mat_doubles(m, "mapClass", NYU_CLASSES_RAW, 1, v);
	mat_names(m, "className", NYU_CLASSES, "c");
	Mat_Close(m);
	static const char *const good[] = {"m5.mat", "m73.mat"};
	for (int f = 0; f < 2; f++) {
		char *p = tpath(good[f]);
		CHECK_MSG(nyu_class_map_load(&cm, p) == 0, "%s", good[f]);
		int ok = cm.nclasses == NYU_CLASSES && cm.map[0] == 0;
		for (int k = 1; k <= NYU_CLASSES_RAW; k++)
			ok &= cm.map[k] == test_map40(k);
		CHECK_MSG(ok, "%s: mapClass not applied", good[f]);
		CHECK(cm.names[0] && strcmp(cm.names[0], "unlabeled") == 0);
		CHECK(cm.names[1] && strcmp(cm.names[1], "c1") == 0);
		CHECK(cm.names[40] && strcmp(cm.names[40], "c40") == 0 && !cm.names[41]);
		nyu_class_map_release(&cm);
		free(p);
	}
	/* no className: the NYU-40 names, with a warning */
	write_map("nonames.mat", MAT_FT_MAT5, NYU_CLASSES_RAW, 0, 0, 0);
	char *p = tpath("nonames.mat");
	capture_begin();
	int rc = nyu_class_map_load(&cm, p);
	char *err = capture_end();
	CHECK(rc == 0 && strstr(err, "className"));
	CHECK(rc == 0 && strcmp(cm.names[1], "wall") == 0 && strcmp(cm.names[40], "otherprop") == 0);
	nyu_class_map_release(&cm);
	free(err);
	free(p);
	/* bad inputs: each a report naming the file, the variable, what is wrong */
	m = mat_new("nomap.mat", MAT_FT_MAT5);
	mat_doubles(m, "mapClasses", 1, NYU_CLASSES_RAW, v);
	Mat_Close(m);
	CHECK(map_fails("nomap.mat", "no variable 'mapClass'", "classMapping40.mat", NULL));
	write_map("short.mat", MAT_FT_MAT5, 893, 0, 0, 1);
	CHECK(map_fails("short.mat", "mapClass has 893 values", "expected 894", NULL));
	write_map("v41.mat", MAT_FT_MAT5, NYU_CLASSES_RAW, 5, 41, 1);
	CHECK(map_fails("v41.mat", "mapClass(5) = 41", "1..40", NULL));
	write_map("v0.mat", MAT_FT_MAT73, NYU_CLASSES_RAW, 894, 0, 1);
	CHECK(map_fails("v0.mat", "mapClass(894) = 0", "1..40", NULL));
	write_map("frac.mat", MAT_FT_MAT5, NYU_CLASSES_RAW, 2, 2.5, 1);
	CHECK(map_fails("frac.mat", "mapClass(2) = 2.5", NULL, NULL));
	m = mat_new("char.mat", MAT_FT_MAT5);   /* mapClass a string */
	size_t ds[2] = {1, 4};
	matvar_t *x = Mat_VarCreate("mapClass", MAT_C_CHAR, MAT_T_UINT8, 2, ds, "wall", 0);
	CHECK(Mat_VarWrite(m, x, MAT_COMPRESSION_NONE) == 0);
	Mat_VarFree(x);
	Mat_Close(m);
	CHECK(map_fails("char.mat", "'mapClass' is a char array", "not real numbers", NULL));
	m = mat_new("cell.mat", MAT_FT_MAT5);   /* mapClass a cell */
	mat_names(m, "mapClass", 3, "x");
	Mat_Close(m);
	CHECK(map_fails("cell.mat", "'mapClass' is a cell array", NULL, NULL));
	m = mat_new("matrix.mat", MAT_FT_MAT5);
	mat_doubles(m, "mapClass", 2, 447, v);
	Mat_Close(m);
	CHECK(map_fails("matrix.mat", "'mapClass' is 2x447", "not a vector", NULL));
	m = mat_new("names39.mat", MAT_FT_MAT5);
	mat_doubles(m, "mapClass", 1, NYU_CLASSES_RAW, v);
	mat_names(m, "className", 39, "c");
	Mat_Close(m);
	CHECK(map_fails("names39.mat", "'className'", "39 elements", "40 strings"));
	put("text.mat", "not a MATLAB file at all\n");
	CHECK(map_fails("text.mat", "not a MATLAB file", "classMapping40.mat", NULL));
	CHECK(map_fails("absent.mat", "cannot open", "classMapping40.mat", NULL));
	tmp_clean();
}

static void test_nyu_class_map_csv(void)
{
	tmp_make("mke-imp");
	struct nyu_class_map cm;
	struct sbuf b = {0};
	sbuf_puts(&b, "# NYU id -> 40 classes\nnyu_id,class40,name\n0,0\n");
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		sbuf_printf(&b, "%d,%d,\"n%d, x\"\n", k, test_map40(k), test_map40(k));
	put("map.csv", b.p);
	char *p = tpath("map.csv");
	CHECK(nyu_class_map_load(&cm, p) == 0);
	int ok = cm.nclasses == NYU_CLASSES && cm.map[0] == 0;
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		ok &= cm.map[k] == test_map40(k);
	CHECK(ok);
	CHECK(strcmp(cm.names[8], "n8, x") == 0 && strcmp(cm.names[0], "unlabeled") == 0);
	nyu_class_map_release(&cm);
	/* no header, no names, no 0 row: the NYU-40 names */
	sbuf_release(&b);
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		sbuf_printf(&b, "%d,%d\n", k, test_map40(k));
	put("bare.csv", b.p);
	char *q = tpath("bare.csv");
	CHECK(nyu_class_map_load(&cm, q) == 0 && cm.map[894] == test_map40(894) &&
	      strcmp(cm.names[1], "wall") == 0);
	nyu_class_map_release(&cm);
	free(q);
	/* bad: an id missing, a class out of range, an id twice, two names */
	put("miss.csv", "nyu_id,class40\n1,1\n2,1\n");
	CHECK(map_fails("miss.csv", "NYU class 3 has no row", NULL, NULL));
	sbuf_release(&b);
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		sbuf_printf(&b, "%d,%d\n", k, k == 9 ? 41 : test_map40(k));
	put("v41.csv", b.p);
	CHECK(map_fails("v41.csv", "line 9", "1..40", NULL));
	put("twice.csv", "1,1\n1,2\n");
	CHECK(map_fails("twice.csv", "line 2", "mapped twice", NULL));
	put("names.csv", "1,1,wall\n2,1,floor\n");
	CHECK(map_fails("names.csv", "line 2", "'floor' here and 'wall'", NULL));
	sbuf_release(&b);
	free(p);
	tmp_clean();
}

/* Import the generator's labeled .mat with a splits file; 0 or -1, the
 * report in *err (caller frees). */
static int nyu_import_with(const char *mat, const char *spl, const char *map, const char *out,
			   char **err)
{
	struct import_stats st;
	capture_begin();
	int rc = import_nyuv2(mat, spl, map, out, &st);
	*err = capture_end();
	return rc;
}

static void test_nyu_splits(void)
{
	tmp_make("mke-imp");
	char *dir = tpath("gen"), *mat = tpath("gen/nyu_depth_v2_labeled.mat");
	char *map = tpath("gen/classMapping40.mat"), *out = tpath("out");
	char *man = tpath("out/manifest.csv"), *err = NULL;
	CHECK(gen_dataset("nyuv2", dir, 6, 3) == 0);
	/* v7.3 (HDF5) splits written by matio: images 1..3 train, 4..6 test */
	double tr[3] = {1, 2, 3}, te[3] = {4, 5, 6}, te7[3] = {4, 5, 7}, te3[3] = {3, 5, 6};
	mat_t *m = mat_new("s73.mat", MAT_FT_MAT73);
	mat_doubles(m, "trainNdxs", 3, 1, tr);
	mat_doubles(m, "testNdxs", 3, 1, te);
	Mat_Close(m);
	char *s73 = tpath("s73.mat");
	CHECK(nyu_import_with(mat, s73, map, out, &err) == 0);
	free(err);
	struct manifest mf;
	CHECK(manifest_load(&mf, man) == 0);
	int ok = mf.nrows == 6;
	for (int i = 0; ok && i < 6; i++)
		ok &= strcmp(mf.rows[i].cells[1], i < 3 ? "train" : "test") == 0;
	CHECK(ok);
	manifest_release(&mf);
	/* bad: an index out of range, one listed twice, a variable missing */
	m = mat_new("s7.mat", MAT_FT_MAT5);
	mat_doubles(m, "trainNdxs", 3, 1, tr);
	mat_doubles(m, "testNdxs", 3, 1, te7);
	Mat_Close(m);
	char *s7 = tpath("s7.mat");
	CHECK(nyu_import_with(mat, s7, map, out, &err) == -1);
	CHECK_MSG(strstr(err, s7) && strstr(err, "testNdxs(3) = 7") && strstr(err, "1..6") &&
		  strstr(err, mat), "%s", err);
	free(err);
	m = mat_new("s2.mat", MAT_FT_MAT5);
	mat_doubles(m, "trainNdxs", 3, 1, tr);
	mat_doubles(m, "testNdxs", 3, 1, te3);
	Mat_Close(m);
	char *s2 = tpath("s2.mat");
	CHECK(nyu_import_with(mat, s2, map, out, &err) == -1);
	CHECK_MSG(strstr(err, s2) && strstr(err, "image 3 is listed twice"), "%s", err);
	free(err);
	m = mat_new("s1.mat", MAT_FT_MAT5);
	mat_doubles(m, "trainNdxs", 3, 1, tr);
	Mat_Close(m);
	char *s1 = tpath("s1.mat");
	CHECK(nyu_import_with(mat, s1, map, out, &err) == -1);
	CHECK_MSG(strstr(err, s1) && strstr(err, "no variable 'testNdxs'") &&
		  strstr(err, "splits.mat"), "%s", err);
	free(err);
	free(s73);
	free(s7);
	free(s2);
	free(s1);
	free(dir);
	free(mat);
	free(map);
	free(out);
	free(man);
	tmp_clean();
}

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A labeled .mat written by matio as MATLAB v7.3 (MATLAB's H x W x 3 x N
 * layout, as MATLAB writes it) with the 894 `names`: --classes 894 keeps the
 * raw ids and takes the names from it. */
static void test_nyu_raw_names(void)
{
	tmp_make("mke-imp");
	enum { H = 4, W = 5, N = 2 };
	static uint8_t img[H * W * 3 * N];
	static float dep[H * W * N];
	static uint16_t lab[H * W * N];
	for (int i = 0; i < H * W * 3 * N; i++)
		img[i] = (uint8_t)(i % 251);
	for (int i = 0; i < H * W * N; i++) {
		dep[i] = 1.5f;
		lab[i] = (uint16_t)(i % 7 ? 1 + (i * 37) % NYU_CLASSES_RAW : 0);
	}
	mat_t *m = mat_new("lab.mat", MAT_FT_MAT73);
	size_t di[4] = {H, W, 3, N}, dd[3] = {H, W, N};
	matvar_t *v[3] = {Mat_VarCreate("images", MAT_C_UINT8, MAT_T_UINT8, 4, di, img, 0),
			  Mat_VarCreate("depths", MAT_C_SINGLE, MAT_T_SINGLE, 3, dd, dep, 0),
			  Mat_VarCreate("labels", MAT_C_UINT16, MAT_T_UINT16, 3, dd, lab, 0)};
	for (int k = 0; k < 3; k++) {
		CHECK(v[k] && Mat_VarWrite(m, v[k], MAT_COMPRESSION_NONE) == 0);
		Mat_VarFree(v[k]);
	}
	mat_names(m, "names", NYU_CLASSES_RAW, "n");
	Mat_Close(m);
	char *mat = tpath("lab.mat"), *out = tpath("out");
	struct import_stats st;
	CHECK(import_nyuv2(mat, NULL, NULL, out, &st) == 0 && st.written == N &&
	      st.classes == NYU_CLASSES_RAW);
	char *cls = slurp("out/manifest.csv.classes.txt");
	CHECK(starts(cls, "unlabeled\nn1\nn2\n") && strstr(cls, "\nn894\n"));
	free(cls);
	int same = 1;
	for (int n = 0; n < N; n++) {
		char *pl = xasprintf("%s/label/%04d.png", out, n);
		int *ids = NULL, h = 0, w = 0;
		same &= labelmap_load(&ids, &h, &w, pl) == 0 && h == H && w == W;
		for (int y = 0; same && y < H; y++)
			for (int x = 0; x < W; x++)
				same &= ids[y * W + x] == lab[y + H * (x + W * n)];
		free(ids);
		free(pl);
	}
	CHECK(same);
	free(mat);
	free(out);
	tmp_clean();
}

static void test_nyu_default_split(void)
{
	int nt = 0;
	for (int i = 0; i < 1449; i++)
		nt += nyu_default_is_test(i, 1449);
	CHECK(nt == 654);
	nt = 0;
	for (int i = 0; i < 12; i++)
		nt += nyu_default_is_test(i, 12);
	CHECK(nt == 5);
}

/* The label PNG of sample i under out as ids (caller frees); NULL on failure. */
static int *nyu_labels(const char *out, int i)
{
	char *pl = xasprintf("%s/label/%04d.png", out, i);
	int *ids = NULL, h = 0, w = 0;
	if (labelmap_load(&ids, &h, &w, pl) != 0 || h != 24 || w != 32) {
		free(ids);
		ids = NULL;
	}
	free(pl);
	return ids;
}

static void test_nyu_roundtrip(void)
{
	tmp_make("mke-imp");
	char *dir = tpath("gen"), *mat = tpath("gen/nyu_depth_v2_labeled.mat");
	char *spl = tpath("gen/splits.mat"), *out = tpath("out"), *man = tpath("out/manifest.csv");
	char *map = tpath("gen/classMapping40.mat");
	CHECK(gen_dataset("nyuv2", dir, 6, 3) == 0);
	struct import_stats st;
	/* the generator's splits.mat and classMapping40.mat are MATLAB v5 */
	char *head = slurp("gen/splits.mat"), *head2 = slurp("gen/classMapping40.mat");
	CHECK(strncmp(head, "MATLAB 5.0 MAT-file", 19) == 0);
	CHECK(strncmp(head2, "MATLAB 5.0 MAT-file", 19) == 0);
	free(head);
	free(head2);
	CHECK(import_nyuv2(mat, spl, map, out, &st) == 0);
	CHECK(st.rows == 6 && st.written == 6 && st.classes == 40);
	char *cls = slurp("out/manifest.csv.classes.txt");
	CHECK(starts(cls, "unlabeled\nwall\nfloor\ncabinet\n") &&
	      strstr(cls, "\notherprop\n"));
	free(cls);
	struct manifest m;
	CHECK(manifest_load(&m, man) == 0);
	CHECK(m.nrows == 6 && m.split_col == 1);
	int ntest = 0;
	for (int i = 0; i < m.nrows; i++)
		ntest += strcmp(m.rows[i].cells[1], "test") == 0;
	CHECK(ntest == 3);   /* the generator's splits.mat: odd samples */
	CHECK(strcmp(m.rows[1].cells[1], "test") == 0);
	manifest_release(&m);
	/* every sample: 24 x 32; border unlabeled with no depth; inside, the
	 * class follows the colour (RGB) and the distance (depth) */
	int good = 1, objects = 0;
	for (int i = 0; i < 6; i++) {
		char *pr = xasprintf("%s/rgb/%04d.png", out, i);
		char *pd = xasprintf("%s/depth/%04d.png", out, i);
		char *pl = xasprintf("%s/label/%04d.png", out, i);
		struct media_image im, dp;
		int *ids = NULL, h = 0, w = 0;
		CHECK(image_load(&im, pr, 3) == 0);
		CHECK(depth_load(&dp, pd) == 0);
		CHECK(labelmap_load(&ids, &h, &w, pl) == 0);
		if (!ids || !im.x || !dp.x) {
			good = 0;
		} else {
			good &= im.h == 24 && im.w == 32 && dp.h == 24 && dp.w == 32 && h == 24 &&
				w == 32;
			for (int y = 0; y < 24 && good; y++)
				for (int x = 0; x < 32; x++) {
					int k = y * 32 + x, l = ids[k];
					float R = im.x[k], G = im.x[24 * 32 + k], d = dp.x[k];
					int border = x == 0 || y == 0 || x == 31 || y == 23;
					if (border) {
						good &= l == 0 && d == 0;
					} else if (l == 1) {
						good &= d > 3.5f && d < 4.5f;
					} else {
						objects++;
						/* the depth is faithful: class 2 + k at 1.0 + 0.7 k m
						 * (the colour misleads for some scenes, gen.c) */
						int k = (int)lroundf((d - 1.0f) / 0.7f);
						(void)R;
						(void)G;
						good &= l == 2 + k;
					}
				}
		}
		media_image_release(&im);
		media_image_release(&dp);
		free(ids);
		free(pr);
		free(pd);
		free(pl);
	}
	CHECK(good);
	CHECK(objects > 0);
	/* without splits.mat: the default rule */
	CHECK(import_nyuv2(mat, NULL, map, out, &st) == 0);
	CHECK(manifest_load(&m, man) == 0);
	ntest = 0;
	for (int i = 0; i < m.nrows; i++)
		ntest += strcmp(m.rows[i].cells[1], "test") == 0;
	CHECK(ntest == 3);   /* round(6 * 654 / 1449) */
	manifest_release(&m);
	/* raw ids (no mapping), and a mapping that is not the generator's: each
	 * pixel's class is the file's mapClass of its raw id */
	char *raw = tpath("raw"), *tm = tpath("tm"), *tmap = tpath("tmap.mat");
	write_map("tmap.mat", MAT_FT_MAT5, NYU_CLASSES_RAW, 0, 0, 1);
	capture_begin();   /* the generator's .mat has no `names`: a warning */
	CHECK(import_nyuv2(mat, spl, NULL, raw, &st) == 0 && st.classes == 894);
	free(capture_end());
	CHECK(import_nyuv2(mat, spl, tmap, tm, &st) == 0);
	char *rc = slurp("raw/manifest.csv.classes.txt"), *tc = slurp("tm/manifest.csv.classes.txt");
	CHECK(starts(rc, "unlabeled\nnyu_1\nnyu_2\n") && strstr(rc, "\nnyu_894\n"));
	CHECK(starts(tc, "unlabeled\nc1\nc2\n"));
	free(rc);
	free(tc);
	int same = 1, above40 = 0;
	for (int i = 0; i < 6; i++) {
		int *r = nyu_labels(raw, i), *t = nyu_labels(tm, i), *g = nyu_labels(out, i);
		same &= r && t && g;
		for (int k = 0; same && k < 24 * 32; k++) {
			above40 += r[k] > 40;
			same &= t[k] == test_map40(r[k]) && g[k] == (r[k] ? (r[k] - 1) % 40 + 1 : 0);
		}
		free(r);
		free(t);
		free(g);
	}
	CHECK(same && above40 > 0);
	free(raw);
	free(tm);
	free(tmap);
	/* a file that is not HDF5 */
	CHECK(import_nyuv2(man, NULL, map, out, &st) == -1);
	free(map);
	free(dir);
	free(mat);
	free(spl);
	free(out);
	free(man);
	tmp_clean();
}

/* ---- generators ------------------------------------------------------------------- */

static void test_gen_deterministic(void)
{
	tmp_make("mke-imp");
	char *a = tpath("a"), *b = tpath("b"), *c = tpath("c");
	CHECK(gen_dataset("twomoon", a, 100, 7) == 0);
	CHECK(gen_dataset("twomoon", b, 100, 7) == 0);
	CHECK(gen_dataset("twomoon", c, 100, 8) == 0);
	char *x = slurp("a/test.csv"), *y = slurp("b/test.csv"), *z = slurp("c/test.csv");
	CHECK(strlen(x) > 100 && strcmp(x, y) == 0 && strcmp(x, z) != 0);
	free(x);
	free(y);
	free(z);
	struct manifest m;
	char *lab = tpath("a/labeled.csv");
	CHECK(manifest_load(&m, lab) == 0);
	CHECK(m.nrows == 6 && manifest_col(&m, "x") == 3);
	manifest_release(&m);
	free(lab);
	CHECK(gen_dataset("mnist", a, 10, 0) == -1);
	free(a);
	free(b);
	free(c);
	tmp_clean();
}

static void test_gen_vggsound_ravdess(void)
{
	tmp_make("mke-imp");
	char *dir = tpath("v"), *csv = tpath("v/vggsound.csv"), *media = tpath("v/media");
	char *out = tpath("v.csv");
	CHECK(gen_dataset("vggsound", dir, 20, 1) == 0);
	struct import_stats st;
	CHECK(import_vggsound(csv, media, out, &st) == 0);
	CHECK(st.rows == 20 && st.missing == 2 && st.written == 18 && st.classes == 4);
	float *x = NULL;
	size_t n = 0;
	struct manifest m;
	CHECK(manifest_load(&m, out) == 0);
	if (m.nrows > 0) {
		char *p = path_join(tmp, m.rows[0].cells[3]);
		CHECK(audio_load(p, 16000, &x, &n, NULL) == 0 && n == 16000);
		free(p);
	}
	manifest_release(&m);
	free(x);
	/* vggsound-mp4: the same rows, each clip one MP4 that is both the audio
	 * and the frames cell; the same seed gives the same bytes */
	char *vm = tpath("vm"), *vmcsv = tpath("vm/vggsound.csv"), *vmmedia = tpath("vm/media");
	char *vmout = tpath("vm.csv"), *vm2 = tpath("vm2");
	CHECK(gen_dataset("vggsound-mp4", vm, 20, 1) == 0);
	CHECK(gen_dataset("vggsound-mp4", vm2, 3, 1) == 0);
	char *c1 = slurp("v/vggsound.csv"), *c2 = slurp("vm/vggsound.csv");
	CHECK(strlen(c1) > 100 && strcmp(c1, c2) == 0);
	free(c1);
	free(c2);
	CHECK(import_vggsound(vmcsv, vmmedia, vmout, &st) == 0);
	CHECK(st.rows == 20 && st.missing == 2 && st.written == 18 && st.classes == 4);
	CHECK(manifest_load(&m, vmout) == 0);
	CHECK(m.nrows == 18 && manifest_col(&m, "frames") == 4);
	if (m.nrows > 0) {
		const char *a = m.rows[0].cells[3], *f = m.rows[0].cells[4];
		CHECK(strcmp(a, f) == 0 && strlen(a) > 4 && strcmp(a + strlen(a) - 4, ".mp4") == 0);
		char *p = path_join(tmp, a), why[512];
		CHECK_MSG(av_decode_audio(p, 16000, &x, &n, why, sizeof why) == 0 && n == 16000,
			  "%s", why);
		free(x);
		float fr[2 * 3 * 16 * 16];
		CHECK_MSG(av_decode_frames(p, 2, 16, 16, fr, why, sizeof why) == 0, "%s", why);
		/* the same clip from a second run with the same seed */
		char *p2 = xasprintf("%s/vm2/%s", tmp, a + strlen("vm/"));
		size_t n1 = 0, n2 = 0;
		char *b1 = read_file(p, &n1), *b2 = read_file(p2, &n2);
		CHECK(b1 && b2 && n1 > 1000 && n1 == n2 && memcmp(b1, b2, n1) == 0);
		free(b1);
		free(b2);
		free(p2);
		free(p);
	}
	manifest_release(&m);
	free(vm);
	free(vmcsv);
	free(vmmedia);
	free(vmout);
	free(vm2);
	char *rd = tpath("r"), *rout = tpath("r.csv");
	CHECK(gen_dataset("ravdess", rd, 24, 1) == 0);
	CHECK(import_ravdess(rd, rout, &st) == 0);
	CHECK(st.rows == 24 && st.missing == 2 && st.written == 22);
	free(rd);
	free(rout);
	free(dir);
	free(csv);
	free(media);
	free(out);
	tmp_clean();
}

int main(void)
{
	import_max_reports = 0;
	RUN(test_csv_audioset_dialect);
	RUN(test_csv_quoted_and_bad);
	RUN(test_sbuf_csv);
	RUN(test_path_relative);
	RUN(test_vggsound_import);
	RUN(test_audioset_import);
	RUN(test_ravdess_names);
	RUN(test_ravdess_import);
	RUN(test_nyu_class_map_mat);
	RUN(test_nyu_class_map_csv);
	RUN(test_nyu_splits);
	RUN(test_nyu_raw_names);
	RUN(test_nyu_default_split);
	RUN(test_nyu_roundtrip);
	RUN(test_gen_deterministic);
	RUN(test_gen_vggsound_ravdess);
	return test_summary();
}
