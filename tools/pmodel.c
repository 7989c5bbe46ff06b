/* pmodel - create, inspect and run model folders.
 *   pmodel init     --model_folder M [--num_blocks --model_dim --input_length --output_length
 *                   --output_dims --head_names --seed]      freshly initialised model (REF 2.5)
 *   pmodel info     --model_folder M                        hyper-parameters, parameter count
 *   pmodel predict  --model_folder M --seq_file S --out O.h5   head outputs for sequences
 *   pmodel build                                            libraries and devices of this build
 * Exit codes: 0 success, 1 error, 2 usage error. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "model/backend.h"
#include "model/model.h"
#include "model/options.h"
#include "model/predict.h"
#include "mpi/log.h"

#define N_OPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))


static int cmd_init(int argc, char **argv) {
  char folder[PAI_PATH_LEN] = "";
  int num_blocks = 24, model_dim = 1024, input_length = 20480, output_length = 4096, force = 0;
  int64_t seed = 0;
  pai_int_list dims = {1, {498}};
  pai_str_list names = {1, {"human"}};
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, folder, "folder to create (holds model.h5)", 1, 0},
      {"num_blocks", PAI_OPT_INT, &num_blocks, "residual blocks N", 0, 0},
      {"model_dim", PAI_OPT_INT, &model_dim, "channels D", 0, 0},
      {"input_length", PAI_OPT_INT, &input_length, "input length L (even)", 0, 0},
      {"output_length", PAI_OPT_INT, &output_length, "cropped output length O", 0, 0},
      {"output_dims", PAI_OPT_INT_LIST, &dims, "tracks per head, one value per head", 0, 0},
      {"head_names", PAI_OPT_STR_LIST, &names, "head names, one per head", 0, 0},
      {"seed", PAI_OPT_I64, &seed, "random seed of the initialisation", 0, 0},
      {"force", PAI_OPT_FLAG, &force, "overwrite an existing model.h5", 0, 0},
  };
  int rc = pai_opts_parse(opts, N_OPTS(opts), "pmodel init", "pmodel",
                          "Creates a freshly initialised model folder (Glorot-uniform, truncated "
                          "normal FFN kernels,\nzero biases, identity batch norm).",
                          argc, argv);
  if (rc) return rc == 1 ? 0 : 2;
  if (names.n != dims.n) {
    if (pai_opts_find(opts, N_OPTS(opts), "head_names")->is_set) {
      PAI_ERR("--head_names has %d names but --output_dims has %d values", names.n, dims.n);
      return 2;
    }
    for (int j = 0; j < dims.n; j++)
      snprintf(names.v[j], PAI_NAME_LEN, j == 0 ? "human" : j == 1 ? "mouse" : "head_%d", j);
  }
  char path[PAI_PATH_LEN + 16];
  struct stat st;
  snprintf(path, sizeof path, "%s/model.h5", folder);
  if (!force && stat(path, &st) == 0) {
    PAI_ERR("%s already exists (use --force to overwrite)", path);
    return 1;
  }
  pai_config cfg;
  pai_config_defaults(&cfg);
  cfg.num_blocks = num_blocks;
  cfg.model_dim = model_dim;
  cfg.input_length = input_length;
  cfg.output_length = output_length;
  cfg.n_heads = dims.n;
  for (int j = 0; j < dims.n && j < PAI_MAX_HEADS; j++) {
    cfg.output_dims[j] = dims.v[j];
    snprintf(cfg.head_names[j], PAI_NAME_LEN, "%s", names.v[j]);
  }
  if (pai_config_check(&cfg, "pmodel init") < 0) return 2;
  if (pai_padding_reaches_outputs(&cfg))
    PAI_WARN("input_length %d < output_length %d + 2 x receptive radius %d: padding reaches the "
             "kept outputs (REFERENCE.md section 2.4), so ptrain and pprecompute will refuse "
             "this model; promoterai scores it", input_length, output_length,
             pai_receptive_radius(num_blocks));
  pai_model m;
  if ((rc = pai_model_create(&m, &cfg)) < 0) return pai_exit_code(rc);
  pai_params_init_random(&m.params, (uint64_t)seed);
  rc = pai_model_save(&m, folder);
  if (rc == 0)
    PAI_INFO("wrote %s: %zu parameters (seed %lld)", path, pai_params_count(&m.params),
             (long long)seed);
  pai_model_free(&m);
  return pai_exit_code(rc);
}

static int cmd_info(int argc, char **argv) {
  char folder[PAI_PATH_LEN] = "";
  pai_opt opts[] = {{"model_folder", PAI_OPT_STR, folder, "model folder", 1, 0}};
  int rc = pai_opts_parse(opts, N_OPTS(opts), "pmodel info", "pmodel",
                          "Prints a model's hyper-parameters and parameter count.", argc, argv);
  if (rc) return rc == 1 ? 0 : 2;
  pai_model m;
  if ((rc = pai_model_load(&m, folder)) < 0) return pai_exit_code(rc);
  const pai_config *c = &m.cfg;
  const int radius = pai_receptive_radius(c->num_blocks);
  printf("model_folder\t%s\n", folder);
  printf("num_blocks\t%d\nmodel_dim\t%d\nkernel_size\t%d\nshortcut_freq\t%d\n", c->num_blocks,
         c->model_dim, c->kernel_size, c->shortcut_freq);
  printf("input_length\t%d\noutput_length\t%d\nbn_epsilon\t%g\n", c->input_length,
         c->output_length, c->bn_epsilon);
  for (int j = 0; j < c->n_heads; j++)
    printf("head_%d\t%s\t%d tracks\n", j, c->head_names[j], c->output_dims[j]);
  printf("shortcut_layers\t");
  for (int k = 0; k < pai_n_shortcuts(c); k++)
    printf(k ? ",%d" : "%d", pai_shortcut_layer(c, k));
  printf("\nreceptive_radius\t%d\n", radius);
  printf("padding_reaches_outputs\t%s\n", pai_padding_reaches_outputs(c) ? "yes" : "no");
  printf("parameters\t%zu\n", pai_params_count(&m.params));
  pai_model_free(&m);
  return 0;
}

static int cmd_predict(int argc, char **argv) {
  char folder[PAI_PATH_LEN] = "", seqs[PAI_PATH_LEN] = "", out[PAI_PATH_LEN] = "",
       device[32] = "auto", precision[32] = "fp32";
  int batch = 4, threads = 0;
  pai_opt opts[] = {
      {"model_folder", PAI_OPT_STR, folder, "model folder", 1, 0},
      {"seq_file", PAI_OPT_STR, seqs, "sequences: one per line, or FASTA records", 1, 0},
      {"out", PAI_OPT_STR, out, "output HDF5 (/head_j [n, output_length, T_j])", 1, 0},
      {"batch_size", PAI_OPT_INT, &batch, "sequences per forward batch", 0, 0},
      {"threads", PAI_OPT_INT, &threads, "CPU threads (default: OMP_NUM_THREADS or all cores)",
       0, 0},
      {"device", PAI_OPT_STR, device, "cpu, cuda, or auto (cuda when a GPU is visible)", 0, 0},
      {"precision", PAI_OPT_STR, precision, "GPU dense layers: fp32 or bf16", 0, 0},
  };
  int rc = pai_opts_parse(opts, N_OPTS(opts), "pmodel predict", "pmodel",
                          "Writes every head's output for each input sequence.", argc, argv);
  if (rc) return rc == 1 ? 0 : 2;
  pai_set_threads(threads);
  pai_predict_opts po = {.model_folder = folder, .seq_file = seqs, .out = out,
                         .batch_size = batch};
  if (pai_backend_select(device, precision, 1, 0, &po.backend) < 0) return 2;
  return pai_exit_code(pai_predict_run(&po));
}

static int cmd_build(int argc, char **argv) {
  int rc = pai_opts_parse(NULL, 0, "pmodel build", "pmodel",
                          "Prints the BLAS, CUDA toolkit, cuDNN and NCCL versions this build uses "
                          "and the GPUs visible.", argc, argv);
  if (rc) return rc == 1 ? 0 : 2;
  char info[1024];
  pai_build_info(info, sizeof info);
  printf("%s\n", info);
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: pmodel COMMAND [options]   (pmodel COMMAND --help for its options)\n\n"
          "commands:\n"
          "  init      create a freshly initialised model folder\n"
          "  info      print a model's hyper-parameters and parameter count\n"
          "  predict   write head outputs for sequences to HDF5\n"
          "  build     print the libraries and devices this build uses\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "init")) return cmd_init(argc - 1, argv + 1);
  if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
  if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
  if (!strcmp(cmd, "build")) return cmd_build(argc - 1, argv + 1);
  PAI_ERR("unknown command '%s'", cmd);
  usage(stderr);
  return 2;
}
