/* test_manifest.c - the CSV reader (good and bad rows, line numbers across
 * quoted line breaks, header errors) and dataset decoding (inline, npy,
 * labels, quarantine), plus the TwoMoon manifest. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "manifest.h"
#include "npy.h"
#include "test.h"
#include "util.h"

static int parse_str(struct manifest *m, const char *text, char **err)
{
	capture_begin();
	int rc = manifest_parse(m, text, strlen(text), "data/u.csv");
	*err = capture_end();
	return rc;
}

static int has_line(const char *err, const char *line)
{
	char *want = xasprintf("%s\n", line);
	const char *p = err;
	int found = 0;
	while (!found && (p = strstr(p, want)) != NULL) {
		found = p == err || p[-1] == '\n';
		p++;
	}
	if (!found)
		fprintf(stderr, "  missing line \"%s\" in:\n%s", line, err);
	free(want);
	return found;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- the CSV reader ------------------------------------------------------ */

/* Manifests the reader's tests and manifest_count's share. */

/* BOM, CRLF, no final newline, blank lines, quotes, lone CR. */
static const char t_syntax[] = "\xEF\xBB\xBF" "split,id,x\r\n"
			       "\r\n"
			       "train,\"a,1\",\"he said \"\"hi\"\"\"\r\n"
			       "\n"
			       "test,b,\"\"\r"
			       "test,c,";

static const char t_multiline[] = "id,note,x\n"               /* 1 */
				  "a,\"one\ntwo\nthree\",1\n" /* 2-4 */
				  "b,plain,2\n"               /* 5 */
				  "c,\"x\r\ny\",3\r\n"        /* 6-7 */
				  "d,too,many,4\n"            /* 8: bad */
				  "e,\"\n\n\",5\n"            /* 9-11 */
				  "f,short\n";                /* 12: bad */

static const char t_bad_rows[] = "id,label,split,x,y\n"       /* 1 */
				 "r1,0,u,1,2\n"               /* 2 */
				 "r2,0,u,1\n"                 /* 3: short */
				 ",0,u,1,2\n"                 /* 4: empty id */
				 "r1,1,u,3,4\n"               /* 5: duplicate */
				 "r3,0,u,ab\"c,2\n"           /* 6: stray quote */
				 "r4,0,u,\"ab\"c,2\n"         /* 7: text after quote */
				 "r5,1,u,5,6\n"               /* 8 */
				 "\"r6\",1,u,5,6,\n"          /* 9: trailing comma */
				 "r7,0,u,\"never\nclosed,1\n" /* 10: unterminated */
				 "r8,0,u,1,2\n";              /* 11: swallowed */

/* Header errors: each text and the error it gives. */
static const char *const t_headers[][2] = {
	{ "", "error: manifest 'data/u.csv' is empty: a header line is required" },
	{ "\xEF\xBB\xBF\n\r\n\n", "manifest 'data/u.csv' is empty" },
	{ "name,x\na,1\n", "error: manifest 'data/u.csv' has no 'id' column (columns: name, x)" },
	{ "id,x,y,x\n", "error: manifest 'data/u.csv' line 1: column 'x' appears twice in the "
		       "header (columns 2 and 4)" },
	{ "\nid,,y\n", "error: manifest 'data/u.csv' line 2: header column 2 has no name" },
	{ "id,\"x\n", "manifest 'data/u.csv' line 1: bad header: unterminated quote in column 2" },
};

/* A field over 1 MB (line 3) and a NUL byte (line 5); *n: its length. */
static char *long_field_text(size_t *n)
{
	size_t big = (1u << 20) + 10;
	char *t = xmalloc(big + 256);
	size_t k = 0;
	k += (size_t)sprintf(t + k, "id,x\nr1,1\nr2,");
	memset(t + k, '7', big);
	k += big;
	k += (size_t)sprintf(t + k, "\nr3,2\nr4,\"a");
	t[k++] = '\0';
	k += (size_t)sprintf(t + k, "b\"\nr5,3\n");
	*n = k;
	return t;
}

/* 30 rows with an empty id each (for the report cap). */
static char *empty_ids_text(void)
{
	char *t = xstrdup("id,x\n");
	for (int i = 0; i < 30; i++) {
		char *u = xasprintf("%s,%d\n", t, i);
		free(t);
		t = u;
	}
	return t;
}

static void test_simple(void)
{
	struct manifest m;
	char *err;
	CHECK(parse_str(&m, "id,label,x\nr1,0,1 2\nr2,1,3 4\n", &err) == 0);
	CHECK(err[0] == '\0');
	CHECK(m.ncols == 3 && m.nrows == 2 && m.nbad == 0);
	CHECK(m.id_col == 0 && m.label_col == 1 && m.split_col == -1);
	CHECK(manifest_col(&m, "x") == 2 && manifest_col(&m, "y") == -1);
	CHECK(strcmp(m.rows[1].cells[2], "3 4") == 0);
	CHECK(m.rows[0].line == 2 && m.rows[1].line == 3);
	CHECK(strcmp(m.path, "data/u.csv") == 0 && strcmp(m.dir, "data") == 0);
	manifest_release(&m);
	free(err);
}

/* BOM, CRLF, no final newline, blank lines, quotes, lone CR. */
static void test_syntax(void)
{
	struct manifest m;
	char *err;
	const char *t = t_syntax;
	CHECK(parse_str(&m, t, &err) == 0);
	CHECK(err[0] == '\0');
	CHECK(m.ncols == 3 && m.id_col == 1 && m.split_col == 0);
	CHECK(strcmp(m.cols[0], "split") == 0); /* BOM stripped */
	CHECK(m.nrows == 3 && m.nbad == 0);
	if (m.nrows == 3) {
		CHECK(strcmp(m.rows[0].cells[1], "a,1") == 0);
		CHECK(strcmp(m.rows[0].cells[2], "he said \"hi\"") == 0);
		CHECK(m.rows[0].line == 3);
		CHECK(strcmp(m.rows[1].cells[2], "") == 0 && m.rows[1].line == 5);
		CHECK(strcmp(m.rows[2].cells[1], "c") == 0 && m.rows[2].line == 6);
		CHECK(strcmp(m.rows[2].cells[2], "") == 0);
	}
	manifest_release(&m);
	free(err);
}

/* Line numbers stay right after fields that span lines (LF and CRLF). */
static void test_multiline_line_numbers(void)
{
	struct manifest m;
	char *err;
	const char *t = t_multiline;
	CHECK(parse_str(&m, t, &err) == 0);
	CHECK(m.nrows == 4 && m.nbad == 2);
	if (m.nrows == 4) {
		CHECK(m.rows[0].line == 2 && strcmp(m.rows[0].cells[1], "one\ntwo\nthree") == 0);
		CHECK(m.rows[1].line == 5);
		CHECK(m.rows[2].line == 6 && strcmp(m.rows[2].cells[1], "x\r\ny") == 0);
		CHECK(m.rows[3].line == 9 && strcmp(m.rows[3].cells[0], "e") == 0);
	}
	CHECK(has_line(err, "data/u.csv:8: expected 3 columns, got 4"));
	CHECK(has_line(err, "data/u.csv:12: expected 3 columns, got 2"));
	CHECK(has_line(err, "warning: manifest 'data/u.csv': 2 bad rows skipped, 4 read"));
	CHECK(count_lines(err) == 3);
	manifest_release(&m);
	free(err);
}

static void test_bad_rows(void)
{
	struct manifest m;
	char *err;
	const char *t = t_bad_rows;
	CHECK(parse_str(&m, t, &err) == 0);
	CHECK(m.nrows == 2 && m.nbad == 7);
	CHECK(m.nrows == 2 && strcmp(m.rows[1].cells[0], "r5") == 0 && m.rows[1].line == 8);
	CHECK(has_line(err, "data/u.csv:3: expected 5 columns, got 4"));
	CHECK(has_line(err, "data/u.csv:4: empty id"));
	CHECK(has_line(err, "data/u.csv:5: duplicate id 'r1' (first at line 2)"));
	CHECK(has_line(err, "data/u.csv:6: quote inside an unquoted field in column 'x' (quote "
			    "the whole field and double the quote)"));
	CHECK(has_line(err, "data/u.csv:7: unexpected text after the closing quote in column "
			    "'x'"));
	CHECK(has_line(err, "data/u.csv:9: expected 5 columns, got 6"));
	CHECK(has_line(err, "data/u.csv:10: unterminated quote in column 'x' (opened at line "
			    "10); the rest of the file is skipped"));
	CHECK(has_line(err, "warning: manifest 'data/u.csv': 7 bad rows skipped, 2 read"));
	CHECK(count_lines(err) == 8);
	manifest_release(&m);
	free(err);
}

/* A field over 1 MB and a NUL byte: reported, skipped, the rest read. */
static void test_long_field_and_nul(void)
{
	size_t n;
	char *t = long_field_text(&n);
	struct manifest m;
	capture_begin();
	int rc = manifest_parse(&m, t, n, "big.csv");
	char *err = capture_end();
	CHECK(rc == 0);
	CHECK(m.nrows == 3 && m.nbad == 2);
	CHECK(m.nrows == 3 && strcmp(m.rows[2].cells[0], "r5") == 0 && m.rows[2].line == 6);
	CHECK(has_line(err, "big.csv:3: field longer than 1 MB in column 'x'"));
	CHECK(has_line(err, "big.csv:5: NUL byte in column 'x'"));
	manifest_release(&m);
	free(err);
	free(t);
}

static void expect_header_error(const char *text, const char *want)
{
	struct manifest m;
	char *err;
	CHECK(parse_str(&m, text, &err) == -1);
	CHECK_MSG(strstr(err, want) != NULL, "wanted \"%s\", got: %s", want, err);
	CHECK(m.path == NULL && m.nrows == 0);
	manifest_release(&m);
	free(err);
}

static void test_header_errors(void)
{
	for (size_t i = 0; i < sizeof t_headers / sizeof t_headers[0]; i++)
		expect_header_error(t_headers[i][0], t_headers[i][1]);
	struct manifest m;
	capture_begin();
	int rc = manifest_load(&m, "/nonexistent/m.csv");
	char *err = capture_end();
	CHECK(rc == -1 && strstr(err, "'/nonexistent/m.csv'") != NULL);
	free(err);
	/* a header alone is a valid, empty manifest */
	CHECK(parse_str(&m, "id,x", &err) == 0 && m.nrows == 0 && m.nbad == 0);
	manifest_release(&m);
	free(err);
}

static void test_report_cap(void)
{
	char *t = empty_ids_text();
	int old = manifest_max_reports;
	manifest_max_reports = 5;
	struct manifest m;
	char *err;
	CHECK(parse_str(&m, t, &err) == 0);
	CHECK(m.nbad == 30 && m.nrows == 0);
	CHECK(has_line(err, "data/u.csv:6: empty id"));
	CHECK(has_line(err, "data/u.csv: 25 more problems not shown"));
	CHECK(count_lines(err) == 7);
	manifest_max_reports = old;
	manifest_release(&m);
	free(err);
	free(t);
}

/* Random CSV-ish bytes into buf (at most cap): "id,x", the header line
 * ended on every third draw, then bytes from a small alphabet of
 * separators, quotes, line ends and a NUL; *s is the generator's state.
 * Returns the length. */
static size_t random_csv(char *buf, size_t cap, uint32_t *s, int it)
{
	static const char alpha[] = "ab,\"\r\n \0i";
	*s = *s * 1664525u + 1013904223u;
	size_t n = 4 + (*s >> 8) % (cap - 4);
	memcpy(buf, "id,x", 4);
	if (it % 3 == 0)
		buf[3] = '\n';
	for (size_t i = 4; i < n; i++) {
		*s = *s * 1664525u + 1013904223u;
		buf[i] = alpha[(*s >> 16) % (sizeof alpha - 1)];
	}
	return n;
}

/* Random bytes from a CSV-ish alphabet: never crash, rows + bad + blank
 * lines account for the input. Run under the sanitizers in `make check`. */
static void test_random_inputs(void)
{
	uint32_t s = 12345;
	int ok = 1;
	capture_begin();
	for (int it = 0; it < 3000; it++) {
		char buf[200];
		size_t n = random_csv(buf, sizeof buf, &s, it);
		struct manifest m;
		if (manifest_parse(&m, buf, n, "fuzz.csv") == 0) {
			for (int r = 0; r < m.nrows; r++) {
				ok &= m.rows[r].line >= 2;
				ok &= m.rows[r].cells[m.id_col][0] != '\0';
				ok &= r == 0 || m.rows[r].line > m.rows[r - 1].line;
			}
		}
		manifest_release(&m);
	}
	char *err = capture_end();
	free(err);
	CHECK(ok);
}

static void test_id_hash(void)
{
	/* FNV-1a 32 reference values */
	CHECK(sample_id_hash("") == 0x811c9dc5u);
	CHECK(sample_id_hash("a") == 0xe40c292cu);
	CHECK(sample_id_hash("foobar") == 0xbf9cf968u);
}

/* ---- datasets ------------------------------------------------------------ */

static void test_twomoon(void)
{
	char *path = xasprintf("%s/config_twomoon.json", test_fixtures());
	struct run_config c;
	CHECK(config_load(&c, path) == 0);
	free(path);
	struct dataset d;
	capture_begin();
	int rc = dataset_load(&d, &c, "deploy/data/twomoon/labeled.csv", 2);
	char *err = capture_end();
	CHECK(rc == 0);
	CHECK_MSG(err[0] == '\0', "%s", err);
	CHECK(d.n == 30 && d.nmod == 2 && d.dim[0] == 1 && d.dim[1] == 1);
	CHECK(d.nquarantined == 0 && d.labels != NULL);
	if (d.n == 30) {
		int zeros = 0, ones = 0;
		for (int i = 0; i < d.n; i++) {
			zeros += d.labels[i] == 0;
			ones += d.labels[i] == 1;
			CHECK(d.ids[i] == sample_id_hash(d.names[i]));
		}
		CHECK(zeros + ones == 30 && zeros > 0 && ones > 0);
		CHECK(strcmp(d.names[0], "labeled-000") == 0 && d.labels[0] == 1);
		CHECK_NEAR(d.x[0][0], 1.4503240976311984, 1e-6);
		CHECK_NEAR(d.x[1][0], -1.0511064454593668, 1e-6);
		CHECK(strcmp(d.names[1], "labeled-001") == 0 && d.labels[1] == 0);
		CHECK_NEAR(d.x[0][1], -1.0397581630084998, 1e-6);
	}
	dataset_release(&d);
	/* the resolved paths of the config point at the same files */
	CHECK(dataset_load(&d, &c, c.unlabeled, 1) == 0);
	CHECK(d.n == 270 && d.nmod == 1 && d.x[1] == NULL);
	dataset_release(&d);
	free(err);
	config_release(&c);
}

static char tmpdir[64];

static char *write_tmp(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static int config_in(struct run_config *c, const char *json)
{
	char *p = xasprintf("%s/cfg.json", tmpdir);
	int rc = config_parse(c, json, p);
	free(p);
	return rc;
}

static void test_inline_quarantine(void)
{
	struct run_config c;
	CHECK(config_in(&c, "{\"name\": \"q\", \"data\": {\"labeled\": \"l.csv\", "
			    "\"classes\": [\"neg\", \"pos\", \"mid\"], \"modalities\": {"
			    "\"a\": {\"column\": \"img\", \"kind\": \"inline\"}, "
			    "\"b\": {\"column\": \"aud\", \"kind\": \"inline\", \"dim\": 2}}}, "
			    "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			    "\"teacher\": {\"model\": \"m\"}}") == 0);
	char *p = write_tmp("q.csv", "id,label,img,aud\n"  /* 1 */
				     "s0,pos,1 2 3,4 5\n"  /* 2: width 3 from here */
				     "s1,2, 6\t7  8 ,9 10\n" /* 3 */
				     "s2,,1 2,3 4\n"       /* 4: wrong width */
				     "s3,neg,1 2 nan,3 4\n" /* 5: nan */
				     "s4,0,1 2 3,3 x4\n"   /* 6: garbage */
				     "s5,cat,1 2 3,3 4\n"  /* 7: unknown label */
				     "s6,3,1 2 3,3 4\n"    /* 8: out of range */
				     "s7,,1 2 3,1e39 4\n"  /* 9: float overflow */
				     "s8,,1 2 3,\n"        /* 10: empty */
				     "s9,1,1 2 3,1 2 3\n"  /* 11: config dim */
				     "s10, neg ,0 0 0,0 0\n"); /* 12 */
	struct dataset d;
	capture_begin();
	int rc = dataset_load(&d, &c, p, 2);
	char *err = capture_end();
	CHECK(rc == 0);
	CHECK(d.n == 3 && d.nquarantined == 8 && d.dim[0] == 3 && d.dim[1] == 2);
	if (d.n == 3) {
		CHECK(d.labels[0] == 1 && d.labels[1] == 2 && d.labels[2] == 0);
		CHECK(d.x[0][3] == 6 && d.x[0][5] == 8 && d.x[1][2] == 9 && d.x[1][3] == 10);
		CHECK(strcmp(d.names[2], "s10") == 0);
	}
	char *want[] = {
		xasprintf("%s:4: column 'img': expected 3 values, got 2", p),
		xasprintf("%s:5: column 'img': 'nan' is not a finite float", p),
		xasprintf("%s:6: column 'aud': 'x4' is not a number", p),
		xasprintf("%s:7: unknown label 'cat'", p),
		xasprintf("%s:8: unknown label '3'", p),
		xasprintf("%s:9: column 'aud': '1e39' is not a finite float", p),
		xasprintf("%s:10: column 'aud' is empty", p),
		xasprintf("%s:11: column 'aud': expected 2 values, got 3", p),
		xasprintf("warning: manifest '%s': 8 rows quarantined (cells or labels that do not "
			  "decode), 3 loaded", p),
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		CHECK(has_line(err, want[i]));
		free(want[i]);
	}
	CHECK(count_lines(err) == 9);
	free(err);
	dataset_release(&d);
	free(p);

	/* no usable rows; missing modality column; no label column */
	p = write_tmp("bad.csv", "id,label,img,aud\nz,9,1,2\n");
	capture_begin();
	rc = dataset_load(&d, &c, p, 2);
	err = capture_end();
	CHECK(rc == -1 && d.n == 0 && d.x[0] == NULL);
	CHECK(strstr(err, "has no usable rows (0 bad, 1 quarantined)") != NULL);
	free(err);
	free(p);
	p = write_tmp("nocol.csv", "id,label,img\nz,1,1\n");
	capture_begin();
	rc = dataset_load(&d, &c, p, 2);
	err = capture_end();
	CHECK(rc == -1 && strstr(err, "has no column 'aud' (modality b") != NULL);
	free(err);
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 1 && d.dim[0] == 1);
	dataset_release(&d);
	free(p);
	p = write_tmp("nolabel.csv", "id,img\nz,1\ny,2\n");
	CHECK(dataset_load(&d, &c, p, 1) == 0 && d.n == 2 && d.labels == NULL);
	dataset_release(&d);
	free(p);
	config_release(&c);
}

static void test_npy_and_kinds(void)
{
	struct run_config c;
	CHECK(config_in(&c, "{\"name\": \"n\", \"data\": {\"labeled\": \"l.csv\", \"classes\": 2, "
			    "\"modalities\": {\"a\": {\"column\": \"x\", \"kind\": \"inline\"}, "
			    "\"b\": {\"column\": \"f\", \"kind\": \"npy\"}}}, "
			    "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			    "\"teacher\": {\"model\": \"m\"}}") == 0);
	char *sub = xasprintf("%s/feat", tmpdir);
	mkdir(sub, 0700);
	const float f0[6] = { 1, 2, 3, 4, 5, 6 }, f1[6] = { -1, -2, -3, -4, -5, -6 };
	const float f2[4] = { 1, 2, 3, 4 };
	const float fn[6] = { 1, 2, 3, 4, 5, NAN };
	const int64_t s23[2] = { 2, 3 }, s4[1] = { 4 };
	char *p0 = xasprintf("%s/f0.npy", sub), *p1 = xasprintf("%s/f1.npy", tmpdir);
	char *p2 = xasprintf("%s/f2.npy", sub), *pn = xasprintf("%s/fn.npy", sub);
	CHECK(npy_save(p0, f0, 2, s23, 0) == 0);
	CHECK(npy_save(p1, f1, 2, s23, 1) == 0);
	CHECK(npy_save(p2, f2, 1, s4, 0) == 0);
	CHECK(npy_save(pn, fn, 2, s23, 0) == 0);
	char *csv = xasprintf("id,label,x,f\n"
			      "a,0,1,feat/f0.npy\n"      /* 2: relative to the manifest */
			      "b,1,2,%s\n"               /* 3: absolute */
			      "c,1,3,feat/f2.npy\n"      /* 4: 4 values, not 6 */
			      "d,1,4,feat/missing.npy\n" /* 5 */
			      "e,1,5,s3://x/y.npy\n"     /* 6 */
			      "f,1,6,feat/fn.npy\n",     /* 7 */
			      p1);
	char *p = write_tmp("n.csv", csv);
	struct dataset d;
	capture_begin();
	int rc = dataset_load(&d, &c, p, 2);
	char *err = capture_end();
	CHECK(rc == 0 && d.n == 2 && d.nquarantined == 4 && d.dim[1] == 6);
	if (d.n == 2) {
		CHECK(d.x[1][0] == 1 && d.x[1][5] == 6);
		CHECK(d.x[1][6] == -1 && d.x[1][11] == -6); /* float16 on disk */
	}
	char *want[] = {
		xasprintf("%s:4: column 'f': expected 6 values, got 4", p),
		xasprintf("%s:5: column 'f': cannot load '%s/feat/missing.npy'", p, tmpdir),
		xasprintf("%s:6: column 'f': unsupported URL scheme 's3' in 's3://x/y.npy' (mke "
			  "fetches http://, https:// and file://; download the file and give its "
			  "path)", p),
		xasprintf("%s:7: column 'f': '%s' holds a non-finite value at index 5", p, pn),
	};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		CHECK(has_line(err, want[i]));
		free(want[i]);
	}
	free(err);
	dataset_release(&d);
	config_release(&c);

	/* frames cells that name no frames: every row quarantined, no usable row
	   (test_dataset_shapes.c decodes real frames) */
	CHECK(config_in(&c, "{\"name\": \"n\", \"data\": {\"labeled\": \"l.csv\", \"classes\": 2, "
			    "\"modalities\": {\"a\": {\"column\": \"x\", \"kind\": \"frames\"}}}, "
			    "\"models\": {\"m\": {\"inputs\": [\"a\"], \"hidden\": []}}, "
			    "\"teacher\": {\"model\": \"m\"}}") == 0);
	capture_begin();
	rc = dataset_load(&d, &c, p, 1);
	err = capture_end();
	CHECK(rc == -1);
	CHECK(strstr(err, "column 'x': cannot load") != NULL);
	CHECK(strstr(err, "has no usable rows") != NULL);
	free(err);
	capture_begin();
	rc = dataset_load(&d, &c, p, 2);
	err = capture_end();
	CHECK(rc == -1 && strstr(err, "does not declare it") != NULL);
	free(err);
	config_release(&c);

	unlink(p0);
	unlink(p1);
	unlink(p2);
	unlink(pn);
	rmdir(sub);
	free(p0);
	free(p1);
	free(p2);
	free(pn);
	free(sub);
	unlink(p);
	free(p);
	free(csv);
}

/* ---- manifest_count -------------------------------------------------------- */

/* Write len bytes to tmpdir/name; returns the path. */
static char *write_bytes(const char *name, const char *text, size_t len)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(p, "wb");
	if (f) {
		fwrite(text, 1, len, f);
		fclose(f);
	}
	return p;
}

/* Check path with manifest_load and manifest_count: the same result, the
 * same counts and the same stderr byte for byte. Returns what the count
 * wrote to stderr; *rows, *bad: its counts; *rc: its result. */
static char *count_vs_load(const char *path, int *rows, int *bad, int *rc)
{
	struct manifest m;
	capture_begin();
	int rc_l = manifest_load(&m, path);
	char *err_l = capture_end();
	*rows = *bad = -1;
	capture_begin();
	*rc = manifest_count(path, rows, bad);
	char *err_c = capture_end();
	CHECK_MSG(*rc == rc_l, "'%s': load returns %d, count %d", path, rc_l, *rc);
	if (rc_l == 0)
		CHECK_MSG(*rows == m.nrows && *bad == m.nbad,
			  "'%s': load has %d rows %d bad, count %d rows %d bad", path, m.nrows,
			  m.nbad, *rows, *bad);
	CHECK_MSG(strcmp(err_l, err_c) == 0, "'%s': load said:\n%s--- count said:\n%s", path,
		  err_l, err_c);
	manifest_release(&m);
	free(err_l);
	return err_c;
}

/* Count a text written to tmpdir/c.csv; expect rows and bad. */
static char *count_text(const char *text, size_t len, int want_rows, int want_bad)
{
	char *p = write_bytes("c.csv", text, len);
	int rows, bad, rc;
	char *err = count_vs_load(p, &rows, &bad, &rc);
	if (want_rows >= 0)
		CHECK_MSG(rc == 0 && rows == want_rows && bad == want_bad,
			  "rc %d rows %d bad %d, expected %d and %d", rc, rows, bad, want_rows,
			  want_bad);
	else
		CHECK(rc == -1);
	free(p);
	return err;
}

/* manifest_count says and counts what manifest_load does, for every kind of
 * bad row, header error and file that cannot be read. */
static void test_count_matches_load(void)
{
	char *err = count_text(t_syntax, strlen(t_syntax), 3, 0);
	CHECK(err[0] == '\0');
	free(err);
	free(count_text(t_multiline, strlen(t_multiline), 4, 2));
	err = count_text(t_bad_rows, strlen(t_bad_rows), 2, 7);
	char *want = xasprintf("%s/c.csv:5: duplicate id 'r1' (first at line 2)", tmpdir);
	CHECK(has_line(err, want));
	free(want);
	free(err);
	size_t n;
	char *t = long_field_text(&n);
	free(count_text(t, n, 3, 2));
	free(t);
	t = empty_ids_text();
	int old = manifest_max_reports;
	manifest_max_reports = 5;
	err = count_text(t, strlen(t), 0, 30);
	CHECK(strstr(err, "c.csv: 25 more problems not shown\n") != NULL);
	manifest_max_reports = old;
	free(err);
	free(t);
	for (size_t i = 0; i < sizeof t_headers / sizeof t_headers[0]; i++) {
		err = count_text(t_headers[i][0], strlen(t_headers[i][0]), -1, 0);
		CHECK(strstr(err, "error: manifest '") != NULL);
		free(err);
	}
	free(count_text("id,x", 4, 0, 0));
	/* a file that is not there, a directory */
	int rows, bad, rc;
	free(count_vs_load("/nonexistent/m.csv", &rows, &bad, &rc));
	CHECK(rc == -1);
	free(count_vs_load(tmpdir, &rows, &bad, &rc));
	CHECK(rc == -1);
	/* random CSV-ish bytes (random_csv) */
	uint32_t s = 777;
	for (int it = 0; it < 300; it++) {
		char buf[200];
		size_t len = random_csv(buf, sizeof buf, &s, it);
		char *p = write_bytes("c.csv", buf, len);
		free(count_vs_load(p, &rows, &bad, &rc));
		free(p);
	}
}

/* A manifest larger than the window of pages manifest_count drops behind
 * it (4 MB), with quoted line breaks along the way: a duplicate at the end
 * whose first occurrence lies in a dropped page is still found, with its
 * line. */
static void test_count_large(void)
{
	int n = 300000; /* 31 bytes a row: 9.3 MB */
	size_t cap = (size_t)n * 40 + 256, len = 0;
	char *t = xmalloc(cap);
	int line = 1;
	len += (size_t)sprintf(t + len, "id,x,label\n");
	line++;
	for (int i = 0; i < n; i++) {
		if (i % 50000 == 49999) { /* spans 2 lines */
			len += (size_t)sprintf(t + len, "s%07d,\"images/\ns%07d.png\",%d\n", i, i,
					       i % 10);
			line += 2;
		} else {
			len += (size_t)sprintf(t + len, "s%07d,images/s%07d.png,%d\n", i, i, i % 10);
			line++;
		}
	}
	int dup = line;
	len += (size_t)sprintf(t + len, "s0000002,images/again.png,1\nshort,row\n");
	char *err = count_text(t, len, n, 2);
	char *want = xasprintf("%s/c.csv:%d: duplicate id 's0000002' (first at line 4)", tmpdir,
			       dup);
	CHECK(has_line(err, want));
	free(want);
	want = xasprintf("%s/c.csv:%d: expected 3 columns, got 2", tmpdir, dup + 1);
	CHECK(has_line(err, want));
	free(want);
	free(err);
	free(t);
}

static void cleanup_tmp(void)
{
	static const char *const files[] = {
		"q.csv", "bad.csv", "nocol.csv", "nolabel.csv", "c.csv", NULL,
	};
	for (int i = 0; files[i]; i++) {
		char *p = xasprintf("%s/%s", tmpdir, files[i]);
		unlink(p);
		free(p);
	}
	rmdir(tmpdir);
}

int main(void)
{
	strcpy(tmpdir, "/tmp/mke-test-manifest-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	RUN(test_simple);
	RUN(test_syntax);
	RUN(test_multiline_line_numbers);
	RUN(test_bad_rows);
	RUN(test_long_field_and_nul);
	RUN(test_header_errors);
	RUN(test_report_cap);
	RUN(test_random_inputs);
	RUN(test_id_hash);
	RUN(test_twomoon);
	RUN(test_inline_quarantine);
	RUN(test_npy_and_kinds);
	RUN(test_count_matches_load);
	RUN(test_count_large);
	cleanup_tmp();
	return test_summary();
}
