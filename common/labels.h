/*
 * labels.h - pseudo-label shard files.
 *
 * One file per shard, a NumPy .npy (version 1.0) holding a structured array
 * readable by numpy.load:
 *     dtype [('id', 'S<L>'), ('probs', '<f4', (C,))], shape (N,)
 * i.e. each record is the sample's id string (NUL-padded to L bytes) followed
 * by its C class probabilities from the teacher. Written atomically (temp
 * file + rename) so a reader never sees half a file; the same shard labeled
 * twice gives the same bytes, hence the same sha256.
 */
#ifndef MKE_LABELS_H
#define MKE_LABELS_H

#include <stddef.h>

struct label_shard {
	int n, classes, idlen;
	char *ids;      /* n * idlen bytes, NUL-padded */
	float *probs;   /* (n, classes) */
};

/* Serialize to a malloc'd buffer (caller owns *out). */
int labels_serialize(char *const *ids, const float *probs, int n, int classes, char **out, size_t *len);
/* Serialize and write atomically to path (mode 0640); sha256_out (65 bytes)
 * receives the file's digest when not NULL. */
int labels_write(const char *path, char *const *ids, const float *probs, int n, int classes,
		 char sha256_out[65]);
/* Read a file written by labels_write (checks the header exactly). */
int labels_read(struct label_shard *s, const char *path);
/* The i-th id as a NUL-terminated string in buf (idlen+1 bytes). */
const char *labels_id(const struct label_shard *s, int i, char *buf);
void labels_release(struct label_shard *s);

#endif
