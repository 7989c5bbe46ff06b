/* vartable.h - the scorer's variant table: a TSV with a header line naming at least the columns
 * chrom, pos, ref, alt, strand (any order; other columns are kept as they are).
 * pos is 1-based, as in the published format and VCF; strand is 1, -1, + or -.
 * Rows are read one at a time, so a table of any length is scored in bounded memory. The file may
 * be plain text, gzip or bgzip (decompressed as it is read). */
#ifndef PAI_VARTABLE_H
#define PAI_VARTABLE_H

#include <stdint.h>
#include <stdio.h>

#include "model/pai.h"

enum { PAI_COL_CHROM, PAI_COL_POS, PAI_COL_REF, PAI_COL_ALT, PAI_COL_STRAND, PAI_N_REQ_COLS };

struct BGZF;

typedef struct {
  struct BGZF *f;             /* htslib reader: plain, gzip or bgzip */
  char path[PAI_PATH_LEN];
  char *header;               /* the header line, without its newline */
  int n_cols;
  int col[PAI_N_REQ_COLS];    /* index of each required column */
  int score_col, raw_col;     /* index of an existing `score` / `raw` column, or -1 */
  long lineno;                /* line number of the last line read (1 = header) */
  char *line;                 /* line buffer */
  size_t line_cap;
} pai_vartable;

typedef struct {
  char *text;                 /* the row as read, without newline (owned) */
  long lineno;
  char *fields;               /* a copy of text split at tabs (owned); the pointers below point in */
  const char *chrom, *ref, *alt;
  int64_t pos;                /* 1-based */
  int strand;                 /* +1 or -1 */
} pai_variant;

/* Opens the table and reads the header; a missing file or column is an error naming both. */
int pai_vartable_open(pai_vartable *vt, const char *path) PAI_WUR;
/* Reads the next non-blank row into v (freeing what v held). Returns 1 for a row, 0 at the end
 * of the file, or a negative status for a malformed row (logged with file, line and field). */
int pai_vartable_next(pai_vartable *vt, pai_variant *v) PAI_WUR;
void pai_variant_free(pai_variant *v);
void pai_vartable_close(pai_vartable *vt);

#endif
