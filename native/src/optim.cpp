// Multi-tensor AdamW and gradient clipping (see vmat/optim.h).
#include "vmat/optim.h"

#include <cmath>
#include <map>

namespace vmat {

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& parameter : parameters) {
    if (parameter.grad().defined()) grads.push_back(parameter.grad());
  }
  if (grads.empty()) return torch::zeros({});
  torch::NoGradGuard no_grad;
  const auto norms = at::_foreach_norm(grads, 2);
  const auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  if (std::isinf(max_norm)) return total;
  const auto coefficient = torch::clamp_max(max_norm / (total + 1e-6), 1.0);
#if TORCH_VERSION_MAJOR >= 2
  at::_foreach_mul_(grads, coefficient);
#else
  // libtorch 1.x has no _foreach_mul_ by a tensor; it only runs on the CPU here, where per-tensor is as fast.
  for (auto& grad : grads) grad.mul_(coefficient);
#endif
  return total;
}

namespace {

// Parameters of one group that share a step count (and so the bias corrections), with their state.
struct Bucket {
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  std::vector<torch::optim::AdamWParamState*> states;
};

}  // namespace

at::Tensor MultiTensorAdamW::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    if (static_cast<torch::optim::AdamWOptions&>(group.options()).amsgrad()) return torch::optim::AdamW::step(closure);
  }
  at::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::AdamWOptions&>(group.options());
    std::map<int64_t, Bucket> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "AdamW does not support sparse gradients");
      auto found = state_.find(state_key(state_, p));
      if (found == state_.end()) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        found = state_.emplace(state_key(state_, p), std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*found->second);
      Bucket& bucket = buckets[state.step()];
      bucket.params.push_back(p);
      bucket.grads.push_back(p.grad());
      bucket.exp_avgs.push_back(state.exp_avg());
      bucket.exp_avg_sqs.push_back(state.exp_avg_sq());
      bucket.states.push_back(&state);
    }
    const double lr = options.lr(), eps = options.eps(), weight_decay = options.weight_decay();
    const auto [beta1, beta2] = options.betas();
    for (auto& [previous_step, bucket] : buckets) {
      // The order and form of AdamW::step's per-tensor operations, so that results are identical.
      if (weight_decay != 0) at::_foreach_mul_(bucket.params, 1 - lr * weight_decay);
      const int64_t step = previous_step + 1;
      for (auto* state : bucket.states) state->step(step);
      const double bias_correction1 = 1 - std::pow(beta1, step);
      const double bias_correction2 = 1 - std::pow(beta2, step);
      at::_foreach_mul_(bucket.exp_avgs, beta1);
      at::_foreach_add_(bucket.exp_avgs, bucket.grads, 1 - beta1);
      at::_foreach_mul_(bucket.exp_avg_sqs, beta2);
      at::_foreach_addcmul_(bucket.exp_avg_sqs, bucket.grads, bucket.grads, 1 - beta2);
      auto denominators = at::_foreach_sqrt(bucket.exp_avg_sqs);
      at::_foreach_div_(denominators, std::sqrt(bias_correction2));
      at::_foreach_add_(denominators, eps);
      at::_foreach_addcdiv_(bucket.params, bucket.exp_avgs, denominators, -lr / bias_correction1);
    }
  }
  return loss;
}

}  // namespace vmat
