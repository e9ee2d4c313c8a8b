/*
 * notify.h - the run's webhook: when a run ends (done, failed or cancelled)
 * `mke run --notify URL` (or $MKE_NOTIFY_URL) POSTs the run's summary as
 * JSON (progress.h's run_summary plus "event": "run_end") with libcurl.
 *
 * A webhook never fails the run: each attempt has a timeout, a failed
 * attempt (no connection, a timeout, HTTP 5xx, 408 or 429) is retried with
 * backoff, any other 4xx is not, and the outcome is a warning at most.
 * At-most-once per attempt, at-least-once overall: a receiver that timed
 * out but did get the body may see it twice (the body's "run" and
 * "ended_ms" identify it).
 */
#ifndef MKE_NOTIFY_H
#define MKE_NOTIFY_H

#define NOTIFY_ATTEMPTS 3       /* tries in all */
#define NOTIFY_TIMEOUT_S 10     /* per try, connection included */

/* 0 when url is an http:// or https:// URL without blanks or control
 * characters; else -1 after saying why (the option's name in opt). */
int notify_check_url(const char *opt, const char *url);
/* POST body (JSON) to url; retries as above. Returns 0 on a 2xx answer,
 * -1 after a warning that names the host (never the whole URL, which may
 * hold a token). */
int notify_post(const char *url, const char *body);

#endif
