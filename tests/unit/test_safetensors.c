/*
 * test_safetensors.c - the reader on a file laid out by the reference
 * serializer (tests/fixtures/gen_formats.py, from torch tensors), the writer
 * byte for byte against that file and against hand-built bytes, and every
 * hostile-header rejection, with the message checked.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"
#include "util.h"

static char *fixture(const char *name)
{
	return path_join(test_fixtures(), name);
}

static unsigned char *unhex(const char *s, size_t *n)
{
	size_t len = strcmp(s, "-") == 0 ? 0 : strlen(s) / 2;
	unsigned char *b = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		b[i] = (unsigned char)v;
	}
	b[len] = '\0';
	*n = len;
	return b;
}

/* st_torch_expect.txt, parsed: what gen_formats.py put into the file. */
struct expect_tensor {
	char name[64], dtype[8];
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	unsigned char *raw, *f32;
	size_t nraw, nf32;
};

struct expect {
	int nt, nm;
	struct expect_tensor t[32];
	unsigned char *mk[8], *mv[8];
};

static int load_expect(struct expect *e)
{
	memset(e, 0, sizeof(*e));
	char *path = fixture("st_torch_expect.txt");
	size_t len;
	char *text = read_file(path, &len);
	free(path);
	if (!text)
		return -1;
	char *sl = NULL;
	for (char *line = strtok_r(text, "\n", &sl); line; line = strtok_r(NULL, "\n", &sl)) {
		char *st = NULL;
		const char *kind = strtok_r(line, " ", &st);
		size_t n;
		if (strcmp(kind, "meta") == 0 && e->nm < 8) {
			e->mk[e->nm] = unhex(strtok_r(NULL, " ", &st), &n);
			e->mv[e->nm] = unhex(strtok_r(NULL, " ", &st), &n);
			e->nm++;
		} else if (strcmp(kind, "tensor") == 0 && e->nt < 32) {
			struct expect_tensor *t = &e->t[e->nt++];
			snprintf(t->name, sizeof(t->name), "%s", strtok_r(NULL, " ", &st));
			snprintf(t->dtype, sizeof(t->dtype), "%s", strtok_r(NULL, " ", &st));
			t->ndim = atoi(strtok_r(NULL, " ", &st));
			for (int i = 0; i < t->ndim; i++)
				t->shape[i] = atoll(strtok_r(NULL, " ", &st));
			t->raw = unhex(strtok_r(NULL, " ", &st), &t->nraw);
			t->f32 = unhex(strtok_r(NULL, " ", &st), &t->nf32);
		}
	}
	free(text);
	return 0;
}

static void free_expect(struct expect *e)
{
	for (int i = 0; i < e->nt; i++) {
		free(e->t[i].raw);
		free(e->t[i].f32);
	}
	for (int i = 0; i < e->nm; i++) {
		free(e->mk[i]);
		free(e->mv[i]);
	}
}

static enum st_dtype dtype_of(const char *s)
{
	static const char *names[] = { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL" };
	for (int i = 0; i < 10; i++)
		if (strcmp(s, names[i]) == 0)
			return (enum st_dtype)i;
	return (enum st_dtype)-1;
}

/* Every tensor and metadata entry of the torch fixture, read back. */
static void test_read_torch_file(void)
{
	struct expect e;
	CHECK(load_expect(&e) == 0);
	CHECK(e.nt == 11 && e.nm == 2);
	char *path = fixture("st_torch.safetensors");
	struct st_file st;
	CHECK(st_load(&st, path) == 0);
	CHECK(st.ntensors == e.nt && st.nmeta == e.nm);
	for (int i = 0; i < e.nt; i++) {
		const struct expect_tensor *x = &e.t[i];
		const struct st_tensor *t = st_find(&st, x->name);
		CHECK_MSG(t != NULL, "tensor %s", x->name);
		if (!t)
			continue;
		CHECK_MSG(t->dtype == dtype_of(x->dtype), "tensor %s", x->name);
		CHECK_MSG(t->ndim == x->ndim, "tensor %s", x->name);
		for (int d = 0; d < x->ndim && d < t->ndim; d++)
			CHECK(t->shape[d] == x->shape[d]);
		CHECK_MSG(t->nbytes == x->nraw && (x->nraw == 0 || memcmp(t->data, x->raw, x->nraw) == 0),
			  "tensor %s bytes", x->name);
		size_t n = x->nf32 / 4;
		float *f = xmalloc((n + 1) * sizeof(float));
		if (x->nf32) {
			CHECK(st_read_f32(&st, x->name, f, n) == 0);
			CHECK_MSG(memcmp(f, x->f32, x->nf32) == 0, "tensor %s as float32", x->name);
		} else if (x->nraw) {
			size_t count = 1;
			for (int d = 0; d < x->ndim; d++)
				count *= (size_t)x->shape[d];
			free(f);
			f = xmalloc(count * sizeof(float));
			capture_begin();
			int rc = st_read_f32(&st, x->name, f, count);
			char *msg = capture_end();
			CHECK_MSG(rc == -1 && strstr(msg, "not a floating-point type"), "%s: %s",
				  x->name, msg);
			free(msg);
		}
		free(f);
	}
	for (int i = 0; i < e.nm; i++) {
		int found = 0;
		for (int j = 0; j < st.nmeta; j++)
			if (strcmp(st.meta_keys[j], (char *)e.mk[i]) == 0)
				found = strcmp(st.meta_vals[j], (char *)e.mv[i]) == 0;
		CHECK_MSG(found, "metadata '%s'", (char *)e.mk[i]);
	}
	/* listed in data order: the reference order (I64, F64, F32.., BOOL) */
	static const char *order[] = { "z.step", "c.double", "b.scalar", "layer.bias",
				       "layer.empty", "layer.weight", "i.count", "a.bf16",
				       "a.half", "ids", "mask" };
	for (int i = 0; i < st.ntensors && i < 11; i++)
		CHECK_MSG(strcmp(st.tensors[i].name, order[i]) == 0, "position %d: %s", i,
			  st.tensors[i].name);
	st_release(&st);
	free(path);
	free_expect(&e);
}

/* The C writer, given the same tensors and metadata in another order, must
 * write the fixture's exact bytes. */
static void test_write_matches_reference(void)
{
	struct expect e;
	CHECK(load_expect(&e) == 0);
	char *path = fixture("st_torch.safetensors");
	size_t want_len;
	char *want = read_file(path, &want_len);
	CHECK(want != NULL);

	struct st_writer w;
	st_writer_init(&w);
	for (int i = e.nm - 1; i >= 0; i--)
		st_writer_meta(&w, (char *)e.mk[i], (char *)e.mv[i]);
	for (int i = 0; i < e.nt; i++)
		st_writer_add(&w, e.t[i].name, dtype_of(e.t[i].dtype), e.t[i].ndim, e.t[i].shape,
			      e.t[i].raw);
	char *out;
	size_t len;
	CHECK(st_writer_serialize(&w, &out, &len) == 0);
	CHECK_MSG(want && len == want_len && memcmp(out, want, len) == 0,
		  "C writer output (%zu bytes) differs from st_torch.safetensors (%zu bytes)", len,
		  want_len);
	free(out);
	st_writer_release(&w);
	free(want);
	free(path);
	free_expect(&e);
}

/* Hand-built: one F32 tensor "w" = [1, -2]. The header JSON is 54 bytes,
 * padded with 2 spaces to 56 (0x38); data offsets [0, 8]. */
static const char tiny[] =
	"\x38\x00\x00\x00\x00\x00\x00\x00"
	"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
	"\x00\x00\x80\x3f"   /* 1.0f */
	"\x00\x00\x00\xc0";  /* -2.0f */

static void test_tiny_hand_built(void)
{
	float v[2] = { 1.0f, -2.0f };
	int64_t shape[1] = { 2 };
	struct st_writer w;
	st_writer_init(&w);
	st_writer_add(&w, "w", ST_F32, 1, shape, v);
	char *out;
	size_t len;
	CHECK(st_writer_serialize(&w, &out, &len) == 0);
	CHECK(len == sizeof(tiny) - 1 && memcmp(out, tiny, len) == 0);
	free(out);
	st_writer_release(&w);

	struct st_file st;
	CHECK(st_parse(&st, tiny, sizeof(tiny) - 1, "tiny") == 0);
	float f[2];
	CHECK(st.ntensors == 1 && st_read_f32(&st, "w", f, 2) == 0);
	CHECK(f[0] == 1.0f && f[1] == -2.0f);
	st_release(&st);

	/* No tensors, one metadata key: the vector from the Rust library's
	 * test_empty (35 bytes of JSON + 5 spaces). */
	static const char meta_only[] = "\x28\x00\x00\x00\x00\x00\x00\x00"
					"{\"__metadata__\":{\"framework\":\"pt\"}}     ";
	st_writer_init(&w);
	st_writer_meta(&w, "framework", "tf");
	st_writer_meta(&w, "framework", "pt");   /* replaces */
	CHECK(st_writer_serialize(&w, &out, &len) == 0);
	CHECK(len == sizeof(meta_only) - 1 && memcmp(out, meta_only, len) == 0);
	free(out);
	st_writer_release(&w);
	CHECK(st_parse(&st, meta_only, sizeof(meta_only) - 1, "meta") == 0);
	CHECK(st.ntensors == 0 && st.nmeta == 1 && strcmp(st.meta_vals[0], "pt") == 0);
	st_release(&st);

	/* No tensors, no metadata: "{}" + 6 spaces. */
	st_writer_init(&w);
	CHECK(st_writer_serialize(&w, &out, &len) == 0);
	CHECK(len == 16 && memcmp(out, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
	free(out);
	st_writer_release(&w);
}

/* Names and metadata with bytes JSON must escape, as serde_json does. */
static void test_escapes(void)
{
	uint8_t one = 1;
	int64_t shape[1] = { 1 };
	struct st_writer w;
	st_writer_init(&w);
	st_writer_add(&w, "a\"b\\c\x1f/\xc3\xa9", ST_U8, 1, shape, &one);
	st_writer_meta(&w, "k\n", "v\t\x01");
	char *out;
	size_t len;
	CHECK(st_writer_serialize(&w, &out, &len) == 0);
	const char *hdr = "{\"__metadata__\":{\"k\\n\":\"v\\t\\u0001\"},"
			  "\"a\\\"b\\\\c\\u001f/\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
	CHECK(len > 8 && memcmp(out + 8, hdr, strlen(hdr)) == 0);
	struct st_file st;
	CHECK(st_parse(&st, out, len, "esc") == 0);
	CHECK(st_find(&st, "a\"b\\c\x1f/\xc3\xa9") != NULL);
	CHECK(st.nmeta == 1 && strcmp(st.meta_keys[0], "k\n") == 0 &&
	      strcmp(st.meta_vals[0], "v\t\x01") == 0);
	st_release(&st);
	free(out);
	st_writer_release(&w);
}

static void test_file_roundtrip(void)
{
	float a[6] = { 1, 2, 3, 4, 5, 6 };
	double b[2] = { 0.5, 1e300 };
	int64_t sa[2] = { 2, 3 }, sb[1] = { 2 };
	char path[] = "/tmp/mke_test_st_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	struct st_writer w;
	st_writer_init(&w);
	st_writer_add(&w, "a", ST_F32, 2, sa, a);
	st_writer_add(&w, "b", ST_F64, 1, sb, b);
	CHECK(st_writer_write(&w, path) == 0);
	st_writer_release(&w);

	struct st_file st;
	CHECK(st_load(&st, path) == 0);
	float f[6];
	CHECK(st_read_f32(&st, "a", f, 6) == 0 && memcmp(f, a, sizeof(a)) == 0);
	CHECK(st_read_f32(&st, "b", f, 2) == 0 && f[0] == 0.5f && isinf(f[1]));
	/* the F64 tensor comes first and every tensor is aligned */
	CHECK(strcmp(st.tensors[0].name, "b") == 0);
	for (int i = 0; i < st.ntensors; i++)
		CHECK(((uintptr_t)st.tensors[i].data) % 8 == 0);
	capture_begin();
	int r1 = st_read_f32(&st, "a", f, 5);
	int r2 = st_read_f32(&st, "nope", f, 1);
	char *msg = capture_end();
	CHECK(r1 == -1 && r2 == -1);
	CHECK_MSG(strstr(msg, path) && strstr(msg, "has 6 elements, expected 5") &&
		  strstr(msg, "no tensor 'nope'"), "%s", msg);
	free(msg);
	st_release(&st);
	unlink(path);

	capture_begin();
	int rc = st_load(&st, "/nonexistent/x.safetensors");
	msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "/nonexistent/x.safetensors"));
	free(msg);
	st_release(&st);
}

static void writer_reject(int line, struct st_writer *w, const char *want)
{
	char *out = NULL;
	size_t len = 0;
	capture_begin();
	int rc = st_writer_serialize(w, &out, &len);
	char *msg = capture_end();
	CHECK_MSG(rc == -1 && out == NULL, "line %d: accepted", line);
	CHECK_MSG(strstr(msg, want), "line %d: message '%s' lacks '%s'", line, msg, want);
	free(msg);
	free(out);
	st_writer_release(w);
}

static void test_writer_rejects(void)
{
	float v[4] = { 0 };
	int64_t s1[1] = { 4 }, neg[1] = { -1 }, big[3] = { INT64_MAX, INT64_MAX, 2 };
	struct st_writer w;

	st_writer_init(&w);
	st_writer_add(&w, "x", ST_F32, 1, s1, v);
	st_writer_add(&w, "x", ST_F16, 1, s1, v);
	writer_reject(__LINE__, &w, "'x' added twice");

	st_writer_init(&w);
	st_writer_add(&w, "x", ST_F32, 1, neg, v);
	writer_reject(__LINE__, &w, "negative dimension");

	st_writer_init(&w);
	st_writer_add(&w, "x", ST_F32, 3, big, v);
	writer_reject(__LINE__, &w, "overflows");

	st_writer_init(&w);
	st_writer_add(&w, "x", ST_F32, ST_MAX_DIMS + 1, s1, v);
	writer_reject(__LINE__, &w, "dimensions");

	st_writer_init(&w);
	st_writer_add(&w, "__metadata__", ST_F32, 1, s1, v);
	writer_reject(__LINE__, &w, "cannot be a tensor name");

	st_writer_init(&w);
	st_writer_add(&w, "bad\xff", ST_F32, 1, s1, v);
	writer_reject(__LINE__, &w, "not valid UTF-8");

	st_writer_init(&w);
	st_writer_meta(&w, "k", "\xc0\x80");   /* overlong NUL */
	writer_reject(__LINE__, &w, "not valid UTF-8");

	st_writer_init(&w);
	st_writer_add(&w, "x", ST_F32, 1, s1, NULL);
	writer_reject(__LINE__, &w, "no data");
}

/* ---- hostile input ---------------------------------------------------- */

static void reject_bytes(int line, const void *buf, size_t len, const char *want)
{
	struct st_file st;
	capture_begin();
	int rc = st_parse(&st, buf, len, "hostile.safetensors");
	char *msg = capture_end();
	CHECK_MSG(rc == -1, "line %d: accepted", line);
	CHECK_MSG(strstr(msg, "safetensors 'hostile.safetensors'") && strstr(msg, want),
		  "line %d: message '%s' lacks '%s'", line, msg, want);
	CHECK(st.buf == NULL && st.tensors == NULL);
	st_release(&st);
	free(msg);
}

/* A file whose header is json (length field = its length) followed by
 * datalen zero bytes. */
static void reject_json(int line, const char *json, size_t datalen, const char *want)
{
	size_t hl = strlen(json), len = 8 + hl + datalen;
	unsigned char *b = xcalloc(len, 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, json, hl);
	reject_bytes(line, b, len, want);
	free(b);
}

#define REJECT(json, datalen, want) reject_json(__LINE__, json, datalen, want)
#define T(name, dtype, shape, offs) \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static void test_hostile_length(void)
{
	unsigned char b[16] = { 0 };
	reject_bytes(__LINE__, b, 7, "too short");
	b[0] = 9;   /* header of 9 bytes in a 16-byte file */
	reject_bytes(__LINE__, b, 16, "runs past the end");
	memset(b, 0xff, 8);
	reject_bytes(__LINE__, b, 16, "100 MB");
	memset(b, 0, 8);
	b[0] = 0x01, b[1] = 0xe1, b[2] = 0xf5, b[3] = 0x05;   /* 100000001 */
	reject_bytes(__LINE__, b, 16, "100 MB");
}

static void test_hostile_json(void)
{
	REJECT("[1,2]", 0, "not a JSON object");
	REJECT("", 0, "not a JSON object");
	REJECT("{\"a\":", 0, "not valid JSON");
	REJECT("{} x", 0, "after the JSON object");
	REJECT("{}\x01", 0, "after the JSON object");
	REJECT("{\"\xff\":1}", 0, "not valid UTF-8");
	REJECT("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8");   /* a surrogate */
	REJECT("{\"a\":[]}", 0, "entry is not an object");
	REJECT("{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, "dtype is missing");
	REJECT("{" T("a", "F128", "[1]", "[0,4]") "}", 4, "unknown dtype 'F128'");
	REJECT("{" T("a", "U16", "[1]", "[0,2]") "}", 2, "unknown dtype 'U16'");
	REJECT("{" T("a", "F32", "1", "[0,4]") "}", 4, "shape is missing or not an array");
	REJECT("{" T("a", "F32", "[-1]", "[0,4]") "}", 4, "not a non-negative integer");
	REJECT("{" T("a", "F32", "[1.5]", "[0,4]") "}", 4, "not a non-negative integer");
	REJECT("{" T("a", "F32", "[\"1\"]", "[0,4]") "}", 4, "not a non-negative integer");
	REJECT("{" T("a", "F32", "[1e300]", "[0,4]") "}", 4, "not a non-negative integer");
	REJECT("{" T("a", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "9 dimensions");
	REJECT("{" T("a", "F32", "[4294967296,4294967296,4294967296]", "[0,4]") "}", 4,
	       "overflows");
	REJECT("{" T("a", "F64", "[4294967296,4294967296]", "[0,4]") "}", 4, "overflows");
	REJECT("{" T("a", "F32", "[1]", "[0]") "}", 4, "not [begin, end]");
	REJECT("{" T("a", "F32", "[1]", "[0,4,8]") "}", 4, "not [begin, end]");
	REJECT("{" T("a", "F32", "[1]", "\"0,4\"") "}", 4, "not [begin, end]");
	REJECT("{" T("a", "F32", "[1]", "[-4,0]") "}", 4, "not [begin, end]");
	REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "not [begin, end]");
	REJECT("{" T("a", "F32", "[1]", "[8,4]") "}", 8, "begin after end");
	REJECT("{" T("a", "F32", "[1]", "[0,4]") "}", 3, "beyond the data section");
	REJECT("{" T("a", "F32", "[1]", "[0,18446744073709551615]") "}", 3, "not [begin, end]");
	REJECT("{" T("a", "F32", "[2]", "[0,4]") "}", 4, "span 4 bytes but F32 with this shape needs 8");
	REJECT("{" T("a", "F32", "[]", "[0,8]") "}", 8, "needs 4");
	REJECT("{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[1]", "[4,8]") "}", 8,
	       "'a' and 'b' overlap");
	REJECT("{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[0]", "[4,4]") "}", 8,
	       "overlap");
	REJECT("{" T("a", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[8,12]") "}", 12,
	       "4 bytes before tensor 'b' belong to no tensor");
	REJECT("{" T("a", "F32", "[1]", "[0,4]") "}", 8, "4 bytes at the end");
	REJECT("{" T("a", "F32", "[1]", "[0,4]") "," T("a", "F32", "[1]", "[4,8]") "}", 8,
	       "'a' appears twice");
	REJECT("{\"__metadata__\":{\"k\":1}}", 0, "value for 'k' is not a string");
	REJECT("{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is not an object");
	REJECT("{\"__metadata__\":null}", 0, "__metadata__ is not an object");
	REJECT("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "key 'k' appears twice");
	REJECT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");

	/* what the reference reader accepts: tensors in any header order,
	 * zero-size tensors, scalars, trailing spaces, unknown extra keys */
	static const char ok[] = "{" T("b", "F32", "[1]", "[4,8]") "," T("e", "I8", "[0,5]", "[8,8]")
				 "," T("a", "F32", "[]", "[0,4]") ",\"x\":{\"dtype\":\"U8\",\"shape\":[1],"
				 "\"data_offsets\":[8,9],\"extra\":true}}   \n";
	size_t hl = strlen(ok), len = 8 + hl + 9;
	unsigned char *b = xcalloc(len, 1);
	b[0] = (unsigned char)hl;
	memcpy(b + 8, ok, hl);
	struct st_file st;
	CHECK(st_parse(&st, b, len, "ok") == 0);
	CHECK(st.ntensors == 4 && strcmp(st.tensors[0].name, "a") == 0 &&
	      strcmp(st.tensors[1].name, "b") == 0 && st.tensors[0].ndim == 0);
	const struct st_tensor *e = st_find(&st, "e");
	CHECK(e && e->nbytes == 0 && e->ndim == 2 && e->shape[1] == 5);
	st_release(&st);
	free(b);
}

int main(void)
{
	RUN(test_read_torch_file);
	RUN(test_write_matches_reference);
	RUN(test_tiny_hand_built);
	RUN(test_escapes);
	RUN(test_file_roundtrip);
	RUN(test_writer_rejects);
	RUN(test_hostile_length);
	RUN(test_hostile_json);
	return test_summary();
}
