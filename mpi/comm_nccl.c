/* comm_nccl.c - the NCCL implementation of comm.h: in-place ncclAllReduce over device buffers.
 *
 * Every sum runs on a stream of the communicator's own ("side"), after an event that orders it
 * behind the work queued on the caller's stream so far: one stream for all of the
 * communicator's operations, so they run in the order they were issued on every rank, while
 * the caller's stream goes on. A plain sum is then waited for (batch-norm statistics are
 * needed at once); a started one (pai_comm_sum_f32_start: a finished block's gradient, summed
 * while the backward pass goes on through the blocks below) only at pai_comm_wait_all. Waiting
 * polls NCCL's asynchronous errors, so that a failed peer aborts the communicator instead of
 * leaving this rank waiting forever.
 *
 * One communicator per job: rank 0 makes the unique id and MPI broadcasts it. NCCL is opened
 * with dlopen on first use, as cuBLASLt is (model/gpu_cuda.cu): programs that never use a GPU
 * never load it. Failures are returned (and logged), never aborted on; a failed init is agreed
 * on by every rank so that none goes on into a collective alone.
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0): its set-up returns at once and
 * is polled, under pai_dist_await, so that a rank failing inside it (out of GPU memory, a
 * network it cannot open) stops the others' set-up too, where the blocking call would leave
 * them waiting for it forever. PAI_NCCL_TIMEOUT (seconds, default 600) bounds the set-up and
 * every later wait. Every later call may also return ncclInProgress before its work is queued,
 * so each is followed by a poll of the communicator's state until the call has been carried
 * out. */
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <mpi.h>
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "mpi/comm.h"
#include "mpi/log.h"

static struct {
  void *lib;
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t);
  ncclResult_t (*CommFinalize)(ncclComm_t);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  const char *(*GetErrorString)(ncclResult_t);
  ncclResult_t (*GetVersion)(int *);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
  ncclResult_t (*CommAbort)(ncclComm_t);
} nc;

static int nccl_load(void) {
  if (nc.lib) return 0;
  char name[32];
  snprintf(name, sizeof name, "libnccl.so.%d", NCCL_MAJOR);
  void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    PAI_ERR("cannot load %s (NCCL, for multi-GPU sums): %s; install it or add its folder to "
            "LD_LIBRARY_PATH",
            name, dlerror());
    return PAI_ERR_RUNTIME;
  }
  /* POSIX guarantees that a data pointer from dlsym converts to a function pointer */
  *(void **)&nc.GetUniqueId = dlsym(lib, "ncclGetUniqueId");
  *(void **)&nc.CommInitRankConfig = dlsym(lib, "ncclCommInitRankConfig");
  *(void **)&nc.CommFinalize = dlsym(lib, "ncclCommFinalize");
  *(void **)&nc.AllReduce = dlsym(lib, "ncclAllReduce");
  *(void **)&nc.CommDestroy = dlsym(lib, "ncclCommDestroy");
  *(void **)&nc.GetErrorString = dlsym(lib, "ncclGetErrorString");
  *(void **)&nc.GetVersion = dlsym(lib, "ncclGetVersion");
  *(void **)&nc.CommGetAsyncError = dlsym(lib, "ncclCommGetAsyncError");
  *(void **)&nc.CommAbort = dlsym(lib, "ncclCommAbort");
  if (!nc.GetUniqueId || !nc.CommInitRankConfig || !nc.CommFinalize || !nc.AllReduce ||
      !nc.CommDestroy ||
      !nc.GetErrorString || !nc.GetVersion || !nc.CommGetAsyncError || !nc.CommAbort) {
    PAI_ERR("%s lacks an NCCL function this build uses", name);
    dlclose(lib);
    return PAI_ERR_RUNTIME;
  }
  int version = 0;
  if (nc.GetVersion(&version) != ncclSuccess || version < 21400) {
    PAI_ERR("%s is NCCL version code %d: non-blocking communicators need 2.14 or newer", name,
            version);
    dlclose(lib);
    return PAI_ERR_RUNTIME;
  }
  nc.lib = lib;
  return 0;
}

/* PAI_NCCL_TIMEOUT: seconds any one wait on NCCL may take (default 600). */
static double nccl_timeout(void) {
  static double t = 0;
  if (t == 0) {
    t = 600;
    const char *e = getenv("PAI_NCCL_TIMEOUT");
    char *end = NULL;
    const double v = e && *e ? strtod(e, &end) : 0;
    if (e && *e && (*end || !(v > 0)))
      PAI_WARN("PAI_NCCL_TIMEOUT=%s is not a number of seconds > 0: using %.0f", e, t);
    else if (e && *e)
      t = v;
  }
  return t;
}

typedef struct {
  ncclComm_t comm;
  cudaStream_t stream;   /* the caller's */
  cudaStream_t side;     /* every NCCL operation's */
  cudaEvent_t ready;     /* recorded on stream before each sum; side waits for it */
  cudaEvent_t done;      /* recorded on side after a wait; stream waits for it */
} nccl_impl;

/* The communicator's state after a non-blocking call: 1 done, 0 still in progress, < 0 failed
 * (logged, naming what). */
static int comm_state(ncclComm_t comm, const char *what) {
  ncclResult_t ar = ncclSuccess, r = nc.CommGetAsyncError(comm, &ar);
  if (r == ncclSuccess && ar == ncclInProgress) return 0;
  if (r == ncclSuccess && ar == ncclSuccess) return 1;
  PAI_ERR("%s: %s", what, nc.GetErrorString(r != ncclSuccess ? r : ar));
  return PAI_ERR_RUNTIME;
}

/* Waits until the call that returned r on comm has been carried out (queued on the stream, for
 * a collective). On a failure the communicator is aborted. */
static int settle(nccl_impl *im, ncclResult_t r, const char *what) {
  int st = r == ncclSuccess ? 1 : 0;
  if (r != ncclSuccess && r != ncclInProgress) {
    PAI_ERR("%s: %s", what, nc.GetErrorString(r));
    st = PAI_ERR_RUNTIME;
  }
  const double t0 = MPI_Wtime();
  while (st == 0) {
    if (MPI_Wtime() - t0 > nccl_timeout()) {
      PAI_ERR("%s: still in progress after %.0f s (PAI_NCCL_TIMEOUT)", what, nccl_timeout());
      st = PAI_ERR_RUNTIME;
      break;
    }
    sched_yield();
    st = comm_state(im->comm, what);
  }
  if (st < 0) {
    nc.CommAbort(im->comm);
    im->comm = NULL;
    return st;
  }
  return 0;
}

/* Queues the sum on the side stream, after the caller's stream's work so far. */
static int enqueue(nccl_impl *im, void *buf, size_t n, ncclDataType_t type, const char *name) {
  if (!im->comm) {
    PAI_ERR("NCCL sum after the communicator was aborted");
    return PAI_ERR_RUNTIME;
  }
  cudaError_t e = cudaEventRecord(im->ready, im->stream);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(im->side, im->ready, 0);
  if (e != cudaSuccess) {
    PAI_ERR("%s: CUDA error %s", name, cudaGetErrorString(e));
    return PAI_ERR_RUNTIME;
  }
  return settle(im, nc.AllReduce(buf, buf, n, type, ncclSum, im->comm, im->side), name);
}

/* Waits until the side stream is idle (every queued sum done). */
static int drain(nccl_impl *im, const char *name) {
  if (!im->comm) {
    PAI_ERR("%s: the NCCL communicator was aborted", name);
    return PAI_ERR_RUNTIME;
  }
  const double t0 = MPI_Wtime();
  cudaError_t e;
  while ((e = cudaStreamQuery(im->side)) == cudaErrorNotReady) {
    const int late = MPI_Wtime() - t0 > nccl_timeout();
    if (late) PAI_ERR("%s: not done after %.0f s (PAI_NCCL_TIMEOUT)", name, nccl_timeout());
    if (late || comm_state(im->comm, name) < 0) {
      PAI_ERR("aborting the NCCL communicator");
      nc.CommAbort(im->comm);
      im->comm = NULL;
      return PAI_ERR_RUNTIME;
    }
    sched_yield();
  }
  /* the host has seen the sums finish; the caller's stream is also ordered after them, so that
   * its later work depends on them through the stream, not only through the host's wait */
  if (e == cudaSuccess) e = cudaEventRecord(im->done, im->side);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(im->stream, im->done, 0);
  if (e != cudaSuccess) {
    PAI_ERR("%s: CUDA error %s", name, cudaGetErrorString(e));
    return PAI_ERR_RUNTIME;
  }
  return 0;
}

static int allreduce(pai_comm *c, void *buf, size_t n, ncclDataType_t type, const char *what) {
  nccl_impl *im = c->impl;
  char name[64];
  snprintf(name, sizeof name, "ncclAllReduce of %zu %s values", n, what);
  PAI_TRY(enqueue(im, buf, n, type, name));
  return drain(im, name);
}

static int sum_f32_start(pai_comm *c, float *buf, size_t n) {
  char name[64];
  snprintf(name, sizeof name, "ncclAllReduce of %zu float values", n);
  return enqueue(c->impl, buf, n, ncclFloat32, name);
}

static int wait_all(pai_comm *c) { return drain(c->impl, "ncclAllReduce (started sums)"); }

static int sum_f32(pai_comm *c, float *buf, size_t n) {
  return allreduce(c, buf, n, ncclFloat32, "float");
}

static int sum_f64(pai_comm *c, double *buf, size_t n) {
  return allreduce(c, buf, n, ncclFloat64, "double");
}

static void nccl_free(pai_comm *c) {
  nccl_impl *im = c->impl;
  /* Finalize flushes (and, non-blocking, may still be in progress), then destroy frees; a
   * communicator that fails to finalize is aborted by settle instead. */
  if (im && im->comm && settle(im, nc.CommFinalize(im->comm), "ncclCommFinalize") == 0)
    nc.CommDestroy(im->comm);
  if (im && im->side) cudaStreamDestroy(im->side);
  if (im && im->ready) cudaEventDestroy(im->ready);
  if (im && im->done) cudaEventDestroy(im->done);
  free(im);
  c->impl = NULL;
}

static int init_poll(void *arg) {
  nccl_impl *im = arg;
  return im->comm ? comm_state(im->comm, "ncclCommInitRankConfig") : PAI_ERR_RUNTIME;
}

static void init_cancel(void *arg) {
  nccl_impl *im = arg;
  if (im->comm) nc.CommAbort(im->comm);
  im->comm = NULL;
}

int pai_comm_init_nccl(pai_comm *c, const pai_dist *d, void *stream) {
  *c = (pai_comm){.rank = d->rank, .size = d->size, .name = "nccl", .sum_f32 = sum_f32,
                  .sum_f64 = sum_f64, .sum_f32_start = sum_f32_start, .wait_all = wait_all,
                  .free = nccl_free};
  nccl_impl *im = calloc(1, sizeof *im);
  int rc = im ? nccl_load() : PAI_ERR_NOMEM;
  if (!im) PAI_ERR("out of memory");
  int gpus = 0;
  if (rc == 0 && (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < d->local_size)) {
    cudaGetLastError();
    PAI_ERR("NCCL needs a GPU per rank: %d ranks on this node, %d GPU(s) visible (run fewer "
            "ranks per node, or sum through MPI: --comm mpi)",
            d->local_size, gpus);
    rc = PAI_ERR_USAGE;
  }
  if (rc == 0 && (cudaStreamCreateWithFlags(&im->side, cudaStreamNonBlocking) != cudaSuccess ||
                  cudaEventCreateWithFlags(&im->ready, cudaEventDisableTiming) != cudaSuccess ||
                  cudaEventCreateWithFlags(&im->done, cudaEventDisableTiming) != cudaSuccess)) {
    PAI_ERR("creating the NCCL communicator's stream: %s", cudaGetErrorString(cudaGetLastError()));
    rc = PAI_ERR_RUNTIME;
  }
  ncclUniqueId id = {{0}};
  if (rc == 0 && d->rank == 0) {
    ncclResult_t r = nc.GetUniqueId(&id);
    if (r != ncclSuccess) {
      PAI_ERR("ncclGetUniqueId: %s", nc.GetErrorString(r));
      rc = PAI_ERR_RUNTIME;
    }
  }
  rc = pai_dist_agree(d, rc);
  c->impl = im;
  if (rc < 0) {   /* agreed: no rank starts the set-up */
    nccl_free(c);
    return rc;
  }
  /* From here on every rank reaches pai_dist_await, whatever fails on its way there. */
  im->stream = (cudaStream_t)stream;
  if (d->size > 1 && MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    PAI_ERR("broadcasting the NCCL id failed");
  } else {
    /* Connections are made during the set-up, under pai_dist_await, rather than lazily at the
     * first sum (NCCL 2.22's default), where a rank that cannot connect would fail outside it.
     * A value the user set is kept. */
    setenv("NCCL_RUNTIME_CONNECT", "0", 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = nc.CommInitRankConfig(&im->comm, d->size, id, d->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      PAI_ERR("ncclCommInitRankConfig (rank %d of %d): %s", d->rank, d->size,
              nc.GetErrorString(r));
      init_cancel(im);   /* init_poll reports the failure to the other ranks */
    }
  }
  rc = pai_dist_await(d, init_poll, init_cancel, im, nccl_timeout());
  if (rc < 0) {   /* some rank failed: abort, since a finalize would wait for it */
    init_cancel(im);
    nccl_free(c);
  }
  return rc;
}
