/*
 * meter.c - see meter.h.
 */
#include "meter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#define REDRAW_S 0.2

void meter_bar(char *buf, size_t n, double f, int w)
{
	if (n == 0)
		return;
	buf[0] = '\0';
	if (f < 0 || n < (size_t)w + 3)
		return;
	if (f > 1)
		f = 1;
	int full = (int)(f * w + 0.5);
	buf[0] = '[';
	for (int i = 0; i < w; i++)
		buf[1 + i] = i < full ? '#' : '.';
	buf[w + 1] = ']';
	buf[w + 2] = '\0';
}

void fmt_duration(char *buf, size_t n, double s)
{
	if (!(s >= 0)) {
		snprintf(buf, n, "-");
		return;
	}
	long t = (long)s;
	if (s < 60)
		snprintf(buf, n, "%.1fs", s);
	else if (t < 3600)
		snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else
		snprintf(buf, n, "%ldd%02ldh", t / 86400, t / 3600 % 24);
}

void fmt_bytes(char *buf, size_t n, double b)
{
	static const char *unit[] = {"kB", "MB", "GB", "TB"};
	if (b < 1000) {
		snprintf(buf, n, "%.0f B", b);
		return;
	}
	int u = 0;
	b /= 1000;
	while (b >= 1000 && u < 3) {
		b /= 1000;
		u++;
	}
	snprintf(buf, n, "%.1f %s", b, unit[u]);
}

void meter_start(struct meter *m, const char *what, const char *unit, long total)
{
	m->what = what;
	m->unit = unit;
	m->done = 0;
	m->total = total;
	m->bytes = 0;
	m->t0 = m->last = now_seconds();
	m->off = mke_quiet;
	m->tty = !m->off && isatty(STDERR_FILENO);
	m->drawn = m->printed = 0;
	m->interval = 10.0;
	const char *env = getenv("MKE_PROGRESS_INTERVAL");
	if (env && *env && atof(env) > 0)
		m->interval = atof(env);
}

/* Write the meter's line: in place on a terminal, else as a log line. */
static void meter_draw(struct meter *m, double now)
{
	double el = now - m->t0;
	double f = m->total > 0 ? (double)m->done / (double)m->total : -1;
	double left = f > 0 && el >= 0.5 ? el * (1 - f) / f : -1;
	char bar[32], t_el[32], t_left[32], by[32] = "", rate[48] = "";
	meter_bar(bar, sizeof bar, f, 20);
	fmt_duration(t_el, sizeof t_el, el);
	fmt_duration(t_left, sizeof t_left, left);
	if (m->bytes > 0) {
		char r[32];
		fmt_bytes(by, sizeof by, m->bytes);
		fmt_bytes(r, sizeof r, el > 0 ? m->bytes / el : 0);
		snprintf(rate, sizeof rate, "%s/s", r);
	} else if (el > 0 && m->done > 0) {
		double r = (double)m->done / el;
		snprintf(rate, sizeof rate, r >= 100 ? "%.0f %s/s" : "%.1f %s/s", r, m->unit);
	}
	char count[64];
	if (m->total > 0)
		snprintf(count, sizeof count, "%ld/%ld %s", m->done, m->total, m->unit);
	else
		snprintf(count, sizeof count, "%ld %s", m->done, m->unit);
	if (m->tty) {
		fprintf(stderr, "\r\033[K%-6s %s", m->what, bar);
		if (f >= 0)
			fprintf(stderr, " %3d%%", (int)(f * 100));
		fprintf(stderr, "  %s%s%s%s%s  %s", count, by[0] ? "  " : "", by, rate[0] ? "  " : "",
			rate, t_el);
		if (left >= 0)
			fprintf(stderr, "  ETA %s", t_left);
		fflush(stderr);
		m->drawn = 1;
	} else {
		/* fetch: 35% (7/20 files, 12.4 MB, 3.1 MB/s), 4.0s, ETA 7.4s */
		char pct[16] = "";
		if (f >= 0)
			snprintf(pct, sizeof pct, " %d%%", (int)(f * 100));
		fprintf(stderr, "%s:%s (%s%s%s%s%s), %s%s%s\n", m->what, pct, count, by[0] ? ", " : "", by,
			rate[0] ? ", " : "", rate, t_el, left >= 0 ? ", ETA " : "", left >= 0 ? t_left : "");
		m->printed = 1;
	}
	m->last = now;
}

void meter_update(struct meter *m, long done, double bytes)
{
	m->done = done;
	m->bytes = bytes;
	if (m->off)
		return;
	double now = now_seconds();
	if (now - m->last >= (m->tty && m->interval > REDRAW_S ? REDRAW_S : m->interval))
		meter_draw(m, now);
}

void meter_end(struct meter *m)
{
	if (m->off)
		return;
	if (m->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		m->drawn = 0;
	} else if (m->printed) {
		meter_draw(m, now_seconds());
	}
}
