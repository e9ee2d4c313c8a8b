/*
 * manifest.h - dataset manifests (DESIGN.md "Data"): RFC 4180 CSV with a
 * header; `id` required, `label` and `split` optional, every other column a
 * modality whose cell is a path (relative to the manifest), a URL or inline
 * numbers.
 *
 * Bad rows (wrong column count, empty id, duplicate id, unknown label, cell
 * that does not decode, a path that leads outside the data) are reported as
 * "file:line: reason", counted and skipped, never silently dropped. Structural errors (no header, no id
 * column, unreadable file) fail the load.
 *
 * A dataset is a manifest decoded for a run: per modality either one float
 * matrix (resident) or a sample source that decodes rows on demand through a
 * bounded LRU cache (lazy), labels, and a stable 32-bit id per sample (FNV-1a
 * of the id string) that keys every random draw for that sample. Inline
 * modalities are always resident (they are the CSV itself); media and npy
 * modalities are resident when the decoded set fits data.cache_mb, else lazy
 * (docs/formats.md "Memory").
 */
#ifndef MKE_MANIFEST_H
#define MKE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct manifest_row {
	int line;          /* 1-based line number of the row's start in the file */
	char **cells;      /* ncols strings, owned: one allocation (free(cells) frees all) */
};

struct manifest {
	char *path;
	char *dir;         /* directory relative paths are resolved against */
	int ncols;
	char **cols;       /* header names */
	int id_col, label_col, split_col;   /* -1 when absent (id never absent) */
	int nrows;
	struct manifest_row *rows;
	int nbad;          /* rows reported and skipped */
};

/* Read and check a manifest. Bad rows are reported to stderr and counted in
 * m->nbad. Returns -1 only when the file as a whole is unusable (then *m is
 * left zeroed). *m need not be initialized; on success the caller releases it
 * with manifest_release(). */
int manifest_load(struct manifest *m, const char *path);
/* Parse from memory; `path` names it in messages and anchors relative paths. */
int manifest_parse(struct manifest *m, const char *text, size_t len, const char *path);
/* Check a manifest as manifest_load does (the same header errors, the same
 * bad-row reports, cap and summary line, the same counts) without keeping
 * its rows: only the ids, for duplicates. The file is mapped and its parsed
 * pages dropped as the pass goes, so memory is the ids (21 to 29 bytes a row
 * plus the id) and not the file (docs/scaling.md "Sharding a large
 * manifest"). *rows: the valid rows, *bad: the rows reported and skipped.
 * Returns -1 when the file as a whole is unusable. */
int manifest_count(const char *path, int *rows, int *bad);
int manifest_col(const struct manifest *m, const char *name);  /* -1 if absent */
void manifest_release(struct manifest *m);

/* At most this many "file:line: reason" lines per load (then a count of the
 * rest); 0 = no limit. Default 100. Every bad row is counted regardless. */
extern int manifest_max_reports;

struct dataset_src;  /* the lazy modalities' rows, decoder and cache (manifest.c) */

struct dataset {
	int n;
	int nmod;
	int dim[2];
	float *x[2];       /* (n, dim[k]) per modality, owned; NULL when modality k is
			      lazy: read its rows with dataset_row() */
	int *labels;       /* (n); -1 where the row has no label; NULL when no label column */
	int shape[2][4];   /* per modality (F, C, H, W) with F*C*H*W == dim[k]: F frames
			      (frames kind, else 1); image C x H x W; depth and labelmap 1 x H x W; audio
			      1 x 257 x T; inline / npy vectors 1 x 1 x 1 x dim (an npy of
			      2-4 dims keeps its trailing dims) */
	/* segmentation (c->task == TASK_SEGMENT): the config's target column */
	int label_h, label_w;  /* label map size (the target's height x width) */
	int *pixel_labels; /* (n, label_h*label_w) class ids in [0, classes), -1 = ignore
			      (the PNG's ignore_value, an empty cell: all -1) */
	/* multi-label (c->task == TASK_MULTILABEL): the label cell lists classes
	   separated by ';' */
	float *multi;      /* (n, classes) multi-hot 0/1; labels[i] is then the first class */
	int classes;       /* the config's class count (the width of multi) */
	uint32_t *ids;     /* (n) FNV-1a of the id strings */
	char **names;      /* (n) id strings, owned */
	int nquarantined;  /* rows whose cells did not decode */
	int nbad;          /* rows the CSV reader skipped (see struct manifest) */
	int *row;          /* (n) the source row each sample decodes from; NULL when resident */
	struct dataset_src *src;   /* NULL when every modality is resident */
	int prefetch;      /* data.prefetch: decode the next batch while this one computes */
};

/* FNV-1a 32-bit hash of s. */
uint32_t sample_id_hash(const char *s);

/* Decode a manifest's rows into a dataset using the config's modalities
 * (nmod of them), class names and task (docs/formats.md "Manifests"). Rows
 * that fail to decode are quarantined: reported as file:line: reason and
 * counted. Kinds: inline (whitespace-separated numbers), npy, image, depth,
 * audio and labelmap (paths, decoded by common/media.h with the modality's
 * height/width, channels, sample_rate and seconds; audio in .mp4/.m4a/.mkv/
 * .webm and video frames through common/av.h when the build has it), frames
 * (a folder of frames, a ';' list of them or a video: F = the modality's
 * frames sampled uniformly, F x 3 x H x W). shape[k] is filled for every
 * kind and must agree across rows. Path cells are relative to the manifest's
 * directory; an absolute path or one with ".." must resolve (realpath) under
 * the manifest's directory or c->data_root, unless MKE_ALLOW_OUTSIDE_PATHS=1
 * is set in the environment; a path outside quarantines the row. Cells may be
 * http://, https:// or file:// URLs: they are fetched first, in one batch,
 * into the cache (common/fetch.h, docs/remote-data.md; a failed fetch
 * quarantines the row). A dimension not fixed by the config is taken from
 * the first good row. Labels: empty -> -1, an integer in [0, classes) or a
 * class name; anything else quarantines the row. c->task == TASK_MULTILABEL:
 * the label cell is a ';' list of those, filling multi, and labels[i] is the
 * first class listed. c->task == TASK_SEGMENT: the c->target.column label
 * maps fill pixel_labels (ignore_value -> -1, v - first_class, -1 outside
 * [0, classes), counted and reported once per file) at c->target's size or
 * the first map's; a manifest without that column has pixel_labels NULL.
 * Returns -1 (and leaves *d zeroed) when the manifest is unusable or has no
 * usable row; on success the caller releases *d with dataset_release(). */
int dataset_load(struct dataset *d, const struct run_config *c, const char *manifest_path,
		 int nmod);
/* The same with an explicit cache budget in bytes instead of data.cache_mb:
 * every row is still decoded once to check it, and only what fits the budget
 * is kept (0: nothing; the shard phase counts rows this way). */
int dataset_open(struct dataset *d, const struct run_config *c, const char *manifest_path,
		 int nmod, size_t cache_bytes);
void dataset_release(struct dataset *d);

/* The cache budget data.cache_mb gives (MB; 0 in a zeroed config: the default). */
#define DATASET_CACHE_MB_DEFAULT 1024
size_t dataset_cache_bytes(const struct run_config *c);

/* Modality k of sample i into out (dim[k] floats): a copy of the resident
 * row, or the lazy row from the cache or decoded (and cached). Thread-safe
 * (a prefetch thread and the caller may read at once). A row that no longer
 * decodes (a file changed or vanished after the load) is quarantined: it is
 * reported once as file:line: reason, counted (dataset_stats' late), reads as
 * zeros from then on, and -1 is returned; never a crash. */
int dataset_row(const struct dataset *d, int k, int i, float *out);

/* Keep the samples whose keep[i] is nonzero, in order (the worker's student
 * drops rows without pseudo-labels). */
void dataset_subset(struct dataset *d, const unsigned char *keep);

struct dataset_stats {
	long hits, misses, evictions;  /* lazy rows served from the cache / decoded / dropped */
	long late;                     /* rows quarantined after the load */
	size_t cached, budget;         /* bytes the cache holds / may hold */
	int lazy;                      /* modalities read through the source */
};
void dataset_stats(const struct dataset *d, struct dataset_stats *s);

#endif
