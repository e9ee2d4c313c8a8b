/*
 * cmd_cancel.c - `mke cancel RUN`: ask a running run to stop.
 *
 * Only the coordinator writes SQLite, so cancel does not touch the database:
 * it sets the run's cancel key in Redis (queue_cancel), at the URL the
 * coordinator recorded in the run's params. The coordinator sees the key,
 * the workers see it on their next take or lease renewal; the coordinator
 * then stops the job, releases the leases and records status cancelled.
 * --wait follows the database until that record appears.
 *
 * The password comes from MKE_REDIS_PASSWORD, else from the run's config
 * (pipeline.redis_password), as the coordinator takes it; never from argv.
 * When Redis cannot be reached the coordinator is almost surely dead too
 * (the embedded default runs Redis as its child): there is nothing to stop,
 * and `mke resume` is how such a run goes on.
 */
#include <cJSON.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "queue.h"
#include "redis_server.h"
#include "store.h"
#include "util.h"

static int run_over(enum run_status s)
{
	return s == RUN_DONE || s == RUN_FAILED || s == RUN_CANCELLED;
}

struct url_find {
	char *url;
};

static int find_url(void *arg, const char *key, const char *value)
{
	struct url_find *f = arg;
	if (strcmp(key, "redis_url") == 0 && value && *value) {
		f->url = xstrdup(value);
		return 1;
	}
	return 0;
}

/* pipeline.redis_password of the run's config, or NULL (caller frees). */
static char *config_password(const char *config)
{
	cJSON *c = config ? cJSON_Parse(config) : NULL;
	cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "pipeline");
	cJSON *pw = cJSON_GetObjectItemCaseSensitive(p, "redis_password");
	char *out = cJSON_IsString(pw) && *pw->valuestring ? xstrdup(pw->valuestring) : NULL;
	cJSON_Delete(c);
	return out;
}

/* Poll the database until the run ends or `seconds` pass. 1 if it ended. */
static int wait_end(struct store *db, const char *id, double seconds, struct store_run *r)
{
	double until = now_seconds() + seconds;
	for (;;) {
		store_run_release(r);
		if (store_run_get(db, id, r) != 1)
			return 0;
		if (run_over(r->status))
			return 1;
		if (now_seconds() >= until)
			return 0;
		struct timespec ts = {0, 200 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int cmd_cancel(int argc, char **argv)
{
	const char *run = NULL, *db_opt = NULL, *reason = NULL;
	double wait = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--db") == 0 && i + 1 < argc) {
			db_opt = argv[++i];
		} else if (strcmp(a, "--reason") == 0 && i + 1 < argc) {
			reason = argv[++i];
		} else if (strcmp(a, "--wait") == 0) {
			wait = 60;
			double s;
			if (i + 1 < argc && parse_double(argv[i + 1], &s) == 0) {
				if (!(s >= 0 && s <= 86400)) {
					fprintf(stderr, "error: --wait takes seconds from 0 to 86400, not '%s'\n",
						argv[i + 1]);
					return 2;
				}
				wait = s;
				i++;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage("cancel", 1);
			return 2;
		} else if (!run) {
			run = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return 2;
		}
	}
	if (!run) {
		fprintf(stderr, "error: which run? 'mke cancel RUN'; see 'mke runs'\n");
		return 2;
	}
	struct store *db;
	char *db_path;
	struct store_run r;
	if (run_open(run, db_opt, &db, &db_path, &r) != 0)
		return 1;
	char *id = xstrdup(r.id);
	int rc = 1, connected = 0;
	char *password = NULL, *why = NULL;
	struct url_find f = {0};
	struct redis_endpoint ep = {0};
	struct redis_conn conn;
	struct queue q;
	memset(&conn, 0, sizeof conn);
	memset(&q, 0, sizeof q);
	if (run_over(r.status)) {
		printf("run %s already ended (%s); nothing to cancel\n", id, run_status_name(r.status));
		rc = 0;
		goto out;
	}
	if (store_params_each(db, id, find_url, &f) < 0)
		goto out;
	if (!f.url) {
		mke_error("run '%s' (%s, phase %s) has no Redis recorded yet: its coordinator is starting or "
			  "died before it connected; nothing to cancel", id, run_status_name(r.status),
			  run_phase_name(r.phase));
		goto out;
	}
	if (redis_endpoint_parse(&ep, f.url) != 0)
		goto out;
	const char *env = getenv("MKE_REDIS_PASSWORD");
	password = env && *env ? xstrdup(env) : config_password(r.config);
	struct redis_conn_opts ro = {.password = password, .timeout_ms = 3000, .retries = 3};
	if (redis_conn_open(&conn, f.url, &ro) != 0) {
		mke_error("cannot reach the Redis of run '%s' at '%s': its coordinator is probably dead, so "
			  "there is nothing to cancel (the database still says '%s'); 'mke resume %s' "
			  "continues the run", id, ep.display, run_status_name(r.status), id);
		goto out;
	}
	connected = 1;
	if (queue_init(&q, &conn, id, NULL) != 0)
		goto out;
	if (!reason) {
		const struct passwd *pw = getpwuid(getuid());
		char host[256] = "";
		gethostname(host, sizeof host - 1);
		why = xasprintf("cancelled by %s@%s with 'mke cancel'", pw ? pw->pw_name : "?", host);
		reason = why;
	}
	if (queue_cancel(&q, reason) != 0)
		goto out;
	printf("run %s: cancel requested (%s)\n", id, reason);
	fflush(stdout);
	rc = 0;
	if (wait < 0) {
		printf("the coordinator stops the workers and records 'cancelled'; see 'mke status %s'\n", id);
	} else if (wait_end(db, id, wait, &r)) {
		printf("run %s: %s\n", id, run_status_name(r.status));
	} else {
		mke_error("run '%s' is still '%s' after %.0f s: is its coordinator alive? see 'mke status %s'",
			  id, run_status_name(r.status), wait, id);
		rc = 1;
	}
out:
	if (q.rc)
		queue_release(&q);
	if (connected)
		redis_conn_close(&conn);
	redis_endpoint_release(&ep);
	free(f.url);
	free(password);
	free(why);
	store_run_release(&r);
	store_close(db);
	free(db_path);
	free(id);
	return rc;
}
