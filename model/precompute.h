/* precompute.h - the genome-wide promoter SNV table, the `pprecompute` command (REFERENCE.md
 * section 6, docs/precompute.md).
 *
 * Every SNV within `flank` bp of every TSS row, scored on the TSS's strand by each model with
 * the cone algorithm (model/cone.h: exactly the `promoterai` raw score, at a fraction of the
 * work). Work is split into sites, the distinct (chromosome, TSS position, strand) of the table,
 * which ranks take one at a time from a shared counter (mpi/counter.h). Each rank appends one
 * checksummed record per finished site to OUT.parts/part-<rank>.bin and syncs it, so a rerun of
 * the same command skips finished sites; rank 0 then merges the records into the final table
 * (bgzip + tabix), written under a temporary name and renamed, and removes OUT.parts. */
#ifndef PAI_PRECOMPUTE_H
#define PAI_PRECOMPUTE_H

#include "model/backend.h"
#include "model/options.h"
#include "mpi/dist.h"

typedef struct {
  const char *tss_file, *fasta_file, *out;
  const pai_str_list *models;   /* model folders, in column order */
  int flank;                    /* bp on each side of the TSS */
  int batch_size;               /* alternates per cone batch */
  int raw;                      /* 1: also raw score columns */
  int overwrite;                /* 1: replace an existing OUT */
  int threads;                  /* for bgzip compression in the merge */
  pai_backend backend;          /* cpu, or cuda: one GPU per rank (gpu_index = node-local rank) */
} pai_precompute_opts;

int pai_precompute_run(const pai_dist *d, const pai_precompute_opts *o) PAI_WUR;

#endif
