/*
 * shard.c - see shard.h. A shard is K consecutive valid rows of the
 * unlabeled manifest: shard i covers rows [i*K, i*K + count). Workers decode
 * the same manifest with the same validation, so the row numbers agree.
 */
#include "shard.h"

#include <stdlib.h>

#include "meter.h"
#include "util.h"

/* Shards recorded or pushed per call between two progress updates. */
#define CHUNK 4096

struct done_mark {
	unsigned char *done;
	int n;
};

static int mark_done(void *arg, const struct store_shard *s)
{
	struct done_mark *a = arg;
	if (s->shard_id >= 0 && s->shard_id < a->n)
		a->done[s->shard_id] = 1;
	return 0;
}

int shard_rows(struct store *db, struct queue *q, const char *run, int rows, int quarantined, int K,
	       int *nshards, char **detail)
{
	int n = (rows + K - 1) / K;
	struct store_shard *sh = xcalloc((size_t)n + 1, sizeof *sh);
	struct queue_shard *qs = xcalloc((size_t)n + 1, sizeof *qs);
	unsigned char *done = xcalloc((size_t)n + 1, 1);
	for (int i = 0; i < n; i++) {
		sh[i].shard_id = i;
		sh[i].first_row = (int64_t)i * K;
		sh[i].row_count = (i + 1) * K <= rows ? K : rows - i * K;
		sh[i].state = SHARD_NEW;
	}
	size_t added = 0, pushed = 0, nq = 0;
	struct meter m;
	meter_start(&m, "record", "shards", n);
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i += CHUNK) {
		size_t got = 0;
		rc = store_shard_add(db, run, sh + i, (size_t)(n - i < CHUNK ? n - i : CHUNK), &got);
		added += got;
		meter_update(&m, i + CHUNK < n ? i + CHUNK : n, 0);
	}
	meter_end(&m);
	struct done_mark dm = {done, n};
	if (rc == 0)
		rc = store_shards_each(db, run, SHARD_DONE, mark_done, &dm);
	for (int i = 0; i < n && rc == 0; i++) {
		if (done[i])
			continue;
		qs[nq].id = sh[i].shard_id;
		qs[nq].first = sh[i].first_row;
		qs[nq].count = sh[i].row_count;
		nq++;
	}
	/* SQLite learns of the push (new -> ready) from the queue's journal;
	 * pushing is idempotent, so a resumed run may push again */
	if (q && rc == 0 && nq > 0) {
		meter_start(&m, "push", "shards", (long)nq);
		for (size_t i = 0; i < nq && rc == 0; i += CHUNK) {
			size_t got = 0;
			rc = queue_push(q, qs + i, nq - i < CHUNK ? nq - i : CHUNK, &got);
			pushed += got;
			meter_update(&m, (long)(i + CHUNK < nq ? i + CHUNK : nq), 0);
		}
		meter_end(&m);
	}
	if (q && rc == 0)
		rc = queue_seal(q);
	if (rc == 0 && detail)
		*detail = xasprintf("%d rows (%d bad, skipped) in %d shards of %d; %zu new, %zu pushed, %d already done",
				    rows, quarantined, n, K, added, pushed, n - (int)nq);
	if (nshards)
		*nshards = n;
	free(sh);
	free(qs);
	free(done);
	return rc;
}
