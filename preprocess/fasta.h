/* fasta.h - genome access through htslib's faidx (plain or bgzip-compressed FASTA).
 *
 * The .fai (and .gzi for bgzip) index is built next to the FASTA when missing; if it cannot be
 * written there, opening fails with a message saying so. Windows may run off either end of a
 * chromosome: those positions read as 'N'. Positions are 0-based, half-open. */
#ifndef PAI_FASTA_H
#define PAI_FASTA_H

#include <stdint.h>

#include "model/pai.h"

typedef struct pai_fasta pai_fasta;

int pai_fasta_open(pai_fasta **fa, const char *path) PAI_WUR;
void pai_fasta_close(pai_fasta *fa);

/* Length of chrom, or -1 when the FASTA has no such sequence. */
int64_t pai_fasta_chrom_len(pai_fasta *fa, const char *chrom);
int pai_fasta_n_chroms(const pai_fasta *fa);
const char *pai_fasta_chrom_name(const pai_fasta *fa, int i);   /* in index order */

/* Copies chrom[start, start + len) into out (len chars, no terminator), 'N' outside the
 * chromosome. The chromosome must exist (check with pai_fasta_chrom_len). */
int pai_fasta_window(pai_fasta *fa, const char *chrom, int64_t start, int64_t len,
                     char *out) PAI_WUR;

#endif
