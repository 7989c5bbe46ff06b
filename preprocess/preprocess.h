/* preprocess.h - `ppreprocess`: TSS table + genome + bigWig tracks -> HDF5 training shards,
 * chromosomes dealt across MPI ranks (docs/preprocess.md, REFERENCE.md section 4). */
#ifndef PAI_PREPROCESS_H
#define PAI_PREPROCESS_H

#include "model/options.h"
#include "model/pai.h"
#include "mpi/dist.h"

typedef struct {
  const char *h5_folder, *tss_file, *fasta_file, *bigwig_files;
  int input_length, output_length;   /* S_in, S_out: even, > 0 */
  const pai_str_list *chroms;        /* n = 0: every chromosome of the TSS table */
  const char *y_dtype;               /* "float16" or "float32" */
  int deflate;                       /* 0..9 */
  int chunk_positions;               /* > 0 */
  int force;                         /* rebuild shards that are up to date */
} pai_prep_opts;

/* Collective: every rank calls it and gets the same status (0, or the worst rank's error). */
int pai_preprocess_run(const pai_dist *d, const pai_prep_opts *o) PAI_WUR;

#endif
