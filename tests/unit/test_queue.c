/*
 * test_queue.c - the shard queue, the event stream and the private
 * redis-server, against a REAL redis-server started on a unix socket in a
 * mkdtemp directory (and stopped by pid at the end). Leases are 200 ms so
 * the whole file runs in a couple of seconds. A missing redis-server is a
 * loud failure, not a skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "redis_server.h"
#include "test.h"
#include "util.h"

static char tmpdir[64];
static struct redis_server srv;
static int have_server;
static char *srv_url;

static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run-time capture of stderr, to check what error messages say. */

static int open_conn(struct redis_conn *c, const char *password)
{
	struct redis_conn_opts o = {0};
	o.password = password;
	o.timeout_ms = 2000;
	o.retries = 3;
	o.backoff_ms = 10;
	return redis_conn_open(c, srv_url, &o);
}

static void fast_opts(struct queue_opts *o)
{
	queue_opts_default(o);
	o->lease_ms = 200;
	o->max_attempts = 3;
	o->backoff_base_ms = 20;
	o->backoff_cap_ms = 40;
	o->poll_ms = 20;
	o->jitter_seed = 7;
}

/* Read the whole events stream and count shard transitions into `to` for id. */
struct transitions {
	int64_t shard;
	enum shard_state to;
	int count;
	int total;
	int bad;
};

static int count_cb(void *arg, const char *id, const char *json, size_t len)
{
	struct transitions *t = arg;
	(void)id;
	struct queue_msg m;
	char err[160];
	if (queue_msg_parse(&m, json, len, err, sizeof(err)) != 0) {
		fprintf(stderr, "  bad message %.*s: %s\n", (int)len, json, err);
		t->bad++;
		return 0;
	}
	t->total++;
	if (m.type == QMSG_SHARD && m.shard == t->shard && m.to == t->to)
		t->count++;
	queue_msg_release(&m);
	return 0;
}

static int count_transitions(struct queue *q, int64_t shard, enum shard_state to)
{
	struct transitions t = {shard, to, 0, 0, 0};
	char last[QUEUE_ID_MAX] = "0-0";
	int n;
	while ((n = queue_events_read(q, last, 0, 100, count_cb, &t, NULL)) > 0)
		;
	CHECK(n == 0);
	CHECK(t.bad == 0);
	return t.count;
}

static void test_server_started(void)
{
	CHECK_MSG(have_server, "redis-server could not be started: it is required "
			       "(apt-get install redis-server, or set MKE_REDIS_SERVER)");
	if (!have_server)
		return;
	struct stat st;
	CHECK(stat(srv.conf_path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(srv.socket_path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK(kill(srv.pid, 0) == 0);
}

static void test_endpoint_parse(void)
{
	struct redis_endpoint ep;
	CHECK(redis_endpoint_parse(&ep, "redis://:p%40ss@db.example:6380/2") == 0);
	CHECK(!ep.is_unix && strcmp(ep.host, "db.example") == 0 && ep.port == 6380 && ep.db == 2);
	CHECK(ep.password && strcmp(ep.password, "p@ss") == 0 && !ep.user);
	CHECK(strstr(ep.display, "p@ss") == NULL && strstr(ep.display, "p%40ss") == NULL);
	redis_endpoint_release(&ep);
	CHECK(redis_endpoint_parse(&ep, "redis://alice:pw@h") == 0);
	CHECK(ep.port == 6379 && ep.db == 0 && strcmp(ep.user, "alice") == 0 &&
	      strcmp(ep.password, "pw") == 0);
	redis_endpoint_release(&ep);
	CHECK(redis_endpoint_parse(&ep, "redis://[::1]:7000/3") == 0);
	CHECK(strcmp(ep.host, "::1") == 0 && ep.port == 7000 && ep.db == 3);
	redis_endpoint_release(&ep);
	CHECK(redis_endpoint_parse(&ep, "unix:///run/r.sock?db=4") == 0);
	CHECK(ep.is_unix && strcmp(ep.path, "/run/r.sock") == 0 && ep.db == 4);
	redis_endpoint_release(&ep);
	CHECK(redis_endpoint_parse(&ep, "/tmp/x/redis.sock") == 0);
	CHECK(ep.is_unix && strcmp(ep.path, "/tmp/x/redis.sock") == 0);
	redis_endpoint_release(&ep);
	mke_quiet = 1;
	capture_begin();
	int bad = redis_endpoint_parse(&ep, "redis://h:99999") == -1;
	bad += redis_endpoint_parse(&ep, "rediss://h:6379") == -1;
	bad += redis_endpoint_parse(&ep, "redis://h/notadb") == -1;
	bad += redis_endpoint_parse(&ep, "redis://") == -1;
	bad += redis_endpoint_parse(&ep, "unix://relative.sock") == -1;
	bad += redis_endpoint_parse(&ep, "redis://:%zz@h") == -1;
	char *msg = capture_end();
	mke_quiet = 0;
	CHECK(bad == 6);
	CHECK(strstr(msg, "port '99999'") != NULL);
	CHECK(strstr(msg, "unknown scheme") != NULL);
	free(msg);
}

static void test_options_rejected(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	o.backoff_base_ms = 500;
	o.backoff_cap_ms = 100;
	capture_begin();
	int rc1 = queue_init(&q, &c, "r1", &o);
	fast_opts(&o);
	int rc2 = queue_init(&q, &c, "bad run id!", &o);
	fast_opts(&o);
	o.poll_ms = 500;
	int rc3 = queue_init(&q, &c, "r1", &o);
	char *msg = capture_end();
	CHECK(rc1 == -1 && rc2 == -1 && rc3 == -1);
	CHECK(strstr(msg, "backoff_base_ms 500 is larger than backoff_cap_ms 100") != NULL);
	CHECK(strstr(msg, "run id 'bad run id!'") != NULL);
	CHECK(strstr(msg, "poll_ms 500") != NULL);
	free(msg);
	redis_conn_close(&c);
}

/* N shards, two clients taking in turn until drained; each taken once, all done. */
static void test_two_clients(void)
{
	if (!have_server)
		return;
	enum { N = 40 };
	struct redis_conn ca, cb;
	CHECK(open_conn(&ca, NULL) == 0 && open_conn(&cb, NULL) == 0);
	struct queue qa, qb;
	struct queue_opts o;
	fast_opts(&o);
	o.lease_ms = 5000;
	CHECK(queue_init(&qa, &ca, "two", &o) == 0);
	CHECK(queue_init(&qb, &cb, "two", &o) == 0);
	struct queue_shard sh[N];
	for (int i = 0; i < N; i++) {
		sh[i].id = i;
		sh[i].first = (int64_t)i * 16;
		sh[i].count = 16;
		sh[i].payload = "{\"manifest\":\"u.csv\"}";
	}
	size_t pushed = 0;
	CHECK(queue_push(&qa, sh, N, &pushed) == 0 && pushed == N);
	CHECK(queue_push(&qb, sh, N, &pushed) == 0 && pushed == 0); /* idempotent */
	CHECK(queue_seal(&qa) == 0);
	int seen[N] = {0};
	int took[2] = {0, 0}, drained = 0;
	for (int turn = 0; drained < 2 && turn < 4 * N; turn++) {
		struct queue *q = turn % 2 ? &qb : &qa;
		const char *w = turn % 2 ? "hostB:2:r1" : "hostA:1:r0";
		struct queue_lease l;
		int st = queue_take(q, w, 0, &l);
		if (st == QUEUE_DRAINED) {
			drained++;
			continue;
		}
		CHECK(st == QUEUE_GOT);
		if (st != QUEUE_GOT)
			break;
		CHECK(l.id >= 0 && l.id < N && l.attempt == 1);
		CHECK(l.first == l.id * 16 && l.count == 16);
		CHECK(strcmp(l.payload, "{\"manifest\":\"u.csv\"}") == 0);
		CHECK(l.deadline_ms > 0);
		seen[l.id]++;
		took[turn % 2]++;
		char sha[65];
		sha256_hex(&l.id, sizeof(l.id), sha);
		struct queue_ack a = {l.id, l.attempt, sha, "/runs/x/labels/shard.npy"};
		int status = 0;
		CHECK(queue_ack(q, w, &a, 1, &status) == 0 && status == QUEUE_ACK_OK);
		queue_lease_release(&l);
	}
	int once = 1;
	for (int i = 0; i < N; i++)
		once &= seen[i] == 1;
	CHECK(once);
	CHECK(took[0] == N / 2 && took[1] == N / 2);
	CHECK(drained == 2);
	struct queue_counts c;
	CHECK(queue_counts(&qa, &c) == 0);
	CHECK(c.total == N && c.done == N && c.ready == 0 && c.leased == 0 && c.dead == 0);
	CHECK(c.sealed && !c.cancelled);
	CHECK(count_transitions(&qa, 7, SHARD_DONE) == 1);
	CHECK(queue_purge(&qa) == 0);
	CHECK(queue_counts(&qa, &c) == 0 && c.total == 0 && !c.sealed);
	queue_release(&qa);
	queue_release(&qb);
	redis_conn_close(&ca);
	redis_conn_close(&cb);
}

/* A repeated ack, and an ack from someone else, are counted once. */
static void test_duplicate_ack(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	CHECK(queue_init(&q, &c, "dup", &o) == 0);
	struct queue_shard s = {5, 80, 16, NULL};
	CHECK(queue_push(&q, &s, 1, NULL) == 0);
	struct queue_lease l;
	CHECK(queue_take(&q, "w1", 0, &l) == QUEUE_GOT && l.id == 5);
	char sha[65];
	sha256_hex("x", 1, sha);
	struct queue_ack a[2] = {{5, l.attempt, sha, "/p/5.npy"}, {5, l.attempt, sha, "/p/5.npy"}};
	int st[2] = {0, 0};
	CHECK(queue_ack(&q, "w1", a, 2, st) == 0);
	CHECK(st[0] == QUEUE_ACK_OK && st[1] == QUEUE_ACK_DUPLICATE);
	CHECK(queue_ack(&q, "w2", a, 1, st) == 0 && st[0] == QUEUE_ACK_DUPLICATE);
	struct queue_ack u = {99, 1, sha, "/p/99.npy"};
	CHECK(queue_ack(&q, "w1", &u, 1, st) == 0 && st[0] == QUEUE_ACK_UNKNOWN);
	struct queue_counts cnt;
	CHECK(queue_counts(&q, &cnt) == 0 && cnt.done == 1 && cnt.total == 1);
	CHECK(count_transitions(&q, 5, SHARD_DONE) == 1);
	/* a malformed ack is refused before it reaches Redis */
	struct queue_ack badsha = {5, 1, "XYZ", "/p"};
	capture_begin();
	int rc = queue_ack(&q, "w1", &badsha, 1, st);
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "64 lowercase hex") != NULL);
	free(msg);
	queue_lease_release(&l);
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&c);
}

/* Several shards per take, in queue order, each with its own lease; acked together. */
static void test_take_n(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	CHECK(queue_init(&q, &c, "taken", &o) == 0);
	struct queue_shard s[5] = {{0, 0, 4, NULL}, {1, 4, 4, "p1"}, {2, 8, 4, NULL}, {3, 12, 4, NULL},
				   {4, 16, 2, NULL}};
	CHECK(queue_push(&q, s, 5, NULL) == 0);
	CHECK(queue_seal(&q) == 0);
	struct queue_lease l[4];
	size_t n = 0;
	CHECK(queue_take_n(&q, "w", 0, l, 3, &n) == QUEUE_GOT && n == 3);
	CHECK(l[0].id == 0 && l[1].id == 1 && l[2].id == 2 && l[1].first == 4 && l[1].count == 4);
	CHECK(strcmp(l[1].payload, "p1") == 0 && l[2].attempt == 1 && l[2].deadline_ms > 0);
	int held[3];
	CHECK(queue_renew(&q, "w", l, 3, held, NULL) == 0 && held[0] && held[1] && held[2]);
	char sha[65];
	sha256_hex("x", 1, sha);
	struct queue_ack a[3];
	for (int i = 0; i < 3; i++)
		a[i] = (struct queue_ack){l[i].id, l[i].attempt, sha, "/p/x.npy"};
	int st[3] = {0, 0, 0};
	CHECK(queue_ack(&q, "w", a, 3, st) == 0 && st[0] == QUEUE_ACK_OK && st[2] == QUEUE_ACK_OK);
	for (int i = 0; i < 3; i++)
		queue_lease_release(&l[i]);
	/* fewer left than asked for: what there is */
	CHECK(queue_take_n(&q, "w", 0, l, 4, &n) == QUEUE_GOT && n == 2 && l[0].id == 3 && l[1].count == 2);
	for (int i = 0; i < 2; i++)
		queue_lease_release(&l[i]);
	CHECK(queue_take_n(&q, "w", 0, l, 4, &n) == QUEUE_EMPTY && n == 0);
	capture_begin();
	int rc = queue_take_n(&q, "w", 0, l, 0, &n);
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "1 to 256 shards") != NULL);
	free(msg);
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&c);
}

/* Lease expiry -> reaped -> redelivered with attempt 2; the old holder's ack is stale. */
static void test_lease_expiry(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	CHECK(queue_init(&q, &c, "exp", &o) == 0);
	struct queue_shard s = {1, 0, 8, NULL};
	CHECK(queue_push(&q, &s, 1, NULL) == 0);
	CHECK(queue_seal(&q) == 0);
	struct queue_lease la, lb;
	CHECK(queue_take(&q, "wa", 0, &la) == QUEUE_GOT && la.attempt == 1);
	/* renewing keeps it past the original deadline */
	for (int i = 0; i < 3; i++) {
		nap_ms(100);
		int held = 0;
		CHECK(queue_renew(&q, "wa", &la, 1, &held, NULL) == 0 && held == 1);
	}
	size_t expired = 9, promoted = 9;
	CHECK(queue_reap(&q, &expired, &promoted) == 0 && expired == 0);
	/* another worker finds nothing, but not drained: the lease is out */
	CHECK(queue_take(&q, "wb", 0, &lb) == QUEUE_EMPTY);
	nap_ms(250);
	CHECK(queue_reap(&q, &expired, &promoted) == 0 && expired == 1);
	struct queue_counts cnt;
	CHECK(queue_counts(&q, &cnt) == 0 && cnt.delayed == 1 && cnt.leased == 0);
	/* the take waits out the backoff (<= 40 ms) by polling */
	double t0 = now_seconds();
	CHECK(queue_take(&q, "wb", 1000, &lb) == QUEUE_GOT);
	CHECK(now_seconds() - t0 < 0.5);
	CHECK(lb.id == 1 && lb.attempt == 2);
	int held = 1;
	CHECK(queue_renew(&q, "wa", &la, 1, &held, NULL) == 0 && held == 0);
	char sha[65];
	sha256_hex("y", 1, sha);
	struct queue_ack aa = {1, la.attempt, sha, "/p/1.npy"}, ab = {1, lb.attempt, sha, "/p/1.npy"};
	int st = 0;
	CHECK(queue_ack(&q, "wa", &aa, 1, &st) == 0 && st == QUEUE_ACK_STALE);
	/* the same worker name but the old attempt is stale too */
	aa.attempt = 1;
	CHECK(queue_ack(&q, "wb", &aa, 1, &st) == 0 && st == QUEUE_ACK_STALE);
	CHECK(queue_ack(&q, "wb", &ab, 1, &st) == 0 && st == QUEUE_ACK_OK);
	CHECK(queue_ack(&q, "wa", &aa, 1, &st) == 0 && st == QUEUE_ACK_DUPLICATE);
	CHECK(queue_counts(&q, &cnt) == 0 && cnt.done == 1);
	CHECK(count_transitions(&q, 1, SHARD_DELAYED) == 1);
	CHECK(count_transitions(&q, 1, SHARD_DONE) == 1);
	queue_lease_release(&la);
	CHECK(queue_take(&q, "wa", 0, &la) == QUEUE_DRAINED);
	queue_lease_release(&lb);
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&c);
}

static int dead_cb(void *arg, const struct queue_shard_info *s)
{
	struct queue_shard_info *out = arg;
	*out = *s;
	out->last_error = s->last_error ? xstrdup(s->last_error) : NULL;
	out->worker = NULL;
	out->sha256 = out->path = out->payload = NULL;
	return 0;
}

/* Failing max_attempts times (by fail and by lease expiry) dead-letters with the error. */
static void test_dead_letter(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	o.max_attempts = 3;
	CHECK(queue_init(&q, &c, "dead", &o) == 0);
	struct queue_shard s = {3, 48, 16, NULL};
	CHECK(queue_push(&q, &s, 1, NULL) == 0);
	struct queue_lease l;
	enum shard_state next = SHARD_NEW;
	CHECK(queue_take(&q, "w", 0, &l) == QUEUE_GOT && l.attempt == 1);
	CHECK(queue_fail(&q, "w", &l, "cannot decode sample 50", &next) == 1);
	CHECK(next == SHARD_DELAYED);
	CHECK(queue_fail(&q, "w", &l, "again", &next) == 0); /* no longer held */
	queue_lease_release(&l);
	CHECK(queue_take(&q, "w", 1000, &l) == QUEUE_GOT && l.attempt == 2);
	queue_lease_release(&l);
	nap_ms(250); /* second delivery's lease expires */
	CHECK(queue_take(&q, "w", 1000, &l) == QUEUE_GOT && l.attempt == 3);
	CHECK(queue_fail(&q, "w", &l, "out of memory on shard 3", &next) == 1);
	CHECK(next == SHARD_DEAD);
	queue_lease_release(&l);
	struct queue_counts cnt;
	CHECK(queue_counts(&q, &cnt) == 0 && cnt.dead == 1 && cnt.ready == 0 && cnt.delayed == 0);
	int64_t *ids = NULL;
	size_t n = 0;
	CHECK(queue_ids(&q, SHARD_DEAD, &ids, &n) == 0 && n == 1 && ids[0] == 3);
	struct queue_shard_info info = {0};
	CHECK(queue_shards_each(&q, ids, n, dead_cb, &info) == 0);
	CHECK(info.state == SHARD_DEAD && info.attempts == 3 && info.first == 48);
	CHECK(info.last_error && strcmp(info.last_error, "out of memory on shard 3") == 0);
	free((char *)info.last_error);
	CHECK(count_transitions(&q, 3, SHARD_DEAD) == 1);
	/* revive: back to ready with attempts reset */
	size_t revived = 0;
	CHECK(queue_revive(&q, ids, n, &revived) == 0 && revived == 1);
	CHECK(queue_take(&q, "w", 0, &l) == QUEUE_GOT && l.attempt == 1);
	/* the coordinator rejects a bad result: done -> delayed */
	char sha[65];
	sha256_hex("z", 1, sha);
	struct queue_ack a = {3, l.attempt, sha, "/p/3.npy"};
	int st = 0;
	CHECK(queue_ack(&q, "w", &a, 1, &st) == 0 && st == QUEUE_ACK_OK);
	CHECK(queue_reject(&q, 3, "sha256 mismatch") == 1);
	CHECK(queue_reject(&q, 3, "again") == 0);
	CHECK(queue_counts(&q, &cnt) == 0 && cnt.done == 0 && cnt.delayed == 1);
	free(ids);
	queue_lease_release(&l);
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&c);
}

static void test_cancel(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	CHECK(queue_init(&q, &c, "cxl", &o) == 0);
	struct queue_shard s[2] = {{0, 0, 4, NULL}, {1, 4, 4, NULL}};
	CHECK(queue_push(&q, s, 2, NULL) == 0);
	struct queue_lease l;
	CHECK(queue_take(&q, "w", 0, &l) == QUEUE_GOT);
	char *why = NULL;
	CHECK(queue_cancelled(&q, &why) == 0 && why == NULL);
	CHECK(queue_cancel(&q, "mke cancel by alice") == 0);
	CHECK(queue_cancelled(&q, &why) == 1 && why && strcmp(why, "mke cancel by alice") == 0);
	free(why);
	int held = 0, cancelled = 0;
	CHECK(queue_renew(&q, "w", &l, 1, &held, &cancelled) == 0 && cancelled == 1 && held == 1);
	struct queue_lease l2;
	CHECK(queue_take(&q, "w", 0, &l2) == QUEUE_CANCELLED);
	queue_lease_release(&l);
	queue_purge(&q);
	CHECK(queue_cancelled(&q, NULL) == 0);
	queue_release(&q);
	redis_conn_close(&c);
}

struct collect {
	int n;
	char ids[64][QUEUE_ID_MAX];
	int types[64];
	double values[64];
	int stop_at;
};

static int collect_cb(void *arg, const char *id, const char *json, size_t len)
{
	struct collect *c = arg;
	if (c->stop_at && c->n == c->stop_at)
		return 7;
	struct queue_msg m;
	if (queue_msg_parse(&m, json, len, NULL, 0) != 0 || c->n >= 64)
		return 9;
	snprintf(c->ids[c->n], QUEUE_ID_MAX, "%s", id);
	c->types[c->n] = m.type;
	c->values[c->n] = m.value;
	c->n++;
	queue_msg_release(&m);
	return 0;
}

/* Round trip, resume from the last id (nothing twice), bounded block, gap detection. */
static void test_events(void)
{
	if (!have_server)
		return;
	struct redis_conn c;
	CHECK(open_conn(&c, NULL) == 0);
	struct queue q;
	struct queue_opts o;
	fast_opts(&o);
	CHECK(queue_init(&q, &c, "ev", &o) == 0);
	CHECK(queue_emit_metric(&q, 0, "mm_student", 10, "loss", 0.25) == 0);
	CHECK(queue_emit_metric(&q, 0, "mm_student", 20, "loss", NAN) == 0);
	CHECK(queue_emit_progress(&q, 3, "label", 5, 40) == 0);
	CHECK(queue_emit_log(&q, 1, "warning", "sample 17 quarantined: bad wav header") == 0);
	const char *two[] = {
		"{\"type\":\"hello\",\"ts\":1,\"rank\":0,\"worker\":\"n1:10:r0\",\"host\":\"n1\",\"pid\":10}",
		"{\"type\":\"bye\",\"ts\":2,\"rank\":0,\"worker\":\"n1:10:r0\",\"status\":\"ok\"}",
	};
	CHECK(queue_events_add(&q, two, 2) == 0);
	const char *bad[] = {"{\"type\":\"metric\",\"ts\":1,\"rank\":0}"};
	capture_begin();
	int rc = queue_events_add(&q, bad, 1);
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "field 'variant'") != NULL);
	free(msg);

	struct collect col = {0};
	char last[QUEUE_ID_MAX] = "0-0";
	int gap = 1;
	CHECK(queue_events_read(&q, last, 0, 2, collect_cb, &col, &gap) == 2);
	CHECK(gap == 0 && col.n == 2 && strcmp(last, col.ids[1]) == 0);
	CHECK(col.types[0] == QMSG_METRIC && col.values[0] == 0.25 && isnan(col.values[1]));
	/* a callback that stops leaves last_id before the message it refused */
	col.stop_at = 3;
	CHECK(queue_events_read(&q, last, 0, 100, collect_cb, &col, &gap) == 7);
	CHECK(col.n == 3 && strcmp(last, col.ids[2]) == 0);
	col.stop_at = 0;
	CHECK(queue_events_read(&q, last, 0, 100, collect_cb, &col, &gap) == 3);
	CHECK(col.n == 6 && col.types[3] == QMSG_LOG && col.types[4] == QMSG_HELLO &&
	      col.types[5] == QMSG_BYE);
	int distinct = 1;
	for (int i = 1; i < col.n; i++)
		distinct &= strcmp(col.ids[i - 1], col.ids[i]) < 0 || strlen(col.ids[i - 1]) < strlen(col.ids[i]);
	CHECK(distinct);
	/* nothing new: a bounded block returns 0 after about block_ms */
	double t0 = now_seconds();
	CHECK(queue_events_read(&q, last, 100, 100, collect_cb, &col, &gap) == 0);
	double dt = now_seconds() - t0;
	CHECK(dt >= 0.08 && dt < 1.0);
	CHECK(col.n == 6);
	/* a block as long as the socket timeout is refused */
	capture_begin();
	rc = queue_events_read(&q, last, 2000, 100, collect_cb, &col, &gap);
	msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "socket timeout") != NULL);
	free(msg);
	queue_purge(&q);
	queue_release(&q);

	/* gap: a tiny cap trims messages nobody read yet */
	o.events_cap = 10;
	CHECK(queue_init(&q, &c, "gap", &o) == 0);
	int sent = 0;
	for (int i = 0; i < 300; i++)
		sent += queue_emit_metric(&q, 0, "", i, "x", i) == 0;
	CHECK(sent == 300);
	struct collect col2 = {0};
	char last2[QUEUE_ID_MAX] = "0-0";
	col2.stop_at = 1;
	gap = 0;
	CHECK(queue_events_read(&q, last2, 0, 5, collect_cb, &col2, &gap) == 7);
	CHECK(gap == 1);
	queue_purge(&q);
	queue_release(&q);
	redis_conn_close(&c);
}

static void test_msg_parse(void)
{
	struct queue_msg m;
	char err[160];
	const char *ok = "{\"type\":\"shard\",\"ts\":1700000000000,\"shard\":4,\"from\":\"leased\","
			 "\"to\":\"done\",\"attempt\":2,\"worker\":\"w\",\"sha256\":"
			 "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
			 "\"path\":\"/l/4.npy\",\"future_field\":[1,2]}";
	CHECK(queue_msg_parse(&m, ok, strlen(ok), err, sizeof(err)) == 0);
	CHECK(m.type == QMSG_SHARD && m.shard == 4 && m.from == SHARD_LEASED &&
	      m.to == SHARD_DONE && m.attempt == 2 && m.rank == -1);
	CHECK(m.ts_ms == 1700000000000LL && strcmp(m.path, "/l/4.npy") == 0);
	queue_msg_release(&m);
	static const struct {
		const char *json, *want;
	} bad[] = {
		{"", "not valid JSON"},
		{"[1]", "not a JSON object"},
		{"{\"type\":\"nope\",\"ts\":1}", "unknown message type"},
		{"{\"type\":\"metric\",\"ts\":1.5,\"rank\":0}", "'ts'"},
		{"{\"type\":\"metric\",\"ts\":1,\"rank\":0,\"variant\":\"\",\"step\":-1,\"key\":\"l\",\"value\":1}", "'step'"},
		{"{\"type\":\"metric\",\"ts\":1,\"rank\":0,\"variant\":\"\",\"step\":1,\"key\":\"l\",\"value\":\"1\"}", "'value'"},
		{"{\"type\":\"log\",\"ts\":1,\"rank\":0,\"level\":\"loud\",\"text\":\"x\"}", "'level'"},
		{"{\"type\":\"shard\",\"ts\":1,\"shard\":1,\"from\":\"leased\",\"to\":\"done\",\"attempt\":1}", "sha256/path"},
		{"{\"type\":\"shard\",\"ts\":1,\"shard\":1,\"from\":\"zzz\",\"to\":\"done\",\"attempt\":1}", "'from'"},
		{"{\"type\":\"hello\",\"ts\":1,\"rank\":0,\"worker\":\"w\",\"host\":\"h\"}", "'pid'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		int rc = queue_msg_parse(&m, bad[i].json, strlen(bad[i].json), err, sizeof(err));
		CHECK_MSG(rc == -1 && strstr(err, bad[i].want), "case %zu: rc %d err '%s'", i, rc, err);
	}
	CHECK(shard_state_can_advance(SHARD_LEASED, SHARD_DONE));
	CHECK(!shard_state_can_advance(SHARD_READY, SHARD_DONE));
	CHECK(!shard_state_can_advance(SHARD_DONE, SHARD_READY));
	for (int s = 0; s < SHARD_NSTATES; s++)
		CHECK(shard_state_from_name(shard_state_name((enum shard_state)s)) == s);
}

static void test_verify_file(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/labels.npy", tmpdir);
	CHECK(write_file_atomic(path, "hello", 5, 0644) == 0);
	char sha[65];
	sha256_hex("hello", 5, sha);
	CHECK(queue_verify_file(path, sha) == 0);
	capture_begin();
	sha256_hex("hellO", 5, sha);
	int rc1 = queue_verify_file(path, sha);
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.npy", tmpdir);
	int rc2 = queue_verify_file(missing, sha);
	char *msg = capture_end();
	CHECK(rc1 == -1 && rc2 == -1 && strstr(msg, "the ack said") != NULL);
	free(msg);
}

/* A connection killed by the server reconnects on the next command. */
static void test_reconnect(void)
{
	if (!have_server)
		return;
	struct redis_conn a, b;
	CHECK(open_conn(&a, NULL) == 0 && open_conn(&b, NULL) == 0);
	redisReply *r = redis_conn_cmd(&a, "CLIENT ID");
	CHECK(r && r->type == REDIS_REPLY_INTEGER);
	long long id = r ? r->integer : 0;
	if (r)
		freeReplyObject(r);
	r = redis_conn_cmd(&b, "CLIENT KILL ID %lld", id);
	CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
	if (r)
		freeReplyObject(r);
	capture_begin();
	r = redis_conn_cmd(&a, "PING"); /* the dead socket: reported, not resent */
	char *msg = capture_end();
	CHECK(r == NULL && strstr(msg, "PING") != NULL);
	free(msg);
	r = redis_conn_cmd(&a, "PING");
	CHECK(r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
	CHECK(a.reconnects == 1);
	if (r)
		freeReplyObject(r);
	redis_conn_close(&a);
	redis_conn_close(&b);
}

/* requirepass through the 0600 config file; right, wrong and missing passwords. */
static void test_auth(void)
{
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/auth", tmpdir);
	const char *pw = "s3cret \"pass\" \\ x";
	struct redis_server s;
	struct redis_server_opts so = {0};
	so.dir = dir;
	so.password = pw;
	CHECK(redis_server_start(&s, &so) == 0);
	if (!s.pid)
		return;
	/* never on the command line */
	char cmdpath[64];
	snprintf(cmdpath, sizeof(cmdpath), "/proc/%ld/cmdline", (long)s.pid);
	size_t len = 0;
	char *cmd = read_file(cmdpath, &len);
	int leaked = 0;
	for (size_t i = 0; cmd && i + 6 <= len; i++)
		leaked |= memcmp(cmd + i, "s3cret", 6) == 0;
	CHECK(cmd && !leaked);
	free(cmd);
	struct stat st;
	CHECK(stat(s.conf_path, &st) == 0 && (st.st_mode & 0777) == 0600);

	struct redis_conn_opts o = {0};
	o.timeout_ms = 1000;
	o.retries = 5;
	o.backoff_ms = 5;
	struct redis_conn c;
	o.password = pw;
	CHECK(redis_conn_open(&c, s.socket_path, &o) == 0);
	redisReply *r = redis_conn_cmd(&c, "PING");
	CHECK(r && r->type == REDIS_REPLY_STATUS);
	if (r)
		freeReplyObject(r);
	redis_conn_close(&c);

	o.password = "wrong";
	capture_begin();
	double t0 = now_seconds();
	int rc = redis_conn_open(&c, s.socket_path, &o);
	double dt = now_seconds() - t0;
	char *msg = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strstr(msg, "rejected the password") && strstr(msg, "MKE_REDIS_PASSWORD"), "%s", msg);
	CHECK(strstr(msg, "wrong") == NULL); /* the password itself is never printed */
	CHECK(dt < 0.5);                     /* and not retried */
	free(msg);

	o.password = NULL;
	capture_begin();
	rc = redis_conn_open(&c, s.socket_path, &o);
	msg = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strstr(msg, "requires a password"), "%s", msg);
	free(msg);

	/* the unix:// form of the address, with the password from the argument */
	char url[200];
	snprintf(url, sizeof(url), "unix://%s", s.socket_path);
	o.password = pw;
	CHECK(redis_conn_open(&c, url, &o) == 0);
	redis_conn_close(&c);

	pid_t pid = s.pid;
	CHECK(redis_server_stop(&s, 2000) == 0);
	CHECK(kill(pid, 0) == -1 && errno == ESRCH);
	CHECK(access(s.socket_path, F_OK) != 0);
	redis_server_release(&s);
}

/* A server that cannot start reports why, with its log. */
static void test_start_failures(void)
{
	struct redis_server s;
	struct redis_server_opts so = {0};
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/nobin", tmpdir);
	so.dir = dir;
	so.binary = "/nonexistent/redis-server";
	capture_begin();
	int rc1 = redis_server_start(&s, &so);
	so.binary = NULL;
	so.save = "rm -rf /";
	int rc2 = redis_server_start(&s, &so);
	so.save = NULL;
	so.dir = srv.dir; /* the main server's socket is alive */
	int rc3 = have_server ? redis_server_start(&s, &so) : -1;
	char *msg = capture_end();
	CHECK(rc1 == -1 && strstr(msg, "cannot start '/nonexistent/redis-server'") != NULL);
	CHECK(rc2 == -1 && strstr(msg, "pairs of numbers") != NULL);
	CHECK(rc3 == -1 && strstr(msg, "already listens") != NULL);
	free(msg);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int run_tests(void)
{
	struct redis_server_opts so = {0};
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/redis", tmpdir);
	so.dir = dir;
	have_server = redis_server_start(&srv, &so) == 0;
	if (have_server) {
		srv_url = xstrdup(srv.socket_path);
	}
	else
		fprintf(stderr, "FATAL: redis-server is required for test_queue and did not "
				"start (it is /usr/bin/redis-server on Debian)\n");

	RUN(test_server_started);
	RUN(test_endpoint_parse);
	RUN(test_msg_parse);
	RUN(test_options_rejected);
	RUN(test_two_clients);
	RUN(test_duplicate_ack);
	RUN(test_take_n);
	RUN(test_lease_expiry);
	RUN(test_dead_letter);
	RUN(test_cancel);
	RUN(test_events);
	RUN(test_reconnect);
	RUN(test_verify_file);
	RUN(test_auth);
	RUN(test_start_failures);

	if (have_server) {
		pid_t pid = srv.pid;
		int rc = redis_server_stop(&srv, 5000);
		if (rc != 0 || kill(pid, 0) == 0) {
			fprintf(stderr, "FAIL: redis-server (pid %ld) did not stop\n", (long)pid);
			test_failed++;
		}
		redis_server_release(&srv);
	}
	free(srv_url);
	return test_summary() || !have_server;
}

/* Kill a server left behind by a crashed child (its redis.pid survives). */
static void reap_leftover(const char *sub)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s/redis.pid", tmpdir, sub);
	if (access(path, F_OK) != 0)
		return;
	char *text = read_file(path, NULL);
	long pid;
	if (!text)
		return;
	text[strcspn(text, "\n")] = '\0';
	if (parse_long(text, &pid) == 0 && pid > 1) {
		char cmdpath[64];
		snprintf(cmdpath, sizeof(cmdpath), "/proc/%ld/cmdline", pid);
		char *cmd = access(cmdpath, F_OK) == 0 ? read_file(cmdpath, NULL) : NULL;
		if (cmd && strstr(cmd, "redis-server")) {
			fprintf(stderr, "test_queue: killing leftover redis-server %ld\n", pid);
			redis_server_kill_pid((pid_t)pid, 1000);
		}
		free(cmd);
	}
	free(text);
}

/* The tests run in a child so that, however it ends (a crash, a sanitizer
 * abort), the parent stops every redis-server it left and removes the
 * temporary directory. */
int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mke-test-queue-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	fflush(NULL);
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	if (child == 0)
		_exit(run_tests());
	int st = 0;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	reap_leftover("redis");
	reap_leftover("auth");
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	if (WIFSIGNALED(st)) {
		printf("FAIL test_queue (killed by signal %d)\n", WTERMSIG(st));
		return 1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
