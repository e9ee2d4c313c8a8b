/*
 * safetensors.c - safetensors reader and writer; see safetensors.h.
 *
 * Why it exists: teachers trained elsewhere arrive as safetensors files and
 * mke's own checkpoints must load in PyTorch. Files come from outside, so the
 * reader validates the header completely before anyone touches a tensor: it
 * follows the Rust reference library (read_metadata + Metadata::validate),
 * which requires the tensors, ordered by offset, to tile the data section
 * exactly: no overlap, no gap, nothing after the last one. Every product and
 * sum is checked for overflow; JSON numbers are accepted only as exact
 * integers up to 2^53 (cJSON stores them as doubles).
 *
 * The writer reproduces the Rust library's serialize() byte for byte:
 *   - tensors sorted by dtype, descending in the order of the Rust `Dtype`
 *     enum (BOOL < U8 < I8 < I16 < F16 < BF16 < I32 < F32 < F64 < I64; the
 *     library calls this "alignment" but it is the enum order, so I64 comes
 *     before F64 and F32 before I32), then by name (bytewise);
 *   - header JSON as serde_json writes it: no spaces, "__metadata__" first,
 *     each tensor as {"dtype":..,"shape":[..],"data_offsets":[b,e]}, strings
 *     escaped like serde_json (\" \\ \b \f \n \r \t, other control bytes as
 *     \u00xx, everything else raw UTF-8);
 *   - the header padded with spaces to a multiple of 8 bytes, then the data
 *     of each tensor in the same order, offsets contiguous from 0.
 * The one freedom the library leaves is the order of several metadata keys
 * (a Rust HashMap); we write them sorted.
 *
 * Owns: per st_file, the file buffer, tensor table, names and metadata
 * strings; per st_writer, copies of names and metadata (never tensor data).
 */
#include "safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "npy.h"
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c passes tensor bytes through unchanged: a little-endian host is assumed"
#endif

#define ST_MAX_HEADER 100000000u   /* the Rust library's MAX_HEADER_SIZE */
#define ST_MAX_JSON_INT 9007199254740992.0  /* 2^53: doubles are exact below */
#define ST_NDTYPES (ST_BOOL + 1)

static const char *const dtype_name[ST_NDTYPES] = {
	[ST_F32] = "F32", [ST_F16] = "F16", [ST_BF16] = "BF16", [ST_F64] = "F64",
	[ST_I64] = "I64", [ST_I32] = "I32", [ST_I16] = "I16", [ST_I8] = "I8",
	[ST_U8] = "U8", [ST_BOOL] = "BOOL",
};
static const size_t dtype_size[ST_NDTYPES] = {
	[ST_F32] = 4, [ST_F16] = 2, [ST_BF16] = 2, [ST_F64] = 8, [ST_I64] = 8,
	[ST_I32] = 4, [ST_I16] = 2, [ST_I8] = 1, [ST_U8] = 1, [ST_BOOL] = 1,
};
/* Position in the Rust Dtype enum (0.4.x); the writer sorts by it, descending. */
static const int dtype_rank[ST_NDTYPES] = {
	[ST_BOOL] = 0, [ST_U8] = 1, [ST_I8] = 2, [ST_I16] = 5, [ST_F16] = 7,
	[ST_BF16] = 8, [ST_I32] = 9, [ST_F32] = 11, [ST_F64] = 12, [ST_I64] = 13,
};

static int dtype_from_name(const char *s, enum st_dtype *out)
{
	for (int i = 0; i < ST_NDTYPES; i++) {
		if (strcmp(s, dtype_name[i]) == 0) {
			*out = (enum st_dtype)i;
			return 0;
		}
	}
	return -1;
}

/* Strict UTF-8 (as Rust's str::from_utf8): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (n - i - 1 < k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Product of the nonzero dimensions times elem must fit in SIZE_MAX; *nbytes
 * is 0 if any dimension is 0. The answer does not depend on where the zero
 * sits, unlike a running product. */
static int shape_nbytes(int ndim, const int64_t *shape, size_t elem, size_t *nbytes)
{
	uint64_t c = elem;
	int zero = 0;
	for (int i = 0; i < ndim; i++) {
		uint64_t d = (uint64_t)shape[i];
		if (d == 0) {
			zero = 1;
			continue;
		}
		if (c > SIZE_MAX / d)
			return -1;
		c *= d;
	}
	*nbytes = zero ? 0 : (size_t)c;
	return 0;
}

/* ---- reader ----------------------------------------------------------- */

/* A JSON number that is an exact non-negative integer no larger than 2^53.
 * Returns 0, or -1 when it is not one. */
static int json_uint(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return -1;
	double d = j->valuedouble;
	if (!(d >= 0) || d > ST_MAX_JSON_INT || d != floor(d))
		return -1;
	*out = (uint64_t)d;
	return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;
	const char *px = x->data, *py = y->data;
	if (px != py)
		return px < py ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The "__metadata__" object: string -> string. */
static int parse_meta(struct st_file *st, const cJSON *m)
{
	const char *what = st->what;
	if (!cJSON_IsObject(m))
		return mke_error("safetensors '%s': __metadata__ is not an object of strings", what);
	if (st->meta_keys)
		return mke_error("safetensors '%s': __metadata__ appears twice", what);
	int n = cJSON_GetArraySize(m);
	st->meta_keys = xcalloc((size_t)n, sizeof(char *));
	st->meta_vals = xcalloc((size_t)n, sizeof(char *));
	const cJSON *kv;
	cJSON_ArrayForEach(kv, m) {
		if (!cJSON_IsString(kv))
			return mke_error("safetensors '%s': __metadata__ value for '%s' is not a string",
					 what, kv->string);
		for (int i = 0; i < st->nmeta; i++)
			if (strcmp(st->meta_keys[i], kv->string) == 0)
				return mke_error("safetensors '%s': __metadata__ key '%s' appears twice",
						 what, kv->string);
		st->meta_keys[st->nmeta] = xstrdup(kv->string);
		st->meta_vals[st->nmeta] = xstrdup(kv->valuestring);
		st->nmeta++;
	}
	return 0;
}

/* One tensor entry; data section starts at base and is datalen bytes. */
static int parse_tensor(struct st_file *st, const cJSON *e, const char *base, uint64_t datalen,
			struct st_tensor *t)
{
	const char *what = st->what, *name = e->string;
	t->name = xstrdup(name);
	if (!cJSON_IsObject(e))
		return mke_error("safetensors '%s': tensor '%s': entry is not an object", what, name);

	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	if (!cJSON_IsString(dt))
		return mke_error("safetensors '%s': tensor '%s': dtype is missing or not a string",
				 what, name);
	if (dtype_from_name(dt->valuestring, &t->dtype) != 0)
		return mke_error("safetensors '%s': tensor '%s': unknown dtype '%.16s' (mke reads F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL)",
				 what, name, dt->valuestring);

	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
	if (!cJSON_IsArray(sh))
		return mke_error("safetensors '%s': tensor '%s': shape is missing or not an array",
				 what, name);
	int nd = cJSON_GetArraySize(sh);
	if (nd > ST_MAX_DIMS)
		return mke_error("safetensors '%s': tensor '%s': shape has %d dimensions (at most %d)",
				 what, name, nd, ST_MAX_DIMS);
	const cJSON *d;
	t->ndim = 0;
	cJSON_ArrayForEach(d, sh) {
		uint64_t v;
		if (json_uint(d, &v) != 0)
			return mke_error("safetensors '%s': tensor '%s': shape dimension %d is not a non-negative integer below 2^53",
					 what, name, t->ndim);
		t->shape[t->ndim++] = (int64_t)v;
	}
	size_t need;
	if (shape_nbytes(t->ndim, t->shape, dtype_size[t->dtype], &need) != 0)
		return mke_error("safetensors '%s': tensor '%s': element count times dtype size overflows",
				 what, name);

	const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	uint64_t b, end;
	if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
	    json_uint(cJSON_GetArrayItem(off, 0), &b) != 0 ||
	    json_uint(cJSON_GetArrayItem(off, 1), &end) != 0)
		return mke_error("safetensors '%s': tensor '%s': data_offsets is not [begin, end] of non-negative integers",
				 what, name);
	if (b > end)
		return mke_error("safetensors '%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] has begin after end",
				 what, name, b, end);
	if (end > datalen)
		return mke_error("safetensors '%s': tensor '%s': data_offsets end %" PRIu64 " is beyond the data section (%" PRIu64 " bytes)",
				 what, name, end, datalen);
	if (end - b != (uint64_t)need)
		return mke_error("safetensors '%s': tensor '%s': data_offsets span %" PRIu64 " bytes but %s%s needs %zu",
				 what, name, end - b, dtype_name[t->dtype],
				 t->ndim ? " with this shape" : " scalar", need);
	t->data = base + b;
	t->nbytes = (size_t)need;
	return 0;
}

/* Only JSON whitespace from p to end (serde_json allows it after the value;
 * the writer pads with spaces). */
static int only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return 0;
	return 1;
}

/* Parse buf (len bytes, NUL-terminated one past, taken over). */
static int parse_owned(struct st_file *st, char *buf, size_t len, const char *what)
{
	memset(st, 0, sizeof(*st));
	st->buf = buf;
	st->len = len;
	st->what = xstrdup(what);

	if (len < 8) {
		mke_error("safetensors '%s': file is %zu bytes, too short for the 8-byte header length",
			  what, len);
		goto fail;
	}
	const unsigned char *u = (const unsigned char *)buf;
	uint64_t n = 0;
	for (int i = 0; i < 8; i++)
		n |= (uint64_t)u[i] << (8 * i);
	if (n > ST_MAX_HEADER) {
		mke_error("safetensors '%s': header length %" PRIu64 " is over the 100 MB limit",
			  what, n);
		goto fail;
	}
	if (n > len - 8) {
		mke_error("safetensors '%s': header length %" PRIu64 " runs past the end of the file (%zu bytes)",
			  what, n, len);
		goto fail;
	}
	const char *h = buf + 8;
	if (!utf8_valid((const unsigned char *)h, (size_t)n)) {
		mke_error("safetensors '%s': header is not valid UTF-8", what);
		goto fail;
	}
	if (n == 0 || h[0] != '{') {
		mke_error("safetensors '%s': header is not a JSON object (does not start with '{')", what);
		goto fail;
	}
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)n, &end, 0);
	if (!root) {
		mke_error("safetensors '%s': header is not valid JSON (at byte %td of %" PRIu64 ")",
			  what, end ? end - h : (ptrdiff_t)0, n);
		goto fail;
	}
	if (!cJSON_IsObject(root)) {
		mke_error("safetensors '%s': header is not a JSON object", what);
		goto fail_json;
	}
	if (!end || end > h + n || !only_space(end, h + n)) {
		mke_error("safetensors '%s': header has bytes other than spaces after the JSON object",
			  what);
		goto fail_json;
	}

	const char *base = h + n;
	uint64_t datalen = len - 8 - n;
	int count = cJSON_GetArraySize(root);
	st->tensors = xcalloc((size_t)count, sizeof(struct st_tensor));
	const cJSON *e;
	cJSON_ArrayForEach(e, root) {
		if (strcmp(e->string, "__metadata__") == 0) {
			if (parse_meta(st, e) != 0)
				goto fail_json;
			continue;
		}
		struct st_tensor *t = &st->tensors[st->ntensors++];
		if (parse_tensor(st, e, base, datalen, t) != 0)
			goto fail_json;
	}
	cJSON_Delete(root);

	qsort(st->tensors, (size_t)st->ntensors, sizeof(struct st_tensor), cmp_by_name);
	for (int i = 1; i < st->ntensors; i++) {
		if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
			mke_error("safetensors '%s': tensor '%s' appears twice", what, st->tensors[i].name);
			goto fail;
		}
	}
	qsort(st->tensors, (size_t)st->ntensors, sizeof(struct st_tensor), cmp_by_offset);
	uint64_t pos = 0;
	for (int i = 0; i < st->ntensors; i++) {
		const struct st_tensor *t = &st->tensors[i];
		uint64_t b = (uint64_t)((const char *)t->data - base);
		if (b < pos) {
			mke_error("safetensors '%s': tensors '%s' and '%s' overlap in the data section",
				  what, st->tensors[i - 1].name, t->name);
			goto fail;
		}
		if (b > pos) {
			mke_error("safetensors '%s': %" PRIu64 " bytes before tensor '%s' belong to no tensor",
				  what, b - pos, t->name);
			goto fail;
		}
		pos = b + t->nbytes;
	}
	if (pos != datalen) {
		mke_error("safetensors '%s': %" PRIu64 " bytes at the end of the data section belong to no tensor",
			  what, datalen - pos);
		goto fail;
	}
	return 0;

fail_json:
	cJSON_Delete(root);
fail:
	st_release(st);
	return -1;
}

int st_parse(struct st_file *st, const void *data, size_t len, const char *what)
{
	char *buf = xmalloc(len + 1);
	if (len)
		memcpy(buf, data, len);
	buf[len] = '\0';
	return parse_owned(st, buf, len, what);
}

int st_load(struct st_file *st, const char *path)
{
	size_t len;
	memset(st, 0, sizeof(*st));
	char *buf = read_file(path, &len);
	if (!buf)
		return -1;
	return parse_owned(st, buf, len, path);
}

const struct st_tensor *st_find(const struct st_file *st, const char *name)
{
	for (int i = 0; i < st->ntensors; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

int st_read_f32(const struct st_file *st, const char *name, float *out, size_t n)
{
	const char *what = st->what ? st->what : "(memory)";
	const struct st_tensor *t = st_find(st, name);
	if (!t)
		return mke_error("safetensors '%s': no tensor '%s'", what, name);
	size_t count = t->nbytes / dtype_size[t->dtype];
	if (count != n)
		return mke_error("safetensors '%s': tensor '%s' has %zu elements, expected %zu",
				 what, name, count, n);
	const unsigned char *p = t->data;
	for (size_t i = 0; i < n; i++) {
		switch (t->dtype) {
		case ST_F32:
			memcpy(&out[i], p + 4 * i, 4);
			break;
		case ST_F16:
			out[i] = npy_half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
			break;
		case ST_BF16: {
			uint32_t bits = (uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16;
			memcpy(&out[i], &bits, 4);
			break;
		}
		case ST_F64: {
			double d;
			memcpy(&d, p + 8 * i, 8);
			/* beyond float range: inf, not undefined behaviour */
			out[i] = fabs(d) >= 0x1.ffffffp127 ? (d > 0 ? INFINITY : -INFINITY) : (float)d;
			break;
		}
		default:
			return mke_error("safetensors '%s': tensor '%s' is %s, not a floating-point type",
					 what, name, dtype_name[t->dtype]);
		}
	}
	return 0;
}

void st_release(struct st_file *st)
{
	for (int i = 0; i < st->ntensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	for (int i = 0; i < st->nmeta; i++) {
		free(st->meta_keys[i]);
		free(st->meta_vals[i]);
	}
	free(st->meta_keys);
	free(st->meta_vals);
	free(st->buf);
	free(st->what);
	memset(st, 0, sizeof(*st));
}

/* ---- writer ----------------------------------------------------------- */

void st_writer_init(struct st_writer *w)
{
	memset(w, 0, sizeof(*w));
}

void st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype, int ndim,
		   const int64_t *shape, const void *data)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 16;
		w->t = xrealloc(w->t, (size_t)w->cap * sizeof(struct st_tensor));
	}
	struct st_tensor *t = &w->t[w->n++];
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->dtype = dtype;
	t->ndim = ndim;
	if (ndim > 0 && ndim <= ST_MAX_DIMS)
		memcpy(t->shape, shape, (size_t)ndim * sizeof(int64_t));
	t->data = data;
	/* nbytes is worked out (and the tensor validated) at serialize time */
}

void st_writer_meta(struct st_writer *w, const char *key, const char *val)
{
	for (int i = 0; i < w->nmeta; i++) {
		if (strcmp(w->meta_keys[i], key) == 0) {
			free(w->meta_vals[i]);
			w->meta_vals[i] = xstrdup(val);
			return;
		}
	}
	w->meta_keys = xrealloc(w->meta_keys, (size_t)(w->nmeta + 1) * sizeof(char *));
	w->meta_vals = xrealloc(w->meta_vals, (size_t)(w->nmeta + 1) * sizeof(char *));
	w->meta_keys[w->nmeta] = xstrdup(key);
	w->meta_vals[w->nmeta] = xstrdup(val);
	w->nmeta++;
}

void st_writer_release(struct st_writer *w)
{
	for (int i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	for (int i = 0; i < w->nmeta; i++) {
		free(w->meta_keys[i]);
		free(w->meta_vals[i]);
	}
	free(w->meta_keys);
	free(w->meta_vals);
	memset(w, 0, sizeof(*w));
}

/* A growing byte string. */
struct sbuf {
	char *p;
	size_t n, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = b->cap ? 2 * b->cap : 256;
		while (b->cap < b->n + n)
			b->cap *= 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	sb_add(b, tmp, (size_t)n);
}

/* A JSON string as serde_json writes it. */
static void sb_json_string(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sb_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[7];
		switch (*p) {
		case '"': sb_add(b, "\\\"", 2); break;
		case '\\': sb_add(b, "\\\\", 2); break;
		case '\b': sb_add(b, "\\b", 2); break;
		case '\f': sb_add(b, "\\f", 2); break;
		case '\n': sb_add(b, "\\n", 2); break;
		case '\r': sb_add(b, "\\r", 2); break;
		case '\t': sb_add(b, "\\t", 2); break;
		default:
			if (*p < 0x20) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 15];
				sb_add(b, esc, 6);
			} else {
				sb_add(b, (const char *)p, 1);
			}
		}
	}
	sb_add(b, "\"", 1);
}

static int cmp_write_order(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;
	int rx = dtype_rank[x->dtype], ry = dtype_rank[y->dtype];
	if (rx != ry)
		return ry - rx;
	return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;
	return strcmp(x->name, y->name);
}

struct kv {
	const char *k, *v;
};

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* Check one tensor and work out its byte size. */
static int writer_check(const struct st_tensor *t, size_t *nbytes)
{
	const char *name = t->name;
	if (!utf8_valid((const unsigned char *)name, strlen(name)))
		return mke_error("safetensors: tensor name '%s' is not valid UTF-8", name);
	if (strcmp(name, "__metadata__") == 0)
		return mke_error("safetensors: '__metadata__' cannot be a tensor name");
	if ((unsigned)t->dtype >= ST_NDTYPES)
		return mke_error("safetensors: tensor '%s': invalid dtype %d", name, (int)t->dtype);
	if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
		return mke_error("safetensors: tensor '%s': %d dimensions (at most %d)", name,
				 t->ndim, ST_MAX_DIMS);
	for (int i = 0; i < t->ndim; i++)
		if (t->shape[i] < 0)
			return mke_error("safetensors: tensor '%s': negative dimension %" PRId64, name,
					 t->shape[i]);
	if (shape_nbytes(t->ndim, t->shape, dtype_size[t->dtype], nbytes) != 0)
		return mke_error("safetensors: tensor '%s': size overflows", name);
	if (*nbytes > 0 && !t->data)
		return mke_error("safetensors: tensor '%s': no data", name);
	return 0;
}

int st_writer_serialize(const struct st_writer *w, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	int n = w->n;
	const struct st_tensor **order = xcalloc((size_t)n, sizeof(*order));
	size_t *nbytes = xcalloc((size_t)n, sizeof(size_t));
	struct kv *meta = xcalloc((size_t)w->nmeta, sizeof(struct kv));
	struct sbuf hb = { 0 };
	int rc = -1;

	for (int i = 0; i < n; i++) {
		order[i] = &w->t[i];
		if (writer_check(&w->t[i], &nbytes[i]) != 0)
			goto out;
	}
	qsort(order, (size_t)n, sizeof(*order), cmp_name_ptr);
	for (int i = 1; i < n; i++) {
		if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
			mke_error("safetensors: tensor '%s' added twice", order[i]->name);
			goto out;
		}
	}
	qsort(order, (size_t)n, sizeof(*order), cmp_write_order);
	for (int i = 0; i < w->nmeta; i++) {
		meta[i].k = w->meta_keys[i];
		meta[i].v = w->meta_vals[i];
		if (!utf8_valid((const unsigned char *)meta[i].k, strlen(meta[i].k)) ||
		    !utf8_valid((const unsigned char *)meta[i].v, strlen(meta[i].v))) {
			mke_error("safetensors: metadata '%s' is not valid UTF-8", meta[i].k);
			goto out;
		}
	}
	qsort(meta, (size_t)w->nmeta, sizeof(*meta), cmp_kv);

	sb_puts(&hb, "{");
	if (w->nmeta > 0) {
		sb_puts(&hb, "\"__metadata__\":{");
		for (int i = 0; i < w->nmeta; i++) {
			if (i)
				sb_puts(&hb, ",");
			sb_json_string(&hb, meta[i].k);
			sb_puts(&hb, ":");
			sb_json_string(&hb, meta[i].v);
		}
		sb_puts(&hb, "}");
	}
	size_t offset = 0;
	for (int i = 0; i < n; i++) {
		const struct st_tensor *t = order[i];
		size_t nb = nbytes[t - w->t];
		if (nb > SIZE_MAX - offset) {
			mke_error("safetensors: total tensor size overflows");
			goto out;
		}
		if (i || w->nmeta > 0)
			sb_puts(&hb, ",");
		sb_json_string(&hb, t->name);
		sb_puts(&hb, ":{\"dtype\":\"");
		sb_puts(&hb, dtype_name[t->dtype]);
		sb_puts(&hb, "\",\"shape\":[");
		for (int d = 0; d < t->ndim; d++) {
			if (d)
				sb_puts(&hb, ",");
			sb_u64(&hb, (uint64_t)t->shape[d]);
		}
		sb_puts(&hb, "],\"data_offsets\":[");
		sb_u64(&hb, offset);
		sb_puts(&hb, ",");
		sb_u64(&hb, offset + nb);
		sb_puts(&hb, "]}");
		offset += nb;
	}
	sb_puts(&hb, "}");
	while (hb.n % 8)
		sb_puts(&hb, " ");

	if (offset > SIZE_MAX - 8 - hb.n) {
		mke_error("safetensors: total file size overflows");
		goto out;
	}
	size_t total = 8 + hb.n + offset;
	unsigned char *buf = xmalloc(total);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hb.n >> (8 * i));
	memcpy(buf + 8, hb.p, hb.n);
	unsigned char *d = buf + 8 + hb.n;
	for (int i = 0; i < n; i++) {
		size_t nb = nbytes[order[i] - w->t];
		if (nb)
			memcpy(d, order[i]->data, nb);
		d += nb;
	}
	*out = (char *)buf;
	*len = total;
	rc = 0;
out:
	free(hb.p);
	free(meta);
	free(nbytes);
	free(order);
	return rc;
}

int st_writer_write(const struct st_writer *w, const char *path)
{
	char *buf;
	size_t len;
	if (st_writer_serialize(w, &buf, &len) != 0)
		return mke_error("safetensors '%s': not written", path);
	int rc = write_file_atomic(path, buf, len, 0640);
	free(buf);
	return rc;
}
