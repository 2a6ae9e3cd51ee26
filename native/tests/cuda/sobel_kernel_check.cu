// Standalone check of the fused Sobel-loss CUDA kernels (native/src/sobel_loss.cu) without libtorch: value and
// gradients against a direct double-precision CPU evaluation (forward as written in spec/model.md, gradient as the
// scatter-form adjoint of that forward). Exit 0 when all cases agree to float32 rounding.
//   nvcc -std=c++17 -arch=sm_90 -I native/include native/tests/cuda/sobel_kernel_check.cu native/src/sobel_loss.cu -o sobel_kernel_check
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../src/sobel_loss_cuda.h"

namespace {

double tap(int axis, int a, int b, int c) {
  const double smooth[3] = {1, 2, 1}, diff[3] = {-1, 0, 1};
  const double k = axis == 0 ? diff[a] * smooth[b] * smooth[c] : axis == 1 ? smooth[a] * diff[b] * smooth[c] : smooth[a] * smooth[b] * diff[c];
  return k / 32.0;
}

struct Reference {
  double loss;
  std::vector<double> grad_p;
};

Reference reference(const std::vector<float>& p, const std::vector<float>& t, int64_t n, int64_t d, int64_t h, int64_t w, double g) {
  const int64_t voxels = n * d * h * w;
  Reference r{0.0, std::vector<double>(voxels, 0.0)};
  auto at = [&](const std::vector<float>& f, int64_t v, int64_t z, int64_t y, int64_t x) -> double {
    if (z < 0 || z >= d || y < 0 || y >= h || x < 0 || x >= w) return 0.0;
    return f[((v * d + z) * h + y) * w + x];
  };
  for (int64_t v = 0; v < n; ++v)
    for (int64_t z = 0; z < d; ++z)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x)
          for (int axis = 0; axis < 3; ++axis) {
            double gp = 0, gt = 0;
            for (int a = 0; a < 3; ++a)
              for (int b = 0; b < 3; ++b)
                for (int c = 0; c < 3; ++c) {
                  gp += tap(axis, a, b, c) * at(p, v, z + a - 1, y + b - 1, x + c - 1);
                  gt += tap(axis, a, b, c) * at(t, v, z + a - 1, y + b - 1, x + c - 1);
                }
            r.loss += std::fabs(gp - gt);
            const double s = (gp > gt) - (gp < gt);
            for (int a = 0; a < 3; ++a)
              for (int b = 0; b < 3; ++b)
                for (int c = 0; c < 3; ++c) {
                  const int64_t zz = z + a - 1, yy = y + b - 1, xx = x + c - 1;
                  if (zz < 0 || zz >= d || yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                  r.grad_p[((v * d + zz) * h + yy) * w + xx] += g * s * tap(axis, a, b, c) / (3.0 * voxels);
                }
          }
  r.loss /= 3.0 * voxels;
  return r;
}

bool check(int64_t n, int64_t d, int64_t h, int64_t w, uint32_t seed) {
  const int64_t voxels = n * d * h * w;
  std::vector<float> p(voxels), t(voxels);
  uint32_t state = seed;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.f * 2.f - 1.f;
  };
  for (auto& v : p) v = next();
  for (auto& v : t) v = next();
  const float grad_loss = 2.5f;
  float *dp, *dt, *dloss, *dgrad_loss, *dgp, *dgt;
  double* dpartials;
  const int64_t partials = vmat::cuda::sobel_l1_partial_count(n, d, h, w);
  cudaMalloc(&dp, voxels * 4);
  cudaMalloc(&dt, voxels * 4);
  cudaMalloc(&dgp, voxels * 4);
  cudaMalloc(&dgt, voxels * 4);
  cudaMalloc(&dloss, 4);
  cudaMalloc(&dgrad_loss, 4);
  cudaMalloc(&dpartials, partials * 8);
  cudaMemcpy(dp, p.data(), voxels * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dt, t.data(), voxels * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dgrad_loss, &grad_loss, 4, cudaMemcpyHostToDevice);
  vmat::cuda::sobel_l1_forward(dp, dt, n, d, h, w, dpartials, dloss, nullptr);
  vmat::cuda::sobel_l1_backward(dp, dt, dgrad_loss, n, d, h, w, dgp, dgt, nullptr);
  float loss = 0;
  std::vector<float> gp(voxels), gt(voxels);
  cudaMemcpy(&loss, dloss, 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(gp.data(), dgp, voxels * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(gt.data(), dgt, voxels * 4, cudaMemcpyDeviceToHost);
  const cudaError_t status = cudaDeviceSynchronize();
  cudaFree(dp), cudaFree(dt), cudaFree(dgp), cudaFree(dgt), cudaFree(dloss), cudaFree(dgrad_loss), cudaFree(dpartials);
  if (status != cudaSuccess) {
    std::printf("CUDA error: %s\n", cudaGetErrorString(status));
    return false;
  }
  const Reference r = reference(p, t, n, d, h, w, grad_loss);
  double max_grad = 0, max_err = 0, max_sum = 0;
  for (int64_t i = 0; i < voxels; ++i) {
    max_grad = std::fmax(max_grad, std::fabs(r.grad_p[i]));
    max_err = std::fmax(max_err, std::fabs(gp[i] - r.grad_p[i]));
    max_sum = std::fmax(max_sum, std::fabs(gp[i] + gt[i]));
  }
  const double loss_err = std::fabs(loss - r.loss) / r.loss;
  const bool ok = loss_err < 2e-6 && max_err <= 1e-5 * max_grad && max_sum == 0;
  std::printf("%s %ldx%ldx%ldx%ld loss %.7f ref %.7f rel %.2e | grad max err %.2e of %.2e | grad_t == -grad_p %s\n",
              ok ? "ok  " : "FAIL", (long)n, (long)d, (long)h, (long)w, loss, r.loss, loss_err, max_err, max_grad,
              max_sum == 0 ? "yes" : "no");
  return ok;
}

}  // namespace

int main() {
  bool ok = true;
  ok &= check(2, 7, 9, 11, 1);
  ok &= check(2, 21, 6, 5, 2);
  ok &= check(1, 1, 4, 3, 3);
  ok &= check(2, 3, 1, 1, 4);
  ok &= check(2, 17, 33, 20, 5);
  ok &= check(1, 40, 40, 40, 6);
  return ok ? 0 : 1;
}
