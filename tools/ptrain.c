/* ptrain - train PromoterAI from preprocess shards, data-parallel over MPI ranks (docs/training.md):
 *   mpirun -np R ptrain --model_folder M --h5_human_folder H [--h5_nonhuman_folders F ...] \
 *       --input_length 20480 --output_length 4096 --num_blocks 24 --model_dim 1024 --batch_size 32
 * Exit status, the same on every rank: 0 success, 1 bad input or I/O failure, 2 usage error. */
#include <stdio.h>
#include <string.h>

#include "model/backend.h"
#include "model/options.h"
#include "model/trainrun.h"
#include "mpi/cli.h"
#include "mpi/dist.h"
#include "mpi/log.h"

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  char model_folder[PAI_PATH_LEN] = "", human[PAI_PATH_LEN] = "";
  pai_str_list nonhuman = {0}, train_chroms = {0}, val_chroms = {0};
  int input_length = 20480, output_length = 4096, num_blocks = 24, model_dim = 1024,
      batch_size = 32, epochs = 100, steps_per_epoch = 0, resume = 0, log_every = 50,
      threads = 0, quiet = 0, stop_after = 0;
  int64_t seed = 0;
  double lr = 5e-4, wd = 5e-6, clipnorm = 1e-4;
  char device[32] = "auto", precision[32] = "bf16", comm[32] = "nccl";
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, model_folder, "output folder: model.h5 (best), logs.csv, train_state.h5", 1, 0},
      {"h5_human_folder", PAI_OPT_STR, human, "ppreprocess folder of the human shards (head 0)", 1, 0},
      {"h5_nonhuman_folders", PAI_OPT_STR_LIST, &nonhuman, "ppreprocess folders of other species (heads 1..)", 0, 0},
      {"input_length", PAI_OPT_INT, &input_length, "model input length L", 0, 0},
      {"output_length", PAI_OPT_INT, &output_length, "model output length O", 0, 0},
      {"num_blocks", PAI_OPT_INT, &num_blocks, "residual blocks N", 0, 0},
      {"model_dim", PAI_OPT_INT, &model_dim, "channels D", 0, 0},
      {"batch_size", PAI_OPT_INT, &batch_size, "global batch (a multiple of the rank count)", 0, 0},
      {"epochs", PAI_OPT_INT, &epochs, "epochs E (the lr / wd schedule spans them)", 0, 0},
      {"steps_per_epoch", PAI_OPT_INT, &steps_per_epoch, "steps per epoch (0: all batches / 10)", 0, 0},
      {"learning_rate", PAI_OPT_DOUBLE, &lr, "peak learning rate", 0, 0},
      {"weight_decay", PAI_OPT_DOUBLE, &wd, "peak decoupled weight decay", 0, 0},
      {"clipnorm", PAI_OPT_DOUBLE, &clipnorm, "per-tensor gradient norm clip", 0, 0},
      {"seed", PAI_OPT_I64, &seed, "initial weights, data order and augmentation", 0, 0},
      {"train_chroms", PAI_OPT_STR_LIST, &train_chroms, "human training chromosomes (default chr1..chr20)", 0, 0},
      {"val_chroms", PAI_OPT_STR_LIST, &val_chroms, "human validation chromosomes (default chr21 chr22)", 0, 0},
      {"resume", PAI_OPT_FLAG, &resume, "continue the run saved in model_folder/train_state.h5", 0, 0},
      {"stop_after_epochs", PAI_OPT_INT, &stop_after, "end this run once this many epochs are done (for time-limited jobs)", 0, 0},
      {"log_every", PAI_OPT_INT, &log_every, "steps between progress lines", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads per rank (default: OMP_NUM_THREADS)", 0, 0},
      {"device", PAI_OPT_STR, device, "cpu, cuda (one GPU per rank), or auto (cuda when a GPU is visible)", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: bf16 (fp32 accumulation) or fp32", 0, 0},
      {"comm", PAI_OPT_STR, comm, "GPU sums over ranks: nccl, or mpi (staged through host memory)", 0, 0},
      {"quiet", PAI_OPT_FLAG, &quiet, "no progress lines (warnings and errors still print)", 0, 0},
  };
  int rc = pai_opts_parse_ranks(&d, opts, sizeof opts / sizeof opts[0], "ptrain",
                                "Trains a PromoterAI model on ppreprocess shards (REFERENCE.md section "
                                "5), data-parallel over MPI ranks.",
                                argc, argv);
  pai_log_set_quiet(quiet);
  pai_backend be = PAI_BACKEND_CPU;
  if (rc == 0) rc = pai_backend_select_ranks(&d, device, precision, &be);
  if (rc == 0 && strcmp(comm, "nccl") && strcmp(comm, "mpi")) {
    if (d.rank == 0) PAI_ERR("--comm: '%s' is not one of nccl, mpi", comm);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0) {
    pai_set_threads(threads);
    pai_train_opts o = {.model_folder = model_folder, .h5_human_folder = human,
                        .h5_nonhuman_folders = &nonhuman, .train_chroms = &train_chroms,
                        .val_chroms = &val_chroms, .input_length = input_length,
                        .output_length = output_length, .num_blocks = num_blocks,
                        .model_dim = model_dim, .batch_size = batch_size, .epochs = epochs,
                        .steps_per_epoch = steps_per_epoch, .learning_rate = lr,
                        .weight_decay = wd, .clipnorm = clipnorm, .seed = seed,
                        .resume = resume, .log_every = log_every,
                        .stop_after = stop_after, .backend = be,
                        .nccl = !strcmp(comm, "nccl")};
    rc = pai_train_run(&d, &o);
  }
  pai_dist_finalize(&d);
  return rc == 1 ? 0 : pai_exit_code(rc);
}
