/* cli.h - option parsing for MPI programs (ppreprocess, ptrain, pfinetune).
 *
 * Every rank parses the same argv (options.h); only rank 0 prints --help and usage errors (the
 * other ranks' stdout is parked on /dev/null and their log muted meanwhile). The ranks then agree
 * on the outcome, so a config file readable on some nodes only stops all of them. */
#ifndef PAI_CLI_H
#define PAI_CLI_H

#include "model/backend.h"
#include "model/options.h"
#include "mpi/dist.h"

/* Returns 0, 1 when --help was printed (exit 0), or the same negative status on every rank. */
int pai_opts_parse_ranks(const pai_dist *d, pai_opt *opts, int n_opts, const char *prog,
                         const char *summary, int argc, char **argv) PAI_WUR;

/* --device and --precision into *out on every rank (pai_backend_select; this rank's GPU is its
 * node-local rank), with a bad value reported once, by rank 0. */
int pai_backend_select_ranks(const pai_dist *d, const char *device, const char *precision,
                             pai_backend *out) PAI_WUR;

#endif
