/* loader.h - training batches from preprocess shards (docs/preprocess.md, REFERENCE.md 5).
 *
 * A dataset is one species: the shards that one ppreprocess folder's manifest lists, restricted
 * to a set of chromosomes. Shards are opened once and read by hyperslab: a draw reads only the
 * model's window (the shifted crop of L bases and O positions), never the whole stored sample.
 *
 * The sampler makes every batch a pure function of (seed, step), so a resumed run needs only the
 * step number to continue exactly where it stopped:
 *   - the species of step t is drawn with probability proportional to its number of batches
 *     (floor(samples / global batch));
 *   - each species walks through its samples in passes, each pass a fresh permutation, a batch
 *     being the next global_B samples (a pass's remainder smaller than a batch is skipped);
 *   - each sample's shift s = trunc(truncated_normal(std = floor(m / 4))) (redrawn beyond 2 std),
 *     m = min(S_in - L, S_out - O), and with probability 0.25 reverse-complemented (codes
 *     reversed and complemented, targets reversed in position; tracks not swapped).
 * Rank r of R reads samples [r B / R, (r + 1) B / R) of each global batch of B. */
#ifndef PAI_LOADER_H
#define PAI_LOADER_H

#include <stdint.h>

#include "model/pai.h"
#include "model/rng.h"

typedef struct {
  char path[PAI_PATH_LEN];
  char chrom[PAI_NAME_LEN];
  int64_t n;             /* samples in the shard */
  int64_t first;         /* dataset index of its first sample */
  int64_t file, x, y;    /* HDF5 handles (hid_t), -1 while closed */
} pai_shard_ref;

typedef struct {
  char folder[PAI_PATH_LEN];
  int n_tracks;
  int64_t s_in, s_out;   /* stored lengths */
  int y_f16;             /* /y is float16 (else float32) */
  int n_shards;
  pai_shard_ref *shards;
  int64_t n_samples;
  int64_t f16_type;      /* HDF5 float16 memory type (hid_t) */
} pai_dataset;

/* Opens the shards of folder/manifest.tsv whose chromosome is in chroms (n_chroms < 0: all),
 * checking each file's presence, shapes and attributes against the manifest and the others.
 * L and O are the model's lengths: a shard stored shorter than them is an error. A dataset with
 * no sample is returned with n_samples 0 (the caller decides whether that is an error). */
int pai_dataset_open(pai_dataset *ds, const char *folder, char (*chroms)[PAI_NAME_LEN],
                     int n_chroms, int L, int O) PAI_WUR;
void pai_dataset_close(pai_dataset *ds);

/* Sample `idx` (dataset order): x (L) codes from stored position x0, y (O x T) from y0. */
int pai_dataset_read(pai_dataset *ds, int64_t idx, int64_t x0, int64_t y0, int L, int O,
                     uint8_t *x, float *y, uint16_t *scratch) PAI_WUR;

/* One sample of a planned batch. */
typedef struct {
  int64_t idx;           /* dataset index */
  int shift;             /* crop shift */
  int rc;                /* reverse-complemented */
} pai_draw;

typedef struct {
  pai_dataset *sets;     /* [n_sets], species j trains head j */
  int n_sets;
  int global_batch;
  uint64_t seed;
  int L, O;
  int64_t *n_batches;    /* [n_sets] batches per pass */
  int64_t total_batches;
  /* replay state: batches drawn per species before step `at` */
  int64_t at;
  int64_t *count;
  int64_t **perm;        /* [n_sets] the permutation of pass perm_pass[s] */
  int64_t *perm_pass;
} pai_sampler;

int pai_sampler_init(pai_sampler *s, pai_dataset *sets, int n_sets, int global_batch,
                     uint64_t seed, int L, int O) PAI_WUR;
void pai_sampler_free(pai_sampler *s);

/* The batch of `step`: its species and global_batch draws (with augmentation when `augment`). */
int pai_sampler_plan(pai_sampler *s, int64_t step, int augment, int *species,
                     pai_draw *draws) PAI_WUR;

/* Reads draws[0..n) of species `sp`: x (n, L), y (n, O, T), applying shift and RC. */
int pai_read_draws(pai_sampler *s, int sp, const pai_draw *draws, int n, uint8_t *x, float *y,
                   uint16_t *scratch) PAI_WUR;

/* Centre crop without shift: the offsets keeping the TSS at the same index as in storage. */
static inline int64_t pai_crop_x0(const pai_dataset *ds, int L) { return ds->s_in / 2 - L / 2; }
static inline int64_t pai_crop_y0(const pai_dataset *ds, int O) { return ds->s_out / 2 - O / 2; }

#endif
