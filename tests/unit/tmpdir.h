/*
 * tmpdir.h - a scratch directory for a unit test file: tmp_make(prefix)
 * creates /tmp/<prefix>-XXXXXX in `tmp`, tpath() names a file in it,
 * tmp_clean() removes the whole tree. The including file needs nftw
 * (_XOPEN_SOURCE 700 or _GNU_SOURCE before its first include).
 */
#ifndef MKE_TEST_TMPDIR_H
#define MKE_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "util.h"

static char tmp[64];

static inline int tmp_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static inline void tmp_make(const char *prefix)
{
	snprintf(tmp, sizeof tmp, "/tmp/%s-XXXXXX", prefix);
	if (!mkdtemp(tmp))
		abort();
}

static inline void tmp_clean(void)
{
	nftw(tmp, tmp_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmp/rel; the caller frees it */
static inline char *tpath(const char *rel)
{
	return xasprintf("%s/%s", tmp, rel);
}

#endif
