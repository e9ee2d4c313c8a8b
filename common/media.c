/*
 * media.c - audio and image decoders (media.h) over Debian's own libraries:
 * libsndfile reads WAV of every PCM and float layout (and the other formats
 * it knows), libsamplerate resamples, libpng and libjpeg-turbo decode PNG
 * and JPEG. PPM/PGM is a page of code and is written here. docs/media.md
 * gives the reasons for each choice.
 *
 * Images go through one intermediate form, struct raw: interleaved H x W x C
 * samples as uint16 with their maximum (255, 65535 or a PNM maxval), palette
 * images either expanded to RGB (images) or kept as indices (label maps).
 * From it come the three outputs: floats in [0, 1] (image), metres (depth)
 * and class ids (labelmap). Gamma and colour-profile chunks are not applied:
 * samples are taken as stored, as PIL, OpenCV and torchvision take them.
 *
 * libpng and libjpeg report errors by longjmp from a callback; each decoder
 * keeps its heap pointers in volatile locals so that the jump target can free
 * them, and turns the library's message into an mke_error naming the file. A
 * JPEG that libjpeg only warns about (truncated data, a corrupt marker: it
 * would fill the rest with gray) is an error here too.
 *
 * Ownership: every buffer handed out is the caller's (free(), or
 * media_image_release()).
 */
#include "media.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>
#include <samplerate.h>
#include <sndfile.h>

#include "util.h"

/* ---- audio ---------------------------------------------------------------- */

#define AUDIO_MAX_SAMPLES ((sf_count_t)1 << 30) /* per file, all channels */

int audio_resample(const float *in, size_t n, double ratio, float **out, size_t *nout,
		   const char *what)
{
	*out = NULL;
	*nout = 0;
	if (!(ratio > 0) || !src_is_valid_ratio(ratio))
		return mke_error("'%s': cannot resample by %g", what, ratio);
	double want = floor((double)n * ratio + 0.5);
	if (want > (double)AUDIO_MAX_SAMPLES || n > (size_t)LONG_MAX)
		return mke_error("'%s': %zu samples resampled by %g is too long", what, n, ratio);
	size_t len = (size_t)want;
	size_t cap = len + 64;
	float *y = xcalloc(cap, sizeof *y);
	SRC_DATA d = {
		.data_in = in,
		.data_out = y,
		.input_frames = (long)n,
		.output_frames = (long)cap,
		.src_ratio = ratio,
		.end_of_input = 1,
	};
	int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1);
	if (err) {
		free(y);
		return mke_error("'%s': resampling failed: %s", what, src_strerror(err));
	}
	/* the converter's count can differ from round(n * ratio) by a sample or
	 * two at the end; the tail beyond what it produced stays zero */
	*out = y;
	*nout = len;
	return 0;
}

int audio_load(const char *path, int rate, float **x, size_t *n, int *file_rate)
{
	*x = NULL;
	*n = 0;
	SF_INFO info;
	memset(&info, 0, sizeof info);
	SNDFILE *sf = sf_open(path, SFM_READ, &info);
	if (!sf)
		return mke_error("cannot decode audio '%s': %s", path, sf_strerror(NULL));
	int rc = 0;
	float *mono = NULL, *buf = NULL;
	if (info.channels < 1 || info.samplerate < 1) {
		rc = mke_error("audio '%s' has %d channels at %d Hz", path, info.channels,
			       info.samplerate);
		goto out;
	}
	if (info.frames < 1) {
		rc = mke_error("audio '%s' holds no samples", path);
		goto out;
	}
	if (info.frames > AUDIO_MAX_SAMPLES / info.channels) {
		rc = mke_error("audio '%s' is too long (%lld frames of %d channels)", path,
			       (long long)info.frames, info.channels);
		goto out;
	}
	/* integer PCM is scaled to [-1, 1) by 1/2^(bits-1), as soundfile does
	 * (libsndfile's default, set here explicitly); float files are read as
	 * stored, beyond [-1, 1] included (audio_fit clips, like the reference) */
	sf_command(sf, SFC_SET_NORM_FLOAT, NULL, SF_TRUE);
	size_t frames = (size_t)info.frames, got = 0;
	const size_t chunk = 4096;
	int ch = info.channels;
	/* the frame count is the header's claim (a 60-byte FLAC can claim 2^30
	 * frames): the buffer grows with the samples actually read */
	size_t cap = frames < 16 * chunk ? frames : 16 * chunk;
	mono = xmalloc(cap * sizeof *mono);
	buf = xmalloc(chunk * (size_t)ch * sizeof *buf);
	while (got < frames) {
		size_t want = frames - got < chunk ? frames - got : chunk;
		sf_count_t r = sf_readf_float(sf, buf, (sf_count_t)want);
		if (r <= 0)
			break;
		if (got + (size_t)r > cap) {
			cap = cap * 2 < frames ? cap * 2 : frames;
			mono = xrealloc(mono, cap * sizeof *mono);
		}
		for (sf_count_t i = 0; i < r; i++) {
			double s = 0;
			for (int c = 0; c < ch; c++)
				s += buf[(size_t)i * (size_t)ch + (size_t)c];
			mono[got + (size_t)i] = (float)(s / ch);
		}
		got += (size_t)r;
	}
	if (sf_error(sf) != SF_ERR_NO_ERROR) {
		rc = mke_error("cannot decode audio '%s': %s", path, sf_strerror(sf));
		goto out;
	}
	if (got < frames) {
		rc = mke_error("audio '%s' is truncated: %zu of %zu frames", path, got, frames);
		goto out;
	}
	for (size_t i = 0; i < frames; i++) {
		if (!isfinite(mono[i])) {
			rc = mke_error("audio '%s' holds a non-finite sample at frame %zu", path, i);
			goto out;
		}
	}
	if (file_rate)
		*file_rate = info.samplerate;
	if (rate > 0 && rate != info.samplerate) {
		float *y;
		size_t ny;
		rc = audio_resample(mono, frames, (double)rate / info.samplerate, &y, &ny, path);
		if (rc)
			goto out;
		free(mono);
		mono = y;
		frames = ny;
	}
	*x = mono;
	*n = frames;
	mono = NULL;
out:
	free(buf);
	free(mono);
	sf_close(sf);
	return rc;
}

void audio_fit(const float *x, size_t n, float *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		float v = x[i % n];
		out[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
	}
}

/* ---- images: the raw intermediate ----------------------------------------- */

struct raw {
	int w, h, c;       /* c: 1 gray (or palette index), 2 gray+alpha, 3 RGB, 4 RGBA */
	unsigned maxval;   /* largest sample value: 255, 65535, a PNM maxval, ... */
	int palette;       /* samples are palette indices */
	uint16_t *px;      /* h*w*c, interleaved, owned */
};

static void raw_release(struct raw *r)
{
	free(r->px);
	memset(r, 0, sizeof *r);
}

static int check_size(const char *path, long w, long h)
{
	if (w < 1 || h < 1)
		return mke_error("image '%s' has size %ldx%ld", path, w, h);
	if (w > MEDIA_MAX_PIXELS / h)
		return mke_error("image '%s' is %ldx%ld, over the %ld-pixel limit", path, w, h,
				 (long)MEDIA_MAX_PIXELS);
	return 0;
}

/* ---- PNG ------------------------------------------------------------------ */

struct png_fail {
	char msg[200];
};

static void png_on_error(png_structp png, png_const_charp msg)
{
	struct png_fail *f = png_get_error_ptr(png);
	snprintf(f->msg, sizeof f->msg, "%s", msg);
	png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg; /* ancillary-chunk problems: the pixels are still good */
}

/* keep_palette: palette images give their indices (label maps). */
static int png_decode(const char *path, FILE *f, int keep_palette, struct raw *r)
{
	struct png_fail fail = { "" };
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &fail, png_on_error,
						 png_on_warning);
	png_infop info = png ? png_create_info_struct(png) : NULL;
	if (!info) {
		png_destroy_read_struct(&png, NULL, NULL);
		return mke_error("cannot decode PNG '%s': libpng could not start", path);
	}
	unsigned char *volatile buf = NULL;
	png_bytep *volatile rows = NULL;
	if (setjmp(png_jmpbuf(png))) {
		free(buf);
		free(rows);
		png_destroy_read_struct(&png, &info, NULL);
		/* libpng's own reader says only "Read Error" at a short read */
		return mke_error("cannot decode PNG '%s': %s", path,
				 strcmp(fail.msg, "Read Error") == 0
					 ? "the file ends early (truncated)" : fail.msg);
	}
	png_init_io(png, f);
	png_read_info(png, info);
	png_uint_32 w, h;
	int bits, ctype;
	png_get_IHDR(png, info, &w, &h, &bits, &ctype, NULL, NULL, NULL);
	if (check_size(path, (long)w, (long)h)) {
		png_destroy_read_struct(&png, &info, NULL);
		return -1;
	}
	int palette = ctype == PNG_COLOR_TYPE_PALETTE && keep_palette;
	if (palette) {
		png_set_packing(png);
	} else if (ctype == PNG_COLOR_TYPE_PALETTE) {
		png_set_palette_to_rgb(png);
		if (png_get_valid(png, info, PNG_INFO_tRNS))
			png_set_tRNS_to_alpha(png);
	} else if (keep_palette) {
		png_set_packing(png);  /* label ids below 8 bits: values, not scaled */
	} else {
		if (ctype == PNG_COLOR_TYPE_GRAY && bits < 8)
			png_set_expand_gray_1_2_4_to_8(png);
		if (png_get_valid(png, info, PNG_INFO_tRNS))
			png_set_tRNS_to_alpha(png);
	}
	png_read_update_info(png, info);
	int c = png_get_channels(png, info);
	int obits = png_get_bit_depth(png, info);
	size_t rowbytes = png_get_rowbytes(png, info);
	if (c < 1 || c > 4 || (obits != 8 && obits != 16) ||
	    rowbytes != (size_t)w * (size_t)c * (size_t)(obits / 8))
		png_error(png, "unexpected layout after the transforms");
	buf = xmalloc(rowbytes * h);
	rows = xmalloc(h * sizeof *rows);
	for (png_uint_32 y = 0; y < h; y++)
		rows[y] = buf + (size_t)y * rowbytes;
	png_read_image(png, rows);
	png_read_end(png, NULL);

	size_t count = (size_t)w * h * (size_t)c;
	r->px = xmalloc(count * sizeof *r->px);
	for (size_t i = 0; i < count; i++)
		r->px[i] = obits == 16 ? (uint16_t)(buf[2 * i] << 8 | buf[2 * i + 1]) : buf[i];
	r->w = (int)w;
	r->h = (int)h;
	r->c = c;
	r->palette = palette;
	r->maxval = obits == 16 ? 65535u : 255u;
	if (keep_palette && !palette && bits < 8)
		r->maxval = (1u << bits) - 1;  /* unpacked, not scaled */
	free(buf);
	free(rows);
	png_destroy_read_struct(&png, &info, NULL);
	return 0;
}

/* ---- JPEG ----------------------------------------------------------------- */

struct jpeg_fail {
	struct jpeg_error_mgr mgr;  /* first: libjpeg hands back its address */
	jmp_buf jmp;
	char msg[JMSG_LENGTH_MAX];
};

static void jpeg_on_error(j_common_ptr ci)
{
	struct jpeg_fail *f = (struct jpeg_fail *)ci->err;
	ci->err->format_message(ci, f->msg);
	longjmp(f->jmp, 1);
}

/* Warnings (num_warnings counts them) keep their first message. */
static void jpeg_on_message(j_common_ptr ci)
{
	struct jpeg_fail *f = (struct jpeg_fail *)ci->err;
	if (!f->msg[0])
		ci->err->format_message(ci, f->msg);
}

static int jpeg_decode(const char *path, FILE *f, struct raw *r)
{
	struct jpeg_decompress_struct ci;
	struct jpeg_fail fail;
	memset(&fail, 0, sizeof fail);
	ci.err = jpeg_std_error(&fail.mgr);
	fail.mgr.error_exit = jpeg_on_error;
	fail.mgr.output_message = jpeg_on_message;
	unsigned char *volatile row = NULL;
	uint16_t *volatile px = NULL;
	if (setjmp(fail.jmp)) {
		free(row);
		free(px);
		jpeg_destroy_decompress(&ci);
		return mke_error("cannot decode JPEG '%s': %s", path, fail.msg);
	}
	jpeg_create_decompress(&ci);
	jpeg_stdio_src(&ci, f);
	jpeg_read_header(&ci, TRUE);
	if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
		jpeg_destroy_decompress(&ci);
		return mke_error("JPEG '%s' is CMYK, which is not supported (convert it to RGB)",
				 path);
	}
	ci.out_color_space = ci.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
	if (check_size(path, (long)ci.image_width, (long)ci.image_height)) {
		jpeg_destroy_decompress(&ci);
		return -1;
	}
	jpeg_start_decompress(&ci);
	int c = ci.output_components;
	size_t stride = (size_t)ci.output_width * (size_t)c;
	row = xmalloc(stride);
	px = xmalloc(stride * ci.output_height * sizeof *px);
	while (ci.output_scanline < ci.output_height) {
		JSAMPROW rp = row;
		size_t y = ci.output_scanline;
		if (jpeg_read_scanlines(&ci, &rp, 1) != 1)
			break;
		for (size_t i = 0; i < stride; i++)
			px[y * stride + i] = row[i];
	}
	jpeg_finish_decompress(&ci);
	if (fail.mgr.num_warnings) {
		free(row);
		free(px);
		jpeg_destroy_decompress(&ci);
		return mke_error("cannot decode JPEG '%s': %s", path,
				 fail.msg[0] ? fail.msg : "corrupt data");
	}
	r->w = (int)ci.output_width;
	r->h = (int)ci.output_height;
	r->c = c;
	r->maxval = 255;
	r->palette = 0;
	r->px = px;
	free(row);
	jpeg_destroy_decompress(&ci);
	return 0;
}

/* ---- PPM / PGM ------------------------------------------------------------ */

/* Skip whitespace and '#' comments; then an unsigned decimal. -1 if none. */
static long pnm_number(const unsigned char *s, size_t n, size_t *i)
{
	for (;;) {
		while (*i < n && isspace(s[*i]))
			(*i)++;
		if (*i < n && s[*i] == '#') {
			while (*i < n && s[*i] != '\n' && s[*i] != '\r')
				(*i)++;
			continue;
		}
		break;
	}
	if (*i >= n || !isdigit(s[*i]))
		return -1;
	long v = 0;
	while (*i < n && isdigit(s[*i])) {
		v = v * 10 + (s[*i] - '0');
		if (v > 1L << 30)
			return -1;
		(*i)++;
	}
	return v;
}

/* P2/P5 (gray) and P3/P6 (RGB), plain or binary, maxval up to 65535. */
static int pnm_decode(const char *path, const unsigned char *s, size_t n, struct raw *r)
{
	int kind = s[1] - '0';
	int c = kind == 3 || kind == 6 ? 3 : 1;
	size_t i = 2;
	long w = pnm_number(s, n, &i), h = pnm_number(s, n, &i), maxval = pnm_number(s, n, &i);
	if (w < 0 || h < 0 || maxval < 0)
		return mke_error("cannot decode PNM '%s': bad header", path);
	if (maxval < 1 || maxval > 65535)
		return mke_error("cannot decode PNM '%s': maxval %ld is not in 1..65535", path,
				 maxval);
	if (check_size(path, w, h))
		return -1;
	size_t count = (size_t)w * (size_t)h * (size_t)c;
	if (kind == 5 || kind == 6) {
		size_t bytes = maxval > 255 ? 2 : 1;
		if (i >= n || !isspace(s[i]))
			return mke_error("cannot decode PNM '%s': bad header", path);
		i++;
		if (n - i < count * bytes)
			return mke_error("cannot decode PNM '%s': truncated (%zu of %zu sample "
					 "bytes)", path, n - i, count * bytes);
		r->px = xmalloc(count * sizeof *r->px);
		for (size_t k = 0; k < count; k++)
			r->px[k] = bytes == 2 ? (uint16_t)(s[i + 2 * k] << 8 | s[i + 2 * k + 1])
					      : s[i + k];
	} else {
		r->px = xmalloc(count * sizeof *r->px);
		for (size_t k = 0; k < count; k++) {
			long v = pnm_number(s, n, &i);
			if (v < 0) {
				raw_release(r);
				return mke_error("cannot decode PNM '%s': truncated (%zu of %zu "
						 "samples)", path, k, count);
			}
			r->px[k] = (uint16_t)(v > maxval ? maxval : v);
		}
	}
	for (size_t k = 0; k < count; k++) {
		if (r->px[k] > maxval) {
			unsigned v = r->px[k];  /* raw_release clears r->px */
			raw_release(r);
			return mke_error("cannot decode PNM '%s': sample %u over maxval %ld", path,
					 v, maxval);
		}
	}
	r->w = (int)w;
	r->h = (int)h;
	r->c = c;
	r->maxval = (unsigned)maxval;
	r->palette = 0;
	return 0;
}

/* ---- dispatch ------------------------------------------------------------- */

static int raw_load(const char *path, int keep_palette, struct raw *r)
{
	memset(r, 0, sizeof *r);
	FILE *f = fopen(path, "rb");
	if (!f)
		return mke_error("cannot open image '%s': %s", path, strerror(errno));
	unsigned char magic[8];
	size_t got = fread(magic, 1, sizeof magic, f);
	int rc;
	if (got >= 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0) {
		rewind(f);
		rc = png_decode(path, f, keep_palette, r);
	} else if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
		rewind(f);
		rc = jpeg_decode(path, f, r);
	} else if (got >= 2 && magic[0] == 'P' && strchr("2356", magic[1]) && magic[1]) {
		fclose(f);
		size_t len;
		char *text = read_file(path, &len);
		if (!text)
			return -1;
		rc = pnm_decode(path, (const unsigned char *)text, len, r);
		free(text);
		return rc;
	} else {
		rc = mke_error("image '%s' is %s (PNG, JPEG, PPM and PGM are read)", path,
			       got ? "not in a known format" : "empty");
	}
	fclose(f);
	return rc;
}

void media_image_release(struct media_image *im)
{
	free(im->x);
	memset(im, 0, sizeof *im);
}

int image_load(struct media_image *im, const char *path, int channels)
{
	memset(im, 0, sizeof *im);
	if (channels < 0 || channels == 2 || channels > 4)
		return mke_error("image '%s': %d channels asked for (1, 3 or 4)", path, channels);
	struct raw r;
	if (raw_load(path, 0, &r))
		return -1;
	int color = r.c >= 3, alpha = r.c == 2 || r.c == 4;
	int c = channels ? channels : color ? 3 : 1;
	size_t plane = (size_t)r.w * (size_t)r.h;
	float *x = xmalloc(plane * (size_t)c * sizeof *x);
	float scale = 1.0f / (float)r.maxval;
	for (size_t p = 0; p < plane; p++) {
		const uint16_t *s = r.px + p * (size_t)r.c;
		float rgb[3], a = alpha ? s[r.c - 1] * scale : 1.0f;
		for (int k = 0; k < 3; k++)
			rgb[k] = s[color ? k : 0] * scale;
		if (c == 1)
			x[p] = color ? 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2] : rgb[0];
		else
			for (int k = 0; k < 3; k++)
				x[(size_t)k * plane + p] = rgb[k];
		if (c == 4)
			x[3 * plane + p] = a;
	}
	im->c = c;
	im->h = r.h;
	im->w = r.w;
	im->x = x;
	raw_release(&r);
	return 0;
}

int depth_load(struct media_image *im, const char *path)
{
	memset(im, 0, sizeof *im);
	struct raw r;
	if (raw_load(path, 1, &r))
		return -1;
	if (r.c != 1 || r.palette || r.maxval <= 255) {
		int c = r.c;
		unsigned maxval = r.maxval;
		raw_release(&r);
		return mke_error("depth map '%s' must be a 16-bit single-channel PNG or PGM of "
				 "millimetres (it has %d channel%s, maximum %u)", path, c,
				 c == 1 ? "" : "s", maxval);
	}
	size_t plane = (size_t)r.w * (size_t)r.h;
	im->x = xmalloc(plane * sizeof *im->x);
	for (size_t p = 0; p < plane; p++)
		im->x[p] = (float)(r.px[p] / 1000.0);
	im->c = 1;
	im->h = r.h;
	im->w = r.w;
	raw_release(&r);
	return 0;
}

int labelmap_load(int **ids, int *h, int *w, const char *path)
{
	*ids = NULL;
	*h = *w = 0;
	struct raw r;
	if (raw_load(path, 1, &r))
		return -1;
	if (r.c != 1) {
		int c = r.c;
		raw_release(&r);
		return mke_error("label map '%s' must have one channel of class ids (gray or "
				 "palette), it has %d", path, c);
	}
	size_t plane = (size_t)r.w * (size_t)r.h;
	int *v = xmalloc(plane * sizeof *v);
	for (size_t p = 0; p < plane; p++)
		v[p] = r.px[p];
	*ids = v;
	*h = r.h;
	*w = r.w;
	raw_release(&r);
	return 0;
}

/* Source coordinate and weights along one axis (align_corners=False). */
static void bilinear_axis(int out, int in, int i, int *i0, int *i1, float *l1)
{
	double src = ((double)i + 0.5) * in / out - 0.5;
	if (src < 0)
		src = 0;
	int a = (int)src;
	if (a > in - 1)
		a = in - 1;
	*i0 = a;
	*i1 = a < in - 1 ? a + 1 : a;
	*l1 = (float)(src - a);
}

void image_resize(struct media_image *im, int h, int w)
{
	if (im->h == h && im->w == w)
		return;
	float *y = xmalloc((size_t)im->c * (size_t)h * (size_t)w * sizeof *y);
	for (int oy = 0; oy < h; oy++) {
		int y0, y1;
		float ly;
		bilinear_axis(h, im->h, oy, &y0, &y1, &ly);
		for (int ox = 0; ox < w; ox++) {
			int x0, x1;
			float lx;
			bilinear_axis(w, im->w, ox, &x0, &x1, &lx);
			for (int c = 0; c < im->c; c++) {
				const float *p = im->x + (size_t)c * im->h * im->w;
				float top = (1 - lx) * p[(size_t)y0 * im->w + x0] +
					    lx * p[(size_t)y0 * im->w + x1];
				float bot = (1 - lx) * p[(size_t)y1 * im->w + x0] +
					    lx * p[(size_t)y1 * im->w + x1];
				y[((size_t)c * h + oy) * w + ox] = (1 - ly) * top + ly * bot;
			}
		}
	}
	free(im->x);
	im->x = y;
	im->h = h;
	im->w = w;
}
