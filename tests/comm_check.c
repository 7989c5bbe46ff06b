/* comm_check - the NCCL sums of mpi/comm.h on GPU buffers, against their closed form.
 *   mpirun -np R comm_check [n]
 * Each rank opens the GPU of its node-local rank, fills n floats and n doubles with
 * v[i] = 0.5 * rank + (i % 7), sums them over the ranks in place with pai_comm_init_nccl's
 * communicator, and checks every element against 0.25 R (R - 1) + R (i % 7) (exact in float
 * for the sizes used). Prints one line per rank; exit 0 when every rank matched. Linked twice:
 * comm_check (CUDA, NCCL) and comm_check_emul (the host emulation, PAI_GPU_EMULATE=1). */
#include <stdio.h>
#include <stdlib.h>

#include "model/gpu.h"
#include "mpi/comm.h"
#include "mpi/dist.h"
#include "mpi/log.h"

static int check(const pai_dist *d, size_t n) {
  pai_gpu *g = NULL;
  PAI_TRY(pai_gpu_open(&g, d->local_rank));
  int rc = 0;
  pai_comm comm = {0};
  float *hf = malloc(n * sizeof *hf);
  double *hd = malloc(n * sizeof *hd);
  float *df = pai_gpu_alloc(g, n * sizeof *df, "floats");
  double *dd = pai_gpu_alloc(g, n * sizeof *dd, "doubles");
  if (!hf || !hd || !df || !dd) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  for (size_t i = 0; i < n; i++) hf[i] = (float)(hd[i] = 0.5 * d->rank + (double)(i % 7));
  PAI_CHECK(pai_gpu_upload(g, df, hf, n * sizeof *hf));
  PAI_CHECK(pai_gpu_upload(g, dd, hd, n * sizeof *hd));
  PAI_CHECK(pai_comm_init_nccl(&comm, d, pai_gpu_stream(g)));
  PAI_CHECK(pai_comm_sum_f32(&comm, df, n));
  PAI_CHECK(pai_comm_sum_f64(&comm, dd, n));
  PAI_CHECK(pai_gpu_download(g, hf, df, n * sizeof *hf));
  PAI_CHECK(pai_gpu_download(g, hd, dd, n * sizeof *hd));
  const double R = d->size;
  for (size_t i = 0; i < n; i++) {
    const double want = 0.25 * R * (R - 1) + R * (double)(i % 7);
    if (hf[i] != (float)want || hd[i] != want) {
      PAI_ERR("element %zu: float %g, double %g, expected %g", i, (double)hf[i], hd[i], want);
      rc = PAI_ERR_RUNTIME;
      goto fail;
    }
  }
  printf("rank %d of %d (GPU %s, comm %s): %zu float and %zu double sums correct\n", d->rank,
         d->size, pai_gpu_name(g), comm.name, n, n);
fail:
  pai_comm_free(&comm);
  free(hf);
  free(hd);
  pai_gpu_close(g);
  return rc;
}

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  const size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000003;
  int rc = pai_dist_agree(&d, check(&d, n));
  pai_dist_finalize(&d);
  return rc < 0 ? 1 : 0;
}
