/*
 * util.h - allocation wrappers, error reporting and small helpers shared by
 * every part of mke.
 *
 * Library code in common/ never calls exit(): it reports with mke_error()
 * (which prints "error: ..." to stderr and returns -1) and hands the status
 * back. The x*alloc wrappers are the one exception: running out of memory
 * aborts, which keeps call sites free of checks nobody can act on.
 */
#ifndef MKE_UTIL_H
#define MKE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define MKE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MKE_PRINTF(f, a)
#endif

/* Statement S for u = 0 .. U-1 (a constant U in scope), unrolled: the
 * independent chains of U groups run step by step in program order, so a
 * long dependent chain per group overlaps the others' (the SIMD kernels of
 * nn.c and rng.c). */
#define MKE_EACH(...)                                                      \
	do {                                                               \
		_Pragma("GCC unroll 4") for (int u = 0; u < U; u++) __VA_ARGS__; \
	} while (0)

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* n floats on a 32-byte boundary (whole AVX vectors never split a cache
 * line); aborts when out of memory, like xmalloc. Release with free(). */
float *xalloc_floats32(size_t n);
/* Layout of one allocation: the view of n floats at *off into base (NULL
 * when base is NULL, to size a layout first), *off advanced by n rounded up
 * to 8 floats so every view stays 32-byte aligned. */
float *carve_floats(float *base, size_t *off, size_t n);
/* xasprintf: formatted string; the caller owns it (free()). */
char *xasprintf(const char *fmt, ...) MKE_PRINTF(1, 2);

/* Print "error: <msg>" to stderr; returns -1 so that `return mke_error(...)` reads well. */
int mke_error(const char *fmt, ...) MKE_PRINTF(1, 2);
/* Print "warning: <msg>" to stderr. */
void mke_warn(const char *fmt, ...) MKE_PRINTF(1, 2);
/* Informational line to stderr unless mke_quiet is set. */
void mke_info(const char *fmt, ...) MKE_PRINTF(1, 2);
extern int mke_quiet;

/* This process's peak resident set in kB: VmHWM of /proc/self/status, else
 * getrusage's ru_maxrss; -1 when neither is known. */
long peak_rss_kb(void);

/* Monotonic clock in seconds. */
double now_seconds(void);
/* Wall clock in seconds since the epoch, with sub-second precision. */
double wall_seconds(void);

/* Read a whole file; *len gets its size. Returns NULL (and reports) on error.
 * The buffer is NUL-terminated (one byte past *len); the caller owns it. */
char *read_file(const char *path, size_t *len);

/* Write len bytes to path atomically: a temp file in the same directory,
 * fsync, rename. mode is the file's permission bits (e.g. 0640). */
int write_file_atomic(const char *path, const void *data, size_t len, int mode);

/* mkdir -p with the given mode. */
int mkdir_p(const char *path, int mode);

/* Directory part of path (caller owns); "." when there is none. */
char *path_dirname(const char *path);
/* Join dir and rel unless rel is absolute (caller owns). */
char *path_join(const char *dir, const char *rel);

/* sha256 of a buffer as 64 lowercase hex chars + NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);

/* Whether to take AVX2/FMA code paths: the CPU has them and MKE_NO_AVX2 is
 * not set (the switch lets the tests run the plain paths on any machine).
 * Decided once; the race of two first calls writes the same value. */
int cpu_avx2(void);

/* Strict number parsing: the whole string must be consumed. 0 on success. */
int parse_long(const char *s, long *out);
int parse_double(const char *s, double *out);

#endif
