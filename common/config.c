/*
 * config.c - the run config: JSON (schemas/run-config.schema.json) parsed
 * with cJSON into struct run_config, validated strictly and up front.
 *
 * Why strict: a typo in a config ("hiden", "epoch") that is silently ignored
 * costs a cluster run. So every object is checked against the list of keys
 * it may hold, every value against its type and range, and the cross-field
 * rules (a model named by the teacher exists, an mm_* variant has modality b,
 * late-fusion branches only with late fusion, ...) before anything runs.
 * The first problem found is reported as
 *     error: config 'FILE': key 'models.mm.hidden[1]' must be a positive integer, got string
 * and config_parse() returns -1; the path is the full key path from the top
 * level, with [i] for array elements.
 *
 * The walk keeps the current key path in a fixed buffer (struct walk) that
 * each level extends and restores; nothing is allocated for it. All strings
 * that end up in struct run_config are copies owned by it; the cJSON tree is
 * freed before config_parse() returns.
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "util.h"

static const char *const variant_names[VAR_COUNT] = {
	"teacher", "um_student", "noisy_student", "mm_student_noreg", "mm_student", "mm_student_sup",
};

const char *variant_name(enum variant_kind k)
{
	if ((int)k < 0 || k >= VAR_COUNT)
		return NULL;
	return variant_names[k];
}

int variant_from_name(const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < VAR_COUNT; i++)
		if (strcmp(s, variant_names[i]) == 0)
			return i;
	return -1;
}

int config_model(const struct run_config *c, const char *name)
{
	for (int i = 0; i < c->nmodels; i++)
		if (strcmp(c->models[i].name, name) == 0)
			return i;
	return -1;
}

/* ---- the walk: current key path and error reporting --------------------- */

struct walk {
	const char *file;
	char *dir;          /* the config file's directory (owned) */
	char path[1024];    /* current key path, e.g. "models.mm.hidden[1]" */
	size_t len;
};

static void path_set_len(struct walk *w, size_t n)
{
	if (n >= sizeof w->path)
		n = sizeof w->path - 1;
	w->len = n;
	w->path[n] = '\0';
}

/* Extend the path by ".key" (or "key" at the top); returns the old length. */
static size_t push_key(struct walk *w, const char *key)
{
	size_t old = w->len;
	int n = snprintf(w->path + w->len, sizeof w->path - w->len, "%s%s", w->len ? "." : "",
			 key);
	path_set_len(w, w->len + (n > 0 ? (size_t)n : 0));
	return old;
}

static size_t push_index(struct walk *w, int i)
{
	size_t old = w->len;
	int n = snprintf(w->path + w->len, sizeof w->path - w->len, "[%d]", i);
	path_set_len(w, w->len + (n > 0 ? (size_t)n : 0));
	return old;
}

static void pop(struct walk *w, size_t old)
{
	path_set_len(w, old);
}

/* Report a problem with the value at the current path; returns -1. */
static int fail(struct walk *w, const char *fmt, ...) MKE_PRINTF(2, 3);
static int fail(struct walk *w, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (w->len)
		return mke_error("config '%s': key '%s' %s", w->file, w->path, msg);
	return mke_error("config '%s': %s", w->file, msg);
}

static const char *json_type(const cJSON *j)
{
	if (cJSON_IsString(j))
		return "string";
	if (cJSON_IsNumber(j))
		return "number";
	if (cJSON_IsBool(j))
		return "boolean";
	if (cJSON_IsNull(j))
		return "null";
	if (cJSON_IsArray(j))
		return "array";
	if (cJSON_IsObject(j))
		return "object";
	return "invalid value";
}

/* "a, b, c" from a NULL-terminated list, into buf. */
static const char *join_names(char *buf, size_t n, const char *const *names)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; names[i]; i++) {
		int k = snprintf(buf + len, n - len, "%s%s", i ? ", " : "", names[i]);
		if (k < 0 || (size_t)k >= n - len)
			break;
		len += (size_t)k;
	}
	return buf;
}

/*
 * j must be an object whose keys are all in `known` (NULL-terminated; NULL
 * accepts any key) and appear once each.
 */
static int check_object(struct walk *w, const cJSON *j, const char *const *known)
{
	if (!cJSON_IsObject(j))
		return fail(w, "must be an object, got %s", json_type(j));
	for (const cJSON *k = j->child; k; k = k->next) {
		size_t old = push_key(w, k->string);
		for (const cJSON *p = j->child; p != k; p = p->next) {
			if (strcmp(p->string, k->string) == 0)
				return fail(w, "appears more than once");
		}
		if (known) {
			int ok = 0;
			for (int i = 0; known[i] && !ok; i++)
				ok = strcmp(known[i], k->string) == 0;
			if (!ok) {
				char buf[512];
				return fail(w, "is not known (known: %s)",
					    join_names(buf, sizeof buf, known));
			}
		}
		pop(w, old);
	}
	return 0;
}

static const cJSON *member(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Integer value of the current item in [min, max]. */
static int as_int64(struct walk *w, const cJSON *j, double min, double max, const char *desc,
		    int64_t *out)
{
	if (!cJSON_IsNumber(j))
		return fail(w, "must be %s, got %s", desc, json_type(j));
	double v = j->valuedouble;
	if (!isfinite(v) || v != floor(v) || v < min || v > max)
		return fail(w, "must be %s, got %.15g", desc, v);
	*out = (int64_t)v;
	return 0;
}

/* Integer in [min, max] at the current path. The message describes the lower
 * bound ("a positive integer") and names the upper one only when it is hit. */
static int as_int(struct walk *w, const cJSON *j, long min, long max, int *out)
{
	char desc[64];
	if (min == 0)
		snprintf(desc, sizeof desc, "a non-negative integer");
	else if (min == 1)
		snprintf(desc, sizeof desc, "a positive integer");
	else
		snprintf(desc, sizeof desc, "an integer >= %ld", min);
	if (cJSON_IsNumber(j) && isfinite(j->valuedouble) && j->valuedouble > (double)max &&
	    j->valuedouble == floor(j->valuedouble))
		return fail(w, "must be at most %ld, got %.15g", max, j->valuedouble);
	int64_t v;
	if (as_int64(w, j, (double)min, (double)max, desc, &v))
		return -1;
	*out = (int)v;
	return 0;
}

/* Optional integer member; *out keeps its default when absent. */
static int opt_int(struct walk *w, const cJSON *obj, const char *key, long min, long max,
		   int *out)
{
	const cJSON *j = member(obj, key);
	if (!j)
		return 0;
	size_t old = push_key(w, key);
	if (as_int(w, j, min, max, out))
		return -1;
	pop(w, old);
	return 0;
}

/* Seeds: non-negative integers a double holds exactly. */
#define SEED_MAX 9007199254740991.0 /* 2^53 - 1 */

static int as_seed(struct walk *w, const cJSON *j, uint64_t *out)
{
	int64_t v;
	if (as_int64(w, j, 0, SEED_MAX, "a non-negative integer (at most 2^53-1)", &v))
		return -1;
	*out = (uint64_t)v;
	return 0;
}

enum num_range {
	NUM_POSITIVE, /* > 0 */
	NUM_NONNEG,   /* >= 0 */
	NUM_UNIT,     /* [0, 1) */
};

static int as_float(struct walk *w, const cJSON *j, enum num_range r, float *out)
{
	static const char *const desc[] = {
		[NUM_POSITIVE] = "a positive number",
		[NUM_NONNEG] = "a non-negative number",
		[NUM_UNIT] = "a number in [0, 1)",
	};
	if (!cJSON_IsNumber(j))
		return fail(w, "must be %s, got %s", desc[r], json_type(j));
	double v = j->valuedouble;
	int ok = isfinite(v) && isfinite((float)v);
	if (r == NUM_POSITIVE)
		ok = ok && v > 0 && (float)v > 0;
	else if (r == NUM_NONNEG)
		ok = ok && v >= 0;
	else
		ok = ok && v >= 0 && v < 1 && (float)v < 1;
	if (!ok)
		return fail(w, "must be %s, got %.15g", desc[r], v);
	*out = (float)v;
	return 0;
}

static int opt_float(struct walk *w, const cJSON *obj, const char *key, enum num_range r,
		     float *out)
{
	const cJSON *j = member(obj, key);
	if (!j)
		return 0;
	size_t old = push_key(w, key);
	if (as_float(w, j, r, out))
		return -1;
	pop(w, old);
	return 0;
}

static int as_string(struct walk *w, const cJSON *j, const char **out)
{
	if (!cJSON_IsString(j))
		return fail(w, "must be a string, got %s", json_type(j));
	if (!j->valuestring[0])
		return fail(w, "must be a non-empty string");
	*out = j->valuestring;
	return 0;
}

/* String member; *out is NULL when absent and not required. */
static int get_string(struct walk *w, const cJSON *obj, const char *key, int required,
		      const char **out)
{
	const cJSON *j = member(obj, key);
	*out = NULL;
	size_t old = push_key(w, key);
	if (!j) {
		if (required)
			return fail(w, "is required");
		pop(w, old);
		return 0;
	}
	if (as_string(w, j, out))
		return -1;
	pop(w, old);
	return 0;
}

/* One of names[] (NULL-terminated) at the current path; *out its index. */
static int as_enum(struct walk *w, const cJSON *j, const char *const *names, int *out)
{
	char buf[256];
	if (!cJSON_IsString(j))
		return fail(w, "must be one of %s, got %s", join_names(buf, sizeof buf, names),
			    json_type(j));
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], j->valuestring) == 0) {
			*out = i;
			return 0;
		}
	}
	return fail(w, "must be one of %s, got '%s'", join_names(buf, sizeof buf, names),
		    j->valuestring);
}

static int opt_enum(struct walk *w, const cJSON *obj, const char *key, const char *const *names,
		    int *out)
{
	const cJSON *j = member(obj, key);
	if (!j)
		return 0;
	size_t old = push_key(w, key);
	if (as_enum(w, j, names, out))
		return -1;
	pop(w, old);
	return 0;
}

/* ---- the pieces ---------------------------------------------------------- */

#define LAYER_MAX (1 << 20) /* widest hidden layer accepted */

/* A list of hidden-layer widths. */
static int as_layers(struct walk *w, const cJSON *j, int *widths, int *depth)
{
	if (!cJSON_IsArray(j))
		return fail(w, "must be an array of layer widths, got %s", json_type(j));
	int n = cJSON_GetArraySize(j);
	if (n > MLP_MAX_LAYERS)
		return fail(w, "has %d layers; at most %d are supported", n, MLP_MAX_LAYERS);
	int i = 0;
	for (const cJSON *e = j->child; e; e = e->next, i++) {
		size_t old = push_index(w, i);
		if (as_int(w, e, 1, LAYER_MAX, &widths[i]))
			return -1;
		pop(w, old);
	}
	*depth = n;
	return 0;
}

static const char *const optim_keys[] = {
	"type", "lr", "momentum", "weight_decay", "betas", "eps", NULL,
};

/* OPT. Absent keys take the defaults of the optimizer's type (PyTorch's). */
static int parse_optim(struct walk *w, const cJSON *j, struct optim_config *o)
{
	static const char *const types[] = { "sgd", "adamw", NULL };
	if (check_object(w, j, optim_keys))
		return -1;
	int type = OPTIM_SGD;
	if (opt_enum(w, j, "type", types, &type))
		return -1;
	memset(o, 0, sizeof *o);
	o->kind = (enum optim_kind)type;
	if (type == OPTIM_SGD) {
		o->lr = 0.01f;
		static const char *const adam_only[] = { "betas", "eps", NULL };
		for (int i = 0; adam_only[i]; i++) {
			if (member(j, adam_only[i])) {
				push_key(w, adam_only[i]);
				return fail(w, "applies to optimizer type 'adamw' only, "
					       "but the type is 'sgd'");
			}
		}
	} else {
		o->lr = 0.001f;
		o->beta1 = 0.9f;
		o->beta2 = 0.999f;
		o->eps = 1e-8f;
		o->weight_decay = 0.01f;
		if (member(j, "momentum")) {
			push_key(w, "momentum");
			return fail(w, "applies to optimizer type 'sgd' only, but the type is "
				       "'adamw' (use 'betas')");
		}
	}
	if (opt_float(w, j, "lr", NUM_POSITIVE, &o->lr) ||
	    opt_float(w, j, "momentum", NUM_UNIT, &o->momentum) ||
	    opt_float(w, j, "weight_decay", NUM_NONNEG, &o->weight_decay) ||
	    opt_float(w, j, "eps", NUM_POSITIVE, &o->eps))
		return -1;
	const cJSON *b = member(j, "betas");
	if (b) {
		size_t old = push_key(w, "betas");
		if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
			return fail(w, "must be an array of two numbers in [0, 1), got %s",
				    cJSON_IsArray(b) ? "another length" : json_type(b));
		size_t o0 = push_index(w, 0);
		if (as_float(w, cJSON_GetArrayItem(b, 0), NUM_UNIT, &o->beta1))
			return -1;
		pop(w, o0);
		o0 = push_index(w, 1);
		if (as_float(w, cJSON_GetArrayItem(b, 1), NUM_UNIT, &o->beta2))
			return -1;
		pop(w, o0);
		pop(w, old);
	}
	return 0;
}

static const char *const reg_keys[] = { "input_noise", "hidden_noise", "dropout", "hflip",
					 "scale_crop", "random_crop", NULL };

/* Optional boolean member. */
static int opt_bool(struct walk *w, const cJSON *obj, const char *key, int *out)
{
	const cJSON *j = member(obj, key);
	if (!j)
		return 0;
	size_t old = push_key(w, key);
	if (!cJSON_IsBool(j))
		return fail(w, "must be true or false, got %s", json_type(j));
	*out = cJSON_IsTrue(j);
	pop(w, old);
	return 0;
}

/* REG; all zero (the identity) when keys are absent. */
static int parse_reg(struct walk *w, const cJSON *j, struct regularizer *r)
{
	memset(r, 0, sizeof *r);
	if (check_object(w, j, reg_keys))
		return -1;
	if (opt_float(w, j, "input_noise", NUM_NONNEG, &r->input_noise) ||
	    opt_float(w, j, "hidden_noise", NUM_NONNEG, &r->hidden_noise) ||
	    opt_float(w, j, "dropout", NUM_UNIT, &r->dropout) ||
	    opt_bool(w, j, "hflip", &r->hflip) || opt_bool(w, j, "random_crop", &r->random_crop))
		return -1;
	const cJSON *sc = member(j, "scale_crop");
	if (sc) {
		size_t old = push_key(w, "scale_crop");
		if (!cJSON_IsArray(sc) || cJSON_GetArraySize(sc) != 2)
			return fail(w, "must be an array [min, max] of two positive numbers, e.g. "
				       "[0.5, 1.75]");
		size_t o0 = push_index(w, 0);
		if (as_float(w, cJSON_GetArrayItem(sc, 0), NUM_POSITIVE, &r->scale_min))
			return -1;
		pop(w, o0);
		o0 = push_index(w, 1);
		if (as_float(w, cJSON_GetArrayItem(sc, 1), NUM_POSITIVE, &r->scale_max))
			return -1;
		if (r->scale_max < r->scale_min)
			return fail(w, "is smaller than scale_crop[0]");
		pop(w, o0);
		pop(w, old);
	}
	return 0;
}

/* Optional REG member; *has set when present. */
static int opt_reg(struct walk *w, const cJSON *obj, const char *key, struct regularizer *r,
		   int *has)
{
	const cJSON *j = member(obj, key);
	if (!j)
		return 0;
	size_t old = push_key(w, key);
	if (parse_reg(w, j, r))
		return -1;
	pop(w, old);
	if (has)
		*has = 1;
	return 0;
}

/* epochs, batch_size, optimizer of obj over the defaults already in *t. */
static int parse_train(struct walk *w, const cJSON *obj, struct train_spec *t)
{
	if (opt_int(w, obj, "epochs", 0, INT_MAX, &t->epochs) ||
	    opt_int(w, obj, "batch_size", 0, INT_MAX, &t->batch_size))
		return -1;
	const cJSON *o = member(obj, "optimizer");
	if (o) {
		size_t old = push_key(w, "optimizer");
		if (parse_optim(w, o, &t->optim))
			return -1;
		pop(w, old);
	}
	return 0;
}

static void default_train(struct train_spec *t)
{
	memset(t, 0, sizeof *t);
	t->epochs = 100;
	t->batch_size = 0;
	t->optim.kind = OPTIM_SGD;
	t->optim.lr = 0.01f;
}

static int reg_is_identity(const struct regularizer *r)
{
	return r->input_noise == 0 && r->hidden_noise == 0 && r->dropout == 0 && !r->hflip &&
	       r->scale_min == 0 && r->scale_max == 0 && !r->random_crop;
}

/* ---- data ---------------------------------------------------------------- */

static const char *const kind_names[] = {
	[MOD_INLINE] = "inline", [MOD_NPY] = "npy",       [MOD_IMAGE] = "image",
	[MOD_DEPTH] = "depth",   [MOD_AUDIO] = "audio",   [MOD_FRAMES] = "frames",
	[MOD_LABELMAP] = "labelmap", NULL,
};

const char *modality_kind_name(enum modality_kind k)
{
	if ((int)k < 0 || k > MOD_LABELMAP)
		return NULL;
	return kind_names[k];
}

/* The per-kind decoding options of a modality (common/media.h). An option
 * given for a kind it does not apply to is an error, not silently ignored. */
static int parse_decode_options(struct walk *w, const cJSON *j, enum modality_kind kind,
				struct modality_spec *m)
{
	static const struct {
		const char *key;
		unsigned kinds;  /* bit per enum modality_kind */
	} applies[] = {
		{ "height", 1u << MOD_IMAGE | 1u << MOD_DEPTH | 1u << MOD_FRAMES | 1u << MOD_LABELMAP },
		{ "width", 1u << MOD_IMAGE | 1u << MOD_DEPTH | 1u << MOD_FRAMES | 1u << MOD_LABELMAP },
		{ "channels", 1u << MOD_IMAGE },
		{ "sample_rate", 1u << MOD_AUDIO },
		{ "seconds", 1u << MOD_AUDIO },
		{ "frames", 1u << MOD_FRAMES },
	};
	for (size_t i = 0; i < sizeof applies / sizeof applies[0]; i++) {
		if (member(j, applies[i].key) && !(applies[i].kinds & 1u << kind)) {
			push_key(w, applies[i].key);
			return fail(w, "does not apply to kind '%s'", kind_names[kind]);
		}
	}
	m->height = m->width = m->channels = 0;
	m->sample_rate = kind == MOD_AUDIO ? 16000 : 0;
	m->seconds = 0;
	m->frames = kind == MOD_FRAMES ? 8 : 0;
	if (opt_int(w, j, "height", 1, 65535, &m->height) ||
	    opt_int(w, j, "width", 1, 65535, &m->width) ||
	    opt_int(w, j, "sample_rate", 1000, 384000, &m->sample_rate) ||
	    opt_float(w, j, "seconds", NUM_POSITIVE, &m->seconds) ||
	    opt_int(w, j, "frames", 1, 4096, &m->frames))
		return -1;
	if (!m->height != !m->width) {
		push_key(w, m->height ? "height" : "width");
		return fail(w, "is given without '%s': give both or neither",
			    m->height ? "width" : "height");
	}
	const cJSON *ch = member(j, "channels");
	if (ch) {
		size_t old = push_key(w, "channels");
		if (as_int(w, ch, 1, 4, &m->channels))
			return -1;
		if (m->channels == 2)
			return fail(w, "must be 1 (gray), 3 (RGB) or 4 (RGBA), got 2");
		pop(w, old);
	}
	if (m->seconds > 0) {
		double n = (double)m->seconds * m->sample_rate;
		if (m->seconds > 3600 || n < 512) {
			push_key(w, "seconds");
			return fail(w, "must give between 512 samples (one 512-point window) "
				       "and an hour at %d Hz, got %g s", m->sample_rate,
				    (double)m->seconds);
		}
	}
	return 0;
}

static int parse_modality(struct walk *w, const cJSON *j, struct modality_spec *m)
{
	static const char *const keys[] = { "column", "kind", "dim", "height", "width",
					    "channels", "sample_rate", "seconds", "frames", NULL };
	if (check_object(w, j, keys))
		return -1;
	const char *col;
	if (get_string(w, j, "column", 1, &col))
		return -1;
	static const char *const reserved[] = { "id", "label", "split", NULL };
	for (int i = 0; reserved[i]; i++) {
		if (strcmp(col, reserved[i]) == 0) {
			push_key(w, "column");
			return fail(w, "names the manifest's '%s' column, which cannot be a "
				       "modality", col);
		}
	}
	const cJSON *k = member(j, "kind");
	if (!k) {
		push_key(w, "kind");
		return fail(w, "is required (one of inline, npy, image, depth, audio, frames, "
			       "labelmap)");
	}
	int kind = 0;
	if (opt_enum(w, j, "kind", kind_names, &kind))
		return -1;
	m->dim = 0;
	if (opt_int(w, j, "dim", 1, INT_MAX, &m->dim))
		return -1;
	if (parse_decode_options(w, j, (enum modality_kind)kind, m))
		return -1;
	m->column = xstrdup(col);
	m->kind = (enum modality_kind)kind;
	return 0;
}

/* A class name must not read as a class index or a multi-label list. */
static int bad_class_name(const char *s)
{
	long v;
	return parse_long(s, &v) == 0 || strchr(s, ';') != NULL;
}

static int parse_classes(struct walk *w, const cJSON *j, struct run_config *c)
{
	if (cJSON_IsNumber(j))
		return as_int(w, j, 2, LAYER_MAX, &c->classes);
	if (!cJSON_IsArray(j))
		return fail(w, "must be an integer >= 2 or an array of class names, got %s",
			    json_type(j));
	int n = cJSON_GetArraySize(j);
	if (n < 2)
		return fail(w, "must name at least 2 classes, got %d", n);
	c->class_names = xcalloc((size_t)n, sizeof *c->class_names);
	int i = 0;
	for (const cJSON *e = j->child; e; e = e->next, i++) {
		size_t old = push_index(w, i);
		const char *s;
		if (as_string(w, e, &s))
			return -1;
		if (bad_class_name(s))
			return fail(w, "'%s' is not a usable class name (it reads as a class "
				       "index or contains ';')", s);
		for (int k = 0; k < i; k++)
			if (strcmp(c->class_names[k], s) == 0)
				return fail(w, "repeats class name '%s' (first at index %d)", s,
					    k);
		c->class_names[i] = xstrdup(s);
		c->nclass_names = i + 1;
		pop(w, old);
	}
	c->classes = n;
	return 0;
}

static int parse_data(struct walk *w, const cJSON *j, struct run_config *c)
{
	static const char *const keys[] = {
		"root", "labeled", "unlabeled", "test", "classes", "modalities", "cache_dir",
		"task", "target", "cache_mb", "prefetch", NULL,
	};
	if (check_object(w, j, keys))
		return -1;
	const char *root, *lab, *unl, *test, *cache;
	if (get_string(w, j, "root", 0, &root) || get_string(w, j, "labeled", 1, &lab) ||
	    get_string(w, j, "unlabeled", 0, &unl) || get_string(w, j, "test", 0, &test) ||
	    get_string(w, j, "cache_dir", 0, &cache))
		return -1;
	c->cache_dir = cache ? path_join(w->dir, cache) : NULL;
	if (opt_int(w, j, "cache_mb", 1, 1 << 24, &c->cache_mb) ||
	    opt_bool(w, j, "prefetch", &c->prefetch))
		return -1;
	c->data_root = root ? path_join(w->dir, root) : xstrdup(w->dir);
	c->labeled = path_join(c->data_root, lab);
	c->unlabeled = unl ? path_join(c->data_root, unl) : NULL;
	c->test = test ? path_join(c->data_root, test) : NULL;

	const cJSON *cl = member(j, "classes");
	size_t old = push_key(w, "classes");
	if (!cl)
		return fail(w, "is required (a number of classes >= 2, or their names)");
	if (parse_classes(w, cl, c))
		return -1;
	pop(w, old);

	static const char *const mkeys[] = { "a", "b", NULL };
	const cJSON *mods = member(j, "modalities");
	old = push_key(w, "modalities");
	if (!mods)
		return fail(w, "is required (at least modality 'a')");
	if (check_object(w, mods, mkeys))
		return -1;
	if (!member(mods, "a")) {
		push_key(w, "a");
		return fail(w, "is required: modality a is what the teacher sees");
	}
	c->nmod = member(mods, "b") ? 2 : 1;
	for (int k = 0; k < c->nmod; k++) {
		size_t o2 = push_key(w, mkeys[k]);
		if (parse_modality(w, member(mods, mkeys[k]), &c->mod[k]))
			return -1;
		pop(w, o2);
	}
	if (c->nmod == 2 && strcmp(c->mod[0].column, c->mod[1].column) == 0) {
		push_key(w, "b.column");
		return fail(w, "names column '%s', which modality a already uses",
			    c->mod[1].column);
	}
	pop(w, old);

	static const char *const tasks[] = { "classify", "segment", "multilabel", NULL };
	int task = TASK_CLASSIFY;
	if (opt_enum(w, j, "task", tasks, &task))
		return -1;
	c->task = (enum task_kind)task;
	const cJSON *t = member(j, "target");
	if (c->task != TASK_SEGMENT && t) {
		push_key(w, "target");
		return fail(w, "is only allowed with task 'segment'");
	}
	if (c->task == TASK_SEGMENT) {
		static const char *const tkeys[] = { "column", "height", "width", "ignore_value",
						     "first_class", NULL };
		old = push_key(w, "target");
		if (!t)
			return fail(w, "is required with task 'segment' (the label-map column: "
				       "{\"column\": \"labelmap\"})");
		if (check_object(w, t, tkeys))
			return -1;
		const char *tc;
		if (get_string(w, t, "column", 1, &tc))
			return -1;
		c->target.ignore_value = 0;
		c->target.first_class = 1;
		if (opt_int(w, t, "height", 1, 1 << 16, &c->target.height) ||
		    opt_int(w, t, "width", 1, 1 << 16, &c->target.width) ||
		    opt_int(w, t, "ignore_value", 0, 65535, &c->target.ignore_value) ||
		    opt_int(w, t, "first_class", 0, 65535, &c->target.first_class))
			return -1;
		c->target.column = xstrdup(tc);
		for (int k = 0; k < c->nmod; k++)
			if (strcmp(c->mod[k].column, tc) == 0) {
				push_key(w, "column");
				return fail(w, "names column '%s', which a modality already uses", tc);
			}
		pop(w, old);
	}
	return 0;
}

/* ---- models -------------------------------------------------------------- */

/* A list of stage widths (channels). */
static int as_channels(struct walk *w, const cJSON *j, int *ch, int *n)
{
	if (!cJSON_IsArray(j))
		return fail(w, "must be an array of stage widths (channels), got %s", json_type(j));
	int k = cJSON_GetArraySize(j);
	if (k < 1 || k > NET_MAX_STAGE)
		return fail(w, "must list 1 to %d stage widths, got %d", NET_MAX_STAGE, k);
	int i = 0;
	for (const cJSON *e = j->child; e; e = e->next, i++) {
		size_t old = push_index(w, i);
		if (as_int(w, e, 1, 4096, &ch[i]))
			return -1;
		pop(w, old);
	}
	*n = k;
	return 0;
}

/* One convolutional branch: {"type": "conv3"|"resnet"|"video", "channels": [...],
 * "blocks": N, "crop": T}. */
static int parse_branch(struct walk *w, const cJSON *j, struct net_branch *b, int *crop)
{
	static const char *const keys[] = { "type", "channels", "blocks", "crop", NULL };
	static const char *const types[] = { "conv3", "resnet", "video", NULL };
	if (check_object(w, j, keys))
		return -1;
	const cJSON *t = member(j, "type");
	if (!t) {
		push_key(w, "type");
		return fail(w, "is required (conv3, resnet or video)");
	}
	int type = 0;
	if (opt_enum(w, j, "type", types, &type))
		return -1;
	b->type = (enum net_branch_type)type;
	const cJSON *ch = member(j, "channels");
	size_t old = push_key(w, "channels");
	if (!ch)
		return fail(w, "is required (the stage widths, e.g. [16, 32, 64])");
	if (as_channels(w, ch, b->channels, &b->nstage))
		return -1;
	pop(w, old);
	b->blocks = 1;
	if (opt_int(w, j, "blocks", 1, 64, &b->blocks) || opt_int(w, j, "crop", 1, 1 << 20, crop))
		return -1;
	if (b->type != NET_RESNET && member(j, "blocks")) {
		push_key(w, "blocks");
		return fail(w, "applies to branch type 'resnet' only");
	}
	return 0;
}

/* "cnn": branches (one object per input, required), hidden ([] or [width]);
 * "rgbd_seg": channels. */
static int parse_conv_model(struct walk *w, const cJSON *j, struct model_spec *m)
{
	static const char *const mod_names[] = { "a", "b", NULL };
	m->fusion = FUSION_LATE;
	if (m->type == MODEL_RGBD_SEG) {
		static const char *const no[] = { "branches", "hidden", "fusion", NULL };
		for (int i = 0; no[i]; i++)
			if (member(j, no[i])) {
				push_key(w, no[i]);
				return fail(w, "does not apply to model type 'rgbd_seg' (it has "
					       "'channels')");
			}
		const cJSON *ch = member(j, "channels");
		size_t old = push_key(w, "channels");
		if (!ch)
			return fail(w, "is required (the encoder's stage widths, e.g. [16, 32, 64])");
		if (as_channels(w, ch, m->seg_channels, &m->seg_nstage))
			return -1;
		pop(w, old);
		return 0;
	}
	if (member(j, "channels")) {
		push_key(w, "channels");
		return fail(w, "applies to model type 'rgbd_seg'; a 'cnn' gives channels per branch");
	}
	if (member(j, "fusion")) {
		const cJSON *f = member(j, "fusion");
		if (!cJSON_IsString(f) || strcmp(f->valuestring, "late") != 0) {
			push_key(w, "fusion");
			return fail(w, "must be 'late' for a 'cnn' (branch features are concatenated)");
		}
	}
	const cJSON *h = member(j, "hidden");
	if (h) {
		size_t old = push_key(w, "hidden");
		if (as_layers(w, h, m->hidden, &m->depth))
			return -1;
		if (m->depth > 1)
			return fail(w, "gives %d layers; a 'cnn' head has at most one hidden layer",
				    m->depth);
		pop(w, old);
	}
	const cJSON *br = member(j, "branches");
	size_t old = push_key(w, "branches");
	if (!br)
		return fail(w, "is required: one branch per input, e.g. {\"a\": {\"type\": "
			       "\"resnet\", \"channels\": [16, 32]}}");
	if (check_object(w, br, mod_names))
		return -1;
	for (int k = 0; k < m->ninputs; k++) {
		const char *name = mod_names[m->inputs[k]];
		const cJSON *e = member(br, name);
		size_t o2 = push_key(w, name);
		if (!e)
			return fail(w, "is required: the model takes modality '%s' as input", name);
		if (parse_branch(w, e, &m->cbranch[k], &m->crop[k]))
			return -1;
		pop(w, o2);
	}
	for (const cJSON *e = br->child; e; e = e->next) {
		int mod = strcmp(e->string, "a") == 0 ? 0 : 1;
		int used = 0;
		for (int q = 0; q < m->ninputs; q++)
			used |= m->inputs[q] == mod;
		if (!used) {
			push_key(w, e->string);
			return fail(w, "gives a branch for modality '%s', which the model does not "
				       "take as input", e->string);
		}
	}
	pop(w, old);
	return 0;
}

static int parse_model(struct walk *w, const cJSON *j, struct run_config *c, struct model_spec *m)
{
	static const char *const keys[] = { "inputs", "fusion", "hidden", "branches", "type",
					    "channels", "bn_micro", NULL };
	static const char *const mod_names[] = { "a", "b", NULL };
	static const char *const types[] = { "mlp", "cnn", "rgbd_seg", NULL };
	if (check_object(w, j, keys))
		return -1;

	const cJSON *in = member(j, "inputs");
	size_t old = push_key(w, "inputs");
	if (!in)
		return fail(w, "is required ([\"a\"] or [\"a\", \"b\"])");
	if (!cJSON_IsArray(in))
		return fail(w, "must be an array of modality names (\"a\", \"b\"), got %s",
			    json_type(in));
	int n = cJSON_GetArraySize(in);
	if (n < 1 || n > 2)
		return fail(w, "must list 1 or 2 modalities, got %d", n);
	m->ninputs = n;
	int i = 0;
	for (const cJSON *e = in->child; e; e = e->next, i++) {
		size_t o2 = push_index(w, i);
		if (as_enum(w, e, mod_names, &m->inputs[i]))
			return -1;
		if (i == 1 && m->inputs[1] <= m->inputs[0])
			return fail(w, m->inputs[1] == m->inputs[0] ? "repeats modality '%s'"
						      : "lists '%s' after 'b'; write [\"a\", \"b\"]",
				    mod_names[m->inputs[1]]);
		if (m->inputs[i] >= c->nmod)
			return fail(w, "refers to modality 'b', which data.modalities does not "
				       "declare");
		pop(w, o2);
	}
	pop(w, old);

	int type = MODEL_MLP;
	if (opt_enum(w, j, "type", types, &type))
		return -1;
	m->type = (enum model_type)type;
	m->bn_micro = 8;
	if (opt_int(w, j, "bn_micro", 1, 1 << 20, &m->bn_micro))
		return -1;
	if (m->type != MODEL_MLP)
		return parse_conv_model(w, j, m);
	if (member(j, "channels") || member(j, "bn_micro")) {
		push_key(w, member(j, "channels") ? "channels" : "bn_micro");
		return fail(w, "applies to model types 'cnn' and 'rgbd_seg' only");
	}

	static const char *const fusions[] = { "early", "late", NULL };
	int fusion = FUSION_EARLY;
	if (opt_enum(w, j, "fusion", fusions, &fusion))
		return -1;
	m->fusion = (enum fusion)fusion;

	const cJSON *h = member(j, "hidden");
	old = push_key(w, "hidden");
	if (!h)
		return fail(w, "is required (hidden layer widths; [] for none)");
	if (as_layers(w, h, m->hidden, &m->depth))
		return -1;
	pop(w, old);

	const cJSON *br = member(j, "branches");
	if (br) {
		old = push_key(w, "branches");
		if (m->fusion != FUSION_LATE)
			return fail(w, "is only allowed with fusion 'late'");
		if (check_object(w, br, mod_names))
			return -1;
		for (const cJSON *e = br->child; e; e = e->next) {
			int mod = strcmp(e->string, "a") == 0 ? 0 : 1;
			int k = -1;
			for (int q = 0; q < m->ninputs; q++)
				if (m->inputs[q] == mod)
					k = q;
			size_t o2 = push_key(w, e->string);
			if (k < 0)
				return fail(w, "gives a branch for modality '%s', which the model "
					       "does not take as input", e->string);
			if (as_layers(w, e, m->branch_hidden[k], &m->branch_depth[k]))
				return -1;
			pop(w, o2);
		}
		pop(w, old);
	}
	return 0;
}

static int parse_models(struct walk *w, const cJSON *j, struct run_config *c)
{
	if (check_object(w, j, NULL))
		return -1;
	int n = cJSON_GetArraySize(j);
	if (n < 1)
		return fail(w, "must define at least one model");
	c->models = xcalloc((size_t)n, sizeof *c->models);
	for (const cJSON *e = j->child; e; e = e->next) {
		struct model_spec *m = &c->models[c->nmodels];
		size_t old = push_key(w, e->string);
		if (!e->string[0])
			return fail(w, "is an empty model name");
		m->name = xstrdup(e->string);
		c->nmodels++;
		if (parse_model(w, e, c, m))
			return -1;
		pop(w, old);
	}
	return 0;
}

/* "a" or "a and b" */
static const char *model_inputs(const struct model_spec *m)
{
	if (m->ninputs == 2)
		return "a and b";
	return m->inputs[0] == 0 ? "a" : "b";
}

/* The model named by obj.model (required); *out its index. */
static int model_ref(struct walk *w, const cJSON *obj, const struct run_config *c, int *out)
{
	const char *name;
	if (get_string(w, obj, "model", 1, &name))
		return -1;
	int i = config_model(c, name);
	if (i < 0) {
		char buf[512] = "";
		size_t len = 0;
		for (int k = 0; k < c->nmodels && len < sizeof buf; k++) {
			int r = snprintf(buf + len, sizeof buf - len, "%s%s", k ? ", " : "",
					 c->models[k].name);
			if (r < 0)
				break;
			len += (size_t)r;
		}
		push_key(w, "model");
		return fail(w, "names model '%s', which is not defined (models: %s)", name, buf);
	}
	*out = i;
	return 0;
}

static int parse_teacher(struct walk *w, const cJSON *j, struct run_config *c)
{
	static const char *const keys[] = {
		"model", "seed", "epochs", "batch_size", "optimizer", "regularizer", NULL,
	};
	if (check_object(w, j, keys))
		return -1;
	if (model_ref(w, j, c, &c->teacher_model))
		return -1;
	const struct model_spec *m = &c->models[c->teacher_model];
	if (m->ninputs != 1 || m->inputs[0] != 0) {
		push_key(w, "model");
		return fail(w, "names model '%s', which takes %s; the teacher uses modality a "
			       "only", m->name, model_inputs(m));
	}
	const cJSON *s = member(j, "seed");
	if (s) {
		size_t old = push_key(w, "seed");
		if (as_seed(w, s, &c->teacher_seed))
			return -1;
		pop(w, old);
	}
	if (parse_train(w, j, &c->teacher_train))
		return -1;
	return opt_reg(w, j, "regularizer", &c->teacher_reg, NULL);
}

static int parse_student(struct walk *w, const cJSON *j, struct run_config *c)
{
	static const char *const keys[] = { "epochs", "batch_size", "optimizer", NULL };
	if (check_object(w, j, keys))
		return -1;
	return parse_train(w, j, &c->student_train);
}

static int parse_variant(struct walk *w, const cJSON *j, struct run_config *c,
			 struct variant_spec *v)
{
	static const char *const keys[] = {
		"model", "epochs", "batch_size", "optimizer", "regularizer", NULL,
	};
	const char *vname = variant_name(v->kind);
	if (check_object(w, j, keys))
		return -1;
	if (model_ref(w, j, c, &v->model))
		return -1;
	const struct model_spec *m = &c->models[v->model];
	int uses_b = m->inputs[m->ninputs - 1] == 1;
	if (v->kind == VAR_UM_STUDENT || v->kind == VAR_NOISY_STUDENT) {
		if (m->ninputs != 1 || uses_b) {
			push_key(w, "model");
			return fail(w, "names model '%s', which takes %s; %s uses modality a only",
				    m->name, model_inputs(m), vname);
		}
	} else if (!uses_b) {
		push_key(w, "model");
		return fail(w, "names model '%s', which takes %s; %s needs a model whose inputs "
			       "include b", m->name, model_inputs(m), vname);
	}
	v->train = c->student_train;
	if (parse_train(w, j, &v->train))
		return -1;
	if (opt_reg(w, j, "regularizer", &v->reg, &v->has_reg))
		return -1;
	if (v->kind == VAR_MM_STUDENT_NOREG && v->has_reg && !reg_is_identity(&v->reg)) {
		push_key(w, "regularizer");
		return fail(w, "must be empty: mm_student_noreg trains without a regularizer");
	}
	return 0;
}

static int parse_variants(struct walk *w, const cJSON *j, struct run_config *c)
{
	if (check_object(w, j, NULL))
		return -1;
	int n = cJSON_GetArraySize(j);
	c->variants = xcalloc((size_t)(n ? n : 1), sizeof *c->variants);
	for (const cJSON *e = j->child; e; e = e->next) {
		size_t old = push_key(w, e->string);
		int kind = variant_from_name(e->string);
		if (kind == VAR_TEACHER)
			return fail(w, "is not a student variant: the teacher always runs; "
				       "configure it under 'teacher'");
		if (kind < 0)
			return fail(w, "is not a known variant (known: um_student, noisy_student, "
				       "mm_student_noreg, mm_student, mm_student_sup)");
		struct variant_spec *v = &c->variants[c->nvariants];
		v->kind = (enum variant_kind)kind;
		if (parse_variant(w, e, c, v))
			return -1;
		c->nvariants++;
		pop(w, old);
	}
	return 0;
}

static int parse_seeds(struct walk *w, const cJSON *j, struct run_config *c)
{
	if (!cJSON_IsArray(j))
		return fail(w, "must be an array of non-negative integers, got %s", json_type(j));
	int n = cJSON_GetArraySize(j);
	if (n < 1)
		return fail(w, "must list at least one seed");
	free(c->seeds);
	c->seeds = xcalloc((size_t)n, sizeof *c->seeds);
	c->nseeds = 0;
	for (const cJSON *e = j->child; e; e = e->next) {
		size_t old = push_index(w, c->nseeds);
		if (as_seed(w, e, &c->seeds[c->nseeds]))
			return -1;
		c->nseeds++;
		pop(w, old);
	}
	return 0;
}

static int parse_grid(struct walk *w, const cJSON *j, struct run_config *c)
{
	static const char *const keys[] = { "name", "regularizer", NULL };
	if (!cJSON_IsArray(j))
		return fail(w, "must be an array of {\"name\", \"regularizer\"} settings, got %s",
			    json_type(j));
	int n = cJSON_GetArraySize(j);
	if (n < 1)
		return fail(w, "must list at least one setting");
	c->grid = xcalloc((size_t)n, sizeof *c->grid);
	for (const cJSON *e = j->child; e; e = e->next) {
		size_t old = push_index(w, c->ngrid);
		if (check_object(w, e, keys))
			return -1;
		const char *name;
		if (get_string(w, e, "name", 1, &name))
			return -1;
		for (int k = 0; k < c->ngrid; k++) {
			if (strcmp(c->grid[k].name, name) == 0) {
				push_key(w, "name");
				return fail(w, "repeats setting name '%s' (first at grid[%d])",
					    name, k);
			}
		}
		struct grid_setting *g = &c->grid[c->ngrid];
		if (opt_reg(w, e, "regularizer", &g->reg, NULL))
			return -1;
		g->name = xstrdup(name);
		c->ngrid++;
		pop(w, old);
	}
	return 0;
}

static int parse_pipeline(struct walk *w, const cJSON *j, struct pipeline_spec *p)
{
	static const char *const keys[] = {
		"shard_size", "lease_ms", "heartbeat_ms", "max_attempts", "checkpoint_every",
		"redis", "redis_password", NULL,
	};
	if (check_object(w, j, keys))
		return -1;
	p->heartbeat_ms = 0;
	if (opt_int(w, j, "shard_size", 1, INT_MAX, &p->shard_size) ||
	    opt_int(w, j, "lease_ms", 1, INT_MAX, &p->lease_ms) ||
	    opt_int(w, j, "heartbeat_ms", 1, INT_MAX, &p->heartbeat_ms) ||
	    opt_int(w, j, "max_attempts", 1, INT_MAX, &p->max_attempts) ||
	    opt_int(w, j, "checkpoint_every", 1, INT_MAX, &p->checkpoint_every))
		return -1;
	if (!p->heartbeat_ms) {
		p->heartbeat_ms = p->lease_ms / 3;
		if (p->heartbeat_ms < 1)
			p->heartbeat_ms = 1;
	}
	if (p->heartbeat_ms >= p->lease_ms) {
		push_key(w, member(j, "heartbeat_ms") ? "heartbeat_ms" : "lease_ms");
		return fail(w, "gives a heartbeat of %d ms for a lease of %d ms; the heartbeat "
			       "must be shorter than the lease", p->heartbeat_ms, p->lease_ms);
	}
	const char *url, *pw;
	if (get_string(w, j, "redis", 0, &url) || get_string(w, j, "redis_password", 0, &pw))
		return -1;
	if (url) {
		int tcp = strncmp(url, "redis://", 8) == 0 && url[8];
		int unx = strncmp(url, "unix://", 7) == 0 && url[7] == '/';
		if (!tcp && !unx) {
			push_key(w, "redis");
			return fail(w, "must be redis://host:port or unix:///path, got '%s'", url);
		}
		p->redis_url = xstrdup(url);
	}
	if (pw)
		p->redis_password = xstrdup(pw);
	return 0;
}

/* ---- top level ----------------------------------------------------------- */

static const char *const top_keys[] = {
	"name", "data", "models", "teacher", "student", "regularizer", "loss", "pseudo_labels",
	"variants", "seeds", "grid", "pipeline", "threads", "init", NULL,
};

/* Required object member: walk into it with fn. */
static int section(struct walk *w, const cJSON *root, const char *key, int required,
		   int (*fn)(struct walk *, const cJSON *, struct run_config *),
		   struct run_config *c)
{
	const cJSON *j = member(root, key);
	size_t old = push_key(w, key);
	if (!j) {
		if (required)
			return fail(w, "is required");
		pop(w, old);
		return 0;
	}
	if (fn(w, j, c))
		return -1;
	pop(w, old);
	return 0;
}

static int parse_top(struct walk *w, const cJSON *root, struct run_config *c)
{
	if (!cJSON_IsObject(root))
		return fail(w, "the top level must be an object, got %s", json_type(root));
	if (check_object(w, root, top_keys))
		return -1;
	const char *name;
	if (get_string(w, root, "name", 1, &name))
		return -1;
	c->name = xstrdup(name);

	if (section(w, root, "data", 1, parse_data, c) ||
	    section(w, root, "models", 1, parse_models, c) ||
	    section(w, root, "teacher", 1, parse_teacher, c) ||
	    section(w, root, "student", 0, parse_student, c))
		return -1;
	int has_reg = 0;
	if (opt_reg(w, root, "regularizer", &c->reg, &has_reg))
		return -1;

	static const char *const losses[] = { "ce", "double_softmax", NULL };
	static const char *const pseudo[] = { "hard", "soft", NULL };
	int loss = LOSS_CE;
	if (opt_enum(w, root, "loss", losses, &loss) ||
	    opt_enum(w, root, "pseudo_labels", pseudo, &c->soft_pseudo))
		return -1;
	c->loss = (enum loss_kind)loss;
	static const char *const inits[] = { "philox", "torch", NULL };
	int init = INIT_PHILOX;
	if (opt_enum(w, root, "init", inits, &init))
		return -1;
	c->init = (enum init_kind)init;
	for (int i = 0; c->init == INIT_TORCH && i < c->nmodels; i++)
		if (c->models[i].type != MODEL_MLP) {
			push_key(w, "init");
			return fail(w, "\"torch\" draws only MLP models' parameters, and model '%s' "
				       "is convolutional; use \"philox\" (the default)",
				    c->models[i].name);
		}
	if (opt_int(w, root, "threads", 1, 256, &c->threads))
		return -1;

	if (section(w, root, "variants", 0, parse_variants, c) ||
	    section(w, root, "seeds", 0, parse_seeds, c) ||
	    section(w, root, "grid", 0, parse_grid, c))
		return -1;
	if (c->ngrid && has_reg) {
		push_key(w, "regularizer");
		return fail(w, "has no effect when 'grid' is given; put the regularizer in a "
			       "grid setting");
	}
	if (!c->ngrid) {
		c->grid = xcalloc(1, sizeof *c->grid);
		c->grid[0].name = xstrdup("default");
		c->grid[0].reg = c->reg;
		c->ngrid = 1;
	}
	if (c->nvariants && !c->unlabeled) {
		push_key(w, "data.unlabeled");
		return fail(w, "is required: the student variants train on the unlabeled set");
	}
	const cJSON *p = member(root, "pipeline");
	if (p) {
		size_t old = push_key(w, "pipeline");
		if (parse_pipeline(w, p, &c->pipeline))
			return -1;
		pop(w, old);
	}
	return 0;
}

static void defaults(struct run_config *c)
{
	default_train(&c->teacher_train);
	default_train(&c->student_train);
	c->loss = LOSS_CE;
	c->nseeds = 1;
	c->seeds = xcalloc(1, sizeof *c->seeds);
	c->pipeline.shard_size = 64;
	c->pipeline.lease_ms = 30000;
	c->pipeline.heartbeat_ms = 10000;
	c->pipeline.max_attempts = 3;
	c->pipeline.checkpoint_every = 100;
	c->cache_mb = 0; /* DATASET_CACHE_MB_DEFAULT */
	c->prefetch = 1;
	c->threads = 1;
}

/* Line and column (1-based) of byte offset off in text. */
static void line_col(const char *text, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && text[i]; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

int config_parse(struct run_config *c, const char *text, const char *path)
{
	memset(c, 0, sizeof *c);
	struct walk w = { .file = path, .dir = path_dirname(path) };
	w.path[0] = '\0';
	c->path = xstrdup(path);
	defaults(c);

	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
	int rc;
	if (!root) {
		int line, col;
		size_t off = end && end >= text ? (size_t)(end - text) : 0;
		line_col(text, off, &line, &col);
		rc = mke_error("config '%s': not valid JSON near line %d, column %d", path, line,
			       col);
	} else {
		rc = parse_top(&w, root, c);
		cJSON_Delete(root);
	}
	free(w.dir);
	if (rc)
		config_release(c);
	return rc;
}

int config_load(struct run_config *c, const char *path)
{
	memset(c, 0, sizeof *c);
	size_t len;
	char *text = read_file(path, &len);
	if (!text)
		return mke_error("config '%s' cannot be read", path);
	if (strlen(text) != len) {
		free(text);
		return mke_error("config '%s': not valid JSON (contains a NUL byte)", path);
	}
	int rc = config_parse(c, text, path);
	free(text);
	return rc;
}

void config_release(struct run_config *c)
{
	free(c->path);
	free(c->name);
	free(c->data_root);
	free(c->labeled);
	free(c->unlabeled);
	free(c->test);
	free(c->cache_dir);
	for (int i = 0; i < c->nclass_names; i++)
		free(c->class_names[i]);
	free(c->class_names);
	for (int k = 0; k < 2; k++)
		free(c->mod[k].column);
	free(c->target.column);
	for (int i = 0; i < c->nmodels; i++)
		free(c->models[i].name);
	free(c->models);
	free(c->variants);
	free(c->seeds);
	for (int i = 0; i < c->ngrid; i++)
		free(c->grid[i].name);
	free(c->grid);
	free(c->pipeline.redis_url);
	free(c->pipeline.redis_password);
	memset(c, 0, sizeof *c);
}
