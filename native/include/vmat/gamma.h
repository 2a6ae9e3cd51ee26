#pragma once
// The 3D gamma index (Low et al. 1998) as pymedphys computes it: spec/gamma.md.
#include <ATen/core/Tensor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vmat {

// A dose grid's axes: voxel i along axis a sits at origin[a] + i * spacing[a] (mm), axes in [z, y, x] order.
struct GammaGrid {
  std::array<int64_t, 3> shape{};
  std::array<double, 3> spacing_mm{1.0, 1.0, 1.0};
  std::array<double, 3> origin_mm{0.0, 0.0, 0.0};
};

struct GammaSettings {
  double dose_percent = 3.0;
  double dta_mm = 3.0;
  double cutoff_percent = 10.0;   // of the normalisation, applied to the reference, inclusive
  double normalisation_gy = 0.0;  // <= 0: the maximum of the reference
  bool local = false;
  double interp_fraction = 10.0;
  double max_gamma = 2.0;
};

// The search: the distances and, for each, the points of its sphere (offsets in mm along the grid's axes).
struct GammaSphere {
  double distance_mm = 0.0;
  double step_mm = 0.0;  // the sampling step the sphere was built with
  std::vector<std::array<double, 3>> points;
  std::vector<int32_t> row_sizes;  // points per polar-angle row, in order
};

// Distances accumulated in double exactly as pymedphys does (spec/gamma.md), with their spheres.
std::vector<GammaSphere> gamma_search_spheres(const GammaSettings& settings);

struct GammaSummary {
  int64_t n_evaluated = 0;  // points with a Γ (not NaN)
  int64_t n_passed = 0;     // Γ <= 1
  double pass_rate_pct = 0.0;  // NaN when nothing was evaluated
  double mean_gamma = 0.0;     // NaN when nothing was evaluated
  double median_gamma = 0.0;   // NaN when nothing was evaluated
};

GammaSummary summarise_gamma(const float* gamma, int64_t count);

struct GammaResult {
  at::Tensor gamma;  // float32 on the CPU, the reference's shape, NaN where not evaluated
  GammaSummary summary;
  double normalisation_gy = 0.0;
  double cutoff_gy = 0.0;
  std::string device;  // where it ran: "cpu" or "cuda:N"
};

struct GammaHooks {
  const std::atomic<bool>* cancel = nullptr;                    // checked between chunks; Error(Cancelled)
  std::function<void(int64_t done, int64_t total)> progress;    // reference points done (CPU only)
  int threads = 0;                                              // CPU threads; <= 0: at::get_num_threads()
};

// Γ of `evaluated` against `reference` (float32, 3D, any device; copied to `device` if needed).
// device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when this build has its kernels and a device answers).
GammaResult gamma_index(const at::Tensor& reference, const GammaGrid& reference_grid, const at::Tensor& evaluated,
                        const GammaGrid& evaluated_grid, const GammaSettings& settings,
                        const std::string& device = "cpu", const GammaHooks& hooks = {});

}  // namespace vmat
