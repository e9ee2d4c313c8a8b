/*
 * cmd_gen.c - `mke gen KIND -o DIR [--n N] [--seed S]`: write a small
 * synthetic dataset in the native format of one of the paper's datasets
 * (common/gen.h, docs/importers.md "Generators").
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "gen.h"
#include "util.h"

int cmd_gen(int argc, char **argv)
{
	const char *kind = NULL, *out = NULL;
	long n = 0, seed = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "-o") == 0 && has) {
			out = argv[++i];
		} else if (strcmp(a, "--n") == 0 && has) {
			if (parse_long(argv[++i], &n) != 0 || n < 1 || n > 100000) {
				fprintf(stderr, "error: --n must be a number from 1 to 100000, not '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (strcmp(a, "--seed") == 0 && has) {
			if (parse_long(argv[++i], &seed) != 0 || seed < 0) {
				fprintf(stderr, "error: --seed must be a number >= 0, not '%s'\n", argv[i]);
				return 2;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage("gen", 1);
			return 2;
		} else if (!kind) {
			kind = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			cmd_usage("gen", 1);
			return 2;
		}
	}
	if (!kind || !out) {
		fprintf(stderr, "error: KIND and -o DIR are required\n");
		cmd_usage("gen", 1);
		return 2;
	}
	if (gen_dataset(kind, out, (int)n, (uint64_t)seed) != 0)
		return 1;
	printf("%s: %s dataset written\n", out, kind);
	return 0;
}
