/*
 * importers.h - turn the native files of the paper's datasets into mke
 * manifests (DESIGN.md "Data", docs/importers.md):
 *
 *   VGGSound   vggsound.csv (youtube_id,start_seconds,label,split) + clips
 *              extracted as <id>_<start:06d>.wav and a frame folder
 *   AudioSet   segment CSVs (# comments, YTID, start, end, "mid,mid")
 *              + class_labels_indices.csv (index,mid,display_name)
 *   NYU V2     nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5) -> rgb/, depth/,
 *              label/ PNGs with the 894 -> 40 class mapping of
 *              classMapping40.mat and the 795/654 split of splits.mat
 *   RAVDESS    MM-VV-EE-II-SS-RR-AA.ext file names: audio-only WAVs paired
 *              with a face image of the same recording
 *
 * The dataset CSVs are not RFC 4180 in the way manifest.c wants them
 * (AudioSet puts a space after every comma and starts with # lines), so this
 * module has its own small reader for those dialects. Rows that cannot be
 * used (missing media, unknown class, malformed) are reported on stderr as
 * "file:line: reason", counted and skipped; only an unusable input as a
 * whole fails an import. Manifests are written atomically; cells that are
 * paths are relative to the manifest's directory.
 *
 * Library code: every function returns 0 or -1 after reporting with
 * mke_error(); nothing exits.
 */
#ifndef MKE_IMPORTERS_H
#define MKE_IMPORTERS_H

#include <stddef.h>
#include <stdint.h>

/* ---- the dataset-CSV reader ------------------------------------------------ */

/*
 * Fields separated by commas, optionally "quoted" with "" escapes and line
 * breaks inside quotes; CRLF or LF line ends; blank lines skipped. With
 * comments set, a record that starts with '#' is skipped to the end of its
 * line. With skip_space set, spaces and tabs around unquoted fields and
 * before an opening quote are dropped (AudioSet's `, "`).
 */
struct csv_in {
	const char *path;  /* names the file in reports */
	const char *s;
	size_t n, i;
	int line;          /* line at s[i] */
	int comments, skip_space;
	int rec_line;      /* first line of the record last returned */
	int nf;            /* fields of the record last returned */
	char **f;          /* nf NUL-terminated fields, owned, valid until the next call */
	int capf;
};

/* text (len bytes, need not be NUL-terminated) is borrowed for the reader's
 * lifetime. */
void csv_in_init(struct csv_in *r, const char *path, const char *text, size_t len, int comments,
		 int skip_space);
/* 1: a record in r->f / r->nf; 0: end of input; -1: a malformed record,
 * already reported as path:line, skipped (the next call goes on after it). */
int csv_in_next(struct csv_in *r);
void csv_in_release(struct csv_in *r);

/* ---- a growable string, and CSV cells ------------------------------------ */

struct sbuf {
	char *p;           /* NUL-terminated, owned */
	size_t n, cap;
};
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
/* s as one RFC 4180 cell: quoted when it holds , " CR or LF. */
void sbuf_csv(struct sbuf *b, const char *s);
void sbuf_release(struct sbuf *b);

/* ---- paths ----------------------------------------------------------------- */

/* target (which must exist) relative to the directory dir (which must
 * exist), e.g. "media" or "../clips"; "." when they are the same; the
 * absolute path when either cannot be resolved. Caller frees. */
char *path_relative(const char *dir, const char *target);

/* ---- PNG writing (libpng) -------------------------------------------------- */

/* Write an 8- or 16-bit (bits) gray (channels 1) or RGB (3) PNG of w x h
 * row-major interleaved samples (uint8_t or uint16_t, host order) to path. */
int png_write(const char *path, int w, int h, int channels, int bits, const void *px);

/* ---- importers --------------------------------------------------------------- */

struct import_stats {
	int rows;          /* data rows read from the native file(s) */
	int written;       /* rows in the manifest */
	int missing;       /* rows skipped: media not found */
	int bad;           /* rows skipped: malformed, unknown class, ... */
	int classes;       /* classes in the class list */
};

/* At most this many file:line reports per import (then a count); 0 = all. */
extern int import_max_reports;

/* VGGSound: csv_path (vggsound.csv), clips under media_dir, manifest to out
 * (id,label,split,audio[,frames]) and the sorted class names to
 * <out>.classes.txt. */
int import_vggsound(const char *csv_path, const char *media_dir, const char *out,
		    struct import_stats *st);

/* AudioSet: one segments CSV, class_labels_indices.csv, clips under
 * media_dir; label cells are ';'-separated class indices (ascending).
 * split names the rows' split; NULL: "test" when the file name holds
 * "eval", else "train". Class names go to <out>.classes.txt. */
int import_audioset(const char *segments, const char *labels_csv, const char *media_dir,
		    const char *split, const char *out, struct import_stats *st);

/* NYU Depth V2: labeled .mat (HDF5) -> out_dir/{rgb,depth,label}/NNNN.png and
 * out_dir/manifest.csv (id,split,rgb,depth,labelmap), class names in
 * manifest.csv.classes.txt. splits_mat (trainNdxs/testNdxs, MATLAB v4/v5/
 * v7.3) may be NULL: then nyu_default_is_test. class_map is the 894 -> 40
 * mapping (nyu_class_map_load); NULL writes the raw 894-class ids. */
int import_nyuv2(const char *mat, const char *splits_mat, const char *class_map,
		 const char *out_dir, struct import_stats *st);

/* RAVDESS: every audio-only WAV under dir (recursively) paired with its face
 * (docs/importers.md); manifest id,label,split,face,audio to out. */
int import_ravdess(const char *dir, const char *out, struct import_stats *st);

/* ---- pieces, exposed for tests ------------------------------------------------ */

/* The seven fields of a RAVDESS name "03-01-05-01-02-01-12.wav":
 * modality, vocal channel, emotion, intensity, statement, repetition, actor.
 * 0 when name (a base name) is one with every field in range, else -1
 * (not reported: callers decide). */
enum { RAV_MODALITY, RAV_VOCAL, RAV_EMOTION, RAV_INTENSITY, RAV_STATEMENT, RAV_REPETITION,
       RAV_ACTOR, RAV_NFIELDS };
int ravdess_parse(const char *name, int f[RAV_NFIELDS]);
/* "train" for actors 1-20, "test" for 21-24. */
const char *ravdess_split(int actor);

#define NYU_CLASSES_RAW 894
#define NYU_CLASSES 40
/* The NYU-40 class names; [0] is "unlabeled". */
extern const char *const nyu40_names[NYU_CLASSES + 1];

/* NYU class id (0..894) -> the class written to the label PNGs. */
struct nyu_class_map {
	int nclasses;                       /* 40, or 894 for raw labels */
	uint16_t map[NYU_CLASSES_RAW + 1];  /* map[0] = 0: unlabeled, the ignore label */
	char *names[NYU_CLASSES_RAW + 1];   /* names[0..nclasses], owned */
};
/* Load the 894 -> 40 mapping from path: classMapping40.mat (a MATLAB file,
 * any version, with mapClass 1x894 of values 1..40 and className 1x40 cell;
 * told apart by its MATLAB header or a .mat name) or a CSV of
 * `nyu_id,class40[,name]` rows (every id 1..894 once). Names the mapping
 * does not give are nyu40_names. */
int nyu_class_map_load(struct nyu_class_map *cm, const char *path);
void nyu_class_map_release(struct nyu_class_map *cm);
/* Without splits.mat: 1 when sample i of n is a test sample. Spreads
 * round(n * 654 / 1449) test samples evenly (exactly 654 of 1449). */
int nyu_default_is_test(int i, int n);

#endif
