/* comm_check - the NCCL sums of mpi/comm.h on GPU buffers, against their closed form.
 *   mpirun -np R comm_check [n]
 * Each rank opens the GPU of its node-local rank, fills n floats and n doubles with
 * v[i] = 0.5 * rank + (i % 7), sums them over the ranks in place with pai_comm_init_nccl's
 * communicator, and checks every element against 0.25 R (R - 1) + R (i % 7) (exact in float
 * for the sizes used); then the floats doubled by a kernel and summed again through three
 * started sums waited for together (expected: twice that). Prints one line per rank; exit 0
 * when every rank matched. Linked twice:
 * comm_check (CUDA, NCCL) and comm_check_emul (the host emulation, PAI_GPU_EMULATE=1).
 *
 *   mpirun -np R comm_check await ok|fail|timeout
 * pai_dist_await (which guards the NCCL set-up against a rank that fails inside it) on a
 * stand-in operation, no GPU needed: "ok" finishes on rank r after 50 r ms; "fail" fails on the
 * last rank after 200 ms and never finishes elsewhere, so the others must be told and cancel;
 * "timeout" never finishes on rank 0 (the others finish at once), with a 1 s limit. Each rank
 * prints "await: rank r status s cancelled c" and exits 0 only when the agreed status is 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  /* Started sums, ordered after work queued but not waited for: the floats doubled by a
   * kernel on the GPU's stream, then summed in three pieces started at once and waited for
   * together (the gradient's overlapped sums). Expected: twice the closed form. */
  for (size_t i = 0; i < n; i++) hf[i] = (float)(0.5 * d->rank + (double)(i % 7));
  PAI_CHECK(pai_gpu_upload(g, df, hf, n * sizeof *hf));
  PAI_CHECK(pai_gpu_scale(g, (int64_t)n, df, 2.0f));
  const size_t cut[4] = {0, n / 3, 2 * n / 3, n};
  for (int k = 0; k < 3; k++)
    PAI_CHECK(pai_comm_sum_f32_start(&comm, df + cut[k], cut[k + 1] - cut[k]));
  PAI_CHECK(pai_comm_wait_all(&comm));
  PAI_CHECK(pai_gpu_download(g, hf, df, n * sizeof *hf));
  for (size_t i = 0; i < n; i++) {
    const double want = 2 * (0.25 * R * (R - 1) + R * (double)(i % 7));
    if (hf[i] != (float)want) {
      PAI_ERR("started sums, element %zu: %g, expected %g", i, (double)hf[i], want);
      rc = PAI_ERR_RUNTIME;
      goto fail;
    }
  }
  printf("rank %d of %d (GPU %s, comm %s): %zu float and %zu double sums correct, and %zu "
         "floats in 3 started sums\n",
         d->rank, d->size, pai_gpu_name(g), comm.name, n, n, n);
fail:
  pai_comm_free(&comm);
  free(hf);
  free(hd);
  pai_gpu_close(g);
  return rc;
}

typedef struct {
  double start, finish_after;   /* finish_after < 0: never */
  int fail, cancelled;
} standin;

static int standin_poll(void *arg) {
  standin *s = arg;
  if (s->finish_after < 0 || MPI_Wtime() - s->start < s->finish_after) return 0;
  return s->fail ? PAI_ERR_RUNTIME : 1;
}

static void standin_cancel(void *arg) { ((standin *)arg)->cancelled = 1; }

static int await_case(const pai_dist *d, const char *mode) {
  standin s = {.start = MPI_Wtime(), .finish_after = 0.05 * d->rank};
  double timeout = 60;
  if (!strcmp(mode, "fail")) {
    s.fail = d->rank == d->size - 1;
    s.finish_after = s.fail ? 0.2 : -1;
  } else if (!strcmp(mode, "timeout")) {
    s.finish_after = d->rank == 0 ? -1 : 0;
    timeout = 1;
  } else if (strcmp(mode, "ok")) {
    PAI_ERR("unknown await mode '%s' (ok, fail or timeout)", mode);
    return PAI_ERR_USAGE;
  }
  const int rc = pai_dist_await(d, standin_poll, standin_cancel, &s, timeout);
  printf("await: rank %d status %d cancelled %d\n", d->rank, rc, s.cancelled);
  return rc;
}

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  if (argc > 2 && !strcmp(argv[1], "await")) {
    const int rc = await_case(&d, argv[2]);
    pai_dist_finalize(&d);
    return rc < 0 ? 1 : 0;
  }
  const size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000003;
  int rc = pai_dist_agree(&d, check(&d, n));
  pai_dist_finalize(&d);
  return rc < 0 ? 1 : 0;
}
