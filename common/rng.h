/*
 * rng.h - counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
 *
 * Every random draw in mke is a pure function of
 *     (seed, purpose, epoch, sample id, index within the sample)
 * so results do not depend on how samples are spread over ranks or threads,
 * on the order work is done, or on what was drawn before. The key is the
 * 64-bit seed; the counter is (block index, purpose, epoch, sample id).
 */
#ifndef MKE_RNG_H
#define MKE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* What a stream is for; part of the counter so streams never overlap. */
enum rng_purpose {
	RNG_INIT = 1,      /* parameter initialisation: epoch = layer, sample = tensor */
	RNG_DROPOUT,       /* dropout masks: sample = sample id, epoch = step */
	RNG_INPUT_NOISE,   /* Gaussian input noise */
	RNG_HIDDEN_NOISE,  /* Gaussian hidden-layer noise */
	RNG_SHUFFLE,       /* epoch permutations of the data */
	RNG_AUGMENT,       /* flips, crops */
	RNG_JITTER,        /* queue backoff jitter */
	RNG_DATA,          /* synthetic data generation */
};

/* One Philox4x32-10 block. */
void philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

struct rng {
	uint32_t key[2];
	uint32_t ctr[4];
	uint32_t buf[4];
	int left;          /* unused words in buf */
	int has_spare;     /* Box-Muller makes normals in pairs */
	float spare;
};

/* A stream positioned at index 0 of (seed, purpose, epoch, sample). */
void rng_init(struct rng *r, uint64_t seed, uint32_t purpose, uint32_t epoch, uint32_t sample);
uint32_t rng_u32(struct rng *r);
/* Uniform in [0, 1), 24 bits of resolution. */
float rng_uniform(struct rng *r);
/* Standard normal (Box-Muller on two consecutive words: u1 from the first,
 * u2 from the second; cos gives this draw, sin the next). log, sin and cos
 * are polynomial approximations good to a few float ulps, the same in the
 * scalar and bulk paths, so every path returns the same bits. */
float rng_normal(struct rng *r);
/* Fill out[0..n) with standard normals / uniforms in [0,1); same values as
 * n calls of rng_normal / rng_uniform on a fresh stream. */
void rng_fill_normal(struct rng *r, float *out, size_t n);
void rng_fill_uniform(struct rng *r, float *out, size_t n);
/* Uniform integer in [0, n). */
uint32_t rng_below(struct rng *r, uint32_t n);

/*
 * PyTorch's CPU generator, for configs with "init": "torch" (model.h): the
 * 32-bit Mersenne Twister (Matsumoto & Nishimura 1998) seeded as
 * torch.manual_seed(seed) seeds it (the low 32 bits, the 2002 init_genrand),
 * and the float that Tensor.uniform_(from, to) makes of each word. The one
 * sequential stream of this file: a draw depends on every draw before it,
 * which is why only parameter initialisation may use it.
 */
struct mt19937 {
	uint32_t s[624];
	int i;
};
void mt19937_seed(struct mt19937 *m, uint64_t seed);
uint32_t mt19937_next(struct mt19937 *m);
/* One value of uniform_(from, to) on a float tensor: the word's low 24 bits
 * times 2^-24, times (to - from) plus from in one rounding (PyTorch's kernel
 * is built with FMA contraction). */
float mt19937_uniform(struct mt19937 *m, float from, float to);

/*
 * Bulk draws for a batch: for b < B and c < C,
 *     out[c*cstride + b*bstride] = value (offset + c) of stream (seed, purpose, epoch, ids[b])
 * (ids NULL: ids[b] = b), exactly what rng_normal / rng_uniform return at that
 * position of a fresh stream. Eight samples' Philox blocks are computed at
 * once (AVX2 when the CPU has it), so a feature-major buffer (cstride = row
 * length, bstride = 1) is the fast layout; row-major is cstride 1, bstride C.
 */
void rng_normal_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
		      uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset);
void rng_uniform_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
		       uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset);
/* Coarser uniforms for dropout, two per word: value i of a stream is
 * half (i % 2) (0: the low 16 bits, 1: the high) of word i/2 (the words
 * rng_u32 returns), divided by 65536, so in [0,1) on a 2^-16 grid. Half the
 * Philox work of rng_uniform_batch; u < p then has probability
 * ceil(65536 p) / 65536. */
void rng_uniform16_batch(float *out, size_t cstride, size_t bstride, int B, int C, uint64_t seed,
			 uint32_t purpose, uint32_t epoch, const uint32_t *ids, uint64_t offset);

/*
 * Draws fused with the pass that applies them, on feature-major buffers
 * (C, stride): row c, column b < B holds value offset + c of stream
 * (seed, purpose, epoch, ids[b]), the value rng_uniform16_batch /
 * rng_normal_batch put there; columns [B, B rounded up to 8) (stride must
 * reach them) are padding. 8 samples at a time with the Philox rounds that
 * are the same in every lane done once.
 *
 * rng_dropout_fm: mask = (16-bit uniform < p) ? 0 : 1/(1-p) (0 when p >= 1),
 * out = in * mask; mask and out are 0 in the padding.
 * rng_noise_fm: eps = N(0,1) draw, out = in + k*eps (a fused multiply-add on
 * AVX2); eps is 0 in the padding (out = in there).
 */
void rng_dropout_fm(float *mask, float *out, const float *in, float p, size_t stride, int B, int C,
		    uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		    uint64_t offset);
void rng_noise_fm(float *eps, float *out, const float *in, float k, size_t stride, int B, int C,
		  uint64_t seed, uint32_t purpose, uint32_t epoch, const uint32_t *ids,
		  uint64_t offset);

/*
 * A memo of the noise draws. Every value is a function of (seed, purpose,
 * epoch, sample id, index), so models trained one after the other with the
 * same seed on the same rows draw the same noise whatever its strength: the
 * TwoMoon students of one seed (the UM student's 32 hidden units cover the MM
 * students' 16; the MM student's two inputs cover the UM student's one) over
 * both hidden-noise and both input-noise rows of the table. With a memo,
 * rng_noise_fm_memo keeps each block of eps it draws and serves a later
 * request whose stream range [offset, offset + C) lies inside a kept block of
 * the same purpose and epoch from it: the same values without the Philox
 * rounds and Box-Muller. It returns where the request's eps are: rows of a
 * kept block (row length and stride B rounded up to 8; a request it keeps is
 * drawn straight into its block), valid until the memo is used for another
 * seed, batch or set of ids (which empties it) or freed; or eps, when it is
 * drawn and not kept. out is computed either way. Blocks are kept
 * until budget bytes are used; memo NULL (or a full memo, or a stride other
 * than B rounded up to 8) draws as rng_noise_fm does.
 *
 * rng_dropout_fm_memo does the same for dropout: it keeps which lanes a
 * request kept, a bit each (the 16-bit draws under the rate's threshold), and
 * serves a later request of the same threshold, purpose and epoch inside a
 * kept block: mask and out equal rng_dropout_fm's bit for bit. The TwoMoon
 * table's UM student draws each dropout row's masks for both MM students.
 */
struct draw_memo;
struct draw_memo *draw_memo_new(size_t budget);
void draw_memo_free(struct draw_memo *dm);
/* requests served from the memo, and requests drawn */
void draw_memo_counts(const struct draw_memo *dm, long *hits, long *misses);
const float *rng_noise_fm_memo(struct draw_memo *dm, float *eps, float *out, const float *in,
			      float k, size_t stride, int B, int C, uint64_t seed, uint32_t purpose,
			      uint32_t epoch, const uint32_t *ids, uint64_t offset);
void rng_dropout_fm_memo(struct draw_memo *dm, float *mask, float *out, const float *in, float p,
			 size_t stride, int B, int C, uint64_t seed, uint32_t purpose,
			 uint32_t epoch, const uint32_t *ids, uint64_t offset);

#endif
