/* cone_flops - the work of cone scoring vs naive twin scoring per SNV, from the formulas the
 * scorer itself uses (model/cone.c), at any geometry; no weights needed.
 *   cone_flops [num_blocks 24] [model_dim 1024] [input_length 20480] [output_length 4096]
 *              [tracks 498] [flank 500]
 * Prints GFLOP per SNV for both, their ratio, and the H100 hours for a table of 118e6 SNVs at
 * an assumed sustained rate (see bench/README.md: a projection, not a measurement). */
#include <stdio.h>
#include <stdlib.h>

#include "model/cone.h"
#include "model/config.h"

int main(int argc, char **argv) {
  pai_config c;
  pai_config_defaults(&c);
  c.input_length = 20480;
  c.output_length = 4096;
  c.n_heads = 1;
  c.output_dims[0] = 498;
  int flank = 500;
  if (argc > 1) c.num_blocks = atoi(argv[1]);
  if (argc > 2) c.model_dim = atoi(argv[2]);
  if (argc > 3) c.input_length = atoi(argv[3]);
  if (argc > 4) c.output_length = atoi(argv[4]);
  if (argc > 5) c.output_dims[0] = atoi(argv[5]);
  if (argc > 6) flank = atoi(argv[6]);
  const int n = 2 * flank + 1, vi = c.input_length / 2;
  const double alt = pai_cone_alt_flops(&c, vi), ref = pai_cone_ref_flops(&c, n, vi);
  const double cone = alt + ref / (3.0 * n), twin = pai_twin_flops(&c);
  printf("geometry: N %d, D %d, L %d, O %d, T %d, flank %d (%d positions per TSS)\n",
         c.num_blocks, c.model_dim, c.input_length, c.output_length, c.output_dims[0], flank, n);
  printf("naive twin scoring: %.4g GFLOP per SNV\n", twin * 1e-9);
  printf("cone scoring:       %.4g GFLOP per SNV (alternate cone %.4g + shared reference %.4g)\n",
         cone * 1e-9, alt * 1e-9, ref / (3.0 * n) * 1e-9);
  printf("work ratio:         %.1fx\n", twin / cone);
  const double snvs = 118e6, peak = 989e12;   /* H100 SXM dense bf16 */
  for (double mfu = 0.3; mfu < 0.61; mfu += 0.1)
    printf("118M SNVs at %.0f%% of H100 dense bf16 peak: %.1f H100-hours per model (naive %.0f)\n",
           mfu * 100, snvs * cone / (peak * mfu) / 3600, snvs * twin / (peak * mfu) / 3600);
  return 0;
}
