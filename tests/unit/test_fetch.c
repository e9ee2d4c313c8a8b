/*
 * test_fetch.c - the URL fetcher (common/fetch.h): credential stripping,
 * refused schemes, file:// into the content-addressed cache (shared storage,
 * cache hits, resume of a partial file, sha256 check), and HTTP against
 * tests/integration/http_server.py started here (fork/exec, stopped by pid):
 * resume with Range after dropped connections, retries on 500, a server that
 * ignores Range, wrong bytes, a slow server, 404, redirects and a batch of
 * parallel transfers. The HTTP tests are skipped (with one passing check and
 * a note) when /usr/bin/python3 is missing.
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch.h"
#include "test.h"
#include "util.h"

static char tmp[] = "/tmp/mke-fetch-XXXXXX";
static pid_t server = -1;
static int port;

static void opts(struct fetch_opts *o, const char *cache)
{
	fetch_opts_default(o);
	o->cache_dir = cache;
	o->backoff_ms = 10;
	o->backoff_max_ms = 40;
	o->connect_timeout_ms = 2000;
}

/* A fresh cache directory under tmp (caller owns). */
static char *new_cache(const char *name)
{
	return xasprintf("%s/cache-%s", tmp, name);
}

static void put(const char *name, const void *data, size_t n)
{
	char *p = xasprintf("%s/srv/%s", tmp, name);
	write_file_atomic(p, data, n, 0644);
	free(p);
}

/* 1 when path holds exactly data[0..n) */
static int holds(const char *path, const void *data, size_t n)
{
	size_t len;
	if (!path)
		return 0;
	char *b = read_file(path, &len);
	int ok = b && len == n && memcmp(b, data, n) == 0;
	free(b);
	return ok;
}

/* One URL through fetch_many; *path and *err owned by the caller. */
static int fetch1(const struct fetch_opts *o, const char *url, const char *sha, char **path,
		  char **err, struct fetch_stats *st)
{
	const char *shas[1] = { sha };
	return fetch_many(o, &url, shas, 1, path, err, st);
}

static unsigned char payload[200000];

static void test_redact(void)
{
	char *r = fetch_redact("http://user:secret@example.com:8080/a/b?x=1");
	CHECK(strcmp(r, "http://example.com:8080/a/b?x=1") == 0);
	free(r);
	r = fetch_redact("https://example.com/a@b");
	CHECK(strcmp(r, "https://example.com/a@b") == 0);
	free(r);
	r = fetch_redact("data/x.npy");
	CHECK(strcmp(r, "data/x.npy") == 0);
	free(r);
	CHECK(fetch_is_url("s3://bucket/key"));
	CHECK(!fetch_is_url("data/x.npy"));
	CHECK(!fetch_is_url("/abs/x.npy"));
	CHECK(fetch_supported("HTTP://h/x") && fetch_supported("https://h/x") &&
	      fetch_supported("file:///x"));
	CHECK(!fetch_supported("ftp://h/x") && !fetch_supported("s3://b/k") &&
	      !fetch_supported("gopher://h/x"));
}

static void test_schemes_refused(void)
{
	char *cache = new_cache("schemes");
	struct fetch_opts o;
	opts(&o, cache);
	const char *urls[3] = { "s3://bucket/key.npy", "ftp://user:secret@h/x.npy",
				"gopher://h/x" };
	char *path[3], *err[3];
	struct fetch_stats st;
	CHECK(fetch_many(&o, urls, NULL, 3, path, err, &st) == 3);
	CHECK(st.failed == 3);
	for (int i = 0; i < 3; i++) {
		CHECK(!path[i] && err[i]);
		CHECK_MSG(err[i] && strstr(err[i], "unsupported URL scheme"), "%s", err[i]);
		CHECK_MSG(err[i] && !strstr(err[i], "secret"), "%s", err[i]);
		free(err[i]);
	}
	free(cache);
}

static void test_file_cache(void)
{
	char *cache = new_cache("file");
	put("a.bin", payload, sizeof payload);
	put("b.bin", payload, sizeof payload);
	struct fetch_opts o;
	opts(&o, cache);
	char *ua = xasprintf("file://%s/srv/a.bin", tmp), *ub = xasprintf("file://%s/srv/b.bin", tmp);
	const char *urls[3] = { ua, ub, ua };
	char *path[3], *err[3];
	struct fetch_stats st;
	CHECK(fetch_many(&o, urls, NULL, 3, path, err, &st) == 0);
	CHECK(st.downloaded == 2 && st.cached == 0);
	CHECK(path[0] && path[1] && path[2]);
	if (path[0] && path[1] && path[2]) {
		CHECK(strcmp(path[0], path[1]) == 0); /* same bytes, one file */
		CHECK(strcmp(path[0], path[2]) == 0);
		CHECK(holds(path[0], payload, sizeof payload));
		struct stat sb;
		CHECK(stat(path[0], &sb) == 0 && (sb.st_mode & 0777) == 0640);
		char hex[65];
		sha256_hex(payload, sizeof payload, hex);
		CHECK(strstr(path[0], hex) != NULL);
	}
	for (int i = 0; i < 3; i++) {
		free(path[i]);
		free(err[i]);
	}
	/* a second batch is served by the cache, even with the source gone */
	char *src = xasprintf("%s/srv/a.bin", tmp);
	unlink(src);
	CHECK(fetch_many(&o, urls, NULL, 3, path, err, &st) == 0);
	CHECK(st.cached == 2 && st.downloaded == 0);
	CHECK(holds(path[0], payload, sizeof payload));
	for (int i = 0; i < 3; i++) {
		free(path[i]);
		free(err[i]);
	}
	/* a missing file is a final error naming the URL */
	char *um = xasprintf("file://%s/srv/missing.bin", tmp);
	char *p1, *e1;
	CHECK(fetch1(&o, um, NULL, &p1, &e1, &st) == 1);
	CHECK_MSG(e1 && strstr(e1, "missing.bin") && st.retries == 0, "%s", e1);
	free(p1);
	free(e1);
	free(um);
	free(src);
	free(ua);
	free(ub);
	free(cache);
}

/* A part left by an interrupted download is continued, not restarted. */
static void test_file_resume(void)
{
	char *cache = new_cache("resume");
	put("r.bin", payload, sizeof payload);
	char *url = xasprintf("file://%s/srv/r.bin", tmp);
	char key[65];
	sha256_hex(url, strlen(url), key);
	char *pdir = xasprintf("%s/partial", cache);
	mkdir_p(pdir, 0750);
	char *part = xasprintf("%s/%s.part", pdir, key);
	write_file_atomic(part, payload, 12345, 0640);
	struct fetch_opts o;
	opts(&o, cache);
	char *p, *e;
	CHECK(fetch1(&o, url, NULL, &p, &e, NULL) == 0);
	CHECK(holds(p, payload, sizeof payload));
	CHECK(access(part, F_OK) != 0);
	free(p);
	free(e);
	free(part);
	free(pdir);
	free(url);
	free(cache);
}

static void test_sha256(void)
{
	char *cache = new_cache("sha");
	put("s.bin", payload, 1000);
	char *url = xasprintf("file://%s/srv/s.bin", tmp);
	char good[65], bad[65];
	sha256_hex(payload, 1000, good);
	sha256_hex(payload, 999, bad);
	struct fetch_opts o;
	opts(&o, cache);
	char *p, *e;
	struct fetch_stats st;
	CHECK(fetch1(&o, url, bad, &p, &e, &st) == 1);
	CHECK(!p && e);
	CHECK_MSG(e && strstr(e, "sha256 mismatch") && strstr(e, good) && strstr(e, bad) &&
		  strstr(e, "s.bin"), "%s", e);
	CHECK(st.retries == 1); /* deleted and downloaded once more */
	char *kept = xasprintf("%s/sha256/%s", cache, good);
	CHECK(access(kept, F_OK) != 0);
	free(e);
	CHECK(fetch1(&o, url, good, &p, &e, &st) == 0);
	CHECK(p && strstr(p, good));
	free(p);
	free(e);
	/* a digest that is not 64 hex digits */
	CHECK(fetch1(&o, url, "abc", &p, &e, &st) == 1);
	CHECK_MSG(e && strstr(e, "64 hex"), "%s", e);
	free(p);
	free(e);
	free(kept);
	free(url);
	free(cache);
}

/* ---- HTTP against tests/integration/http_server.py ------------------------------ */

static int start_server(void)
{
	const char *root = getenv("MKE_ROOT");
	char *script = xasprintf("%s/tests/integration/http_server.py", root ? root : ".");
	char *dir = xasprintf("%s/srv", tmp), *pf = xasprintf("%s/port", tmp),
	     *log = xasprintf("%s/log", tmp);
	int rc = -1;
	if (access("/usr/bin/python3", X_OK) == 0 && access(script, R_OK) == 0) {
		server = fork();
		if (server == 0) {
			execl("/usr/bin/python3", "python3", script, dir, pf, log, (char *)NULL);
			_exit(127);
		}
		for (int i = 0; i < 100 && server > 0; i++) {
			size_t n;
			if (access(pf, F_OK) == 0) {
				char *s = read_file(pf, &n);
				port = s ? atoi(s) : 0;
				free(s);
				rc = port > 0 ? 0 : -1;
				break;
			}
			usleep(50000);
		}
	}
	free(script);
	free(dir);
	free(pf);
	free(log);
	return rc;
}

static void stop_server(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
		server = -1;
	}
}

/* Lines of the server's log that contain s. */
static int log_count(const char *s)
{
	char *path = xasprintf("%s/log", tmp);
	size_t n;
	char *b = read_file(path, &n);
	int c = 0;
	for (char *line = b ? strtok(b, "\n") : NULL; line; line = strtok(NULL, "\n"))
		c += strstr(line, s) != NULL;
	free(b);
	free(path);
	return c;
}

static char *http(const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", port, path);
}

static void test_http(void)
{
	if (start_server() != 0) {
		fprintf(stderr, "  note: no /usr/bin/python3 or http_server.py: HTTP tests skipped\n");
		CHECK(1);
		return;
	}
	char *cache = new_cache("http");
	struct fetch_opts o;
	opts(&o, cache);
	put("h.bin", payload, sizeof payload);
	char *p, *e;
	struct fetch_stats st;

	/* plain, then a cache hit without a request */
	char *u = http("/files/h.bin");
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0 && st.downloaded == 1);
	CHECK(holds(p, payload, sizeof payload));
	free(p);
	free(e);
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0 && st.cached == 1);
	CHECK(log_count("/files/h.bin") == 1);
	free(p);
	free(e);
	free(u);

	/* dropped twice mid-transfer: resumed with Range, answered 206 */
	u = http("/drop/2/h.bin");
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0);
	CHECK_MSG(st.resumed == 2 && st.retries == 2, "resumed %d retries %d", st.resumed,
		  st.retries);
	CHECK(holds(p, payload, sizeof payload));
	CHECK(log_count("/drop/2/h.bin range=bytes=") == 2);
	CHECK(log_count("/drop/2/h.bin range=bytes=100000- status=206") == 1);
	free(p);
	free(e);
	free(u);

	/* 500 twice, then the file */
	u = http("/error/2/h.bin");
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0 && st.retries == 2);
	free(p);
	free(e);
	free(u);

	/* always 500: gives up, naming the URL without its credentials */
	o.max_attempts = 3;
	u = xasprintf("http://user:secret@127.0.0.1:%d/error/99/h.bin", port);
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 1 && !p);
	CHECK_MSG(e && strstr(e, "HTTP 500") && strstr(e, "3 attempts") &&
		  strstr(e, "127.0.0.1") && !strstr(e, "secret"), "%s", e);
	CHECK(log_count("/error/99/h.bin") == 3);
	free(e);
	free(u);
	o.max_attempts = 5;

	/* 404: final at once */
	u = http("/files/nothere.bin");
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 1 && st.retries == 0);
	CHECK_MSG(e && strstr(e, "HTTP 404"), "%s", e);
	char *pd = xasprintf("%s/partial", cache);
	CHECK(rmdir(pd) == 0); /* failures leave no empty part behind */
	mkdir_p(pd, 0750);
	free(pd);
	free(e);
	free(u);

	/* Range ignored: the part is replaced by the whole file */
	u = http("/norange/h.bin");
	char key[65];
	sha256_hex(u, strlen(u), key);
	char *part = xasprintf("%s/partial/%s.part", cache, key);
	write_file_atomic(part, "garbage", 7, 0640);
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0 && st.restarted == 1);
	CHECK(holds(p, payload, sizeof payload));
	free(p);
	free(e);
	free(part);
	free(u);

	/* wrong bytes against the sha256 */
	char want[65];
	sha256_hex(payload, sizeof payload, want);
	put("w.bin", payload, sizeof payload);
	u = http("/wrong/w.bin");
	CHECK(fetch1(&o, u, want, &p, &e, &st) == 1 && !p);
	CHECK_MSG(e && strstr(e, "sha256 mismatch") && strstr(e, want) && strstr(e, "/wrong/w.bin"),
		  "%s", e);
	CHECK(log_count("/wrong/w.bin") == 2);
	free(e);
	free(u);

	/* too slow for the low-speed limit */
	o.max_attempts = 1;
	o.low_speed_limit = 1 << 20;
	o.low_speed_time = 1;
	u = http("/slow/300/h.bin");
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 1);
	CHECK_MSG(e && strstr(e, "slow/300"), "%s", e);
	free(e);
	free(u);
	opts(&o, cache);

	/* redirect, and a parallel batch of distinct URLs */
	u = http("/redirect/h.bin");
	char *c2 = new_cache("batch");
	o.cache_dir = c2;
	CHECK(fetch1(&o, u, NULL, &p, &e, &st) == 0 && holds(p, payload, sizeof payload));
	free(p);
	free(e);
	free(u);
	enum { N = 24 };
	char *urls[N], *paths[N], *errs[N];
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "p%d.bin", i);
		put(name, payload + i, 5000 + (size_t)i);
		urls[i] = xasprintf("http://127.0.0.1:%d/%s/%s", port,
				    i % 3 == 0 ? "drop/1" : i % 3 == 1 ? "error/1" : "files", name);
	}
	CHECK(fetch_many(&o, (const char *const *)urls, NULL, N, paths, errs, &st) == 0);
	CHECK(st.downloaded == N);
	for (int i = 0; i < N; i++) {
		CHECK(holds(paths[i], payload + i, 5000 + (size_t)i));
		free(urls[i]);
		free(paths[i]);
		free(errs[i]);
	}
	free(c2);
	free(cache);
	stop_server();
}

int main(void)
{
	if (!mkdtemp(tmp)) {
		perror("mkdtemp");
		return 1;
	}
	char *srv = xasprintf("%s/srv", tmp);
	mkdir_p(srv, 0750);
	free(srv);
	uint32_t s = 12345;
	for (size_t i = 0; i < sizeof payload; i++) {
		s = s * 1664525u + 1013904223u;
		payload[i] = (unsigned char)(s >> 24);
	}
	RUN(test_redact);
	RUN(test_schemes_refused);
	RUN(test_file_cache);
	RUN(test_file_resume);
	RUN(test_sha256);
	RUN(test_http);
	stop_server();
	char *cmd = xasprintf("rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "note: could not remove %s\n", tmp);
	free(cmd);
	return test_summary();
}
