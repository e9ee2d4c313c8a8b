/*
 * test_gen.c - the generators' data is learnable and multimodal in the MKE
 * sense (gen.h): a small network trained on modality a alone, on b alone and
 * on both, through the real importers and decoders, reaches near-perfect
 * test accuracy only with both; each modality alone stays near the ceiling
 * its ambiguity allows.
 *
 * The network: one hidden layer of 16 ReLU units and a softmax, full-batch
 * Adam, inputs standardized with the training rows' statistics. Audio
 * enters as the VGGSound spectrogram (spectrogram.h) averaged over time,
 * images and frames as their pixels (RAVDESS faces at 12 x 12); NYU is
 * classified per pixel (what a network of 1x1 convolutions computes).
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "av.h"
#include "gen.h"
#include "importers.h"
#include "manifest.h"
#include "media.h"
#include "rng.h"
#include "spectrogram.h"
#include "test.h"
#include "tmpdir.h"
#include "util.h"

/* ---- a labelled feature table and a small network ---------------------------- */

struct table {
	int n, d, cap;
	float *x;     /* n x d */
	int *y, *test;
};

static void table_add(struct table *t, const float *a, int da, const float *b, int db, int y,
		      int test)
{
	if (!t->d)
		t->d = da + db;
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 256;
		t->x = xrealloc(t->x, (size_t)t->cap * t->d * sizeof *t->x);
		t->y = xrealloc(t->y, (size_t)t->cap * sizeof *t->y);
		t->test = xrealloc(t->test, (size_t)t->cap * sizeof *t->test);
	}
	memcpy(t->x + (size_t)t->n * t->d, a, (size_t)da * sizeof *a);
	memcpy(t->x + (size_t)t->n * t->d + da, b, (size_t)db * sizeof *b);
	t->y[t->n] = y;
	t->test[t->n++] = test;
}

static void table_release(struct table *t)
{
	free(t->x);
	free(t->y);
	free(t->test);
}

static void adam(float *p, float *g, float *m, float *v, size_t n, int step)
{
	const float lr = 0.01f, b1 = 0.9f, b2 = 0.999f;
	float c1 = 1 - powf(b1, (float)step), c2 = 1 - powf(b2, (float)step);
	for (size_t k = 0; k < n; k++) {
		m[k] = b1 * m[k] + (1 - b1) * g[k];
		v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
		p[k] -= lr * (m[k] / c1) / (sqrtf(v[k] / c2) + 1e-8f);
	}
}

/* Train on the rows with test == 0 over columns [c0, c1), K classes; the
 * accuracy on the rows with test == 1 (rows with test == 2 are left out of
 * both). */
static double fit_eval(const struct table *t, int c0, int c1, int K)
{
	enum { HID = 16, STEPS = 300 };
	int d = c1 - c0, ntr = 0;
	double *mu = xcalloc((size_t)d, sizeof *mu), *sd = xcalloc((size_t)d, sizeof *sd);
	for (int i = 0; i < t->n; i++)
		if (!t->test[i]) {
			ntr++;
			for (int j = 0; j < d; j++)
				mu[j] += t->x[(size_t)i * t->d + c0 + j];
		}
	for (int j = 0; j < d; j++)
		mu[j] /= ntr;
	for (int i = 0; i < t->n; i++)
		if (!t->test[i])
			for (int j = 0; j < d; j++) {
				double e = t->x[(size_t)i * t->d + c0 + j] - mu[j];
				sd[j] += e * e;
			}
	for (int j = 0; j < d; j++)
		sd[j] = sqrt(sd[j] / ntr) + 1e-3;
	/* parameters: W1 (HID,d), b1 (HID), W2 (K,HID), b2 (K) in one buffer */
	size_t n1 = (size_t)HID * d, np = n1 + HID + (size_t)K * HID + K;
	float *p = xcalloc(np, sizeof *p), *g = xmalloc(np * sizeof *g);
	float *m = xcalloc(np, sizeof *m), *v = xcalloc(np, sizeof *v);
	float *W1 = p, *B1 = p + n1, *W2 = B1 + HID, *B2 = W2 + (size_t)K * HID;
	struct rng r;
	rng_init(&r, 1, RNG_INIT, 0, 0);
	for (size_t k = 0; k < n1; k++)
		W1[k] = rng_normal(&r) / sqrtf((float)d);
	for (int k = 0; k < K * HID; k++)
		W2[k] = rng_normal(&r) / sqrtf((float)HID);
	float *x = xmalloc((size_t)d * sizeof *x), h[HID], z[64], dh[HID];
	double acc = 0;
	for (int step = 1; step <= STEPS + 1; step++) {
		memset(g, 0, np * sizeof *g);
		int ntest = 0, right = 0;
		for (int i = 0; i < t->n; i++) {
			int test = t->test[i];
			if (test == 2 || (step > STEPS) != (test == 1))
				continue;
			for (int j = 0; j < d; j++)
				x[j] = (float)((t->x[(size_t)i * t->d + c0 + j] - mu[j]) / sd[j]);
			for (int u = 0; u < HID; u++) {
				float s = B1[u];
				for (int j = 0; j < d; j++)
					s += W1[(size_t)u * d + j] * x[j];
				h[u] = s > 0 ? s : 0;
			}
			float mx = -1e30f, sum = 0;
			int arg = 0;
			for (int k = 0; k < K; k++) {
				float s = B2[k];
				for (int u = 0; u < HID; u++)
					s += W2[k * HID + u] * h[u];
				z[k] = s;
				if (s > mx) {
					mx = s;
					arg = k;
				}
			}
			if (test) {
				ntest++;
				right += arg == t->y[i];
				continue;
			}
			for (int k = 0; k < K; k++)
				sum += z[k] = expf(z[k] - mx);
			memset(dh, 0, sizeof dh);
			for (int k = 0; k < K; k++) {
				float dz = (z[k] / sum - (k == t->y[i])) / ntr;
				g[n1 + HID + (size_t)K * HID + k] += dz;
				for (int u = 0; u < HID; u++) {
					g[n1 + HID + (size_t)k * HID + u] += dz * h[u];
					dh[u] += dz * W2[k * HID + u];
				}
			}
			for (int u = 0; u < HID; u++) {
				if (h[u] <= 0)
					continue;
				g[n1 + u] += dh[u];
				for (int j = 0; j < d; j++)
					g[(size_t)u * d + j] += dh[u] * x[j];
			}
		}
		if (step > STEPS)
			acc = ntest ? (double)right / ntest : 0;
		else
			adam(p, g, m, v, np, step);
	}
	free(mu);
	free(sd);
	free(p);
	free(g);
	free(m);
	free(v);
	free(x);
	return acc;
}

/* The spectrogram of x averaged over time: SPEC_NFREQ floats. */
static int spec_mean(struct spectrogram *sp, const float *x, size_t n, float *out)
{
	size_t T = spectrogram_frames(n);
	if (!T)
		return -1;
	float *s = xmalloc(SPEC_NFREQ * T * sizeof *s);
	spectrogram_compute(sp, x, n, 16000, 1, s);
	for (int f = 0; f < SPEC_NFREQ; f++) {
		double a = 0;
		for (size_t k = 0; k < T; k++)
			a += s[(size_t)f * T + k];
		out[f] = (float)(a / T);
	}
	free(s);
	return 0;
}

static void report(const char *name, const char *a, double acc_a, const char *b, double acc_b,
		   double acc_ab)
{
	printf("  %s: %s alone %.0f%%, %s alone %.0f%%, both %.0f%%\n", name, a, 100 * acc_a, b,
	       100 * acc_b, 100 * acc_ab);
}

/* ---- the datasets ------------------------------------------------------------ */

/* vggsound-mp4: a = the audio track (pitch), b = the frames (brightness);
 * class = 2 pitch + bright, so each alone is at best 50%. */
static void test_vggsound_mp4_learnable(void)
{
	tmp_make("mke-gen");
	char *dir = tpath("v"), *csv = tpath("v/vggsound.csv"), *media = tpath("v/media");
	char *out = tpath("v.csv");
	CHECK(gen_dataset("vggsound-mp4", dir, 100, 3) == 0);
	struct import_stats st;
	CHECK(import_vggsound(csv, media, out, &st) == 0);
	CHECK(st.written == 90 && st.classes == 4);
	struct manifest m;
	struct table t = {0};
	struct spectrogram sp;
	CHECK(spectrogram_init(&sp) == 0);
	CHECK(manifest_load(&m, out) == 0);
	int ia = manifest_col(&m, "audio"), ib = manifest_col(&m, "frames"), bad = 0;
	CHECK(ia == 3 && ib == 4);
	for (int i = 0; i < m.nrows && ia == 3 && ib == 4; i++) {
		char *pa = path_join(tmp, m.rows[i].cells[ia]), *pb = path_join(tmp, m.rows[i].cells[ib]);
		char why[512];
		float *x = NULL, fa[SPEC_NFREQ], fb[4 * 3 * 8 * 8];
		size_t n = 0;
		int ok = strcmp(pa, pb) == 0 && strstr(pa, ".mp4") &&
			 av_decode_audio(pa, 16000, &x, &n, why, sizeof why) == 0 && n == 16000 &&
			 spec_mean(&sp, x, n, fa) == 0 &&
			 av_decode_frames(pb, 4, 8, 8, fb, why, sizeof why) == 0;
		if (ok)
			table_add(&t, fa, SPEC_NFREQ, fb, 4 * 3 * 8 * 8, atoi(m.rows[i].cells[1]),
				  strcmp(m.rows[i].cells[2], "test") == 0);
		bad += !ok;
		free(x);
		free(pa);
		free(pb);
	}
	CHECK(bad == 0 && t.n == 90);
	double a = fit_eval(&t, 0, SPEC_NFREQ, 4), b = fit_eval(&t, SPEC_NFREQ, t.d, 4);
	double ab = fit_eval(&t, 0, t.d, 4);
	report("vggsound-mp4", "audio", a, "frames", b, ab);
	/* the frames are clear; the audio is faint for 35% of the clips */
	CHECK(b >= 0.9 && ab >= 0.9);
	CHECK(a >= 0.4 && a <= 0.85);
	manifest_release(&m);
	spectrogram_release(&sp);
	table_release(&t);
	free(dir);
	free(csv);
	free(media);
	free(out);
	tmp_clean();
}

/* ravdess: a = the face (quadrant of the bright square), b = the voice
 * (pitch); emotion = 2 quadrant + pitch: the face alone is at best ~50%,
 * the voice alone ~25%. */
static void test_ravdess_learnable(void)
{
	tmp_make("mke-gen");
	char *dir = tpath("r"), *out = tpath("r.csv");
	CHECK(gen_dataset("ravdess", dir, 240, 3) == 0);
	struct import_stats st;
	CHECK(import_ravdess(dir, out, &st) == 0);
	struct manifest m;
	struct table t = {0};
	struct spectrogram sp;
	CHECK(spectrogram_init(&sp) == 0);
	CHECK(manifest_load(&m, out) == 0);
	int ia = manifest_col(&m, "face"), ib = manifest_col(&m, "audio"), bad = 0;
	CHECK(ia >= 0 && ib >= 0);
	for (int i = 0; i < m.nrows && ia >= 0 && ib >= 0; i++) {
		char *pa = path_join(tmp, m.rows[i].cells[ia]), *pb = path_join(tmp, m.rows[i].cells[ib]);
		struct media_image im = {0};
		float *x = NULL, fb[SPEC_NFREQ];
		size_t n = 0;
		int ok = image_load(&im, pa, 1) == 0 && im.h == 24 && im.w == 24 &&
			 audio_load(pb, 16000, &x, &n, NULL) == 0 && spec_mean(&sp, x, n, fb) == 0;
		if (ok)
			image_resize(&im, 12, 12);   /* 2 x 2 means: fewer inputs, same signal */
		if (ok)
			table_add(&t, im.x, 12 * 12, fb, SPEC_NFREQ, atoi(m.rows[i].cells[1]),
				  strcmp(m.rows[i].cells[2], "test") == 0);
		bad += !ok;
		media_image_release(&im);
		free(x);
		free(pa);
		free(pb);
	}
	CHECK(bad == 0 && t.n == m.nrows && t.n > 200);
	double a = fit_eval(&t, 0, 12 * 12, 8), b = fit_eval(&t, 12 * 12, t.d, 8);
	double ab = fit_eval(&t, 0, t.d, 8);
	report("ravdess", "face", a, "voice", b, ab);
	/* the voice is clear; the face is faint for 35% of the clips */
	CHECK(b >= 0.8 && ab >= 0.8 && a <= 0.9);
	CHECK(a >= 0.3 && a <= 0.85);
	manifest_release(&m);
	spectrogram_release(&sp);
	table_release(&t);
	free(dir);
	free(out);
	tmp_clean();
}

/* nyuv2, per pixel: a = RGB (wall grey, object red/green), b = depth (no
 * reading at the border, wall 4 m, object near/far); 40-class label =
 * border 0, wall 1, object 2 + 2 green + near. RGB cannot tell the border
 * from the wall nor near from far; depth cannot tell red from green. */
static void test_nyuv2_learnable(void)
{
	tmp_make("mke-gen");
	char *dir = tpath("n"), *mat = tpath("n/nyu_depth_v2_labeled.mat");
	char *spl = tpath("n/splits.mat"), *out = tpath("o"), *man = tpath("o/manifest.csv");
	char *map = tpath("n/classMapping40.mat");
	CHECK(gen_dataset("nyuv2", dir, 64, 3) == 0);
	struct import_stats st;
	CHECK(import_nyuv2(mat, spl, map, out, &st) == 0);
	struct manifest m;
	struct table t = {0}, obj = {0};   /* obj: evaluated on object pixels only */
	CHECK(manifest_load(&m, man) == 0);
	int bad = 0;
	for (int i = 0; i < m.nrows; i++) {
		char *pr = xasprintf("%s/rgb/%04d.png", out, i), *pd = xasprintf("%s/depth/%04d.png", out, i);
		char *pl = xasprintf("%s/label/%04d.png", out, i);
		struct media_image im = {0}, dp = {0};
		int *ids = NULL, h = 0, w = 0;
		int ok = image_load(&im, pr, 3) == 0 && depth_load(&dp, pd) == 0 &&
			 labelmap_load(&ids, &h, &w, pl) == 0 && h == im.h && w == im.w &&
			 dp.h == h && dp.w == w;
		int test = strcmp(m.rows[i].cells[1], "test") == 0;
		for (int k = i % 3; ok && k < h * w; k += 3) {   /* a third of the pixels */
			float rgb[3] = {im.x[k], im.x[h * w + k], im.x[2 * h * w + k]};
			table_add(&t, rgb, 3, &dp.x[k], 1, ids[k], test);
			table_add(&obj, rgb, 3, &dp.x[k], 1, ids[k], test ? ids[k] >= 2 ? 1 : 2 : 0);
		}
		bad += !ok;
		media_image_release(&im);
		media_image_release(&dp);
		free(ids);
		free(pr);
		free(pd);
		free(pl);
	}
	CHECK(bad == 0 && t.n > 64 * 24 * 32 / 3 - 64);
	double a = fit_eval(&t, 0, 3, 6), b = fit_eval(&t, 3, 4, 6), ab = fit_eval(&t, 0, 4, 6);
	report("nyuv2, every pixel", "rgb", a, "depth", b, ab);
	CHECK(b >= 0.9 && ab >= 0.9 && b > a + 0.05);
	/* on the object pixels, washed out for 35% of the scenes */
	a = fit_eval(&obj, 0, 3, 6);
	b = fit_eval(&obj, 3, 4, 6);
	ab = fit_eval(&obj, 0, 4, 6);
	report("nyuv2, object pixels", "rgb", a, "depth", b, ab);
	CHECK(b > a + 0.1 && a <= 0.85);
	manifest_release(&m);
	table_release(&t);
	table_release(&obj);
	free(map);
	free(dir);
	free(mat);
	free(spl);
	free(out);
	free(man);
	tmp_clean();
}

int main(void)
{
	import_max_reports = 0;
	mke_quiet = 1;
	RUN(test_vggsound_mp4_learnable);
	RUN(test_ravdess_learnable);
	RUN(test_nyuv2_learnable);
	return test_summary();
}
