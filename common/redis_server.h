/*
 * redis_server.h - a private redis-server for a run, and connections to any
 * Redis (private or shared).
 *
 * Two things live here because both are "how mke reaches Redis":
 *
 *   struct redis_server  starts redis-server as a child process (posix_spawn
 *                        with an argv array, never a shell) listening only on
 *                        a unix socket inside a directory (the run directory
 *                        in the embedded default), waits with a bounded wait
 *                        until it answers PING, and stops it by pid (SIGTERM,
 *                        then SIGKILL after a timeout).
 *
 *   struct redis_conn    one hiredis connection with the address it came from,
 *                        so that it can reconnect (with jittered capped
 *                        exponential backoff), re-AUTH and re-SELECT by itself
 *                        after Redis restarts or a read times out.
 *
 * Secrets: a password never appears in an argv (ps shows argv to every user).
 * The private server gets requirepass from a generated config file created
 * with mode 0600; clients get it from the caller (who takes it from
 * MKE_REDIS_PASSWORD or the run config) or from the URL. Error messages show
 * addresses with the password removed.
 *
 * hiredis 0.14 has one socket timeout for every read and write; after a
 * timeout or any I/O error the context is unusable. redis_conn marks it broken
 * and the next command reconnects. A command whose reply was lost is NOT sent
 * again: the caller decides (see queue.h for why that is safe for the queue).
 */
#ifndef MKE_REDIS_SERVER_H
#define MKE_REDIS_SERVER_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis.h>

/* ------------------------------------------------------------------------ */
/* A private redis-server.                                                   */

struct redis_server_opts {
	const char *dir;          /* working directory: socket, config, log, data (required) */
	const char *password;     /* requirepass; NULL or "" for none */
	int appendonly;           /* 1: AOF on (appendfsync everysec); default 0 */
	const char *save;         /* RDB "save" value; NULL means "" (no snapshots) */
	const char *binary;       /* NULL: $MKE_REDIS_SERVER, else "redis-server" on PATH */
	int start_timeout_ms;     /* bounded wait for PING; 0 means 10000 */
};

struct redis_server {
	pid_t pid;                /* 0 when not running */
	char *dir;                /* absolute; owned */
	char *socket_path;        /* <dir>/redis.sock; owned */
	char *conf_path;          /* <dir>/redis.conf (mode 0600); owned */
	char *log_path;           /* <dir>/redis.log (stdout+stderr of the server); owned */
	char *pid_path;           /* <dir>/redis.pid, written by the server; owned */
};

/* Start redis-server and wait until it answers PING (after AUTH when a
 * password is set). On failure reports why (including the tail of the
 * server's log), stops anything it started, and returns -1; s is then
 * released. On success the caller must call redis_server_stop() and
 * redis_server_release(). */
int redis_server_start(struct redis_server *s, const struct redis_server_opts *o);

/* Stop by pid: SIGTERM, wait up to timeout_ms (0 means 5000), then SIGKILL.
 * Works for a child of this process (reaped with waitpid) and for a server
 * started by an earlier process (polled with kill(pid, 0)). Removes a stale
 * socket file. Returns 0 once the process is gone, -1 if it cannot be
 * stopped. Safe to call when s->pid is 0. */
int redis_server_stop(struct redis_server *s, int timeout_ms);

/* Stop by pid alone (e.g. a pid read back from redis.pid by `mke resume`). */
int redis_server_kill_pid(pid_t pid, int timeout_ms);

/* Free the strings of s (does not stop the server). */
void redis_server_release(struct redis_server *s);

/* ------------------------------------------------------------------------ */
/* Redis addresses.                                                          */

/*
 * Accepted forms:
 *   redis://[[user]:password@]host[:port][/db]     port defaults to 6379
 *   redis://[::1]:6379/0                           IPv6 in brackets
 *   unix:///path/to/redis.sock[?db=N]
 *   /path/to/redis.sock  or  ./relative.sock       a bare socket path
 * user and password may be percent-encoded.
 */
struct redis_endpoint {
	int is_unix;
	char *host;               /* TCP host, NULL for unix; owned */
	int port;
	char *path;               /* unix socket path, NULL for TCP; owned */
	char *user;               /* ACL user from the URL or NULL; owned */
	char *password;           /* from the URL or NULL; owned */
	int db;                   /* SELECT index, default 0 */
	char *display;            /* the address without the password, for messages; owned */
};

/* Parse url into ep (zeroed first). Returns 0, or -1 with a message naming
 * what is wrong. On success the caller calls redis_endpoint_release(). */
int redis_endpoint_parse(struct redis_endpoint *ep, const char *url);
void redis_endpoint_release(struct redis_endpoint *ep);

/* ------------------------------------------------------------------------ */
/* A connection.                                                             */

struct redis_conn_opts {
	const char *password;     /* wins over a password in the URL; NULL/"" none */
	int timeout_ms;           /* socket timeout for every read/write; 0 means 5000 */
	int connect_timeout_ms;   /* per attempt; 0 means timeout_ms */
	int retries;              /* connect attempts before giving up; 0 means 8 */
	int backoff_ms;           /* first retry delay (doubles, jittered); 0 means 50 */
	int backoff_cap_ms;       /* longest retry delay; 0 means 2000 */
	const volatile sig_atomic_t *stop; /* may be NULL; when *stop is set (a signal
				      handler's flag), connecting gives up at once instead
				      of retrying and backing off */
};

struct redis_conn {
	redisContext *ctx;        /* NULL while disconnected; owned */
	struct redis_endpoint ep;
	char *password;           /* the effective password or NULL; owned */
	int timeout_ms;
	int connect_timeout_ms;
	int retries, backoff_ms, backoff_cap_ms;
	int auth_failed;          /* 1 after a rejected password: never retried */
	unsigned long reconnects; /* successful reconnects after the first connect */
	const volatile sig_atomic_t *stop; /* see redis_conn_opts */
	uint64_t jitter_seed;     /* backoff jitter stream (RNG_JITTER) */
	uint32_t jitter_n;
};

/* Parse url, connect (retrying with backoff), AUTH, SELECT, PING. o may be
 * NULL for defaults. If SIGPIPE is at its default action it is set to
 * ignored (process-wide): a dropped connection is then an error, not death. Returns 0, or -1 with a clear message: an unreachable
 * address, "requires a password", "rejected the password", ... On -1 the
 * struct is released. On 0 the caller calls redis_conn_close(). */
int redis_conn_open(struct redis_conn *c, const char *url, const struct redis_conn_opts *o);

/* Drop the socket (if any) and connect again with the same settings. */
int redis_conn_reconnect(struct redis_conn *c);

/* Close and free everything c owns. */
void redis_conn_close(struct redis_conn *c);

/* Send one command and read its reply, reconnecting first if the context is
 * broken. Returns the reply (the caller frees it with freeReplyObject; it may
 * be an error reply, see redis_reply_ok), or NULL after an I/O error or
 * timeout, reported with what the command was for. Never resends. */
redisReply *redis_conn_argv(struct redis_conn *c, int argc, const char **argv,
			    const size_t *argvlen);
/* printf-style form for constant commands (hiredis formatting: %s, %b, %d). */
redisReply *redis_conn_cmd(struct redis_conn *c, const char *fmt, ...);

/* Pipelining: append any number of commands, then read that many replies in
 * order with redis_conn_get_reply (NULL on I/O error, which breaks the
 * connection; the caller frees each reply). */
int redis_conn_append(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen);
redisReply *redis_conn_get_reply(struct redis_conn *c);

/* 0 if r is a non-NULL, non-error reply; else reports "redis 'addr': what:
 * message" and returns -1. Does not free r. */
int redis_reply_ok(struct redis_conn *c, const redisReply *r, const char *what);

/* 1 if r is an error reply whose message starts with prefix (e.g. "NOSCRIPT"). */
int redis_reply_is_error(const redisReply *r, const char *prefix);

#endif
