#pragma once
// Trilinear resampling between two voxel grids placed anywhere in one patient coordinate system.
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <cstdint>

namespace vmat {

// Where a grid's voxels are: voxel (k, j, i) (axes 0, 1, 2 of a [K,J,I] array) has its centre at
// origin + k·step[0] + j·step[1] + i·step[2], in mm in one patient coordinate system (the same for both grids;
// the steps carry the spacing and may point any way, e.g. for oblique or flipped grids).
struct GridPlacement {
  std::array<double, 3> origin{};
  std::array<std::array<double, 3>, 3> step{};
  std::array<int64_t, 3> shape{};
};

// The trilinear interpolation of `source` (float32 [K,J,I] on `from`) at every voxel centre of `to`, float32 with
// `to`'s shape. A centre outside the source grid's box of voxel centres gets `outside` (a centre within 1e-4 voxel
// of a boundary plane counts as on it, so that grids sharing planes are not clipped by rounding); along an axis of
// one voxel only the plane itself is inside. `from`'s steps must be linearly independent. Parallel over `to`'s
// slices; cancel stops the work with ErrorCode::Cancelled.
at::Tensor resample_trilinear(const at::Tensor& source, const GridPlacement& from, const GridPlacement& to, float outside,
                              const std::atomic<bool>* cancel = nullptr);

}  // namespace vmat
