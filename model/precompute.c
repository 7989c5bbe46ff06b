/* precompute.c - see precompute.h and docs/precompute.md.
 *
 * Steps (every rank runs them; rank 0 alone touches shared files and speaks):
 *   1. inputs: the TSS table (read by rank 0, bytes broadcast), the FASTA, the models;
 *   2. sites: the distinct (chromosome, TSS position, strand), sorted; each TSS row points to one;
 *   3. OUT.parts/: job.tsv (the inputs' identity: a rerun with other inputs is refused), the
 *      finished sites found in part-*.bin (a torn last record is cut off);
 *   4. work: ranks take unfinished sites from a shared counter; one record per site;
 *   5. merge (rank 0): rows in the documented order into OUT.tmp (bgzip), its tabix index, then
 *      the renames and the removal of OUT.parts.
 * Part record: rec_head, then raw[n][3][n_models] (double; the three alternates of each position
 * in A, C, G, T order without the reference base; NaN where the base is not A/C/G/T), then the
 * n upper-case reference bases, then the FNV-1a hash of all of it. */
#include "model/precompute.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <htslib/bgzf.h>
#include <htslib/kstring.h>
#include <htslib/tbx.h>

#include "model/cone.h"
#include "model/fingerprint.h"
#include "model/model.h"
#include "model/score.h"
#include "model/seq.h"
#include "mpi/counter.h"
#include "mpi/log.h"
#include "preprocess/fasta.h"
#include "preprocess/tsv.h"

#define REC_MAGIC 0x31525350u   /* "PSR1" */
#define PROGRESS_EVERY_S 10.0

typedef struct {
  uint32_t magic, n_models;
  int64_t site, p0;
  int32_t chrom, strand, n, pad;
} rec_head;

typedef struct {
  int chrom;          /* FASTA index */
  int64_t tss0;       /* 0-based */
  int strand;
  int64_t p0;         /* positions [p0, p0 + n), 0-based, inside the chromosome */
  int n;
} site_t;

typedef struct {
  int line;                                   /* 1-based line in the TSS table */
  int chrom, strand, site;
  int64_t tss_pos;                            /* 1-based, as given */
  const char *gene, *gene_id, *transcript_id; /* "." when missing or empty */
} tss_t;

typedef struct {
  pai_tsv table;
  tss_t *rows;        /* kept rows */
  int n_rows;
  site_t *sites;
  int n_sites;
  int64_t n_absent, n_dup, n_off;   /* skipped TSS rows */
  char **chrom_names; /* FASTA order */
  int n_chroms;
  int64_t max_len;    /* the longest chromosome with a kept row (TBI indexes only < 2^29) */
} job_t;

typedef struct {
  int file;           /* index into the part files, -1: not found */
  long off;           /* offset of the record */
} rec_ref;

static const char BASES[4] = {'A', 'C', 'G', 'T'};

/* ---- step 1 and 2: the TSS table and the sites ----------------------------------------------- */

static const char *field_or_dot(const pai_tsv *t, int r, int col) {
  if (col < 0) return ".";
  const char *s = pai_tsv_get(t, r, col);
  return *s ? s : ".";
}

typedef struct {
  const char *name;
  int idx;
} name_idx;

static int by_name(const void *a, const void *b) {
  return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

/* Rows equal under this give the same output rows: the later ones are duplicates. */
static int cmp_key(const void *a, const void *b) {
  const tss_t *x = *(tss_t *const *)a, *y = *(tss_t *const *)b;
  int c;
  if (x->chrom != y->chrom) return x->chrom - y->chrom;
  if (x->tss_pos != y->tss_pos) return (x->tss_pos > y->tss_pos) - (x->tss_pos < y->tss_pos);
  if (x->strand != y->strand) return x->strand - y->strand;
  if ((c = strcmp(x->gene, y->gene)) || (c = strcmp(x->gene_id, y->gene_id)) ||
      (c = strcmp(x->transcript_id, y->transcript_id)))
    return c;
  return 0;
}

static int cmp_key_line(const void *a, const void *b) {
  const int c = cmp_key(a, b);
  const tss_t *x = *(tss_t *const *)a, *y = *(tss_t *const *)b;
  return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_site(const void *a, const void *b) {
  const tss_t *x = *(tss_t *const *)a, *y = *(tss_t *const *)b;
  if (x->chrom != y->chrom) return x->chrom - y->chrom;
  const int64_t px = x->tss_pos, py = y->tss_pos;
  if (px != py) return (px > py) - (px < py);
  return x->strand - y->strand;
}

/* The documented row order among the TSS rows of one chromosome. */
static int cmp_output(const void *a, const void *b) {
  const tss_t *x = a, *y = b;
  if (x->chrom != y->chrom) return x->chrom - y->chrom;
  if (x->tss_pos != y->tss_pos) return (x->tss_pos > y->tss_pos) - (x->tss_pos < y->tss_pos);
  int c = strcmp(x->transcript_id, y->transcript_id);
  if (c) return c;
  if (x->strand != y->strand) return x->strand - y->strand;
  if ((c = strcmp(x->gene_id, y->gene_id))) return c;
  if ((c = strcmp(x->gene, y->gene))) return c;
  return (x->line > y->line) - (x->line < y->line);
}

/* Parses the broadcast table text; warnings only where `speak`. */
static int read_tss(job_t *J, const char *path, char *text, pai_fasta *fa, int flank) {
  pai_tsv *t = &J->table;
  PAI_TRY(pai_tsv_parse(t, path, text));
  const int c_chrom = pai_tsv_col(t, "chrom"), c_strand = pai_tsv_col(t, "strand");
  int c_pos = pai_tsv_col(t, "tss_pos");
  if (c_pos < 0) c_pos = pai_tsv_col(t, "pos");
  if (c_chrom < 0 || c_pos < 0 || c_strand < 0) {
    PAI_ERR("%s:1: missing column '%s' (a TSS table needs chrom, tss_pos (or pos), strand; "
            "gene, gene_id, transcript_id are optional)",
            path, c_chrom < 0 ? "chrom" : c_pos < 0 ? "tss_pos" : "strand");
    return PAI_ERR_INPUT;
  }
  const int c_gene = pai_tsv_col(t, "gene"), c_gid = pai_tsv_col(t, "gene_id"),
            c_tid = pai_tsv_col(t, "transcript_id");
  J->n_chroms = pai_fasta_n_chroms(fa);
  J->chrom_names = calloc((size_t)J->n_chroms + 1, sizeof *J->chrom_names);
  name_idx *names = calloc((size_t)J->n_chroms + 1, sizeof *names);
  J->rows = calloc((size_t)t->n_rows + 1, sizeof *J->rows);
  tss_t **ptr = calloc((size_t)t->n_rows + 1, sizeof *ptr);
  int rc = 0;
  if (!J->chrom_names || !names || !J->rows || !ptr) {
    rc = PAI_ERR_NOMEM;
    goto done;
  }
  for (int i = 0; i < J->n_chroms; i++) {
    J->chrom_names[i] = (char *)pai_fasta_chrom_name(fa, i);
    names[i] = (name_idx){J->chrom_names[i], i};
  }
  qsort(names, (size_t)J->n_chroms, sizeof *names, by_name);
  int n = 0;
  for (int r = 0; r < t->n_rows && rc == 0; r++) {
    tss_t x = {.line = (int)t->lineno[r]};
    const char *chrom = pai_tsv_get(t, r, c_chrom), *pos_s = pai_tsv_get(t, r, c_pos),
               *strand_s = pai_tsv_get(t, r, c_strand);
    if (pai_parse_i64(pos_s, &x.tss_pos) < 0) {
      PAI_ERR("%s:%d: field '%s': '%s' is not an integer position", path, x.line,
              t->names[c_pos], pos_s);
      rc = PAI_ERR_INPUT;
      break;
    }
    if (!(x.strand = pai_parse_strand(strand_s))) {
      PAI_ERR("%s:%d: field 'strand': '%s' is not 1, -1, + or -", path, x.line, strand_s);
      rc = PAI_ERR_INPUT;
      break;
    }
    name_idx key = {chrom, 0}, *hit = bsearch(&key, names, (size_t)J->n_chroms, sizeof *names,
                                              by_name);
    if (!hit) {
      PAI_WARN("%s:%d: chromosome '%s' is not in the FASTA; row skipped", path, x.line, chrom);
      J->n_absent++;
      continue;
    }
    x.chrom = hit->idx;
    const int64_t len = pai_fasta_chrom_len(fa, chrom);
    if (x.tss_pos < 1 || x.tss_pos > len) {
      PAI_WARN("%s:%d: %s %lld is outside %s (length %lld); row skipped", path, x.line,
               t->names[c_pos], (long long)x.tss_pos, chrom, (long long)len);
      J->n_off++;
      continue;
    }
    if (len > J->max_len) J->max_len = len;
    x.gene = field_or_dot(t, r, c_gene);
    x.gene_id = field_or_dot(t, r, c_gid);
    x.transcript_id = field_or_dot(t, r, c_tid);
    J->rows[n++] = x;
  }
  if (rc) goto done;
  /* duplicates (the same chrom, position, strand and names): the first occurrence stays */
  for (int i = 0; i < n; i++) ptr[i] = &J->rows[i];
  qsort(ptr, (size_t)n, sizeof *ptr, cmp_key_line);
  for (int i = 1; i < n; i++)
    if (!cmp_key(&ptr[i], &ptr[i - 1])) {
      int first = i - 1;
      while (first > 0 && !cmp_key(&ptr[first - 1], &ptr[i])) first--;
      PAI_WARN("%s:%d: duplicate of line %d (same chromosome, position, strand, gene, gene_id, "
               "transcript_id); skipped",
               path, ptr[i]->line, ptr[first]->line);
      ptr[i]->line = -ptr[i]->line;   /* marked */
      J->n_dup++;
    }
  int kept = 0;
  for (int i = 0; i < n; i++)
    if (J->rows[i].line > 0) J->rows[kept++] = J->rows[i];
  J->n_rows = kept;
  /* sites: distinct (chrom, tss_pos, strand) in that order */
  for (int i = 0; i < kept; i++) ptr[i] = &J->rows[i];
  qsort(ptr, (size_t)kept, sizeof *ptr, cmp_site);
  J->sites = calloc((size_t)kept + 1, sizeof *J->sites);
  if (!J->sites) {
    rc = PAI_ERR_NOMEM;
    goto done;
  }
  for (int i = 0; i < kept; i++) {
    if (i == 0 || cmp_site(&ptr[i - 1], &ptr[i]) != 0) {
      site_t *s = &J->sites[J->n_sites++];
      s->chrom = ptr[i]->chrom;
      s->tss0 = ptr[i]->tss_pos - 1;
      s->strand = ptr[i]->strand;
      const int64_t len = pai_fasta_chrom_len(fa, J->chrom_names[s->chrom]);
      s->p0 = s->tss0 - flank < 0 ? 0 : s->tss0 - flank;
      const int64_t p1 = s->tss0 + flank + 1 > len ? len : s->tss0 + flank + 1;
      s->n = (int)(p1 - s->p0);
    }
    ptr[i]->site = J->n_sites - 1;
  }
done:
  free(names);
  free(ptr);
  return rc;
}

static void job_free(job_t *J) {
  free(J->rows);
  free(J->sites);
  free(J->chrom_names);
  pai_tsv_free(&J->table);
  memset(J, 0, sizeof *J);
}

/* ---- step 3: OUT.parts ------------------------------------------------------------------------ */

/* The identity of a job: what every record depends on. Lines starting with '#' are notes. */
static int job_identity(const pai_precompute_opts *o, uint64_t tss_hash, kstring_t *k) {
  int bad = ksprintf(k, "format\t1\nflank\t%d\nn_models\t%d\n", o->flank, o->models->n) < 0;
  /* fp32 on the CPU or a GPU computes the same numbers up to rounding; bf16 does not */
  const int bf16 = o->backend.device == PAI_DEVICE_CUDA && o->backend.precision == PAI_PRECISION_BF16;
  bad |= ksprintf(k, "precision\t%s\n", bf16 ? "bf16" : "fp32") < 0;
  bad |= ksprintf(k, "tss_file\t%016llx\n# tss_file %s\n",
                  (unsigned long long)tss_hash, o->tss_file) < 0;
  struct stat st;
  const long long fa_size = stat(o->fasta_file, &st) == 0 ? (long long)st.st_size : -1;
  bad |= ksprintf(k, "fasta_file\t%lld\t%016llx\n# fasta_file %s\n", fa_size,
                  (unsigned long long)pai_fnv_file(PAI_FNV_INIT, o->fasta_file),
                  o->fasta_file) < 0;
  for (int m = 0; m < o->models->n; m++) {
    char h5[PAI_PATH_LEN + 16];
    snprintf(h5, sizeof h5, "%s/model.h5", o->models->v[m]);
    bad |= ksprintf(k, "model_%d\t%016llx\n# model_%d %s\n", m,
                    (unsigned long long)pai_fnv_file(PAI_FNV_INIT, h5), m, o->models->v[m]) < 0;
  }
  return bad ? PAI_ERR_NOMEM : 0;
}

/* The next line of s that is not a note (length in *len), or NULL at the end. */
static const char *next_fact(const char *s, size_t *len) {
  while (*s) {
    const char *eol = strchr(s, '\n');
    const size_t n = eol ? (size_t)(eol - s + 1) : strlen(s);
    if (s[0] != '#') {
      *len = n;
      return s;
    }
    s += n;
  }
  return NULL;
}

/* What a job identity's fact of this key stands for, in the words of the command line. */
static void fact_name(const char *fact, size_t len, char *out, size_t n) {
  const char *tab = memchr(fact, '\t', len);
  const int klen = tab ? (int)(tab - fact) : (int)len;
  static const char *const names[][2] = {
      {"format", "the part-file format"}, {"flank", "--flank"},
      {"n_models", "the number of model folders"}, {"precision", "--precision"},
      {"tss_file", "the TSS table's contents"}, {"fasta_file", "the FASTA's contents"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if ((int)strlen(names[i][0]) == klen && !strncmp(fact, names[i][0], (size_t)klen)) {
      snprintf(out, n, "%s", names[i][1]);
      return;
    }
  int m = -1;
  if (sscanf(fact, "model_%d", &m) == 1)
    snprintf(out, n, "model folder %d's model.h5", m + 1);
  else
    snprintf(out, n, "'%.*s'", klen, fact);
}

/* 1 when a and b state the same facts (their notes may differ); else 0, and *what names the
 * first fact that differs. */
static int same_identity(const char *a, const char *b, char *what, size_t what_len) {
  size_t na = 0, nb = 0;
  for (;;) {
    a = next_fact(a, &na);
    b = next_fact(b, &nb);
    if (!a || !b) {
      if (!a && !b) return 1;
      snprintf(what, what_len, "the number of model folders");
      return 0;
    }
    if (na != nb || memcmp(a, b, na) != 0) {
      fact_name(b, nb, what, what_len);
      return 0;
    }
    a += na;
    b += nb;
  }
}

static int write_text_atomic(const char *path, const char *text) {
  char tmp[PAI_PATH_LEN + 32];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f || fputs(text, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 ||
      rename(tmp, path) != 0) {
    PAI_ERR("cannot write %s: %s", path, strerror(errno));
    return PAI_ERR_IO;
  }
  return 0;
}

static size_t rec_bytes(int n, int n_models) {
  return sizeof(rec_head) + (size_t)n * 3 * n_models * sizeof(double) + (size_t)n +
         sizeof(uint64_t);
}

/* Lists OUT.parts/part-*.bin (sorted, for a deterministic scan). */
static int list_parts(const char *dir, char ***names, int *n) {
  *names = NULL;
  *n = 0;
  DIR *dp = opendir(dir);
  if (!dp) {
    PAI_ERR("cannot read %s: %s", dir, strerror(errno));
    return PAI_ERR_IO;
  }
  struct dirent *e;
  int cap = 0;
  while ((e = readdir(dp))) {
    const size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "part-", 5) || len < 9 || strcmp(e->d_name + len - 4, ".bin")) continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(*names, (size_t)cap * sizeof *nn);
      if (!nn) {
        closedir(dp);
        return PAI_ERR_NOMEM;
      }
      *names = nn;
    }
    const size_t need = strlen(dir) + len + 2;
    (*names)[*n] = malloc(need);
    if (!(*names)[*n]) {
      closedir(dp);
      return PAI_ERR_NOMEM;
    }
    snprintf((*names)[(*n)++], need, "%s/%s", dir, e->d_name);
  }
  closedir(dp);
  for (int i = 1; i < *n; i++)   /* insertion sort: a handful of files */
    for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
      char *s = (*names)[j];
      (*names)[j] = (*names)[j - 1];
      (*names)[j - 1] = s;
    }
  return 0;
}

/* Reads every valid record of every part file into refs[site] (the first one found wins).
 * With `repair`, a file's torn or foreign tail (a rank killed mid-write) is cut off. */
static int scan_parts(const char *dir, const job_t *J, int n_models, int repair, char ***files,
                      int *n_files, rec_ref *refs, int64_t *n_found) {
  PAI_TRY(list_parts(dir, files, n_files));
  for (int s = 0; s < J->n_sites; s++) refs[s] = (rec_ref){-1, 0};
  *n_found = 0;
  size_t cap = rec_bytes(2 * 1000 + 1, n_models);
  unsigned char *buf = malloc(cap);
  if (!buf) return PAI_ERR_NOMEM;
  int rc = 0;
  for (int f = 0; f < *n_files && rc == 0; f++) {
    FILE *fp = fopen((*files)[f], "rb");
    if (!fp) {
      PAI_ERR("cannot open %s: %s", (*files)[f], strerror(errno));
      rc = PAI_ERR_IO;
      break;
    }
    long good = 0;
    for (;;) {
      rec_head h;
      if (fread(&h, sizeof h, 1, fp) != 1) break;
      if (h.magic != REC_MAGIC || (int)h.n_models != n_models || h.site < 0 ||
          h.site >= J->n_sites || h.n != J->sites[h.site].n || h.p0 != J->sites[h.site].p0 ||
          h.chrom != J->sites[h.site].chrom || h.strand != J->sites[h.site].strand)
        break;
      const size_t bytes = rec_bytes(h.n, n_models);
      if (bytes > cap) {
        unsigned char *nb = realloc(buf, bytes);
        if (!nb) {
          rc = PAI_ERR_NOMEM;
          break;
        }
        buf = nb;
        cap = bytes;
      }
      memcpy(buf, &h, sizeof h);
      if (fread(buf + sizeof h, bytes - sizeof h, 1, fp) != 1) break;
      uint64_t sum;
      memcpy(&sum, buf + bytes - sizeof sum, sizeof sum);
      if (sum != pai_fnv(PAI_FNV_INIT, buf, bytes - sizeof sum)) break;
      if (refs[h.site].file < 0) {
        refs[h.site] = (rec_ref){f, good};
        (*n_found)++;
      }
      good += (long)bytes;
    }
    fseek(fp, 0, SEEK_END);
    const long size = ftell(fp);
    fclose(fp);
    if (repair && size > good) {
      PAI_WARN("%s: dropping %ld bytes after its last complete record (an interrupted write)",
               (*files)[f], size - good);
      if (truncate((*files)[f], good) != 0) {
        PAI_ERR("cannot truncate %s: %s", (*files)[f], strerror(errno));
        rc = PAI_ERR_IO;
      }
    }
  }
  free(buf);
  return rc;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

/* --overwrite: removes the part files and job.tsv of a job with other inputs. */
static int clear_parts(const char *dir, const char *job_path) {
  char **files = NULL;
  int n = 0;
  PAI_TRY(list_parts(dir, &files, &n));
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++)
    if (unlink(files[i]) != 0) {
      PAI_ERR("cannot remove %s: %s", files[i], strerror(errno));
      rc = PAI_ERR_IO;
    }
  free_names(files, n);
  if (rc == 0 && unlink(job_path) != 0) {
    PAI_ERR("cannot remove %s: %s", job_path, strerror(errno));
    rc = PAI_ERR_IO;
  }
  if (rc == 0) PAI_INFO("--overwrite: removed %d part file(s) of the earlier job", n);
  return rc;
}

/* Rank 0: creates or checks OUT.parts/job.tsv and finds the finished sites (done[s] = 1). */
static int prepare_parts(const char *dir, const char *identity, const job_t *J, int n_models,
                         int overwrite, unsigned char *done, int64_t *n_done) {
  char path[PAI_PATH_LEN + 16];
  snprintf(path, sizeof path, "%s/job.tsv", dir);
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (mkdir(dir, 0777) != 0) {
      PAI_ERR("cannot create %s: %s", dir, strerror(errno));
      return PAI_ERR_IO;
    }
  }
  char *old = NULL;
  size_t old_len = 0;
  int fresh = stat(path, &st) != 0;
  if (!fresh) {
    char what[PAI_PATH_LEN];
    PAI_TRY(pai_read_file(path, "job identity", &old, &old_len));
    const int same = same_identity(old, identity, what, sizeof what);
    free(old);
    if (!same && !overwrite) {
      PAI_ERR("%s holds the finished part of a job with other inputs (%s changed): pass "
              "--overwrite to discard it, or remove %s",
              dir, what, dir);
      return PAI_ERR_USAGE;
    }
    if (!same) {
      PAI_INFO("%s was written for other inputs (%s changed)", path, what);
      PAI_TRY(clear_parts(dir, path));
      fresh = 1;
    }
  }
  if (fresh) PAI_TRY(write_text_atomic(path, identity));
  rec_ref *refs = calloc((size_t)J->n_sites + 1, sizeof *refs);
  char **files = NULL;
  int n_files = 0;
  if (!refs) return PAI_ERR_NOMEM;
  int rc = scan_parts(dir, J, n_models, 1, &files, &n_files, refs, n_done);
  for (int s = 0; s < J->n_sites; s++) done[s] = refs[s].file >= 0;
  free_names(files, n_files);
  free(refs);
  return rc;
}

/* ---- step 4: scoring one site ----------------------------------------------------------------- */

typedef struct {
  pai_counter *wc;     /* polled between batches, so that rank 0 serves the others' requests */
  pai_cone *cones;     /* [n_models] */
  int n_models, L, batch;
  char *seq;           /* (n_max - 1 + L) */
  uint8_t *u, *alt;    /* (n_max - 1 + L), (batch) */
  int *k, *slot_of;    /* (batch), (3 * n_max) item -> raw index */
  double *out;         /* (batch) */
} worker_t;

static int score_site(worker_t *w, pai_fasta *fa, const job_t *J, int s, double *raw,
                      char *bases) {
  const site_t *st = &J->sites[s];
  const int L = w->L, n = st->n, M = w->n_models;
  PAI_TRY(pai_fasta_window(fa, J->chrom_names[st->chrom], st->p0 - L / 2, (int64_t)n - 1 + L,
                           w->seq));
  for (int j = 0; j < n; j++) {
    char b = w->seq[L / 2 + j];
    if (b >= 'a' && b <= 'z') b = (char)(b - 'a' + 'A');
    bases[j] = b;
  }
  for (size_t i = 0; i < (size_t)n * 3 * M; i++) raw[i] = NAN;
  pai_encode(w->u, w->seq, (size_t)n - 1 + L);
  if (st->strand < 0) pai_revcomp_codes(w->u, (size_t)n - 1 + L);
  const int vi = st->strand > 0 ? L / 2 : L / 2 - 1;
  /* items: (position j, alternate slot) for every A/C/G/T reference base */
  int n_items = 0;
  for (int j = 0; j < n; j++) {
    const uint8_t ref = pai_base_code(bases[j]);
    if (ref > 3) continue;
    for (int a = 0, slot = 0; a < 4; a++)
      if (a != ref) w->slot_of[n_items++] = j * 3 + slot++;
  }
  if (n_items == 0) return 0;
  for (int m = 0; m < M; m++) {
    PAI_TRY(pai_cone_reference(&w->cones[m], w->u, n, vi));
    for (int i0 = 0; i0 < n_items; i0 += w->batch) {
      if (w->wc) pai_counter_poll(w->wc);
      const int B = n_items - i0 < w->batch ? n_items - i0 : w->batch;
      for (int b = 0; b < B; b++) {
        const int idx = w->slot_of[i0 + b], j = idx / 3, slot = idx % 3;
        const uint8_t ref = pai_base_code(bases[j]);
        const uint8_t a = (uint8_t)(slot + (slot >= ref));   /* the slot-th base other than ref */
        w->k[b] = st->strand > 0 ? j : n - 1 - j;
        w->alt[b] = st->strand > 0 ? a : (uint8_t)(3 - a);
      }
      PAI_TRY(pai_cone_alts(&w->cones[m], w->k, w->alt, B, w->out));
      for (int b = 0; b < B; b++) raw[(size_t)w->slot_of[i0 + b] * M + m] = w->out[b];
    }
  }
  return 0;
}

static int write_record(FILE *fp, const char *path, const job_t *J, int s, int M,
                        const double *raw, const char *bases, unsigned char *buf) {
  const site_t *st = &J->sites[s];
  const rec_head h = {REC_MAGIC, (uint32_t)M, s, st->p0, st->chrom, st->strand, st->n, 0};
  const size_t nraw = (size_t)st->n * 3 * M * sizeof(double), bytes = rec_bytes(st->n, M);
  memcpy(buf, &h, sizeof h);
  memcpy(buf + sizeof h, raw, nraw);
  memcpy(buf + sizeof h + nraw, bases, (size_t)st->n);
  const uint64_t sum = pai_fnv(PAI_FNV_INIT, buf, bytes - sizeof sum);
  memcpy(buf + bytes - sizeof sum, &sum, sizeof sum);
  /* durable before the next site is taken: a rerun trusts every complete record */
  if (fwrite(buf, bytes, 1, fp) != 1 || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
    PAI_ERR("cannot write %s: %s", path, strerror(errno));
    return PAI_ERR_IO;
  }
  return 0;
}

/* ---- step 5: the merge ------------------------------------------------------------------------ */

/* "-0.0123" -> -123: a score printed with exactly 4 decimals, as an integer. */
static long long fixed4(const char *s) {
  const int neg = s[0] == '-';
  long long v = 0;
  for (const char *p = s + neg; *p; p++)
    if (*p >= '0' && *p <= '9') v = 10 * v + (*p - '0');
  return neg ? -v : v;
}

/* The exact mean of n printed scores whose sum is k ten-thousandths: 4 + e decimals with the
 * smallest e in 1..4 for which 10^e / n is whole (5 decimals for 2 models); otherwise 6
 * decimals, rounded half to even. */
static int format_mean(char *out, size_t cap, long long k, int n) {
  long long scale = 10;
  int e = 1;
  while (e <= 4 && scale % n) scale *= 10, e++;
  long long v;
  if (e <= 4) {
    v = k * scale / n;
  } else {
    e = 2;
    const long long num = k * 100, q = num / n, r = num % n;   /* truncated toward 0 */
    v = q;
    const long long twice = 2 * (r < 0 ? -r : r);
    if (twice > n || (twice == n && (q % 2 != 0))) v += num < 0 ? -1 : 1;
  }
  long long p10 = 1;
  for (int i = 0; i < 4 + e; i++) p10 *= 10;
  const long long a = v < 0 ? -v : v;
  return snprintf(out, cap, "%s%lld.%0*lld", v < 0 ? "-" : "", a / p10, 4 + e, a % p10);
}

static int cmp_i64(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

typedef struct {
  int64_t rows, skipped_pos;
} merge_counts;

static int merge(const pai_precompute_opts *o, const char *dir, job_t *J, merge_counts *cnt) {
  const int M = o->models->n;
  rec_ref *refs = calloc((size_t)J->n_sites + 1, sizeof *refs);
  char **files = NULL;
  int n_files = 0, rc = 0;
  int64_t n_found = 0;
  BGZF *bg = NULL;
  double **raws = NULL;
  char **bases = NULL;
  int64_t *keys = NULL;
  /* TBI for chromosomes shorter than 2^29 (every human one), CSI (min_shift 14) beyond */
  const int csi = J->max_len >= (INT64_C(1) << 29);
  char out_tmp[PAI_PATH_LEN + 8], tbi[PAI_PATH_LEN + 8], tbi_tmp[PAI_PATH_LEN + 16];
  snprintf(out_tmp, sizeof out_tmp, "%s.tmp", o->out);
  snprintf(tbi, sizeof tbi, "%s.%s", o->out, csi ? "csi" : "tbi");
  snprintf(tbi_tmp, sizeof tbi_tmp, "%s.tmp", tbi);
  if (!refs) return PAI_ERR_NOMEM;
  PAI_CHECK(scan_parts(dir, J, M, 0, &files, &n_files, refs, &n_found));
  if (n_found != J->n_sites) {
    PAI_ERR("%s: %lld of %d sites have records after the run", dir, (long long)n_found,
            J->n_sites);
    rc = PAI_ERR_RUNTIME;
    goto fail;
  }
  raws = calloc((size_t)J->n_sites + 1, sizeof *raws);
  bases = calloc((size_t)J->n_sites + 1, sizeof *bases);
  if (!raws || !bases) {
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  qsort(J->rows, (size_t)J->n_rows, sizeof *J->rows, cmp_output);
  if (!(bg = bgzf_open(out_tmp, "w"))) {
    PAI_ERR("cannot create %s: %s", out_tmp, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
  if (o->threads > 1) bgzf_mt(bg, o->threads, 256);

  /* header */
  char names[64][PAI_NAME_LEN];
  for (int m = 0; m < M && m < 64; m++) {
    if (M == 2) snprintf(names[m], PAI_NAME_LEN, "%s", m ? "y" : "x");
    else pai_folder_name(o->models->v[m], names[m], PAI_NAME_LEN);
  }
  kstring_t line = {0, 0, NULL};
  ksprintf(&line, "gene_id\tchrom\tpos\tref\talt\tstrand\tgene\ttranscript_id\ttss_pos\t"
                  "strand_adj_dist_tss");
  if (M == 1) kputs("\tscore", &line);
  else {
    for (int m = 0; m < M; m++) ksprintf(&line, "\tscore_%s", names[m]);
    kputs("\tscore", &line);
  }
  if (o->raw) {
    if (M == 1) kputs("\traw", &line);
    else
      for (int m = 0; m < M; m++) ksprintf(&line, "\traw_%s", names[m]);
  }
  kputc('\n', &line);
  if (bgzf_write(bg, line.s, line.l) < 0) rc = PAI_ERR_IO;

  /* per chromosome: load its sites' records, then emit rows in (pos, TSS order, alt) order */
  int i0 = 0;
  while (rc == 0 && i0 < J->n_rows) {
    int i1 = i0;
    while (i1 < J->n_rows && J->rows[i1].chrom == J->rows[i0].chrom) i1++;
    const int64_t n_t = i1 - i0;
    int64_t n_keys = 0;
    for (int i = i0; i < i1 && rc == 0; i++) {
      const int s = J->rows[i].site;
      n_keys += J->sites[s].n;
      if (raws[s]) continue;
      const size_t nraw = (size_t)J->sites[s].n * 3 * M;
      raws[s] = malloc(nraw * sizeof(double));
      bases[s] = malloc((size_t)J->sites[s].n);
      /* one open per record: the part files can outnumber the open-file limit */
      FILE *fp = raws[s] && bases[s] ? fopen(files[refs[s].file], "rb") : NULL;
      if (!raws[s] || !bases[s]) rc = PAI_ERR_NOMEM;
      else if (!fp || fseek(fp, refs[s].off + (long)sizeof(rec_head), SEEK_SET) != 0 ||
               fread(raws[s], sizeof(double), nraw, fp) != nraw ||
               fread(bases[s], 1, (size_t)J->sites[s].n, fp) != (size_t)J->sites[s].n) {
        PAI_ERR("cannot read a record of %s", files[refs[s].file]);
        rc = PAI_ERR_IO;
      }
      if (fp) fclose(fp);
    }
    if (rc) break;
    free(keys);
    if (!(keys = malloc((size_t)(n_keys + 1) * sizeof *keys))) {
      rc = PAI_ERR_NOMEM;
      break;
    }
    int64_t nk = 0;
    for (int i = i0; i < i1; i++) {
      const site_t *st = &J->sites[J->rows[i].site];
      for (int j = 0; j < st->n; j++) keys[nk++] = (st->p0 + j) * n_t + (i - i0);
    }
    qsort(keys, (size_t)nk, sizeof *keys, cmp_i64);
    const char *chrom = J->chrom_names[J->rows[i0].chrom];
    for (int64_t e = 0; e < nk && rc == 0; e++) {
      const int64_t p = keys[e] / n_t;
      const tss_t *t = &J->rows[i0 + keys[e] % n_t];
      const site_t *st = &J->sites[t->site];
      const int j = (int)(p - st->p0);
      const char ref = bases[t->site][j];
      const int rcode = pai_base_code(ref);
      if (rcode > 3) {
        cnt->skipped_pos++;
        continue;
      }
      for (int slot = 0; slot < 3; slot++) {
        const int a = slot + (slot >= rcode);
        const double *r = raws[t->site] + ((size_t)j * 3 + slot) * M;
        line.l = 0;
        ksprintf(&line, "%s\t%s\t%lld\t%c\t%c\t%d\t%s\t%s\t%lld\t%lld", t->gene_id, chrom,
                 (long long)p + 1, ref, BASES[a], t->strand, t->gene, t->transcript_id,
                 (long long)t->tss_pos, (long long)((p + 1 - t->tss_pos) * t->strand));
        long long sum = 0;
        for (int m = 0; m < M; m++) {
          char sc[32];
          snprintf(sc, sizeof sc, "%.4f", pai_score_from_raw(r[m]));
          sum += fixed4(sc);
          kputc('\t', &line);
          kputs(sc, &line);
        }
        if (M > 1) {
          char mean[48];
          format_mean(mean, sizeof mean, sum, M);
          kputc('\t', &line);
          kputs(mean, &line);
        }
        for (int m = 0; o->raw && m < M; m++) ksprintf(&line, "\t%.9g", r[m]);
        kputc('\n', &line);
        if (bgzf_write(bg, line.s, line.l) < 0) {
          rc = PAI_ERR_IO;
          break;
        }
        cnt->rows++;
      }
    }
    for (int i = i0; i < i1; i++) {   /* sites are per chromosome: done with these */
      const int s = J->rows[i].site;
      free(raws[s]);
      free(bases[s]);
      raws[s] = NULL;
      bases[s] = NULL;
    }
    i0 = i1;
  }
  free(line.s);
  if (bgzf_close(bg) != 0 && rc == 0) rc = PAI_ERR_IO;
  bg = NULL;
  if (rc == PAI_ERR_IO) PAI_ERR("cannot write %s", out_tmp);
  if (rc) goto fail;
  if (cnt->rows == 0) {
    PAI_ERR("no variant could be scored (every position's reference base is not A/C/G/T)");
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  /* tabix: chrom column 2, pos column 3, the header line skipped */
  const tbx_conf_t conf = {TBX_GENERIC, 2, 3, 3, '#', 1};
  if (tbx_index_build3(out_tmp, tbi_tmp, csi ? 14 : 0, o->threads > 1 ? o->threads : 0, &conf) !=
      0) {
    PAI_ERR("cannot build the tabix index of %s", out_tmp);
    rc = PAI_ERR_IO;
    goto fail;
  }
  /* the index first: OUT exists only once it is complete, with its index */
  if (rename(tbi_tmp, tbi) != 0 || rename(out_tmp, o->out) != 0) {
    PAI_ERR("cannot rename %s to %s: %s", out_tmp, o->out, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
fail:
  if (bg) bgzf_close(bg);
  if (rc) {
    unlink(out_tmp);
    unlink(tbi_tmp);
  }
  for (int s = 0; raws && s < J->n_sites; s++) free(raws[s]);
  for (int s = 0; bases && s < J->n_sites; s++) free(bases[s]);
  free(raws);
  free(bases);
  free(keys);
  if (rc == 0) {   /* the table is final: the work files go */
    for (int f = 0; f < n_files; f++) unlink(files[f]);
    char path[PAI_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/job.tsv", dir);
    unlink(path);
    if (rmdir(dir) != 0) PAI_WARN("could not remove %s: %s", dir, strerror(errno));
  }
  free_names(files, n_files);
  free(refs);
  return rc;
}

/* ---- the run ---------------------------------------------------------------------------------- */

static void fmt_eta(double s, char *out, size_t n) {
  if (!(s >= 0) || s > 1e8) snprintf(out, n, "?");
  else if (s < 120) snprintf(out, n, "%.0f s", s);
  else if (s < 7200) snprintf(out, n, "%.0f min", s / 60);
  else snprintf(out, n, "%.1f h", s / 3600);
}

int pai_precompute_run(const pai_dist *d, const pai_precompute_opts *o) {
  const int M = o->models->n;
  int rc = 0;
  job_t J = {0};
  pai_fasta *fa = NULL;
  pai_model *models = NULL;
  worker_t w = {0};
  unsigned char *done = NULL, *rec_buf = NULL;
  double *raw = NULL;
  char *bases = NULL, *tss_text = NULL;
  kstring_t identity = {0, 0, NULL};
  size_t tss_len = 0;
  FILE *part = NULL;
  int64_t *todo = NULL;
  pai_counter wc = {0};
  char dir[PAI_PATH_LEN + 8], part_path[PAI_PATH_LEN + 32];
  snprintf(dir, sizeof dir, "%s.parts", o->out);
  snprintf(part_path, sizeof part_path, "%s/part-%d.bin", dir, d->rank);
  const double t_start = pai_now_s();

  /* ---- inputs (all ranks check alike; rank 0 speaks) ---- */
  if (d->rank != 0) pai_log_set_mute(1);
  struct stat st;
  if (M < 1 || M > 64) {
    PAI_ERR("--model_folder: give 1 to 64 model folders (got %d)", M);
    rc = PAI_ERR_USAGE;
  } else if (o->flank < 0 || o->flank > 100000 || o->batch_size < 1) {
    PAI_ERR("--flank must be in 0..100000 and --batch_size >= 1");
    rc = PAI_ERR_USAGE;
  } else if (stat(o->out, &st) == 0 && S_ISDIR(st.st_mode)) {
    PAI_ERR("--out %s is a directory (give the table's file name, OUT.tsv.gz)", o->out);
    rc = PAI_ERR_USAGE;
  } else if (!o->overwrite && stat(o->out, &st) == 0) {
    PAI_ERR("%s exists (pass --overwrite to replace it)", o->out);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0 && !pai_name_is_gz(o->out))
    PAI_WARN("--out %s: the table is bgzip-compressed; a name ending in .gz tells zcat, tabix "
             "and other tools so", o->out);
  if (rc == 0 && M >= 3) {   /* score_<name> columns must be distinct */
    for (int a = 0; a < M && rc == 0; a++)
      for (int b = a + 1; b < M && rc == 0; b++) {
        char na[PAI_PATH_LEN], nb[PAI_PATH_LEN];
        pai_folder_name(o->models->v[a], na, sizeof na);
        pai_folder_name(o->models->v[b], nb, sizeof nb);
        if (!strcmp(na, nb)) {
          PAI_ERR("--model_folder: %s and %s would both be column score_%s", o->models->v[a],
                  o->models->v[b], na);
          rc = PAI_ERR_USAGE;
        }
      }
  }
  if (rc == 0 && d->rank == 0) rc = pai_read_file(o->tss_file, "TSS table (--tss_file)", &tss_text,
                                                  &tss_len);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  PAI_CHECK(pai_dist_bcast_bytes(d, 0, &tss_text, &tss_len));
  const uint64_t tss_hash = pai_fnv(PAI_FNV_INIT, tss_text, tss_len);   /* before parsing splits it */
  /* rank 0 opens the FASTA first: it may build the index, which the others then read */
  if (d->rank == 0) rc = pai_fasta_open(&fa, o->fasta_file);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  if (d->rank != 0) rc = pai_fasta_open(&fa, o->fasta_file);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  rc = read_tss(&J, o->tss_file, tss_text, fa, o->flank);   /* the table now owns the text */
  tss_text = NULL;
  if (rc == 0 && J.n_rows == 0) {
    PAI_ERR("%s: no TSS row can be scored (%lld on chromosomes absent from %s, %lld outside "
            "their chromosome, %lld duplicates)",
            o->tss_file, (long long)J.n_absent, o->fasta_file, (long long)J.n_off,
            (long long)J.n_dup);
    rc = PAI_ERR_INPUT;
  }
  models = calloc((size_t)M, sizeof *models);
  if (rc == 0 && !models) rc = PAI_ERR_NOMEM;
  for (int m = 0; rc == 0 && m < M; m++) {
    rc = pai_model_load(&models[m], o->models->v[m]);
    if (rc < 0) break;
    const pai_config *c = &models[m].cfg;
    const int radius = pai_receptive_radius(c->num_blocks);
    if (c->input_length != models[0].cfg.input_length) {
      PAI_ERR("%s: input_length %d differs from %s's %d (all models must read the same windows)",
              o->models->v[m], c->input_length, o->models->v[0], models[0].cfg.input_length);
      rc = PAI_ERR_INPUT;
    } else if (pai_padding_reaches_outputs(c)) {
      PAI_ERR("%s: input_length %d < output_length %d + 2 x receptive radius %d: padding reaches "
              "the kept outputs, so variants cannot share a reference pass (REFERENCE.md 2.4)",
              o->models->v[m], c->input_length, c->output_length, radius);
      rc = PAI_ERR_INPUT;
    }
  }
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;

  /* ---- OUT.parts: identity and finished sites (rank 0), shared with every rank ---- */
  done = calloc((size_t)J.n_sites + 1, 1);
  if (!done) rc = PAI_ERR_NOMEM;
  int64_t n_done = 0;
  if (rc == 0 && d->rank == 0) {
    rc = job_identity(o, tss_hash, &identity);
    if (rc == 0) rc = prepare_parts(dir, identity.s, &J, M, o->overwrite, done, &n_done);
  }
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  {
    char *flags = (char *)done;
    size_t n_flags = (size_t)J.n_sites;
    if (d->rank != 0) flags = NULL;
    PAI_CHECK(pai_dist_bcast_bytes(d, 0, &flags, &n_flags));
    if (d->rank != 0) {
      memcpy(done, flags, (size_t)J.n_sites);
      free(flags);
    }
  }
  int64_t n_todo = 0;
  todo = malloc(((size_t)J.n_sites + 1) * sizeof *todo);
  if (!todo) rc = PAI_ERR_NOMEM;
  for (int s = 0; rc == 0 && s < J.n_sites; s++)
    if (!done[s]) todo[n_todo++] = s;
  n_done = J.n_sites - n_todo;

  /* ---- scorers ---- */
  const int L = models[0].cfg.input_length, n_max = 2 * o->flank + 1;
  w.wc = &wc;
  w.n_models = M;
  w.L = L;
  w.batch = o->batch_size;
  w.cones = calloc((size_t)M, sizeof *w.cones);
  w.seq = malloc((size_t)n_max - 1 + L);
  w.u = malloc((size_t)n_max - 1 + L);
  w.alt = malloc((size_t)o->batch_size);
  w.k = malloc((size_t)o->batch_size * sizeof *w.k);
  w.out = malloc((size_t)o->batch_size * sizeof *w.out);
  w.slot_of = malloc((size_t)3 * n_max * sizeof *w.slot_of);
  raw = malloc((size_t)n_max * 3 * M * sizeof *raw);
  bases = malloc((size_t)n_max);
  rec_buf = malloc(rec_bytes(n_max, M));
  if (rc == 0 && (!w.cones || !w.seq || !w.u || !w.alt || !w.k || !w.out || !w.slot_of || !raw ||
                  !bases || !rec_buf))
    rc = PAI_ERR_NOMEM;
  for (int m = 0; rc == 0 && n_todo > 0 && m < M; m++)
    rc = pai_cone_init_backend(&w.cones[m], &models[m], n_max, o->batch_size, &o->backend);
  if (rc == 0 && n_todo > 0 && !(part = fopen(part_path, "ab"))) {
    pai_log_set_mute(0);
    PAI_ERR("cannot open %s: %s", part_path, strerror(errno));
    rc = PAI_ERR_IO;
  }
  pai_log_set_mute(0);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  if (d->rank == 0) {
    int64_t variants = 0;
    for (int s = 0; s < J.n_sites; s++) variants += 3 * (int64_t)J.sites[s].n;
    PAI_INFO("%d TSS rows -> %d sites (chromosome, position, strand), up to %lld SNVs, %d "
             "model(s), %d rank(s); %lld site(s) already done in %s",
             J.n_rows, J.n_sites, (long long)variants, M, d->size, (long long)n_done, dir);
    for (int m = 0; m < M; m++) {
      const pai_config *c = &models[m].cfg;
      const double cone = pai_cone_alt_flops(c, L / 2) +
                          pai_cone_ref_flops(c, n_max, L / 2) / (3.0 * n_max);
      PAI_INFO("%s: %.3g GFLOP per SNV (cone, reference pass shared by %d positions) vs %.3g "
               "GFLOP naive twin scoring: %.1fx less work",
               o->models->v[m], cone * 1e-9, n_max, pai_twin_flops(c) * 1e-9,
               pai_twin_flops(c) / cone);
    }
  }

  /* ---- work ---- */
  rc = pai_counter_init(&wc, d);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  {
    int err = 0;
    int64_t mine = 0, variants = 0;
    double last = pai_now_s();
    const double t0 = last;
    for (;;) {
      int64_t i;
      if (pai_counter_next(&wc, &i) < 0) {
        err = PAI_ERR_RUNTIME;
        break;
      }
      if (i >= n_todo) break;
      const int s = (int)todo[i];
      err = score_site(&w, fa, &J, s, raw, bases);
      if (err == 0) err = write_record(part, part_path, &J, s, M, raw, bases, rec_buf);
      if (err < 0) break;
      mine++;
      variants += 3 * (int64_t)J.sites[s].n;
      const double now = pai_now_s();
      if (d->rank == 0 && now - last >= PROGRESS_EVERY_S) {
        int64_t taken = 0;
        if (pai_counter_peek(&wc, &taken) == 0) {
          if (taken > n_todo) taken = n_todo;
          /* rate: this rank's, times the rank count (ranks run alike) */
          const double sites_s = mine / (now - t0) * d->size;
          char eta[32];
          fmt_eta((n_todo - taken) / sites_s, eta, sizeof eta);
          PAI_INFO("%lld/%d sites started, %.0f SNVs/s (all ranks, estimated), ETA %s",
                   (long long)(n_done + taken), J.n_sites, variants / (now - t0) * d->size, eta);
        }
        last = now;
      }
    }
    if (part && fclose(part) != 0 && err == 0) {
      PAI_ERR("cannot close %s: %s", part_path, strerror(errno));
      err = PAI_ERR_IO;
    }
    part = NULL;
    rc = pai_dist_agree(d, err);
    if (rc < 0) goto done;
  }

  /* ---- merge (rank 0) ---- */
  merge_counts cnt = {0, 0};
  if (d->rank == 0) {
    const double t_merge = pai_now_s();
    rc = merge(o, dir, &J, &cnt);
    if (rc == 0) {
      PAI_INFO("wrote %s (+ .%s): %lld rows in %.1f s (merge %.1f s); skipped: %lld TSS rows on "
               "chromosomes absent from the FASTA, %lld outside their chromosome, %lld duplicate "
               "TSS rows, %lld positions whose reference base is not A/C/G/T",
               o->out, J.max_len >= (INT64_C(1) << 29) ? "csi" : "tbi", (long long)cnt.rows,
               pai_now_s() - t_start, pai_now_s() - t_merge,
               (long long)J.n_absent, (long long)J.n_off, (long long)J.n_dup,
               (long long)cnt.skipped_pos);
    }
  }
  rc = pai_dist_agree(d, rc);

fail:
done:
  pai_log_set_mute(0);
  pai_counter_free(&wc);   /* a no-op before pai_counter_init */
  if (part) fclose(part);
  for (int m = 0; w.cones && m < M; m++) pai_cone_free(&w.cones[m]);
  free(w.cones);
  free(w.seq);
  free(w.u);
  free(w.alt);
  free(w.k);
  free(w.out);
  free(w.slot_of);
  for (int m = 0; models && m < M; m++) pai_model_free(&models[m]);
  free(models);
  if (fa) pai_fasta_close(fa);
  job_free(&J);
  free(done);
  free(todo);
  free(raw);
  free(bases);
  free(rec_buf);
  free(tss_text);
  free(identity.s);
  return rc;
}
