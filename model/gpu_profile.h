/* gpu_profile.h - where the GPU backend's time goes: per element-wise kernel and per
 * dense-layer shape, when the environment sets PAI_GPU_PROFILE=1.
 *
 * Both runtimes of model/gpu.h time each call (CUDA: events recorded on the stream around the
 * call and waited for at once, so calls do not overlap and each figure is the time from the
 * call's start to the end of its device work: its kernels, plus any host set-up during which
 * the GPU waits, such as a library's algorithm choice at a shape's first use; the host
 * emulation: wall time) and add it here under the call's name; pai_gpu_close prints the table
 * on stderr, largest share first:
 *
 *   GPU profile (NVIDIA H100 80GB HBM3): 1234.5 ms in 4567 calls
 *     share        ms   calls   ms/call  what
 *     41.2%     508.6     240     2.119  gemm bf16 81920x4096x1024 bias relu
 *
 * Calls made inside a profiled call (the plain kernel a product falls back to) count towards
 * the outer one only. */
#ifndef PAI_GPU_PROFILE_H
#define PAI_GPU_PROFILE_H

#include <stdio.h>

typedef struct pai_gpu_profile pai_gpu_profile;

/* A new, empty profile when PAI_GPU_PROFILE is set to anything but "" or "0"; else NULL (every
 * function below accepts NULL and then does nothing). */
pai_gpu_profile *pai_gpu_profile_new(void);
void pai_gpu_profile_add(pai_gpu_profile *p, const char *name, double ms);
/* Prints the table on f, titled with the device's name, and frees p. */
void pai_gpu_profile_report(pai_gpu_profile *p, const char *device, FILE *f);

/* The name a product is profiled under: "gemm bf16 MxNxK" (row-major M, N, K), then "->bf16"
 * for a bf16 output, "^T" marks for transposed operands, and the epilogue. */
struct pai_gemm_name_args {
  int M, N, K, trans_a, trans_b, ab_bf16, c_bf16, bias, relu, accumulate;
};
void pai_gemm_name(char *out, size_t n, const struct pai_gemm_name_args *a);

#endif
