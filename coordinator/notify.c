/*
 * notify.c - see notify.h.
 */
#include "notify.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int notify_check_url(const char *opt, const char *url)
{
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		fprintf(stderr, "error: %s must be an http:// or https:// URL, not '%.40s'\n", opt, url);
		return -1;
	}
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			fprintf(stderr, "error: %s has a blank or a control character; percent-encode it (%%20)\n", opt);
			return -1;
		}
	return 0;
}

/* "http://host:port" of url, for messages: the path may carry a token. */
static void url_origin(const char *url, char *buf, size_t n)
{
	const char *sep = strstr(url, "://");
	const char *host = sep ? sep + 3 : url;
	size_t len = strcspn(host, "/?#");
	const char *at = memchr(host, '@', len); /* user:password@ stays out too */
	if (at) {
		len -= (size_t)(at + 1 - host);
		host = at + 1;
	}
	snprintf(buf, n, "%.*s%.*s", sep ? (int)(sep + 3 - url) : 0, url, (int)len, host);
}

/* Discard the answer's body. */
static size_t sink(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

int notify_post(const char *url, const char *body)
{
	char origin[256], err[CURL_ERROR_SIZE];
	url_origin(url, origin, sizeof origin);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		mke_warn("webhook %s: curl_global_init failed; not sent", origin);
		return -1;
	}
	CURL *h = curl_easy_init();
	if (!h) {
		mke_warn("webhook %s: curl_easy_init failed; not sent", origin);
		curl_global_cleanup();
		return -1;
	}
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip */
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* a redirected POST is not what was asked */
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)NOTIFY_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "mke-notify/1");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	int rc = -1;
	char last[CURL_ERROR_SIZE + 32] = "";
	for (int attempt = 1; attempt <= NOTIFY_ATTEMPTS; attempt++) {
		err[0] = '\0';
		CURLcode cc = curl_easy_perform(h);
		long code = 0;
		int retry = 1;
		if (cc == CURLE_OK) {
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
			if (code >= 200 && code < 300) {
				rc = 0;
				break;
			}
			snprintf(last, sizeof last, "HTTP %ld", code);
			retry = code >= 500 || code == 408 || code == 429;
		} else {
			snprintf(last, sizeof last, "%s", err[0] ? err : curl_easy_strerror(cc));
		}
		if (!retry || attempt == NOTIFY_ATTEMPTS)
			break;
		/* 1 s, 2 s, 4 s ... capped at 8 s, with up to 25% jitter */
		double wait = (double)(1 << (attempt - 1 < 3 ? attempt - 1 : 3));
		wait *= 1.0 + 0.25 * ((double)(rand() % 1000) / 1000.0);
		mke_info("webhook %s: attempt %d failed (%s); retrying in %.1fs", origin, attempt, last, wait);
		usleep((useconds_t)(wait * 1e6));
	}
	if (rc != 0)
		mke_warn("webhook %s: not delivered (%s); the run's result is in its database all the same",
			 origin, last);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	curl_global_cleanup();
	return rc;
}
