/* loader_dump - test driver: the batches ptrain's loader would serve, to HDF5.
 *
 *   loader_dump --folders H [F ...] --out O.h5 --input_length L --output_length O
 *       --batch_size B --steps K [--seed S] [--chroms c1 c2 ...] [--no_augment]
 *
 * Opens one dataset per folder (species j = folder j; --chroms restricts the FIRST folder, as
 * ptrain's --train_chroms does), plans steps 0..K-1 and reads every draw. O.h5: /species int64
 * [K]; /idx, /shift, /rc int64 [K, B] (dataset index, crop shift, reverse-complemented);
 * /x uint8 [K, B, L]; /y float32 [K, B, O, T_max] (tracks beyond the species' T are 0); per
 * folder j the shards in dataset order: /folder_<j>_first and /folder_<j>_n int64 (first dataset
 * index, sample count) and root attribute folder_<j>_files (their paths). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/h5util.h"
#include "model/loader.h"
#include "model/options.h"
#include "mpi/dist.h"
#include "mpi/log.h"

static int write_ds(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                    const hsize_t *dims, const void *buf) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t r = d >= 0 ? H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
  if (d >= 0) H5Dclose(d);
  H5Sclose(s);
  if (r < 0) PAI_ERR("cannot write %s", name);
  return r < 0 ? PAI_ERR_IO : 0;
}

int main(int argc, char **argv) {
  pai_dist dist;
  if (pai_dist_init(&dist, &argc, &argv) < 0) return 1;
  pai_h5_quiet();
  pai_str_list folders = {0}, chroms = {0};
  char out[PAI_PATH_LEN] = "";
  int L = 0, O = 0, B = 0, K = 0, no_aug = 0;
  int64_t seed = 0;
  pai_opt opts[] = {
      {"folders", PAI_OPT_STR_LIST, &folders, "ppreprocess folders, one per species", 1, 0},
      {"out", PAI_OPT_STR, out, "output HDF5", 1, 0},
      {"input_length", PAI_OPT_INT, &L, "model input length", 1, 0},
      {"output_length", PAI_OPT_INT, &O, "model output length", 1, 0},
      {"batch_size", PAI_OPT_INT, &B, "global batch", 1, 0},
      {"steps", PAI_OPT_INT, &K, "steps to plan", 1, 0},
      {"seed", PAI_OPT_I64, &seed, "sampler seed", 0, 0},
      {"chroms", PAI_OPT_STR_LIST, &chroms, "chromosomes of the first folder (default all)", 0, 0},
      {"no_augment", PAI_OPT_FLAG, &no_aug, "centred crops, no reverse complement", 0, 0},
  };
  int rc = pai_opts_parse(opts, sizeof opts / sizeof opts[0], "loader_dump", "loader_dump",
                          "Test driver: planned training batches.", argc, argv);
  pai_dataset sets[PAI_MAX_HEADS] = {{0}};
  int n = 0, t_max = 0;
  pai_sampler smp = {0};
  int64_t *species = NULL, *idx = NULL, *shift = NULL, *rcv = NULL;
  uint8_t *x = NULL;
  float *y = NULL;
  uint16_t *scratch = NULL;
  pai_draw *draws = NULL;
  hid_t f = -1;
  if (rc != 0) goto done;
  for (n = 0; n < folders.n && rc == 0; n++) {
    rc = pai_dataset_open(&sets[n], folders.v[n], n == 0 && chroms.n ? chroms.v : NULL,
                          n == 0 && chroms.n ? chroms.n : -1, L, O);
    if (rc == 0 && sets[n].n_tracks > t_max) t_max = sets[n].n_tracks;
  }
  if (rc < 0) goto done;
  PAI_CHECK(pai_sampler_init(&smp, sets, n, B, (uint64_t)seed, L, O));
  species = calloc((size_t)K, sizeof *species);
  idx = calloc((size_t)K * B, sizeof *idx);
  shift = calloc((size_t)K * B, sizeof *shift);
  rcv = calloc((size_t)K * B, sizeof *rcv);
  x = calloc((size_t)K * B * L, 1);
  y = calloc((size_t)K * B * O * t_max, sizeof *y);
  float *ys = malloc((size_t)B * O * t_max * sizeof *ys);
  scratch = malloc((size_t)O * t_max * sizeof *scratch);
  draws = malloc((size_t)B * sizeof *draws);
  if (!species || !idx || !shift || !rcv || !x || !y || !ys || !scratch || !draws) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  for (int k = 0; k < K; k++) {
    int sp = 0;
    PAI_CHECK(pai_sampler_plan(&smp, k, !no_aug, &sp, draws));
    PAI_CHECK(pai_read_draws(&smp, sp, draws, B, x + (size_t)k * B * L, ys, scratch));
    species[k] = sp;
    const int T = sets[sp].n_tracks;
    for (int b = 0; b < B; b++) {
      idx[(size_t)k * B + b] = draws[b].idx;
      shift[(size_t)k * B + b] = draws[b].shift;
      rcv[(size_t)k * B + b] = draws[b].rc;
      for (int o = 0; o < O; o++)
        memcpy(y + (((size_t)k * B + b) * O + o) * t_max, ys + ((size_t)b * O + o) * T,
               (size_t)T * sizeof *y);
    }
  }
  free(ys);
  H5_CHECK(f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", out);
  {
    hsize_t d1[1] = {(hsize_t)K}, d2[2] = {(hsize_t)K, (hsize_t)B},
            d3[3] = {(hsize_t)K, (hsize_t)B, (hsize_t)L},
            d4[4] = {(hsize_t)K, (hsize_t)B, (hsize_t)O, (hsize_t)t_max};
    PAI_CHECK(write_ds(f, "/species", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, species));
    PAI_CHECK(write_ds(f, "/idx", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, d2, idx));
    PAI_CHECK(write_ds(f, "/shift", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, d2, shift));
    PAI_CHECK(write_ds(f, "/rc", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, d2, rcv));
    PAI_CHECK(write_ds(f, "/x", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, d3, x));
    PAI_CHECK(write_ds(f, "/y", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, d4, y));
  }
  for (int j = 0; j < n; j++) {
    char name[64];
    const int ns = sets[j].n_shards;
    int64_t *first = malloc((size_t)ns * sizeof *first), *cnt = malloc((size_t)ns * sizeof *cnt);
    const char **files = malloc((size_t)ns * sizeof *files);
    if (!first || !cnt || !files) {
      free(first), free(cnt), free(files);
      rc = PAI_ERR_NOMEM;
      goto fail;
    }
    for (int s = 0; s < ns; s++) {
      first[s] = sets[j].shards[s].first;
      cnt[s] = sets[j].shards[s].n;
      files[s] = sets[j].shards[s].path;
    }
    hsize_t dn[1] = {(hsize_t)ns};
    snprintf(name, sizeof name, "/folder_%d_first", j);
    rc = write_ds(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dn, first);
    snprintf(name, sizeof name, "/folder_%d_n", j);
    if (rc == 0) rc = write_ds(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dn, cnt);
    snprintf(name, sizeof name, "folder_%d_files", j);
    if (rc == 0) rc = pai_h5_write_strs(f, out, name, files, ns, 0);
    free(first), free(cnt), free(files);
    if (rc < 0) goto fail;
  }
fail:
  if (f >= 0 && H5Fclose(f) < 0 && rc == 0) rc = PAI_ERR_IO;
done:
  for (int j = 0; j < n; j++) pai_dataset_close(&sets[j]);
  pai_sampler_free(&smp);
  free(species), free(idx), free(shift), free(rcv), free(x), free(y), free(scratch), free(draws);
  pai_dist_finalize(&dist);
  return rc == 1 ? 0 : pai_exit_code(rc);
}
