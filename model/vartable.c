/* vartable.c - see vartable.h. */
#include "model/vartable.h"

#include <stdlib.h>
#include <string.h>

#include "mpi/log.h"
#include "preprocess/tsv.h"

static const char *const req_names[PAI_N_REQ_COLS] = {"chrom", "pos", "ref", "alt", "strand"};

/* Reads one line without its "\n" or "\r\n"; returns its length, -1 at EOF, or -2 for a read or
 * decompression error. */
static long read_line(pai_vartable *vt) {
  long n = pai_text_getline(vt->f, &vt->line, &vt->line_cap);
  if (n < 0) return n;
  vt->lineno++;
  while (n > 0 && (vt->line[n - 1] == '\n' || vt->line[n - 1] == '\r')) vt->line[--n] = 0;
  return n;
}

int pai_vartable_open(pai_vartable *vt, const char *path) {
  memset(vt, 0, sizeof *vt);
  snprintf(vt->path, sizeof vt->path, "%s", path);
  int rc = 0;
  vt->f = pai_text_open(path, "variant file", &rc);
  if (!vt->f) return rc;
  const long n = read_line(vt);
  if (n == -2) {
    pai_text_read_error(vt->f, vt->path, vt->lineno);
    pai_vartable_close(vt);
    return PAI_ERR_IO;
  }
  if (n < 0) {
    PAI_ERR("%s: empty file (expected a header line with chrom, pos, ref, alt, strand)", path);
    pai_vartable_close(vt);
    return PAI_ERR_INPUT;
  }
  vt->header = strdup(vt->line);
  char *copy = strdup(vt->line);
  char *fields[1024];
  vt->n_cols = pai_split_tabs(copy, fields, 1024);
  for (int r = 0; r < PAI_N_REQ_COLS && rc == 0; r++) {
    vt->col[r] = -1;
    for (int c = 0; c < vt->n_cols && c < 1024; c++) {
      const char *name = fields[c];
      if (c == 0 && name[0] == '#') name++;   /* tolerate a VCF-style "#chrom" */
      if (!strcmp(name, req_names[r])) {
        if (vt->col[r] >= 0) {
          PAI_ERR("%s:1: column '%s' appears twice in the header", path, req_names[r]);
          rc = PAI_ERR_INPUT;
        }
        vt->col[r] = c;
      }
    }
    if (vt->col[r] < 0 && rc == 0) {
      PAI_ERR("%s:1: missing column '%s' (the header must name chrom, pos, ref, alt, strand, "
              "tab-separated)", path, req_names[r]);
      rc = PAI_ERR_INPUT;
    }
  }
  vt->score_col = vt->raw_col = -1;
  for (int c = 0; c < vt->n_cols && c < 1024; c++) {
    if (!strcmp(fields[c], "score")) vt->score_col = c;
    if (!strcmp(fields[c], "raw")) vt->raw_col = c;
  }
  free(copy);
  if (rc) pai_vartable_close(vt);
  return rc;
}

void pai_variant_free(pai_variant *v) {
  free(v->text);
  free(v->fields);
  memset(v, 0, sizeof *v);
}

int pai_vartable_next(pai_vartable *vt, pai_variant *v) {
  pai_variant_free(v);
  long n;
  do {
    n = read_line(vt);
    if (n == -2) {
      pai_text_read_error(vt->f, vt->path, vt->lineno);
      return PAI_ERR_IO;
    }
    if (n < 0) return 0;
  } while (n == 0);   /* blank lines are not rows */
  v->text = strdup(vt->line);
  v->fields = strdup(vt->line);
  v->lineno = vt->lineno;
  if (!v->text || !v->fields) return PAI_ERR_NOMEM;
  char *fields[1024];
  int nf = pai_split_tabs(v->fields, fields, 1024);
  if (nf != vt->n_cols) {
    PAI_ERR("%s:%ld: %d tab-separated fields, but the header has %d", vt->path, vt->lineno, nf,
            vt->n_cols);
    return PAI_ERR_INPUT;
  }
  v->chrom = fields[vt->col[PAI_COL_CHROM]];
  v->ref = fields[vt->col[PAI_COL_REF]];
  v->alt = fields[vt->col[PAI_COL_ALT]];
  if (!v->chrom[0]) {
    PAI_ERR("%s:%ld: field 'chrom' is empty", vt->path, vt->lineno);
    return PAI_ERR_INPUT;
  }
  const char *pos = fields[vt->col[PAI_COL_POS]];
  int64_t p;
  if (pai_parse_i64(pos, &p) < 0) {
    PAI_ERR("%s:%ld: field 'pos': '%s' is not an integer", vt->path, vt->lineno, pos);
    return PAI_ERR_INPUT;
  }
  if (p < 1) {
    PAI_ERR("%s:%ld: field 'pos': %lld is not a 1-based position (must be >= 1)", vt->path,
            vt->lineno, (long long)p);
    return PAI_ERR_INPUT;
  }
  v->pos = p;
  const char *s = fields[vt->col[PAI_COL_STRAND]];
  v->strand = pai_parse_strand(s);
  if (!v->strand) {
    PAI_ERR("%s:%ld: field 'strand': '%s' is not 1, -1, + or -", vt->path, vt->lineno, s);
    return PAI_ERR_INPUT;
  }
  return 1;
}

void pai_vartable_close(pai_vartable *vt) {
  pai_text_close(vt->f);
  free(vt->header);
  free(vt->line);
  memset(vt, 0, sizeof *vt);
}
