/* fasta.c - see fasta.h. */
#include "preprocess/fasta.h"

#include <errno.h>
#include <htslib/faidx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi/log.h"
#include "preprocess/tsv.h"

struct pai_fasta {
  faidx_t *fai;
  char path[PAI_PATH_LEN];
};

/* Why htslib could not index path, guessed from its first bytes (htslib's own reason goes to
 * stderr only, and is silenced). */
static const char *index_failure(const char *path) {
  unsigned char b[18] = {0};
  FILE *f = fopen(path, "rb");
  const size_t n = f ? fread(b, 1, sizeof b, f) : 0;
  if (f) fclose(f);
  const int gz = n >= 2 && b[0] == 0x1f && b[1] == 0x8b;
  const int bgzf = gz && n >= 14 && (b[3] & 4) && b[12] == 'B' && b[13] == 'C';
  if (gz && !bgzf) return "gzip-compressed, which htslib cannot index: recompress with bgzip";
  char dir[PAI_PATH_LEN];
  const char *slash = strrchr(path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
  if (access(dir, W_OK) != 0) return "its folder is not writable, and the index goes beside it";
  if (bgzf) return "a damaged bgzip file?";
  if (n == 0) return "an empty file";
  if (b[0] != '>') return "not FASTA: the first line does not start with '>'";
  return "lines of different lengths within a sequence? rewrap it to one line length";
}

int pai_fasta_open(pai_fasta **out, const char *path) {
  *out = NULL;
  struct stat sp;
  if (stat(path, &sp) == 0 && S_ISDIR(sp.st_mode)) {
    PAI_ERR("FASTA %s: is a directory (a file is expected)", path);
    return PAI_ERR_IO;
  }
  if (access(path, R_OK) != 0) {
    PAI_ERR("cannot read FASTA %s: %s", path, strerror(errno));
    return PAI_ERR_IO;
  }
  /* htslib trusts an existing index blindly: one older than its FASTA (the FASTA rewritten since)
   * would give wrong sequence silently */
  char index[PAI_PATH_LEN + 8];
  snprintf(index, sizeof index, "%s.fai", path);
  struct stat sf, si;
  if (stat(path, &sf) == 0 && stat(index, &si) == 0 &&
      (si.st_mtim.tv_sec < sf.st_mtim.tv_sec ||
       (si.st_mtim.tv_sec == sf.st_mtim.tv_sec && si.st_mtim.tv_nsec < sf.st_mtim.tv_nsec))) {
    PAI_ERR("FASTA index %s is older than %s (the FASTA changed since it was indexed): delete "
            "the index, it is rebuilt on the next run",
            index, path);
    return PAI_ERR_INPUT;
  }
  pai_fasta *fa = calloc(1, sizeof *fa);
  if (!fa) return PAI_ERR_NOMEM;
  snprintf(fa->path, sizeof fa->path, "%s", path);
  /* htslib would print its own lines too; this function reports the failure once, below */
  const int level = pai_hts_quiet();
  fa->fai = fai_load3(path, NULL, NULL, FAI_CREATE);
  pai_hts_restore(level);
  if (!fa->fai) {
    char fai[PAI_PATH_LEN + 8];
    snprintf(fai, sizeof fai, "%s.fai", path);
    if (access(fai, F_OK) != 0)
      PAI_ERR("cannot index FASTA %s: %s.fai could not be built (%s)", path, path,
              index_failure(path));
    else
      PAI_ERR("cannot load the index of FASTA %s (stale or damaged %s.fai?)", path, path);
    free(fa);
    return PAI_ERR_INPUT;
  }
  *out = fa;
  return 0;
}

void pai_fasta_close(pai_fasta *fa) {
  if (!fa) return;
  fai_destroy(fa->fai);
  free(fa);
}

int64_t pai_fasta_chrom_len(pai_fasta *fa, const char *chrom) {
  if (!faidx_has_seq(fa->fai, chrom)) return -1;
  return faidx_seq_len(fa->fai, chrom);   /* int in htslib 1.16: chromosomes < 2^31 bp */
}

int pai_fasta_n_chroms(const pai_fasta *fa) { return faidx_nseq(fa->fai); }
const char *pai_fasta_chrom_name(const pai_fasta *fa, int i) { return faidx_iseq(fa->fai, i); }

int pai_fasta_window(pai_fasta *fa, const char *chrom, int64_t start, int64_t len, char *out) {
  int64_t clen = pai_fasta_chrom_len(fa, chrom);
  if (clen < 0) {
    PAI_ERR("%s: no sequence named %s", fa->path, chrom);
    return PAI_ERR_INPUT;
  }
  memset(out, 'N', (size_t)len);
  int64_t a = start < 0 ? 0 : start, b = start + len > clen ? clen : start + len;
  if (a >= b) return 0;
  hts_pos_t got = 0;
  char *s = faidx_fetch_seq64(fa->fai, chrom, a, b - 1, &got);   /* end is inclusive */
  if (!s || got != b - a) {
    PAI_ERR("%s: cannot read %s:%lld-%lld (file changed after indexing?)", fa->path, chrom,
            (long long)a + 1, (long long)b);
    free(s);
    return PAI_ERR_IO;
  }
  memcpy(out + (a - start), s, (size_t)(b - a));
  free(s);
  return 0;
}
