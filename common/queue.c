/*
 * queue.c - the shard queue and the event stream (see queue.h for the keys
 * and the delivery contract; docs/queue.md for the reasoning).
 *
 * This module owns every Redis key of a run's label phase. All state changes
 * are Lua scripts run with EVALSHA, so each is atomic with respect to every
 * other client: a take, an ack and a reap of the same shard can race, and
 * exactly one of them wins. The scripts share a prelude that defines
 *
 *   advance(id, to, f)   the only code that changes a shard's state: checks
 *                        the transition table, moves the id between the
 *                        ready list / leased zset / delayed zset / dead list,
 *                        writes the hash, and appends a "shard" message to
 *                        the events stream;
 *   requeue(id, att, e)  a failed delivery: delayed with backoff, or dead;
 *   reap(limit)          expired leases -> requeue; due delays -> ready.
 *
 * Time is the Redis server's (TIME), so ranks on different nodes with
 * different clocks agree on every lease. Backoff jitter comes from the
 * Philox stream RNG_JITTER: the C side draws a seed per call and the script
 * runs a small Lehmer generator from it.
 */
#include "queue.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util.h"

/* ------------------------------------------------------------------------ */
/* Shard states.                                                             */

static const char *const state_names[SHARD_NSTATES] = {
	"new", "ready", "leased", "delayed", "done", "dead",
};

const char *shard_state_name(enum shard_state s)
{
	return (unsigned)s < SHARD_NSTATES ? state_names[s] : NULL;
}

int shard_state_from_name(const char *s)
{
	for (int i = 0; s && i < SHARD_NSTATES; i++)
		if (strcmp(s, state_names[i]) == 0)
			return i;
	return -1;
}

/* The transition table; NEXT in the Lua prelude below is the same table. */
int shard_state_can_advance(enum shard_state from, enum shard_state to)
{
	switch (from) {
	case SHARD_NEW:
		return to == SHARD_READY;
	case SHARD_READY:
		return to == SHARD_LEASED;
	case SHARD_LEASED:
		return to == SHARD_DONE || to == SHARD_DELAYED || to == SHARD_DEAD;
	case SHARD_DELAYED:
		return to == SHARD_READY;
	case SHARD_DONE:
		return to == SHARD_DELAYED || to == SHARD_DEAD;
	case SHARD_DEAD:
		return to == SHARD_READY;
	default:
		return 0;
	}
}

const char *queue_ack_status_name(int status)
{
	switch (status) {
	case QUEUE_ACK_OK:
		return "ok";
	case QUEUE_ACK_DUPLICATE:
		return "duplicate";
	case QUEUE_ACK_STALE:
		return "stale";
	case QUEUE_ACK_UNKNOWN:
		return "unknown";
	default:
		return "?";
	}
}

/* ------------------------------------------------------------------------ */
/* The scripts.                                                              */

/*
 * Every script gets the same KEYS and the same first six ARGV:
 *   KEYS  ready leased delayed dead events stats sealed cancel
 *   ARGV  1 shard key prefix  2 events cap  3 jitter seed  4 max_attempts
 *         5 backoff base ms   6 backoff cap ms   7.. the script's own
 * Kept in pieces: ISO C only promises string literals of 4095 bytes.
 */
static const char lua_prelude_a[] =
	"local READY, LEASED, DELAYED, DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
	"local EVENTS, STATS, SEALED, CANCEL = KEYS[5], KEYS[6], KEYS[7], KEYS[8]\n"
	"local PREFIX, EVCAP, SEED = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
	"local MAXATT, BASE, CAP = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
	"local T = redis.call('TIME')\n"
	"local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)\n"
	/* shard_state_can_advance() in C is the same table */
	"local NEXT = {new = {ready = 1}, ready = {leased = 1},\n"
	"  leased = {done = 1, delayed = 1, dead = 1}, delayed = {ready = 1},\n"
	"  done = {delayed = 1, dead = 1}, dead = {ready = 1}}\n"
	"local function jitter()\n"
	"  SEED = (SEED * 48271) % 2147483647\n"
	"  return SEED / 2147483647\n"
	"end\n"
	/* The one function that changes a shard's state. f.score: the deadline
	 * or due time; f.set: hash fields; f.ev: extra message fields; f.from,
	 * f.att, f.worker: the state, attempts and worker the hash holds after
	 * this write, when the caller has just read them (saves two reads a
	 * shard in take and ack). Checks before it writes, so an illegal
	 * transition changes nothing. */
	"local function advance(id, to, f)\n"
	"  local hk = PREFIX .. id\n"
	"  local from = f.from or redis.call('HGET', hk, 'state') or 'new'\n"
	"  if not (NEXT[from] and NEXT[from][to]) then\n"
	"    return 'illegal shard transition ' .. from .. ' -> ' .. to .. ' (shard ' .. id .. ')'\n"
	"  end\n"
	"  if from == 'leased' then redis.call('ZREM', LEASED, id)\n"
	"  elseif from == 'delayed' then redis.call('ZREM', DELAYED, id)\n"
	"  elseif from == 'dead' then redis.call('LREM', DEAD, 0, id)\n"
	"  elseif from == 'done' then redis.call('HINCRBY', STATS, 'done', -1) end\n"
	"  if to == 'ready' then redis.call('RPUSH', READY, id)\n"
	"  elseif to == 'leased' then redis.call('ZADD', LEASED, f.score, id)\n"
	"  elseif to == 'delayed' then redis.call('ZADD', DELAYED, f.score, id)\n"
	"  elseif to == 'dead' then redis.call('RPUSH', DEAD, id)\n"
	"  elseif to == 'done' then redis.call('HINCRBY', STATS, 'done', 1) end\n"
	"  local h = {'state', to, 'updated_ms', NOW}\n"
	"  for k, v in pairs(f.set or {}) do h[#h + 1] = k; h[#h + 1] = v end\n"
	"  redis.call('HSET', hk, unpack(h))\n"
	"  local cur = f.from and {f.att, f.worker} or redis.call('HMGET', hk, 'attempts', 'worker')\n"
	"  local ev = {type = 'shard', ts = NOW, shard = tonumber(id), from = from, to = to,\n"
	"    attempt = tonumber(cur[1]) or 0}\n"
	"  if cur[2] then ev.worker = cur[2] end\n"
	"  for k, v in pairs(f.ev or {}) do ev[k] = v end\n"
	"  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVCAP, '*', 'm', cjson.encode(ev))\n"
	"  return nil\n"
	"end\n";

static const char lua_prelude_b[] =
	/* A failed delivery number att: dead at max_attempts, else delayed by
	 * min(cap, base * 2^(att-1)), half of it fixed and half jitter. */
	"local function requeue(id, att, err)\n"
	"  if att >= MAXATT then\n"
	"    return advance(id, 'dead', {set = {last_error = err}, ev = {error = err}}), 'dead'\n"
	"  end\n"
	"  local d = BASE * 2 ^ (math.max(att, 1) - 1)\n"
	"  if d > CAP then d = CAP end\n"
	"  d = math.floor(d / 2 + jitter() * d / 2)\n"
	"  local due = NOW + d\n"
	"  return advance(id, 'delayed', {score = due, set = {last_error = err, due_ms = due},\n"
	"    ev = {error = err, due_ms = due}}), 'delayed'\n"
	"end\n"
	"local function reap(limit)\n"
	"  local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', NOW, 'LIMIT', 0, limit)\n"
	"  for _, id in ipairs(expired) do\n"
	"    local h = redis.call('HMGET', PREFIX .. id, 'state', 'attempts', 'worker')\n"
	"    if h[1] == 'leased' then\n"
	"      requeue(id, tonumber(h[2]) or 0, 'lease expired (worker ' .. (h[3] or '?') ..\n"
	"        ', attempt ' .. (h[2] or '?') .. ')')\n"
	"    else\n"
	"      redis.call('ZREM', LEASED, id)\n"
	"    end\n"
	"  end\n"
	"  local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'LIMIT', 0, limit)\n"
	"  for _, id in ipairs(due) do\n"
	"    if redis.call('HGET', PREFIX .. id, 'state') == 'delayed' then\n"
	"      advance(id, 'ready', {})\n"
	"    else\n"
	"      redis.call('ZREM', DELAYED, id)\n"
	"    end\n"
	"  end\n"
	"  return #expired, #due\n"
	"end\n";

enum { S_PUSH, S_TAKE, S_RENEW, S_ACK, S_FAIL, S_REAP, S_REJECT, S_REVIVE, S_COUNTS };

static const char *const script_names[QUEUE_SCRIPTS] = {
	"push", "take", "renew", "ack", "fail", "reap", "reject", "revive", "counts",
};

static const char *const script_bodies[QUEUE_SCRIPTS] = {
	/* push: ARGV 7.. = id, first, count, payload; known ids are skipped */
	"local n = 0\n"
	"for i = 7, #ARGV, 4 do\n"
	"  local id = ARGV[i]\n"
	"  local hk = PREFIX .. id\n"
	"  if redis.call('EXISTS', hk) == 0 then\n"
	"    redis.call('HSET', hk, 'first', ARGV[i + 1], 'count', ARGV[i + 2],\n"
	"      'payload', ARGV[i + 3], 'attempts', 0, 'created_ms', NOW)\n"
	"    local e = advance(id, 'ready', {})\n"
	"    if e then return redis.error_reply(e) end\n"
	"    redis.call('HINCRBY', STATS, 'total', 1)\n"
	"    n = n + 1\n"
	"  end\n"
	"end\n"
	"return n\n",

	/* take: ARGV 7 worker, 8 lease ms, 9 reap limit, 10 most shards (n).
	 * -> {1, id, attempt, deadline, first, count, payload, id, ...} (1..n
	 *    shards, 6 fields each) | {0, leased, delayed} | {2} drained
	 *    | {3} cancelled */
	"if redis.call('EXISTS', CANCEL) == 1 then return {3} end\n"
	"reap(tonumber(ARGV[9]))\n"
	"local worker, lease, most = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[10]) or 1\n"
	"local out = {1}\n"
	"while #out < 1 + 6 * most do\n"
	"  local id = redis.call('LPOP', READY)\n"
	"  if not id then break end\n"
	"  local hk = PREFIX .. id\n"
	"  local d = redis.call('HMGET', hk, 'state', 'attempts', 'first', 'count', 'payload')\n"
	"  if d[1] == 'ready' then\n"
	"    local att = (tonumber(d[2]) or 0) + 1\n"
	"    local dl = NOW + lease\n"
	"    local e = advance(id, 'leased', {score = dl, set = {attempts = att, worker = worker,\n"
	"      leased_ms = NOW, deadline_ms = dl}, ev = {deadline_ms = dl},\n"
	"      from = 'ready', att = att, worker = worker})\n"
	"    if e then return redis.error_reply(e) end\n"
	"    for _, v in ipairs({id, att, dl, d[3] or '0', d[4] or '0', d[5] or ''}) do\n"
	"      out[#out + 1] = v\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if #out > 1 then return out end\n"
	"local leased, delayed = redis.call('ZCARD', LEASED), redis.call('ZCARD', DELAYED)\n"
	"if redis.call('EXISTS', SEALED) == 1 and leased == 0 and delayed == 0 then return {2} end\n"
	"return {0, leased, delayed}\n",

	/* renew: ARGV 7 worker, 8 lease ms, 9.. = id, attempt -> {cancelled, held...} */
	"local worker, lease = ARGV[7], tonumber(ARGV[8])\n"
	"local out = {redis.call('EXISTS', CANCEL)}\n"
	"for i = 9, #ARGV, 2 do\n"
	"  local id, att = ARGV[i], ARGV[i + 1]\n"
	"  local hk = PREFIX .. id\n"
	"  local h = redis.call('HMGET', hk, 'state', 'worker', 'attempts')\n"
	"  if h[1] == 'leased' and h[2] == worker and h[3] == att then\n"
	"    local dl = NOW + lease\n"
	"    redis.call('ZADD', LEASED, 'XX', dl, id)\n"
	"    redis.call('HSET', hk, 'deadline_ms', dl)\n"
	"    out[#out + 1] = 1\n"
	"  else\n"
	"    out[#out + 1] = 0\n"
	"  end\n"
	"end\n"
	"return out\n",

	/* ack: ARGV 7 worker, 8.. = id, attempt, sha256, path -> {status...} */
	"local worker = ARGV[7]\n"
	"local out = {}\n"
	"for i = 8, #ARGV, 4 do\n"
	"  local id, att, sha, path = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]\n"
	"  local h = redis.call('HMGET', PREFIX .. id, 'state', 'worker', 'attempts')\n"
	"  local st = 3\n"
	"  if not h[1] then st = 4\n"
	"  elseif h[1] == 'done' then st = 2\n"
	"  elseif h[1] == 'leased' and h[2] == worker and h[3] == att then\n"
	"    local e = advance(id, 'done', {set = {sha256 = sha, path = path, done_ms = NOW},\n"
	"      ev = {sha256 = sha, path = path}, from = 'leased', att = att, worker = worker})\n"
	"    if e then return redis.error_reply(e) end\n"
	"    st = 1\n"
	"  end\n"
	"  out[#out + 1] = st\n"
	"end\n"
	"return out\n",

	/* fail: ARGV 7 worker, 8 id, 9 attempt, 10 error -> {1, next} | {3} stale | {4} */
	"local worker, id, att, err = ARGV[7], ARGV[8], ARGV[9], ARGV[10]\n"
	"local h = redis.call('HMGET', PREFIX .. id, 'state', 'worker', 'attempts')\n"
	"if not h[1] then return {4} end\n"
	"if h[1] ~= 'leased' or h[2] ~= worker or h[3] ~= att then return {3} end\n"
	"local e, to = requeue(id, tonumber(att), err)\n"
	"if e then return redis.error_reply(e) end\n"
	"return {1, to}\n",

	/* reap: ARGV 7 limit -> {expired, promoted} */
	"local e, p = reap(tonumber(ARGV[7]))\n"
	"return {e, p}\n",

	/* reject: ARGV 7 id, 8 error -> {1, next} | {0} */
	"local id, err = ARGV[7], ARGV[8]\n"
	"local h = redis.call('HMGET', PREFIX .. id, 'state', 'attempts')\n"
	"if h[1] ~= 'done' then return {0} end\n"
	"local e, to = requeue(id, tonumber(h[2]) or 1, err)\n"
	"if e then return redis.error_reply(e) end\n"
	"return {1, to}\n",

	/* revive: ARGV 7.. ids -> count */
	"local n = 0\n"
	"for i = 7, #ARGV do\n"
	"  local id = ARGV[i]\n"
	"  if redis.call('HGET', PREFIX .. id, 'state') == 'dead' then\n"
	"    redis.call('HSET', PREFIX .. id, 'attempts', 0)\n"
	"    local e = advance(id, 'ready', {})\n"
	"    if e then return redis.error_reply(e) end\n"
	"    n = n + 1\n"
	"  end\n"
	"end\n"
	"return n\n",

	/* counts -> {ready, leased, delayed, dead, done, total, sealed, cancelled} */
	"local s = redis.call('HMGET', STATS, 'done', 'total')\n"
	"return {redis.call('LLEN', READY), redis.call('ZCARD', LEASED),\n"
	"  redis.call('ZCARD', DELAYED), redis.call('LLEN', DEAD), tonumber(s[1]) or 0,\n"
	"  tonumber(s[2]) or 0, redis.call('EXISTS', SEALED), redis.call('EXISTS', CANCEL)}\n",
};

/* ------------------------------------------------------------------------ */
/* Argument vectors.                                                         */

struct args {
	int n, cap;
	const char **v;
	size_t *len;
	char **own;
	int nown;
};

static void args_add(struct args *a, const char *s, size_t len)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 32;
		a->v = xrealloc(a->v, (size_t)a->cap * sizeof(*a->v));
		a->len = xrealloc(a->len, (size_t)a->cap * sizeof(*a->len));
		a->own = xrealloc(a->own, (size_t)a->cap * sizeof(*a->own));
	}
	a->v[a->n] = s;
	a->len[a->n] = len;
	a->n++;
}

static void args_adds(struct args *a, const char *s)
{
	args_add(a, s, strlen(s));
}

static void args_addf(struct args *a, const char *fmt, ...) MKE_PRINTF(2, 3);
static void args_addf(struct args *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	args_add(a, s, (size_t)n);
	a->own[a->nown++] = s;
}

static void args_free(struct args *a)
{
	for (int i = 0; i < a->nown; i++)
		free(a->own[i]);
	free(a->v);
	free(a->len);
	free(a->own);
	memset(a, 0, sizeof(*a));
}

/* ------------------------------------------------------------------------ */
/* Setup.                                                                    */

void queue_opts_default(struct queue_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->lease_ms = 30000;
	o->max_attempts = 3;
	o->backoff_base_ms = 1000;
	o->backoff_cap_ms = 60000;
	o->poll_ms = 200;
	o->events_cap = 1000000;
	o->reap_limit = 1000;
}

static char *script_text(int which)
{
	return xasprintf("%s%s%s", lua_prelude_a, lua_prelude_b, script_bodies[which]);
}

static int load_scripts(struct queue *q)
{
	for (int i = 0; i < QUEUE_SCRIPTS; i++) {
		char *text = script_text(i);
		const char *argv[] = {"SCRIPT", "LOAD", text};
		size_t lens[] = {6, 4, strlen(text)};
		redisReply *r = redis_conn_argv(q->rc, 3, argv, lens);
		free(text);
		if (!r)
			return -1;
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			if (r->type == REDIS_REPLY_ERROR)
				mke_error("queue '%s': loading the %s script: %s", q->run,
					  script_names[i], r->str);
			else
				mke_error("queue '%s': loading the %s script: unexpected reply",
					  q->run, script_names[i]);
			freeReplyObject(r);
			return -1;
		}
		memcpy(q->sha[i], r->str, 40);
		q->sha[i][40] = '\0';
		freeReplyObject(r);
	}
	return 0;
}

static int valid_run_id(const char *run)
{
	size_t n = run ? strlen(run) : 0;
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)run[i]) && !strchr("._-", run[i]))
			return 0;
	return 1;
}

int queue_init(struct queue *q, struct redis_conn *rc, const char *run, const struct queue_opts *o)
{
	memset(q, 0, sizeof(*q));
	struct queue_opts d;
	queue_opts_default(&d);
	if (o) {
		if (o->lease_ms)
			d.lease_ms = o->lease_ms;
		if (o->max_attempts)
			d.max_attempts = o->max_attempts;
		if (o->backoff_base_ms)
			d.backoff_base_ms = o->backoff_base_ms;
		if (o->backoff_cap_ms)
			d.backoff_cap_ms = o->backoff_cap_ms;
		if (o->poll_ms)
			d.poll_ms = o->poll_ms;
		if (o->events_cap)
			d.events_cap = o->events_cap;
		if (o->reap_limit)
			d.reap_limit = o->reap_limit;
		d.jitter_seed = o->jitter_seed;
	}
	if (!rc)
		return mke_error("queue: no redis connection");
	if (!valid_run_id(run))
		return mke_error("queue: run id '%s' must be 1..64 characters of [A-Za-z0-9._-]",
				 run ? run : "");
	if (d.lease_ms < 50 || d.lease_ms > 86400000)
		return mke_error("queue: lease_ms %d must be in 50..86400000", d.lease_ms);
	if (d.max_attempts < 1 || d.max_attempts > 1000)
		return mke_error("queue: max_attempts %d must be in 1..1000", d.max_attempts);
	if (d.backoff_base_ms < 1 || d.backoff_cap_ms < 1)
		return mke_error("queue: backoff_base_ms and backoff_cap_ms must be positive");
	if (d.backoff_base_ms > d.backoff_cap_ms)
		return mke_error("queue: backoff_base_ms %d is larger than backoff_cap_ms %d",
				 d.backoff_base_ms, d.backoff_cap_ms);
	if (d.poll_ms < 1 || d.poll_ms >= d.lease_ms)
		return mke_error("queue: poll_ms %d must be positive and shorter than lease_ms %d",
				 d.poll_ms, d.lease_ms);
	if (d.events_cap < 10)
		return mke_error("queue: events_cap %ld must be at least 10", d.events_cap);
	if (d.reap_limit < 1)
		return mke_error("queue: reap_limit %d must be positive", d.reap_limit);
	q->rc = rc;
	q->o = d;
	q->run = xstrdup(run);
	static const char *const suffix[8] = {
		"ready", "leased", "delayed", "dead", "events", "stats", "sealed", "cancel",
	};
	for (int i = 0; i < 8; i++)
		q->keys[i] = xasprintf("mke:{%s}:%s", run, suffix[i]);
	q->shard_prefix = xasprintf("mke:{%s}:shard:", run);
	uint64_t seed = d.jitter_seed ? d.jitter_seed
				      : ((uint64_t)getpid() << 32) ^ (uint64_t)(wall_seconds() * 1e6);
	rng_init(&q->jitter, seed, RNG_JITTER, 0, 0);
	if (load_scripts(q) != 0) {
		queue_release(q);
		return -1;
	}
	return 0;
}

void queue_release(struct queue *q)
{
	if (!q)
		return;
	free(q->run);
	for (int i = 0; i < 8; i++)
		free(q->keys[i]);
	free(q->shard_prefix);
	memset(q, 0, sizeof(*q));
}

enum { K_READY, K_LEASED, K_DELAYED, K_DEAD, K_EVENTS, K_STATS, K_SEALED, K_CANCEL };

/* EVALSHA one script with the common KEYS/ARGV and then extra. Reloads the
 * scripts once after NOSCRIPT (a restarted Redis forgets them; nothing ran).
 * Returns a non-error reply (caller frees) or NULL after reporting. */
static redisReply *script_call(struct queue *q, int which, const struct args *extra)
{
	struct args a = {0};
	args_adds(&a, "EVALSHA");
	args_add(&a, q->sha[which], 40);
	args_adds(&a, "8");
	for (int i = 0; i < 8; i++)
		args_adds(&a, q->keys[i]);
	args_adds(&a, q->shard_prefix);
	args_addf(&a, "%ld", q->o.events_cap);
	args_addf(&a, "%" PRIu32, 1 + rng_u32(&q->jitter) % 2147483646u);
	args_addf(&a, "%d", q->o.max_attempts);
	args_addf(&a, "%d", q->o.backoff_base_ms);
	args_addf(&a, "%d", q->o.backoff_cap_ms);
	for (int i = 0; extra && i < extra->n; i++)
		args_add(&a, extra->v[i], extra->len[i]);
	redisReply *r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		r = redis_conn_argv(q->rc, a.n, a.v, a.len);
		if (r && attempt == 0 && redis_reply_is_error(r, "NOSCRIPT")) {
			freeReplyObject(r);
			r = NULL;
			if (load_scripts(q) != 0)
				break;
			continue;
		}
		break;
	}
	args_free(&a);
	if (r && r->type == REDIS_REPLY_ERROR) {
		mke_error("queue '%s': %s script: %s", q->run, script_names[which], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int64_t reply_int(const redisReply *r)
{
	if (!r)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return (int64_t)r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return (int64_t)strtoll(r->str, NULL, 10);
	return 0;
}

static int bad_reply(struct queue *q, const char *what, redisReply *r)
{
	if (r)
		freeReplyObject(r);
	return mke_error("queue '%s': %s: unexpected reply from redis", q->run, what);
}

static int valid_worker(const char *w)
{
	return w && *w && strlen(w) <= 200;
}

/* ------------------------------------------------------------------------ */
/* Coordinator side.                                                         */

#define PUSH_CHUNK 500

int queue_push(struct queue *q, const struct queue_shard *s, size_t n, size_t *pushed)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i].id < 0 || s[i].first < 0 || s[i].count < 0)
			return mke_error("queue '%s': shard %" PRId64 ": id, first and count must "
					 "not be negative", q->run, s[i].id);
	for (size_t at = 0; at < n; at += PUSH_CHUNK) {
		size_t m = n - at < PUSH_CHUNK ? n - at : PUSH_CHUNK;
		struct args a = {0};
		for (size_t i = at; i < at + m; i++) {
			args_addf(&a, "%" PRId64, s[i].id);
			args_addf(&a, "%" PRId64, s[i].first);
			args_addf(&a, "%" PRId64, s[i].count);
			args_adds(&a, s[i].payload ? s[i].payload : "");
		}
		redisReply *r = script_call(q, S_PUSH, &a);
		args_free(&a);
		if (!r)
			return -1;
		if (r->type != REDIS_REPLY_INTEGER)
			return bad_reply(q, "push", r);
		total += (size_t)r->integer;
		freeReplyObject(r);
	}
	if (pushed)
		*pushed = total;
	return 0;
}

int queue_seal(struct queue *q)
{
	redisReply *r = redis_conn_cmd(q->rc, "SET %s 1", q->keys[K_SEALED]);
	int rc = redis_reply_ok(q->rc, r, "sealing the shard queue");
	if (r)
		freeReplyObject(r);
	return rc;
}

int queue_reap(struct queue *q, size_t *expired, size_t *promoted)
{
	struct args a = {0};
	args_addf(&a, "%d", q->o.reap_limit);
	redisReply *r = script_call(q, S_REAP, &a);
	args_free(&a);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		return bad_reply(q, "reap", r);
	if (expired)
		*expired = (size_t)reply_int(r->element[0]);
	if (promoted)
		*promoted = (size_t)reply_int(r->element[1]);
	freeReplyObject(r);
	return 0;
}

int queue_reject(struct queue *q, int64_t id, const char *error)
{
	struct args a = {0};
	args_addf(&a, "%" PRId64, id);
	args_adds(&a, error && *error ? error : "rejected by the coordinator");
	redisReply *r = script_call(q, S_REJECT, &a);
	args_free(&a);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return bad_reply(q, "reject", r);
	int rc = reply_int(r->element[0]) == 1;
	freeReplyObject(r);
	return rc;
}

int queue_revive(struct queue *q, const int64_t *ids, size_t n, size_t *revived)
{
	size_t total = 0;
	for (size_t at = 0; at < n; at += PUSH_CHUNK) {
		size_t m = n - at < PUSH_CHUNK ? n - at : PUSH_CHUNK;
		struct args a = {0};
		for (size_t i = at; i < at + m; i++)
			args_addf(&a, "%" PRId64, ids[i]);
		redisReply *r = script_call(q, S_REVIVE, &a);
		args_free(&a);
		if (!r)
			return -1;
		if (r->type != REDIS_REPLY_INTEGER)
			return bad_reply(q, "revive", r);
		total += (size_t)r->integer;
		freeReplyObject(r);
	}
	if (revived)
		*revived = total;
	return 0;
}

int queue_counts(struct queue *q, struct queue_counts *c)
{
	memset(c, 0, sizeof(*c));
	redisReply *r = script_call(q, S_COUNTS, NULL);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 8)
		return bad_reply(q, "counts", r);
	c->ready = (long)reply_int(r->element[0]);
	c->leased = (long)reply_int(r->element[1]);
	c->delayed = (long)reply_int(r->element[2]);
	c->dead = (long)reply_int(r->element[3]);
	c->done = (long)reply_int(r->element[4]);
	c->total = (long)reply_int(r->element[5]);
	c->sealed = reply_int(r->element[6]) != 0;
	c->cancelled = reply_int(r->element[7]) != 0;
	freeReplyObject(r);
	return 0;
}

/* Fill s from an HGETALL reply (flat field/value array). 0, or -1 if empty. */
static int shard_info_from_hash(struct queue_shard_info *s, int64_t id, const redisReply *r)
{
	memset(s, 0, sizeof(*s));
	s->id = id;
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		return -1;
	s->state = SHARD_NEW;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		const char *f = k->str, *val = v->str;
		if (strcmp(f, "state") == 0) {
			int st = shard_state_from_name(val);
			s->state = st < 0 ? SHARD_NEW : (enum shard_state)st;
		} else if (strcmp(f, "attempts") == 0) {
			s->attempts = (int)strtol(val, NULL, 10);
		} else if (strcmp(f, "first") == 0) {
			s->first = strtoll(val, NULL, 10);
		} else if (strcmp(f, "count") == 0) {
			s->count = strtoll(val, NULL, 10);
		} else if (strcmp(f, "leased_ms") == 0) {
			s->leased_ms = strtoll(val, NULL, 10);
		} else if (strcmp(f, "deadline_ms") == 0) {
			s->deadline_ms = strtoll(val, NULL, 10);
		} else if (strcmp(f, "done_ms") == 0) {
			s->done_ms = strtoll(val, NULL, 10);
		} else if (strcmp(f, "updated_ms") == 0) {
			s->updated_ms = strtoll(val, NULL, 10);
		} else if (strcmp(f, "worker") == 0) {
			s->worker = val;
		} else if (strcmp(f, "sha256") == 0) {
			s->sha256 = val;
		} else if (strcmp(f, "path") == 0) {
			s->path = val;
		} else if (strcmp(f, "last_error") == 0) {
			s->last_error = val;
		} else if (strcmp(f, "payload") == 0) {
			s->payload = val;
		}
	}
	return 0;
}

#define PIPE_CHUNK 256

int queue_shards_each(struct queue *q, const int64_t *ids, size_t n, queue_shard_cb cb, void *arg)
{
	for (size_t at = 0; at < n; at += PIPE_CHUNK) {
		size_t m = n - at < PIPE_CHUNK ? n - at : PIPE_CHUNK;
		for (size_t i = at; i < at + m; i++) {
			char key[256];
			snprintf(key, sizeof(key), "%s%" PRId64, q->shard_prefix, ids[i]);
			const char *argv[] = {"HGETALL", key};
			size_t lens[] = {7, strlen(key)};
			if (redis_conn_append(q->rc, 2, argv, lens) != 0)
				return -1;
		}
		int stop = 0;
		int failed = 0;
		for (size_t i = at; i < at + m; i++) {
			redisReply *r = redis_conn_get_reply(q->rc);
			if (!r)
				return -1; /* the connection is dropped: nothing left to drain */
			if (r->type == REDIS_REPLY_ERROR) {
				mke_error("queue '%s': reading shard %" PRId64 ": %s", q->run, ids[i],
					  r->str);
				failed = 1;
			}
			struct queue_shard_info s;
			if (!stop && !failed && shard_info_from_hash(&s, ids[i], r) == 0)
				stop = cb(arg, &s);
			freeReplyObject(r);
		}
		if (failed)
			return -1;
		if (stop)
			return stop;
	}
	return 0;
}

int queue_ids(struct queue *q, enum shard_state which, int64_t **ids, size_t *n)
{
	*ids = NULL;
	*n = 0;
	redisReply *r;
	switch (which) {
	case SHARD_READY:
		r = redis_conn_cmd(q->rc, "LRANGE %s 0 -1", q->keys[K_READY]);
		break;
	case SHARD_LEASED:
		r = redis_conn_cmd(q->rc, "ZRANGE %s 0 -1", q->keys[K_LEASED]);
		break;
	case SHARD_DELAYED:
		r = redis_conn_cmd(q->rc, "ZRANGE %s 0 -1", q->keys[K_DELAYED]);
		break;
	case SHARD_DEAD:
		r = redis_conn_cmd(q->rc, "LRANGE %s 0 -1", q->keys[K_DEAD]);
		break;
	default:
		return mke_error("queue '%s': state '%s' has no list of ids", q->run,
				 shard_state_name(which) ? shard_state_name(which) : "?");
	}
	if (redis_reply_ok(q->rc, r, "listing shard ids") != 0) {
		if (r)
			freeReplyObject(r);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY)
		return bad_reply(q, "listing shard ids", r);
	*ids = xmalloc((r->elements ? r->elements : 1) * sizeof(**ids));
	for (size_t i = 0; i < r->elements; i++)
		(*ids)[(*n)++] = reply_int(r->element[i]);
	freeReplyObject(r);
	return 0;
}

int queue_cancel(struct queue *q, const char *reason)
{
	const char *why = reason && *reason ? reason : "cancelled";
	redisReply *r = redis_conn_cmd(q->rc, "SET %s %s", q->keys[K_CANCEL], why);
	int rc = redis_reply_ok(q->rc, r, "setting the cancel key");
	if (r)
		freeReplyObject(r);
	return rc;
}

int queue_cancelled(struct queue *q, char **reason)
{
	if (reason)
		*reason = NULL;
	redisReply *r = redis_conn_cmd(q->rc, "GET %s", q->keys[K_CANCEL]);
	if (redis_reply_ok(q->rc, r, "reading the cancel key") != 0) {
		if (r)
			freeReplyObject(r);
		return -1;
	}
	int rc = r->type == REDIS_REPLY_STRING;
	if (rc && reason)
		*reason = xstrdup(r->str);
	freeReplyObject(r);
	return rc;
}

int queue_purge(struct queue *q)
{
	struct args a = {0};
	args_adds(&a, "UNLINK");
	for (int i = 0; i < 8; i++)
		args_adds(&a, q->keys[i]);
	redisReply *r = redis_conn_argv(q->rc, a.n, a.v, a.len);
	args_free(&a);
	int rc = redis_reply_ok(q->rc, r, "deleting the run's keys");
	if (r)
		freeReplyObject(r);
	if (rc)
		return -1;
	/* shard hashes: SCAN for the prefix (the run id holds no glob characters) */
	char *pattern = xasprintf("%s*", q->shard_prefix);
	char cursor[32] = "0";
	do {
		r = redis_conn_cmd(q->rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
		if (redis_reply_ok(q->rc, r, "scanning the run's shard keys") != 0 ||
		    r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			if (r)
				freeReplyObject(r);
			free(pattern);
			return mke_error("queue '%s': cannot list the shard keys to delete", q->run);
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		redisReply *keys = r->element[1];
		if (keys->elements > 0) {
			struct args d = {0};
			args_adds(&d, "UNLINK");
			for (size_t i = 0; i < keys->elements; i++)
				args_add(&d, keys->element[i]->str, keys->element[i]->len);
			redisReply *u = redis_conn_argv(q->rc, d.n, d.v, d.len);
			args_free(&d);
			rc = redis_reply_ok(q->rc, u, "deleting shard keys");
			if (u)
				freeReplyObject(u);
		}
		freeReplyObject(r);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	free(pattern);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Worker side.                                                              */

void queue_lease_release(struct queue_lease *l)
{
	if (!l)
		return;
	free(l->payload);
	memset(l, 0, sizeof(*l));
}

static void sleep_ms(int ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int queue_take(struct queue *q, const char *worker, int wait_ms, struct queue_lease *lease)
{
	size_t n = 0;
	return queue_take_n(q, worker, wait_ms, lease, 1, &n);
}

int queue_take_n(struct queue *q, const char *worker, int wait_ms, struct queue_lease *leases,
		 size_t max, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < max; i++)
		memset(&leases[i], 0, sizeof(leases[i]));
	if (!valid_worker(worker))
		return mke_error("queue '%s': worker name must be 1..200 characters", q->run);
	if (max < 1 || max > QUEUE_TAKE_MAX)
		return mke_error("queue '%s': a take asks for 1 to %d shards, not %zu", q->run,
				 QUEUE_TAKE_MAX, max);
	double deadline = now_seconds() + (wait_ms > 0 ? wait_ms : 0) / 1000.0;
	int nap = 10 < q->o.poll_ms ? 10 : q->o.poll_ms;
	for (;;) {
		struct args a = {0};
		args_adds(&a, worker);
		args_addf(&a, "%d", q->o.lease_ms);
		args_addf(&a, "%d", q->o.reap_limit);
		args_addf(&a, "%zu", max);
		redisReply *r = script_call(q, S_TAKE, &a);
		args_free(&a);
		if (!r)
			return QUEUE_ERROR;
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
			return bad_reply(q, "take", r);
		int st = (int)reply_int(r->element[0]);
		if (st == QUEUE_GOT) {
			size_t got = (r->elements - 1) / 6;
			if (got < 1 || got > max || r->elements != 1 + 6 * got)
				return bad_reply(q, "take", r);
			for (size_t i = 0; i < got; i++) {
				redisReply **e = r->element + 1 + 6 * i;
				struct queue_lease *l = &leases[i];
				l->id = reply_int(e[0]);
				l->attempt = (int)reply_int(e[1]);
				l->deadline_ms = reply_int(e[2]);
				l->first = reply_int(e[3]);
				l->count = reply_int(e[4]);
				l->payload = e[5]->type == REDIS_REPLY_STRING ? xstrdup(e[5]->str) : xstrdup("");
			}
			*n = got;
			freeReplyObject(r);
			return QUEUE_GOT;
		}
		freeReplyObject(r);
		if (st == QUEUE_DRAINED || st == QUEUE_CANCELLED)
			return st;
		double left = deadline - now_seconds();
		if (left <= 0)
			return QUEUE_EMPTY;
		/* half fixed, half jitter, so idle ranks do not poll in lockstep */
		int ms = nap / 2 + (int)(rng_uniform(&q->jitter) * (float)(nap / 2 + 1));
		if (ms > left * 1000.0)
			ms = (int)(left * 1000.0) + 1;
		sleep_ms(ms);
		nap = nap * 2 > q->o.poll_ms ? q->o.poll_ms : nap * 2;
	}
}

int queue_renew(struct queue *q, const char *worker, const struct queue_lease *leases,
		size_t n, int *held, int *cancelled)
{
	if (!valid_worker(worker))
		return mke_error("queue '%s': worker name must be 1..200 characters", q->run);
	struct args a = {0};
	args_adds(&a, worker);
	args_addf(&a, "%d", q->o.lease_ms);
	for (size_t i = 0; i < n; i++) {
		args_addf(&a, "%" PRId64, leases[i].id);
		args_addf(&a, "%d", leases[i].attempt);
	}
	redisReply *r = script_call(q, S_RENEW, &a);
	args_free(&a);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n + 1)
		return bad_reply(q, "renew", r);
	if (cancelled)
		*cancelled = reply_int(r->element[0]) != 0;
	for (size_t i = 0; held && i < n; i++)
		held[i] = reply_int(r->element[i + 1]) == 1;
	freeReplyObject(r);
	return 0;
}

static int valid_sha256(const char *s)
{
	if (!s || strlen(s) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return 0;
	return 1;
}

int queue_ack(struct queue *q, const char *worker, const struct queue_ack *acks, size_t n,
	      int *status)
{
	if (!valid_worker(worker))
		return mke_error("queue '%s': worker name must be 1..200 characters", q->run);
	for (size_t i = 0; i < n; i++) {
		if (!valid_sha256(acks[i].sha256))
			return mke_error("queue '%s': ack of shard %" PRId64 ": sha256 must be 64 "
					 "lowercase hex digits", q->run, acks[i].id);
		if (!acks[i].path || !*acks[i].path)
			return mke_error("queue '%s': ack of shard %" PRId64 ": no path", q->run,
					 acks[i].id);
	}
	if (n == 0)
		return 0;
	struct args a = {0};
	args_adds(&a, worker);
	for (size_t i = 0; i < n; i++) {
		args_addf(&a, "%" PRId64, acks[i].id);
		args_addf(&a, "%d", acks[i].attempt);
		args_adds(&a, acks[i].sha256);
		args_adds(&a, acks[i].path);
	}
	redisReply *r = script_call(q, S_ACK, &a);
	args_free(&a);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
		return bad_reply(q, "ack", r);
	for (size_t i = 0; status && i < n; i++)
		status[i] = (int)reply_int(r->element[i]);
	freeReplyObject(r);
	return 0;
}

int queue_fail(struct queue *q, const char *worker, const struct queue_lease *lease,
	       const char *error, enum shard_state *next)
{
	if (!valid_worker(worker))
		return mke_error("queue '%s': worker name must be 1..200 characters", q->run);
	struct args a = {0};
	args_adds(&a, worker);
	args_addf(&a, "%" PRId64, lease->id);
	args_addf(&a, "%d", lease->attempt);
	const char *e = error && *error ? error : "failed";
	args_add(&a, e, strlen(e) > 4000 ? 4000 : strlen(e));
	redisReply *r = script_call(q, S_FAIL, &a);
	args_free(&a);
	if (!r)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return bad_reply(q, "fail", r);
	int held = reply_int(r->element[0]) == 1;
	if (held && next && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
		int st = shard_state_from_name(r->element[1]->str);
		*next = st < 0 ? SHARD_DELAYED : (enum shard_state)st;
	}
	freeReplyObject(r);
	return held;
}

/* ------------------------------------------------------------------------ */
/* The event stream.                                                         */

int queue_events_add(struct queue *q, const char *const *json, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct queue_msg m;
		char err[160];
		if (queue_msg_parse(&m, json[i], strlen(json[i]), err, sizeof(err)) != 0)
			return mke_error("queue '%s': refusing to send a bad message: %s", q->run,
					 err);
		queue_msg_release(&m);
	}
	char cap[32];
	snprintf(cap, sizeof(cap), "%ld", q->o.events_cap);
	for (size_t at = 0; at < n; at += PIPE_CHUNK) {
		size_t m = n - at < PIPE_CHUNK ? n - at : PIPE_CHUNK;
		for (size_t i = at; i < at + m; i++) {
			const char *argv[] = {"XADD", q->keys[K_EVENTS], "MAXLEN", "~", cap, "*",
					      "m", json[i]};
			size_t lens[8];
			for (int k = 0; k < 8; k++)
				lens[k] = strlen(argv[k]);
			if (redis_conn_append(q->rc, 8, argv, lens) != 0)
				return -1;
		}
		int rc = 0;
		for (size_t i = at; i < at + m; i++) {
			redisReply *r = redis_conn_get_reply(q->rc);
			if (!r)
				return -1;
			if (redis_reply_ok(q->rc, r, "XADD to the events stream") != 0)
				rc = -1;
			freeReplyObject(r);
		}
		if (rc)
			return -1;
	}
	return 0;
}

int queue_emit_json(struct queue *q, const cJSON *msg)
{
	cJSON *copy = cJSON_Duplicate(msg, 1);
	if (!copy || !cJSON_IsObject(copy)) {
		cJSON_Delete(copy);
		return mke_error("queue '%s': a message must be a JSON object", q->run);
	}
	if (!cJSON_GetObjectItemCaseSensitive(copy, "ts"))
		cJSON_AddNumberToObject(copy, "ts", floor(wall_seconds() * 1000.0));
	char *text = cJSON_PrintUnformatted(copy);
	cJSON_Delete(copy);
	if (!text)
		return mke_error("queue '%s': cannot encode a message", q->run);
	const char *one[] = {text};
	int rc = queue_events_add(q, one, 1);
	cJSON_free(text);
	return rc;
}

static cJSON *msg_new(const char *type, int rank)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "type", type);
	cJSON_AddNumberToObject(m, "ts", floor(wall_seconds() * 1000.0));
	cJSON_AddNumberToObject(m, "rank", rank);
	return m;
}

static int msg_send(struct queue *q, cJSON *m)
{
	int rc = queue_emit_json(q, m);
	cJSON_Delete(m);
	return rc;
}

int queue_emit_metric(struct queue *q, int rank, const char *variant, int64_t step,
		      const char *key, double value)
{
	cJSON *m = msg_new("metric", rank);
	cJSON_AddStringToObject(m, "variant", variant ? variant : "");
	cJSON_AddNumberToObject(m, "step", (double)step);
	cJSON_AddStringToObject(m, "key", key ? key : "");
	if (isfinite(value))
		cJSON_AddNumberToObject(m, "value", value);
	else
		cJSON_AddNullToObject(m, "value"); /* JSON has no NaN/Inf */
	return msg_send(q, m);
}

int queue_emit_progress(struct queue *q, int rank, const char *phase, int64_t done,
			int64_t total)
{
	cJSON *m = msg_new("progress", rank);
	cJSON_AddStringToObject(m, "phase", phase ? phase : "");
	cJSON_AddNumberToObject(m, "done", (double)done);
	cJSON_AddNumberToObject(m, "total", (double)total);
	return msg_send(q, m);
}

int queue_emit_log(struct queue *q, int rank, const char *level, const char *text)
{
	cJSON *m = msg_new("log", rank);
	cJSON_AddStringToObject(m, "level", level ? level : "info");
	cJSON_AddStringToObject(m, "text", text ? text : "");
	return msg_send(q, m);
}

/* Stream ids "ms-seq": compare numerically. */
static int stream_id_parse(const char *s, uint64_t *ms, uint64_t *seq)
{
	char *end;
	errno = 0;
	*ms = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	*seq = 0;
	if (*end == '-') {
		const char *p = end + 1;
		*seq = strtoull(p, &end, 10);
		if (errno || end == p)
			return -1;
	}
	return *end ? -1 : 0;
}

static int stream_id_cmp(const char *a, const char *b)
{
	uint64_t am, as, bm, bs;
	if (stream_id_parse(a, &am, &as) != 0 || stream_id_parse(b, &bm, &bs) != 0)
		return 0;
	if (am != bm)
		return am < bm ? -1 : 1;
	return as < bs ? -1 : as > bs;
}

/* From an XINFO STREAM reply taken just AFTER an XREAD from last_id: may
 * messages after last_id have been trimmed before we read them? Trimming
 * removes from the head, so while the first entry is <= last_id nothing
 * after last_id is gone. If the first entry is past last_id and something
 * was ever deleted, some of what followed last_id may be lost: say so (a
 * false alarm only when the reader lagged by about the whole cap; the
 * caller's reconciliation is idempotent). (max-deleted-entry-id would be
 * exact but Redis 7.0 does not update it on trimming.) */
static int stream_gap(const redisReply *r, const char *last_id)
{
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return 0;
	long long length = -1, added = -1;
	const char *first = NULL, *last_gen = NULL;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
			length = v->integer;
		else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER)
			added = v->integer;
		else if (strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING)
			last_gen = v->str;
		else if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY &&
			 v->elements >= 1 && v->element[0]->type == REDIS_REPLY_STRING)
			first = v->element[0]->str;
	}
	int deleted = added >= 0 ? added > length : strcmp(last_id, "0-0") != 0;
	if (!deleted)
		return 0;
	if (first)
		return stream_id_cmp(first, last_id) > 0;
	/* empty after trimming: lost if anything was added after last_id */
	return last_gen && stream_id_cmp(last_gen, last_id) > 0;
}

int queue_events_read(struct queue *q, char last_id[QUEUE_ID_MAX], int block_ms, int count,
		      queue_event_cb cb, void *arg, int *gap)
{
	if (gap)
		*gap = 0;
	if (!last_id[0])
		snprintf(last_id, QUEUE_ID_MAX, "0-0");
	uint64_t ms, seq;
	if (strlen(last_id) >= QUEUE_ID_MAX || stream_id_parse(last_id, &ms, &seq) != 0)
		return mke_error("queue '%s': '%s' is not a stream id (ms-seq)", q->run, last_id);
	if (block_ms < 0 || block_ms > q->rc->timeout_ms / 2)
		return mke_error("queue '%s': events block time %d ms must be in 0..%d (half the "
				 "%d ms redis socket timeout, which also covers this read)",
				 q->run, block_ms, q->rc->timeout_ms / 2, q->rc->timeout_ms);
	if (count < 1)
		count = 1000;
	char cnt[16], blk[16];
	snprintf(cnt, sizeof(cnt), "%d", count);
	snprintf(blk, sizeof(blk), "%d", block_ms);
	const char *xi[] = {"XINFO", "STREAM", q->keys[K_EVENTS]};
	size_t xil[] = {5, 6, strlen(q->keys[K_EVENTS])};
	const char *xr[10];
	size_t xrl[10];
	int n = 0;
	xr[n++] = "XREAD";
	xr[n++] = "COUNT";
	xr[n++] = cnt;
	if (block_ms > 0) {
		xr[n++] = "BLOCK";
		xr[n++] = blk;
	}
	xr[n++] = "STREAMS";
	xr[n++] = q->keys[K_EVENTS];
	xr[n++] = last_id;
	for (int i = 0; i < n; i++)
		xrl[i] = strlen(xr[i]);
	/* XINFO after XREAD, in the same round trip: see stream_gap() */
	if (redis_conn_append(q->rc, n, xr, xrl) != 0 || redis_conn_append(q->rc, 3, xi, xil) != 0)
		return -1;
	redisReply *r = redis_conn_get_reply(q->rc);
	if (!r)
		return -1;
	redisReply *info = redis_conn_get_reply(q->rc);
	if (!info) {
		freeReplyObject(r);
		return -1;
	}
	if (gap && info->type != REDIS_REPLY_ERROR) /* ERR no such key: nothing yet */
		*gap = stream_gap(info, last_id);
	freeReplyObject(info);
	if (redis_reply_ok(q->rc, r, "XREAD of the events stream") != 0) {
		freeReplyObject(r);
		return -1;
	}
	int handled = 0;
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return 0;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
	    r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2)
		return bad_reply(q, "XREAD", r);
	const redisReply *entries = r->element[0]->element[1];
	for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= QUEUE_ID_MAX)
			continue;
		const char *id = e->element[0]->str;
		const char *msg = NULL;
		size_t len = 0;
		const redisReply *f = e->element[1];
		for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
			if (f->element[k]->type == REDIS_REPLY_STRING &&
			    strcmp(f->element[k]->str, "m") == 0 &&
			    f->element[k + 1]->type == REDIS_REPLY_STRING) {
				msg = f->element[k + 1]->str;
				len = f->element[k + 1]->len;
			}
		if (msg) {
			int stop = cb(arg, id, msg, len);
			if (stop) {
				freeReplyObject(r);
				return stop;
			}
		}
		snprintf(last_id, QUEUE_ID_MAX, "%s", id);
		handled++;
	}
	freeReplyObject(r);
	return handled;
}

/* ------------------------------------------------------------------------ */
/* Messages.                                                                 */

static const char *const msg_types[] = {
	NULL, "metric", "progress", "log", "shard", "hello", "bye",
};

static int fail_msg(char *err, size_t errlen, const char *fmt, ...) MKE_PRINTF(3, 4);
static int fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Field helpers: 0 ok (or absent and optional), -1 wrong. */
static int get_str(const cJSON *o, const char *name, int required, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!v)
		return required ? -1 : 0;
	if (!cJSON_IsString(v) || !v->valuestring)
		return -1;
	*out = v->valuestring;
	return 0;
}

/* An integer: a JSON number with no fraction, |v| <= 2^53. */
static int get_int(const cJSON *o, const char *name, int required, int64_t lo, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!v)
		return required ? -1 : 0;
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0 || d < (double)lo)
		return -1;
	*out = (int64_t)d;
	return 0;
}

int queue_msg_parse(struct queue_msg *m, const char *json, size_t len, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->rank = -1;
	m->value = NAN;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!root)
		return fail_msg(err, errlen, "not valid JSON");
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return fail_msg(err, errlen, "not a JSON object");
	}
	m->root = root;
	const char *type = NULL, *bad = NULL;
	int64_t v = 0;
	if (get_str(root, "type", 1, &type) != 0) {
		bad = "type";
		goto fail;
	}
	for (int i = 1; i < (int)(sizeof(msg_types) / sizeof(msg_types[0])); i++)
		if (strcmp(type, msg_types[i]) == 0)
			m->type = (enum queue_msg_type)i;
	if (!m->type) {
		fail_msg(err, errlen, "unknown message type '%.40s'", type);
		queue_msg_release(m);
		return -1;
	}
	if (get_int(root, "ts", 1, 0, &m->ts_ms) != 0) {
		bad = "ts";
		goto fail;
	}
	if (get_int(root, "rank", m->type != QMSG_SHARD, 0, &v) != 0 || v > 0x7fffffff) {
		bad = "rank";
		goto fail;
	}
	if (cJSON_GetObjectItemCaseSensitive(root, "rank"))
		m->rank = (int)v;
	if (get_str(root, "worker", m->type == QMSG_HELLO || m->type == QMSG_BYE, &m->worker)) {
		bad = "worker";
		goto fail;
	}
	switch (m->type) {
	case QMSG_METRIC: {
		if (get_str(root, "variant", 1, &m->variant)) {
			bad = "variant";
			goto fail;
		}
		if (get_int(root, "step", 1, 0, &m->step)) {
			bad = "step";
			goto fail;
		}
		if (get_str(root, "key", 1, &m->key) || !*m->key) {
			bad = "key";
			goto fail;
		}
		const cJSON *val = cJSON_GetObjectItemCaseSensitive(root, "value");
		if (cJSON_IsNumber(val))
			m->value = val->valuedouble;
		else if (cJSON_IsNull(val))
			m->value = NAN;
		else {
			bad = "value";
			goto fail;
		}
		break;
	}
	case QMSG_PROGRESS:
		if (get_str(root, "phase", 1, &m->phase)) {
			bad = "phase";
			goto fail;
		}
		if (get_int(root, "done", 1, 0, &m->done)) {
			bad = "done";
			goto fail;
		}
		if (get_int(root, "total", 1, 0, &m->total)) {
			bad = "total";
			goto fail;
		}
		break;
	case QMSG_LOG:
		if (get_str(root, "level", 1, &m->level) ||
		    (strcmp(m->level, "debug") && strcmp(m->level, "info") &&
		     strcmp(m->level, "warning") && strcmp(m->level, "error"))) {
			bad = "level";
			goto fail;
		}
		if (get_str(root, "text", 1, &m->text)) {
			bad = "text";
			goto fail;
		}
		break;
	case QMSG_SHARD: {
		const char *from = NULL, *to = NULL;
		if (get_int(root, "shard", 1, 0, &m->shard)) {
			bad = "shard";
			goto fail;
		}
		if (get_str(root, "from", 1, &from) || shard_state_from_name(from) < 0) {
			bad = "from";
			goto fail;
		}
		if (get_str(root, "to", 1, &to) || shard_state_from_name(to) < 0) {
			bad = "to";
			goto fail;
		}
		m->from = (enum shard_state)shard_state_from_name(from);
		m->to = (enum shard_state)shard_state_from_name(to);
		if (get_int(root, "attempt", 1, 0, &v) || v > 1000000) {
			bad = "attempt";
			goto fail;
		}
		m->attempt = (int)v;
		if (get_str(root, "sha256", 0, &m->sha256) || (m->sha256 && !valid_sha256(m->sha256))) {
			bad = "sha256";
			goto fail;
		}
		if (get_str(root, "path", 0, &m->path)) {
			bad = "path";
			goto fail;
		}
		if (get_str(root, "error", 0, &m->error)) {
			bad = "error";
			goto fail;
		}
		if (get_int(root, "due_ms", 0, 0, &m->due_ms)) {
			bad = "due_ms";
			goto fail;
		}
		if (get_int(root, "deadline_ms", 0, 0, &m->deadline_ms)) {
			bad = "deadline_ms";
			goto fail;
		}
		if (m->to == SHARD_DONE && (!m->sha256 || !m->path)) {
			bad = "sha256/path (required when 'to' is 'done')";
			goto fail;
		}
		break;
	}
	case QMSG_HELLO:
		if (get_str(root, "host", 1, &m->host)) {
			bad = "host";
			goto fail;
		}
		if (get_int(root, "pid", 1, 0, &v) || v > 0x7fffffff) {
			bad = "pid";
			goto fail;
		}
		m->pid = (long)v;
		break;
	case QMSG_BYE:
		if (get_str(root, "status", 1, &m->status)) {
			bad = "status";
			goto fail;
		}
		break;
	}
	return 0;
fail:
	fail_msg(err, errlen, "%.20s message: field '%s' is missing or has the wrong type",
		 type ? type : "?", bad);
	queue_msg_release(m); /* type points into the tree: report first */
	return -1;
}

void queue_msg_release(struct queue_msg *m)
{
	if (!m)
		return;
	cJSON_Delete(m->root);
	memset(m, 0, sizeof(*m));
}

int queue_verify_file(const char *path, const char *sha256)
{
	if (!valid_sha256(sha256))
		return mke_error("shard file '%s': recorded sha256 '%s' is not 64 hex digits", path,
				 sha256 ? sha256 : "");
	FILE *f = fopen(path, "rb");
	if (!f)
		return mke_error("shard file '%s': %s", path, strerror(errno));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		fclose(f);
		return mke_error("shard file '%s': cannot start sha256", path);
	}
	unsigned char buf[65536];
	size_t got;
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		EVP_DigestUpdate(ctx, buf, got);
	int rerr = ferror(f);
	fclose(f);
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (rerr)
		return mke_error("shard file '%s': read error", path);
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (strcmp(hex, sha256) != 0)
		return mke_error("shard file '%s': sha256 is %s, the ack said %s", path, hex, sha256);
	return 0;
}
