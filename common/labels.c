/*
 * labels.c - pseudo-label shard files (see labels.h). Owns the structured
 * .npy layout; plain numeric arrays are npy.c's.
 */
#include "labels.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char magic[] = "\x93NUMPY";

static char *header_text(int n, int classes, int idlen, size_t *hlen)
{
	char *dict = xasprintf("{'descr': [('id', 'S%d'), ('probs', '<f4', (%d,))], "
			       "'fortran_order': False, 'shape': (%d,), }",
			       idlen, classes, n);
	/* magic(6) + version(2) + len(2) + dict + pad + '\n', total multiple of 64 */
	size_t base = 10 + strlen(dict) + 1;
	size_t total = (base + 63) / 64 * 64;
	size_t dl = total - 10;
	char *h = xmalloc(dl + 1);
	size_t k = strlen(dict);
	memcpy(h, dict, k);
	memset(h + k, ' ', dl - k - 1);
	h[dl - 1] = '\n';
	h[dl] = '\0';
	free(dict);
	*hlen = dl;
	return h;
}

int labels_serialize(char *const *ids, const float *probs, int n, int classes, char **out, size_t *len)
{
	int idlen = 1;
	for (int i = 0; i < n; i++) {
		int l = (int)strlen(ids[i]);
		if (l > idlen)
			idlen = l;
	}
	size_t hlen;
	char *h = header_text(n, classes, idlen, &hlen);
	if (hlen > 65535) {
		free(h);
		return mke_error("pseudo-label header too long");
	}
	size_t rec = (size_t)idlen + 4 * (size_t)classes;
	size_t total = 10 + hlen + rec * (size_t)n;
	char *buf = xcalloc(total, 1);
	memcpy(buf, magic, 6);
	buf[6] = 1;
	buf[7] = 0;
	buf[8] = (char)(hlen & 0xff);
	buf[9] = (char)(hlen >> 8);
	memcpy(buf + 10, h, hlen);
	free(h);
	char *p = buf + 10 + hlen;
	for (int i = 0; i < n; i++) {
		memcpy(p, ids[i], strlen(ids[i]));
		p += idlen;
		for (int k = 0; k < classes; k++) {
			float f = probs[(size_t)i * classes + k];
			uint32_t u;
			memcpy(&u, &f, 4);
			unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
					      (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
			memcpy(p, b, 4);
			p += 4;
		}
	}
	*out = buf;
	*len = total;
	return 0;
}

int labels_write(const char *path, char *const *ids, const float *probs, int n, int classes,
		 char sha256_out[65])
{
	char *buf;
	size_t len;
	if (labels_serialize(ids, probs, n, classes, &buf, &len) != 0)
		return -1;
	int rc = write_file_atomic(path, buf, len, 0640);
	if (rc == 0 && sha256_out)
		sha256_hex(buf, len, sha256_out);
	free(buf);
	return rc;
}

int labels_read(struct label_shard *s, const char *path)
{
	memset(s, 0, sizeof *s);
	size_t len;
	char *buf = read_file(path, &len);
	if (!buf)
		return -1;
	int rc = -1;
	if (len < 10 || memcmp(buf, magic, 6) != 0 || buf[6] != 1) {
		mke_error("pseudo-labels '%s': not a version 1 .npy file", path);
		goto out;
	}
	size_t hlen = (unsigned char)buf[8] | ((size_t)(unsigned char)buf[9] << 8);
	if (10 + hlen > len) {
		mke_error("pseudo-labels '%s': header runs past the end of the file", path);
		goto out;
	}
	int idlen, classes, n;
	char tail[8];
	if (sscanf(buf + 10, "{'descr': [('id', 'S%d'), ('probs', '<f4', (%d,))], "
			     "'fortran_order': False, 'shape': (%d,), %1[}]",
		   &idlen, &classes, &n, tail) != 4 ||
	    idlen < 1 || idlen > 4096 || classes < 1 || classes > 1 << 20 || n < 0) {
		mke_error("pseudo-labels '%s': not a pseudo-label file (unexpected header)", path);
		goto out;
	}
	size_t rec = (size_t)idlen + 4 * (size_t)classes;
	if ((len - 10 - hlen) / rec < (size_t)n || (len - 10 - hlen) != rec * (size_t)n) {
		mke_error("pseudo-labels '%s': %d records need %zu bytes, the file has %zu", path, n,
			  rec * (size_t)n, len - 10 - hlen);
		goto out;
	}
	s->n = n;
	s->classes = classes;
	s->idlen = idlen;
	s->ids = xmalloc((size_t)n * (size_t)idlen + 1);
	s->probs = xmalloc(sizeof(float) * (size_t)n * (size_t)classes + 1);
	const unsigned char *p = (const unsigned char *)buf + 10 + hlen;
	for (int i = 0; i < n; i++) {
		memcpy(s->ids + (size_t)i * idlen, p, (size_t)idlen);
		p += idlen;
		for (int k = 0; k < classes; k++) {
			uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24;
			memcpy(&s->probs[(size_t)i * classes + k], &u, 4);
			p += 4;
		}
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

const char *labels_id(const struct label_shard *s, int i, char *buf)
{
	memcpy(buf, s->ids + (size_t)i * s->idlen, (size_t)s->idlen);
	buf[s->idlen] = '\0';
	return buf;
}

void labels_release(struct label_shard *s)
{
	free(s->ids);
	free(s->probs);
	memset(s, 0, sizeof *s);
}
