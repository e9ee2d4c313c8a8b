/*
 * test_av.c - common/av.c: an MP4 written by av_write_mp4 (a sine tone and
 * frames of known colours) decodes back to the tone's length and frequency
 * and the frames' colours; truncated, corrupt and missing files, and files
 * without the stream asked for, fail with a reason naming the file.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavformat/avformat.h>

#include "av.h"
#include "test.h"
#include "tmpdir.h"
#include "util.h"

/* The clip: 1.5 s of a 440 Hz tone at 16 kHz; 15 frames at 10 fps, 48 x 64,
 * frame f has colour top(f) in its top half and bot(f) in its bottom half. */
#define RATE 16000
#define NS 24000
#define NF 15
#define FH 48
#define FW 64
#define FPS 10

static void top_colour(int f, int rgb[3])
{
	rgb[0] = 30 + 14 * f;
	rgb[1] = 220 - 12 * f;
	rgb[2] = 60;
}

static void bot_colour(int f, int rgb[3])
{
	rgb[0] = 200;
	rgb[1] = 40 + 10 * f;
	rgb[2] = 230 - 14 * f;
}

static float *sine(double hz, int n, int rate)
{
	float *x = xmalloc((size_t)n * sizeof *x);
	for (int k = 0; k < n; k++)
		x[k] = (float)(0.5 * sin(2 * M_PI * hz * k / rate));
	return x;
}

static unsigned char *pattern(void)
{
	unsigned char *px = xmalloc((size_t)NF * FH * FW * 3);
	for (int f = 0; f < NF; f++)
		for (int y = 0; y < FH; y++)
			for (int x = 0; x < FW; x++) {
				int c[3];
				if (y < FH / 2)
					top_colour(f, c);
				else
					bot_colour(f, c);
				for (int k = 0; k < 3; k++)
					px[(((size_t)f * FH + y) * FW + x) * 3 + k] = (unsigned char)c[k];
			}
	return px;
}

/* |DFT|^2 of x[from, from + len) at hz, by a rotating phasor. */
static double power_at(const float *x, size_t from, size_t len, double hz, int rate)
{
	double re = 0, im = 0, c = 1, s = 0, w = 2 * M_PI * hz / rate;
	double cw = cos(w), sw = sin(w);
	for (size_t k = 0; k < len; k++) {
		re += x[from + k] * c;
		im += x[from + k] * s;
		double t = c * cw - s * sw;
		s = s * cw + c * sw;
		c = t;
	}
	return re * re + im * im;
}

/* The frequency with the largest DFT magnitude over x[from, from + len):
 * 10 Hz steps over 50..4000 Hz, then 1 Hz steps around the best. */
static double peak_hz(const float *x, size_t from, size_t len, int rate)
{
	double best = -1, best_hz = 0;
	for (int hz = 50; hz <= 4000; hz += 10) {
		double m = power_at(x, from, len, hz, rate);
		if (m > best) {
			best = m;
			best_hz = hz;
		}
	}
	double c = best_hz;
	for (double hz = c - 10; hz <= c + 10; hz += 1) {
		double m = power_at(x, from, len, hz, rate);
		if (m > best) {
			best = m;
			best_hz = hz;
		}
	}
	return best_hz;
}

static double rms(const float *x, size_t from, size_t len)
{
	double s = 0;
	for (size_t k = 0; k < len; k++)
		s += (double)x[from + k] * x[from + k];
	return sqrt(s / (double)len);
}

static char *write_clip(const char *name, int with_audio, int with_video)
{
	char *p = tpath(name), why[512];
	float *a = sine(440, NS, RATE);
	unsigned char *v = pattern();
	int rc = av_write_mp4(p, a, with_audio ? NS : 0, RATE, v, with_video ? NF : 0, FH, FW,
			      FPS, why, sizeof why);
	CHECK_MSG(rc == 0, "%s", why);
	free(a);
	free(v);
	return p;
}

/* Copy in's streams into a new container (format fmt; MP4 movflags when not
 * NULL) without re-encoding: how MKV and "faststart" MP4 files are made here. */
static int remux(const char *in, const char *out, const char *fmt, const char *movflags)
{
	AVFormatContext *ic = NULL, *oc = NULL;
	AVPacket *pkt = av_packet_alloc();
	int rc = -1;
	if (avformat_open_input(&ic, in, NULL, NULL) < 0 || avformat_find_stream_info(ic, NULL) < 0)
		goto done;
	if (avformat_alloc_output_context2(&oc, NULL, fmt, out) < 0)
		goto done;
	for (unsigned s = 0; s < ic->nb_streams; s++) {
		AVStream *o = avformat_new_stream(oc, NULL);
		if (!o || avcodec_parameters_copy(o->codecpar, ic->streams[s]->codecpar) < 0)
			goto done;
		o->codecpar->codec_tag = 0;
		o->time_base = ic->streams[s]->time_base;
	}
	AVDictionary *opt = NULL;
	if (movflags)
		av_dict_set(&opt, "movflags", movflags, 0);
	if (avio_open(&oc->pb, out, AVIO_FLAG_WRITE) < 0 || avformat_write_header(oc, &opt) < 0) {
		av_dict_free(&opt);
		goto done;
	}
	av_dict_free(&opt);
	while (av_read_frame(ic, pkt) >= 0) {
		AVStream *is = ic->streams[pkt->stream_index], *os = oc->streams[pkt->stream_index];
		av_packet_rescale_ts(pkt, is->time_base, os->time_base);
		pkt->pos = -1;
		if (av_interleaved_write_frame(oc, pkt) < 0)
			goto done;
	}
	rc = av_write_trailer(oc) < 0 ? -1 : 0;
done:
	if (oc && oc->pb)
		avio_closep(&oc->pb);
	avformat_free_context(oc);
	avformat_close_input(&ic);
	av_packet_free(&pkt);
	return rc;
}
static void test_audio_roundtrip(void)
{
	tmp_make("mke-av");
	char *p = write_clip("clip.mp4", 1, 1), why[512];
	static const int rates[] = {16000, 8000, 22050, 0};
	for (int r = 0; r < 4; r++) {
		float *x = NULL;
		size_t n = 0;
		int rate = rates[r], eff = rate ? rate : RATE;
		int rc = av_decode_audio(p, rate, &x, &n, why, sizeof why);
		CHECK_MSG(rc == 0, "%s", why);
		if (rc)
			continue;
		/* the length: 1.5 s exactly (AAC's priming and padding cut off) */
		double want = 1.5 * eff;
		CHECK_MSG(fabs((double)n - want) <= 2, "rate %d: %zu samples, want %.0f", rate, n,
			  want);
		CHECK_NEAR(peak_hz(x, n / 4, n / 2, eff), 440, 3);
		/* amplitude 0.5: RMS 0.354 */
		CHECK_NEAR(rms(x, n / 4, n / 2), 0.5 / sqrt(2), 0.03);
		free(x);
	}
	free(p);
	tmp_clean();
}

/* Mean of channel c of frame j over rows [y0, y1) away from the edges. */
static double region_mean(const float *out, int j, int c, int H, int W, int y0, int y1)
{
	double s = 0;
	int k = 0;
	for (int y = y0; y < y1; y++)
		for (int x = 2; x < W - 2; x++, k++)
			s += out[(((size_t)j * 3 + c) * H + y) * W + x];
	return s / k;
}

static void test_frames_roundtrip(void)
{
	tmp_make("mke-av");
	char *p = write_clip("clip.mp4", 1, 1), why[512];
	/* F = 5 of 15 frames: frames floor((i + 0.5) * 3) = 1, 4, 7, 10, 13;
	 * at 24 x 32 (half size); then at full size and at 16 x 16 */
	static const int sizes[3][2] = {{24, 32}, {48, 64}, {16, 16}};
	for (int s = 0; s < 3; s++) {
		int F = 5, H = sizes[s][0], W = sizes[s][1];
		float *out = xcalloc((size_t)F * 3 * H * W, sizeof *out);
		int rc = av_decode_frames(p, F, H, W, out, why, sizeof why);
		CHECK_MSG(rc == 0, "%s", why);
		double worst = 0, lo = 1, hi = 0;
		for (int i = 0; i < F && !rc; i++) {
			int f = (int)floor((i + 0.5) * NF / F), t[3], b[3];
			top_colour(f, t);
			bot_colour(f, b);
			for (int c = 0; c < 3; c++) {
				double mt = region_mean(out, i, c, H, W, 1, H / 2 - 2);
				double mb = region_mean(out, i, c, H, W, H / 2 + 2, H - 1);
				worst = fmax(worst, fmax(fabs(mt - t[c] / 255.0), fabs(mb - b[c] / 255.0)));
			}
		}
		for (size_t k = 0; k < (size_t)F * 3 * H * W; k++) {
			lo = fmin(lo, out[k]);
			hi = fmax(hi, out[k]);
		}
		CHECK_MSG(worst < 0.04, "%dx%d: worst colour error %.4f", H, W, worst);
		CHECK(lo >= 0 && hi <= 1);
		free(out);
	}
	/* more frames asked for than there are: F = 30 of 15, each frame twice */
	float *out = xcalloc((size_t)30 * 3 * 8 * 8, sizeof *out);
	CHECK_MSG(av_decode_frames(p, 30, 8, 8, out, why, sizeof why) == 0, "%s", why);
	int t[3];
	top_colour(14, t);
	CHECK_NEAR(out[((size_t)29 * 3 + 0) * 64 + 8 + 4], t[0] / 255.0, 0.04);
	free(out);
	free(p);
	tmp_clean();
}

static void test_deterministic(void)
{
	tmp_make("mke-av");
	char *a = write_clip("a.mp4", 1, 1), *b = write_clip("b.mp4", 1, 1);
	size_t na = 0, nb = 0;
	char *x = read_file(a, &na), *y = read_file(b, &nb);
	CHECK(x && y && na > 1000 && na == nb && memcmp(x, y, na) == 0);
	free(x);
	free(y);
	free(a);
	free(b);
	tmp_clean();
}

static void test_truncated_and_corrupt(void)
{
	tmp_make("mke-av");
	char *p = write_clip("clip.mp4", 1, 1), why[512];
	size_t n = 0;
	char *bytes = read_file(p, &n);
	CHECK(bytes && n > 2000);
	float *x = (float *)1, *out = xmalloc((size_t)4 * 3 * 16 * 16 * sizeof *out);
	size_t nx = 7;
	/* cut at several points: before the end of the data, inside the index */
	static const double cuts[] = {0.1, 0.5, 0.9, 0.99};
	for (int k = 0; k < 4 && bytes; k++) {
		char *q = tpath("cut.mp4");
		size_t len = (size_t)(cuts[k] * (double)n);
		CHECK(write_file_atomic(q, bytes, len, 0644) == 0);
		why[0] = '\0';
		CHECK(av_decode_audio(q, 16000, &x, &nx, why, sizeof why) == -1);
		CHECK(x == NULL && nx == 0);
		CHECK_MSG(strstr(why, q) != NULL, "cut %.2f: '%s'", cuts[k], why);
		why[0] = '\0';
		CHECK(av_decode_frames(q, 4, 16, 16, out, why, sizeof why) == -1);
		CHECK_MSG(strstr(why, q) != NULL, "cut %.2f: '%s'", cuts[k], why);
		free(q);
	}
	/* bytes flipped in the middle of the data */
	if (bytes) {
		for (size_t k = n / 3; k < n / 3 + 64; k++)
			bytes[k] ^= 0x5a;
		char *q = tpath("flip.mp4");
		CHECK(write_file_atomic(q, bytes, n, 0644) == 0);
		/* either an error with a reason, or (if the damage hit nothing a
		 * decoder checks) a result; never a crash */
		why[0] = '\0';
		int rc = av_decode_frames(q, 4, 16, 16, out, why, sizeof why);
		CHECK(rc == 0 || strstr(why, q) != NULL);
		rc = av_decode_audio(q, 16000, &x, &nx, why, sizeof why);
		CHECK(rc == 0 || strstr(why, q) != NULL);
		if (rc == 0)
			free(x);
		free(q);
	}
	/* not a media file; a missing file */
	char *g = tpath("garbage.mp4"), *m = tpath("missing.mp4");
	CHECK(write_file_atomic(g, "this is not an mp4 file at all\n", 31, 0644) == 0);
	CHECK(av_decode_audio(g, 16000, &x, &nx, why, sizeof why) == -1);
	CHECK_MSG(strstr(why, "cannot open") && strstr(why, g), "'%s'", why);
	CHECK(av_decode_frames(m, 4, 16, 16, out, why, sizeof why) == -1);
	CHECK_MSG(strstr(why, "No such file") && strstr(why, m), "'%s'", why);
	/* why NULL: the reason goes to stderr */
	capture_begin();
	int rc = av_decode_audio(m, 16000, &x, &nx, NULL, 0);
	char *err = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strncmp(err, "error: cannot open '", 20) == 0 && strstr(err, m), "'%s'", err);
	free(err);
	/* a protocol instead of a file */
	CHECK(av_decode_audio("concat:/dev/null", 16000, &x, &nx, why, sizeof why) == -1);
	free(g);
	free(m);
	free(out);
	free(bytes);
	free(p);
	tmp_clean();
}

/* Matroska has no frame count: frames are taken by time. A "faststart" MP4
 * (index first) and a Matroska file cut short still fail. */
static void test_mkv_and_faststart(void)
{
	tmp_make("mke-av");
	char *p = write_clip("clip.mp4", 1, 1), *mkv = tpath("clip.mkv"), *fs = tpath("fs.mp4");
	char why[512];
	CHECK(remux(p, mkv, "matroska", NULL) == 0);
	CHECK(remux(p, fs, "mp4", "faststart") == 0);
	int F = 5, H = 24, W = 32;
	float *out = xcalloc((size_t)F * 3 * H * W, sizeof *out), *x = NULL;
	int rc = av_decode_frames(mkv, F, H, W, out, why, sizeof why);
	CHECK_MSG(rc == 0, "%s", why);
	/* slot i at (i + 0.5) * 1.5 s / 5 = 0.15, 0.45, ... s: frames 1, 4, 7, 10, 13 */
	double worst = 0;
	for (int i = 0; i < F && !rc; i++) {
		int t[3];
		top_colour(3 * i + 1, t);
		for (int c = 0; c < 3; c++)
			worst = fmax(worst, fabs(region_mean(out, i, c, H, W, 1, H / 2 - 2) - t[c] / 255.0));
	}
	CHECK_MSG(worst < 0.04, "worst colour error %.4f", worst);
	size_t n = 0;
	CHECK_MSG(av_decode_audio(mkv, 16000, &x, &n, why, sizeof why) == 0, "%s", why);
	if (x)
		CHECK_NEAR(peak_hz(x, n / 4, n / 2, 16000), 440, 3);
	free(x);
	static const char *const files[2] = {"clip.mkv", "fs.mp4"};
	for (int k = 0; k < 2; k++) {
		char *src = tpath(files[k]), *cut = tpath("cut.bin");
		size_t len = 0;
		char *b = read_file(src, &len);
		CHECK(b && write_file_atomic(cut, b, len / 2, 0644) == 0);
		why[0] = '\0';
		CHECK(av_decode_frames(cut, F, H, W, out, why, sizeof why) == -1);
		CHECK_MSG(strstr(why, "truncated") && strstr(why, cut), "%s: '%s'", files[k], why);
		why[0] = '\0';
		CHECK(av_decode_audio(cut, 16000, &x, &n, why, sizeof why) == -1);
		CHECK_MSG(strstr(why, cut) != NULL, "%s: '%s'", files[k], why);
		free(b);
		free(src);
		free(cut);
	}
	free(out);
	free(p);
	free(mkv);
	free(fs);
	tmp_clean();
}

static void test_missing_streams(void)
{
	tmp_make("mke-av");
	char *ao = write_clip("audio_only.mp4", 1, 0), *vo = write_clip("video_only.mp4", 0, 1);
	char why[512];
	float *out = xmalloc((size_t)2 * 3 * 8 * 8 * sizeof *out), *x = NULL;
	size_t n = 0;
	CHECK(av_decode_frames(ao, 2, 8, 8, out, why, sizeof why) == -1);
	CHECK_MSG(strstr(why, "has no video stream") && strstr(why, ao), "'%s'", why);
	CHECK_MSG(av_decode_audio(ao, 16000, &x, &n, why, sizeof why) == 0, "%s", why);
	CHECK(n > 20000);
	free(x);
	CHECK(av_decode_audio(vo, 16000, &x, &n, why, sizeof why) == -1);
	CHECK_MSG(strstr(why, "has no audio stream") && strstr(why, vo), "'%s'", why);
	CHECK_MSG(av_decode_frames(vo, 2, 8, 8, out, why, sizeof why) == 0, "%s", why);
	free(out);
	free(ao);
	free(vo);
	tmp_clean();
}

static void test_bad_arguments(void)
{
	tmp_make("mke-av");
	char *p = tpath("x.mp4"), why[256];
	float a[4] = {0};
	unsigned char v[6 * 6 * 3] = {0};
	CHECK(av_write_mp4(p, a, 4, 16000, v, 1, 5, 6, 10, why, sizeof why) == -1);   /* odd H */
	CHECK(strstr(why, "even") != NULL);
	CHECK(av_write_mp4(p, a, 0, 16000, v, 0, 6, 6, 10, why, sizeof why) == -1);   /* nothing */
	CHECK(av_write_mp4(p, a, 4, 0, v, 0, 6, 6, 10, why, sizeof why) == -1);       /* rate 0 */
	struct stat st;
	CHECK(stat(p, &st) != 0);   /* no file left behind */
	float out[3];
	CHECK(av_decode_frames(p, 0, 1, 1, out, why, sizeof why) == -1);
	free(p);
	tmp_clean();
}

int main(void)
{
	RUN(test_audio_roundtrip);
	RUN(test_frames_roundtrip);
	RUN(test_deterministic);
	RUN(test_truncated_and_corrupt);
	RUN(test_mkv_and_faststart);
	RUN(test_missing_streams);
	RUN(test_bad_arguments);
	return test_summary();
}
