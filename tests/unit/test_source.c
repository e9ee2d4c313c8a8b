/*
 * test_source.c - lazily decoded datasets (manifest.h dataset_row, cache.h):
 * the LRU cache's eviction, bound and hits; lazy rows equal the eager
 * decode; training and evaluation give the same result resident, lazy, and
 * lazy with prefetch; a row whose file vanishes after the load is
 * quarantined and counted, not a crash; and a trained model over a dataset
 * several times the cache keeps the process's peak memory (VmHWM) within
 * the cache plus O(batch), far below the decoded size.
 */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "experiment.h"
#include "manifest.h"
#include "npy.h"
#include "test.h"
#include "tmpdir.h"
#include "util.h"

/* ---- the cache ------------------------------------------------------------------ */

static void test_cache_lru(void)
{
	struct sample_cache c;
	float v[10], out[10];
	cache_init(&c, 8, 3 * sizeof v); /* room for three entries */
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 10; i++)
			v[i] = (float)(k * 100 + i);
		if (k < 3)
			cache_put(&c, k, v, 10);
	}
	CHECK(c.used == 3 * sizeof v);
	CHECK(cache_get(&c, 0, out, 10) == 1 && out[9] == 9); /* 0 is now most recent */
	for (int i = 0; i < 10; i++)
		v[i] = (float)(300 + i);
	cache_put(&c, 3, v, 10); /* evicts the least recent: 1 */
	CHECK(c.evictions == 1 && c.used == 3 * sizeof v);
	CHECK(cache_get(&c, 1, out, 10) == 0);
	CHECK(cache_get(&c, 2, out, 10) == 1 && out[0] == 200);
	CHECK(cache_get(&c, 3, out, 10) == 1 && out[5] == 305);
	CHECK(cache_get(&c, 0, out, 10) == 1 && out[1] == 1);
	CHECK(c.hits == 4 && c.misses == 1);
	/* an entry larger than the budget is not kept, and evicts nothing */
	float big[40] = { 0 };
	cache_put(&c, 5, big, 40);
	CHECK(cache_get(&c, 5, big, 40) == 0 && c.evictions == 1);
	/* a key put again replaces its entry without growing */
	cache_put(&c, 2, v, 10);
	CHECK(c.used == 3 * sizeof v && cache_get(&c, 2, out, 10) == 1 && out[0] == 300);
	/* a bound of one entry keeps exactly the last one */
	for (int k = 0; k < 8; k++) {
		cache_put(&c, k, v, 10);
		CHECK(c.used <= c.budget);
	}
	CHECK(cache_get(&c, 7, out, 10) == 1 && cache_get(&c, 4, out, 10) == 0);
	cache_release(&c);
}

/* ---- a small npy dataset ----------------------------------------------------------- */

#define NROWS 40
#define DIM 96

static char *write_text(const char *name, const char *text)
{
	char *p = tpath(name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

/* NROWS npy rows of DIM values (class = row % 2, visible in the values) and
 * a manifest; returns the manifest path. */
static char *make_npy_set(const char *name, int nrows, int dim)
{
	char *dir = tpath("f");
	mkdir(dir, 0700);
	free(dir);
	size_t cap = 64 + (size_t)nrows * 48;
	char *csv = xmalloc(cap), *o = csv;
	o += sprintf(o, "id,label,f\n");
	float *v = xmalloc(sizeof(float) * (size_t)dim);
	for (int r = 0; r < nrows; r++) {
		for (int i = 0; i < dim; i++)
			v[i] = (float)sin(0.37 * (r + 1) * (i + 1)) + (r % 2 ? 0.5f : -0.5f) *
									 (i % 3 == 0);
		char rel[64];
		snprintf(rel, sizeof rel, "f/%s-%03d.npy", name, r);
		char *p = tpath(rel);
		int64_t shape[1] = { dim };
		char *buf;
		size_t len;
		FILE *f = fopen(p, "wb"); /* npy_save's fsync is slow for a thousand files */
		if (f && npy_serialize(v, 1, shape, 0, &buf, &len) == 0) {
			fwrite(buf, 1, len, f);
			free(buf);
		}
		if (f)
			fclose(f);
		free(p);
		o += sprintf(o, "r%03d,%d,%s\n", r, r % 2, rel);
	}
	free(v);
	char csvname[64];
	snprintf(csvname, sizeof csvname, "%s.csv", name);
	char *p = write_text(csvname, csv);
	free(csv);
	return p;
}

static int config_hidden(struct run_config *c, int batch, int epochs, const char *hidden)
{
	char *json = xasprintf(
		"{\"name\": \"s\", \"data\": {\"labeled\": \"l.csv\", \"classes\": 2, "
		"\"modalities\": {\"a\": {\"column\": \"f\", \"kind\": \"npy\"}}}, "
		"\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": %s}}, "
		"\"teacher\": {\"model\": \"m\", \"epochs\": %d, \"batch_size\": %d, "
		"\"optimizer\": {\"lr\": 0.05}}}", hidden, epochs, batch);
	char *p = tpath("cfg.json");
	int rc = config_parse(c, json, p);
	free(p);
	free(json);
	return rc;
}

static int load_config(struct run_config *c, int batch, int epochs)
{
	return config_hidden(c, batch, epochs, "[8]");
}

static void test_lazy_rows_equal_eager(void)
{
	struct run_config c;
	CHECK(load_config(&c, 8, 1) == 0);
	char *p = make_npy_set("eq", NROWS, DIM);
	struct dataset eager, lazy;
	size_t row = DIM * sizeof(float);
	CHECK(dataset_open(&eager, &c, p, 1, (size_t)1 << 30) == 0);
	CHECK(dataset_open(&lazy, &c, p, 1, 5 * row) == 0); /* five rows of forty */
	CHECK(eager.n == NROWS && lazy.n == NROWS && eager.x[0] && !lazy.x[0] && lazy.src);
	CHECK(!eager.src && lazy.dim[0] == DIM &&
	      memcmp(eager.shape[0], lazy.shape[0], sizeof eager.shape[0]) == 0);
	float *out = xmalloc(row);
	int same = 0;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; eager.n == NROWS && i < NROWS; i++)
			same += dataset_row(&lazy, 0, i, out) == 0 &&
				memcmp(out, eager.x[0] + (size_t)i * DIM, row) == 0;
	CHECK(same == 2 * NROWS);
	struct dataset_stats st;
	dataset_stats(&lazy, &st);
	/* walking forty rows in order through five slots: every read misses */
	CHECK(st.lazy == 1 && st.misses == 2 * NROWS && st.evictions > 0);
	CHECK(st.cached <= st.budget && st.budget == 5 * row && st.late == 0);
	/* reading one row again is a hit */
	dataset_row(&lazy, 0, NROWS - 1, out);
	dataset_stats(&lazy, &st);
	CHECK(st.hits == 1);
	/* resident rows come back through the same call */
	CHECK(eager.n == NROWS && dataset_row(&eager, 0, 3, out) == 0 &&
	      memcmp(out, eager.x[0] + 3 * DIM, row) == 0);
	/* the worker's subset (rows without pseudo-labels dropped): the kept
	   samples keep their rows, ids and labels, lazy or resident */
	unsigned char keep[NROWS];
	for (int i = 0; i < NROWS; i++)
		keep[i] = i % 3 != 1;
	uint32_t id8 = eager.n == NROWS ? eager.ids[8] : 0; /* kept rows 0,2,3,5,6,8: 8 is now 5 */
	dataset_subset(&eager, keep);
	dataset_subset(&lazy, keep);
	int kept = 0, match = 0;
	for (int i = 0; i < NROWS; i++)
		kept += keep[i];
	CHECK(eager.n == kept && lazy.n == kept && eager.ids[5] == id8 && lazy.ids[5] == id8);
	float *want = xmalloc(row);
	for (int i = 0; eager.n == kept && lazy.n == kept && i < kept; i++)
		match += dataset_row(&lazy, 0, i, out) == 0 && dataset_row(&eager, 0, i, want) == 0 &&
			 memcmp(out, want, row) == 0 && lazy.labels[i] == eager.labels[i];
	CHECK(match == kept);
	free(want);
	free(out);
	dataset_release(&eager);
	dataset_release(&lazy);
	free(p);
	config_release(&c);
}

/* Train the teacher on d and return its parameters and test probabilities. */
static int fit_on(struct run_config *c, struct dataset *lab, float **params, size_t *np,
		  float **probs)
{
	struct exp_data d;
	memset(&d, 0, sizeof d);
	d.labeled = *lab;
	struct model m;
	int rc = train_teacher(&m, c, &d, 7, NULL);
	if (rc == 0) {
		*np = m.nparams;
		*params = xmalloc(sizeof(float) * m.nparams);
		memcpy(*params, m.params, sizeof(float) * m.nparams);
		struct train_data td;
		bind_inputs(&td, lab, &c->models[c->teacher_model]);
		*probs = xmalloc(sizeof(float) * (size_t)lab->n * 2);
		predict_probs(&m, &td, *probs);
	}
	model_release(&m);
	return rc;
}

static void test_prefetch_same_training(void)
{
	char *p = make_npy_set("tr", NROWS, DIM);
	size_t row = DIM * sizeof(float);
	for (int batch = 0; batch <= 8; batch += 8) { /* full batch, then mini-batches */
		struct run_config c;
		CHECK(load_config(&c, batch, 4) == 0);
		float *par[3] = { 0 }, *pr[3] = { 0 };
		size_t np[3] = { 0 };
		for (int v = 0; v < 3; v++) { /* resident, lazy, lazy with prefetch */
			struct dataset d;
			CHECK(dataset_open(&d, &c, p, 1, v == 0 ? (size_t)1 << 30 : 7 * row) == 0);
			d.prefetch = v == 2;
			CHECK((d.x[0] != NULL) == (v == 0));
			CHECK(fit_on(&c, &d, &par[v], &np[v], &pr[v]) == 0);
			dataset_release(&d);
		}
		for (int v = 1; v < 3; v++) {
			CHECK_MSG(np[v] == np[0] && par[v] && par[0] &&
				  memcmp(par[v], par[0], sizeof(float) * np[0]) == 0,
				  "batch %d variant %d: parameters differ", batch, v);
			CHECK_MSG(pr[v] && pr[0] &&
				  memcmp(pr[v], pr[0], sizeof(float) * NROWS * 2) == 0,
				  "batch %d variant %d: predictions differ", batch, v);
		}
		/* training moved the parameters: the comparison is not vacuous */
		for (int v = 0; v < 3; v++) {
			free(par[v]);
			free(pr[v]);
		}
		config_release(&c);
	}
	free(p);
}

static void test_late_quarantine(void)
{
	struct run_config c;
	CHECK(load_config(&c, 8, 2) == 0);
	char *p = make_npy_set("late", NROWS, DIM);
	struct dataset d;
	size_t row = DIM * sizeof(float);
	CHECK(dataset_open(&d, &c, p, 1, 3 * row) == 0 && d.n == NROWS && !d.x[0]);
	char *gone = tpath("f/late-005.npy");
	CHECK(remove(gone) == 0);
	float *out = xmalloc(row);
	out[0] = 1;
	capture_begin();
	int rc1 = dataset_row(&d, 0, 5, out);
	int rc2 = dataset_row(&d, 0, 5, out);
	struct dataset_stats st;
	dataset_stats(&d, &st);
	/* training over it: the row reads as zeros, the run completes */
	float *par = NULL, *pr = NULL;
	size_t np = 0;
	int trc = fit_on(&c, &d, &par, &np, &pr);
	char *err = capture_end();
	CHECK(rc1 == -1 && rc2 == -1 && out[0] == 0 && out[DIM - 1] == 0);
	CHECK(st.late == 1);
	char *want = xasprintf("%s:7: column 'f': cannot load", p); /* row 5 is line 7 */
	CHECK_MSG(strstr(err, want) != NULL, "%s", err);
	CHECK(strstr(err, "quarantined after the load") != NULL);
	CHECK(trc == 0 && par && isfinite(par[0]));
	dataset_stats(&d, &st);
	CHECK(st.late == 1); /* counted once however often it is read */
	free(want);
	free(err);
	free(par);
	free(pr);
	free(out);
	free(gone);
	dataset_release(&d);
	free(p);
	config_release(&c);
}

/* ---- bounded memory ----------------------------------------------------------------- */


/* In a child (a fresh peak): load the manifest with cache_bytes, train and
 * evaluate the teacher; returns the growth of VmHWM in kB, -1 on failure. */
static long peak_growth_kb(struct run_config *c, const char *manifest, size_t cache_bytes)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		long before = peak_rss_kb(), grow = -1;
		struct dataset d;
		if (dataset_open(&d, c, manifest, 1, cache_bytes) == 0) {
			float *par = NULL, *pr = NULL;
			size_t np = 0;
			if (fit_on(c, &d, &par, &np, &pr) == 0)
				grow = peak_rss_kb() - before;
			free(par);
			free(pr);
			dataset_release(&d);
		}
		ssize_t w = write(fd[1], &grow, sizeof grow);
		_exit(w == sizeof grow ? 0 : 1);
	}
	close(fd[1]);
	long grow = -1;
	if (read(fd[0], &grow, sizeof grow) != sizeof grow)
		grow = -1;
	close(fd[0]);
	int status;
	waitpid(pid, &status, 0);
	return grow;
}

static void test_memory_bounded(void)
{
	/* 960 rows of 16K floats: 60 MB decoded, an 8 MB cache, batches of 16 */
	enum { N = 960, D = 16384, BATCH = 16 };
	struct run_config c;
	CHECK(config_hidden(&c, BATCH, 2, "[]") == 0); /* linear: the model is 0.5 MB */
	char *p = make_npy_set("big", N, D);
	double decoded_kb = (double)N * D * sizeof(float) / 1024;
	size_t cache = (size_t)8 << 20;
	/* the bound: the cache, two batch buffers (prefetch) and an evaluation
	   chunk's two, the model with its gradients and moments, and 16 MB for
	   the allocator and the decoder's temporaries */
	double bound_kb = (double)cache / 1024 + (2.0 * (BATCH + 1) + 2.0 * 32) * D * 4 / 1024 +
			  4.0 * D * 2 * 4 / 1024 + 16 * 1024;
	long lazy = peak_growth_kb(&c, p, cache);
	long resident = peak_growth_kb(&c, p, (size_t)1 << 30);
	CHECK(bound_kb < 0.75 * decoded_kb); /* the check below means something */
#ifdef __SANITIZE_ADDRESS__
	/* AddressSanitizer keeps freed memory in quarantine and shadows all of
	   it: peaks say nothing there; the plain build checks the bound */
	CHECK(lazy > 0 && resident > 0);
	(void)bound_kb;
	free(p);
	config_release(&c);
	return;
#endif
	printf("  memory: lazy peak +%ld kB, resident +%ld kB, bound %.0f kB, decoded %.0f kB\n",
	       lazy, resident, bound_kb, decoded_kb);
	CHECK_MSG(lazy > 0 && lazy < bound_kb, "lazy peak growth %ld kB, bound %.0f kB (decoded %.0f kB)",
		  lazy, bound_kb, decoded_kb);
	/* the same run resident holds the whole decoded set */
	CHECK_MSG(resident > decoded_kb, "resident peak growth %ld kB, decoded %.0f kB", resident,
		  decoded_kb);
	free(p);
	config_release(&c);
}

/* data.cache_mb and data.prefetch: defaults, values, strict checks */
static void test_config_keys(void)
{
	const char *head = "{\"name\": \"s\", \"data\": {\"labeled\": \"l.csv\", \"classes\": 2, "
			   "\"modalities\": {\"a\": {\"column\": \"f\", \"kind\": \"npy\"}}";
	const char *tail = "}, \"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			   "\"teacher\": {\"model\": \"m\"}}";
	struct { const char *data; int ok, cache_mb, prefetch; } cases[] = {
		{ "", 1, 0, 1 },
		{ ", \"cache_mb\": 64, \"prefetch\": false", 1, 64, 0 },
		{ ", \"cache_mb\": 0", 0, 0, 0 },
		{ ", \"cache_mb\": \"64\"", 0, 0, 0 },
		{ ", \"prefetch\": 1", 0, 0, 0 },
		{ ", \"cache_mb\": 1.5", 0, 0, 0 },
	};
	char *p = tpath("cfg.json");
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char *json = xasprintf("%s%s%s", head, cases[i].data, tail);
		struct run_config c;
		capture_begin();
		int rc = config_parse(&c, json, p);
		free(capture_end());
		CHECK_MSG((rc == 0) == cases[i].ok, "case %zu", i);
		if (rc == 0) {
			CHECK(c.cache_mb == cases[i].cache_mb && c.prefetch == cases[i].prefetch);
			CHECK(dataset_cache_bytes(&c) ==
			      (size_t)(c.cache_mb ? c.cache_mb : DATASET_CACHE_MB_DEFAULT) << 20);
			config_release(&c);
		}
		free(json);
	}
	free(p);
}

int main(void)
{
	tmp_make("mke-source");
	RUN(test_cache_lru);
	RUN(test_config_keys);
	RUN(test_lazy_rows_equal_eager);
	RUN(test_prefetch_same_training);
	RUN(test_late_quarantine);
	RUN(test_memory_bounded);
	tmp_clean();
	return test_summary();
}
