/* test_rng.c - Philox known-answer vectors and the distributions. */
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

int main(void)
{
	RUN(test_philox_kat);
	RUN(test_streams_are_functions);
	RUN(test_normal_moments);
	RUN(test_uniform_and_below);
	return test_summary();
}
