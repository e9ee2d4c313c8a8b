/*
 * store.h - the run database: SQLite in WAL mode, the durable record of
 * runs, params, phases, shards, metrics, artifacts, events and stream
 * cursors (schemas/NNN_*.sql, docs/database.md).
 *
 * Only the coordinator writes (one process, one connection): SQLite with
 * many writers, or on a network filesystem, is a known failure mode, so
 * worker ranks never open the database and report through Redis instead.
 * Readers (`mke status`, `mke export`) open it with STORE_READONLY and may
 * run while the coordinator writes (WAL).
 *
 * Every statement is prepared with bound parameters; no SQL is ever built
 * from values. Every failing sqlite call is reported as
 *   error: store.c:123: sqlite 'run.db': <what>: <sqlite3_errmsg>
 * and the function returns -1. A struct store is not thread-safe.
 *
 * Migrations are the files schemas/NNN_name.sql, embedded at build time
 * ($(O)/gen/migrations.c, made by the Makefile), and applied in order, each
 * exactly once, in one transaction when the database is opened for writing.
 * schema_migrations records them; PRAGMA user_version mirrors the latest.
 */
#ifndef MKE_STORE_H
#define MKE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "queue.h" /* enum shard_state */

/* One embedded migration: lines of SQL text, NULL-terminated. The generated
 * table store_migrations[] ends with {NULL, NULL}. */
struct store_migration {
	const char *name;                /* "001_init.sql": the number is the version */
	const char *const *lines;
};
extern const struct store_migration store_migrations[];

/* A run's overall status. */
enum run_status {
	RUN_CREATED = 0,   /* recorded, nothing started */
	RUN_RUNNING,       /* a coordinator is driving it */
	RUN_DONE,          /* every phase finished */
	RUN_FAILED,        /* stopped by an error (runs.error says which) */
	RUN_CANCELLED,     /* stopped by `mke cancel` */
	RUN_NSTATUS
};
/* The last phase a run entered: created -> teacher -> shard -> label ->
 * student -> eval -> done. A failed or cancelled run keeps the phase it
 * stopped in (status says how it ended). */
enum run_phase {
	PHASE_CREATED = 0,
	PHASE_TEACHER,
	PHASE_SHARD,
	PHASE_LABEL,
	PHASE_STUDENT,
	PHASE_EVAL,
	PHASE_DONE,
	PHASE_N
};
/* The status of one attempt at one phase. */
enum phase_status {
	PHASE_RUNNING = 0,
	PHASE_OK,
	PHASE_FAILED,
	PHASE_CANCELLED,
	PHASE_NSTATUS
};
/* Names as stored ("running", "label", "done", ...); NULL when out of range.
 * The _from_name functions return -1 for an unknown name. */
const char *run_status_name(enum run_status s);
int run_status_from_name(const char *s);
const char *run_phase_name(enum run_phase p);
int run_phase_from_name(const char *s);
const char *phase_status_name(enum phase_status s);
int phase_status_from_name(const char *s);

struct store;

enum { STORE_READONLY = 1 };

/* Open (creating it with mode 0600 if absent) and migrate the database at
 * path (":memory:" works for tests). With STORE_READONLY nothing is written:
 * the schema must already be current. Returns NULL after reporting why (a
 * schema newer than this mke, WAL impossible on this filesystem, ...).
 * The caller owns the store: store_close(). */
struct store *store_open(const char *path, unsigned flags);
void store_close(struct store *s);

/* The schema version (the highest migration applied), or -1. */
int store_schema_version(struct store *s);
/* The number of migrations embedded in this binary. */
int store_schema_latest(void);
/* PRAGMA integrity_check and foreign_key_check: 0 if both are clean. */
int store_integrity_check(struct store *s);

/* Transactions (nest: inner levels are savepoints). Batch functions below
 * open their own when none is open. Writing an ingest batch and its stream
 * cursor between store_begin and store_commit makes the pair atomic. */
int store_begin(struct store *s);
int store_commit(struct store *s);
int store_rollback(struct store *s);

/* ---- runs ---------------------------------------------------------------- */

/* A row of runs. For store_run_create the caller fills id, name, config
 * and what it knows (NULL/0 for unknown); status, phase and created_ms are
 * set by the store. Timestamps are ms since the epoch, 0 for NULL. */
struct store_run {
	char *id, *name, *config, *config_path;
	enum run_status status;
	enum run_phase phase;
	int64_t created_ms, started_ms, ended_ms;
	char *host, *git_rev, *run_dir, *slurm_job_id, *error;
};

/* Insert a new run (status created, phase created). An existing id is an error. */
int store_run_create(struct store *s, const struct store_run *r);
/* 1 and *out filled (strings owned by out: store_run_release), 0 if no such
 * run, -1 on error. */
int store_run_get(struct store *s, const char *id, struct store_run *out);
void store_run_release(struct store_run *r);
/* Set the status. RUNNING sets started_ms the first time and clears
 * ended_ms/error (a resume); DONE, FAILED and CANCELLED set ended_ms and
 * error (NULL for none). Returns 0, or -1 (also when there is no such run). */
int store_run_set_status(struct store *s, const char *id, enum run_status st, const char *error);
int store_run_set_phase(struct store *s, const char *id, enum run_phase ph);
int store_run_set_slurm_job(struct store *s, const char *id, const char *job_id);

typedef int (*store_run_cb)(void *arg, const struct store_run *r);
/* Every run, newest first. Strings are valid during the callback only; a
 * callback returning non-zero stops the walk and that value is returned. The
 * same holds for every _each function below. */
int store_runs_each(struct store *s, store_run_cb cb, void *arg);

/* ---- params -------------------------------------------------------------- */

/* Insert or replace one param. */
int store_param_set(struct store *s, const char *run, const char *key, const char *value);
typedef int (*store_param_cb)(void *arg, const char *key, const char *value);
int store_params_each(struct store *s, const char *run, store_param_cb cb, void *arg);

/* ---- phases -------------------------------------------------------------- */

struct store_phase {
	enum run_phase phase;
	enum phase_status status;
	int64_t started_ms, ended_ms;
	int attempts;
	const char *detail;
};

/* Start (or restart, attempts + 1) a phase: status running, ended cleared;
 * also sets the run's phase and its status to running. ph must be one of
 * teacher..eval. */
int store_phase_begin(struct store *s, const char *run, enum run_phase ph);
/* End the phase's current attempt with st (not PHASE_RUNNING) and detail (may be NULL). */
int store_phase_end(struct store *s, const char *run, enum run_phase ph, enum phase_status st,
		    const char *detail);
typedef int (*store_phase_cb)(void *arg, const struct store_phase *p);
/* In lifecycle order. */
int store_phases_each(struct store *s, const char *run, store_phase_cb cb, void *arg);

/* ---- shards -------------------------------------------------------------- */

struct store_shard {
	int64_t shard_id, first_row, row_count;
	enum shard_state state;
	int attempts;
	const char *worker;
	int64_t leased_ms, done_ms;      /* 0 for NULL */
	const char *sha256, *path, *error;
	int64_t updated_ms;
};

/* Record n shards (state from each row, normally SHARD_NEW) in one
 * transaction. Rows already present are left alone (a re-run of the shard
 * phase); *added (may be NULL) gets how many were new. */
int store_shard_add(struct store *s, const char *run, const struct store_shard *sh, size_t n,
		    size_t *added);

/* A change to one shard, normally from a "shard" message of the event stream. */
struct store_shard_change {
	int64_t shard_id;
	enum shard_state state;          /* the new state */
	int attempts;                    /* < 0: unchanged */
	const char *worker, *sha256, *path, *error;  /* NULL: unchanged */
	int64_t ts_ms;                   /* when (0: now): leased_ms / done_ms / updated_ms */
	int reconcile;                   /* 1: Redis's record is the truth, any transition */
};
/* The one function that changes a shard's state in SQLite. A transition that
 * shard_state_can_advance() forbids is ignored with a warning (unless
 * reconcile); done -> done is ignored silently, which is how a shard
 * delivered or acked twice is counted once. Returns 1 if applied, 0 if
 * ignored (or no such shard), -1 on error. */
int store_shard_update(struct store *s, const char *run, const struct store_shard_change *c);

/* counts[state] for every state (zeros for states with no shard). */
int store_shard_counts(struct store *s, const char *run, long counts[SHARD_NSTATES]);
typedef int (*store_shard_cb)(void *arg, const struct store_shard *sh);
/* By shard id; state < 0 for every state. */
int store_shards_each(struct store *s, const char *run, int state, store_shard_cb cb, void *arg);

/* ---- metrics ------------------------------------------------------------- */

struct store_metric {
	const char *variant;             /* "" or NULL for run-wide */
	const char *key;
	int64_t step;
	double value;                    /* NaN allowed (stored as is_nan) */
	int64_t ts_ms;                   /* 0: now */
};
/* Insert n metrics in one transaction; a repeated (variant, key, step) replaces. */
int store_metric_add(struct store *s, const char *run, const struct store_metric *m, size_t n);
typedef int (*store_metric_cb)(void *arg, const struct store_metric *m);
/* Filtered by variant and key (NULL: any), ordered by variant, key, step. */
int store_metrics_each(struct store *s, const char *run, const char *variant, const char *key,
		       store_metric_cb cb, void *arg);
/* The last step of every (variant, key): what `mke status` shows. */
int store_metrics_latest(struct store *s, const char *run, store_metric_cb cb, void *arg);

/* ---- artifacts ----------------------------------------------------------- */

struct store_artifact {
	const char *path, *kind, *sha256; /* sha256 may be NULL */
	int64_t bytes;                    /* -1: unknown */
	int64_t created_ms;
};
/* Insert or replace (by path). */
int store_artifact_add(struct store *s, const char *run, const char *path, const char *kind,
		       const char *sha256, int64_t bytes);
typedef int (*store_artifact_cb)(void *arg, const struct store_artifact *a);
int store_artifacts_each(struct store *s, const char *run, store_artifact_cb cb, void *arg);

/* ---- events -------------------------------------------------------------- */

struct store_event {
	int64_t id, ts_ms;
	const char *kind;
	int rank;                        /* -1: the coordinator */
	const char *payload, *source_id; /* may be NULL */
};
/* Append an event. source_id (the stream id, or NULL) makes it idempotent:
 * returns 1 if inserted, 0 if that source_id was already ingested, -1 on error. */
int store_event_add(struct store *s, const char *run, int64_t ts_ms, const char *kind, int rank,
		    const char *payload, const char *source_id);
typedef int (*store_event_cb)(void *arg, const struct store_event *e);
/* Events with ts_ms >= since_ms, oldest first. */
int store_events_each(struct store *s, const char *run, int64_t since_ms, store_event_cb cb,
		      void *arg);

/* ---- stream cursors ------------------------------------------------------- */

/* 1 and the last id copied into out (size len), 0 if none yet, -1 on error. */
int store_cursor_get(struct store *s, const char *run, const char *stream, char *out, size_t len);
int store_cursor_set(struct store *s, const char *run, const char *stream, const char *last_id);

#endif
