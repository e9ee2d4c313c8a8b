/*
 * checkpoint.c - see checkpoint.h. Owns the checkpoint's tensor names and
 * metadata keys.
 */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

int checkpoint_save(const char *path, const struct model *m, const struct optim *o,
		    const struct ckpt_meta *meta)
{
	struct st_writer w;
	st_writer_init(&w);
	int nt = model_ntensors(m);
	for (int i = 0; i < nt; i++) {
		float *data;
		int ndim;
		int64_t shape[4];
		const char *name = model_tensor(m, i, &data, &ndim, shape);
		st_writer_add(&w, name, ST_F32, ndim, shape, data);
	}
	/* batch norm's num_batches_tracked, an int64 scalar in PyTorch */
	int nbn = model_nbn(m);
	char **bn_names = nbn ? xcalloc((size_t)nbn, sizeof(char *)) : NULL;
	int64_t tracked = m->type == MODEL_MLP ? 0 : (int64_t)m->net.bn_batches;
	for (int j = 0; j < nbn; j++) {
		bn_names[j] = xasprintf("%s.num_batches_tracked", model_bn_name(m, j));
		st_writer_add(&w, bn_names[j], ST_I64, 0, NULL, &tracked);
	}
	size_t ns = 0;
	if (o && o->state) {
		ns = o->cfg.kind == OPTIM_ADAMW ? 2 * o->n : o->n;
		int64_t shape[1] = {(int64_t)ns};
		st_writer_add(&w, "optim.state", ST_F32, 1, shape, o->state);
	}
	char buf[64];
	st_writer_meta(&w, "format", "mke-checkpoint/1");
	snprintf(buf, sizeof buf, "%d", meta->epoch);
	st_writer_meta(&w, "epoch", buf);
	snprintf(buf, sizeof buf, "%ld", meta->step);
	st_writer_meta(&w, "step", buf);
	snprintf(buf, sizeof buf, "%ld", o ? o->t : 0L);
	st_writer_meta(&w, "optim_t", buf);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)meta->seed);
	st_writer_meta(&w, "seed", buf);
	st_writer_meta(&w, "variant", meta->variant);
	int rc = st_writer_write(&w, path);
	st_writer_release(&w);
	for (int j = 0; j < nbn; j++)
		free(bn_names[j]);
	free(bn_names);
	return rc;
}

static const char *meta_get(const struct st_file *st, const char *key)
{
	for (int i = 0; i < st->nmeta; i++)
		if (strcmp(st->meta_keys[i], key) == 0)
			return st->meta_vals[i];
	return NULL;
}

int checkpoint_load(const char *path, struct model *m, struct optim *o, struct ckpt_meta *meta)
{
	struct st_file st;
	if (st_load(&st, path) != 0)
		return -1;
	int rc = -1;
	int nt = model_ntensors(m);
	for (int i = 0; i < nt; i++) {
		float *data;
		int ndim;
		int64_t shape[4];
		const char *name = model_tensor(m, i, &data, &ndim, shape);
		size_t n = 1;
		for (int k = 0; k < ndim; k++)
			n *= (size_t)shape[k];
		if (st_read_f32(&st, name, data, n) != 0)
			goto out;
	}
	if (model_nbn(m) > 0) {
		char *name = xasprintf("%s.num_batches_tracked", model_bn_name(m, 0));
		const struct st_tensor *t = st_find(&st, name);
		free(name);
		if (t && t->dtype == ST_I64 && t->nbytes == 8) {
			int64_t v;
			memcpy(&v, t->data, 8);
			m->net.bn_batches = (long)v;
		}
	}
	long t = 0;
	const char *v = meta_get(&st, "optim_t");
	if (v && parse_long(v, &t) != 0) {
		mke_error("checkpoint '%s': metadata 'optim_t' is not a number", path);
		goto out;
	}
	if (o && o->state) {
		size_t ns = o->cfg.kind == OPTIM_ADAMW ? 2 * o->n : o->n;
		if (st_find(&st, "optim.state")) {
			if (st_read_f32(&st, "optim.state", o->state, ns) != 0)
				goto out;
			o->t = t;
		}
	} else if (o) {
		o->t = t;
	}
	if (meta) {
		memset(meta, 0, sizeof *meta);
		long e = 0, s = 0;
		if ((v = meta_get(&st, "epoch")) && parse_long(v, &e) == 0)
			meta->epoch = (int)e;
		if ((v = meta_get(&st, "step")) && parse_long(v, &s) == 0)
			meta->step = s;
		if ((v = meta_get(&st, "seed")))
			meta->seed = strtoull(v, NULL, 10);
		if ((v = meta_get(&st, "variant")))
			snprintf(meta->variant, sizeof meta->variant, "%s", v);
	}
	rc = 0;
out:
	st_release(&st);
	return rc;
}
