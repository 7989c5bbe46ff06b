/* trainstate.c - see trainstate.h. */
#include "model/trainstate.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/h5util.h"
#include "mpi/log.h"

int pai_state_save(const char *path, const pai_model *m, const float *adam_m,
                   const float *adam_v, const pai_progress *p) {
  int rc = 0;
  hid_t f = -1, s = -1, d = -1;
  char tmp[PAI_PATH_LEN + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  pai_h5_quiet();
  H5_CHECK(f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", tmp);
  PAI_CHECK(pai_config_write_h5(f, tmp, &m->cfg));
  const int64_t ints[] = {1, p->step, p->epoch, p->seed, p->batch_size, p->n_epochs};
  const char *names[] = {"state_version", "step", "epoch", "seed", "batch_size", "n_epochs"};
  for (int i = 0; i < 6; i++) PAI_CHECK(pai_h5_write_i64(f, tmp, names[i], &ints[i], 1, 1));
  PAI_CHECK(pai_h5_write_attr(f, tmp, "best_val_loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                              &p->best_val_loss, 1, 1));
  PAI_CHECK(pai_h5_write_attr(f, tmp, "initial_val_loss", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                              &p->initial_val_loss, 1, 1));
  PAI_CHECK(pai_tensors_write(f, tmp, "/params", &m->params, m->params.data, 0));
  PAI_CHECK(pai_tensors_write(f, tmp, "/adam_m", &m->params, adam_m, 1));
  PAI_CHECK(pai_tensors_write(f, tmp, "/adam_v", &m->params, adam_v, 1));
  hsize_t dims[2] = {(hsize_t)p->epoch, 4};
  H5_CHECK(s = H5Screate_simple(2, dims, NULL), "%s", tmp);
  H5_CHECK(d = H5Dcreate2(f, "/log", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
           "%s: /log", tmp);
  if (p->epoch > 0)
    H5_CHECK(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->log), "%s: /log",
             tmp);
  H5Dclose(d), d = -1;
  H5Sclose(s), s = -1;
  H5_CHECK(H5Fclose(f), "cannot finish writing %s (disk full?)", tmp);
  f = -1;
  if (rename(tmp, path) != 0) {
    PAI_ERR("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
  return 0;
fail:
  if (d >= 0) H5Dclose(d);
  if (s >= 0) H5Sclose(s);
  if (f >= 0) H5Fclose(f);
  unlink(tmp);
  return rc;
}

int pai_state_load(const char *path, pai_model *m, float **adam_m, float **adam_v,
                   pai_progress *p) {
  int rc = 0;
  hid_t f = -1, d = -1, a = -1, s = -1;
  memset(m, 0, sizeof *m);
  memset(p, 0, sizeof *p);
  *adam_m = *adam_v = NULL;
  pai_h5_quiet();
  if (H5Fis_hdf5(path) <= 0) {
    PAI_ERR("%s: missing or not an HDF5 file (nothing to resume)", path);
    return PAI_ERR_INPUT;
  }
  H5_CHECK(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "%s: cannot open", path);
  pai_config cfg;
  PAI_CHECK(pai_config_read_h5(f, path, &cfg));
  PAI_CHECK(pai_config_check(&cfg, path));
  int64_t v[6];
  const char *names[] = {"state_version", "step", "epoch", "seed", "batch_size", "n_epochs"};
  for (int i = 0; i < 6; i++)
    PAI_CHECK(pai_h5_read_i64(f, path, names[i], &v[i], "a training state"));
  if (v[0] != 1 || v[1] < 0 || v[2] < 0 || v[4] < 1 || v[5] < 1) {
    PAI_ERR("%s: state_version %lld, step %lld, epoch %lld, batch_size %lld, n_epochs %lld: not "
            "a state this build reads",
            path, (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[4],
            (long long)v[5]);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  p->step = v[1];
  p->epoch = (int)v[2];
  p->seed = v[3];
  p->batch_size = (int)v[4];
  p->n_epochs = (int)v[5];
  H5_CHECK(a = H5Aopen(f, "best_val_loss", H5P_DEFAULT), "%s: no best_val_loss", path);
  H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, &p->best_val_loss), "%s: best_val_loss", path);
  H5Aclose(a);
  H5_CHECK(a = H5Aopen(f, "initial_val_loss", H5P_DEFAULT), "%s: no initial_val_loss", path);
  H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, &p->initial_val_loss), "%s: initial_val_loss", path);
  PAI_CHECK(pai_model_create(m, &cfg));
  const size_t n = m->params.n_floats;
  *adam_m = calloc(n, sizeof(float));
  *adam_v = calloc(n, sizeof(float));
  const int rows = p->n_epochs > p->epoch ? p->n_epochs : p->epoch;
  p->log = calloc((size_t)rows + 1, sizeof *p->log);
  if (!*adam_m || !*adam_v || !p->log) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  PAI_CHECK(pai_tensors_read(f, path, "/params", &m->params, m->params.data, 0));
  PAI_CHECK(pai_tensors_read(f, path, "/adam_m", &m->params, *adam_m, 1));
  PAI_CHECK(pai_tensors_read(f, path, "/adam_v", &m->params, *adam_v, 1));
  hsize_t dims[2] = {0, 0};
  H5_CHECK(d = H5Dopen2(f, "/log", H5P_DEFAULT), "%s: no /log", path);
  H5_CHECK(s = H5Dget_space(d), "%s: /log", path);
  if (H5Sget_simple_extent_ndims(s) != 2 || H5Sget_simple_extent_dims(s, dims, NULL) < 0 ||
      dims[0] != (hsize_t)p->epoch || dims[1] != 4) {
    PAI_ERR("%s: /log must be [epoch = %d, 4]", path, p->epoch);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if (p->epoch > 0)
    H5_CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->log), "%s: /log",
             path);
fail:
  if (s >= 0) H5Sclose(s);
  if (d >= 0) H5Dclose(d);
  if (a >= 0) H5Aclose(a);
  if (f >= 0) H5Fclose(f);
  if (rc < 0) {
    pai_model_free(m);
    free(*adam_m);
    free(*adam_v);
    free(p->log);
    *adam_m = *adam_v = NULL;
    p->log = NULL;
  }
  return rc;
}

int pai_logs_csv_write(const char *folder, const pai_progress *p) {
  char path[PAI_PATH_LEN + 16], tmp[PAI_PATH_LEN + 32];
  snprintf(path, sizeof path, "%s/logs.csv", folder);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) {
    PAI_ERR("cannot write %s: %s", tmp, strerror(errno));
    return PAI_ERR_IO;
  }
  fprintf(f, "epoch,loss,val_loss,lr,wd\n");
  for (int e = 0; e < p->epoch; e++)
    fprintf(f, "%d,%.9g,%.9g,%.9g,%.9g\n", e, p->log[e].loss, p->log[e].val_loss, p->log[e].lr,
            p->log[e].wd);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    PAI_ERR("cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    return PAI_ERR_IO;
  }
  return 0;
}

int pai_epoch_record(pai_progress *p, const pai_epoch_log *row) {
  p->log[p->epoch++] = *row;
  const int best = row->val_loss < p->best_val_loss;
  if (best) p->best_val_loss = row->val_loss;
  return best;
}

int pai_epoch_save(const char *folder, const char *state_path, const pai_model *m,
                   const float *adam_m, const float *adam_v, pai_progress *p,
                   const pai_epoch_log *row, double seconds) {
  const int best = pai_epoch_record(p, row);
  PAI_TRY(pai_mkdir_p(folder));
  if (best) PAI_TRY(pai_model_save(m, folder));
  PAI_TRY(pai_state_save(state_path, m, adam_m, adam_v, p));
  PAI_TRY(pai_logs_csv_write(folder, p));
  PAI_INFO("epoch %d/%d: loss %.6g, val_loss %.6g, lr %.3g, wd %.3g, %.1f s%s", p->epoch,
           p->n_epochs, row->loss, row->val_loss, row->lr, row->wd, seconds,
           best ? " (best so far: model.h5 saved)" : "");
  return 0;
}

void pai_meter_start(pai_meter *m) { *m = (pai_meter){.t_mark = pai_now_s()}; }

void pai_meter_step(pai_meter *m, int rank, int epoch, int n_epochs, int64_t s, int64_t spe,
                    int log_every, int batch, const char *unit, double loss) {
  m->loss_sum += loss;
  m->loss_mark += loss;
  if (rank != 0 || ((s + 1) % log_every != 0 && s + 1 != spe)) return;
  const double now = pai_now_s(), steps = (double)(s + 1 - m->mark);
  PAI_INFO("epoch %d/%d step %lld/%lld: %.1f %s/s, loss %.6g", epoch + 1, n_epochs,
           (long long)(s + 1), (long long)spe, steps * batch / (now - m->t_mark), unit,
           m->loss_mark / steps);
  m->t_mark = now;
  m->mark = s + 1;
  m->loss_mark = 0;
}
