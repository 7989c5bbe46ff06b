/* train_step - test driver: K training steps on one batch, results to HDF5.
 *
 *   [mpirun -np R] train_step --model_folder M --batch B.h5 --out O.h5 [--state S.h5]
 *       [--lr 1e-3] [--wd 0.01] [--clipnorm 1e-4] [--steps 1] [--threads N]
 *       [--device cpu|cuda] [--precision fp32|bf16] [--comm mpi|nccl]
 *
 * B.h5: /x uint8 [B, L], /y float32 [B, O, T_s], root attribute species (the head). Rank r of R
 * takes samples [r B / R, (r + 1) B / R). S.h5 (optional, else zeros and step 0): attribute step,
 * /m/<tensor>, /v/<tensor> for the trainable tensors. O.h5 (rank 0): /loss (first step),
 * /grad/<tensor> (first step, summed over ranks, before clipping), /params/<tensor>, /m, /v after
 * the K steps, attribute step. The tests compare these with tests/ref/train_ref.py. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/h5util.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/options.h"
#include "model/train.h"
#include "mpi/cli.h"
#include "mpi/comm.h"
#include "mpi/dist.h"
#include "mpi/log.h"

typedef struct {
  int B, L, O, T, species;
  uint8_t *x;
  float *y;
} batch;

static int read_batch(const char *path, batch *b) {
  int rc = 0;
  hid_t f = -1, d = -1, s = -1, a = -1;
  hsize_t dims[3];
  memset(b, 0, sizeof *b);
  H5_CHECK(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "%s: cannot open", path);
  H5_CHECK(d = H5Dopen2(f, "/x", H5P_DEFAULT), "%s: no /x", path);
  H5_CHECK(s = H5Dget_space(d), "%s", path);
  H5_CHECK(H5Sget_simple_extent_ndims(s) == 2 ? 0 : -1, "%s: /x must be 2-d", path);
  H5Sget_simple_extent_dims(s, dims, NULL);
  b->B = (int)dims[0];
  b->L = (int)dims[1];
  b->x = malloc(dims[0] * dims[1]);
  H5_CHECK(b->x ? 0 : -1, "out of memory");
  H5_CHECK(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b->x), "%s: /x", path);
  H5Sclose(s), s = -1;
  H5Dclose(d), d = -1;
  H5_CHECK(d = H5Dopen2(f, "/y", H5P_DEFAULT), "%s: no /y", path);
  H5_CHECK(s = H5Dget_space(d), "%s", path);
  H5_CHECK(H5Sget_simple_extent_ndims(s) == 3 ? 0 : -1, "%s: /y must be 3-d", path);
  H5Sget_simple_extent_dims(s, dims, NULL);
  H5_CHECK((int)dims[0] == b->B ? 0 : -1, "%s: /x and /y differ in samples", path);
  b->O = (int)dims[1];
  b->T = (int)dims[2];
  b->y = malloc(dims[0] * dims[1] * dims[2] * sizeof(float));
  H5_CHECK(b->y ? 0 : -1, "out of memory");
  H5_CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, b->y), "%s: /y", path);
  int64_t sp = -1;
  H5_CHECK(a = H5Aopen(f, "species", H5P_DEFAULT), "%s: no species attribute", path);
  H5_CHECK(H5Aread(a, H5T_NATIVE_INT64, &sp), "%s: species", path);
  b->species = (int)sp;
fail:
  if (a >= 0) H5Aclose(a);
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  if (f >= 0) H5Fclose(f);
  return rc;
}

static int read_state(const char *path, const pai_params *layout, float *m, float *v,
                      int64_t *step) {
  int rc = 0;
  hid_t f = -1, a = -1;
  H5_CHECK(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "%s: cannot open", path);
  H5_CHECK(a = H5Aopen(f, "step", H5P_DEFAULT), "%s: no step attribute", path);
  H5_CHECK(H5Aread(a, H5T_NATIVE_INT64, step), "%s: step", path);
  PAI_CHECK(pai_tensors_read(f, path, "/m", layout, m, 1));
  PAI_CHECK(pai_tensors_read(f, path, "/v", layout, v, 1));
fail:
  if (a >= 0) H5Aclose(a);
  if (f >= 0) H5Fclose(f);
  return rc;
}

static int write_out(const char *path, double loss, const pai_params *P, const float *grad,
                     const float *m, const float *v, int64_t step) {
  int rc = 0;
  hid_t f = -1, s = -1, d = -1;
  H5_CHECK(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", path);
  H5_CHECK(s = H5Screate(H5S_SCALAR), "%s", path);
  H5_CHECK(d = H5Dcreate2(f, "/loss", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
           "%s", path);
  H5_CHECK(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &loss), "%s", path);
  PAI_CHECK(pai_h5_write_i64(f, path, "step", &step, 1, 1));
  PAI_CHECK(pai_tensors_write(f, path, "/grad", P, grad, 1));
  PAI_CHECK(pai_tensors_write(f, path, "/params", P, P->data, 0));
  PAI_CHECK(pai_tensors_write(f, path, "/m", P, m, 1));
  PAI_CHECK(pai_tensors_write(f, path, "/v", P, v, 1));
fail:
  if (d >= 0) H5Dclose(d);
  if (s >= 0) H5Sclose(s);
  if (f >= 0 && H5Fclose(f) < 0 && rc == 0) rc = PAI_ERR_IO;
  return rc;
}

static int run(const pai_dist *dist, const char *model_folder, const char *batch_path,
               const char *state_path, const char *out_path, double lr, double wd,
               double clipnorm, int steps, const pai_backend *be, int nccl) {
  pai_model model = {0};
  pai_params G = {0};
  batch b = {0};
  pai_trainer tr = {0};
  pai_comm comm = {0}, comm_nccl = {0};
  float *m = NULL, *v = NULL, *grad1 = NULL;
  int64_t step = 0;
  double loss1 = 0;
  int rc = 0;
  PAI_CHECK(pai_model_load(&model, model_folder));
  PAI_CHECK(read_batch(batch_path, &b));
  const pai_config *c = &model.cfg;
  if (b.L != c->input_length || b.O != c->output_length || b.species < 0 ||
      b.species >= c->n_heads || b.T != c->output_dims[b.species]) {
    PAI_ERR("%s: shapes do not fit the model", batch_path);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if (b.B % dist->size != 0) {
    PAI_ERR("%s: batch of %d samples does not divide by %d ranks", batch_path, b.B, dist->size);
    rc = PAI_ERR_USAGE;
    goto fail;
  }
  const int local = b.B / dist->size, first = dist->rank * local;
  PAI_CHECK(pai_params_init(&G, c));
  const size_t n = model.params.n_floats;
  m = calloc(n, sizeof *m);
  v = calloc(n, sizeof *v);
  grad1 = malloc(n * sizeof *grad1);
  if (!m || !v || !grad1) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  if (state_path[0]) PAI_CHECK(read_state(state_path, &model.params, m, v, &step));
  PAI_CHECK(pai_comm_init_mpi(&comm, dist));
  PAI_CHECK(pai_trainer_init_backend(&tr, c, local, &comm, be));
  if (nccl) {
    PAI_CHECK(pai_comm_init_nccl(&comm_nccl, dist, pai_trainer_gpu_stream(&tr)));
    tr.comm = &comm_nccl;
  }
  const pai_adamw opt = pai_adamw_defaults(lr, wd, clipnorm);
  for (int k = 0; k < steps; k++) {
    double loss = 0;
    PAI_CHECK(pai_trainer_grad(&tr, &model.params, b.x + (size_t)first * b.L,
                               b.y + (size_t)first * b.O * b.T, local, b.species, b.B, &G, &loss));
    if (k == 0) {
      loss1 = loss;
      memcpy(grad1, G.data, n * sizeof *grad1);
    }
    PAI_CHECK(pai_trainer_step(&tr, &opt, &model.params, &G, m, v, step++));
  }
  PAI_CHECK(pai_trainer_sync(&tr, &model.params, m, v));
  if (dist->rank == 0) PAI_CHECK(write_out(out_path, loss1, &model.params, grad1, m, v, step));
fail:
  pai_comm_free(&comm_nccl);   /* before the GPU it runs on */
  pai_trainer_free(&tr);
  pai_comm_free(&comm);
  free(m);
  free(v);
  free(grad1);
  free(b.x);
  free(b.y);
  pai_params_free(&G);
  pai_model_free(&model);
  return rc;
}

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  pai_h5_quiet();
  char model[PAI_PATH_LEN] = "", batch_path[PAI_PATH_LEN] = "", state[PAI_PATH_LEN] = "",
       out[PAI_PATH_LEN] = "", device[32] = "cpu", precision[32] = "fp32", commname[32] = "mpi";
  double lr = 1e-3, wd = 0.01, clipnorm = 1e-4;
  int steps = 1, threads = 0;
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, model, "model folder", 1, 0},
      {"batch", PAI_OPT_STR, batch_path, "batch file (/x, /y, species)", 1, 0},
      {"out", PAI_OPT_STR, out, "results file (written by rank 0)", 1, 0},
      {"state", PAI_OPT_STR, state, "initial optimizer state (step, /m, /v)", 0, 0},
      {"lr", PAI_OPT_DOUBLE, &lr, "learning rate", 0, 0},
      {"wd", PAI_OPT_DOUBLE, &wd, "weight decay", 0, 0},
      {"clipnorm", PAI_OPT_DOUBLE, &clipnorm, "per-tensor gradient clip norm", 0, 0},
      {"steps", PAI_OPT_INT, &steps, "training steps on the batch", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads (default: OpenMP's)", 0, 0},
      {"device", PAI_OPT_STR, device, "cpu or cuda", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: fp32 or bf16", 0, 0},
      {"comm", PAI_OPT_STR, commname, "GPU sums: mpi (host staging) or nccl", 0, 0},
  };
  if (d.rank != 0) pai_log_set_mute(1);
  int rc = pai_opts_parse(opts, sizeof opts / sizeof opts[0], "train_step", "train_step",
                          "Test driver: training steps on one batch.", argc, argv);
  pai_log_set_mute(0);
  pai_backend be = PAI_BACKEND_CPU;
  if (rc == 0) rc = pai_backend_select_ranks(&d, device, precision, &be);
  if (rc == 0) {
    pai_set_threads(threads);
    rc = run(&d, model, batch_path, state, out, lr, wd, clipnorm, steps, &be,
             !strcmp(commname, "nccl"));
  }
  rc = rc == 1 ? 0 : pai_dist_agree(&d, rc);
  pai_dist_finalize(&d);
  return pai_exit_code(rc);
}
