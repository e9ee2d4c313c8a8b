/* test_rng.c - Philox known-answer vectors and the distributions. */
#include <math.h>
#include <string.h>

#include "rng.h"
#include "test.h"

/* Known-answer tests from the Random123 distribution (kat_vectors). */
static void test_philox_kat(void)
{
	uint32_t out[4];
	const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
	philox4x32(c0, k0, out);
	CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu &&
	      out[3] == 0x9b00dbd8u);
	const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
	const uint32_t k1[2] = {0xffffffffu, 0xffffffffu};
	philox4x32(c1, k1, out);
	CHECK(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u &&
	      out[3] == 0x6d5451fdu);
	const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
	const uint32_t k2[2] = {0xa4093822u, 0x299f31d0u};
	philox4x32(c2, k2, out);
	CHECK(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u &&
	      out[3] == 0x24126ea1u);
}

/* A draw depends only on (seed, purpose, epoch, sample, index). */
static void test_streams_are_functions(void)
{
	struct rng a, b;
	rng_init(&a, 42, RNG_DROPOUT, 3, 17);
	for (int i = 0; i < 5; i++)
		rng_u32(&a);
	uint32_t x = rng_u32(&a);
	rng_init(&b, 42, RNG_DROPOUT, 3, 17);
	for (int i = 0; i < 5; i++)
		rng_u32(&b);
	CHECK(rng_u32(&b) == x);
	rng_init(&b, 42, RNG_DROPOUT, 3, 18);
	for (int i = 0; i < 5; i++)
		rng_u32(&b);
	CHECK(rng_u32(&b) != x);
	rng_init(&b, 43, RNG_DROPOUT, 3, 17);
	for (int i = 0; i < 5; i++)
		rng_u32(&b);
	CHECK(rng_u32(&b) != x);
}

static void test_normal_moments(void)
{
	struct rng r;
	rng_init(&r, 7, RNG_INPUT_NOISE, 0, 0);
	enum { N = 200000 };
	static float v[N];
	rng_fill_normal(&r, v, N);
	double s = 0, s2 = 0, s4 = 0;
	for (int i = 0; i < N; i++) {
		s += v[i];
		s2 += (double)v[i] * v[i];
		s4 += (double)v[i] * v[i] * v[i] * v[i];
	}
	double mean = s / N, var = s2 / N - mean * mean;
	CHECK_NEAR(mean, 0.0, 0.01);
	CHECK_NEAR(var, 1.0, 0.02);
	CHECK_NEAR(s4 / N, 3.0, 0.1); /* kurtosis of a Gaussian */
	struct rng q;
	rng_init(&q, 7, RNG_INPUT_NOISE, 0, 0);
	CHECK(rng_normal(&q) == v[0] && rng_normal(&q) == v[1]);
}

static void test_uniform_and_below(void)
{
	struct rng r;
	rng_init(&r, 1, RNG_SHUFFLE, 0, 0);
	int hist[10];
	memset(hist, 0, sizeof hist);
	double s = 0;
	for (int i = 0; i < 100000; i++) {
		float u = rng_uniform(&r);
		CHECK(u >= 0.0f && u < 1.0f);
		s += u;
		hist[rng_below(&r, 10)]++;
	}
	CHECK_NEAR(s / 100000, 0.5, 0.01);
	for (int i = 0; i < 10; i++)
		CHECK_NEAR(hist[i], 10000, 500);
}

/* rng_normal is Box-Muller of two consecutive words with approximate
 * log/sin/cos: within a few float ulps of the exact transform. */
static void test_normal_accuracy(void)
{
	uint32_t ctr[4] = { 0, RNG_HIDDEN_NOISE, 9, 77 }, key[2] = { 123, 0 }, w[4];
	struct rng r;
	rng_init(&r, 123, RNG_HIDDEN_NOISE, 9, 77);
	double worst = 0;
	for (uint32_t blk = 0; blk < 20000; blk++) {
		ctr[0] = blk;
		philox4x32(ctr, key, w);
		for (int p = 0; p < 2; p++) {
			double u1 = ((w[2 * p] >> 8) + 1.0) / 16777216.0;
			double u2 = (w[2 * p + 1] >> 8) / 16777216.0;
			double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
			double c = rad * cos(th), s = rad * sin(th);
			double gc = rng_normal(&r), gs = rng_normal(&r);
			worst = fmax(worst, fabs(gc - c) / (1.0 + fabs(c)));
			worst = fmax(worst, fabs(gs - s) / (1.0 + fabs(s)));
		}
	}
	CHECK_MSG(worst < 2e-6, "worst relative error %.3g", worst);
}

/* The bulk draws are the scalar stream's values, in both layouts, at any
 * offset, for batches that are and are not multiples of 8. */
static void test_batch_matches_scalar(void)
{
	enum { B = 19, C = 11 };
	uint32_t ids[B];
	for (int b = 0; b < B; b++)
		ids[b] = 40000 + 17 * (uint32_t)b;
	float fm[C * 24], rm[B * C];
	for (int normal = 0; normal < 2; normal++)
		for (uint64_t off = 0; off < 6; off++) {
			if (normal) {
				rng_normal_batch(fm, 24, 1, B, C, 5, RNG_INPUT_NOISE, 2, ids, off);
				rng_normal_batch(rm, 1, C, B, C, 5, RNG_INPUT_NOISE, 2, ids, off);
			} else {
				rng_uniform_batch(fm, 24, 1, B, C, 5, RNG_DROPOUT, 2, ids, off);
				rng_uniform_batch(rm, 1, C, B, C, 5, RNG_DROPOUT, 2, ids, off);
			}
			for (int b = 0; b < B; b++) {
				struct rng r;
				rng_init(&r, 5, normal ? RNG_INPUT_NOISE : RNG_DROPOUT, 2, ids[b]);
				for (uint64_t i = 0; i < off; i++)
					(void)(normal ? rng_normal(&r) : rng_uniform(&r));
				for (int c = 0; c < C; c++) {
					float v = normal ? rng_normal(&r) : rng_uniform(&r);
					CHECK(fm[c * 24 + b] == v);
					CHECK(rm[b * C + c] == v);
				}
			}
		}
	/* the 16-bit uniforms: halves of the words, low first */
	for (uint64_t off = 0; off < 10; off++) {
		rng_uniform16_batch(fm, 24, 1, B, C, 5, RNG_DROPOUT, 2, ids, off);
		rng_uniform16_batch(rm, 1, C, B, C, 5, RNG_DROPOUT, 2, ids, off);
		for (int b = 0; b < B; b++) {
			struct rng r;
			rng_init(&r, 5, RNG_DROPOUT, 2, ids[b]);
			uint32_t w = 0;
			for (uint64_t i = 0; i < off + C; i++) {
				if (i % 2 == 0)
					w = rng_u32(&r);
				float v = (float)(i % 2 ? w >> 16 : w & 0xffffu) / 65536.0f;
				if (i >= off) {
					CHECK(fm[(i - off) * 24 + b] == v);
					CHECK(rm[b * C + (i - off)] == v);
				}
			}
		}
	}
	/* ids NULL means row index */
	float a[3 * 8], z[3 * 8];
	uint32_t rows[3] = { 0, 1, 2 };
	rng_normal_batch(a, 1, 8, 3, 8, 1, RNG_HIDDEN_NOISE, 0, NULL, 0);
	rng_normal_batch(z, 1, 8, 3, 8, 1, RNG_HIDDEN_NOISE, 0, rows, 0);
	CHECK(memcmp(a, z, sizeof a) == 0);
}

/* The fused feature-major draws are the bulk draws followed by their pass:
 * the same values at any offset, zeros in the padding columns. */
static void test_fused_fm(void)
{
	enum { B = 19, C = 11, S = 24 };
	uint32_t ids[B];
	for (int b = 0; b < B; b++)
		ids[b] = 900 + 7 * (uint32_t)b;
	float in[C * S], ref[C * S], mk[C * S], out[C * S];
	for (int i = 0; i < C * S; i++)
		in[i] = (i % S) < B ? (float)(i % 13) - 6.0f : 0.0f;
	static const float ps[] = { 0.0f, 0.3f, 0.5f, 0.8f, 1.0f };
	for (uint64_t off = 0; off < 10; off++) {
		for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
			float p = ps[pi], keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
			memset(mk, 0xff, sizeof mk);
			memset(out, 0xff, sizeof out);
			rng_dropout_fm(mk, out, in, p, S, B, C, 5, RNG_DROPOUT, 2, ids, off);
			rng_uniform16_batch(ref, S, 1, B, C, 5, RNG_DROPOUT, 2, ids, off);
			for (int c = 0; c < C; c++)
				for (int b = 0; b < S; b++) {
					size_t at = (size_t)c * S + b;
					float k = b < B && !(ref[at] < p) ? keep : 0.0f;
					if (b >= B + 5) /* past the vector of the last samples: untouched */
						continue;
					CHECK(mk[at] == k);
					CHECK(out[at] == in[at] * k);
				}
		}
		float k = 0.75f, eps[C * S];
		memset(eps, 0xff, sizeof eps);
		rng_noise_fm(eps, out, in, k, S, B, C, 6, RNG_HIDDEN_NOISE, 3, ids, off);
		rng_normal_batch(ref, S, 1, B, C, 6, RNG_HIDDEN_NOISE, 3, ids, off);
		for (int c = 0; c < C; c++)
			for (int b = 0; b < B + 5; b++) {
				size_t at = (size_t)c * S + b;
				float e = b < B ? ref[at] : 0.0f;
				CHECK(eps[at] == e);
				CHECK(fabsf(out[at] - (in[at] + k * e)) <= 1e-6f * (1.0f + fabsf(out[at])));
			}
	}
}


/* A draw memo serves a model the noise it would draw (the same eps and out
 * bit for bit) from the block of an earlier, wider request; another seed or
 * other ids are drawn afresh. */
static void test_draw_memo(void)
{
	enum { B = 13, N = 16, CW = 6 };
	uint32_t ids[B], ids2[B];
	float in[CW * N], eps[CW * N], out[CW * N], eps2[CW * N], out2[CW * N];
	for (int b = 0; b < B; b++) {
		ids[b] = 100u + 7u * (uint32_t)b;
		ids2[b] = ids[b] + 1u;
	}
	for (int i = 0; i < CW * N; i++)
		in[i] = (i % N) < B ? 0.25f * (float)(i % 11) - 1.0f : 0.0f;
	struct draw_memo *dm = draw_memo_new(1 << 20);
	long hits, misses;
	/* the wide request (rows [0,6) of the stream) is drawn into a kept block */
	const float *e = rng_noise_fm_memo(dm, eps, out, in, 0.5f, N, B, CW, 9, RNG_HIDDEN_NOISE, 3,
					   ids, 0);
	CHECK(e != eps);
	float out0[CW * N];
	rng_noise_fm(eps, out0, in, 0.5f, N, B, CW, 9, RNG_HIDDEN_NOISE, 3, ids, 0);
	CHECK(memcmp(e, eps, sizeof eps) == 0 && memcmp(out, out0, sizeof out) == 0);
	/* rows [2,5) of it, for a narrower model: served, equal to a fresh draw */
	const float *e2 = rng_noise_fm_memo(dm, eps2, out2, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3,
					    ids, 2);
	CHECK(e2 != eps2);
	rng_noise_fm(eps2, out2 + 0, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids, 2);
	CHECK(memcmp(e2, eps2, sizeof(float) * 3 * N) == 0);
	float out3[CW * N], eps3[CW * N];
	rng_noise_fm_memo(dm, eps3, out3, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids, 2);
	CHECK(memcmp(out3, out2, sizeof(float) * 3 * N) == 0);
	draw_memo_counts(dm, &hits, &misses);
	CHECK(hits == 2 && misses == 1);
	/* another step, a range past the kept one: drawn */
	rng_noise_fm_memo(dm, eps2, out2, in, 1.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 4, ids, 2);
	rng_noise_fm_memo(dm, eps2, out2, in, 1.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids, 4);
	draw_memo_counts(dm, &hits, &misses);
	CHECK(hits == 2 && misses == 3);
	/* other ids, another seed: the memo empties and draws */
	float kept[3 * N];
	memcpy(kept, e2, sizeof kept);
	draw_memo_counts(dm, &hits, &misses);
	const float *e4 = rng_noise_fm_memo(dm, eps2, out2, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE,
					    3, ids2, 2);
	rng_noise_fm(eps3, out3, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids2, 2);
	CHECK(memcmp(e4, eps3, sizeof kept) == 0 && memcmp(e4, kept, sizeof kept) != 0);
	e4 = rng_noise_fm_memo(dm, eps2, out2, in, 2.0f, N, B, 3, 10, RNG_HIDDEN_NOISE, 3, ids2, 2);
	rng_noise_fm(eps3, out3, in, 2.0f, N, B, 3, 10, RNG_HIDDEN_NOISE, 3, ids2, 2);
	CHECK(memcmp(e4, eps3, sizeof kept) == 0);
	long h1, m1;
	draw_memo_counts(dm, &h1, &m1);
	CHECK(h1 == hits && m1 == misses + 2);
	/* a full memo draws into the caller's eps */
	struct draw_memo *tiny = draw_memo_new(16);
	CHECK(rng_noise_fm_memo(tiny, eps2, out2, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids,
				2) == eps2);
	CHECK(memcmp(eps2, kept, sizeof kept) == 0);
	draw_memo_free(tiny);
	/* a stride other than B rounded up to 8 is never kept */
	draw_memo_counts(dm, &hits, &misses);
	rng_noise_fm_memo(dm, eps, out, in, 1.0f, N + 8, B, 2, 10, RNG_HIDDEN_NOISE, 3, ids2, 0);
	long h2, m3;
	draw_memo_counts(dm, &h2, &m3);
	CHECK(h2 == hits && m3 == misses);
	draw_memo_free(dm);
	/* no memo: draws */
	CHECK(rng_noise_fm_memo(NULL, eps2, out2, in, 2.0f, N, B, 3, 9, RNG_HIDDEN_NOISE, 3, ids, 2) ==
	      eps2);
}

/* A draw memo serves dropout the mask and output rng_dropout_fm gives, bit
 * for bit, from the kept lanes of an earlier, wider request under the same
 * rate; another rate keeps other lanes and is drawn. */
static void test_dropout_memo(void)
{
	enum { B = 13, N = 16, CW = 6 };
	uint32_t ids[B];
	for (int b = 0; b < B; b++)
		ids[b] = 40u + 3u * (uint32_t)b;
	float in[CW * N], mask[CW * N], out[CW * N], mask2[CW * N], out2[CW * N];
	for (int i = 0; i < CW * N; i++)
		in[i] = (i % N) < B ? 0.5f * (float)(i % 9) - 2.0f : 0.0f;
	struct draw_memo *dm = draw_memo_new(1 << 20);
	long hits, misses;
	const float rates[] = { 0.5f, 0.8f, 0.3f };
	for (int q = 0; q < 3; q++) {
		float p = rates[q];
		/* the wide request: drawn and kept */
		rng_dropout_fm_memo(dm, mask, out, in, p, N, B, CW, 9, RNG_DROPOUT, 3, ids, 0);
		rng_dropout_fm(mask2, out2, in, p, N, B, CW, 9, RNG_DROPOUT, 3, ids, 0);
		CHECK(memcmp(mask, mask2, sizeof mask) == 0 && memcmp(out, out2, sizeof out) == 0);
		/* rows [2,5) of it, then all of it: served */
		for (int w = 0; w < 2; w++) {
			int off = w ? 0 : 2, C = w ? CW : 3;
			for (int i = 0; i < CW * N; i++)
				mask[i] = out[i] = -7.0f;
			rng_dropout_fm_memo(dm, mask, out, in + off * N, p, N, B, C, 9, RNG_DROPOUT, 3,
					    ids, (uint64_t)off);
			rng_dropout_fm(mask2, out2, in + off * N, p, N, B, C, 9, RNG_DROPOUT, 3, ids,
				       (uint64_t)off);
			CHECK(memcmp(mask, mask2, sizeof(float) * (size_t)(C * N)) == 0);
			CHECK(memcmp(out, out2, sizeof(float) * (size_t)(C * N)) == 0);
		}
		draw_memo_counts(dm, &hits, &misses);
		CHECK(hits == 2 * (q + 1) && misses == q + 1);
	}
	/* some lanes dropped and some kept at 0.5, the padding 0 */
	rng_dropout_fm_memo(dm, mask, out, in, 0.5f, N, B, CW, 9, RNG_DROPOUT, 3, ids, 0);
	int kept = 0;
	for (int i = 0; i < CW * N; i++) {
		kept += mask[i] != 0.0f;
		if (i % N >= B)
			CHECK(mask[i] == 0.0f && out[i] == 0.0f);
	}
	CHECK(kept > 10 && kept < CW * B - 10);
	/* another step, another purpose: drawn */
	rng_dropout_fm_memo(dm, mask, out, in, 0.5f, N, B, CW, 9, RNG_DROPOUT, 4, ids, 0);
	rng_dropout_fm_memo(dm, mask, out, in, 0.5f, N, B, CW, 9, RNG_HIDDEN_NOISE, 3, ids, 0);
	long h2, m2;
	draw_memo_counts(dm, &h2, &m2);
	CHECK(h2 == hits + 1 && m2 == misses + 2);
	draw_memo_free(dm);
}

int main(void)
{
	RUN(test_philox_kat);
	RUN(test_streams_are_functions);
	RUN(test_normal_moments);
	RUN(test_uniform_and_below);
	RUN(test_normal_accuracy);
	RUN(test_batch_matches_scalar);
	RUN(test_fused_fm);
	RUN(test_draw_memo);
	RUN(test_dropout_memo);
	return test_summary();
}
