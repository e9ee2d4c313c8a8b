/*
 * rng.c - Philox4x32-10 and the distributions mke draws from it.
 *
 * The hot consumers (dropout masks and noise in nn.c) draw thousands of
 * values per step, one stream per sample. They go through the bulk
 * functions, which run eight samples' streams side by side: the Philox
 * rounds as 8-lane 32x32->64 multiplies and Box-Muller with polynomial
 * log/sin/cos, in AVX2 when the CPU has it (chosen at run time, so the
 * binary runs on any x86-64) and in plain C otherwise. The scalar API
 * (rng_normal) goes through the same Box-Muller routine, so a value does not
 * depend on which path drew it.
 */
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RNG_X86 1
#endif

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


/* ---- eight streams at once --------------------------------------------- */

/* w[i][j][l] = word j of Philox block (blk + i, purpose, epoch, ids[l]) for
 * i < nblk: eight streams, nblk consecutive blocks of each */
static void philox8_c(uint32_t blk, int nblk, uint32_t purpose, uint32_t epoch,
		      const uint32_t ids[8], const uint32_t key[2], uint32_t w[][4][8])
{
	for (int i = 0; i < nblk; i++)
		for (int l = 0; l < 8; l++) {
			uint32_t ctr[4] = { blk + (uint32_t)i, purpose, epoch, ids[l] }, o[4];
			philox4x32(ctr, key, o);
			for (int j = 0; j < 4; j++)
				w[i][j][l] = o[j];
		}
}

#ifdef RNG_X86
/* (lo, hi) 32-bit halves of the eight products m * c */
__attribute__((target("avx2"))) static inline void mulhilo8(__m256i c, __m256i m, __m256i *lo,
							     __m256i *hi)
{
	__m256i pe = _mm256_mul_epu32(c, m);
	__m256i po = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
	*lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
	*hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

/* One Philox round on two independent states (a, b): the multiplies of one
 * overlap the latency of the other's. */
#define PHILOX_ROUND2(a, b, k0v, k1v)                                               \
	do {                                                                        \
		__m256i lo0a, hi0a, lo1a, hi1a, lo0b, hi0b, lo1b, hi1b;                     \
		mulhilo8(a[0], m0, &lo0a, &hi0a);                                   \
		mulhilo8(b[0], m0, &lo0b, &hi0b);                                   \
		mulhilo8(a[2], m1, &lo1a, &hi1a);                                   \
		mulhilo8(b[2], m1, &lo1b, &hi1b);                                   \
		a[0] = _mm256_xor_si256(_mm256_xor_si256(hi1a, a[1]), k0v);          \
		b[0] = _mm256_xor_si256(_mm256_xor_si256(hi1b, b[1]), k0v);          \
		a[1] = lo1a;                                                        \
		b[1] = lo1b;                                                        \
		a[2] = _mm256_xor_si256(_mm256_xor_si256(hi0a, a[3]), k1v);          \
		b[2] = _mm256_xor_si256(_mm256_xor_si256(hi0b, b[3]), k1v);          \
		a[3] = lo0a;                                                        \
		b[3] = lo0b;                                                        \
	} while (0)

__attribute__((target("avx2"))) static void philox8_avx2(uint32_t blk, int nblk,
							 uint32_t purpose, uint32_t epoch,
							 const uint32_t ids[8],
							 const uint32_t key[2], uint32_t w[][4][8])
{
	const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
	const __m256i id = _mm256_loadu_si256((const __m256i *)ids);
	__m256i kk0[10], kk1[10];
	uint32_t k0 = key[0], k1 = key[1];
	for (int r = 0; r < 10; r++) {
		kk0[r] = _mm256_set1_epi32((int)k0);
		kk1[r] = _mm256_set1_epi32((int)k1);
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
	/* blocks in pairs; an odd last block runs beside a copy of itself */
	for (int i = 0; i < nblk; i += 2) {
		int i2 = i + 1 < nblk ? i + 1 : i;
		__m256i a[4], b[4];
		a[0] = _mm256_set1_epi32((int)(blk + (uint32_t)i));
		b[0] = _mm256_set1_epi32((int)(blk + (uint32_t)i2));
		a[1] = b[1] = _mm256_set1_epi32((int)purpose);
		a[2] = b[2] = _mm256_set1_epi32((int)epoch);
		a[3] = b[3] = id;
		for (int r = 0; r < 10; r++)
			PHILOX_ROUND2(a, b, kk0[r], kk1[r]);
		for (int j = 0; j < 4; j++) {
			_mm256_storeu_si256((__m256i *)w[i][j], a[j]);
			_mm256_storeu_si256((__m256i *)w[i2][j], b[j]);
		}
	}
}
#endif

static void philox8(uint32_t blk, int nblk, uint32_t purpose, uint32_t epoch,
		    const uint32_t ids[8], const uint32_t key[2], uint32_t w[][4][8])
{
#ifdef RNG_X86
	if (cpu_avx2()) {
		philox8_avx2(blk, nblk, purpose, epoch, ids, key, w);
		return;
	}
#endif
	philox8_c(blk, nblk, purpose, epoch, ids, key, w);
}

/*
 * Box-Muller on eight pairs of words: u1 = (a>>8 + 1)/2^24 in (0,1],
 * u2 = (b>>8)/2^24 in [0,1); c = r cos(2 pi u2), s = r sin(2 pi u2) with
 * r = sqrt(-2 log u1). log is Cephes' logf polynomial; the angle is reduced
 * exactly to +-pi/4 around a multiple of pi/2 (u2 is a turn fraction, so the
 * reduction is in binary fractions), then Cephes' sinf/cosf polynomials.
 * Both versions do the same float operations in the same order (the build is
 * ISO C, so nothing is contracted into an FMA), hence give the same bits.
 */
/* _mm256_round_ps needs a constant expression (clang insists) */
#define BM_RND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define BM_SQRTHF 0.707106781186547524f
#define BM_L0 7.0376836292E-2f
#define BM_L1 -1.1514610310E-1f
#define BM_L2 1.1676998740E-1f
#define BM_L3 -1.2420140846E-1f
#define BM_L4 1.4249322787E-1f
#define BM_L5 -1.6668057665E-1f
#define BM_L6 2.0000714765E-1f
#define BM_L7 -2.4999993993E-1f
#define BM_L8 3.3333331174E-1f
#define BM_LQ1 -2.12194440e-4f
#define BM_LQ2 0.693359375f
#define BM_S0 -1.9515295891E-4f
#define BM_S1 8.3321608736E-3f
#define BM_S2 -1.6666654611E-1f
#define BM_C0 2.443315711809948E-005f
#define BM_C1 -1.388731625493765E-003f
#define BM_C2 4.166664568298827E-002f
#define BM_2PI 6.28318530717958647692f

static void box_muller8_c(const uint32_t a[8], const uint32_t b[8], float c[8], float s[8])
{
	for (int l = 0; l < 8; l++) {
		float u1 = ((float)(a[l] >> 8) + 1.0f) * (1.0f / 16777216.0f);
		float u2 = (float)(b[l] >> 8) * (1.0f / 16777216.0f);
		/* log(u1) */
		uint32_t bits;
		memcpy(&bits, &u1, 4);
		int32_t e = (int32_t)(bits >> 23) - 126;
		bits = (bits & 0x007fffffu) | 0x3f000000u;
		float m;
		memcpy(&m, &bits, 4);
		float fe = (float)e, x = m - 1.0f;
		if (m < BM_SQRTHF) {
			fe = fe - 1.0f;
			x = x + m;
		}
		float z = x * x;
		float y = BM_L0;
		y = y * x + BM_L1;
		y = y * x + BM_L2;
		y = y * x + BM_L3;
		y = y * x + BM_L4;
		y = y * x + BM_L5;
		y = y * x + BM_L6;
		y = y * x + BM_L7;
		y = y * x + BM_L8;
		y = y * x;
		y = y * z;
		y = y + fe * BM_LQ1;
		y = y + z * -0.5f;
		float lg = x + y;
		lg = lg + fe * BM_LQ2;
		float t = lg * -2.0f;
		t = t > 0.0f ? t : 0.0f;
		float r = sqrtf(t);
		/* sin and cos of 2 pi u2 */
		float xf = u2 - rintf(u2);
		float j = rintf(xf * 4.0f);
		float ph = (xf - j * 0.25f) * BM_2PI;
		float zz = ph * ph;
		float sn = BM_S0;
		sn = sn * zz + BM_S1;
		sn = sn * zz + BM_S2;
		sn = sn * zz;
		sn = sn * ph;
		sn = sn + ph;
		float cs = BM_C0;
		cs = cs * zz + BM_C1;
		cs = cs * zz + BM_C2;
		cs = cs * zz;
		cs = cs * zz;
		cs = cs + zz * -0.5f;
		cs = cs + 1.0f;
		int q = (int)j & 3;
		float cc = q & 1 ? sn : cs, ss = q & 1 ? cs : sn;
		if ((q + 1) & 2)
			cc = -cc;
		if (q & 2)
			ss = -ss;
		c[l] = r * cc;
		s[l] = r * ss;
	}
}

#ifdef RNG_X86

/* Box-Muller of U (at most 4) sets of eight pairs of words in registers:
 * cout[u] and sout[u]. Each statement runs over the U sets before the next,
 * so their long dependent chains (the log polynomial, the square root, the
 * sine and cosine) interleave in program order: 1.3-1.6x faster draws for
 * U = 4 than four calls with U = 1, and the same operations on each set,
 * so the same floats. */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
bm8n_avx2(const int U, const __m256i *aw, const __m256i *bw, __m256 *cout, __m256 *sout)
{
#define SET(v) _mm256_set1_ps(v)
#define EACH MKE_EACH
	__m256i ai[4], bi[4], bits[4], e[4], q[4], sgc[4], sgs[4];
	__m256 u1[4], u2[4], m[4], fe[4], x[4], lt[4], z[4], y[4], lg[4], t[4], r[4], xf[4], j[4],
		ph[4], zz[4], sn[4], cs[4], odd[4], cc[4], ss[4];
	EACH(ai[u] = _mm256_srli_epi32(aw[u], 8));
	EACH(bi[u] = _mm256_srli_epi32(bw[u], 8));
	EACH(u1[u] = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(ai[u]), SET(1.0f)),
				   SET(1.0f / 16777216.0f)));
	EACH(u2[u] = _mm256_mul_ps(_mm256_cvtepi32_ps(bi[u]), SET(1.0f / 16777216.0f)));
	/* log(u1) */
	EACH(bits[u] = _mm256_castps_si256(u1[u]));
	EACH(e[u] = _mm256_sub_epi32(_mm256_srli_epi32(bits[u], 23), _mm256_set1_epi32(126)));
	EACH(bits[u] = _mm256_or_si256(_mm256_and_si256(bits[u], _mm256_set1_epi32(0x007fffff)),
				       _mm256_set1_epi32(0x3f000000)));
	EACH(m[u] = _mm256_castsi256_ps(bits[u]));
	EACH(fe[u] = _mm256_cvtepi32_ps(e[u]));
	EACH(x[u] = _mm256_sub_ps(m[u], SET(1.0f)));
	EACH(lt[u] = _mm256_cmp_ps(m[u], SET(BM_SQRTHF), _CMP_LT_OQ));
	EACH(fe[u] = _mm256_blendv_ps(fe[u], _mm256_sub_ps(fe[u], SET(1.0f)), lt[u]));
	EACH(x[u] = _mm256_blendv_ps(x[u], _mm256_add_ps(x[u], m[u]), lt[u]));
	EACH(z[u] = _mm256_mul_ps(x[u], x[u]));
	EACH(y[u] = SET(BM_L0));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L1)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L2)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L3)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L4)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L5)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L6)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L7)));
	EACH(y[u] = _mm256_add_ps(_mm256_mul_ps(y[u], x[u]), SET(BM_L8)));
	EACH(y[u] = _mm256_mul_ps(y[u], x[u]));
	EACH(y[u] = _mm256_mul_ps(y[u], z[u]));
	EACH(y[u] = _mm256_add_ps(y[u], _mm256_mul_ps(fe[u], SET(BM_LQ1))));
	EACH(y[u] = _mm256_add_ps(y[u], _mm256_mul_ps(z[u], SET(-0.5f))));
	EACH(lg[u] = _mm256_add_ps(x[u], y[u]));
	EACH(lg[u] = _mm256_add_ps(lg[u], _mm256_mul_ps(fe[u], SET(BM_LQ2))));
	EACH(t[u] = _mm256_mul_ps(lg[u], SET(-2.0f)));
	EACH(t[u] = _mm256_max_ps(t[u], SET(0.0f)));
	EACH(r[u] = _mm256_sqrt_ps(t[u]));
	/* sin and cos of 2 pi u2 */
	EACH(xf[u] = _mm256_sub_ps(u2[u], _mm256_round_ps(u2[u], BM_RND)));
	EACH(j[u] = _mm256_round_ps(_mm256_mul_ps(xf[u], SET(4.0f)), BM_RND));
	EACH(ph[u] = _mm256_mul_ps(_mm256_sub_ps(xf[u], _mm256_mul_ps(j[u], SET(0.25f))),
				   SET(BM_2PI)));
	EACH(zz[u] = _mm256_mul_ps(ph[u], ph[u]));
	EACH(sn[u] = SET(BM_S0));
	EACH(sn[u] = _mm256_add_ps(_mm256_mul_ps(sn[u], zz[u]), SET(BM_S1)));
	EACH(sn[u] = _mm256_add_ps(_mm256_mul_ps(sn[u], zz[u]), SET(BM_S2)));
	EACH(sn[u] = _mm256_mul_ps(sn[u], zz[u]));
	EACH(sn[u] = _mm256_mul_ps(sn[u], ph[u]));
	EACH(sn[u] = _mm256_add_ps(sn[u], ph[u]));
	EACH(cs[u] = SET(BM_C0));
	EACH(cs[u] = _mm256_add_ps(_mm256_mul_ps(cs[u], zz[u]), SET(BM_C1)));
	EACH(cs[u] = _mm256_add_ps(_mm256_mul_ps(cs[u], zz[u]), SET(BM_C2)));
	EACH(cs[u] = _mm256_mul_ps(cs[u], zz[u]));
	EACH(cs[u] = _mm256_mul_ps(cs[u], zz[u]));
	EACH(cs[u] = _mm256_add_ps(cs[u], _mm256_mul_ps(zz[u], SET(-0.5f))));
	EACH(cs[u] = _mm256_add_ps(cs[u], SET(1.0f)));
	EACH(q[u] = _mm256_and_si256(_mm256_cvtps_epi32(j[u]), _mm256_set1_epi32(3)));
	EACH(odd[u] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
		     _mm256_and_si256(q[u], _mm256_set1_epi32(1)), _mm256_set1_epi32(1))));
	EACH(cc[u] = _mm256_blendv_ps(cs[u], sn[u], odd[u]));
	EACH(ss[u] = _mm256_blendv_ps(sn[u], cs[u], odd[u]));
	const __m256i two = _mm256_set1_epi32(2);
	EACH(sgc[u] = _mm256_slli_epi32(
		     _mm256_and_si256(_mm256_add_epi32(q[u], _mm256_set1_epi32(1)), two), 30));
	EACH(sgs[u] = _mm256_slli_epi32(_mm256_and_si256(q[u], two), 30));
	EACH(cc[u] = _mm256_xor_ps(cc[u], _mm256_castsi256_ps(sgc[u])));
	EACH(ss[u] = _mm256_xor_ps(ss[u], _mm256_castsi256_ps(sgs[u])));
	EACH(cout[u] = _mm256_mul_ps(r[u], cc[u]));
	EACH(sout[u] = _mm256_mul_ps(r[u], ss[u]));
#undef EACH
#undef SET
}

/* one set: *c and *s */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
bm8_avx2(__m256i aw, __m256i bw, __m256 *cout, __m256 *sout)
{
	bm8n_avx2(1, &aw, &bw, cout, sout);
}

__attribute__((target("avx2"))) static inline void box_muller8_avx2(const uint32_t a[8],
							     const uint32_t b[8], float c[8],
							     float s[8])
{
	__m256 cv, sv;
	bm8_avx2(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b),
		 &cv, &sv);
	_mm256_storeu_ps(c, cv);
	_mm256_storeu_ps(s, sv);
}
#endif

static void box_muller8(const uint32_t a[8], const uint32_t b[8], float c[8], float s[8])
{
#ifdef RNG_X86
	if (cpu_avx2()) {
		box_muller8_avx2(a, b, c, s);
		return;
	}
#endif
	box_muller8_c(a, b, c, s);
}

/* ---- streams ----------------------------------------------------------- */

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
	uint32_t a[8] = { 0 }, b[8] = { 0 };
	float c[8], s[8];
	a[0] = rng_u32(r);
	b[0] = rng_u32(r);
	box_muller8(a, b, c, s);
	r->spare = s[0];
	r->has_spare = 1;
	return c[0];
}

void rng_fill_normal(struct rng *r, float *out, size_t n)
{
	size_t i = 0;
	if (n && r->has_spare) {
		out[i++] = rng_normal(r);
	}
	while (n - i >= 16) {
		uint32_t a[8], b[8];
		float c[8], s[8];
		for (int l = 0; l < 8; l++) {
			a[l] = rng_u32(r);
			b[l] = rng_u32(r);
		}
		box_muller8(a, b, c, s);
		for (int l = 0; l < 8; l++) {
			out[i++] = c[l];
			out[i++] = s[l];
		}
	}
	for (; i < n; i++)
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

/* ---- PyTorch's CPU generator ---------------------------------------------- */

enum { MT_N = 624, MT_M = 397 };

void mt19937_seed(struct mt19937 *m, uint64_t seed)
{
	m->s[0] = (uint32_t)seed;
	for (uint32_t j = 1; j < MT_N; j++)
		m->s[j] = 1812433253u * (m->s[j - 1] ^ (m->s[j - 1] >> 30)) + j;
	m->i = MT_N;
}

uint32_t mt19937_next(struct mt19937 *m)
{
	if (m->i >= MT_N) {
		for (int k = 0; k < MT_N; k++) {
			uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % MT_N] & 0x7fffffffu);
			m->s[k] = m->s[(k + MT_M) % MT_N] ^ (y >> 1) ^ (y & 1u ? 0x9908b0dfu : 0u);
		}
		m->i = 0;
	}
	uint32_t y = m->s[m->i++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680u;
	y ^= (y << 15) & 0xefc60000u;
	y ^= y >> 18;
	return y;
}

float mt19937_uniform(struct mt19937 *m, float from, float to)
{
	float x = (float)(mt19937_next(m) & 0xffffffu) * (1.0f / 16777216.0f);
	return fmaf(x, to - from, from);
}

/* ---- bulk draws for a batch --------------------------------------------- */

enum bulk_kind {
	BULK_NORMAL,  /* 4 normals per block */
	BULK_UNIFORM, /* 4 uniforms per block */
	BULK_U16,     /* 8 16-bit uniforms per block: word j's low half, then its high half */
};

enum { BULK_CHUNK = 16 }; /* blocks per lane group per pass */

/* The eight lanes' stream ids for rows b0.. (lanes past B repeat a valid id). */
static int lane_ids(uint32_t lid[8], const uint32_t *ids, int b0, int B)
{
	int nb = B - b0 < 8 ? B - b0 : 8;
	for (int l = 0; l < 8; l++) {
		int b = b0 + (l < nb ? l : 0);
		lid[l] = ids ? ids[b] : (uint32_t)b;
	}
	return nb;
}

#ifdef RNG_X86
/* the normals of nblk blocks in one function, so that out-of-order execution
 * overlaps the long dependency chains of consecutive Box-Muller calls */
__attribute__((target("avx2"))) static void normal_blocks_avx2(int nblk, uint32_t w[][4][8],
							       float v[][8])
{
	for (int i = 0; i < nblk; i++) {
		box_muller8_avx2(w[i][0], w[i][1], v[4 * i], v[4 * i + 1]);
		box_muller8_avx2(w[i][2], w[i][3], v[4 * i + 2], v[4 * i + 3]);
	}
}
#endif

/* v[i*per + j][l] = value j of block i, lane l */
static void bulk_values(enum bulk_kind kind, int nblk, uint32_t w[][4][8], float v[][8])
{
#ifdef RNG_X86
	if (kind == BULK_NORMAL && cpu_avx2()) {
		normal_blocks_avx2(nblk, w, v);
		return;
	}
#endif
	for (int i = 0; i < nblk; i++) {
		if (kind == BULK_NORMAL) {
			box_muller8(w[i][0], w[i][1], v[4 * i], v[4 * i + 1]);
			box_muller8(w[i][2], w[i][3], v[4 * i + 2], v[4 * i + 3]);
		} else if (kind == BULK_UNIFORM) {
			for (int j = 0; j < 4; j++)
				for (int l = 0; l < 8; l++)
					v[4 * i + j][l] = (float)(w[i][j][l] >> 8) * (1.0f / 16777216.0f);
		} else {
			for (int j = 0; j < 4; j++)
				for (int l = 0; l < 8; l++) {
					v[8 * i + 2 * j][l] = (float)(w[i][j][l] & 0xffffu) * (1.0f / 65536.0f);
					v[8 * i + 2 * j + 1][l] = (float)(w[i][j][l] >> 16) * (1.0f / 65536.0f);
				}
		}
	}
}

static void bulk(enum bulk_kind kind, float *out, size_t cstride, size_t bstride, int B, int C,
		 uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		 uint64_t offset)
{
	if (B <= 0 || C <= 0)
		return;
	const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
	uint64_t per = kind == BULK_U16 ? 8 : 4;
	uint64_t blk0 = offset / per, blk1 = (offset + (uint64_t)C + per - 1) / per;
	for (int b0 = 0; b0 < B; b0 += 8) {
		uint32_t lid[8];
		int nb = lane_ids(lid, ids, b0, B);
		float *o = out + (size_t)b0 * bstride;
		for (uint64_t blk = blk0; blk < blk1; blk += BULK_CHUNK) {
			int nblk = blk1 - blk < BULK_CHUNK ? (int)(blk1 - blk) : BULK_CHUNK;
			uint32_t w[BULK_CHUNK][4][8];
			float v[BULK_CHUNK * 8][8];
			philox8((uint32_t)blk, nblk, purpose, epoch, lid, key, w);
			bulk_values(kind, nblk, w, v);
			/* values [lo, hi) of this chunk fall in columns [0, C) */
			uint64_t first = blk * per, lo = first < offset ? offset - first : 0;
			uint64_t hi = (uint64_t)nblk * per;
			if (first + hi > offset + (uint64_t)C)
				hi = offset + (uint64_t)C - first;
			for (uint64_t t = lo; t < hi; t++) {
				float *oc = o + (size_t)(first + t - offset) * cstride;
				if (bstride == 1 && nb == 8) {
					memcpy(oc, v[t], 8 * sizeof(float));
				} else {
					for (int l = 0; l < nb; l++)
						oc[(size_t)l * bstride] = v[t][l];
				}
			}
		}
	}
}

void rng_normal_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
		      uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	bulk(BULK_NORMAL, out, cstride, bstride, B, C, seed, purpose, epoch, ids, offset);
}

void rng_uniform_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
		       uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	bulk(BULK_UNIFORM, out, cstride, bstride, B, C, seed, purpose, epoch, ids, offset);
}

void rng_uniform16_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
			 uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	bulk(BULK_U16, out, cstride, bstride, B, C, seed, purpose, epoch, ids, offset);
}

/* ---- draws fused with the pass that applies them ------------------------ */

/* 65536 p rounded up and clamped: a 16-bit uniform h/65536 is < p exactly
 * when h < this */
static uint32_t u16_threshold(float p)
{
	double t = ceil((double)p * 65536.0);
	return t <= 0.0 ? 0u : t >= 65536.0 ? 65536u : (uint32_t)t;
}

/* the plain versions: the bulk draws, then a pass over them */
static void dropout_fm_c(float *mask, float *out, const float *in, float p, size_t stride, int B,
			 int C, uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
			 uint64_t offset)
{
	int nv = (B + 7) & ~7;
	float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
	bulk(BULK_U16, mask, stride, 1, B, C, seed, purpose, epoch, ids, offset);
	for (int c = 0; c < C; c++) {
		float *mk = mask + (size_t)c * stride, *o = out + (size_t)c * stride;
		const float *x = in + (size_t)c * stride;
		for (int b = 0; b < nv; b++) {
			float k = b < B && !(mk[b] < p) ? keep : 0.0f;
			mk[b] = k;
			o[b] = b < B ? x[b] * k : 0.0f;
		}
	}
}

static void noise_fm_c(float *eps, float *out, const float *in, float k, size_t stride, int B,
		       int C, uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		       uint64_t offset)
{
	int nv = (B + 7) & ~7;
	bulk(BULK_NORMAL, eps, stride, 1, B, C, seed, purpose, epoch, ids, offset);
	for (int c = 0; c < C; c++) {
		float *e = eps + (size_t)c * stride, *o = out + (size_t)c * stride;
		const float *x = in + (size_t)c * stride;
		for (int b = 0; b < nv; b++) {
			if (b >= B)
				e[b] = 0.0f;
			o[b] = x[b] + k * e[b];
		}
	}
}

#ifdef RNG_X86
#define RNG_AVX2 __attribute__((target("avx2,fma")))

static inline void mulhilo32(uint32_t m, uint32_t c, uint32_t *hi, uint32_t *lo)
{
	uint64_t p = (uint64_t)m * c;
	*hi = (uint32_t)(p >> 32);
	*lo = (uint32_t)p;
}

/* Philox blocks blk and blk2 of the eight streams whose ids are in id, into
 * a[4] and b[4]. The block index and the purpose and epoch words are the
 * same in every lane, so round 1 is scalar but for one xor, and rounds 2 and
 * 3 each have one half in scalars: 16 vector multiplies a block, not 20. */
RNG_AVX2 static inline __attribute__((always_inline)) void
philox8_two(uint32_t blk, uint32_t blk2, uint32_t purpose, uint32_t epoch, __m256i id,
	    const uint32_t ks0[10], const uint32_t ks1[10], const __m256i kk0[10],
	    const __m256i kk1[10], __m256i a[4], __m256i b[4])
{
	const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
	uint32_t hi, lo, s0, s1, s3a, s3b, ha, hb;
	/* round 1: c0 = blk, c1 = purpose, c2 = epoch are scalars */
	mulhilo32(PHILOX_M1, epoch, &hi, &lo);
	s0 = hi ^ purpose ^ ks0[0];
	s1 = lo;
	mulhilo32(PHILOX_M0, blk, &ha, &s3a);
	mulhilo32(PHILOX_M0, blk2, &hb, &s3b);
	__m256i v2a = _mm256_xor_si256(_mm256_set1_epi32((int)(ha ^ ks1[0])), id);
	__m256i v2b = _mm256_xor_si256(_mm256_set1_epi32((int)(hb ^ ks1[0])), id);
	/* round 2: c0 = s0 scalar (the same for both blocks), c2 a vector */
	__m256i lo1a, hi1a, lo1b, hi1b;
	mulhilo8(v2a, m1, &lo1a, &hi1a);
	mulhilo8(v2b, m1, &lo1b, &hi1b);
	__m256i k01 = _mm256_set1_epi32((int)(s1 ^ ks0[1]));
	a[0] = _mm256_xor_si256(hi1a, k01);
	b[0] = _mm256_xor_si256(hi1b, k01);
	a[1] = lo1a;
	b[1] = lo1b;
	uint32_t t3;
	mulhilo32(PHILOX_M0, s0, &hi, &t3);
	uint32_t t2a = hi ^ s3a ^ ks1[1], t2b = hi ^ s3b ^ ks1[1];
	/* round 3: c0 a vector, c2 = t2 scalar */
	__m256i lo0a, hi0a, lo0b, hi0b;
	mulhilo8(a[0], m0, &lo0a, &hi0a);
	mulhilo8(b[0], m0, &lo0b, &hi0b);
	mulhilo32(PHILOX_M1, t2a, &ha, &lo);
	a[0] = _mm256_xor_si256(_mm256_set1_epi32((int)(ha ^ ks0[2])), a[1]);
	a[1] = _mm256_set1_epi32((int)lo);
	mulhilo32(PHILOX_M1, t2b, &hb, &lo);
	b[0] = _mm256_xor_si256(_mm256_set1_epi32((int)(hb ^ ks0[2])), b[1]);
	b[1] = _mm256_set1_epi32((int)lo);
	__m256i k12 = _mm256_set1_epi32((int)(t3 ^ ks1[2]));
	a[2] = _mm256_xor_si256(hi0a, k12);
	b[2] = _mm256_xor_si256(hi0b, k12);
	a[3] = lo0a;
	b[3] = lo0b;
	for (int r = 3; r < 10; r++)
		PHILOX_ROUND2(a, b, kk0[r], kk1[r]);
}

/* the key schedule of seed, scalar and broadcast */
static void key_schedule(uint64_t seed, uint32_t ks0[10], uint32_t ks1[10])
{
	uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
	for (int r = 0; r < 10; r++) {
		ks0[r] = k0;
		ks1[r] = k1;
		k0 += PHILOX_W0;
		k1 += PHILOX_W1;
	}
}

RNG_AVX2 static void dropout_fm_avx2(float *mask, float *out, const float *in, float p,
				     size_t stride, int B, int C, uint64_t seed, uint32_t purpose,
				     uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	uint32_t ks0[10], ks1[10];
	__m256i kk0[10], kk1[10];
	key_schedule(seed, ks0, ks1);
	for (int r = 0; r < 10; r++) {
		kk0[r] = _mm256_set1_epi32((int)ks0[r]);
		kk1[r] = _mm256_set1_epi32((int)ks1[r]);
	}
	const __m256i thr = _mm256_set1_epi32((int)u16_threshold(p));
	const __m256i low = _mm256_set1_epi32(0xffff);
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	const float keepf = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
	uint64_t blk0 = offset / 8, blk1 = (offset + (uint64_t)C + 7) / 8;
	for (int b0 = 0; b0 < B; b0 += 8) {
		uint32_t lid[8];
		int nb = lane_ids(lid, ids, b0, B);
		__m256i id = _mm256_loadu_si256((const __m256i *)lid);
		__m256 keep = _mm256_and_ps(
			_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane)),
			_mm256_set1_ps(keepf));
		for (uint64_t blk = blk0; blk < blk1; blk += 2) {
			__m256i w[2][4];
			uint64_t blk2 = blk + 1 < blk1 ? blk + 1 : blk;
			philox8_two((uint32_t)blk, (uint32_t)blk2, purpose, epoch, id, ks0, ks1, kk0,
				    kk1, w[0], w[1]);
			for (int h = 0; h < 2 && blk + (uint64_t)h < blk1; h++)
				for (int j = 0; j < 8; j++) {
					uint64_t t = (blk + (uint64_t)h) * 8 + (uint64_t)j;
					if (t < offset || t >= offset + (uint64_t)C)
						continue;
					__m256i u = j & 1 ? _mm256_srli_epi32(w[h][j / 2], 16)
							  : _mm256_and_si256(w[h][j / 2], low);
					__m256 drop = _mm256_castsi256_ps(_mm256_cmpgt_epi32(thr, u));
					__m256 mk = _mm256_andnot_ps(drop, keep);
					size_t at = (size_t)(t - offset) * stride + (size_t)b0;
					_mm256_storeu_ps(mask + at, mk);
					_mm256_storeu_ps(out + at, _mm256_mul_ps(_mm256_loadu_ps(in + at), mk));
				}
		}
	}
}

RNG_AVX2 static void noise_fm_avx2(float *eps, float *out, const float *in, float k, size_t stride,
				   int B, int C, uint64_t seed, uint32_t purpose, uint32_t epoch,
				   const uint32_t *ids, uint64_t offset)
{
	uint32_t ks0[10], ks1[10];
	__m256i kk0[10], kk1[10];
	key_schedule(seed, ks0, ks1);
	for (int r = 0; r < 10; r++) {
		kk0[r] = _mm256_set1_epi32((int)ks0[r]);
		kk1[r] = _mm256_set1_epi32((int)ks1[r]);
	}
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	const __m256 kv = _mm256_set1_ps(k);
	uint64_t blk0 = offset / 4, blk1 = (offset + (uint64_t)C + 3) / 4;
	for (int b0 = 0; b0 < B; b0 += 8) {
		uint32_t lid[8];
		int nb = lane_ids(lid, ids, b0, B);
		__m256i id = _mm256_loadu_si256((const __m256i *)lid);
		__m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane));
		for (uint64_t blk = blk0; blk < blk1; blk += 2) {
			__m256i w[2][4];
			uint64_t blk2 = blk + 1 < blk1 ? blk + 1 : blk;
			philox8_two((uint32_t)blk, (uint32_t)blk2, purpose, epoch, id, ks0, ks1, kk0,
				    kk1, w[0], w[1]);
			/* the Box-Muller pairs the request uses (a narrow request, such
			 * as one input, needs one of the four) before any store, so that
			 * out-of-order execution overlaps their chains */
			__m256 v[8];
			uint64_t t0 = blk * 4, t1 = blk1 * 4 < t0 + 8 ? blk1 * 4 : t0 + 8;
			if (t0 >= offset && t0 + 8 <= t1 && t0 + 8 <= offset + (uint64_t)C) {
				/* all four pairs, interleaved */
				__m256i wa[4] = { w[0][0], w[0][2], w[1][0], w[1][2] };
				__m256i wb[4] = { w[0][1], w[0][3], w[1][1], w[1][3] };
				__m256 vc[4], vs[4];
				bm8n_avx2(4, wa, wb, vc, vs);
				for (int q = 0; q < 4; q++)
					v[2 * q] = vc[q], v[2 * q + 1] = vs[q];
			} else {
				for (int q = 0; q < 4; q++) {
					uint64_t a = t0 + 2 * (uint64_t)q;
					if (a < t1 && a + 2 > offset && a < offset + (uint64_t)C)
						bm8_avx2(w[q / 2][2 * (q % 2)], w[q / 2][2 * (q % 2) + 1],
							 &v[2 * q], &v[2 * q + 1]);
				}
			}
			for (uint64_t t = t0; t < t1; t++) {
				if (t < offset || t >= offset + (uint64_t)C)
					continue;
				size_t at = (size_t)(t - offset) * stride + (size_t)b0;
				__m256 e = _mm256_and_ps(v[t - t0], valid);
				_mm256_storeu_ps(eps + at, e);
				_mm256_storeu_ps(out + at, _mm256_fmadd_ps(kv, e, _mm256_loadu_ps(in + at)));
			}
		}
	}
}
#endif

void rng_dropout_fm(float *mask, float *out, const float *in, float p, size_t stride, int B, int C,
		    uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		    uint64_t offset)
{
	if (B <= 0 || C <= 0)
		return;
#ifdef RNG_X86
	if (cpu_avx2()) {
		dropout_fm_avx2(mask, out, in, p, stride, B, C, seed, purpose, epoch, ids, offset);
		return;
	}
#endif
	dropout_fm_c(mask, out, in, p, stride, B, C, seed, purpose, epoch, ids, offset);
}

void rng_noise_fm(float *eps, float *out, const float *in, float k, size_t stride, int B, int C,
		  uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		  uint64_t offset)
{
	if (B <= 0 || C <= 0)
		return;
#ifdef RNG_X86
	if (cpu_avx2()) {
		noise_fm_avx2(eps, out, in, k, stride, B, C, seed, purpose, epoch, ids, offset);
		return;
	}
#endif
	noise_fm_c(eps, out, in, k, stride, B, C, seed, purpose, epoch, ids, offset);
}

/* ---- the memo of fused draws -------------------------------------------- */

/* one kept block: rows [off, off + C) of a stream's draws, nv columns each:
 * noise draws as floats (tag 0), or a dropout stream's kept lanes as bits
 * (tag 1 + the 16-bit threshold they were kept under) */
struct memo_block {
	uint32_t tag, purpose, epoch;
	uint64_t off;
	int C;
	int next; /* the next block of the same hash slot, -1 at the end */
	void *v;
};

enum { MEMO_SLOTS = 4096, MEMO_POOLS = 16 };

struct draw_memo {
	size_t budget, used;
	/* what the kept blocks were drawn for */
	int bound, B;
	size_t nv;
	uint64_t seed;
	uint32_t *ids;
	struct memo_block *blk;
	int nblk, cap;
	int slot[MEMO_SLOTS]; /* first block of each (purpose, epoch) hash slot */
	/* the storage of blocks emptied out, reused (their pages stay mapped):
	 * a stack per block size (a table has a few: each kind of request) */
	struct memo_pool {
		size_t bytes;
		void **v;
		int n, cap;
	} pool[MEMO_POOLS];
	int npool;
	long hits, misses;
};

struct draw_memo *draw_memo_new(size_t budget)
{
	struct draw_memo *dm = calloc(1, sizeof *dm);
	if (!dm)
		return NULL;
	dm->budget = budget;
	for (int i = 0; i < MEMO_SLOTS; i++)
		dm->slot[i] = -1;
	return dm;
}

/* the bytes of a block of C rows: a float or a bit per column */
static size_t memo_bytes(const struct draw_memo *dm, uint32_t tag, int C)
{
	return (tag ? dm->nv / 8 : sizeof(float) * dm->nv) * (size_t)C;
}

/* the pool of blocks of this size; NULL when every pool holds another
 * size and add is 0 */
static struct memo_pool *memo_pool(struct draw_memo *dm, size_t bytes, int add)
{
	for (int i = 0; i < dm->npool; i++)
		if (dm->pool[i].bytes == bytes)
			return &dm->pool[i];
	if (!add || dm->npool == MEMO_POOLS)
		return NULL;
	dm->pool[dm->npool] = (struct memo_pool){ .bytes = bytes };
	return &dm->pool[dm->npool++];
}

/* Empty dm; the blocks' storage goes to the pools (freed if they cannot
 * take it) */
static void memo_clear(struct draw_memo *dm)
{
	for (int i = 0; i < dm->nblk; i++) {
		struct memo_block *b = &dm->blk[i];
		struct memo_pool *p = memo_pool(dm, memo_bytes(dm, b->tag, b->C), 1);
		if (p && p->n == p->cap) {
			int cap = p->cap ? 2 * p->cap : 256;
			void **np = realloc(p->v, sizeof *np * (size_t)cap);
			if (np) {
				p->v = np;
				p->cap = cap;
			}
		}
		if (p && p->n < p->cap)
			p->v[p->n++] = b->v;
		else
			free(b->v);
	}
	dm->nblk = 0;
	dm->used = 0;
	for (int i = 0; i < MEMO_SLOTS; i++)
		dm->slot[i] = -1;
}

void draw_memo_free(struct draw_memo *dm)
{
	if (!dm)
		return;
	memo_clear(dm);
	for (int i = 0; i < dm->npool; i++) {
		for (int j = 0; j < dm->pool[i].n; j++)
			free(dm->pool[i].v[j]);
		free(dm->pool[i].v);
	}
	free(dm->blk);
	free(dm->ids);
	free(dm);
}

void draw_memo_counts(const struct draw_memo *dm, long *hits, long *misses)
{
	*hits = dm ? dm->hits : 0;
	*misses = dm ? dm->misses : 0;
}

static int memo_slot(uint32_t purpose, uint32_t epoch)
{
	return (int)((epoch * 2654435761u ^ purpose * 40503u) % MEMO_SLOTS);
}

/* Make dm hold blocks of (seed, B, ids) only: emptied when they change.
 * Returns 0 when the memo cannot be used (no memory for the ids). */
static int memo_bind(struct draw_memo *dm, uint64_t seed, int B, const uint32_t *ids)
{
	size_t nb = sizeof(uint32_t) * (size_t)B;
	if (dm->bound && dm->seed == seed && dm->B == B &&
	    (ids ? dm->ids && memcmp(dm->ids, ids, nb) == 0 : !dm->ids))
		return 1;
	memo_clear(dm);
	free(dm->ids);
	dm->ids = NULL;
	dm->bound = 0;
	if (ids) {
		dm->ids = malloc(nb ? nb : 1);
		if (!dm->ids)
			return 0;
		memcpy(dm->ids, ids, nb);
	}
	dm->seed = seed;
	dm->B = B;
	dm->nv = (size_t)((B + 7) & ~7);
	dm->bound = 1;
	return 1;
}

/* Whether dm can serve a request of B rows with this stride: bound to (seed,
 * B, ids), and the caller's rows the memo's row length apart (so that kept
 * rows can stand in for the caller's buffer). */
static int memo_usable(struct draw_memo *dm, uint64_t seed, int B, int C, size_t stride,
		       const uint32_t *ids)
{
	return dm && B > 0 && C > 0 && stride == (size_t)((B + 7) & ~7) &&
	       memo_bind(dm, seed, B, ids);
}

/* the values of rows [off, off + C) of (tag, purpose, epoch), or NULL */
static const void *memo_find(const struct draw_memo *dm, uint32_t tag, uint32_t purpose,
			     uint32_t epoch, uint64_t off, int C)
{
	for (int i = dm->slot[memo_slot(purpose, epoch)]; i >= 0; i = dm->blk[i].next) {
		const struct memo_block *b = &dm->blk[i];
		if (b->tag == tag && b->purpose == purpose && b->epoch == epoch && b->off <= off &&
		    off + (uint64_t)C <= b->off + (uint64_t)b->C)
			return (const char *)b->v + memo_bytes(dm, tag, (int)(off - b->off));
	}
	return NULL;
}

/* A new block for rows [off, off + C) of (tag, purpose, epoch), for the
 * caller to fill; NULL past the budget */
static void *memo_add(struct draw_memo *dm, uint32_t tag, uint32_t purpose, uint32_t epoch,
		      uint64_t off, int C)
{
	size_t bytes = memo_bytes(dm, tag, C);
	if (dm->used + bytes > dm->budget)
		return NULL;
	if (dm->nblk == dm->cap) {
		int cap = dm->cap ? 2 * dm->cap : 256;
		struct memo_block *nb = realloc(dm->blk, sizeof *nb * (size_t)cap);
		if (!nb)
			return NULL;
		dm->blk = nb;
		dm->cap = cap;
	}
	struct memo_pool *p = memo_pool(dm, bytes, 0);
	void *v = p && p->n ? p->v[--p->n] : NULL;
	if (!v)
		v = malloc(bytes ? bytes : 1);
	if (!v)
		return NULL;
	int s = memo_slot(purpose, epoch);
	dm->blk[dm->nblk] = (struct memo_block){
		.tag = tag, .purpose = purpose, .epoch = epoch, .off = off, .C = C,
		.next = dm->slot[s], .v = v
	};
	dm->slot[s] = dm->nblk++;
	dm->used += bytes;
	return v;
}

#ifdef RNG_X86
/* out = in + k*eps as noise_fm_avx2 computes it (a fused multiply-add) */
RNG_AVX2 static void noise_apply_avx2(float *out, const float *in, const float *eps, float k,
				      size_t n)
{
	__m256 kv = _mm256_set1_ps(k);
	for (size_t b = 0; b < n; b += 8)
		_mm256_storeu_ps(out + b, _mm256_fmadd_ps(kv, _mm256_loadu_ps(eps + b),
							  _mm256_loadu_ps(in + b)));
}
#endif

#ifdef RNG_X86
RNG_AVX2 static void bits_from_mask_avx2(uint8_t *bits, const float *mask, size_t n)
{
	for (size_t b = 0; b < n; b += 8)
		bits[b / 8] = (uint8_t)_mm256_movemask_ps(
			_mm256_cmp_ps(_mm256_loadu_ps(mask + b), _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

/* mask = keep where the lane's bit is set, else 0; out = in * mask (as
 * dropout_fm_avx2 computes them) */
RNG_AVX2 static void mask_from_bits_avx2(float *mask, float *out, const float *in,
					 const uint8_t *bits, float keep, size_t n)
{
	const __m256i lb = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
	const __m256 kv = _mm256_set1_ps(keep);
	for (size_t b = 0; b < n; b += 8) {
		__m256i v = _mm256_and_si256(_mm256_set1_epi32(bits[b / 8]), lb);
		__m256 mk = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, lb)), kv);
		_mm256_storeu_ps(mask + b, mk);
		_mm256_storeu_ps(out + b, _mm256_mul_ps(_mm256_loadu_ps(in + b), mk));
	}
}
#endif

/* out = in + k*eps over n values (a multiple of 8), with the arithmetic of
 * the path that draws */
static void noise_apply(float *out, const float *in, const float *eps, float k, size_t n)
{
#ifdef RNG_X86
	if (cpu_avx2()) {
		noise_apply_avx2(out, in, eps, k, n);
		return;
	}
#endif
	for (size_t b = 0; b < n; b++)
		out[b] = in[b] + k * eps[b];
}

const float *rng_noise_fm_memo(struct draw_memo *dm, float *eps, float *out, const float *in,
			      float k, size_t stride, int B, int C, uint64_t seed, uint32_t purpose,
			      uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	if (!memo_usable(dm, seed, B, C, stride, ids)) {
		rng_noise_fm(eps, out, in, k, stride, B, C, seed, purpose, epoch, ids, offset);
		return eps;
	}
	const float *kept = memo_find(dm, 0, purpose, epoch, offset, C);
	if (kept) {
		dm->hits++;
		noise_apply(out, in, kept, k, dm->nv * (size_t)C);
		return kept;
	}
	dm->misses++;
	/* drawn straight into the block it keeps, if it does */
	float *v = memo_add(dm, 0, purpose, epoch, offset, C);
	rng_noise_fm(v ? v : eps, out, in, k, stride, B, C, seed, purpose, epoch, ids, offset);
	return v ? v : eps;
}

/* The kept lanes of a dropout stream as bits, lane b of row c at bit b % 8
 * of byte (c * nv + b) / 8: kept where the mask is not 0 */
static void bits_from_mask(uint8_t *bits, const float *mask, size_t n)
{
#ifdef RNG_X86
	if (cpu_avx2()) {
		bits_from_mask_avx2(bits, mask, n);
		return;
	}
#endif
	for (size_t b = 0; b < n; b += 8) {
		unsigned v = 0;
		for (int j = 0; j < 8; j++)
			v |= (mask[b + (size_t)j] != 0.0f) << j;
		bits[b / 8] = (uint8_t)v;
	}
}

/* mask and out from kept bits, with the arithmetic of the path that draws
 * (rng_dropout_fm) */
static void mask_from_bits(float *mask, float *out, const float *in, const uint8_t *bits, float p,
			   int B, size_t nv, size_t n)
{
	float keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#ifdef RNG_X86
	if (cpu_avx2()) {
		mask_from_bits_avx2(mask, out, in, bits, keep, n);
		return;
	}
#endif
	for (size_t i = 0; i < n; i++) {
		float k = bits[i / 8] >> (i % 8) & 1 ? keep : 0.0f;
		mask[i] = k;
		out[i] = (int)(i % nv) < B ? in[i] * k : 0.0f;
	}
}

void rng_dropout_fm_memo(struct draw_memo *dm, float *mask, float *out, const float *in, float p,
			 size_t stride, int B, int C, uint64_t seed, uint32_t purpose,
			 uint32_t epoch, const uint32_t *ids, uint64_t offset)
{
	if (!memo_usable(dm, seed, B, C, stride, ids)) {
		rng_dropout_fm(mask, out, in, p, stride, B, C, seed, purpose, epoch, ids, offset);
		return;
	}
	/* the same draws under another rate keep other lanes: a block per threshold */
	uint32_t tag = 1u + u16_threshold(p);
	size_t n = dm->nv * (size_t)C;
	const uint8_t *kept = memo_find(dm, tag, purpose, epoch, offset, C);
	if (kept) {
		dm->hits++;
		mask_from_bits(mask, out, in, kept, p, B, dm->nv, n);
		return;
	}
	dm->misses++;
	rng_dropout_fm(mask, out, in, p, stride, B, C, seed, purpose, epoch, ids, offset);
	uint8_t *v = memo_add(dm, tag, purpose, epoch, offset, C);
	if (v)
		bits_from_mask(v, mask, n);
}
