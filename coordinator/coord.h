/*
 * coord.h - the coordinator of one run: the only SQLite writer, the owner of
 * the run's state machine, the private redis-server (embedded default) and
 * the worker job it launches and supervises.
 *
 *   created -> teacher -> shard -> label -> student -> eval -> done
 *
 * The worker job drives the compute; the coordinator follows it through the
 * run's event stream (ingested into SQLite in one transaction with the
 * stream cursor, so nothing is recorded twice), cuts and pushes the shards
 * when the teacher is ready, reaps expired leases, verifies each done shard's
 * file against its sha256, and restarts the job (up to max_restarts) when it
 * dies. `mke run` creates a run and drives it; `mke resume` drives an
 * existing one from what SQLite says is finished.
 */
#ifndef MKE_COORD_H
#define MKE_COORD_H

#include <sys/types.h>

#include "config.h"
#include "progress.h"
#include "queue.h"
#include "redis_server.h"
#include "store.h"

struct coord_opts {
	int ranks;              /* worker processes; 0: number of cores */
	const char *redis_url;  /* NULL: a private redis-server in the run dir */
	const char *run_dir;    /* NULL: runs/<run id> */
	const char *db_path;    /* NULL: <run dir>/mke.db */
	const char *setting;    /* grid setting to run; NULL: the first */
	int max_restarts;       /* worker job restarts before the run fails; default 3 */
	const char *launcher;   /* "mpirun" (default) or "srun" (inside a Slurm allocation) */
	const char *hostfile;   /* mpirun --hostfile FILE; NULL: none */
	int detach;             /* unused for now */
	enum progress_mode output; /* text (default), quiet or json: progress.h */
	const char *notify_url; /* POST the summary here when the run ends: notify.h */
};

struct coord {
	struct coord_opts o;
	struct run_config c;
	char *run_id, *run_dir, *db_path, *config_copy, *redis_url;
	const char *password;   /* MKE_REDIS_PASSWORD or config; never logged */
	struct store *db;
	struct redis_server srv;
	int own_redis;
	struct redis_conn rc;
	struct queue q;
	pid_t job;
	int restarts;
	int job_status;         /* last exit status of the job */
	char cursor[QUEUE_ID_MAX];
	enum run_phase phase;
	int nshards;
	int sharded;            /* shards pushed and sealed in this coordinator's life */
	int teacher_ready, student_done, eval_done;
	int cancelled;
	char *cancel_reason;
	double cancel_t0;         /* when cancelled (now_seconds) */
	double last_reap;
	int created;            /* the run is in the database: it gets a summary */
	int resumed;            /* driven by `mke resume` */
	struct progress prog;
	long spe;               /* optimizer steps per epoch of prog.item; 0: unknown */
	long first_step;        /* the first train_loss step seen of prog.item */
};

/* Create a new run from a config and drive it to the end. */
int coord_run_new(const char *config_path, const struct coord_opts *o, char **run_id_out);
/* Drive an existing run (after a dead coordinator or worker job). */
int coord_resume(const char *run_id, const struct coord_opts *o);

/* The path of the run database a command should open: --db, else
 * $MKE_DB, else runs/mke.db... see docs/cli.md. Caller frees. */
char *coord_default_db(const char *db_opt, const char *run_dir);

#endif
