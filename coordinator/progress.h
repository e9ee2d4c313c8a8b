/*
 * progress.h - what `mke run` and `mke resume` show while a run goes on, and
 * the summary they end with (also the body of the --notify webhook).
 *
 * The coordinator tells the display what happened (a phase began, a shard
 * was labeled, a model reached an epoch); the display decides what to print:
 *
 *   text   the info lines on stderr ("run X: phase label"); on a terminal a
 *          live line redrawn in place (bar, done/total, epoch/epochs, rate,
 *          ETA), otherwise a plain progress line every MKE_PROGRESS_INTERVAL
 *          seconds (default 10); at the end a summary on stdout.
 *   quiet  errors and warnings on stderr, the summary on stdout; nothing else.
 *   json   one JSON object per line on stdout per event (run, job, phase,
 *          progress, end; docs/cli.md lists the fields); errors and warnings
 *          stay on stderr as text.
 */
#ifndef MKE_PROGRESS_H
#define MKE_PROGRESS_H

#include <cjson/cJSON.h>

enum progress_mode {
	PROGRESS_TEXT = 0,
	PROGRESS_QUIET,
	PROGRESS_JSON,
};

struct progress {
	enum progress_mode mode;
	int tty;                 /* text mode with stderr a terminal: one live line */
	const char *run_id;      /* borrowed; set before the first event */
	const char *phase;       /* static phase name; NULL before the first */
	double phase_t0;         /* when the phase began (now_seconds) */
	double last_out;         /* when a line or event was last written */
	double interval;         /* plain lines / json events: seconds between two */
	int dirty;               /* something changed since the last output */
	int drawn;               /* a live line is on the terminal */
	/* what the phase has done; the coordinator sets them, -1/0 when unknown */
	long done, total;        /* shards (label) or models (student) */
	char item[64];           /* the model now training ("mm_student/81") */
	long epoch, epochs;      /* of item (teacher or student) */
};

void progress_init(struct progress *p, enum progress_mode mode);
/* A phase begins: clears the counters, prints its line or event. */
void progress_phase(struct progress *p, const char *phase);
/* Write the live line, a plain line or a progress event when one is due
 * (force: now, if anything changed). Cheap; called every loop round. */
void progress_tick(struct progress *p, int force);
/* Take the live line off the terminal before another line is printed. */
void progress_clear(struct progress *p);
/* json mode: print ev as one line with "event": name, "ts" and "run"
 * added, and free it. Other modes: free it. */
void progress_event(struct progress *p, const char *name, cJSON *ev);

struct store;
/* The summary of a finished (or failed, or cancelled) run from its
 * database: run, name, status, error, slurm_job, times, phases with their
 * seconds, the latest metrics and the result (teacher and best student).
 * Caller frees with cJSON_Delete; NULL when the run cannot be read. */
cJSON *run_summary(struct store *db, const char *run);
/* Print the summary for a person: run, dir and db lines when header is set,
 * then status with phase times and the result. */
void run_summary_print(const cJSON *s, int header);

#endif
