/*
 * queue.h - the pseudo-label shard queue and the worker event stream, over
 * Redis (hiredis). Used by the coordinator (push, reap, ingest events,
 * cancel) and by every worker rank (take, renew, ack, fail, emit events).
 *
 * Keys, all for one run RUN (the braces are a Redis Cluster hash tag: every
 * key of a run lives in one slot, so the Lua scripts may touch them all):
 *
 *   mke:{RUN}:ready        list    shard ids waiting for a rank (FIFO)
 *   mke:{RUN}:leased       zset    shard id -> lease deadline (ms, Redis clock)
 *   mke:{RUN}:delayed      zset    shard id -> time it may be retried (ms)
 *   mke:{RUN}:dead         list    shard ids that failed max_attempts times
 *   mke:{RUN}:shard:ID     hash    state, attempts, worker, first, count,
 *                                  payload, last_error, sha256, path, *_ms
 *   mke:{RUN}:stats        hash    total (pushed), done (acked, counted once)
 *   mke:{RUN}:sealed       string  set once every shard has been pushed
 *   mke:{RUN}:cancel       string  set by `mke cancel`: the reason
 *   mke:{RUN}:events       stream  JSON messages, field "m" (MAXLEN ~ cap)
 *
 * Delivery is AT-LEAST-ONCE. A rank holds a shard by a lease (deadline in the
 * leased zset, Redis server clock, so ranks' clocks do not matter) that it
 * renews by heartbeat. A lease that runs out goes to the delayed zset with a
 * jittered, capped exponential backoff and then back to ready; after
 * max_attempts deliveries it goes to the dead list with its last error. So a
 * shard can be processed twice (a slow rank whose lease expired). That is
 * harmless because the work is idempotent: the pseudo-label file is written
 * by temp+rename and the ack is accepted only from the current lease holder
 * (worker and attempt must match), and only once: LEASED -> DONE happens at
 * most once, which is what counts. A late ack from an old holder is answered
 * QUEUE_ACK_STALE, a repeated one QUEUE_ACK_DUPLICATE; neither changes state.
 * A reply lost on the network is never resent blindly: a lost take reply
 * leaves a lease nobody renews, which expires and is redelivered.
 *
 * Every state change runs inside one Lua script through the one Lua function
 * that advances a shard's state (advance() in queue.c), which also appends a
 * "shard" message to the events stream in the same atomic step. The
 * coordinator mirrors those messages into SQLite; the stream is the journal.
 */
#ifndef MKE_QUEUE_H
#define MKE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "redis_server.h"
#include "rng.h"

/* The states of a shard. One function advances a shard from one state to the
 * next (the Lua advance() in queue.c for Redis, store_shard_update() for
 * SQLite's copy); shard_state_can_advance() is the table both obey. */
enum shard_state {
	SHARD_NEW = 0,   /* recorded in SQLite by the shard phase, not yet in Redis */
	SHARD_READY,     /* in :ready, waiting for a rank to take it */
	SHARD_LEASED,    /* taken: in :leased with a deadline the holder renews */
	SHARD_DELAYED,   /* failed or lease expired: in :delayed until its backoff ends */
	SHARD_DONE,      /* acked by its holder: file renamed into place, sha256 recorded */
	SHARD_DEAD,      /* failed max_attempts times: in :dead with its last error */
	SHARD_NSTATES
};

/* "new", "ready", ...; NULL for an out-of-range value. */
const char *shard_state_name(enum shard_state s);
/* The state named s, or -1. */
int shard_state_from_name(const char *s);
/* 1 if from -> to is a legal transition:
 *   new -> ready                  push
 *   ready -> leased               take
 *   leased -> done                ack by the holder
 *   leased -> delayed | dead      fail, or lease expired (reap)
 *   delayed -> ready              backoff over (reap)
 *   done -> delayed | dead        the coordinator rejects a bad result
 *   dead -> ready                 revive (`mke resume`), attempts reset
 */
int shard_state_can_advance(enum shard_state from, enum shard_state to);

struct queue_opts {
	int lease_ms;          /* lease length; default 30000 */
	int max_attempts;      /* deliveries before dead-letter; default 3 */
	int backoff_base_ms;   /* delay after the first failure; default 1000 */
	int backoff_cap_ms;    /* longest delay; default 60000 */
	int poll_ms;           /* longest sleep of queue_take between polls; default 200 */
	long events_cap;       /* approximate MAXLEN of the events stream; default 1000000 */
	int reap_limit;        /* most expired leases / due retries moved per call; default 1000 */
	uint64_t jitter_seed;  /* 0: from pid and clock */
};

/* The defaults above. */
void queue_opts_default(struct queue_opts *o);

#define QUEUE_SCRIPTS 9

struct queue {
	struct redis_conn *rc; /* borrowed: the caller keeps it open while q lives */
	char *run;
	char *keys[8];         /* ready leased delayed dead events stats sealed cancel */
	char *shard_prefix;    /* "mke:{RUN}:shard:" */
	struct queue_opts o;
	char sha[QUEUE_SCRIPTS][41];
	struct rng jitter;
	uint32_t jitter_n;
};

/* Validate o (NULL: defaults; zero fields take defaults) and the run id
 * ([A-Za-z0-9._-], 1..64 chars), build the key names, load the scripts.
 * Contradictory options are rejected with a message naming them. Returns 0
 * or -1. queue_release() frees what q owns (not rc). */
int queue_init(struct queue *q, struct redis_conn *rc, const char *run, const struct queue_opts *o);
void queue_release(struct queue *q);

/* ---- coordinator side ---------------------------------------------------- */

struct queue_shard {
	int64_t id;            /* >= 0, unique in the run */
	int64_t first;         /* first manifest row */
	int64_t count;         /* samples */
	const char *payload;   /* opaque to the queue (JSON task, see the schema); NULL = "" */
};

/* Push shards (NEW -> READY), several hundred per script call. Idempotent: an
 * id already known to Redis (in any state) is skipped, so a coordinator that
 * restarts may push everything again. *pushed (may be NULL) gets how many were
 * new. */
int queue_push(struct queue *q, const struct queue_shard *s, size_t n, size_t *pushed);
/* Mark the run's shard list complete: once sealed and nothing is ready,
 * leased or delayed, queue_take answers QUEUE_DRAINED. */
int queue_seal(struct queue *q);

/* Expired leases -> delayed (backoff) or dead (max_attempts); delayed whose
 * time has come -> ready. Workers' takes also reap, so a run progresses while
 * the coordinator is away. Counts may be NULL. */
int queue_reap(struct queue *q, size_t *expired, size_t *promoted);

/* A done shard whose result the coordinator found bad (file missing, sha256
 * mismatch): DONE -> delayed or dead, as a failure of that attempt. Returns 1
 * if rejected, 0 if the shard was not done, -1 on error. */
int queue_reject(struct queue *q, int64_t id, const char *error);
/* Dead shards -> ready with attempts reset (`mke resume`). *revived may be NULL. */
int queue_revive(struct queue *q, const int64_t *ids, size_t n, size_t *revived);

struct queue_counts {
	long ready, leased, delayed, done, dead, total;
	int sealed, cancelled;
};
/* An atomic snapshot of the counts. */
int queue_counts(struct queue *q, struct queue_counts *c);

/* One shard's Redis record. Strings are NULL when absent and valid only
 * during the callback. */
struct queue_shard_info {
	int64_t id;
	enum shard_state state;
	int attempts;
	int64_t first, count;
	int64_t leased_ms, deadline_ms, done_ms, updated_ms;
	const char *worker, *sha256, *path, *last_error, *payload;
};
typedef int (*queue_shard_cb)(void *arg, const struct queue_shard_info *s);
/* Fetch the records of ids (pipelined) and call cb for each that exists, in
 * order; cb returning non-zero stops (its value is returned). Used to
 * reconcile SQLite after a gap in the event stream. */
int queue_shards_each(struct queue *q, const int64_t *ids, size_t n, queue_shard_cb cb, void *arg);
/* The ids currently in one container: SHARD_READY, SHARD_LEASED,
 * SHARD_DELAYED or SHARD_DEAD. *ids is malloc'd (caller frees), in list or
 * score order. */
int queue_ids(struct queue *q, enum shard_state which, int64_t **ids, size_t *n);

/* Ask every worker to stop: takes answer QUEUE_CANCELLED, renewals report it. */
int queue_cancel(struct queue *q, const char *reason);
/* 1 and *reason (caller frees; may be NULL) when cancelled, 0 if not, -1 on error. */
int queue_cancelled(struct queue *q, char **reason);

/* Delete every key of the run (after it ends). */
int queue_purge(struct queue *q);

/* ---- worker side ---------------------------------------------------------- */

enum queue_take_status {
	QUEUE_ERROR = -1,
	QUEUE_EMPTY = 0,     /* nothing to take within wait_ms; work may still come */
	QUEUE_GOT = 1,       /* *lease filled in */
	QUEUE_DRAINED = 2,   /* sealed and nothing ready, leased or delayed: finished */
	QUEUE_CANCELLED = 3, /* the run was cancelled */
};

struct queue_lease {
	int64_t id, first, count;
	int attempt;           /* 1 for the first delivery; the lease token with the worker */
	int64_t deadline_ms;   /* Redis clock */
	char *payload;         /* owned by the lease: queue_lease_release() */
};
void queue_lease_release(struct queue_lease *l);

/* Take one shard for worker (e.g. "host:pid:rank"), waiting up to wait_ms
 * (0: one try). It never blocks inside Redis: each try is one non-blocking
 * script call (which also reaps), and between tries it sleeps a growing,
 * jittered interval up to poll_ms, so no read outlives the socket timeout. */
int queue_take(struct queue *q, const char *worker, int wait_ms, struct queue_lease *lease);

#define QUEUE_TAKE_MAX 256
/* queue_take for up to max (1..QUEUE_TAKE_MAX) shards in one script call:
 * on QUEUE_GOT, leases[0..*n) are filled (1 <= *n <= max, in queue order;
 * each released with queue_lease_release). A rank whose shards take little
 * time each takes several per round trip, and acks them together, so that
 * Redis is a small part of its time (docs/scaling.md). */
int queue_take_n(struct queue *q, const char *worker, int wait_ms, struct queue_lease *leases,
		 size_t max, size_t *n);

/* Renew n leases held by worker (one script call). held[i] (may be NULL) gets
 * 1 if lease i is still held and was extended by lease_ms, 0 if it was lost
 * (expired and taken elsewhere: stop working on it). *cancelled (may be NULL)
 * gets 1 when the run was cancelled. */
int queue_renew(struct queue *q, const char *worker, const struct queue_lease *leases,
		size_t n, int *held, int *cancelled);

enum queue_ack_status {
	QUEUE_ACK_OK = 1,        /* LEASED -> DONE: counted */
	QUEUE_ACK_DUPLICATE = 2, /* already done: not counted again */
	QUEUE_ACK_STALE = 3,     /* this worker/attempt no longer holds the lease: ignored */
	QUEUE_ACK_UNKNOWN = 4,   /* no such shard */
};
/* "ok", "duplicate", "stale", "unknown" */
const char *queue_ack_status_name(int status);

struct queue_ack {
	int64_t id;
	int attempt;           /* from the lease */
	const char *sha256;    /* 64 lowercase hex digits of the file's bytes */
	const char *path;      /* where the file was renamed to */
};
/* Ack n shards (one script call). Call only after the file is renamed into
 * place and its sha256 computed. status[i] (may be NULL) gets a
 * queue_ack_status. Returns 0 unless the call itself failed. */
int queue_ack(struct queue *q, const char *worker, const struct queue_ack *acks, size_t n,
	      int *status);

/* Give a held shard back as failed with error: delayed (backoff) or, at
 * max_attempts, dead. *next (may be NULL) gets SHARD_DELAYED or SHARD_DEAD.
 * Returns 1 if it was held, 0 if the lease was already lost, -1 on error. */
int queue_fail(struct queue *q, const char *worker, const struct queue_lease *lease,
	       const char *error, enum shard_state *next);

/* ---- the event stream ----------------------------------------------------- */

/* Append messages (JSON text, schemas/queue-message.schema.json); each is
 * checked with queue_msg_parse first. Pipelined: one round trip. */
int queue_events_add(struct queue *q, const char *const *json, size_t n);

/* Helpers that build and append one message; ts is the local wall clock. */
int queue_emit_metric(struct queue *q, int rank, const char *variant, int64_t step,
		      const char *key, double value);
int queue_emit_progress(struct queue *q, int rank, const char *phase, int64_t done,
			int64_t total);
int queue_emit_log(struct queue *q, int rank, const char *level, const char *text);
/* Any message given as a cJSON object (not consumed); "ts" is added if absent. */
int queue_emit_json(struct queue *q, const cJSON *msg);

#define QUEUE_ID_MAX 48  /* "ms-seq" stream ids fit */

typedef int (*queue_event_cb)(void *arg, const char *id, const char *json, size_t len);
/* Read up to count messages after last_id ("0-0" at first), waiting up to
 * block_ms (0: no wait) for the first one. block_ms must be at most half the
 * connection's socket timeout (the one hiredis timeout covers this read).
 * cb gets each message in order; after each cb that returns 0, last_id is
 * advanced to its id, so a caller that persists last_id with what cb wrote
 * (in one SQLite transaction) ingests nothing twice. A cb returning non-zero
 * stops the read (that value is returned, last_id stays before that message).
 * *gap (may be NULL) is set to 1 when messages after last_id may have been
 * trimmed away (MAXLEN ~ events_cap) before they could be read: the caller
 * must then reconcile its shard records from queue_shards_each. It is never
 * 0 when something was lost; it can be 1 without a loss only when the reader
 * lagged by about events_cap messages. Returns the number of messages
 * handled, or -1. */
int queue_events_read(struct queue *q, char last_id[QUEUE_ID_MAX], int block_ms, int count,
		      queue_event_cb cb, void *arg, int *gap);

/* ---- messages ------------------------------------------------------------- */

enum queue_msg_type {
	QMSG_METRIC = 1,   /* a scalar: variant, step, key, value */
	QMSG_PROGRESS,     /* phase progress of a rank: done of total */
	QMSG_LOG,          /* a line for the run's event log: level, text */
	QMSG_SHARD,        /* a shard transition, written by the queue scripts */
	QMSG_HELLO,        /* a rank started: host, pid */
	QMSG_BYE,          /* a rank stopped: status */
};

/* A parsed message. Every string points into root and lives until
 * queue_msg_release(). Fields that the type does not use are 0/NULL. */
struct queue_msg {
	enum queue_msg_type type;
	int64_t ts_ms;           /* sender's clock (shard: the Redis server's) */
	int rank;                /* -1 when absent */
	const char *worker;
	const char *variant, *key;            /* metric */
	int64_t step;
	double value;                         /* NaN when sent as null */
	const char *phase;                    /* progress */
	int64_t done, total;
	const char *level, *text;             /* log */
	int64_t shard;                        /* shard */
	enum shard_state from, to;
	int attempt;
	const char *sha256, *path, *error;
	int64_t due_ms, deadline_ms;
	const char *host;                     /* hello */
	long pid;
	const char *status;                   /* bye */
	cJSON *root;
};

/* Parse and validate one message (outside bytes: never trusted). Unknown
 * fields are allowed (newer senders); missing or mistyped required ones are
 * errors that name the field. Returns 0, or -1 with the reason in err (may be
 * NULL; nothing is printed). On 0 the caller calls queue_msg_release(); on -1
 * m holds nothing. */
int queue_msg_parse(struct queue_msg *m, const char *json, size_t len, char *err, size_t errlen);
void queue_msg_release(struct queue_msg *m);

/* Check that path exists and its bytes hash to sha256 (the coordinator's
 * check before it records a done shard). 0 if so, -1 with a message if not. */
int queue_verify_file(const char *path, const char *sha256);

#endif
