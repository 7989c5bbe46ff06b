/* psynth - a deterministic synthetic training set: genome FASTA, TSS table, bigWig tracks.
 *
 *   psynth --out DIR [--n_chroms 3] [--chrom_length 60000] [--n_tss 40] [--n_tracks 4] [--seed 1]
 *
 * writes DIR/genome.fa, DIR/tss.tsv, DIR/tracks.tsv and DIR/bw/track<k>.{fwd,rev}.bw, ready for
 *   ppreprocess --tss_file DIR/tss.tsv --fasta_file DIR/genome.fa --bigwig_files DIR/tracks.tsv
 * and DIR/outliers.tsv, an expression-outlier variant table for pfinetune (below).
 *
 * The signal is a known, local function of the sequence, so a small model can learn it:
 * - Motifs (MOTIFS below) are planted near every TSS (a TATA box 30 bp upstream plus 3..6
 *   others in [-300, +100] in transcript orientation, each in a random orientation), and some
 *   elsewhere as background (one per 5 kb).
 * - Track t at position q on strand s is the sum, over motif instances read on strand s (a motif
 *   planted reverse-complemented is read on - strand), of weight[t][motif] * max(0, 1 -
 *   |q - centre| / width[t]), times scale[t], averaged over 10 bp bins. + strand signal goes to
 *   the fwd bigWig, - strand signal to the rev bigWig. Where the sum is 0 the files have no data
 *   (NaN, which the published transforms map to 0).
 * - With --background W, the DNase-like tracks also carry dense noise within W bp of every TSS
 *   (as real accessibility tracks do), with gaps without data; benchmarks use it so that the
 *   targets are not almost all zero.
 * - Half the tracks have scale ~1 and the transform arcsinh(nan_to_num(x)); the others have
 *   scale ~1e-3 and arcsinh(1000 * nan_to_num(x)), the two published forms.
 * - outliers.tsv (chrom pos ref alt strand z in_cds spliceai p_under p_over gene) has planted
 *   effects: per TSS, 2 SNVs inside each intact promoter motif, each breaking it, with z = -2 (the TATA box) or
 *   -1 (the others) + N(0, 0.25^2) and p_under 0.001 (an under-expression outlier), and 4 SNVs at other bases of
 *   [-300, +100] with z ~ N(0, 0.25^2) and p 0.5. All rows have in_cds 0 and spliceai 0.01, so
 *   every row passes pfinetune's filters; ref is the genome's base, upper-cased.
 * The genome is uniform random sequence (41% GC) with soft-masked (lower-case) stretches and a
 * 500 bp run of N at each chromosome's start. Same seed, same files, on every machine. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bigWig.h>

#include "model/model.h"
#include "model/options.h"
#include "model/rng.h"
#include "mpi/log.h"

static const char *const MOTIFS[] = {"TATAAAAG", "GGGGCGGGG", "GCCAATCA", "TGACTCAT", "CACGTGAC"};
enum { N_MOTIFS = 5, BIN = 10 };

typedef struct {
  int chrom;
  int64_t centre;
  int motif;
  int strand;   /* +1: planted as written, -1: reverse-complemented */
} instance;

typedef struct {
  int64_t bin;
  float v;
} contrib;

static int by_pos(const void *a, const void *b) {
  const instance *x = a, *y = b;
  if (x->chrom != y->chrom) return x->chrom - y->chrom;
  return (x->centre > y->centre) - (x->centre < y->centre);
}
static int by_bin(const void *a, const void *b) {
  const contrib *x = a, *y = b;
  return (x->bin > y->bin) - (x->bin < y->bin);
}

typedef struct {
  int tss;
  int64_t start;
  int motif, strand;
} tss_motif;

static char comp(char c) {
  switch (c) {
    case 'A': return 'T';
    case 'C': return 'G';
    case 'G': return 'C';
    case 'T': return 'A';
  }
  return 'N';
}

/* Writes motif m at [start, start + len) of seq, reverse-complemented when strand < 0. */
static void plant(char *seq, int64_t start, int m, int strand) {
  const char *s = MOTIFS[m];
  const int64_t n = (int64_t)strlen(s);
  for (int64_t i = 0; i < n; i++) seq[start + i] = strand > 0 ? s[i] : comp(s[n - 1 - i]);
}

typedef struct {
  int64_t n, cap;
  contrib *v;
} contrib_list;

static int add(contrib_list *l, int64_t bin, float v) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 4096;
    contrib *nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
    if (!nv) return PAI_ERR_NOMEM;
    l->v = nv;
  }
  l->v[l->n++] = (contrib){bin, v};
  return 0;
}

typedef struct {
  int n_chroms;
  char **names;
  const uint32_t *lens;
  const instance *inst;
  int64_t n_inst;
  const int *tss_chrom;
  const int64_t *tss_pos;   /* 0-based, ascending within a chromosome */
  int n_tss;
  int64_t bg_window;        /* background within this distance of a TSS; 0: none */
} genome_info;

/* One bigWig: motif signal on `strand` (see the file comment), plus, when bg_scale > 0, a dense
 * background within bg_window of every TSS: 10 bp bins of exponential noise (mean bg_scale)
 * with one bin in five left without data. */
static int write_bigwig(const char *path, const genome_info *g, int strand, const float *weight,
                        double width, double scale, double bg_scale, pai_rng *rng) {
  bigWigFile_t *fp = bwOpen(path, NULL, "w");
  if (!fp) {
    PAI_ERR("cannot create %s", path);
    return PAI_ERR_IO;
  }
  int rc = 0;
  contrib_list c = {0};
  uint32_t *st = NULL, *en = NULL;
  float *val = NULL;
  if (bwCreateHdr(fp, 10) ||
      !(fp->cl = bwCreateChromList((const char *const *)g->names, g->lens, g->n_chroms)) ||
      bwWriteHdr(fp)) {
    PAI_ERR("cannot write the header of %s", path);
    rc = PAI_ERR_IO;
    goto done;
  }
  const int64_t reach = (int64_t)width / BIN + 2;
  for (int ch = 0; ch < g->n_chroms && rc == 0; ch++) {
    c.n = 0;
    const int64_t n_bins = g->lens[ch] / BIN;
    for (int64_t i = 0; i < g->n_inst && rc == 0; i++) {
      const instance *m = &g->inst[i];
      if (m->chrom != ch || m->strand != strand || weight[m->motif] == 0) continue;
      const int64_t b0 = m->centre / BIN;
      for (int64_t b = b0 - reach; b <= b0 + reach && rc == 0; b++) {
        if (b < 0 || b >= n_bins) continue;
        const double mid = b * BIN + 0.5 * BIN,
                     dist = mid > m->centre ? mid - m->centre : m->centre - mid;
        const double tri = 1.0 - dist / width;
        if (tri > 0) rc = add(&c, b, (float)(scale * weight[m->motif] * tri));
      }
    }
    int64_t next_bin = 0;   /* TSS windows may overlap: each bin gets background once */
    for (int k = 0; k < g->n_tss && bg_scale > 0 && rc == 0; k++) {
      if (g->tss_chrom[k] != ch) continue;
      int64_t b = (g->tss_pos[k] - g->bg_window) / BIN, b1 = (g->tss_pos[k] + g->bg_window) / BIN;
      if (b < next_bin) b = next_bin;
      if (b1 > n_bins) b1 = n_bins;
      for (; b < b1 && rc == 0; b++)
        if (pai_rng_uniform(rng) >= 0.2)
          rc = add(&c, b, (float)(-bg_scale * log(1.0 - pai_rng_uniform(rng))));
      if (b > next_bin) next_bin = b;
    }
    if (rc) break;
    qsort(c.v, (size_t)c.n, sizeof *c.v, by_bin);
    free(st);
    free(val);
    st = malloc((size_t)(2 * c.n + 1) * sizeof *st);
    val = malloc((size_t)(c.n + 1) * sizeof *val);
    if (!st || !val) {
      rc = PAI_ERR_NOMEM;
      break;
    }
    en = st + c.n;
    int64_t k = 0;
    for (int64_t i = 0; i < c.n; i++) {   /* merge contributions to one bin */
      if (k > 0 && st[k - 1] == (uint32_t)(c.v[i].bin * BIN)) {
        val[k - 1] += c.v[i].v;
        continue;
      }
      st[k] = (uint32_t)(c.v[i].bin * BIN);
      en[k] = st[k] + BIN;
      val[k++] = c.v[i].v;
    }
    if (k == 0) continue;
    const char *chrom_ptrs[1] = {g->names[ch]};
    /* the first interval of a chromosome opens its block; the rest are appended */
    if (bwAddIntervals(fp, chrom_ptrs, st, en, val, 1) ||
        (k > 1 && bwAppendIntervals(fp, st + 1, en + 1, val + 1, (uint32_t)(k - 1)))) {
      PAI_ERR("cannot write intervals of %s to %s", g->names[ch], path);
      rc = PAI_ERR_IO;
    }
  }
done:
  free(c.v);
  free(st);
  free(val);
  bwClose(fp);
  return rc;
}

/* 1 when motif m planted at start on `strand` is still intact (a later motif may overlap it). */
static int intact(const char *seq, int64_t start, int m, int strand) {
  const char *s = MOTIFS[m];
  const int64_t n = (int64_t)strlen(s);
  for (int64_t i = 0; i < n; i++)
    if (seq[start + i] != (strand > 0 ? s[i] : comp(s[n - 1 - i]))) return 0;
  return 1;
}

/* A random base other than ref (upper case). */
static char other_base(char ref, pai_rng *rng) {
  static const char B[] = "ACGT";
  char b;
  do b = B[(int)(pai_rng_uniform(rng) * 4)];
  while (b == ref);
  return b;
}

/* outliers.tsv (see the file comment), rows in TSS order; its own random stream, so the other
 * files do not depend on it. */
static int write_outliers(const char *out, const char *const *names, char *const *seqs,
                          int64_t chrom_length, const int *tss_chrom, const int64_t *tss_pos,
                          const int *tss_strand, int n_tss, const tss_motif *tm, int64_t n_tm,
                          uint64_t seed) {
  char path[PAI_PATH_LEN + 64];
  snprintf(path, sizeof path, "%s/outliers.tsv", out);
  FILE *f = fopen(path, "w");
  if (!f) {
    PAI_ERR("cannot create %s: %s", path, strerror(errno));
    return PAI_ERR_IO;
  }
  pai_rng rng;
  pai_rng_seed(&rng, seed, 1000);
  fprintf(f, "chrom\tpos\tref\talt\tstrand\tz\tin_cds\tspliceai\tp_under\tp_over\tgene\n");
  int64_t j = 0;
  for (int k = 0; k < n_tss; k++) {
    const char *seq = seqs[tss_chrom[k]];
    const char *chrom = names[tss_chrom[k]];
    const int64_t j0 = j;
    for (; j < n_tm && tm[j].tss == k; j++) {
      if (!intact(seq, tm[j].start, tm[j].motif, tm[j].strand)) continue;
      const int64_t len = (int64_t)strlen(MOTIFS[tm[j].motif]);
      const int64_t a = (int64_t)(pai_rng_uniform(&rng) * (double)len),
                    b = (a + 1 + (int64_t)(pai_rng_uniform(&rng) * (double)(len - 1))) % len;
      for (int v = 0; v < 2; v++) {
        const int64_t q = tm[j].start + (v ? b : a);
        const char ref = seq[q];
        fprintf(f, "%s\t%lld\t%c\t%c\t%d\t%.4f\t0\t0.01\t0.001\t0.5\tSYN%05d\n", chrom,
                (long long)q + 1, ref, other_base(ref, &rng), tss_strand[k],
                (tm[j].motif == 0 ? -2.0 : -1.0) + 0.25 * pai_rng_normal(&rng), k + 1);
      }
    }
    for (int v = 0; v < 4; v++) {   /* bases away from this TSS's motifs */
      const int64_t o = -300 + (int64_t)(pai_rng_uniform(&rng) * 400);
      const int64_t q = tss_pos[k] + (tss_strand[k] > 0 ? o : -o);
      const char ref = (char)(seq[q] & ~0x20);   /* upper case */
      int in_motif = 0;
      for (int64_t i = j0; i < j; i++)
        in_motif |= q >= tm[i].start && q < tm[i].start + (int64_t)strlen(MOTIFS[tm[i].motif]);
      if (in_motif || !strchr("ACGT", ref)) continue;
      fprintf(f, "%s\t%lld\t%c\t%c\t%d\t%.4f\t0\t0.01\t0.5\t0.5\tSYN%05d\n", chrom,
              (long long)q + 1, ref, other_base(ref, &rng), tss_strand[k],
              0.25 * pai_rng_normal(&rng), k + 1);
    }
  }
  if (fclose(f) != 0) {
    PAI_ERR("cannot write %s: %s", path, strerror(errno));
    return PAI_ERR_IO;
  }
  return 0;
}

int main(int argc, char **argv) {
  char out[PAI_PATH_LEN] = "";
  int n_chroms = 3, n_tss = 40, n_tracks = 4, seed = 1;
  int64_t chrom_length = 60000, background = 0;
  pai_opt opts[] = {
      {"out", PAI_OPT_STR, out, "output folder (created if missing)", 1, 0},
      {"n_chroms", PAI_OPT_INT, &n_chroms, "number of chromosomes", 0, 0},
      {"chrom_length", PAI_OPT_I64, &chrom_length, "length of each chromosome (bp)", 0, 0},
      {"n_tss", PAI_OPT_INT, &n_tss, "number of TSSs (spread evenly over the chromosomes)", 0, 0},
      {"n_tracks", PAI_OPT_INT, &n_tracks, "number of tracks (each a fwd and a rev bigWig)", 0, 0},
      {"seed", PAI_OPT_INT, &seed, "random seed", 0, 0},
      {"background", PAI_OPT_I64, &background,
       "dense noise within this distance (bp) of each TSS on the DNase-like tracks (0: none)", 0, 0},
  };
  int rc = pai_opts_parse(opts, sizeof opts / sizeof opts[0], "psynth", "psynth",
                          "Writes a deterministic synthetic training set (genome.fa, tss.tsv, "
                          "tracks.tsv, bw/*.bw) whose\ntracks are a known local function of "
                          "planted promoter motifs, and outliers.tsv, expression-outlier\n"
                          "variants for pfinetune.", argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  if (n_chroms < 1 || n_tss < 1 || n_tracks < 1 || chrom_length < 4000 ||
      chrom_length > 2000000000 || n_tss > n_chroms * (chrom_length / 1500)) {
    PAI_ERR("need n_chroms, n_tss, n_tracks >= 1, 4000 <= chrom_length <= 2e9 and at most one "
            "TSS per 1500 bp");
    return 2;
  }
  char path[PAI_PATH_LEN + 64];
  snprintf(path, sizeof path, "%s/bw", out);
  if (pai_mkdir_p(path) < 0) return 1;
  pai_rng rng;
  pai_rng_seed(&rng, (uint64_t)seed, 0);

  char **names = calloc((size_t)n_chroms, sizeof *names);
  uint32_t *lens = calloc((size_t)n_chroms, sizeof *lens);
  char **seqs = calloc((size_t)n_chroms, sizeof *seqs);
  const int64_t max_inst = (int64_t)n_tss * 7 + n_chroms * (chrom_length / 5000 + 1);
  instance *inst = calloc((size_t)max_inst, sizeof *inst);
  if (!names || !lens || !seqs || !inst) return 1;
  int64_t n_inst = 0;
  for (int c = 0; c < n_chroms; c++) {
    names[c] = malloc(32);
    snprintf(names[c], 32, "chr%d", c + 1);
    lens[c] = (uint32_t)chrom_length;
    char *s = seqs[c] = malloc((size_t)chrom_length);
    if (!s) return 1;
    int lower = 0;
    for (int64_t i = 0; i < chrom_length; i++) {
      const double u = pai_rng_uniform(&rng);
      char b = u < 0.295 ? 'A' : u < 0.5 ? 'T' : u < 0.705 ? 'C' : 'G';
      if (i % 1000 == 0) lower = pai_rng_uniform(&rng) < 0.1;   /* soft-masked kilobases */
      s[i] = i < 500 ? 'N' : lower ? (char)(b - 'A' + 'a') : b;
    }
    for (int64_t i = 0; i < chrom_length / 5000; i++) {   /* background motifs */
      const int m = (int)(pai_rng_uniform(&rng) * N_MOTIFS), st = pai_rng_uniform(&rng) < 0.5 ? 1 : -1;
      const int64_t at = 600 + (int64_t)(pai_rng_uniform(&rng) * (double)(chrom_length - 1200));
      plant(s, at, m, st);
      inst[n_inst++] = (instance){c, at + (int64_t)strlen(MOTIFS[m]) / 2, m, st};
    }
  }

  /* TSSs: evenly spaced slots with jitter, random strand, at least 300 bp from either end */
  snprintf(path, sizeof path, "%s/tss.tsv", out);
  FILE *f = fopen(path, "w");
  if (!f) {
    PAI_ERR("cannot create %s: %s", path, strerror(errno));
    return 1;
  }
  fprintf(f, "gene_id\tchrom\tpos\tstrand\n");
  int *tss_chrom = calloc((size_t)n_tss, sizeof *tss_chrom);
  int64_t *tss_pos = calloc((size_t)n_tss, sizeof *tss_pos);
  int *tss_strand = calloc((size_t)n_tss, sizeof *tss_strand);
  tss_motif *tm = calloc((size_t)n_tss * 7, sizeof *tm);
  int64_t n_tm = 0;
  if (!tss_chrom || !tss_pos || !tss_strand || !tm) return 1;
  for (int k = 0; k < n_tss; k++) {
    const int c = (int)((int64_t)k * n_chroms / n_tss);
    const int first = (int)(((int64_t)c * n_tss + n_chroms - 1) / n_chroms);
    const int64_t per = (int64_t)(n_tss + n_chroms - 1) / n_chroms;
    const int64_t slot = (chrom_length - 1200) / per;
    int64_t p = 600 + (k - first) * slot + slot / 2 + (int64_t)((pai_rng_uniform(&rng) - 0.5) * slot / 4);
    const int strand = pai_rng_uniform(&rng) < 0.5 ? 1 : -1;
    if (p < 400) p = 400;
    if (p > chrom_length - 400) p = chrom_length - 400;
    /* motifs in transcript orientation: offset o upstream/downstream of the TSS at 0-based p */
    const int n_m = 3 + (int)(pai_rng_uniform(&rng) * 4);
    for (int j = 0; j <= n_m; j++) {
      const int m = j == 0 ? 0 : 1 + (int)(pai_rng_uniform(&rng) * (N_MOTIFS - 1));
      const int64_t o = j == 0 ? -30 : -300 + (int64_t)(pai_rng_uniform(&rng) * 400);
      const int orient = j == 0 ? 1 : pai_rng_uniform(&rng) < 0.5 ? 1 : -1;
      const int64_t len = (int64_t)strlen(MOTIFS[m]);
      const int64_t start = strand > 0 ? p + o : p - o - len + 1;
      if (start < 0 || start + len > chrom_length) continue;
      plant(seqs[c], start, m, orient * strand);
      inst[n_inst++] = (instance){c, start + len / 2, m, orient * strand};
      tm[n_tm++] = (tss_motif){k, start, m, orient * strand};
    }
    fprintf(f, "SYN%05d\t%s\t%lld\t%d\n", k + 1, names[c], (long long)p + 1, strand);
    tss_chrom[k] = c;
    tss_pos[k] = p;
    tss_strand[k] = strand;
  }
  if (fclose(f) != 0) return 1;
  if (write_outliers(out, (const char *const *)names, seqs, chrom_length, tss_chrom, tss_pos,
                     tss_strand, n_tss, tm, n_tm, (uint64_t)seed) < 0)
    return 1;
  qsort(inst, (size_t)n_inst, sizeof *inst, by_pos);

  snprintf(path, sizeof path, "%s/genome.fa.fai", out);
  unlink(path);   /* an index of an earlier genome.fa here would no longer match */
  snprintf(path, sizeof path, "%s/genome.fa", out);
  f = fopen(path, "w");
  if (!f) return 1;
  for (int c = 0; c < n_chroms; c++) {
    fprintf(f, ">%s synthetic\n", names[c]);
    for (int64_t i = 0; i < chrom_length; i += 60)
      fprintf(f, "%.*s\n", (int)(chrom_length - i < 60 ? chrom_length - i : 60), seqs[c] + i);
  }
  if (fclose(f) != 0) return 1;

  if (bwInit(1 << 17)) return 1;
  const genome_info gi = {n_chroms, names, lens, inst, n_inst, tss_chrom, tss_pos, n_tss,
                          background};
  snprintf(path, sizeof path, "%s/tracks.tsv", out);
  f = fopen(path, "w");
  if (!f) return 1;
  fprintf(f, "fwd\trev\txform\tassay\ttarget\n");
  for (int t = 0; t < n_tracks; t++) {
    float w[N_MOTIFS];
    for (int m = 0; m < N_MOTIFS; m++)   /* each track responds to a few motifs */
      w[m] = pai_rng_uniform(&rng) < 0.5 ? (float)(0.5 + 2.5 * pai_rng_uniform(&rng)) : 0.0f;
    w[t % N_MOTIFS] = 3.0f;
    const double width = 20 + 40 * pai_rng_uniform(&rng);
    const int small = t % 2;   /* odd tracks: tiny values for the 1000 * x transform */
    const double scale = small ? 1e-3 : 1.0;
    for (int s = 0; s < 2; s++) {
      snprintf(path, sizeof path, "%s/bw/track%d.%s.bw", out, t, s ? "rev" : "fwd");
      pai_rng bg;
      pai_rng_seed(&bg, (uint64_t)seed, 1 + 2 * (uint64_t)t + (uint64_t)s);
      if (write_bigwig(path, &gi, s ? -1 : 1, w, width, scale, small ? 0.3 * scale : 0, &bg) < 0)
        return 1;
    }
    fprintf(f, "bw/track%d.fwd.bw\tbw/track%d.rev.bw\t%s\t%s\tSYN%d\n", t, t,
            small ? "lambda x: np.arcsinh(1000 * np.nan_to_num(x))"
                  : "lambda x: np.arcsinh(np.nan_to_num(x))",
            small ? "DNase" : "CAGE", t);
  }
  if (fclose(f) != 0) return 1;
  bwCleanup();
  fprintf(stderr, "[I psynth] wrote %s: %d chromosomes x %lld bp, %d TSSs, %d tracks, %lld motif "
          "instances\n", out, n_chroms, (long long)chrom_length, n_tss, n_tracks, (long long)n_inst);
  for (int c = 0; c < n_chroms; c++) free(names[c]), free(seqs[c]);
  free(names);
  free(lens);
  free(seqs);
  free(inst);
  free(tss_chrom);
  free(tss_pos);
  free(tss_strand);
  free(tm);
  return 0;
}
