/*
 * av.h - audio tracks and video frames of container files (MP4, M4A, MKV,
 * WebM, ...: whatever libavformat opens) through FFmpeg's libraries, and the
 * MP4 writer the generators use (docs/media.md "FFmpeg").
 *
 * VGGSound ships its clips as MP4 (H.264 video + AAC audio); these functions
 * let a manifest cell name the MP4 for both the audio and the frames column
 * instead of needing `ffmpeg -i X.mp4 -ac 1 -ar 16000 X.wav` and a frame
 * folder per clip.
 *
 * Errors: every function returns 0, or -1 with a lower-case reason naming
 * the file in why (nwhy bytes, always NUL-terminated; FFmpeg's own message
 * is appended where it has one). When why is NULL the reason is reported
 * with mke_error() instead. Nothing is printed by FFmpeg itself (its log is
 * captured for the reason). A missing, truncated or corrupt file, a file
 * without the stream asked for, or a packet that does not decode is an
 * error, never a crash or a silently short result.
 *
 * Decoders use one thread (a worker rank is one thread, docs/operations.md).
 */
#ifndef MKE_AV_H
#define MKE_AV_H

#include <stddef.h>

/* Mono float samples of the first audio stream, resampled to rate Hz
 * (libswresample, its default filter: what `ffmpeg -ar RATE` does; rate 0
 * keeps the stream's rate). Channels are averaged, as media.c's audio_load
 * does. *samples gets
 * *n floats, owned by the caller (free()); NULL on error. */
int av_decode_audio(const char *path, int rate, float **samples, size_t *n, char *why,
		    size_t nwhy);

/* F frames sampled uniformly over the first video stream, each converted to
 * RGB and resized to H x W (libswscale, bilinear), into out: (F,3,H,W)
 * floats in [0, 1] (sample / 255, as the image kind of media.c), plane-major
 * per frame. Frame i of F is frame floor((i + 0.5) * N / F) when the stream
 * says it has N frames, else the frame shown at time (i + 0.5) * duration /
 * F from the stream's start; when the stream ends early, the remaining
 * slots repeat its last frame. out is the caller's, F*3*H*W floats. */
int av_decode_frames(const char *path, int F, int H, int W, float *out, char *why,
		     size_t nwhy);

/* Write an MP4 at path: nsamples mono float samples (in [-1, 1]) at rate Hz
 * as AAC (libmp3lame's MP3 when the aac encoder is missing), and nframes
 * RGB frames at fps as H.264 (libx264, CRF 18) or else MPEG-4 part 2
 * (mpeg4, qscale 2), yuv420p. rgb_frames is (nframes,H,W,3) bytes,
 * interleaved RGB: frame f's pixel (y,x) channel c is at
 * ((f*H + y)*W + x)*3 + c. H and W must be even. nsamples 0 writes no audio
 * stream, nframes 0 no video stream (one of them must be > 0). Written with
 * the bitexact flags and one thread, so the same input gives the same bytes
 * with the same FFmpeg build. The file is written in place (not atomic). */
int av_write_mp4(const char *path, const float *audio, size_t nsamples, int rate,
		 const unsigned char *rgb_frames, int nframes, int H, int W, int fps, char *why,
		 size_t nwhy);

#endif
