/* score.c - see score.h. */
#include "model/score.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <htslib/bgzf.h>
#include <htslib/kstring.h>

#include "model/forward.h"
#include "model/seq.h"
#include "model/vartable.h"
#include "mpi/log.h"
#include "preprocess/fasta.h"
#include "preprocess/tsv.h"

typedef enum {
  SCORED = 0,
  BAD_CHROM,
  BAD_POS,
  BAD_REF_EMPTY,
  BAD_REF_MISMATCH,
  BAD_ALT,
  N_OUTCOMES
} outcome;

static const char *const outcome_text[N_OUTCOMES] = {
    "scored", "chromosome not in the FASTA", "pos beyond the chromosome end", "ref empty or '-'",
    "ref does not match the genome", "alt not A/C/G/T"};

void pai_score_output_path(const char *var_file, const char *model_folder, char *out,
                           size_t out_len) {
  char model_name[PAI_PATH_LEN];
  pai_folder_name(model_folder, model_name, sizeof model_name);
  const char *slash = strrchr(var_file, '/');
  const char *name = slash ? slash + 1 : var_file;
  int dir_len = slash ? (int)(slash - var_file + 1) : 0;
  /* pathlib: the suffix is the last ".xxx" of the name, unless the dot leads or ends it */
  const char *dot = strrchr(name, '.');
  if (dot && (dot == name || dot[1] == 0)) dot = NULL;
  int stem_len = dot ? (int)(dot - name) : (int)strlen(name);
  snprintf(out, out_len, "%.*s%.*s.%s%s", dir_len, var_file, stem_len, name, model_name,
           dot ? dot : "");
}

double pai_score_from_raw(double raw) {
  /* numpy: rint(x * 10^4) / 10^4, rint rounding half to even in the current (default) mode */
  return tanh(nearbyint(raw * 1e4) / 1e4) + 0.0;   /* + 0.0 turns -0 into 0 */
}

/* Everything one batch needs, allocated once. */
typedef struct {
  int cap;                 /* variants per batch */
  pai_variant *rows;       /* [cap] */
  outcome *why;            /* [cap] */
  double *raw;             /* [cap] */
  char *ref_win, *alt_win; /* (L) scratch */
  uint8_t *codes;          /* (2 * cap, L): ref and alt of each scorable variant */
  int *seq_of;             /* [cap]: index of the variant's ref sequence, or -1 */
  float *out;              /* (2 * cap, O, T0) */
} batch_buf;

/* Builds the ref and alt sequences of v into codes (2 rows of L); returns an outcome. */
static int prepare_variant(pai_fasta *fa, const pai_variant *v, int L, char *ref_win,
                           char *alt_win, uint8_t *codes, outcome *why) {
  const size_t ref_len = strlen(v->ref), alt_len = strlen(v->alt);
  const int64_t chrom_len = pai_fasta_chrom_len(fa, v->chrom);
  if (chrom_len < 0) {
    *why = BAD_CHROM;
    return 0;
  }
  if (v->pos > chrom_len) {
    *why = BAD_POS;
    return 0;
  }
  if (ref_len == 0 || !strcmp(v->ref, "-")) {
    *why = BAD_REF_EMPTY;
    return 0;
  }
  if (!pai_is_acgt(v->alt, alt_len)) {
    *why = BAD_ALT;
    return 0;
  }
  const int64_t p = v->pos - 1;
  PAI_TRY(pai_fasta_window(fa, v->chrom, p - L / 2, L, ref_win));
  if ((size_t)L / 2 + ref_len > (size_t)L || strncasecmp(ref_win + L / 2, v->ref, ref_len) != 0) {
    *why = BAD_REF_MISMATCH;
    return 0;
  }
  /* alt = window[0, L/2) + alt + window[L/2 + len(ref), L), then N-padded / truncated to L */
  memset(alt_win, 'N', (size_t)L);
  size_t n = (size_t)L / 2;
  memcpy(alt_win, ref_win, n);
  size_t take = alt_len < (size_t)L - n ? alt_len : (size_t)L - n;
  memcpy(alt_win + n, v->alt, take);
  n += take;
  size_t tail = (size_t)L - (size_t)L / 2 - ref_len;   /* window bases after the ref allele */
  if (tail > (size_t)L - n) tail = (size_t)L - n;
  memcpy(alt_win + n, ref_win + L / 2 + ref_len, tail);
  pai_encode(codes, ref_win, (size_t)L);
  pai_encode(codes + L, alt_win, (size_t)L);
  if (v->strand < 0) {
    pai_revcomp_codes(codes, (size_t)L);
    pai_revcomp_codes(codes + L, (size_t)L);
  }
  *why = SCORED;
  return 0;
}

int pai_variant_codes(pai_fasta *fa, const pai_variant *v, int L, char *ref_win, char *alt_win,
                      uint8_t *codes, const char **why) {
  outcome o = SCORED;
  PAI_TRY(prepare_variant(fa, v, L, ref_win, alt_win, codes, &o));
  *why = o == SCORED ? NULL : outcome_text[o];
  return 0;
}

static void batch_free(batch_buf *b) {
  if (b->rows)
    for (int i = 0; i < b->cap; i++) pai_variant_free(&b->rows[i]);
  free(b->rows);
  free(b->why);
  free(b->raw);
  free(b->ref_win);
  free(b->alt_win);
  free(b->codes);
  free(b->seq_of);
  free(b->out);
  memset(b, 0, sizeof *b);
}

static int batch_init(batch_buf *b, int cap, int L, int O, int T) {
  memset(b, 0, sizeof *b);
  b->cap = cap;
  b->rows = calloc((size_t)cap, sizeof *b->rows);
  b->why = calloc((size_t)cap, sizeof *b->why);
  b->raw = calloc((size_t)cap, sizeof *b->raw);
  b->ref_win = malloc((size_t)L);
  b->alt_win = malloc((size_t)L);
  b->codes = malloc((size_t)2 * cap * L);
  b->seq_of = calloc((size_t)cap, sizeof *b->seq_of);
  b->out = malloc((size_t)2 * cap * O * T * sizeof(float));
  if (!b->rows || !b->why || !b->raw || !b->ref_win || !b->alt_win || !b->codes || !b->seq_of ||
      !b->out) {
    batch_free(b);
    PAI_ERR("cannot allocate a batch of %d variants (lower --batch_size)", cap);
    return PAI_ERR_NOMEM;
  }
  return 0;
}

/* The output table: plain text, or bgzip (which gzip reads) when its name ends in ".gz", as
 * pandas' to_csv compresses by the name's suffix in the published code. */
typedef struct {
  FILE *f;
  BGZF *bg;
} sink;

static int name_ends(const char *path, const char *suffix) {
  const size_t n = strlen(path), k = strlen(suffix);
  return n > k && !strcasecmp(path + n - k, suffix);
}

static int sink_open(sink *s, const char *path, int gz) {
  memset(s, 0, sizeof *s);
  if (gz) s->bg = bgzf_open(path, "w");
  else s->f = fopen(path, "w");
  return s->f || s->bg ? 0 : -1;
}

/* htslib's own "[E::bgzf_flush] ..." lines are silenced: the caller reports a failure once */
static int sink_write(sink *s, const kstring_t *k) {
  if (s->bg) {
    const int old = pai_hts_quiet();
    const int ok = bgzf_write(s->bg, k->s, k->l) == (ssize_t)k->l;
    pai_hts_restore(old);
    return ok ? 0 : -1;
  }
  return fwrite(k->s, 1, k->l, s->f) == k->l ? 0 : -1;
}

/* Closes s; 0 when everything reached the file. */
static int sink_close(sink *s) {
  int rc = 0;
  if (s->bg) {
    const int old = pai_hts_quiet();
    rc = bgzf_close(s->bg);
    pai_hts_restore(old);
  }
  if (s->f) rc = (fflush(s->f) != 0 || ferror(s->f)) | (fclose(s->f) != 0) ? -1 : 0;
  memset(s, 0, sizeof *s);
  return rc;
}

/* One output row into k: the input fields, with an existing `score` (and, with --raw, `raw`)
 * column replaced in place as the published pandas code does, and missing ones appended. */
static void format_row(kstring_t *k, const char *text, const pai_vartable *vt, const char *score,
                       const char *raw) {
  k->l = 0;
  int col = 0;
  for (const char *p = text;; col++) {
    const char *tab = strchr(p, '\t');
    const size_t len = tab ? (size_t)(tab - p) : strlen(p);
    if (col) kputc('\t', k);
    if (col == vt->score_col) kputs(score, k);
    else if (raw && col == vt->raw_col) kputs(raw, k);
    else kputsn(p, len, k);
    if (!tab) break;
    p = tab + 1;
  }
  if (vt->score_col < 0) ksprintf(k, "\t%s", score);
  if (raw && vt->raw_col < 0) ksprintf(k, "\t%s", raw);
  kputc('\n', k);
}

/* The temporary output, removed if the run is interrupted (SIGINT, SIGTERM, SIGHUP: Ctrl-C,
 * a scheduler's kill) so that nothing is left behind; unlink is async-signal-safe. Signals the
 * caller ignores (nohup's SIGHUP) stay ignored. */
static char interrupted_tmp[PAI_PATH_LEN + 32];
static const int guarded[3] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction before[3];
static int guarding;

static void remove_tmp_and_die(int sig) {
  unlink(interrupted_tmp);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* path: guard it; NULL: put the earlier handlers back. */
static void guard_tmp(const char *path) {
  if (path && !guarding) {
    snprintf(interrupted_tmp, sizeof interrupted_tmp, "%s", path);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remove_tmp_and_die;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) {
      sigaction(guarded[i], NULL, &before[i]);
      if (before[i].sa_handler != SIG_IGN) sigaction(guarded[i], &sa, NULL);
    }
    guarding = 1;
  } else if (!path && guarding) {
    for (int i = 0; i < 3; i++) sigaction(guarded[i], &before[i], NULL);
    guarding = 0;
  }
}

/* An allele as a warning shows it: quoted when it is empty or holds white space, which would
 * otherwise be invisible ("ref does not match the genome (chr1:1000 A >G)"). */
static const char *shown(const char *allele, char *buf, size_t n) {
  if (allele[0] && !strpbrk(allele, " \t\r\v\f")) return allele;
  snprintf(buf, n, "'%s'", allele);
  return buf;
}

/* The output must be a new file name or a file other than the variant file. */
static int check_output_path(const char *out_path, const char *var_file) {
  static const char *const other[] = {".bz2", ".xz", ".zip", ".zst"};   /* pandas would use */
  for (int i = 0; i < 4; i++)
    if (name_ends(out_path, other[i])) {
      PAI_ERR("output %s: %s compression is not written here; name it .gz (bgzip) or give no "
              "compression suffix", out_path, other[i] + 1);
      return PAI_ERR_USAGE;
    }
  struct stat out_st, in_st;
  if (stat(out_path, &out_st) != 0) return 0;
  if (S_ISDIR(out_st.st_mode)) {
    PAI_ERR("output %s is a directory (--output takes a file name)", out_path);
    return PAI_ERR_USAGE;
  }
  if (stat(var_file, &in_st) == 0 && in_st.st_dev == out_st.st_dev &&
      in_st.st_ino == out_st.st_ino) {
    PAI_ERR("output %s is the variant file itself: choose another --output", out_path);
    return PAI_ERR_USAGE;
  }
  return 0;
}

/* A hint for a chromosome the FASTA lacks when it has the name with or without "chr". */
static void chrom_hint(pai_fasta *fa, const char *chrom, char *hint, size_t n) {
  char other[PAI_PATH_LEN];
  if (!strncmp(chrom, "chr", 3)) snprintf(other, sizeof other, "%s", chrom + 3);
  else snprintf(other, sizeof other, "chr%s", chrom);
  if (other[0] && pai_fasta_chrom_len(fa, other) >= 0)
    snprintf(hint, n, "; the FASTA has '%s' but not '%s': do the files name chromosomes "
             "differently?", other, chrom);
}

int pai_score_run(const pai_score_opts *o) {
  int rc = 0;
  pai_model model = {0};
  pai_infer inf = {0};
  pai_fasta *fa = NULL;
  pai_vartable vt = {0};
  batch_buf b = {0};
  sink out = {0};
  kstring_t row = {0, 0, NULL};
  char out_path[PAI_PATH_LEN], tmp_path[PAI_PATH_LEN + 32], hint[PAI_PATH_LEN + 128] = "";
  tmp_path[0] = 0;

  if (o->input_length < 2 || o->input_length % 2) {
    PAI_ERR("--input_length %d: must be even and positive", o->input_length);
    return PAI_ERR_USAGE;
  }
  if (o->batch_size < 1) {
    PAI_ERR("--batch_size %d: must be >= 1", o->batch_size);
    return PAI_ERR_USAGE;
  }
  if (o->output && o->output[0])
    snprintf(out_path, sizeof out_path, "%s", o->output);
  else
    pai_score_output_path(o->var_file, o->model_folder, out_path, sizeof out_path);
  PAI_TRY(check_output_path(out_path, o->var_file));
  PAI_CHECK(pai_model_load(&model, o->model_folder));
  const pai_config *c = &model.cfg;
  if (o->input_length != c->input_length) {
    PAI_ERR("--input_length %d does not match the model's input_length %d (%s/model.h5)",
            o->input_length, c->input_length, o->model_folder);
    rc = PAI_ERR_USAGE;
    goto fail;
  }
  PAI_CHECK(pai_vartable_open(&vt, o->var_file));
  PAI_CHECK(pai_fasta_open(&fa, o->fasta_file));
  const int L = c->input_length, O = c->output_length, T = c->output_dims[0];
  PAI_CHECK(pai_infer_init(&inf, &model, 2 * o->batch_size, PAI_HEAD(0), &o->backend));
  PAI_CHECK(batch_init(&b, o->batch_size, L, O, T));

  snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", out_path, (long)getpid());
  guard_tmp(tmp_path);
  if (sink_open(&out, tmp_path, pai_name_is_gz(out_path)) != 0) {
    PAI_ERR("cannot write output %s: %s", tmp_path, strerror(errno));
    tmp_path[0] = 0;
    rc = PAI_ERR_IO;
    goto fail;
  }
  ksprintf(&row, "%s%s%s\n", vt.header, vt.score_col < 0 ? "\tscore" : "",
           o->raw && vt.raw_col < 0 ? "\traw" : "");
  int werr = sink_write(&out, &row);

  const long total = pai_count_lines(o->var_file) - 1;   /* for progress lines */
  long counts[N_OUTCOMES] = {0}, done = 0;
  const double t0 = pai_now_s();
  double last_report = t0;
  PAI_INFO("scoring %s with %s (%d blocks, D %d, L %d), batch %d, %d thread(s), device %s",
           o->var_file, o->model_folder, c->num_blocks, c->model_dim, L, o->batch_size,
           pai_get_threads(), pai_device_name(o->backend.device));
  for (;;) {
    int n = 0, n_seq = 0;
    while (n < b.cap) {
      int got = pai_vartable_next(&vt, &b.rows[n]);
      if (got < 0) {
        rc = got;
        goto fail;
      }
      if (got == 0) break;
      uint8_t *codes = b.codes + (size_t)n_seq * L;
      PAI_CHECK(prepare_variant(fa, &b.rows[n], L, b.ref_win, b.alt_win, codes, &b.why[n]));
      b.seq_of[n] = b.why[n] == SCORED ? n_seq : -1;
      if (b.why[n] == SCORED) n_seq += 2;
      n++;
    }
    if (n == 0) break;
    if (n_seq) {
      float *outs[1] = {b.out};
      PAI_CHECK(pai_infer_forward(&inf, b.codes, n_seq, outs));
    }
    for (int i = 0; i < n; i++) {
      const pai_variant *v = &b.rows[i];
      counts[b.why[i]]++;
      if (b.why[i] != SCORED) {
        char rq[64], aq[64];
        PAI_WARN("%s:%ld: not scored: %s (%s:%lld %s>%s)", o->var_file, v->lineno,
                 outcome_text[b.why[i]], v->chrom, (long long)v->pos,
                 shown(v->ref, rq, sizeof rq), shown(v->alt, aq, sizeof aq));
        if (b.why[i] == BAD_CHROM && !hint[0]) chrom_hint(fa, v->chrom, hint, sizeof hint);
        format_row(&row, v->text, &vt, "", o->raw ? "" : NULL);
        werr |= sink_write(&out, &row);
        continue;
      }
      const size_t n_out = (size_t)O * T;
      const float *ref = b.out + (size_t)b.seq_of[i] * n_out, *alt = ref + n_out;
      double sum = 0;
      for (size_t e = 0; e < n_out; e++) sum += (double)alt[e] - (double)ref[e];
      const double raw = sum / (double)n_out;
      char score_s[32], raw_s[32];
      snprintf(score_s, sizeof score_s, "%.4f", pai_score_from_raw(raw));
      snprintf(raw_s, sizeof raw_s, "%.9g", raw);
      format_row(&row, v->text, &vt, score_s, o->raw ? raw_s : NULL);
      werr |= sink_write(&out, &row);
    }
    done += n;
    if (werr) {   /* stop at once rather than score the rest for nothing */
      PAI_ERR("cannot write %s: %s (disk full?)", tmp_path, strerror(errno ? errno : EIO));
      rc = PAI_ERR_IO;
      goto fail;
    }
    const double t = pai_now_s();
    if (t - last_report >= 10.0) {
      const double rate = done / (t - t0);
      if (total >= done)
        PAI_INFO("%ld/%ld variants, %.1f variants/s, ETA %.0f s", done, total, rate,
                 rate > 0 ? (total - done) / rate : 0.0);
      else
        PAI_INFO("%ld variants, %.1f variants/s", done, rate);
      last_report = t;
    }
  }
  if (done > 0 && counts[SCORED] == 0) {   /* a table of empty scores helps no one */
    PAI_ERR("none of the %ld rows of %s could be scored (the warnings above give the reasons); "
            "nothing written%s", done, o->var_file, hint);
    rc = PAI_ERR_INPUT;
    goto fail;
  }
  if ((werr | sink_close(&out)) != 0) {
    PAI_ERR("cannot finish writing %s (disk full?)", tmp_path);
    rc = PAI_ERR_IO;
    goto fail;
  }
  if (rename(tmp_path, out_path) != 0) {
    PAI_ERR("cannot rename %s to %s: %s", tmp_path, out_path, strerror(errno));
    rc = PAI_ERR_IO;
    goto fail;
  }
  tmp_path[0] = 0;
  const long bad = done - counts[SCORED];
  PAI_INFO("wrote %s: %ld rows, %ld scored in %.1f s", out_path, done, counts[SCORED],
           pai_now_s() - t0);
  if (bad) {
    char line[512];
    int k = snprintf(line, sizeof line, "%ld of %ld rows not scored:", bad, done);
    const char *sep = " ";
    for (int r = 1; r < N_OUTCOMES; r++)
      if (counts[r] && k < (int)sizeof line) {
        k += snprintf(line + k, sizeof line - k, "%s%ld %s", sep, counts[r], outcome_text[r]);
        sep = "; ";
      }
    PAI_WARN("%s%s", line, counts[SCORED] ? hint : "");
  }
fail:
  sink_close(&out);
  free(row.s);
  if (tmp_path[0]) unlink(tmp_path);
  guard_tmp(NULL);
  batch_free(&b);
  pai_infer_free(&inf);
  pai_fasta_close(fa);
  pai_vartable_close(&vt);
  pai_model_free(&model);
  return rc;
}
