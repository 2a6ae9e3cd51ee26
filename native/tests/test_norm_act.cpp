// The fused GroupNorm -> SiLU -> FiLM (-> + residual) op against libtorch's own ops, value and every gradient; on
// CUDA (when there is a device) the kernels against the CPU reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "vmat/norm_act.h"
#include "vmat/unet.h"

namespace {

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).norm() / b.to(at::kDouble).norm().clamp_min(1e-30)).item<double>();
}

struct Inputs {
  at::Tensor x, gamma, beta, scale, shift, residual;
};

Inputs make_inputs(torch::Device device, bool film, bool residual, std::vector<int64_t> shape) {
  auto options = torch::TensorOptions().dtype(at::kFloat);
  Inputs in;
  in.x = (torch::randn(shape, options) * 3 + 1).to(device).requires_grad_(true);
  in.gamma = (torch::rand({shape[1]}, options) + 0.5).to(device).requires_grad_(true);
  in.beta = (torch::randn({shape[1]}, options) * 0.2).to(device).requires_grad_(true);
  if (film) {
    in.scale = (torch::randn({shape[0], shape[1]}, options) * 0.3).to(device).requires_grad_(true);
    in.shift = (torch::randn({shape[0], shape[1]}, options) * 0.3).to(device).requires_grad_(true);
  }
  if (residual) in.residual = torch::randn(shape, options).to(device).requires_grad_(true);
  return in;
}

std::vector<at::Tensor> leaves(const Inputs& in) {
  std::vector<at::Tensor> all = {in.x, in.gamma, in.beta};
  for (const auto& t : {in.scale, in.shift, in.residual})
    if (t.defined()) all.push_back(t);
  return all;
}

void expect_same_function(bool film, bool residual, std::vector<int64_t> shape) {
  torch::manual_seed(7);
  auto in = make_inputs(torch::kCPU, film, residual, shape);
  auto weights = torch::randn(shape);
  auto fused = vmat::group_norm_silu_film(in.x, in.gamma, in.beta, 8, 1e-5, in.scale, in.shift, in.residual);
  auto reference = vmat::group_norm_silu_film_reference(in.x, in.gamma, in.beta, 8, 1e-5, in.scale, in.shift, in.residual);
  EXPECT_LT(relative_error(fused, reference), 1e-5);
  auto fused_grads = torch::autograd::grad({(fused * weights).sum()}, leaves(in));
  auto reference_grads = torch::autograd::grad({(reference * weights).sum()}, leaves(in));
  ASSERT_EQ(fused_grads.size(), reference_grads.size());
  for (size_t i = 0; i < fused_grads.size(); ++i) {
    EXPECT_LT(relative_error(fused_grads[i], reference_grads[i]), 1e-4) << "gradient " << i;
  }
}

}  // namespace

TEST(NormAct, MatchesLibtorchOpsWithFilm) { expect_same_function(true, false, {2, 16, 5, 6, 7}); }
TEST(NormAct, MatchesLibtorchOpsWithResidual) { expect_same_function(false, true, {2, 16, 4, 4, 4}); }
TEST(NormAct, MatchesLibtorchOpsWithEverything) { expect_same_function(true, true, {3, 24, 3, 5, 2}); }

TEST(NormAct, UNetGivesTheSameOutputAndGradientsFusedOrNot) {
  torch::manual_seed(3);
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8, 13, 256});
  auto x = torch::randn({2, 9, 16, 16, 16});
  auto c = torch::rand({2, 13});
  auto run = [&](vmat::FusedNormAct mode) {
    vmat::set_fused_norm_act(mode);
    model->zero_grad();
    auto out = model->forward(x, c);
    out.square().mean().backward();
    std::vector<at::Tensor> grads;
    for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(out.detach(), grads);
  };
  auto [fused_out, fused_grads] = run(vmat::FusedNormAct::On);
  auto [plain_out, plain_grads] = run(vmat::FusedNormAct::Off);
  vmat::set_fused_norm_act(vmat::FusedNormAct::Auto);
  EXPECT_LT(relative_error(fused_out, plain_out), 1e-5);
  // Conv biases right before a GroupNorm of one channel per group have a true gradient of zero: both paths give
  // rounding noise there, so errors are measured against the scale of all gradients, not of that one tensor.
  double scale = 0;
  for (const auto& g : plain_grads) scale = std::max(scale, g.abs().max().item<double>());
  for (size_t i = 0; i < plain_grads.size(); ++i) {
    EXPECT_LT((fused_grads[i] - plain_grads[i]).abs().max().item<double>(), 1e-4 * scale) << "parameter " << i;
  }
}

TEST(NormAct, CudaKernelsMatchTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    torch::manual_seed(11);
    auto cpu = make_inputs(torch::kCPU, true, true, {2, 48, 17, 16, 15});
    auto weights = torch::randn({2, 48, 17, 16, 15});
    auto reference = vmat::group_norm_silu_film_reference(cpu.x, cpu.gamma, cpu.beta, 8, 1e-5, cpu.scale, cpu.shift, cpu.residual);
    auto reference_grads = torch::autograd::grad({(reference * weights).sum()}, leaves(cpu));

    Inputs gpu;
    auto to_gpu = [&](const at::Tensor& t, bool cast) {
      auto moved = t.detach().to(torch::kCUDA);
      return (cast ? moved.to(dtype) : moved).requires_grad_(true);
    };
    gpu.x = to_gpu(cpu.x, true);
    gpu.gamma = to_gpu(cpu.gamma, false);
    gpu.beta = to_gpu(cpu.beta, false);
    gpu.scale = to_gpu(cpu.scale, false);
    gpu.shift = to_gpu(cpu.shift, false);
    gpu.residual = to_gpu(cpu.residual, true);
    auto fused = vmat::group_norm_silu_film(gpu.x, gpu.gamma, gpu.beta, 8, 1e-5, gpu.scale, gpu.shift, gpu.residual);
    EXPECT_EQ(fused.scalar_type(), dtype);
    const double tolerance = dtype == at::kFloat ? 1e-5 : 2e-2;
    EXPECT_LT(relative_error(fused.cpu(), reference), tolerance);
    auto fused_grads = torch::autograd::grad({(fused.to(at::kFloat) * weights.to(torch::kCUDA)).sum()}, leaves(gpu));
    for (size_t i = 0; i < fused_grads.size(); ++i) {
      EXPECT_LT(relative_error(fused_grads[i].cpu(), reference_grads[i]), dtype == at::kFloat ? 1e-4 : 3e-2)
          << "dtype " << c10::toString(dtype) << " gradient " << i;
    }
  }
}
