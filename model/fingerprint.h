/* fingerprint.h - FNV-1a 64-bit hashes that tell whether a rerun's inputs are the ones an
 * earlier run used (ppreprocess's shard fingerprints, pprecompute's job identity). */
#ifndef PAI_FINGERPRINT_H
#define PAI_FINGERPRINT_H

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define PAI_FNV_INIT 0xcbf29ce484222325ULL

static inline uint64_t pai_fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ULL;
  return h;
}

static inline uint64_t pai_fnv_str(uint64_t h, const char *s) {
  return pai_fnv(h, s, strlen(s) + 1);
}

/* A file by path, size and modification time (not its bytes: genomes and models are large). */
static inline uint64_t pai_fnv_file(uint64_t h, const char *path) {
  struct stat st;
  int64_t v[3] = {0, 0, 0};
  if (stat(path, &st) == 0) {
    v[0] = (int64_t)st.st_size;
    v[1] = (int64_t)st.st_mtim.tv_sec;
    v[2] = (int64_t)st.st_mtim.tv_nsec;
  }
  return pai_fnv(pai_fnv_str(h, path), v, sizeof v);
}

#endif
