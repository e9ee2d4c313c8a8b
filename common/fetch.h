/*
 * fetch.h - fetch http://, https:// and file:// URLs into a content-addressed
 * cache (DESIGN.md "libcurl"; docs/remote-data.md).
 *
 * A manifest cell may be a URL. Before decoding, the manifest's URLs are
 * fetched as one batch: several transfers at once (curl multi interface),
 * retried with capped exponential backoff and jitter on connection errors,
 * timeouts, 5xx/408/429 answers and transfers cut short, resumed from where
 * they stopped with an HTTP Range request, and checked against an expected
 * sha256 when the manifest gives one. Any other scheme (s3://, ftp://, ...)
 * is refused.
 *
 * The cache (fetch_cache_dir()):
 *   <cache>/partial/<sha256 of the URL>.part   a download in progress
 *   <cache>/sha256/<sha256 of the content>     complete files, mode 0640
 *   <cache>/url/<sha256 of the URL>            symlink -> ../sha256/<hex>
 * so two URLs with the same bytes share one file, and a URL already fetched
 * costs no request. Messages never show credentials in a URL (user:pass@).
 */
#ifndef MKE_FETCH_H
#define MKE_FETCH_H

struct fetch_opts {
	const char *cache_dir;     /* NULL: fetch_cache_dir() */
	int max_parallel;          /* transfers at once (default 8) */
	int max_attempts;          /* tries per URL, first included (default 5) */
	int backoff_ms;            /* first retry delay (default 250), doubled each time */
	int backoff_max_ms;        /* cap on the delay (default 10000) */
	long connect_timeout_ms;   /* default 15000 */
	long low_speed_limit;      /* abort below this many bytes/s ... (default 1024) */
	long low_speed_time;       /* ... for this many seconds (default 30) */
	const char *progress;      /* non-NULL: show a meter (common/meter.h) with this
				      first word while the batch runs; NULL: silent */
};

/* What a batch did; counts over the URLs given (duplicates counted once). */
struct fetch_stats {
	int cached;                /* found in the cache: no request made */
	int downloaded;            /* fetched and stored */
	int failed;
	int retries;               /* attempts after a first one */
	int resumed;               /* attempts that continued a partial file (206) */
	int restarted;             /* Range asked for, whole file answered (200) */
};

void fetch_opts_default(struct fetch_opts *o);

/* The default cache directory: $MKE_CACHE, else $XDG_CACHE_HOME/mke, else
 * ~/.cache/mke. The caller owns the string. */
char *fetch_cache_dir(void);

/* 1 when s starts with "scheme://" (any scheme). */
int fetch_is_url(const char *s);
/* 1 when the scheme is one fetch supports (http, https, file). */
int fetch_supported(const char *url);
/* url without "user:pass@" in its authority, for messages. Caller owns it. */
char *fetch_redact(const char *url);

/*
 * Fetch n URLs. sha256 may be NULL, and so may any sha256[i]: a 64-hex digest
 * the content must have. On return out_paths[i] is the cached file
 * (<cache>/sha256/<hex>) or NULL, and errors[i] NULL or a message naming the
 * URL (credentials stripped) and what to do; the caller frees both with
 * free(). The same URL may appear several times. stats may be NULL. Returns
 * the number of URLs that failed.
 */
int fetch_many(const struct fetch_opts *o, const char *const *urls, const char *const *sha256,
	       int n, char **out_paths, char **errors, struct fetch_stats *stats);

#endif
