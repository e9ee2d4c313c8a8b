/*
 * cache.h - a bounded LRU cache of decoded samples (float vectors), keyed by
 * small integers (a sample's manifest row and modality). The lazy datasets of
 * common/manifest.h keep what they decoded here, so that a dataset larger
 * than memory streams from its files and one that fits is decoded once.
 *
 * The budget counts the floats held (4 bytes each); an entry larger than the
 * whole budget is not kept. Not thread-safe: the caller locks.
 */
#ifndef MKE_CACHE_H
#define MKE_CACHE_H

#include <stddef.h>

struct sample_cache {
	size_t budget, used;   /* bytes of floats allowed and held */
	int nkeys;             /* keys are [0, nkeys) */
	float **val;           /* (nkeys) the entry's floats, NULL when absent */
	size_t *len;           /* (nkeys) floats per entry */
	int *prev, *next;      /* (nkeys) LRU list, most recent at head; -1 ends */
	int head, tail;
	long hits, misses, evictions;
};

/* A cache of keys [0, nkeys) holding at most budget bytes of floats; release
 * with cache_release(). */
void cache_init(struct sample_cache *c, int nkeys, size_t budget);
void cache_release(struct sample_cache *c);
/* Copy key's n floats into out and mark it most recent: 1 on a hit, 0 on a
 * miss (out untouched). */
int cache_get(struct sample_cache *c, int key, float *out, size_t n);
/* Keep a copy of v (n floats) under key, evicting least recent entries until
 * it fits; nothing when n floats exceed the whole budget. */
void cache_put(struct sample_cache *c, int key, const float *v, size_t n);

#endif
