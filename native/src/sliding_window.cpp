#include "vmat/sliding_window.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>

#include "vmat/error.h"

// libtorch 2.4 added the per-device autocast calls; 1.x-2.3 have the CUDA-only ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define VMAT_AUTOCAST_PER_DEVICE 1
#endif

namespace vmat {

std::vector<int64_t> window_starts(int64_t size, int64_t patch, double overlap) {
  require(size >= patch, "window_starts: the axis (" + std::to_string(size) + ") is smaller than the patch (" + std::to_string(patch) + ")");
  const double max_step = std::max(1.0, std::floor(patch * (1.0 - overlap)));
  const int64_t count = size == patch ? 1 : static_cast<int64_t>(std::ceil((size - patch) / max_step)) + 1;
  std::vector<int64_t> starts(count, 0);
  if (count == 1) return starts;
  // Evenly spread (nnU-Net's rule): the real step never exceeds max_step and the last window ends at the far edge.
  const double step = static_cast<double>(size - patch) / static_cast<double>(count - 1);
  for (int64_t i = 0; i < count; ++i) starts[i] = static_cast<int64_t>(std::llround(i * step));
  return starts;
}

at::Tensor gaussian_window(int64_t patch) {
  const double sigma = patch / 4.0;
  const double centre = (patch - 1) / 2.0;
  auto axis = (torch::arange(patch, torch::kDouble) - centre).pow(2).div(-2.0 * sigma * sigma).exp();
  auto map = axis.view({patch, 1, 1}) * axis.view({1, patch, 1}) * axis.view({1, 1, patch});
  map = map / map.max();
  return map.clamp_min(1e-3).to(torch::kFloat);
}

at::Tensor pad_model_input(const at::Tensor& input, int64_t minimum) {
  require(input.dim() == 4, "the model input must be [C, Z, Y, X]");
  const int64_t z = input.size(1), y = input.size(2), x = input.size(3);
  const int64_t pz = std::max(z, minimum), py = std::max(y, minimum), px = std::max(x, minimum);
  if (pz == z && py == y && px == x) return input;
  auto padded = torch::ones({input.size(0), pz, py, px}, input.options());
  padded[0].fill_(kAirCtValue);
  padded.slice(1, 0, z).slice(2, 0, y).slice(3, 0, x).copy_(input);
  return padded;
}

void with_autocast(bool enabled, torch::Device device, at::ScalarType dtype, const std::function<void()>& fn) {
  if (!enabled || !device.is_cuda()) {
    fn();
    return;
  }
#ifdef VMAT_AUTOCAST_PER_DEVICE
  const bool was = at::autocast::is_autocast_enabled(at::kCUDA);
  const auto previous_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  const bool was = at::autocast::is_enabled();
  const auto previous_dtype = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_enabled(true);
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  auto restore = [&] {
#ifdef VMAT_AUTOCAST_PER_DEVICE
    at::autocast::set_autocast_enabled(at::kCUDA, was);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype);
#else
    at::autocast::set_enabled(was);
    at::autocast::set_autocast_gpu_dtype(previous_dtype);
#endif
    at::autocast::clear_cache();
  };
  try {
    fn();
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

at::Tensor sliding_window_normalised(const at::Tensor& input, const WindowNetwork& network, const SlidingWindowOptions& options) {
  require(input.dim() == 4, "sliding window: the input must be [C, Z, Y, X]");
  require(options.patch >= 16 && options.patch % 16 == 0, "the patch size must be a multiple of 16, got " + std::to_string(options.patch));
  require(options.overlap >= 0 && options.overlap < 1, "the overlap must be in [0, 1), got " + std::to_string(options.overlap));
  require(options.batch >= 1, "the sliding-window batch must be >= 1");
  torch::NoGradGuard no_grad;
  const int64_t z = input.size(1), y = input.size(2), x = input.size(3);
  const int64_t p = options.patch;
  auto volume = pad_model_input(input.to(options.device, torch::kFloat), p);
  const int64_t pz = volume.size(1), py = volume.size(2), px = volume.size(3);
  const auto weight = gaussian_window(p).to(options.device);
  auto sum = torch::zeros({pz, py, px}, volume.options());
  auto norm = torch::zeros({pz, py, px}, volume.options());

  struct Corner { int64_t z, y, x; };
  std::vector<Corner> corners;
  for (auto sz : window_starts(pz, p, options.overlap))
    for (auto sy : window_starts(py, p, options.overlap))
      for (auto sx : window_starts(px, p, options.overlap)) corners.push_back({sz, sy, sx});

  for (size_t first = 0; first < corners.size(); first += options.batch) {
    if (options.cancelled && options.cancelled()) throw Error(ErrorCode::Cancelled, "prediction was cancelled");
    const size_t last = std::min(corners.size(), first + static_cast<size_t>(options.batch));
    std::vector<at::Tensor> windows;
    for (size_t i = first; i < last; ++i) {
      const auto& c = corners[i];
      windows.push_back(volume.slice(1, c.z, c.z + p).slice(2, c.y, c.y + p).slice(3, c.x, c.x + p));
    }
    at::Tensor predicted;
    with_autocast(options.autocast, options.device, options.autocast_dtype, [&] { predicted = network(torch::stack(windows)); });
    predicted = predicted.to(torch::kFloat);
    require(predicted.dim() == 5 && predicted.size(0) == static_cast<int64_t>(windows.size()) && predicted.size(1) == 1,
            "sliding window: the network must return [N, 1, p, p, p]");
    for (size_t i = first; i < last; ++i) {
      const auto& c = corners[i];
      sum.slice(0, c.z, c.z + p).slice(1, c.y, c.y + p).slice(2, c.x, c.x + p).add_(predicted[i - first][0] * weight);
      norm.slice(0, c.z, c.z + p).slice(1, c.y, c.y + p).slice(2, c.x, c.x + p).add_(weight);
    }
  }
  return (sum / norm).slice(0, 0, z).slice(1, 0, y).slice(2, 0, x).to(torch::kCPU).contiguous();
}

at::Tensor sliding_window_dose(const at::Tensor& input, const WindowNetwork& network, const SlidingWindowOptions& options,
                               double normalisation_dose_gy) {
  return sliding_window_normalised(input, network, options).mul_(normalisation_dose_gy).clamp_min_(0.0);
}

}  // namespace vmat
