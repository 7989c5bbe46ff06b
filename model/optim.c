/* optim.c - see optim.h. Sums and the update run in double; the stored values are float. */
#include "model/optim.h"

#include <math.h>

/* Sum of squares in a fixed number of pieces added in order: the same bits whatever the thread
 * count (an OpenMP reduction combines in no fixed order, and resumed runs must be identical). */
static double sum_squares(const float *g, size_t n) {
  enum { PIECES = 64 };
  double part[PIECES];
#pragma omp parallel for schedule(static)
  for (int k = 0; k < PIECES; k++) {
    double s = 0;
    for (size_t e = n * k / PIECES; e < n * (k + 1) / PIECES; e++) s += (double)g[e] * g[e];
    part[k] = s;
  }
  double s = 0;
  for (int k = 0; k < PIECES; k++) s += part[k];
  return s;
}

pai_adamw pai_adamw_defaults(double lr, double wd, double clipnorm) {
  return (pai_adamw){.lr = lr, .wd = wd, .clipnorm = clipnorm, .beta1 = 0.9, .beta2 = 0.999,
                     .eps = 1e-7};
}

void pai_adamw_step(const pai_adamw *o, pai_params *P, const float *grad, float *m, float *v,
                    int64_t step, const unsigned char *mask) {
  const double t = (double)step + 1.0;
  const double alpha = o->lr * sqrt(1.0 - pow(o->beta2, t)) / (1.0 - pow(o->beta1, t));
  const double decay = 1.0 - o->lr * o->wd;
  for (int ti = 0; ti < P->n_tensors; ti++) {
    const pai_tensor *tn = &P->tensors[ti];
    if (!tn->trainable || (mask && !mask[ti])) continue;
    const size_t n = tn->n_elems, at = tn->offset;
    float *w = P->data + at, *mt = m + at, *vt = v + at;
    const float *g = grad + at;
    const double norm = sqrt(sum_squares(g, n));
    const double clip = o->clipnorm > 0 && norm > o->clipnorm ? o->clipnorm / norm : 1.0;
#pragma omp parallel for schedule(static)
    for (size_t e = 0; e < n; e++) {
      const double ge = g[e] * clip;
      const double me = mt[e] + (1.0 - o->beta1) * (ge - mt[e]);
      const double ve = vt[e] + (1.0 - o->beta2) * (ge * ge - vt[e]);
      mt[e] = (float)me;
      vt[e] = (float)ve;
      w[e] = (float)(w[e] * decay - alpha * me / (sqrt(ve) + o->eps));
    }
  }
}

double pai_schedule_factor(int epoch, int n_epochs) {
  const double tenth = 0.1 * n_epochs, e = epoch;
  if (e < tenth) return (e + 1.0) / tenth;
  if (e > 0.9 * n_epochs) return (n_epochs - e) / tenth;
  return 1.0;
}
