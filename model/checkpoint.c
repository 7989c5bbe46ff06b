/* checkpoint.c - model folders in HDF5 (see model.h and docs/model-format.md).
 *
 * Writers store integer attributes as scalar int64 and strings as variable-length UTF-8.
 * Readers accept any integer type, and fixed- or variable-length strings. HDF5's own error
 * stack printing is switched off; every failure is reported once, in our words, naming the file
 * and the attribute or dataset. */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/checkpoint.h"
#include "model/h5util.h"
#include "model/model.h"
#include "mpi/log.h"

void pai_folder_name(const char *folder, char *out, size_t out_len) {
  size_t n = strlen(folder);
  while (n > 1 && folder[n - 1] == '/') n--;
  size_t start = n;
  while (start > 0 && folder[start - 1] != '/') start--;
  size_t len = n - start;
  if (len >= out_len) len = out_len - 1;
  memcpy(out, folder + start, len);
  out[len] = 0;
}

int pai_mkdir_p(const char *path) {
  char buf[PAI_PATH_LEN];
  if (strlen(path) >= sizeof buf) {
    PAI_ERR("path too long: %s", path);
    return PAI_ERR_IO;
  }
  strcpy(buf, path);
  for (char *s = buf + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (buf[0] && mkdir(buf, 0777) != 0 && errno != EEXIST) {
        PAI_ERR("cannot create directory %s: %s", buf, strerror(errno));
        return PAI_ERR_IO;
      }
      *s = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    PAI_ERR("%s exists and is not a directory", path);
    return PAI_ERR_IO;
  }
  return 0;
}

int pai_model_create(pai_model *m, const pai_config *cfg) {
  memset(m, 0, sizeof *m);
  PAI_TRY(pai_config_check(cfg, "model"));
  m->cfg = *cfg;
  return pai_params_init(&m->params, cfg);
}

void pai_model_free(pai_model *m) {
  pai_params_free(&m->params);
  memset(m, 0, sizeof *m);
}

/* ---- reading ---------------------------------------------------------------------------------- */

/* Reads a numeric root attribute of 1..max_n values, converted to `mem` (H5T_NATIVE_INT64:
 * integers only; H5T_NATIVE_DOUBLE: integers or floats). n_out NULL: exactly one value. */
static int read_num_attr(hid_t file, const char *path, const char *name, hid_t mem, void *v,
                         int max_n, int *n_out) {
  int rc = 0;
  hid_t a = -1, type = -1, space = -1;
  const int want_int = H5Tequal(mem, H5T_NATIVE_INT64) > 0;
  if (H5Aexists(file, name) <= 0) {
    PAI_ERR("%s: missing root attribute '%s'", path, name);
    return PAI_ERR_INPUT;
  }
  H5_CHECK(a = H5Aopen(file, name, H5P_DEFAULT), "%s: cannot open attribute '%s'", path, name);
  H5_CHECK(type = H5Aget_type(a), "%s: attribute '%s'", path, name);
  H5_CHECK(space = H5Aget_space(a), "%s: attribute '%s'", path, name);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  const H5T_class_t cls = H5Tget_class(type);
  if ((cls != H5T_INTEGER && (want_int || cls != H5T_FLOAT)) || n < 1 || n > max_n ||
      (n_out == NULL && n != 1)) {
    PAI_ERR("%s: root attribute '%s' must be %s", path, name,
            n_out ? "an integer array" : want_int ? "one integer" : "one number");
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  H5_CHECK(H5Aread(a, mem, v), "%s: cannot read attribute '%s'", path, name);
  if (n_out) *n_out = (int)n;
fail:
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (a >= 0) H5Aclose(a);
  return rc;
}

static int read_int_scalar(hid_t file, const char *path, const char *name, int *out) {
  int64_t v;
  PAI_TRY(read_num_attr(file, path, name, H5T_NATIVE_INT64, &v, 1, NULL));
  if (v < -2147483647LL || v > 2147483647LL) {
    PAI_ERR("%s: root attribute '%s' = %lld is out of range", path, name, (long long)v);
    return PAI_ERR_INPUT;
  }
  *out = (int)v;
  return 0;
}

/* Reads a string-array attribute (fixed or variable length) into names[0..n). */
static int read_names_attr(hid_t file, const char *path, const char *name,
                           char names[][PAI_NAME_LEN], int n_expected) {
  int rc = 0;
  hid_t a = -1, type = -1, space = -1, mem = -1;
  char *buf = NULL;
  char **vbuf = NULL;
  H5_CHECK(a = H5Aopen(file, name, H5P_DEFAULT), "%s: cannot open attribute '%s'", path, name);
  H5_CHECK(type = H5Aget_type(a), "%s: attribute '%s'", path, name);
  H5_CHECK(space = H5Aget_space(a), "%s: attribute '%s'", path, name);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (H5Tget_class(type) != H5T_STRING || n != n_expected) {
    PAI_ERR("%s: root attribute '%s' must hold %d strings (one per head)", path, name, n_expected);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if (H5Tis_variable_str(type) > 0) {
    vbuf = calloc((size_t)n, sizeof *vbuf);
    H5_CHECK(mem = H5Tcopy(H5T_C_S1), "%s", path);
    H5_CHECK(H5Tset_size(mem, H5T_VARIABLE), "%s", path);
    H5_CHECK(H5Tset_cset(mem, H5Tget_cset(type)), "%s", path);   /* ASCII or UTF-8 as stored */
    H5_CHECK(H5Aread(a, mem, vbuf), "%s: cannot read attribute '%s'", path, name);
    for (int i = 0; i < n; i++) snprintf(names[i], PAI_NAME_LEN, "%s", vbuf[i] ? vbuf[i] : "");
    H5Dvlen_reclaim(mem, space, H5P_DEFAULT, vbuf);
  } else {
    size_t len = H5Tget_size(type);
    buf = calloc((size_t)n, len + 1);
    H5_CHECK(mem = H5Tcopy(H5T_C_S1), "%s", path);
    H5_CHECK(H5Tset_size(mem, len + 1), "%s", path);
    H5_CHECK(H5Tset_cset(mem, H5Tget_cset(type)), "%s", path);
    H5_CHECK(H5Aread(a, mem, buf), "%s: cannot read attribute '%s'", path, name);
    for (int i = 0; i < n; i++) snprintf(names[i], PAI_NAME_LEN, "%s", buf + (size_t)i * (len + 1));
  }
fail:
  free(vbuf);
  free(buf);
  if (mem >= 0) H5Tclose(mem);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (a >= 0) H5Aclose(a);
  return rc;
}

/* Dataset `name` (t's shape) into dst. */
static int read_tensor(hid_t file, const char *path, const char *name, const pai_tensor *t,
                       float *dst) {
  int rc = 0;
  hid_t d = -1, space = -1, type = -1;
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    PAI_ERR("%s: missing dataset %s", path, name);
    return PAI_ERR_INPUT;
  }
  H5_CHECK(d = H5Dopen2(file, name, H5P_DEFAULT), "%s: cannot open dataset %s", path, name);
  H5_CHECK(space = H5Dget_space(d), "%s: dataset %s", path, name);
  H5_CHECK(type = H5Dget_type(d), "%s: dataset %s", path, name);
  hsize_t dims[4] = {0};
  int rank = H5Sget_simple_extent_ndims(space);
  int want_rank = t->cols > 0 ? 2 : 1;
  if (rank == want_rank) H5Sget_simple_extent_dims(space, dims, NULL);
  if (rank != want_rank || dims[0] != (hsize_t)t->rows ||
      (want_rank == 2 && dims[1] != (hsize_t)t->cols)) {
    char got[64] = "";
    if (rank >= 1 && rank <= 4) {
      H5Sget_simple_extent_dims(space, dims, NULL);
      int o = snprintf(got, sizeof got, "[%llu", (unsigned long long)dims[0]);
      for (int r = 1; r < rank && o < 50; r++)
        o += snprintf(got + o, sizeof got - o, ", %llu", (unsigned long long)dims[r]);
      snprintf(got + o, sizeof got - o, "]");
    } else {
      snprintf(got, sizeof got, "rank %d", rank);
    }
    if (t->cols > 0)
      PAI_ERR("%s: dataset %s has shape %s, expected [%d, %d] from the root attributes", path,
              name, got, t->rows, t->cols);
    else
      PAI_ERR("%s: dataset %s has shape %s, expected [%d] from the root attributes", path,
              name, got, t->rows);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if (H5Tget_class(type) != H5T_FLOAT) {
    PAI_ERR("%s: dataset %s is not floating point", path, name);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  H5_CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst),
           "%s: cannot read dataset %s (file truncated or damaged?)", path, name);
fail:
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (d >= 0) H5Dclose(d);
  return rc;
}

int pai_tensors_read(hid_t file, const char *path, const char *prefix, const pai_params *layout,
                     float *buf, int trainable_only) {
  char name[PAI_PATH_LEN];
  for (int i = 0; i < layout->n_tensors; i++) {
    const pai_tensor *t = &layout->tensors[i];
    if (trainable_only && !t->trainable) continue;
    snprintf(name, sizeof name, "%s%s", prefix, t->path);
    PAI_TRY(read_tensor(file, path, name, t, buf + t->offset));
  }
  return 0;
}

int pai_tensors_write(hid_t file, const char *path, const char *prefix, const pai_params *layout,
                      const float *buf, int trainable_only) {
  int rc = 0;
  hid_t lcpl = -1;
  char name[PAI_PATH_LEN];
  H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s", path);
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s", path);
  for (int i = 0; i < layout->n_tensors; i++) {
    const pai_tensor *t = &layout->tensors[i];
    if (trainable_only && !t->trainable) continue;
    snprintf(name, sizeof name, "%s%s", prefix, t->path);
    hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};
    hid_t space = H5Screate_simple(t->cols > 0 ? 2 : 1, dims, NULL);
    hid_t d = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t w = d >= 0 ? H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                 buf + t->offset)
                      : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    H5_CHECK(w, "%s: cannot write dataset %s", path, name);
  }
fail:
  if (lcpl >= 0) H5Pclose(lcpl);
  return rc;
}

int pai_config_read_h5(hid_t file, const char *path, pai_config *cfg) {
  int rc = 0;
  pai_config_defaults(cfg);
  int version = 0;
  PAI_CHECK(read_int_scalar(file, path, "format_version", &version));
  if (version != 1) {
    PAI_ERR("%s: format_version %d is not supported (this build reads 1)", path, version);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  PAI_CHECK(read_int_scalar(file, path, "num_blocks", &cfg->num_blocks));
  PAI_CHECK(read_int_scalar(file, path, "model_dim", &cfg->model_dim));
  PAI_CHECK(read_int_scalar(file, path, "kernel_size", &cfg->kernel_size));
  PAI_CHECK(read_int_scalar(file, path, "shortcut_freq", &cfg->shortcut_freq));
  PAI_CHECK(read_int_scalar(file, path, "input_length", &cfg->input_length));
  PAI_CHECK(read_int_scalar(file, path, "output_length", &cfg->output_length));
  PAI_CHECK(read_num_attr(file, path, "bn_epsilon", H5T_NATIVE_DOUBLE, &cfg->bn_epsilon, 1, NULL));
  int64_t dims[PAI_MAX_HEADS];
  PAI_CHECK(read_num_attr(file, path, "output_dims", H5T_NATIVE_INT64, dims, PAI_MAX_HEADS,
                          &cfg->n_heads));
  for (int j = 0; j < cfg->n_heads; j++)
    cfg->output_dims[j] = dims[j] > 0 && dims[j] < 1000000 ? (int)dims[j] : 0;
  if (H5Aexists(file, "head_names") > 0) {
    PAI_CHECK(read_names_attr(file, path, "head_names", cfg->head_names, cfg->n_heads));
  } else {
    for (int j = 0; j < cfg->n_heads; j++)
      snprintf(cfg->head_names[j], PAI_NAME_LEN, j == 0 ? "human" : "head_%d", j);
  }
fail:
  return rc;
}

int pai_model_load(pai_model *m, const char *folder) {
  int rc = 0;
  hid_t file = -1;
  char path[PAI_PATH_LEN];
  memset(m, 0, sizeof *m);
  pai_h5_quiet();
  struct stat st;
  if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
    PAI_ERR("model folder %s does not exist or is not a directory", folder);
    return PAI_ERR_IO;
  }
  size_t flen = strlen(folder);
  while (flen > 1 && folder[flen - 1] == '/') flen--;   /* "m/" and "m" name the same file */
  snprintf(path, sizeof path, "%.*s/model.h5", (int)flen, folder);
  if (access(path, R_OK) != 0) {
    PAI_ERR("model folder %s has no readable model.h5 (%s)", folder, strerror(errno));
    return PAI_ERR_IO;
  }
  if (H5Fis_hdf5(path) <= 0) {
    PAI_ERR("%s is not an HDF5 file (truncated or damaged?)", path);
    return PAI_ERR_INPUT;
  }
  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    PAI_ERR("%s: cannot open as HDF5 (truncated or damaged?)", path);
    return PAI_ERR_INPUT;
  }
  pai_config cfg;
  PAI_CHECK(pai_config_read_h5(file, path, &cfg));
  PAI_CHECK(pai_config_check(&cfg, path));
  PAI_CHECK(pai_model_create(m, &cfg));
  PAI_CHECK(pai_tensors_read(file, path, "", &m->params, m->params.data, 0));
  H5Fclose(file);
  return 0;
fail:
  if (file >= 0) H5Fclose(file);
  pai_model_free(m);
  return rc < 0 ? rc : PAI_ERR_INPUT;
}

/* ---- writing ---------------------------------------------------------------------------------- */

int pai_config_write_h5(hid_t file, const char *path, const pai_config *c) {
  int rc = 0;
  const struct { const char *name; int64_t v; } ints[] = {
      {"format_version", 1},           {"num_blocks", c->num_blocks},
      {"model_dim", c->model_dim},     {"kernel_size", c->kernel_size},
      {"shortcut_freq", c->shortcut_freq}, {"input_length", c->input_length},
      {"output_length", c->output_length},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    PAI_CHECK(pai_h5_write_i64(file, path, ints[i].name, &ints[i].v, 1, 1));
  int64_t dims[PAI_MAX_HEADS];
  for (int j = 0; j < c->n_heads; j++) dims[j] = c->output_dims[j];
  PAI_CHECK(pai_h5_write_i64(file, path, "output_dims", dims, c->n_heads, 0));

  PAI_CHECK(pai_h5_write_attr(file, path, "bn_epsilon", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                              &c->bn_epsilon, 1, 1));

  const char *names[PAI_MAX_HEADS];
  for (int j = 0; j < c->n_heads; j++) names[j] = c->head_names[j];
  PAI_CHECK(pai_h5_write_strs(file, path, "head_names", names, c->n_heads, 0));
fail:
  return rc;
}

int pai_model_save(const pai_model *m, const char *folder) {
  int rc = 0;
  hid_t file = -1;
  char path[PAI_PATH_LEN + 32], tmp[PAI_PATH_LEN + 64];
  pai_h5_quiet();
  PAI_TRY(pai_mkdir_p(folder));
  snprintf(path, sizeof path, "%s/model.h5", folder);
  snprintf(tmp, sizeof tmp, "%s/.model.h5.tmp.%ld", folder, (long)getpid());
  H5_CHECK(file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
           "cannot create %s", tmp);
  PAI_CHECK(pai_config_write_h5(file, tmp, &m->cfg));
  PAI_CHECK(pai_tensors_write(file, tmp, "", &m->params, m->params.data, 0));
  H5_CHECK(H5Fclose(file), "cannot finish writing %s (disk full?)", tmp);
  file = -1;
  if (rename(tmp, path) != 0) {
    PAI_ERR("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
  return 0;
fail:
  if (file >= 0) H5Fclose(file);
  unlink(tmp);
  return rc;
}
