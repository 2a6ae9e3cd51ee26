#include "vmat/rasterise.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "vmat/error.h"

namespace vmat {

namespace {

struct Crossing {
  int64_t row;
  double x;
};

// Appends the crossings of the edge (x0, y0) → (x1, y1) with the rows y = 0 .. rows - 1 (lower end included, upper
// excluded, horizontal edges none).
void edge_crossings(double x0, double y0, double x1, double y1, int64_t rows, std::vector<Crossing>& out) {
  if (y0 == y1) return;
  if (y0 > y1) {
    std::swap(x0, x1);
    std::swap(y0, y1);
  }
  const int64_t first = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(y0)));
  const int64_t last = std::min<int64_t>(rows, static_cast<int64_t>(std::ceil(y1)));  // exclusive
  const double slope = (x1 - x0) / (y1 - y0);
  for (int64_t row = first; row < last; ++row) out.push_back({row, x0 + (static_cast<double>(row) - y0) * slope});
}

}  // namespace

RasterisedMasks rasterise_polygons(const at::Tensor& points_in, const at::Tensor& offsets_in, const at::Tensor& slices_in,
                                   const at::Tensor& labels_in, int64_t structures, std::array<int64_t, 3> shape,
                                   const std::atomic<bool>* cancel) {
  require(structures >= 0, "the number of structures must be >= 0");
  require(shape[0] >= 0 && shape[1] >= 0 && shape[2] >= 0, "the grid shape must be 3 sizes >= 0");
  const at::Tensor points = points_in.to(at::kDouble).contiguous();
  const at::Tensor offsets = offsets_in.to(at::kLong).contiguous();
  const at::Tensor slices = slices_in.to(at::kInt).contiguous();
  const at::Tensor labels = labels_in.to(at::kInt).contiguous();
  require(points.dim() == 2 && points.size(1) == 2, "points must be [N, 2] (x, y)");
  const int64_t polygons = slices.numel();
  require(labels.numel() == polygons, "labels must hold one structure index per polygon");
  require(offsets.dim() == 1 && offsets.numel() == polygons + 1, "offsets must hold one start per polygon and the end");
  const double* xy = points.data_ptr<double>();
  const int64_t* start = offsets.data_ptr<int64_t>();
  const int32_t* slice = slices.data_ptr<int32_t>();
  const int32_t* label = labels.data_ptr<int32_t>();
  const int64_t n_points = points.size(0);
  for (int64_t p = 0; p < polygons; ++p) {
    require(start[p] >= 0 && start[p] <= start[p + 1] && start[p + 1] <= n_points,
            "offsets must be non-decreasing and within the points (polygon " + std::to_string(p) + ")");
    require(label[p] >= 0 && label[p] < structures,
            "polygon " + std::to_string(p) + " has structure index " + std::to_string(label[p]) + ", expected 0 to " +
                std::to_string(structures - 1));
  }

  const int64_t Z = shape[0], Y = shape[1], X = shape[2];
  const size_t bytes = static_cast<size_t>(structures * Z * Y * X);
  void* memory = std::calloc(std::max<size_t>(bytes, 1), 1);
  if (!memory) throw Error(ErrorCode::OutOfMemory, "out of host memory for " + std::to_string(bytes) + " bytes of masks");
  at::Tensor masks = torch::from_blob(memory, {structures, Z, Y, X}, [](void* p) { std::free(p); }, at::TensorOptions().dtype(at::kByte));
  uint8_t* out = masks.data_ptr<uint8_t>();
  std::vector<int64_t> group_voxels;

  // Group the polygons by (structure, slice): each group fills one plane of the output, so groups never race.
  std::vector<int64_t> order;
  order.reserve(polygons);
  for (int64_t p = 0; p < polygons; ++p) {
    if (slice[p] >= 0 && slice[p] < Z) order.push_back(p);
  }
  auto key = [&](int64_t p) { return static_cast<int64_t>(label[p]) * Z + slice[p]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
  std::vector<int64_t> group_start;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || key(order[i]) != key(order[i - 1])) group_start.push_back(static_cast<int64_t>(i));
  }
  const int64_t groups = static_cast<int64_t>(group_start.size());
  group_start.push_back(static_cast<int64_t>(order.size()));
  group_voxels.assign(groups, 0);

  std::atomic<bool> cancelled{false};
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<Crossing> crossings;
    for (int64_t g = begin; g < end; ++g) {
      if (cancel && cancel->load()) {
        cancelled = true;
        return;
      }
      crossings.clear();
      for (int64_t i = group_start[g]; i < group_start[g + 1]; ++i) {
        const int64_t p = order[i];
        int64_t first = start[p], last = start[p + 1];
        if (last - first >= 2 && xy[2 * first] == xy[2 * (last - 1)] && xy[2 * first + 1] == xy[2 * (last - 1) + 1]) --last;
        if (last - first < 3) continue;  // not a polygon: the caller reports such contours
        for (int64_t a = first; a < last; ++a) {
          const int64_t b = a + 1 < last ? a + 1 : first;
          edge_crossings(xy[2 * a], xy[2 * a + 1], xy[2 * b], xy[2 * b + 1], Y, crossings);
        }
      }
      std::sort(crossings.begin(), crossings.end(),
                [](const Crossing& a, const Crossing& b) { return a.row != b.row ? a.row < b.row : a.x < b.x; });
      const int64_t p0 = order[group_start[g]];
      uint8_t* plane = out + (static_cast<int64_t>(label[p0]) * Z + slice[p0]) * Y * X;
      // With the half-open rule a closed polygon crosses every row an even number of times (the test uses the
      // vertices' own y values, so rounding cannot break the parity): after sorting, crossings pair up within rows,
      // and the centres in [ceil(left), ceil(right)) of each pair are inside.
      for (size_t i = 0; i + 1 < crossings.size(); i += 2) {
        const Crossing& left = crossings[i];
        const Crossing& right = crossings[i + 1];
        const double from = std::max(0.0, std::ceil(left.x));
        const double to = std::min(static_cast<double>(X), std::ceil(right.x));
        if (to <= from) continue;
        uint8_t* row = plane + left.row * X;
        std::fill(row + static_cast<int64_t>(from), row + static_cast<int64_t>(to), uint8_t{1});
        group_voxels[g] += static_cast<int64_t>(to - from);
      }
    }
  });
  if (cancelled) throw Error(ErrorCode::Cancelled, "the contour rasterisation was cancelled");
  RasterisedMasks result{masks, std::vector<int64_t>(structures, 0)};
  for (int64_t g = 0; g < groups; ++g) result.voxels[label[order[group_start[g]]]] += group_voxels[g];
  return result;
}

}  // namespace vmat
