/* pprecompute - the genome-wide promoter SNV table (REFERENCE.md section 6, docs/precompute.md):
 *   mpirun -np R pprecompute --tss_file T --fasta_file F --model_folder M1 [M2 ...] \
 *       --out OUT.tsv.gz [--flank 500]
 * writes OUT.tsv.gz (bgzip) and OUT.tsv.gz.tbi; a rerun of the same command resumes.
 * Exit status, the same on every rank: 0 success, 1 bad input or I/O failure, 2 usage error. */
#include <stdio.h>

#include "model/backend.h"
#include "model/options.h"
#include "model/precompute.h"
#include "mpi/cli.h"
#include "mpi/dist.h"
#include "mpi/log.h"

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  char tss_file[PAI_PATH_LEN] = "", fasta_file[PAI_PATH_LEN] = "", out[PAI_PATH_LEN] = "",
       device[32] = "auto", precision[32] = "fp32";
  pai_str_list models = {0};
  int flank = 500, batch_size = 16, raw = 0, overwrite = 0, threads = 0, quiet = 0;
  pai_opt opts[] = {
      {"tss_file", PAI_OPT_STR, tss_file, "TSS table: chrom, tss_pos (or pos), strand [, gene, gene_id, transcript_id]", 1, 0},
      {"fasta_file", PAI_OPT_STR, fasta_file, "genome FASTA, plain or bgzip (indexed if needed)", 1, 0},
      {"model_folder", PAI_OPT_STR_LIST, &models, "model folder(s), one score column each", 1, 0},
      {"out", PAI_OPT_STR, out, "output table (bgzip; OUT.tbi is its tabix index)", 1, 0},
      {"flank", PAI_OPT_INT, &flank, "score positions within this many bp of each TSS", 0, 0},
      {"batch_size", PAI_OPT_INT, &batch_size, "alternates per cone batch (memory: see docs/precompute.md)", 0, 0},
      {"device", PAI_OPT_STR, device, "cpu, cuda (one GPU per rank), or auto (cuda when a GPU is visible)", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: fp32, or bf16 (faster, scores ~1e-3 off)", 0, 0},
      {"raw", PAI_OPT_FLAG, &raw, "also write the unrounded raw scores (raw / raw_x raw_y / raw_<name>)", 0, 0},
      {"overwrite", PAI_OPT_FLAG, &overwrite, "replace an existing OUT", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads per rank (default: OMP_NUM_THREADS)", 0, 0},
      {"quiet", PAI_OPT_FLAG, &quiet, "no progress lines (warnings and errors still print)", 0, 0},
  };
  int rc = pai_opts_parse_ranks(&d, opts, sizeof opts / sizeof opts[0], "pprecompute",
                                "Scores every SNV within --flank bp of every TSS with each model "
                                "(REFERENCE.md section 6),\nexactly as promoterai would, computing "
                                "only each variant's cone; ranks share the TSSs.",
                                argc, argv);
  pai_log_set_quiet(quiet);
  pai_backend be = PAI_BACKEND_CPU;
  if (rc == 0) rc = pai_backend_select_ranks(&d, device, precision, &be);
  if (rc == 0) {
    pai_set_threads(threads);
    pai_precompute_opts o = {.tss_file = tss_file, .fasta_file = fasta_file, .out = out,
                             .models = &models, .flank = flank, .batch_size = batch_size,
                             .raw = raw, .overwrite = overwrite,
                             .threads = pai_get_threads(), .backend = be};
    rc = pai_precompute_run(&d, &o);
  }
  pai_dist_finalize(&d);
  return rc == 1 ? 0 : pai_exit_code(rc);
}
