/* seq.c - see seq.h. */
#include "model/seq.h"

uint8_t pai_base_code(char base) {
  switch (base) {
    case 'A': case 'a': return 0;
    case 'C': case 'c': return 1;
    case 'G': case 'g': return 2;
    case 'T': case 't': return 3;
    default: return 4;
  }
}

void pai_encode(uint8_t *codes, const char *seq, size_t n) {
  for (size_t i = 0; i < n; i++) codes[i] = pai_base_code(seq[i]);
}

void pai_revcomp_codes(uint8_t *codes, size_t n) {
  for (size_t i = 0, j = n ? n - 1 : 0; i < n / 2; i++, j--) {
    uint8_t a = codes[i], b = codes[j];
    codes[i] = b < 4 ? 3 - b : 4;
    codes[j] = a < 4 ? 3 - a : 4;
  }
  if (n % 2) codes[n / 2] = codes[n / 2] < 4 ? 3 - codes[n / 2] : 4;
}

int pai_is_acgt(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (pai_base_code(s[i]) == 4) return 0;
  return 1;
}
