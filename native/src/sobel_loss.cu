// Fused Sobel-loss CUDA kernels: one thread per voxel column and run of planes (sobel_columns.h holds the per-thread
// work, shared with the CPU tests). Forward reduces |G_k * u| per block into partial sums and stores the packed
// signs; backward filters the signs into the gradient. No gradient volume and no float intermediate reach global
// memory: forward reads p and t once and writes one byte per voxel, backward reads that byte and writes the gradient.
#include <cuda_runtime.h>

#include <string>

#include "sobel_columns.h"
#include "sobel_loss_cuda.h"
#include "vmat/error.h"

namespace vmat::cuda {

namespace {

using sobel_columns::Dims;

// 32 columns along x (the contiguous axis, so a warp's loads of one row are one coalesced segment) by 8 along y.
constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
constexpr int kThreads = kBlockX * kBlockY;
constexpr float kNorm = 1.f / 32.f;

// Grid: x = column tiles along x, y = column tiles along y, z = volume * runs + run.
dim3 grid_of(const Dims& d) {
  const int64_t runs = sobel_columns::runs_per_column(d);
  const int64_t tiles_y = (d.height + kBlockY - 1) / kBlockY;
  if (tiles_y > 65535 || d.volumes * runs > 65535)
    throw Error(ErrorCode::InvalidInput, "the Sobel loss volume is too large for one CUDA launch");
  return dim3(static_cast<unsigned>((d.width + kBlockX - 1) / kBlockX), static_cast<unsigned>(tiles_y),
              static_cast<unsigned>(d.volumes * runs));
}

struct Thread {
  int64_t volume, run, y, x;
  bool inside;
};

__device__ __forceinline__ Thread this_thread(const Dims& d) {
  const int64_t runs = sobel_columns::runs_per_column(d);
  Thread t;
  t.volume = blockIdx.z / runs;
  t.run = blockIdx.z % runs;
  t.y = static_cast<int64_t>(blockIdx.y) * kBlockY + threadIdx.y;
  t.x = static_cast<int64_t>(blockIdx.x) * kBlockX + threadIdx.x;
  t.inside = t.y < d.height && t.x < d.width;
  return t;
}

__global__ void __launch_bounds__(kThreads) forward_kernel(const float* __restrict__ p, const float* __restrict__ t,
                                                           Dims d, uint8_t* __restrict__ signs, double* partials) {
  __shared__ double warp_sums[kThreads / 32];
  const Thread me = this_thread(d);
  double value = me.inside ? sobel_columns::forward_run(p, t, signs, d, me.volume, me.run, me.y, me.x) : 0.0;
  for (int step = 16; step > 0; step /= 2) value += __shfl_down_sync(0xffffffffu, value, step);
  const int lane = threadIdx.y * kBlockX + threadIdx.x;
  if (lane % 32 == 0) warp_sums[lane / 32] = value;
  __syncthreads();
  if (lane == 0) {
    double block = 0.0;
    for (int i = 0; i < kThreads / 32; ++i) block += warp_sums[i];
    partials[(static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = block;
  }
}

__global__ void finish_kernel(const double* partials, int64_t count, double scale, float* loss) {
  __shared__ double sums[1024];
  double value = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) value += partials[i];
  sums[threadIdx.x] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = static_cast<float>(sums[0] * scale);
}

__global__ void __launch_bounds__(kThreads) backward_kernel(const uint8_t* __restrict__ signs,
                                                            const float* grad_loss, Dims d, double inverse_count,
                                                            float* __restrict__ grad_p, float* __restrict__ grad_t) {
  const Thread me = this_thread(d);
  if (!me.inside) return;
  const float coefficient = static_cast<float>(-static_cast<double>(*grad_loss) * kNorm * inverse_count);
  sobel_columns::backward_run(signs, coefficient, grad_p, grad_t, d, me.volume, me.run, me.y, me.x);
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw Error(ErrorCode::Internal, std::string("the Sobel loss ") + what + " kernel failed: " + cudaGetErrorString(status));
}

double voxels_of(const Dims& d) { return static_cast<double>(d.volumes) * d.depth * d.height * d.width; }

}  // namespace

int64_t sobel_l1_partial_count(int64_t volumes, int64_t depth, int64_t height, int64_t width,
                               int64_t planes_per_thread) {
  const dim3 grid = grid_of(Dims{volumes, depth, height, width, planes_per_thread});
  return static_cast<int64_t>(grid.x) * grid.y * grid.z;
}

void sobel_l1_forward(const float* p, const float* t, int64_t volumes, int64_t depth, int64_t height, int64_t width,
                      int64_t planes_per_thread, uint8_t* signs, double* partials, float* loss, void* stream) {
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  const Dims d{volumes, depth, height, width, planes_per_thread};
  forward_kernel<<<grid_of(d), dim3(kBlockX, kBlockY), 0, cuda_stream>>>(p, t, d, signs, partials);
  check_launch("forward");
  finish_kernel<<<1, 1024, 0, cuda_stream>>>(partials,
                                             sobel_l1_partial_count(volumes, depth, height, width, planes_per_thread),
                                             kNorm / (3.0 * voxels_of(d)), loss);
  check_launch("reduction");
}

void sobel_l1_backward(const uint8_t* signs, const float* grad_loss, int64_t volumes, int64_t depth, int64_t height,
                       int64_t width, int64_t planes_per_thread, float* grad_p, float* grad_t, void* stream) {
  const Dims d{volumes, depth, height, width, planes_per_thread};
  backward_kernel<<<grid_of(d), dim3(kBlockX, kBlockY), 0, static_cast<cudaStream_t>(stream)>>>(
      signs, grad_loss, d, 1.0 / (3.0 * voxels_of(d)), grad_p, grad_t);
  check_launch("backward");
}

}  // namespace vmat::cuda
