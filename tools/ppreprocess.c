/* ppreprocess - TSSs + genome FASTA + bigWig tracks -> HDF5 training shards (docs/preprocess.md).
 *   mpirun -np R ppreprocess --h5_folder OUT --tss_file T --fasta_file F --bigwig_files B \
 *       --input_length 32768 --output_length 16384 [--chrom chr1 ...]
 * Exit status, the same on every rank: 0 success, 1 bad input or I/O failure, 2 usage error. */
#include <stdio.h>
#include <string.h>

#include "model/options.h"
#include "mpi/cli.h"
#include "mpi/dist.h"
#include "mpi/log.h"
#include "preprocess/preprocess.h"

int main(int argc, char **argv) {
  pai_dist d;
  if (pai_dist_init(&d, &argc, &argv) < 0) return 1;
  char h5_folder[PAI_PATH_LEN] = "", tss_file[PAI_PATH_LEN] = "", fasta_file[PAI_PATH_LEN] = "",
       bigwig_files[PAI_PATH_LEN] = "", y_dtype[PAI_PATH_LEN] = "float16";
  int input_length = 32768, output_length = 16384, deflate = 4, chunk_positions = 2048,
      force = 0, quiet = 0;
  pai_str_list chroms = {0};
  pai_opt opts[] = {
      {"h5_folder", PAI_OPT_STR, h5_folder, "output folder for the shards (created if missing)", 1, 0},
      {"tss_file", PAI_OPT_STR, tss_file, "TSS table: chrom, pos (or tss_pos, 1-based), strand", 1, 0},
      {"fasta_file", PAI_OPT_STR, fasta_file, "genome FASTA, plain or bgzip (indexed if needed)", 1, 0},
      {"bigwig_files", PAI_OPT_STR, bigwig_files, "track table: fwd, rev, xform (+ metadata columns)", 1, 0},
      {"input_length", PAI_OPT_INT, &input_length, "stored sequence window (even)", 0, 0},
      {"output_length", PAI_OPT_INT, &output_length, "stored target window (even)", 0, 0},
      {"chrom", PAI_OPT_STR_LIST, &chroms, "only these chromosomes (default: all in the TSS table)", 0, 0},
      {"y_dtype", PAI_OPT_STR, y_dtype, "float16 or float32 for /y", 0, 0},
      {"deflate", PAI_OPT_INT, &deflate, "deflate level 1..9 (with shuffle), 0 for none", 0, 0},
      {"chunk_positions", PAI_OPT_INT, &chunk_positions, "positions per HDF5 chunk of /x and /y", 0, 0},
      {"force", PAI_OPT_FLAG, &force, "rebuild every shard, even those up to date", 0, 0},
      {"quiet", PAI_OPT_FLAG, &quiet, "no progress lines (warnings and errors still print)", 0, 0},
  };
  int rc = pai_opts_parse_ranks(&d, opts, sizeof opts / sizeof opts[0], "ppreprocess",
                                "Builds HDF5 training shards, one sample per TSS, chromosomes split "
                                "across MPI ranks;\nrank 0 writes OUT/manifest.tsv.",
                                argc, argv);
  pai_log_set_quiet(quiet);
  if (rc == 0) {
    pai_prep_opts o = {.h5_folder = h5_folder, .tss_file = tss_file, .fasta_file = fasta_file,
                       .bigwig_files = bigwig_files, .input_length = input_length,
                       .output_length = output_length, .chroms = &chroms, .y_dtype = y_dtype,
                       .deflate = deflate, .chunk_positions = chunk_positions, .force = force};
    rc = pai_preprocess_run(&d, &o);
  }
  pai_dist_finalize(&d);
  return rc == 1 ? 0 : pai_exit_code(rc);
}
