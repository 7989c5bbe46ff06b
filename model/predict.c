/* predict.c - see predict.h. */
#include "model/predict.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/seq.h"
#include "mpi/log.h"
#include "preprocess/tsv.h"

/* Appends one sequence of exactly L characters to the (n, L) code buffer. */
static int push_seq(uint8_t **codes, int *n, int *cap, const char *s, int L) {
  if (*n == *cap) {
    uint8_t *grown = realloc(*codes, (size_t)(*cap * 2) * L);
    if (!grown) return PAI_ERR_NOMEM;
    *codes = grown;
    *cap *= 2;
  }
  pai_encode(*codes + (size_t)(*n)++ * L, s, (size_t)L);
  return 0;
}

/* Reads every sequence of the file into one (n, L) code buffer. */
static int read_seqs(const char *path, int L, uint8_t **codes_out, int *n_out) {
  int rc = 0;
  struct BGZF *f = pai_text_open(path, "sequence file", &rc);   /* plain, gzip or bgzip */
  if (!f) return rc;
  int n = 0, cap = 16, fasta = -1, in_record = 0;
  uint8_t *codes = malloc((size_t)cap * L);
  char *line = NULL, *cur = malloc((size_t)L + 1);
  size_t line_cap = 0, cur_len = 0;
  long lineno = 0, record_line = 0;
  long len = 0;
  while (rc == 0 && (len = pai_text_getline(f, &line, &line_cap)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (len == 0) continue;
    if (fasta < 0) fasta = line[0] == '>';
    if (!fasta) {   /* one sequence per line */
      if (len != L) {
        PAI_ERR("%s:%ld: sequence of length %ld, expected input_length %d", path, lineno, len, L);
        rc = PAI_ERR_INPUT;
      } else {
        rc = push_seq(&codes, &n, &cap, line, L);
      }
      continue;
    }
    if (line[0] == '>') {   /* FASTA: a header closes the previous record */
      if (in_record && cur_len != (size_t)L) break;
      if (in_record) rc = push_seq(&codes, &n, &cap, cur, L);
      in_record = 1;
      record_line = lineno;
      cur_len = 0;
    } else if (!in_record || cur_len + (size_t)len > (size_t)L) {
      cur_len = (size_t)L + 1;   /* too long (or text before the first header) */
    } else {
      memcpy(cur + cur_len, line, (size_t)len);
      cur_len += (size_t)len;
    }
  }
  if (rc == 0 && len == -2) {
    pai_text_read_error(f, path, lineno);
    rc = PAI_ERR_IO;
  }
  if (rc == 0 && fasta == 1) {
    if (in_record && cur_len != (size_t)L) {
      PAI_ERR("%s:%ld: record's sequence is not input_length %d long", path, record_line, L);
      rc = PAI_ERR_INPUT;
    } else if (in_record) {
      rc = push_seq(&codes, &n, &cap, cur, L);
    }
  }
  free(line);
  free(cur);
  pai_text_close(f);
  if (rc == 0 && n == 0) {
    PAI_ERR("%s: no sequences", path);
    rc = PAI_ERR_INPUT;
  }
  if (rc) {
    free(codes);
    return rc;
  }
  *codes_out = codes;
  *n_out = n;
  return 0;
}

int pai_predict_run(const pai_predict_opts *o) {
  int rc = 0;
  pai_model model = {0};
  pai_infer inf = {0};
  uint8_t *codes = NULL;
  float *outs[PAI_MAX_HEADS] = {0};
  hid_t file = -1, dsets[PAI_MAX_HEADS];
  char tmp[PAI_PATH_LEN + 32];
  tmp[0] = 0;
  for (int j = 0; j < PAI_MAX_HEADS; j++) dsets[j] = -1;

  PAI_CHECK(pai_model_load(&model, o->model_folder));
  const pai_config *c = &model.cfg;
  int n = 0;
  PAI_CHECK(read_seqs(o->seq_file, c->input_length, &codes, &n));
  const int B = o->batch_size < 1 ? 1 : o->batch_size;
  PAI_CHECK(pai_infer_init(&inf, &model, B, PAI_ALL_HEADS, &o->backend));

  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->out, (long)getpid());
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) {
    PAI_ERR("cannot create %s", tmp);
    tmp[0] = 0;
    rc = PAI_ERR_IO;
    goto fail;
  }
  for (int j = 0; j < c->n_heads; j++) {
    char name[32];
    snprintf(name, sizeof name, "/head_%d", j);
    hsize_t dims[3] = {(hsize_t)n, (hsize_t)c->output_length, (hsize_t)c->output_dims[j]};
    hid_t space = H5Screate_simple(3, dims, NULL);
    dsets[j] = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    H5Sclose(space);
    outs[j] = malloc((size_t)B * c->output_length * c->output_dims[j] * sizeof(float));
    if (dsets[j] < 0 || !outs[j]) {
      PAI_ERR("cannot create dataset %s in %s", name, tmp);
      rc = PAI_ERR_IO;
      goto fail;
    }
  }
  for (int s = 0; s < n; s += B) {
    const int nb = n - s < B ? n - s : B;
    PAI_CHECK(pai_infer_forward(&inf, codes + (size_t)s * c->input_length, nb, outs));
    for (int j = 0; j < c->n_heads; j++) {
      hsize_t start[3] = {(hsize_t)s, 0, 0};
      hsize_t count[3] = {(hsize_t)nb, (hsize_t)c->output_length, (hsize_t)c->output_dims[j]};
      hid_t fspace = H5Dget_space(dsets[j]);
      hid_t mspace = H5Screate_simple(3, count, NULL);
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
      herr_t w = H5Dwrite(dsets[j], H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, outs[j]);
      H5Sclose(mspace);
      H5Sclose(fspace);
      if (w < 0) {
        PAI_ERR("cannot write %s (disk full?)", tmp);
        rc = PAI_ERR_IO;
        goto fail;
      }
    }
  }
  for (int j = 0; j < c->n_heads; j++) {
    H5Dclose(dsets[j]);
    dsets[j] = -1;
  }
  herr_t closed = H5Fclose(file);
  file = -1;
  if (closed < 0 || rename(tmp, o->out) != 0) {
    PAI_ERR("cannot finish writing %s", o->out);
    rc = PAI_ERR_IO;
    goto fail;
  }
  tmp[0] = 0;
  PAI_INFO("wrote %s: %d sequences, %d head(s)", o->out, n, c->n_heads);
fail:
  for (int j = 0; j < PAI_MAX_HEADS; j++) {
    if (dsets[j] >= 0) H5Dclose(dsets[j]);
    free(outs[j]);
  }
  if (file >= 0) H5Fclose(file);
  if (tmp[0]) unlink(tmp);
  free(codes);
  pai_infer_free(&inf);
  pai_model_free(&model);
  return rc;
}
