/*
 * test.h - the unit-test harness. A test file defines functions
 *     static void test_foo(void) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 * and a main:
 *     int main(void) { RUN(test_foo); RUN(test_bar); return test_summary(); }
 * Every RUN prints "PASS name" or "FAIL name" (after the failed checks with
 * file:line); tests/run.sh counts those lines. A test passes only if it made
 * at least one check and none failed.
 */
#ifndef MKE_TEST_H
#define MKE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int test_checks, test_failures, test_passed, test_failed;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		test_checks++;                                                        \
		if (!(cond)) {                                                        \
			test_failures++;                                              \
			fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__,       \
				__LINE__, #cond);                                     \
		}                                                                     \
	} while (0)

#define CHECK_MSG(cond, ...)                                                          \
	do {                                                                          \
		test_checks++;                                                        \
		if (!(cond)) {                                                        \
			test_failures++;                                              \
			fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__,       \
				__LINE__, #cond);                                     \
			fprintf(stderr, __VA_ARGS__);                                 \
			fputc('\n', stderr);                                          \
		}                                                                     \
	} while (0)

/* |a-b| <= tol, or relative: |a-b| <= tol * max(|a|,|b|) */
#define CHECK_NEAR(a, b, tol)                                                         \
	CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)",  \
		  (double)(a), (double)(b), (double)(tol))
#define CHECK_REL(a, b, tol)                                                          \
	CHECK_MSG(fabs((double)(a) - (double)(b)) <=                                  \
			  (tol) * fmax(1e-12, fmax(fabs((double)(a)), fabs((double)(b)))), \
		  "%.9g vs %.9g (rel tol %g)", (double)(a), (double)(b), (double)(tol))

#define RUN(fn)                                                                       \
	do {                                                                          \
		int c0 = test_checks, f0 = test_failures;                             \
		fn();                                                                 \
		if (test_failures == f0 && test_checks > c0) {                        \
			test_passed++;                                                \
			printf("PASS %s\n", #fn);                                     \
		} else {                                                              \
			test_failed++;                                                \
			printf("FAIL %s%s\n", #fn,                                    \
			       test_checks == c0 ? " (made no check)" : "");          \
		}                                                                     \
		fflush(stdout);                                                       \
	} while (0)

static inline int test_summary(void)
{
	return test_failed ? 1 : 0;
}

/* Directory of committed fixtures: $MKE_FIXTURES or tests/fixtures. */
static inline const char *test_fixtures(void)
{
	const char *d = getenv("MKE_FIXTURES");
	return d ? d : "tests/fixtures";
}

/* stderr capture, to check what an error message says: everything written to
 * fd 2 between capture_begin() and capture_end() is returned by the latter
 * (the caller frees it). */
static int cap_saved = -1;
static FILE *cap_file;

static inline void capture_begin(void)
{
	fflush(stderr);
	cap_file = tmpfile();
	cap_saved = dup(2);
	dup2(fileno(cap_file), 2);
}

static inline char *capture_end(void)
{
	fflush(stderr);
	dup2(cap_saved, 2);
	close(cap_saved);
	long n = ftell(cap_file);
	size_t len = (size_t)(n > 0 ? n : 0);
	char *s = malloc(len + 1);
	if (!s)
		abort();
	fseek(cap_file, 0, SEEK_SET);
	size_t got = fread(s, 1, len, cap_file);
	s[got] = '\0';
	fclose(cap_file);
	return s;
}

#endif
