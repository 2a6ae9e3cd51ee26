// Times the gamma index on a plan-like dose pair (128³ at 2.5 mm by default) on the CPU and, with --check-cuda,
// on the GPU, and checks that the GPU's Γ equals the CPU's bit for bit (exit 1 when it does not).
//   bench_gamma [--size 128] [--spacing 2.5] [--threads N] [--repeat 3] [--check-cuda]
// Prints one JSON line per criterion.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vmat/gamma.h"
#include "vmat/runtime.h"

namespace {

// A prostate-SIB-like dose: 70 Gy in an ellipsoid, 56 Gy in a larger one, a low-dose bath, sigmoid edges of a few
// mm; the evaluated dose is the same plan moved by (1.0, -0.6, 0.8) mm, 1.5 % hotter, with a slowly varying
// error of up to ±8 % and 1 % noise (bench/gamma_peer.py makes the same pair with NumPy).
at::Tensor plan_dose(int64_t n, double spacing, const double shift[3], double scale, double ripple, double noise, uint64_t seed) {
  auto dose = torch::empty({n, n, n}, torch::kFloat);
  auto a = dose.accessor<float, 3>();
  const double centre = (n - 1) * spacing / 2;
  uint64_t state = seed;
  auto uniform = [&state] {  // xorshift64*: deterministic on every platform
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<double>((state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
  };
  auto sigmoid = [](double t) { return 1 / (1 + std::exp(-t)); };
  for (int64_t z = 0; z < n; ++z)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        const double pz = z * spacing - centre - shift[0], py = y * spacing - centre - shift[1], px = x * spacing - centre - shift[2];
        const double inner = std::sqrt(pz * pz / (22.0 * 22) + py * py / (25.0 * 25) + px * px / (30.0 * 30));
        const double outer = std::sqrt(pz * pz / (35.0 * 35) + (py - 8) * (py - 8) / (40.0 * 40) + px * px / (45.0 * 45));
        const double bath = 25 * std::exp(-(pz * pz + py * py + px * px) / (2 * 70.0 * 70));
        const double high = 70 * sigmoid((1 - inner) * 22 / 2.5);
        const double mid = 56 * sigmoid((1 - outer) * 35 / 3.0);
        double value = std::max(high, std::max(mid, bath)) * scale;
        value *= 1 + ripple * std::sin(px / 15.0) * std::cos(py / 20.0);  // a slowly varying model error
        value *= 1 + noise * (2 * uniform() - 1);
        a[z][y][x] = static_cast<float>(value);
      }
  return dose;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t size = 128;
  double spacing = 2.5;
  int threads = 0;
  int repeat = 3;
  bool check_cuda = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--size") size = std::atoll(next());
    else if (arg == "--spacing") spacing = std::atof(next());
    else if (arg == "--threads") threads = std::atoi(next());
    else if (arg == "--repeat") repeat = std::atoi(next());
    else if (arg == "--check-cuda") check_cuda = true;
    else {
      std::fprintf(stderr, "usage: bench_gamma [--size N] [--spacing MM] [--threads N] [--repeat N] [--check-cuda]\n");
      return 2;
    }
  }
  const double no_shift[3] = {0, 0, 0};
  const double shift[3] = {1.0, -0.6, 0.8};
  const auto reference = plan_dose(size, spacing, no_shift, 1.0, 0.0, 0.0, 1);
  const auto evaluated = plan_dose(size, spacing, shift, 1.015, 0.08, 0.01, 2);
  vmat::GammaGrid grid;
  grid.shape = {size, size, size};
  grid.spacing_mm = {spacing, spacing, spacing};
  vmat::GammaHooks hooks;
  hooks.threads = threads;

  bool all_equal = true;
  for (const double criterion : {3.0, 2.0}) {
    vmat::GammaSettings settings;
    settings.dose_percent = criterion;
    settings.dta_mm = criterion;
    double cpu_best = 1e30;
    vmat::GammaResult cpu;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      cpu = vmat::gamma_index(reference, grid, evaluated, grid, settings, "cpu", hooks);
      cpu_best = std::min(cpu_best, seconds_since(start));
    }
    std::string line = "{\"criterion\":\"" + std::to_string(static_cast<int>(criterion)) + "%/" +
                       std::to_string(static_cast<int>(criterion)) + "mm\",\"size\":" + std::to_string(size) +
                       ",\"spacing_mm\":" + std::to_string(spacing) + ",\"cpu_threads\":" +
                       std::to_string(threads > 0 ? threads : at::get_num_threads()) + ",\"cpu_seconds\":" +
                       std::to_string(cpu_best) + ",\"pass_rate_pct\":" + std::to_string(cpu.summary.pass_rate_pct) +
                       ",\"n_evaluated\":" + std::to_string(cpu.summary.n_evaluated);
    if (check_cuda) {
      const auto device = vmat::resolve_device("cuda");
      const auto ref_gpu = reference.to(torch::Device(device));
      const auto eval_gpu = evaluated.to(torch::Device(device));
      vmat::gamma_index(ref_gpu, grid, eval_gpu, grid, settings, device);  // warm-up: context, module load
      double gpu_best = 1e30;
      vmat::GammaResult gpu;
      for (int r = 0; r < std::max(repeat, 5); ++r) {
        const auto start = std::chrono::steady_clock::now();
        gpu = vmat::gamma_index(ref_gpu, grid, eval_gpu, grid, settings, device);
        gpu_best = std::min(gpu_best, seconds_since(start));
      }
      const auto nan_cpu = torch::isnan(cpu.gamma), nan_gpu = torch::isnan(gpu.gamma);
      const bool equal = torch::equal(nan_cpu, nan_gpu) &&
                         torch::equal(torch::nan_to_num(cpu.gamma, -1), torch::nan_to_num(gpu.gamma, -1));
      const double max_difference =
          (cpu.gamma - gpu.gamma).abs().masked_select(~nan_cpu & ~nan_gpu).max().item<double>();
      all_equal = all_equal && equal;
      line += ",\"gpu_seconds\":" + std::to_string(gpu_best) + ",\"gpu_pass_rate_pct\":" +
              std::to_string(gpu.summary.pass_rate_pct) + ",\"speedup_gpu_over_cpu\":" +
              std::to_string(cpu_best / gpu_best) + ",\"gpu_equals_cpu\":" + (equal ? "true" : "false") +
              ",\"max_abs_difference\":" + std::to_string(max_difference);
    }
    std::printf("%s}\n", line.c_str());
    std::fflush(stdout);
  }
  if (!all_equal) {
    std::fprintf(stderr, "bench_gamma: the CUDA gamma differs from the CPU gamma\n");
    return 1;
  }
  return 0;
}
