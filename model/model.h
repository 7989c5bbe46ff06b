/* model.h - a model = hyper-parameters + parameters, and the model folder on disk.
 *
 * Model folder format (docs/model-format.md): <folder>/model.h5, float32 datasets in the Keras
 * weight layout (channels last), root attributes for the hyper-parameters. */
#ifndef PAI_MODEL_H
#define PAI_MODEL_H

#include "model/params.h"

typedef struct {
  pai_config cfg;
  pai_params params;
} pai_model;

/* Creates a model with cfg's shape: params zeroed (call pai_params_init_random to initialise). */
int pai_model_create(pai_model *m, const pai_config *cfg) PAI_WUR;

/* Reads <folder>/model.h5. Every problem (missing folder or file, truncated file, missing
 * attribute or dataset, wrong shape or type) is logged naming the file and the item. */
int pai_model_load(pai_model *m, const char *folder) PAI_WUR;

/* Writes <folder>/model.h5 (folder created when missing) through a temporary file renamed into
 * place, so that an interrupted save never leaves a half-written model.h5. */
int pai_model_save(const pai_model *m, const char *folder) PAI_WUR;

void pai_model_free(pai_model *m);

/* "hg38_finetune" for "models/hg38_finetune/" (trailing slashes ignored). */
void pai_folder_name(const char *folder, char *out, size_t out_len);

/* Creates a directory and its parents (mkdir -p). */
int pai_mkdir_p(const char *path) PAI_WUR;

#endif
