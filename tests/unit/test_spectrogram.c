/*
 * test_spectrogram.c - the VGGSound audio front end (spectrogram.h) against
 * scipy: a 2 s 16-bit 16 kHz clip decoded by audio_load, its spectrogram
 * untiled (257 x 199) and tiled to 5 s (257 x 500), log and z-score included,
 * compared with what tests/fixtures/gen_media.py computed with
 * scipy.signal.spectrogram; the fixtures keep every 5th frame. Tolerance:
 * 1e-4 absolute on the z-scored values.
 */
#include <math.h>
#include <string.h>

#include "media.h"
#include "npy.h"
#include "spectrogram.h"
#include "test.h"
#include "util.h"

#define TOL 1e-4

static char *fixture(const char *name)
{
	return path_join(test_fixtures(), name);
}

static void test_frames(void)
{
	CHECK(SPEC_HOP == 159);
	CHECK(SPEC_NFREQ == 257);
	CHECK(spectrogram_frames(511) == 0);
	CHECK(spectrogram_frames(512) == 1);
	CHECK(spectrogram_frames(512 + 158) == 1);
	CHECK(spectrogram_frames(512 + 159) == 2);
	CHECK(spectrogram_frames(80000) == 500);    /* 5 s at 16 kHz */
	CHECK(spectrogram_frames(160000) == 1004);  /* 10 s: the reference's length */
	CHECK(spectrogram_frames(32000) == 199);
}

/* Compare the full spectrogram (257 x T) with the fixture's every 5th frame. */
static void compare(const float *s, size_t T, const char *name)
{
	char *p = fixture(name);
	struct npy_array e;
	memset(&e, 0, sizeof e);
	CHECK(npy_load(&e, p) == 0);
	size_t kept = (T + 4) / 5;
	CHECK(e.ndim == 2 && e.shape[0] == SPEC_NFREQ && (size_t)e.shape[1] == kept);
	if (e.ndim == 2 && e.shape[0] == SPEC_NFREQ && (size_t)e.shape[1] == kept) {
		double worst = 0;
		size_t wf = 0, wt = 0;
		for (size_t f = 0; f < SPEC_NFREQ; f++)
			for (size_t k = 0; k < kept; k++) {
				double d = fabs((double)s[f * T + 5 * k] - e.data[f * kept + k]);
				if (d > worst) {
					worst = d;
					wf = f;
					wt = 5 * k;
				}
			}
		CHECK_MSG(worst <= TOL, "%s: worst |diff| %.3g at f=%zu t=%zu", name, worst,
			  wf, wt);
		printf("  %s: max |diff| %.3g over %zu values\n", name, worst,
		       (size_t)SPEC_NFREQ * kept);
	}
	npy_release(&e);
	free(p);
}

static void test_scipy_reference(void)
{
	char *p = fixture("media_pcm16_16k.wav");
	float *x = NULL;
	size_t n = 0;
	int rate = 0;
	CHECK(audio_load(p, 16000, &x, &n, &rate) == 0);
	CHECK(rate == 16000 && n == 32000);
	struct spectrogram sp;
	CHECK(spectrogram_init(&sp) == 0);
	if (x && n == 32000) {
		/* as is: the reference without tiling (the clip is within [-1, 1]) */
		size_t T = spectrogram_frames(n);
		CHECK(T == 199);
		float *s = xmalloc(SPEC_NFREQ * T * sizeof *s);
		spectrogram_compute(&sp, x, n, 16000, 1, s);
		compare(s, T, "spec_pcm16_16k_2s.npy");
		/* z-scored: mean 0, std 1 */
		double m = 0, v = 0;
		for (size_t i = 0; i < SPEC_NFREQ * T; i++)
			m += s[i];
		m /= (double)(SPEC_NFREQ * T);
		for (size_t i = 0; i < SPEC_NFREQ * T; i++)
			v += (s[i] - m) * (s[i] - m);
		CHECK_NEAR(m, 0, 1e-5);
		CHECK_NEAR(sqrt(v / (double)(SPEC_NFREQ * T)), 1, 1e-5);
		free(s);

		/* tiled to 5 s: 257 x 500 */
		size_t len = 5 * 16000;
		float *y = xmalloc(len * sizeof *y);
		audio_fit(x, n, y, len);
		T = spectrogram_frames(len);
		CHECK(T == 500);
		s = xmalloc(SPEC_NFREQ * T * sizeof *s);
		spectrogram_compute(&sp, y, len, 16000, 1, s);
		compare(s, T, "spec_pcm16_16k_5s.npy");
		free(s);
		free(y);
	}
	spectrogram_release(&sp);
	free(x);
	free(p);
}

/* A pure tone puts its power in the right bin; log-PSD without z-score has
 * the density scaling: a sine of amplitude A has total power A^2/2. */
static void test_tone_power(void)
{
	struct spectrogram sp;
	CHECK(spectrogram_init(&sp) == 0);
	size_t n = 4096;
	double fs = 16000, A = 0.5, f0 = 1000; /* bin 32 exactly */
	float *x = xmalloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(A * sin(2 * M_PI * f0 * (double)i / fs));
	size_t T = spectrogram_frames(n);
	float *s = xmalloc(SPEC_NFREQ * T * sizeof *s);
	spectrogram_compute(&sp, x, n, fs, 0, s);
	int peak = 0;
	for (int f = 1; f < SPEC_NFREQ; f++)
		if (s[(size_t)f * T] > s[(size_t)peak * T])
			peak = f;
	CHECK(peak == 32);
	/* sum of the PSD times the bin width ~ A^2 / 2 */
	double total = 0;
	for (int f = 0; f < SPEC_NFREQ; f++)
		total += exp(s[(size_t)f * T]) - 1e-7;
	total *= fs / SPEC_NPERSEG;
	CHECK_REL(total, A * A / 2, 1e-3);
	free(s);
	free(x);
	spectrogram_release(&sp);
}

int main(void)
{
	RUN(test_frames);
	RUN(test_scipy_reference);
	RUN(test_tone_power);
	return test_summary();
}
