/* test_config.c - run config parsing: a full config into the struct, the
 * defaults, and bad configs failing with the key path in the message. */
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "config.h"
#include "test.h"
#include "util.h"

/* ---- a minimal config, assembled from pieces ----------------------------- */

#define DATA_AB                                                                          \
	"\"data\": {\"labeled\": \"l.csv\", \"unlabeled\": \"u.csv\", \"classes\": 2, "  \
	"\"modalities\": {\"a\": {\"column\": \"x\", \"kind\": \"inline\"}, "           \
	"\"b\": {\"column\": \"y\", \"kind\": \"inline\"}}}"
#define DATA_A                                                                           \
	"\"data\": {\"labeled\": \"l.csv\", \"unlabeled\": \"u.csv\", \"classes\": 2, "  \
	"\"modalities\": {\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}"
#define MODELS                                                                           \
	"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}, "                  \
	"\"mm\": {\"inputs\": [\"a\", \"b\"], \"hidden\": [4, 4]}}"
#define TEACHER "\"teacher\": {\"model\": \"um\"}"

static char *cfg(const char *data, const char *models, const char *teacher, const char *rest)
{
	return xasprintf("{\"name\": \"t\", %s, %s, %s%s%s}", data, models, teacher,
			 rest[0] ? ", " : "", rest);
}

/* The config must fail with exactly one error line that contains `want`. */
static void expect_error(const char *text, const char *want)
{
	struct run_config c;
	capture_begin();
	int rc = config_parse(&c, text, "bad.json");
	char *err = capture_end();
	CHECK_MSG(rc == -1, "accepted: %s", text);
	CHECK_MSG(strncmp(err, "error: config 'bad.json': ", 26) == 0, "message: %s", err);
	CHECK_MSG(strstr(err, want) != NULL, "wanted \"%s\", got: %s", want, err);
	char *nl = strchr(err, '\n');
	CHECK_MSG(nl && nl[1] == '\0', "not one line: %s", err);
	CHECK(c.name == NULL && c.models == NULL && c.nmodels == 0);
	free(err);
	config_release(&c);
}

static void expect_error_rest(const char *rest, const char *want)
{
	char *t = cfg(DATA_AB, MODELS, TEACHER, rest);
	expect_error(t, want);
	free(t);
}

static void test_minimal_defaults(void)
{
	char *t = cfg(DATA_AB, MODELS, TEACHER, "\"regularizer\": {\"input_noise\": 2}");
	struct run_config c;
	CHECK(config_parse(&c, t, "conf/min.json") == 0);
	free(t);
	CHECK(strcmp(c.name, "t") == 0);
	CHECK(strcmp(c.path, "conf/min.json") == 0);
	CHECK(strcmp(c.data_root, "conf") == 0);
	CHECK(strcmp(c.labeled, "conf/l.csv") == 0);
	CHECK(strcmp(c.unlabeled, "conf/u.csv") == 0);
	CHECK(c.test == NULL);
	CHECK(c.classes == 2 && c.nclass_names == 0 && c.class_names == NULL);
	CHECK(c.nmod == 2 && c.mod[0].kind == MOD_INLINE && c.mod[0].dim == 0);
	CHECK(strcmp(c.mod[1].column, "y") == 0);
	CHECK(c.nmodels == 2 && c.models[1].fusion == FUSION_EARLY);
	CHECK(c.models[1].ninputs == 2 && c.models[1].inputs[0] == 0 && c.models[1].inputs[1] == 1);
	CHECK(c.models[1].depth == 2 && c.models[1].hidden[1] == 4);
	CHECK(c.teacher_model == 0 && c.teacher_seed == 0);
	CHECK(c.teacher_train.epochs == 100 && c.teacher_train.batch_size == 0);
	CHECK(c.teacher_train.optim.kind == OPTIM_SGD);
	CHECK_NEAR(c.teacher_train.optim.lr, 0.01, 1e-9);
	CHECK(c.teacher_train.optim.momentum == 0 && c.teacher_train.optim.weight_decay == 0);
	CHECK(c.student_train.epochs == 100);
	CHECK(c.loss == LOSS_CE && c.soft_pseudo == 0);
	CHECK(c.nvariants == 0);
	CHECK(c.nseeds == 1 && c.seeds[0] == 0);
	CHECK(c.ngrid == 1 && strcmp(c.grid[0].name, "default") == 0);
	CHECK(c.grid[0].reg.input_noise == 2 && c.reg.input_noise == 2);
	CHECK(c.pipeline.shard_size == 64 && c.pipeline.lease_ms == 30000);
	CHECK(c.pipeline.heartbeat_ms == 10000 && c.pipeline.max_attempts == 3);
	CHECK(c.pipeline.checkpoint_every == 100);
	CHECK(c.pipeline.redis_url == NULL && c.pipeline.redis_password == NULL);
	CHECK(c.threads == 1);
	config_release(&c);
	CHECK(c.name == NULL);
	config_release(&c); /* twice is harmless */
}

/* Every field of a config that sets everything. */
static void test_full_roundtrip(void)
{
	char *path = xasprintf("%s/config_full.json", test_fixtures());
	char *dir = path_dirname(path);
	struct run_config c;
	int rc = config_load(&c, path);
	CHECK(rc == 0);
	if (rc) {
		free(path);
		free(dir);
		return;
	}
	char *s = xasprintf("%s/data/moons", dir);
	CHECK(strcmp(c.data_root, s) == 0);
	free(s);
	s = xasprintf("%s/data/moons/labeled.csv", dir);
	CHECK(strcmp(c.labeled, s) == 0);
	free(s);
	s = xasprintf("%s/data/moons/sub/test.csv", dir);
	CHECK(strcmp(c.test, s) == 0);
	free(s);
	CHECK(strcmp(c.unlabeled, "/abs/unlabeled.csv") == 0);
	CHECK(strcmp(c.name, "full") == 0 && strcmp(c.path, path) == 0);
	CHECK(c.classes == 3 && c.nclass_names == 3);
	CHECK(strcmp(c.class_names[0], "neg") == 0 && strcmp(c.class_names[2], "other") == 0);
	CHECK(c.nmod == 2);
	CHECK(strcmp(c.mod[0].column, "x") == 0 && c.mod[0].kind == MOD_INLINE && c.mod[0].dim == 3);
	CHECK(strcmp(c.mod[1].column, "y") == 0 && c.mod[1].kind == MOD_NPY && c.mod[1].dim == 0);

	CHECK(c.nmodels == 3);
	CHECK(strcmp(c.models[0].name, "um") == 0 && c.models[0].ninputs == 1);
	CHECK(c.models[0].inputs[0] == 0 && c.models[0].depth == 2 && c.models[0].hidden[0] == 32);
	CHECK(strcmp(c.models[2].name, "late") == 0 && c.models[2].fusion == FUSION_LATE);
	CHECK(c.models[2].depth == 1 && c.models[2].hidden[0] == 8);
	CHECK(c.models[2].branch_depth[0] == 1 && c.models[2].branch_hidden[0][0] == 7);
	CHECK(c.models[2].branch_depth[1] == 3 && c.models[2].branch_hidden[1][0] == 4 &&
	      c.models[2].branch_hidden[1][2] == 6);
	CHECK(config_model(&c, "mm") == 1 && config_model(&c, "nope") == -1);

	CHECK(c.teacher_model == 0 && c.teacher_seed == 42);
	CHECK(c.teacher_train.epochs == 1000 && c.teacher_train.batch_size == 8);
	CHECK(c.teacher_train.optim.kind == OPTIM_SGD);
	CHECK_NEAR(c.teacher_train.optim.lr, 0.05, 1e-7);
	CHECK_NEAR(c.teacher_train.optim.momentum, 0.9, 1e-7);
	CHECK_NEAR(c.teacher_train.optim.weight_decay, 1e-4, 1e-9);
	CHECK_NEAR(c.teacher_reg.dropout, 0.25, 1e-9);
	CHECK(c.teacher_reg.input_noise == 0);

	CHECK(c.student_train.epochs == 2000 && c.student_train.batch_size == 0);
	const struct optim_config *o = &c.student_train.optim;
	CHECK(o->kind == OPTIM_ADAMW);
	CHECK_NEAR(o->lr, 1e-3, 1e-9);
	CHECK_NEAR(o->beta1, 0.8, 1e-7);
	CHECK_NEAR(o->beta2, 0.99, 1e-7);
	CHECK_NEAR(o->eps, 1e-8, 1e-12);
	CHECK_NEAR(o->weight_decay, 0.01, 1e-9);
	CHECK(c.loss == LOSS_DOUBLE_SOFTMAX && c.soft_pseudo == 1);

	/* JSON order is the table's column order */
	CHECK(c.nvariants == 5);
	static const enum variant_kind order[] = {
		VAR_MM_STUDENT, VAR_UM_STUDENT, VAR_MM_STUDENT_NOREG, VAR_NOISY_STUDENT,
		VAR_MM_STUDENT_SUP,
	};
	for (int i = 0; i < 5 && i < c.nvariants; i++)
		CHECK(c.variants[i].kind == order[i]);
	if (c.nvariants == 5) {
		const struct variant_spec *v = c.variants;
		CHECK(v[0].model == 1 && v[0].has_reg == 0 && v[0].train.epochs == 2000);
		CHECK(v[0].train.optim.kind == OPTIM_ADAMW);
		CHECK_NEAR(v[0].train.optim.beta1, 0.8, 1e-7);
		/* an optimizer object replaces the student's whole optimizer */
		CHECK(v[1].model == 0 && v[1].train.epochs == 50 && v[1].train.batch_size == 0);
		CHECK(v[1].train.optim.kind == OPTIM_SGD);
		CHECK_NEAR(v[1].train.optim.lr, 0.1, 1e-7);
		CHECK(v[2].model == 2 && v[2].has_reg == 1 && v[2].reg.dropout == 0);
		CHECK(v[3].model == 0 && v[3].has_reg == 1 && v[3].train.batch_size == 16);
		CHECK(v[3].train.epochs == 2000);
		CHECK_NEAR(v[3].reg.input_noise, 1, 1e-9);
		CHECK_NEAR(v[3].reg.dropout, 0.5, 1e-9);
		CHECK(v[4].model == 1 && v[4].has_reg == 0);
	}

	CHECK(c.nseeds == 6 && c.seeds[0] == 81 && c.seeds[4] == 94);
	CHECK(c.seeds[5] == 9007199254740991ull);
	CHECK(c.ngrid == 5);
	CHECK(strcmp(c.grid[1].name, "input noise 2") == 0 && c.grid[1].reg.input_noise == 2);
	CHECK(c.grid[2].reg.hidden_noise == 10 && c.grid[2].reg.input_noise == 0);
	CHECK_NEAR(c.grid[3].reg.dropout, 0.8, 1e-7);
	CHECK(strcmp(c.grid[4].name, "bare") == 0 && c.grid[4].reg.dropout == 0);
	CHECK(c.reg.input_noise == 0);

	CHECK(c.pipeline.shard_size == 128 && c.pipeline.lease_ms == 6000);
	CHECK(c.pipeline.heartbeat_ms == 2000); /* lease / 3 */
	CHECK(c.pipeline.max_attempts == 5 && c.pipeline.checkpoint_every == 10);
	CHECK(c.threads == 3);
	CHECK(strcmp(c.pipeline.redis_url, "redis://10.0.0.1:6379") == 0);
	CHECK(strcmp(c.pipeline.redis_password, "s3cret") == 0);
	config_release(&c);
	free(path);
	free(dir);
}

static void test_twomoon_fixture(void)
{
	char *path = xasprintf("%s/config_twomoon.json", test_fixtures());
	struct run_config c;
	CHECK(config_load(&c, path) == 0);
	CHECK(c.nseeds == 10 && c.ngrid == 7 && c.nvariants == 3);
	CHECK(c.mod[0].dim == 1 && c.mod[1].dim == 0);
	config_release(&c);
	free(path);
}

/* "init": "torch" draws MLPs only: a convolutional example is refused,
 * naming the key and the model, and accepted with the default init */
static void test_torch_init_mlp_only(void)
{
	char *text = read_file("deploy/examples/ravdess-small.json", NULL);
	CHECK(text && text[0] == '{');
	if (!text)
		return;
	struct run_config c;
	CHECK(config_parse(&c, text, "ravdess-small.json") == 0);
	config_release(&c);
	char *t = xasprintf("{\"init\": \"torch\", %s", text + 1);
	expect_error(t, "key 'init' \"torch\" draws only MLP models' parameters, and model '");
	free(t);
	free(text);
}

static void test_bad_configs(void)
{
	/* the message format of the brief, verbatim */
	char *t = cfg(DATA_AB,
		      "\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}, "
		      "\"mm\": {\"inputs\": [\"a\", \"b\"], \"hidden\": [4, \"8\"]}}",
		      TEACHER, "");
	expect_error(t, "error: config 'bad.json': key 'models.mm.hidden[1]' must be a positive "
			"integer, got string\n");
	free(t);
	t = cfg(DATA_AB,
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}, "
		"\"mm\": {\"inputs\": [\"a\", \"b\"], \"hiden\": [4]}}",
		TEACHER, "");
	expect_error(t, "key 'models.mm.hiden' is not known (known: inputs, fusion, hidden, "
			"branches, type, channels, bn_micro)");
	free(t);
	t = cfg(DATA_AB,
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}, "
		"\"mm\": {\"inputs\": [\"a\", \"c\"], \"hidden\": [4]}}",
		TEACHER, "");
	expect_error(t, "key 'models.mm.inputs[1]' must be one of a, b, got 'c'");
	free(t);
	t = cfg(DATA_A, MODELS, TEACHER, "");
	expect_error(t, "key 'models.mm.inputs[1]' refers to modality 'b', which data.modalities "
			"does not declare");
	free(t);
	t = cfg(DATA_AB,
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}, "
		"\"mm\": {\"inputs\": [\"a\", \"b\"], \"hidden\": [4], \"branches\": {\"a\": [2]}}}",
		TEACHER, "");
	expect_error(t, "key 'models.mm.branches' is only allowed with fusion 'late'");
	free(t);
	t = cfg(DATA_AB,
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [1,2,3,4,5,6,7,8,9]}}",
		TEACHER, "");
	expect_error(t, "key 'models.um.hidden' has 9 layers; at most 8 are supported");
	free(t);
	t = cfg(DATA_AB, "\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4, 1e7]}}",
		TEACHER, "");
	expect_error(t, "key 'models.um.hidden[1]' must be at most 1048576, got 10000000");
	free(t);
	t = cfg(DATA_AB, "\"models\": {}", TEACHER, "");
	expect_error(t, "key 'models' must define at least one model");
	free(t);
	t = cfg(DATA_AB, "\"models\": {\"um\": {\"inputs\": [\"b\", \"a\"], \"hidden\": []}}",
		TEACHER, "");
	expect_error(t, "key 'models.um.inputs[1]' lists 'a' after 'b'");
	free(t);

	/* data */
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": 1, \"modalities\": "
		"{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.classes' must be an integer >= 2, got 1");
	free(t);
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": [\"cat\", \"cat\"], "
		"\"modalities\": {\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.classes[1]' repeats class name 'cat'");
	free(t);
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": 2, \"modalities\": "
		"{\"a\": {\"column\": \"x\", \"kind\": \"video\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.modalities.a.kind' must be one of inline, npy, image, depth, "
			"audio, frames, labelmap, got 'video'");
	free(t);
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": 2, \"modalities\": "
		"{\"b\": {\"column\": \"x\", \"kind\": \"inline\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.modalities.a' is required");
	free(t);
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": 2, \"modalities\": "
		"{\"a\": {\"column\": \"x\", \"kind\": \"inline\", \"dim\": 0}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.modalities.a.dim' must be a positive integer, got 0");
	free(t);
	t = cfg("\"data\": {\"labeled\": 3, \"classes\": 2, \"modalities\": "
		"{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER, "");
	expect_error(t, "key 'data.labeled' must be a string, got number");
	free(t);
	t = cfg("\"data\": {\"labeled\": \"l.csv\", \"classes\": 2, \"modalities\": "
		"{\"a\": {\"column\": \"x\", \"kind\": \"inline\"}}}",
		"\"models\": {\"um\": {\"inputs\": [\"a\"], \"hidden\": [4]}}", TEACHER,
		"\"variants\": {\"um_student\": {\"model\": \"um\"}}");
	expect_error(t, "key 'data.unlabeled' is required");
	free(t);

	/* teacher */
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"model\": \"um\", \"epochs\": -5}", "");
	expect_error(t, "key 'teacher.epochs' must be a non-negative integer, got -5");
	free(t);
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"model\": \"um\", \"epochs\": 1.5}", "");
	expect_error(t, "key 'teacher.epochs' must be a non-negative integer, got 1.5");
	free(t);
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"model\": \"big\"}", "");
	expect_error(t, "key 'teacher.model' names model 'big', which is not defined "
			"(models: um, mm)");
	free(t);
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"model\": \"mm\"}", "");
	expect_error(t, "key 'teacher.model' names model 'mm', which takes a and b; the teacher "
			"uses modality a only");
	free(t);
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"epochs\": 3}", "");
	expect_error(t, "key 'teacher.model' is required");
	free(t);
	t = cfg(DATA_AB, MODELS, "\"teacher\": {\"model\": \"um\", \"seed\": -1}", "");
	expect_error(t, "key 'teacher.seed' must be a non-negative integer");
	free(t);

	/* optimizers and regularizers */
	expect_error_rest("\"student\": {\"optimizer\": {\"lr\": 0}}",
			  "key 'student.optimizer.lr' must be a positive number, got 0");
	expect_error_rest("\"student\": {\"optimizer\": {\"type\": \"adamw\", \"momentum\": 0.9}}",
			  "key 'student.optimizer.momentum' applies to optimizer type 'sgd' only");
	expect_error_rest("\"student\": {\"optimizer\": {\"eps\": 1e-6}}",
			  "key 'student.optimizer.eps' applies to optimizer type 'adamw' only");
	expect_error_rest("\"student\": {\"optimizer\": {\"type\": \"adam\"}}",
			  "key 'student.optimizer.type' must be one of sgd, adamw, got 'adam'");
	expect_error_rest("\"student\": {\"optimizer\": {\"type\": \"adamw\", \"betas\": [0.9]}}",
			  "key 'student.optimizer.betas' must be an array of two numbers");
	expect_error_rest("\"student\": {\"optimizer\": {\"type\": \"adamw\", "
			  "\"betas\": [0.9, 1]}}",
			  "key 'student.optimizer.betas[1]' must be a number in [0, 1), got 1");
	expect_error_rest("\"student\": {\"regularizer\": {}}",
			  "key 'student.regularizer' is not known (known: epochs, batch_size, "
			  "optimizer)");
	expect_error_rest("\"regularizer\": {\"dropout\": 1}",
			  "key 'regularizer.dropout' must be a number in [0, 1), got 1");
	expect_error_rest("\"regularizer\": {\"input_noise\": -0.5}",
			  "key 'regularizer.input_noise' must be a non-negative number, got -0.5");
	expect_error_rest("\"grid\": [{\"name\": \"a\"}, {\"name\": \"b\", \"regularizer\": "
			  "{\"dropout\": 1.0}}]",
			  "key 'grid[1].regularizer.dropout' must be a number in [0, 1), got 1");
	expect_error_rest("\"grid\": [{\"name\": \"a\"}, {\"name\": \"a\"}]",
			  "key 'grid[1].name' repeats setting name 'a' (first at grid[0])");
	expect_error_rest("\"grid\": [{\"name\": \"a\"}], \"regularizer\": {}",
			  "key 'regularizer' has no effect when 'grid' is given");
	expect_error_rest("\"grid\": []", "key 'grid' must list at least one setting");

	/* variants */
	expect_error_rest("\"variants\": {\"mm_teacher\": {\"model\": \"mm\"}}",
			  "key 'variants.mm_teacher' is not a known variant (known: um_student, "
			  "noisy_student, mm_student_noreg, mm_student, mm_student_sup)");
	expect_error_rest("\"variants\": {\"teacher\": {\"model\": \"um\"}}",
			  "key 'variants.teacher' is not a student variant");
	expect_error_rest("\"variants\": {\"um_student\": {\"model\": \"mm\"}}",
			  "key 'variants.um_student.model' names model 'mm', which takes a and b; "
			  "um_student uses modality a only");
	expect_error_rest("\"variants\": {\"noisy_student\": {\"model\": \"mm\"}}",
			  "noisy_student uses modality a only");
	expect_error_rest("\"variants\": {\"mm_student\": {\"model\": \"um\"}}",
			  "key 'variants.mm_student.model' names model 'um', which takes a; "
			  "mm_student needs a model whose inputs include b");
	expect_error_rest("\"variants\": {\"mm_student_noreg\": {\"model\": \"mm\", "
			  "\"regularizer\": {\"dropout\": 0.5}}}",
			  "key 'variants.mm_student_noreg.regularizer' must be empty");
	expect_error_rest("\"variants\": {\"mm_student\": {\"model\": \"mm\", \"epochs\": \"9\"}}",
			  "key 'variants.mm_student.epochs' must be a non-negative integer, got "
			  "string");

	/* top level, seeds, pipeline */
	expect_error_rest("\"seed\": 3", "key 'seed' is not known (known: name, data, models, "
					 "teacher, student, regularizer, loss, pseudo_labels, "
					 "variants, seeds, grid, pipeline, threads, init)");
	expect_error_rest("\"seeds\": [1, -1]",
			  "key 'seeds[1]' must be a non-negative integer (at most 2^53-1), got -1");
	expect_error_rest("\"seeds\": []", "key 'seeds' must list at least one seed");
	expect_error_rest("\"threads\": 0", "key 'threads' must be a positive integer, got 0");
	expect_error_rest("\"loss\": 3", "key 'loss' must be one of ce, double_softmax, got number");
	expect_error_rest("\"init\": \"numpy\"",
			  "key 'init' must be one of philox, torch, got 'numpy'");
	expect_error_rest("\"loss\": \"ce\", \"loss\": \"ce\"", "key 'loss' appears more than once");
	expect_error_rest("\"pseudo_labels\": \"fuzzy\"",
			  "key 'pseudo_labels' must be one of hard, soft, got 'fuzzy'");
	expect_error_rest("\"pipeline\": {\"lease_ms\": 1000, \"heartbeat_ms\": 1000}",
			  "key 'pipeline.heartbeat_ms' gives a heartbeat of 1000 ms for a lease "
			  "of 1000 ms");
	expect_error_rest("\"pipeline\": {\"redis\": \"http://x\"}",
			  "key 'pipeline.redis' must be redis://host:port or unix:///path");
	expect_error_rest("\"pipeline\": {\"shard_size\": 0}",
			  "key 'pipeline.shard_size' must be a positive integer, got 0");
	expect_error("{\"data\": {}}", "key 'name' is required");
	expect_error("[1, 2]", "the top level must be an object, got array");
	expect_error("{\"name\": \"x\",\n  \"data\": {,}}", "not valid JSON near line 2");
	expect_error("{\"name\": \"x\"} trailing", "not valid JSON near line 1");
}

/* Every prefix of a valid config, and every single-byte change to a digit or
 * quote, parses or fails cleanly (run under the sanitizers in make check). */
static void test_mutations(void)
{
	char *path = xasprintf("%s/config_full.json", test_fixtures());
	size_t len;
	char *text = read_file(path, &len);
	CHECK(text != NULL);
	if (!text) {
		free(path);
		return;
	}
	int accepted = 0, failed_ok = 1;
	capture_begin();
	for (size_t n = 0; n < len; n++) {
		char *t = xmalloc(n + 1);
		memcpy(t, text, n);
		t[n] = '\0';
		struct run_config c;
		if (config_parse(&c, t, path) == 0)
			accepted++;
		else
			failed_ok &= c.name == NULL && c.models == NULL;
		config_release(&c);
		free(t);
	}
	static const char subst[] = "0-\"}";
	for (size_t i = 0; i < len; i++) {
		char keep = text[i];
		for (int k = 0; subst[k]; k++) {
			text[i] = subst[k];
			struct run_config c;
			if (config_parse(&c, text, path) != 0)
				failed_ok &= c.name == NULL;
			config_release(&c);
		}
		text[i] = keep;
	}
	char *err = capture_end();
	free(err);
	CHECK(accepted <= 2); /* at most the whole text less its final newline */
	CHECK(failed_ok);
	free(text);
	free(path);
}

static void test_load_missing_file(void)
{
	struct run_config c;
	capture_begin();
	int rc = config_load(&c, "/nonexistent/mke.json");
	char *err = capture_end();
	CHECK(rc == -1);
	CHECK(strstr(err, "'/nonexistent/mke.json'") != NULL);
	free(err);
}

static void test_variant_names(void)
{
	for (int k = 0; k < VAR_COUNT; k++)
		CHECK(variant_from_name(variant_name((enum variant_kind)k)) == k);
	CHECK(strcmp(variant_name(VAR_MM_STUDENT), "mm_student") == 0);
	CHECK(variant_from_name("mm_student_sup") == VAR_MM_STUDENT_SUP);
	CHECK(variant_from_name("bogus") == -1 && variant_from_name(NULL) == -1);
	CHECK(variant_name(VAR_COUNT) == NULL);
	CHECK(strcmp(modality_kind_name(MOD_LABELMAP), "labelmap") == 0);
}

/* Every object schema in the JSON schema closes its keys. */
static int schema_closed(const cJSON *j, int *objects)
{
	int bad = 0;
	if (cJSON_IsObject(j)) {
		const cJSON *ty = cJSON_GetObjectItemCaseSensitive(j, "type");
		if (cJSON_IsString(ty) && strcmp(ty->valuestring, "object") == 0) {
			(*objects)++;
			const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
			const cJSON *pn = cJSON_GetObjectItemCaseSensitive(j, "propertyNames");
			if (!cJSON_IsFalse(ap) && !(cJSON_IsObject(ap) || pn)) {
				fprintf(stderr, "  schema object without additionalProperties: %s\n",
					cJSON_GetObjectItemCaseSensitive(j, "description")
						? cJSON_GetObjectItemCaseSensitive(j, "description")
							  ->valuestring
						: "?");
				bad++;
			}
		}
	}
	for (const cJSON *e = j->child; e; e = e->next)
		bad += schema_closed(e, objects);
	return bad;
}

static void test_schema_is_closed(void)
{
	char *text = read_file("schemas/run-config.schema.json", NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	cJSON *j = cJSON_Parse(text);
	CHECK(j != NULL);
	if (j) {
		int objects = 0;
		CHECK(schema_closed(j, &objects) == 0);
		CHECK(objects >= 10);
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "$schema");
		CHECK(cJSON_IsString(s) &&
		      strcmp(s->valuestring, "https://json-schema.org/draft/2020-12/schema") == 0);
		cJSON_Delete(j);
	}
	free(text);
}

int main(void)
{
	RUN(test_minimal_defaults);
	RUN(test_full_roundtrip);
	RUN(test_twomoon_fixture);
	RUN(test_bad_configs);
	RUN(test_torch_init_mlp_only);
	RUN(test_mutations);
	RUN(test_load_missing_file);
	RUN(test_variant_names);
	RUN(test_schema_is_closed);
	return test_summary();
}
