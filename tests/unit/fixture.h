/*
 * fixture.h - the reader of the PyTorch reference dumps the unit tests
 * compare against (tests/fixtures/gen_*.py write them): a first line
 * "mke-fixture 1", '#' comment lines, then one tensor per line,
 * "<case>/<name> <count> <values...>".
 */
#ifndef MKE_TEST_FIXTURE_H
#define MKE_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct fx_tensor {
	char *name;
	size_t n;
	float *v;
};

struct fixture {
	int n, cap;
	struct fx_tensor *t;
	char *buf;
};

/* 0, or -1 with a message; release with fixture_release either way. */
static inline int fixture_load(struct fixture *f, const char *path)
{
	size_t len;
	memset(f, 0, sizeof(*f));
	f->buf = read_file(path, &len);
	if (!f->buf)
		return -1;
	char *save = NULL;
	char *line = strtok_r(f->buf, "\n", &save);
	if (!line || strcmp(line, "mke-fixture 1") != 0)
		return mke_error("fixture '%s': missing header 'mke-fixture 1'", path);
	while ((line = strtok_r(NULL, "\n", &save))) {
		if (line[0] == '#')
			continue;
		if (f->n == f->cap) {
			f->cap = f->cap ? 2 * f->cap : 64;
			f->t = xrealloc(f->t, (size_t)f->cap * sizeof(*f->t));
		}
		struct fx_tensor *t = &f->t[f->n++];
		memset(t, 0, sizeof(*t));
		char *p = strchr(line, ' ');
		if (!p)
			return mke_error("fixture '%s': line without values", path);
		*p++ = '\0';
		t->name = line;
		char *end;
		t->n = strtoul(p, &end, 10);
		t->v = xmalloc((t->n ? t->n : 1) * sizeof(float));
		for (size_t i = 0; i < t->n; i++) {
			p = end;
			t->v[i] = strtof(p, &end);
			if (end == p)
				return mke_error("fixture '%s': tensor '%s' is short", path, t->name);
		}
	}
	return 0;
}

static inline void fixture_release(struct fixture *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->t[i].v);
	free(f->t);
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

#endif
