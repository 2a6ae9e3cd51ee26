// The model, the fused Sobel loss and the training data path on CUDA (skipped without a CUDA device): same results as
// on the CPU.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "vmat/losses.h"
#include "vmat/patch_sampler.h"
#include "vmat/unet.h"

namespace F = torch::nn::functional;

TEST(ModelCuda, SobelLossMatchesTheConvolutionForm) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(1);
  const auto d = torch::tensor({-1.f, 0.f, 1.f}), s = torch::tensor({1.f, 2.f, 1.f});
  const auto k = (torch::stack({torch::einsum("i,j,k->ijk", {d, s, s}), torch::einsum("i,j,k->ijk", {s, d, s}),
                                torch::einsum("i,j,k->ijk", {s, s, d})}).unsqueeze(1) / 32.0).cuda();
  for (const std::vector<int64_t> shape : {std::vector<int64_t>{2, 1, 7, 9, 11}, {2, 1, 33, 40, 17}}) {
    auto p = torch::randn(shape, torch::kCUDA).requires_grad_(true);
    auto t = torch::randn(shape, torch::kCUDA).requires_grad_(true);
    auto pc = p.detach().clone().requires_grad_(true), tc = t.detach().clone().requires_grad_(true);
    const auto fused = vmat::sobel_gradient_loss(p, t);
    const auto opt = F::Conv3dFuncOptions().padding(1);
    const auto conv = F::l1_loss(F::conv3d(pc, k, opt), F::conv3d(tc, k, opt));
    (3 * fused).backward();
    (3 * conv).backward();
    EXPECT_TRUE(fused.is_cuda());
    EXPECT_NEAR(fused.item<double>(), conv.item<double>(), 2e-6 * conv.item<double>());
    const double scale = pc.grad().abs().max().item<double>();
    EXPECT_LE((p.grad() - pc.grad()).abs().max().item<double>(), 1e-5 * scale);
    EXPECT_LE((t.grad() - tc.grad()).abs().max().item<double>(), 1e-5 * scale);
  }
}

TEST(ModelCuda, TrainingStepMatchesTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // Full float32 on the GPU: TF32 convolutions flip the signs of small Sobel components and so move the gradients.
  auto& context = at::globalContext();
  const bool cudnn_tf32 = context.allowTF32CuDNN(), cublas_tf32 = context.allowTF32CuBLAS();
  context.setAllowTF32CuDNN(false);
  context.setAllowTF32CuBLAS(false);
  torch::manual_seed(2);
  vmat::BaselineUNet3D cpu(vmat::UNetConfig{9, 8});
  vmat::BaselineUNet3D gpu(vmat::UNetConfig{9, 8});
  {
    torch::NoGradGuard no_grad;
    const auto source = cpu->named_parameters();
    for (auto& item : gpu->named_parameters()) item.value().copy_(source[item.key()]);
  }
  gpu->to(torch::kCUDA);
  const auto x = torch::randn({2, 9, 32, 32, 32}), c = torch::randn({2, 13}), target = torch::rand({2, 1, 32, 32, 32});
  vmat::LossWeights weights;
  weights.use_gradient_loss = true;
  const auto on_cpu = vmat::dose_loss(cpu->forward(x, c), target, weights);
  const auto on_gpu = vmat::dose_loss(gpu->forward(x.cuda(), c.cuda()), target.cuda(), weights);
  on_cpu.total.backward();
  on_gpu.total.backward();
  EXPECT_NEAR(on_gpu.total.item<double>(), on_cpu.total.item<double>(), 1e-5 * on_cpu.total.item<double>());
  EXPECT_NEAR(on_gpu.grad.item<double>(), on_cpu.grad.item<double>(), 1e-5 * on_cpu.grad.item<double>());
  const auto g_cpu = cpu->named_parameters()["enc.0.conv1.weight"].grad();
  const auto g_gpu = gpu->named_parameters()["enc.0.conv1.weight"].grad().cpu();
  EXPECT_LE((g_gpu - g_cpu).abs().max().item<double>(), 1e-3 * g_cpu.abs().max().item<double>());
  context.setAllowTF32CuDNN(cudnn_tf32);
  context.setAllowTF32CuBLAS(cublas_tf32);
}

TEST(ModelCuda, PinnedPatchBatchesEqualPageableOnesAndCopyAsynchronously) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  vmat::TrainingCase source;
  source.id = "ramp";
  source.input = torch::arange(3 * 20 * 24 * 30, torch::kFloat).view({3, 20, 24, 30});
  source.dose = torch::rand({20, 24, 30});
  source.constraints = torch::arange(13, torch::kFloat);
  auto cases = std::make_shared<const std::vector<vmat::SamplingCase>>(
      std::vector<vmat::SamplingCase>{vmat::prepare_sampling_case(source, 16, 0.1, 1.0)});
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  options.patches_per_volume = 4;
  vmat::PatchLoader pageable(cases, options);
  options.pin_memory = true;
  vmat::PatchLoader pinned(cases, options);
  pageable.start_epoch(0, 0);
  pinned.start_epoch(0, 0);
  for (int64_t step = 0; step < pinned.steps_per_epoch(); ++step) {
    const auto expected = pageable.next();
    auto batch = pinned.next();
    EXPECT_TRUE(batch.input.is_pinned());
    EXPECT_TRUE(batch.dose.is_pinned());
    const auto on_device = batch.input.to(torch::kCUDA, /*non_blocking=*/true);
    batch = vmat::PatchBatch{};  // the host buffer is released while the copy may still run
    EXPECT_TRUE(torch::equal(on_device.cpu(), expected.input));
  }
}

