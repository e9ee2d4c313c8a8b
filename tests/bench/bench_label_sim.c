/*
 * bench_label_sim.c - a simulated label phase: can the coordinator and Redis
 * keep up with many ranks? P worker processes (fork, no MPI) lease shards
 * from a real redis-server through the real queue code (common/queue.h) and
 * a no-op teacher: each shard's pseudo-label file is written with
 * labels_write (temp + fsync + rename, as worker/main.c does) holding
 * uniform probabilities, and acked with its sha256. Meanwhile this process
 * plays the coordinator: it ingests the event stream into SQLite in
 * transactions of up to 500 messages, verifies every acked file against its
 * digest and records it (coordinator/coord.c's record_shard), and reaps every
 * 0.5 s, until the queue is drained.
 *
 *   bench_label_sim REDIS_URL DIR WORKERS SHARDS SHARD_SIZE [BATCH]
 *
 * BATCH (default 1) is how many shards a worker takes per queue_take_n and
 * acks per queue_ack, as worker/main.c does when shards are quick. The
 * simulated worker takes, labels and acks in one thread; worker/main.c acks
 * and takes the next batch ahead on its heartbeat thread, which moves the
 * round trips off its label loop but makes the same calls, so Redis's and
 * the coordinator's CPU per shard (what this measures) are the same.
 *
 * DIR gets the SQLite file and the label files. Prints key value lines:
 *
 *   sim_shards_per_s      shards done per second of the phase (wall)
 *   sim_samples_per_s     the same in rows
 *   sim_push_shards_per_s queue_push + queue_seal of every shard
 *   sim_coord_cpu_s       this process's CPU time during the phase
 *   sim_redis_cpu_s       redis-server's CPU time (INFO cpu) during the phase
 *   sim_workers_cpu_s     the worker processes' CPU time, all together
 *   sim_coord_us_per_shard, sim_redis_us_per_shard  CPU per shard
 *   sim_coord_share, sim_redis_share   their CPU over all CPU of the phase
 *   sim_worker_queue_ms_per_shard  median over workers of the time inside
 *                         queue_take + queue_ack per shard (the round trips
 *                         a rank waits for)
 *   sim_coord_max_shards_per_s, sim_redis_max_shards_per_s  1 / CPU per
 *                         shard: the rate at which each would use one core
 *
 * On a machine with fewer cores than workers the phase is CPU-bound, so the
 * wall-clock rate says little; the CPU per shard of the coordinator and of
 * Redis is what bounds a cluster (docs/scaling.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "labels.h"
#include "queue.h"
#include "redis_server.h"
#include "store.h"
#include "util.h"

#define RUN "bench-sim"
#define CLASSES 2

struct worker_stats {
	long shards, samples;
	double queue_s, wall_s;
};

static double cpu_of(const struct rusage *u)
{
	return (double)u->ru_utime.tv_sec + u->ru_utime.tv_usec * 1e-6 + (double)u->ru_stime.tv_sec +
	       u->ru_stime.tv_usec * 1e-6;
}

/* redis-server's CPU seconds (main thread and others), or -1. */
static double redis_cpu(struct redis_conn *rc)
{
	redisReply *r = redis_conn_cmd(rc, "INFO cpu");
	double total = -1;
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *s = strstr(r->str, "used_cpu_sys:"), *u = strstr(r->str, "used_cpu_user:");
		if (s && u)
			total = atof(s + 13) + atof(u + 14);
	}
	if (r)
		freeReplyObject(r);
	return total;
}

/* One rank of the simulated label phase (worker/main.c's phase_label without
 * the teacher and the heartbeat: a shard takes far less than a lease). */
static int label_one(const char *dir, const struct queue_lease *l, char sha[65], char **path)
{
	int n = (int)l->count;
	float *probs = xmalloc(sizeof(float) * (size_t)n * CLASSES);
	char **names = xmalloc(sizeof(char *) * (size_t)n);
	for (int i = 0; i < n; i++) {
		names[i] = xasprintf("u-%07lld", (long long)(l->first + i));
		for (int k = 0; k < CLASSES; k++)
			probs[(size_t)i * CLASSES + k] = 1.0f / CLASSES;
	}
	*path = xasprintf("%s/labels/shard-%06lld.npy", dir, (long long)l->id);
	int rc = labels_write(*path, names, probs, n, CLASSES, sha);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(probs);
	return rc;
}

static int worker_main(const char *url, const char *dir, int index, int batch, int out_fd)
{
	struct redis_conn rc;
	struct queue q;
	if (redis_conn_open(&rc, url, NULL) != 0 || queue_init(&q, &rc, RUN, NULL) != 0)
		return 1;
	char id[64];
	snprintf(id, sizeof id, "sim:%ld:%d", (long)getpid(), index);
	struct worker_stats st = {0};
	double t0 = now_seconds();
	struct queue_lease *l = xcalloc((size_t)batch, sizeof *l);
	struct queue_ack *ack = xcalloc((size_t)batch, sizeof *ack);
	char (*sha)[65] = xcalloc((size_t)batch, sizeof *sha);
	char **path = xcalloc((size_t)batch, sizeof *path);
	int *status = xcalloc((size_t)batch, sizeof *status);
	for (;;) {
		size_t n = 0;
		double a = now_seconds();
		int s = queue_take_n(&q, id, 1000, l, (size_t)batch, &n);
		st.queue_s += now_seconds() - a;
		if (s == QUEUE_ERROR)
			return 1;
		if (s == QUEUE_DRAINED || s == QUEUE_CANCELLED)
			break;
		if (s == QUEUE_EMPTY)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (label_one(dir, &l[i], sha[i], &path[i]) != 0)
				return 1;
			ack[i] = (struct queue_ack){.id = l[i].id, .attempt = l[i].attempt, .sha256 = sha[i],
						    .path = path[i]};
		}
		a = now_seconds();
		int arc = queue_ack(&q, id, ack, n, status);
		st.queue_s += now_seconds() - a;
		for (size_t i = 0; i < n; i++) {
			if (arc == 0 && status[i] == QUEUE_ACK_OK) {
				st.shards++;
				st.samples += l[i].count;
			}
			free(path[i]);
			queue_lease_release(&l[i]);
		}
	}
	free(l);
	free(ack);
	free(sha);
	free(path);
	free(status);
	st.wall_s = now_seconds() - t0;
	queue_release(&q);
	redis_conn_close(&rc);
	return write(out_fd, &st, sizeof st) == (ssize_t)sizeof st ? 0 : 1;
}

struct coord_sim {
	struct store *db;
	struct queue *q;
	long done, rejected;
};

/* coordinator/coord.c's on_event for shard messages (record_shard): verify
 * an acked file, record it, advance SQLite's copy of the shard. */
static int on_event(void *arg, const char *id, const char *json, size_t len)
{
	struct coord_sim *co = arg;
	struct queue_msg m;
	char err[256];
	(void)id;
	if (queue_msg_parse(&m, json, len, err, sizeof err) != 0)
		return 0;
	if (m.type == QMSG_SHARD) {
		struct store_shard_change ch = {.shard_id = m.shard, .state = m.to, .attempts = m.attempt,
						.worker = m.worker, .sha256 = m.sha256, .path = m.path,
						.error = m.error, .ts_ms = m.ts_ms};
		int ok = 1;
		if (m.to == SHARD_DONE) {
			if (!m.path || !m.sha256 || queue_verify_file(m.path, m.sha256) != 0) {
				queue_reject(co->q, m.shard, "pseudo-label file missing or digest mismatch");
				co->rejected++;
				ok = 0;
			} else {
				store_artifact_add(co->db, RUN, m.path, "pseudo_labels", m.sha256, -1);
				co->done++;
			}
		}
		if (ok)
			store_shard_update(co->db, RUN, &ch);
	}
	queue_msg_release(&m);
	return 0;
}

static int ingest(struct coord_sim *co, char cursor[QUEUE_ID_MAX], int block_ms)
{
	for (;;) {
		if (store_begin(co->db) != 0)
			return -1;
		int n = queue_events_read(co->q, cursor, block_ms, 500, on_event, co, NULL);
		if (n > 0)
			store_cursor_set(co->db, RUN, "events", cursor);
		if (store_commit(co->db) != 0 || n < 0)
			return -1;
		if (n < 500)
			return 0;
		block_ms = 0;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: bench_label_sim REDIS_URL DIR WORKERS SHARDS SHARD_SIZE [BATCH]\n");
		return 2;
	}
	const char *url = argv[1], *dir = argv[2];
	int P = atoi(argv[3]), nshards = atoi(argv[4]), K = atoi(argv[5]);
	int batch = argc == 7 ? atoi(argv[6]) : 1;
	if (P < 1 || P > 1024 || nshards < 1 || K < 1 || batch < 1 || batch > QUEUE_TAKE_MAX) {
		mke_error("WORKERS must be 1..1024, SHARDS and SHARD_SIZE positive, BATCH 1..%d",
			  QUEUE_TAKE_MAX);
		return 2;
	}
	char *labels = xasprintf("%s/labels", dir), *dbpath = xasprintf("%s/sim.db", dir);
	if (mkdir_p(labels, 0750) != 0)
		return 1;
	struct store *db = store_open(dbpath, 0);
	struct redis_conn rc;
	struct queue q;
	if (!db || redis_conn_open(&rc, url, NULL) != 0 || queue_init(&q, &rc, RUN, NULL) != 0)
		return 1;
	queue_purge(&q);
	struct store_run run = {.id = RUN, .name = RUN, .config = "{}", .run_dir = (char *)dir};
	if (store_run_create(db, &run) != 0)
		return 1;
	struct store_shard *sh = xcalloc((size_t)nshards, sizeof *sh);
	struct queue_shard *qs = xcalloc((size_t)nshards, sizeof *qs);
	for (int i = 0; i < nshards; i++) {
		sh[i] = (struct store_shard){.shard_id = i, .first_row = (int64_t)i * K, .row_count = K,
					     .state = SHARD_NEW};
		qs[i] = (struct queue_shard){.id = i, .first = (int64_t)i * K, .count = K};
	}
	if (store_shard_add(db, RUN, sh, (size_t)nshards, NULL) != 0)
		return 1;
	double t0 = now_seconds();
	if (queue_push(&q, qs, (size_t)nshards, NULL) != 0 || queue_seal(&q) != 0)
		return 1;
	double push_s = now_seconds() - t0;
	struct coord_sim co = {.db = db, .q = &q};
	char cursor[QUEUE_ID_MAX] = "0-0";
	/* the push's own journal (new -> ready) is ingested before the phase starts */
	if (ingest(&co, cursor, 0) != 0)
		return 1;

	int fds[2];
	if (pipe(fds) != 0)
		return mke_error("pipe: %s", strerror(errno));
	fflush(NULL);
	struct rusage ru0, ru1, rc0, rc1;
	getrusage(RUSAGE_SELF, &ru0);
	getrusage(RUSAGE_CHILDREN, &rc0);
	double r0 = redis_cpu(&rc);
	t0 = now_seconds();
	pid_t *pids = xcalloc((size_t)P, sizeof *pids);
	for (int i = 0; i < P; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[0]);
			_exit(worker_main(url, dir, i, batch, fds[1]));
		}
		if (pids[i] < 0)
			return mke_error("fork: %s", strerror(errno));
	}
	close(fds[1]);
	double last_reap = now_seconds();
	int failed = 0;
	while (co.done + co.rejected < nshards) {
		if (ingest(&co, cursor, 100) != 0)
			return 1;
		if (now_seconds() - last_reap > 0.5) {
			queue_reap(&q, NULL, NULL);
			last_reap = now_seconds();
		}
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			failed++;
		if (failed) {
			fprintf(stderr, "error: a simulated worker failed\n");
			break;
		}
	}
	double wall = now_seconds() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	double r1 = redis_cpu(&rc);
	for (int i = 0; i < P; i++)
		waitpid(pids[i], NULL, 0);
	getrusage(RUSAGE_CHILDREN, &rc1);
	double *qms = xcalloc((size_t)P, sizeof *qms);
	int nq = 0;
	struct worker_stats ws;
	while (read(fds[0], &ws, sizeof ws) == (ssize_t)sizeof ws)
		if (ws.shards > 0)
			qms[nq++] = ws.queue_s * 1e3 / (double)ws.shards;
	qsort(qms, (size_t)nq, sizeof *qms, cmp_double);

	double coord_cpu = cpu_of(&ru1) - cpu_of(&ru0), workers_cpu = cpu_of(&rc1) - cpu_of(&rc0);
	double redis_s = r0 >= 0 && r1 >= 0 ? r1 - r0 : 0, total = coord_cpu + workers_cpu + redis_s;
	printf("sim_workers %d\nsim_shards %d\nsim_shard_size %d\nsim_batch %d\n", P, nshards, K, batch);
	printf("sim_done %ld\nsim_wall_s %.3f\n", co.done, wall);
	printf("sim_shards_per_s %.0f\n", co.done / wall);
	printf("sim_samples_per_s %.0f\n", co.done * (double)K / wall);
	printf("sim_push_shards_per_s %.0f\n", nshards / push_s);
	printf("sim_coord_cpu_s %.3f\nsim_redis_cpu_s %.3f\nsim_workers_cpu_s %.3f\n", coord_cpu, redis_s,
	       workers_cpu);
	printf("sim_coord_us_per_shard %.1f\n", coord_cpu * 1e6 / nshards);
	printf("sim_redis_us_per_shard %.1f\n", redis_s * 1e6 / nshards);
	printf("sim_coord_share %.3f\nsim_redis_share %.3f\n", coord_cpu / total, redis_s / total);
	printf("sim_worker_queue_ms_per_shard %.3f\n", nq ? qms[nq / 2] : 0.0);
	printf("sim_coord_max_shards_per_s %.0f\n", coord_cpu > 0 ? nshards / coord_cpu : 0.0);
	printf("sim_redis_max_shards_per_s %.0f\n", redis_s > 0 ? nshards / redis_s : 0.0);
	int rc_exit = failed || co.done != nshards;
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&rc);
	store_close(db);
	free(qms);
	free(pids);
	free(sh);
	free(qs);
	free(labels);
	free(dbpath);
	return rc_exit;
}
