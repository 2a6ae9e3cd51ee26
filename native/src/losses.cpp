#include "vmat/losses.h"

#include <sstream>

#include "vmat/error.h"
#include "vmat/shape_text.h"

namespace vmat {

at::Tensor dose_mse(const at::Tensor& pred, const at::Tensor& target) { return (pred - target).square().mean(); }

at::Tensor negative_penalty(const at::Tensor& pred) { return torch::relu(-pred).mean(); }

LossTerms dose_loss(const at::Tensor& pred_in, const at::Tensor& target_in, const LossWeights& weights) {
  require(pred_in.sizes() == target_in.sizes(), "the prediction has shape " + shape_text(pred_in.sizes()) +
                                                    " but the target has shape " + shape_text(target_in.sizes()));
  require(pred_in.device() == target_in.device(), "the prediction and the target are on different devices");
  const auto pred = pred_in.to(torch::kFloat);
  const auto target = target_in.to(torch::kFloat);

  LossTerms terms;
  terms.mse = vmat::dose_mse(pred, target);
  terms.neg = vmat::negative_penalty(pred);
  terms.total = terms.mse + weights.negative_penalty_weight * terms.neg;
  if (weights.use_gradient_loss) {
    terms.grad = vmat::sobel_gradient_loss(pred, target);
    terms.total = terms.total + weights.gradient_loss_weight * terms.grad;
  } else {
    terms.grad = torch::zeros({}, pred.options().requires_grad(false));
  }
  return terms;
}

}  // namespace vmat
