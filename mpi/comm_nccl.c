/* comm_nccl.c - the NCCL implementation of comm.h: in-place ncclAllReduce over device buffers
 * on the caller's stream, which is then waited for (the sums are needed at once: batch-norm
 * statistics, or the gradient the optimizer reads next).
 *
 * One communicator per job: rank 0 makes the unique id and MPI broadcasts it. NCCL is opened
 * with dlopen on first use, as cuBLASLt is (model/gpu_cuda.cu): programs that never use a GPU
 * never load it. Failures are returned (and logged), never aborted on; a failed init is agreed
 * on by every rank so that none goes on into a collective alone. */
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
  ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t);
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
  *(void **)&nc.CommInitRank = dlsym(lib, "ncclCommInitRank");
  *(void **)&nc.AllReduce = dlsym(lib, "ncclAllReduce");
  *(void **)&nc.CommDestroy = dlsym(lib, "ncclCommDestroy");
  *(void **)&nc.GetErrorString = dlsym(lib, "ncclGetErrorString");
  *(void **)&nc.GetVersion = dlsym(lib, "ncclGetVersion");
  *(void **)&nc.CommGetAsyncError = dlsym(lib, "ncclCommGetAsyncError");
  *(void **)&nc.CommAbort = dlsym(lib, "ncclCommAbort");
  if (!nc.GetUniqueId || !nc.CommInitRank || !nc.AllReduce || !nc.CommDestroy ||
      !nc.GetErrorString || !nc.GetVersion || !nc.CommGetAsyncError || !nc.CommAbort) {
    PAI_ERR("%s lacks an NCCL function this build uses", name);
    dlclose(lib);
    return PAI_ERR_RUNTIME;
  }
  nc.lib = lib;
  return 0;
}

typedef struct {
  ncclComm_t comm;
  cudaStream_t stream;
} nccl_impl;

static int allreduce(pai_comm *c, void *buf, size_t n, ncclDataType_t type, const char *what) {
  nccl_impl *im = c->impl;
  if (!im->comm) {
    PAI_ERR("NCCL sum after the communicator was aborted");
    return PAI_ERR_RUNTIME;
  }
  ncclResult_t r = nc.AllReduce(buf, buf, n, type, ncclSum, im->comm, im->stream);
  if (r != ncclSuccess) {
    PAI_ERR("ncclAllReduce of %zu %s values: %s", n, what, nc.GetErrorString(r));
    return PAI_ERR_RUNTIME;
  }
  /* Wait for the sum, watching NCCL's asynchronous errors: a failed peer would otherwise leave
   * this rank waiting on the stream forever. On one, the communicator is aborted. */
  cudaError_t e;
  while ((e = cudaStreamQuery(im->stream)) == cudaErrorNotReady) {
    ncclResult_t ar = ncclSuccess;
    if (nc.CommGetAsyncError(im->comm, &ar) != ncclSuccess ||
        (ar != ncclSuccess && ar != ncclInProgress)) {
      PAI_ERR("ncclAllReduce of %zu %s values: %s; aborting the communicator", n, what,
              nc.GetErrorString(ar));
      nc.CommAbort(im->comm);
      im->comm = NULL;
      return PAI_ERR_RUNTIME;
    }
    sched_yield();
  }
  if (e != cudaSuccess) {
    PAI_ERR("ncclAllReduce of %zu %s values: CUDA error %s", n, what, cudaGetErrorString(e));
    return PAI_ERR_RUNTIME;
  }
  return 0;
}

static int sum_f32(pai_comm *c, float *buf, size_t n) {
  return allreduce(c, buf, n, ncclFloat32, "float");
}

static int sum_f64(pai_comm *c, double *buf, size_t n) {
  return allreduce(c, buf, n, ncclFloat64, "double");
}

static void nccl_free(pai_comm *c) {
  nccl_impl *im = c->impl;
  if (im && im->comm) nc.CommDestroy(im->comm);
  free(im);
  c->impl = NULL;
}

int pai_comm_init_nccl(pai_comm *c, const pai_dist *d, void *stream) {
  *c = (pai_comm){.rank = d->rank, .size = d->size, .name = "nccl", .sum_f32 = sum_f32,
                  .sum_f64 = sum_f64, .free = nccl_free};
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
  ncclUniqueId id = {{0}};
  if (rc == 0 && d->rank == 0) {
    ncclResult_t r = nc.GetUniqueId(&id);
    if (r != ncclSuccess) {
      PAI_ERR("ncclGetUniqueId: %s", nc.GetErrorString(r));
      rc = PAI_ERR_RUNTIME;
    }
  }
  rc = pai_dist_agree(d, rc);
  if (rc == 0 && d->size > 1 &&
      MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    PAI_ERR("broadcasting the NCCL id failed");
    rc = PAI_ERR_RUNTIME;
  }
  if (rc == 0) {
    im->stream = (cudaStream_t)stream;
    ncclResult_t r = nc.CommInitRank(&im->comm, d->size, id, d->rank);
    if (r != ncclSuccess) {
      PAI_ERR("ncclCommInitRank (rank %d of %d): %s", d->rank, d->size, nc.GetErrorString(r));
      im->comm = NULL;
      rc = PAI_ERR_RUNTIME;
    }
  }
  c->impl = im;
  rc = pai_dist_agree(d, rc);
  if (rc < 0) nccl_free(c);
  return rc;
}
