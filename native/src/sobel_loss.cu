// Fused Sobel-loss CUDA kernels (see sobel_loss.cpp for the maths). Each block owns a 16x8x8 (x, y, z) tile of voxels:
// forward loads u = p - t with a 1-voxel halo into shared memory and reduces |G_k * u| per block; backward loads u
// with a 2-voxel halo, computes the sign planes S_k = sign(G_k * u) for the tile plus a 1-voxel halo in shared
// memory, then writes -(1/3N) * sum_k (G_k * S_k). No gradient volume ever reaches global memory.
#include <cuda_runtime.h>

#include <string>

#include "sobel_loss_cuda.h"
#include "vmat/error.h"

namespace vmat::cuda {

namespace {

// 16 voxels along x (the contiguous axis) make the halo'd rows 18-20 floats long: better coalesced loads and less
// halo per voxel than an 8^3 tile.
constexpr int kTileX = 16;
constexpr int kTileY = 8;
constexpr int kTileZ = 8;
constexpr int kThreads = kTileX * kTileY * kTileZ;
constexpr float kNorm = 1.f / 32.f;

// Kernel k in {z, y, x} tap (a, b, c): derivative [-1, 0, 1] along axis k, smoothing [1, 2, 1] along the others.
__device__ __forceinline__ float tap(int axis, int a, int b, int c) {
  const float smooth[3] = {1.f, 2.f, 1.f};
  const float diff[3] = {-1.f, 0.f, 1.f};
  if (axis == 0) return diff[a] * smooth[b] * smooth[c];
  if (axis == 1) return smooth[a] * diff[b] * smooth[c];
  return smooth[a] * smooth[b] * diff[c];
}

// Unnormalised Sobel component `axis` of the 3x3x3 window whose corner is `f` (strides sz, sy, 1).
__device__ __forceinline__ float sobel_at(const float* f, int sz, int sy, int axis) {
  float acc = 0.f;
#pragma unroll
  for (int a = 0; a < 3; ++a)
#pragma unroll
    for (int b = 0; b < 3; ++b)
#pragma unroll
      for (int c = 0; c < 3; ++c) acc += tap(axis, a, b, c) * f[a * sz + b * sy + c];
  return acc;
}

__device__ __forceinline__ float sign_of(float v) { return static_cast<float>((v > 0.f) - (v < 0.f)); }

struct Tiles {
  int64_t x, y, z;
};

__host__ __device__ inline Tiles tiles_of(int64_t d, int64_t h, int64_t w) {
  return {(w + kTileX - 1) / kTileX, (h + kTileY - 1) / kTileY, (d + kTileZ - 1) / kTileZ};
}

// Loads u = p - t for the box of sz x sy x sx voxels whose corner is (z0, y0, x0); zero outside the volume.
__device__ void load_difference(const float* p, const float* t, int64_t d, int64_t h, int64_t w, int64_t z0,
                                int64_t y0, int64_t x0, int sz, int sy, int sx, float* u) {
  const int tid = threadIdx.x;
  const int count = sz * sy * sx;
  for (int i = tid; i < count; i += kThreads) {
    const int iz = i / (sy * sx), iy = (i / sx) % sy, ix = i % sx;
    const int64_t z = z0 + iz, y = y0 + iy, x = x0 + ix;
    float value = 0.f;
    if (z >= 0 && z < d && y >= 0 && y < h && x >= 0 && x < w) {
      const int64_t index = (z * h + y) * w + x;
      value = p[index] - t[index];
    }
    u[i] = value;
  }
}

__global__ void __launch_bounds__(kThreads, 2) forward_kernel(const float* p, const float* t, int64_t d, int64_t h, int64_t w, double* partials) {
  constexpr int ux = kTileX + 2, uy = kTileY + 2, uz = kTileZ + 2;
  __shared__ float u[uz * uy * ux];
  __shared__ double warp_sums[kThreads / 32];
  const Tiles tiles = tiles_of(d, h, w);
  const int64_t tile_x = blockIdx.x % tiles.x, tile_y = blockIdx.x / tiles.x, tile_z = blockIdx.y;
  const int64_t volume = blockIdx.z;
  const int64_t offset = volume * d * h * w;
  const int64_t z0 = tile_z * kTileZ, y0 = tile_y * kTileY, x0 = tile_x * kTileX;
  load_difference(p + offset, t + offset, d, h, w, z0 - 1, y0 - 1, x0 - 1, uz, uy, ux, u);
  __syncthreads();

  const int lz = threadIdx.x / (kTileX * kTileY), ly = (threadIdx.x / kTileX) % kTileY, lx = threadIdx.x % kTileX;
  double value = 0.0;
  if (z0 + lz < d && y0 + ly < h && x0 + lx < w) {
    const float* window = u + (lz * uy + ly) * ux + lx;
    value = fabsf(sobel_at(window, uy * ux, ux, 0)) + fabsf(sobel_at(window, uy * ux, ux, 1)) +
            fabsf(sobel_at(window, uy * ux, ux, 2));
  }
  for (int step = 16; step > 0; step /= 2) value += __shfl_down_sync(0xffffffffu, value, step);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    double block = 0.0;
    for (int i = 0; i < kThreads / 32; ++i) block += warp_sums[i];
    partials[(volume * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = block;
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

__global__ void __launch_bounds__(kThreads, 2) backward_kernel(const float* p, const float* t, const float* grad_loss, int64_t d, int64_t h,
                                int64_t w, double inverse_count, float* grad_p, float* grad_t) {
  constexpr int ux = kTileX + 4, uy = kTileY + 4, uz = kTileZ + 4;
  constexpr int sx = kTileX + 2, sy = kTileY + 2, sz = kTileZ + 2;
  constexpr int s_volume = sz * sy * sx;
  __shared__ float u[uz * uy * ux];
  __shared__ float s[3 * s_volume];
  const Tiles tiles = tiles_of(d, h, w);
  const int64_t tile_x = blockIdx.x % tiles.x, tile_y = blockIdx.x / tiles.x, tile_z = blockIdx.y;
  const int64_t volume = blockIdx.z;
  const int64_t offset = volume * d * h * w;
  const int64_t z0 = tile_z * kTileZ, y0 = tile_y * kTileY, x0 = tile_x * kTileX;
  load_difference(p + offset, t + offset, d, h, w, z0 - 2, y0 - 2, x0 - 2, uz, uy, ux, u);
  __syncthreads();

  // Signs at the tile plus a 1-voxel halo; positions outside the volume have no output, hence sign 0.
  for (int i = threadIdx.x; i < s_volume; i += kThreads) {
    const int iz = i / (sy * sx), iy = (i / sx) % sy, ix = i % sx;
    const int64_t z = z0 - 1 + iz, y = y0 - 1 + iy, x = x0 - 1 + ix;
    const bool inside = z >= 0 && z < d && y >= 0 && y < h && x >= 0 && x < w;
    const float* window = u + (iz * uy + iy) * ux + ix;
    for (int axis = 0; axis < 3; ++axis)
      s[axis * s_volume + i] = inside ? sign_of(sobel_at(window, uy * ux, ux, axis)) : 0.f;
  }
  __syncthreads();

  const int lz = threadIdx.x / (kTileX * kTileY), ly = (threadIdx.x / kTileX) % kTileY, lx = threadIdx.x % kTileX;
  const int64_t z = z0 + lz, y = y0 + ly, x = x0 + lx;
  if (z >= d || y >= h || x >= w) return;
  const int corner = (lz * sy + ly) * sx + lx;
  float sum = 0.f;
  for (int axis = 0; axis < 3; ++axis) sum += sobel_at(s + axis * s_volume + corner, sy * sx, sx, axis);
  const float value = static_cast<float>(-static_cast<double>(*grad_loss) * kNorm * inverse_count) * sum;
  const int64_t index = offset + (z * h + y) * w + x;
  if (grad_p) grad_p[index] = value;
  if (grad_t) grad_t[index] = -value;
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw Error(ErrorCode::Internal, std::string("the Sobel loss ") + what + " kernel failed: " + cudaGetErrorString(status));
}

dim3 grid_of(int64_t volumes, int64_t d, int64_t h, int64_t w) {
  const Tiles tiles = tiles_of(d, h, w);
  if (tiles.z > 65535 || volumes > 65535)
    throw Error(ErrorCode::InvalidInput, "the Sobel loss volume is too large for one CUDA launch");
  return dim3(static_cast<unsigned>(tiles.x * tiles.y), static_cast<unsigned>(tiles.z), static_cast<unsigned>(volumes));
}

}  // namespace

int64_t sobel_l1_partial_count(int64_t volumes, int64_t depth, int64_t height, int64_t width) {
  const Tiles tiles = tiles_of(depth, height, width);
  return volumes * tiles.x * tiles.y * tiles.z;
}

void sobel_l1_forward(const float* p, const float* t, int64_t volumes, int64_t depth, int64_t height, int64_t width,
                      double* partials, float* loss, void* stream) {
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  forward_kernel<<<grid_of(volumes, depth, height, width), kThreads, 0, cuda_stream>>>(p, t, depth, height, width,
                                                                                     partials);
  check_launch("forward");
  const double voxels = static_cast<double>(volumes) * depth * height * width;
  finish_kernel<<<1, 1024, 0, cuda_stream>>>(partials, sobel_l1_partial_count(volumes, depth, height, width),
                                             kNorm / (3.0 * voxels), loss);
  check_launch("reduction");
}

void sobel_l1_backward(const float* p, const float* t, const float* grad_loss, int64_t volumes, int64_t depth,
                       int64_t height, int64_t width, float* grad_p, float* grad_t, void* stream) {
  const double voxels = static_cast<double>(volumes) * depth * height * width;
  backward_kernel<<<grid_of(volumes, depth, height, width), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      p, t, grad_loss, depth, height, width, 1.0 / (3.0 * voxels), grad_p, grad_t);
  check_launch("backward");
}

}  // namespace vmat::cuda
