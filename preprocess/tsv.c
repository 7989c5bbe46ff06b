/* tsv.c - see tsv.h. */
#include "preprocess/tsv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/log.h"

int pai_read_file(const char *path, const char *what, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    PAI_ERR("cannot open %s %s: %s", what, path, strerror(errno));
    return PAI_ERR_IO;
  }
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      char *nb = realloc(b, 2 * cap + 1);
      if (!nb) {
        free(b);
        b = NULL;
        break;
      }
      b = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (!b) return PAI_ERR_NOMEM;
  if (bad) {
    PAI_ERR("read error in %s %s", what, path);
    free(b);
    return PAI_ERR_IO;
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return 0;
}

/* Cuts s at the end of its line; returns the next line's start (NULL at the end). */
static char *cut_line(char *s) {
  char *nl = strchr(s, '\n');
  char *next = nl ? nl + 1 : NULL;
  char *end = nl ? nl : s + strlen(s);
  while (end > s && end[-1] == '\r') end--;
  *end = 0;
  return next;
}

int pai_split_tabs(char *s, char **out, int max) {
  int n = 0;
  for (char *p = s;; p++) {
    if (n < max) out[n] = p;
    n++;
    p = strchr(p, '\t');
    if (!p) break;
    *p = 0;
  }
  return n;
}

int pai_tsv_parse(pai_tsv *t, const char *path, char *text) {
  memset(t, 0, sizeof *t);
  snprintf(t->path, sizeof t->path, "%s", path);
  t->text = text;
  /* count lines for an upper bound on rows */
  size_t n_lines = 1;
  for (const char *p = text; *p; p++) n_lines += *p == '\n';
  char *line = text, *next = cut_line(line);
  long lineno = 1;
  if (!line[0] && !next) {
    PAI_ERR("%s: empty file (expected a header line)", path);
    return PAI_ERR_INPUT;
  }
  t->n_cols = 1;
  for (const char *p = line; *p; p++) t->n_cols += *p == '\t';
  t->names = calloc((size_t)t->n_cols, sizeof *t->names);
  t->fields = calloc(n_lines * (size_t)t->n_cols, sizeof *t->fields);
  t->lineno = calloc(n_lines, sizeof *t->lineno);
  if (!t->names || !t->fields || !t->lineno) return PAI_ERR_NOMEM;
  pai_split_tabs(line, t->names, t->n_cols);
  if (t->names[0][0] == '#') t->names[0]++;
  for (line = next; line; line = next) {
    next = cut_line(line);
    lineno++;
    if (!line[0]) continue;
    char **row = t->fields + (size_t)t->n_rows * t->n_cols;
    int nf = pai_split_tabs(line, row, t->n_cols);
    if (nf != t->n_cols) {
      PAI_ERR("%s:%ld: %d tab-separated fields, but the header has %d", path, lineno, nf,
              t->n_cols);
      return PAI_ERR_INPUT;
    }
    t->lineno[t->n_rows++] = lineno;
  }
  return 0;
}

void pai_tsv_free(pai_tsv *t) {
  free(t->text);
  free(t->names);
  free(t->fields);
  free(t->lineno);
  memset(t, 0, sizeof *t);
}

int pai_tsv_col(const pai_tsv *t, const char *name) {
  for (int c = 0; c < t->n_cols; c++)
    if (!strcmp(t->names[c], name)) return c;
  return -1;
}

int pai_parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno) return -1;
  *v = x;
  return 0;
}

int pai_parse_strand(const char *s) {
  if (!strcmp(s, "1") || !strcmp(s, "+1") || !strcmp(s, "+")) return 1;
  if (!strcmp(s, "-1") || !strcmp(s, "-")) return -1;
  return 0;
}
