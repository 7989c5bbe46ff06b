/* shardfile.c - see shardfile.h. */
#include "preprocess/shardfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/h5util.h"

struct pai_shard_writer {
  pai_shard_meta m;
  char final_path[PAI_PATH_LEN], tmp[PAI_PATH_LEN + 8];
  hid_t file, x, y, y_type, x_mem, y_mem, x_file, y_file;
  int64_t *pos, *line;
  int8_t *strand;
  unsigned char *done;   /* [N] 1 once sample i was written */
};

static hid_t chunked_dcpl(int rank, const hsize_t *chunk, int deflate) {
  hid_t p = H5Pcreate(H5P_DATASET_CREATE);
  if (p < 0) return p;
  if (H5Pset_chunk(p, rank, chunk) < 0 || (deflate > 0 && (H5Pset_shuffle(p) < 0 ||
                                                          H5Pset_deflate(p, (unsigned)deflate) < 0))) {
    H5Pclose(p);
    return -1;
  }
  return p;
}

int pai_shard_create(pai_shard_writer **out, const char *final_path, const pai_shard_meta *m) {
  int rc = 0;
  hid_t space = -1, dcpl = -1, dapl = -1;
  *out = NULL;
  pai_shard_writer *w = calloc(1, sizeof *w);
  if (!w) return PAI_ERR_NOMEM;
  w->m = *m;
  w->file = w->x = w->y = w->y_type = w->x_mem = w->y_mem = w->x_file = w->y_file = -1;
  snprintf(w->final_path, sizeof w->final_path, "%s", final_path);
  snprintf(w->tmp, sizeof w->tmp, "%s.tmp", final_path);
  const int64_t N = m->n_samples, S_in = m->input_length, S_out = m->output_length;
  const int T = m->n_tracks;
  w->pos = calloc((size_t)N, sizeof *w->pos);
  w->line = calloc((size_t)N, sizeof *w->line);
  w->strand = calloc((size_t)N, sizeof *w->strand);
  w->done = calloc((size_t)N, 1);
  if (!w->pos || !w->line || !w->strand || !w->done) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  pai_h5_quiet();
  const char *p = w->tmp;
  H5_CHECK(w->file = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", p);

  const hsize_t cpos_x = (hsize_t)(m->chunk_positions < S_in ? m->chunk_positions : S_in);
  const hsize_t cpos_y = (hsize_t)(m->chunk_positions < S_out ? m->chunk_positions : S_out);
  /* /x [N, S_in] uint8, chunks [1, cpos] */
  hsize_t xdims[2] = {(hsize_t)N, (hsize_t)S_in}, xchunk[2] = {1, cpos_x};
  H5_CHECK(space = H5Screate_simple(2, xdims, NULL), "%s", p);
  H5_CHECK(dcpl = chunked_dcpl(2, xchunk, m->deflate), "%s: chunking /x", p);
  H5_CHECK(w->x = H5Dcreate2(w->file, "x", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
           "%s: cannot create /x", p);
  H5Pclose(dcpl);
  H5Sclose(space);
  dcpl = space = -1;
  /* /y [N, S_out, T], chunks [1, cpos, T]; the chunk cache holds one sample's chunks so that
   * each chunk is compressed once, when the sample is written. */
  hsize_t ydims[3] = {(hsize_t)N, (hsize_t)S_out, (hsize_t)T}, ychunk[3] = {1, cpos_y, (hsize_t)T};
  H5_CHECK(w->y_type = m->y_f16 ? pai_h5_f16_type() : H5Tcopy(H5T_IEEE_F32LE), "%s", p);
  H5_CHECK(space = H5Screate_simple(3, ydims, NULL), "%s", p);
  H5_CHECK(dcpl = chunked_dcpl(3, ychunk, m->deflate), "%s: chunking /y", p);
  H5_CHECK(dapl = H5Pcreate(H5P_DATASET_ACCESS), "%s", p);
  const size_t sample_bytes = (size_t)S_out * T * (m->y_f16 ? 2 : 4);
  H5_CHECK(H5Pset_chunk_cache(dapl, 521, sample_bytes + (1 << 20), 1.0), "%s", p);
  H5_CHECK(w->y = H5Dcreate2(w->file, "y", w->y_type, space, H5P_DEFAULT, dcpl, dapl),
           "%s: cannot create /y", p);
  H5Pclose(dapl);
  H5Pclose(dcpl);
  H5Sclose(space);
  dapl = dcpl = space = -1;
  /* one sample: memory spaces and file spaces reused by every put */
  hsize_t xm[1] = {(hsize_t)S_in}, ym[2] = {(hsize_t)S_out, (hsize_t)T};
  H5_CHECK(w->x_mem = H5Screate_simple(1, xm, NULL), "%s", p);
  H5_CHECK(w->y_mem = H5Screate_simple(2, ym, NULL), "%s", p);
  H5_CHECK(w->x_file = H5Dget_space(w->x), "%s", p);
  H5_CHECK(w->y_file = H5Dget_space(w->y), "%s", p);

  /* attributes: the contract first, then provenance */
  const int64_t ints[][1] = {{1}, {S_in}, {S_out}, {m->part}, {m->n_parts}, {T}, {N}};
  const char *int_names[] = {"format_version", "input_length", "output_length", "part",
                             "n_parts", "n_tracks", "n_samples"};
  for (int i = 0; i < 7; i++) PAI_CHECK(pai_h5_write_i64(w->file, p, int_names[i], ints[i], 1, 1));
  PAI_CHECK(pai_h5_write_strs(w->file, p, "track_names", m->track_names, T, 0));
  PAI_CHECK(pai_h5_write_strs(w->file, p, "xforms", m->xforms, T, 0));
  const struct { const char *name, *v; } strs[] = {
      {"chrom", m->chrom},           {"y_dtype", m->y_f16 ? "float16" : "float32"},
      {"tss_file", m->tss_file},     {"fasta_file", m->fasta_file},
      {"bigwig_files", m->bigwig_files}, {"track_table", m->track_table},
      {"fingerprint", m->fingerprint},   {"created_by", "ppreprocess " PAI_VERSION},
  };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    PAI_CHECK(pai_h5_write_strs(w->file, p, strs[i].name, &strs[i].v, 1, 1));
  *out = w;
  return 0;
fail:
  if (dapl >= 0) H5Pclose(dapl);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  pai_shard_abort(w);
  return rc;
}

int pai_shard_put(pai_shard_writer *w, int64_t i, const uint8_t *x, const void *y, int64_t pos,
                  int strand, int64_t line) {
  int rc = 0;
  const char *p = w->tmp;
  hsize_t xs[2] = {(hsize_t)i, 0}, xc[2] = {1, (hsize_t)w->m.input_length};
  hsize_t ys[3] = {(hsize_t)i, 0, 0},
          yc[3] = {1, (hsize_t)w->m.output_length, (hsize_t)w->m.n_tracks};
  H5_CHECK(H5Sselect_hyperslab(w->x_file, H5S_SELECT_SET, xs, NULL, xc, NULL), "%s", p);
  H5_CHECK(H5Dwrite(w->x, H5T_NATIVE_UINT8, w->x_mem, w->x_file, H5P_DEFAULT, x),
           "%s: cannot write sample %lld of /x", p, (long long)i);
  H5_CHECK(H5Sselect_hyperslab(w->y_file, H5S_SELECT_SET, ys, NULL, yc, NULL), "%s", p);
  H5_CHECK(H5Dwrite(w->y, w->m.y_f16 ? w->y_type : H5T_NATIVE_FLOAT, w->y_mem, w->y_file,
                    H5P_DEFAULT, y),
           "%s: cannot write sample %lld of /y", p, (long long)i);
  w->pos[i] = pos;
  w->strand[i] = (int8_t)strand;
  w->line[i] = line;
  w->done[i] = 1;
fail:
  return rc;
}

/* A per-sample vector, compressed like /x and /y (one chunk holds up to 64 Ki samples). */
static int write_vector(hid_t file, const char *p, const char *name, hid_t ftype, hid_t mtype,
                        const void *v, int64_t n, int deflate) {
  int rc = 0;
  hid_t space = -1, d = -1, dcpl = -1;
  hsize_t dim = (hsize_t)n, chunk = (hsize_t)(n < 65536 ? (n > 0 ? n : 1) : 65536);
  H5_CHECK(space = H5Screate_simple(1, &dim, NULL), "%s", p);
  H5_CHECK(dcpl = chunked_dcpl(1, &chunk, deflate), "%s: chunking /%s", p, name);
  H5_CHECK(d = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
           "%s: cannot create /%s", p, name);
  H5_CHECK(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "%s: cannot write /%s", p, name);
fail:
  if (d >= 0) H5Dclose(d);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return rc;
}

static void close_ids(pai_shard_writer *w) {
  hid_t *sp[] = {&w->x_mem, &w->y_mem, &w->x_file, &w->y_file};
  for (int i = 0; i < 4; i++)
    if (*sp[i] >= 0) H5Sclose(*sp[i]), *sp[i] = -1;
  if (w->x >= 0) H5Dclose(w->x), w->x = -1;
  if (w->y >= 0) H5Dclose(w->y), w->y = -1;
  if (w->y_type >= 0) H5Tclose(w->y_type), w->y_type = -1;
}

static void writer_free(pai_shard_writer *w) {
  free(w->pos);
  free(w->line);
  free(w->strand);
  free(w->done);
  free(w);
}

int pai_shard_commit(pai_shard_writer *w) {
  int rc = 0;
  const char *p = w->tmp;
  for (int64_t i = 0; i < w->m.n_samples; i++)
    if (!w->done[i]) {
      PAI_ERR("%s: sample %lld was never written", p, (long long)i);
      rc = PAI_ERR_RUNTIME;
      goto fail;
    }
  const int64_t N = w->m.n_samples;
  const int z = w->m.deflate;
  PAI_CHECK(write_vector(w->file, p, "pos", H5T_STD_I64LE, H5T_NATIVE_INT64, w->pos, N, z));
  PAI_CHECK(write_vector(w->file, p, "strand", H5T_STD_I8LE, H5T_NATIVE_INT8, w->strand, N, z));
  PAI_CHECK(write_vector(w->file, p, "line", H5T_STD_I64LE, H5T_NATIVE_INT64, w->line, N, z));
  close_ids(w);
  herr_t closed = H5Fclose(w->file);
  w->file = -1;
  H5_CHECK(closed, "cannot finish writing %s (disk full?)", p);
  /* on disk before it takes the final name: a final name must never hold a partial file */
  int fd = open(w->tmp, O_RDONLY);
  if (fd < 0 || fsync(fd) != 0) {
    PAI_ERR("cannot flush %s to disk: %s", w->tmp, strerror(errno));
    if (fd >= 0) close(fd);
    rc = PAI_ERR_IO;
    goto fail;
  }
  close(fd);
  if (rename(w->tmp, w->final_path) != 0) {
    PAI_ERR("cannot rename %s to %s: %s", w->tmp, w->final_path, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
  writer_free(w);
  return 0;
fail:
  pai_shard_abort(w);
  return rc;
}

void pai_shard_abort(pai_shard_writer *w) {
  if (!w) return;
  close_ids(w);
  if (w->file >= 0) H5Fclose(w->file);
  unlink(w->tmp);
  writer_free(w);
}

int pai_shard_is_current(const char *path, const char *fingerprint, int64_t n_samples,
                         int64_t input_length, int64_t output_length, int n_tracks) {
  pai_h5_quiet();
  if (access(path, R_OK) != 0) return 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return 0;
  int ok = 0;
  char fp[64];
  if (pai_h5_read_str(f, "fingerprint", fp, sizeof fp) == 0 && !strcmp(fp, fingerprint)) {
    const struct { const char *name; int rank; hsize_t dims[3]; } want[] = {
        {"x", 2, {(hsize_t)n_samples, (hsize_t)input_length, 0}},
        {"y", 3, {(hsize_t)n_samples, (hsize_t)output_length, (hsize_t)n_tracks}},
        {"pos", 1, {(hsize_t)n_samples, 0, 0}},
        {"strand", 1, {(hsize_t)n_samples, 0, 0}},
        {"line", 1, {(hsize_t)n_samples, 0, 0}},
    };
    ok = 1;
    for (size_t i = 0; i < sizeof want / sizeof want[0] && ok; i++) {
      hid_t d = H5Lexists(f, want[i].name, H5P_DEFAULT) > 0 ? H5Dopen2(f, want[i].name, H5P_DEFAULT) : -1;
      hid_t s = d >= 0 ? H5Dget_space(d) : -1;
      hsize_t dims[3] = {0, 0, 0};
      ok = s >= 0 && H5Sget_simple_extent_ndims(s) == want[i].rank &&
           H5Sget_simple_extent_dims(s, dims, NULL) >= 0 &&
           !memcmp(dims, want[i].dims, sizeof(hsize_t) * (size_t)want[i].rank);
      if (s >= 0) H5Sclose(s);
      if (d >= 0) H5Dclose(d);
    }
  }
  H5Fclose(f);
  return ok;
}
