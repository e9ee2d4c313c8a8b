/*
 * mke-worker - the MPI program of a run. Every rank connects to the run's
 * Redis; rank 0 speaks for the job where one voice is needed (checkpoints,
 * metrics). Ranks never touch SQLite: what the coordinator must record goes
 * through the run's event stream.
 *
 *   teacher   data-parallel training on D_l (modality a); rank 0 writes
 *             checkpoints; a finished teacher.safetensors is loaded, not retrained
 *   label     every rank takes shards from the queue under a lease renewed by a
 *             heartbeat thread, writes the shard's pseudo-labels (temp + rename),
 *             and acks with the file's sha256; until the queue is drained
 *   student   every variant x seed, data-parallel, checkpointed, resumable
 *   eval      test accuracy and rectification per variant, as metrics
 *
 * Usage: mke-worker --run ID --run-dir DIR --config FILE --redis URL [--setting NAME]
 * The Redis password comes from MKE_REDIS_PASSWORD or the config, never argv.
 */
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "cnn.h"
#include "config.h"
#include "dp_mpi.h"
#include "experiment.h"
#include "labels.h"
#include "queue.h"
#include "redis_server.h"
#include "util.h"

#define CANCEL_CHECK_EPOCHS 25

struct worker {
	int rank, world;
	const char *run, *run_dir, *config_path, *redis_url, *setting_name;
	char id[160];
	const char *password;
	struct run_config c;
	struct exp_data d;
	const struct grid_setting *g;
	struct redis_conn rc;
	struct queue q;
	struct dp_hooks dp;
	int cancelled;
	/* per-training bookkeeping for the epoch callback */
	const char *variant;
	int metric_every;
};

/* ---- cancellation (the training hooks over MPI are dp_mpi.c) ---------------- */

/* Rank 0 asks Redis whether the run was cancelled; every rank learns the
 * answer at the same point, so no rank is left waiting in a collective. */
static int agree_cancelled(struct worker *w)
{
	int flag = 0;
	if (w->rank == 0) {
		char *reason = NULL;
		flag = queue_cancelled(&w->q, &reason) == 1;
		free(reason);
	}
	MPI_Bcast(&flag, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (flag)
		w->cancelled = 1;
	return flag;
}

static int on_epoch(int epoch, long step, double loss, void *arg)
{
	struct worker *w = arg;
	if (w->rank == 0 && (epoch % w->metric_every == 0 || epoch == 1))
		queue_emit_metric(&w->q, 0, w->variant, step, "train_loss", loss);
	if (epoch % CANCEL_CHECK_EPOCHS == 0 && agree_cancelled(w))
		return 1;
	return 0;
}

static void fit_ctl_for(struct worker *w, struct fit_ctl *ctl, const char *variant, const char *path,
			int epochs)
{
	memset(ctl, 0, sizeof *ctl);
	ctl->dp = &w->dp;
	ctl->ckpt_path = path;
	ctl->ckpt_every = w->c.pipeline.checkpoint_every;
	ctl->resume = 1;
	ctl->writer = w->rank == 0;
	ctl->variant = variant;
	ctl->on_epoch = on_epoch;
	ctl->arg = w;
	w->variant = variant;
	w->metric_every = epochs / 200 > 0 ? epochs / 200 : 1;
}

/* ---- teacher --------------------------------------------------------------- */

/* The metric keys of a task's evaluation: test_accuracy keeps its name for
 * every task (mke status, exports and the report read it: the task's metric,
 * accuracy, mAP or mIoU), and test_<metric> names it. */
/* The test metric of a model, and per class (class_accuracy/<name>,
 * class_iou/<name> or class_ap/<name>; the report's per-class table). */
static double eval_and_emit(struct worker *w, struct model *m, const struct model_spec *ms,
			    const char *label, int epochs);

static void emit_test_metric(struct worker *w, const char *label, int epochs, double value)
{
	queue_emit_metric(&w->q, 0, label, epochs, "test_accuracy", value);
	if (w->c.task != TASK_CLASSIFY) {
		char *key = xasprintf("test_%s", task_metric_name(w->c.task));
		queue_emit_metric(&w->q, 0, label, epochs, key, value);
		free(key);
	}
}

static double eval_and_emit(struct worker *w, struct model *m, const struct model_spec *ms,
			    const char *label, int epochs)
{
	/* data parallel: rank r evaluates test rows [r*n/W, (r+1)*n/W); the
	 * confusion matrix (segment) or the probabilities (classify, multilabel:
	 * each rank's rows, zeros elsewhere) are summed over the ranks */
	int K = w->c.classes, n = w->d.test.n;
	int lo = (int)((long)n * w->rank / w->world), hi = (int)((long)n * (w->rank + 1) / w->world);
	struct train_data td, part;
	bind_inputs(&td, &w->d.test, ms);
	part = td;
	train_data_slice(&part, lo, hi - lo, K);
	double *per = xmalloc(sizeof(double) * (size_t)K);
	double v;
	if (w->c.task == TASK_SEGMENT) {
		double *conf = xcalloc((size_t)K * K, sizeof(double));
		if (part.n > 0)
			evaluate_classes(m, &part, conf, NULL);
		MPI_Allreduce(MPI_IN_PLACE, conf, K * K, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
		v = confusion_miou(conf, K, per);
		free(conf);
	} else {
		float *probs = xcalloc((size_t)n * (size_t)K + 1, sizeof(float));
		if (part.n > 0)
			predict_probs(m, &part, probs + (size_t)lo * K);
		dp_mpi_allreduce(probs, (size_t)n * K, NULL);
		v = probs_metric(w->c.task, probs, &td, K, per);
		free(probs);
	}
	if (w->rank == 0) {
		emit_test_metric(w, label, epochs, v);
		const char *what = w->c.task == TASK_SEGMENT	  ? "iou"
				   : w->c.task == TASK_MULTILABEL ? "ap"
								  : "accuracy";
		for (int k = 0; k < K; k++) {
			if (per[k] < 0)
				continue;
			char *key = k < w->c.nclass_names
					    ? xasprintf("class_%s/%s", what, w->c.class_names[k])
					    : xasprintf("class_%s/%d", what, k);
			queue_emit_metric(&w->q, 0, label, epochs, key, per[k]);
			free(key);
		}
	}
	free(per);
	return v;
}

static int phase_teacher(struct worker *w, struct model *teacher)
{
	char *path = xasprintf("%s/teacher.safetensors", w->run_dir);
	struct fit_ctl ctl;
	fit_ctl_for(w, &ctl, "teacher", path, w->c.teacher_train.epochs);
	int rc = train_teacher(teacher, &w->c, &w->d, w->c.teacher_seed, &ctl);
	MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (rc == 0)
		eval_and_emit(w, teacher, &w->c.models[w->c.teacher_model], "teacher",
			      w->c.teacher_train.epochs);
	if (rc == 0 && w->rank == 0) {
		if (ctl.resumed_epoch > 0)
			mke_info("rank 0: teacher resumed from epoch %d", ctl.resumed_epoch);
		queue_emit_progress(&w->q, 0, "teacher", 1, 1);
	}
	free(path);
	return rc;
}

/* ---- phase statistics (make bench, docs/scaling.md) -------------------------- */

/* Report this rank's wall time and peak RSS for a phase as metrics of variant
 * "rank<R>" (keys <phase>_seconds, <phase>_peak_rss_kb), then reset the peak
 * so that the next phase's is its own (Linux: clear_refs 5 resets VmHWM;
 * elsewhere the peak is the process's so far). */
static void phase_stats(struct worker *w, const char *phase, double t0)
{
	char variant[32], key[64];
	long hwm = peak_rss_kb();
	FILE *f;
	snprintf(variant, sizeof variant, "rank%d", w->rank);
	snprintf(key, sizeof key, "%s_seconds", phase);
	queue_emit_metric(&w->q, w->rank, variant, 0, key, now_seconds() - t0);
	snprintf(key, sizeof key, "%s_peak_rss_kb", phase);
	queue_emit_metric(&w->q, w->rank, variant, 0, key, (double)hwm);
	if ((f = fopen("/proc/self/clear_refs", "w"))) {
		fputs("5", f);
		fclose(f);
	}
}

/* ---- label ----------------------------------------------------------------- */

/* A rank takes up to LABEL_BATCH_MAX shards per round trip: as many as its
 * teacher labels in about LABEL_BATCH_S, so that the take is a small part of
 * its time when shards are quick (docs/scaling.md) and a batch of one when
 * they are slow; with the batch taken ahead, the tail of the phase waits for
 * at most two such batches. From the first shard the size at most
 * quadruples per batch, so the take ahead of the next batch (~150 us of
 * Redis a shard) stays shorter than the labeling of the current one (~1 ms
 * a shard for the quickest teacher, whose time is the file write). Once the
 * queue drains, labeled shards are acked in pieces of a quarter batch
 * (LABEL_ACK_PARTS), so the last ack, which the rank waits for, is short. */
#define LABEL_BATCH_MAX 64
#define LABEL_BATCH_S 0.25
#define LABEL_ACK_PARTS 4
#define LABEL_ACK_MAX (2 * LABEL_BATCH_MAX)

/* The heartbeat thread, on its own connection (a hiredis context is not
 * shared between threads), renews the leases the rank holds, takes the next
 * batch ahead as soon as the main thread starts a batch, and acks labeled
 * shards as they accumulate, all while the main thread labels: the label
 * loop waits for Redis only at its first take, when a take ahead is still
 * in flight or found the queue empty (the drain), and for the last ack.
 * Three sets of leases, all renewed: the batch being labeled (main thread),
 * the labeled shards waiting for their ack, and the batch taken ahead; a
 * lease found lost (expired and taken elsewhere, or the run cancelled) is
 * not acked. */
struct lease_set {
	size_t n;
	struct queue_lease lease[LABEL_ACK_MAX]; /* payloads NULL */
	int lost[LABEL_ACK_MAX];
};

struct heartbeat {
	struct worker *w;
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* wakes the thread: a take or acks to send, stop */
	pthread_cond_t idle; /* wakes the main thread: a take or an ack is done */
	int stop;
	/* the batch being labeled: work.lease[work_from..work.n) (the shards
	 * before work_from are labeled: in acks, or failed) */
	struct lease_set work;
	size_t work_from;
	/* labeled shards waiting for the ack, oldest first, with their file
	 * and sha256; an ack call sends a prefix, the main thread appends */
	struct lease_set acks;
	char sha[LABEL_ACK_MAX][65];
	char *path[LABEL_ACK_MAX];
	int ack_all;         /* a batch began: ack what waits */
	int tail;            /* the last take ahead came back short (the queue
			      * drains): ack every chunk labeled shards */
	size_t chunk;
	int flush;           /* the main thread waits for every ack */
	/* the batch taken ahead: ahead.lease[0..ahead.n), with payloads in ahead_full */
	struct lease_set ahead;
	struct queue_lease ahead_full[LABEL_BATCH_MAX];
	size_t want;         /* a take ahead of this many is asked for, 0: none */
	int taking;          /* that take is in flight */
	double redis_s;      /* the thread's time in take-ahead and ack calls */
	long done, samples;  /* shards and rows acked */
	struct redis_conn rc;
	struct queue q;
	pthread_t thread;
};

/* Mark lost the held lease id / attempt, in whichever set holds it (mu held). */
static void heartbeat_mark_lost(struct heartbeat *hb, int64_t id, int attempt)
{
	struct lease_set *set[3] = {&hb->work, &hb->acks, &hb->ahead};
	for (int k = 0; k < 3; k++)
		for (size_t i = 0; i < set[k]->n; i++)
			if (set[k]->lease[i].id == id && set[k]->lease[i].attempt == attempt)
				set[k]->lost[i] = 1;
}

/* Renew every held lease (mu held; released during the call). */
static void heartbeat_renew(struct heartbeat *hb)
{
	struct queue_lease l[LABEL_BATCH_MAX + LABEL_ACK_MAX + LABEL_BATCH_MAX];
	int held[LABEL_BATCH_MAX + LABEL_ACK_MAX + LABEL_BATCH_MAX];
	size_t n = 0;
	for (size_t i = hb->work_from; i < hb->work.n; i++)
		l[n++] = hb->work.lease[i];
	for (size_t i = 0; i < hb->acks.n; i++)
		l[n++] = hb->acks.lease[i];
	for (size_t i = 0; i < hb->ahead.n; i++)
		l[n++] = hb->ahead.lease[i];
	if (!n)
		return;
	pthread_mutex_unlock(&hb->mu);
	int cancelled = 0;
	int rc = queue_renew(&hb->q, hb->w->id, l, n, held, &cancelled);
	pthread_mutex_lock(&hb->mu);
	for (size_t j = 0; rc == 0 && j < n; j++)
		if (!held[j] || cancelled)
			heartbeat_mark_lost(hb, l[j].id, l[j].attempt);
}

/* Take up to want shards ahead, one try (mu held; released during the
 * call); an empty queue leaves nothing ahead and the main thread takes,
 * and waits, itself. */
static void heartbeat_take(struct heartbeat *hb)
{
	size_t want = hb->want;
	hb->want = 0;
	hb->taking = 1;
	pthread_mutex_unlock(&hb->mu);
	double t = now_seconds();
	struct queue_lease l[LABEL_BATCH_MAX];
	size_t n = 0;
	if (queue_take_n(&hb->q, hb->w->id, 0, l, want, &n) != QUEUE_GOT)
		n = 0;
	pthread_mutex_lock(&hb->mu);
	hb->redis_s += now_seconds() - t;
	for (size_t i = 0; i < n; i++) {
		hb->ahead_full[i] = l[i];
		hb->ahead.lease[i] = l[i];
		hb->ahead.lease[i].payload = NULL;
		hb->ahead.lost[i] = 0;
	}
	hb->ahead.n = n;
	hb->tail = n < want;
	hb->taking = 0;
	pthread_cond_broadcast(&hb->idle);
}

/* Ack the waiting shards that are written and still held, in one call (mu
 * held; released during the call, while the main thread may append more),
 * then drop them and wake the main thread. */
static void heartbeat_ack(struct heartbeat *hb)
{
	struct lease_set *a = &hb->acks;
	struct queue_ack send[LABEL_ACK_MAX];
	int64_t count[LABEL_ACK_MAX];
	size_t ns = 0, s = a->n;
	for (size_t i = 0; i < s; i++)
		if (!a->lost[i]) {
			send[ns] = (struct queue_ack){.id = a->lease[i].id, .attempt = a->lease[i].attempt,
						      .sha256 = hb->sha[i], .path = hb->path[i]};
			count[ns++] = a->lease[i].count;
		}
	hb->ack_all = 0;
	pthread_mutex_unlock(&hb->mu);
	double t = now_seconds();
	int status[LABEL_ACK_MAX];
	long done = 0, samples = 0;
	if (ns > 0 && queue_ack(&hb->q, hb->w->id, send, ns, status) == 0)
		for (size_t i = 0; i < ns; i++)
			if (status[i] == QUEUE_ACK_OK) {
				done++;
				samples += count[i];
			}
	pthread_mutex_lock(&hb->mu);
	hb->redis_s += now_seconds() - t;
	hb->done += done;
	hb->samples += samples;
	for (size_t i = 0; i < s; i++)
		free(hb->path[i]);
	size_t rest = a->n - s;
	memmove(a->lease, a->lease + s, rest * sizeof a->lease[0]);
	memmove(a->lost, a->lost + s, rest * sizeof a->lost[0]);
	memmove(hb->sha, hb->sha + s, rest * sizeof hb->sha[0]);
	memmove(hb->path, hb->path + s, rest * sizeof hb->path[0]);
	a->n = rest;
	pthread_cond_broadcast(&hb->idle);
}

/* 1 if now is at or past t. */
static int due_now(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* The thread: renew when due, else take ahead when asked, else ack what
 * waits (at the start of a batch, a piece once the queue drains, everything
 * on a flush or stop), else sleep. */
static void *heartbeat_main(void *arg)
{
	struct heartbeat *hb = arg;
	int period = hb->w->c.pipeline.heartbeat_ms;
#ifdef SCHED_BATCH
	/* Waking this thread (a batch begins: take ahead, ack) must not preempt
	 * the labeling: a SCHED_BATCH thread has the same share of the CPU but
	 * waits for a free core or the end of the running thread's slice, a few
	 * ms at most, instead of taking the core on wakeup (on 2 busy cores that
	 * preemption cost the label loop ~3 ms a wakeup: docs/scaling.md) */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
	pthread_mutex_lock(&hb->mu);
	struct timespec due;
	clock_gettime(CLOCK_REALTIME, &due);
	for (;;) {
		if (due_now(&due)) {
			heartbeat_renew(hb);
			clock_gettime(CLOCK_REALTIME, &due);
			due.tv_sec += period / 1000;
			due.tv_nsec += (long)(period % 1000) * 1000000L;
			if (due.tv_nsec >= 1000000000L) {
				due.tv_sec++;
				due.tv_nsec -= 1000000000L;
			}
			continue;
		}
		if (hb->want && !hb->ahead.n) {
			heartbeat_take(hb);
			continue;
		}
		if (hb->acks.n && (hb->ack_all || (hb->tail && hb->acks.n >= hb->chunk) || hb->flush ||
				   hb->stop)) {
			heartbeat_ack(hb);
			continue;
		}
		if (hb->stop)
			break;
		pthread_cond_timedwait(&hb->cv, &hb->mu, &due);
	}
	pthread_mutex_unlock(&hb->mu);
	return NULL;
}

static int heartbeat_start(struct heartbeat *hb, struct worker *w)
{
	memset(hb, 0, sizeof *hb);
	hb->w = w;
	hb->chunk = 1;
	struct redis_conn_opts o = {.password = w->password};
	if (redis_conn_open(&hb->rc, w->redis_url, &o) != 0)
		return -1;
	struct queue_opts qo;
	queue_opts_default(&qo);
	qo.lease_ms = w->c.pipeline.lease_ms;
	qo.max_attempts = w->c.pipeline.max_attempts;
	if (queue_init(&hb->q, &hb->rc, w->run, &qo) != 0) {
		redis_conn_close(&hb->rc);
		return -1;
	}
	pthread_mutex_init(&hb->mu, NULL);
	pthread_cond_init(&hb->cv, NULL);
	pthread_cond_init(&hb->idle, NULL);
	if (pthread_create(&hb->thread, NULL, heartbeat_main, hb) != 0) {
		queue_release(&hb->q);
		redis_conn_close(&hb->rc);
		return mke_error("cannot start the heartbeat thread");
	}
	return 0;
}

/* Wait until every labeled shard is acked (mu held). */
static void heartbeat_flush_locked(struct heartbeat *hb)
{
	hb->flush = 1;
	pthread_cond_signal(&hb->cv);
	while (hb->acks.n)
		pthread_cond_wait(&hb->idle, &hb->mu);
	hb->flush = 0;
}

/* The batch taken ahead, waiting for the take if it is asked for or in
 * flight: its leases move to l (the caller's, to label and release) and *n,
 * and it answers 1. Else (nothing ahead: the queue was empty, or a lease
 * was lost) it waits for every ack, so that the queue counts this rank's
 * shards as done, and answers 0: the caller takes itself. */
static int heartbeat_next(struct heartbeat *hb, struct queue_lease *l, size_t *n)
{
	pthread_mutex_lock(&hb->mu);
	while (hb->taking || (hb->want && !hb->ahead.n))
		pthread_cond_wait(&hb->idle, &hb->mu);
	*n = hb->ahead.n;
	memcpy(l, hb->ahead_full, *n * sizeof *l);
	int lost = 0;
	for (size_t i = 0; i < *n; i++)
		lost |= hb->ahead.lost[i];
	hb->ahead.n = 0;
	if (!*n || lost)
		heartbeat_flush_locked(hb);
	pthread_mutex_unlock(&hb->mu);
	if (lost) {
		/* a lease expired or the run was cancelled while it waited:
		 * let the main thread's take sort it out */
		for (size_t i = 0; i < *n; i++)
			queue_lease_release(&l[i]);
		*n = 0;
	}
	return *n > 0;
}

/* Send the last acks, stop the thread, give back what it took ahead (the
 * leases expire and the shards are redelivered: only after a cancel). */
static void heartbeat_stop(struct heartbeat *hb)
{
	pthread_mutex_lock(&hb->mu);
	hb->want = 0;
	while (hb->taking)
		pthread_cond_wait(&hb->idle, &hb->mu);
	heartbeat_flush_locked(hb);
	for (size_t i = 0; i < hb->ahead.n; i++)
		queue_lease_release(&hb->ahead_full[i]);
	hb->ahead.n = 0;
	hb->stop = 1;
	pthread_cond_signal(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
	pthread_join(hb->thread, NULL);
	pthread_mutex_destroy(&hb->mu);
	pthread_cond_destroy(&hb->cv);
	pthread_cond_destroy(&hb->idle);
	queue_release(&hb->q);
	redis_conn_close(&hb->rc);
}

/* Hold leases l[0..n) being labeled for the thread to renew, and ask it to
 * take up to want shards ahead (0: none), to ack the previous batch, and,
 * once the queue drains, to ack every chunk shards. */
static void heartbeat_hold(struct heartbeat *hb, const struct queue_lease *l, size_t n, size_t want,
			   size_t chunk)
{
	pthread_mutex_lock(&hb->mu);
	for (size_t i = 0; i < n; i++) {
		hb->work.lease[i] = l[i];
		hb->work.lease[i].payload = NULL;
		hb->work.lost[i] = 0;
	}
	hb->work.n = n;
	hb->work_from = 0;
	hb->want = want;
	hb->ack_all = 1;
	hb->chunk = chunk;
	pthread_cond_signal(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
}

/* The next shard of the batch being labeled is finished: ok, its file is
 * path (whose ownership passes) with sha256 sha, to be acked; else it
 * failed and is no longer held. Waits only while two batches' acks are
 * still unsent. */
static void heartbeat_labeled(struct heartbeat *hb, int ok, const char *sha, char *path)
{
	struct lease_set *a = &hb->acks;
	pthread_mutex_lock(&hb->mu);
	while (ok && a->n == LABEL_ACK_MAX) {
		hb->ack_all = 1;
		pthread_cond_signal(&hb->cv);
		pthread_cond_wait(&hb->idle, &hb->mu);
	}
	size_t i = hb->work_from++;
	if (ok) {
		a->lease[a->n] = hb->work.lease[i];
		a->lost[a->n] = hb->work.lost[i];
		memcpy(hb->sha[a->n], sha, 65);
		hb->path[a->n] = path;
		if (++a->n == hb->chunk && hb->tail)
			pthread_cond_signal(&hb->cv);
	}
	pthread_mutex_unlock(&hb->mu);
}

static char *shard_path(const char *run_dir, int64_t id)
{
	return xasprintf("%s/labels/shard-%06lld.npy", run_dir, (long long)id);
}

/* Pseudo-label one shard: the teacher on modality a of rows [first, first+count),
 * written to *path_out with its sha256 in sha. */
static int label_shard(struct worker *w, struct model *teacher, const struct queue_lease *l,
		       char sha[65], char **path_out)
{
	const struct dataset *u = &w->d.unlabeled;
	if (l->first < 0 || l->count <= 0 || l->first + l->count > u->n)
		return mke_error("shard %lld covers rows %lld..%lld but the unlabeled set has %d rows",
				 (long long)l->id, (long long)l->first, (long long)(l->first + l->count), u->n);
	int K = w->c.classes, n = (int)l->count;
	const struct model_spec *ms = &w->c.models[w->c.teacher_model];
	struct train_data td;
	bind_inputs(&td, u, ms);
	train_data_slice(&td, (int)l->first, n, K);
	/* classify / multilabel: the teacher's probabilities; segment: its label
	 * maps, class ids stored as floats (docs/formats.md) */
	int width = w->c.task == TASK_SEGMENT ? teacher->map_hw : K;
	float *probs = xmalloc(sizeof(float) * (size_t)n * (size_t)width);
	if (w->c.task == TASK_SEGMENT) {
		int *maps = xmalloc(sizeof(int) * (size_t)n * (size_t)width);
		predict_maps(teacher, &td, maps);
		for (size_t i = 0; i < (size_t)n * (size_t)width; i++)
			probs[i] = (float)maps[i];
		free(maps);
	} else {
		predict_probs(teacher, &td, probs);
	}
	/* fault-injection tests slow the label phase down to hit it mid-way */
	const char *delay = getenv("MKE_TEST_LABEL_DELAY_MS");
	if (delay && atoi(delay) > 0)
		usleep((useconds_t)atoi(delay) * 1000);
	char *path = shard_path(w->run_dir, l->id);
	int rc = labels_write(path, u->names + l->first, probs, n, width, sha);
	free(probs);
	if (rc != 0) {
		free(path);
		return -1;
	}
	*path_out = path;
	return 0;
}

/* The size of the next batch: as many shards as the teacher labels in
 * LABEL_BATCH_S at per_shard seconds each (0: not measured yet), at most
 * four times the last batch (last) and LABEL_BATCH_MAX. */
static size_t label_batch_size(double per_shard, size_t last)
{
	size_t b = per_shard <= 0 || per_shard * LABEL_BATCH_MAX < LABEL_BATCH_S ? LABEL_BATCH_MAX
		   : per_shard * 2 > LABEL_BATCH_S ? 1 : (size_t)(LABEL_BATCH_S / per_shard);
	return b > 4 * last ? 4 * last : b;
}

static int phase_label(struct worker *w, struct model *teacher)
{
	char *dir = xasprintf("%s/labels", w->run_dir);
	int rc = mkdir_p(dir, 0750);
	free(dir);
	if (rc != 0)
		return -1;
	struct heartbeat hb;
	if (heartbeat_start(&hb, w) != 0)
		return -1;
	size_t batch = 1;
	double per_shard = 0;
	int nap = 10;
	/* make bench: time in take/fail calls, waiting for a take ahead in
	 * flight and for acks (before taking at the drain, and the last), and
	 * time waiting for work (the queue was empty), after the first shard
	 * came (until then a rank waits for the coordinator to shard) */
	double t0 = now_seconds(), t_first = 0, queue_s = 0, idle_s = 0;
	for (;;) {
		struct queue_lease l[LABEL_BATCH_MAX];
		size_t n = 0;
		double tq = now_seconds();
		int st = heartbeat_next(&hb, l, &n) ? QUEUE_GOT
			 : queue_take_n(&w->q, w->id, 0, l, batch, &n);
		if (t_first > 0)
			queue_s += now_seconds() - tq;
		else if (st == QUEUE_GOT)
			t_first = now_seconds();
		if (st == QUEUE_GOT)
			nap = 10;
		if (st == QUEUE_ERROR || st == QUEUE_EMPTY) {
			/* nothing to take yet (other ranks hold the last shards, the
			 * coordinator is still sharding), or Redis is restarting (the
			 * connection reconnects with backoff): wait, longer each time */
			tq = now_seconds();
			usleep((useconds_t)(st == QUEUE_ERROR ? 200000 : nap * 1000));
			nap = nap * 2 > w->q.o.poll_ms ? w->q.o.poll_ms : nap * 2;
			if (t_first > 0)
				idle_s += now_seconds() - tq;
			continue;
		}
		if (st == QUEUE_DRAINED)
			break;
		if (st == QUEUE_CANCELLED) {
			w->cancelled = 1;
			break;
		}
		/* the heartbeat thread takes the next batch ahead and acks the
		 * labeled shards while this thread labels */
		batch = label_batch_size(per_shard, n);
		tq = now_seconds();
		heartbeat_hold(&hb, l, n, batch, (batch + LABEL_ACK_PARTS - 1) / LABEL_ACK_PARTS);
		double tb = now_seconds();
		queue_s += tb - tq;
		for (size_t i = 0; i < n; i++) {
			char sha[65], *path = NULL;
			errno = 0;
			int ok = label_shard(w, teacher, &l[i], sha, &path) == 0;
			if (!ok) {
				/* the cause travels with the shard (SQLite, mke status): the
				 * worker's own log may sit on the disk that just filled up */
				char *why = xasprintf("could not write the pseudo-label file of shard %lld in '%s/labels': %s",
						      (long long)l[i].id, w->run_dir,
						      errno ? strerror(errno) : "see worker.log");
				tq = now_seconds();
				queue_fail(&w->q, w->id, &l[i], why, NULL);
				queue_s += now_seconds() - tq;
				free(why);
			}
			tq = now_seconds();
			heartbeat_labeled(&hb, ok, sha, path);
			queue_s += now_seconds() - tq;
		}
		per_shard = (now_seconds() - tb) / (double)n;
		for (size_t i = 0; i < n; i++)
			queue_lease_release(&l[i]);
	}
	double tq = now_seconds();
	heartbeat_stop(&hb);
	if (t_first > 0)
		queue_s += now_seconds() - tq;
	long done = hb.done, samples = hb.samples;
	mke_info("rank %d: labeled %ld shards", w->rank, done);
	char variant[32];
	snprintf(variant, sizeof variant, "rank%d", w->rank);
	if (t_first == 0)
		t_first = now_seconds();
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_wait_seconds", t_first - t0);
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_work_seconds", now_seconds() - t_first);
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_queue_seconds", queue_s);
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_queue_thread_seconds", hb.redis_s);
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_idle_seconds", idle_s);
	queue_emit_metric(&w->q, w->rank, variant, 0, "label_samples", (double)samples);
	return 0;
}

/* ---- student + eval ---------------------------------------------------------- */

/* Assemble the teacher's probabilities for every unlabeled row from the shard
 * files. Rows of shards that never produced a file (dead shards) are dropped
 * from the student's data: *keep gets 1 for rows that have labels. */
static int load_pseudo_labels(struct worker *w, float *probs, int K, unsigned char *keep,
			      int *nkept)
{
	const struct dataset *u = &w->d.unlabeled;
	int size = w->c.pipeline.shard_size;
	int nshards = (u->n + size - 1) / size;
	memset(keep, 0, (size_t)u->n);
	*nkept = 0;
	char idbuf[4097];
	for (int s = 0; s < nshards; s++) {
		char *path = shard_path(w->run_dir, s);
		if (access(path, R_OK) != 0) {
			free(path);
			continue;
		}
		struct label_shard ls;
		int rc = labels_read(&ls, path);
		if (rc == 0 && (ls.classes != K || (long)s * size + ls.n > u->n))
			rc = mke_error("pseudo-labels '%s' do not match the unlabeled set", path);
		for (int i = 0; rc == 0 && i < ls.n; i++) {
			int row = s * size + i;
			if (strcmp(labels_id(&ls, i, idbuf), u->names[row]) != 0) {
				rc = mke_error("pseudo-labels '%s' row %d is '%s', the manifest has '%s'", path, i,
					       idbuf, u->names[row]);
				break;
			}
			memcpy(probs + (size_t)row * K, ls.probs + (size_t)i * K, sizeof(float) * (size_t)K);
			keep[row] = 1;
			(*nkept)++;
		}
		labels_release(&ls);
		free(path);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* Keep only the rows with pseudo-labels (a no-op when every row has one);
 * probs rows are K wide. */
static void subset_unlabeled(struct exp_data *d, float *probs, const unsigned char *keep, int K)
{
	struct dataset *u = &d->unlabeled;
	int j = 0;
	for (int i = 0; i < u->n; i++)
		if (keep[i]) {
			memmove(probs + (size_t)j * K, probs + (size_t)i * K, sizeof(float) * (size_t)K);
			j++;
		}
	dataset_subset(u, keep);
}

static int phase_student(struct worker *w)
{
	struct dataset *u = &w->d.unlabeled;
	int K = w->c.classes;
	int seg = w->c.task == TASK_SEGMENT;
	int width = seg ? u->label_h * u->label_w : K;
	float *probs = xmalloc(sizeof(float) * (size_t)u->n * (size_t)width + 1);
	unsigned char *keep = xmalloc((size_t)u->n + 1);
	int nkept = 0;
	struct pseudo ps = {0};
	int rc = load_pseudo_labels(w, probs, width, keep, &nkept);
	MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (rc != 0)
		goto out;
	if (nkept < u->n) {
		if (w->rank == 0)
			queue_emit_log(&w->q, 0, "warning",
				       "some shards are dead: students train on the rows that have pseudo-labels");
		subset_unlabeled(&w->d, probs, keep, width);
	}
	if (u->n == 0) {
		rc = mke_error("no unlabeled row has a pseudo-label; see 'mke status' for dead shards");
		goto out;
	}
	ps.n = u->n;
	if (seg) {
		ps.map_hw = width;
		ps.maps = xmalloc(sizeof(int) * (size_t)u->n * (size_t)width);
		for (size_t i = 0; i < (size_t)u->n * (size_t)width; i++)
			ps.maps[i] = (int)probs[i];
	} else {
		ps.probs = probs;
		probs = NULL;
	}
	if (seg) {
		w->d.has_unlabeled_labels = u->pixel_labels != NULL;
	} else {
		w->d.has_unlabeled_labels = u->labels != NULL;
		for (int i = 0; w->d.has_unlabeled_labels && i < u->n; i++)
			if (u->labels[i] < 0)
				w->d.has_unlabeled_labels = 0;
	}
	pseudo_quality(&ps, &w->c, &w->d);
	if (w->rank == 0 && ps.quality >= 0) {
		queue_emit_metric(&w->q, 0, "teacher", 0, "pseudo_label_accuracy", ps.quality);
		if (w->c.task != TASK_CLASSIFY) {
			char *key = xasprintf("pseudo_label_%s", task_metric_name(w->c.task));
			queue_emit_metric(&w->q, 0, "teacher", 0, key, ps.quality);
			free(key);
		}
	}
	char *dir = xasprintf("%s/students", w->run_dir);
	mkdir_p(dir, 0750);
	int total = w->c.nvariants * w->c.nseeds, k = 0;
	for (int v = 0; v < w->c.nvariants && rc == 0; v++) {
		const struct variant_spec *vs = &w->c.variants[v];
		const char *vname = variant_name(vs->kind);
		const struct model_spec *ms = &w->c.models[vs->model];
		struct regularizer reg = variant_reg(vs, w->g);
		for (int s = 0; s < w->c.nseeds && rc == 0; s++, k++) {
			uint64_t seed = w->c.seeds[s];
			char *path = xasprintf("%s/%s-seed%llu.safetensors", dir, vname, (unsigned long long)seed);
			char *label = xasprintf("%s/%llu", vname, (unsigned long long)seed);
			struct fit_ctl ctl;
			fit_ctl_for(w, &ctl, label, path, vs->train.epochs);
			struct model m;
			rc = train_student(&m, &w->c, &w->d, vs, reg, seed, &ps, &ctl);
			MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
			if (w->rank == 0 && ctl.resumed_epoch > 0 && ctl.resumed_epoch < vs->train.epochs) {
				char *msg = xasprintf("%s resumed from its checkpoint at epoch %d", label,
						      ctl.resumed_epoch);
				queue_emit_log(&w->q, 0, "info", msg);
				free(msg);
			}
			if (rc == 0)
				eval_and_emit(w, &m, ms, label, vs->train.epochs);
			if (rc == 0 && w->rank == 0) {
				double r = rectification(&m, &w->d, ms, &ps, &w->c);
				if (r >= 0)
					queue_emit_metric(&w->q, 0, label, vs->train.epochs, "rectification", r);
				queue_emit_progress(&w->q, 0, "student", k + 1, total);
			}
			model_release(&m);
			free(path);
			free(label);
		}
	}
	free(dir);
out:
	pseudo_release(&ps);
	free(probs);
	free(keep);
	return rc;
}

/* ---- main ------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr, "usage: mke-worker --run ID --run-dir DIR --config FILE --redis URL [--setting NAME]\n"
			"(started by 'mke run' / 'mke submit'; the Redis password comes from MKE_REDIS_PASSWORD)\n");
	return 2;
}

static int parse_args(struct worker *w, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char **slot = NULL;
		if (strcmp(argv[i], "--run") == 0)
			slot = &w->run;
		else if (strcmp(argv[i], "--run-dir") == 0)
			slot = &w->run_dir;
		else if (strcmp(argv[i], "--config") == 0)
			slot = &w->config_path;
		else if (strcmp(argv[i], "--redis") == 0)
			slot = &w->redis_url;
		else if (strcmp(argv[i], "--setting") == 0)
			slot = &w->setting_name;
		if (!slot || i + 1 >= argc) {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", argv[i]);
			return -1;
		}
		*slot = argv[++i];
	}
	if (!w->run || !w->run_dir || !w->config_path || !w->redis_url) {
		fprintf(stderr, "error: --run, --run-dir, --config and --redis are required\n");
		return -1;
	}
	return 0;
}

static const struct grid_setting *find_setting(const struct run_config *c, const char *name)
{
	if (!name)
		return &c->grid[0];
	for (int i = 0; i < c->ngrid; i++)
		if (strcmp(c->grid[i].name, name) == 0)
			return &c->grid[i];
	return NULL;
}

static int run_worker(struct worker *w)
{
	if (config_load(&w->c, w->config_path) != 0)
		return -1;
	if (!(w->g = find_setting(&w->c, w->setting_name)))
		return mke_error("config '%s' has no grid setting named '%s'", w->config_path, w->setting_name);
	w->password = getenv("MKE_REDIS_PASSWORD");
	if (!w->password || !*w->password)
		w->password = w->c.pipeline.redis_password;
	struct redis_conn_opts o = {.password = w->password};
	if (redis_conn_open(&w->rc, w->redis_url, &o) != 0)
		return -1;
	struct queue_opts qo;
	queue_opts_default(&qo);
	qo.lease_ms = w->c.pipeline.lease_ms;
	qo.max_attempts = w->c.pipeline.max_attempts;
	if (queue_init(&w->q, &w->rc, w->run, &qo) != 0)
		return -1;
	char host[HOST_NAME_MAX + 1] = "localhost";
	gethostname(host, sizeof host);
	host[HOST_NAME_MAX] = '\0';
	cJSON *hello = cJSON_CreateObject();
	cJSON_AddStringToObject(hello, "type", "hello");
	cJSON_AddNumberToObject(hello, "rank", w->rank);
	cJSON_AddStringToObject(hello, "worker", w->id);
	cJSON_AddStringToObject(hello, "host", host);
	cJSON_AddNumberToObject(hello, "pid", (double)getpid());
	queue_emit_json(&w->q, hello);
	cJSON_Delete(hello);
	if (exp_data_load(&w->d, &w->c) != 0)
		return -1;

	struct model teacher;
	double t0 = now_seconds();
	int rc = phase_teacher(w, &teacher);
	phase_stats(w, "teacher", t0);
	if (rc == 0 && !w->cancelled) {
		t0 = now_seconds();
		rc = phase_label(w, &teacher);
		phase_stats(w, "label", t0);
	}
	model_release(&teacher);
	MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	t0 = now_seconds();
	if (rc == 0 && !agree_cancelled(w)) {
		rc = phase_student(w);
		phase_stats(w, "student", t0);
	}
	if (rc == 0 && !w->cancelled && w->rank == 0)
		queue_emit_progress(&w->q, 0, "eval", 1, 1);
	return rc;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	openblas_set_num_threads(1);
	struct worker w;
	memset(&w, 0, sizeof w);
	MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &w.world);
	if (parse_args(&w, argc, argv) != 0) {
		MPI_Finalize();
		return usage();
	}
	char host[HOST_NAME_MAX + 1] = "localhost";
	gethostname(host, sizeof host);
	host[HOST_NAME_MAX] = '\0';
	snprintf(w.id, sizeof w.id, "%.100s:%ld:%d", host, (long)getpid(), w.rank);
	w.dp = dp_mpi_hooks();

	int rc = run_worker(&w);
	if (w.q.rc) {
		cJSON *bye = cJSON_CreateObject();
		cJSON_AddStringToObject(bye, "type", "bye");
		cJSON_AddNumberToObject(bye, "rank", w.rank);
		cJSON_AddStringToObject(bye, "worker", w.id);
		cJSON_AddStringToObject(bye, "status", rc != 0 ? "failed" : w.cancelled ? "cancelled" : "done");
		queue_emit_json(&w.q, bye);
		cJSON_Delete(bye);
		queue_release(&w.q);
	}
	if (w.rc.ctx)
		redis_conn_close(&w.rc);
	exp_data_release(&w.d);
	config_release(&w.c);
	MPI_Finalize();
	return rc != 0 ? 1 : w.cancelled ? 3 : 0;
}
