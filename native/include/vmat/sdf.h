#pragma once
// Signed distance maps of structure masks (data.md, model input channels) and the derived body mask.
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>

namespace vmat {

// Exact Euclidean distance in mm from each voxel centre to the structure's surface, with anisotropic spacing
// (z, y, x): outside a structure the distance to the nearest structure voxel, inside it minus the distance to the
// nearest voxel outside it (as scipy.ndimage.distance_transform_edt(~m) - distance_transform_edt(m) with
// sampling=spacing). Clipped to ±clip_mm and divided by clip_mm; an empty structure gives 0 everywhere.
// masks_u8: uint8 (or bool) [S,Z,Y,X], nonzero = inside. Returns float32 [S,Z,Y,X].
// Felzenszwalb–Huttenlocher, separable, O(N) per structure, computed only on the structure's bounding box grown by
// the clip distance (beyond it every value is +1), in parallel over lines (at::parallel_for).
// on_structure_done(s) is called after each structure; cancel, when set, is polled between passes and stops the
// work with ErrorCode::Cancelled.
at::Tensor signed_distance_maps(const at::Tensor& masks_u8, std::array<double, 3> spacing_mm, double clip_mm = 50.0,
                                const std::function<void(int64_t)>& on_structure_done = {},
                                const std::atomic<bool>* cancel = nullptr);

// Body mask of a CT in HU [Z,Y,X] (int16 or float): voxels above -500 HU, the largest 6-connected 3D component,
// with holes filled slice by slice (axial slices, so that air in bowel or rectum cut by the scan's first or last
// slice is still filled). Returns uint8 [Z,Y,X] 0/1.
at::Tensor derive_body_mask(const at::Tensor& ct_hu);

}  // namespace vmat
