/* bench_train - training throughput of the C trainer (forward, backward, gradient sum over the
 * ranks, AdamW step) on random data at a given shape.
 *   [PAI_DEVICE=cuda [PAI_PRECISION=bf16]] [mpirun -np R] bench_train N D L O T global_batch
 *       [steps] [threads]
 * Prints samples/s (global batch x steps / time, after one untimed warm-up step), and the share
 * of the AdamW step in it (on the GPU with a cuda trainer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/rng.h"
#include "model/train.h"
#include "mpi/comm.h"
#include "mpi/dist.h"
#include "mpi/log.h"

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  if (argc < 7) {
    if (d.rank == 0) fprintf(stderr, "usage: bench_train N D L O T global_batch [steps] [threads]\n");
    pai_dist_finalize(&d);
    return 2;
  }
  pai_config cfg = bench_config(argv);
  const int B = atoi(argv[6]), steps = argc > 7 ? atoi(argv[7]) : 5;
  if (argc > 8) pai_set_threads(atoi(argv[8]));
  int rc = 0;
  if (B % d.size != 0 || pai_config_check(&cfg, "bench_train") < 0) {
    if (d.rank == 0) fprintf(stderr, "bad shape, or batch %d not a multiple of %d ranks\n", B, d.size);
    pai_dist_finalize(&d);
    return 2;
  }
  const int local = B / d.size, L = cfg.input_length, O = cfg.output_length, T = cfg.output_dims[0];
  pai_model m;
  pai_params G;
  pai_comm comm;
  pai_trainer tr;
  if (pai_model_create(&m, &cfg) < 0 || pai_params_init(&G, &cfg) < 0 ||
      pai_comm_init_mpi(&comm, &d) < 0) {
    pai_dist_finalize(&d);
    return 1;
  }
  pai_backend be;
  if (bench_backend(d.local_rank, &be) < 0 ||
      pai_trainer_init_backend(&tr, &cfg, local, &comm, &be) < 0) {
    pai_dist_finalize(&d);
    return 1;
  }
  /* PAI_COMM=nccl: with several GPU ranks, sums GPU to GPU as ptrain --comm nccl does (the
   * gradient summed during the backward pass); otherwise through MPI (host memory) */
  pai_comm comm_nccl = {0};
  const char *cm = getenv("PAI_COMM");
  if (cm && !strcmp(cm, "nccl") && be.device == PAI_DEVICE_CUDA && d.size > 1) {
    if (pai_comm_init_nccl(&comm_nccl, &d, pai_trainer_gpu_stream(&tr)) < 0) {
      pai_dist_finalize(&d);
      return 1;
    }
    tr.comm = &comm_nccl;
  }
  pai_params_init_random(&m.params, 1);
  uint8_t *codes = malloc((size_t)local * L);
  float *y = malloc((size_t)local * O * T * sizeof(float));
  float *am = calloc(m.params.n_floats, sizeof(float)), *av = calloc(m.params.n_floats, sizeof(float));
  pai_rng r;
  pai_rng_seed(&r, 7, (uint64_t)d.rank);
  for (size_t i = 0; i < (size_t)local * L; i++) codes[i] = (uint8_t)(pai_rng_next(&r) % 4);
  for (size_t i = 0; i < (size_t)local * O * T; i++) y[i] = (float)pai_rng_uniform(&r);
  const pai_adamw opt = pai_adamw_defaults(5e-4, 5e-6, 1e-4);
  tr.grad_stays_on_gpu = 1;   /* as ptrain runs it: the optimizer where the gradient is */
  double t0 = 0, loss = 0, t_opt = 0;
  for (int s = 0; s <= steps && rc == 0; s++) {
    if (s == 1) t0 = pai_now_s();   /* step 0 warms up */
    rc = pai_trainer_grad(&tr, &m.params, codes, y, local, 0, B, &G, &loss);
    if (rc == 0) rc = pai_trainer_wait(&tr);   /* GPU work is queued: time it, not its queuing */
    const double t1 = pai_now_s();
    if (rc == 0) rc = pai_trainer_step(&tr, &opt, &m.params, &G, am, av, s);
    if (rc == 0) rc = pai_trainer_wait(&tr);
    if (s >= 1) t_opt += pai_now_s() - t1;
  }
  const double dt = pai_now_s() - t0;
  if (d.rank == 0 && rc == 0)
    printf("bench_train N %d D %d L %d O %d T %d batch %d ranks %d threads %d device %s%s%s: "
           "%.2f samples/s (%.3f s/step, of which the AdamW step %.3f s; loss %.4g)\n",
           cfg.num_blocks, cfg.model_dim, L, O, T, B, d.size, pai_get_threads(),
           pai_device_name(be.device), be.device == PAI_DEVICE_CUDA ? " " : "",
           be.device == PAI_DEVICE_CUDA ? pai_precision_name(be.precision) : "",
           (double)B * steps / dt, dt / steps, t_opt / steps, loss);
  if (d.rank == 0 && rc == 0 && be.device == PAI_DEVICE_CUDA) {
    /* model FLOPs as bench/torch_anchor.py counts them: 3 x the full-length forward */
    const double Nb = cfg.num_blocks, Dd = cfg.model_dim;
    const double fwd = Nb * L * (16 * Dd * Dd + 10 * Dd) + 8.0 * L * Dd +
                       pai_n_shortcuts(&cfg) * 2.0 * O * Dd * T;
    const double tflops = 3 * fwd * ((double)B / d.size) * steps / dt * 1e-12;
    const double peak = bench_peak_tflops();
    printf("bench_train per GPU: %.1f model TFLOP/s (3 x %.4g TFLOP forward per sample), MFU "
           "%.1f%% of %.1f TFLOP/s; peak GPU memory %.4g GiB (rank 0)\n",
           tflops, fwd * 1e-12, 100 * tflops / peak, peak,
           (double)pai_trainer_gpu_mem_peak(&tr) / (1 << 30));
  }
  pai_comm_free(&comm_nccl);   /* before the trainer closes the GPU it runs on */
  pai_trainer_free(&tr);
  pai_model_free(&m);
  pai_params_free(&G);
  free(codes), free(y), free(am), free(av);
  pai_dist_finalize(&d);
  return rc < 0 ? 1 : 0;
}
