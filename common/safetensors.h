/*
 * safetensors.h - read and write the safetensors checkpoint format
 * (https://github.com/huggingface/safetensors): 8-byte little-endian header
 * length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [b, e]},
 * "__metadata__": {str: str}}, then the raw little-endian tensor bytes.
 *
 * The writer produces exactly what the Python library writes: tensors sorted
 * by dtype alignment (descending) then name, header JSON without spaces,
 * padded with spaces to a multiple of 8 bytes.
 *
 * The reader rejects hostile files: offsets outside the data section or
 * overlapping, shapes whose element count overflows or disagrees with the byte
 * span, unknown dtypes, a header longer than the file or than 100 MB. Like the
 * Rust reference reader it also requires the tensors to cover the data section
 * exactly (no gap, nothing after the last tensor).
 */
#ifndef MKE_SAFETENSORS_H
#define MKE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

enum st_dtype { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL };

struct st_tensor {
	char *name;
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;   /* points into the file buffer (reader) or the caller's buffer (writer) */
	size_t nbytes;
};

struct st_file {
	int ntensors;
	struct st_tensor *tensors;
	int nmeta;
	char **meta_keys, **meta_vals;
	char *buf;          /* whole file (reader); owned */
	size_t len;
	char *what;         /* the file's name, for messages; owned */
};

/* Load a file; every tensor's data points into st->buf. Errors name the file
 * and what is wrong. Release with st_release. Tensors are listed in the
 * order of their data in the file. On failure *st is left empty (and
 * st_release on it is harmless). Tensor data is only as aligned as the file
 * makes it (the reference writer keeps every tensor aligned to its element
 * size); st_read_f32 works either way. */
int st_load(struct st_file *st, const char *path);
/* Parse from memory (takes a copy). `what` names the source in errors. */
int st_parse(struct st_file *st, const void *data, size_t len, const char *what);
/* The tensor called name, or NULL; the pointer belongs to st. */
const struct st_tensor *st_find(const struct st_file *st, const char *name);
/* Copy a float32 tensor into out (n floats); error if dtype/size disagree.
 * F16, BF16 and F64 are converted. */
int st_read_f32(const struct st_file *st, const char *name, float *out, size_t n);
void st_release(struct st_file *st);

/* A writer: add tensors (data is borrowed until st_write; the name is
 * copied), then write. Data must already be little-endian (the raw bytes of
 * a C array on every host mke supports). Invalid shapes, duplicate names and
 * names or metadata that are not UTF-8 are reported by st_writer_serialize.
 * st_writer_meta copies key and value; a repeated key replaces the value.
 * Metadata keys are written in ascending byte order: the Rust library keeps
 * them in a HashMap, so for several keys its order is unspecified. */
struct st_writer {
	int n, cap;
	struct st_tensor *t;
	int nmeta;
	char **meta_keys, **meta_vals;
};
void st_writer_init(struct st_writer *w);
void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, int ndim,
		   const int64_t *shape, const void *data);
void st_writer_meta(struct st_writer *w, const char *key, const char *val);
/* Serialize to a malloc'd buffer (caller owns) ... */
int st_writer_serialize(const struct st_writer *w, char **out, size_t *len);
/* ... or straight to a file, atomically (temp + rename), mode 0640. */
int st_writer_write(const struct st_writer *w, const char *path);
void st_writer_release(struct st_writer *w);

#endif
