/*
 * dp_mpi.c - train.h's data-parallel hooks over MPI (see dp_mpi.h).
 */
#include "dp_mpi.h"

#include <mpi.h>

/* Sum buf[0..n) over the ranks, one MPI_Allreduce per bucket. */
void dp_mpi_allreduce(float *buf, size_t n, void *arg)
{
	(void)arg;
	for (size_t off = 0; off < n; off += DP_BUCKET_FLOATS) {
		size_t k = n - off < DP_BUCKET_FLOATS ? n - off : DP_BUCKET_FLOATS;
		MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
	}
}

/* Sum vals[0..n) over the ranks. */
void dp_mpi_reduce(double *vals, int n, void *arg)
{
	(void)arg;
	MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* This rank's hooks. */
struct dp_hooks dp_mpi_hooks(void)
{
	int rank, world;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	return (struct dp_hooks){.rank = rank, .world = world, .allreduce = dp_mpi_allreduce,
				 .reduce = dp_mpi_reduce};
}
