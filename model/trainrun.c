/* trainrun.c - see trainrun.h.
 *
 * Step loop: while step t computes, a reader thread plans and reads step t + 1 into the other
 * of two batch slots (only that thread calls HDF5 meanwhile; no read is in flight at an epoch's
 * end, when the main thread validates and saves). Every step ends with pai_dist_agree, so a rank
 * whose read fails stops every rank at the same step. */
#include "model/trainrun.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/loader.h"
#include "model/optim.h"
#include "model/train.h"
#include "model/trainstate.h"
#include "mpi/comm.h"
#include "mpi/log.h"

/* ---- reading ahead ------------------------------------------------------------------------------ */

typedef struct {
  pai_sampler *smp;
  int64_t step;
  int first, local;     /* this rank's slice of the global batch */
  int species;
  pai_draw *draws;      /* [global batch] */
  uint8_t *x;
  float *y;
  uint16_t *scratch;
  int status;
  pthread_t thread;
  int running;
} fetch;

static void *fetch_main(void *arg) {
  fetch *f = arg;
  f->status = pai_sampler_plan(f->smp, f->step, 1, &f->species, f->draws);
  if (f->status == 0)
    f->status = pai_read_draws(f->smp, f->species, f->draws + f->first, f->local, f->x, f->y,
                               f->scratch);
  return NULL;
}

static int fetch_start(fetch *f, int64_t step) {
  f->step = step;
  if (pthread_create(&f->thread, NULL, fetch_main, f) != 0) {
    PAI_ERR("cannot start the reader thread");
    return PAI_ERR_RUNTIME;
  }
  f->running = 1;
  return 0;
}

static int fetch_wait(fetch *f) {
  if (!f->running) return 0;
  pthread_join(f->thread, NULL);
  f->running = 0;
  return f->status;
}

/* ---- validation (inference-mode batch norm, centred crops, head 0) ----------------------------- */

static int validate(const pai_dist *d, pai_comm *comm, const pai_model *model, pai_dataset *val,
                    int local, uint8_t *x, float *y, uint16_t *scratch,
                    const pai_backend *backend, double *val_loss) {
  const pai_config *c = &model->cfg;
  const int L = c->input_length, O = c->output_length, T = c->output_dims[0];
  const int64_t lo = val->n_samples * d->rank / d->size,
                hi = val->n_samples * (d->rank + 1) / d->size;
  pai_infer inf;
  float *pred = malloc((size_t)local * O * T * sizeof(float));
  int rc = pred ? pai_infer_init(&inf, model, local, PAI_HEAD(0), backend) : PAI_ERR_NOMEM;
  double sums[2] = {0, (double)(hi - lo)};
  for (int64_t i = lo; rc == 0 && i < hi; i += local) {
    const int nb = hi - i < local ? (int)(hi - i) : local;
    for (int b = 0; b < nb && rc == 0; b++)
      rc = pai_dataset_read(val, i + b, pai_crop_x0(val, L), pai_crop_y0(val, O), L, O,
                            x + (size_t)b * L, y + (size_t)b * O * T, scratch);
    if (rc == 0) rc = pai_infer_forward(&inf, x, nb, &pred);
    for (int b = 0; rc == 0 && b < nb; b++) {
      if (!pai_sample_weight(x + (size_t)b * L, L)) continue;
      double sq = 0;
      const float *pb = pred + (size_t)b * O * T, *yb = y + (size_t)b * O * T;
      for (size_t e = 0; e < (size_t)O * T; e++) sq += ((double)pb[e] - yb[e]) * (pb[e] - yb[e]);
      sums[0] += sq / ((double)O * T);
    }
  }
  if (pred) pai_infer_free(&inf);
  free(pred);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) return rc;
  PAI_TRY(pai_comm_sum_f64(comm, sums, 2));
  *val_loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
  return 0;
}

/* ---- the run ----------------------------------------------------------------------------------- */

int pai_train_run(const pai_dist *d, const pai_train_opts *o) {
  int rc = 0;
  pai_model model = {0};
  pai_params G = {0};
  pai_progress prog = {0};
  float *adam_m = NULL, *adam_v = NULL;
  pai_dataset sets[PAI_MAX_HEADS + 1];   /* [0] human train ... [n_heads] human validation */
  int n_sets = 0, have_val = 0;
  pai_sampler smp = {0};
  pai_trainer tr = {0};
  pai_comm comm = {0}, comm_nccl = {0};
  fetch slot[2] = {{0}, {0}};
  memset(sets, 0, sizeof sets);
  char state_path[PAI_PATH_LEN + 32];
  snprintf(state_path, sizeof state_path, "%s/train_state.h5", o->model_folder);

  /* ---- inputs: every rank checks the same things, only rank 0 speaks ---- */
  if (d->rank != 0) pai_log_set_mute(1);
  const int n_heads = 1 + o->h5_nonhuman_folders->n;
  if (o->batch_size < 1 || o->batch_size % d->size != 0) {
    PAI_ERR("--batch_size %d (the global batch) must be a positive multiple of the number of "
            "ranks, %d",
            o->batch_size, d->size);
    rc = PAI_ERR_USAGE;
  } else if (n_heads > PAI_MAX_HEADS) {
    PAI_ERR("%d nonhuman folders: at most %d species", n_heads - 1, PAI_MAX_HEADS - 1);
    rc = PAI_ERR_USAGE;
  } else if (o->epochs < 1 || o->log_every < 1 || o->steps_per_epoch < 0) {
    PAI_ERR("--epochs and --log_every must be >= 1, --steps_per_epoch >= 0");
    rc = PAI_ERR_USAGE;
  } else if (o->num_blocks < 1 || o->input_length % 2 || o->output_length % 2 ||
             o->input_length < o->output_length + 2 * pai_receptive_radius(o->num_blocks)) {
    /* REFERENCE.md 2.4: the kept outputs must see real input only, never the padding */
    PAI_ERR("--input_length %d must be even and at least --output_length %d (even) + 2 x the "
            "receptive radius of %d blocks (%d) = %d",
            o->input_length, o->output_length, o->num_blocks,
            pai_receptive_radius(o->num_blocks > 0 ? o->num_blocks : 1),
            o->output_length + 2 * pai_receptive_radius(o->num_blocks > 0 ? o->num_blocks : 1));
    rc = PAI_ERR_USAGE;
  }
  const int local = o->batch_size / (d->size > 0 ? d->size : 1);
  struct stat st;
  const int state_exists = stat(state_path, &st) == 0;
  if (rc == 0 && o->resume && !state_exists) {
    PAI_ERR("--resume: %s has no train_state.h5 (nothing to resume; drop --resume to start)",
            o->model_folder);
    rc = PAI_ERR_USAGE;
  } else if (rc == 0 && o->resume) {
    rc = pai_state_load(state_path, &model, &adam_m, &adam_v, &prog);
    if (rc == 0 && (prog.batch_size != o->batch_size || prog.seed != o->seed)) {
      PAI_ERR("%s was trained with --batch_size %d --seed %lld; resume with the same values "
              "(got %d, %lld)",
              state_path, prog.batch_size, (long long)prog.seed, o->batch_size,
              (long long)o->seed);
      rc = PAI_ERR_USAGE;
    }
  } else if (rc == 0 && state_exists) {
    PAI_ERR("%s already holds a training run (train_state.h5): pass --resume to continue it, or "
            "choose another --model_folder",
            o->model_folder);
    rc = PAI_ERR_USAGE;
  }
  /* datasets */
  pai_str_list train = *o->train_chroms, valc = *o->val_chroms;
  if (train.n == 0) pai_str_list_chroms(&train, 1, 20, 1);
  if (valc.n == 0) pai_str_list_chroms(&valc, 21, 22, 1);
  for (int j = 0; rc == 0 && j < n_heads; j++) {
    const char *folder = j == 0 ? o->h5_human_folder : o->h5_nonhuman_folders->v[j - 1];
    rc = j == 0 ? pai_dataset_open(&sets[j], folder, train.v, train.n, o->input_length,
                                   o->output_length)
                : pai_dataset_open(&sets[j], folder, NULL, -1, o->input_length, o->output_length);
    n_sets = j + 1;
    if (rc == 0 && sets[j].n_samples == 0) {
      PAI_ERR("%s: no training sample (chromosomes %s%s)", folder, j == 0 ? train.v[0] : "all",
              j == 0 && train.n > 1 ? " ..." : "");
      rc = PAI_ERR_INPUT;
    }
  }
  if (rc == 0) {
    rc = pai_dataset_open(&sets[n_heads], o->h5_human_folder, valc.v, valc.n, o->input_length,
                          o->output_length);
    have_val = rc == 0;
    if (rc == 0 && sets[n_heads].n_samples == 0) {
      PAI_ERR("%s: no validation sample (chromosomes %s ...; see --val_chroms)",
              o->h5_human_folder, valc.v[0]);
      rc = PAI_ERR_INPUT;
    }
    if (rc == 0 && sets[n_heads].n_tracks != sets[0].n_tracks) {
      PAI_ERR("%s: validation shards have %d tracks, training shards %d", o->h5_human_folder,
              sets[n_heads].n_tracks, sets[0].n_tracks);
      rc = PAI_ERR_INPUT;
    }
  }
  /* the model: new, or the resumed one, which must fit the data */
  pai_config cfg;
  pai_config_defaults(&cfg);
  cfg.num_blocks = o->num_blocks;
  cfg.model_dim = o->model_dim;
  cfg.input_length = o->input_length;
  cfg.output_length = o->output_length;
  cfg.n_heads = n_heads;
  for (int j = 0; rc == 0 && j < n_heads; j++) {
    cfg.output_dims[j] = sets[j].n_tracks;
    if (j == 0) snprintf(cfg.head_names[0], PAI_NAME_LEN, "human");
    else pai_folder_name(o->h5_nonhuman_folders->v[j - 1], cfg.head_names[j], PAI_NAME_LEN);
  }
  if (rc == 0 && o->resume) {
    const pai_config *mc = &model.cfg;
    int same = mc->num_blocks == cfg.num_blocks && mc->model_dim == cfg.model_dim &&
               mc->input_length == cfg.input_length && mc->output_length == cfg.output_length &&
               mc->n_heads == cfg.n_heads;
    for (int j = 0; same && j < n_heads; j++) same = mc->output_dims[j] == cfg.output_dims[j];
    if (!same) {
      /* name the first difference, in the words of the command line */
      char what[160];
      if (mc->num_blocks != cfg.num_blocks)
        snprintf(what, sizeof what, "--num_blocks %d, saved %d", cfg.num_blocks, mc->num_blocks);
      else if (mc->model_dim != cfg.model_dim)
        snprintf(what, sizeof what, "--model_dim %d, saved %d", cfg.model_dim, mc->model_dim);
      else if (mc->input_length != cfg.input_length)
        snprintf(what, sizeof what, "--input_length %d, saved %d", cfg.input_length,
                 mc->input_length);
      else if (mc->output_length != cfg.output_length)
        snprintf(what, sizeof what, "--output_length %d, saved %d", cfg.output_length,
                 mc->output_length);
      else if (mc->n_heads != cfg.n_heads)
        snprintf(what, sizeof what, "%d heads from the shard folders, saved %d", cfg.n_heads,
                 mc->n_heads);
      else
        snprintf(what, sizeof what, "the shards' track counts differ from the saved heads'");
      PAI_ERR("%s: the saved model (%d blocks, dim %d, lengths %d / %d, %d heads) does not match "
              "these options and shards (%s)",
              state_path, mc->num_blocks, mc->model_dim, mc->input_length, mc->output_length,
              mc->n_heads, what);
      rc = PAI_ERR_USAGE;
    }
    if (rc == 0 && prog.n_epochs != o->epochs) {
      PAI_WARN("%s: the run was started with --epochs %d; continuing with %d (the schedule "
               "follows the new value)",
               state_path, prog.n_epochs, o->epochs);
      pai_epoch_log *grown = realloc(prog.log, (size_t)(o->epochs + prog.epoch + 1) * sizeof *grown);
      if (!grown) rc = PAI_ERR_NOMEM;
      else prog.log = grown, prog.n_epochs = o->epochs;
    }
  } else if (rc == 0) {
    rc = pai_config_check(&cfg, "options");
    if (rc == 0) rc = pai_model_create(&model, &cfg);
    if (rc == 0) {
      pai_params_init_random(&model.params, (uint64_t)o->seed);
      adam_m = calloc(model.params.n_floats, sizeof(float));
      adam_v = calloc(model.params.n_floats, sizeof(float));
      prog = (pai_progress){.seed = o->seed, .batch_size = o->batch_size,
                            .n_epochs = o->epochs, .best_val_loss = INFINITY,
                            .log = calloc((size_t)o->epochs + 1, sizeof(pai_epoch_log))};
      if (!adam_m || !adam_v || !prog.log) rc = PAI_ERR_NOMEM;
    }
  }
  pai_log_set_mute(0);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;

  /* ---- machinery ---- */
  PAI_CHECK(pai_comm_init_mpi(&comm, d));
  PAI_CHECK(pai_params_init(&G, &model.cfg));
  PAI_CHECK(pai_sampler_init(&smp, sets, n_heads, o->batch_size, (uint64_t)o->seed,
                             o->input_length, o->output_length));
  rc = pai_trainer_init_backend(&tr, &model.cfg, local, &comm, &o->backend);
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;
  tr.grad_stays_on_gpu = 1;   /* the optimizer runs where the gradient is (pai_trainer_step) */
  if (o->backend.device == PAI_DEVICE_CUDA && o->nccl && d->size > 1) {
    /* gradients and batch-norm sums go GPU to GPU; validation keeps the MPI sums (host) */
    PAI_CHECK(pai_comm_init_nccl(&comm_nccl, d, pai_trainer_gpu_stream(&tr)));
    tr.comm = &comm_nccl;
  }
  int t_max = 0;
  for (int j = 0; j < n_heads; j++) t_max = sets[j].n_tracks > t_max ? sets[j].n_tracks : t_max;
  for (int k = 0; k < 2; k++) {
    slot[k].smp = &smp;
    slot[k].first = d->rank * local;
    slot[k].local = local;
    slot[k].draws = malloc((size_t)o->batch_size * sizeof(pai_draw));
    slot[k].x = malloc((size_t)local * o->input_length);
    slot[k].y = malloc((size_t)local * o->output_length * t_max * sizeof(float));
    slot[k].scratch = malloc((size_t)o->output_length * t_max * sizeof(uint16_t));
    if (!slot[k].draws || !slot[k].x || !slot[k].y || !slot[k].scratch) rc = PAI_ERR_NOMEM;
  }
  rc = pai_dist_agree(d, rc);
  if (rc < 0) goto done;

  const int64_t spe = o->steps_per_epoch > 0 ? o->steps_per_epoch : smp.total_batches / 10;
  if (spe < 1) {
    if (d->rank == 0)
      PAI_ERR("%lld batches of %d in all: an epoch (a tenth of them) would have no step; use a "
              "smaller --batch_size, more data or --steps_per_epoch",
              (long long)smp.total_batches, o->batch_size);
    rc = PAI_ERR_INPUT;
    goto done;
  }
  if (d->rank == 0) {
    char heads[256] = "";
    for (int j = 0, at = 0; j < n_heads && at < (int)sizeof heads - 40; j++)
      at += snprintf(heads + at, sizeof heads - at, "%s%s %d tracks", j ? ", " : "",
                     model.cfg.head_names[j], model.cfg.output_dims[j]);
    PAI_INFO("global batch %d = %d rank(s) x %d; heads: %s", o->batch_size, d->size, local,
             heads);
    if (prog.epoch >= o->epochs)
      PAI_INFO("training samples: human %lld; validation %lld; all %d epochs already done: "
               "nothing to train (raise --epochs to go on)",
               (long long)sets[0].n_samples, (long long)sets[n_heads].n_samples, o->epochs);
    else
      PAI_INFO("training samples: human %lld; validation %lld; %lld steps per epoch, epochs "
               "%d..%d", (long long)sets[0].n_samples, (long long)sets[n_heads].n_samples,
               (long long)spe, prog.epoch + 1, o->epochs);
  }

  if (prog.epoch == 0 && prog.step == 0) {
    PAI_CHECK(validate(d, &comm, &model, &sets[n_heads], local, slot[0].x, slot[0].y,
                       slot[0].scratch, &o->backend, &prog.initial_val_loss));
    if (d->rank == 0) PAI_INFO("initial val_loss %.6g", prog.initial_val_loss);
  }
  const pai_adamw base = pai_adamw_defaults(o->learning_rate, o->weight_decay, o->clipnorm);
  for (int e = prog.epoch; e < o->epochs; e++) {
    const double factor = pai_schedule_factor(e, o->epochs);
    pai_adamw opt = base;
    opt.lr *= factor;
    opt.wd *= factor;
    const double t_epoch = pai_now_s();
    pai_meter meter;
    pai_meter_start(&meter);
    prog.step = (int64_t)e * spe;
    PAI_CHECK(fetch_start(&slot[0], prog.step));
    for (int64_t s = 0; s < spe; s++) {
      fetch *cur = &slot[s % 2];
      rc = pai_dist_agree(d, fetch_wait(cur));
      if (rc < 0) goto done;
      if (s + 1 < spe) rc = fetch_start(&slot[(s + 1) % 2], prog.step + 1);
      double loss = 0;
      if (rc == 0)
        rc = pai_trainer_grad(&tr, &model.params, cur->x, cur->y, local, cur->species,
                              o->batch_size, &G, &loss);
      rc = pai_dist_agree(d, rc);
      if (rc < 0) goto done;
      rc = pai_dist_agree(d, pai_trainer_step(&tr, &opt, &model.params, &G, adam_m, adam_v,
                                              prog.step));
      if (rc < 0) goto done;
      prog.step++;
      pai_meter_step(&meter, d->rank, e, o->epochs, s, spe, o->log_every, o->batch_size,
                     "samples", loss);
    }
    double val_loss = NAN;
    /* the GPU trainer's parameters and moments back to the host, to validate and save */
    PAI_CHECK(pai_dist_agree(d, pai_trainer_sync(&tr, &model.params, adam_m, adam_v)));
    PAI_CHECK(validate(d, &comm, &model, &sets[n_heads], local, slot[0].x, slot[0].y,
                       slot[0].scratch, &o->backend, &val_loss));
    const pai_epoch_log row = {.loss = meter.loss_sum / (double)spe, .val_loss = val_loss,
                               .lr = opt.lr, .wd = opt.wd};
    const int wrc = d->rank == 0 ? pai_epoch_save(o->model_folder, state_path, &model, adam_m,
                                                  adam_v, &prog, &row, pai_now_s() - t_epoch)
                                 : (pai_epoch_record(&prog, &row), 0);
    rc = pai_dist_agree(d, wrc);
    if (rc < 0) goto done;
    if (o->stop_after > 0 && prog.epoch >= o->stop_after && prog.epoch < o->epochs) {
      if (d->rank == 0)
        PAI_INFO("stopping after epoch %d as asked (--stop_after_epochs); continue with --resume",
                 prog.epoch);
      goto done;
    }
  }
  if (d->rank == 0) PAI_INFO("done: best val_loss %.6g; model in %s", prog.best_val_loss, o->model_folder);

done:
  for (int k = 0; k < 2; k++) {
    (void)fetch_wait(&slot[k]);
    free(slot[k].draws);
    free(slot[k].x);
    free(slot[k].y);
    free(slot[k].scratch);
  }
  pai_comm_free(&comm_nccl);   /* before the GPU it runs on */
  pai_trainer_free(&tr);
  pai_sampler_free(&smp);
  for (int j = 0; j < n_sets; j++) pai_dataset_close(&sets[j]);
  if (have_val) pai_dataset_close(&sets[n_heads]);
  pai_params_free(&G);
  pai_comm_free(&comm);
  pai_model_free(&model);
  free(adam_m);
  free(adam_v);
  free(prog.log);
  return rc;
fail:
  rc = pai_dist_agree(d, rc);
  goto done;
}
