/* options.h - one table of options per command, filled from a config file and the command line.
 *
 * Every command declares its options once (name, type, destination, help). The same names are
 * the keys of the config file (docs/config.md):
 *
 *   # comment
 *   model_dim = 1024          <- global section: read by every command that has the option
 *   [ppreprocess]
 *   input_length = 32768      <- read only by `ppreprocess`, overrides the global value
 *
 * Precedence: built-in default < config global section < config [command] section < command line.
 * A global key that the command does not have is ignored (it may be another command's); an unknown
 * key inside the command's own section, or an unknown command-line option, is an error. */
#ifndef PAI_OPTIONS_H
#define PAI_OPTIONS_H

#include "model/pai.h"

#define PAI_MAX_LIST 256   /* e.g. every chromosome of a genome in --chrom */

typedef enum {
  PAI_OPT_INT,       /* dst: int *          */
  PAI_OPT_I64,       /* dst: int64_t *      */
  PAI_OPT_DOUBLE,    /* dst: double *       */
  PAI_OPT_STR,       /* dst: char[PAI_PATH_LEN] */
  PAI_OPT_FLAG,      /* dst: int * (0/1); in a config: true/false/1/0 */
  PAI_OPT_INT_LIST,  /* dst: pai_int_list *; "498 472" or "498,472" */
  PAI_OPT_STR_LIST,  /* dst: pai_str_list * */
} pai_opt_type;

typedef struct {
  int n;
  int v[PAI_MAX_LIST];
} pai_int_list;

typedef struct {
  int n;
  char v[PAI_MAX_LIST][PAI_NAME_LEN];
} pai_str_list;

typedef struct {
  const char *name;   /* without the leading "--" */
  pai_opt_type type;
  void *dst;          /* holds the default on entry */
  const char *help;   /* one line */
  int required;
  int is_set;         /* out: 1 when set by the config file or the command line */
} pai_opt;

/* Parses argv[1..argc) (a subcommand, if any, already removed by the caller).
 * `section` names the config section read besides the global one (e.g. "pmodel").
 * Returns 0, 1 when --help was printed (the caller exits 0), or PAI_ERR_USAGE (logged). */
int pai_opts_parse(pai_opt *opts, int n_opts, const char *prog, const char *section,
                   const char *summary, int argc, char **argv) PAI_WUR;

/* Fills l with "chr<first>", "chr<first + step>", ... up to chr<last>. */
void pai_str_list_chroms(pai_str_list *l, int first, int last, int step);

/* 1 when s is one of l's values. */
int pai_str_list_has(const pai_str_list *l, const char *s);

/* Returns the option named `name`, or NULL. */
pai_opt *pai_opts_find(pai_opt *opts, int n_opts, const char *name);

#endif
