/* comm.c - the MPI implementation of comm.h: in-place MPI_Allreduce over host buffers. */
#include "mpi/comm.h"

#include <limits.h>
#include <mpi.h>

#include "mpi/log.h"

/* MPI counts are int: sum buffers of any size in pieces of at most 2^30 elements. */
#define PIECE ((size_t)1 << 30)

static int allreduce(void *buf, size_t n, size_t elem, MPI_Datatype type, const char *what) {
  char *p = buf;
  for (size_t done = 0; done < n;) {
    const size_t k = n - done < PIECE ? n - done : PIECE;
    int rc = MPI_Allreduce(MPI_IN_PLACE, p + done * elem, (int)k, type, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, msg, &len);
      PAI_ERR("MPI_Allreduce of %zu %s values failed: %s", n, what, msg);
      return PAI_ERR_RUNTIME;
    }
    done += k;
  }
  return 0;
}

static int sum_f32(pai_comm *c, float *buf, size_t n) {
  (void)c;
  return allreduce(buf, n, sizeof *buf, MPI_FLOAT, "float");
}

static int sum_f64(pai_comm *c, double *buf, size_t n) {
  (void)c;
  return allreduce(buf, n, sizeof *buf, MPI_DOUBLE, "double");
}

int pai_comm_init_mpi(pai_comm *c, const pai_dist *d) {
  *c = (pai_comm){.rank = d->rank, .size = d->size, .name = "mpi", .sum_f32 = sum_f32,
                  .sum_f64 = sum_f64};
  return 0;
}
