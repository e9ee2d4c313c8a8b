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
 */
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
	RUN(test_table_teacher_double_softmax);
	RUN(test_table_teacher_ce);
	return test_summary();
}
