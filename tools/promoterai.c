/* promoterai - score promoter variants (REFERENCE.md section 3), with the published command line:
 *   promoterai --model_folder M --var_file V --fasta_file F --input_length L
 * The program parses options and maps the library's status to an exit code: 0 success,
 * 1 error (bad input, I/O), 2 usage error. */
#include <stdio.h>

#include "model/options.h"
#include "model/score.h"
#include "mpi/log.h"

int main(int argc, char **argv) {
  char model_folder[PAI_PATH_LEN] = "", var_file[PAI_PATH_LEN] = "",
       fasta_file[PAI_PATH_LEN] = "", output[PAI_PATH_LEN] = "", device[32] = "auto", precision[32] = "fp32";
  int input_length = 0, threads = 0, batch_size = 4, raw = 0, quiet = 0;
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, model_folder, "model folder (holds model.h5)", 1, 0},
      {"var_file", PAI_OPT_STR, var_file, "variant TSV: chrom, pos (1-based), ref, alt, strand", 1, 0},
      {"fasta_file", PAI_OPT_STR, fasta_file, "genome FASTA, plain or bgzip (indexed if needed)", 1, 0},
      {"input_length", PAI_OPT_INT, &input_length, "model input length (even, = the model's)", 1, 0},
      {"output", PAI_OPT_STR, output, "output TSV (default: <var_file stem>.<model name><suffix>)", 0, 0},
      {"batch_size", PAI_OPT_INT, &batch_size, "variants per forward batch", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads (default: OMP_NUM_THREADS or all cores)", 0, 0},
      {"device", PAI_OPT_STR, device, "cpu, cuda, or auto (cuda when a GPU is visible)", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: fp32, or bf16 (faster, ~1e-3 off)", 0, 0},
      {"raw", PAI_OPT_FLAG, &raw, "also write a `raw` column: the unrounded mean difference", 0, 0},
      {"quiet", PAI_OPT_FLAG, &quiet, "no progress lines (warnings and errors still print)", 0, 0},
  };
  int rc = pai_opts_parse(opts, sizeof opts / sizeof opts[0], "promoterai", "promoterai",
                          "Scores promoter variants: adds a `score` column (tanh of the rounded "
                          "mean alt - ref prediction)\nto the variant table.",
                          argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  pai_log_set_quiet(quiet);
  pai_set_threads(threads);
  pai_score_opts so = {.model_folder = model_folder, .var_file = var_file,
                       .fasta_file = fasta_file, .output = output,
                       .input_length = input_length, .batch_size = batch_size, .raw = raw};
  if (pai_backend_select(device, precision, 1, 0, &so.backend) < 0) return 2;
  rc = pai_score_run(&so);
  return pai_exit_code(rc);
}
