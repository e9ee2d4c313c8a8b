/*
 * test_importers.c - the dataset importers and generators
 * (common/importers.h, common/gen.h): the CSV dialects (AudioSet comment
 * lines and `, "`, quoted labels with commas, line numbers across quoted
 * line breaks, malformed rows), missing media reported and skipped, RAVDESS
 * name parsing, the NYU 894->40 table and split rule, relative paths, and
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

static const char *mapping_path(void)
{
	static char p[512];
	const char *root = getenv("MKE_ROOT");
	snprintf(p, sizeof p, "%s/deploy/data/nyuv2_40class.csv", root && *root ? root : ".");
	return p;
}

static void test_nyu_mapping(void)
{
	uint16_t map[NYU_CLASSES_RAW + 1];
	CHECK(nyu_mapping_load(mapping_path(), map) == 0);
	CHECK(map[0] == 0 && map[1] == 1 && map[40] == 40 && map[41] == 1);
	CHECK(map[894] == (893 % 40) + 1);
	int ok = 1;
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		ok &= map[k] >= 1 && map[k] <= NYU_CLASSES;
	CHECK(ok);
	tmp_make("mke-imp");
	char *p = tpath("map.csv");
	put("map.csv", "nyu894,nyu40\n0,0\n1,1\n");   /* incomplete */
	CHECK(nyu_mapping_load(p, map) == -1);
	struct sbuf b = {0};
	sbuf_puts(&b, "nyu894,nyu40\n");
	for (int k = 0; k <= NYU_CLASSES_RAW; k++)
		sbuf_printf(&b, "%d,%d\n", k, k == 7 ? 41 : k % 41);   /* 41 out of range */
	put("map.csv", b.p);
	CHECK(nyu_mapping_load(p, map) == -1);
	sbuf_release(&b);
	free(p);
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

static void test_nyu_roundtrip(void)
{
	tmp_make("mke-imp");
	char *dir = tpath("gen"), *mat = tpath("gen/nyu_depth_v2_labeled.mat");
	char *spl = tpath("gen/splits.mat"), *out = tpath("out"), *man = tpath("out/manifest.csv");
	CHECK(gen_dataset("nyuv2", dir, 6, 3) == 0);
	struct import_stats st;
	CHECK(import_nyuv2(mat, spl, mapping_path(), out, &st) == 0);
	CHECK(st.rows == 6 && st.written == 6);
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
	CHECK(import_nyuv2(mat, NULL, mapping_path(), out, &st) == 0);
	CHECK(manifest_load(&m, man) == 0);
	ntest = 0;
	for (int i = 0; i < m.nrows; i++)
		ntest += strcmp(m.rows[i].cells[1], "test") == 0;
	CHECK(ntest == 3);   /* round(6 * 654 / 1449) */
	manifest_release(&m);
	/* a file that is not HDF5 */
	CHECK(import_nyuv2(man, NULL, mapping_path(), out, &st) == -1);
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
	RUN(test_nyu_mapping);
	RUN(test_nyu_default_split);
	RUN(test_nyu_roundtrip);
	RUN(test_gen_deterministic);
	RUN(test_gen_vggsound_ravdess);
	return test_summary();
}
