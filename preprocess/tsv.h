/* tsv.h - small tab-separated tables held in memory (TSS tables, track tables).
 *
 * The first line is the header (a leading '#' on it is ignored, as in "#chrom"); blank lines are
 * skipped; "\r\n" endings are accepted. Every row must have as many fields as the header. The
 * whole text is kept (split in place), so a table can be read once on rank 0 and its bytes
 * broadcast and parsed identically on the other ranks. */
#ifndef PAI_TSV_H
#define PAI_TSV_H

#include <stddef.h>
#include <stdint.h>

#include "model/pai.h"

typedef struct {
  char path[PAI_PATH_LEN];   /* for messages */
  char *text;                /* owned; fields point into it */
  int n_cols, n_rows;
  char **names;              /* [n_cols] header names */
  char **fields;             /* [n_rows * n_cols] */
  long *lineno;              /* [n_rows] 1-based line numbers in the file */
} pai_tsv;

/* Reads a whole file into *buf (malloc'd, NUL-terminated) and *len. */
int pai_read_file(const char *path, const char *what, char **buf, size_t *len) PAI_WUR;

/* Parses text (takes ownership of the malloc'd buffer, even on failure). */
int pai_tsv_parse(pai_tsv *t, const char *path, char *text) PAI_WUR;
void pai_tsv_free(pai_tsv *t);

/* Index of the column named `name`, or -1. */
int pai_tsv_col(const pai_tsv *t, const char *name);
static inline const char *pai_tsv_get(const pai_tsv *t, int row, int col) {
  return t->fields[(size_t)row * t->n_cols + col];
}

/* Splits s at tabs in place into out[0..max); returns the field count (fields beyond max are
 * counted, not stored). */
int pai_split_tabs(char *s, char **out, int max);

/* Field parsers shared by every table reader: 0 on success, -1 when s is not of the form. */
int pai_parse_i64(const char *s, int64_t *v);
/* "1", "+1", "+" -> +1; "-1", "-" -> -1; returns 0 for anything else. */
int pai_parse_strand(const char *s);

#endif
