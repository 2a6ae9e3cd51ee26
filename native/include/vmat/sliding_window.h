#pragma once
// Sliding-window prediction over a whole volume (spec/training.md, "Prediction"): cubic windows with a fractional
// overlap, Gaussian importance weights (sigma = patch/4, floor 1e-3 of the peak), the last window flush with the far
// edge, volumes smaller than a window padded (CT as -1000 HU, SDF +1) and cropped back. Windows go through the network
// in batches. Used by validation during training and by `predict`.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace vmat {

// A network on a batch of windows: [N, C, p, p, p] -> [N, 1, p, p, p] (normalised dose).
using WindowNetwork = std::function<at::Tensor(const at::Tensor& windows)>;

struct SlidingWindowOptions {
  int64_t patch = 128;
  double overlap = 0.5;
  int64_t batch = 1;              // windows per network call
  torch::Device device = torch::kCPU;
  bool autocast = false;          // mixed precision for the network (CUDA only)
  at::ScalarType autocast_dtype = at::kBFloat16;
  std::function<bool()> cancelled; // polled between batches; a cancelled call throws ErrorCode::Cancelled
};

// The start of each window along an axis of `size` voxels (size >= patch): evenly spaced, the first at 0 and the last
// at size - patch, with a step of at most patch * (1 - overlap).
std::vector<int64_t> window_starts(int64_t size, int64_t patch, double overlap);

// The importance map [p, p, p]: a Gaussian of sigma = patch/4 around the centre, 1 at the peak, floored at 1e-3.
at::Tensor gaussian_window(int64_t patch);

// Pads `input` [C, Z, Y, X] (channel 0 normalised CT, the rest SDF) up to at least `minimum` voxels per axis at the
// far end, with the values of air (-1000 HU) and of "far outside every structure" (+1).
at::Tensor pad_model_input(const at::Tensor& input, int64_t minimum);

// The normalised CT value of air, clip(-1000)/4000 + 0.5.
constexpr float kAirCtValue = 0.25f;

// Sum(w * pred) / Sum(w) over the windows: the stitched normalised prediction [Z, Y, X] (float32, CPU, unclamped).
// `input` is [C, Z, Y, X] float32 on any device.
at::Tensor sliding_window_normalised(const at::Tensor& input, const WindowNetwork& network, const SlidingWindowOptions& options);

// The dose in Gy: the stitched prediction x normalisation dose, clamped at 0.
at::Tensor sliding_window_dose(const at::Tensor& input, const WindowNetwork& network, const SlidingWindowOptions& options,
                               double normalisation_dose_gy);

// Runs `fn` with autocast to `dtype` on CUDA when `enabled` (the API differs between libtorch 1.x and 2.x).
void with_autocast(bool enabled, torch::Device device, at::ScalarType dtype, const std::function<void()>& fn);

}  // namespace vmat
