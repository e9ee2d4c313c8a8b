/*
 * bench_time.h - the timing helpers of the benchmarks (the C programs of tests/bench):
 * a clock in seconds and the median of a few timings.
 *
 * bench_now() is wall time (CLOCK_MONOTONIC), or the process's CPU time
 * when the environment has MKE_BENCH_CLOCK=cpu: on a machine shared with
 * other jobs a one-thread figure in CPU time does not count the time the
 * process waited for a core (tests/bench/cnn_torch.py reads the same
 * variable, so both sides of a ratio use the same clock).
 */
#ifndef MKE_BENCH_TIME_H
#define MKE_BENCH_TIME_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
	static int cpu = -1;
	if (cpu < 0) {
		const char *e = getenv("MKE_BENCH_CLOCK");
		cpu = e && strcmp(e, "cpu") == 0;
	}
	struct timespec ts;
	clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* sorts v */
static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
