// One CPU training step of vmat-native (forward, loss MSE + 0.1 Sobel + 0.1 negative penalty, backward, global-norm
// clip 1.0, AdamW lr 1e-4 wd 0.01) and the fused Sobel loss against its conv3d form. The PyTorch peer is
// bench/peer_train_step.py; scripts/bench.sh runs both side by side.
//   bench_train_step --base 8 --size 32 --batch 2 --steps 5 --warmup 2 --threads 2
// Prints one JSON object per measurement on stdout.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vmat/losses.h"
#include "vmat/optim.h"
#include "vmat/unet.h"

namespace F = torch::nn::functional;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

template <typename Fn>
double time_median(int warmup, int steps, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    const double start = now_ms();
    fn();
    times.push_back(now_ms() - start);
  }
  return median(times);
}

at::Tensor sobel_kernels() {
  const auto d = torch::tensor({-1.0f, 0.0f, 1.0f});
  const auto s = torch::tensor({1.0f, 2.0f, 1.0f});
  const auto kz = torch::einsum("i,j,k->ijk", {d, s, s});
  const auto ky = torch::einsum("i,j,k->ijk", {s, d, s});
  const auto kx = torch::einsum("i,j,k->ijk", {s, s, d});
  return torch::stack({kz, ky, kx}).unsqueeze(1) / 32.0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t base = 8, size = 32, batch = 2;
  int steps = 5, warmup = 2, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--base") base = value;
    else if (flag == "--size") size = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--steps") steps = static_cast<int>(value);
    else if (flag == "--warmup") warmup = static_cast<int>(value);
    else if (flag == "--threads") threads = static_cast<int>(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  at::set_num_threads(threads);
  torch::manual_seed(0);

  vmat::BaselineUNet3D model(vmat::UNetConfig{9, base});
  vmat::MultiTensorAdamW optimizer(model->parameters(),
                                   torch::optim::AdamWOptions(1e-4).weight_decay(0.01).betas({0.9, 0.999}));
  const auto x = torch::randn({batch, 9, size, size, size});
  const auto c = torch::randn({batch, 13});
  const auto target = torch::rand({batch, 1, size, size, size});
  vmat::LossWeights weights;
  weights.use_gradient_loss = true;

  const double step_ms = time_median(warmup, steps, [&] {
    optimizer.zero_grad();
    const auto terms = vmat::dose_loss(model->forward(x, c), target, weights);
    terms.total.backward();
    vmat::clip_grad_norm(model->parameters(), 1.0);
    optimizer.step();
  });
  std::printf("{\"what\":\"train_step\",\"impl\":\"vmat-native\",\"base\":%ld,\"size\":%ld,\"batch\":%ld,\"threads\":%d,\"steps\":%d,\"median_ms\":%.2f}\n",
              static_cast<long>(base), static_cast<long>(size), static_cast<long>(batch), threads, steps, step_ms);

  // The Sobel loss alone, forward + backward w.r.t. the prediction, on a [batch, 1, size, size, size] volume.
  const auto p = torch::randn({batch, 1, size, size, size}).requires_grad_(true);
  const auto t = torch::randn({batch, 1, size, size, size});
  const auto kernels = sobel_kernels();
  const int sobel_steps = 3 * steps;
  const double fused_ms = time_median(warmup, sobel_steps, [&] {
    p.mutable_grad() = at::Tensor();
    vmat::sobel_gradient_loss(p, t).backward();
  });
  const double conv_ms = time_median(warmup, sobel_steps, [&] {
    p.mutable_grad() = at::Tensor();
    const auto options = F::Conv3dFuncOptions().padding(1);
    F::l1_loss(F::conv3d(p, kernels, options), F::conv3d(t, kernels, options)).backward();
  });
  std::printf("{\"what\":\"sobel_fwd_bwd\",\"size\":%ld,\"batch\":%ld,\"threads\":%d,\"fused_ms\":%.3f,\"conv3d_ms\":%.3f}\n",
              static_cast<long>(size), static_cast<long>(batch), threads, fused_ms, conv_ms);
  return 0;
}
