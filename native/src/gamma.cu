// The gamma index on a CUDA device: one thread per reference point, running the same per-point search as the CPU
// (gamma_kernel.h), so that both give the same Γ bit for bit. Raw pointers only: no torch headers here.
#include <cuda_runtime.h>

#include <string>

#include "gamma_cuda.h"
#include "vmat/error.h"

namespace vmat::gamma_detail {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    const auto code = status == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Internal;
    throw Error(code, std::string("gamma on CUDA: ") + what + " failed: " + cudaGetErrorString(status));
  }
}

__global__ void block_range_kernel(Params params, float* low, float* high) {
  const int64_t count = params.n_blocks[0] * params.n_blocks[1] * params.n_blocks[2];
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= count) return;
  const int64_t b0 = b / (params.n_blocks[1] * params.n_blocks[2]);
  const int64_t b1 = (b / params.n_blocks[2]) % params.n_blocks[1];
  const int64_t b2 = b % params.n_blocks[2];
  block_range(params, b0, b1, b2, low + b, high + b);
}

__global__ void gamma_kernel(Params params, int64_t count, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = gamma_at(params, i);
}

// Device memory freed on every path out, errors included.
struct DeviceBuffer {
  void* pointer = nullptr;
  DeviceBuffer(size_t bytes, const char* what) { check(cudaMalloc(&pointer, bytes > 0 ? bytes : 1), what); }
  ~DeviceBuffer() { cudaFree(pointer); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace

void gamma_cuda(Params params, int64_t n_rows, int64_t n_points, float* out, int device_index) {
  check(cudaSetDevice(device_index), "selecting the device");
  const int64_t n_blocks = params.n_blocks[0] * params.n_blocks[1] * params.n_blocks[2];
  const int64_t n_reference = params.ref.n[0] * params.ref.n[1] * params.ref.n[2];

  DeviceBuffer shells(sizeof(Shell) * params.n_shells, "allocating the search distances");
  DeviceBuffer rows(sizeof(Row) * n_rows, "allocating the sphere rows");
  DeviceBuffer offsets(sizeof(double) * 3 * n_points, "allocating the sphere points");
  DeviceBuffer low(sizeof(float) * n_blocks, "allocating the block dose ranges");
  DeviceBuffer high(sizeof(float) * n_blocks, "allocating the block dose ranges");
  check(cudaMemcpy(shells.pointer, params.shells, sizeof(Shell) * params.n_shells, cudaMemcpyHostToDevice), "copying the search distances");
  check(cudaMemcpy(rows.pointer, params.rows, sizeof(Row) * n_rows, cudaMemcpyHostToDevice), "copying the sphere rows");
  check(cudaMemcpy(offsets.pointer, params.offsets, sizeof(double) * 3 * n_points, cudaMemcpyHostToDevice), "copying the sphere points");
  params.shells = static_cast<const Shell*>(shells.pointer);
  params.rows = static_cast<const Row*>(rows.pointer);
  params.offsets = static_cast<const double*>(offsets.pointer);
  params.block_min = static_cast<const float*>(low.pointer);
  params.block_max = static_cast<const float*>(high.pointer);

  constexpr int kThreads = 128;
  block_range_kernel<<<static_cast<unsigned>((n_blocks + kThreads - 1) / kThreads), kThreads>>>(
      params, static_cast<float*>(low.pointer), static_cast<float*>(high.pointer));
  check(cudaGetLastError(), "launching the block range kernel");
  if (n_reference > 0) {
    gamma_kernel<<<static_cast<unsigned>((n_reference + kThreads - 1) / kThreads), kThreads>>>(params, n_reference, out);
    check(cudaGetLastError(), "launching the gamma kernel");
  }
  check(cudaDeviceSynchronize(), "running the gamma kernel");
}

}  // namespace vmat::gamma_detail
