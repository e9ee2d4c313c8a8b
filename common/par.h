/*
 * par.h - a persistent pool of threads for data parallelism inside one
 * process (model_set_threads, model.h). T-1 worker threads are created once
 * and park on a condition variable between calls; the caller is thread 0.
 * par_run hands every thread the same job and returns when all are done.
 * Inside a job, par_reduce is the thread-level twin of an MPI_Allreduce:
 * every thread calls it the same number of times, and each gets the sum of
 * all threads' values (summed in thread order, so the result does not depend
 * on timing), passed through an outer reduce (MPI) once when there is one.
 */
#ifndef MKE_PAR_H
#define MKE_PAR_H

#include "nn.h"

struct par_pool;

/* A pool of T threads in all (T >= 2; the caller counts as one). Owned by the
 * caller; par_free stops and joins the threads. */
struct par_pool *par_new(int T);
void par_free(struct par_pool *p);
int par_threads(const struct par_pool *p);

/* Run fn(arg, t) for t = 0..T-1, t 0 on the calling thread; returns when
 * every call has returned. Not reentrant. */
void par_run(struct par_pool *p, void (*fn)(void *arg, int t), void *arg);

/* Inside a job: wait until every thread has reached this call. */
void par_barrier(struct par_pool *p);

/* Inside a job, called by every thread t with the same n: vals[0..n) becomes
 * the sum over threads, passed through outer(sum, n, outer_arg) (the other
 * ranks' sums) once, by thread 0, when outer is not NULL. */
void par_reduce(struct par_pool *p, int t, double *vals, int n, reduce_fn outer,
		void *outer_arg);

#endif
