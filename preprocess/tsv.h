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

/* Reads a whole file into *buf (malloc'd, NUL-terminated) and *len. The file may be plain text,
 * gzip or bgzip (decompressed transparently); a directory, a file that cannot be opened and
 * truncated or corrupt compressed data are errors naming `what` and the path. */
int pai_read_file(const char *path, const char *what, char **buf, size_t *len) PAI_WUR;

/* Number of '\n' in the file's (decompressed) content, or -1 when it is not a regular file (a
 * pipe is read once only) or cannot be opened or read. Logs nothing; meant for progress lines. */
long pai_count_lines(const char *path);

/* Streaming line reader over a plain, gzip or bgzip file (htslib BGZF), for tables read row by
 * row. pai_text_open returns NULL after logging one error line naming `what` and the path
 * ("<what> <path>: is a directory", "cannot open <what> <path>: <reason>", a bgzip file without
 * its end-of-file block), with *status set. */
struct BGZF;
struct BGZF *pai_text_open_at(const char *path, const char *what, int *status, const char *where);
/* the log line names the calling function, as PAI_ERR does */
#define pai_text_open(path, what, status) pai_text_open_at(path, what, status, __func__)
/* Reads the next line into *line (realloc'd, NUL-terminated, without its '\n'; a '\r' before it
 * may remain). Returns its length, -1 at the end of the file, or -2 when the file could not be
 * read or its compressed data are truncated or corrupt (not logged: the caller knows the line). */
long pai_text_getline(struct BGZF *f, char **line, size_t *cap);
/* 1 when the file is gzip or bgzip compressed. */
int pai_text_compressed(const struct BGZF *f);
/* Logs pai_text_getline's -2 for path, whose last good line was lineno (0: none), as `where`. */
void pai_text_read_error_at(const struct BGZF *f, const char *path, long lineno,
                            const char *where);
#define pai_text_read_error(f, path, lineno) pai_text_read_error_at(f, path, lineno, __func__)
void pai_text_close(struct BGZF *f);

/* htslib reports failures with its own "[E::...]" lines; callers that name the file in one line
 * of their own silence it around the call: old = pai_hts_quiet(); ...; pai_hts_restore(old). */
int pai_hts_quiet(void);
void pai_hts_restore(int level);

/* 1 when a file name ends in ".gz", in any case (the name of a bgzip output). */
int pai_name_is_gz(const char *path);

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
