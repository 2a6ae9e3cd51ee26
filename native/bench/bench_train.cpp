// Benchmarks of the training data path and of sliding-window prediction (scripts/bench.sh, section "train").
//   bench_train patches [cases=4] [patches=40] [workers=2] [patch=128]
//       patches of 9 x patch^3 per second from cached cases of 9 x 96 x 128 x 128 (sampling, augmentation, batching
//       on the loader threads), consumed as fast as they come.
//   bench_train sliding-window [base=16] [z=64] [y=128] [x=128] [patch=64] [sw_batch=2] [repeats=3]
//       sliding-window prediction of a whole volume with BaselineUNet3D on the CPU; prints one JSON line per run.
#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "vmat/patch_sampler.h"
#include "vmat/sliding_window.h"
#include "vmat/unet.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int64_t arg(int argc, char** argv, int index, int64_t fallback) { return argc > index ? std::atoll(argv[index]) : fallback; }

int bench_patches(int argc, char** argv) {
  const int64_t cases = arg(argc, argv, 2, 4), patches = arg(argc, argv, 3, 40), workers = arg(argc, argv, 4, 2), patch = arg(argc, argv, 5, 128);
  torch::manual_seed(0);
  auto list = std::make_shared<std::vector<vmat::SamplingCase>>();
  for (int64_t i = 0; i < cases; ++i) {
    vmat::TrainingCase source;
    source.id = "bench" + std::to_string(i);
    source.input = torch::rand({9, 96, 128, 128});
    source.dose = torch::rand({96, 128, 128}) * 70;
    source.constraints = torch::rand({13});
    list->push_back(vmat::prepare_sampling_case(source, patch, 0.1, 70.0));
  }
  vmat::PatchSamplerOptions options;
  options.patch = patch;
  options.batch_size = 2;
  options.patches_per_volume = (patches + cases - 1) / cases;
  options.workers = static_cast<int>(workers);
  vmat::PatchLoader loader(list, options);
  const double start = now();
  const std::clock_t cpu_start = std::clock();
  loader.start_epoch(0, 0);
  int64_t produced = 0;
  for (int64_t step = 0; step < loader.steps_per_epoch(); ++step) produced += loader.next().input.size(0);
  const double seconds = now() - start;
  const double cpu_seconds = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  // Wall-clock rate, and the rate per CPU-second of the process (what the pipeline costs, whatever else runs).
  std::printf("{\"bench\":\"patches\",\"patch\":%lld,\"channels\":9,\"workers\":%lld,\"patches\":%lld,\"seconds\":%.3f,\"patches_per_second\":%.2f,"
              "\"cpu_seconds\":%.3f,\"patches_per_cpu_second\":%.2f}\n",
              static_cast<long long>(patch), static_cast<long long>(workers), static_cast<long long>(produced), seconds, produced / seconds,
              cpu_seconds, produced / cpu_seconds);
  return 0;
}

int bench_sliding_window(int argc, char** argv) {
  const int64_t base = arg(argc, argv, 2, 16), z = arg(argc, argv, 3, 64), y = arg(argc, argv, 4, 128), x = arg(argc, argv, 5, 128);
  const int64_t patch = arg(argc, argv, 6, 64), sw_batch = arg(argc, argv, 7, 2), repeats = arg(argc, argv, 8, 3);
  torch::manual_seed(0);
  vmat::UNetConfig config;
  config.base_channels = base;
  vmat::BaselineUNet3D model(config);
  model->eval();
  auto input = torch::rand({9, z, y, x});
  auto constraints = torch::rand({1, 13});
  auto network = [&](const at::Tensor& windows) { return model->forward(windows, constraints.expand({windows.size(0), 13})); };
  vmat::SlidingWindowOptions options;
  options.patch = patch;
  options.batch = sw_batch;
  vmat::sliding_window_dose(input, network, options, 70.0);  // warm-up
  for (int64_t r = 0; r < repeats; ++r) {
    const double start = now();
    auto dose = vmat::sliding_window_dose(input, network, options, 70.0);
    std::printf("{\"bench\":\"sliding_window\",\"impl\":\"vmat-native\",\"threads\":%d,\"base\":%lld,\"shape\":[%lld,%lld,%lld],\"patch\":%lld,\"sw_batch\":%lld,\"seconds\":%.3f,\"checksum\":%.4f}\n",
                at::get_num_threads(), static_cast<long long>(base), static_cast<long long>(z), static_cast<long long>(y), static_cast<long long>(x),
                static_cast<long long>(patch), static_cast<long long>(sw_batch), now() - start, dose.mean().item<double>());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "patches";
  if (mode == "patches") return bench_patches(argc, argv);
  if (mode == "sliding-window") return bench_sliding_window(argc, argv);
  std::fprintf(stderr, "usage: bench_train patches|sliding-window [...]\n");
  return 2;
}
