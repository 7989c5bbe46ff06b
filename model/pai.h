/* pai.h - status codes, error macros and limits shared by the whole library.
 *
 * Library functions return 0 (PAI_OK) or a negative pai_status and are marked PAI_WUR.
 * Only main() ends the process. Errors are logged where they are detected, with the file,
 * line or field they concern (see mpi/log.h), and then passed up unchanged. */
#ifndef PAI_H
#define PAI_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum {
  PAI_OK = 0,
  PAI_ERR_USAGE = -1,   /* bad command line or config value */
  PAI_ERR_INPUT = -2,   /* bad input file contents */
  PAI_ERR_IO = -3,      /* a file could not be opened, read or written */
  PAI_ERR_NOMEM = -4,
  PAI_ERR_RUNTIME = -5, /* a library call (BLAS, HDF5, CUDA, MPI) failed */
} pai_status;

#define PAI_WUR __attribute__((warn_unused_result))

/* Return a negative status from the calling function. */
#define PAI_TRY(expr)                  \
  do {                                 \
    int pai_try_rc_ = (expr);          \
    if (pai_try_rc_ < 0) return pai_try_rc_; \
  } while (0)

/* Store a negative status in `rc` and jump to the function's single `fail:` label. */
#define PAI_CHECK(expr)   \
  do {                    \
    rc = (expr);          \
    if (rc < 0) goto fail; \
  } while (0)

#define PAI_MAX_HEADS 8
#define PAI_NAME_LEN 64
#define PAI_PATH_LEN 4096

const char *pai_status_str(int status);

/* The process exit code of every program: 0 success, 2 usage error, 1 anything else. */
static inline int pai_exit_code(int status) {
  return status == 0 ? 0 : status == PAI_ERR_USAGE ? 2 : 1;
}

/* Seconds on a monotonic clock, for progress lines and benchmarks. */
static inline double pai_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
