/* checkpoint.h - a buffer in a parameter layout as HDF5 datasets, one per tensor.
 *
 * model.h5 (model.h) stores the parameters this way with an empty prefix ("/block_3/bn1/gamma");
 * a training state stores optimizer moments under prefixes ("/adam_m/block_3/bn1/gamma").
 * Datasets are float32 in the tensor's shape; `path` is the file name for messages. Include only
 * from .c files that use HDF5. */
#ifndef PAI_CHECKPOINT_H
#define PAI_CHECKPOINT_H

#include <hdf5.h>

#include "model/params.h"

/* Writes buf's tensors as prefix + tensor path (intermediate groups created); trainable_only
 * skips the batch-norm moving statistics. */
int pai_tensors_write(hid_t file, const char *path, const char *prefix, const pai_params *layout,
                      const float *buf, int trainable_only) PAI_WUR;
/* Reads them back into buf, checking every dataset's presence, shape and type. */
int pai_tensors_read(hid_t file, const char *path, const char *prefix, const pai_params *layout,
                     float *buf, int trainable_only) PAI_WUR;

/* The hyper-parameters as root attributes of a model.h5 (docs/model-format.md): write, and read
 * with every attribute's presence and type checked (not yet pai_config_check'ed). */
int pai_config_write_h5(hid_t file, const char *path, const pai_config *c) PAI_WUR;
int pai_config_read_h5(hid_t file, const char *path, pai_config *cfg) PAI_WUR;

#endif
