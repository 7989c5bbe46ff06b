/* score.h - variant scoring, the `promoterai` command (REFERENCE.md section 3).
 *
 * For each row: window = genome[p - L/2, p + L/2) with p = pos - 1 ('N' beyond a chromosome end);
 * ref must match window[L/2, L/2 + len(ref)); alt sequence = window[0, L/2) + alt +
 * window[L/2 + len(ref), L), right-padded with 'N' or truncated to L; strand -1 reverse-
 * complements both; raw = mean over the O outputs and T_0 tracks of head0(alt) - head0(ref);
 * score = tanh(round(raw, 4)), printed with 4 decimals.
 * Rows that cannot be scored keep their place with an empty score and a warning. */
#ifndef PAI_SCORE_H
#define PAI_SCORE_H

#include <stdint.h>

#include "model/backend.h"
#include "model/pai.h"
#include "model/vartable.h"
#include "preprocess/fasta.h"

typedef struct {
  const char *model_folder, *var_file, *fasta_file;
  const char *output;     /* "" or NULL: named after the inputs, see pai_score_output_path */
  int input_length;
  int batch_size;         /* variants per forward batch (2 sequences each) */
  int raw;                /* 1: also write a `raw` column (the unrounded mean difference) */
  pai_backend backend;
} pai_score_opts;

int pai_score_run(const pai_score_opts *o) PAI_WUR;

/* <dir of var_file>/<stem of var_file>.<name of model_folder><suffix of var_file>, with the
 * published pathlib semantics: "runs/vars.tsv" + "models/hg38/" -> "runs/vars.hg38.tsv". */
void pai_score_output_path(const char *var_file, const char *model_folder, char *out,
                           size_t out_len);

/* The twin sequences of v as above: codes (2, L), ref then alt, strand applied; ref_win and
 * alt_win are (L) scratch. *why is NULL when v can be scored, else the reason it cannot. */
int pai_variant_codes(pai_fasta *fa, const pai_variant *v, int L, char *ref_win, char *alt_win,
                      uint8_t *codes, const char **why) PAI_WUR;

/* score = tanh(round(raw, 4)): numpy's round (half to even at the 4th decimal). */
double pai_score_from_raw(double raw);

#endif
