/* cone.c - see cone.h for the algorithm and why it is exact.
 *
 * Coordinates: union rows u = 0 .. n - 1 + L - 1; variant k's changed base at c = k + vi; its
 * cropped outputs are the union rows [k + C, k + C + O), C = (L - O) / 2, i.e. [C - vi, C - vi + O)
 * relative to c. Relative to c, layer s is needed on [need_lo(s), need_hi(s)) = that window widened
 * by r_N - r_s, and can differ from the reference on [-r_s, r_s]: the alternate rows kept for
 * layer s are the intersection, [a_lo[s], a_hi[s]). Every variant of a site has the same
 * relative geometry, so a batch of variants is one set of equal-shaped buffers. */
#include "model/cone.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "model/layers.h"
#include "mpi/log.h"

static int max_i(int a, int b) { return a > b ? a : b; }
static int min_i(int a, int b) { return a < b ? a : b; }

/* Receptive radius after s blocks. */
static int radius_after(int s) {
  int r = 0;
  for (int i = 0; i < s; i++) r += 2 * pai_dilation(i);
  return r;
}

/* need_lo / need_hi (relative to c) and the alternate rows a_lo / a_hi of layers 0..N. */
static void geometry(const pai_config *c, int vi, int *a_lo, int *a_hi, int *need_lo,
                     int *need_hi) {
  const int N = c->num_blocks, rN = radius_after(N), w0 = pai_crop(c) - vi;
  for (int s = 0; s <= N; s++) {
    const int rs = radius_after(s);
    const int nl = w0 - (rN - rs), nh = w0 + c->output_length + (rN - rs);
    if (need_lo) need_lo[s] = nl;
    if (need_hi) need_hi[s] = nh;
    a_lo[s] = max_i(-rs, nl);
    a_hi[s] = min_i(rs + 1, nh);
  }
}

/* Shortcut index k of layer s (k = 0 is layer N), or -1 when the heads do not read layer s. */
static int shortcut_of(const pai_config *c, int s) {
  if (s == 0 || (c->num_blocks - s) % c->shortcut_freq != 0) return -1;
  return (c->num_blocks - s) / c->shortcut_freq;
}

/* Rows of the gather (input) and alternate (output) buffers per item, over both strands' vi. */
static void buffer_rows(const pai_config *c, int *max_in, int *max_out) {
  const int N = c->num_blocks, L = c->input_length;
  int a_lo[N + 1], a_hi[N + 1];
  *max_in = *max_out = 1;
  for (int vi = L / 2 - 1; vi <= L / 2; vi++) {
    geometry(c, vi, a_lo, a_hi, NULL, NULL);
    for (int s = 0; s <= N; s++) *max_out = max_i(*max_out, a_hi[s] - a_lo[s]);
    for (int s = 0; s < N; s++)
      *max_in = max_i(*max_in, a_hi[s + 1] - a_lo[s + 1] + 4 * pai_dilation(s));
  }
}

static int head_rows_chunk(const pai_config *c) { return pai_ffn_chunk(c->model_dim); }

size_t pai_cone_bytes(const pai_config *c, int n_max, int batch) {
  const size_t N = (size_t)c->num_blocks, D = (size_t)c->model_dim, U = (size_t)n_max - 1 + c->input_length;
  int max_in, max_out;
  buffer_rows(c, &max_in, &max_out);
  const size_t chunk = (size_t)pai_ffn_chunk(c->model_dim);
  return (N + 1) * U * D * sizeof(float) +
         (size_t)pai_n_shortcuts(c) * ((size_t)n_max + c->output_length) * sizeof(double) +
         (size_t)batch * ((size_t)max_in + 2 * (size_t)max_out) * D * sizeof(float) +
         chunk * (5 * D + (size_t)c->output_dims[0]) * sizeof(float);
}

void pai_cone_free(pai_cone *cn) {
  pai_cone_gpu_free(cn);
  if (cn->ref)
    for (int s = 0; s <= cn->model->cfg.num_blocks; s++) free(cn->ref[s]);
  if (cn->ref_cum)
    for (int k = 0; k < pai_n_shortcuts(&cn->model->cfg); k++) free(cn->ref_cum[k]);
  free(cn->ref);
  free(cn->ref_cum);
  free(cn->fold);
  free(cn->fold_data);
  free(cn->a_lo);
  free(cn->a_hi);
  free(cn->r_lo);
  free(cn->r_hi);
  free(cn->g);
  free(cn->x);
  free(cn->m);
  free(cn->gin);
  free(cn->t);
  free(cn->head_tmp);
  free(cn->diff);
  memset(cn, 0, sizeof *cn);
}

int pai_cone_init(pai_cone *cn, const pai_model *model, int n_max, int batch) {
  return pai_cone_init_backend(cn, model, n_max, batch, &PAI_BACKEND_CPU);
}

int pai_cone_init_backend(pai_cone *cn, const pai_model *model, int n_max, int batch,
                          const pai_backend *backend) {
  memset(cn, 0, sizeof *cn);
  const int gpu = backend->device == PAI_DEVICE_CUDA;
  const pai_config *c = &model->cfg;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const int radius = pai_receptive_radius(N);
  if (L < O + 2 * radius) {
    PAI_ERR("input_length %d < output_length %d + 2 x receptive radius %d: padding would reach "
            "the kept outputs, so variants cannot share one reference pass (REFERENCE.md 2.4)",
            L, O, radius);
    return PAI_ERR_INPUT;
  }
  if (n_max < 1 || batch < 1) {
    PAI_ERR("cone scorer: need at least one variant per site and per batch");
    return PAI_ERR_USAGE;
  }
  cn->model = model;
  cn->n_max = n_max;
  cn->batch = batch;
  cn->chunk = pai_ffn_chunk(D);
  buffer_rows(c, &cn->max_in, &cn->max_out);
  const int n_short = pai_n_shortcuts(c), T0 = c->output_dims[0];
  const size_t U = (size_t)n_max - 1 + L;
  int rc = pai_block_fold_init(model, &cn->fold, &cn->fold_data);
  if (rc < 0) return rc;
  cn->a_lo = calloc((size_t)N + 1, sizeof(int));
  cn->a_hi = calloc((size_t)N + 1, sizeof(int));
  cn->r_lo = calloc((size_t)N + 1, sizeof(int));
  cn->r_hi = calloc((size_t)N + 1, sizeof(int));
  cn->ref = calloc((size_t)N + 1, sizeof *cn->ref);
  cn->ref_cum = calloc((size_t)n_short, sizeof *cn->ref_cum);
  cn->diff = malloc((size_t)batch * sizeof(double));
  int ok = cn->a_lo && cn->a_hi && cn->r_lo && cn->r_hi && cn->ref && cn->ref_cum && cn->diff;
  if (!gpu) {   /* the host's buffers; the GPU keeps its own (cone_gpu.c) */
    cn->g = malloc((size_t)batch * cn->max_in * D * sizeof(float));
    cn->x = malloc((size_t)batch * cn->max_out * D * sizeof(float));
    cn->m = malloc((size_t)batch * cn->max_out * D * sizeof(float));
    cn->gin = malloc((size_t)cn->chunk * D * sizeof(float));
    cn->t = malloc((size_t)cn->chunk * 4 * D * sizeof(float));
    cn->head_tmp = malloc((size_t)head_rows_chunk(c) * T0 * sizeof(float));
    ok = ok && cn->g && cn->x && cn->m && cn->gin && cn->t && cn->head_tmp;
  }
  for (int s = 0; ok && !gpu && s <= N; s++) ok = (cn->ref[s] = malloc(U * D * sizeof(float))) != NULL;
  for (int k = 0; ok && k < n_short; k++)
    ok = (cn->ref_cum[k] = malloc(((size_t)n_max + O) * sizeof(double))) != NULL;
  if (!ok) {
    PAI_ERR("out of memory for the cone scorer (%.1f GiB for %d variants per site, batch %d)",
            pai_cone_bytes(c, n_max, batch) / 1073741824.0, n_max, batch);
    pai_cone_free(cn);
    return PAI_ERR_NOMEM;
  }
  if (gpu) {
    rc = pai_cone_gpu_init(cn, backend);
    if (rc < 0) pai_cone_free(cn);
    return rc;
  }
  return 0;
}

/* Sum over rows [0, rows) and tracks of ReLU(x P + c) (x: rows of D; head 0, projection k);
 * with cum, also cum[r + 1] = cum[r] + the sum of row r (prefix sums, cum[0] set by the caller). */
static double head_sum(const pai_cone *cn, int k, const float *x, int rows, double *cum) {
  const pai_config *c = &cn->model->cfg;
  const int D = c->model_dim, T = c->output_dims[0], chunk = head_rows_chunk(c);
  const pai_proj_params *pp = pai_proj(&cn->model->params, 0, k);
  double total = 0;
  for (int r0 = 0; r0 < rows; r0 += chunk) {
    const int n = min_i(chunk, rows - r0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, T, D, 1.0f, x + (size_t)r0 * D, D,
                pp->kernel, T, 0.0f, cn->head_tmp, T);
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int r = 0; r < n; r++) {
      const float *tr = cn->head_tmp + (size_t)r * T;
      double row = 0;
      for (int j = 0; j < T; j++) row += pai_relu(tr[j] + pp->bias[j]);
      s += row;
      if (cum) cum[r0 + r + 1] = row;
    }
    if (cum)
      for (int r = 0; r < n; r++) cum[r0 + r + 1] += cum[r0 + r];
    total += s;
  }
  return total;
}

int pai_cone_reference(pai_cone *cn, const uint8_t *u, int n, int vi) {
  const pai_model *model = cn->model;
  const pai_config *c = &model->cfg;
  const pai_params *P = &model->params;
  const int N = c->num_blocks, D = c->model_dim, L = c->input_length, O = c->output_length;
  const int C = pai_crop(c), U = n - 1 + L;
  if (n < 1 || n > cn->n_max || (vi != L / 2 && vi != L / 2 - 1)) {
    PAI_ERR("cone scorer: site of %d variants (at most %d), vi %d", n, cn->n_max, vi);
    return PAI_ERR_USAGE;
  }
  cn->n = n;
  cn->vi = vi;
  int need_lo[N + 1], need_hi[N + 1];
  geometry(c, vi, cn->a_lo, cn->a_hi, need_lo, need_hi);
  for (int s = 0; s <= N; s++) {   /* rows some variant (k = 0 .. n - 1) needs */
    cn->r_lo[s] = vi + need_lo[s];
    cn->r_hi[s] = n - 1 + vi + need_hi[s];
  }
  if (cn->gpu) return pai_cone_gpu_reference(cn, u, n);
  stem_forward_cpu(cn->ref[0], u, P->stem.kernel, P->stem.bias, D, cn->r_lo[0], cn->r_hi[0]);
  for (int s = 0; s < N; s++) {
    const pai_block_params *bp = &P->blocks[s];
    const pai_block_fold *f = &cn->fold[s];
    dwconv_bn_res_forward_cpu(cn->ref[s + 1], cn->ref[s], f->ws, f->wc, f->bfull, bp->dw_bias, U,
                              D, pai_dilation(s), cn->r_lo[s + 1], cn->r_hi[s + 1]);
    ffn_res_forward_cpu(cn->ref[s + 1], f->scale2, f->shift2, bp->ffn1_kernel, bp->ffn1_bias,
                        bp->ffn2_kernel, bp->ffn2_bias, D, 4 * D, cn->r_lo[s + 1],
                        cn->r_hi[s + 1], cn->chunk, cn->gin, cn->t);
  }
  /* prefix sums of the reference head rows over [C, C + n - 1 + O), every shortcut layer */
  for (int k = 0; k < pai_n_shortcuts(c); k++) {
    const int s = pai_shortcut_layer(c, k);
    cn->ref_cum[k][0] = 0;
    (void)head_sum(cn, k, cn->ref[s] + (size_t)C * D, n - 1 + O, cn->ref_cum[k]);
  }
  return 0;
}

int pai_cone_alts(pai_cone *cn, const int *k, const uint8_t *alt, int B, double *raw) {
  const pai_model *model = cn->model;
  const pai_config *c = &model->cfg;
  const pai_params *P = &model->params;
  const int N = c->num_blocks, D = c->model_dim, O = c->output_length, C = pai_crop(c);
  const int vi = cn->vi, w0 = C - vi;   /* the output window starts at c + w0 */
  if (B < 1 || B > cn->batch) {
    PAI_ERR("cone scorer: batch of %d alternates, at most %d", B, cn->batch);
    return PAI_ERR_USAGE;
  }
  for (int b = 0; b < B; b++)
    if (k[b] < 0 || k[b] >= cn->n || alt[b] > 3) {
      PAI_ERR("cone scorer: variant %d of a site of %d, alternate code %d", k[b], cn->n, alt[b]);
      return PAI_ERR_USAGE;
    }
  const double denom = (double)pai_n_shortcuts(c) * O * c->output_dims[0];
  if (cn->gpu) {
    PAI_TRY(pai_cone_gpu_alts(cn, k, alt, B, cn->diff));
    for (int b = 0; b < B; b++) raw[b] = cn->diff[b] / denom;
    return 0;
  }
  /* layer 0: only the changed row differs (a_lo[0] = 0, a_hi[0] = 1) */
  stem_forward_cpu(cn->x, alt, P->stem.kernel, P->stem.bias, D, 0, B);
  for (int b = 0; b < B; b++) cn->diff[b] = 0;
  float *x = cn->x, *m = cn->m;
  for (int s = 0; s < N; s++) {
    const pai_block_params *bp = &P->blocks[s];
    const pai_block_fold *f = &cn->fold[s];
    const int d = pai_dilation(s), n_out = cn->a_hi[s + 1] - cn->a_lo[s + 1];
    const int lo_in = cn->a_lo[s + 1] - 2 * d, n_in = n_out + 4 * d;
    const int n_alt = cn->a_hi[s] - cn->a_lo[s], off = cn->a_lo[s] - lo_in;
    const float *ref = cn->ref[s];
    /* gather: reference rows around the cone, this item's alternate rows inside it */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
      const int cb = k[b] + vi;
      float *gb = cn->g + (size_t)b * n_in * D;
      memcpy(gb, ref + (size_t)(cb + lo_in) * D, (size_t)n_in * D * sizeof(float));
      memcpy(gb + (size_t)off * D, x + (size_t)b * n_alt * D, (size_t)n_alt * D * sizeof(float));
    }
    dwconv_bn_res_interior_cpu(m, cn->g, f->ws, f->bfull, B, n_out, D, d);
    ffn_res_forward_cpu(m, f->scale2, f->shift2, bp->ffn1_kernel, bp->ffn1_bias, bp->ffn2_kernel,
                        bp->ffn2_bias, D, 4 * D, 0, B * n_out, cn->chunk, cn->gin, cn->t);
    float *swap = x;
    x = m;
    m = swap;
    const int kk = shortcut_of(c, s + 1);
    if (kk < 0) continue;
    /* head rows: the cone's rows of layer s + 1 inside the output window */
    const int hl = max_i(cn->a_lo[s + 1], w0), hh = min_i(cn->a_hi[s + 1], w0 + O);
    if (hh <= hl) continue;
    const double *cum = cn->ref_cum[kk];
    for (int b = 0; b < B; b++) {
      const int cb = k[b] + vi;
      const double alt_sum =
          head_sum(cn, kk, x + ((size_t)b * n_out + (hl - cn->a_lo[s + 1])) * D, hh - hl, NULL);
      cn->diff[b] += alt_sum - (cum[cb + hh - C] - cum[cb + hl - C]);
    }
  }
  for (int b = 0; b < B; b++) raw[b] = cn->diff[b] / denom;
  return 0;
}

static double block_row_flops(double D) { return 16.0 * D * D + 2.0 * 5 * D; }

double pai_cone_alt_flops(const pai_config *c, int vi) {
  const int N = c->num_blocks, O = c->output_length, w0 = pai_crop(c) - vi;
  int a_lo[N + 1], a_hi[N + 1];
  geometry(c, vi, a_lo, a_hi, NULL, NULL);
  double f = 0;
  for (int s = 1; s <= N; s++) {
    f += (a_hi[s] - a_lo[s]) * block_row_flops(c->model_dim);
    if (shortcut_of(c, s) >= 0) {
      const int rows = min_i(a_hi[s], w0 + O) - max_i(a_lo[s], w0);
      if (rows > 0) f += rows * 2.0 * c->model_dim * c->output_dims[0];
    }
  }
  return f;
}

double pai_cone_ref_flops(const pai_config *c, int n, int vi) {
  const int N = c->num_blocks;
  int a_lo[N + 1], a_hi[N + 1], need_lo[N + 1], need_hi[N + 1];
  geometry(c, vi, a_lo, a_hi, need_lo, need_hi);
  double f = 0;
  for (int s = 1; s <= N; s++) f += (n - 1 + need_hi[s] - need_lo[s]) * block_row_flops(c->model_dim);
  f += (double)pai_n_shortcuts(c) * (n - 1 + c->output_length) * 2.0 * c->model_dim *
       c->output_dims[0];
  return f;
}

double pai_twin_flops(const pai_config *c) {
  const int N = c->num_blocks, L = c->input_length;
  int lo = pai_crop(c), hi = pai_crop(c) + c->output_length;
  double f = 0;
  for (int s = N; s >= 1; s--) {   /* block s - 1 computes rows [lo, hi) of layer s */
    f += (hi - lo) * block_row_flops(c->model_dim);
    const int r = 2 * pai_dilation(s - 1);
    lo = max_i(0, lo - r);
    hi = min_i(L, hi + r);
  }
  f += (double)pai_n_shortcuts(c) * c->output_length * 2.0 * c->model_dim * c->output_dims[0];
  return 2 * f;
}
