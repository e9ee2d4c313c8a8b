/*
 * test_dataset_shapes.c - what dataset_load makes of each modality kind
 * beyond the flat floats: the (F, C, H, W) shape of inline, npy, image,
 * depth, audio, labelmap and frames cells; frames sampled uniformly from a
 * folder (which indices), a ';' list and JPEG frames; segmentation label
 * maps mapped (ignore value, first class, out-of-range values) and resized
 * nearest-neighbour; multi-label cells; and the confinement of path cells
 * to the manifest's directory or the data root (MKE_ALLOW_OUTSIDE_PATHS=1
 * lifts it). The config's "frames" key is checked too.
 *
 * Every fixture is written at test time into a temporary directory (PNG
 * with importers.h's png_write, JPEG with libjpeg, .npy with npy_save); the
 * audio case links the committed WAV fixtures in. When the tree has
 * common/av.h, an MP4 written with av_write_mp4 is decoded as a frames cell
 * and as an audio cell.
 */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#if defined(__has_include)
#if __has_include("av.h")
#include "av.h"
#define MKE_HAVE_AV 1
#endif
#endif
#include "config.h"
#include "importers.h"
#include "manifest.h"
#include "npy.h"
#include "spectrogram.h"
#include "test.h"
#include "util.h"

static char tmpdir[64];

static char *tmp_path(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

static char *write_tmp(const char *name, const char *text)
{
	char *p = tmp_path(name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static void mkdir_tmp(const char *name)
{
	char *p = tmp_path(name);
	mkdir(p, 0755);
	free(p);
}

/* A w x h 8-bit PNG, gray (channels 1) or RGB (3), every sample v. */
static int png_flat(const char *name, int w, int h, int channels, int v)
{
	size_t n = (size_t)w * h * channels;
	uint8_t *px = xmalloc(n);
	memset(px, v, n);
	char *p = tmp_path(name);
	int rc = png_write(p, w, h, channels, 8, px);
	free(p);
	free(px);
	return rc;
}

/* A w x h RGB JPEG (quality 95), every sample v. */
static int jpeg_flat(const char *name, int w, int h, int v)
{
	char *p = tmp_path(name);
	FILE *f = fopen(p, "wb");
	free(p);
	if (!f)
		return -1;
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, f);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 95, TRUE);
	jpeg_start_compress(&ci, TRUE);
	unsigned char *row = xmalloc((size_t)w * 3);
	memset(row, v, (size_t)w * 3);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW r = row;
		jpeg_write_scanlines(&ci, &r, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	free(row);
	return fclose(f) == 0 ? 0 : -1;
}

static int npy_tmp(const char *name, int ndim, const int64_t *shape)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	float *x = xmalloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)i;
	char *p = tmp_path(name);
	int rc = npy_save(p, x, ndim, shape, 0);
	free(p);
	free(x);
	return rc;
}

/* A run config of one or two modalities (JSON of data.modalities), anchored
 * at tmpdir/<where>/cfg.json; extra: more keys of "data" ("" for none). */
static int config_at(struct run_config *c, const char *where, const char *mods,
		     const char *extra)
{
	char *json = xasprintf("{\"name\": \"m\", \"data\": {\"labeled\": \"l.csv\", "
			       "\"classes\": 3, \"modalities\": %s%s}, "
			       "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			       "\"teacher\": {\"model\": \"m\"}}", mods, extra);
	char *p = xasprintf("%s/%s/cfg.json", tmpdir, where);
	int rc = config_parse(c, json, p);
	free(p);
	free(json);
	return rc;
}

static int config_in(struct run_config *c, const char *mods)
{
	return config_at(c, ".", mods, "");
}

/* Does text hold a line that contains want? */
static int has_text(const char *text, const char *want)
{
	return text && strstr(text, want) != NULL;
}

static int shape_is(const int s[4], int f, int ch, int h, int w)
{
	return s[0] == f && s[1] == ch && s[2] == h && s[3] == w;
}

/* ---- shapes of each kind -------------------------------------------------------- */

static void test_shapes_inline_npy(void)
{
	int64_t s1[] = { 6 }, s2[] = { 2, 3 }, s3[] = { 1, 2, 3 }, s4[] = { 2, 1, 1, 3 },
		s5[] = { 2, 1, 1, 1, 3 }, s2b[] = { 3, 2 };
	CHECK(npy_tmp("v1.npy", 1, s1) == 0 && npy_tmp("v2.npy", 2, s2) == 0 &&
	      npy_tmp("v3.npy", 3, s3) == 0 && npy_tmp("v4.npy", 4, s4) == 0 &&
	      npy_tmp("v5.npy", 5, s5) == 0 && npy_tmp("v2b.npy", 2, s2b) == 0);
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}, "
			    "\"b\": {\"column\": \"f\", \"kind\": \"npy\"}}") == 0);
	static const struct {
		const char *file;
		int shape[4];
	} cases[] = {
		{ "v1.npy", { 1, 1, 1, 6 } }, { "v2.npy", { 1, 1, 2, 3 } },
		{ "v3.npy", { 1, 1, 2, 3 } }, { "v4.npy", { 2, 1, 1, 3 } },
		{ "v5.npy", { 2, 1, 1, 3 } },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *csv = xasprintf("id,label,x,f\na,0,1 2 3,%s\nb,1,4 5 6,%s\n", cases[i].file,
				      cases[i].file);
		char *p = write_tmp("s.csv", csv);
		CHECK_MSG(dataset_load(&d, &c, p, 2) == 0 && d.n == 2, "%s", cases[i].file);
		CHECK(shape_is(d.shape[0], 1, 1, 1, 3) && d.dim[0] == 3);
		const int *w = cases[i].shape;
		CHECK_MSG(shape_is(d.shape[1], w[0], w[1], w[2], w[3]) && d.dim[1] == 6,
			  "%s: %d %d %d %d", cases[i].file, d.shape[1][0], d.shape[1][1],
			  d.shape[1][2], d.shape[1][3]);
		dataset_release(&d);
		free(csv);
		free(p);
	}
	/* the same count in another shape is quarantined, naming both shapes */
	char *p = write_tmp("s.csv", "id,label,x,f\na,0,1 2 3,v2.npy\nb,1,4 5 6,v2b.npy\n");
	capture_begin();
	int rc = dataset_load(&d, &c, p, 2);
	char *err = capture_end();
	CHECK(rc == 0 && d.n == 1 && d.nquarantined == 1);
	char *want = xasprintf("%s:3: column 'f' has shape 1 x 1 x 3 x 2, the first row's is "
			       "1 x 1 x 2 x 3", p);
	CHECK_MSG(has_text(err, want), "%s", err);
	free(want);
	free(err);
	dataset_release(&d);
	config_release(&c);
	free(p);
}

static void test_shapes_media(void)
{
	CHECK(png_flat("rgb.png", 5, 3, 3, 200) == 0);
	CHECK(png_flat("lab.png", 5, 3, 1, 2) == 0);
	uint16_t mm[12];
	for (int i = 0; i < 12; i++)
		mm[i] = (uint16_t)(1000 + i);
	char *dp = tmp_path("depth.png");
	CHECK(png_write(dp, 4, 3, 1, 16, mm) == 0);
	free(dp);
	struct run_config c;
	struct dataset d;
	/* image: C x H x W, as the file or resized */
	CHECK(config_in(&c, "{\"a\": {\"column\": \"i\", \"kind\": \"image\"}, "
			    "\"b\": {\"column\": \"d\", \"kind\": \"depth\"}}") == 0);
	char *p = write_tmp("m.csv", "id,i,d\na,rgb.png,depth.png\n");
	CHECK(dataset_load(&d, &c, p, 2) == 0 && d.n == 1);
	CHECK(shape_is(d.shape[0], 1, 3, 3, 5) && d.dim[0] == 45);
	CHECK(shape_is(d.shape[1], 1, 1, 3, 4) && d.dim[1] == 12);
	if (d.n == 1)
		CHECK_NEAR(d.x[1][5], 1.005, 1e-6);
	dataset_release(&d);
	config_release(&c);
	CHECK(config_in(&c, "{\"a\": {\"column\": \"i\", \"kind\": \"image\", \"channels\": 1, "
			    "\"height\": 2, \"width\": 7}, \"b\": {\"column\": \"d\", "
			    "\"kind\": \"labelmap\", \"height\": 6, \"width\": 10}}") == 0);
	free(p);
	p = write_tmp("m.csv", "id,i,d\na,rgb.png,lab.png\n");
	CHECK(dataset_load(&d, &c, p, 2) == 0 && d.n == 1);
	CHECK(shape_is(d.shape[0], 1, 1, 2, 7) && d.dim[0] == 14);
	/* labelmap kind: the raw ids as floats, nearest-neighbour resize */
	CHECK(shape_is(d.shape[1], 1, 1, 6, 10) && d.dim[1] == 60);
	if (d.n == 1)
		CHECK(d.x[1][0] == 2 && d.x[1][59] == 2);
	dataset_release(&d);
	config_release(&c);
	free(p);
}

static void test_shapes_audio(void)
{
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"w\", \"kind\": \"audio\", "
			    "\"seconds\": 1}}") == 0);
	char *p = write_tmp("a.csv", "id,w\na,fx/media_pcm16_16k.wav\nb,fx/media_f32_48k.wav\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 2);
	size_t T = spectrogram_frames(16000);
	CHECK(shape_is(d.shape[0], 1, 1, SPEC_NFREQ, (int)T));
	CHECK(d.dim[0] == SPEC_NFREQ * (int)T);
	dataset_release(&d);
	config_release(&c);
	free(p);
}

/* ---- frames ----------------------------------------------------------------------- */

/* Frame i of folder "name" is a gray 8 x 6 PNG of value 10 i + 5. */
static void frame_folder(const char *name, int n)
{
	mkdir_tmp(name);
	for (int i = 0; i < n; i++) {
		char *f = xasprintf("%s/f%03d.png", name, i);
		CHECK(png_flat(f, 8, 6, 1, 10 * i + 5) == 0);
		free(f);
	}
}

/* The index of the frame (10 i + 5) that sample row r, frame j holds. */
static int frame_of(const struct dataset *d, int r, int j)
{
	size_t plane = (size_t)d->shape[0][1] * d->shape[0][2] * d->shape[0][3];
	float v = d->x[0][(size_t)r * d->dim[0] + (size_t)j * plane];
	return (int)lroundf((v * 255 - 5) / 10);
}

static void test_frames_sampling(void)
{
	frame_folder("v10", 10);
	frame_folder("v2", 2);
	/* not frames: skipped */
	char *junk = write_tmp("v10/notes.txt", "x");
	free(junk);
	CHECK(png_flat("v10/.hidden.png", 8, 6, 1, 250) == 0);
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 4, "
			    "\"height\": 3, \"width\": 4}}") == 0);
	CHECK(c.mod[0].frames == 4);
	char *p = write_tmp("f.csv", "id,v\n"
				     "a,v10\n"
				     "b,v2\n"
				     "c,v10/f009.png; v10/f000.png ;v10/f005.png;v10/f001.png\n"
				     "d,empty\n"                  /* 5: no frames */
				     "e,missing\n"                /* 6 */
				     "f,v10/f001.png;;v10/f002.png\n" /* 7 */
				     "g,clip.mp4\n");             /* 8: not a video */
	mkdir_tmp("empty");
	char *clip = write_tmp("clip.mp4", "not a video");
	free(clip);
	capture_begin();
	int rc = dataset_load(&d, &c, p, 1);
	char *err = capture_end();
	CHECK(rc == 0 && d.n == 3 && d.nquarantined == 4);
	CHECK(shape_is(d.shape[0], 4, 3, 3, 4) && d.dim[0] == 4 * 3 * 3 * 4);
	if (d.n == 3 && d.dim[0] == 144) {
		/* 4 of 10: the middles of 4 equal segments, floor((2i+1) 10 / 8) */
		static const int want_a[] = { 1, 3, 6, 8 }, want_b[] = { 0, 0, 1, 1 },
				 want_c[] = { 9, 0, 5, 1 };
		for (int j = 0; j < 4; j++) {
			CHECK_MSG(frame_of(&d, 0, j) == want_a[j], "a frame %d: %d", j,
				  frame_of(&d, 0, j));
			CHECK_MSG(frame_of(&d, 1, j) == want_b[j], "b frame %d: %d", j,
				  frame_of(&d, 1, j));
			CHECK_MSG(frame_of(&d, 2, j) == want_c[j], "c frame %d: %d", j,
				  frame_of(&d, 2, j));
		}
		/* gray replicated to 3 channels, flat after resizing */
		int bad = 0;
		for (int i = 0; i < 36; i++)
			bad += fabsf(d.x[0][i] - 15.0f / 255) > 1e-6f;
		CHECK(bad == 0);
	}
	char *w5 = xasprintf("%s:5: column 'v': the frame folder '%s/empty' holds no .jpg, "
			     ".jpeg or .png file", p, tmpdir);
	char *w6 = xasprintf("%s:6: column 'v': cannot load '%s/missing'", p, tmpdir);
	char *w7 = xasprintf("%s:7: column 'v' has an empty item in its list of frames", p);
	char *w8 = xasprintf("%s:8: column 'v': cannot decode '%s/clip.mp4'", p, tmpdir);
	CHECK_MSG(has_text(err, w5), "%s", err);
	CHECK(has_text(err, w6));
	CHECK(has_text(err, w7));
	CHECK(has_text(err, w8));
	free(w5);
	free(w6);
	free(w7);
	free(w8);
	free(err);
	dataset_release(&d);
	config_release(&c);
	free(p);

	/* the default: 8 frames, the first frame's size */
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"frames\"}}") == 0);
	CHECK(c.mod[0].frames == 8);
	p = write_tmp("f.csv", "id,v\na,v10\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 1);
	CHECK(shape_is(d.shape[0], 8, 3, 6, 8));
	if (d.n == 1) {
		/* floor((2i+1) 10 / 16) */
		static const int want[] = { 0, 1, 3, 4, 5, 6, 8, 9 };
		for (int j = 0; j < 8; j++)
			CHECK_MSG(frame_of(&d, 0, j) == want[j], "frame %d: %d", j,
				  frame_of(&d, 0, j));
	}
	dataset_release(&d);
	config_release(&c);
	free(p);
}

static void test_frames_jpeg(void)
{
	mkdir_tmp("vj");
	CHECK(jpeg_flat("vj/0001.jpg", 16, 8, 40) == 0);
	CHECK(jpeg_flat("vj/0002.JPEG", 16, 8, 120) == 0);
	CHECK(jpeg_flat("vj/0003.jpg", 16, 8, 200) == 0);
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 3, "
			    "\"height\": 4, \"width\": 4}}") == 0);
	char *p = write_tmp("j.csv", "id,v\na,vj\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 1);
	CHECK(shape_is(d.shape[0], 3, 3, 4, 4));
	if (d.n == 1 && d.dim[0] == 144) {
		CHECK_NEAR(d.x[0][0], 40.0 / 255, 3.0 / 255);
		CHECK_NEAR(d.x[0][48 + 17], 120.0 / 255, 3.0 / 255);
		CHECK_NEAR(d.x[0][96 + 47], 200.0 / 255, 3.0 / 255);
	}
	dataset_release(&d);
	config_release(&c);
	free(p);
}

/* ---- segmentation targets ------------------------------------------------------------- */

static void test_segment_target(void)
{
	/* 4 x 4: ignore (0), classes 1..3 -> 0..2, 7 is outside the 3 classes */
	static const uint8_t m1[16] = {
		0, 1, 2, 3,
		1, 1, 2, 2,
		3, 3, 7, 7,
		0, 0, 1, 2,
	};
	static const uint16_t m2[16] = { 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2 };
	uint8_t m3[6] = { 1, 1, 1, 1, 1, 1 };
	char *q = tmp_path("m1.png");
	CHECK(png_write(q, 4, 4, 1, 8, m1) == 0);
	free(q);
	q = tmp_path("m2.png");
	CHECK(png_write(q, 4, 4, 1, 16, m2) == 0);
	free(q);
	q = tmp_path("m3.png");
	CHECK(png_write(q, 3, 2, 1, 8, m3) == 0);
	free(q);
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}") == 0);
	c.task = TASK_SEGMENT;
	c.target.column = "mask";
	c.target.ignore_value = 0;
	c.target.first_class = 1;
	c.target.height = c.target.width = 0;
	char *p = write_tmp("seg.csv", "id,x,mask\n"
				       "a,1,m1.png\n"
				       "b,2,m2.png\n"
				       "c,3,\n"
				       "d,4,m3.png\n"       /* 5: 2 x 3, not 4 x 4 */
				       "e,5,nothere.png\n"); /* 6 */
	capture_begin();
	int rc = dataset_load(&d, &c, p, 1);
	char *err = capture_end();
	CHECK_MSG(rc == 0 && d.n == 3 && d.nquarantined == 2, "%d %d %d: %s", rc, d.n, d.nquarantined, err);
	CHECK(d.label_h == 4 && d.label_w == 4 && d.pixel_labels != NULL);
	if (d.n == 3 && d.pixel_labels) {
		static const int want[16] = {
			-1, 0, 1, 2,
			0, 0, 1, 1,
			2, 2, -1, -1,
			-1, -1, 0, 1,
		};
		int bad = 0;
		for (int i = 0; i < 16; i++) {
			bad += d.pixel_labels[i] != want[i];
			bad += d.pixel_labels[16 + i] != (i < 8 ? 2 : 1);
			bad += d.pixel_labels[32 + i] != -1;
		}
		CHECK(bad == 0);
	}
	char *w = xasprintf("%s:2: column 'mask': 2 pixels of '%s/m1.png' hold values outside "
			    "[1, 4) that are not the ignore value 0; they are ignored (-1)", p,
			    tmpdir);
	CHECK_MSG(has_text(err, w), "%s", err);
	free(w);
	w = xasprintf("%s:5: column 'mask': label map '%s/m3.png' is 2 x 3, the first was "
		      "4 x 4", p, tmpdir);
	CHECK(has_text(err, w));
	free(w);
	w = xasprintf("%s:6: column 'mask': cannot decode '%s/nothere.png'", p, tmpdir);
	CHECK(has_text(err, w));
	free(w);
	free(err);
	dataset_release(&d);

	/* resized nearest-neighbour to 2 x 2 (source floor(dst * 4 / 2)); the
	   empty first row is all -1 even before the size is known */
	c.target.height = 2;
	c.target.width = 2;
	free(p);
	p = write_tmp("seg.csv", "id,x,mask\nz,0,\na,1,m1.png\nd,4,m3.png\n");
	capture_begin();
	rc = dataset_load(&d, &c, p, 1);
	free(capture_end());
	CHECK(rc == 0 && d.n == 3 && d.label_h == 2 && d.label_w == 2);
	if (d.n == 3 && d.pixel_labels) {
		static const int want[12] = { -1, -1, -1, -1, -1, 1, 2, -1, 0, 0, 0, 0 };
		int bad = 0;
		for (int i = 0; i < 12; i++)
			bad += d.pixel_labels[i] != want[i];
		CHECK_MSG(bad == 0, "%d %d %d %d", d.pixel_labels[4], d.pixel_labels[5],
			  d.pixel_labels[6], d.pixel_labels[7]);
	}
	dataset_release(&d);

	/* a manifest without the target column (an unlabeled set) loads */
	free(p);
	p = write_tmp("seg.csv", "id,x\na,1\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 1 && d.pixel_labels == NULL);
	dataset_release(&d);
	c.target.column = NULL;
	config_release(&c);
	free(p);
}

/* ---- multi-label cells ------------------------------------------------------------------ */

static void test_multilabel(void)
{
	struct run_config c;
	struct dataset d;
	char *json = xasprintf("{\"name\": \"m\", \"data\": {\"labeled\": \"l.csv\", "
			       "\"classes\": [\"cat\", \"dog\", \"bird\"], \"modalities\": "
			       "{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}, "
			       "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			       "\"teacher\": {\"model\": \"m\"}}");
	char *cp = tmp_path("cfg.json");
	CHECK(config_parse(&c, json, cp) == 0);
	free(cp);
	free(json);
	c.task = TASK_MULTILABEL;
	char *p = write_tmp("ml.csv", "id,label,x\n"
				      "a,dog;bird,1\n"
				      "b,0,2\n"
				      "c, cat ; 2 ,3\n"
				      "d,,4\n"
				      "e,dog;fish,5\n"  /* 6 */
				      "f,1;;2,6\n");    /* 7 */
	capture_begin();
	int rc = dataset_load(&d, &c, p, 1);
	char *err = capture_end();
	CHECK(rc == 0 && d.n == 4 && d.nquarantined == 2 && d.multi && d.labels);
	if (d.n == 4 && d.multi && d.labels) {
		static const float want[12] = { 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0 };
		int bad = 0;
		for (int i = 0; i < 12; i++)
			bad += d.multi[i] != want[i];
		CHECK(bad == 0);
		CHECK(d.labels[0] == 1 && d.labels[1] == 0 && d.labels[2] == 0 &&
		      d.labels[3] == -1);
	}
	char *w = xasprintf("%s:6: unknown label 'fish' in 'dog;fish'", p);
	CHECK_MSG(has_text(err, w), "%s", err);
	free(w);
	w = xasprintf("%s:7: empty class in the label list '1;;2'", p);
	CHECK(has_text(err, w));
	free(w);
	free(err);
	dataset_release(&d);

	/* classify: a list is an unknown label, as before */
	c.task = TASK_CLASSIFY;
	capture_begin();
	rc = dataset_load(&d, &c, p, 1);
	err = capture_end();
	CHECK(rc == 0 && d.n == 2 && d.nquarantined == 4 && d.multi == NULL);
	w = xasprintf("%s:2: unknown label 'dog;bird'", p);
	CHECK(has_text(err, w));
	free(w);
	free(err);
	dataset_release(&d);
	config_release(&c);
	free(p);
}

/* ---- path confinement ---------------------------------------------------------------------- */

static void test_path_confinement(void)
{
	int64_t s[] = { 2 };
	mkdir_tmp("sub");
	mkdir_tmp("deep");
	mkdir_tmp("deep/x");
	CHECK(npy_tmp("outside.npy", 1, s) == 0 && npy_tmp("sub/in.npy", 1, s) == 0 &&
	      npy_tmp("deep/in.npy", 1, s) == 0);
	char *sub = tmp_path("sub"), *lk = tmp_path("sub/up"), *lk2 = tmp_path("sub/up2"),
	     *deep = tmp_path("deep/x");
	CHECK(symlink(tmpdir, lk) == 0 && symlink(deep, lk2) == 0);
	struct run_config c;
	struct dataset d;
	/* the config (so the data root) is in sub too */
	CHECK(config_at(&c, "sub", "{\"a\": {\"column\": \"f\", \"kind\": \"npy\"}}", "") == 0);
	char *csv = xasprintf("id,f\n"
			      "a,in.npy\n"
			      "b,../outside.npy\n"     /* 3 */
			      "c,%s/outside.npy\n"     /* 4 */
			      "d,%s/sub/in.npy\n"
			      "e,../sub/./in.npy\n"
			      "f,up2/../in.npy\n"     /* 7: deep/in.npy, not sub/in.npy */
			      "g,up/outside.npy\n"     /* a link the data owner placed */
			      "h,../nothere.npy\n",    /* 9: missing, said so */
			      tmpdir, tmpdir);
	char *p = write_tmp("sub/m.csv", csv);
	free(csv);
	capture_begin();
	int rc = dataset_load(&d, &c, p, 1);
	char *err = capture_end();
	CHECK(rc == 0 && d.n == 4 && d.nquarantined == 4);
	if (d.n == 4)
		CHECK(strcmp(d.names[0], "a") == 0 && strcmp(d.names[1], "d") == 0 &&
		      strcmp(d.names[2], "e") == 0 && strcmp(d.names[3], "g") == 0);
	char *w = xasprintf("%s:3: column 'f': cannot load '%s/../outside.npy': the path leads "
			    "outside the manifest's directory '%s' and the data root '%s'; move "
			    "the file under one of them, set data.root to a directory that "
			    "holds it, or set MKE_ALLOW_OUTSIDE_PATHS=1 to allow paths outside "
			    "them",
			    p, sub, sub, sub);
	CHECK_MSG(has_text(err, w), "%s\n%s", w, err);
	free(w);
	w = xasprintf("%s:4: column 'f': cannot load '%s/outside.npy': the path leads outside",
		      p, tmpdir);
	CHECK(has_text(err, w));
	free(w);
	w = xasprintf("%s:7: column 'f': cannot load '%s/up2/../in.npy': the path leads "
		      "outside", p, sub);
	CHECK(has_text(err, w));
	free(w);
	w = xasprintf("%s:9: column 'f': cannot load '%s/../nothere.npy'", p, sub);
	CHECK(has_text(err, w));
	free(w);
	free(err);
	dataset_release(&d);

	/* MKE_ALLOW_OUTSIDE_PATHS=1: only the missing file fails */
	setenv("MKE_ALLOW_OUTSIDE_PATHS", "1", 1);
	capture_begin();
	rc = dataset_load(&d, &c, p, 1);
	free(capture_end());
	unsetenv("MKE_ALLOW_OUTSIDE_PATHS");
	CHECK(rc == 0 && d.n == 7 && d.nquarantined == 1);
	dataset_release(&d);
	config_release(&c);

	/* a data root above the manifest admits what lies under it */
	CHECK(config_at(&c, "sub", "{\"a\": {\"column\": \"f\", \"kind\": \"npy\"}}",
			", \"root\": \"..\"") == 0);
	capture_begin();
	rc = dataset_load(&d, &c, p, 1);
	free(capture_end());
	CHECK(rc == 0 && d.n == 7 && d.nquarantined == 1);
	dataset_release(&d);
	config_release(&c);
	free(p);
	free(lk);
	free(lk2);
	free(deep);
	free(sub);
}

/* ---- the config's "frames" key ------------------------------------------------------------- */

static void test_config_frames(void)
{
	struct run_config c;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 16, "
			    "\"height\": 112, \"width\": 112}}") == 0);
	CHECK(c.mod[0].frames == 16 && c.mod[0].height == 112);
	config_release(&c);
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"image\"}}") == 0);
	CHECK(c.mod[0].frames == 0);
	config_release(&c);
	static const char *const bad[] = {
		"{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 0}}",
		"{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 2.5}}",
		"{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 5000}}",
		"{\"a\": {\"column\": \"v\", \"kind\": \"image\", \"frames\": 4}}",
		"{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"height\": 4}}",
		"{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"channels\": 3}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		capture_begin();
		int rc = config_in(&c, bad[i]);
		free(capture_end());
		CHECK_MSG(rc == -1, "%s", bad[i]);
		if (rc == 0)
			config_release(&c);
	}
}


#ifdef MKE_HAVE_AV
/* An MP4 of 6 flat frames (40 f) and 1 s of a 440 Hz tone, as both columns. */
static void test_video_cells(void)
{
	enum { NF = 6, H = 16, W = 16, RATE = 16000 };
	unsigned char *rgb = xmalloc((size_t)NF * H * W * 3);
	for (int f = 0; f < NF; f++)
		memset(rgb + (size_t)f * H * W * 3, 40 * f, (size_t)H * W * 3);
	float *tone = xmalloc(RATE * sizeof *tone);
	for (int i = 0; i < RATE; i++)
		tone[i] = 0.5f * sinf(2 * 3.14159265f * 440 * i / RATE);
	char *clip = tmp_path("clip6.mp4"), why[512];
	int wrote = av_write_mp4(clip, tone, RATE, RATE, rgb, NF, H, W, 6, why, sizeof why);
	CHECK_MSG(wrote == 0, "%s", why);
	free(rgb);
	free(tone);
	free(clip);
	struct run_config c;
	struct dataset d;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"v\", \"kind\": \"frames\", \"frames\": 3, "
			    "\"height\": 8, \"width\": 8}, \"b\": {\"column\": \"s\", \"kind\": "
			    "\"audio\", \"seconds\": 1}}") == 0);
	char *p = write_tmp("av.csv", "id,v,s\na,clip6.mp4,clip6.mp4\n");
	CHECK(dataset_load(&d, &c, p, 2) == 0 && d.n == 1);
	CHECK(shape_is(d.shape[0], 3, 3, 8, 8));
	CHECK(shape_is(d.shape[1], 1, 1, SPEC_NFREQ, (int)spectrogram_frames(RATE)));
	if (d.n == 1 && d.dim[0] == 3 * 3 * 64) {
		/* frames floor((i + 0.5) 6 / 3) = 1, 3, 5 */
		for (int i = 0; i < 3; i++)
			CHECK_NEAR(d.x[0][(size_t)i * 192 + 100], 40.0 * (2 * i + 1) / 255,
				   8.0 / 255);
	}
	dataset_release(&d);
	config_release(&c);
	free(p);
}
#endif

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	strcpy(tmpdir, "/tmp/mke-test-shapes-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	/* fx -> the committed fixtures (audio) */
	char *abs = realpath(test_fixtures(), NULL);
	char *link = tmp_path("fx");
	int linked = abs && symlink(abs, link) == 0;
	free(abs);
	free(link);
	RUN(test_shapes_inline_npy);
	RUN(test_shapes_media);
	if (linked)
		RUN(test_shapes_audio);
	else
		printf("FAIL cannot link the fixtures into %s\n", tmpdir);
	RUN(test_frames_sampling);
	RUN(test_frames_jpeg);
	RUN(test_segment_target);
	RUN(test_multilabel);
	RUN(test_path_confinement);
	RUN(test_config_frames);
#ifdef MKE_HAVE_AV
	RUN(test_video_cells);
#endif
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return test_summary();
}
