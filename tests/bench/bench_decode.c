/*
 * bench_decode.c - decoding throughput and streaming, for tests/bench/run.sh.
 *
 *     bench_decode decode DIR REPEATS
 *         writes its inputs into DIR and prints, medians over REPEATS timings
 *         of the process's CPU time (one thread, so samples/s per core):
 *             decode wav <samples/s>      5 s WAV at 44.1 kHz -> 16 kHz log-spectrogram (257 x 500)
 *             decode wav16k <samples/s>   the same clip written at 16 kHz (no resampling)
 *             decode mp4 <samples/s>      the same clip as the AAC track of an .mp4 (common/av.h)
 *             decode rgbd <samples/s>     480 x 640 PNG RGB + 16-bit PNG depth, resized to
 *                                         240 x 320 as deploy/examples/nyuv2.json does
 *     bench_decode stream DIR ROWS PREFETCH CACHE_MB [mlp|cnn]
 *         a student (mm_student_sup: true labels, no pseudo-label files) over
 *         ROWS RGB-D pairs decoded lazily with a CACHE_MB cache, prefetch on
 *         (1) or off (0), 2 epochs of batches of 16; the student is an
 *         early-fusion MLP (mlp, the default: memory is the data's) or two
 *         conv3 branches (cnn: a step costs about what decoding its batch
 *         does, so prefetch has compute to overlap); prints
 *             stream <samples/s wall> <peak RSS MB> <decoded MB>
 *
 *     bench_decode inputs DIR ROWS
 *         only writes ROWS RGB-D pairs and DIR/rgbd.csv (for an `mke run`)
 *
 * Every sample goes through dataset_row(), the path training takes: a
 * dataset opened with a zero cache decodes each row each time it is read.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "av.h"
#include "experiment.h"
#include "importers.h"
#include "manifest.h"
#include "model.h"
#include "util.h"

#include "bench_time.h"

enum { NFILES = 8, H = 480, W = 640, RATE = 44100, SECONDS = 5 };

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void put_le(FILE *f, uint32_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		fputc((int)(v >> (8 * i)) & 0xff, f);
}

/* A 16-bit mono PCM WAV of x (n samples in [-1, 1]). */
static int wav_write(const char *path, const float *x, size_t n, int rate)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite("RIFF", 1, 4, f);
	put_le(f, (uint32_t)(36 + 2 * n), 4);
	fwrite("WAVEfmt ", 1, 8, f);
	put_le(f, 16, 4);
	put_le(f, 1, 2);
	put_le(f, 1, 2);
	put_le(f, (uint32_t)rate, 4);
	put_le(f, (uint32_t)rate * 2, 4);
	put_le(f, 2, 2);
	put_le(f, 16, 2);
	fwrite("data", 1, 4, f);
	put_le(f, (uint32_t)(2 * n), 4);
	for (size_t i = 0; i < n; i++)
		put_le(f, (uint32_t)(uint16_t)(int16_t)(x[i] * 32000), 2);
	return fclose(f);
}

static char *write_text(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

/* The inputs: naudio clips (wav and mp4), nrgbd RGB-D pairs, and their manifests. */
static int make_inputs(const char *dir, int naudio, int nrgbd)
{
	size_t n = (size_t)RATE * SECONDS;
	float *x = xmalloc(n * sizeof *x);
	unsigned char *rgb = xmalloc((size_t)H * W * 3);
	uint16_t *dep = xmalloc((size_t)H * W * sizeof *dep);
	char *csv_a = xstrdup("id,label,audio\n"), *csv_m = xstrdup("id,label,audio\n");
	char *csv_d = xstrdup("id,label,rgb,depth\n"), *csv_16 = xstrdup("id,label,audio\n");
	int rc = 0;
	for (int f = 0; f < naudio && rc == 0; f++) {
		for (size_t i = 0; i < n; i++)
			x[i] = 0.4f * sinf(0.02f * (float)(f + 1) * (float)i) +
			       0.1f * sinf(0.31f * (float)i);
		char *p = xasprintf("%s/clip%d.wav", dir, f), *q = xasprintf("%s/clip%d.mp4", dir, f);
		char why[512];
		char *p16 = xasprintf("%s/clip%d-16k.wav", dir, f);
		rc = wav_write(p16, x, (size_t)16000 * SECONDS, 16000) || wav_write(p, x, n, RATE) ||
		     av_write_mp4(q, x, n, RATE, NULL, 0, 0, 0, 0, why, sizeof why);
		if (rc)
			fprintf(stderr, "bench_decode: cannot write '%s' or '%s'\n", p, q);
		char *a = xasprintf("%sc%d,%d,clip%d.wav\n", csv_a, f, f % 2, f);
		char *m = xasprintf("%sc%d,%d,clip%d.mp4\n", csv_m, f, f % 2, f);
		free(csv_a);
		free(csv_m);
		csv_a = a;
		csv_m = m;
		char *a16 = xasprintf("%sc%d,%d,clip%d-16k.wav\n", csv_16, f, f % 2, f);
		free(csv_16);
		csv_16 = a16;
		free(p16);
		free(p);
		free(q);
	}
	for (int f = 0; f < nrgbd && rc == 0; f++) {
		for (int y = 0; y < H; y++)
			for (int i = 0; i < W; i++) {
				size_t at = (size_t)y * W + i;
				rgb[3 * at] = (unsigned char)(i + 7 * f);
				rgb[3 * at + 1] = (unsigned char)(y ^ i);
				rgb[3 * at + 2] = (unsigned char)(y * 3 + f);
				dep[at] = (uint16_t)(500 + 3 * y + i + 11 * f);
			}
		char *p = xasprintf("%s/rgb%d.png", dir, f), *q = xasprintf("%s/dep%d.png", dir, f);
		rc = png_write(p, W, H, 3, 8, rgb) || png_write(q, W, H, 1, 16, dep);
		char *d = xasprintf("%sp%d,%d,rgb%d.png,dep%d.png\n", csv_d, f, f % 2, f, f);
		free(csv_d);
		csv_d = d;
		free(p);
		free(q);
	}
	free(write_text(dir, "wav.csv", csv_a));
	free(write_text(dir, "mp4.csv", csv_m));
	free(write_text(dir, "rgbd.csv", csv_d));
	free(write_text(dir, "w16.csv", csv_16));
	free(csv_16);
	free(csv_a);
	free(csv_m);
	free(csv_d);
	free(x);
	free(rgb);
	free(dep);
	return rc;
}

static const char *const audio_cfg =
	"{\"name\": \"a\", \"data\": {\"labeled\": \"wav.csv\", \"classes\": 2, \"modalities\": "
	"{\"a\": {\"column\": \"audio\", \"kind\": \"audio\", \"sample_rate\": 16000, "
	"\"seconds\": 5}}}, \"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
	"\"teacher\": {\"model\": \"m\"}}";

/* The RGB-D config: the student is a small early-fusion MLP (cnn 0: its
 * memory is the data's, for the peak-RSS rows) or two conv3 branches [8,16,32]
 * (cnn 1: a step of about the decoding's cost, so prefetch has something to
 * overlap) */
static const char *rgbd_cfg(int prefetch, int cache_mb, int cnn)
{
	static char buf[1024];
	const char *mm = cnn ? "{\"inputs\": [\"a\", \"b\"], \"type\": \"cnn\", \"bn_micro\": 8, "
			       "\"branches\": {\"a\": {\"type\": \"conv3\", \"channels\": [8, 16, 32]}, "
			       "\"b\": {\"type\": \"conv3\", \"channels\": [8, 16, 32]}}}"
			     : "{\"inputs\": [\"a\", \"b\"], \"fusion\": \"early\", \"hidden\": [8]}";
	snprintf(buf, sizeof buf,
		 "{\"name\": \"d\", \"data\": {\"labeled\": \"rgbd.csv\", \"unlabeled\": \"rgbd.csv\", "
		 "\"test\": \"rgbd.csv\", \"classes\": 2, \"cache_mb\": %d, \"prefetch\": %s, "
		 "\"modalities\": {\"a\": {\"column\": \"rgb\", \"kind\": \"image\", \"height\": 240, "
		 "\"width\": 320, \"channels\": 3}, \"b\": {\"column\": \"depth\", \"kind\": \"depth\", "
		 "\"height\": 240, \"width\": 320}}}, \"models\": {\"t\": {\"inputs\": [\"a\"], "
		 "\"hidden\": []}, \"mm\": %s}, \"teacher\": {\"model\": \"t\"}, \"student\": {\"epochs\": 2, "
		 "\"batch_size\": 16, \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.001}}, "
		 "\"variants\": {\"mm_student_sup\": {\"model\": \"mm\"}}}",
		 cache_mb, prefetch ? "true" : "false", mm);
	return buf;
}

/* samples/s per core of reading every row of manifest (modalities nmod)
 * through a zero cache, median of repeats */
static double decode_rate(const char *dir, const char *json, const char *manifest, int nmod,
			  int repeats)
{
	char *cp = xasprintf("%s/cfg.json", dir), *mp = xasprintf("%s/%s", dir, manifest);
	struct run_config c;
	struct dataset d;
	double r = -1;
	if (config_parse(&c, json, cp) == 0) {
		if (dataset_open(&d, &c, mp, nmod, 0) == 0) {
			float *buf = xmalloc(sizeof(float) * (size_t)(d.dim[0] + (nmod > 1 ? d.dim[1] : 0)));
			double *t = xmalloc(sizeof(double) * (size_t)repeats);
			for (int k = 0; k < repeats; k++) {
				double t0 = cpu_now();
				for (int i = 0; i < d.n; i++)
					for (int m = 0; m < nmod; m++)
						dataset_row(&d, m, i, buf);
				t[k] = d.n / (cpu_now() - t0);
			}
			r = bench_median(t, repeats);
			free(t);
			free(buf);
			dataset_release(&d);
		}
		config_release(&c);
	}
	free(cp);
	free(mp);
	return r;
}


static int stream(const char *dir, int rows, int prefetch, int cache_mb, int cnn)
{
	if (make_inputs(dir, 0, rows) != 0)
		return 1;
	char *cp = xasprintf("%s/cfg.json", dir);
	struct run_config c;
	if (config_parse(&c, rgbd_cfg(prefetch, cache_mb, cnn), cp) != 0)
		return 1;
	free(cp);
	struct exp_data d;
	memset(&d, 0, sizeof d);
	if (dataset_load(&d.unlabeled, &c, c.unlabeled, 2) != 0)
		return 1;
	double decoded_mb = (double)d.unlabeled.n * (d.unlabeled.dim[0] + d.unlabeled.dim[1]) *
			    sizeof(float) / (1 << 20);
	struct model m;
	double t0 = wall_now();
	int rc = train_student(&m, &c, &d, &c.variants[0], c.variants[0].reg, 1, NULL, NULL);
	double dt = wall_now() - t0;
	struct dataset_stats st;
	dataset_stats(&d.unlabeled, &st);
	if (rc == 0)
		printf("stream %.2f %.1f %.1f %d\n", (double)c.variants[0].train.epochs * d.unlabeled.n / dt,
		       peak_rss_kb() / 1024.0, decoded_mb, st.lazy);
	model_release(&m);
	exp_data_release(&d);
	config_release(&c);
	return rc != 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "decode") == 0) {
		const char *dir = argv[2];
		int repeats = atoi(argv[3]) > 0 ? atoi(argv[3]) : 3;
		if (make_inputs(dir, NFILES, NFILES) != 0)
			return 1;
		printf("decode wav %.2f\n", decode_rate(dir, audio_cfg, "wav.csv", 1, repeats));
		printf("decode wav16k %.2f\n", decode_rate(dir, audio_cfg, "w16.csv", 1, repeats));
		char *mp4 = xstrdup(audio_cfg);
		memcpy(strstr(mp4, "wav.csv"), "mp4", 3);
		printf("decode mp4 %.2f\n", decode_rate(dir, mp4, "mp4.csv", 1, repeats));
		free(mp4);
		printf("decode rgbd %.2f\n", decode_rate(dir, rgbd_cfg(0, 1, 0), "rgbd.csv", 2, repeats));
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "inputs") == 0)
		return make_inputs(argv[2], 0, atoi(argv[3])) != 0;
	if ((argc == 6 || argc == 7) && strcmp(argv[1], "stream") == 0)
		return stream(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
			      argc == 7 && strcmp(argv[6], "cnn") == 0);
	fprintf(stderr, "usage: bench_decode decode DIR REPEATS | stream DIR ROWS PREFETCH CACHE_MB [mlp|cnn] | "
		"inputs DIR ROWS\n");
	return 2;
}
