/* pfinetune - fine-tune head 0 on GTEx expression outliers (REFERENCE.md section 5, docs/training.md):
 *   mpirun -np R pfinetune --model_folder M --var_file V --fasta_file F --input_length 20480 \
 *       --batch_size 8
 * writes M_finetune/ (model.h5, logs.csv, train_state.h5).
 * Exit status, the same on every rank: 0 success, 1 bad input or I/O failure, 2 usage error. */
#include <stdio.h>

#include "model/backend.h"
#include "model/options.h"
#include "model/finetune.h"
#include "mpi/cli.h"
#include "mpi/dist.h"
#include "mpi/log.h"

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  char model_folder[PAI_PATH_LEN] = "", var_file[PAI_PATH_LEN] = "", fasta_file[PAI_PATH_LEN] = "",
       output[PAI_PATH_LEN] = "";
  int input_length = 0, batch_size = 8, epochs = 100, steps_per_epoch = 0, resume = 0,
      log_every = 50, threads = 0, quiet = 0, stop_after = 0;
  int64_t seed = 0;
  pai_str_list train_chroms, val_chroms;   /* defaults shown by --help: the published split */
  pai_str_list_chroms(&train_chroms, 1, 19, 2);
  pai_str_list_chroms(&val_chroms, 21, 22, 1);
  double lr = 5e-4, wd = 5e-6, clipnorm = 1.0;
  char device[32] = "auto", precision[32] = "fp32";
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, model_folder, "trained model folder (holds model.h5)", 1, 0},
      {"var_file", PAI_OPT_STR, var_file, "variants: chrom pos ref alt strand z in_cds spliceai p_under p_over gene", 1, 0},
      {"fasta_file", PAI_OPT_STR, fasta_file, "genome FASTA, plain or bgzip (indexed if needed)", 1, 0},
      {"input_length", PAI_OPT_INT, &input_length, "model input length (= the model's)", 1, 0},
      {"output", PAI_OPT_STR, output, "output folder (default: <model_folder>_finetune)", 0, 0},
      {"train_chroms", PAI_OPT_STR_LIST, &train_chroms, "chromosomes whose rows train", 0, 0},
      {"val_chroms", PAI_OPT_STR_LIST, &val_chroms, "chromosomes whose rows validate", 0, 0},
      {"batch_size", PAI_OPT_INT, &batch_size, "global batch of variants (a multiple of the rank count)", 0, 0},
      {"epochs", PAI_OPT_INT, &epochs, "epochs E (the lr / wd schedule spans them)", 0, 0},
      {"steps_per_epoch", PAI_OPT_INT, &steps_per_epoch, "steps per epoch (0: training batches / 5)", 0, 0},
      {"learning_rate", PAI_OPT_DOUBLE, &lr, "peak learning rate", 0, 0},
      {"weight_decay", PAI_OPT_DOUBLE, &wd, "peak decoupled weight decay", 0, 0},
      {"clipnorm", PAI_OPT_DOUBLE, &clipnorm, "per-tensor gradient norm clip", 0, 0},
      {"seed", PAI_OPT_I64, &seed, "data order", 0, 0},
      {"resume", PAI_OPT_FLAG, &resume, "continue the run saved in the output folder", 0, 0},
      {"stop_after_epochs", PAI_OPT_INT, &stop_after, "end this run once this many epochs are done", 0, 0},
      {"log_every", PAI_OPT_INT, &log_every, "steps between progress lines", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads per rank (default: OMP_NUM_THREADS)", 0, 0},
      {"device", PAI_OPT_STR, device, "the frozen backbone's forward: cpu, cuda (one GPU per rank), or auto", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: fp32, or bf16 (too coarse for twin differences)", 0, 0},
      {"quiet", PAI_OPT_FLAG, &quiet, "no progress lines (warnings and errors still print)", 0, 0},
  };
  int rc = pai_opts_parse_ranks(&d, opts, sizeof opts / sizeof opts[0], "pfinetune",
                                "Fine-tunes head 0's projections on expression-outlier variants "
                                "(REFERENCE.md section 5);\nthe backbone stays frozen.",
                                argc, argv);
  pai_log_set_quiet(quiet);
  pai_backend be = PAI_BACKEND_CPU;
  if (rc == 0) rc = pai_backend_select_ranks(&d, device, precision, &be);
  if (rc == 0) {
    pai_set_threads(threads);
    pai_finetune_opts o = {.model_folder = model_folder, .var_file = var_file,
                           .fasta_file = fasta_file, .out_folder = output,
                           .train_chroms = &train_chroms, .val_chroms = &val_chroms,
                           .input_length = input_length, .batch_size = batch_size,
                           .epochs = epochs, .steps_per_epoch = steps_per_epoch,
                           .learning_rate = lr, .weight_decay = wd, .clipnorm = clipnorm,
                           .seed = seed, .resume = resume, .stop_after = stop_after,
                           .log_every = log_every, .backend = be};
    rc = pai_finetune_run(&d, &o);
  }
  pai_dist_finalize(&d);
  return rc == 1 ? 0 : pai_exit_code(rc);
}
