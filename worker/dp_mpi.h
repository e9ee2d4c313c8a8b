/*
 * dp_mpi.h - the data-parallel hooks of train.h over MPI_COMM_WORLD: the
 * gradient sum and the sums of doubles (batch-norm statistics, loss). The
 * worker trains with them; tests/bench/mpi/dp_train.c times them.
 */
#ifndef MKE_DP_MPI_H
#define MKE_DP_MPI_H

#include <stddef.h>

#include "train.h"

/* Gradients are summed in buckets of this many floats (one MPI_Allreduce
 * each; docs/scaling.md). */
#define DP_BUCKET_FLOATS (1u << 20)

/* Sum buf[0..n) over the ranks of MPI_COMM_WORLD, in place, in buckets. */
void dp_mpi_allreduce(float *buf, size_t n, void *arg);
/* Sum vals[0..n) over the ranks, in place. */
void dp_mpi_reduce(double *vals, int n, void *arg);
/* The hooks of this rank of MPI_COMM_WORLD (MPI is initialised). */
struct dp_hooks dp_mpi_hooks(void);

#endif
