/* predict.h - head outputs for raw sequences (`pmodel predict`).
 *
 * Input: a text file with one sequence per line, or FASTA records ('>' headers, sequence lines
 * concatenated); every sequence must be exactly input_length long (any letters; see seq.h).
 * Output: HDF5 with one float32 dataset per head, /head_{j} [n_seqs, output_length, T_j], in the
 * order of the input; written to a temporary name and renamed when complete. */
#ifndef PAI_PREDICT_H
#define PAI_PREDICT_H

#include "model/backend.h"
#include "model/pai.h"

typedef struct {
  const char *model_folder, *seq_file, *out;
  int batch_size;
  pai_backend backend;
} pai_predict_opts;

int pai_predict_run(const pai_predict_opts *o) PAI_WUR;

#endif
