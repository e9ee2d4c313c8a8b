/*
 * cmd_experiment.c - `mke experiment CONFIG`: the in-process MKE run and its
 * table (mean ± std per setting and variant), as text or CSV.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cmd.h"
#include "config.h"
#include "experiment.h"
#include "util.h"

static void print_table(FILE *out, const struct run_config *c, const struct exp_result *r)
{
	int S = r->nseeds, V = r->nvariants;
	fprintf(out, "%-18s %14s", "setting", "teacher");
	for (int v = 0; v < V; v++)
		fprintf(out, " %16s", variant_name(c->variants[v].kind));
	fputc('\n', out);
	for (int g = 0; g < r->ngrid; g++) {
		fprintf(out, "%-18s %14.2f", c->grid[g].name, 100 * r->teacher_acc);
		for (int v = 0; v < V; v++) {
			double mu, sd;
			mean_std(r->acc + ((size_t)g * V + v) * S, S, 0, &mu, &sd, NULL);
			fprintf(out, "    %6.2f ± %4.2f", 100 * mu, 100 * sd);
		}
		fputc('\n', out);
	}
	double mu, sd;
	mean_std(r->teacher_seed_acc, S, 0, &mu, &sd, NULL);
	fprintf(out, "\nteacher (seed %llu): %.2f%%; teacher over %d seeds: %.2f ± %.2f%%\n",
		(unsigned long long)c->teacher_seed, 100 * r->teacher_acc, S, 100 * mu, 100 * sd);
	if (r->pseudo_acc >= 0) {
		fprintf(out, "pseudo-label accuracy: %.2f%%\n", 100 * r->pseudo_acc);
		fprintf(out, "rectification (wrong pseudo-labels the student gets right), mean over seeds:\n");
		fprintf(out, "%-18s", "setting");
		for (int v = 0; v < V; v++)
			fprintf(out, " %16s", variant_name(c->variants[v].kind));
		fputc('\n', out);
		for (int g = 0; g < r->ngrid; g++) {
			fprintf(out, "%-18s", c->grid[g].name);
			for (int v = 0; v < V; v++) {
				int n;
				mean_std(r->rect + ((size_t)g * V + v) * S, S, 1, &mu, &sd, &n);
				if (n)
					fprintf(out, " %15.2f%%", 100 * mu);
				else
					fprintf(out, " %16s", "-");
			}
			fputc('\n', out);
		}
	}
	fprintf(out, "training time: %.2f s\n", r->seconds);
}

/* RFC 4180: quote a cell when it holds a comma, quote or newline. */
static void csv_cell(FILE *out, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void csv_row(FILE *out, const char *setting, const char *variant, double mean, double std, int n)
{
	csv_cell(out, setting);
	fputc(',', out);
	csv_cell(out, variant);
	fprintf(out, ",%.4f,%.4f,%d\r\n", mean, std, n);
}

static void print_csv(FILE *out, const struct run_config *c, const struct exp_result *r)
{
	int S = r->nseeds, V = r->nvariants;
	double mu, sd;
	int n;
	fputs("setting,variant,mean,std,n\r\n", out);
	for (int g = 0; g < r->ngrid; g++) {
		csv_row(out, c->grid[g].name, "teacher", 100 * r->teacher_acc, 0.0, 1);
		for (int v = 0; v < V; v++) {
			mean_std(r->acc + ((size_t)g * V + v) * S, S, 0, &mu, &sd, &n);
			csv_row(out, c->grid[g].name, variant_name(c->variants[v].kind), 100 * mu, 100 * sd, n);
		}
		for (int v = 0; v < V && r->pseudo_acc >= 0; v++) {
			mean_std(r->rect + ((size_t)g * V + v) * S, S, 1, &mu, &sd, &n);
			char *name = xasprintf("%s.rectification", variant_name(c->variants[v].kind));
			csv_row(out, c->grid[g].name, name, 100 * mu, 100 * sd, n);
			free(name);
		}
	}
	mean_std(r->teacher_seed_acc, S, 0, &mu, &sd, &n);
	csv_row(out, "all", "teacher_over_seeds", 100 * mu, 100 * sd, n);
	if (r->pseudo_acc >= 0)
		csv_row(out, "all", "pseudo_label_accuracy", 100 * r->pseudo_acc, 0.0, 1);
}

int cmd_experiment(int argc, char **argv)
{
	const char *config = NULL, *format = "table", *outpath = NULL;
	int threads = 0;
	/* one process, one BLAS thread (as every worker rank): its small
	 * matrices gain nothing from threads that spin; OPENBLAS_NUM_THREADS
	 * overrides, and `mke run --ranks N` is how to use more cores */
	if (!getenv("OPENBLAS_NUM_THREADS"))
		openblas_set_num_threads(1);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			format = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			outpath = argv[++i];
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 256) {
				fprintf(stderr, "error: --threads takes 1 to 256, not '%s'\n", argv[i]);
				return 2;
			}
			threads = (int)v;
		} else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
			mke_quiet = 1;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "error: unknown option '%s'\n", argv[i]);
			cmd_usage("experiment", 1);
			return 2;
		} else if (!config) {
			config = argv[i];
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!config) {
		cmd_usage("experiment", 1);
		return 2;
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "csv") != 0) {
		fprintf(stderr, "error: --format must be 'table' or 'csv', not '%s'\n", format);
		return 2;
	}
	struct run_config c;
	if (config_load(&c, config) != 0)
		return 1;
	if (threads)
		c.threads = threads; /* over the config's "threads" */
	struct exp_result r;
	int rc = experiment_run(&c, &r, !mke_quiet);
	if (rc == 0) {
		FILE *out = stdout;
		if (outpath && !(out = fopen(outpath, "w"))) {
			mke_error("cannot write '%s'", outpath);
			rc = -1;
		} else {
			if (strcmp(format, "csv") == 0)
				print_csv(out, &c, &r);
			else
				print_table(out, &c, &r);
			if (out != stdout)
				fclose(out);
		}
	}
	exp_result_release(&r);
	config_release(&c);
	return rc == 0 ? 0 : 1;
}
