/*
 * av.c - FFmpeg decoding of audio tracks and video frames, and the MP4
 * writer of the generators (av.h, docs/media.md "FFmpeg").
 *
 * libavformat demuxes (file protocol only: a manifest cell cannot name
 * "concat:", "http:" or other FFmpeg protocols), libavcodec decodes with
 * one thread, libswresample resamples and mixes audio to mono, libswscale
 * converts frames to RGB24 and resizes them. One read loop (decode_stream)
 * serves both decoders; it stops at the first demuxer or decoder error,
 * which is how truncated and corrupt files become errors. FFmpeg's log is
 * redirected once per process into a thread-local "last error" line that
 * the reason in `why` quotes, so FFmpeg prints nothing itself.
 */
#include "av.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libavutil/parseutils.h>
#include <libavutil/pixdesc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>

#include "media.h"
#include "util.h"

/* Longest decoded audio accepted, in samples (about 4.6 h at 16 kHz): a
 * corrupt or hostile file cannot make the decoder allocate more than 1 GiB. */
#define AV_MAX_SAMPLES ((size_t)1 << 28)

/* ---- errors -------------------------------------------------------------------- */

static _Thread_local char av_last_log[256];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_capture(void *avcl, int level, const char *fmt, va_list vl)
{
	(void)avcl;
	if (level > AV_LOG_ERROR)
		return;
	vsnprintf(av_last_log, sizeof av_last_log, fmt, vl);
	size_t n = strlen(av_last_log);
	while (n && (av_last_log[n - 1] == '\n' || av_last_log[n - 1] == ' '))
		av_last_log[--n] = '\0';
}

static void log_setup(void)
{
	av_log_set_callback(log_capture);
}

/* Start of every public call: FFmpeg's log captured, nothing left from an
 * earlier call. */
static void av_begin(char *why, size_t nwhy)
{
	pthread_once(&log_once, log_setup);
	av_last_log[0] = '\0';
	if (why && nwhy)
		why[0] = '\0';
}

/* Put the reason in why (or report it when why is NULL): the formatted
 * message, FFmpeg's error string for averr (when < 0), and FFmpeg's last
 * logged error line. Returns -1. */
static int MKE_PRINTF(4, 5) fail(char *why, size_t nwhy, int averr, const char *fmt, ...)
{
	char msg[768], e[AV_ERROR_MAX_STRING_SIZE] = "";
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t n = k < 0 ? 0 : (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1;
	if (averr < 0) {
		av_strerror(averr, e, sizeof e);
		n += (size_t)snprintf(msg + n, sizeof msg - n, ": %s", e);
		if (n >= sizeof msg)
			n = sizeof msg - 1;
	}
	if (av_last_log[0] && strcmp(av_last_log, e) != 0)
		snprintf(msg + n, sizeof msg - n, " (%s)", av_last_log);
	if (why && nwhy)
		snprintf(why, nwhy, "%s", msg);
	else if (!why)
		mke_error("%s", msg);
	return -1;
}

/* ---- reading ------------------------------------------------------------------- */

/* Open path with the file protocol only and read its stream info. */
static int open_input(const char *path, AVFormatContext **fc, char *why, size_t nwhy)
{
	*fc = NULL;
	AVDictionary *opt = NULL;
	av_dict_set(&opt, "protocol_whitelist", "file", 0);
	int e = avformat_open_input(fc, path, NULL, &opt);
	av_dict_free(&opt);
	if (e < 0)
		return fail(why, nwhy, e, "cannot open '%s'", path);
	e = avformat_find_stream_info(*fc, NULL);
	if (e < 0) {
		avformat_close_input(fc);
		return fail(why, nwhy, e, "cannot read the streams of '%s'", path);
	}
	/* a file cut short: its index (MP4 sample table, Matroska cues) points
	 * past the end. The demuxer would read up to the cut and report EOF. */
	int64_t size = (*fc)->pb ? avio_size((*fc)->pb) : -1, end = 0;
	for (unsigned s = 0; s < (*fc)->nb_streams && size > 0; s++) {
		AVStream *st = (*fc)->streams[s];
		int ne = avformat_index_get_entries_count(st);
		for (int k = 0; k < ne; k++) {
			const AVIndexEntry *ie = avformat_index_get_entry(st, k);
			if (ie && ie->pos >= 0 && ie->pos + ie->size > end)
				end = ie->pos + ie->size;
		}
	}
	if (size > 0 && end > size) {
		avformat_close_input(fc);
		return fail(why, nwhy, 0, "'%s' is truncated: its index points at byte %lld of a "
			    "%lld-byte file", path, (long long)end, (long long)size);
	}
	return 0;
}

/* The first stream of type (a video stream that is cover art does not
 * count) and a one-thread decoder for it. */
static int open_decoder(AVFormatContext *fc, enum AVMediaType type, const char *path,
			int *idx, AVCodecContext **dc, char *why, size_t nwhy)
{
	const char *what = type == AVMEDIA_TYPE_AUDIO ? "audio" : "video";
	*dc = NULL;
	*idx = -1;
	for (unsigned s = 0; s < fc->nb_streams && *idx < 0; s++) {
		const AVStream *st = fc->streams[s];
		if (st->codecpar->codec_type == type &&
		    !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
			*idx = (int)s;
	}
	if (*idx < 0)
		return fail(why, nwhy, 0, "'%s' has no %s stream", path, what);
	AVStream *st = fc->streams[*idx];
	const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
	if (!codec)
		return fail(why, nwhy, 0, "'%s': no decoder for its %s codec '%s'", path, what,
			    avcodec_get_name(st->codecpar->codec_id));
	AVCodecContext *c = avcodec_alloc_context3(codec);
	if (!c)
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	int e = avcodec_parameters_to_context(c, st->codecpar);
	if (e >= 0) {
		c->thread_count = 1;
		c->pkt_timebase = st->time_base;
		e = avcodec_open2(c, codec, NULL);
	}
	if (e < 0) {
		avcodec_free_context(&c);
		return fail(why, nwhy, e, "cannot open the %s decoder '%s' for '%s'", what,
			    codec->name, path);
	}
	*dc = c;
	return 0;
}

/* The stream's own length in seconds from its first timestamp: the
 * container's per-stream duration, else the DURATION tag FFmpeg writes in
 * Matroska (the stream's end time, so its start is taken off); 0 when
 * unknown. */
static double stream_seconds(const AVStream *st)
{
	if (st->duration > 0)
		return st->duration * av_q2d(st->time_base);
	const AVDictionaryEntry *t = av_dict_get(st->metadata, "DURATION", NULL, 0);
	int64_t us;
	double start = st->start_time != AV_NOPTS_VALUE ? st->start_time * av_q2d(st->time_base)
							: 0;
	if (t && av_parse_time(&us, t->value, 1) == 0 && us / 1e6 > start)
		return us / 1e6 - start;
	return 0;
}

/* At the end of the file: a stream that stops well before its announced
 * duration (more than 0.5 s and 10% short) was cut short. This catches
 * Matroska files truncated where no index says so (cues at the end). */
static int check_length(AVFormatContext *fc, int idx, int64_t last_end, const char *path,
			char *why, size_t nwhy)
{
	const AVStream *st = fc->streams[idx];
	double want = stream_seconds(st);
	if (want <= 0 || last_end == AV_NOPTS_VALUE)
		return 0;
	int64_t start = st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
	double got = (last_end - start) * av_q2d(st->time_base);
	if (want - got > 0.5 && want - got > 0.1 * want)
		return fail(why, nwhy, 0, "'%s' is truncated: stream %d ends at %.2f s of %.2f s",
			    path, idx, got, want);
	return 0;
}

/* Called with each decoded frame: 0 to go on, 1 to stop (done), -1 on an
 * error already put in why. */
typedef int (*frame_fn)(void *ctx, AVFrame *fr);

/* Demux fc, decode the packets of stream idx with dc and hand every frame
 * to fn, flushing the decoder at the end of the file. A demuxer or decoder
 * error stops the loop and is the result. */
static int decode_stream(AVFormatContext *fc, int idx, AVCodecContext *dc, frame_fn fn,
			 void *ctx, const char *path, char *why, size_t nwhy)
{
	AVPacket *pkt = av_packet_alloc();
	AVFrame *fr = av_frame_alloc();
	if (!pkt || !fr) {
		av_packet_free(&pkt);
		av_frame_free(&fr);
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	}
	int rc = 0, eof = 0;
	int64_t last_end = AV_NOPTS_VALUE;   /* end of stream idx's latest packet */
	while (!rc && !eof) {
		int e = av_read_frame(fc, pkt);
		if (e == AVERROR_EOF) {
			eof = 1;
			if ((rc = check_length(fc, idx, last_end, path, why, nwhy)) != 0)
				break;
			e = avcodec_send_packet(dc, NULL);
		} else if (e < 0) {
			rc = fail(why, nwhy, e, "cannot read '%s' (truncated or corrupt?)", path);
			break;
		} else if (pkt->stream_index != idx) {
			av_packet_unref(pkt);
			continue;
		} else if (pkt->flags & AV_PKT_FLAG_CORRUPT) {
			rc = fail(why, nwhy, 0, "'%s': a corrupt or incomplete packet at byte %lld "
				  "(truncated?)", path, (long long)pkt->pos);
			break;
		} else {
			int64_t t = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
			if (t != AV_NOPTS_VALUE && (last_end == AV_NOPTS_VALUE ||
						    t + pkt->duration > last_end))
				last_end = t + pkt->duration;
			e = avcodec_send_packet(dc, pkt);
			av_packet_unref(pkt);
		}
		if (e < 0 && e != AVERROR_EOF) {
			rc = fail(why, nwhy, e, "cannot decode '%s'", path);
			break;
		}
		while (!rc) {
			e = avcodec_receive_frame(dc, fr);
			if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
				break;
			if (e < 0) {
				rc = fail(why, nwhy, e, "cannot decode '%s'", path);
				break;
			}
			rc = fn(ctx, fr);
			av_frame_unref(fr);
		}
	}
	av_packet_free(&pkt);
	av_frame_free(&fr);
	return rc < 0 ? -1 : 0;
}

/* ---- audio --------------------------------------------------------------------- */

struct audio_dec {
	const char *path;
	char *why;
	size_t nwhy;
	int rate;                 /* output rate; 0 until the first frame when asked to keep */
	SwrContext *swr;
	int in_fmt, in_rate, in_ch;   /* what swr was set up for */
	float *x;
	size_t n, cap;
};

/* Room for k more output samples. */
static int audio_reserve(struct audio_dec *a, size_t k)
{
	if (a->n + k > AV_MAX_SAMPLES)
		return fail(a->why, a->nwhy, 0, "'%s': audio longer than %zu samples", a->path,
			    AV_MAX_SAMPLES);
	if (a->n + k > a->cap) {
		size_t cap = a->cap ? a->cap : 16384;
		while (cap < a->n + k)
			cap *= 2;
		a->x = xrealloc(a->x, cap * sizeof *a->x);
		a->cap = cap;
	}
	return 0;
}

/* swr for the first frame's format: mono float at a->rate, every input
 * channel weighted 1/channels (the average, as media.c's audio_load). */
static int audio_swr_setup(struct audio_dec *a, const AVFrame *fr)
{
	int nch = fr->ch_layout.nb_channels;
	if (nch < 1 || nch > 64 || fr->sample_rate < 1)
		return fail(a->why, a->nwhy, 0, "'%s': audio with %d channels at %d Hz", a->path,
			    nch, fr->sample_rate);
	if (!a->rate)
		a->rate = fr->sample_rate;
	AVChannelLayout in = {0}, mono = AV_CHANNEL_LAYOUT_MONO;
	if (fr->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
		av_channel_layout_default(&in, nch);
	else if (av_channel_layout_copy(&in, &fr->ch_layout) < 0)
		return fail(a->why, a->nwhy, AVERROR(ENOMEM), "'%s'", a->path);
	int e = swr_alloc_set_opts2(&a->swr, &mono, AV_SAMPLE_FMT_FLT, a->rate, &in,
				    (enum AVSampleFormat)fr->format, fr->sample_rate, 0, NULL);
	av_channel_layout_uninit(&in);
	double m[64];
	for (int k = 0; k < nch; k++)
		m[k] = 1.0 / nch;
	if (e >= 0)
		e = swr_set_matrix(a->swr, m, nch);
	if (e >= 0)
		e = swr_init(a->swr);
	if (e < 0)
		return fail(a->why, a->nwhy, e, "'%s': cannot set up resampling from %d Hz, %d "
			    "channels to %d Hz mono", a->path, fr->sample_rate, nch, a->rate);
	a->in_fmt = fr->format;
	a->in_rate = fr->sample_rate;
	a->in_ch = nch;
	return 0;
}

static int audio_frame(void *ctx, AVFrame *fr)
{
	struct audio_dec *a = ctx;
	if (!a->swr) {
		if (audio_swr_setup(a, fr))
			return -1;
	} else if (fr->format != a->in_fmt || fr->sample_rate != a->in_rate ||
		   fr->ch_layout.nb_channels != a->in_ch) {
		return fail(a->why, a->nwhy, 0, "'%s': the audio format changes mid-stream "
			    "(%d Hz, %d channels, then %d Hz, %d channels)", a->path, a->in_rate,
			    a->in_ch, fr->sample_rate, fr->ch_layout.nb_channels);
	}
	int want = swr_get_out_samples(a->swr, fr->nb_samples);
	if (want < 0 || audio_reserve(a, (size_t)want))
		return want < 0 ? fail(a->why, a->nwhy, want, "'%s': resampling", a->path) : -1;
	uint8_t *o = (uint8_t *)(a->x + a->n);
	int got = swr_convert(a->swr, &o, want, (const uint8_t **)fr->extended_data,
			      fr->nb_samples);
	if (got < 0)
		return fail(a->why, a->nwhy, got, "'%s': resampling", a->path);
	a->n += (size_t)got;
	return 0;
}

/* What swr still holds at the end of the stream. */
static int audio_flush(struct audio_dec *a)
{
	for (;;) {
		int want = swr_get_out_samples(a->swr, 0);
		if (want <= 0)
			return 0;
		if (audio_reserve(a, (size_t)want))
			return -1;
		uint8_t *o = (uint8_t *)(a->x + a->n);
		int got = swr_convert(a->swr, &o, want, NULL, 0);
		if (got < 0)
			return fail(a->why, a->nwhy, got, "'%s': resampling", a->path);
		if (got == 0)
			return 0;
		a->n += (size_t)got;
	}
}

int av_decode_audio(const char *path, int rate, float **samples, size_t *n, char *why,
		    size_t nwhy)
{
	av_begin(why, nwhy);
	*samples = NULL;
	*n = 0;
	if (rate < 0 || rate > 768000)
		return fail(why, nwhy, 0, "'%s': sample rate %d asked for (1..768000, or 0 to "
			    "keep the file's)", path, rate);
	AVFormatContext *fc;
	AVCodecContext *dc = NULL;
	int idx;
	if (open_input(path, &fc, why, nwhy))
		return -1;
	struct audio_dec a = {.path = path, .why = why, .nwhy = nwhy, .rate = rate};
	int rc = open_decoder(fc, AVMEDIA_TYPE_AUDIO, path, &idx, &dc, why, nwhy);
	if (!rc)
		rc = decode_stream(fc, idx, dc, audio_frame, &a, path, why, nwhy);
	if (!rc && a.swr)
		rc = audio_flush(&a);
	/* the encoder's padding after the last sample (AAC fills its last
	 * 1024-sample frame): cut to the stream's duration when the excess is
	 * small enough to be that, never pad */
	if (!rc && idx >= 0 && fc->streams[idx]->duration > 0) {
		const AVStream *st = fc->streams[idx];
		double secs = st->duration * av_q2d(st->time_base);
		size_t want = (size_t)llround(secs * a.rate);
		if (want > 0 && a.n > want && (double)(a.n - want) <= 0.25 * a.rate)
			a.n = want;
	}
	if (!rc && a.n == 0)
		rc = fail(why, nwhy, 0, "'%s': the audio stream has no samples", path);
	swr_free(&a.swr);
	avcodec_free_context(&dc);
	avformat_close_input(&fc);
	if (rc) {
		free(a.x);
		return -1;
	}
	*samples = xrealloc(a.x, a.n * sizeof *a.x);
	*n = a.n;
	return 0;
}

/* ---- video frames --------------------------------------------------------------- */

struct frames_dec {
	const char *path;
	char *why;
	size_t nwhy;
	int F, H, W;
	float *out;
	enum { BY_INDEX, BY_TIME, COUNT } mode;
	int64_t nframes;          /* BY_INDEX: the stream's frame count */
	double start, duration;   /* BY_TIME: seconds */
	AVRational tb, fps;
	int64_t count;            /* frames seen */
	int next;                 /* first slot not yet filled */
	AVFrame *prev;            /* the last frame seen (a reference) */
	int prev_slot;            /* slot holding prev converted, or -1 */
	struct SwsContext *sws;
	uint8_t *rgb;             /* H x W x 3 */
};

static int is_full_range(const AVFrame *fr)
{
	switch (fr->format) {
	case AV_PIX_FMT_YUVJ420P:
	case AV_PIX_FMT_YUVJ422P:
	case AV_PIX_FMT_YUVJ444P:
	case AV_PIX_FMT_YUVJ440P:
	case AV_PIX_FMT_YUVJ411P:
		return 1;
	default:
		return fr->color_range == AVCOL_RANGE_JPEG;
	}
}

/* Convert fr into slot j: RGB24 at H x W (bilinear), then / 255 into planes. */
static int frame_convert(struct frames_dec *d, const AVFrame *fr, int j)
{
	if (fr->width < 1 || fr->height < 1 ||
	    (int64_t)fr->width * fr->height > MEDIA_MAX_PIXELS)
		return fail(d->why, d->nwhy, 0, "'%s': a %dx%d video frame", d->path, fr->width,
			    fr->height);
	d->sws = sws_getCachedContext(d->sws, fr->width, fr->height,
				      (enum AVPixelFormat)fr->format, d->W, d->H,
				      AV_PIX_FMT_RGB24,
				      SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL,
				      NULL, NULL);
	if (!d->sws)
		return fail(d->why, d->nwhy, 0, "'%s': cannot convert %s frames to RGB", d->path,
			    av_get_pix_fmt_name((enum AVPixelFormat)fr->format));
	int cs = fr->colorspace == AVCOL_SPC_UNSPECIFIED || fr->colorspace == AVCOL_SPC_RGB
			 ? SWS_CS_DEFAULT : (int)fr->colorspace;
	/* only YUV sources take coefficients; for RGB sources this fails, harmlessly */
	sws_setColorspaceDetails(d->sws, sws_getCoefficients(cs), is_full_range(fr),
				 sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
	uint8_t *dst[4] = {d->rgb, NULL, NULL, NULL};
	int stride[4] = {3 * d->W, 0, 0, 0};
	int h = sws_scale(d->sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height,
			  dst, stride);
	if (h != d->H)
		return fail(d->why, d->nwhy, h < 0 ? h : 0, "'%s': frame conversion", d->path);
	size_t plane = (size_t)d->H * d->W;
	float *o = d->out + (size_t)j * 3 * plane, scale = 1.0f / 255.0f;
	for (size_t p = 0; p < plane; p++)
		for (int c = 0; c < 3; c++)
			o[(size_t)c * plane + p] = d->rgb[3 * p + (size_t)c] * scale;
	return 0;
}

/* Slot j gets the previous frame (converted once, copied after). */
static int fill_from_prev(struct frames_dec *d, int j)
{
	size_t sz = (size_t)3 * d->H * d->W;
	if (d->prev_slot >= 0) {
		memcpy(d->out + (size_t)j * sz, d->out + (size_t)d->prev_slot * sz,
		       sz * sizeof *d->out);
		return 0;
	}
	if (frame_convert(d, d->prev, j))
		return -1;
	d->prev_slot = j;
	return 0;
}

/* Presentation time of fr in seconds from the stream's start. */
static double frame_time(const struct frames_dec *d, const AVFrame *fr)
{
	int64_t ts = fr->best_effort_timestamp;
	if (ts == AV_NOPTS_VALUE)
		return d->fps.num > 0 && d->fps.den > 0 ? (double)d->count * av_q2d(av_inv_q(d->fps))
							: (double)d->count / 25.0;
	return ts * av_q2d(d->tb) - d->start;
}

static double slot_time(const struct frames_dec *d, int j)
{
	return (j + 0.5) * d->duration / d->F;
}

static int64_t slot_index(const struct frames_dec *d, int j)
{
	return (int64_t)floor((j + 0.5) * (double)d->nframes / d->F);
}

static int frames_frame(void *ctx, AVFrame *fr)
{
	struct frames_dec *d = ctx;
	if (d->mode == COUNT) {
		d->count++;
		return 0;
	}
	int rc = 0, first = -1;   /* the slot this frame was converted into */
	if (d->mode == BY_INDEX) {
		for (; d->next < d->F && slot_index(d, d->next) <= d->count; d->next++) {
			if (first < 0) {
				rc = frame_convert(d, fr, d->next);
				first = d->next;
			} else {
				memcpy(d->out + (size_t)d->next * 3 * d->H * d->W,
				       d->out + (size_t)first * 3 * d->H * d->W,
				       (size_t)3 * d->H * d->W * sizeof *d->out);
			}
			if (rc)
				return -1;
		}
	} else {
		/* slots whose time comes before this frame show the previous one
		 * (or this one, for times before the first frame) */
		double t = frame_time(d, fr);
		for (; d->next < d->F && slot_time(d, d->next) < t && !rc; d->next++)
			rc = d->count ? fill_from_prev(d, d->next) : frame_convert(d, fr, d->next);
		if (rc)
			return -1;
	}
	d->count++;
	av_frame_unref(d->prev);
	if (av_frame_ref(d->prev, fr) < 0)
		return fail(d->why, d->nwhy, AVERROR(ENOMEM), "'%s'", d->path);
	d->prev_slot = first;
	return d->next == d->F ? 1 : 0;
}

/* One pass over path's first video stream in mode d->mode. */
static int frames_pass(struct frames_dec *d)
{
	AVFormatContext *fc;
	AVCodecContext *dc = NULL;
	int idx;
	if (open_input(d->path, &fc, d->why, d->nwhy))
		return -1;
	int rc = open_decoder(fc, AVMEDIA_TYPE_VIDEO, d->path, &idx, &dc, d->why, d->nwhy);
	if (!rc && d->mode != COUNT) {
		const AVStream *st = fc->streams[idx];
		d->tb = st->time_base;
		d->fps = st->avg_frame_rate;
		d->start = st->start_time != AV_NOPTS_VALUE ? st->start_time * av_q2d(st->time_base)
							    : 0;
		d->duration = stream_seconds(st);
		if (d->duration <= 0 && fc->duration > 0)
			d->duration = fc->duration / (double)AV_TIME_BASE;
		if (d->mode == BY_INDEX && d->nframes <= 0) {
			if (st->nb_frames > 0)
				d->nframes = st->nb_frames;
			else if (d->duration > 0)
				d->mode = BY_TIME;
			else
				d->mode = COUNT;   /* neither known: count, then a second pass */
		}
	}
	d->count = 0;
	if (!rc)
		rc = decode_stream(fc, idx, dc, frames_frame, d, d->path, d->why, d->nwhy);
	avcodec_free_context(&dc);
	avformat_close_input(&fc);
	return rc;
}

int av_decode_frames(const char *path, int F, int H, int W, float *out, char *why,
		     size_t nwhy)
{
	av_begin(why, nwhy);
	if (F < 1 || H < 1 || W < 1 || (int64_t)H * W > MEDIA_MAX_PIXELS ||
	    (int64_t)F * H * W > MEDIA_MAX_PIXELS)
		return fail(why, nwhy, 0, "'%s': %d frames of %dx%d asked for", path, F, H, W);
	struct frames_dec d = {.path = path, .why = why, .nwhy = nwhy, .F = F, .H = H, .W = W,
			       .out = out, .mode = BY_INDEX, .prev_slot = -1};
	d.prev = av_frame_alloc();
	d.rgb = xmalloc((size_t)3 * H * W + 64);   /* + 64: SIMD stores may run over */
	if (!d.prev) {
		free(d.rgb);
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	}
	int rc = frames_pass(&d);
	if (!rc && d.mode == COUNT) {
		d.nframes = d.count;
		d.mode = BY_INDEX;
		if (d.count > 0)
			rc = frames_pass(&d);
	}
	if (!rc && d.count == 0)
		rc = fail(why, nwhy, 0, "'%s': the video stream has no frames", path);
	/* the stream ended before the last slots: they show its last frame */
	for (; !rc && d.next < F; d.next++)
		rc = fill_from_prev(&d, d.next);
	av_frame_free(&d.prev);
	sws_freeContext(d.sws);
	free(d.rgb);
	return rc ? -1 : 0;
}

/* ---- writing ------------------------------------------------------------------- */

struct enc {
	AVCodecContext *c;
	AVStream *st;
	AVFrame *fr;
};

static void enc_release(struct enc *e)
{
	avcodec_free_context(&e->c);
	av_frame_free(&e->fr);
}

/* Send fr (NULL: flush) to e's encoder and write what comes out. */
static int enc_send(AVFormatContext *oc, struct enc *e, AVFrame *fr, AVPacket *pkt,
		    const char *path, char *why, size_t nwhy)
{
	int r = avcodec_send_frame(e->c, fr);
	if (r < 0)
		return fail(why, nwhy, r, "cannot encode '%s' (%s)", path, e->c->codec->name);
	for (;;) {
		r = avcodec_receive_packet(e->c, pkt);
		if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
			return 0;
		if (r < 0)
			return fail(why, nwhy, r, "cannot encode '%s' (%s)", path, e->c->codec->name);
		/* a video packet lasts one frame; without the duration the MP4's
		 * edit list would end at the last frame's start and hide it */
		if (pkt->duration <= 0 && e->c->codec_type == AVMEDIA_TYPE_VIDEO)
			pkt->duration = 1;
		av_packet_rescale_ts(pkt, e->c->time_base, e->st->time_base);
		pkt->stream_index = e->st->index;
		r = av_interleaved_write_frame(oc, pkt);
		if (r < 0)
			return fail(why, nwhy, r, "cannot write '%s'", path);
	}
}

/* Open encoder codec on e with the fields set by the caller, and its stream. */
static int enc_open(AVFormatContext *oc, struct enc *e, const AVCodec *codec,
		    AVDictionary **opt, const char *path, char *why, size_t nwhy)
{
	if (oc->oformat->flags & AVFMT_GLOBALHEADER)
		e->c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
	e->c->flags |= AV_CODEC_FLAG_BITEXACT;
	e->c->thread_count = 1;
	int r = avcodec_open2(e->c, codec, opt);
	if (r < 0)
		return fail(why, nwhy, r, "cannot open the %s encoder for '%s'", codec->name, path);
	e->st = avformat_new_stream(oc, NULL);
	if (!e->st)
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	e->st->time_base = e->c->time_base;
	r = avcodec_parameters_from_context(e->st->codecpar, e->c);
	if (r < 0)
		return fail(why, nwhy, r, "'%s'", path);
	e->fr = av_frame_alloc();
	if (!e->fr)
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	return 0;
}

static int video_enc_open(AVFormatContext *oc, struct enc *e, int H, int W, int fps,
			  const char *path, char *why, size_t nwhy)
{
	const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
	int x264 = codec != NULL;
	if (!codec)
		codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
	if (!codec)
		return fail(why, nwhy, 0, "'%s': this FFmpeg has neither the libx264 nor the mpeg4 "
			    "encoder", path);
	e->c = avcodec_alloc_context3(codec);
	if (!e->c)
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	e->c->width = W;
	e->c->height = H;
	e->c->time_base = (AVRational){1, fps};
	e->c->framerate = (AVRational){fps, 1};
	e->c->pix_fmt = AV_PIX_FMT_YUV420P;
	e->c->gop_size = fps;
	/* what libswscale's RGB -> YUV writes by default: BT.601, limited range */
	e->c->colorspace = AVCOL_SPC_SMPTE170M;
	e->c->color_range = AVCOL_RANGE_MPEG;
	AVDictionary *opt = NULL;
	if (x264) {
		av_dict_set(&opt, "crf", "18", 0);
		av_dict_set(&opt, "preset", "fast", 0);
	} else {
		e->c->flags |= AV_CODEC_FLAG_QSCALE;
		e->c->global_quality = FF_QP2LAMBDA * 2;
	}
	int rc = enc_open(oc, e, codec, &opt, path, why, nwhy);
	av_dict_free(&opt);
	if (rc)
		return -1;
	e->fr->format = AV_PIX_FMT_YUV420P;
	e->fr->width = W;
	e->fr->height = H;
	int r = av_frame_get_buffer(e->fr, 0);
	return r < 0 ? fail(why, nwhy, r, "'%s'", path) : 0;
}

static int audio_enc_open(AVFormatContext *oc, struct enc *e, int rate, const char *path,
			  char *why, size_t nwhy)
{
	const AVCodec *codec = avcodec_find_encoder_by_name("aac");
	if (!codec)
		codec = avcodec_find_encoder_by_name("libmp3lame");
	if (!codec)
		return fail(why, nwhy, 0, "'%s': this FFmpeg has neither the aac nor the "
			    "libmp3lame encoder", path);
	int ok = !codec->sample_fmts;
	for (const enum AVSampleFormat *f = codec->sample_fmts; f && *f != AV_SAMPLE_FMT_NONE; f++)
		ok |= *f == AV_SAMPLE_FMT_FLTP;
	int rate_ok = !codec->supported_samplerates;
	for (const int *r = codec->supported_samplerates; r && *r; r++)
		rate_ok |= *r == rate;
	if (!ok || !rate_ok)
		return fail(why, nwhy, 0, "'%s': the %s encoder does not take float samples at "
			    "%d Hz", path, codec->name, rate);
	e->c = avcodec_alloc_context3(codec);
	if (!e->c)
		return fail(why, nwhy, AVERROR(ENOMEM), "'%s'", path);
	e->c->sample_fmt = AV_SAMPLE_FMT_FLTP;
	e->c->sample_rate = rate;
	e->c->bit_rate = 96000;
	e->c->time_base = (AVRational){1, rate};
	AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
	if (av_channel_layout_copy(&e->c->ch_layout, &mono) < 0 ||
	    enc_open(oc, e, codec, NULL, path, why, nwhy))
		return -1;
	e->fr->format = AV_SAMPLE_FMT_FLTP;
	e->fr->sample_rate = rate;
	e->fr->nb_samples = e->c->frame_size > 0 ? e->c->frame_size : 1024;
	int r = av_channel_layout_copy(&e->fr->ch_layout, &mono);
	if (r >= 0)
		r = av_frame_get_buffer(e->fr, 0);
	return r < 0 ? fail(why, nwhy, r, "'%s'", path) : 0;
}

/* The next audio frame from audio[*pos], zero-padded at the end when the
 * encoder cannot take a short last frame. */
static void audio_fill(struct enc *e, const float *audio, size_t nsamples, size_t *pos)
{
	int cap = e->c->frame_size > 0 ? e->c->frame_size : 1024;
	size_t k = nsamples - *pos < (size_t)cap ? nsamples - *pos : (size_t)cap;
	int small = (e->c->codec->capabilities & (AV_CODEC_CAP_SMALL_LAST_FRAME |
						  AV_CODEC_CAP_VARIABLE_FRAME_SIZE)) != 0;
	float *o = (float *)e->fr->data[0];
	for (size_t i = 0; i < k; i++) {
		float v = audio[*pos + i];
		o[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v == v ? v : 0.0f;
	}
	if (!small)
		for (int i = (int)k; i < cap; i++)
			o[i] = 0.0f;
	e->fr->nb_samples = small ? (int)k : cap;
	e->fr->pts = (int64_t)*pos;
	*pos += k;
}

int av_write_mp4(const char *path, const float *audio, size_t nsamples, int rate,
		 const unsigned char *rgb_frames, int nframes, int H, int W, int fps, char *why,
		 size_t nwhy)
{
	av_begin(why, nwhy);
	if (nframes < 0 || (nsamples == 0 && nframes == 0))
		return fail(why, nwhy, 0, "'%s': nothing to write (%zu samples, %d frames)", path,
			    nsamples, nframes);
	if (nsamples && (rate < 1 || rate > 768000 || !audio))
		return fail(why, nwhy, 0, "'%s': audio at %d Hz", path, rate);
	if (nframes && (H < 2 || W < 2 || H % 2 || W % 2 || (int64_t)H * W > MEDIA_MAX_PIXELS ||
			fps < 1 || fps > 1000 || !rgb_frames))
		return fail(why, nwhy, 0, "'%s': %d frames of %dx%d at %d fps (H and W must be "
			    "even)", path, nframes, H, W, fps);
	AVFormatContext *oc = NULL;
	struct enc v = {0}, a = {0};
	struct SwsContext *sws = NULL;
	AVPacket *pkt = av_packet_alloc();
	int r = avformat_alloc_output_context2(&oc, NULL, "mp4", path);
	int rc = r < 0 || !pkt ? fail(why, nwhy, r < 0 ? r : AVERROR(ENOMEM),
				      "cannot write '%s'", path) : 0;
	if (!rc) {
		oc->flags |= AVFMT_FLAG_BITEXACT;
		if (nframes)
			rc = video_enc_open(oc, &v, H, W, fps, path, why, nwhy);
		if (!rc && nsamples)
			rc = audio_enc_open(oc, &a, rate, path, why, nwhy);
	}
	uint8_t *padded = nframes ? xcalloc((size_t)H * W * 3 + 64, 1) : NULL;
	if (!rc && nframes) {
		sws = sws_getContext(W, H, AV_PIX_FMT_RGB24, W, H, AV_PIX_FMT_YUV420P,
				     SWS_BILINEAR | SWS_ACCURATE_RND, NULL, NULL, NULL);
		if (!sws)
			rc = fail(why, nwhy, 0, "'%s': cannot convert RGB to YUV", path);
	}
	int opened = 0;
	if (!rc) {
		r = avio_open(&oc->pb, path, AVIO_FLAG_WRITE);
		opened = r >= 0;
		rc = r < 0 ? fail(why, nwhy, r, "cannot create '%s'", path) : 0;
	}
	if (!rc && (r = avformat_write_header(oc, NULL)) < 0)
		rc = fail(why, nwhy, r, "cannot write the header of '%s'", path);
	/* interleave: whichever stream's next frame starts first */
	int f = 0;
	size_t pos = 0;
	while (!rc && (f < nframes || pos < nsamples)) {
		int video = f < nframes &&
			    (pos >= nsamples || av_compare_ts(f, v.c->time_base, (int64_t)pos,
							      a.c->time_base) <= 0);
		if (video) {
			r = av_frame_make_writable(v.fr);
			if (r < 0) {
				rc = fail(why, nwhy, r, "'%s'", path);
				break;
			}
			/* libswscale's SIMD reads run a few bytes past the last row:
			 * give it a padded copy, not the caller's buffer */
			memcpy(padded, rgb_frames + (size_t)f * H * W * 3, (size_t)H * W * 3);
			const uint8_t *src[4] = {padded, NULL, NULL, NULL};
			int stride[4] = {3 * W, 0, 0, 0};
			sws_scale(sws, src, stride, 0, H, v.fr->data, v.fr->linesize);
			v.fr->pts = f++;
			rc = enc_send(oc, &v, v.fr, pkt, path, why, nwhy);
		} else {
			r = av_frame_make_writable(a.fr);
			if (r < 0) {
				rc = fail(why, nwhy, r, "'%s'", path);
				break;
			}
			audio_fill(&a, audio, nsamples, &pos);
			rc = enc_send(oc, &a, a.fr, pkt, path, why, nwhy);
		}
	}
	if (!rc && nframes)
		rc = enc_send(oc, &v, NULL, pkt, path, why, nwhy);
	if (!rc && nsamples)
		rc = enc_send(oc, &a, NULL, pkt, path, why, nwhy);
	if (!rc && (r = av_write_trailer(oc)) < 0)
		rc = fail(why, nwhy, r, "cannot finish '%s'", path);
	if (opened && (r = avio_closep(&oc->pb)) < 0 && !rc)
		rc = fail(why, nwhy, r, "cannot close '%s'", path);
	if (rc && opened)
		unlink(path);
	sws_freeContext(sws);
	free(padded);
	enc_release(&v);
	enc_release(&a);
	av_packet_free(&pkt);
	avformat_free_context(oc);
	return rc;
}
