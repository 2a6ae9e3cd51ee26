// GPU benchmark of the seed's workload, the native side of the GPU issue's table (the PyTorch peer,
// shared/reference/pytorch_peer_bench.py, runs in the same device call; scripts/gpu-check.sh runs both):
//   - a training step of BaselineUNet3D (base 48, batch 2, 128^3, AdamW + clip 1.0, MSE + 0.1 Sobel + 0.1 negative):
//     fp32 (TF32 convolutions) and bf16 autocast with libtorch's own GroupNorm/SiLU/FiLM ops, and bf16 autocast with
//     the fused norm_act kernels (the default on CUDA), all with the trainer's multi-tensor AdamW and clipping; and
//     the fused step with libtorch's per-tensor AdamW and clip_grad_norm_ instead;
//   - the fused Sobel loss forward + backward on 2 x 128^3, checked against the convolution form on the GPU and
//     against the CPU kernel, for the default and three other planes-per-thread run lengths;
//   - sliding-window prediction of 160 x 256 x 256 (patch 128, overlap 0.5, bf16).
// Prints one JSON line per measurement and writes them all to the file named by --json.
// Without a CUDA device it says so and exits 0 (nothing to measure).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "vmat/losses.h"
#include "vmat/norm_act.h"
#include "vmat/optim.h"
#include "vmat/sliding_window.h"
#include "vmat/unet.h"

#ifdef VMAT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace {

std::vector<std::string> results;

void record(const std::string& json) {
  std::printf("%s\n", json.c_str());
  std::fflush(stdout);
  results.push_back(json);
}

double median_ms(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  torch::cuda::synchronize();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    torch::cuda::synchronize();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void reset_peak() {
#ifdef VMAT_WITH_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
}

double peak_gib() {
#ifdef VMAT_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
#else
  return -1;
#endif
}

at::Tensor conv_sobel_loss(const at::Tensor& p, const at::Tensor& t) {
  auto d = torch::tensor({-1.0f, 0.0f, 1.0f}, p.options());
  auto s = torch::tensor({1.0f, 2.0f, 1.0f}, p.options());
  auto kz = d.view({3, 1, 1}) * s.view({1, 3, 1}) * s.view({1, 1, 3});
  auto ky = s.view({3, 1, 1}) * d.view({1, 3, 1}) * s.view({1, 1, 3});
  auto kx = s.view({3, 1, 1}) * s.view({1, 3, 1}) * d.view({1, 1, 3});
  auto k = (torch::stack({kz, ky, kx}).unsqueeze(1) / 32.0f);
  auto gp = torch::conv3d(p, k, {}, 1, 1);
  auto gt = torch::conv3d(t, k, {}, 1, 1);
  return (gp - gt).abs().mean();
}

// `libtorch_optimizer`: libtorch's per-tensor AdamW and clip_grad_norm_ instead of the multi-tensor ones the trainer
// uses. Either way the step reads the loss and the gradient norm back to the host once, as the trainer does.
void bench_train_step(const std::string& name, bool bf16, bool fused, int64_t patch, int64_t batch,
                      bool libtorch_optimizer = false) {
  vmat::set_fused_norm_act(fused ? vmat::FusedNormAct::On : vmat::FusedNormAct::Off);
  torch::manual_seed(0);
  const torch::Device device(torch::kCUDA, 0);
  vmat::BaselineUNet3D model(vmat::UNetConfig{});
  model->to(device);
  const auto parameters = model->parameters();
  const auto adamw = torch::optim::AdamWOptions(1e-4).weight_decay(0.01);
  std::unique_ptr<torch::optim::AdamW> optimizer =
      libtorch_optimizer ? std::make_unique<torch::optim::AdamW>(parameters, adamw)
                         : std::make_unique<vmat::MultiTensorAdamW>(parameters, adamw);
  auto x = torch::randn({batch, 9, patch, patch, patch}, torch::TensorOptions().device(device));
  auto c = torch::rand({batch, 13}, torch::TensorOptions().device(device));
  auto y = torch::rand({batch, 1, patch, patch, patch}, torch::TensorOptions().device(device));
  vmat::LossWeights weights;
  weights.use_gradient_loss = true;
  double checksum = 0;  // what the step reads back, so that the read cannot be optimised away
  auto step = [&] {
    optimizer->zero_grad();  // libtorch 2.x sets gradients to None, 1.13 zeroes them
    at::Tensor prediction;
    vmat::with_autocast(bf16, device, at::kBFloat16, [&] { prediction = model->forward(x, c); });
    auto terms = vmat::dose_loss(prediction.to(at::kFloat), y, weights);
    terms.total.backward();
    if (libtorch_optimizer) {
      checksum += torch::nn::utils::clip_grad_norm_(parameters, 1.0) + terms.total.item<double>();
    } else {
      const auto norm = vmat::clip_grad_norm(parameters, 1.0);
      checksum += torch::stack({terms.total.detach(), norm}).sum().item<double>();
    }
    optimizer->step();
  };
  reset_peak();
  const double ms = median_ms(step, 3, 10);
  std::ostringstream json;
  json << "{\"name\":\"" << name << "\",\"ms_per_step\":" << ms << ",\"peak_gib\":" << peak_gib()
       << ",\"voxels_per_s\":" << static_cast<double>(batch * patch * patch * patch) / (ms / 1e3)
       << ",\"finite\":" << (std::isfinite(checksum) ? "true" : "false") << "}";
  record(json.str());
}

void bench_sobel() {
  const torch::Device device(torch::kCUDA, 0);
  torch::manual_seed(1);
  auto p = torch::rand({2, 1, 128, 128, 128}, torch::TensorOptions().device(device)).requires_grad_(true);
  auto t = torch::rand({2, 1, 128, 128, 128}, torch::TensorOptions().device(device));
  auto reference = conv_sobel_loss(p, t);
  auto reference_grad = torch::autograd::grad({reference}, {p})[0];
  auto p_cpu = p.detach().cpu().requires_grad_(true);
  auto cpu = vmat::sobel_gradient_loss(p_cpu, t.cpu());
  auto cpu_grad = torch::autograd::grad({cpu}, {p_cpu})[0];
  const double conv_ms = median_ms([&] {
    auto loss = conv_sobel_loss(p, t);
    loss.backward();
  }, 5, 30);

  // The default run length first (the figure of the table), then others to choose it by: each checked before timed,
  // against the convolution form on the GPU and against the fused CPU kernel.
  const int64_t default_planes = vmat::sobel_planes_per_thread();
  for (const int64_t planes : {default_planes, int64_t{4}, int64_t{8}, int64_t{32}}) {
    vmat::set_sobel_planes_per_thread(planes);
    auto fused = vmat::sobel_gradient_loss(p, t);
    auto fused_grad = torch::autograd::grad({fused}, {p})[0];
    const double value_rel = std::abs(fused.item<double>() - reference.item<double>()) / reference.item<double>();
    const double grad_rel = ((fused_grad - reference_grad).norm() / reference_grad.norm()).item<double>();
    const double cpu_rel = ((fused_grad.cpu() - cpu_grad).norm() / cpu_grad.norm()).item<double>();
    const bool ok = value_rel < 1e-4 && grad_rel < 1e-3 && cpu_rel < 1e-3 &&
                    std::abs(fused.item<double>() - cpu.item<double>()) / cpu.item<double>() < 1e-4;
    const double fused_ms = median_ms([&] {
      auto loss = vmat::sobel_gradient_loss(p, t);
      loss.backward();
    }, 5, 30);
    std::ostringstream json;
    json << "{\"name\":\"sobel_loss_fwd_bwd_2x128^3" << (planes == default_planes ? "" : "_planes_" + std::to_string(planes))
         << "\",\"planes_per_thread\":" << planes << ",\"fused_ms\":" << fused_ms << ",\"conv3d_form_ms\":" << conv_ms
         << ",\"check_ok\":" << (ok ? "true" : "false") << ",\"value_rel_err\":" << value_rel
         << ",\"grad_rel_err_vs_conv\":" << grad_rel << ",\"grad_rel_err_vs_cpu\":" << cpu_rel << "}";
    record(json.str());
  }
  vmat::set_sobel_planes_per_thread(default_planes);
}

void bench_sliding_window(int64_t batch) {
  torch::manual_seed(0);
  const torch::Device device(torch::kCUDA, 0);
  vmat::BaselineUNet3D model(vmat::UNetConfig{});
  model->to(device);
  model->eval();
  auto input = torch::randn({9, 160, 256, 256}, torch::TensorOptions().device(device));
  auto constraints = torch::rand({1, 13}, torch::TensorOptions().device(device));
  vmat::SlidingWindowOptions options;
  options.patch = 128;
  options.overlap = 0.5;
  options.batch = batch;
  options.device = device;
  options.autocast = true;
  auto network = [&](const at::Tensor& windows) {
    return model->forward(windows, constraints.expand({windows.size(0), 13}));
  };
  torch::NoGradGuard no_grad;
  at::Tensor out;
  const double ms = median_ms([&] { out = vmat::sliding_window_normalised(input, network, options); }, 2, 5);
  std::ostringstream json;
  json << "{\"name\":\"sliding_window_160x256x256_bf16_b" << batch << "\",\"sw_batch\":" << batch << ",\"ms\":" << ms
       << ",\"finite\":" << (torch::isfinite(out).all().item<bool>() ? "true" : "false") << "}";
  record(json.str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json" && i + 1 < argc) json_path = argv[++i];
    if (arg == "--only" && i + 1 < argc) only = argv[++i];
  }
  if (!torch::cuda::is_available()) {
    std::printf("bench_gpu: no CUDA device available to this libtorch; nothing to measure\n");
    return 0;
  }
  at::globalContext().setBenchmarkCuDNN(true);
  at::globalContext().setAllowTF32CuDNN(true);
  at::globalContext().setAllowTF32CuBLAS(true);
  auto want = [&](const std::string& name) { return only.empty() || only.find(name) != std::string::npos; };
  try {
    if (want("sobel")) bench_sobel();
    if (want("step")) {
      bench_train_step("train_step_fp32_tf32conv_unfused", false, false, 128, 2);
      bench_train_step("train_step_bf16_unfused", true, false, 128, 2);
      bench_train_step("train_step_bf16_fused", true, true, 128, 2);
      bench_train_step("train_step_bf16_fused_libtorch_adamw", true, true, 128, 2, /*libtorch_optimizer=*/true);
      vmat::set_fused_norm_act(vmat::FusedNormAct::Auto);
    }
    if (want("sliding")) {
      bench_sliding_window(1);
      bench_sliding_window(2);
    }
  } catch (const std::exception& error) {
    std::string message = std::string(error.what()).substr(0, 300);
    for (auto& ch : message) {
      if (ch == '"' || ch == '\\' || ch == '\n') ch = ' ';
    }
    record("{\"error\":\"" + message + "\"}");
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "[\n";
    for (size_t i = 0; i < results.size(); ++i) out << results[i] << (i + 1 < results.size() ? ",\n" : "\n");
    out << "]\n";
  }
  return 0;
}
