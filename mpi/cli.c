/* cli.c - see cli.h. */
#include "mpi/cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "mpi/log.h"

int pai_opts_parse_ranks(const pai_dist *d, pai_opt *opts, int n_opts, const char *prog,
                         const char *summary, int argc, char **argv) {
  int saved_stdout = -1;
  if (d->rank != 0) {
    pai_log_set_mute(1);
    fflush(stdout);
    saved_stdout = dup(STDOUT_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO), close(devnull);
  }
  int rc = pai_opts_parse(opts, n_opts, prog, prog, summary, argc, argv);
  if (saved_stdout >= 0) {
    fflush(stdout);
    dup2(saved_stdout, STDOUT_FILENO);
    close(saved_stdout);
  }
  pai_log_set_mute(0);
  const int agreed = pai_dist_agree(d, rc < 0 ? rc : 0);
  if (agreed < 0 && rc >= 0) PAI_ERR("the command line failed on another rank (see rank 0)");
  return agreed < 0 ? agreed : rc;
}

int pai_backend_select_ranks(const pai_dist *d, const char *device, const char *precision,
                             pai_backend *out) {
  if (d->rank != 0) pai_log_set_mute(1);
  const int rc = pai_backend_select(device, precision, 1, d->local_rank, out);
  pai_log_set_mute(0);
  return rc;
}
