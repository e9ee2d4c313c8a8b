/*
 * meter.h - progress of one long piece of work in a command (fetching a
 * manifest's URLs, decoding a manifest, pushing shards): a count done out of
 * a total, with rate and ETA.
 *
 *   terminal (stderr is a tty)  one live line redrawn in place, at most five
 *                               times a second (or every MKE_PROGRESS_INTERVAL
 *                               when shorter), taken off when the work ends:
 *                               fetch  [#######.............]  35%  7/20 files
 *                               12.4 MB  3.1 MB/s  4.0s  ETA 7.4s
 *   otherwise                   a plain line every MKE_PROGRESS_INTERVAL
 *                               seconds (default 10), none for work that ends
 *                               sooner: logs stay short
 *   mke_quiet                   nothing (--quiet, --json)
 *
 * The coordinator's run display (coordinator/progress.c) draws its live line
 * with the same pieces (meter_bar, fmt_duration).
 */
#ifndef MKE_METER_H
#define MKE_METER_H

#include <stddef.h>

struct meter {
	const char *what;    /* "fetch", "decode", "shard": the line's first word */
	const char *unit;    /* "files", "rows", "shards" */
	long done, total;    /* total <= 0: unknown */
	double bytes;        /* bytes moved so far (0: not shown) */
	double t0, last;     /* start and last output (now_seconds) */
	double interval;     /* plain lines: seconds between two */
	int tty, drawn, printed;
	int off;             /* mke_quiet when started: the meter prints nothing */
};

void meter_start(struct meter *m, const char *what, const char *unit, long total);
/* Record progress; draws the live line or a plain line when one is due. */
void meter_update(struct meter *m, long done, double bytes);
/* Take the live line off; a plain-line meter that printed ends with a last
 * line, so a log shows the work's end. */
void meter_end(struct meter *m);

/* "[#####...............]" for f in [0,1] in w columns + 2; "" when f < 0. */
void meter_bar(char *buf, size_t n, double f, int w);
/* "4.2s", "3m07s", "2h05m", "1d03h"; "-" when seconds < 0 or not a number. */
void fmt_duration(char *buf, size_t n, double seconds);
/* "812 B", "12.4 MB", "3.1 GB" (powers of 1000). */
void fmt_bytes(char *buf, size_t n, double bytes);

#endif
