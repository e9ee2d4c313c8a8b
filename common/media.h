/*
 * media.h - decoders for the native sample formats of DESIGN.md "Data":
 * audio files (WAV of any PCM or float format, through libsndfile) mixed to
 * mono and resampled (libsamplerate), and images (PNG through libpng, JPEG
 * through libjpeg-turbo, PPM/PGM by hand) as float planes, depth maps in
 * metres and label maps of class ids. docs/media.md says why each library.
 *
 * Every function decodes one file into memory it hands to the caller; a file
 * that does not decode (missing, truncated, corrupt, an unsupported variant)
 * is reported with mke_error() naming the file and returns -1, never aborts.
 * The format is found from the file's first bytes, not from its name.
 */
#ifndef MKE_MEDIA_H
#define MKE_MEDIA_H

#include <stddef.h>

/* Largest image accepted, in pixels: a corrupt header cannot make the
 * decoder allocate more than this (times channels times 4 bytes). */
#define MEDIA_MAX_PIXELS (1L << 26)

/* ---- audio ---------------------------------------------------------------- */

/* Decode the audio file at path to mono float samples in [-1, 1] (channels
 * averaged), resampled to rate Hz with libsamplerate's best sinc converter
 * when the file's rate differs (rate 0 keeps the file's rate). *x gets *n
 * samples, owned by the caller (free()); *file_rate, when not NULL, gets the
 * file's own rate. On error *x is NULL. */
int audio_load(const char *path, int rate, float **x, size_t *n, int *file_rate);

/* Resample n samples by ratio (output rate / input rate) into a new buffer
 * of round(n * ratio) samples (*out, caller frees). `what` names the source
 * in errors. */
int audio_resample(const float *in, size_t n, double ratio, float **out, size_t *nout,
		   const char *what);

/* Fit n samples to exactly len as the VGGSound reference does: repeat the
 * clip (np.tile) until it is long enough, crop to len, clip to [-1, 1].
 * out holds len floats; n must be > 0. */
void audio_fit(const float *x, size_t n, float *out, size_t len);

/* ---- images --------------------------------------------------------------- */

/* A decoded image: c planes of h x w floats, plane-major (C x H x W). */
struct media_image {
	int c, h, w;
	float *x;          /* c*h*w floats, owned */
};

void media_image_release(struct media_image *im);

/* Decode PNG, JPEG or PPM/PGM at path to floats in [0, 1] (sample / max of
 * the bit depth; palettes expanded). channels: 0 keeps the file's colour
 * channels with alpha dropped (gray 1, colour 3); 1 converts colour to BT.601
 * luma; 3 replicates gray; 4 adds or keeps alpha (opaque when absent).
 * *im need not be initialized; release it with media_image_release(). */
int image_load(struct media_image *im, const char *path, int channels);

/* Decode a 16-bit single-channel PNG or PGM of millimetres into metres,
 * 1 x H x W (0, "no reading", stays 0). Anything else is an error. */
int depth_load(struct media_image *im, const char *path);

/* Decode an 8- or 16-bit gray or palette PNG (or PGM) of class ids: the
 * sample values, or the palette indices, unconverted. *ids (h*w, row-major)
 * is owned by the caller (free()). */
int labelmap_load(int **ids, int *h, int *w, const char *path);

/* Resize in place to h x w with bilinear interpolation at pixel centres
 * (align_corners=False, no antialiasing: PyTorch's F.interpolate(mode=
 * 'bilinear') and OpenCV's INTER_LINEAR). A no-op when the size matches. */
void image_resize(struct media_image *im, int h, int w);

#endif
