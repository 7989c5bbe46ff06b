/* trainstate.h - the full state of a training run, saved after every epoch and read by --resume.
 *
 * <model_folder>/train_state.h5 (docs/training.md): the model's hyper-parameter attributes as in
 * model.h5, then attributes format_version, step (optimizer steps taken), epoch (epochs done),
 * seed, batch_size, n_epochs, best_val_loss, initial_val_loss (of the untrained model); datasets /params/<tensor> (every tensor, moving
 * statistics included), /adam_m/<tensor> and /adam_v/<tensor> (trainable tensors) and /log
 * float64 [epoch, 4] (loss, val_loss, lr, wd of each epoch done). The data order and the
 * augmentation draws are functions of (seed, step) (loader.h), so this is everything a resumed run
 * needs to continue bit for bit. Written to a temporary file and renamed into place. */
#ifndef PAI_TRAINSTATE_H
#define PAI_TRAINSTATE_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
  double loss, val_loss, lr, wd;
} pai_epoch_log;

typedef struct {
  int64_t step;
  int epoch;
  int64_t seed;
  int batch_size, n_epochs;
  double best_val_loss;     /* INFINITY before the first validation */
  double initial_val_loss;  /* validation loss of the initial weights */
  pai_epoch_log *log;       /* [capacity n_epochs]; `epoch` rows used */
} pai_progress;

int pai_state_save(const char *path, const pai_model *m, const float *adam_m,
                   const float *adam_v, const pai_progress *p) PAI_WUR;

/* Reads a state: creates *m (free with pai_model_free) and allocates *adam_m, *adam_v (n_floats
 * each) and p->log (max(n_epochs, epoch) rows). */
int pai_state_load(const char *path, pai_model *m, float **adam_m, float **adam_v,
                   pai_progress *p) PAI_WUR;

/* Progress within an epoch: the step losses, and a line every log_every steps and at the
 * epoch's last step (rate in `unit`/s and mean loss since the previous line). */
typedef struct {
  double loss_sum;         /* over the epoch so far */
  double loss_mark, t_mark;
  int64_t mark;            /* steps done at the last line */
} pai_meter;

void pai_meter_start(pai_meter *m);
/* Adds step s (0-based, of spe)'s loss; prints on rank 0 when it is time. */
void pai_meter_step(pai_meter *m, int rank, int epoch, int n_epochs, int64_t s, int64_t spe,
                    int log_every, int batch, const char *unit, double loss);

/* Records the epoch just done (row) in p: log row, epoch count, best validation loss. Returns 1
 * when its val_loss is the best so far. Every rank calls it (or pai_epoch_save, on rank 0). */
int pai_epoch_record(pai_progress *p, const pai_epoch_log *row);

/* Rank 0's end of an epoch: pai_epoch_record, then in folder (created when missing) model.h5 when
 * the epoch is the best so far, the state at state_path and logs.csv, and the epoch's line. */
int pai_epoch_save(const char *folder, const char *state_path, const pai_model *m,
                   const float *adam_m, const float *adam_v, pai_progress *p,
                   const pai_epoch_log *row, double seconds) PAI_WUR;

/* folder/logs.csv: header epoch,loss,val_loss,lr,wd and one row per epoch done (0-based),
 * rewritten whole (temporary file + rename). */
int pai_logs_csv_write(const char *folder, const pai_progress *p) PAI_WUR;

#endif
