/*
 * test_npy.c - the .npy reader against files numpy wrote (every dtype, byte
 * order and format version), the writer byte for byte against numpy.save
 * (float32 and float16, including pseudo-label-like N x C probabilities),
 * float16 rounding, and rejection of hostile headers.
 * Fixtures: tests/fixtures/gen_formats.py.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"
#include "test.h"
#include "util.h"

static char *fixture(const char *name)
{
	return path_join(test_fixtures(), name);
}

/* Decode hex (or "-" for nothing) into a malloc'd buffer; *n gets its size. */
static unsigned char *unhex(const char *s, size_t *n)
{
	size_t len = strcmp(s, "-") == 0 ? 0 : strlen(s) / 2;
	unsigned char *b = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		b[i] = (unsigned char)v;
	}
	*n = len;
	return b;
}

/* stderr capture, to check what an error message says */

/* Every line of npy_expect.txt: <file> <ndim> <dims..> <float32 LE hex>. */
static void test_read_numpy_files(void)
{
	char *path = fixture("npy_expect.txt");
	size_t len;
	char *text = read_file(path, &len);
	CHECK(text != NULL);
	if (!text) {
		free(path);
		return;
	}
	int files = 0;
	char *save_line = NULL;
	for (char *line = strtok_r(text, "\n", &save_line); line;
	     line = strtok_r(NULL, "\n", &save_line)) {
		char *save_tok = NULL;
		const char *name = strtok_r(line, " ", &save_tok);
		int ndim = atoi(strtok_r(NULL, " ", &save_tok));
		int64_t shape[NPY_MAX_DIMS];
		for (int i = 0; i < ndim; i++)
			shape[i] = atoll(strtok_r(NULL, " ", &save_tok));
		size_t nbytes;
		unsigned char *want = unhex(strtok_r(NULL, " ", &save_tok), &nbytes);

		char *fp = fixture(name);
		struct npy_array a;
		int rc = npy_load(&a, fp);
		CHECK_MSG(rc == 0, "%s", name);
		if (rc == 0) {
			CHECK_MSG(a.ndim == ndim, "%s", name);
			for (int i = 0; i < ndim && i < a.ndim; i++)
				CHECK_MSG(a.shape[i] == shape[i], "%s dim %d", name, i);
			CHECK_MSG(a.count * 4 == nbytes, "%s", name);
			if (a.count * 4 == nbytes)
				CHECK_MSG(memcmp(a.data, want, nbytes) == 0, "%s values differ", name);
		}
		npy_release(&a);
		free(fp);
		free(want);
		files++;
	}
	CHECK(files >= 20);
	free(text);
	free(path);
}

static void test_specific_values(void)
{
	struct npy_array a;
	char *p = fixture("npy_be_i8.npy");
	CHECK(npy_load(&a, p) == 0);
	CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.count == 6);
	CHECK(a.data[0] == (float)(-(1LL << 40) - 3));
	CHECK(a.data[4] == -128.0f);
	npy_release(&a);
	free(p);

	p = fixture("npy_scalar_f8.npy");
	CHECK(npy_load(&a, p) == 0);
	CHECK(a.ndim == 0 && a.count == 1 && a.data[0] == -7.25f);
	npy_release(&a);
	free(p);

	p = fixture("npy_empty_f4.npy");
	CHECK(npy_load(&a, p) == 0);
	CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 0 && a.count == 0);
	npy_release(&a);
	free(p);

	p = fixture("npy_le_u2.npy");
	CHECK(npy_load(&a, p) == 0);
	CHECK(a.count == 6 && a.data[5] == 65535.0f);
	npy_release(&a);
	free(p);
}

static void test_fortran_refused(void)
{
	struct npy_array a;
	char *p = fixture("npy_fortran_f4.npy");
	capture_begin();
	int rc = npy_load(&a, p);
	char *msg = capture_end();
	CHECK(rc == -1);
	CHECK_MSG(strstr(msg, "npy_fortran_f4.npy") && strstr(msg, "fortran_order"), "%s", msg);
	CHECK(a.data == NULL);
	npy_release(&a);
	free(msg);
	free(p);
}

/* Load a numpy-written file, serialize its data with the C writer, and
 * compare with the bytes of `want` (the same file, or its float16 twin). */
static void check_writer_matches(const char *src, const char *want, int half)
{
	char *ps = fixture(src), *pw = fixture(want);
	struct npy_array a;
	size_t wlen = 0;
	char *wbytes = read_file(pw, &wlen);
	CHECK_MSG(npy_load(&a, ps) == 0 && wbytes, "%s", src);
	if (a.data && wbytes) {
		char *out;
		size_t len;
		CHECK(npy_serialize(a.data, a.ndim, a.shape, half, &out, &len) == 0);
		CHECK_MSG(len == wlen && memcmp(out, wbytes, len) == 0,
			  "C writer output for %s (half=%d) differs from numpy's %s", src, half, want);
		free(out);
	}
	npy_release(&a);
	free(wbytes);
	free(ps);
	free(pw);
}

static void test_writer_matches_numpy_save(void)
{
	check_writer_matches("npy_save_f4_2d.npy", "npy_save_f4_2d.npy", 0);
	check_writer_matches("npy_save_f4_1d.npy", "npy_save_f4_1d.npy", 0);
	check_writer_matches("npy_save_f4_0d.npy", "npy_save_f4_0d.npy", 0);
	check_writer_matches("npy_save_f4_3d.npy", "npy_save_f4_3d.npy", 0);
	check_writer_matches("npy_save_f4_bigdim.npy", "npy_save_f4_bigdim.npy", 0);
}

/* Pseudo-labels are N x C probabilities written by the C writer and read by
 * numpy: the output must be what numpy.save writes for the same data. */
static void test_pseudo_labels(void)
{
	check_writer_matches("npy_pl_f4.npy", "npy_pl_f4.npy", 0);
	check_writer_matches("npy_pl_f4.npy", "npy_pl_f2.npy", 1);

	struct npy_array a, h;
	char *pa = fixture("npy_pl_f4.npy"), *ph = fixture("npy_pl_f2.npy");
	CHECK(npy_load(&a, pa) == 0 && npy_load(&h, ph) == 0);
	if (a.data && h.data) {
		CHECK(a.ndim == 2 && a.shape[0] == 37 && a.shape[1] == 10);
		CHECK(h.count == a.count);
		for (int64_t r = 0; r < a.shape[0]; r++) {
			double s = 0;
			for (int64_t c = 0; c < a.shape[1]; c++)
				s += a.data[r * a.shape[1] + c];
			CHECK_NEAR(s, 1.0, 1e-5);
		}
		for (size_t i = 0; i < a.count && i < h.count; i++)
			CHECK_NEAR(h.data[i], a.data[i], 1e-3 * a.data[i] + 6e-8);
	}
	npy_release(&a);
	npy_release(&h);
	free(pa);
	free(ph);
}

static void test_half_rounding(void)
{
	check_writer_matches("npy_half_edge_f4.npy", "npy_half_edge_f2.npy", 1);

	/* every finite half survives half -> float -> half */
	int bad = 0;
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;
		if (npy_float_to_half(npy_half_to_float((uint16_t)h)) != h)
			bad++;
	}
	CHECK(bad == 0);
	CHECK(npy_half_to_float(0x3c00) == 1.0f);
	CHECK(npy_half_to_float(0x0001) == 0x1p-24f);
	CHECK(npy_half_to_float(0x7bff) == 65504.0f);
	CHECK(npy_float_to_half(1.0f + 0x1p-11f) == 0x3c00);   /* tie to even (down) */
	CHECK(npy_float_to_half(1.0f + 0x3p-11f) == 0x3c02);   /* tie to even (up) */
	CHECK(npy_float_to_half(65520.0f) == 0x7c00);          /* overflow -> inf */
	CHECK(npy_float_to_half(0x1p-25f) == 0x0000);          /* tie to even -> 0 */
	CHECK(npy_float_to_half(-0x1.8p-25f) == 0x8001);
	CHECK(npy_float_to_half(NAN) != 0x7c00 && (npy_float_to_half(NAN) & 0x7c00) == 0x7c00);
}

static void test_save_load_roundtrip(void)
{
	float v[6] = { 0.25f, -1.0f, 3.0f, 1e-3f, 0.0f, 7.5f };
	int64_t shape[2] = { 3, 2 };
	char path[] = "/tmp/mke_test_npy_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK(npy_save(path, v, 2, shape, 0) == 0);
	struct npy_array a;
	CHECK(npy_load(&a, path) == 0);
	CHECK(a.ndim == 2 && a.shape[0] == 3 && a.shape[1] == 2 && a.count == 6);
	CHECK(a.data && memcmp(a.data, v, sizeof(v)) == 0);
	npy_release(&a);

	CHECK(npy_save(path, v, 2, shape, 1) == 0);
	CHECK(npy_load(&a, path) == 0);
	for (size_t i = 0; a.data && i < 6; i++)
		CHECK_NEAR(a.data[i], v[i], 1e-3 * fabs(v[i]));
	npy_release(&a);
	unlink(path);

	int64_t bad[1] = { -1 };
	char *out = NULL;
	size_t len;
	capture_begin();
	int rc = npy_serialize(v, 1, bad, 0, &out, &len);
	char *msg = capture_end();
	CHECK(rc == -1 && out == NULL && strstr(msg, "negative"));
	free(msg);
}

/* A .npy file with the given version and header text followed by datalen
 * zero bytes; the caller frees it. */
static unsigned char *mk_npy(int major, const char *header, size_t datalen, size_t *len)
{
	size_t hl = strlen(header), pre = major == 1 ? 10 : 12;
	*len = pre + hl + datalen;
	unsigned char *b = xcalloc(*len, 1);
	memcpy(b, "\x93NUMPY", 6);
	b[6] = (unsigned char)major;
	for (size_t i = 0; i < pre - 8; i++)
		b[8 + i] = (unsigned char)(hl >> (8 * i));
	memcpy(b + pre, header, hl);
	return b;
}

/* Parsing must fail and the message must name the source and contain want. */
static void check_reject(int line, const void *buf, size_t len, const char *want)
{
	struct npy_array a;
	capture_begin();
	int rc = npy_parse(&a, buf, len, "hostile.npy");
	char *msg = capture_end();
	CHECK_MSG(rc == -1, "line %d: accepted", line);
	CHECK_MSG(strstr(msg, "hostile.npy") && strstr(msg, want),
		  "line %d: message '%s' lacks '%s'", line, msg, want);
	CHECK(a.data == NULL);
	npy_release(&a);
	free(msg);
}

static void reject_hdr(int line, int major, const char *header, size_t datalen, const char *want)
{
	size_t len;
	unsigned char *b = mk_npy(major, header, datalen, &len);
	check_reject(line, b, len, want);
	free(b);
}

#define REJECT(major, hdr, datalen, want) reject_hdr(__LINE__, major, hdr, datalen, want)
#define D(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }\n"

static void test_hostile_headers(void)
{
	size_t len;
	/* the good one, to show the helper builds valid files */
	unsigned char *b = mk_npy(1, D("(2, 3)"), 24, &len);
	struct npy_array a;
	CHECK(npy_parse(&a, b, len, "ok") == 0 && a.count == 6);
	npy_release(&a);
	check_reject(__LINE__, b, len - 1, "shape needs 24");
	check_reject(__LINE__, b, 9, "bad magic");
	b[0] = 'x';
	check_reject(__LINE__, b, len, "bad magic");
	b[0] = 0x93;
	b[6] = 4;
	check_reject(__LINE__, b, len, "version 4.0");
	b[6] = 1;
	b[8] = 0xff;
	b[9] = 0x00;
	check_reject(__LINE__, b, len, "past the end");
	b[9] = 0xff;
	check_reject(__LINE__, b, len, "longer than numpy's limit");
	free(b);

	/* versions 2.0 and 3.0 have a 4-byte length */
	b = mk_npy(3, D("(2,)"), 8, &len);
	CHECK(npy_parse(&a, b, len, "ok") == 0 && a.count == 2);
	npy_release(&a);
	free(b);

	REJECT(1, D("(2, 3)"), 23, "shape needs 24");
	REJECT(1, D("(4611686018427387904, 4)"), 16, "overflows");
	REJECT(1, D("(4294967296, 4294967296)"), 16, "overflows");
	REJECT(1, D("(99999999999999999999,)"), 16, "too large");
	REJECT(1, D("(-1,)"), 16, "negative");
	REJECT(1, D("(2)"), 16, "trailing comma");
	REJECT(1, D("[2]"), 16, "not a tuple");
	REJECT(1, D("(2,,)"), 16, "does not parse");
	REJECT(1, D("(2 3)"), 16, "does not parse");
	REJECT(1, D("(02,)"), 16, "does not parse");
	REJECT(1, D("(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 16, "more than 8");
	REJECT(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, "fortran_order");
	REJECT(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, "True or False");
	REJECT(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype '<c8'");
	REJECT(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype");
	REJECT(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype");
	REJECT(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 16, "structured");
	REJECT(1, "{'descr': '<f4', 'shape': (2,), }", 8, "lacks 'fortran_order'");
	REJECT(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unexpected key 'x'");
	REJECT(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "twice");
	REJECT(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, "garbage");
	REJECT(1, "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", 8, "does not parse");
	REJECT(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8, "does not parse");
	REJECT(1, "{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "does not parse");
	REJECT(1, "", 8, "not a dictionary");
	REJECT(2, "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", 8, "True or False");

	/* what numpy accepts beyond what it writes: double quotes, no trailing
	 * comma, other key order, big-endian one-byte types with '<' */
	b = mk_npy(1, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": '<u1'}", 3, &len);
	CHECK(npy_parse(&a, b, len, "ok") == 0 && a.count == 3);
	npy_release(&a);
	free(b);
}

int main(void)
{
	RUN(test_read_numpy_files);
	RUN(test_specific_values);
	RUN(test_fortran_refused);
	RUN(test_writer_matches_numpy_save);
	RUN(test_pseudo_labels);
	RUN(test_half_rounding);
	RUN(test_save_load_roundtrip);
	RUN(test_hostile_headers);
	return test_summary();
}
