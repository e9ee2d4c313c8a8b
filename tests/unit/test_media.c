/*
 * test_media.c - the decoders of media.h on files in the real formats made
 * by tests/fixtures/gen_media.py: WAV (16-bit 16 kHz mono, 24-bit 44.1 kHz
 * stereo, float32 48 kHz), PNG of every colour type (8/16-bit, gray, gray +
 * alpha, RGB, RGBA, palette, 4-bit gray), JPEG (checked against PIL's
 * decoding), PPM/PGM plain and binary; truncated and corrupt files; bilinear
 * resizing; the run config's decoding options; and dataset_load decoding
 * image, depth and audio manifests with quarantine of files that fail.
 *
 * Resampled audio is compared loosely with scipy.signal.resample_poly (the
 * two resamplers use different filters): same length, RMS error under 1% of
 * the signal's RMS away from the edges.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "manifest.h"
#include "media.h"
#include "npy.h"
#include "spectrogram.h"
#include "test.h"
#include "util.h"

static char *fixture(const char *name)
{
	return path_join(test_fixtures(), name);
}

static int load_npy(struct npy_array *a, const char *name)
{
	char *p = fixture(name);
	memset(a, 0, sizeof *a);
	int rc = npy_load(a, p);
	free(p);
	return rc;
}

/* ---- audio ---------------------------------------------------------------- */

static void test_wav_pcm16(void)
{
	char *p = fixture("media_pcm16_16k.wav");
	float *x;
	size_t n;
	int rate = 0;
	CHECK(audio_load(p, 0, &x, &n, &rate) == 0);
	CHECK(rate == 16000 && n == 32000);
	/* int16 / 32768 exactly, as soundfile reads it */
	double mx = 0;
	int frac = 0;
	for (size_t i = 0; i < n; i++) {
		frac += x[i] * 32768.0f != floorf(x[i] * 32768.0f);
		mx = fmax(mx, fabs(x[i]));
	}
	CHECK(frac == 0);
	CHECK(mx > 0.5 && mx < 1.0);
	free(x);
	/* asking for the file's rate does not resample */
	CHECK(audio_load(p, 16000, &x, &n, NULL) == 0);
	CHECK(n == 32000);
	free(x);
	free(p);
}

/* Resampled against resample_poly: length and RMS error in the interior. */
static void check_resampled(const char *wav, const char *expect, int file_rate, size_t want)
{
	char *p = fixture(wav);
	float *x = NULL;
	size_t n = 0;
	int rate = 0;
	CHECK(audio_load(p, 16000, &x, &n, &rate) == 0);
	CHECK(rate == file_rate);
	CHECK_MSG(n == want, "%s: %zu samples, want %zu", wav, n, want);
	struct npy_array e;
	CHECK(load_npy(&e, expect) == 0);
	CHECK(e.count == want);
	if (x && e.count == n) {
		double se = 0, ss = 0;
		size_t edge = 64;
		for (size_t i = edge; i + edge < n; i++) {
			se += (x[i] - e.data[i]) * (x[i] - e.data[i]);
			ss += e.data[i] * e.data[i];
		}
		double rel = sqrt(se / ss);
		CHECK_MSG(rel < 0.01, "%s: relative RMS error %.3g", wav, rel);
		printf("  %s -> 16 kHz: %zu samples, RMS error vs resample_poly %.2g of "
		       "the signal\n", wav, n, rel);
	}
	npy_release(&e);
	free(x);
	free(p);
}

static void test_wav_pcm24_stereo(void)
{
	/* 0.2 s at 44.1 kHz = 8820 frames -> 3200 at 16 kHz; L and R averaged */
	check_resampled("media_pcm24_44k.wav", "media_pcm24_44k_16k.npy", 44100, 3200);
	char *p = fixture("media_pcm24_44k.wav");
	float *x;
	size_t n;
	CHECK(audio_load(p, 0, &x, &n, NULL) == 0);
	CHECK(n == 8820);
	if (n == 8820) {
		/* frame 11: L = 0.5 sin(2 pi 1000 t), R = 0.3 sin(..) + 0.1 sin(2 pi 300 t) */
		double t = 11.0 / 44100;
		double l = round(0.5 * sin(2 * M_PI * 1000 * t) * 8388607) / 8388608;
		double r = round((0.3 * sin(2 * M_PI * 1000 * t) + 0.1 * sin(2 * M_PI * 300 * t)) *
				 8388607) / 8388608;
		CHECK_NEAR(x[11], (l + r) / 2, 1e-7);
	}
	free(x);
	free(p);
}

static void test_wav_float48(void)
{
	check_resampled("media_f32_48k.wav", "media_f32_48k_16k.npy", 48000, 3200);
}

static void test_wav_bad(void)
{
	const char *bad[] = { "media_bad.wav", "media_trunc.wav", "media_empty.png",
			      "media_rgb8.png", "no_such_file.wav" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *p = fixture(bad[i]);
		float *x = (float *)1;
		size_t n = 7;
		CHECK_MSG(audio_load(p, 16000, &x, &n, NULL) == -1, "%s", bad[i]);
		CHECK(x == NULL && n == 0);
		free(p);
	}
}

static void test_audio_fit(void)
{
	float x[3] = { 0.5f, -2.0f, 3.0f }, y[8];
	audio_fit(x, 3, y, 8);
	float want[8] = { 0.5f, -1, 1, 0.5f, -1, 1, 0.5f, -1 };
	for (int i = 0; i < 8; i++)
		CHECK(y[i] == want[i]);
	audio_fit(x, 3, y, 2);
	CHECK(y[0] == 0.5f && y[1] == -1);
}

/* ---- images --------------------------------------------------------------- */

/* im (C x H x W) against H x W x C samples / maxval from a _px.npy. */
static void check_image(const struct media_image *im, const char *npy, int c, double maxval,
			double tol)
{
	struct npy_array e;
	CHECK(load_npy(&e, npy) == 0);
	CHECK(e.ndim == 3 && e.shape[2] == c);
	CHECK_MSG(im->c == c && im->h == e.shape[0] && im->w == e.shape[1],
		  "%s: got %dx%dx%d", npy, im->c, im->h, im->w);
	if (e.ndim == 3 && im->c == c && im->h == e.shape[0] && im->w == e.shape[1]) {
		double worst = 0;
		for (int k = 0; k < c; k++)
			for (int y = 0; y < im->h; y++)
				for (int x = 0; x < im->w; x++) {
					double a = im->x[((size_t)k * im->h + y) * im->w + x];
					double b = e.data[((size_t)y * im->w + x) * c + k] / maxval;
					worst = fmax(worst, fabs(a - b));
				}
		CHECK_MSG(worst <= tol, "%s: worst |diff| %g", npy, worst);
	}
	npy_release(&e);
}

static void test_png(void)
{
	static const struct {
		const char *png, *npy;
		int c;
		double maxval;
	} cases[] = {
		{ "media_rgb8.png", "media_rgb8_px.npy", 3, 255 },
		{ "media_rgb16.png", "media_rgb16_px.npy", 3, 65535 },
		{ "media_gray8.png", "media_gray8_px.npy", 1, 255 },
		{ "media_gray16.png", "media_gray16_px.npy", 1, 65535 },
		{ "media_gray4.png", "media_gray4_px.npy", 1, 15 },
		{ "media_pal8.png", "media_pal8_rgb.npy", 3, 255 },
		{ "media_rgb8.ppm", "media_rgb8_px.npy", 3, 255 },
		{ "media_gray8.pgm", "media_gray8_px.npy", 1, 255 },
		{ "media_gray16.pgm", "media_gray16_px.npy", 1, 65535 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *p = fixture(cases[i].png);
		struct media_image im;
		CHECK_MSG(image_load(&im, p, 0) == 0, "%s", cases[i].png);
		check_image(&im, cases[i].npy, cases[i].c, cases[i].maxval, 1e-6);
		media_image_release(&im);
		free(p);
	}
}

static void test_alpha_and_channels(void)
{
	char *p = fixture("media_rgba8.png");
	struct media_image im;
	/* alpha kept with channels 4 */
	CHECK(image_load(&im, p, 4) == 0);
	check_image(&im, "media_rgba8_px.npy", 4, 255, 1e-6);
	media_image_release(&im);
	/* dropped by default: the first three planes */
	CHECK(image_load(&im, p, 0) == 0);
	CHECK(im.c == 3 && im.h == 5 && im.w == 7);
	struct npy_array e;
	CHECK(load_npy(&e, "media_rgba8_px.npy") == 0);
	if (im.c == 3 && e.count == 5 * 7 * 4) {
		CHECK_NEAR(im.x[0], e.data[0] / 255, 1e-6);
		CHECK_NEAR(im.x[2 * 35 + 34], e.data[34 * 4 + 2] / 255, 1e-6);
	}
	media_image_release(&im);
	/* luma */
	CHECK(image_load(&im, p, 1) == 0);
	CHECK(im.c == 1);
	if (im.c == 1 && e.count == 5 * 7 * 4)
		CHECK_NEAR(im.x[3], (0.299 * e.data[12] + 0.587 * e.data[13] + 0.114 * e.data[14]) /
					    255, 1e-6);
	media_image_release(&im);
	npy_release(&e);
	free(p);

	/* gray + alpha: gray; to 3 channels: replicated; to 4: alpha from the file */
	p = fixture("media_graya8.png");
	CHECK(load_npy(&e, "media_graya8_px.npy") == 0);
	CHECK(image_load(&im, p, 0) == 0);
	CHECK(im.c == 1);
	if (im.c == 1 && e.count == 70)
		CHECK_NEAR(im.x[9], e.data[18] / 255, 1e-6);
	media_image_release(&im);
	CHECK(image_load(&im, p, 3) == 0);
	CHECK(im.c == 3);
	if (im.c == 3 && e.count == 70)
		CHECK(im.x[9] == im.x[35 + 9] && im.x[9] == im.x[70 + 9]);
	media_image_release(&im);
	CHECK(image_load(&im, p, 4) == 0);
	if (im.c == 4 && e.count == 70)
		CHECK_NEAR(im.x[3 * 35 + 9], e.data[19] / 255, 1e-6);
	media_image_release(&im);
	CHECK(image_load(&im, p, 2) == -1);
	npy_release(&e);
	free(p);

	/* RGB to 4 channels: opaque alpha */
	p = fixture("media_rgb8.png");
	CHECK(image_load(&im, p, 4) == 0);
	CHECK(im.c == 4 && im.x[3 * 35] == 1.0f && im.x[3 * 35 + 34] == 1.0f);
	media_image_release(&im);
	free(p);
}

static void test_pnm_plain(void)
{
	char *p = fixture("media_ascii.pgm");
	struct media_image im;
	CHECK(image_load(&im, p, 0) == 0);
	CHECK(im.c == 1 && im.h == 2 && im.w == 3);
	if (im.c == 1 && im.h == 2 && im.w == 3) {
		CHECK_NEAR(im.x[1], 7.0 / 15, 1e-7);
		CHECK_NEAR(im.x[2], 1, 1e-7);
		CHECK_NEAR(im.x[5], 12.0 / 15, 1e-7);
	}
	media_image_release(&im);
	free(p);
	p = fixture("media_ascii.ppm");
	CHECK(image_load(&im, p, 0) == 0);
	CHECK(im.c == 3 && im.h == 1 && im.w == 2);
	if (im.c == 3 && im.w == 2) {
		CHECK(im.x[0] == 1 && im.x[2] == 0);      /* R plane */
		CHECK_NEAR(im.x[3], 128.0 / 255, 1e-7);   /* G of pixel 1 */
		CHECK(im.x[5] == 1);                      /* B of pixel 1 */
	}
	media_image_release(&im);
	free(p);
}

static void test_jpeg(void)
{
	struct media_image im;
	char *p = fixture("media_rgb.jpg");
	CHECK(image_load(&im, p, 0) == 0);
	/* PIL decodes with the same library and defaults: exact */
	check_image(&im, "media_rgb_jpg.npy", 3, 255, 1e-6);
	media_image_release(&im);
	free(p);
	p = fixture("media_gray.jpg");
	CHECK(image_load(&im, p, 0) == 0);
	check_image(&im, "media_gray_jpg.npy", 1, 255, 1e-6);
	media_image_release(&im);
	free(p);
}

static void test_corrupt_images(void)
{
	const char *bad[] = { "media_trunc.png", "media_crc.png", "media_trunc.jpg", "media_trunc2.jpg",
			      "media_trunc.pgm", "media_empty.png", "media_pcm16_16k.wav",
			      "no_such_image.png" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *p = fixture(bad[i]);
		struct media_image im;
		CHECK_MSG(image_load(&im, p, 0) == -1, "%s", bad[i]);
		CHECK(im.x == NULL);
		CHECK_MSG(depth_load(&im, p) == -1, "%s", bad[i]);
		int *ids = (int *)1, h = 1, w = 1;
		CHECK_MSG(labelmap_load(&ids, &h, &w, p) == -1, "%s", bad[i]);
		CHECK(ids == NULL && h == 0 && w == 0);
		free(p);
	}
	/* a header claiming a huge image is refused before allocating */
	char tmp[] = "/tmp/mke-test-media-XXXXXX";
	int fd = mkstemp(tmp);
	CHECK(fd >= 0);
	if (fd >= 0) {
		const char hdr[] = "P5 100000 100000 255\n\x01\x02";
		CHECK(write(fd, hdr, sizeof hdr - 1) == (ssize_t)(sizeof hdr - 1));
		close(fd);
		struct media_image im;
		CHECK(image_load(&im, tmp, 0) == -1);
		unlink(tmp);
	}
}

static void test_depth(void)
{
	struct npy_array e;
	CHECK(load_npy(&e, "media_gray16_px.npy") == 0);
	const char *files[] = { "media_gray16.png", "media_gray16.pgm" };
	for (int f = 0; f < 2; f++) {
		char *p = fixture(files[f]);
		struct media_image im;
		CHECK(depth_load(&im, p) == 0);
		CHECK(im.c == 1 && im.h == 5 && im.w == 7);
		if (im.c == 1 && e.count == 35)
			for (int i = 0; i < 35; i++)
				CHECK_NEAR(im.x[i], e.data[i] / 1000, 1e-6);
		media_image_release(&im);
		free(p);
	}
	npy_release(&e);
	/* 8-bit or colour: not depth */
	const char *bad[] = { "media_gray8.png", "media_rgb16.png", "media_gray8.pgm" };
	for (int f = 0; f < 3; f++) {
		char *p = fixture(bad[f]);
		struct media_image im;
		CHECK_MSG(depth_load(&im, p) == -1, "%s", bad[f]);
		free(p);
	}
}

static void test_labelmap(void)
{
	static const struct {
		const char *png, *npy;
	} cases[] = {
		{ "media_label8.png", "media_label8_px.npy" },
		{ "media_label16.png", "media_label16_px.npy" },
		{ "media_pal8.png", "media_pal8_px.npy" },   /* palette indices */
		{ "media_gray4.png", "media_gray4_px.npy" }, /* 4-bit: values, not scaled */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *p = fixture(cases[i].png);
		int *ids, h, w;
		CHECK_MSG(labelmap_load(&ids, &h, &w, p) == 0, "%s", cases[i].png);
		struct npy_array e;
		CHECK(load_npy(&e, cases[i].npy) == 0);
		CHECK(h == 5 && w == 7 && e.count == 35);
		int bad = 0;
		for (int k = 0; k < 35 && ids && e.count == 35; k++)
			bad += ids[k] != (int)e.data[k];
		CHECK_MSG(bad == 0, "%s: %d ids differ", cases[i].png, bad);
		npy_release(&e);
		free(ids);
		free(p);
	}
	char *p = fixture("media_rgb8.png");
	int *ids, h, w;
	CHECK(labelmap_load(&ids, &h, &w, p) == -1);
	free(p);
}

static void test_resize(void)
{
	/* 2x2 -> 4x4, align_corners=False (torch.nn.functional.interpolate) */
	float px[4] = { 0, 1, 2, 3 };
	struct media_image im = { .c = 1, .h = 2, .w = 2, .x = xmalloc(sizeof px) };
	memcpy(im.x, px, sizeof px);
	image_resize(&im, 4, 4);
	static const float want[16] = {
		0.0f, 0.25f, 0.75f, 1.0f, 0.5f, 0.75f, 1.25f, 1.5f,
		1.5f, 1.75f, 2.25f, 2.5f, 2.0f, 2.25f, 2.75f, 3.0f,
	};
	CHECK(im.h == 4 && im.w == 4);
	for (int i = 0; i < 16; i++)
		CHECK_NEAR(im.x[i], want[i], 1e-6);
	/* down again: 4x4 -> 2x2 samples at the centres of 2x2 blocks */
	image_resize(&im, 2, 2);
	CHECK_NEAR(im.x[0], (0.0 + 0.25 + 0.5 + 0.75) / 4, 1e-6);
	CHECK_NEAR(im.x[3], (2.25 + 2.5 + 2.75 + 3.0) / 4, 1e-6);
	media_image_release(&im);

	/* a constant image stays constant; planes stay apart */
	char *p = fixture("media_rgb8.png");
	CHECK(image_load(&im, p, 0) == 0);
	for (size_t i = 0; i < 35; i++) {
		im.x[i] = 0.25f;
		im.x[35 + i] = 0.5f;
		im.x[70 + i] = 1.0f;
	}
	image_resize(&im, 11, 3);
	CHECK(im.c == 3 && im.h == 11 && im.w == 3);
	int bad = 0;
	for (int i = 0; i < 33; i++)
		bad += fabsf(im.x[i] - 0.25f) > 1e-6f || fabsf(im.x[33 + i] - 0.5f) > 1e-6f ||
		       fabsf(im.x[66 + i] - 1.0f) > 1e-6f;
	CHECK(bad == 0);
	media_image_release(&im);
	free(p);
}

/* ---- the run config's decoding options -------------------------------------- */

static int parse_modality(const char *mod, struct run_config *c)
{
	char *json = xasprintf("{\"name\": \"m\", \"data\": {\"labeled\": \"l.csv\", "
			       "\"classes\": 2, \"modalities\": {\"a\": %s}}, "
			       "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			       "\"teacher\": {\"model\": \"m\"}}", mod);
	int rc = config_parse(c, json, "/tmp/cfg.json");
	free(json);
	return rc;
}

static void test_config_options(void)
{
	struct run_config c;
	CHECK(parse_modality("{\"column\": \"a\", \"kind\": \"audio\"}", &c) == 0);
	CHECK(c.mod[0].sample_rate == 16000 && c.mod[0].seconds == 0);
	config_release(&c);
	CHECK(parse_modality("{\"column\": \"a\", \"kind\": \"audio\", \"sample_rate\": 22050, "
			     "\"seconds\": 5}", &c) == 0);
	CHECK(c.mod[0].sample_rate == 22050 && c.mod[0].seconds == 5);
	config_release(&c);
	CHECK(parse_modality("{\"column\": \"a\", \"kind\": \"image\", \"height\": 224, "
			     "\"width\": 200, \"channels\": 3}", &c) == 0);
	CHECK(c.mod[0].height == 224 && c.mod[0].width == 200 && c.mod[0].channels == 3);
	CHECK(c.mod[0].sample_rate == 0);
	config_release(&c);
	CHECK(parse_modality("{\"column\": \"a\", \"kind\": \"depth\", \"height\": 4, "
			     "\"width\": 4}", &c) == 0);
	config_release(&c);
	static const char *const bad[] = {
		"{\"column\": \"a\", \"kind\": \"image\", \"height\": 224}",
		"{\"column\": \"a\", \"kind\": \"image\", \"width\": 224}",
		"{\"column\": \"a\", \"kind\": \"image\", \"channels\": 2}",
		"{\"column\": \"a\", \"kind\": \"image\", \"channels\": 5}",
		"{\"column\": \"a\", \"kind\": \"image\", \"sample_rate\": 16000}",
		"{\"column\": \"a\", \"kind\": \"depth\", \"channels\": 1}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"height\": 2, \"width\": 2}",
		"{\"column\": \"a\", \"kind\": \"npy\", \"seconds\": 5}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"seconds\": 0}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"seconds\": 0.01}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"seconds\": 5000}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"sample_rate\": 8.5}",
		"{\"column\": \"a\", \"kind\": \"audio\", \"sample_rate\": 100}",
		"{\"column\": \"a\", \"kind\": \"image\", \"height\": 0, \"width\": 3}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_MSG(parse_modality(bad[i], &c) == -1, "%s", bad[i]);
}

/* ---- dataset_load over media ------------------------------------------------ */

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static int config_in(struct run_config *c, const char *mods)
{
	char *json = xasprintf("{\"name\": \"m\", \"data\": {\"labeled\": \"l.csv\", "
			       "\"classes\": 2, \"modalities\": %s}, "
			       "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			       "\"teacher\": {\"model\": \"m\"}}", mods);
	char *p = xasprintf("%s/cfg.json", tmpdir);
	int rc = config_parse(c, json, p);
	free(p);
	free(json);
	return rc;
}

static void test_dataset_images(void)
{
	struct run_config c;
	/* resized to 4x6, 3 channels: the gray, palette and 16-bit files fit too */
	CHECK(config_in(&c, "{\"a\": {\"column\": \"img\", \"kind\": \"image\", \"height\": 4, "
			    "\"width\": 6, \"channels\": 3}, \"b\": {\"column\": \"dep\", "
			    "\"kind\": \"depth\"}}") == 0);
	char *p = write_tmp("img.csv", "id,label,img,dep\n"
				       "a,0,m/media_rgb8.png,m/media_gray16.png\n"
				       "b,1,m/media_gray8.pgm,m/media_gray16.pgm\n"
				       "c,1,m/media_trunc.png,m/media_gray16.png\n"      /* 4 */
				       "d,0,m/media_rgb.jpg,m/media_gray8.png\n"         /* 5 */
				       "e,0,m/media_pal8.png,m/media_gray16.png\n"
				       "f,1,m/missing.png,m/media_gray16.png\n"          /* 7 */
				       "g,1,m/media_rgb16.png,m/media_gray16.png\n");
	struct dataset d;
	CHECK(dataset_load(&d, &c, p, 2) == 0);
	CHECK(d.n == 4 && d.nquarantined == 3);
	CHECK(d.dim[0] == 3 * 4 * 6 && d.dim[1] == 35);
	if (d.n == 4 && d.dim[0] == 72 && d.dim[1] == 35) {
		CHECK(strcmp(d.names[0], "a") == 0 && strcmp(d.names[3], "g") == 0);
		/* row a: the same as decoding and resizing by hand */
		char *f = fixture("media_rgb8.png");
		struct media_image im;
		CHECK(image_load(&im, f, 3) == 0);
		image_resize(&im, 4, 6);
		CHECK(memcmp(im.x, d.x[0], 72 * sizeof(float)) == 0);
		media_image_release(&im);
		free(f);
		/* gray replicated into three planes */
		CHECK(d.x[0][72 + 5] == d.x[0][72 + 24 + 5] && d.x[0][72 + 5] == d.x[0][72 + 48 + 5]);
		struct npy_array e;
		CHECK(load_npy(&e, "media_gray16_px.npy") == 0);
		if (e.count == 35)
			CHECK_NEAR(d.x[1][35 + 6], e.data[6] / 1000, 1e-6);
		npy_release(&e);
	}
	dataset_release(&d);
	free(p);
	config_release(&c);

	/* without a size, rows of another size are quarantined */
	CHECK(config_in(&c, "{\"a\": {\"column\": \"img\", \"kind\": \"image\"}}") == 0);
	p = write_tmp("img2.csv", "id,img\na,m/media_rgb8.png\nb,m/media_rgb.jpg\n"
				  "c,m/media_rgb8.ppm\nd,m/media_gray8.png\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0);
	CHECK(d.n == 2 && d.nquarantined == 2 && d.dim[0] == 3 * 5 * 7);
	if (d.n == 2)
		CHECK(memcmp(d.x[0], d.x[0] + 105, 105 * sizeof(float)) == 0); /* PNG == PPM */
	dataset_release(&d);
	free(p);
	config_release(&c);
}

static void test_dataset_audio(void)
{
	struct run_config c;
	CHECK(config_in(&c, "{\"a\": {\"column\": \"wav\", \"kind\": \"audio\", "
			    "\"seconds\": 5}}") == 0);
	char *p = write_tmp("aud.csv", "id,wav\n"
				       "a,m/media_pcm16_16k.wav\n"
				       "b,m/media_bad.wav\n"
				       "c,m/media_pcm24_44k.wav\n"
				       "d,m/media_f32_48k.wav\n"
				       "e,m/media_rgb8.png\n");
	struct dataset d;
	CHECK(dataset_load(&d, &c, p, 1) == 0);
	CHECK(d.n == 3 && d.nquarantined == 2);
	CHECK(d.dim[0] == 257 * 500);
	if (d.n == 3 && d.dim[0] == 257 * 500) {
		/* row a is the reference spectrogram (every 5th frame stored) */
		struct npy_array e;
		CHECK(load_npy(&e, "spec_pcm16_16k_5s.npy") == 0);
		double worst = 0;
		for (size_t f = 0; f < 257 && e.count == 257 * 100; f++)
			for (size_t k = 0; k < 100; k++)
				worst = fmax(worst, fabs(d.x[0][f * 500 + 5 * k] - e.data[f * 100 + k]));
		CHECK_MSG(worst <= 1e-4, "worst %g", worst);
		npy_release(&e);
	}
	dataset_release(&d);
	free(p);
	config_release(&c);

	/* without seconds each clip keeps its length: 2 s gives 257 x 199, and
	 * the 0.2 s clips (3200 samples at 16 kHz, 17 frames) do not fit it */
	CHECK(config_in(&c, "{\"a\": {\"column\": \"wav\", \"kind\": \"audio\"}}") == 0);
	p = write_tmp("aud2.csv", "id,wav\na,m/media_pcm16_16k.wav\nb,m/media_f32_48k.wav\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0);
	CHECK(d.n == 1 && d.nquarantined == 1 && d.dim[0] == 257 * 199);
	dataset_release(&d);
	free(p);
	config_release(&c);
}

static void cleanup_tmp(void)
{
	static const char *const files[] = { "img.csv", "img2.csv", "aud.csv", "aud2.csv", "m" };
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char *p = xasprintf("%s/%s", tmpdir, files[i]);
		unlink(p);
		free(p);
	}
	rmdir(tmpdir);
}

int main(void)
{
	strcpy(tmpdir, "/tmp/mke-test-media-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	/* m -> the fixtures: manifests name files relative to their directory */
	char *abs = realpath(test_fixtures(), NULL);
	char *link = xasprintf("%s/m", tmpdir);
	int linked = abs && symlink(abs, link) == 0;
	free(abs);
	free(link);
	RUN(test_wav_pcm16);
	RUN(test_wav_pcm24_stereo);
	RUN(test_wav_float48);
	RUN(test_wav_bad);
	RUN(test_audio_fit);
	RUN(test_png);
	RUN(test_alpha_and_channels);
	RUN(test_pnm_plain);
	RUN(test_jpeg);
	RUN(test_corrupt_images);
	RUN(test_depth);
	RUN(test_labelmap);
	RUN(test_resize);
	RUN(test_config_options);
	if (linked) {
		RUN(test_dataset_images);
		RUN(test_dataset_audio);
	} else {
		printf("FAIL cannot link the fixtures into %s\n", tmpdir);
	}
	cleanup_tmp();
	return test_summary();
}
