/*
 * redis_server.c - a private redis-server per run, and reconnecting hiredis
 * connections. See redis_server.h for the contract.
 *
 * Why a private server: `mke run CONFIG` must work on a laptop with nothing
 * configured. The server listens on a unix socket only (port 0), the socket
 * is mode 0700, and the data directory is the run directory, so nothing is
 * reachable from other users or the network. It is started with posix_spawn
 * and an argv array: no shell ever sees a path or a password.
 *
 * Why the connection keeps its address: hiredis 0.14 contexts die on the first
 * I/O error or read timeout. Every command goes through redis_conn_argv(),
 * which reconnects a dead context first (bounded retries, jittered capped
 * exponential backoff) and redoes AUTH and SELECT.
 */
#include "redis_server.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "util.h"

extern char **environ;

static void sleep_ms(int ms)
{
	if (ms <= 0)
		return;
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Sleep ms unless *stop is (or becomes, through a signal) set. */
static void sleep_ms_unless(int ms, const volatile sig_atomic_t *stop)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while ((!stop || !*stop) && ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static struct timeval ms_tv(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

/* ------------------------------------------------------------------------ */
/* The private server.                                                       */

/* Append v to *buf as a redis.conf value: double quotes, with the escapes
 * that redis' sdssplitargs reads back (\" \\ \xHH). */
static void conf_quote(char **buf, size_t *len, size_t *cap, const char *v)
{
	size_t need = *len + 4 * strlen(v) + 3;
	if (need > *cap) {
		*cap = need * 2;
		*buf = xrealloc(*buf, *cap);
	}
	(*buf)[(*len)++] = '"';
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		if (*s == '"' || *s == '\\') {
			(*buf)[(*len)++] = '\\';
			(*buf)[(*len)++] = (char)*s;
		} else if (*s >= 0x20 && *s < 0x7f) {
			(*buf)[(*len)++] = (char)*s;
		} else {
			*len += (size_t)snprintf(*buf + *len, 5, "\\x%02x", *s);
		}
	}
	(*buf)[(*len)++] = '"';
	(*buf)[*len] = '\0';
}

struct conf {
	char *buf;
	size_t len, cap;
};

static void conf_line(struct conf *c, const char *key, const char *quoted_value)
{
	size_t need = c->len + strlen(key) + 2;
	if (need + 1 > c->cap) {
		c->cap = (need + 1) * 2;
		c->buf = xrealloc(c->buf, c->cap);
	}
	c->len += (size_t)sprintf(c->buf + c->len, "%s ", key);
	if (quoted_value)
		conf_quote(&c->buf, &c->len, &c->cap, quoted_value);
	need = c->len + 2;
	if (need > c->cap) {
		c->cap = need * 2;
		c->buf = xrealloc(c->buf, c->cap);
	}
	c->buf[c->len++] = '\n';
	c->buf[c->len] = '\0';
}

static void conf_raw(struct conf *c, const char *line)
{
	conf_line(c, line, NULL);
}

/* The last few lines of the server's log, for error messages (caller frees). */
static char *log_tail(const char *path)
{
	size_t n = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return xstrdup("(no log)");
	char *buf = xmalloc(2049);
	if (fseek(f, 0, SEEK_END) == 0) {
		long size = ftell(f);
		if (size > 2048)
			fseek(f, size - 2048, SEEK_SET);
		else
			fseek(f, 0, SEEK_SET);
	}
	n = fread(buf, 1, 2048, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	/* keep the last 6 lines */
	int lines = 0;
	char *start = buf;
	for (char *p = buf + n; p > buf; p--) {
		if (p[-1] == '\n' && ++lines == 6) {
			start = p;
			break;
		}
	}
	char *out = xasprintf("%s", *start ? start : "(empty log)");
	free(buf);
	return out;
}

/* 1 if pid is a zombie (exited; its parent has not reaped it). Linux /proc. */
static int pid_zombie(pid_t pid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* "pid (comm) S ..." */
	return p && p[1] == ' ' && p[2] == 'Z';
}

/* 1 once pid has exited (reaping it when it is our child). A server started
 * by an earlier process is not our child: it counts as gone once kill(pid, 0)
 * fails or it is a zombie waiting for its new parent to reap it. */
static int pid_gone(pid_t pid)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r == pid)
		return 1;
	if (r < 0 && errno == ECHILD)
		return (kill(pid, 0) != 0 && errno == ESRCH) || pid_zombie(pid);
	return 0;
}

int redis_server_kill_pid(pid_t pid, int timeout_ms)
{
	if (pid <= 0)
		return 0;
	if (timeout_ms <= 0)
		timeout_ms = 5000;
	if (kill(pid, SIGTERM) != 0) {
		if (errno == ESRCH) {
			pid_gone(pid);
			return 0;
		}
		return mke_error("cannot stop redis-server (pid %ld): %s", (long)pid,
				 strerror(errno));
	}
	double deadline = now_seconds() + timeout_ms / 1000.0;
	while (now_seconds() < deadline) {
		if (pid_gone(pid))
			return 0;
		sleep_ms(5);
	}
	mke_warn("redis-server (pid %ld) did not stop within %d ms of SIGTERM; sending SIGKILL",
		 (long)pid, timeout_ms);
	if (kill(pid, SIGKILL) != 0 && errno != ESRCH)
		return mke_error("cannot kill redis-server (pid %ld): %s", (long)pid,
				 strerror(errno));
	deadline = now_seconds() + 5.0;
	while (now_seconds() < deadline) {
		if (pid_gone(pid))
			return 0;
		sleep_ms(5);
	}
	return mke_error("redis-server (pid %ld) survived SIGKILL", (long)pid);
}

int redis_server_stop(struct redis_server *s, int timeout_ms)
{
	if (!s || s->pid <= 0)
		return 0;
	int rc = redis_server_kill_pid(s->pid, timeout_ms);
	if (rc == 0) {
		s->pid = 0;
		/* after SIGKILL the socket file stays behind */
		if (s->socket_path)
			unlink(s->socket_path);
	}
	return rc;
}

void redis_server_release(struct redis_server *s)
{
	if (!s)
		return;
	free(s->dir);
	free(s->socket_path);
	free(s->conf_path);
	free(s->log_path);
	free(s->pid_path);
	memset(s, 0, sizeof(*s));
}

/* Is something already answering on this socket? (a server from an earlier
 * process: starting another would silently take its socket away) */
static int socket_alive(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return alive;
}

static int valid_save(const char *v)
{
	for (const char *p = v; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != ' ')
			return 0;
	return 1;
}

/* One PING over a fresh connection: 1 ready, 0 not yet, -1 fatal (message in err). */
static int ping_once(const char *sock, const char *password, char *err, size_t errlen)
{
	redisContext *ctx = redisConnectUnixWithTimeout(sock, ms_tv(500));
	if (!ctx)
		return 0;
	if (ctx->err) {
		snprintf(err, errlen, "%s", ctx->errstr);
		redisFree(ctx);
		return 0;
	}
	int rc = 0;
	redisReply *r;
	if (password && *password) {
		r = redisCommand(ctx, "AUTH %s", password);
		if (!r) {
			snprintf(err, errlen, "%s", ctx->errstr);
			redisFree(ctx);
			return 0;
		}
		if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) != 0) {
			snprintf(err, errlen, "AUTH: %s", r->str);
			freeReplyObject(r);
			redisFree(ctx);
			return -1;
		}
		freeReplyObject(r);
	}
	r = redisCommand(ctx, "PING");
	if (!r) {
		snprintf(err, errlen, "%s", ctx->errstr);
	} else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) {
		rc = 1;
	} else if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "PING: %s", r->str);
		rc = strncmp(r->str, "LOADING", 7) == 0 ? 0 : -1;
	}
	if (r)
		freeReplyObject(r);
	redisFree(ctx);
	return rc;
}

int redis_server_start(struct redis_server *s, const struct redis_server_opts *o)
{
	memset(s, 0, sizeof(*s));
	if (!o || !o->dir || !*o->dir)
		return mke_error("redis-server: no directory given");
	const char *save = o->save ? o->save : "";
	if (!valid_save(save))
		return mke_error("redis-server: save '%s' must be pairs of numbers "
				 "(seconds changes), or empty for no snapshots", save);
	const char *bin = o->binary;
	if (!bin || !*bin)
		bin = getenv("MKE_REDIS_SERVER");
	if (!bin || !*bin)
		bin = "redis-server";
	int timeout_ms = o->start_timeout_ms > 0 ? o->start_timeout_ms : 10000;

	if (mkdir_p(o->dir, 0700) != 0)
		return -1;
	s->dir = realpath(o->dir, NULL);
	if (!s->dir)
		return mke_error("redis-server: cannot resolve directory '%s': %s", o->dir,
				 strerror(errno));
	s->socket_path = path_join(s->dir, "redis.sock");
	s->conf_path = path_join(s->dir, "redis.conf");
	s->log_path = path_join(s->dir, "redis.log");
	s->pid_path = path_join(s->dir, "redis.pid");
	struct sockaddr_un sa;
	if (strlen(s->socket_path) >= sizeof(sa.sun_path)) {
		mke_error("redis-server: unix socket path '%s' is %zu bytes, longer than the "
			  "%zu this system allows: use a shorter run directory or --redis URL",
			  s->socket_path, strlen(s->socket_path), sizeof(sa.sun_path) - 1);
		redis_server_release(s);
		return -1;
	}
	if (socket_alive(s->socket_path)) {
		mke_error("redis-server: something already listens on '%s' (see '%s'): "
			  "stop that server first", s->socket_path, s->pid_path);
		redis_server_release(s);
		return -1;
	}
	unlink(s->socket_path); /* stale, from a killed server */

	struct conf c = {0};
	conf_raw(&c, "# generated by mke for one run; rewritten at every start (mode 0600)");
	conf_raw(&c, "port 0");
	conf_line(&c, "unixsocket", s->socket_path);
	conf_raw(&c, "unixsocketperm 700");
	conf_line(&c, "dir", s->dir);
	conf_raw(&c, "daemonize no");
	conf_raw(&c, "supervised no");
	conf_line(&c, "pidfile", s->pid_path);
	conf_line(&c, "logfile", "");
	conf_raw(&c, "loglevel notice");
	conf_raw(&c, "always-show-logo no");
	conf_line(&c, "save", save);
	conf_raw(&c, o->appendonly ? "appendonly yes" : "appendonly no");
	conf_raw(&c, "appendfsync everysec");
	if (o->password && *o->password)
		conf_line(&c, "requirepass", o->password);
	int rc = write_file_atomic(s->conf_path, c.buf, c.len, 0600);
	free(c.buf);
	if (rc == 0 && chmod(s->conf_path, 0600) != 0)
		rc = mke_error("cannot chmod '%s': %s", s->conf_path, strerror(errno));
	if (rc != 0) {
		redis_server_release(s);
		return -1;
	}

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	int dflsigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof(dflsigs) / sizeof(dflsigs[0]); i++)
		sigaddset(&dfl, dflsigs[i]);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char *argv[] = {(char *)bin, s->conf_path, NULL};
	pid_t pid;
	int err = posix_spawnp(&pid, bin, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (err != 0) {
		mke_error("cannot start '%s': %s (install redis-server, or set MKE_REDIS_SERVER "
			  "to its path, or give a --redis URL)", bin, strerror(err));
		redis_server_release(s);
		return -1;
	}
	s->pid = pid;

	char why[256] = "no answer yet";
	double deadline = now_seconds() + timeout_ms / 1000.0;
	int wait = 5;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			char *tail = log_tail(s->log_path);
			if (WIFEXITED(st))
				mke_error("redis-server exited with status %d while starting; "
					  "'%s' ends with:\n%s", WEXITSTATUS(st), s->log_path, tail);
			else
				mke_error("redis-server died (signal %d) while starting; "
					  "'%s' ends with:\n%s",
					  WIFSIGNALED(st) ? WTERMSIG(st) : 0, s->log_path, tail);
			free(tail);
			s->pid = 0;
			redis_server_release(s);
			return -1;
		}
		int ok = ping_once(s->socket_path, o->password, why, sizeof(why));
		if (ok == 1)
			return 0;
		if (ok < 0 || now_seconds() >= deadline) {
			char *tail = log_tail(s->log_path);
			if (ok < 0)
				mke_error("redis-server on '%s' refused mke: %s", s->socket_path, why);
			else
				mke_error("redis-server on '%s' did not answer PING within %d ms "
					  "(%s); '%s' ends with:\n%s", s->socket_path, timeout_ms,
					  why, s->log_path, tail);
			free(tail);
			redis_server_stop(s, 2000);
			redis_server_release(s);
			return -1;
		}
		sleep_ms(wait);
		if (wait < 50)
			wait *= 2;
	}
}

/* ------------------------------------------------------------------------ */
/* Addresses.                                                                */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Percent-decode [s, s+n) into a new string; NULL when malformed or %00. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			out[j++] = s[i];
			continue;
		}
		int a = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
		int b = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
		if (a < 0 || b < 0 || (a == 0 && b == 0)) {
			free(out);
			return NULL;
		}
		out[j++] = (char)(a * 16 + b);
		i += 2;
	}
	out[j] = '\0';
	return out;
}

static int parse_db(const char *s, const char *url, int *db)
{
	long v;
	if (parse_long(s, &v) != 0 || v < 0 || v > 1000000)
		return mke_error("redis address '%s': database '%s' is not a number >= 0", url, s);
	*db = (int)v;
	return 0;
}

void redis_endpoint_release(struct redis_endpoint *ep)
{
	if (!ep)
		return;
	free(ep->host);
	free(ep->path);
	free(ep->user);
	if (ep->password) {
		memset(ep->password, 0, strlen(ep->password));
		free(ep->password);
	}
	free(ep->display);
	memset(ep, 0, sizeof(*ep));
}

int redis_endpoint_parse(struct redis_endpoint *ep, const char *url)
{
	memset(ep, 0, sizeof(*ep));
	if (!url || !*url)
		return mke_error("redis address is empty");
	if (strncmp(url, "unix://", 7) == 0) {
		const char *p = url + 7;
		if (*p != '/')
			return mke_error("redis address '%s': a unix:// address needs an absolute "
					 "path (unix:///path/to/redis.sock)", url);
		const char *q = strchr(p, '?');
		ep->is_unix = 1;
		ep->path = q ? pct_decode(p, (size_t)(q - p)) : xstrdup(p);
		if (!ep->path) {
			redis_endpoint_release(ep);
			return mke_error("redis address '%s': bad %%-escape in the path", url);
		}
		if (q) {
			if (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, url, &ep->db) != 0) {
				redis_endpoint_release(ep);
				return mke_error("redis address '%s': the only query allowed is ?db=N",
						 url);
			}
		}
	} else if (strncmp(url, "redis://", 8) == 0) {
		const char *p = url + 8;
		const char *end = p + strcspn(p, "/?#");
		const char *at = NULL;
		for (const char *t = p; t < end; t++)
			if (*t == '@')
				at = t;
		if (at) {
			const char *colon = memchr(p, ':', (size_t)(at - p));
			if (!colon) {
				return mke_error("redis address '%s': credentials must be "
						 "':password@' or 'user:password@'", url);
			}
			if (colon > p)
				ep->user = pct_decode(p, (size_t)(colon - p));
			ep->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
			if ((colon > p && !ep->user) || !ep->password) {
				redis_endpoint_release(ep);
				return mke_error("redis address: bad %%-escape in the credentials");
			}
			p = at + 1;
		}
		const char *hend, *port = NULL;
		if (*p == '[') {
			const char *rb = memchr(p, ']', (size_t)(end - p));
			if (!rb) {
				redis_endpoint_release(ep);
				return mke_error("redis address: unclosed '[' in the host");
			}
			ep->host = xasprintf("%.*s", (int)(rb - p - 1), p + 1);
			hend = rb + 1;
			if (hend < end && *hend == ':')
				port = hend + 1;
			else if (hend != end) {
				redis_endpoint_release(ep);
				return mke_error("redis address: junk after ']' in the host");
			}
		} else {
			const char *colon = memchr(p, ':', (size_t)(end - p));
			hend = colon ? colon : end;
			ep->host = xasprintf("%.*s", (int)(hend - p), p);
			if (colon)
				port = colon + 1;
		}
		if (!ep->host[0]) {
			redis_endpoint_release(ep);
			return mke_error("redis address: no host (expected redis://host:port)");
		}
		ep->port = 6379;
		if (port) {
			char *ps = xasprintf("%.*s", (int)(end - port), port);
			long v;
			int bad = parse_long(ps, &v) != 0 || v < 1 || v > 65535;
			if (bad)
				mke_error("redis address: port '%s' is not a number in 1..65535", ps);
			free(ps);
			if (bad) {
				redis_endpoint_release(ep);
				return -1;
			}
			ep->port = (int)v;
		}
		if (*end == '/' && end[1]) {
			char *dbs = xstrdup(end + 1);
			int bad = parse_db(dbs, "redis://...", &ep->db);
			free(dbs);
			if (bad) {
				redis_endpoint_release(ep);
				return -1;
			}
		} else if (*end && !(*end == '/' && !end[1])) {
			redis_endpoint_release(ep);
			return mke_error("redis address: unexpected '%s' after the host", end);
		}
	} else if (strstr(url, "://")) {
		return mke_error("redis address '%s': unknown scheme (use redis://host:port, "
				 "unix:///path/to/sock or a socket path; TLS is not supported by "
				 "this hiredis)", url);
	} else {
		ep->is_unix = 1;
		ep->path = xstrdup(url);
	}
	if (ep->is_unix)
		ep->display = ep->db ? xasprintf("unix://%s?db=%d", ep->path, ep->db)
				     : xasprintf("unix://%s", ep->path);
	else
		ep->display = xasprintf(strchr(ep->host, ':') ? "redis://[%s]:%d/%d"
							      : "redis://%s:%d/%d",
					ep->host, ep->port, ep->db);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections.                                                              */

static void conn_drop(struct redis_conn *c)
{
	if (c->ctx) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
}

/* hiredis reports a socket timeout as EAGAIN; say what it means. */
static const char *conn_errstr(struct redis_conn *c, char *buf, size_t len)
{
	if (!c->ctx)
		return "not connected";
	if (c->ctx->err == REDIS_ERR_IO && strstr(c->ctx->errstr, "temporarily unavailable")) {
		snprintf(buf, len, "no reply within the %d ms socket timeout", c->timeout_ms);
		return buf;
	}
	if (c->ctx->err == REDIS_ERR_EOF)
		return "server closed the connection";
	return c->ctx->errstr;
}

/* One attempt. 0 connected; -1 retryable; -2 fatal (auth/db). err gets why. */
static int conn_try(struct redis_conn *c, char *err, size_t errlen)
{
	struct timeval ctv = ms_tv(c->connect_timeout_ms);
	redisContext *ctx = c->ep.is_unix ? redisConnectUnixWithTimeout(c->ep.path, ctv)
					  : redisConnectWithTimeout(c->ep.host, c->ep.port, ctv);
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (ctx->err) {
		snprintf(err, errlen, "%s", ctx->errstr);
		redisFree(ctx);
		return -1;
	}
	if (redisSetTimeout(ctx, ms_tv(c->timeout_ms)) != REDIS_OK) {
		snprintf(err, errlen, "cannot set socket timeout: %s", ctx->errstr);
		redisFree(ctx);
		return -1;
	}
	if (!c->ep.is_unix)
		redisEnableKeepAlive(ctx);
	redisReply *r;
	if (c->password) {
		if (c->ep.user)
			r = redisCommand(ctx, "AUTH %s %s", c->ep.user, c->password);
		else
			r = redisCommand(ctx, "AUTH %s", c->password);
		if (!r) {
			snprintf(err, errlen, "AUTH: %s", ctx->errstr);
			redisFree(ctx);
			return -1;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			if (strstr(r->str, "without any password configured"))
				snprintf(err, errlen, "a password was given but the server has none "
					 "(unset MKE_REDIS_PASSWORD / pipeline.redis_password): %s",
					 r->str);
			else
				snprintf(err, errlen, "the server rejected the password (check "
					 "MKE_REDIS_PASSWORD or pipeline.redis_password): %s", r->str);
			freeReplyObject(r);
			redisFree(ctx);
			c->auth_failed = 1;
			return -2;
		}
		freeReplyObject(r);
	}
	if (c->ep.db) {
		r = redisCommand(ctx, "SELECT %d", c->ep.db);
		int bad = !r || r->type == REDIS_REPLY_ERROR;
		if (bad)
			snprintf(err, errlen, "SELECT %d: %s", c->ep.db, r ? r->str : ctx->errstr);
		if (r)
			freeReplyObject(r);
		if (bad) {
			redisFree(ctx);
			return r ? -2 : -1;
		}
	}
	r = redisCommand(ctx, "PING");
	if (!r) {
		snprintf(err, errlen, "PING: %s", ctx->errstr);
		redisFree(ctx);
		return -1;
	}
	int rc = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		if (strncmp(r->str, "NOAUTH", 6) == 0) {
			snprintf(err, errlen, "the server requires a password: set "
				 "MKE_REDIS_PASSWORD or pipeline.redis_password (%s)", r->str);
			c->auth_failed = 1;
			rc = -2;
		} else {
			snprintf(err, errlen, "PING: %s", r->str);
			rc = strncmp(r->str, "LOADING", 7) == 0 ? -1 : -2;
		}
	}
	freeReplyObject(r);
	if (rc != 0) {
		redisFree(ctx);
		return rc;
	}
	c->ctx = ctx;
	return 0;
}

static int conn_connect(struct redis_conn *c)
{
	char err[512] = "";
	conn_drop(c);
	if (c->auth_failed)
		return mke_error("redis '%s': not reconnecting after a rejected password",
				 c->ep.display);
	int delay = c->backoff_ms;
	for (int attempt = 1;; attempt++) {
		if (c->stop && *c->stop)
			return mke_error("redis '%s': not reconnecting: the process was asked to stop",
					 c->ep.display);
		int rc = conn_try(c, err, sizeof(err));
		if (rc == 0)
			return 0;
		if (rc == -2)
			return mke_error("redis '%s': %s", c->ep.display, err);
		if (attempt >= c->retries)
			break;
		/* equal jitter: half the delay fixed, half random */
		struct rng r;
		rng_init(&r, c->jitter_seed, RNG_JITTER, 0, c->jitter_n++);
		sleep_ms_unless(delay / 2 + (int)(rng_uniform(&r) * (float)(delay / 2 + 1)), c->stop);
		delay = delay * 2 > c->backoff_cap_ms ? c->backoff_cap_ms : delay * 2;
	}
	return mke_error("cannot connect to redis '%s' after %d attempts: %s", c->ep.display,
			 c->retries, err);
}

int redis_conn_open(struct redis_conn *c, const char *url, const struct redis_conn_opts *o)
{
	struct redis_conn_opts d = {0};
	memset(c, 0, sizeof(*c));
	if (!o)
		o = &d;
	if (o->timeout_ms < 0 || o->connect_timeout_ms < 0 || o->retries < 0 ||
	    o->backoff_ms < 0 || o->backoff_cap_ms < 0)
		return mke_error("redis: timeouts, retries and backoff must not be negative");
	if (redis_endpoint_parse(&c->ep, url) != 0)
		return -1;
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
	c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : c->timeout_ms;
	c->retries = o->retries ? o->retries : 8;
	c->backoff_ms = o->backoff_ms ? o->backoff_ms : 50;
	c->backoff_cap_ms = o->backoff_cap_ms ? o->backoff_cap_ms : 2000;
	c->stop = o->stop;
	if (c->backoff_ms > c->backoff_cap_ms) {
		int b = c->backoff_ms, cap = c->backoff_cap_ms;
		redis_endpoint_release(&c->ep);
		return mke_error("redis: backoff_ms %d is larger than backoff_cap_ms %d", b, cap);
	}
	if (o->password && *o->password) {
		if (c->ep.password && strcmp(c->ep.password, o->password) != 0)
			mke_warn("redis '%s': the password in the address differs from the one "
				 "given (MKE_REDIS_PASSWORD or config); using the latter",
				 c->ep.display);
		c->password = xstrdup(o->password);
	} else if (c->ep.password && *c->ep.password) {
		c->password = xstrdup(c->ep.password);
	}
	c->jitter_seed = ((uint64_t)getpid() << 32) ^ (uint64_t)(wall_seconds() * 1e6);
	/* hiredis writes with plain write(): a peer that went away must be an
	 * EPIPE error here, not a SIGPIPE that kills the process */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	if (conn_connect(c) != 0) {
		redis_conn_close(c);
		return -1;
	}
	return 0;
}

int redis_conn_reconnect(struct redis_conn *c)
{
	if (conn_connect(c) != 0)
		return -1;
	c->reconnects++;
	return 0;
}

void redis_conn_close(struct redis_conn *c)
{
	if (!c)
		return;
	conn_drop(c);
	if (c->password) {
		memset(c->password, 0, strlen(c->password));
		free(c->password);
	}
	redis_endpoint_release(&c->ep);
	memset(c, 0, sizeof(*c));
}

static int conn_ready(struct redis_conn *c)
{
	if (c->ctx && !c->ctx->err)
		return 0;
	return redis_conn_reconnect(c);
}

redisReply *redis_conn_argv(struct redis_conn *c, int argc, const char **argv,
			    const size_t *argvlen)
{
	if (conn_ready(c) != 0)
		return NULL;
	redisReply *r = redisCommandArgv(c->ctx, argc, argv, argvlen);
	if (!r) {
		char buf[128];
		mke_error("redis '%s': %s: %s", c->ep.display, argc > 0 ? argv[0] : "?",
			  conn_errstr(c, buf, sizeof(buf)));
		conn_drop(c);
	}
	return r;
}

redisReply *redis_conn_cmd(struct redis_conn *c, const char *fmt, ...)
{
	if (conn_ready(c) != 0)
		return NULL;
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c->ctx, fmt, ap);
	va_end(ap);
	if (!r) {
		char buf[128];
		size_t n = strcspn(fmt, " ");
		mke_error("redis '%s': %.*s: %s", c->ep.display, (int)n, fmt,
			  conn_errstr(c, buf, sizeof(buf)));
		conn_drop(c);
	}
	return r;
}

int redis_conn_append(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen)
{
	if (conn_ready(c) != 0)
		return -1;
	if (redisAppendCommandArgv(c->ctx, argc, argv, argvlen) != REDIS_OK) {
		char buf[128];
		mke_error("redis '%s': %s: %s", c->ep.display, argc > 0 ? argv[0] : "?",
			  conn_errstr(c, buf, sizeof(buf)));
		conn_drop(c);
		return -1;
	}
	return 0;
}

redisReply *redis_conn_get_reply(struct redis_conn *c)
{
	if (!c->ctx)
		return NULL;
	void *r = NULL;
	if (redisGetReply(c->ctx, &r) != REDIS_OK || !r) {
		char buf[128];
		mke_error("redis '%s': reading a pipelined reply: %s", c->ep.display,
			  conn_errstr(c, buf, sizeof(buf)));
		conn_drop(c);
		return NULL;
	}
	return r;
}

int redis_reply_ok(struct redis_conn *c, const redisReply *r, const char *what)
{
	if (!r)
		return -1; /* already reported */
	if (r->type == REDIS_REPLY_ERROR)
		return mke_error("redis '%s': %s: %s", c ? c->ep.display : "?", what, r->str);
	return 0;
}

int redis_reply_is_error(const redisReply *r, const char *prefix)
{
	return r && r->type == REDIS_REPLY_ERROR && r->str &&
	       strncmp(r->str, prefix, strlen(prefix)) == 0;
}
