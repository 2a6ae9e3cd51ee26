#include "vmat/resample.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "vmat/error.h"

namespace vmat {

namespace {

using Matrix = std::array<std::array<double, 3>, 3>;

// The inverse of the matrix whose columns are the steps, so that inverse · (p − origin) gives (k, j, i).
Matrix inverse_of_steps(const GridPlacement& grid) {
  Matrix m{};  // m[r][c] = step[c][r]
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m[r][c] = grid.step[c][r];
  const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                     m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  double scale = 0;
  for (const auto& step : grid.step) scale = std::max(scale, std::sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2]));
  require(std::isfinite(det) && std::abs(det) > 1e-9 * scale * scale * scale, "the source grid's axes are not independent");
  Matrix inv{};
  inv[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det;
  inv[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det;
  inv[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det;
  inv[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det;
  inv[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det;
  inv[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det;
  inv[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det;
  inv[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det;
  inv[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det;
  return inv;
}

constexpr double kEdge = 1e-4;  // voxels

// The lower corner index and weight of coordinate u on an axis of n samples; false when u is outside.
inline bool locate(double u, int64_t n, int64_t& lo, double& weight) {
  if (u < -kEdge || u > static_cast<double>(n - 1) + kEdge) return false;
  if (n == 1) {
    lo = 0;
    weight = 0;
    return true;
  }
  const double clamped = std::min(std::max(u, 0.0), static_cast<double>(n - 1));
  lo = std::min<int64_t>(static_cast<int64_t>(std::floor(clamped)), n - 2);
  weight = clamped - static_cast<double>(lo);
  return true;
}

}  // namespace

at::Tensor resample_trilinear(const at::Tensor& source_in, const GridPlacement& from, const GridPlacement& to, float outside,
                              const std::atomic<bool>* cancel) {
  require(source_in.dim() == 3, "the source must be a 3D volume");
  for (int a = 0; a < 3; ++a) {
    require(source_in.size(a) == from.shape[a], "the source's shape does not match its grid");
    require(from.shape[a] >= 1 && to.shape[a] >= 0, "grid shapes must be positive");
  }
  const at::Tensor source = source_in.to(at::kFloat).contiguous();
  const float* src = source.data_ptr<float>();
  const Matrix inv = inverse_of_steps(from);
  // (k, j, i) in the source is affine in the target's (k, j, i): index = base + k·dk + j·dj + i·di.
  std::array<double, 3> delta{};
  for (int r = 0; r < 3; ++r) delta[r] = to.origin[r] - from.origin[r];
  std::array<double, 3> base{};
  std::array<std::array<double, 3>, 3> along{};  // along[a] = source index change per step of target axis a
  for (int r = 0; r < 3; ++r) {
    base[r] = inv[r][0] * delta[0] + inv[r][1] * delta[1] + inv[r][2] * delta[2];
    for (int a = 0; a < 3; ++a) along[a][r] = inv[r][0] * to.step[a][0] + inv[r][1] * to.step[a][1] + inv[r][2] * to.step[a][2];
  }

  const int64_t K = to.shape[0], J = to.shape[1], I = to.shape[2];
  const int64_t SK = from.shape[0], SJ = from.shape[1], SI = from.shape[2];
  at::Tensor result = at::empty({K, J, I}, at::kFloat);
  float* out = result.data_ptr<float>();
  std::atomic<bool> cancelled{false};
  at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      if (cancel && cancel->load()) {
        cancelled = true;
        return;
      }
      for (int64_t j = 0; j < J; ++j) {
        float* row = out + (k * J + j) * I;
        for (int64_t i = 0; i < I; ++i) {
          double u[3];
          for (int r = 0; r < 3; ++r) u[r] = base[r] + k * along[0][r] + j * along[1][r] + i * along[2][r];
          int64_t lo[3];
          double w[3];
          if (!locate(u[0], SK, lo[0], w[0]) || !locate(u[1], SJ, lo[1], w[1]) || !locate(u[2], SI, lo[2], w[2])) {
            row[i] = outside;
            continue;
          }
          // A one-voxel axis has weight 0 on its only plane; its "next" plane is the same one.
          const int64_t step_k = SK > 1 ? SJ * SI : 0, step_j = SJ > 1 ? SI : 0, step_i = SI > 1 ? 1 : 0;
          const float* c = src + (lo[0] * SJ + lo[1]) * SI + lo[2];
          const double c00 = c[0] * (1 - w[2]) + c[step_i] * w[2];
          const double c01 = c[step_j] * (1 - w[2]) + c[step_j + step_i] * w[2];
          const double c10 = c[step_k] * (1 - w[2]) + c[step_k + step_i] * w[2];
          const double c11 = c[step_k + step_j] * (1 - w[2]) + c[step_k + step_j + step_i] * w[2];
          const double c0 = c00 * (1 - w[1]) + c01 * w[1];
          const double c1 = c10 * (1 - w[1]) + c11 * w[1];
          row[i] = static_cast<float>(c0 * (1 - w[0]) + c1 * w[0]);
        }
      }
    }
  });
  if (cancelled) throw Error(ErrorCode::Cancelled, "the dose resampling was cancelled");
  return result;
}

}  // namespace vmat
