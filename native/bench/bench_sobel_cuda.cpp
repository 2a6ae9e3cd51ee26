// The fused Sobel loss (forward + backward) on CUDA against its conv3d form (cuDNN), 2x64^3 and 2x128^3.
// Prints one line per size; says so and exits 0 where there is no CUDA device.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

#include "vmat/losses.h"

namespace F = torch::nn::functional;

namespace {

template <typename Fn>
double mean_ms(Fn&& fn) {
  for (int i = 0; i < 3; ++i) fn();
  torch::cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  constexpr int kRepeats = 20;
  for (int i = 0; i < kRepeats; ++i) fn();
  torch::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / kRepeats;
}

}  // namespace

int main() {
  if (!torch::cuda::is_available()) {
    std::printf("bench_sobel_cuda: no CUDA device\n");
    return 0;
  }
  const auto d = torch::tensor({-1.f, 0.f, 1.f}), s = torch::tensor({1.f, 2.f, 1.f});
  const auto kernels = (torch::stack({torch::einsum("i,j,k->ijk", {d, s, s}), torch::einsum("i,j,k->ijk", {s, d, s}),
                                      torch::einsum("i,j,k->ijk", {s, s, d})})
                            .unsqueeze(1) /
                        32.0)
                           .cuda();
  for (const int64_t n : {64, 128}) {
    auto p = torch::randn({2, 1, n, n, n}, torch::kCUDA).requires_grad_(true);
    const auto t = torch::randn({2, 1, n, n, n}, torch::kCUDA);
    const double fused = mean_ms([&] {
      p.mutable_grad() = at::Tensor();
      vmat::sobel_gradient_loss(p, t).backward();
    });
    const double conv = mean_ms([&] {
      p.mutable_grad() = at::Tensor();
      const auto options = F::Conv3dFuncOptions().padding(1);
      F::l1_loss(F::conv3d(p, kernels, options), F::conv3d(t, kernels, options)).backward();
    });
    std::printf("2x%ld^3 Sobel fwd+bwd CUDA: fused %.3f ms, conv3d form %.3f ms, ratio %.3f\n", static_cast<long>(n),
                fused, conv, fused / conv);
  }
  return 0;
}
