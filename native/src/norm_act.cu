// Fused GroupNorm -> SiLU -> FiLM (-> + residual) on the GPU: one pass for the statistics and one for the output
// (forward), one reduction pass and one output pass (backward), instead of the six to eight memory-bound passes of
// the unfused ops. Every element's arithmetic comes from norm_act_math.h, shared with the CPU loops.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "norm_act_cuda.h"
#include "norm_act_math.h"

namespace vmat::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kElementsPerThread = 8;

template <typename T>
__device__ __forceinline__ float load(const T* p, int64_t i);
template <>
__device__ __forceinline__ float load<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
template <>
__device__ __forceinline__ float load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }

template <typename T>
__device__ __forceinline__ void store(T* p, int64_t i, float v);
template <>
__device__ __forceinline__ void store<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
__device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
template <>
__device__ __forceinline__ void store<__half>(__half* p, int64_t i, float v) { p[i] = __float2half(v); }

// Sums `K` values over the block; the result is valid in thread 0.
template <int K>
__device__ void block_sum(float (&v)[K]) {
  __shared__ float partial[K][kThreads / 32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int k = 0; k < K; ++k) {
    for (int offset = 16; offset > 0; offset /= 2) v[k] += __shfl_down_sync(0xffffffff, v[k], offset);
    if (lane == 0) partial[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
    for (int k = 0; k < K; ++k) {
      v[k] = lane < kThreads / 32 ? partial[k][lane] : 0.0f;
      for (int offset = 16; offset > 0; offset /= 2) v[k] += __shfl_down_sync(0xffffffff, v[k], offset);
    }
  }
}

struct SlabParams {
  float mean, rstd, gamma, beta, gain, shift;
};

// blockIdx.y is the (batch, channel) slab; the group statistics and the channel's parameters are the same for all
// of its elements.
__device__ __forceinline__ SlabParams slab_params(int64_t slab, NormActShape s, const float* gamma, const float* beta,
                                                   const float* gain, const float* shift, const float* mean,
                                                   const float* rstd) {
  const int64_t b = slab / s.channels;
  const int64_t c = slab % s.channels;
  const int64_t g = c / (s.channels / s.groups);
  SlabParams p;
  p.mean = mean ? mean[b * s.groups + g] : 0.0f;
  p.rstd = rstd ? rstd[b * s.groups + g] : 0.0f;
  p.gamma = gamma[c];
  p.beta = beta[c];
  p.gain = gain ? gain[slab] : 1.0f;
  p.shift = shift ? shift[slab] : 0.0f;
  return p;
}

template <typename T>
__global__ void stats_kernel(const T* x, NormActShape s, double* stats) {
  const int64_t slab = blockIdx.y;
  const T* base = x + slab * s.spatial;
  float v[2] = {0.0f, 0.0f};
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < s.spatial; i += (int64_t)gridDim.x * blockDim.x) {
    const float value = load(base, i);
    v[0] += value;
    v[1] += value * value;
  }
  block_sum<2>(v);
  if (threadIdx.x == 0) {
    const int64_t b = slab / s.channels;
    const int64_t g = (slab % s.channels) / (s.channels / s.groups);
    atomicAdd(&stats[(b * s.groups + g) * 2], static_cast<double>(v[0]));
    atomicAdd(&stats[(b * s.groups + g) * 2 + 1], static_cast<double>(v[1]));
  }
}

__global__ void finish_stats_kernel(const double* stats, NormActShape s, double eps, float* mean, float* rstd) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= s.batch * s.groups) return;
  const double count = static_cast<double>(s.channels / s.groups) * static_cast<double>(s.spatial);
  const double m = stats[2 * i] / count;
  const double var = fmax(stats[2 * i + 1] / count - m * m, 0.0);
  mean[i] = static_cast<float>(m);
  rstd[i] = static_cast<float>(1.0 / sqrt(var + eps));
}

template <typename T>
__global__ void apply_kernel(const T* x, const float* gamma, const float* beta, const float* gain, const float* shift,
                             const T* residual, T* y, const float* mean, const float* rstd, NormActShape s) {
  const int64_t slab = blockIdx.y;
  const SlabParams p = slab_params(slab, s, gamma, beta, gain, shift, mean, rstd);
  const int64_t offset = slab * s.spatial;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < s.spatial; i += (int64_t)gridDim.x * blockDim.x) {
    const auto f = norm_act::forward(load(x, offset + i), p.mean, p.rstd, p.gamma, p.beta);
    float out = f.s * p.gain + p.shift;
    if (residual) out += load(residual, offset + i);
    store(y, offset + i, out);
  }
}

template <typename T>
__global__ void backward_reduce_kernel(const T* x, const T* dy, const float* gamma, const float* beta,
                                       const float* gain, const float* mean, const float* rstd, double* sums,
                                       NormActShape s) {
  const int64_t slab = blockIdx.y;
  const SlabParams p = slab_params(slab, s, gamma, beta, gain, nullptr, mean, rstd);
  const int64_t offset = slab * s.spatial;
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < s.spatial; i += (int64_t)gridDim.x * blockDim.x) {
    const auto f = norm_act::forward(load(x, offset + i), p.mean, p.rstd, p.gamma, p.beta);
    const float g = load(dy, offset + i);
    const float da = norm_act::grad_a(g, p.gain, f);
    v[0] += g;
    v[1] += g * f.s;
    v[2] += da;
    v[3] += da * f.n;
  }
  block_sum<4>(v);
  if (threadIdx.x == 0) {
    const int64_t slabs = s.batch * s.channels;
    for (int k = 0; k < 4; ++k) atomicAdd(&sums[k * slabs + slab], static_cast<double>(v[k]));
  }
}

template <typename T>
__global__ void backward_apply_kernel(const T* x, const T* dy, const float* gamma, const float* beta, const float* gain,
                                      const float* mean, const float* rstd, const float* mean_dn,
                                      const float* mean_dn_n, T* dx, NormActShape s) {
  const int64_t slab = blockIdx.y;
  const SlabParams p = slab_params(slab, s, gamma, beta, gain, nullptr, mean, rstd);
  const int64_t b = slab / s.channels;
  const int64_t g = (slab % s.channels) / (s.channels / s.groups);
  const float m_dn = mean_dn[b * s.groups + g];
  const float m_dn_n = mean_dn_n[b * s.groups + g];
  const int64_t offset = slab * s.spatial;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < s.spatial; i += (int64_t)gridDim.x * blockDim.x) {
    const auto f = norm_act::forward(load(x, offset + i), p.mean, p.rstd, p.gamma, p.beta);
    const float dn = norm_act::grad_a(load(dy, offset + i), p.gain, f) * p.gamma;
    store(dx, offset + i, p.rstd * (dn - m_dn - f.n * m_dn_n));
  }
}

dim3 slab_grid(NormActShape s) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * kElementsPerThread;
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>((s.spatial + per_block - 1) / per_block, 1), 4096);
  return dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(s.batch * s.channels));
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

void check_shape(NormActShape s) {
  if (s.batch * s.channels > 65535) throw std::runtime_error("norm_act: batch x channels must be at most 65535");
  if (s.groups <= 0 || s.channels % s.groups != 0) throw std::runtime_error("norm_act: channels must divide into groups");
}

template <typename Fn>
void dispatch(NormActDtype dtype, Fn&& fn) {
  switch (dtype) {
    case NormActDtype::Float32: fn(static_cast<float*>(nullptr)); break;
    case NormActDtype::BFloat16: fn(static_cast<__nv_bfloat16*>(nullptr)); break;
    case NormActDtype::Float16: fn(static_cast<__half*>(nullptr)); break;
  }
}

}  // namespace

void norm_act_forward(const void* x, const float* gamma, const float* beta, const float* gain, const float* shift,
                      const void* residual, void* y, double* stats, float* mean, float* rstd, NormActShape shape,
                      double eps, NormActDtype dtype, void* stream) {
  check_shape(shape);
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(stats, 0, sizeof(double) * 2 * shape.batch * shape.groups, cuda_stream), "norm_act stats");
  dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    stats_kernel<T><<<slab_grid(shape), kThreads, 0, cuda_stream>>>(static_cast<const T*>(x), shape, stats);
    const int64_t pairs = shape.batch * shape.groups;
    finish_stats_kernel<<<static_cast<unsigned>((pairs + 255) / 256), 256, 0, cuda_stream>>>(stats, shape, eps, mean, rstd);
    apply_kernel<T><<<slab_grid(shape), kThreads, 0, cuda_stream>>>(static_cast<const T*>(x), gamma, beta, gain, shift,
                                                                    static_cast<const T*>(residual), static_cast<T*>(y),
                                                                    mean, rstd, shape);
  });
  check(cudaGetLastError(), "norm_act forward launch");
}

void norm_act_backward_reduce(const void* x, const void* dy, const float* gamma, const float* beta, const float* gain,
                              const float* mean, const float* rstd, double* sums, NormActShape shape,
                              NormActDtype dtype, void* stream) {
  check_shape(shape);
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(sums, 0, sizeof(double) * 4 * shape.batch * shape.channels, cuda_stream), "norm_act sums");
  dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    backward_reduce_kernel<T><<<slab_grid(shape), kThreads, 0, cuda_stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), gamma, beta, gain, mean, rstd, sums, shape);
  });
  check(cudaGetLastError(), "norm_act backward-reduce launch");
}

void norm_act_backward_apply(const void* x, const void* dy, const float* gamma, const float* beta, const float* gain,
                             const float* mean, const float* rstd, const float* mean_dn, const float* mean_dn_n,
                             void* dx, NormActShape shape, NormActDtype dtype, void* stream) {
  check_shape(shape);
  auto cuda_stream = static_cast<cudaStream_t>(stream);
  dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    backward_apply_kernel<T><<<slab_grid(shape), kThreads, 0, cuda_stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), gamma, beta, gain, mean, rstd, mean_dn, mean_dn_n,
        static_cast<T*>(dx), shape);
  });
  check(cudaGetLastError(), "norm_act backward-apply launch");
}

}  // namespace vmat::cuda
