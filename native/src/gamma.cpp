#include "vmat/gamma.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>

#include "gamma_cuda.h"
#include "gamma_kernel.h"
#include "vmat/error.h"
#include "vmat/runtime.h"

namespace vmat {

namespace {

void check_settings(const GammaSettings& s) {
  require(std::isfinite(s.dose_percent) && s.dose_percent > 0, "the dose criterion must be a positive percentage, got " + std::to_string(s.dose_percent));
  require(std::isfinite(s.dta_mm) && s.dta_mm > 0, "the distance to agreement must be a positive number of mm, got " + std::to_string(s.dta_mm));
  require(std::isfinite(s.cutoff_percent) && s.cutoff_percent >= 0, "the lower dose cutoff must be a percentage >= 0, got " + std::to_string(s.cutoff_percent));
  require(std::isfinite(s.normalisation_gy) && s.normalisation_gy >= 0, "the normalisation dose must be a positive number of Gy, got " + std::to_string(s.normalisation_gy));
  require(std::isfinite(s.interp_fraction) && s.interp_fraction >= 1, "the interpolation fraction must be >= 1, got " + std::to_string(s.interp_fraction));
  require(std::isfinite(s.max_gamma) && s.max_gamma > 0, "max gamma must be a positive number, got " + std::to_string(s.max_gamma));
  // The search holds about 4/3·π·(interp_fraction·max_gamma)³ points; beyond this it would take hours.
  require(s.interp_fraction * s.max_gamma <= 200,
          "interp fraction × max gamma must be at most 200 (the search grows with its cube), got " +
              std::to_string(s.interp_fraction * s.max_gamma));
}

void check_grid(const at::Tensor& dose, const GammaGrid& grid, const std::string& what) {
  require(dose.dim() == 3, "the " + what + " dose must be a 3D volume [z, y, x], got " + std::to_string(dose.dim()) + " dimensions");
  for (int a = 0; a < 3; ++a) {
    require(dose.size(a) == grid.shape[a], "the " + what + " dose's shape does not match its grid");
    require(grid.shape[a] >= 1, "the " + what + " dose is empty");
    require(std::isfinite(grid.spacing_mm[a]) && grid.spacing_mm[a] > 0,
            "the " + what + " spacing must be positive numbers of mm, got " + std::to_string(grid.spacing_mm[a]));
    require(std::isfinite(grid.origin_mm[a]), "the " + what + " origin must be finite");
  }
  require(torch::isfinite(dose).all().item<bool>(), "the " + what + " dose holds NaN or infinite values");
}

gamma_detail::Grid kernel_grid(const GammaGrid& grid) {
  gamma_detail::Grid g{};
  for (int a = 0; a < 3; ++a) {
    g.n[a] = grid.shape[a];
    g.origin[a] = grid.origin_mm[a];
    g.spacing[a] = grid.spacing_mm[a];
    g.inverse_spacing[a] = 1.0 / grid.spacing_mm[a];
    g.upper[a] = grid.origin_mm[a] + static_cast<double>(grid.shape[a] - 1) * grid.spacing_mm[a];
  }
  return g;
}

// The spheres flattened into the kernel's tables.
struct Plan {
  std::vector<gamma_detail::Shell> shells;
  std::vector<gamma_detail::Row> rows;
  std::vector<double> offsets;
};

Plan flatten(const std::vector<GammaSphere>& spheres, double dta_mm) {
  Plan plan;
  for (const auto& sphere : spheres) {
    plan.shells.push_back({sphere.distance_mm, sphere.distance_mm / dta_mm, static_cast<int32_t>(plan.rows.size()),
                           static_cast<int32_t>(sphere.row_sizes.size())});
    size_t point = 0;
    for (const int32_t size : sphere.row_sizes) {
      const auto& first = sphere.points[point];
      // The row's half-width along the first two axes, taken from its points themselves.
      double row_radius = 0.0;
      for (int32_t q = 0; q < size; ++q) {
        const auto& p = sphere.points[point + q];
        row_radius = std::max(row_radius, std::max(std::fabs(p[0]), std::fabs(p[1])));
      }
      plan.rows.push_back({row_radius, first[2], static_cast<int32_t>(plan.offsets.size() / 3), size});
      for (int32_t q = 0; q < size; ++q) {
        const auto& p = sphere.points[point + q];
        plan.offsets.insert(plan.offsets.end(), {p[0], p[1], p[2]});
      }
      point += size;
    }
  }
  return plan;
}

// Runs `work(i)` for i in [0, count) on `threads` threads in chunks taken in turn (points differ a lot in cost:
// those that pass stop early), polling cancel and reporting progress from the calling thread.
template <typename Work>
void run_parallel(int64_t count, int64_t chunk, int threads, const GammaHooks& hooks, Work work) {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  auto worker = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const int64_t begin = next.fetch_add(chunk);
      if (begin >= count) break;
      const int64_t end = std::min(count, begin + chunk);
      for (int64_t i = begin; i < end; ++i) work(i);
      done.fetch_add(end - begin);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  while (done.load() < count) {
    if (hooks.cancel && hooks.cancel->load()) {
      stop = true;
      break;
    }
    if (hooks.progress) hooks.progress(done.load(), count);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& thread : pool) thread.join();
  if (stop) throw Error(ErrorCode::Cancelled, "the gamma computation was cancelled");
  if (hooks.progress) hooks.progress(count, count);
}

}  // namespace

std::vector<GammaSphere> gamma_search_spheres(const GammaSettings& settings) {
  check_settings(settings);
  const double dta = settings.dta_mm;
  const double first_step = dta / settings.interp_fraction;
  const double maximum = dta * settings.max_gamma;
  std::vector<GammaSphere> spheres;
  double distance = 0.0;
  double step = first_step;
  bool landed_on_dta = false;
  while (distance <= maximum) {
    GammaSphere sphere;
    sphere.distance_mm = distance;
    sphere.step_mm = step;
    // numpy.linspace(0, π, rows) and numpy.linspace(0, 2π, n + 1)[:-1], as pymedphys' createshells.
    const int64_t rows = static_cast<int64_t>(std::ceil(M_PI * distance / step)) + 1;
    const double polar_step = rows > 1 ? M_PI / static_cast<double>(rows - 1) : 0.0;
    for (int64_t i = 0; i < rows; ++i) {
      const double polar = (rows > 1 && i == rows - 1) ? M_PI : static_cast<double>(i) * polar_step;
      const double radius = distance * std::sin(polar);
      const int64_t n = static_cast<int64_t>(std::ceil(2 * M_PI * radius / step)) + 1;
      const double azimuth_step = 2 * M_PI / static_cast<double>(n);
      const double axial = distance * std::cos(polar);
      for (int64_t j = 0; j < n; ++j) {
        const double azimuth = static_cast<double>(j) * azimuth_step;
        sphere.points.push_back({radius * std::cos(azimuth), radius * std::sin(azimuth), axial});
      }
      sphere.row_sizes.push_back(static_cast<int32_t>(n));
    }
    spheres.push_back(std::move(sphere));
    // pymedphys' gamma_loop: the step grows with the distance, and the search lands exactly on DTA once.
    step = std::max(distance / settings.interp_fraction / settings.max_gamma, first_step);
    distance += step;
    if (!landed_on_dta && distance >= dta) {
      distance = dta;
      landed_on_dta = true;
    }
  }
  return spheres;
}

namespace {

// The flattened search for these settings, built once: an evaluation calls gamma for every case with the same few
// settings, and building the spheres (about 35 000 points at 3%/3 mm) takes a millisecond or two each time.
std::shared_ptr<const Plan> search_plan(const GammaSettings& settings) {
  using Key = std::tuple<double, double, double>;
  static std::mutex mutex;
  static std::map<Key, std::shared_ptr<const Plan>> plans;
  constexpr size_t kMostPlans = 16;  // settings seen by one process are few; the bound only caps a long sweep
  const Key key{settings.dta_mm, settings.interp_fraction, settings.max_gamma};
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(key);
  if (found != plans.end()) return found->second;
  if (plans.size() >= kMostPlans) plans.clear();
  auto plan = std::make_shared<const Plan>(flatten(gamma_search_spheres(settings), settings.dta_mm));
  plans.emplace(key, plan);
  return plan;
}

}  // namespace

namespace {

// Order-preserving map of a (non-NaN) float to uint32: negative floats reversed below positive ones.
inline uint32_t order_key(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

inline float from_order_key(uint32_t key) {
  const uint32_t bits = key & 0x80000000u ? key & 0x7fffffffu : ~key;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// The rank-th smallest key (0-based), exactly: a histogram of the top 16 bits finds the bucket holding it, and only
// that bucket is partially sorted. Two passes over the keys instead of nth_element's several on all of them.
class OrderStatistics {
 public:
  explicit OrderStatistics(const std::vector<uint32_t>& keys) : keys_(keys), counts_(kBuckets, 0) {
    for (const uint32_t key : keys_) ++counts_[key >> 16];
  }
  uint32_t select(int64_t rank) const {
    int64_t before = 0;
    uint32_t bucket = 0;
    while (before + counts_[bucket] <= rank) before += counts_[bucket++];
    std::vector<uint32_t> members;
    members.reserve(static_cast<size_t>(counts_[bucket]));
    for (const uint32_t key : keys_) {
      if (key >> 16 == bucket) members.push_back(key);
    }
    const auto nth = members.begin() + (rank - before);
    std::nth_element(members.begin(), nth, members.end());
    return *nth;
  }

 private:
  static constexpr size_t kBuckets = 1u << 16;
  const std::vector<uint32_t>& keys_;
  std::vector<int64_t> counts_;
};

}  // namespace

GammaSummary summarise_gamma(const float* gamma, int64_t count) {
  GammaSummary summary;
  std::vector<uint32_t> keys;
  keys.reserve(static_cast<size_t>(count));
  double sum = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const float value = gamma[i];
    if (std::isnan(value)) continue;
    keys.push_back(order_key(value));
    sum += value;
    summary.n_passed += value <= 1.0f;
  }
  summary.n_evaluated = static_cast<int64_t>(keys.size());
  if (keys.empty()) {
    summary.pass_rate_pct = summary.mean_gamma = summary.median_gamma = std::nan("");
    return summary;
  }
  summary.pass_rate_pct = 100.0 * static_cast<double>(summary.n_passed) / static_cast<double>(summary.n_evaluated);
  summary.mean_gamma = sum / static_cast<double>(summary.n_evaluated);
  // NumPy's median: the middle value, or the mean of the two middle values for an even count.
  const OrderStatistics order(keys);
  const int64_t middle = summary.n_evaluated / 2;
  double median = from_order_key(order.select(middle));
  if (summary.n_evaluated % 2 == 0) median = (median + from_order_key(order.select(middle - 1))) / 2.0;
  summary.median_gamma = median;
  return summary;
}

GammaResult gamma_index(const at::Tensor& reference_in, const GammaGrid& reference_grid, const at::Tensor& evaluated_in,
                        const GammaGrid& evaluated_grid, const GammaSettings& settings, const std::string& device,
                        const GammaHooks& hooks) {
  check_settings(settings);
  require(reference_in.defined() && evaluated_in.defined(), "gamma needs a reference and an evaluated dose");
  check_grid(reference_in, reference_grid, "reference");
  check_grid(evaluated_in, evaluated_grid, "evaluated");

  std::string resolved = resolve_device(device);
#ifndef VMAT_WITH_CUDA
  if (resolved != "cpu") {
    require(device == "auto", "device '" + device + "' was asked for, but this build has no CUDA gamma kernels (build with VMAT_CUDA=ON)");
    resolved = "cpu";
  }
#endif

  GammaResult result;
  result.device = resolved;
  result.normalisation_gy = settings.normalisation_gy > 0 ? settings.normalisation_gy : reference_in.max().item<double>();
  require(result.normalisation_gy > 0, "the reference dose is zero everywhere, so the gamma has no normalisation; give one as normGy");
  result.cutoff_gy = settings.cutoff_percent / 100 * result.normalisation_gy;

  const auto plan_pointer = search_plan(settings);
  const Plan& plan = *plan_pointer;

  gamma_detail::Params params{};
  params.ref = kernel_grid(reference_grid);
  params.eval = kernel_grid(evaluated_grid);
  params.shells = plan.shells.data();
  params.n_shells = static_cast<int32_t>(plan.shells.size());
  params.rows = plan.rows.data();
  params.offsets = plan.offsets.data();
  for (int a = 0; a < 3; ++a) params.n_cells[a] = std::max<int64_t>(evaluated_grid.shape[a] - 1, 1);
  params.normalisation = result.normalisation_gy;
  params.cutoff = result.cutoff_gy;
  params.dose_fraction = settings.dose_percent / 100;
  params.max_gamma = settings.max_gamma;
  params.local = settings.local;

  const int64_t n_reference = reference_in.numel();
  if (resolved != "cpu") {
#ifdef VMAT_WITH_CUDA
    const torch::Device cuda(resolved);
    const auto reference = reference_in.to(cuda, torch::kFloat).contiguous();
    const auto evaluated = evaluated_in.to(cuda, torch::kFloat).contiguous();
    auto gamma = torch::empty(reference.sizes(), reference.options());
    params.ref_dose = reference.data_ptr<float>();
    params.eval_dose = evaluated.data_ptr<float>();
    gamma_detail::gamma_cuda(params, static_cast<int64_t>(plan.rows.size()), static_cast<int64_t>(plan.offsets.size() / 3),
                             gamma.data_ptr<float>(), cuda.index());
    result.gamma = gamma.cpu();
#endif
  } else {
    const auto reference = reference_in.to(torch::kCPU, torch::kFloat).contiguous();
    const auto evaluated = evaluated_in.to(torch::kCPU, torch::kFloat).contiguous();
    result.gamma = torch::empty(reference.sizes(), reference.options());
    const int64_t n_cells = params.n_cells[0] * params.n_cells[1] * params.n_cells[2];
    std::vector<float> cell_min(n_cells), cell_max(n_cells), cell_slope(n_cells);
    params.ref_dose = reference.data_ptr<float>();
    params.eval_dose = evaluated.data_ptr<float>();
    params.cell_min = cell_min.data();
    params.cell_max = cell_max.data();
    params.cell_slope = cell_slope.data();
    const int threads = std::max(1, hooks.threads > 0 ? hooks.threads : at::get_num_threads());
    GammaHooks quiet;  // the cell ranges take a moment; only the main pass reports progress
    quiet.cancel = hooks.cancel;
    run_parallel(params.n_cells[0] * params.n_cells[1], 16, threads, quiet, [&](int64_t line) {
      const int64_t c0 = line / params.n_cells[1];
      const int64_t c1 = line % params.n_cells[1];
      for (int64_t c2 = 0; c2 < params.n_cells[2]; ++c2) {
        const int64_t c = line * params.n_cells[2] + c2;
        gamma_detail::cell_range(params, c0, c1, c2, &cell_min[c], &cell_max[c], &cell_slope[c]);
      }
    });
    float* out = result.gamma.data_ptr<float>();
    run_parallel(n_reference, 256, threads, hooks, [&](int64_t i) { out[i] = gamma_detail::gamma_at(params, i); });
  }
  result.summary = summarise_gamma(result.gamma.data_ptr<float>(), n_reference);
  return result;
}

}  // namespace vmat
