/* log.c - see log.h. One fprintf per line so that lines of different ranks do not interleave. */
#include "mpi/log.h"

#include <stdio.h>

#include "model/pai.h"

static int log_rank = -1;   /* -1: not distributed, no rank shown */
static int log_quiet = 0;
static int log_mute = 0;

void pai_log_set_rank(int rank, int size) { log_rank = size > 1 ? rank : -1; }
void pai_log_set_quiet(int quiet) { log_quiet = quiet; }
void pai_log_set_mute(int mute) { log_mute = mute; }

void pai_log(char level, const char *where, const char *fmt, ...) {
  if (log_mute || (level == 'I' && log_quiet)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log_rank >= 0)
    fprintf(stderr, "[%c rank %d %s] %s\n", level, log_rank, where, msg);
  else
    fprintf(stderr, "[%c %s] %s\n", level, where, msg);
  fflush(stderr);
}

const char *pai_status_str(int status) {
  switch (status) {
    case PAI_OK: return "ok";
    case PAI_ERR_USAGE: return "usage error";
    case PAI_ERR_INPUT: return "bad input";
    case PAI_ERR_IO: return "I/O error";
    case PAI_ERR_NOMEM: return "out of memory";
    case PAI_ERR_RUNTIME: return "runtime error";
  }
  return "unknown error";
}
