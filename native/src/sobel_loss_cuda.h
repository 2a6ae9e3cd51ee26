#pragma once
// Launchers of the fused Sobel-loss CUDA kernels (sobel_loss.cu). Raw device pointers only: the .cu side does not
// see libtorch. All tensors are contiguous float32 volumes [volumes, D, H, W]; `stream` is a cudaStream_t.
#include <cstdint>

namespace vmat::cuda {

// How many double partial sums sobel_l1_forward needs as scratch for this geometry.
int64_t sobel_l1_partial_count(int64_t volumes, int64_t depth, int64_t height, int64_t width);

// *loss = mean over voxels and the 3 axes of |G_k * (p - t)| (device float scalar).
void sobel_l1_forward(const float* p, const float* t, int64_t volumes, int64_t depth, int64_t height, int64_t width,
                      double* partials, float* loss, void* stream);

// grad_p = d loss / d p scaled by *grad_loss (device float scalar); grad_t = -grad_p. Either output may be null.
void sobel_l1_backward(const float* p, const float* t, const float* grad_loss, int64_t volumes, int64_t depth,
                       int64_t height, int64_t width, float* grad_p, float* grad_t, void* stream);

}  // namespace vmat::cuda
