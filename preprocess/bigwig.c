/* bigwig.c - see bigwig.h. */
#include "preprocess/bigwig.h"

#include <bigWig.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mpi/log.h"

struct pai_bigwig {
  bigWigFile_t *fp;
  char path[PAI_PATH_LEN];
  int empty;                        /* a valid file without any data (libBigWig cannot query it) */
  char last_chrom[256];             /* cache of the last chromosome looked up */
  int64_t last_len;
};

int pai_bigwig_init(void) {
  /* the buffer only matters for remote files; 128 KiB as in libBigWig's examples */
  if (bwInit(1 << 17) != 0) {
    PAI_ERR("libBigWig initialisation failed");
    return PAI_ERR_RUNTIME;
  }
  return 0;
}

/* libBigWig prints raw lines of its own ("[urlOpen] Couldn't open ... for reading", "[bwOpen]
 * urlOpen is NULL!", header errors) for a file it cannot open or read, before the caller's error
 * line. So a local path is checked here first and bwOpen is only called for a readable file that
 * starts with the bigWig magic number: PAI_ERR_IO with errno saying why (ENOENT, EACCES, EISDIR),
 * or PAI_ERR_INPUT for a file that is not a bigWig. URLs are left to libBigWig. */
static int precheck(const char *path) {
  if (strstr(path, "://")) return 0;
  struct stat st;
  if (stat(path, &st) != 0) return PAI_ERR_IO;
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    return PAI_ERR_IO;
  }
  FILE *f = fopen(path, "rb");
  if (!f) return PAI_ERR_IO;
  unsigned char m[4] = {0};
  const size_t got = fread(m, 1, sizeof m, f);
  const int err = ferror(f) ? errno : 0;
  fclose(f);
  if (err) {
    errno = err;
    return PAI_ERR_IO;
  }
  /* 0x888FFC26, little-endian: the only byte order libBigWig reads */
  static const unsigned char magic[4] = {0x26, 0xFC, 0x8F, 0x88};
  if (got != sizeof m || memcmp(m, magic, sizeof m) != 0) return PAI_ERR_INPUT;
  return 0;
}

int pai_bigwig_open(pai_bigwig **bw, const char *path) {
  *bw = NULL;
  const int pre = precheck(path);
  if (pre < 0) return pre;   /* the caller names the table row */
  pai_bigwig *b = calloc(1, sizeof *b);
  if (!b) return PAI_ERR_NOMEM;
  snprintf(b->path, sizeof b->path, "%s", path);
  b->fp = bwOpen(path, NULL, "r");
  if (!b->fp) {   /* it passed the checks above: a damaged bigWig */
    free(b);
    return PAI_ERR_INPUT;   /* the caller names the table row */
  }
  if (b->fp->type != 0 || !b->fp->cl) {   /* type 1: bigBed */
    bwClose(b->fp);
    free(b);
    return PAI_ERR_INPUT;
  }
  b->empty = b->fp->hdr->nBasesCovered == 0;
  b->last_len = -2;
  *bw = b;
  return 0;
}

void pai_bigwig_close(pai_bigwig *bw) {
  if (!bw) return;
  bwClose(bw->fp);
  free(bw);
}

const char *pai_bigwig_path(const pai_bigwig *bw) { return bw->path; }

int64_t pai_bigwig_chrom_len(pai_bigwig *bw, const char *chrom) {
  if (bw->last_len != -2 && !strcmp(bw->last_chrom, chrom)) return bw->last_len;
  const chromList_t *cl = bw->fp->cl;
  int64_t len = -1;
  for (int64_t i = 0; i < cl->nKeys && len < 0; i++)
    if (!strcmp(cl->chrom[i], chrom)) len = cl->len[i];
  if (strlen(chrom) < sizeof bw->last_chrom) {
    memcpy(bw->last_chrom, chrom, strlen(chrom) + 1);
    bw->last_len = len;
  }
  return len;
}

int pai_bigwig_fill(pai_bigwig *bw, const char *chrom, int64_t chrom_len, int64_t start,
                    int64_t len, const pai_xform *xf, float *out, int64_t stride) {
  const int64_t end = start + len;
  const int64_t lo = start > 0 ? start : 0;                /* [lo, hi): inside the genome */
  const int64_t hi = end < chrom_len ? end : chrom_len;
  const float missing = (float)pai_xform_apply(xf, NAN);
  for (int64_t q = start; q < end; q++)
    out[(q - start) * stride] = (q >= lo && q < hi) ? missing : 0.0f;
  int64_t file_len = pai_bigwig_chrom_len(bw, chrom);
  const int64_t qhi = hi < file_len ? hi : file_len;       /* the file has nothing past its end */
  if (qhi <= lo || bw->empty) return 0;
  bwOverlappingIntervals_t *iv =
      bwGetOverlappingIntervals(bw->fp, chrom, (uint32_t)lo, (uint32_t)qhi);
  if (!iv) {
    PAI_ERR("%s: cannot read %s:%lld-%lld (damaged file?)", bw->path, chrom, (long long)lo,
            (long long)qhi);
    return PAI_ERR_IO;
  }
  for (uint32_t k = 0; k < iv->l; k++) {
    int64_t a = iv->start[k], b = iv->end[k];
    if (a < lo) a = lo;
    if (b > qhi) b = qhi;
    if (a >= b) continue;
    const float v = (float)pai_xform_apply(xf, iv->value[k]);
    float *o = out + (a - start) * stride;
    for (int64_t q = a; q < b; q++, o += stride) *o = v;
  }
  bwDestroyOverlappingIntervals(iv);
  return 0;
}
