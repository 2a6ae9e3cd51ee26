// The cost of each training-loss term (forward + backward w.r.t. the prediction) at a small size, and of one CPU
// training step of the U-Net at the same size for scale. The PyTorch peer, the reference formulas of
// native/tests/data/loss_reference.py with torchvision's VGG16, is bench/losses_peer.py; bench/losses.sh runs both.
//   bench_losses --size 32 --batch 2 --base 16 --repeat 5 --threads 2
// Prints one JSON object per term on stdout. Random VGG16 weights (the cost does not depend on them).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "vmat/losses.h"
#include "vmat/optim.h"
#include "vmat/unet.h"

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median_ms(int repeat, const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    const double start = now_ms();
    fn();
    times.push_back(now_ms() - start);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

at::Tensor sphere_sdf(int64_t n, double cz, double cy, double cx, double radius) {
  const auto axis = torch::arange(n, torch::kFloat);
  const auto r = ((axis.view({n, 1, 1}) - cz).square() + (axis.view({1, n, 1}) - cy).square() +
                  (axis.view({1, 1, n}) - cx).square()).sqrt();
  return ((r - radius) * 2.0 / vmat::kSdfClipMm).clamp(-1, 1);  // 2 mm voxels
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 32, batch = 2, base = 16;
  int repeat = 5, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--size") size = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--base") base = value;
    else if (flag == "--repeat") repeat = static_cast<int>(value);
    else if (flag == "--threads") threads = static_cast<int>(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  at::set_num_threads(threads);
  torch::manual_seed(0);

  // 9 input channels as the prostate profile's: CT, PTV70, PTV56 (targets), six more structures.
  const double n = static_cast<double>(size);
  auto input = torch::zeros({batch, 9, size, size, size});
  input.select(1, 0).copy_(torch::rand({batch, size, size, size}));
  const std::vector<std::array<double, 4>> spheres{{0.5, 0.5, 0.5, 0.15}, {0.5, 0.5, 0.5, 0.25}, {0.5, 0.5, 0.5, 0.1},
                                                   {0.5, 0.8, 0.5, 0.12}, {0.5, 0.2, 0.5, 0.15}, {0.5, 0.5, 0.1, 0.1},
                                                   {0.5, 0.5, 0.9, 0.1}, {0.2, 0.3, 0.5, 0.2}};
  for (int64_t b = 0; b < batch; ++b) {
    for (size_t s = 0; s < spheres.size(); ++s) {
      const auto& [z, y, x, r] = spheres[s];
      input[b][static_cast<int64_t>(s) + 1].copy_(sphere_sdf(size, z * n, y * n, x * n, r * n));
    }
  }
  const auto target = torch::rand({batch, 1, size, size, size}) * 1.1;
  const auto pred = (target + 0.1 * torch::randn_like(target)).requires_grad_(true);

  vmat::TensorMap vgg_tensors;
  const std::vector<std::pair<int, std::array<int64_t, 2>>> convs{{0, {64, 3}}, {2, {64, 64}}, {5, {128, 64}}, {7, {128, 128}},
                                                                  {10, {256, 128}}, {12, {256, 256}}, {14, {256, 256}}};
  for (const auto& [index, shape] : convs) {
    vgg_tensors["features." + std::to_string(index) + ".weight"] = torch::randn({shape[0], shape[1], 3, 3}) * 0.05;
    vgg_tensors["features." + std::to_string(index) + ".bias"] = torch::zeros({shape[0]});
  }
  const auto vgg = vmat::Vgg16Features::from_tensors(vgg_tensors, "random");

  vmat::LossConfig config;
  config.target_channels = {1, 2};
  config.boundary_channels = {3, 4, 5, 6, 7, 8};
  config.dvh_channels = {1, 2, 3, 4, 5, 6, 7, 8};
  const vmat::TrainingLoss first_version(config);
  const auto backward = [&](const at::Tensor& loss) {
    pred.mutable_grad() = at::Tensor();
    loss.backward();
  };
  const std::vector<std::pair<std::string, std::function<void()>>> terms{
      {"mse_neg", [&] { backward(first_version(pred, target).total); }},
      {"sobel", [&] { backward(vmat::sobel_gradient_loss(pred, target)); }},
      {"vgg", [&] { backward(vmat::vgg_perceptual_loss(pred, target, vgg, config.vgg_slice_stride, 0)); }},
      {"structure_weighted", [&] { backward(vmat::structure_weighted_mse(pred, target, input, config)); }},
      {"asymmetric_ptv", [&] { backward(vmat::asymmetric_ptv_loss(pred, target, input, config.target_channels, 3.0, 1.0)); }},
      {"dvh", [&] { backward(vmat::dvh_loss(pred, target, input, config.dvh_channels, config.dvh_bins, config.dvh_max_dose)); }},
  };
  for (const auto& [name, fn] : terms) {
    std::printf("{\"what\":\"%s\",\"impl\":\"vmat-native\",\"size\":%ld,\"batch\":%ld,\"threads\":%d,\"median_ms\":%.3f}\n",
                name.c_str(), static_cast<long>(size), static_cast<long>(batch), threads, median_ms(repeat, fn));
    std::fflush(stdout);
  }

  // One training step (forward, MSE + negative penalty, backward, clip, AdamW) for scale.
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, base});
  vmat::MultiTensorAdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.01));
  const auto constraints = torch::randn({batch, 13});
  const double step_ms = median_ms(repeat, [&] {
    optimizer.zero_grad();
    first_version(model->forward(input, constraints), target).total.backward();
    vmat::clip_grad_norm(model->parameters(), 1.0);
    optimizer.step();
  });
  std::printf("{\"what\":\"train_step\",\"impl\":\"vmat-native\",\"base\":%ld,\"size\":%ld,\"batch\":%ld,\"threads\":%d,\"median_ms\":%.3f}\n",
              static_cast<long>(base), static_cast<long>(size), static_cast<long>(batch), threads, step_ms);
  return 0;
}
