/* shardfile.h - one training shard: an HDF5 file of samples of one chromosome (docs/preprocess.md).
 *
 *   /x       uint8   [N, S_in]      base codes, transcript orientation
 *   /y       f16|f32 [N, S_out, T]  transformed targets, transcript orientation
 *   /pos     int64   [N]            1-based TSS position
 *   /strand  int8    [N]            +1 / -1
 *   /line    int64   [N]            line of the TSS table
 *
 * The writer creates `<final>.tmp`, takes samples in any order, and on commit writes the small
 * datasets, closes the file and renames it to its final name; abort removes the temporary file.
 * So a file under a final name is always complete. */
#ifndef PAI_SHARDFILE_H
#define PAI_SHARDFILE_H

#include <stdint.h>

#include "model/pai.h"

typedef struct {
  const char *chrom;
  int part, n_parts;
  int64_t n_samples, input_length, output_length;
  int n_tracks;
  int y_f16;                      /* 1: /y is float16, 0: float32 */
  int deflate;                    /* 0 (none) .. 9 */
  int chunk_positions;
  const char *const *track_names; /* [n_tracks] */
  const char *const *xforms;      /* [n_tracks] */
  const char *tss_file, *fasta_file, *bigwig_files, *track_table;
  const char *fingerprint;
} pai_shard_meta;

typedef struct pai_shard_writer pai_shard_writer;

int pai_shard_create(pai_shard_writer **w, const char *final_path, const pai_shard_meta *m) PAI_WUR;
/* Sample i: x [S_in] codes, y [S_out * T] (uint16 float16 bits when y_f16, else float). */
int pai_shard_put(pai_shard_writer *w, int64_t i, const uint8_t *x, const void *y, int64_t pos,
                  int strand, int64_t line) PAI_WUR;
/* Finishes the file and renames it into place; the writer is freed either way. */
int pai_shard_commit(pai_shard_writer *w) PAI_WUR;
/* Drops the temporary file and frees the writer (NULL is allowed). */
void pai_shard_abort(pai_shard_writer *w);

/* 1 when path is a readable, complete shard with this fingerprint and these shapes; 0 otherwise
 * (missing, unreadable, or built from other inputs). Logs nothing. */
int pai_shard_is_current(const char *path, const char *fingerprint, int64_t n_samples,
                         int64_t input_length, int64_t output_length, int n_tracks);

#endif
