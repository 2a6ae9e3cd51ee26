// Multi-tensor AdamW and gradient clipping against libtorch's own (per-tensor) AdamW and clip_grad_norm_.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "vmat/optim.h"

namespace {

// Parameters of several shapes (a conv weight, a bias, a matrix, a scalar), identical in two copies.
std::vector<at::Tensor> make_parameters(uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({4, 3, 3, 3, 3}).requires_grad_(true), torch::randn({4}).requires_grad_(true),
          torch::randn({7, 5}).requires_grad_(true), torch::randn({}).requires_grad_(true)};
}

std::vector<at::Tensor> copies(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> out;
  for (const auto& p : parameters) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

void set_gradients(std::vector<at::Tensor>& parameters, uint64_t seed, int skip = -1) {
  torch::manual_seed(seed);
  for (size_t i = 0; i < parameters.size(); ++i) {
    auto gradient = torch::randn(parameters[i].sizes()) * (1.0 + static_cast<double>(i));
    parameters[i].mutable_grad() = static_cast<int>(i) == skip ? at::Tensor() : gradient;
  }
}

void expect_identical(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

void expect_same_steps(const torch::optim::AdamWOptions& options) {
  auto ours = make_parameters(3);
  auto theirs = copies(ours);
  vmat::MultiTensorAdamW multi(ours, options);
  torch::optim::AdamW reference(theirs, options);
  for (int step = 0; step < 6; ++step) {
    // Step 2 leaves parameter 1 without a gradient, so step counts differ between parameters from then on.
    const int skip = step == 2 ? 1 : -1;
    set_gradients(ours, 100 + step, skip);
    set_gradients(theirs, 100 + step, skip);
    multi.step();
    reference.step();
    expect_identical(ours, theirs);
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    auto& mine = static_cast<torch::optim::AdamWParamState&>(*multi.state().at(vmat::state_key(multi.state(), ours[i])));
    auto& other =
        static_cast<torch::optim::AdamWParamState&>(*reference.state().at(vmat::state_key(reference.state(), theirs[i])));
    EXPECT_EQ(mine.step(), other.step());
    EXPECT_TRUE(torch::equal(mine.exp_avg(), other.exp_avg()));
    EXPECT_TRUE(torch::equal(mine.exp_avg_sq(), other.exp_avg_sq()));
  }
}

}  // namespace

TEST(MultiTensorAdamW, SameResultsAndStateAsLibtorchAdamW) {
  expect_same_steps(torch::optim::AdamWOptions(1e-2).betas({0.9, 0.999}).weight_decay(0.01).eps(1e-8));
  expect_same_steps(torch::optim::AdamWOptions(3e-3).betas({0.8, 0.99}).weight_decay(0).eps(1e-6));
}

TEST(MultiTensorAdamW, AmsgradFallsBackToAdamW) {
  const auto options = torch::optim::AdamWOptions(1e-2).amsgrad(true);
  auto ours = make_parameters(4);
  auto theirs = copies(ours);
  vmat::MultiTensorAdamW multi(ours, options);
  torch::optim::AdamW reference(theirs, options);
  for (int step = 0; step < 3; ++step) {
    set_gradients(ours, 200 + step);
    set_gradients(theirs, 200 + step);
    multi.step();
    reference.step();
  }
  expect_identical(ours, theirs);
}

TEST(ClipGradNorm, SameNormAndGradientsAsLibtorch) {
  for (const double max_norm : {0.5, 1e6}) {  // clipping, and a bound above the norm
    auto ours = make_parameters(5);
    auto theirs = copies(ours);
    set_gradients(ours, 7);
    set_gradients(theirs, 7);
    const double norm = vmat::clip_grad_norm(ours, max_norm).item<double>();
    const double expected = torch::nn::utils::clip_grad_norm_(theirs, max_norm);
    EXPECT_NEAR(norm, expected, 1e-6 * expected);
    for (size_t i = 0; i < ours.size(); ++i)
      EXPECT_TRUE(torch::allclose(ours[i].grad(), theirs[i].grad(), 1e-6, 1e-7)) << "parameter " << i;
    if (max_norm < 1) {
      double clipped = 0;
      for (const auto& p : ours) clipped += p.grad().pow(2).sum().item<double>();
      EXPECT_NEAR(std::sqrt(clipped), max_norm, 1e-5);
    }
  }
}

TEST(ClipGradNorm, InfiniteBoundOnlyMeasuresAndMissingGradientsAreSkipped) {
  auto parameters = make_parameters(6);
  set_gradients(parameters, 8, /*skip=*/2);
  std::vector<at::Tensor> before;
  double squares = 0;
  for (const auto& p : parameters) {
    before.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    if (p.grad().defined()) squares += p.grad().pow(2).sum().item<double>();
  }
  const double norm = vmat::clip_grad_norm(parameters, std::numeric_limits<double>::infinity()).item<double>();
  EXPECT_NEAR(norm, std::sqrt(squares), 1e-5 * norm);
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (before[i].defined()) EXPECT_TRUE(torch::equal(before[i], parameters[i].grad()));
  }
  auto bare = make_parameters(9);
  EXPECT_EQ(vmat::clip_grad_norm(bare, 1.0).item<double>(), 0.0);
}
