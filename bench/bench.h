/* bench.h - what the benchmark programs share: the model shape from the command line and the
 * backend from the environment (PAI_DEVICE=cpu|cuda, PAI_PRECISION=fp32|bf16). */
#ifndef PAI_BENCH_H
#define PAI_BENCH_H

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

#endif
