#pragma once
// Launchers of the fused Sobel-loss CUDA kernels (sobel_loss.cu). Raw device pointers only: the .cu side does not
// see libtorch. Volumes are contiguous float32 [volumes, D, H, W]; `stream` is a cudaStream_t. Each thread marches
// `planes_per_thread` planes of one voxel column (sobel_columns.h); forward and backward must use the same value.
#include <cstdint>

namespace vmat::cuda {

// How many double partial sums sobel_l1_forward needs as scratch for this geometry.
int64_t sobel_l1_partial_count(int64_t volumes, int64_t depth, int64_t height, int64_t width,
                               int64_t planes_per_thread);

// *loss = mean over voxels and the 3 axes of |G_k * (p - t)| (device float scalar). `signs` (one byte per voxel)
// receives the packed signs of the three components, all that sobel_l1_backward needs.
void sobel_l1_forward(const float* p, const float* t, int64_t volumes, int64_t depth, int64_t height, int64_t width,
                      int64_t planes_per_thread, uint8_t* signs, double* partials, float* loss, void* stream);

// grad_p = d loss / d p scaled by *grad_loss (device float scalar); grad_t = -grad_p. Either output may be null.
void sobel_l1_backward(const uint8_t* signs, const float* grad_loss, int64_t volumes, int64_t depth, int64_t height,
                       int64_t width, int64_t planes_per_thread, float* grad_p, float* grad_t, void* stream);

}  // namespace vmat::cuda
