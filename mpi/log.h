/* log.h - rank-aware log lines on stderr.
 *
 *   [E rank 3 shard_write] shard 17 (chr7): wrote 812 rows, expected 1024
 *   [W var_read] vars.tsv:12: ...          (single process: no rank shown)
 *
 * The rank is set once per process by the dist context (pai_log_set_rank); programs that are
 * not distributed never set it. Levels: E error, W warning, I progress/info. */
#ifndef PAI_LOG_H
#define PAI_LOG_H

#include <stdarg.h>

void pai_log_set_rank(int rank, int size);
void pai_log_set_quiet(int quiet);   /* 1: drop I lines (errors and warnings still print) */
/* 1: drop every line. For ranks that repeat work rank 0 already reports (parsing the command
 * line), so that a message is printed once, not once per rank. */
void pai_log_set_mute(int mute);
void pai_log(char level, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define PAI_ERR(...) pai_log('E', __func__, __VA_ARGS__)
#define PAI_WARN(...) pai_log('W', __func__, __VA_ARGS__)
#define PAI_INFO(...) pai_log('I', __func__, __VA_ARGS__)

#endif
