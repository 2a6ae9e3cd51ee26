#pragma once
// The CUDA side of the gamma index (gamma.cu), called by gamma.cpp when the tensors are on a CUDA device.
#include <cstdint>

#include "gamma_kernel.h"

namespace vmat::gamma_detail {

// params.ref_dose and params.eval_dose are device pointers; params.shells, rows and offsets are host pointers
// (copied to the device here); cell_min/cell_max are computed here. `out` is a device array of the
// reference's voxel count. Throws vmat::Error on a CUDA failure.
void gamma_cuda(Params params, int64_t n_rows, int64_t n_points, float* out, int device_index);

}  // namespace vmat::gamma_detail
