/*
 * spectrogram.h - the audio front end of the VGGSound reference
 * (hche11/VGGSound, datasets/dataloader.py), which computes
 *     f, t, S = scipy.signal.spectrogram(x, fs, nperseg=512, noverlap=353)
 *     S = np.log(S + 1e-7); S = (S - S.mean()) / (S.std() + 1e-9)
 * reproduced here with FFTW (single precision) and the arguments scipy fills
 * in: a periodic Tukey(0.25) window of 512 points, hop 159, nfft 512, each
 * segment's mean removed (detrend='constant'), one-sided power spectral
 * density (scaling='density': |X|^2 / (fs * sum(w^2)), doubled except at DC
 * and Nyquist). The result is SPEC_NFREQ x T, frequency-major like scipy's,
 * with T = (n - 353) / 159 for n >= 512 samples: 257 x 500 for 5 s at 16 kHz.
 *
 * A struct spectrogram holds an FFTW plan and its buffers, made once and used
 * for many clips. Making a plan is not thread-safe (FFTW's planner); using
 * one struct from several threads at once is not safe either.
 */
#ifndef MKE_SPECTROGRAM_H
#define MKE_SPECTROGRAM_H

#include <stddef.h>

#define SPEC_NPERSEG 512
#define SPEC_NOVERLAP 353
#define SPEC_HOP (SPEC_NPERSEG - SPEC_NOVERLAP) /* 159 */
#define SPEC_NFREQ (SPEC_NPERSEG / 2 + 1)       /* 257 */

struct spectrogram {
	double window[SPEC_NPERSEG];
	double scale;      /* 1 / sum(window^2); divided by fs per call */
	float *in;         /* SPEC_NPERSEG, fftwf_malloc'd */
	void *out;         /* SPEC_NFREQ fftwf_complex, fftwf_malloc'd */
	void *plan;        /* fftwf_plan */
};

/* Make the window and the FFT plan. Returns -1 if FFTW cannot. Release with
 * spectrogram_release(). */
int spectrogram_init(struct spectrogram *s);
void spectrogram_release(struct spectrogram *s);

/* Frames for n samples: (n - 353) / 159, 0 when n < 512. */
size_t spectrogram_frames(size_t n);

/* The log-PSD of x (n samples at fs Hz) into out (SPEC_NFREQ x T floats,
 * out[f * T + t]), z-scored over the whole array when zscore is nonzero.
 * n must be >= SPEC_NPERSEG. */
void spectrogram_compute(struct spectrogram *s, const float *x, size_t n, double fs,
			 int zscore, float *out);

#endif
