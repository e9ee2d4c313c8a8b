/*
 * allreduce.c - MPI_Allreduce bandwidth of float sums, the student phase's
 * data-parallel step (worker/dp_mpi.c reduces gradients in buckets of 1M
 * floats). Built by `make bench` with mpicc ($(O)/bench/mpi_allreduce), run as
 * `mpirun -np 2 build/bench/mpi_allreduce [ROUNDS [MAX_FLOATS]]`.
 *
 * For each size n (1K, 4K, ... up to MAX_FLOATS, default 16M floats) rank 0 picks a call count so that a round
 * lasts about 20 ms (from one timed call) and broadcasts it: every rank then
 * makes exactly that many calls, so no rank decides from its own clock when
 * to stop (which would leave the others waiting in a collective). A round is
 * timed from a barrier to the last call's return on rank 0 and the time per
 * call is the round's time / count; the median over ROUNDS (default 7) is
 * printed. One line per size:
 *
 *   allreduce N_FLOATS US_PER_CALL BUS_GBPS
 *
 * BUS_GBPS is the ring all-reduce's bus bandwidth, 2 (p-1)/p * 4n bytes per
 * call (NCCL's convention: what each link carries), so it compares across
 * rank counts; the cost model in docs/scaling.md fits alpha + beta * bytes.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, world;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	int rounds = argc > 1 ? atoi(argv[1]) : 7;
	if (rounds < 1 || rounds > 1000)
		rounds = 7;
	int maxn = argc > 2 ? atoi(argv[2]) : 16 << 20;
	if (maxn < 1024 || maxn > 64 << 20)
		maxn = 16 << 20;
	float *buf = malloc(sizeof(float) * (size_t)maxn);
	double *t = malloc(sizeof(double) * (size_t)rounds);
	if (!buf || !t) {
		fprintf(stderr, "error: out of memory\n");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	for (int i = 0; i < maxn; i++)
		buf[i] = 1.0f / (float)(i % 97 + 1);
	for (int n = 1 << 10; n <= maxn; n <<= 2) {
		/* warm up (connection set-up, page faults), then one timed call */
		MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		MPI_Barrier(MPI_COMM_WORLD);
		double t0 = MPI_Wtime();
		MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
		double one = MPI_Wtime() - t0;
		int count = 0;
		if (rank == 0) {
			double c = 0.02 / (one > 1e-7 ? one : 1e-7);
			count = c < 3 ? 3 : c > 20000 ? 20000 : (int)c;
		}
		MPI_Bcast(&count, 1, MPI_INT, 0, MPI_COMM_WORLD);
		for (int r = 0; r < rounds; r++) {
			MPI_Barrier(MPI_COMM_WORLD);
			t0 = MPI_Wtime();
			for (int i = 0; i < count; i++)
				MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			t[r] = (MPI_Wtime() - t0) / count;
		}
		if (rank == 0) {
			qsort(t, (size_t)rounds, sizeof *t, cmp_double);
			double med = t[rounds / 2];
			double bus = 2.0 * (world - 1) / world * 4.0 * n / med / 1e9;
			printf("allreduce %d %.2f %.3f\n", n, med * 1e6, bus);
			fflush(stdout);
		}
		/* keep the values bounded: the sums grow by `world` per call */
		for (int i = 0; i < n; i++)
			buf[i] = 1.0f / (float)(i % 97 + 1);
	}
	free(buf);
	free(t);
	MPI_Finalize();
	return 0;
}
