/* config.c - see config.h. */
#include "model/config.h"

#include <string.h>

#include "mpi/log.h"

void pai_config_defaults(pai_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->num_blocks = 24;
  cfg->model_dim = 1024;
  cfg->kernel_size = 5;
  cfg->shortcut_freq = 4;
  cfg->bn_epsilon = 1e-3;
}

int pai_dilation(int block) {
  int e = block / 2 - 1;
  return e <= 0 ? 1 : 1 << e;
}

int pai_receptive_radius(int num_blocks) {
  int r = 0;
  for (int i = 0; i < num_blocks; i++) r += 2 * pai_dilation(i);
  return r;
}

int pai_padding_reaches_outputs(const pai_config *cfg) {
  return cfg->input_length < cfg->output_length + 2 * pai_receptive_radius(cfg->num_blocks);
}

int pai_n_shortcuts(const pai_config *cfg) {
  return (cfg->num_blocks + cfg->shortcut_freq - 1) / cfg->shortcut_freq;
}

int pai_shortcut_layer(const pai_config *cfg, int k) {
  return cfg->num_blocks - k * cfg->shortcut_freq;
}

int pai_config_check(const pai_config *c, const char *source) {
  const char *why = NULL;
  if (c->num_blocks < 1 || c->num_blocks > 40) why = "num_blocks must be in 1..40";
  else if (c->model_dim < 1) why = "model_dim must be >= 1";
  else if (c->kernel_size != 5) why = "kernel_size must be 5";
  else if (c->shortcut_freq != 4) why = "shortcut_freq must be 4";
  else if (c->input_length < 2 || c->input_length % 2) why = "input_length must be even and >= 2";
  else if (c->output_length < 1 || c->output_length > c->input_length)
    why = "output_length must be in 1..input_length";
  else if ((c->input_length - c->output_length) % 2)
    why = "input_length - output_length must be even (the crop is centred)";
  else if (!(c->bn_epsilon > 0)) why = "bn_epsilon must be > 0";
  else if (c->n_heads < 1 || c->n_heads > PAI_MAX_HEADS) why = "there must be 1..8 heads";
  if (!why)
    for (int j = 0; j < c->n_heads; j++)
      if (c->output_dims[j] < 1) why = "every output_dims value must be >= 1";
  if (why) {
    PAI_ERR("%s: %s (num_blocks %d, model_dim %d, input_length %d, output_length %d, heads %d)",
            source, why, c->num_blocks, c->model_dim, c->input_length, c->output_length,
            c->n_heads);
    return PAI_ERR_INPUT;
  }
  return 0;
}
