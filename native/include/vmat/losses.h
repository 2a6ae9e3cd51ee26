#pragma once
// Training losses on the normalised dose (spec/model.md). Every term is computed in float32, whatever the dtype of
// the prediction (bf16 under mixed precision).
//
// Adding a term (structure-weighted MSE, PTV under-dose penalty, ...): write a function `at::Tensor xxx_loss(pred,
// target, ...)`, add its weight to LossWeights and its value to LossTerms, and one line in dose_loss() that adds it.
#include <torch/torch.h>

namespace vmat {

struct LossWeights {
  bool use_gradient_loss = false;
  double gradient_loss_weight = 0.1;
  double negative_penalty_weight = 0.1;
};

// Scalar float32 tensors. `grad` is a zero scalar (no graph) when the gradient loss is off.
struct LossTerms {
  at::Tensor total, mse, grad, neg;
};

// total = mse + w_grad * grad (when enabled) + w_neg * neg, differentiable w.r.t. pred.
// pred and target: [B, 1, D, H, W] (any floating dtype; cast to float32), same shape, same device.
LossTerms dose_loss(const at::Tensor& pred, const at::Tensor& target, const LossWeights& weights);

// mean((p - t)^2)
at::Tensor dose_mse(const at::Tensor& pred, const at::Tensor& target);

// mean(relu(-p))
at::Tensor negative_penalty(const at::Tensor& pred);

// Sobel gradient loss: mean over voxels and the 3 axes of |G_k * p - G_k * t| with the 3x3x3 Sobel kernels / 32,
// zero padding 1. Fused kernel (CPU; CUDA when built with it), forward and backward by hand, registered with
// autograd: differentiable w.r.t. both arguments. Inputs: float32 [B, C, D, H, W] (each of the B*C volumes
// filtered on its own), same shape and device.
at::Tensor sobel_gradient_loss(const at::Tensor& pred, const at::Tensor& target);

// On CUDA each thread of the Sobel loss marches this many planes of one voxel column (default 16). The environment
// variable VMAT_SOBEL_PLANES_PER_THREAD or set_sobel_planes_per_thread() changes it, to time other values; the
// result is the same for any value. Accepted: 1 to 1024.
void set_sobel_planes_per_thread(int64_t planes);
int64_t sobel_planes_per_thread();

}  // namespace vmat
