/*
 * fetch.c - the URL fetcher behind manifest cells (fetch.h): a batch of
 * transfers over the curl multi interface, into a content-addressed cache.
 *
 * Each distinct URL is one struct xfer moving through a small state machine
 * (enum xfer_state); start() and finish() are the only functions that move
 * it. A transfer appends to <cache>/partial/<key>.part, where key is the
 * sha256 of the URL; what is already there is asked for again with a Range
 * request (CURLOPT_RESUME_FROM_LARGE). A server that answers 206 continues
 * the file; one that answers 200 sends the whole file, and the part is
 * truncated first. Connection errors, timeouts, transfers cut short and
 * 5xx/408/429 answers are retried (the part is kept, so the next attempt
 * resumes) after a delay that doubles from backoff_ms up to backoff_max_ms,
 * drawn uniformly from its upper half so that many clients do not retry in
 * step. Other failures (404, a missing file://, a refused scheme) are final.
 *
 * A complete part is hashed; a digest other than the expected one deletes it
 * and tries once more (bytes damaged in transit), then fails with both
 * digests. A good part is made 0640 and renamed to <cache>/sha256/<hex>
 * (rename within one file system: readers never see half a file), and the
 * URL's index entry <cache>/url/<key> is replaced by a symlink to it (again
 * by rename). A URL whose index entry resolves is a cache hit: no request.
 *
 * Processes that share a cache take an flock on the part file while they
 * write it; a busy part makes the other process wait and look again, and
 * usually find the finished file. Delivery is at-least-once per process: the
 * same bytes may be downloaded twice by racing processes, never stored twice.
 */
#include "fetch.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "meter.h"
#include "util.h"

#define LOCK_WAIT_S 0.5       /* look again at a part another process holds ... */
#define LOCK_WAITS_MAX 1200   /* ... at most this often (10 minutes) */
#define MISMATCH_TRIES 2      /* downloads of a URL whose digest is wrong */

void fetch_opts_default(struct fetch_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_parallel = 8;
	o->max_attempts = 5;
	o->backoff_ms = 250;
	o->backoff_max_ms = 10000;
	o->connect_timeout_ms = 15000;
	o->low_speed_limit = 1024;
	o->low_speed_time = 30;
}

char *fetch_cache_dir(void)
{
	const char *s = getenv("MKE_CACHE");
	if (s && *s)
		return xstrdup(s);
	s = getenv("XDG_CACHE_HOME");
	if (s && *s == '/')
		return xasprintf("%s/mke", s);
	s = getenv("HOME");
	return xasprintf("%s/.cache/mke", s && *s ? s : ".");
}

/* Length of the scheme when s starts with "scheme://", else 0. */
static size_t scheme_len(const char *s)
{
	const char *p = s;
	if (!isalpha((unsigned char)*p))
		return 0;
	while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
		p++;
	return strncmp(p, "://", 3) == 0 ? (size_t)(p - s) : 0;
}

int fetch_is_url(const char *s)
{
	return scheme_len(s) > 0;
}

int fetch_supported(const char *url)
{
	size_t n = scheme_len(url);
	return (n == 4 && strncasecmp(url, "http", 4) == 0) ||
	       (n == 5 && strncasecmp(url, "https", 5) == 0) ||
	       (n == 4 && strncasecmp(url, "file", 4) == 0);
}

char *fetch_redact(const char *url)
{
	size_t n = scheme_len(url);
	if (!n)
		return xstrdup(url);
	const char *auth = url + n + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return xstrdup(url);
	return xasprintf("%.*s%s", (int)(auth - url), url, at + 1);
}

/* ---- cache files ------------------------------------------------------------ */

static int is_hex64(const char *s)
{
	size_t i = 0;
	for (; s[i]; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return i == 64;
}

/* sha256 of a file as hex. 0, or -1 with errno set. */
static int sha256_file(const char *path, char out[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	unsigned char buf[1 << 16];
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			EVP_MD_CTX_free(ctx);
			close(fd);
			errno = e;
			return -1;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)r);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	close(fd);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* The stored file for a URL key when its index entry resolves, else NULL.
 * want (or NULL): the digest it must have. Caller owns the path. */
static char *cache_lookup(const char *cache, const char *key, const char *want)
{
	char *link = xasprintf("%s/url/%s", cache, key);
	char target[256];
	ssize_t n = readlink(link, target, sizeof target - 1);
	struct stat st;
	char *path = NULL;
	if (n > 0 && stat(link, &st) == 0 && S_ISREG(st.st_mode)) {
		target[n] = '\0';
		const char *hex = strrchr(target, '/');
		hex = hex ? hex + 1 : target;
		if (is_hex64(hex) && (!want || strcasecmp(hex, want) == 0))
			path = xasprintf("%s/sha256/%s", cache, hex);
	}
	free(link);
	return path;
}

/* Point <cache>/url/<key> at ../sha256/<hex> (symlink, replaced by rename). */
static int cache_index(const char *cache, const char *key, const char *hex)
{
	char *link = xasprintf("%s/url/%s", cache, key);
	char *tmp = xasprintf("%s.%ld.tmp", link, (long)getpid());
	char *target = xasprintf("../sha256/%s", hex);
	int rc = 0;
	unlink(tmp);
	if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
		rc = mke_error("cannot write the cache index '%s': %s (check that the cache "
			       "directory is writable)", link, strerror(errno));
		unlink(tmp);
	}
	free(link);
	free(tmp);
	free(target);
	return rc;
}

/* ---- transfers --------------------------------------------------------------- */

/* The life of one distinct URL in a batch. */
enum xfer_state {
	X_PENDING = 0,  /* not started */
	X_WAITING,      /* a retry (or a busy part) waits until not_before */
	X_RUNNING,      /* a curl transfer is in the multi handle */
	X_DONE,         /* path is set */
	X_FAILED,       /* err is set */
};

struct xfer {
	const char *url;            /* borrowed from the caller */
	const char *want;           /* expected digest or NULL, borrowed */
	char *safe;                 /* url for messages, credentials stripped */
	char key[65];               /* sha256 of url */
	char *part;
	enum xfer_state state;
	int fd;                     /* the part, while running */
	curl_off_t offset;          /* bytes in the part when the attempt began */
	int restarted;              /* this attempt got 200 to a Range request */
	int no_range;               /* the server refused a Range once: not again */
	int checked;                /* response code looked at (first write) */
	int write_errno;
	int attempts, mismatches, lock_waits;
	double not_before;
	CURL *h;
	char errbuf[CURL_ERROR_SIZE];
	char *path, *err;
	double *moved;              /* the batch's byte count */
};

struct batch {
	const struct fetch_opts *o;
	const char *cache;
	CURLM *multi;
	struct xfer *x;
	int n;
	int running;
	struct fetch_stats st;
	uint64_t rng;
	double moved;               /* bytes written to parts */
	struct meter meter;
};

static double jitter01(struct batch *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return (double)(b->rng >> 11) / 9007199254740992.0;
}

/* Delay before attempt a+1 (a >= 1 attempts made): in [d/2, d], d capped. */
static double backoff_s(struct batch *b, int a)
{
	double d = b->o->backoff_ms;
	for (int i = 1; i < a && d < b->o->backoff_max_ms; i++)
		d *= 2;
	if (d > b->o->backoff_max_ms)
		d = b->o->backoff_max_ms;
	return (d / 2 + jitter01(b) * d / 2) / 1000.0;
}

static void fail(struct xfer *x, const char *fmt, ...) MKE_PRINTF(2, 3);
static void fail(struct xfer *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	free(x->err);
	x->err = xstrdup(msg);
	x->state = X_FAILED;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (!x->checked) {
		x->checked = 1;
		long code = 0;
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
		if (x->offset > 0 && code == 200) {
			/* Range ignored: the whole file follows */
			if (ftruncate(x->fd, 0) != 0) {
				x->write_errno = errno;
				return 0;
			}
			x->restarted = 1;
		}
	}
	for (size_t done = 0; done < n;) {
		ssize_t w = write(x->fd, p + done, n - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			x->write_errno = errno;
			return 0;
		}
		done += (size_t)w;
	}
	*x->moved += (double)n;
	return n;
}

static void close_part(struct xfer *x)
{
	if (x->fd >= 0)
		close(x->fd); /* releases the flock */
	x->fd = -1;
}

/* Schedule another attempt, or fail with why when none is left. */
static void retry_or_fail(struct batch *b, struct xfer *x, const char *why)
{
	close_part(x);
	if (x->attempts >= b->o->max_attempts) {
		fail(x, "cannot fetch '%s': %s (gave up after %d attempt%s; check that the "
		     "server is up and the URL is right, then run again: the download resumes)",
		     x->safe, why, x->attempts, x->attempts == 1 ? "" : "s");
		return;
	}
	x->state = X_WAITING;
	x->not_before = now_seconds() + backoff_s(b, x->attempts);
	b->st.retries++;
}

/* Begin (or retry) x: a cache hit finishes it at once. */
static void start(struct batch *b, struct xfer *x)
{
	char *hit = cache_lookup(b->cache, x->key, x->want);
	if (hit) {
		x->path = hit;
		x->state = X_DONE;
		if (!x->attempts)
			b->st.cached++;
		else
			b->st.downloaded++; /* another process finished it */
		return;
	}
	x->fd = open(x->part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (x->fd < 0) {
		fail(x, "cannot fetch '%s': cannot open '%s': %s (check that the cache "
		     "directory is writable, or set MKE_CACHE)", x->safe, x->part, strerror(errno));
		return;
	}
	if (flock(x->fd, LOCK_EX | LOCK_NB) != 0) {
		close_part(x);
		if (++x->lock_waits > LOCK_WAITS_MAX) {
			fail(x, "cannot fetch '%s': another process has been writing '%s' for "
			     "10 minutes (remove it if no mke process is running)", x->safe,
			     x->part);
			return;
		}
		x->state = X_WAITING;
		x->not_before = now_seconds() + LOCK_WAIT_S;
		return;
	}
	struct stat st;
	if (fstat(x->fd, &st) != 0) {
		fail(x, "cannot fetch '%s': cannot stat '%s': %s", x->safe, x->part,
		     strerror(errno));
		close_part(x);
		return;
	}
	x->offset = (curl_off_t)st.st_size;
	x->restarted = x->checked = 0;
	x->write_errno = 0;
	x->errbuf[0] = '\0';
	x->attempts++;

	const struct fetch_opts *o = b->o;
	CURL *h = curl_easy_init();
	if (!h) {
		fail(x, "cannot fetch '%s': curl_easy_init failed", x->safe);
		close_part(x);
		return;
	}
	x->h = h;
	curl_easy_setopt(h, CURLOPT_URL, x->url);
	curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mke-fetch/1");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->low_speed_time);
	if (x->offset > 0)
		curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, x->offset);
	CURLMcode mc = curl_multi_add_handle(b->multi, h);
	if (mc != CURLM_OK) {
		fail(x, "cannot fetch '%s': curl_multi_add_handle: %s", x->safe,
		     curl_multi_strerror(mc));
		curl_easy_cleanup(h);
		x->h = NULL;
		close_part(x);
		return;
	}
	x->state = X_RUNNING;
	b->running++;
}

static int retryable(CURLcode rc, long code)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	case CURLE_HTTP_RETURNED_ERROR:
		return code >= 500 || code == 408 || code == 429;
	default:
		return 0;
	}
}

/* A complete part: check its digest, store it, index it. */
static void store(struct batch *b, struct xfer *x)
{
	if (fchmod(x->fd, 0640) != 0 || fsync(x->fd) != 0) {
		fail(x, "cannot fetch '%s': cannot write '%s': %s", x->safe, x->part,
		     strerror(errno));
		close_part(x);
		return;
	}
	char hex[65];
	if (sha256_file(x->part, hex) != 0) {
		fail(x, "cannot fetch '%s': cannot read back '%s': %s", x->safe, x->part,
		     strerror(errno));
		close_part(x);
		return;
	}
	if (x->want && strcasecmp(hex, x->want) != 0) {
		unlink(x->part);
		close_part(x);
		if (++x->mismatches < MISMATCH_TRIES && x->attempts < b->o->max_attempts) {
			x->state = X_WAITING;
			x->not_before = now_seconds() + backoff_s(b, x->attempts);
			b->st.retries++;
			return;
		}
		fail(x, "sha256 mismatch for '%s': expected %s, got %s (downloaded %d time%s; "
		     "the file was deleted: fix the manifest's sha256 or the file on the server)",
		     x->safe, x->want, hex, x->mismatches, x->mismatches == 1 ? "" : "s");
		return;
	}
	char *final = xasprintf("%s/sha256/%s", b->cache, hex);
	struct stat st;
	int rc = 0;
	if (stat(final, &st) == 0 && S_ISREG(st.st_mode))
		unlink(x->part); /* same bytes already stored (another URL) */
	else if (rename(x->part, final) != 0)
		rc = -1;
	close_part(x);
	if (rc) {
		fail(x, "cannot fetch '%s': cannot store '%s': %s (check the cache directory)",
		     x->safe, final, strerror(errno));
		free(final);
		return;
	}
	if (cache_index(b->cache, x->key, hex) != 0) {
		fail(x, "cannot fetch '%s': cannot index it in the cache '%s'", x->safe, b->cache);
		free(final);
		return;
	}
	x->path = final;
	x->state = X_DONE;
	b->st.downloaded++;
}

/* A transfer ended with rc. */
static void finish(struct batch *b, struct xfer *x, CURLcode rc)
{
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(b->multi, x->h);
	curl_easy_cleanup(x->h);
	x->h = NULL;
	b->running--;
	if (x->offset > 0 && code == 206)
		b->st.resumed++;
	if (x->restarted)
		b->st.restarted++;

	char why[CURL_ERROR_SIZE + 64];
	if (rc == CURLE_OK) {
		if (x->offset > 0 && code == 200 && !x->restarted && ftruncate(x->fd, 0) != 0) {
			fail(x, "cannot fetch '%s': cannot truncate '%s': %s", x->safe, x->part,
			     strerror(errno));
			close_part(x);
			return;
		}
		store(b, x);
		return;
	}
	if (rc == CURLE_WRITE_ERROR && x->write_errno) {
		fail(x, "cannot fetch '%s': cannot write '%s': %s (check the space in the "
		     "cache directory)", x->safe, x->part, strerror(x->write_errno));
		close_part(x);
		return;
	}
	if (rc == CURLE_HTTP_RETURNED_ERROR)
		snprintf(why, sizeof why, "the server answered HTTP %ld", code);
	else
		snprintf(why, sizeof why, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
	if (rc == CURLE_RANGE_ERROR && x->offset > 0 && !x->no_range) {
		/* the server cannot resume (200 to a Range request): start over now */
		if (ftruncate(x->fd, 0) != 0) {
			fail(x, "cannot fetch '%s': cannot truncate '%s': %s", x->safe, x->part,
			     strerror(errno));
			close_part(x);
			return;
		}
		close_part(x);
		x->no_range = 1;
		x->attempts--;
		x->state = X_PENDING;
		b->st.restarted++;
		return;
	}
	if (rc == CURLE_HTTP_RETURNED_ERROR && code == 416 && x->offset > 0) {
		/* the part does not fit what the server has now: start over */
		if (ftruncate(x->fd, 0) != 0) {
			fail(x, "cannot fetch '%s': cannot truncate '%s': %s", x->safe, x->part,
			     strerror(errno));
			close_part(x);
			return;
		}
		retry_or_fail(b, x, why);
		return;
	}
	if (retryable(rc, code)) {
		retry_or_fail(b, x, why);
		return;
	}
	close_part(x);
	if (rc == CURLE_HTTP_RETURNED_ERROR && code >= 400 && code < 500)
		unlink(x->part);
	fail(x, "cannot fetch '%s': %s (check the URL)", x->safe, why);
}

/* Run every transfer to X_DONE or X_FAILED. */
static int run_batch(struct batch *b)
{
	for (;;) {
		double now = now_seconds(), next = INFINITY;
		int left = 0, ended = 0;
		for (int i = 0; i < b->n; i++) {
			struct xfer *x = &b->x[i];
			if ((x->state == X_PENDING || x->state == X_WAITING) &&
			    x->not_before <= now && b->running < b->o->max_parallel)
				start(b, x);
			if (x->state == X_WAITING && x->not_before < next)
				next = x->not_before;
			if (x->state == X_PENDING || x->state == X_WAITING || x->state == X_RUNNING)
				left++;
			else if (x->part)
				ended++;
		}
		if (b->o->progress)
			meter_update(&b->meter, ended, b->moved);
		if (!left)
			return 0;
		int still = 0;
		CURLMcode mc = curl_multi_perform(b->multi, &still);
		if (mc != CURLM_OK)
			return mke_error("curl_multi_perform: %s", curl_multi_strerror(mc));
		CURLMsg *msg;
		int q;
		while ((msg = curl_multi_info_read(b->multi, &q))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			finish(b, x, msg->data.result);
		}
		int wait_ms = 200;
		if (!b->running && next < INFINITY)
			wait_ms = (int)fmax(1.0, fmin(1000.0, (next - now_seconds()) * 1000.0));
		else if (next < INFINITY)
			wait_ms = (int)fmax(1.0, fmin(200.0, (next - now_seconds()) * 1000.0));
		if (b->running || next < INFINITY) {
			mc = curl_multi_poll(b->multi, NULL, 0, wait_ms, NULL);
			if (mc != CURLM_OK)
				return mke_error("curl_multi_poll: %s", curl_multi_strerror(mc));
		}
	}
}

struct url_ref {
	const char *url;
	int i;
};

/* Remove an empty part a failed URL left, unless another process holds it. */
static void drop_empty_part(const char *part)
{
	int fd = open(part, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && st.st_size == 0)
		unlink(part);
	close(fd);
}

static int cmp_url(const void *a, const void *b)
{
	const struct url_ref *x = a, *y = b;
	int c = strcmp(x->url, y->url);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int curl_ready(void)
{
	static int done, rc;
	if (!done) {
		CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = c == CURLE_OK ? 0 : mke_error("curl_global_init: %s", curl_easy_strerror(c));
		done = 1;
	}
	return rc;
}

int fetch_many(const struct fetch_opts *opts, const char *const *urls, const char *const *sha256,
	       int n, char **out_paths, char **errors, struct fetch_stats *stats)
{
	struct fetch_opts def;
	if (!opts) {
		fetch_opts_default(&def);
		opts = &def;
	}
	struct batch b;
	memset(&b, 0, sizeof b);
	b.o = opts;
	b.rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(wall_seconds() * 1e6);
	if (!b.rng)
		b.rng = 1;
	for (int i = 0; i < n; i++)
		out_paths[i] = errors[i] = NULL;
	if (stats)
		memset(stats, 0, sizeof *stats);
	if (n <= 0)
		return 0;

	/* distinct URLs: lead[i] is the transfer URL i rides on */
	struct url_ref *ord = xmalloc((size_t)n * sizeof *ord);
	for (int i = 0; i < n; i++) {
		ord[i].url = urls[i];
		ord[i].i = i;
	}
	qsort(ord, (size_t)n, sizeof *ord, cmp_url);
	b.x = xcalloc((size_t)n, sizeof *b.x);
	int *lead = xmalloc((size_t)n * sizeof *lead);
	for (int k = 0; k < n; k++) {
		int i = ord[k].i;
		const char *want = sha256 ? sha256[i] : NULL;
		if (!k || strcmp(ord[k - 1].url, ord[k].url) != 0) {
			struct xfer *x = &b.x[b.n++];
			x->url = urls[i];
			x->want = want;
			x->fd = -1;
			x->moved = &b.moved;
		} else if (!b.x[b.n - 1].want && want) {
			b.x[b.n - 1].want = want;
		}
		lead[i] = b.n - 1;
	}
	free(ord);

	/* refuse what cannot be fetched; touch the cache only for the rest */
	int nok = 0;
	for (int j = 0; j < b.n; j++) {
		struct xfer *x = &b.x[j];
		x->safe = fetch_redact(x->url);
		if (x->want && !is_hex64(x->want)) {
			fail(x, "bad sha256 '%.80s' for '%s': it must be 64 hex digits", x->want,
			     x->safe);
		} else if (!fetch_supported(x->url)) {
			size_t sl = scheme_len(x->url);
			fail(x, "unsupported URL scheme '%.*s' in '%s' (mke fetches http://, "
			     "https:// and file://; download the file and give its path)",
			     (int)(sl ? sl : 1), x->url, x->safe);
		} else {
			nok++;
		}
	}
	char *cache = opts->cache_dir ? xstrdup(opts->cache_dir) : fetch_cache_dir();
	b.cache = cache;
	char *setup_msg = NULL;
	char *sub[3] = { xasprintf("%s/partial", cache), xasprintf("%s/sha256", cache),
			 xasprintf("%s/url", cache) };
	for (int k = 0; k < 3 && nok && !setup_msg; k++)
		if (mkdir_p(sub[k], 0750) != 0)
			setup_msg = xasprintf("cannot create the cache directory '%s' (set "
					      "MKE_CACHE or data.cache_dir to a writable "
					      "directory)", sub[k]);
	if (nok && !setup_msg && curl_ready() != 0)
		setup_msg = xstrdup("libcurl cannot be initialized");
	else if (nok && !setup_msg && !(b.multi = curl_multi_init()))
		setup_msg = xstrdup("curl_multi_init failed");
	for (int j = 0; j < b.n; j++) {
		struct xfer *x = &b.x[j];
		if (x->state == X_FAILED) {
			continue;
		} else if (setup_msg) {
			fail(x, "cannot fetch '%s': %s", x->safe, setup_msg);
		} else {
			sha256_hex(x->url, strlen(x->url), x->key);
			x->part = xasprintf("%s/partial/%s.part", cache, x->key);
		}
	}
	if (opts->progress && b.multi)
		meter_start(&b.meter, opts->progress, "files", nok);
	int rc = b.multi ? run_batch(&b) : 0;
	if (opts->progress && b.multi)
		meter_end(&b.meter);

	int nfail = 0;
	for (int i = 0; i < n; i++) {
		struct xfer *x = &b.x[lead[i]];
		const char *want = sha256 ? sha256[i] : NULL;
		if (x->state == X_DONE && want && x->want != want && strcasecmp(want, x->want)) {
			const char *hex = strrchr(x->path, '/') + 1;
			if (strcasecmp(hex, want) != 0) {
				char *safe = fetch_redact(urls[i]);
				errors[i] = xasprintf("sha256 mismatch for '%s': expected %s, got %s "
						      "(fix the manifest's sha256)", safe, want,
						      hex);
				free(safe);
				nfail++;
				continue;
			}
		}
		if (x->state == X_DONE) {
			out_paths[i] = xstrdup(x->path);
		} else {
			errors[i] = xstrdup(x->err ? x->err : "cannot fetch: the batch was stopped");
			nfail++;
		}
	}
	if (rc)
		for (int j = 0; j < b.n; j++)
			if (b.x[j].h) {
				curl_multi_remove_handle(b.multi, b.x[j].h);
				curl_easy_cleanup(b.x[j].h);
			}
	for (int j = 0; j < b.n; j++) {
		close_part(&b.x[j]);
		if (b.x[j].state == X_FAILED) {
			b.st.failed++;
			if (b.x[j].part)
				drop_empty_part(b.x[j].part);
		}
		free(b.x[j].safe);
		free(b.x[j].part);
		free(b.x[j].path);
		free(b.x[j].err);
	}
	if (b.multi)
		curl_multi_cleanup(b.multi);
	if (stats)
		*stats = b.st;
	for (int k = 0; k < 3; k++)
		free(sub[k]);
	free(setup_msg);
	free(cache);
	free(lead);
	free(b.x);
	return nfail;
}
