// Data-parallel training steps per second (scripts/bench.sh, section "distributed"): the training engine on random
// cases, one process, or one rank of a data-parallel run over Gloo on 127.0.0.1 (bench/distributed.sh starts the ranks).
//   bench_distributed <world_size> <rank> <port> <batch per rank> [base=16] [patch=32] [steps=24] [device=cpu]
//   (device cuda: each rank on cuda:<rank>, NCCL, bf16 autocast)
// Rank 0 prints one JSON line: steps per second and patches per second over the steps after the first two (warm-up).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "vmat/distributed.h"
#include "vmat/trainer.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_distributed <world_size> <rank> <port> <batch per rank> [base=16] [patch=32] [steps=24] [device=cpu]\n");
    return 1;
  }
  const int64_t world = std::atoll(argv[1]), rank = std::atoll(argv[2]), port = std::atoll(argv[3]), batch = std::atoll(argv[4]);
  const int64_t base = argc > 5 ? std::atoll(argv[5]) : 16, patch = argc > 6 ? std::atoll(argv[6]) : 32, steps = argc > 7 ? std::atoll(argv[7]) : 24;
  const std::string device = argc > 8 ? argv[8] : "cpu";
  torch::manual_seed(0);
  std::vector<vmat::TrainingCase> train, val;
  const int64_t global_batch = batch * world, cases = 4;
  for (int64_t i = 0; i < cases + 1; ++i) {
    vmat::TrainingCase item;
    item.id = "bench" + std::to_string(i);
    item.input = torch::rand({9, patch, 2 * patch, 2 * patch});
    item.dose = torch::rand({patch, 2 * patch, 2 * patch}) * 70;
    item.constraints = torch::rand({13});
    item.body = torch::ones({patch, 2 * patch, 2 * patch}, torch::kByte);
    (i < cases ? train : val).push_back(item);
  }
  const auto dir = std::filesystem::temp_directory_path() / ("vmat-bench-distributed-" + std::to_string(port));
  vmat::TrainerOptions options;
  options.in_channels = 9;
  options.base_channels = base;
  options.cond_dim = 13;
  options.epochs = 1;
  options.batch_size = batch;
  options.patch_size = patch;
  options.patches_per_volume = (steps * global_batch + cases - 1) / cases;
  options.lr = 1e-4;
  options.weight_decay = 0.01;
  options.beta1 = 0.9;
  options.beta2 = 0.999;
  options.min_lr = 1e-6;
  options.grad_clip = 1.0;
  options.precision = device == "cpu" ? "fp32" : "auto";
  options.patience = 50;
  options.seed = 42;
  options.loss.use_gradient_loss = true;
  options.loss.gradient_loss_weight = 0.1;
  options.loss.negative_penalty_weight = 0.1;
  options.normalisation_dose_gy = 70;
  options.device = device;
  options.distributed.local_rank = rank;
  options.num_workers = 1;
  options.sw_batch = 1;
  options.overlap = 0.25;
  options.checkpoint_dir = (dir / "checkpoints").string();
  options.distributed.world_size = world;
  options.distributed.rank = rank;
  options.distributed.master_addr = "127.0.0.1";
  options.distributed.master_port = port;
  options.distributed.timeout_seconds = 120;

  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> step_ends;
  vmat::TrainerCallbacks callbacks;
  callbacks.emit = [&](const std::string& json) {
    if (json.find("\"type\":\"step\"") != std::string::npos) step_ends.push_back(Clock::now());
  };
  vmat::train_model(train, val, options, callbacks);
  if (rank != 0) return 0;  // only rank 0 writes the run's checkpoints
  std::filesystem::remove_all(dir);
  const int64_t timed = static_cast<int64_t>(step_ends.size()) - 2;
  const double seconds = std::chrono::duration<double>(step_ends.back() - step_ends[1]).count();
  std::printf("{\"bench\":\"distributed\",\"device\":\"%s\",\"world_size\":%lld,\"batch_per_rank\":%lld,\"base\":%lld,\"patch\":%lld,\"threads_per_rank\":%d,"
              "\"steps\":%lld,\"seconds\":%.3f,\"steps_per_second\":%.4f,\"patches_per_second\":%.4f}\n",
              device.c_str(), static_cast<long long>(world), static_cast<long long>(batch), static_cast<long long>(base), static_cast<long long>(patch),
              at::get_num_threads(), static_cast<long long>(timed), seconds, timed / seconds, timed * global_batch / seconds);
  return 0;
}
