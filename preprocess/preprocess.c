/* preprocess.c - see preprocess.h and docs/preprocess.md.
 *
 * Flow (every step that can fail on one rank ends in pai_dist_agree, so all ranks stop together):
 *   1. rank 0 checks the options, reads both tables, checks every row against the FASTA and opens
 *      every bigWig; the tables' bytes are broadcast and the other ranks parse the same bytes;
 *   2. every rank computes the same plan (mpi/shard.h) and the shards' fingerprints;
 *      rank 0 removes leftovers (*.tmp, shards of an earlier plan);
 *   3. each rank builds its shards, one sample at a time, skipping those already up to date;
 *   4. rank 0 writes manifest.tsv once every rank has succeeded. */
#include "preprocess/preprocess.h"

#include <dirent.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/fingerprint.h"
#include "model/half.h"
#include "model/model.h"
#include "model/seq.h"
#include "mpi/log.h"
#include "mpi/shard.h"
#include "preprocess/bigwig.h"
#include "preprocess/fasta.h"
#include "preprocess/shardfile.h"
#include "preprocess/tsv.h"
#include "preprocess/xform.h"

typedef struct {
  int64_t pos;     /* 1-based */
  long line;
  int strand;
} tss_row;

typedef struct {
  char name[PAI_NAME_LEN * 4];
  int fasta_index;
  int64_t len;     /* from the FASTA */
  int64_t n, cap;
  tss_row *rows;   /* in table order */
} chrom_group;

typedef struct {
  pai_tsv tss, trk;
  int n_groups;
  chrom_group *groups;   /* ordered as in the FASTA index */
  int T;
  char (*fwd)[PAI_PATH_LEN], (*rev)[PAI_PATH_LEN];
  const char **names, **xf_text;
  char *names_buf;
  pai_xform *xf;
  char *track_text;      /* the track table verbatim (for the shard attribute) */
} prep_input;

static void input_free(prep_input *in) {
  for (int g = 0; g < in->n_groups; g++) free(in->groups[g].rows);
  free(in->groups);
  free(in->fwd);
  free(in->rev);
  free(in->names);
  free(in->xf_text);
  free(in->names_buf);
  free(in->xf);
  free(in->track_text);
  pai_tsv_free(&in->tss);
  pai_tsv_free(&in->trk);
  memset(in, 0, sizeof *in);
}

/* ---- step 1: the two tables ------------------------------------------------------------------ */

static int check_opts(const pai_prep_opts *o) {
  const struct { const char *name; int v; } lens[] = {{"input_length", o->input_length},
                                                      {"output_length", o->output_length}};
  for (int i = 0; i < 2; i++)
    if (lens[i].v <= 0 || lens[i].v % 2) {
      PAI_ERR("--%s %d: must be a positive even number", lens[i].name, lens[i].v);
      return PAI_ERR_USAGE;
    }
  if (strcmp(o->y_dtype, "float16") && strcmp(o->y_dtype, "float32")) {
    PAI_ERR("--y_dtype %s: must be float16 or float32", o->y_dtype);
    return PAI_ERR_USAGE;
  }
  if (o->deflate < 0 || o->deflate > 9) {
    PAI_ERR("--deflate %d: must be 0 (none) to 9", o->deflate);
    return PAI_ERR_USAGE;
  }
  if (o->chunk_positions <= 0) {
    PAI_ERR("--chunk_positions %d: must be positive", o->chunk_positions);
    return PAI_ERR_USAGE;
  }
  return 0;
}

static int group_of(prep_input *in, pai_fasta *fa, const char *chrom, int *last) {
  if (*last >= 0 && !strcmp(in->groups[*last].name, chrom)) return *last;
  for (int g = 0; g < in->n_groups; g++)
    if (!strcmp(in->groups[g].name, chrom)) return *last = g;
  chrom_group *ng = realloc(in->groups, (size_t)(in->n_groups + 1) * sizeof *ng);
  if (!ng) return PAI_ERR_NOMEM;
  in->groups = ng;
  chrom_group *g = &in->groups[in->n_groups];
  memset(g, 0, sizeof *g);
  snprintf(g->name, sizeof g->name, "%s", chrom);
  g->len = pai_fasta_chrom_len(fa, chrom);
  g->fasta_index = -1;
  for (int i = 0; i < pai_fasta_n_chroms(fa); i++)
    if (!strcmp(pai_fasta_chrom_name(fa, i), chrom)) g->fasta_index = i;
  return *last = in->n_groups++;
}

static int by_fasta_index(const void *a, const void *b) {
  return ((const chrom_group *)a)->fasta_index - ((const chrom_group *)b)->fasta_index;
}

static int parse_tss(prep_input *in, const pai_prep_opts *o, pai_fasta *fa) {
  const pai_tsv *t = &in->tss;
  const char *path = o->tss_file;
  int c_chrom = pai_tsv_col(t, "chrom"), c_pos = pai_tsv_col(t, "pos"),
      c_strand = pai_tsv_col(t, "strand");
  const char *pos_name = "pos";
  if (c_pos < 0) {
    c_pos = pai_tsv_col(t, "tss_pos");
    pos_name = "tss_pos";
  }
  if (c_chrom < 0 || c_pos < 0 || c_strand < 0) {
    PAI_ERR("%s:1: missing column '%s' (the header must name chrom, pos or tss_pos, and strand, "
            "tab-separated)", path, c_chrom < 0 ? "chrom" : c_pos < 0 ? "pos" : "strand");
    return PAI_ERR_INPUT;
  }
  for (int i = 0; i < o->chroms->n; i++)
    if (pai_fasta_chrom_len(fa, o->chroms->v[i]) < 0) {
      PAI_ERR("--chrom %s: no such chromosome in %s", o->chroms->v[i], o->fasta_file);
      return PAI_ERR_INPUT;   /* judged against a file, like every other input check */
    }
  int last = -1;
  for (int r = 0; r < t->n_rows; r++) {
    const long line = t->lineno[r];
    const char *chrom = pai_tsv_get(t, r, c_chrom), *ps = pai_tsv_get(t, r, c_pos),
               *ss = pai_tsv_get(t, r, c_strand);
    if (o->chroms->n) {
      int keep = 0;
      for (int i = 0; i < o->chroms->n && !keep; i++) keep = !strcmp(o->chroms->v[i], chrom);
      if (!keep) continue;
    }
    int64_t pos;
    if (pai_parse_i64(ps, &pos) < 0 || pos < 1) {
      PAI_ERR("%s:%ld: field '%s': '%s' is not a 1-based position (an integer >= 1)", path, line,
              pos_name, ps);
      return PAI_ERR_INPUT;
    }
    const int strand = pai_parse_strand(ss);
    if (!strand) {
      PAI_ERR("%s:%ld: field 'strand': '%s' is not 1, -1, + or -", path, line, ss);
      return PAI_ERR_INPUT;
    }
    if (!chrom[0] || strlen(chrom) >= sizeof in->groups[0].name) {
      PAI_ERR("%s:%ld: field 'chrom' is empty or too long", path, line);
      return PAI_ERR_INPUT;
    }
    int g = group_of(in, fa, chrom, &last);
    if (g < 0) return g;
    chrom_group *G = &in->groups[g];
    if (G->len < 0) {
      PAI_ERR("%s:%ld: chromosome '%s' is not in %s", path, line, chrom, o->fasta_file);
      return PAI_ERR_INPUT;
    }
    if (pos > G->len) {
      PAI_ERR("%s:%ld: field '%s': %lld is past the end of %s (length %lld in %s)", path, line,
              pos_name, (long long)pos, chrom, (long long)G->len, o->fasta_file);
      return PAI_ERR_INPUT;
    }
    if (G->n == G->cap) {
      G->cap = G->cap ? 2 * G->cap : 256;
      tss_row *nr = realloc(G->rows, (size_t)G->cap * sizeof *nr);
      if (!nr) return PAI_ERR_NOMEM;
      G->rows = nr;
    }
    G->rows[G->n++] = (tss_row){pos, line, strand};
  }
  qsort(in->groups, (size_t)in->n_groups, sizeof *in->groups, by_fasta_index);
  for (int i = 0; i < o->chroms->n; i++) {
    int found = 0;
    for (int g = 0; g < in->n_groups && !found; g++) found = !strcmp(in->groups[g].name, o->chroms->v[i]);
    if (!found) PAI_WARN("--chrom %s: no TSS in %s", o->chroms->v[i], path);
  }
  if (in->n_groups == 0) {
    PAI_ERR("%s: no TSS rows%s", path, o->chroms->n ? " on the chromosomes given by --chrom" : "");
    return PAI_ERR_INPUT;
  }
  return 0;
}

/* A relative path is read from the current directory, or else from the table's folder. */
static void resolve_path(const char *table, const char *p, char *out) {
  snprintf(out, PAI_PATH_LEN, "%s", p);
  if (p[0] == '/' || access(p, F_OK) == 0) return;
  const char *slash = strrchr(table, '/');
  if (!slash) return;
  char cand[2 * PAI_PATH_LEN];
  snprintf(cand, sizeof cand, "%.*s/%s", (int)(slash - table), table, p);
  if (strlen(cand) < PAI_PATH_LEN && access(cand, F_OK) == 0) memcpy(out, cand, strlen(cand) + 1);
}

static int parse_tracks(prep_input *in, const pai_prep_opts *o, int open_files) {
  const pai_tsv *t = &in->trk;
  const char *path = o->bigwig_files;
  const char *req[3] = {"fwd", "rev", "xform"};
  int col[3];
  for (int k = 0; k < 3; k++)
    if ((col[k] = pai_tsv_col(t, req[k])) < 0) {
      PAI_ERR("%s:1: missing column '%s' (the header must name fwd, rev and xform, "
              "tab-separated)", path, req[k]);
      return PAI_ERR_INPUT;
    }
  if (t->n_rows == 0) {
    PAI_ERR("%s: no tracks (one row per track expected)", path);
    return PAI_ERR_INPUT;
  }
  const int T = in->T = t->n_rows, c_name = pai_tsv_col(t, "name");
  in->fwd = calloc((size_t)T, sizeof *in->fwd);
  in->rev = calloc((size_t)T, sizeof *in->rev);
  in->names = calloc((size_t)T, sizeof *in->names);
  in->xf_text = calloc((size_t)T, sizeof *in->xf_text);
  in->names_buf = calloc((size_t)T, PAI_PATH_LEN);
  in->xf = calloc((size_t)T, sizeof *in->xf);
  if (!in->fwd || !in->rev || !in->names || !in->xf_text || !in->names_buf || !in->xf)
    return PAI_ERR_NOMEM;
  for (int r = 0; r < T; r++) {
    const long line = t->lineno[r];
    resolve_path(path, pai_tsv_get(t, r, col[0]), in->fwd[r]);
    resolve_path(path, pai_tsv_get(t, r, col[1]), in->rev[r]);
    in->xf_text[r] = pai_tsv_get(t, r, col[2]);
    char why[256];
    if (pai_xform_parse(in->xf_text[r], &in->xf[r], why, sizeof why) < 0) {
      PAI_ERR("%s:%ld: field 'xform': cannot read transform '%s': %s (accepted forms: "
              "docs/preprocess.md)", path, line, in->xf_text[r], why);
      return PAI_ERR_INPUT;
    }
    if (open_files && !pai_xform_nan_is_zero(&in->xf[r]))
      PAI_WARN("%s:%ld: transform '%s' does not map missing data (NaN) to 0: positions without "
               "bigWig data will hold %s", path, line, in->xf_text[r],
               isnan(pai_xform_apply(&in->xf[r], NAN)) ? "NaN" : "a non-zero value");
    /* name: the `name` column, else the extra columns joined with '/', else the fwd file stem */
    char *nm = in->names_buf + (size_t)r * PAI_PATH_LEN;
    if (c_name >= 0) {
      snprintf(nm, PAI_PATH_LEN, "%s", pai_tsv_get(t, r, c_name));
    } else {
      size_t used = 0;
      for (int c = 0; c < t->n_cols; c++) {
        if (c == col[0] || c == col[1] || c == col[2]) continue;
        used += (size_t)snprintf(nm + used, PAI_PATH_LEN - used, "%s%s", used ? "/" : "",
                                 pai_tsv_get(t, r, c));
        if (used >= PAI_PATH_LEN) used = PAI_PATH_LEN - 1;
      }
      if (!used) {
        const char *f = pai_tsv_get(t, r, col[0]), *base = strrchr(f, '/');
        snprintf(nm, PAI_PATH_LEN, "%s", base ? base + 1 : f);
        char *dot = strrchr(nm, '.');
        if (dot && dot != nm) *dot = 0;
      }
    }
    in->names[r] = nm;
    for (int k = 0; k < 2 && open_files; k++) {
      const char *bwp = k ? in->rev[r] : in->fwd[r];
      pai_bigwig *bw;
      int rc = pai_bigwig_open(&bw, bwp);
      if (rc < 0) {
        const int err = errno;   /* pai_bigwig_open's reason for PAI_ERR_IO */
        const char *slash = strrchr(path, '/');
        char also[PAI_PATH_LEN + 32] = "";
        if (rc == PAI_ERR_IO && err == ENOENT && bwp[0] != '/' && slash)
          snprintf(also, sizeof also, "; also looked in %.*s/", (int)(slash - path), path);
        PAI_ERR("%s:%ld: field '%s': cannot open bigWig %s (%s%s)", path, line, req[k], bwp,
                rc == PAI_ERR_IO ? strerror(err) : "not a bigWig file, or damaged", also);
        return rc;
      }
      pai_bigwig_close(bw);
    }
  }
  return 0;
}

/* Rank 0 reads the files and checks everything (opening every bigWig); the other ranks then
 * parse the broadcast bytes the same way, without reopening the bigWigs. */
static int load_inputs(const pai_dist *d, const pai_prep_opts *o, prep_input *in,
                       pai_fasta **fa) {
  int rc = 0;
  char *tss_buf = NULL, *trk_buf = NULL;
  size_t tss_n = 0, trk_n = 0;
  if (d->rank == 0) {
    rc = check_opts(o);
    if (rc == 0) rc = pai_read_file(o->tss_file, "TSS table", &tss_buf, &tss_n);
    if (rc == 0) rc = pai_read_file(o->bigwig_files, "track table", &trk_buf, &trk_n);
    if (rc == 0) rc = pai_fasta_open(fa, o->fasta_file);
  }
  rc = pai_dist_agree(d, rc);
  if (rc == 0) rc = pai_dist_bcast_bytes(d, 0, &tss_buf, &tss_n);
  if (rc == 0) rc = pai_dist_bcast_bytes(d, 0, &trk_buf, &trk_n);
  if (rc < 0) goto done;
  in->track_text = strdup(trk_buf);
  if (!in->track_text) rc = PAI_ERR_NOMEM;
  /* rank 0 first, so that a bad row is reported once; then the others */
  for (int turn = 0; turn < 2; turn++) {
    if ((turn == 0) == (d->rank == 0) && rc == 0) {
      if (d->rank != 0) rc = pai_fasta_open(fa, o->fasta_file);
      if (rc == 0) rc = pai_tsv_parse(&in->tss, o->tss_file, tss_buf);
      else free(tss_buf);
      tss_buf = NULL;
      if (rc == 0) rc = pai_tsv_parse(&in->trk, o->bigwig_files, trk_buf);
      else free(trk_buf);
      trk_buf = NULL;
      if (rc == 0) rc = parse_tss(in, o, *fa);
      pai_tsv_free(&in->tss);   /* the rows are copied into the groups */
      if (rc == 0) rc = parse_tracks(in, o, d->rank == 0);
      if (rc == 0 && d->rank == 0) rc = pai_mkdir_p(o->h5_folder);
    }
    rc = pai_dist_agree(d, rc);
    if (rc < 0) break;
  }
done:
  free(tss_buf);
  free(trk_buf);
  return rc;
}

/* ---- step 2: plan, fingerprints, housekeeping -------------------------------------------------- */

/* What every shard's contents depend on besides its own rows. */
static uint64_t common_fingerprint(const pai_prep_opts *o, const prep_input *in) {
  uint64_t h = PAI_FNV_INIT;
  const int64_t v[3] = {1 /* format */, o->input_length, o->output_length};
  h = pai_fnv(h, v, sizeof v);
  h = pai_fnv_str(h, o->y_dtype);
  h = pai_fnv_str(h, in->track_text);   /* transforms, names, metadata (stored in every shard) */
  h = pai_fnv_file(h, o->fasta_file);
  for (int t = 0; t < in->T; t++) h = pai_fnv_file(pai_fnv_file(h, in->fwd[t]), in->rev[t]);
  return h;
}

static void shard_name(const chrom_group *g, const pai_shard_part *p, char *out, size_t n) {
  char safe[sizeof g->name];
  snprintf(safe, sizeof safe, "%s", g->name);
  for (char *c = safe; *c; c++)
    if (*c == '/') *c = '_';
  if (p->n_parts == 1) snprintf(out, n, "%s.h5", safe);
  else snprintf(out, n, "%s.part%d.h5", safe, p->part);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* 1 when `file` is a shard name of group g: "<chrom>.h5" or "<chrom>.part<k>.h5". */
static int is_shard_of(const char *file, const chrom_group *g) {
  pai_shard_part whole = {0, 0, 1, 0, 0, 0};
  char name[PAI_PATH_LEN];
  shard_name(g, &whole, name, sizeof name);   /* "<safe chrom>.h5" */
  const size_t stem = strlen(name) - 3;
  if (strncmp(file, name, stem)) return 0;
  const char *rest = file + stem;
  if (!strcmp(rest, ".h5")) return 1;
  if (strncmp(rest, ".part", 5)) return 0;
  rest += 5;
  if (!*rest || *rest == '.') return 0;
  while (*rest >= '0' && *rest <= '9') rest++;
  return !strcmp(rest, ".h5");
}

/* Rank 0, before any shard is built:
 *  - reads the previous manifest and removes it, so that a folder whose run did not finish has no
 *    manifest (a manifest always describes complete shards);
 *  - deletes leftover temporary files (*.h5.tmp, manifest.tsv.tmp);
 *  - deletes shards of this run's chromosomes that this plan does not name (left by a run with
 *    another rank count, finished or not): a trainer globbing the folder would read them twice;
 *  - keeps the previous manifest's rows for chromosomes outside this run, if their files exist. */
static int housekeeping(const pai_prep_opts *o, const prep_input *in, const pai_shard_part *parts,
                        int n_parts, char ***kept, int *n_kept) {
  char path[2 * PAI_PATH_LEN];
  *kept = NULL;
  *n_kept = 0;
  snprintf(path, sizeof path, "%s/manifest.tsv", o->h5_folder);
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0;
  int header_seen = 0;
  for (ssize_t len; f && (len = getline(&line, &cap, f)) >= 0;) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (line[0] == '#' || !line[0]) continue;
    if (!header_seen) {   /* "file\tchrom\t..." */
      header_seen = 1;
      continue;
    }
    char *copy = strdup(line), *fields[2] = {NULL, NULL};
    if (!copy) break;
    if (pai_split_tabs(copy, fields, 2) >= 2 && !strchr(fields[0], '/')) {
      int ours = 0;
      for (int g = 0; g < in->n_groups && !ours; g++) ours = !strcmp(in->groups[g].name, fields[1]);
      char file[3 * PAI_PATH_LEN];
      snprintf(file, sizeof file, "%s/%s", o->h5_folder, fields[0]);
      if (!ours && access(file, R_OK) == 0) {
        char **nk = realloc(*kept, (size_t)(*n_kept + 1) * sizeof *nk);
        if (nk) {
          *kept = nk;
          nk[(*n_kept)++] = strdup(line);
        }
      }
    }
    free(copy);
  }
  free(line);
  if (f) {
    fclose(f);
    if (unlink(path) != 0) {
      PAI_ERR("cannot remove the previous %s: %s", path, strerror(errno));
      return PAI_ERR_IO;
    }
  }
  DIR *dir = opendir(o->h5_folder);
  if (!dir) {
    PAI_ERR("cannot list %s: %s", o->h5_folder, strerror(errno));
    return PAI_ERR_IO;
  }
  for (struct dirent *e; (e = readdir(dir));) {
    const char *n = e->d_name;
    int stale = ends_with(n, ".h5.tmp") || !strcmp(n, "manifest.tsv.tmp");
    if (!stale && ends_with(n, ".h5")) {
      int of_ours = 0, planned = 0;
      for (int g = 0; g < in->n_groups && !of_ours; g++) of_ours = is_shard_of(n, &in->groups[g]);
      for (int i = 0; i < n_parts && of_ours && !planned; i++) {
        char name[PAI_PATH_LEN];
        shard_name(&in->groups[parts[i].group], &parts[i], name, sizeof name);
        planned = !strcmp(name, n);
      }
      stale = of_ours && !planned;
    }
    if (!stale) continue;
    snprintf(path, sizeof path, "%s/%s", o->h5_folder, n);
    if (unlink(path) == 0) PAI_INFO("removed %s (a leftover, or not part of this run's plan)", path);
  }
  closedir(dir);
  return 0;
}

/* Two chromosomes must not share a file name ("a/b" and "a_b", or "X.part0" and part 0 of X). */
static int check_names_unique(const prep_input *in, const pai_shard_part *parts, int n_parts) {
  for (int i = 0; i < n_parts; i++) {
    char a[PAI_PATH_LEN], b[PAI_PATH_LEN];
    shard_name(&in->groups[parts[i].group], &parts[i], a, sizeof a);
    for (int j = 0; j < i; j++) {
      shard_name(&in->groups[parts[j].group], &parts[j], b, sizeof b);
      if (!strcmp(a, b)) {
        PAI_ERR("chromosomes '%s' and '%s' would both be written to %s: rename one in the TSS "
                "table and FASTA", in->groups[parts[i].group].name, in->groups[parts[j].group].name, a);
        return PAI_ERR_INPUT;
      }
    }
  }
  return 0;
}

/* ---- step 3: samples ------------------------------------------------------------------------------ */

typedef struct {
  const pai_prep_opts *o;
  const prep_input *in;
  pai_fasta *fa;
  pai_bigwig **bw;      /* [2T]: fwd of track t at 2t, rev at 2t + 1; opened on first use */
  char *seq;            /* [S_in] */
  uint8_t *x;           /* [S_in] */
  float *stage;         /* [T][S_out] track-major staging */
  float *y;             /* [S_out][T], when storing float32 */
  uint16_t *y16;        /* [S_out][T], when storing float16 */
  char *warned;         /* [2T] name of the last chromosome warned about, per file */
  int f16;              /* /y stored as float16 */
} worker;

static int worker_bigwig(worker *w, int k, pai_bigwig **out) {
  if (!w->bw[k]) {
    const char *path = k % 2 ? w->in->rev[k / 2] : w->in->fwd[k / 2];
    int rc = pai_bigwig_open(&w->bw[k], path);
    if (rc < 0) {
      PAI_ERR("cannot open bigWig %s (%s)", path,
              rc == PAI_ERR_INPUT ? "not a bigWig file" : strerror(errno));
      return rc;
    }
  }
  *out = w->bw[k];
  return 0;
}

/* One sample in transcript orientation: w->x, and w->y (float32) or w->y16 (float16 bits),
 * position-major [S_out][T]. Each track is first filled contiguously into w->stage [T][S_out]
 * (the bigWig runs are written as plain memory runs), then one blocked pass transposes, reverses
 * (- strand) and converts; writing the [S_out][T] layout track by track would stride through
 * S_out * T * 4 bytes once per track. */
static int build_sample(worker *w, const chrom_group *g, const tss_row *r, const int *has_chrom) {
  const int64_t S_in = w->o->input_length, S_out = w->o->output_length, p = r->pos - 1;
  const int T = w->in->T;
  const int f16 = w->f16;
  PAI_TRY(pai_fasta_window(w->fa, g->name, p - S_in / 2, S_in, w->seq));
  pai_encode(w->x, w->seq, (size_t)S_in);
  if (r->strand < 0) pai_revcomp_codes(w->x, (size_t)S_in);
  for (int t = 0; t < T; t++) {
    const int k = 2 * t + (r->strand < 0);
    float *st = w->stage + (size_t)t * S_out;
    if (!has_chrom[k]) {   /* the file lacks this chromosome: zeros (warned once) */
      memset(st, 0, (size_t)S_out * sizeof *st);
      continue;
    }
    pai_bigwig *bw;
    PAI_TRY(worker_bigwig(w, k, &bw));
    PAI_TRY(pai_bigwig_fill(bw, g->name, g->len, p - S_out / 2, S_out, &w->in->xf[t], st, 1));
  }
  enum { QB = 1024 };   /* 1024 positions x T outputs stay in L2; 4 KiB runs per track read */
  for (int64_t q0 = 0; q0 < S_out; q0 += QB) {
    const int64_t q1 = q0 + QB < S_out ? q0 + QB : S_out;
    for (int t = 0; t < T; t++) {
      const float *st = w->stage + (size_t)t * S_out;
      for (int64_t q = q0; q < q1; q++) {
        /* - strand: output position q reads genome-order position S_out - 1 - q */
        const float v = st[r->strand > 0 ? q : S_out - 1 - q];
        if (!f16) {
          w->y[q * T + t] = v;
        } else if (!pai_f16_overflows(v)) {
          w->y16[q * T + t] = pai_f32_to_f16(v);
        } else {
          const int64_t gpos = r->strand > 0 ? p - S_out / 2 + q : p + S_out / 2 - 1 - q;
          PAI_ERR("%s:%lld (track %d '%s' of %s, TSS on line %ld of %s): transformed value %g "
                  "does not fit in float16 (max 65504); use --y_dtype float32 or a compressing "
                  "transform", g->name, (long long)gpos + 1, t + 1, w->in->names[t],
                  w->o->bigwig_files, r->line, w->o->tss_file, v);
          return PAI_ERR_INPUT;
        }
      }
    }
  }
  return 0;
}

static int build_shard(worker *w, const chrom_group *g, const pai_shard_part *part,
                       const char *path, const char *name, const char *fingerprint) {
  const pai_prep_opts *o = w->o;
  const prep_input *in = w->in;
  const int T = in->T;
  int rc = 0;
  int *has_chrom = calloc((size_t)(2 * T), sizeof *has_chrom);
  if (!has_chrom) return PAI_ERR_NOMEM;
  int has_strand[2] = {0, 0};   /* [0]: + strand rows, [1]: - strand rows */
  for (int64_t i = 0; i < part->count; i++) has_strand[g->rows[part->first + i].strand < 0] = 1;
  for (int k = 0; k < 2 * T; k++) {
    pai_bigwig *bw;
    if (!has_strand[k % 2]) continue;   /* only the files this part reads */
    PAI_CHECK(worker_bigwig(w, k, &bw));
    has_chrom[k] = pai_bigwig_chrom_len(bw, g->name) >= 0;
    char *warned = w->warned + (size_t)k * PAI_NAME_LEN * 4;
    if (!has_chrom[k] && strcmp(warned, g->name)) {
      PAI_WARN("%s has no chromosome %s: track %d ('%s') is 0 on %s strand TSSs there",
               pai_bigwig_path(bw), g->name, k / 2 + 1, in->names[k / 2], k % 2 ? "-" : "+");
      snprintf(warned, PAI_NAME_LEN * 4, "%s", g->name);
    }
  }
  pai_shard_meta m = {
      .chrom = g->name, .part = part->part, .n_parts = part->n_parts,
      .n_samples = part->count, .input_length = o->input_length,
      .output_length = o->output_length, .n_tracks = T,
      .y_f16 = w->f16, .deflate = o->deflate,
      .chunk_positions = o->chunk_positions, .track_names = in->names, .xforms = in->xf_text,
      .tss_file = o->tss_file, .fasta_file = o->fasta_file, .bigwig_files = o->bigwig_files,
      .track_table = in->track_text, .fingerprint = fingerprint};
  pai_shard_writer *sw = NULL;
  PAI_CHECK(pai_shard_create(&sw, path, &m));
  const double t0 = pai_now_s();
  double last = t0;
  for (int64_t i = 0; i < part->count; i++) {
    const tss_row *r = &g->rows[part->first + i];
    PAI_CHECK(build_sample(w, g, r, has_chrom));
    PAI_CHECK(pai_shard_put(sw, i, w->x, m.y_f16 ? (const void *)w->y16 : (const void *)w->y,
                            r->pos, r->strand, r->line));
    const double now = pai_now_s();
    if (now - last >= 10.0) {
      last = now;
      PAI_INFO("%s: %lld/%lld samples, %.1f samples/s", name, (long long)i + 1,
               (long long)part->count, (i + 1) / (now - t0));
    }
  }
  rc = pai_shard_commit(sw);
  sw = NULL;
  if (rc == 0) {
    const double dt = pai_now_s() - t0;
    PAI_INFO("%s: %lld samples in %.1f s (%.1f samples/s)", name, (long long)part->count, dt,
             part->count / (dt > 0 ? dt : 1e-9));
  }
fail:
  pai_shard_abort(sw);
  free(has_chrom);
  return rc;
}

/* Lifts the open-file limit to its hard maximum: a rank keeps 2 T bigWigs open. */
static void raise_file_limit(int need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)need) return;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need ? (rlim_t)need : rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

static int run_my_parts(const pai_dist *d, const pai_prep_opts *o, const prep_input *in,
                        pai_fasta *fa, const pai_shard_part *parts, int n_parts, uint64_t common,
                        int64_t counts[3]) {
  const int64_t S_in = o->input_length, S_out = o->output_length;
  const int T = in->T;
  int rc = 0;
  raise_file_limit(2 * T + 64);
  worker w = {.o = o, .in = in, .fa = fa};
  w.bw = calloc((size_t)(2 * T), sizeof *w.bw);
  w.seq = malloc((size_t)S_in);
  w.x = malloc((size_t)S_in);
  const int f16 = w.f16 = !strcmp(o->y_dtype, "float16");
  w.stage = malloc((size_t)(S_out * T) * sizeof *w.stage);
  w.y = f16 ? NULL : malloc((size_t)(S_out * T) * sizeof *w.y);
  w.y16 = f16 ? malloc((size_t)(S_out * T) * sizeof *w.y16) : NULL;
  w.warned = calloc((size_t)(2 * T), PAI_NAME_LEN * 4);
  if (!w.bw || !w.seq || !w.x || !w.stage || (!w.y && !w.y16) || !w.warned) {
    PAI_ERR("out of memory for one sample's buffers (%lld bytes)",
            (long long)(2 * S_in + (f16 ? 6 : 8) * S_out * T));
    rc = PAI_ERR_NOMEM;
    goto fail;
  }
  for (int i = 0; i < n_parts; i++) {
    const pai_shard_part *p = &parts[i];
    if (p->rank != d->rank) continue;
    const chrom_group *g = &in->groups[p->group];
    char name[PAI_PATH_LEN], path[2 * PAI_PATH_LEN + 8], fp[32];
    shard_name(g, p, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", o->h5_folder, name);
    uint64_t h = pai_fnv_str(common, g->name);
    h = pai_fnv(h, (const int64_t[]){p->part, p->n_parts}, 2 * sizeof(int64_t));
    for (int64_t k = 0; k < p->count; k++) {
      const tss_row *r = &g->rows[p->first + k];
      const int64_t v[3] = {r->pos, r->strand, r->line};
      h = pai_fnv(h, v, sizeof v);
    }
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h);
    if (!o->force && pai_shard_is_current(path, fp, p->count, S_in, S_out, T)) {
      PAI_INFO("%s: up to date (%lld samples), kept", name, (long long)p->count);
      counts[1]++;
      continue;
    }
    PAI_CHECK(build_shard(&w, g, p, path, name, fp));
    counts[0]++;
    counts[2] += p->count;
  }
fail:
  for (int k = 0; w.bw && k < 2 * T; k++) pai_bigwig_close(w.bw[k]);
  free(w.bw);
  free(w.seq);
  free(w.x);
  free(w.stage);
  free(w.y);
  free(w.y16);
  free(w.warned);
  return rc;
}

/* ---- step 4: the manifest ----------------------------------------------------------------------- */

static int write_manifest(const pai_dist *d, const pai_prep_opts *o, const prep_input *in,
                          const pai_shard_part *parts, int n_parts, int64_t total,
                          char *const *kept, int n_kept) {
  char path[PAI_PATH_LEN + 16], tmp[PAI_PATH_LEN + 32];
  snprintf(path, sizeof path, "%s/manifest.tsv", o->h5_folder);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    PAI_ERR("cannot write %s: %s", tmp, strerror(errno));
    return PAI_ERR_IO;
  }
  fprintf(f, "# ppreprocess manifest (docs/preprocess.md)\n");
  fprintf(f, "# format_version = 1\n# created_by = ppreprocess %s\n", PAI_VERSION);
  fprintf(f, "# input_length = %d\n# output_length = %d\n", o->input_length, o->output_length);
  fprintf(f, "# y_dtype = %s\n# deflate = %d\n# chunk_positions = %d\n", o->y_dtype, o->deflate,
          o->chunk_positions);
  fprintf(f, "# tss_file = %s\n# fasta_file = %s\n# bigwig_files = %s\n", o->tss_file,
          o->fasta_file, o->bigwig_files);
  fprintf(f, "# n_tracks = %d\n# track_names =", in->T);
  for (int t = 0; t < in->T; t++) fprintf(f, "%c%s", t ? '\t' : ' ', in->names[t]);
  fprintf(f, "\n# xforms =");
  for (int t = 0; t < in->T; t++) fprintf(f, "%c%s", t ? '\t' : ' ', in->xf_text[t]);
  int64_t kept_samples = 0;
  for (int i = 0; i < n_kept; i++) {
    const char *last = kept[i] ? strrchr(kept[i], '\t') : NULL;
    kept_samples += last ? atoll(last + 1) : 0;
  }
  fprintf(f, "\n# ranks = %d\n# n_shards = %d\n# n_samples = %lld\n", d->size, n_parts + n_kept,
          (long long)(total + kept_samples));
  if (n_kept)
    fprintf(f, "# carried_over = %d shards of chromosomes outside this run's --chrom, from the "
            "previous manifest\n", n_kept);
  fprintf(f, "file\tchrom\tpart\tn_parts\tn_samples\n");
  for (int i = 0; i < n_parts; i++) {
    char name[PAI_PATH_LEN];
    const chrom_group *g = &in->groups[parts[i].group];
    shard_name(g, &parts[i], name, sizeof name);
    fprintf(f, "%s\t%s\t%d\t%d\t%lld\n", name, g->name, parts[i].part, parts[i].n_parts,
            (long long)parts[i].count);
  }
  for (int i = 0; i < n_kept; i++)
    if (kept[i]) fprintf(f, "%s\n", kept[i]);
  /* complete and on disk before it takes the final name */
  int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
  if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
    PAI_ERR("cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    return PAI_ERR_IO;
  }
  return 0;
}

int pai_preprocess_run(const pai_dist *d, const pai_prep_opts *o) {
  prep_input in;
  memset(&in, 0, sizeof in);
  pai_fasta *fa = NULL;
  pai_shard_part *parts = NULL;
  int64_t *counts = NULL;
  char **kept = NULL;   /* manifest rows carried over from the previous run (--chrom) */
  int n_parts = 0, n_kept = 0, rc = 0;
  const double t0 = pai_now_s();
#ifdef __GLIBC__
  /* zlib allocates ~300 KB of state for every chunk HDF5 compresses; with glibc's default
   * thresholds each of those is returned to the kernel and faulted back in (perf: 18% of the run
   * in the kernel before, 9% after). Keeping freed memory in the heap costs a few MB. */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  rc = pai_bigwig_init();
  rc = pai_dist_agree(d, rc);
  if (rc == 0) rc = load_inputs(d, o, &in, &fa);
  if (rc < 0) goto done;

  counts = calloc((size_t)in.n_groups, sizeof *counts);
  if (!counts) rc = PAI_ERR_NOMEM;
  int64_t total = 0;
  for (int g = 0; g < in.n_groups && counts; g++) total += counts[g] = in.groups[g].n;
  if (rc == 0) rc = pai_shard_plan(counts, in.n_groups, d->size, &parts, &n_parts);
  if (rc == 0 && d->rank == 0) {
    int64_t max_load = 0, *load = calloc((size_t)d->size, sizeof *load);
    for (int i = 0; load && i < n_parts; i++) load[parts[i].rank] += parts[i].count;
    for (int r = 0; load && r < d->size; r++) max_load = load[r] > max_load ? load[r] : max_load;
    free(load);
    PAI_INFO("%lld TSSs on %d chromosomes, %d tracks, windows %d / %d bp -> %d shards over %d "
             "rank%s (at most %lld samples per rank)", (long long)total, in.n_groups, in.T,
             o->input_length, o->output_length, n_parts, d->size, d->size > 1 ? "s" : "",
             (long long)max_load);
    rc = check_names_unique(&in, parts, n_parts);
    if (rc == 0) rc = housekeeping(o, &in, parts, n_parts, &kept, &n_kept);
  }
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;

  int64_t mine[3] = {0, 0, 0}, all[3];   /* shards built, shards kept, samples built */
  rc = run_my_parts(d, o, &in, fa, parts, n_parts, common_fingerprint(o, &in), mine);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  rc = pai_dist_sum_i64(d, mine, all, 3);
  if (rc == 0 && d->rank == 0) {
    rc = write_manifest(d, o, &in, parts, n_parts, total, kept, n_kept);
    if (rc == 0) {
      const double dt = pai_now_s() - t0;
      PAI_INFO("done: %d shards (%lld built, %lld up to date), %lld samples built in %.1f s "
               "(%.1f samples/s overall); manifest %s/manifest.tsv", n_parts, (long long)all[0],
               (long long)all[1], (long long)all[2], dt, all[2] / (dt > 0 ? dt : 1e-9),
               o->h5_folder);
    }
  }
  rc = pai_dist_agree(d, rc);
done:
  for (int i = 0; i < n_kept; i++) free(kept[i]);
  free(kept);
  free(parts);
  free(counts);
  pai_fasta_close(fa);
  input_free(&in);
  return rc;
}
