/*
 * shard.h - cutting a validated manifest into shards: recorded in SQLite and
 * pushed to the run's Redis queue. Used by the shard phase of `mke run` and
 * by `mke shard` on its own.
 */
#ifndef MKE_SHARD_H
#define MKE_SHARD_H

#include "queue.h"
#include "store.h"

/* Shards of K rows over `rows` valid rows: record them (existing rows left
 * alone), push those not done yet to q (NULL: record only) and seal the
 * queue. *detail (caller frees) gets a one-line summary. */
int shard_rows(struct store *db, struct queue *q, const char *run, int rows, int quarantined, int K,
	       int *nshards, char **detail);

#endif
