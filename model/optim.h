/* optim.h - AdamW with per-tensor gradient clipping, and the epoch schedule (REFERENCE.md 5).
 *
 * The update is the Keras AdamW the published model trained with, per trainable tensor w with
 * gradient g (already summed over the replicas), in this order:
 *   g = g * clipnorm / ||g||        when ||g|| > clipnorm (L2 norm over the whole tensor)
 *   w = w - lr * wd * w             decoupled weight decay, on the pre-step weights
 *   m = m + (1 - beta1) (g - m);  v = v + (1 - beta2) (g^2 - v)
 *   w = w - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps),   t = step + 1
 * (epsilon is added to sqrt(v) before the bias correction, as Keras does). Batch-norm moving
 * statistics are not trainable and are left alone. m and v share the parameter buffer's layout. */
#ifndef PAI_OPTIM_H
#define PAI_OPTIM_H

#include <stdint.h>

#include "model/params.h"

typedef struct {
  double lr, wd;        /* this epoch's values (schedule applied) */
  double clipnorm;      /* <= 0: no clipping */
  double beta1, beta2, eps;
} pai_adamw;

/* beta1 0.9, beta2 0.999, eps 1e-7; lr, wd and clipnorm from the caller. */
pai_adamw pai_adamw_defaults(double lr, double wd, double clipnorm);

/* One step: `step` steps were taken before this one. Only tensors with mask[i] != 0 (indexed
 * like P->tensors; NULL = every trainable tensor) are updated. */
void pai_adamw_step(const pai_adamw *o, pai_params *P, const float *grad, float *m, float *v,
                    int64_t step, const unsigned char *mask);

/* The factor lr and wd are scaled by in epoch e (0-based) of E: a linear warm-up over the first
 * tenth, a linear cool-down over the last tenth, 1 in between. */
double pai_schedule_factor(int epoch, int n_epochs);

#endif
