/*
 * gen.c - synthetic datasets in native formats (gen.h, docs/importers.md).
 *
 * Each generator writes what the real dataset ships (CSV dialects, WAV via
 * libsndfile, PNG via libpng, the NYU .mat as HDF5 with MATLAB's dataset
 * names, dtypes, transposed shapes and 512-byte MATLAB header, its
 * splits.mat and classMapping40.mat as MATLAB v5 through libmatio), small
 * enough for a test to import in a second. Sample i draws from the stream
 * (seed, RNG_DATA, dataset number, i), so a sample does not depend on n.
 */
#include "gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <matio.h>
#include <sndfile.h>

#include "av.h"
#include "importers.h"
#include "rng.h"
#include "util.h"

const char *const gen_kinds[] = {"twomoon", "vggsound", "nyuv2", "ravdess", "vggsound-mp4",
				 NULL};

enum { GEN_TWOMOON = 1, GEN_VGGSOUND, GEN_NYUV2, GEN_RAVDESS };

int gen_vggsound_is_missing(int i)
{
	return i % 10 == 7;
}

int gen_ravdess_is_faceless(int i)
{
	return i % 12 == 11;
}

static int write_str(const char *path, const struct sbuf *b)
{
	return write_file_atomic(path, b->p ? b->p : "", b->n, 0644);
}

/* Mono 16-bit PCM WAV of n float samples in [-1, 1]. */
static int wav_write(const char *path, const float *x, int n, int rate)
{
	SF_INFO info = {.samplerate = rate, .channels = 1,
			.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
	SNDFILE *f = sf_open(path, SFM_WRITE, &info);
	if (!f)
		return mke_error("cannot create WAV '%s': %s", path, sf_strerror(NULL));
	sf_count_t got = sf_writef_float(f, x, n);
	int rc = got == n ? 0 : mke_error("cannot write WAV '%s': %s", path, sf_strerror(f));
	if (sf_close(f) != 0 && !rc)
		rc = mke_error("cannot close WAV '%s'", path);
	return rc;
}

/* A tone of frequency hz with noise, seconds long at rate. Caller frees. */
static float *tone(struct rng *r, double hz, double seconds, int rate, int *n)
{
	*n = (int)lround(seconds * rate);
	float *x = xmalloc((size_t)*n * sizeof *x);
	double ph = 2 * M_PI * rng_uniform(r);
	for (int k = 0; k < *n; k++)
		x[k] = (float)(0.4 * sin(ph + 2 * M_PI * hz * k / rate) + 0.05 * rng_normal(r));
	return x;
}

/*
 * The MKE setting (docs/importers.md "Generators"): modality a shows the
 * class, but for a fraction GEN_AMBIGUOUS of the samples only faintly,
 * under its noise (a face that hardly shows its emotion, a sound drowned in
 * noise, an object whose colour is washed out to the wall's gray), so a
 * model of a alone is unsure, or wrong, on those; modality b shows the class
 * clearly. The teacher's pseudo-labels (its probabilities, as soft targets)
 * then say little where a is faint, independently of b, and are right for
 * the majority of every value of b: a student that sees b learns the class
 * from them and beats its teacher, one that sees only a cannot.
 */
#define GEN_AMBIGUOUS 0.35

/* 1 when this sample's modality a is faint. */
static int faint(struct rng *r)
{
	return rng_uniform(r) < GEN_AMBIGUOUS;
}

static uint8_t clamp8(double v)
{
	return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lround(v);
}

/* ---- TwoMoon ------------------------------------------------------------------ */

static int gen_twomoon(const char *dir, int n, uint64_t seed)
{
	if (n < 10)
		return mke_error("twomoon needs --n of at least 10");
	double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
	int *lab = xmalloc((size_t)n * sizeof *lab), *perm = xmalloc((size_t)n * sizeof *perm);
	int nout = n / 2, nin = n - nout;
	/* scikit-learn's make_moons, noise 0.1 */
	for (int i = 0; i < n; i++) {
		struct rng r;
		rng_init(&r, seed, RNG_DATA, GEN_TWOMOON, (uint32_t)i);
		if (i < nout) {
			double t = nout > 1 ? M_PI * i / (nout - 1) : 0;
			x[i] = cos(t);
			y[i] = sin(t);
			lab[i] = 0;
		} else {
			int j = i - nout;
			double t = nin > 1 ? M_PI * j / (nin - 1) : 0;
			x[i] = 1 - cos(t);
			y[i] = 1 - sin(t) - 0.5;
			lab[i] = 1;
		}
		x[i] += 0.1 * rng_normal(&r);
		y[i] += 0.1 * rng_normal(&r);
	}
	/* standardize over all points */
	double mx = 0, my = 0, sx = 0, sy = 0;
	for (int i = 0; i < n; i++) {
		mx += x[i];
		my += y[i];
	}
	mx /= n;
	my /= n;
	for (int i = 0; i < n; i++) {
		sx += (x[i] - mx) * (x[i] - mx);
		sy += (y[i] - my) * (y[i] - my);
	}
	sx = sqrt(sx / n);
	sy = sqrt(sy / n);
	/* shuffle (Fisher-Yates) and split 6% labeled / 54% unlabeled / 40% test */
	struct rng r;
	rng_init(&r, seed, RNG_DATA, GEN_TWOMOON, 0xffffffffu);
	for (int i = 0; i < n; i++)
		perm[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)rng_below(&r, (uint32_t)i + 1), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	int nlab = (int)lround(n * 0.06), ntest = (int)lround(n * 0.4);
	if (nlab < 2)
		nlab = 2;
	static const char *const part[] = {"labeled", "unlabeled", "test"};
	int from[3] = {0, nlab, n - ntest}, to[3] = {nlab, n - ntest, n};
	int rc = 0;
	for (int s = 0; s < 3 && !rc; s++) {
		struct sbuf b = {0};
		sbuf_puts(&b, "id,label,split,x,y\n");
		for (int k = from[s]; k < to[s]; k++) {
			int i = perm[k];
			sbuf_printf(&b, "%s-%03d,%d,%s,%.17g,%.17g\n", part[s], k - from[s], lab[i],
				    part[s], (x[i] - mx) / sx, (y[i] - my) / sy);
		}
		char *p = xasprintf("%s/%s.csv", dir, part[s]);
		rc = write_str(p, &b);
		free(p);
		sbuf_release(&b);
	}
	free(x);
	free(y);
	free(lab);
	free(perm);
	return rc;
}

/* ---- VGGSound and AudioSet ------------------------------------------------------------ */

/* Class c (0..3): the audio (a) is a sound of timbre c (vgg_sound), faint
 * under its noise for GEN_AMBIGUOUS of the clips; the frames (b) are the
 * colour vgg_rgb[c]. */
static const char *const vgg_labels[4] = {
	"dog barking", "male speech, man speaking", "playing piano",
	"engine accelerating, revving, vroom"};

/* AudioSet classes and each VGGSound class's positive labels. */
static const char *const as_mid[5] = {"/m/09x0r", "/m/05zppz", "/m/0bt9lr", "/m/05r5c",
				      "/m/07yv9"};
static const char *const as_name[5] = {"Speech", "Male speech, man speaking", "Dog", "Piano",
				       "Vehicle"};
static const char *const as_pos[4] = {"/m/0bt9lr", "/m/09x0r,/m/05zppz", "/m/05r5c",
				      "/m/07yv9"};

/* The MP4 of one clip: the tone as AAC, VGG_MP4_FRAMES frames of
 * VGG_MP4_SIZE^2 pixels at VGG_MP4_FPS as H.264 (1 s, as long as the tone),
 * each pixel vgg_rgb[c] + N(0, 20). */
/* One second of timbre k at about 440 Hz: a sine, a square wave (odd
 * harmonics), a sawtooth (every harmonic) or noise - told apart by the
 * texture of the spectrogram wherever it sits, as an audio CNN with global
 * pooling sees sounds. Caller frees. */
static float *vgg_sound(struct rng *r, int k, int rate, double amp, int *n)
{
	*n = rate;
	float *x = xmalloc((size_t)*n * sizeof *x);
	double f0 = 440.0 * (1 + 0.1 * rng_uniform(r)), ph = 2 * M_PI * rng_uniform(r);
	for (int i = 0; i < *n; i++) {
		double t = ph + 2 * M_PI * f0 * i / rate, v = 0;
		if (k == 0)
			v = sin(t);
		else if (k == 3)
			v = 0.6 * rng_normal(r);
		else
			for (int h = 1; h <= 15; h++)
				if (k == 2 || h % 2)
					v += sin(h * t) / h;
		x[i] = (float)(amp * v + 0.05 * rng_normal(r));
	}
	return x;
}

static const double vgg_rgb[4][3] = {
	{200, 60, 60}, {60, 190, 60}, {60, 70, 200}, {190, 190, 60}};

#define VGG_MP4_FRAMES 8
#define VGG_MP4_FPS 8
#define VGG_MP4_SIZE 32

static int vgg_mp4(const char *path, struct rng *r, const float *x, int ns, int c)
{
	size_t npx = (size_t)VGG_MP4_FRAMES * VGG_MP4_SIZE * VGG_MP4_SIZE * 3;
	uint8_t *px = xmalloc(npx);
	for (size_t k = 0; k < npx; k++)
		px[k] = clamp8(vgg_rgb[c][k % 3] + 20 * rng_normal(r));
	char why[512];
	int rc = av_write_mp4(path, x, (size_t)ns, 16000, px, VGG_MP4_FRAMES, VGG_MP4_SIZE,
			      VGG_MP4_SIZE, VGG_MP4_FPS, why, sizeof why);
	free(px);
	return rc ? mke_error("%s", why) : 0;
}

/* mp4: each clip as media/<id>_<start:06d>.mp4 (audio and frames in one
 * file, VGGSound's own layout) instead of a WAV and a frame folder. */
static int gen_vggsound(const char *dir, int n, uint64_t seed, int mp4)
{
	static const char alpha[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *media = path_join(dir, "media"), *asdir = path_join(dir, "audioset");
	int rc = mkdir_p(media, 0755) || mkdir_p(asdir, 0755) ? -1 : 0;
	struct sbuf csv = {0}, astrain = {0}, aseval = {0}, ascls = {0};
	sbuf_puts(&astrain, "# Segments csv created by mke gen vggsound\n"
			    "# num_ytids=0, num_segs=0, num_unique_labels=5, num_positive_labels=0\n"
			    "# YTID, start_seconds, end_seconds, positive_labels\n");
	sbuf_puts(&aseval, astrain.p);
	sbuf_puts(&ascls, "index,mid,display_name\n");
	for (int k = 0; k < 5; k++) {
		sbuf_printf(&ascls, "%d,%s,", k, as_mid[k]);
		sbuf_csv(&ascls, as_name[k]);
		sbuf_puts(&ascls, "\n");
	}
	for (int i = 0; i < n && !rc; i++) {
		struct rng r;
		rng_init(&r, seed, RNG_DATA, GEN_VGGSOUND, (uint32_t)i);
		char id[12];
		for (int k = 0; k < 11; k++)
			id[k] = alpha[rng_u32(&r) & 63];
		id[11] = '\0';
		int start = (int)rng_below(&r, 300), c = i % 4;
		int test = i % 5 == 4;
		sbuf_printf(&csv, "%s,%d,", id, start);
		sbuf_csv(&csv, vgg_labels[c]);
		sbuf_printf(&csv, ",%s\n", test ? "test" : "train");
		sbuf_printf(test ? &aseval : &astrain, "%s, %d.000, %d.000, \"%s\"\n", id, start,
			    start + 10, as_pos[c]);
		if (gen_vggsound_is_missing(i))
			continue;
		int ns;
		float *x = vgg_sound(&r, c, 16000, faint(&r) ? 0.002 : 0.4, &ns);
		if (mp4) {
			char *p = xasprintf("%s/%s_%06d.mp4", media, id, start);
			rc = vgg_mp4(p, &r, x, ns, c);
			free(p);
			free(x);
			continue;
		}
		char *p = xasprintf("%s/%s_%06d.wav", media, id, start);
		rc = wav_write(p, x, ns, 16000);
		free(p);
		free(x);
		/* two RGB frames, 16 x 16 */
		char *fd = xasprintf("%s/%s_%06d", media, id, start);
		if (!rc)
			rc = mkdir_p(fd, 0755);
		uint8_t px[16 * 16 * 3];
		for (int f = 0; f < 2 && !rc; f++) {
			for (int k = 0; k < 16 * 16 * 3; k++)
				px[k] = clamp8(vgg_rgb[c][k % 3] + 20 * rng_normal(&r));
			char *fp = xasprintf("%s/%04d.png", fd, f + 1);
			rc = png_write(fp, 16, 16, 3, 8, px);
			free(fp);
		}
		free(fd);
	}
	char *p1 = path_join(dir, "vggsound.csv"), *p2 = path_join(asdir, "class_labels_indices.csv");
	char *p3 = path_join(asdir, "balanced_train_segments.csv");
	char *p4 = path_join(asdir, "eval_segments.csv");
	if (!rc)
		rc = write_str(p1, &csv) || write_str(p2, &ascls) || write_str(p3, &astrain) ||
		     write_str(p4, &aseval) ? -1 : 0;
	free(p1);
	free(p2);
	free(p3);
	free(p4);
	sbuf_release(&csv);
	sbuf_release(&astrain);
	sbuf_release(&aseval);
	sbuf_release(&ascls);
	free(media);
	free(asdir);
	return rc;
}

/* ---- NYU Depth V2 ------------------------------------------------------------------- */

#define NYU_W 32
#define NYU_H 24

/* A string attribute MATLAB_class = cls, as MATLAB writes on each variable. */
static int h5_matlab_class(hid_t d, const char *cls)
{
	hid_t t = H5Tcopy(H5T_C_S1);
	H5Tset_size(t, strlen(cls));
	hid_t s = H5Screate(H5S_SCALAR);
	hid_t a = H5Acreate2(d, "MATLAB_class", t, s, H5P_DEFAULT, H5P_DEFAULT);
	int rc = a < 0 || H5Awrite(a, t, cls) < 0 ? -1 : 0;
	if (a >= 0)
		H5Aclose(a);
	H5Sclose(s);
	H5Tclose(t);
	return rc;
}

static int h5_write(hid_t f, const char *name, hid_t file_type, hid_t mem_type, int rank,
		    const hsize_t *dims, const void *data, const char *cls)
{
	hid_t s = H5Screate_simple(rank, dims, NULL);
	/* no modification times in the file: the same seed gives the same bytes */
	hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
	H5Pset_obj_track_times(dcpl, 0);
	hid_t d = H5Dcreate2(f, name, file_type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	H5Pclose(dcpl);
	int rc = d < 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ||
			 h5_matlab_class(d, cls) ? -1 : 0;
	if (d >= 0)
		H5Dclose(d);
	H5Sclose(s);
	return rc;
}

/* An HDF5 file with MATLAB v7.3's 512-byte user block; *f to close, then
 * mat_header() to fill the block. */
static hid_t mat_create(const char *path)
{
	hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
	H5Pset_userblock(fcpl, 512);
	hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
	H5Pclose(fcpl);
	if (f < 0)
		mke_error("cannot create HDF5 file '%s'", path);
	return f;
}

static int mat_header(const char *path)
{
	unsigned char h[128];
	memset(h, ' ', 116);
	const char *txt = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: mke gen "
			  "HDF5 schema 1.00 .";
	memcpy(h, txt, strlen(txt));
	memset(h + 116, 0, 8);
	h[124] = 0x00;
	h[125] = 0x02;
	h[126] = 'I';
	h[127] = 'M';
	FILE *fp = fopen(path, "r+b");
	if (!fp)
		return mke_error("cannot reopen '%s'", path);
	int rc = fwrite(h, 1, sizeof h, fp) == sizeof h ? 0 : -1;
	if (fclose(fp) != 0 || rc)
		return mke_error("cannot write the MATLAB header of '%s'", path);
	return 0;
}

/*
 * One scene: a wall (40-class 1) at ~4 m, an object rectangle of 40-class
 * 2 + k (k in 0..3). The RGB image (a) paints it nyu_rgb[k], washed out to
 * nearly the wall's gray for GEN_AMBIGUOUS of the scenes; the depth (b) puts
 * it at 1.0 + 0.7 k m. A one-pixel border is unlabeled (0)
 * with no depth reading. Raw 894-class ids are written as c40 + 40 j, which
 * the generator's classMapping40.mat (nyu_write_class_map) maps back to c40.
 */
static void nyu_scene(struct rng *r, uint8_t *img, float *dep, uint16_t *lab)
{
	static const double nyu_rgb[4][3] = {
		{210, 40, 50}, {40, 200, 50}, {40, 60, 210}, {200, 200, 40}};
	int k = (int)rng_below(r, 4);
	double sat = faint(r) ? 0.03 : 1.0;
	int x0 = 2 + (int)rng_below(r, NYU_W / 2), y0 = 2 + (int)rng_below(r, NYU_H / 2);
	int x1 = x0 + 6 + (int)rng_below(r, NYU_W / 3), y1 = y0 + 5 + (int)rng_below(r, NYU_H / 3);
	int obj = 2 + k;
	size_t px = (size_t)NYU_W * NYU_H;
	for (int x = 0; x < NYU_W; x++)
		for (int y = 0; y < NYU_H; y++) {
			size_t s = (size_t)x * NYU_H + y;   /* HDF5 order [x][y] */
			int border = x == 0 || y == 0 || x == NYU_W - 1 || y == NYU_H - 1;
			int in = x >= x0 && x < x1 && y >= y0 && y < y1 && !border;
			int c40 = border ? 0 : in ? obj : 1;
			double R = 120, G = 120, B = 120, d = 4.0;
			if (in) {
				R = 120 + sat * (nyu_rgb[k][0] - 120);
				G = 120 + sat * (nyu_rgb[k][1] - 120);
				B = 120 + sat * (nyu_rgb[k][2] - 120);
				d = 1.0 + 0.7 * k;
			}
			img[0 * px + s] = clamp8(R + 12 * rng_normal(r));
			img[1 * px + s] = clamp8(G + 12 * rng_normal(r));
			img[2 * px + s] = clamp8(B + 12 * rng_normal(r));
			dep[s] = border ? 0.0f : (float)(d + 0.05 * rng_normal(r));
			lab[s] = (uint16_t)(c40 ? c40 + 40 * (int)rng_below(r, 3) : 0);
		}
}

/* A MATLAB v5 file as MATLAB writes one (a fixed header text, so the same
 * seed gives the same bytes); NULL reported. */
static mat_t *mat5_create(const char *path)
{
	mat_t *m = Mat_CreateVer(path, "MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: mke gen",
				 MAT_FT_MAT5);
	if (!m)
		mke_error("cannot create the MATLAB v5 file '%s'", path);
	return m;
}

/* Write the variable v (NULL: a failed create) into m, compressed with z;
 * frees v. */
static int mat5_put(mat_t *m, matvar_t *v, const char *path, enum matio_compression z)
{
	int rc = v && Mat_VarWrite(m, v, z) == 0 ? 0 : -1;
	if (rc)
		mke_error("cannot write variable '%s' to '%s'", v ? v->name : "?", path);
	Mat_VarFree(v);
	return rc;
}

/* splits.mat as the NYU toolbox ships it: MATLAB v5, trainNdxs and testNdxs
 * double column vectors (k x 1) of 1-based indices; odd 0-based samples are
 * test. */
static int nyu_write_splits(const char *path, int n)
{
	int ntest = n / 2, ntrain = n - ntest;
	double *tr = xmalloc((size_t)(ntrain + 1) * sizeof *tr);
	double *te = xmalloc((size_t)(ntest + 1) * sizeof *te);
	for (int i = 0, a = 0, b = 0; i < n; i++) {
		if (i % 2)
			te[b++] = i + 1;
		else
			tr[a++] = i + 1;
	}
	mat_t *m = mat5_create(path);
	int rc = -1;
	if (m) {
		size_t d1[2] = {(size_t)ntrain, 1}, d2[2] = {(size_t)ntest, 1};
		rc = mat5_put(m, Mat_VarCreate("trainNdxs", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d1, tr, 0),
			      path, MAT_COMPRESSION_NONE) ||
		     mat5_put(m, Mat_VarCreate("testNdxs", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, d2, te, 0),
			      path, MAT_COMPRESSION_NONE) ? -1 : 0;
		Mat_Close(m);
	}
	free(tr);
	free(te);
	return rc;
}

/* classMapping40.mat in the official file's layout (MATLAB v5, zlib):
 * mapClass 1x894 double, the 40-class id of each NYU class id, and
 * className 1x40 cell of char. The generator's mapping is its own rule,
 * NYU id k -> ((k - 1) mod 40) + 1 (so its raw ids c40 + 40 j map back to
 * c40), NOT the official mapping; the names are the NYU-40 names. */
static int nyu_write_class_map(const char *path)
{
	double v[NYU_CLASSES_RAW];
	for (int k = 1; k <= NYU_CLASSES_RAW; k++)
		v[k - 1] = (k - 1) % NYU_CLASSES + 1;
	mat_t *m = mat5_create(path);
	if (!m)
		return -1;
	size_t dm[2] = {1, NYU_CLASSES_RAW}, dn[2] = {1, NYU_CLASSES};
	int rc = mat5_put(m, Mat_VarCreate("mapClass", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dm, v, 0),
			  path, MAT_COMPRESSION_ZLIB);
	matvar_t *cell = Mat_VarCreate("className", MAT_C_CELL, MAT_T_CELL, 2, dn, NULL, 0);
	/* chars as UTF-16 code units, as MATLAB stores them (matio 1.5.23 cannot
	 * read back the compressed UTF-8 cells it writes) */
	for (int k = 1; cell && k <= NYU_CLASSES; k++) {
		uint16_t s[32];
		size_t ds[2] = {1, strlen(nyu40_names[k])};
		for (size_t i = 0; i < ds[1]; i++)
			s[i] = (unsigned char)nyu40_names[k][i];
		Mat_VarSetCell(cell, k - 1, Mat_VarCreate(NULL, MAT_C_CHAR, MAT_T_UINT16, 2, ds, s, 0));
	}
	if (!rc)
		rc = mat5_put(m, cell, path, MAT_COMPRESSION_ZLIB);
	else
		Mat_VarFree(cell);
	Mat_Close(m);
	return rc;
}

static int gen_nyuv2(const char *dir, int n, uint64_t seed)
{
	if (mkdir_p(dir, 0755) != 0)
		return -1;
	size_t px = (size_t)NYU_W * NYU_H;
	uint8_t *img = xmalloc((size_t)n * 3 * px);
	float *dep = xmalloc((size_t)n * px * sizeof *dep);
	uint16_t *lab = xmalloc((size_t)n * px * sizeof *lab);
	for (int i = 0; i < n; i++) {
		struct rng r;
		rng_init(&r, seed, RNG_DATA, GEN_NYUV2, (uint32_t)i);
		nyu_scene(&r, img + (size_t)i * 3 * px, dep + (size_t)i * px, lab + (size_t)i * px);
	}
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	char *mat = path_join(dir, "nyu_depth_v2_labeled.mat");
	char *spl = path_join(dir, "splits.mat");
	char *map = path_join(dir, "classMapping40.mat");
	int rc = -1;
	hid_t f = mat_create(mat);
	if (f >= 0) {
		hsize_t di[4] = {(hsize_t)n, 3, NYU_W, NYU_H}, dd[3] = {(hsize_t)n, NYU_W, NYU_H};
		rc = h5_write(f, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, di, img, "uint8") ||
		     h5_write(f, "depths", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dd, dep, "single") ||
		     h5_write(f, "labels", H5T_STD_U16LE, H5T_NATIVE_UINT16, 3, dd, lab, "uint16")
			     ? -1 : 0;
		if (H5Fclose(f) < 0)
			rc = -1;
		if (rc)
			mke_error("cannot write '%s'", mat);
		else
			rc = mat_header(mat);
	}
	/* splits.mat: odd 0-based samples are test */
	if (!rc)
		rc = nyu_write_splits(spl, n);
	if (!rc)
		rc = nyu_write_class_map(map);
	free(mat);
	free(spl);
	free(map);
	free(img);
	free(dep);
	free(lab);
	return rc;
}

/* ---- RAVDESS ------------------------------------------------------------------------- */

/* The 60 speech recordings of an actor: neutral has normal intensity only. */
static void rav_combo(int k, int *emo, int *inten, int *stmt, int *rep)
{
	if (k < 4) {
		*emo = 1;
		*inten = 1;
		*stmt = 1 + k / 2;
		*rep = 1 + k % 2;
		return;
	}
	k -= 4;
	*emo = 2 + k / 8;
	*inten = 1 + (k / 4) % 2;
	*stmt = 1 + (k / 2) % 2;
	*rep = 1 + k % 2;
}

/*
 * Emotion e (0..7): the face (a) is a 24 x 24 gray image with a bright
 * 4 x 8 patch in cell e of a 4 x 2 grid, faint under the noise for
 * GEN_AMBIGUOUS of the clips; the voice (b) is a tone of 300 * 1.22^e Hz,
 * 0.5 s.
 */
static int gen_ravdess(const char *dir, int n, uint64_t seed)
{
	if (n > 24 * 60)
		return mke_error("ravdess has 1440 speech clips at most (--n %d)", n);
	int rc = 0;
	for (int i = 0; i < n && !rc; i++) {
		struct rng r;
		rng_init(&r, seed, RNG_DATA, GEN_RAVDESS, (uint32_t)i);
		int actor = i % 24 + 1, j = i / 24, emo, inten, stmt, rep;
		rav_combo((j * 13 + actor * 7) % 60, &emo, &inten, &stmt, &rep);
		int e = emo - 1, weak = faint(&r);
		char *ad = xasprintf("%s/Actor_%02d", dir, actor);
		rc = mkdir_p(ad, 0755);
		char *rest = xasprintf("01-%02d-%02d-%02d-%02d-%02d", emo, inten, stmt, rep, actor);
		if (!rc) {
			int ns;
			float *x = tone(&r, 300.0 * pow(1.22, e) * (1 + 0.02 * rng_uniform(&r)), 0.5,
					16000, &ns);
			char *wp = xasprintf("%s/03-%s.wav", ad, rest);
			rc = wav_write(wp, x, ns, 16000);
			free(wp);
			free(x);
		}
		if (!rc && !gen_ravdess_is_faceless(i)) {
			uint8_t px[24 * 24];
			for (int y = 0; y < 24; y++)
				for (int x = 0; x < 24; x++) {
					int cell = x / 6 + 4 * (y / 12), cx = x % 6, cy = y % 12;
					int in = cell == e && cx >= 1 && cx < 5 && cy >= 2 && cy < 10;
					px[y * 24 + x] = clamp8((in ? (weak ? 93 : 200) : 90) +
								25 * rng_normal(&r));
				}
			char *fp = xasprintf("%s/01-%s.png", ad, rest);
			rc = png_write(fp, 24, 24, 1, 8, px);
			free(fp);
		}
		free(rest);
		free(ad);
	}
	return rc;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int gen_dataset(const char *kind, const char *dir, int n, uint64_t seed)
{
	static const int defaults[] = {500, 40, 12, 48, 40};
	int k = 0;
	while (gen_kinds[k] && strcmp(gen_kinds[k], kind) != 0)
		k++;
	if (!gen_kinds[k])
		return mke_error("unknown dataset kind '%s' (twomoon, vggsound, vggsound-mp4, "
				 "nyuv2, ravdess)", kind);
	if (n <= 0)
		n = defaults[k];
	if (n > 100000)
		return mke_error("--n %d is more than these generators are for (100000)", n);
	if (mkdir_p(dir, 0755) != 0)
		return -1;
	switch (k) {
	case 0:
		return gen_twomoon(dir, n, seed);
	case 1:
		return gen_vggsound(dir, n, seed, 0);
	case 2:
		return gen_nyuv2(dir, n, seed);
	case 3:
		return gen_ravdess(dir, n, seed);
	default:
		return gen_vggsound(dir, n, seed, 1);
	}
}
