/* loader.c - see loader.h. */
#include "model/loader.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/h5util.h"
#include "model/half.h"
#include "mpi/log.h"
#include "preprocess/tsv.h"

/* Random streams of the sampler (pai_rng_seed's stream argument, high bits) */
#define STREAM_SPECIES (1ull << 60)
#define STREAM_PERM (2ull << 60)
#define STREAM_AUG (3ull << 60)

/* ---- datasets --------------------------------------------------------------------------------- */

/* Opens one shard and checks it against the manifest row and the dataset's shapes so far. */
static int open_shard(pai_dataset *ds, pai_shard_ref *sh) {
  int rc = 0;
  hid_t space = -1, type = -1;
  int64_t in_len = 0, out_len = 0, n_tracks = 0;
  hsize_t xd[2] = {0}, yd[3] = {0};
  if (H5Fis_hdf5(sh->path) <= 0) {
    PAI_ERR("%s: missing or not an HDF5 file (listed in %s/manifest.tsv)", sh->path, ds->folder);
    return PAI_ERR_INPUT;
  }
  if ((sh->file = H5Fopen(sh->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
    /* a damaged file is bad input: one line, no HDF5 call trace */
    PAI_ERR("%s: cannot open as HDF5 (truncated or damaged?)", sh->path);
    return PAI_ERR_INPUT;
  }
  const char *what = "a ppreprocess shard";
  PAI_CHECK(pai_h5_read_i64(sh->file, sh->path, "input_length", &in_len, what));
  PAI_CHECK(pai_h5_read_i64(sh->file, sh->path, "output_length", &out_len, what));
  PAI_CHECK(pai_h5_read_i64(sh->file, sh->path, "n_tracks", &n_tracks, what));
  if (H5Lexists(sh->file, "/x", H5P_DEFAULT) <= 0 || H5Lexists(sh->file, "/y", H5P_DEFAULT) <= 0) {
    PAI_ERR("%s: no dataset /x or /y (not a ppreprocess shard?)", sh->path);
    return PAI_ERR_INPUT;
  }
  H5_CHECK(sh->x = H5Dopen2(sh->file, "/x", H5P_DEFAULT), "%s: cannot open /x", sh->path);
  H5_CHECK(sh->y = H5Dopen2(sh->file, "/y", H5P_DEFAULT), "%s: cannot open /y", sh->path);
  H5_CHECK(space = H5Dget_space(sh->x), "%s: /x", sh->path);
  if (H5Sget_simple_extent_ndims(space) != 2) {
    PAI_ERR("%s: /x is not 2-dimensional", sh->path);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  H5Sget_simple_extent_dims(space, xd, NULL);
  H5Sclose(space);
  H5_CHECK(space = H5Dget_space(sh->y), "%s: /y", sh->path);
  if (H5Sget_simple_extent_ndims(space) != 3) {
    PAI_ERR("%s: /y is not 3-dimensional", sh->path);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  H5Sget_simple_extent_dims(space, yd, NULL);
  H5_CHECK(type = H5Dget_type(sh->y), "%s: /y", sh->path);
  const int f16 = H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 2;
  const int f32 = H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
  if (!f16 && !f32) {
    PAI_ERR("%s: /y is neither float16 nor float32", sh->path);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if ((int64_t)xd[0] != sh->n || (int64_t)yd[0] != sh->n || (int64_t)xd[1] != in_len ||
      (int64_t)yd[1] != out_len || (int64_t)yd[2] != n_tracks) {
    PAI_ERR("%s: /x [%llu, %llu] and /y [%llu, %llu, %llu] disagree with the manifest's %lld "
            "samples or the file's attributes (input_length %lld, output_length %lld, n_tracks "
            "%lld)",
            sh->path, (unsigned long long)xd[0], (unsigned long long)xd[1],
            (unsigned long long)yd[0], (unsigned long long)yd[1], (unsigned long long)yd[2],
            (long long)sh->n, (long long)in_len, (long long)out_len, (long long)n_tracks);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if (ds->n_tracks == 0) {
    ds->n_tracks = (int)n_tracks;
    ds->s_in = in_len;
    ds->s_out = out_len;
    ds->y_f16 = f16;
  } else if (n_tracks != ds->n_tracks || in_len != ds->s_in || out_len != ds->s_out ||
             f16 != ds->y_f16) {
    PAI_ERR("%s: %lld tracks, lengths %lld / %lld, %s targets, but %s has %d tracks, lengths "
            "%lld / %lld, %s: shards of one folder must come from one ppreprocess run",
            sh->path, (long long)n_tracks, (long long)in_len, (long long)out_len,
            f16 ? "float16" : "float32", ds->shards[0].path, ds->n_tracks, (long long)ds->s_in,
            (long long)ds->s_out, ds->y_f16 ? "float16" : "float32");
    rc = PAI_ERR_INPUT;
    goto fail;
  }
fail:
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  return rc;
}

static int chrom_wanted(const char *chrom, char (*chroms)[PAI_NAME_LEN], int n) {
  if (n < 0) return 1;
  for (int i = 0; i < n; i++)
    if (!strcmp(chrom, chroms[i])) return 1;
  return 0;
}

int pai_dataset_open(pai_dataset *ds, const char *folder, char (*chroms)[PAI_NAME_LEN],
                     int n_chroms, int L, int O) {
  memset(ds, 0, sizeof *ds);
  pai_h5_quiet();
  snprintf(ds->folder, sizeof ds->folder, "%s", folder);
  if ((ds->f16_type = pai_h5_f16_type()) < 0) return PAI_ERR_RUNTIME;
  char path[PAI_PATH_LEN + 16];
  snprintf(path, sizeof path, "%s/manifest.tsv", folder);
  char *text = NULL;
  size_t len = 0;
  PAI_TRY(pai_read_file(path, "shard manifest (run ppreprocess first)", &text, &len));
  /* skip the "# key = value" lines: the table starts at the first line without '#' */
  char *start = text;
  while (*start == '#') {
    char *nl = strchr(start, '\n');
    start = nl ? nl + 1 : start + strlen(start);
  }
  char *table = strdup(start);
  free(text);
  if (!table) return PAI_ERR_NOMEM;
  pai_tsv t;
  PAI_TRY(pai_tsv_parse(&t, path, table));
  int rc = 0;
  const int c_file = pai_tsv_col(&t, "file"), c_chrom = pai_tsv_col(&t, "chrom"),
            c_n = pai_tsv_col(&t, "n_samples");
  if (c_file < 0 || c_chrom < 0 || c_n < 0) {
    PAI_ERR("%s: needs columns file, chrom and n_samples (not a ppreprocess manifest?)", path);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  ds->shards = calloc((size_t)t.n_rows + 1, sizeof *ds->shards);
  if (!ds->shards) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  for (int r = 0; r < t.n_rows; r++) {
    const char *chrom = pai_tsv_get(&t, r, c_chrom);
    if (!chrom_wanted(chrom, chroms, n_chroms)) continue;
    pai_shard_ref *sh = &ds->shards[ds->n_shards];
    sh->file = sh->x = sh->y = -1;
    int64_t n = 0;
    if (pai_parse_i64(pai_tsv_get(&t, r, c_n), &n) < 0 || n < 0) {
      PAI_ERR("%s line %ld: n_samples '%s' is not a count", path, t.lineno[r],
              pai_tsv_get(&t, r, c_n));
      rc = PAI_ERR_INPUT;
      goto fail;
    }
    if (n == 0) continue;
    snprintf(sh->path, sizeof sh->path, "%s/%s", folder, pai_tsv_get(&t, r, c_file));
    snprintf(sh->chrom, sizeof sh->chrom, "%s", chrom);
    sh->n = n;
    sh->first = ds->n_samples;
    ds->n_shards++;
    PAI_CHECK(open_shard(ds, sh));
    ds->n_samples += n;
  }
  if (ds->n_samples > 0 && (ds->s_in < L || ds->s_out < O)) {
    PAI_ERR("%s: samples are stored with %lld bases and %lld target positions, shorter than the "
            "model's input_length %d / output_length %d",
            folder, (long long)ds->s_in, (long long)ds->s_out, L, O);
    rc = PAI_ERR_INPUT;
  }
fail:
  pai_tsv_free(&t);
  if (rc < 0) pai_dataset_close(ds);
  return rc;
}

void pai_dataset_close(pai_dataset *ds) {
  for (int i = 0; ds->shards && i < ds->n_shards; i++) {
    pai_shard_ref *sh = &ds->shards[i];
    if (sh->y > 0) H5Dclose(sh->y);
    if (sh->x > 0) H5Dclose(sh->x);
    if (sh->file > 0) H5Fclose(sh->file);
  }
  free(ds->shards);
  if (ds->f16_type > 0) H5Tclose(ds->f16_type);
  memset(ds, 0, sizeof *ds);
}

/* Reads rows [r0, r0 + n) x all columns of dataset d, sample `i`, into buf (memory type mt). */
static int read_slab(hid_t d, int rank, int64_t i, int64_t r0, int64_t n, int64_t cols,
                     hid_t mt, void *buf) {
  hsize_t start[3] = {(hsize_t)i, (hsize_t)r0, 0}, count[3] = {1, (hsize_t)n, (hsize_t)cols};
  hid_t fs = H5Dget_space(d);
  hid_t ms = H5Screate_simple(rank, count, NULL);
  herr_t r = fs >= 0 && ms >= 0 ? H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL)
                                : -1;
  if (r >= 0) r = H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf);
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  return r < 0 ? -1 : 0;
}

int pai_dataset_read(pai_dataset *ds, int64_t idx, int64_t x0, int64_t y0, int L, int O,
                     uint8_t *x, float *y, uint16_t *scratch) {
  /* the shard holding idx: binary search over first */
  int lo = 0, hi = ds->n_shards - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (ds->shards[mid].first <= idx) lo = mid;
    else hi = mid - 1;
  }
  pai_shard_ref *sh = &ds->shards[lo];
  const int64_t i = idx - sh->first, T = ds->n_tracks;
  /* float16 is read in the file's own type (its bits, no conversion: an integer memory type
   * would make HDF5 convert the values), then widened here */
  const int bad = read_slab(sh->x, 2, i, x0, L, 1, H5T_NATIVE_UINT8, x) < 0 ||
                  read_slab(sh->y, 3, i, y0, O, T, ds->y_f16 ? (hid_t)ds->f16_type : H5T_NATIVE_FLOAT,
                            ds->y_f16 ? (void *)scratch : (void *)y) < 0;
  if (bad) {
    PAI_ERR("%s: cannot read sample %lld (file truncated or damaged?)", sh->path, (long long)i);
    return PAI_ERR_IO;
  }
  if (ds->y_f16)
    for (int64_t e = 0; e < (int64_t)O * T; e++) y[e] = pai_f16_to_f32(scratch[e]);
  for (int p = 0; p < L; p++)
    if (x[p] > 4) {
      PAI_ERR("%s: sample %lld has base code %d at %d (codes are 0..4)", sh->path, (long long)i,
              x[p], p);
      return PAI_ERR_INPUT;
    }
  return 0;
}

/* ---- the sampler ------------------------------------------------------------------------------ */

int pai_sampler_init(pai_sampler *s, pai_dataset *sets, int n_sets, int global_batch,
                     uint64_t seed, int L, int O) {
  memset(s, 0, sizeof *s);
  s->sets = sets;
  s->n_sets = n_sets;
  s->global_batch = global_batch;
  s->seed = seed;
  s->L = L;
  s->O = O;
  s->n_batches = calloc((size_t)n_sets, sizeof *s->n_batches);
  s->count = calloc((size_t)n_sets, sizeof *s->count);
  s->perm = calloc((size_t)n_sets, sizeof *s->perm);
  s->perm_pass = calloc((size_t)n_sets, sizeof *s->perm_pass);
  if (!s->n_batches || !s->count || !s->perm || !s->perm_pass) {
    pai_sampler_free(s);
    return PAI_ERR_NOMEM;
  }
  for (int j = 0; j < n_sets; j++) {
    s->n_batches[j] = sets[j].n_samples / global_batch;
    s->total_batches += s->n_batches[j];
    s->perm_pass[j] = -1;
    if (sets[j].n_samples > 0 && !(s->perm[j] = malloc((size_t)sets[j].n_samples * sizeof(int64_t)))) {
      pai_sampler_free(s);
      return PAI_ERR_NOMEM;
    }
  }
  return 0;
}

void pai_sampler_free(pai_sampler *s) {
  for (int j = 0; s->perm && j < s->n_sets; j++) free(s->perm[j]);
  free(s->perm);
  free(s->perm_pass);
  free(s->count);
  free(s->n_batches);
  memset(s, 0, sizeof *s);
}

static int species_of_step(const pai_sampler *s, int64_t step) {
  pai_rng r;
  pai_rng_seed(&r, s->seed, STREAM_SPECIES + (uint64_t)step);
  int64_t pick = (int64_t)(pai_rng_uniform(&r) * (double)s->total_batches);
  for (int j = 0; j < s->n_sets; j++) {
    if (pick < s->n_batches[j]) return j;
    pick -= s->n_batches[j];
  }
  return s->n_sets - 1;   /* rounding at the very top */
}

/* The permutation of species j's samples for pass p (Fisher-Yates). */
static void make_perm(pai_sampler *s, int j, int64_t pass) {
  pai_rng r;
  pai_rng_seed(&r, s->seed, STREAM_PERM + ((uint64_t)j << 40) + (uint64_t)pass);
  pai_rng_permutation(&r, s->perm[j], s->sets[j].n_samples);
  s->perm_pass[j] = pass;
}

int pai_sampler_plan(pai_sampler *s, int64_t step, int augment, int *species, pai_draw *draws) {
  if (s->total_batches < 1) {
    PAI_ERR("no training batch: fewer samples than the batch size %d in every dataset",
            s->global_batch);
    return PAI_ERR_INPUT;
  }
  if (step < s->at) {   /* replay from the start (resume, or a step asked twice) */
    s->at = 0;
    memset(s->count, 0, (size_t)s->n_sets * sizeof *s->count);
  }
  for (; s->at < step; s->at++) s->count[species_of_step(s, s->at)]++;
  const int j = species_of_step(s, step);
  const int64_t c = s->count[j], pass = c / s->n_batches[j], within = c % s->n_batches[j];
  if (s->perm_pass[j] != pass) make_perm(s, j, pass);
  const pai_dataset *ds = &s->sets[j];
  const int64_t m = ds->s_in - s->L < ds->s_out - s->O ? ds->s_in - s->L : ds->s_out - s->O;
  const double std = floor((double)m / 4.0);
  for (int b = 0; b < s->global_batch; b++) {
    pai_draw *d = &draws[b];
    d->idx = s->perm[j][within * s->global_batch + b];
    d->shift = 0;
    d->rc = 0;
    if (!augment) continue;
    pai_rng r;
    pai_rng_seed(&r, s->seed, STREAM_AUG + (uint64_t)step * (uint64_t)s->global_batch + b);
    if (std > 0) {
      double z;
      do z = pai_rng_normal(&r);
      while (fabs(z) > 2.0);
      d->shift = (int)trunc(z * std);
    }
    d->rc = pai_rng_uniform(&r) < 0.25;
  }
  *species = j;
  return 0;
}

int pai_read_draws(pai_sampler *s, int sp, const pai_draw *draws, int n, uint8_t *x, float *y,
                   uint16_t *scratch) {
  pai_dataset *ds = &s->sets[sp];
  const int L = s->L, O = s->O, T = ds->n_tracks;
  for (int b = 0; b < n; b++) {
    const pai_draw *d = &draws[b];
    uint8_t *xb = x + (size_t)b * L;
    float *yb = y + (size_t)b * O * T;
    PAI_TRY(pai_dataset_read(ds, d->idx, pai_crop_x0(ds, L) + d->shift,
                             pai_crop_y0(ds, O) + d->shift, L, O, xb, yb, scratch));
    if (!d->rc) continue;
    static const uint8_t comp[5] = {3, 2, 1, 0, 4};
    for (int p = 0, q = L - 1; p <= q; p++, q--) {
      const uint8_t a = comp[xb[p]], z = comp[xb[q]];
      xb[p] = z;
      xb[q] = a;
    }
    for (int p = 0, q = O - 1; p < q; p++, q--)
      for (int k = 0; k < T; k++) {
        const float tmp = yb[(size_t)p * T + k];
        yb[(size_t)p * T + k] = yb[(size_t)q * T + k];
        yb[(size_t)q * T + k] = tmp;
      }
  }
  return 0;
}
