/* config.h - the network's hyper-parameters (REFERENCE.md section 2) and what follows from them.
 *
 * Block i (0-based) has dilation d_i = max(1, 2^(floor(i/2) - 1)): 1,1,1,1,2,2,4,4,...
 * Shortcut layers feeding the heads: s = N, N-4, N-8, ... > 0 (layer_s = output of s blocks).
 * Receptive radius = 2 * sum(d_i); L = O + 2 * radius makes padding unreachable from the crop. */
#ifndef PAI_CONFIG_H
#define PAI_CONFIG_H

#include "model/pai.h"

typedef struct {
  int num_blocks;      /* N */
  int model_dim;       /* D */
  int kernel_size;     /* 5 */
  int shortcut_freq;   /* 4 */
  int input_length;    /* L */
  int output_length;   /* O */
  double bn_epsilon;   /* 1e-3 */
  int n_heads;
  int output_dims[PAI_MAX_HEADS];              /* T_j */
  char head_names[PAI_MAX_HEADS][PAI_NAME_LEN];
} pai_config;

/* Fills the published defaults except the lengths and heads, which the caller sets. */
void pai_config_defaults(pai_config *cfg);

/* Checks that the hyper-parameters describe a buildable network; logs what is wrong. */
int pai_config_check(const pai_config *cfg, const char *source) PAI_WUR;

int pai_dilation(int block);
int pai_receptive_radius(int num_blocks);
/* 1 when input_length < output_length + 2 * receptive radius: the zero padding then reaches the
 * kept outputs, and computing only some positions (training crops, shared reference passes)
 * is no longer exact (REFERENCE.md section 2.4). */
int pai_padding_reaches_outputs(const pai_config *cfg);
/* Number of shortcut layers (N, N-4, ... > 0) and the k-th of them (k = 0 is N). */
int pai_n_shortcuts(const pai_config *cfg);
int pai_shortcut_layer(const pai_config *cfg, int k);
/* Centre-crop offset (L - O) / 2. */
static inline int pai_crop(const pai_config *cfg) {
  return (cfg->input_length - cfg->output_length) / 2;
}

/* The widest head's output_dim (T of the largest head). */
static inline int pai_max_output_dim(const pai_config *cfg) {
  int t = 0;
  for (int j = 0; j < cfg->n_heads; j++)
    if (cfg->output_dims[j] > t) t = cfg->output_dims[j];
  return t;
}

#endif
