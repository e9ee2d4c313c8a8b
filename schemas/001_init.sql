-- 001_init.sql - the first schema of mke's tracking database.
--
-- Modelled on MLflow's tracking schema (runs, params, metrics keyed by step
-- with a timestamp and an is_nan flag), plus what a cluster pipeline needs:
-- the phases of a run, its pseudo-label shards, its artifacts, its event log,
-- and the cursor of the Redis event stream.
--
-- Conventions: timestamps are INTEGER milliseconds since the Unix epoch (as in
-- MLflow); states are lower-case TEXT checked against their lists; every
-- child row names its run and goes with it (ON DELETE CASCADE).
--
-- store.c applies each schemas/NNN_*.sql exactly once, in order, inside one
-- transaction, and records it in schema_migrations (which store.c creates).
-- Never edit a migration that has shipped: add the next number.

CREATE TABLE runs (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	config       TEXT NOT NULL,              -- the run config, JSON text
	config_path  TEXT,                       -- where it was read from
	status       TEXT NOT NULL DEFAULT 'created'
	             CHECK (status IN ('created', 'running', 'done', 'failed', 'cancelled')),
	phase        TEXT NOT NULL DEFAULT 'created'
	             CHECK (phase IN ('created', 'teacher', 'shard', 'label', 'student', 'eval', 'done')),
	created_ms   INTEGER NOT NULL,
	started_ms   INTEGER,                    -- first time it ran
	ended_ms     INTEGER,                    -- set by done / failed / cancelled
	host         TEXT,                       -- where the coordinator ran
	git_rev      TEXT,                       -- of the mke that ran it
	run_dir      TEXT,
	slurm_job_id TEXT,                       -- NULL unless submitted to Slurm
	error        TEXT                        -- why it failed / was cancelled
);
CREATE INDEX runs_created ON runs (created_ms);

-- One value per key and run (MLflow params): the flattened config, the
-- command line, the dataset sizes.
CREATE TABLE params (
	run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	key    TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (run_id, key)
);

-- The latest attempt at each phase of a run; attempts counts resumes.
CREATE TABLE phases (
	run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	phase      TEXT NOT NULL
	           CHECK (phase IN ('teacher', 'shard', 'label', 'student', 'eval')),
	status     TEXT NOT NULL
	           CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
	started_ms INTEGER NOT NULL,
	ended_ms   INTEGER,
	attempts   INTEGER NOT NULL DEFAULT 1,
	detail     TEXT,                         -- free text: counts, error, checkpoint
	PRIMARY KEY (run_id, phase)
);

-- Pseudo-label shards. The coordinator's copy of the Redis queue, kept in
-- step by ingesting the "shard" messages of the event stream.
CREATE TABLE shards (
	run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	shard_id   INTEGER NOT NULL CHECK (shard_id >= 0),
	first_row  INTEGER NOT NULL CHECK (first_row >= 0),   -- in the unlabeled manifest
	row_count  INTEGER NOT NULL CHECK (row_count >= 0),
	state      TEXT NOT NULL DEFAULT 'new'
	           CHECK (state IN ('new', 'ready', 'leased', 'delayed', 'done', 'dead')),
	attempts   INTEGER NOT NULL DEFAULT 0,
	worker     TEXT,                         -- last holder: host:pid:rank
	leased_ms  INTEGER,
	done_ms    INTEGER,
	sha256     TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
	path       TEXT,                         -- the pseudo-label .npy
	error      TEXT,                         -- last error
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (run_id, shard_id)
);
CREATE INDEX shards_state ON shards (run_id, state);

-- Scalars over steps (MLflow metrics). variant is '' for run-wide values
-- (e.g. the teacher's pseudo-label agreement). NaN is stored as value NULL
-- with is_nan = 1 (SQLite has no NaN). A (run, variant, key, step) logged
-- again (a resumed job redoing a step) replaces the earlier value.
CREATE TABLE metrics (
	run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	variant TEXT NOT NULL DEFAULT '',
	key     TEXT NOT NULL,
	step    INTEGER NOT NULL,
	value   REAL,
	is_nan  INTEGER NOT NULL DEFAULT 0 CHECK (is_nan IN (0, 1)),
	ts_ms   INTEGER NOT NULL,
	UNIQUE (run_id, variant, key, step)
);
CREATE INDEX metrics_run_key ON metrics (run_id, key);

-- Files a run produced: checkpoints, pseudo-labels, reports.
CREATE TABLE artifacts (
	run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	path       TEXT NOT NULL,
	kind       TEXT NOT NULL,                -- checkpoint, pseudo_labels, teacher, report, ...
	sha256     TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
	bytes      INTEGER CHECK (bytes IS NULL OR bytes >= 0),
	created_ms INTEGER NOT NULL,
	PRIMARY KEY (run_id, path)
);

-- The run's event log: worker messages, phase changes, warnings.
-- source_id is the Redis stream id a row came from (NULL for local events):
-- a second ingest of the same message is ignored.
CREATE TABLE events (
	id        INTEGER PRIMARY KEY,
	run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	ts_ms     INTEGER NOT NULL,
	kind      TEXT NOT NULL,
	rank      INTEGER,                       -- NULL: the coordinator
	payload   TEXT,                          -- JSON text
	source_id TEXT,
	UNIQUE (run_id, source_id)
);
CREATE INDEX events_run_ts ON events (run_id, ts_ms);

-- How far the coordinator has ingested a Redis stream, written in the same
-- transaction as what it ingested.
CREATE TABLE stream_cursors (
	run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	stream     TEXT NOT NULL,
	last_id    TEXT NOT NULL,
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (run_id, stream)
);
