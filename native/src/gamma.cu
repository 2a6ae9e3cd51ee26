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

__global__ void cell_range_kernel(Params params, float* low, float* high, float* slope) {
  const int64_t count = params.n_cells[0] * params.n_cells[1] * params.n_cells[2];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= count) return;
  const int64_t c0 = c / (params.n_cells[1] * params.n_cells[2]);
  const int64_t c1 = (c / params.n_cells[2]) % params.n_cells[1];
  const int64_t c2 = c % params.n_cells[2];
  cell_range(params, c0, c1, c2, low + c, high + c, slope + c);
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
  const int64_t n_cells = params.n_cells[0] * params.n_cells[1] * params.n_cells[2];
  const int64_t n_reference = params.ref.n[0] * params.ref.n[1] * params.ref.n[2];

  DeviceBuffer shells(sizeof(Shell) * params.n_shells, "allocating the search distances");
  DeviceBuffer rows(sizeof(Row) * n_rows, "allocating the sphere rows");
  DeviceBuffer offsets(sizeof(double) * 3 * n_points, "allocating the sphere points");
  DeviceBuffer low(sizeof(float) * n_cells, "allocating the cell dose ranges");
  DeviceBuffer high(sizeof(float) * n_cells, "allocating the cell dose ranges");
  DeviceBuffer slope(sizeof(float) * n_cells, "allocating the cell slopes");
  check(cudaMemcpy(shells.pointer, params.shells, sizeof(Shell) * params.n_shells, cudaMemcpyHostToDevice), "copying the search distances");
  check(cudaMemcpy(rows.pointer, params.rows, sizeof(Row) * n_rows, cudaMemcpyHostToDevice), "copying the sphere rows");
  check(cudaMemcpy(offsets.pointer, params.offsets, sizeof(double) * 3 * n_points, cudaMemcpyHostToDevice), "copying the sphere points");
  params.shells = static_cast<const Shell*>(shells.pointer);
  params.rows = static_cast<const Row*>(rows.pointer);
  params.offsets = static_cast<const double*>(offsets.pointer);
  params.cell_min = static_cast<const float*>(low.pointer);
  params.cell_max = static_cast<const float*>(high.pointer);
  params.cell_slope = static_cast<const float*>(slope.pointer);

  constexpr int kThreads = 128;
  cell_range_kernel<<<static_cast<unsigned>((n_cells + kThreads - 1) / kThreads), kThreads>>>(
      params, static_cast<float*>(low.pointer), static_cast<float*>(high.pointer), static_cast<float*>(slope.pointer));
  check(cudaGetLastError(), "launching the cell range kernel");
  if (n_reference > 0) {
    gamma_kernel<<<static_cast<unsigned>((n_reference + kThreads - 1) / kThreads), kThreads>>>(params, n_reference, out);
    check(cudaGetLastError(), "launching the gamma kernel");
  }
  check(cudaDeviceSynchronize(), "running the gamma kernel");
}

}  // namespace vmat::gamma_detail
