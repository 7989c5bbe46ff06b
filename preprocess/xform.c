/* xform.c - see xform.h. A recursive-descent reader over the text; on error it reports the
 * rest of the text from where reading stopped. */
#include "preprocess/xform.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *s, *p;      /* text, cursor */
  char var[PAI_NAME_LEN]; /* the lambda's variable name ("x") */
  pai_xform *xf;
  char *err;
  size_t err_len;
  int depth;
} reader;

static void skip_ws(reader *r) {
  while (isspace((unsigned char)*r->p)) r->p++;
}

static int fail(reader *r, const char *expected) {
  if (r->err[0] == 0) {
    if (*r->p)
      snprintf(r->err, r->err_len, "expected %s at '%.40s' (column %d)", expected, r->p,
               (int)(r->p - r->s) + 1);
    else
      snprintf(r->err, r->err_len, "expected %s at the end of the text", expected);
  }
  return PAI_ERR_INPUT;
}

/* Reads an identifier (letters, digits, '_', '.'), without consuming on mismatch. */
static size_t ident_len(const char *p) {
  size_t n = 0;
  if (!(isalpha((unsigned char)p[0]) || p[0] == '_')) return 0;
  while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '.') n++;
  return n;
}

static int accept(reader *r, char c) {
  skip_ws(r);
  if (*r->p != c) return 0;
  r->p++;
  return 1;
}

static int push(reader *r, pai_xf_kind kind, double c) {
  if (r->xf->n_ops == PAI_XFORM_MAX_OPS) return fail(r, "a shorter expression");
  r->xf->ops[r->xf->n_ops].kind = kind;
  r->xf->ops[r->xf->n_ops].c = c;
  r->xf->n_ops++;
  return 0;
}

/* A constant: digits with an optional sign, point and exponent (no inf/nan/hex). */
static int number(reader *r, double *v) {
  skip_ws(r);
  const char *q = r->p;
  if (*q == '-' || *q == '+') q++;
  if (!(isdigit((unsigned char)*q) || (*q == '.' && isdigit((unsigned char)q[1])))) return 0;
  size_t n = strspn(q, "0123456789.eE+-");
  char buf[64];
  size_t len = (size_t)(q - r->p) + n;
  if (len >= sizeof buf) return 0;
  memcpy(buf, r->p, len);
  buf[len] = 0;
  char *end;
  double x = strtod(buf, &end);
  if (end == buf || !isfinite(x)) return 0;
  r->p += end - buf;
  *v = x;
  return 1;
}

static int expr(reader *r);

static int term(reader *r) {
  skip_ws(r);
  double c;
  if (number(r, &c)) {
    if (!accept(r, '*')) return fail(r, "'*' after a constant");
    PAI_TRY(expr(r));
    return push(r, PAI_XF_SCALE, c);
  }
  if (accept(r, '(')) {
    PAI_TRY(expr(r));
    return accept(r, ')') ? 0 : fail(r, "')'");
  }
  size_t n = ident_len(r->p);
  if (n == 0) return fail(r, "the variable, a function or a constant");
  char name[PAI_NAME_LEN];
  if (n >= sizeof name) return fail(r, "a known function");
  memcpy(name, r->p, n);
  name[n] = 0;
  if (!strcmp(name, r->var)) {
    r->p += n;
    return 0;
  }
  const char *fn = name;
  if (!strncmp(fn, "np.", 3)) fn += 3;
  else if (!strncmp(fn, "numpy.", 6)) fn += 6;
  pai_xf_kind kind;
  if (!strcmp(fn, "nan_to_num")) kind = PAI_XF_NAN_TO_NUM;
  else if (!strcmp(fn, "arcsinh")) kind = PAI_XF_ARCSINH;
  else if (!strcmp(fn, "log1p")) kind = PAI_XF_LOG1P;
  else return fail(r, "nan_to_num, arcsinh, log1p, the variable or a constant");
  r->p += n;
  if (!accept(r, '(')) return fail(r, "'('");
  PAI_TRY(expr(r));
  if (!accept(r, ')')) return fail(r, "')'");
  return push(r, kind, 0);
}

static int expr(reader *r) {
  if (++r->depth > 64) return fail(r, "a less deeply nested expression");
  PAI_TRY(term(r));
  for (;;) {
    skip_ws(r);
    if (*r->p != '*') {
      r->depth--;
      return 0;
    }
    r->p++;
    double c;
    if (!number(r, &c)) return fail(r, "a constant after '*'");
    PAI_TRY(push(r, PAI_XF_SCALE, c));
  }
}

int pai_xform_parse(const char *text, pai_xform *xf, char *err, size_t err_len) {
  memset(xf, 0, sizeof *xf);
  reader r = {.s = text, .p = text, .var = "x", .xf = xf, .err = err, .err_len = err_len};
  err[0] = 0;
  skip_ws(&r);
  size_t n = ident_len(r.p);
  if (n == 8 && !strncmp(r.p, "identity", 8)) {
    r.p += 8;
    skip_ws(&r);
    return *r.p ? fail(&r, "nothing after 'identity'") : 0;
  }
  if (n == 6 && !strncmp(r.p, "lambda", 6) && isspace((unsigned char)r.p[6])) {
    r.p += 6;
    skip_ws(&r);
    size_t v = ident_len(r.p);
    if (v == 0 || v >= sizeof r.var || memchr(r.p, '.', v)) return fail(&r, "a variable name");
    memcpy(r.var, r.p, v);
    r.var[v] = 0;
    r.p += v;
    if (!accept(&r, ':')) return fail(&r, "':' after the lambda's variable");
  }
  PAI_TRY(expr(&r));
  skip_ws(&r);
  return *r.p ? fail(&r, "the end of the transform") : 0;
}

double pai_xform_apply(const pai_xform *xf, double v) {
  for (int i = 0; i < xf->n_ops; i++) {
    switch (xf->ops[i].kind) {
      case PAI_XF_NAN_TO_NUM:
        if (isnan(v)) v = 0;
        else if (isinf(v)) v = v > 0 ? FLT_MAX : -FLT_MAX;
        break;
      case PAI_XF_SCALE: v *= xf->ops[i].c; break;
      case PAI_XF_ARCSINH: v = asinh(v); break;
      case PAI_XF_LOG1P: v = log1p(v); break;
    }
  }
  return v;
}

int pai_xform_nan_is_zero(const pai_xform *xf) { return pai_xform_apply(xf, NAN) == 0.0; }
