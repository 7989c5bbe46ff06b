/* finetune.c - see finetune.h.
 *
 * Gradient of the head-only fine-tuning loss. For variant v with twin sequences (ref, alt):
 *   raw_v = 1/(O T) sum_{o,t} [h_alt - h_ref],   h = 1/n_s sum_s ReLU(A_s P_s + c_s)
 * where A_s are the cropped rows of shortcut layer s (frozen, from the inference forward pass).
 * With loss = sum_v (raw_v - z_v)^2 / B and g_v = 2 (raw_v - z_v) / B:
 *   dP_s = sum over sequences i of A_{s,i}^T (a_i [pre_{s,i} > 0]),  dc_s = column sums of the same,
 *   a_i = +g_v / (O T n_s) for the alt sequence of v, -g_v / (O T n_s) for its ref.
 * All sequences of a step are stacked, so each shortcut takes one GEMM for the pre-activations
 * and one for dP_s. */
#include "model/finetune.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "model/forward.h"
#include "model/optim.h"
#include "model/rng.h"
#include "model/score.h"
#include "model/trainstate.h"
#include "mpi/comm.h"
#include "mpi/log.h"
#include "preprocess/fasta.h"
#include "preprocess/tsv.h"

#define STREAM_PERM (5ull << 60)

enum { C_CHROM, C_POS, C_REF, C_ALT, C_STRAND, C_Z, C_IN_CDS, C_SPLICEAI, C_P_UNDER, C_P_OVER,
       C_GENE, N_COLS };
static const char *const col_names[N_COLS] = {"chrom", "pos", "ref", "alt", "strand", "z",
                                              "in_cds", "spliceai", "p_under", "p_over", "gene"};

typedef struct {
  pai_variant v;         /* chrom, pos, ref, alt, strand (pointers into the table) */
  double z;
  const char *gene;
} ft_row;

/* A number, or NaN for "", "NA", "NaN", "nan". */
static int parse_num(const char *s, double *out) {
  if (!*s || !strcmp(s, "NA") || !strcasecmp(s, "nan")) {
    *out = NAN;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  *out = strtod(s, &end);
  return end == s || *end || errno == ERANGE ? -1 : 0;
}

static int by_gene(const void *a, const void *b) {
  return strcmp((*(ft_row *const *)a)->gene, (*(ft_row *const *)b)->gene);
}

static int by_line(const void *a, const void *b) {
  const long x = (*(ft_row *const *)a)->v.lineno, y = (*(ft_row *const *)b)->v.lineno;
  return (x > y) - (x < y);
}

/* Reads, checks and filters the table: *train and *val get the kept rows (REFERENCE.md 5). */
static int read_rows(const char *path, const pai_str_list *train_chroms,
                     const pai_str_list *val_chroms, pai_tsv *t, ft_row **rows_out,
                     ft_row ***train, int *n_train, ft_row ***val, int *n_val) {
  char *text = NULL;
  size_t len = 0;
  PAI_TRY(pai_read_file(path, "variant table (--var_file)", &text, &len));
  PAI_TRY(pai_tsv_parse(t, path, text));
  int col[N_COLS], missing = 0;
  char names[256] = "";
  for (int c = 0; c < N_COLS; c++) {
    col[c] = pai_tsv_col(t, col_names[c]);
    if (col[c] < 0) {
      size_t at = strlen(names);
      snprintf(names + at, sizeof names - at, "%s%s", missing++ ? ", " : "", col_names[c]);
    }
  }
  if (missing) {
    PAI_ERR("%s: missing column(s) %s (fine-tuning needs chrom, pos, ref, alt, strand, z, in_cds, "
            "spliceai, p_under, p_over, gene)",
            path, names);
    return PAI_ERR_INPUT;
  }
  ft_row *rows = calloc((size_t)t->n_rows + 1, sizeof *rows);
  unsigned char *keep = calloc((size_t)t->n_rows + 1, 1), *flag = calloc((size_t)t->n_rows + 1, 1);
  ft_row **sorted = calloc((size_t)t->n_rows + 1, sizeof *sorted);
  *train = calloc((size_t)t->n_rows + 1, sizeof **train);
  *val = calloc((size_t)t->n_rows + 1, sizeof **val);
  int rc = 0, n_keep = 0;
  if (!rows || !keep || !flag || !sorted || !*train || !*val) {
    rc = PAI_ERR_NOMEM;
    goto done;
  }
  for (int r = 0; r < t->n_rows; r++) {
    ft_row *x = &rows[r];
    x->v.lineno = t->lineno[r];
    x->v.chrom = pai_tsv_get(t, r, col[C_CHROM]);
    x->v.ref = pai_tsv_get(t, r, col[C_REF]);
    x->v.alt = pai_tsv_get(t, r, col[C_ALT]);
    x->gene = pai_tsv_get(t, r, col[C_GENE]);
    double num[N_COLS];
    const int numeric[] = {C_Z, C_IN_CDS, C_SPLICEAI, C_P_UNDER, C_P_OVER};
    for (int k = 0; k < 5; k++) {
      const char *f = pai_tsv_get(t, r, col[numeric[k]]);
      if (parse_num(f, &num[numeric[k]]) < 0) {
        PAI_ERR("%s:%ld: field '%s': '%s' is not a number", path, x->v.lineno,
                col_names[numeric[k]], f);
        rc = PAI_ERR_INPUT;
        goto done;
      }
    }
    const char *pos = pai_tsv_get(t, r, col[C_POS]);
    if (pai_parse_i64(pos, &x->v.pos) < 0 || x->v.pos < 1) {
      PAI_ERR("%s:%ld: field 'pos': '%s' is not a 1-based position", path, x->v.lineno, pos);
      rc = PAI_ERR_INPUT;
      goto done;
    }
    const char *strand = pai_tsv_get(t, r, col[C_STRAND]);
    x->v.strand = pai_parse_strand(strand);
    if (x->v.strand != 1 && x->v.strand != -1) {
      PAI_ERR("%s:%ld: field 'strand': '%s' is not 1, -1, + or -", path, x->v.lineno, strand);
      rc = PAI_ERR_INPUT;
      goto done;
    }
    x->z = num[C_Z];
    keep[r] = num[C_IN_CDS] == 0 && num[C_SPLICEAI] < 0.05;
    flag[r] = keep[r] && (num[C_P_UNDER] < 0.01 || num[C_P_OVER] < 0.01);
    if (keep[r]) sorted[n_keep++] = x;
  }
  /* genes with at least one outlier row among the kept rows */
  qsort(sorted, (size_t)n_keep, sizeof *sorted, by_gene);
  *n_train = *n_val = 0;
  for (int i = 0; i < n_keep;) {
    int j = i, any = 0;
    for (; j < n_keep && !strcmp(sorted[j]->gene, sorted[i]->gene); j++)
      any |= flag[sorted[j] - rows];
    for (int k = i; any && k < j; k++) {
      const char *c = sorted[k]->v.chrom;
      const int tr = pai_str_list_has(train_chroms, c), va = !tr && pai_str_list_has(val_chroms, c);
      if ((tr || va) && !isfinite(sorted[k]->z)) {   /* only rows that are used need a z */
        PAI_ERR("%s:%ld: field 'z' is not a finite number on a row used for %s", path,
                sorted[k]->v.lineno, tr ? "training" : "validation");
        rc = PAI_ERR_INPUT;
        goto done;
      }
      if (tr) (*train)[(*n_train)++] = sorted[k];
      else if (va) (*val)[(*n_val)++] = sorted[k];
    }
    i = j;
  }
  /* back to table order (qsort is not stable) */
  qsort(*train, (size_t)*n_train, sizeof **train, by_line);
  qsort(*val, (size_t)*n_val, sizeof **val, by_line);
done:
  free(keep);
  free(flag);
  free(sorted);
  *rows_out = rows;
  return rc;
}

/* ---- the run ------------------------------------------------------------------------------------ */

typedef struct {
  pai_model model;
  pai_infer inf;
  pai_fasta *fa;
  int L, O, T, D, n_short, cap;   /* cap: variants per forward pass on this rank */
  float **taps;                   /* [n_short] (2 cap, O, D) */
  float *out, *pre;               /* (2 cap, O, T) each */
  double *raw;                    /* (cap): raw twin outputs of a forward pass */
  uint8_t *codes;                 /* (2 cap, L) */
  char *ref_win, *alt_win;
  size_t g_first, g_end;          /* head 0's projections in the parameter layout */
  unsigned char *mask;            /* [n_tensors]: 1 for head 0's projections */
} ft_ctx;

/* raw twin outputs of rows[0..n) (n <= cap) into raw. */
static int twin_forward(ft_ctx *c, ft_row *const *rows, int n, double *raw) {
  for (int i = 0; i < n; i++) {
    const char *why = NULL;
    PAI_TRY(pai_variant_codes(c->fa, &rows[i]->v, c->L, c->ref_win, c->alt_win,
                              c->codes + (size_t)2 * i * c->L, &why));
    if (why) {   /* checked at start-up: the genome changed under us */
      PAI_ERR("line %ld: %s", rows[i]->v.lineno, why);
      return PAI_ERR_INPUT;
    }
  }
  float *outs[1] = {c->out};
  PAI_TRY(pai_infer_forward(&c->inf, c->codes, 2 * n, outs));
  const size_t per = (size_t)c->O * c->T;
  for (int i = 0; i < n; i++) {
    double s = 0;
    const float *r = c->out + (size_t)2 * i * per, *a = r + per;
    for (size_t e = 0; e < per; e++) s += (double)a[e] - r[e];
    raw[i] = s / (double)per;
  }
  return 0;
}

/* Adds d loss / d head-0 projections for rows[0..n) with raw outputs `raw` into G. */
static void head_grad(ft_ctx *c, ft_row *const *rows, int n, const double *raw, int global_B,
                      pai_params *G) {
  const pai_params *P = &c->model.params;
  const int O = c->O, T = c->T, D = c->D, M = 2 * n * O;
  for (int k = 0; k < c->n_short; k++) {
    const pai_proj_params *pp = pai_proj(P, 0, k);
    pai_proj_params *gp = pai_proj(G, 0, k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, T, D, 1.0f, c->taps[k], D,
                pp->kernel, T, 0.0f, c->pre, T);
    for (int i = 0; i < 2 * n; i++) {
      const int v = i / 2;
      const double g = 2.0 * (raw[v] - rows[v]->z) / global_B;
      const float a = (float)((i % 2 ? g : -g) / ((double)O * T * c->n_short));
      float *pr = c->pre + (size_t)i * O * T;
      for (int e = 0; e < O * T; e++) {
        const float d = pr[e] + pp->bias[e % T] > 0.0f ? a : 0.0f;
        pr[e] = d;
        gp->bias[e % T] += d;
      }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, T, M, 1.0f, c->taps[k], D, c->pre, T,
                1.0f, gp->kernel, T);
  }
}

/* Mean squared error of the raw twin output against z over rows split across ranks. */
static int evaluate(const pai_dist *d, pai_comm *comm, ft_ctx *c, ft_row **rows, int n,
                    double *mse) {
  const int lo = (int)((int64_t)n * d->rank / d->size), hi = (int)((int64_t)n * (d->rank + 1) / d->size);
  double sums[2] = {0, (double)(hi - lo)};
  const double *raw = c->raw;
  int rc = 0;
  for (int i = lo; rc == 0 && i < hi; i += c->cap) {
    const int nb = hi - i < c->cap ? hi - i : c->cap;
    rc = twin_forward(c, rows + i, nb, c->raw);
    for (int b = 0; rc == 0 && b < nb; b++) {
      const double err = raw[b] - rows[i + b]->z;
      sums[0] += err * err;
    }
  }
  rc = pai_dist_agree(d, rc);
  if (rc < 0) return rc;
  PAI_TRY(pai_comm_sum_f64(comm, sums, 2));
  *mse = sums[1] > 0 ? sums[0] / sums[1] : NAN;
  return 0;
}

/* Drops rows that cannot be scored (ref mismatch, off-chromosome, ...) with one warning each. */
static int drop_unscorable(ft_ctx *c, const char *path, ft_row **rows, int *n) {
  int kept = 0;
  for (int i = 0; i < *n; i++) {
    const char *why = NULL;
    PAI_TRY(pai_variant_codes(c->fa, &rows[i]->v, c->L, c->ref_win, c->alt_win, c->codes, &why));
    if (why) {
      PAI_WARN("%s:%ld: not used: %s", path, rows[i]->v.lineno, why);
    } else {
      rows[kept++] = rows[i];
    }
  }
  *n = kept;
  return 0;
}

int pai_finetune_run(const pai_dist *d, const pai_finetune_opts *o) {
  int rc = 0;
  ft_ctx c;
  memset(&c, 0, sizeof c);
  pai_tsv table = {0};
  ft_row *rows = NULL, **train = NULL, **val = NULL;
  int n_train = 0, n_val = 0;
  pai_params G = {0};
  pai_comm comm = {0};
  pai_progress prog = {0};
  float *adam_m = NULL, *adam_v = NULL;
  char out_folder[PAI_PATH_LEN], state_path[PAI_PATH_LEN + 32];
  if (o->out_folder && o->out_folder[0]) {
    snprintf(out_folder, sizeof out_folder, "%s", o->out_folder);
  } else {
    size_t n = strlen(o->model_folder);
    while (n > 1 && o->model_folder[n - 1] == '/') n--;
    snprintf(out_folder, sizeof out_folder, "%.*s_finetune", (int)n, o->model_folder);
  }
  snprintf(state_path, sizeof state_path, "%s/train_state.h5", out_folder);

  /* the published split unless the caller names one */
  pai_str_list train_chroms, val_chroms;
  if (o->train_chroms && o->train_chroms->n) train_chroms = *o->train_chroms;
  else pai_str_list_chroms(&train_chroms, 1, 19, 2);
  if (o->val_chroms && o->val_chroms->n) val_chroms = *o->val_chroms;
  else pai_str_list_chroms(&val_chroms, 21, 22, 1);

  /* ---- inputs (every rank checks the same; rank 0 speaks) ---- */
  if (d->rank != 0) pai_log_set_mute(1);
  if (o->batch_size < 1 || o->batch_size % d->size != 0) {
    PAI_ERR("--batch_size %d (the global batch) must be a positive multiple of the number of "
            "ranks, %d",
            o->batch_size, d->size);
    rc = PAI_ERR_USAGE;
  } else if (o->epochs < 1 || o->log_every < 1 || o->steps_per_epoch < 0) {
    PAI_ERR("--epochs and --log_every must be >= 1, --steps_per_epoch >= 0");
    rc = PAI_ERR_USAGE;
  }
  const int local = o->batch_size / d->size;
  struct stat st;
  if (rc == 0 && o->resume && stat(state_path, &st) != 0) {
    PAI_ERR("--resume: %s has no train_state.h5 (nothing to resume; drop --resume to start)",
            out_folder);
    rc = PAI_ERR_USAGE;
  } else if (rc == 0 && !o->resume && stat(state_path, &st) == 0) {
    PAI_ERR("%s already holds a fine-tuning run (train_state.h5): pass --resume to continue it",
            out_folder);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0) rc = read_rows(o->var_file, &train_chroms, &val_chroms, &table, &rows, &train, &n_train, &val, &n_val);
  if (rc == 0) {
    rc = o->resume ? pai_state_load(state_path, &c.model, &adam_m, &adam_v, &prog)
                   : pai_model_load(&c.model, o->model_folder);
  }
  if (rc == 0 && o->input_length != c.model.cfg.input_length) {
    PAI_ERR("--input_length %d does not match the model's input_length %d", o->input_length,
            c.model.cfg.input_length);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0 && o->resume && (prog.batch_size != o->batch_size || prog.seed != o->seed)) {
    PAI_ERR("%s was fine-tuned with --batch_size %d --seed %lld; resume with the same values",
            state_path, prog.batch_size, (long long)prog.seed);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0) rc = pai_fasta_open(&c.fa, o->fasta_file);
  if (rc == 0) {
    const pai_config *cfg = &c.model.cfg;
    c.L = cfg->input_length;
    c.O = cfg->output_length;
    c.T = cfg->output_dims[0];
    c.D = cfg->model_dim;
    c.n_short = pai_n_shortcuts(cfg);
    c.cap = local < 256 ? local : 256;
    c.taps = calloc((size_t)c.n_short, sizeof *c.taps);
    c.out = malloc((size_t)2 * c.cap * c.O * c.T * sizeof(float));
    c.pre = malloc((size_t)2 * c.cap * c.O * c.T * sizeof(float));
    c.codes = malloc((size_t)2 * c.cap * c.L);
    c.ref_win = malloc((size_t)c.L + 1);
    c.alt_win = malloc((size_t)c.L + 1);
    c.raw = malloc((size_t)c.cap * sizeof *c.raw);
    c.mask = calloc((size_t)c.model.params.n_tensors, 1);
    if (!c.taps || !c.out || !c.pre || !c.codes || !c.ref_win || !c.alt_win || !c.raw || !c.mask)
      rc = PAI_ERR_NOMEM;
    for (int k = 0; rc == 0 && k < c.n_short; k++)
      if (!(c.taps[k] = malloc((size_t)2 * c.cap * c.O * c.D * sizeof(float)))) rc = PAI_ERR_NOMEM;
  }
  if (rc == 0) rc = drop_unscorable(&c, o->var_file, train, &n_train);
  if (rc == 0) rc = drop_unscorable(&c, o->var_file, val, &n_val);
  if (rc == 0 && (n_train / o->batch_size < 1 || n_val < 1)) {
    PAI_ERR("%s: %d training rows (on %s%s, see --train_chroms) and %d validation rows (on "
            "%s%s, see --val_chroms) pass the filters (in_cds 0, spliceai < 0.05, genes with an "
            "outlier): need at least one batch of %d and one validation row",
            o->var_file, n_train, train_chroms.v[0], train_chroms.n > 1 ? ", ..." : "", n_val,
            val_chroms.v[0], val_chroms.n > 1 ? ", ..." : "", o->batch_size);
    rc = PAI_ERR_INPUT;
  }
  pai_log_set_mute(0);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;

  /* ---- machinery ---- */
  PAI_CHECK(pai_comm_init_mpi(&comm, d));
  PAI_CHECK(pai_params_init(&G, &c.model.cfg));
  c.g_first = (size_t)-1;
  for (int t = 0; t < c.model.params.n_tensors; t++) {
    const pai_tensor *tn = &c.model.params.tensors[t];
    if (strncmp(tn->path, "/head_0/", 8)) continue;
    c.mask[t] = 1;
    if (tn->offset < c.g_first) c.g_first = tn->offset;
    if (tn->offset + tn->n_elems > c.g_end) c.g_end = tn->offset + tn->n_elems;
  }
  PAI_CHECK(pai_infer_init(&c.inf, &c.model, 2 * c.cap, PAI_HEAD(0), &o->backend));
  c.inf.taps = c.taps;
  if (!o->resume) {
    adam_m = calloc(c.model.params.n_floats, sizeof(float));
    adam_v = calloc(c.model.params.n_floats, sizeof(float));
    prog = (pai_progress){.seed = o->seed, .batch_size = o->batch_size, .n_epochs = o->epochs,
                          .best_val_loss = INFINITY,
                          .log = calloc((size_t)o->epochs + 1, sizeof(pai_epoch_log))};
    if (!adam_m || !adam_v || !prog.log) PAI_CHECK(PAI_ERR_NOMEM);
  } else if (prog.n_epochs != o->epochs) {
    pai_epoch_log *grown = realloc(prog.log, (size_t)(o->epochs + prog.epoch + 1) * sizeof *grown);
    if (!grown) PAI_CHECK(PAI_ERR_NOMEM);
    prog.log = grown;
    prog.n_epochs = o->epochs;
  }
  const int64_t n_batches = n_train / o->batch_size;
  const int64_t spe = o->steps_per_epoch > 0 ? o->steps_per_epoch
                                             : (n_batches / 5 > 0 ? n_batches / 5 : 1);
  if (d->rank == 0)
    PAI_INFO("fine-tuning head 0 of %s: %d training and %d validation variants, batch %d = %d "
             "rank(s) x %d, %lld steps per epoch -> %s",
             o->model_folder, n_train, n_val, o->batch_size, d->size, local, (long long)spe,
             out_folder);
  if (d->rank == 0 && prog.epoch >= o->epochs)
    PAI_INFO("all %d epochs already done: nothing to fine-tune (raise --epochs to go on)",
             o->epochs);
  if (prog.epoch == 0 && prog.step == 0) {
    PAI_CHECK(evaluate(d, &comm, &c, val, n_val, &prog.initial_val_loss));
    if (d->rank == 0) PAI_INFO("initial val_loss %.6g", prog.initial_val_loss);
  }

  int64_t *perm = malloc((size_t)n_train * sizeof *perm);
  double *raw = c.raw;
  ft_row **batch = malloc((size_t)local * sizeof *batch);
  int64_t perm_pass = -1;
  if (!perm || !batch) {
    free(perm), free(batch);
    PAI_CHECK(PAI_ERR_NOMEM);
  }
  const pai_adamw base = pai_adamw_defaults(o->learning_rate, o->weight_decay, o->clipnorm);
  for (int e = prog.epoch; e < o->epochs && rc == 0; e++) {
    pai_adamw opt = base;
    const double factor = pai_schedule_factor(e, o->epochs);
    opt.lr *= factor;
    opt.wd *= factor;
    const double t0 = pai_now_s();
    pai_meter meter;
    pai_meter_start(&meter);
    prog.step = (int64_t)e * spe;
    for (int64_t s = 0; s < spe && rc == 0; s++) {
      /* the batch of step t: pass t / n_batches of a fresh permutation, this rank's slice */
      const int64_t t = prog.step, pass = t / n_batches, within = t % n_batches;
      if (pass != perm_pass) {
        pai_rng r;
        pai_rng_seed(&r, (uint64_t)o->seed, STREAM_PERM + (uint64_t)pass);
        pai_rng_permutation(&r, perm, n_train);
        perm_pass = pass;
      }
      for (int b = 0; b < local; b++)
        batch[b] = train[perm[within * o->batch_size + d->rank * local + b]];
      memset(G.data + c.g_first, 0, (c.g_end - c.g_first) * sizeof(float));
      double local_loss = 0;
      for (int i = 0; rc == 0 && i < local; i += c.cap) {
        const int nb = local - i < c.cap ? local - i : c.cap;
        rc = twin_forward(&c, batch + i, nb, raw);
        if (rc < 0) break;
        for (int b = 0; b < nb; b++)
          local_loss += (raw[b] - batch[i + b]->z) * (raw[b] - batch[i + b]->z) / o->batch_size;
        head_grad(&c, batch + i, nb, raw, o->batch_size, &G);
      }
      rc = pai_dist_agree(d, rc);
      if (rc < 0) break;
      if ((rc = pai_comm_sum_f32(&comm, G.data + c.g_first, c.g_end - c.g_first)) < 0 ||
          (rc = pai_comm_sum_f64(&comm, &local_loss, 1)) < 0)
        break;
      pai_adamw_step(&opt, &c.model.params, G.data, adam_m, adam_v, prog.step, c.mask);
      if ((rc = pai_infer_heads_changed(&c.inf)) < 0) break;
      prog.step++;
      pai_meter_step(&meter, d->rank, e, o->epochs, s, spe, o->log_every, o->batch_size,
                     "variants", local_loss);
    }
    if (rc < 0) break;
    double val_loss = NAN;
    if ((rc = evaluate(d, &comm, &c, val, n_val, &val_loss)) < 0) break;
    const pai_epoch_log row = {.loss = meter.loss_sum / (double)spe, .val_loss = val_loss,
                               .lr = opt.lr, .wd = opt.wd};
    const int wrc = d->rank == 0 ? pai_epoch_save(out_folder, state_path, &c.model, adam_m,
                                                  adam_v, &prog, &row, pai_now_s() - t0)
                                 : (pai_epoch_record(&prog, &row), 0);
    rc = pai_dist_agree(d, wrc);
    if (rc == 0 && o->stop_after > 0 && prog.epoch >= o->stop_after && prog.epoch < o->epochs) {
      if (d->rank == 0) PAI_INFO("stopping after epoch %d as asked; continue with --resume", prog.epoch);
      break;
    }
  }
  free(perm);
  free(batch);
  if (rc == 0 && d->rank == 0)
    PAI_INFO("done: best val_loss %.6g; model in %s", prog.best_val_loss, out_folder);

done:
  pai_infer_free(&c.inf);
  for (int k = 0; c.taps && k < c.n_short; k++) free(c.taps[k]);
  free(c.taps);
  free(c.out);
  free(c.pre);
  free(c.codes);
  free(c.ref_win);
  free(c.alt_win);
  free(c.raw);
  free(c.mask);
  if (c.fa) pai_fasta_close(c.fa);
  pai_model_free(&c.model);
  pai_params_free(&G);
  pai_comm_free(&comm);
  free(adam_m);
  free(adam_v);
  free(prog.log);
  free(rows);
  free(train);
  free(val);
  pai_tsv_free(&table);
  return rc;
fail:
  rc = pai_dist_agree(d, rc);
  goto done;
}
