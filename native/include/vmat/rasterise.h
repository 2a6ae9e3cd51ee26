#pragma once
// Rasterisation of closed planar contours (DICOM RTSTRUCT) onto a voxel grid.
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace vmat {

// Polygons of several structures, each lying on one slice of a [Z,Y,X] grid, rasterised into masks uint8
// [structures, Z, Y, X].
//  - points: float64 [N, 2], (x, y) in voxel index units of the slice: x the column index, y the row index, so
//    that voxel (y, x)'s centre is the point (x, y). The closing point may repeat the first one or not.
//  - offsets: int64 [P + 1]: polygon p has points [offsets[p], offsets[p + 1]).
//  - slices, labels: int32 [P]: the slice index and the structure index of each polygon. Polygons on slices
//    outside [0, Z) are ignored; a label outside [0, structures) is an error.
// Inside rule (as plastimatch's rasterize_slice with --xor-contours): a voxel is inside when its centre is inside
// the polygons of its structure on its slice by the even-odd rule over all of them together, so that a contour
// drawn inside another is a hole (and one inside that an island). Along each row the centre line y = row crosses an
// edge when the edge's lower end is at or below the row and its upper end above it (a vertex on the line counts
// once; horizontal edges never); a centre exactly on a crossing counts as right of it, so a centre on a left
// boundary is inside and one on a right boundary is not.
// Structures and slices are done in parallel (at::parallel_for); the output starts as untouched zero pages
// (calloc), so only the planes with contours cost memory writes. cancel, when set, stops the work with
// ErrorCode::Cancelled.
struct RasterisedMasks {
  at::Tensor masks;             // uint8 [structures, Z, Y, X]
  std::vector<int64_t> voxels;  // voxels inside, per structure
};
RasterisedMasks rasterise_polygons(const at::Tensor& points, const at::Tensor& offsets, const at::Tensor& slices,
                                   const at::Tensor& labels, int64_t structures, std::array<int64_t, 3> shape,
                                   const std::atomic<bool>* cancel = nullptr);

}  // namespace vmat
