/*
 * npy.h - NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * The reader takes C-order arrays of float32, float64, float16, uint8, int8,
 * int16, uint16, int32, int64 (either endianness) and converts to float32.
 * It rejects hostile headers: dictionaries that do not parse, shapes whose
 * element count overflows or exceeds the data in the file, fortran_order True,
 * headers over numpy's 10000-byte limit. Bytes after the data are ignored, as
 * numpy ignores them.
 * The writer writes version 1.0 (2.0 when the header needs it), '<f4' or '<f2'
 * data, header padded to a 64-byte boundary as numpy does.
 */
#ifndef MKE_NPY_H
#define MKE_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

struct npy_array {
	int ndim;
	int64_t shape[NPY_MAX_DIMS];
	size_t count;   /* product of shape */
	float *data;    /* count floats, owned */
};

/* Load path into a (converted to float32). Errors name the file. */
int npy_load(struct npy_array *a, const char *path);
/* Parse from memory; `what` names the source in errors. */
int npy_parse(struct npy_array *a, const void *buf, size_t len, const char *what);
void npy_release(struct npy_array *a);

/* Serialize float32 data with the given shape as '<f4' (or '<f2' when
 * half is nonzero) into a malloc'd buffer (caller owns). */
int npy_serialize(const float *data, int ndim, const int64_t *shape, int half,
		  char **out, size_t *len);
/* Write it to path atomically (temp file + rename), mode 0644. */
int npy_save(const char *path, const float *data, int ndim, const int64_t *shape, int half);

/* IEEE binary16 <-> binary32. float->half rounds to nearest, ties to even,
 * exactly as numpy's astype(float16) (overflow -> inf, NaN stays NaN). Also
 * used by safetensors.c for F16 tensors. */
float npy_half_to_float(uint16_t h);
uint16_t npy_float_to_half(float f);

#endif
