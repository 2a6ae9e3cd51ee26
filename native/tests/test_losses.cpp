#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../src/sobel_columns.h"
#include "vmat/error.h"
#include "vmat/losses.h"

namespace F = torch::nn::functional;

namespace {

// The convolution form of reference/unet_ref.py (sobel_kernels, gradient_loss): the test's independent reference.
at::Tensor sobel_kernels() {
  const auto d = torch::tensor({-1.0f, 0.0f, 1.0f});
  const auto s = torch::tensor({1.0f, 2.0f, 1.0f});
  using torch::indexing::None;
  using torch::indexing::Slice;
  const auto kz = d.index({Slice(), None, None}) * s.index({None, Slice(), None}) * s.index({None, None, Slice()});
  const auto ky = s.index({Slice(), None, None}) * d.index({None, Slice(), None}) * s.index({None, None, Slice()});
  const auto kx = s.index({Slice(), None, None}) * s.index({None, Slice(), None}) * d.index({None, None, Slice()});
  return torch::stack({kz, ky, kx}).unsqueeze(1) / 32.0;
}

at::Tensor conv_form(const at::Tensor& p, const at::Tensor& t) {
  const auto k = sobel_kernels();
  const auto options = F::Conv3dFuncOptions().padding(1);
  return F::l1_loss(F::conv3d(p, k, options), F::conv3d(t, k, options));
}

void expect_same_value_and_gradient(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  const auto p0 = torch::randn(shape);
  const auto t0 = torch::randn(shape);
  auto p_fused = p0.clone().requires_grad_(true);
  auto t_fused = t0.clone().requires_grad_(true);
  auto p_conv = p0.clone().requires_grad_(true);
  auto t_conv = t0.clone().requires_grad_(true);
  const auto fused = vmat::sobel_gradient_loss(p_fused, t_fused);
  const auto conv = conv_form(p_conv, t_conv);
  // Scale the output gradient to check it is carried through.
  (2.5 * fused).backward();
  (2.5 * conv).backward();
  EXPECT_EQ(fused.dim(), 0);
  EXPECT_NEAR(fused.item<double>(), conv.item<double>(), 2e-6 * std::abs(conv.item<double>()));
  const double scale = p_conv.grad().abs().max().item<double>();
  EXPECT_GT(scale, 0);
  EXPECT_LE((p_fused.grad() - p_conv.grad()).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_LE((t_fused.grad() - t_conv.grad()).abs().max().item<double>(), 1e-5 * scale);
}

}  // namespace

TEST(SobelLoss, MatchesTheConvolutionFormOddSizes) { expect_same_value_and_gradient({2, 1, 7, 9, 11}, 1); }

TEST(SobelLoss, MatchesTheConvolutionFormManyPlanes) {
  // More planes than one parallel chunk (16), two volumes: chunk and volume boundaries inside one call.
  expect_same_value_and_gradient({2, 1, 21, 6, 5}, 2);
}

TEST(SobelLoss, MatchesTheConvolutionFormThinVolumes) {
  expect_same_value_and_gradient({1, 1, 1, 4, 3}, 3);
  expect_same_value_and_gradient({2, 1, 3, 1, 1}, 4);
  expect_same_value_and_gradient({1, 1, 2, 2, 2}, 5);
}

TEST(SobelLoss, SameResultForAnyThreadCount) {
  torch::manual_seed(9);
  const auto p = torch::randn({2, 1, 33, 17, 9});
  const auto t = torch::randn({2, 1, 33, 17, 9});
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = vmat::sobel_gradient_loss(p, t).item<float>();
  at::set_num_threads(2);
  const auto two = vmat::sobel_gradient_loss(p, t).item<float>();
  at::set_num_threads(threads);
  EXPECT_EQ(one, two);
}

TEST(SobelLoss, OnlyTheRequestedGradients) {
  auto p = torch::randn({1, 1, 4, 4, 4}).requires_grad_(true);
  const auto t = torch::randn({1, 1, 4, 4, 4});
  vmat::sobel_gradient_loss(p, t).backward();
  EXPECT_TRUE(p.grad().defined());
  EXPECT_FALSE(t.requires_grad());
}

TEST(SobelLoss, RejectsBadInput) {
  EXPECT_THROW(vmat::sobel_gradient_loss(torch::zeros({1, 1, 4, 4, 4}), torch::zeros({1, 1, 4, 4, 5})), vmat::Error);
  EXPECT_THROW(vmat::sobel_gradient_loss(torch::zeros({4, 4, 4}), torch::zeros({4, 4, 4})), vmat::Error);
  EXPECT_THROW(vmat::sobel_gradient_loss(torch::zeros({1, 1, 4, 4, 4}, torch::kDouble), torch::zeros({1, 1, 4, 4, 4}, torch::kDouble)),
               vmat::Error);
}

// What the CUDA kernels of sobel_loss.cu compute, run thread by thread on the CPU: every (volume, run, y, x) of
// the launch calls the same per-thread functions, forward (partial sums and packed signs) then backward.
void expect_column_kernels_match_the_convolution_form(std::vector<int64_t> shape, uint64_t seed,
                                                      int64_t planes_per_thread) {
  namespace sc = vmat::sobel_columns;
  torch::manual_seed(seed);
  auto p = torch::randn(shape).requires_grad_(true);
  auto t = torch::randn(shape).requires_grad_(true);
  const sc::Dims d{shape[0] * shape[1], shape[2], shape[3], shape[4], planes_per_thread};
  const double voxels = static_cast<double>(p.numel());
  auto signs = torch::full(shape, 255, torch::kByte);  // any byte left unwritten would show as a wrong gradient
  double sum = 0.0;
  for (int64_t volume = 0; volume < d.volumes; ++volume)
    for (int64_t run = 0; run < sc::runs_per_column(d); ++run)
      for (int64_t y = 0; y < d.height; ++y)
        for (int64_t x = 0; x < d.width; ++x)
          sum += sc::forward_run(p.data_ptr<float>(), t.data_ptr<float>(), signs.data_ptr<uint8_t>(), d, volume,
                                 run, y, x);
  const double value = sum / 32.0 / (3.0 * voxels);
  const double grad_scale = 2.5;  // an upstream gradient other than 1
  const float coefficient = static_cast<float>(-grad_scale / 32.0 / (3.0 * voxels));
  auto grad_p = torch::full(shape, std::nanf("")), grad_t = torch::full(shape, std::nanf(""));
  for (int64_t volume = 0; volume < d.volumes; ++volume)
    for (int64_t run = 0; run < sc::runs_per_column(d); ++run)
      for (int64_t y = 0; y < d.height; ++y)
        for (int64_t x = 0; x < d.width; ++x)
          sc::backward_run(signs.data_ptr<uint8_t>(), coefficient, grad_p.data_ptr<float>(),
                           grad_t.data_ptr<float>(), d, volume, run, y, x);

  const auto conv = conv_form(p, t);
  (grad_scale * conv).backward();
  EXPECT_NEAR(value, conv.item<double>(), 2e-6 * std::abs(conv.item<double>()));
  const double scale = p.grad().abs().max().item<double>();
  EXPECT_GT(scale, 0);
  EXPECT_LE((grad_p - p.grad()).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_LE((grad_t - t.grad()).abs().max().item<double>(), 1e-5 * scale);
}

TEST(SobelLossColumnKernels, PackedSignsRoundTrip) {
  namespace sc = vmat::sobel_columns;
  for (const float gz : {-2.f, 0.f, 3.f})
    for (const float gy : {-1.f, 0.f, 0.5f})
      for (const float gx : {-7.f, 0.f, 1e-30f}) {
        const uint8_t bits = sc::pack_signs(gz, gy, gx);
        EXPECT_EQ(sc::unpack_sign(bits, 0), (gz > 0) - (gz < 0));
        EXPECT_EQ(sc::unpack_sign(bits, 1), (gy > 0) - (gy < 0));
        EXPECT_EQ(sc::unpack_sign(bits, 2), (gx > 0) - (gx < 0));
      }
}

TEST(SobelLossColumnKernels, MatchTheConvolutionForm) {
  for (const int64_t planes : {16, 1, 3, 32}) {
    SCOPED_TRACE("planes per thread " + std::to_string(planes));
    expect_column_kernels_match_the_convolution_form({2, 1, 7, 9, 11}, 21, planes);
    expect_column_kernels_match_the_convolution_form({2, 1, 37, 6, 5}, 22, planes);  // partial last runs, 2 volumes
    expect_column_kernels_match_the_convolution_form({1, 1, 32, 3, 4}, 23, planes);
    expect_column_kernels_match_the_convolution_form({1, 1, 17, 1, 1}, 24, planes);  // one column
    expect_column_kernels_match_the_convolution_form({1, 1, 1, 4, 3}, 25, planes);   // a single plane
    expect_column_kernels_match_the_convolution_form({3, 1, 2, 2, 2}, 26, planes);   // three tiny volumes
  }
}

TEST(SobelLoss, PlanesPerThreadIsChecked) {
  const int64_t before = vmat::sobel_planes_per_thread();
  EXPECT_EQ(before, 16);
  EXPECT_THROW(vmat::set_sobel_planes_per_thread(0), vmat::Error);
  EXPECT_THROW(vmat::set_sobel_planes_per_thread(1025), vmat::Error);
  vmat::set_sobel_planes_per_thread(8);
  EXPECT_EQ(vmat::sobel_planes_per_thread(), 8);
  vmat::set_sobel_planes_per_thread(before);
}

TEST(DoseLoss, TotalIsTheSpecFormula) {
  torch::manual_seed(11);
  auto pred = torch::randn({2, 1, 8, 8, 8}).requires_grad_(true);
  const auto target = torch::rand({2, 1, 8, 8, 8});
  vmat::LossWeights weights;
  weights.use_gradient_loss = true;
  weights.gradient_loss_weight = 0.3;
  weights.negative_penalty_weight = 0.2;
  const auto terms = vmat::dose_loss(pred, target, weights);
  const auto mse = F::mse_loss(pred, target);
  const auto neg = torch::relu(-pred).mean();
  const auto grad = conv_form(pred, target);
  EXPECT_NEAR(terms.mse.item<double>(), mse.item<double>(), 1e-6);
  EXPECT_NEAR(terms.neg.item<double>(), neg.item<double>(), 1e-6);
  EXPECT_NEAR(terms.grad.item<double>(), grad.item<double>(), 1e-6);
  const auto reference_total = mse + 0.3 * grad + 0.2 * neg;
  EXPECT_NEAR(terms.total.item<double>(), reference_total.item<double>(), 1e-6);
  const auto ours = torch::autograd::grad({terms.total}, {pred})[0];
  const auto theirs = torch::autograd::grad({reference_total}, {pred})[0];
  EXPECT_LE((ours - theirs).abs().max().item<double>(), 1e-5 * theirs.abs().max().item<double>());
}

TEST(DoseLoss, GradientTermOffAndBf16Prediction) {
  const auto pred = torch::randn({1, 1, 8, 8, 8}).to(torch::kBFloat16).requires_grad_(true);
  const auto target = torch::rand({1, 1, 8, 8, 8});
  const auto terms = vmat::dose_loss(pred, target, vmat::LossWeights{});
  EXPECT_EQ(terms.total.scalar_type(), torch::kFloat);
  EXPECT_EQ(terms.grad.item<double>(), 0.0);
  const auto p32 = pred.detach().to(torch::kFloat);
  EXPECT_NEAR(terms.total.item<double>(), (F::mse_loss(p32, target) + 0.1 * torch::relu(-p32).mean()).item<double>(), 1e-6);
  terms.total.backward();
  EXPECT_EQ(pred.grad().scalar_type(), torch::kBFloat16);
  EXPECT_THROW(vmat::dose_loss(pred, torch::rand({1, 1, 8, 8, 4}), vmat::LossWeights{}), vmat::Error);
}
