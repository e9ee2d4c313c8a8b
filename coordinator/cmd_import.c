/*
 * cmd_import.c - `mke import KIND ...`: turn a dataset's native files into
 * an mke manifest (common/importers.h, docs/importers.md). One handler for
 * the four kinds; each kind's options are checked up front.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "importers.h"
#include "util.h"

struct import_opts {
	const char *kind, *input, *media, *labels, *split, *splits, *class_map, *classes, *out;
};

/* nyuv2's classes: --class-map FILE (the 40-class task, --classes 40 or no
 * --classes) or --classes 894 (raw NYU ids, no mapping); nothing is guessed. */
static int nyu_classes(const struct import_opts *o)
{
	int c40 = !o->classes || strcmp(o->classes, "40") == 0;
	if (!c40 && strcmp(o->classes, "894") != 0) {
		fprintf(stderr, "error: --classes is 40 (with --class-map) or 894 (raw NYU ids)\n");
		return -1;
	}
	if (!c40 && o->class_map) {
		fprintf(stderr, "error: --classes 894 keeps the raw NYU class ids; it takes no "
				"--class-map\n");
		return -1;
	}
	if (c40 && !o->class_map) {
		fprintf(stderr,
			"error: nyuv2's 40-class task needs the official 894 -> 40 mapping: give "
			"--class-map classMapping40.mat (mapClass and className, Gupta et al., CVPR "
			"2013; from the nyuv2-meta-data repository, "
			"https://github.com/ankurhanda/nyuv2-meta-data; docs/importers.md) or a CSV "
			"of nyu_id,class40[,name] rows, or --classes 894 for the raw NYU class ids\n");
		return -1;
	}
	return 0;
}

static int parse(int argc, char **argv, struct import_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "-o") == 0 && has)
			o->out = argv[++i];
		else if (strcmp(a, "--media") == 0 && has)
			o->media = argv[++i];
		else if (strcmp(a, "--labels") == 0 && has)
			o->labels = argv[++i];
		else if (strcmp(a, "--split") == 0 && has)
			o->split = argv[++i];
		else if (strcmp(a, "--class-map") == 0 && has)
			o->class_map = argv[++i];
		else if (strcmp(a, "--classes") == 0 && has)
			o->classes = argv[++i];
		else if (strcmp(a, "--mapping") == 0) {
			fprintf(stderr, "error: --mapping is now --class-map (classMapping40.mat or "
					"a nyu_id,class40[,name] CSV)\n");
			return -1;
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			return -1;
		} else if (!o->kind) {
			o->kind = a;
		} else if (!o->input) {
			o->input = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return -1;
		}
	}
	if (!o->kind || !o->input || !o->out) {
		fprintf(stderr, "error: KIND, its input and -o OUT are required\n");
		return -1;
	}
	int vgg = strcmp(o->kind, "vggsound") == 0, as = strcmp(o->kind, "audioset") == 0;
	int nyu = strcmp(o->kind, "nyuv2") == 0, rav = strcmp(o->kind, "ravdess") == 0;
	if (!vgg && !as && !nyu && !rav) {
		fprintf(stderr, "error: unknown dataset '%s' (vggsound, audioset, nyuv2, ravdess)\n",
			o->kind);
		return -1;
	}
	if ((vgg || as) && !o->media) {
		fprintf(stderr, "error: %s needs --media DIR (the extracted clips)\n", o->kind);
		return -1;
	}
	if (as && !o->labels) {
		fprintf(stderr, "error: audioset needs --labels class_labels_indices.csv\n");
		return -1;
	}
	if (o->media && (nyu || rav)) {
		fprintf(stderr, "error: --media is for vggsound and audioset\n");
		return -1;
	}
	if (o->labels && !as) {
		fprintf(stderr, "error: --labels is for audioset\n");
		return -1;
	}
	if (o->split && !as && !nyu) {
		fprintf(stderr, "error: --split is for audioset (a split name) and nyuv2 "
				"(splits.mat)\n");
		return -1;
	}
	if ((o->class_map || o->classes) && !nyu) {
		fprintf(stderr, "error: --class-map and --classes are for nyuv2\n");
		return -1;
	}
	if (nyu) {
		o->splits = o->split;
		o->split = NULL;
		return nyu_classes(o);
	}
	return 0;
}

int cmd_import(int argc, char **argv)
{
	struct import_opts o;
	if (parse(argc, argv, &o) != 0) {
		cmd_usage("import", 1);
		return 2;
	}
	struct import_stats st;
	int rc;
	if (strcmp(o.kind, "vggsound") == 0)
		rc = import_vggsound(o.input, o.media, o.out, &st);
	else if (strcmp(o.kind, "audioset") == 0)
		rc = import_audioset(o.input, o.labels, o.media, o.split, o.out, &st);
	else if (strcmp(o.kind, "nyuv2") == 0)
		rc = import_nyuv2(o.input, o.splits, o.class_map, o.out, &st);
	else
		rc = import_ravdess(o.input, o.out, &st);
	if (rc != 0)
		return 1;
	printf("%s: %d rows read, %d written, %d without media, %d bad; %d classes\n", o.out,
	       st.rows, st.written, st.missing, st.bad, st.classes);
	return 0;
}
