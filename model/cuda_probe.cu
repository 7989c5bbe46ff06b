/* cuda_probe.cu - the CUDA side of the build as it stands: device discovery and library
 * versions. Compiled and linked wherever the toolkit is present (also without a GPU), so the
 * GPU backend's kernels can be added beside it without touching the rest of the build. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#include <stdio.h>

extern "C" int pai_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();   /* no driver or no device: clear the sticky error */
    return 0;
  }
  return n;
}

/* Versions of the headers compiled against (the libraries are not loaded yet, see CMakeLists). */
extern "C" void pai_cuda_info(char *out, size_t n) {
  snprintf(out, n, "CUDA runtime %d, cuBLASLt %d, cuDNN %d, NCCL %d, %d GPU(s) visible",
           CUDART_VERSION, CUBLAS_VERSION, CUDNN_VERSION, NCCL_VERSION_CODE,
           pai_cuda_device_count());
}
