/* bench.h - what the benchmark programs share: the model shape from the command line and the
 * backend from the environment (PAI_DEVICE=cpu|cuda, PAI_PRECISION=fp32|bf16; PAI_PEAK_TFLOPS,
 * the GPU's dense bf16 peak for MFU, default the H100 SXM's 989.4). */
#ifndef PAI_BENCH_H
#define PAI_BENCH_H

#include <stdio.h>
#include <stdlib.h>

#include "model/backend.h"
#include "model/config.h"

/* argv[1..5] = N D L O T: a one-head model of that shape. */
static inline pai_config bench_config(char **argv) {
  pai_config cfg;
  pai_config_defaults(&cfg);
  cfg.num_blocks = atoi(argv[1]);
  cfg.model_dim = atoi(argv[2]);
  cfg.input_length = atoi(argv[3]);
  cfg.output_length = atoi(argv[4]);
  cfg.n_heads = 1;
  cfg.output_dims[0] = atoi(argv[5]);
  return cfg;
}

static inline int bench_backend(int gpu_index, pai_backend *be) {
  const char *dev = getenv("PAI_DEVICE"), *prec = getenv("PAI_PRECISION");
  return pai_backend_select(dev ? dev : "cpu", prec ? prec : "fp32", 1, gpu_index, be);
}

/* The dense bf16 peak MFU is measured against (fp32 runs too: the figure is then a fraction of
 * a peak they cannot reach). */
static inline double bench_peak_tflops(void) {
  const char *e = getenv("PAI_PEAK_TFLOPS");
  char *end = NULL;
  const double v = e && *e ? strtod(e, &end) : 0;
  if (e && *e && !*end && v > 0) return v;
  if (e && *e) fprintf(stderr, "PAI_PEAK_TFLOPS=%s is not a positive number: using 989.4\n", e);
  return 989.4;
}

#endif
