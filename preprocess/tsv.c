/* tsv.c - see tsv.h. */
#include "preprocess/tsv.h"

#include <errno.h>
#include <htslib/bgzf.h>
#include <htslib/hts_log.h>
#include <htslib/kstring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "mpi/log.h"

int pai_hts_quiet(void) {
  const int old = (int)hts_get_log_level();
  hts_set_log_level(HTS_LOG_OFF);
  return old;
}

void pai_hts_restore(int level) { hts_set_log_level((enum htsLogLevel)level); }

int pai_name_is_gz(const char *path) {
  const size_t n = strlen(path);
  return n > 3 && !strcasecmp(path + n - 3, ".gz");
}

/* pai_text_open, logging as `where`. */
static BGZF *text_open(const char *path, const char *what, int *status, const char *where) {
  *status = 0;
  struct stat st;
  if (stat(path, &st) != 0) {
    pai_log('E', where, "cannot open %s %s: %s", what, path, strerror(errno));
    *status = PAI_ERR_IO;
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) {
    pai_log('E', where, "%s %s: is a directory (a file is expected)", what, path);
    *status = PAI_ERR_IO;
    return NULL;
  }
  const int old = pai_hts_quiet();
  errno = 0;
  BGZF *f = bgzf_open(path, "r");
  const int err = errno;
  int eof_block = 1;
  /* bgzip writes an empty end-of-file block: without it the file was cut short (between two
   * blocks, where nothing else would notice). Plain gzip has no such block. */
  if (f && f->is_compressed && !f->is_gzip) eof_block = bgzf_check_EOF(f) != 0;
  pai_hts_restore(old);
  if (!f) {
    pai_log('E', where, "cannot open %s %s: %s", what, path,
            err ? strerror(err) : "not a readable plain, gzip or bgzip file");
    *status = PAI_ERR_IO;
    return NULL;
  }
  if (!eof_block) {
    pai_log('E', where, "%s %s: truncated bgzip file (its end-of-file block is missing)", what,
            path);
    bgzf_close(f);
    *status = PAI_ERR_INPUT;
    return NULL;
  }
  return f;
}

BGZF *pai_text_open_at(const char *path, const char *what, int *status, const char *where) {
  return text_open(path, what, status, where);
}

long pai_text_getline(BGZF *f, char **line, size_t *cap) {
  kstring_t k = {0, *cap, *line};
  const int old = pai_hts_quiet();
  int n = bgzf_getline(f, '\n', &k);
  pai_hts_restore(old);
  *line = k.s;
  *cap = k.m;
  /* bgzf_getline hands out the part of a line read before a decompression error as a line */
  if (f->errcode) return -2;
  if (n == -1) return -1;
  if (n < 0) return -2;
  return (long)k.l;
}

int pai_text_compressed(const BGZF *f) { return f->is_compressed; }

void pai_text_read_error_at(const BGZF *f, const char *path, long lineno, const char *where) {
  if (!f->is_compressed)
    pai_log('E', where, "%s: read error after line %ld", path, lineno);
  else if (lineno)
    pai_log('E', where, "%s: truncated or corrupt compressed data after line %ld", path, lineno);
  else
    pai_log('E', where, "%s: truncated or corrupt compressed data (not even the first line "
            "could be read)", path);
}

void pai_text_close(BGZF *f) {
  if (!f) return;
  const int old = pai_hts_quiet();
  bgzf_close(f);
  pai_hts_restore(old);
}

/* Reads the rest of f into a malloc'd, NUL-terminated buffer: 0, PAI_ERR_NOMEM, or -2 for a
 * read or decompression error. */
static int read_all(BGZF *f, char **buf, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  if (!b) return PAI_ERR_NOMEM;
  const int old = pai_hts_quiet();
  ssize_t got;
  while ((got = bgzf_read(f, b + n, cap - n)) > 0) {
    n += (size_t)got;
    if (n == cap) {
      char *nb = realloc(b, 2 * cap + 1);
      if (!nb) break;
      b = nb;
      cap *= 2;
    }
  }
  pai_hts_restore(old);
  if (n == cap) {
    free(b);
    return PAI_ERR_NOMEM;
  }
  if (got < 0 || f->errcode) {
    free(b);
    *len = n;
    return -2;
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return 0;
}

int pai_read_file(const char *path, const char *what, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  int rc;
  BGZF *f = text_open(path, what, &rc, __func__);
  if (!f) return rc;
  size_t n = 0;
  rc = read_all(f, buf, &n);
  if (rc == -2) {
    if (pai_text_compressed(f))
      PAI_ERR("cannot read %s %s: truncated or corrupt %s data (after %zu bytes of text)", what,
              path, f->is_gzip ? "gzip" : "bgzip", n);
    else
      PAI_ERR("read error in %s %s: %s", what, path, strerror(errno ? errno : EIO));
    rc = PAI_ERR_IO;
  }
  pai_text_close(f);
  if (rc == 0) *len = n;
  return rc;
}

long pai_count_lines(const char *path) {
  struct stat st;   /* a pipe or FIFO (/dev/stdin) can be read once only: it is not counted */
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  const int old = pai_hts_quiet();
  BGZF *f = bgzf_open(path, "r");
  long n = -1;
  if (f) {
    char *b = malloc(1 << 16);
    ssize_t got = -1;
    if (b) {
      n = 0;
      while ((got = bgzf_read(f, b, 1 << 16)) > 0)
        for (const char *p = b, *e = b + got; (p = memchr(p, '\n', (size_t)(e - p))); p++) n++;
    }
    if (got < 0 || f->errcode) n = -1;
    free(b);
    bgzf_close(f);
  }
  pai_hts_restore(old);
  return n;
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
