/*
 * npy.c - NumPy .npy reader and writer; see npy.h.
 *
 * Why it exists: pseudo-labels are stored as .npy so that numpy can read
 * them, and manifests may point at .npy inputs produced elsewhere. The
 * reader therefore treats every byte as hostile: the header is a Python
 * dict literal, which we parse with a small strict grammar (exactly the keys
 * 'descr', 'fortran_order' and 'shape'; shape a tuple of non-negative
 * integers) instead of evaluating anything. Every size computation is checked
 * for overflow before it is used, and the data must be at least as long as
 * the shape says (trailing bytes are ignored, as numpy ignores them).
 *
 * The writer reproduces numpy.save byte for byte: numpy (>= 1.23) writes the
 * dict with sorted keys, appends spaces so the first axis can grow to 21
 * digits in place, then pads with spaces and a final '\n' so that the data
 * starts on a 64-byte boundary; version 1.0 unless the header exceeds 65535
 * bytes. All integers and floats are written little-endian byte by byte, so
 * the code does not depend on the host's byte order.
 *
 * Owns: nothing beyond the float buffer of each npy_array it fills.
 */
#include "npy.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy refuses headers longer than this unless told otherwise (1.24+). */
#define NPY_MAX_HEADER 10000
/* numpy's GROWTH_AXIS_MAX_DIGITS: room left for the first axis to grow. */
#define NPY_GROWTH_DIGITS 21

/* ---- half precision ---------------------------------------------------- */

float npy_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else {
		/* subnormal: normalize the mantissa */
		int e = 113;
		while (!(man & 0x400u)) {
			man <<= 1;
			e--;
		}
		bits = sign | ((uint32_t)e << 23) | ((man & 0x3ffu) << 13);
	}
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

uint16_t npy_float_to_half(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t e = (x >> 23) & 0xffu;
	uint32_t man = x & 0x7fffffu;
	if (e == 0xff) {
		if (man == 0)
			return sign | 0x7c00u;
		/* NaN: keep the top payload bits, never turn into inf */
		uint16_t h = (uint16_t)(0x7c00u | (man >> 13));
		if (h == 0x7c00u)
			h++;
		return sign | h;
	}
	if (e >= 143) /* |f| >= 65536 */
		return sign | 0x7c00u;
	if (e <= 112) {
		/* half subnormal (or zero): result = m * 2^(e-150) / 2^-24 */
		if (e < 102) /* below 2^-25: rounds to zero */
			return sign;
		uint32_t m = man | 0x800000u;
		int s = 126 - (int)e; /* 14..24 */
		uint32_t q = m >> s, r = m & ((1u << s) - 1), half = 1u << (s - 1);
		if (r > half || (r == half && (q & 1)))
			q++;
		return (uint16_t)(sign | q);
	}
	uint32_t h = ((e - 112) << 10) | (man >> 13);
	uint32_t r = man & 0x1fffu;
	if (r > 0x1000u || (r == 0x1000u && (h & 1)))
		h++; /* a carry into the exponent is right, up to inf */
	return (uint16_t)(sign | h);
}

/* ---- reader ----------------------------------------------------------- */

/* A cursor over the header text. */
struct hdr {
	const char *p, *end;
};

static void hdr_ws(struct hdr *h)
{
	while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
		h->p++;
}

static int hdr_eat(struct hdr *h, char c)
{
	hdr_ws(h);
	if (h->p < h->end && *h->p == c) {
		h->p++;
		return 1;
	}
	return 0;
}

/* A quoted string without escapes: sets *s, *n to its contents. */
static int hdr_string(struct hdr *h, const char **s, size_t *n)
{
	hdr_ws(h);
	if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
		return -1;
	char q = *h->p++;
	const char *start = h->p;
	while (h->p < h->end && *h->p != q) {
		if (*h->p == '\\' || *h->p == '\n')
			return -1;
		h->p++;
	}
	if (h->p >= h->end)
		return -1;
	*s = start;
	*n = (size_t)(h->p - start);
	h->p++;
	return 0;
}

static int hdr_word(struct hdr *h, const char *w)
{
	size_t n = strlen(w);
	hdr_ws(h);
	if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n) != 0)
		return 0;
	const char *after = h->p + n;
	if (after < h->end && (*after == '_' || (*after >= 'a' && *after <= 'z') ||
			       (*after >= 'A' && *after <= 'Z') || (*after >= '0' && *after <= '9')))
		return 0;
	h->p = after;
	return 1;
}

/* A non-negative decimal integer as Python writes it (no leading zeros),
 * at most INT64_MAX. Returns 0, -1 on syntax error, -2 on overflow or a
 * negative number. */
static int hdr_dim(struct hdr *h, int64_t *out)
{
	hdr_ws(h);
	if (h->p < h->end && *h->p == '-')
		return -2;
	if (h->p >= h->end || *h->p < '0' || *h->p > '9')
		return -1;
	if (*h->p == '0' && h->p + 1 < h->end && h->p[1] >= '0' && h->p[1] <= '9')
		return -1;
	uint64_t v = 0;
	while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
		unsigned d = (unsigned)(*h->p - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return -2;
		v = v * 10 + d;
		h->p++;
	}
	*out = (int64_t)v;
	return 0;
}

/* The element types we read: numpy kind letter and item size. */
struct npy_type {
	char kind; /* 'f', 'i' or 'u' */
	int size;
	int big;   /* big-endian */
};

static int parse_descr(const char *s, size_t n, struct npy_type *t)
{
	if (n != 3)
		return -1;
	char order = s[0], kind = s[1];
	int size = s[2] - '0';
	int ok = (kind == 'f' && (size == 2 || size == 4 || size == 8)) ||
		 (kind == 'i' && (size == 1 || size == 2 || size == 4 || size == 8)) ||
		 (kind == 'u' && (size == 1 || size == 2));
	if (!ok)
		return -1;
	if (size == 1) {
		if (order != '|' && order != '<' && order != '>')
			return -1;
	} else if (order != '<' && order != '>') {
		return -1;
	}
	t->kind = kind;
	t->size = size;
	t->big = order == '>';
	return 0;
}

/* Parse the header dict into type, fortran flag and shape. Messages name
 * `what`. */
static int parse_header(const char *text, size_t n, const char *what, struct npy_type *type,
			int *ndim, int64_t *shape)
{
	struct hdr h = { text, text + n };
	int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;

	if (!hdr_eat(&h, '{'))
		return mke_error("npy '%s': header is not a dictionary", what);
	for (;;) {
		if (hdr_eat(&h, '}'))
			break;
		const char *key;
		size_t klen;
		if (hdr_string(&h, &key, &klen) != 0)
			return mke_error("npy '%s': header dictionary does not parse (expected a quoted key)",
					 what);
		if (!hdr_eat(&h, ':'))
			return mke_error("npy '%s': header dictionary does not parse (expected ':')", what);
		if (klen == 5 && memcmp(key, "descr", 5) == 0) {
			const char *d;
			size_t dlen;
			if (have_descr++)
				return mke_error("npy '%s': key 'descr' appears twice", what);
			if (hdr_string(&h, &d, &dlen) != 0)
				return mke_error("npy '%s': 'descr' is not a simple type string (structured arrays are not supported)",
						 what);
			if (parse_descr(d, dlen, type) != 0)
				return mke_error("npy '%s': unsupported dtype '%.*s' (want <f4 <f8 <f2 |u1 |i1 <i2 <u2 <i4 <i8 or big-endian)",
						 what, (int)(dlen > 32 ? 32 : dlen), d);
		} else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
			if (have_fortran++)
				return mke_error("npy '%s': key 'fortran_order' appears twice", what);
			if (hdr_word(&h, "True"))
				fortran = 1;
			else if (hdr_word(&h, "False"))
				fortran = 0;
			else
				return mke_error("npy '%s': 'fortran_order' is not True or False", what);
		} else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
			if (have_shape++)
				return mke_error("npy '%s': key 'shape' appears twice", what);
			if (!hdr_eat(&h, '('))
				return mke_error("npy '%s': 'shape' is not a tuple", what);
			int nd = 0, comma = 0;
			while (!hdr_eat(&h, ')')) {
				if (nd > 0 && !comma)
					return mke_error("npy '%s': 'shape' tuple does not parse", what);
				if (nd == NPY_MAX_DIMS)
					return mke_error("npy '%s': shape has more than %d dimensions", what,
							 NPY_MAX_DIMS);
				int rc = hdr_dim(&h, &shape[nd]);
				if (rc == -2)
					return mke_error("npy '%s': shape has a negative or too large dimension", what);
				if (rc != 0)
					return mke_error("npy '%s': 'shape' tuple does not parse", what);
				nd++;
				comma = hdr_eat(&h, ',');
			}
			/* (5) is an int in Python, not a tuple */
			if (nd == 1 && !comma)
				return mke_error("npy '%s': 'shape' is not a tuple (a 1-tuple needs a trailing comma)",
						 what);
			*ndim = nd;
		} else {
			return mke_error("npy '%s': unexpected key '%.*s' in header", what,
					 (int)(klen > 32 ? 32 : klen), key);
		}
		if (!hdr_eat(&h, ',')) {
			if (!hdr_eat(&h, '}'))
				return mke_error("npy '%s': header dictionary does not parse (expected ',' or '}')",
						 what);
			break;
		}
	}
	hdr_ws(&h);
	if (h.p != h.end)
		return mke_error("npy '%s': garbage after the header dictionary", what);
	if (!have_descr || !have_fortran || !have_shape)
		return mke_error("npy '%s': header lacks '%s'", what,
				 !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
	if (fortran)
		return mke_error("npy '%s': fortran_order arrays are not supported; save a C-order array (np.ascontiguousarray)",
				 what);
	return 0;
}

/* Element count of a shape; -1 if the product of its nonzero dimensions
 * exceeds limit (so the answer does not depend on where a zero sits). */
static int shape_count(int ndim, const int64_t *shape, uint64_t limit, uint64_t *count)
{
	uint64_t c = 1;
	int zero = 0;
	for (int i = 0; i < ndim; i++) {
		uint64_t d = (uint64_t)shape[i];
		if (d == 0) {
			zero = 1;
			continue;
		}
		if (c > limit / d)
			return -1;
		c *= d;
	}
	*count = zero ? 0 : c;
	return 0;
}

static uint64_t load_uint(const unsigned char *p, int size, int big)
{
	uint64_t v = 0;
	for (int i = 0; i < size; i++)
		v |= (uint64_t)p[big ? size - 1 - i : i] << (8 * i);
	return v;
}

/* double -> float with IEEE rounding; values beyond the float range become
 * +-inf instead of undefined behaviour. */
static float double_to_float(double d)
{
	if (fabs(d) >= 0x1.ffffffp127)
		return d > 0 ? INFINITY : -INFINITY;
	return (float)d;
}

static void convert(const unsigned char *src, size_t count, struct npy_type t, float *out)
{
	for (size_t i = 0; i < count; i++, src += t.size) {
		uint64_t u = load_uint(src, t.size, t.big);
		float v;
		if (t.kind == 'f' && t.size == 2) {
			v = npy_half_to_float((uint16_t)u);
		} else if (t.kind == 'f' && t.size == 4) {
			uint32_t b = (uint32_t)u;
			memcpy(&v, &b, 4);
		} else if (t.kind == 'f') {
			double d;
			memcpy(&d, &u, 8);
			v = double_to_float(d);
		} else if (t.kind == 'u') {
			v = (float)u;
		} else {
			/* sign-extend from size bytes */
			int shift = 64 - 8 * t.size;
			int64_t s = (int64_t)(u << shift) >> shift;
			v = (float)s;
		}
		out[i] = v;
	}
}

int npy_parse(struct npy_array *a, const void *buf, size_t len, const char *what)
{
	const unsigned char *b = buf;
	memset(a, 0, sizeof(*a));
	if (len < 10 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return mke_error("npy '%s': not a .npy file (bad magic)", what);
	int major = b[6], minor = b[7];
	if ((major != 1 && major != 2 && major != 3) || minor != 0)
		return mke_error("npy '%s': unsupported format version %d.%d (want 1.0, 2.0 or 3.0)",
				 what, major, minor);
	size_t start = major == 1 ? 10 : 12;
	if (len < start)
		return mke_error("npy '%s': file ends inside the header length", what);
	uint64_t hlen = load_uint(b + 8, major == 1 ? 2 : 4, 0);
	if (hlen > NPY_MAX_HEADER)
		return mke_error("npy '%s': header of %" PRIu64 " bytes is longer than numpy's limit of %d",
				 what, hlen, NPY_MAX_HEADER);
	if (hlen > len - start)
		return mke_error("npy '%s': header length %" PRIu64 " runs past the end of the file (%zu bytes)",
				 what, hlen, len);

	struct npy_type type = { 0, 0, 0 };
	int ndim = 0;
	int64_t shape[NPY_MAX_DIMS];
	if (parse_header((const char *)b + start, (size_t)hlen, what, &type, &ndim, shape) != 0)
		return -1;

	uint64_t count;
	if (shape_count(ndim, shape, (uint64_t)(SIZE_MAX / 8), &count) != 0)
		return mke_error("npy '%s': shape's element count overflows", what);
	size_t data_off = start + (size_t)hlen;
	uint64_t need = count * (uint64_t)type.size;
	if (need > len - data_off)
		return mke_error("npy '%s': data is %zu bytes but the shape needs %" PRIu64,
				 what, len - data_off, need);

	a->ndim = ndim;
	memcpy(a->shape, shape, sizeof(int64_t) * (size_t)ndim);
	a->count = (size_t)count;
	a->data = xmalloc(a->count * sizeof(float));
	convert(b + data_off, a->count, type, a->data);
	return 0;
}

int npy_load(struct npy_array *a, const char *path)
{
	size_t len;
	memset(a, 0, sizeof(*a));
	char *buf = read_file(path, &len);
	if (!buf)
		return -1;
	int rc = npy_parse(a, buf, len, path);
	free(buf);
	return rc;
}

void npy_release(struct npy_array *a)
{
	free(a->data);
	memset(a, 0, sizeof(*a));
}

/* ---- writer ----------------------------------------------------------- */

int npy_serialize(const float *data, int ndim, const int64_t *shape, int half, char **out,
		  size_t *len)
{
	*out = NULL;
	*len = 0;
	if (ndim < 0 || ndim > NPY_MAX_DIMS)
		return mke_error("npy: cannot write %d dimensions (at most %d)", ndim, NPY_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0)
			return mke_error("npy: cannot write negative dimension %" PRId64, shape[i]);
	uint64_t count;
	size_t item = half ? 2 : 4;
	if (shape_count(ndim, shape, (uint64_t)(SIZE_MAX / 8), &count) != 0)
		return mke_error("npy: shape's element count overflows");

	/* the dict, as numpy's repr writes it, plus room for axis 0 to grow */
	char dict[64 + NPY_MAX_DIMS * 24 + NPY_GROWTH_DIGITS];
	int n = snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (",
			 half ? "<f2" : "<f4");
	for (int i = 0; i < ndim; i++)
		n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s%" PRId64, i ? ", " : "", shape[i]);
	n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s), }", ndim == 1 ? "," : "");
	if (ndim > 0) {
		int digits = snprintf(NULL, 0, "%" PRId64, shape[0]);
		for (int i = digits; i < NPY_GROWTH_DIGITS; i++)
			dict[n++] = ' ';
	}

	/* version 1.0 has a 2-byte length. numpy pads with 1..64 spaces (64,
	 * not 0, when already aligned) and a final '\n' so that the data starts
	 * on a 64-byte boundary. */
	size_t hlen = (size_t)n + 1;
	size_t prefix = NPY_MAGIC_LEN + 2 + 2;
	size_t pad = NPY_ALIGN - (prefix + hlen) % NPY_ALIGN;
	int major = 1;
	if (hlen + pad > 0xffff) {
		major = 2;
		prefix = NPY_MAGIC_LEN + 2 + 4;
		pad = NPY_ALIGN - (prefix + hlen) % NPY_ALIGN;
	}
	size_t total_hdr = hlen + pad;
	size_t nbytes = (size_t)count * item;
	size_t total = prefix + total_hdr + nbytes;
	unsigned char *b = xmalloc(total);
	memcpy(b, NPY_MAGIC, NPY_MAGIC_LEN);
	b[6] = (unsigned char)major;
	b[7] = 0;
	for (size_t i = 0; i < prefix - 8; i++)
		b[8 + i] = (unsigned char)(total_hdr >> (8 * i));
	memcpy(b + prefix, dict, (size_t)n);
	memset(b + prefix + n, ' ', pad);
	b[prefix + total_hdr - 1] = '\n';

	unsigned char *d = b + prefix + total_hdr;
	for (size_t i = 0; i < (size_t)count; i++) {
		if (half) {
			uint16_t h = npy_float_to_half(data[i]);
			d[2 * i] = (unsigned char)h;
			d[2 * i + 1] = (unsigned char)(h >> 8);
		} else {
			uint32_t u;
			memcpy(&u, &data[i], 4);
			for (int k = 0; k < 4; k++)
				d[4 * i + k] = (unsigned char)(u >> (8 * k));
		}
	}
	*out = (char *)b;
	*len = total;
	return 0;
}

int npy_save(const char *path, const float *data, int ndim, const int64_t *shape, int half)
{
	char *buf;
	size_t len;
	if (npy_serialize(data, ndim, shape, half, &buf, &len) != 0)
		return mke_error("npy '%s': not written", path);
	int rc = write_file_atomic(path, buf, len, 0644);
	free(buf);
	return rc;
}
