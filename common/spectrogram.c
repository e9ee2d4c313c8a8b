/*
 * spectrogram.c - scipy.signal.spectrogram's defaults with FFTW, followed by
 * the VGGSound reference's log and z-score (spectrogram.h).
 *
 * Why FFTW: it is Debian's standard FFT (libfftw3-dev), fast for the one
 * 512-point real transform needed here, and its single-precision build
 * (fftw3f) keeps the error well under the 1e-4 the test asks of z-scored
 * values: the transform is in float, the detrending, window, power, log and
 * statistics in double, as scipy does them.
 *
 * The window is scipy.signal.get_window(('tukey', 0.25), 512): periodic, i.e.
 * the symmetric 513-point Tukey window without its last point. With
 * alpha = 0.25 and M = 513 the taper is floor(alpha * (M - 1) / 2) = 64
 * samples long at each end.
 */
#include "spectrogram.h"

#include <math.h>
#include <string.h>

#include <fftw3.h>

#include "util.h"

#define TUKEY_ALPHA 0.25

static void tukey_periodic(double *w, int n, double alpha)
{
	int m = n + 1; /* scipy: symmetric window of n + 1 points, last dropped */
	int width = (int)floor(alpha * (m - 1) / 2.0);
	for (int i = 0; i < n; i++) {
		if (i <= width)
			w[i] = 0.5 * (1 + cos(M_PI * (-1 + 2.0 * i / alpha / (m - 1))));
		else if (i < m - width - 1)
			w[i] = 1.0;
		else
			w[i] = 0.5 * (1 + cos(M_PI * (-2.0 / alpha + 1 + 2.0 * i / alpha / (m - 1))));
	}
}

int spectrogram_init(struct spectrogram *s)
{
	memset(s, 0, sizeof *s);
	tukey_periodic(s->window, SPEC_NPERSEG, TUKEY_ALPHA);
	double ss = 0;
	for (int i = 0; i < SPEC_NPERSEG; i++)
		ss += s->window[i] * s->window[i];
	s->scale = 1.0 / ss;
	s->in = fftwf_malloc(SPEC_NPERSEG * sizeof *s->in);
	s->out = fftwf_malloc(SPEC_NFREQ * sizeof(fftwf_complex));
	if (s->in && s->out)
		s->plan = fftwf_plan_dft_r2c_1d(SPEC_NPERSEG, s->in, s->out, FFTW_ESTIMATE);
	if (!s->plan) {
		spectrogram_release(s);
		return mke_error("cannot make a %d-point FFT plan with FFTW", SPEC_NPERSEG);
	}
	return 0;
}

void spectrogram_release(struct spectrogram *s)
{
	if (s->plan)
		fftwf_destroy_plan(s->plan);
	fftwf_free(s->in);
	fftwf_free(s->out);
	memset(s, 0, sizeof *s);
}

size_t spectrogram_frames(size_t n)
{
	return n < SPEC_NPERSEG ? 0 : (n - SPEC_NOVERLAP) / SPEC_HOP;
}

void spectrogram_compute(struct spectrogram *s, const float *x, size_t n, double fs,
			 int zscore, float *out)
{
	size_t T = spectrogram_frames(n);
	double scale = s->scale / fs;
	fftwf_complex *X = s->out;
	double sum = 0;
	for (size_t t = 0; t < T; t++) {
		const float *seg = x + t * SPEC_HOP;
		double mean = 0;
		for (int i = 0; i < SPEC_NPERSEG; i++)
			mean += seg[i];
		mean /= SPEC_NPERSEG;
		for (int i = 0; i < SPEC_NPERSEG; i++)
			s->in[i] = (float)((seg[i] - mean) * s->window[i]);
		fftwf_execute(s->plan);
		for (int f = 0; f < SPEC_NFREQ; f++) {
			double re = X[f][0], im = X[f][1];
			double p = (re * re + im * im) * scale;
			if (f > 0 && f < SPEC_NFREQ - 1)
				p *= 2;
			double v = log(p + 1e-7);
			out[(size_t)f * T + t] = (float)v;
			sum += v;
		}
	}
	if (!zscore || !T)
		return;
	size_t count = (size_t)SPEC_NFREQ * T;
	double mean = sum / (double)count;
	/* a second pass for the variance, as numpy computes it */
	double var = 0;
	for (size_t i = 0; i < count; i++) {
		double d = out[i] - mean;
		var += d * d;
	}
	double sd = sqrt(var / (double)count) + 1e-9;
	for (size_t i = 0; i < count; i++)
		out[i] = (float)((out[i] - mean) / sd);
}
