/*
 * cmd_shard.c - `mke shard MANIFEST --run RUN --shard-size K`: validate a
 * manifest (bad rows reported as file:line: reason, counted, skipped), record
 * its shards in the run's database and push them to the run's Redis queue.
 * The same code is the shard phase of `mke run`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "coord.h"
#include "manifest.h"
#include "shard.h"
#include "util.h"

struct shard_opts {
	const char *manifest, *run, *config, *db, *redis;
	long size;
};

static int parse(int argc, char **argv, struct shard_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "--run") == 0 && has)
			o->run = argv[++i];
		else if (strcmp(a, "--config") == 0 && has)
			o->config = argv[++i];
		else if (strcmp(a, "--db") == 0 && has)
			o->db = argv[++i];
		else if (strcmp(a, "--redis") == 0 && has)
			o->redis = argv[++i];
		else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)
			mke_quiet = 1;
		else if (strcmp(a, "--shard-size") == 0 && has) {
			if (parse_long(argv[++i], &o->size) != 0 || o->size < 1 || o->size > 1000000) {
				fprintf(stderr, "error: --shard-size must be a number from 1 to 1000000, not '%s'\n",
					argv[i]);
				return -1;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			return -1;
		} else if (!o->manifest) {
			o->manifest = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return -1;
		}
	}
	if (!o->manifest || !o->run) {
		fprintf(stderr, "error: a MANIFEST and --run RUN are required\n");
		return -1;
	}
	if (o->redis && strchr(o->redis, '@')) {
		fprintf(stderr, "error: --redis must not carry a password; set MKE_REDIS_PASSWORD\n");
		return -1;
	}
	return 0;
}

/* Count the manifest's valid rows: decoded with the config's modalities when
 * there is a config, else checked as CSV in one pass that keeps only the ids. */
static int count_rows(const struct shard_opts *o, struct run_config *c, int *rows, int *bad)
{
	if (o->config) {
		struct dataset d;
		if (dataset_open(&d, c, o->manifest, c->nmod, 0) != 0) /* keeps nothing decoded */
			return -1;
		*rows = d.n;
		*bad = d.nbad + d.nquarantined;
		dataset_release(&d);
		return 0;
	}
	return manifest_count(o->manifest, rows, bad);
}

static int redis_param(void *arg, const char *key, const char *value)
{
	char **url = arg;
	if (strcmp(key, "redis_url") == 0 && !*url)
		*url = xstrdup(value);
	return 0;
}

int cmd_shard(int argc, char **argv)
{
	struct shard_opts o;
	if (parse(argc, argv, &o) != 0) {
		cmd_usage("shard", 1);
		return 2;
	}
	struct run_config c;
	memset(&c, 0, sizeof c);
	if (o.config && config_load(&c, o.config) != 0)
		return 1;
	if (!o.size)
		o.size = o.config ? c.pipeline.shard_size : 64;
	int rc = 1, rows = 0, bad = 0, n = 0;
	char *detail = NULL, *url = NULL;
	struct redis_conn rconn = {0};
	struct queue q = {0};
	const char *root = getenv("MKE_RUNS");
	char *dir = xasprintf("%s/%s", root && *root ? root : "runs", o.run);
	char *dbpath = coord_default_db(o.db, dir);
	struct store *db = NULL;
	if (count_rows(&o, &c, &rows, &bad) != 0)
		goto out;
	if (!o.db && mkdir_p(dir, 0750) != 0)
		goto out;
	if (!(db = store_open(dbpath, 0)))
		goto out;
	struct store_run r;
	int got = store_run_get(db, o.run, &r);
	if (got < 0)
		goto out;
	if (got == 0) {
		struct store_run nr = {.id = (char *)o.run, .name = (char *)o.run, .config = "{}",
				       .config_path = (char *)o.config, .run_dir = dir};
		if (store_run_create(db, &nr) != 0)
			goto out;
	} else {
		store_run_release(&r);
	}
	url = o.redis ? xstrdup(o.redis) : NULL;
	if (!url)
		store_params_each(db, o.run, redis_param, &url);
	if (url) {
		struct redis_conn_opts ro = {.password = getenv("MKE_REDIS_PASSWORD")};
		struct queue_opts qo;
		queue_opts_default(&qo);
		if (redis_conn_open(&rconn, url, &ro) != 0 || queue_init(&q, &rconn, o.run, &qo) != 0)
			goto out;
		store_param_set(db, o.run, "redis_url", url);
	}
	store_phase_begin(db, o.run, PHASE_SHARD);
	if (shard_rows(db, url ? &q : NULL, o.run, rows, bad, (int)o.size, &n, &detail) != 0) {
		store_phase_end(db, o.run, PHASE_SHARD, PHASE_FAILED, "sharding failed");
		goto out;
	}
	store_phase_end(db, o.run, PHASE_SHARD, PHASE_OK, detail);
	printf("%s: %s%s\n", o.manifest, detail, url ? "" : " (recorded only: no Redis given)");
	rc = 0;
out:
	if (q.rc)
		queue_release(&q);
	if (rconn.ctx)
		redis_conn_close(&rconn);
	if (db)
		store_close(db);
	if (o.config)
		config_release(&c);
	free(detail);
	free(url);
	free(dir);
	free(dbpath);
	return rc;
}
