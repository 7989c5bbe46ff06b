/* bigwig.h - reading one bigWig track over a window, through libBigWig, with a transform.
 *
 * Values are read as intervals (runs of one value), so the transform is evaluated once per run
 * rather than once per base. Positions are 0-based, half-open. */
#ifndef PAI_BIGWIG_H
#define PAI_BIGWIG_H

#include <stdint.h>

#include "model/pai.h"
#include "preprocess/xform.h"

typedef struct pai_bigwig pai_bigwig;

/* Opens path for reading; a file that cannot be opened or is not a bigWig is an error naming it.
 * pai_bigwig_open logs nothing (the caller names the table row): a local path that is missing,
 * unreadable or a directory is PAI_ERR_IO with errno saying why, a file that does not start
 * with the bigWig magic number (or is a bigBed) PAI_ERR_INPUT, both without calling libBigWig,
 * so nothing else is printed. A damaged file that starts like a bigWig is PAI_ERR_INPUT too,
 * after libBigWig has printed its own lines about it. pai_bigwig_init() must have been called
 * once in the process. */
int pai_bigwig_init(void) PAI_WUR;
int pai_bigwig_open(pai_bigwig **bw, const char *path) PAI_WUR;
void pai_bigwig_close(pai_bigwig *bw);
const char *pai_bigwig_path(const pai_bigwig *bw);

/* Length of chrom in the file's header, or -1 when the file has no such chromosome. */
int64_t pai_bigwig_chrom_len(pai_bigwig *bw, const char *chrom);   /* caches the last lookup */

/* Writes out[i * stride] for i in [0, len), position q = start + i of chrom:
 *   0                  where q < 0 or q >= chrom_len (the genome's length),
 *   xf(value)          where the file has data,
 *   xf(NaN)            elsewhere inside the chromosome.
 * The chromosome must be in the file (check with pai_bigwig_chrom_len). */
int pai_bigwig_fill(pai_bigwig *bw, const char *chrom, int64_t chrom_len, int64_t start,
                    int64_t len, const pai_xform *xf, float *out, int64_t stride) PAI_WUR;

#endif
