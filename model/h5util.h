/* h5util.h - the HDF5 conventions shared by model folders and training shards.
 *
 * HDF5's own error-stack printing is switched off (pai_h5_quiet); each failure is reported once,
 * in our words, naming the file and the object, plus the failing call. Writers store integers as
 * int64 and strings as variable-length UTF-8. Include only from .c files that use HDF5. */
#ifndef PAI_H5UTIL_H
#define PAI_H5UTIL_H

#include <hdf5.h>

#include "model/pai.h"
#include "mpi/log.h"

/* In a function with `int rc` and a `fail:` label: on a negative result log the message and the
 * failing call, set rc = PAI_ERR_IO and jump to fail. */
#define H5_CHECK(call, ...)                                               \
  do {                                                                    \
    if ((call) < 0) {                                                     \
      PAI_ERR(__VA_ARGS__);                                               \
      PAI_ERR("  failing call: %s (%s:%d)", #call, __FILE__, __LINE__);   \
      rc = PAI_ERR_IO;                                                    \
      goto fail;                                                          \
    }                                                                     \
  } while (0)

static inline void pai_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Attribute `name` on loc: n values (scalar = 1: a scalar, n must be 1) of file type ftype,
 * written from v in memory type mtype. `path` is the file name for messages. */
int pai_h5_write_attr(hid_t loc, const char *path, const char *name, hid_t ftype, hid_t mtype,
                      const void *v, int n, int scalar) PAI_WUR;
/* Attribute `name` on loc: n int64 values (scalar = 1: a scalar, n must be 1). `path` is the
 * file name for messages. */
int pai_h5_write_i64(hid_t loc, const char *path, const char *name, const int64_t *v, int n,
                     int scalar) PAI_WUR;
/* Attribute of n strings (scalar = 1: one scalar string). */
int pai_h5_write_strs(hid_t loc, const char *path, const char *name, const char *const *s,
                      int n, int scalar) PAI_WUR;
/* Reads a scalar integer attribute as int64; a missing or unreadable one is an error naming the
 * file, the attribute and `what` the file should have been (e.g. "a ppreprocess shard"). */
int pai_h5_read_i64(hid_t loc, const char *path, const char *name, int64_t *v,
                    const char *what) PAI_WUR;
/* Reads a scalar string attribute (fixed or variable length) into out; PAI_ERR_INPUT when it
 * is missing or not a string. Quiet: the caller decides whether that is an error. */
int pai_h5_read_str(hid_t loc, const char *name, char *out, size_t out_len) PAI_WUR;

/* A float16 file type (IEEE binary16, little-endian; h5py reads it as numpy float16).
 * The caller closes it with H5Tclose. */
hid_t pai_h5_f16_type(void);

#endif
