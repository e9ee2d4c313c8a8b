/*
 * rng.c - Philox4x32-10 and the distributions mke draws from it.
 */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
	uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
	uint32_t k0 = key[0], k1 = key[1];
	for (int i = 0; i < 10; i++) {
		uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
		uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
		uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
		uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
		c0 = hi1 ^ c1 ^ k0;
		c1 = lo1;
		c2 = hi0 ^ c3 ^ k1;
		c3 = lo0;
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
	out[0] = c0;
	out[1] = c1;
	out[2] = c2;
	out[3] = c3;
}

void rng_init(struct rng *r, uint64_t seed, uint32_t purpose, uint32_t epoch, uint32_t sample)
{
	r->key[0] = (uint32_t)seed;
	r->key[1] = (uint32_t)(seed >> 32);
	r->ctr[0] = 0;
	r->ctr[1] = purpose;
	r->ctr[2] = epoch;
	r->ctr[3] = sample;
	r->left = 0;
	r->has_spare = 0;
	r->spare = 0.0f;
}

uint32_t rng_u32(struct rng *r)
{
	if (r->left == 0) {
		philox4x32(r->ctr, r->key, r->buf);
		r->ctr[0]++;
		r->left = 4;
	}
	return r->buf[4 - r->left--];
}

float rng_uniform(struct rng *r)
{
	return (float)(rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float rng_normal(struct rng *r)
{
	if (r->has_spare) {
		r->has_spare = 0;
		return r->spare;
	}
	/* u1 in (0,1] so log() is finite */
	float u1 = ((float)(rng_u32(r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
	float u2 = rng_uniform(r);
	float rad = sqrtf(-2.0f * logf(u1));
	float th = 6.283185307179586f * u2;
	r->spare = rad * sinf(th);
	r->has_spare = 1;
	return rad * cosf(th);
}

void rng_fill_normal(struct rng *r, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = rng_normal(r);
}

void rng_fill_uniform(struct rng *r, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = rng_uniform(r);
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
	/* Lemire's multiply-shift with rejection: unbiased */
	uint64_t m = (uint64_t)rng_u32(r) * n;
	uint32_t lo = (uint32_t)m;
	if (lo < n) {
		uint32_t t = (uint32_t)(-n) % n;
		while (lo < t) {
			m = (uint64_t)rng_u32(r) * n;
			lo = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}
