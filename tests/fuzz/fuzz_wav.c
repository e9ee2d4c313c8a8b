/*
 * fuzz_wav.c - audio_load() (common/media.h) on arbitrary bytes: the WAV
 * header (RIFF chunks, fmt, PCM/float/extensible/mu-law/A-law layouts) as
 * libsndfile reads it, and everything after it in media.c: the frame count
 * and its limit, the chunked read, the channel mix, the truncation and
 * non-finite checks and the resampling to 16 kHz (libsamplerate). libsndfile
 * finds the format from the bytes, so its other formats are reached too.
 *
 * audio_load takes a path: each input goes through fuzz_path() (an
 * in-memory file). libsndfile itself is not instrumented (Debian's build),
 * so coverage counts media.c only; ASan still sees every buffer media.c
 * hands to it.
 */
#include <stdlib.h>

#include "fuzz_common.h"
#include "media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_path(data, size);
	float *x;
	size_t n;
	int file_rate;
	if (audio_load(path, 16000, &x, &n, &file_rate) == 0) {
		float out[64];
		if (n > 0)
			audio_fit(x, n, out, 64);   /* every sample handed out is readable */
		volatile float sink = 0;
		for (size_t i = 0; i < n; i++)
			sink += x[i];
		(void)sink;
		free(x);
	}
	return 0;
}
