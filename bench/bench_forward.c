/* bench_forward - forward throughput of the C model at a given shape, next to the machine's
 * sgemm rate at the same dense-layer shapes, measured in the same run.
 *   [PAI_DEVICE=cuda [PAI_PRECISION=bf16]] bench_forward N D L O T [batch] [repeats]
 * Prints output positions/s (B * O per forward), sequences/s, the GFLOP/s of the work actually
 * done (pai_infer_flops) and that rate as a fraction of the best sgemm rate measured here (CPU)
 * or of PAI_PEAK_TFLOPS (GPU, default 989.4: the H100 SXM's dense bf16 peak). On the GPU a
 * forward includes copying the codes in and the outputs out, as promoterai does. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "model/forward.h"
#include "model/rng.h"

/* Best of `reps` runs of the two FFN products on `rows` rows. */
static double sgemm_gflops(int D, int rows, int reps) {
  const int F = 4 * D;
  float *a = calloc((size_t)rows * D, sizeof(float)), *t = calloc((size_t)rows * F, sizeof(float));
  float *w1 = calloc((size_t)D * F, sizeof(float)), *w2 = calloc((size_t)F * D, sizeof(float));
  for (size_t i = 0; i < (size_t)D * F; i++) w1[i] = w2[i] = (float)(i % 13) * 1e-3f;
  for (size_t i = 0; i < (size_t)rows * D; i++) a[i] = (float)(i % 7) * 0.1f;
  double best = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = pai_now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, F, D, 1.0f, a, D, w1, F, 0.0f, t, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, F, 1.0f, t, F, w2, D, 1.0f, a, D);
    double g = 4.0 * rows * D * F / (pai_now_s() - t0) * 1e-9;
    if (g > best) best = g;
  }
  free(a); free(t); free(w1); free(w2);
  return best;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: bench_forward N D L O T [batch] [repeats]\n");
    return 2;
  }
  pai_config cfg = bench_config(argv);
  const int B = argc > 6 ? atoi(argv[6]) : 1, reps = argc > 7 ? atoi(argv[7]) : 3;
  pai_model m;
  if (pai_model_create(&m, &cfg) < 0) return 1;
  pai_params_init_random(&m.params, 1);
  pai_backend be;
  if (bench_backend(0, &be) < 0) return 2;
  pai_infer inf;
  if (pai_infer_init(&inf, &m, B, PAI_HEAD(0), &be) < 0) return 1;
  uint8_t *codes = malloc((size_t)B * cfg.input_length);
  pai_rng rng;
  pai_rng_seed(&rng, 3, 0);
  for (size_t i = 0; i < (size_t)B * cfg.input_length; i++) codes[i] = pai_rng_next(&rng) % 5;
  float *out = malloc((size_t)B * cfg.output_length * cfg.output_dims[0] * sizeof(float));
  float *outs[1] = {out};
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {   /* the first run warms caches and threads */
    double t0 = pai_now_s();
    if (pai_infer_forward(&inf, codes, B, outs) < 0) return 1;
    double dt = pai_now_s() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  const double gf = pai_infer_flops(&inf) * B / best * 1e-9;
  if (be.device == PAI_DEVICE_CUDA) {
    const double peak = bench_peak_tflops();
    printf("forward (GPU, %s) N=%d D=%d L=%d O=%d T=%d batch=%d: %.4f s, %.3f seq/s, %.1f TFLOP/s "
           "of computed rows, %.1f%% of %.1f TFLOP/s; peak GPU memory %.4g GiB\n",
           pai_precision_name(be.precision), cfg.num_blocks, cfg.model_dim, cfg.input_length,
           cfg.output_length, cfg.output_dims[0], B, best, B / best, gf * 1e-3,
           100.0 * gf * 1e-3 / peak, peak, (double)pai_infer_gpu_mem_peak(&inf) / (1 << 30));
    free(codes);
    free(out);
    pai_infer_free(&inf);
    pai_model_free(&m);
    return 0;
  }
  const double sg = sgemm_gflops(cfg.model_dim, inf.chunk, 10);
  printf("forward N=%d D=%d L=%d O=%d T=%d batch=%d threads=%d: %.4f s, %.0f output positions/s, "
         "%.3f seq/s, %.1f GFLOP/s; sgemm %.1f GFLOP/s; forward/sgemm %.2f\n",
         cfg.num_blocks, cfg.model_dim, cfg.input_length, cfg.output_length, cfg.output_dims[0],
         B, pai_get_threads(), best, B * cfg.output_length / best, B / best, gf, sg, gf / sg);
  free(codes);
  free(out);
  pai_infer_free(&inf);
  pai_model_free(&m);
  return 0;
}
