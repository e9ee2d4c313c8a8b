/*
 * test_teacher.c - the teacher of record of the TwoMoon table configs is the
 * paper's teacher: trained by mke with the config's seed, it pseudo-labels
 * the 270 unlabeled points exactly as the public code's teacher does
 * (tests/fixtures/twomoon_teacher_torch.txt, written by
 * gen_twomoon_teacher.py with PyTorch seed 39), with the same test accuracy,
 * for the double-softmax loss (twomoon-table2.json) and the standard one
 * (twomoon-table2-ce.json). The students of a table depend on the teacher
 * only through these labels, so the tables' students learn from the targets
 * the paper's students learned from.
 *
 * The configs draw their parameters as PyTorch does ("init": "torch"): the
 * fixture's initial parameters of three seeds are matched bit for bit, and
 * the teacher trained by mke from them ends where PyTorch's ended.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "experiment.h"
#include "fixture.h"
#include "model.h"
#include "test.h"
#include "train.h"
#include "util.h"

static const struct fx_tensor *find(const struct fixture *f, const char *name)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

static void check_teacher(const char *config, const char *loss)
{
	struct fixture fx;
	char *path = xasprintf("%s/twomoon_teacher_torch.txt", test_fixtures());
	int frc = fixture_load(&fx, path);
	CHECK(frc == 0);
	char name[64];
	snprintf(name, sizeof name, "%s/pseudo", loss);
	const struct fx_tensor *want = frc == 0 ? find(&fx, name) : NULL;
	snprintf(name, sizeof name, "%s/test_accuracy", loss);
	const struct fx_tensor *want_acc = frc == 0 ? find(&fx, name) : NULL;
	CHECK(want && want->n == 270 && want_acc && want_acc->n == 1);

	struct run_config c;
	struct exp_data d;
	int crc = config_load(&c, config);
	CHECK(crc == 0);
	int drc = crc == 0 ? exp_data_load(&d, &c) : -1;
	CHECK(drc == 0);
	if (want && want_acc && drc == 0) {
		struct model m;
		CHECK(train_teacher(&m, &c, &d, c.teacher_seed, NULL) == 0);
		snprintf(name, sizeof name, "%s/trained", loss);
		const struct fx_tensor *want_w = find(&fx, name);
		CHECK(want_w && want_w->n == m.mlp.nparams);
		double worst = 0.0; /* largest |mke - torch| over the largest |torch| */
		float top = 0.0f;
		for (size_t i = 0; want_w && i < want_w->n && i < m.mlp.nparams; i++)
			top = fmaxf(top, fabsf(want_w->v[i]));
		for (size_t i = 0; want_w && i < want_w->n && i < m.mlp.nparams; i++)
			worst = fmax(worst, fabs(m.mlp.params[i] - want_w->v[i]) / top);
		CHECK_MSG(worst < 1e-4, "%s: trained teacher %.3g from PyTorch's", config, worst);
		double acc = eval_model(&m, &d.test, &c.models[c.teacher_model]);
		CHECK_NEAR(acc, want_acc->v[0], 1e-6); /* the fixture holds float32 */
		struct pseudo ps;
		CHECK(pseudo_make(&ps, &m, &c, &d) == 0);
		int differ = 0;
		for (int i = 0; i < ps.n && i < 270; i++)
			differ += argmax_row(ps.probs + (size_t)i * 2, 2) != (int)want->v[i];
		CHECK(ps.n == 270);
		CHECK_MSG(differ == 0, "%s: %d of 270 pseudo-labels differ from the reference teacher's",
			  config, differ);
		pseudo_release(&ps);
		model_release(&m);
	}
	if (drc == 0)
		exp_data_release(&d);
	if (crc == 0)
		config_release(&c);
	fixture_release(&fx);
	free(path);
}

/* init/<seed>/<d_in>x<h>: the MLP d_in -> h -> h -> 2 (early fusion of d_in
 * one-column inputs) that torch.manual_seed(seed) initialises */
static void test_torch_init_bits(void)
{
	struct fixture fx;
	char *path = xasprintf("%s/twomoon_teacher_torch.txt", test_fixtures());
	int frc = fixture_load(&fx, path);
	CHECK(frc == 0);
	int seen = 0;
	for (int t = 0; frc == 0 && t < fx.n; t++) {
		uint64_t seed;
		int d_in, h;
		if (sscanf(fx.t[t].name, "init/%" SCNu64 "/%dx%d", &seed, &d_in, &h) != 3)
			continue;
		seen++;
		struct mlp_arch a = { 0 };
		a.nbranch = d_in;
		a.fusion = FUSION_EARLY;
		for (int k = 0; k < d_in; k++)
			a.in_dim[k] = 1;
		a.depth = 2;
		a.hidden[0] = a.hidden[1] = h;
		a.classes = 2;
		struct mlp m;
		CHECK(mlp_init(&m, &a) == 0);
		CHECK(m.nparams == fx.t[t].n);
		mlp_init_params_torch(&m, seed);
		int differ = 0;
		for (size_t i = 0; i < m.nparams && i < fx.t[t].n; i++)
			differ += memcmp(&m.params[i], &fx.t[t].v[i], sizeof(float)) != 0;
		CHECK_MSG(differ == 0, "%s: %d of %zu parameters differ from PyTorch's", fx.t[t].name,
			  differ, m.nparams);
		/* the keyed streams draw other weights from the same seed */
		mlp_init_params(&m, seed);
		CHECK(memcmp(m.params, fx.t[t].v, m.nparams * sizeof(float)) != 0);
		mlp_release(&m);
	}
	CHECK(seen == 3);
	fixture_release(&fx);
	free(path);
}

static void test_table_teacher_double_softmax(void)
{
	check_teacher("deploy/examples/twomoon-table2.json", "double_softmax");
}

static void test_table_teacher_ce(void)
{
	check_teacher("deploy/examples/twomoon-table2-ce.json", "ce");
}

int main(void)
{
	RUN(test_torch_init_bits);
	RUN(test_table_teacher_double_softmax);
	RUN(test_table_teacher_ce);
	return test_summary();
}
