/* options.c - see options.h. */
#include "model/options.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/log.h"

pai_opt *pai_opts_find(pai_opt *opts, int n_opts, const char *name) {
  for (int i = 0; i < n_opts; i++)
    if (strcmp(opts[i].name, name) == 0) return &opts[i];
  return NULL;
}

static const char *type_word(pai_opt_type t) {
  switch (t) {
    case PAI_OPT_INT: case PAI_OPT_I64: return "INT";
    case PAI_OPT_DOUBLE: return "NUM";
    case PAI_OPT_STR: return "STR";
    case PAI_OPT_FLAG: return "";
    case PAI_OPT_INT_LIST: return "INT...";
    case PAI_OPT_STR_LIST: return "STR...";
  }
  return "";
}

static void print_default(const pai_opt *o) {
  switch (o->type) {
    case PAI_OPT_INT: printf(" (default %d)", *(int *)o->dst); break;
    case PAI_OPT_I64: printf(" (default %lld)", (long long)*(int64_t *)o->dst); break;
    case PAI_OPT_DOUBLE: printf(" (default %g)", *(double *)o->dst); break;
    case PAI_OPT_STR:
      if (((char *)o->dst)[0]) printf(" (default %s)", (char *)o->dst);
      break;
    case PAI_OPT_FLAG: break;
    case PAI_OPT_INT_LIST: {
      const pai_int_list *l = o->dst;
      if (l->n) {
        printf(" (default");
        for (int i = 0; i < l->n; i++) printf(" %d", l->v[i]);
        printf(")");
      }
      break;
    }
    case PAI_OPT_STR_LIST: {
      const pai_str_list *l = o->dst;
      if (l->n) {
        printf(" (default");
        for (int i = 0; i < l->n; i++) printf(" %s", l->v[i]);
        printf(")");
      }
      break;
    }
  }
}

static void print_help(const pai_opt *opts, int n_opts, const char *prog, const char *summary) {
  printf("usage: %s [options]\n\n%s\n\noptions:\n", prog, summary);
  for (int i = 0; i < n_opts; i++) {
    char left[96];
    snprintf(left, sizeof left, "--%s %s", opts[i].name, type_word(opts[i].type));
    printf("  %-28s %s%s", left, opts[i].help, opts[i].required ? " [required]" : "");
    /* a required option has no default; a help text may describe its own default */
    if (!opts[i].required && !strstr(opts[i].help, "default")) print_default(&opts[i]);
    printf("\n");
  }
  printf("  %-28s %s\n", "--config FILE", "read option values from FILE (docs/config.md)");
  printf("  %-28s %s\n", "--help", "print this help and exit");
}

/* `where` names the source for error messages: "--name" or "file:line: name". */
static int parse_int(const char *s, int64_t *out, const char *where) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno) {
    PAI_ERR("%s: '%s' is not an integer", where, s);
    return PAI_ERR_USAGE;
  }
  *out = v;
  return 0;
}

/* Sets one option from the whitespace/comma separated words of `text`. */
static int set_value(pai_opt *o, const char *text, const char *where) {
  char buf[PAI_PATH_LEN];
  if (strlen(text) >= sizeof buf) {
    PAI_ERR("%s: value too long", where);
    return PAI_ERR_USAGE;
  }
  strcpy(buf, text);
  int64_t iv;
  switch (o->type) {
    case PAI_OPT_INT:
      PAI_TRY(parse_int(buf, &iv, where));
      if (iv < -2147483647LL || iv > 2147483647LL) {
        PAI_ERR("%s: '%s' is out of range", where, buf);
        return PAI_ERR_USAGE;
      }
      *(int *)o->dst = (int)iv;
      break;
    case PAI_OPT_I64:
      PAI_TRY(parse_int(buf, &iv, where));
      *(int64_t *)o->dst = iv;
      break;
    case PAI_OPT_DOUBLE: {
      char *end;
      errno = 0;
      double v = strtod(buf, &end);
      if (end == buf || *end || errno) {
        PAI_ERR("%s: '%s' is not a number", where, buf);
        return PAI_ERR_USAGE;
      }
      *(double *)o->dst = v;
      break;
    }
    case PAI_OPT_STR:
      strcpy((char *)o->dst, buf);
      break;
    case PAI_OPT_FLAG:
      if (!strcmp(buf, "1") || !strcmp(buf, "true") || !strcmp(buf, "yes")) {
        *(int *)o->dst = 1;
      } else if (!strcmp(buf, "0") || !strcmp(buf, "false") || !strcmp(buf, "no")) {
        *(int *)o->dst = 0;
      } else {
        PAI_ERR("%s: '%s' is not true/false", where, buf);
        return PAI_ERR_USAGE;
      }
      break;
    case PAI_OPT_INT_LIST:
    case PAI_OPT_STR_LIST: {
      int n = 0;
      char *save = NULL;
      for (char *tok = strtok_r(buf, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        if (n == PAI_MAX_LIST) {
          PAI_ERR("%s: more than %d values", where, PAI_MAX_LIST);
          return PAI_ERR_USAGE;
        }
        if (o->type == PAI_OPT_INT_LIST) {
          PAI_TRY(parse_int(tok, &iv, where));
          ((pai_int_list *)o->dst)->v[n] = (int)iv;
        } else {
          if (strlen(tok) >= PAI_NAME_LEN) {
            PAI_ERR("%s: '%s' is longer than %d characters", where, tok, PAI_NAME_LEN - 1);
            return PAI_ERR_USAGE;
          }
          strcpy(((pai_str_list *)o->dst)->v[n], tok);
        }
        n++;
      }
      if (n == 0) {
        PAI_ERR("%s: no value given", where);
        return PAI_ERR_USAGE;
      }
      if (o->type == PAI_OPT_INT_LIST) ((pai_int_list *)o->dst)->n = n;
      else ((pai_str_list *)o->dst)->n = n;
      break;
    }
  }
  o->is_set = 1;
  return 0;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  return s;
}

static int read_config(pai_opt *opts, int n_opts, const char *path, const char *section) {
  FILE *f = fopen(path, "r");
  if (!f) {
    PAI_ERR("cannot open config file %s", path);
    return PAI_ERR_IO;
  }
  char line[PAI_PATH_LEN + 128];
  char cur[PAI_NAME_LEN] = "";   /* "" = global section */
  int lineno = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *s = trim(line);
    if (!*s) continue;
    if (*s == '[') {
      char *close = strchr(s, ']');
      if (!close || close[1] || close - s - 1 >= PAI_NAME_LEN) {
        PAI_ERR("%s:%d: bad section header '%s'", path, lineno, s);
        rc = PAI_ERR_USAGE;
        break;
      }
      *close = 0;
      strcpy(cur, trim(s + 1));
      static const char *const programs[] = {"promoterai", "pmodel",    "psynth",
                                             "ppreprocess", "ptrain",   "pfinetune",
                                             "pprecompute"};
      int known = strcmp(cur, section) == 0;
      for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++)
        known |= strcmp(cur, programs[i]) == 0;
      if (!known)
        PAI_WARN("%s:%d: section [%s] names no program (promoterai, pmodel, psynth, "
                 "ppreprocess, ptrain, pfinetune, pprecompute): its keys are ignored",
                 path, lineno, cur);
      continue;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
      PAI_ERR("%s:%d: expected 'key = value', got '%s'", path, lineno, s);
      rc = PAI_ERR_USAGE;
      break;
    }
    *eq = 0;
    char *key = trim(s), *val = trim(eq + 1);
    int mine = cur[0] && strcmp(cur, section) == 0;
    if (cur[0] && !mine) continue;   /* another command's section */
    pai_opt *o = pai_opts_find(opts, n_opts, key);
    char where[PAI_PATH_LEN + 96];
    snprintf(where, sizeof where, "%s:%d: %s", path, lineno, key);
    if (!o) {
      if (!mine) continue;   /* global key of another command */
      PAI_ERR("%s: unknown key in section [%s]", where, cur);
      rc = PAI_ERR_USAGE;
      break;
    }
    if ((rc = set_value(o, val, where)) < 0) break;
  }
  fclose(f);
  return rc;
}

int pai_opts_parse(pai_opt *opts, int n_opts, const char *prog, const char *section,
                   const char *summary, int argc, char **argv) {
  /* --help first, then --config, then every other option in order. */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      print_help(opts, n_opts, prog, summary);
      return 1;
    }
  for (int i = 1; i < argc; i++) {
    const char *path = NULL;
    if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        PAI_ERR("--config needs a file name");
        return PAI_ERR_USAGE;
      }
      path = argv[i + 1];
    } else if (!strncmp(argv[i], "--config=", 9)) {
      path = argv[i] + 9;
    }
    if (path) PAI_TRY(read_config(opts, n_opts, path, section));
  }
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      PAI_ERR("unexpected argument '%s' (options start with --; see %s --help)", arg, prog);
      return PAI_ERR_USAGE;
    }
    char name[PAI_NAME_LEN];
    const char *inline_val = strchr(arg, '=');
    size_t len = inline_val ? (size_t)(inline_val - arg - 2) : strlen(arg + 2);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arg + 2, len);
    name[len] = 0;
    if (!strcmp(name, "config")) {
      if (!inline_val) i++;
      continue;
    }
    pai_opt *o = pai_opts_find(opts, n_opts, name);
    char where[PAI_NAME_LEN + 8];
    snprintf(where, sizeof where, "--%s", name);
    if (!o) {
      PAI_ERR("unknown option --%s (see %s --help)", name, prog);
      return PAI_ERR_USAGE;
    }
    if (inline_val) {
      PAI_TRY(set_value(o, inline_val + 1, where));
      continue;
    }
    if (o->type == PAI_OPT_FLAG) {
      *(int *)o->dst = 1;
      o->is_set = 1;
      continue;
    }
    /* Lists take every following word up to the next option (argparse nargs='+'). */
    int last = i + 1;
    if (o->type == PAI_OPT_INT_LIST || o->type == PAI_OPT_STR_LIST)
      while (last + 1 < argc && strncmp(argv[last + 1], "--", 2) != 0) last++;
    if (last >= argc || !strncmp(argv[last], "--", 2)) {
      PAI_ERR("--%s needs a value", name);
      return PAI_ERR_USAGE;
    }
    char joined[PAI_PATH_LEN];
    joined[0] = 0;
    for (int k = i + 1; k <= last; k++) {
      if (strlen(joined) + strlen(argv[k]) + 2 > sizeof joined) {
        PAI_ERR("--%s: value too long", name);
        return PAI_ERR_USAGE;
      }
      if (k > i + 1) strcat(joined, " ");
      strcat(joined, argv[k]);
    }
    PAI_TRY(set_value(o, joined, where));
    i = last;
  }
  for (int i = 0; i < n_opts; i++)
    if (opts[i].required && !opts[i].is_set) {
      PAI_ERR("missing required option --%s (see %s --help)", opts[i].name, prog);
      return PAI_ERR_USAGE;
    }
  /* Every program's --threads means the same (0: OMP_NUM_THREADS, else all cores), so it is
   * checked here once rather than in each program. */
  const pai_opt *t = pai_opts_find(opts, n_opts, "threads");
  if (t && t->type == PAI_OPT_INT && *(const int *)t->dst < 0) {
    PAI_ERR("--threads %d: must be >= 0 (0: OMP_NUM_THREADS, else all cores)", *(const int *)t->dst);
    return PAI_ERR_USAGE;
  }
  return 0;
}

void pai_str_list_chroms(pai_str_list *l, int first, int last, int step) {
  l->n = 0;
  for (int i = first; i <= last && l->n < PAI_MAX_LIST; i += step)
    snprintf(l->v[l->n++], PAI_NAME_LEN, "chr%d", i);
}

int pai_str_list_has(const pai_str_list *l, const char *s) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->v[i], s)) return 1;
  return 0;
}
