/*
 * cache.c - the bounded LRU cache of decoded samples (see cache.h). A key
 * indexes flat arrays directly (keys are dense: row * 2 + modality), so a
 * lookup is one array read and the LRU list is two int arrays.
 */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void cache_init(struct sample_cache *c, int nkeys, size_t budget)
{
	memset(c, 0, sizeof *c);
	c->budget = budget;
	c->nkeys = nkeys;
	size_t n = nkeys > 0 ? (size_t)nkeys : 1;
	c->val = xcalloc(n, sizeof *c->val);
	c->len = xcalloc(n, sizeof *c->len);
	c->prev = xmalloc(n * sizeof *c->prev);
	c->next = xmalloc(n * sizeof *c->next);
	c->head = c->tail = -1;
}

void cache_release(struct sample_cache *c)
{
	for (int k = 0; c->val && k < c->nkeys; k++)
		free(c->val[k]);
	free(c->val);
	free(c->len);
	free(c->prev);
	free(c->next);
	memset(c, 0, sizeof *c);
}

static void unlink_key(struct sample_cache *c, int k)
{
	if (c->prev[k] >= 0)
		c->next[c->prev[k]] = c->next[k];
	else
		c->head = c->next[k];
	if (c->next[k] >= 0)
		c->prev[c->next[k]] = c->prev[k];
	else
		c->tail = c->prev[k];
}

static void push_head(struct sample_cache *c, int k)
{
	c->prev[k] = -1;
	c->next[k] = c->head;
	if (c->head >= 0)
		c->prev[c->head] = k;
	c->head = k;
	if (c->tail < 0)
		c->tail = k;
}

/* Drop the least recently used entry. */
static void evict_tail(struct sample_cache *c)
{
	int k = c->tail;
	unlink_key(c, k);
	free(c->val[k]);
	c->val[k] = NULL;
	c->used -= c->len[k] * sizeof(float);
	c->len[k] = 0;
	c->evictions++;
}

int cache_get(struct sample_cache *c, int key, float *out, size_t n)
{
	if (key < 0 || key >= c->nkeys || !c->val[key] || c->len[key] != n) {
		c->misses++;
		return 0;
	}
	memcpy(out, c->val[key], n * sizeof(float));
	unlink_key(c, key);
	push_head(c, key);
	c->hits++;
	return 1;
}

void cache_put(struct sample_cache *c, int key, const float *v, size_t n)
{
	size_t bytes = n * sizeof(float);
	if (key < 0 || key >= c->nkeys || bytes > c->budget)
		return;
	if (c->val[key]) {
		unlink_key(c, key);
		free(c->val[key]);
		c->val[key] = NULL;
		c->used -= c->len[key] * sizeof(float);
	}
	while (c->used + bytes > c->budget && c->tail >= 0)
		evict_tail(c);
	c->val[key] = xmalloc(bytes ? bytes : 1);
	memcpy(c->val[key], v, bytes);
	c->len[key] = n;
	c->used += bytes;
	push_head(c, key);
}
