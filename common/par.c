/*
 * par.c - see par.h. One mutex guards the pool: a job is published by
 * bumping a generation counter (workers wait on `go` for it to change), and
 * completion is a count the caller waits on (`done`). The barrier is a
 * second generation counter. Jobs are milliseconds of convolutions, so a
 * sleeping wait (no spinning) costs nothing measurable and leaves the core to
 * whoever shares it.
 */
#include "par.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct par_pool {
	int T;
	pthread_t *thr;
	pthread_mutex_t mu;
	pthread_cond_t go, done, bar;
	unsigned long gen;      /* job generation */
	int running;            /* workers still in the current job */
	int stop;
	void (*fn)(void *arg, int t);
	void *arg;
	unsigned long bgen;     /* barrier generation */
	int bwait;              /* threads waiting at the barrier */
	double **slot;          /* (T) par_reduce: each thread's vals */
	double *sum;            /* par_reduce: the sum, cap doubles */
	int cap;
};

struct worker_arg {
	struct par_pool *p;
	int t;
};

static void *worker_main(void *varg)
{
	struct worker_arg wa = *(struct worker_arg *)varg;
	free(varg);
	struct par_pool *p = wa.p;
	unsigned long seen = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		void (*fn)(void *, int) = p->fn;
		void *arg = p->arg;
		pthread_mutex_unlock(&p->mu);
		fn(arg, wa.t);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct par_pool *par_new(int T)
{
	struct par_pool *p = xcalloc(1, sizeof(*p));
	p->T = T;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	pthread_cond_init(&p->bar, NULL);
	p->slot = xcalloc((size_t)T, sizeof(*p->slot));
	p->thr = xcalloc((size_t)T, sizeof(*p->thr));
	for (int t = 1; t < T; t++) {
		struct worker_arg *wa = xmalloc(sizeof(*wa));
		wa->p = p;
		wa->t = t;
		if (pthread_create(&p->thr[t], NULL, worker_main, wa) != 0) {
			/* run with the threads made so far (jobs are split by T,
			 * so stop here and say so) */
			free(wa);
			mke_warn("par: could not start thread %d of %d; running on %d", t + 1, T, t);
			p->T = t;
			break;
		}
	}
	return p;
}

void par_free(struct par_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int t = 1; t < p->T; t++)
		pthread_join(p->thr[t], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->bar);
	free(p->slot);
	free(p->sum);
	free(p->thr);
	free(p);
}

int par_threads(const struct par_pool *p)
{
	return p ? p->T : 1;
}

void par_run(struct par_pool *p, void (*fn)(void *arg, int t), void *arg)
{
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->running = p->T - 1;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	fn(arg, 0);
	pthread_mutex_lock(&p->mu);
	while (p->running > 0)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void par_barrier(struct par_pool *p)
{
	pthread_mutex_lock(&p->mu);
	unsigned long g = p->bgen;
	if (++p->bwait == p->T) {
		p->bwait = 0;
		p->bgen++;
		pthread_cond_broadcast(&p->bar);
	} else {
		while (p->bgen == g)
			pthread_cond_wait(&p->bar, &p->mu);
	}
	pthread_mutex_unlock(&p->mu);
}

void par_reduce(struct par_pool *p, int t, double *vals, int n, reduce_fn outer,
		void *outer_arg)
{
	p->slot[t] = vals;
	par_barrier(p);
	if (t == 0) {
		/* the others wait at the next barrier: the sum is thread 0's alone */
		if (n > p->cap) {
			free(p->sum);
			p->sum = xmalloc((size_t)n * sizeof(double));
			p->cap = n;
		}
		memcpy(p->sum, vals, (size_t)n * sizeof(double));
		for (int u = 1; u < p->T; u++)
			for (int i = 0; i < n; i++)
				p->sum[i] += p->slot[u][i];
		if (outer)
			outer(p->sum, n, outer_arg);
	}
	par_barrier(p);
	memcpy(vals, p->sum, (size_t)n * sizeof(double));
}
