/* seq.h - DNA sequence encoding (REFERENCE.md section 1).
 * Base codes: 0=A 1=C 2=G 3=T 4=anything else (N, IUPAC: an all-zero one-hot row).
 * Lower case counts as upper case. Reverse complement = reverse the positions and map
 * code c -> 3 - c (A<->T, C<->G); code 4 stays 4. */
#ifndef PAI_SEQ_H
#define PAI_SEQ_H

#include <stddef.h>
#include <stdint.h>

uint8_t pai_base_code(char base);
void pai_encode(uint8_t *codes, const char *seq, size_t n);
void pai_revcomp_codes(uint8_t *codes, size_t n);   /* in place */
/* 1 when every character of s (length n >= 1) is A/C/G/T in either case. */
int pai_is_acgt(const char *s, size_t n);

#endif
