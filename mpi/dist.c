/* dist.c - see dist.h. */
#include "mpi/dist.h"

#include <mpi.h>
#include <stdlib.h>
#include <time.h>

#include "mpi/log.h"

#define MPI_CHECK(call)                                                          \
  do {                                                                           \
    int mpi_rc_ = (call);                                                        \
    if (mpi_rc_ != MPI_SUCCESS) {                                                \
      char mpi_msg_[MPI_MAX_ERROR_STRING];                                       \
      int mpi_len_ = 0;                                                          \
      MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                            \
      PAI_ERR("%s failed: %s (%s:%d)", #call, mpi_msg_, __FILE__, __LINE__);     \
      return PAI_ERR_RUNTIME;                                                    \
    }                                                                            \
  } while (0)

int pai_dist_init(pai_dist *d, int *argc, char ***argv) {
  d->rank = d->local_rank = 0;
  d->size = d->local_size = 1;
  d->mpi = 0;
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  d->mpi = 1;
  /* Errors come back as codes (checked above), not as an abort inside MPI. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
  pai_log_set_rank(d->rank, d->size);
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL,
                                &node));
  MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
  MPI_CHECK(MPI_Comm_size(node, &d->local_size));
  MPI_Comm_free(&node);
  return 0;
}

void pai_dist_finalize(pai_dist *d) {
  if (d->mpi) MPI_Finalize();
  d->mpi = 0;
}

int pai_dist_agree(const pai_dist *d, int status) {
  int mine = status, worst = status;
  if (mine > 0 || mine < PAI_ERR_RUNTIME) mine = PAI_ERR_RUNTIME;
  if (d->size == 1) return mine;
  MPI_CHECK(MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  return worst;
}

int pai_dist_bcast_bytes(const pai_dist *d, int root, char **buf, size_t *n) {
  if (d->size == 1) return 0;
  long long len = d->rank == root ? (long long)*n : 0;
  MPI_CHECK(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD));
  if (d->rank != root) {
    *buf = malloc((size_t)len + 1);
    *n = (size_t)len;
    if (!*buf) {
      /* Departure from "only main() ends the process": the root is already inside the
       * broadcast and cannot learn of this failure, so returning would leave it waiting. */
      PAI_ERR("out of memory receiving %lld bytes from rank %d", len, root);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  /* MPI counts are int: send in pieces of at most 1 GiB */
  for (long long off = 0; off < len; off += 1 << 30) {
    long long piece = len - off < (1 << 30) ? len - off : (1 << 30);
    MPI_CHECK(MPI_Bcast(*buf + off, (int)piece, MPI_BYTE, root, MPI_COMM_WORLD));
  }
  if (d->rank != root) (*buf)[len] = 0;
  return 0;
}

int pai_dist_sum_i64(const pai_dist *d, const int64_t *in, int64_t *out, int n) {
  if (d->size == 1) {
    for (int i = 0; i < n; i++) out[i] = in[i];
    return 0;
  }
  MPI_CHECK(MPI_Allreduce(in, out, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
  return 0;
}

/* Inside pai_dist_await's exchange a failed MPI call cannot be agreed on (the peers are inside
 * the same exchange and would wait for this rank), so it ends the job. */
#define MPI_OR_ABORT(call)                                                       \
  do {                                                                           \
    if ((call) != MPI_SUCCESS) {                                                 \
      PAI_ERR("%s failed inside the ranks' wait: ending the job", #call);        \
      MPI_Abort(MPI_COMM_WORLD, 1);                                              \
    }                                                                            \
  } while (0)

/* Polls until the operation finishes, fails, is reported failed by another rank (a message on
 * sig) or runs out of time. Returns 0, or the failure; *told is set when a message arrived. */
static int await_local(int (*poll)(void *), void (*cancel)(void *), void *arg, double timeout_s,
                       MPI_Comm sig, MPI_Request *req, int *told) {
  const double t0 = MPI_Wtime();
  const struct timespec nap = {0, 1000000};   /* 1 ms between polls */
  for (;;) {
    const int p = poll(arg);
    if (p != 0) return p > 0 ? 0 : p;
    if (sig != MPI_COMM_NULL) {
      int done = 0;
      MPI_Status st;
      MPI_OR_ABORT(MPI_Test(req, &done, &st));
      if (done) {
        *told = 1;
        cancel(arg);
        PAI_ERR("stopped waiting: rank %d failed", st.MPI_SOURCE);
        return PAI_ERR_RUNTIME;
      }
    }
    if (timeout_s > 0 && MPI_Wtime() - t0 > timeout_s) {
      cancel(arg);
      PAI_ERR("gave up after %.0f s waiting for the other ranks", timeout_s);
      return PAI_ERR_RUNTIME;
    }
    nanosleep(&nap, NULL);
  }
}

int pai_dist_await(const pai_dist *d, int (*poll)(void *), void (*cancel)(void *), void *arg,
                   double timeout_s) {
  if (d->size == 1)
    return pai_dist_agree(d, await_local(poll, cancel, arg, timeout_s, MPI_COMM_NULL, NULL,
                                         &(int){0}));
  /* Failure messages travel on a communicator of their own, so that they can never match a
   * receive elsewhere. Every message sent is received before it is freed: after the wait, the
   * ranks agree on how many failed, and each receives exactly that many (less its own). */
  enum { TAG = 1 };
  MPI_Comm sig;
  MPI_OR_ABORT(MPI_Comm_dup(MPI_COMM_WORLD, &sig));
  int msg = 0, told = 0;
  MPI_Request in;
  MPI_OR_ABORT(MPI_Irecv(&msg, 1, MPI_INT, MPI_ANY_SOURCE, TAG, sig, &in));
  int rc = await_local(poll, cancel, arg, timeout_s, sig, &in, &told);
  const int failed = rc < 0;
  MPI_Request *out = NULL;
  int sent = 0;
  static const int one = 1;
  if (failed && !told) {   /* a rank that was told of a failure has nothing new to say */
    out = malloc((size_t)d->size * sizeof *out);
    if (!out) {
      PAI_ERR("out of memory");   /* the peers cannot be told: they can only time out */
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int r = 0; r < d->size; r++)
      if (r != d->rank) MPI_OR_ABORT(MPI_Isend(&one, 1, MPI_INT, r, TAG, sig, &out[sent++]));
  }
  int mine = (failed && !told) ? 1 : 0, senders = 0;
  MPI_OR_ABORT(MPI_Allreduce(&mine, &senders, 1, MPI_INT, MPI_SUM, sig));
  const int expected = senders - mine;
  if (!told && expected == 0) {
    MPI_OR_ABORT(MPI_Cancel(&in));
    MPI_OR_ABORT(MPI_Wait(&in, MPI_STATUS_IGNORE));
  } else if (!told) {
    MPI_OR_ABORT(MPI_Wait(&in, MPI_STATUS_IGNORE));
  }
  for (int k = 1; k < expected; k++)
    MPI_OR_ABORT(MPI_Recv(&msg, 1, MPI_INT, MPI_ANY_SOURCE, TAG, sig, MPI_STATUS_IGNORE));
  if (sent) MPI_OR_ABORT(MPI_Waitall(sent, out, MPI_STATUSES_IGNORE));
  free(out);
  MPI_Comm_free(&sig);
  return pai_dist_agree(d, rc);
}
