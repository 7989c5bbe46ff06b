/* xform.h - the track table's value transforms, read as text and evaluated natively.
 *
 * Accepted (docs/preprocess.md): the published spellings
 *   lambda x: np.arcsinh(np.nan_to_num(x))
 *   lambda x: np.arcsinh(1000 * np.nan_to_num(x))
 * and the grammar
 *   xform  := [ "lambda" NAME ":" ] expr | "identity"
 *   expr   := NAME | func "(" expr ")" | number "*" expr | expr "*" number | "(" expr ")"
 *   func   := [ "np." | "numpy." ] ( "nan_to_num" | "arcsinh" | "log1p" )
 * Every function is unary and scaling is by a constant, so an expression is a chain of
 * operations applied innermost first; that chain is what is stored. Nothing is executed. */
#ifndef PAI_XFORM_H
#define PAI_XFORM_H

#include <stddef.h>

#include "model/pai.h"

#define PAI_XFORM_MAX_OPS 16

typedef enum { PAI_XF_NAN_TO_NUM, PAI_XF_SCALE, PAI_XF_ARCSINH, PAI_XF_LOG1P } pai_xf_kind;

typedef struct {
  int n_ops;
  struct {
    pai_xf_kind kind;
    double c;   /* the constant of PAI_XF_SCALE */
  } ops[PAI_XFORM_MAX_OPS];
} pai_xform;

/* Returns 0, or PAI_ERR_INPUT with a one-line reason in err (what was expected, and where). */
int pai_xform_parse(const char *text, pai_xform *xf, char *err, size_t err_len) PAI_WUR;

/* The transform of one value (NaN = no data), in double precision with numpy's semantics:
 * nan_to_num maps NaN to 0 and +-inf to +-FLT_MAX (the values are float32). */
double pai_xform_apply(const pai_xform *xf, double v);

/* 1 when the transform maps NaN to 0, i.e. "no data" reads as 0 (the published forms). */
int pai_xform_nan_is_zero(const pai_xform *xf);

#endif
