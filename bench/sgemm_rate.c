/* sgemm_rate - the machine's BLAS sgemm rate at the shapes of the network's dense layers,
 * the yardstick for the forward pass's efficiency (bench/README.md).
 *   sgemm_rate D [rows] [repeats]     prints GFLOP/s of (rows x D)(D x 4D) and (rows x 4D)(4D x D) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/backend.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sgemm_rate D [rows] [repeats]\n");
    return 2;
  }
  const int D = atoi(argv[1]), F = 4 * D;
  const int rows = argc > 2 ? atoi(argv[2]) : 512, reps = argc > 3 ? atoi(argv[3]) : 20;
  float *a = malloc(sizeof(float) * rows * F), *w1 = malloc(sizeof(float) * D * F),
        *w2 = malloc(sizeof(float) * F * D), *t = malloc(sizeof(float) * rows * F);
  for (long i = 0; i < (long)rows * F; i++) a[i] = (float)(i % 7) * 0.1f;
  for (long i = 0; i < (long)D * F; i++) w1[i] = w2[i] = (float)(i % 5) * 0.01f;
  double best = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, F, D, 1.0f, a, D, w1, F, 0.0f, t, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, F, 1.0f, t, F, w2, D, 1.0f, a, D);
    double dt = now_s() - t0, gf = 4.0 * rows * D * F / dt * 1e-9;
    if (gf > best) best = gf;
  }
  printf("sgemm D=%d rows=%d threads=%d best %.1f GFLOP/s\n", D, rows, pai_get_threads(), best);
  free(a); free(w1); free(w2); free(t);
  return 0;
}
