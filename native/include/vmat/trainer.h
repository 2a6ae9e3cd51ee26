#pragma once
// The training engine (spec/training.md): AdamW with a per-epoch cosine schedule, gradient clipping, mixed
// precision on CUDA, patches from the background PatchLoader, validation by sliding window over whole volumes, early
// stopping, the best 3 checkpoints + last (each with a .state.safetensors for exact resume), cancellation.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "vmat/losses.h"
#include "vmat/patch_sampler.h"
#include "vmat/safetensors.h"

namespace vmat {

struct TrainerOptions {
  int64_t in_channels = 9;
  int64_t base_channels = 48;
  int64_t epochs = 200;
  int64_t batch_size = 2;
  int64_t patch_size = 128;
  int64_t patches_per_volume = 4;
  double lr = 1e-4;
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double min_lr = 1e-6;
  double grad_clip = 1.0;       // 0: off
  std::string precision = "auto";  // auto | fp32 | bf16 | fp16
  int64_t patience = 50;
  uint64_t seed = 42;
  LossWeights loss;
  double normalisation_dose_gy = 70.0;
  std::string device = "auto";
  int num_workers = 2;
  int64_t sw_batch = 2;
  double overlap = 0.5;
  int femur_left_channel = -1;  // model input channels swapped by the x flip
  int femur_right_channel = -1;
  std::string checkpoint_dir;   // run/checkpoints
  bool resume = false;          // continue from checkpoint_dir/last.safetensors (+ .state)
  int keep_best = 3;
  Metadata checkpoint_metadata; // added to every checkpoint (structures, normalisation dose, ...)
};

struct TrainerCallbacks {
  std::function<void(const std::string& json)> emit;  // one JSON event
  std::function<bool()> cancelled;
};

struct TrainResult {
  std::string stop_reason;  // "max_epochs" | "early_stop" | "aborted"
  int64_t epochs_run = 0;   // completed epochs, those of earlier runs included
  int64_t best_epoch = 0;   // 1-based; 0 when no epoch completed
  double best_val_mae_gy = 0;
  std::string best_checkpoint;
  int64_t parameters = 0;
};

// The learning rate of 0-based `epoch`: cosine from lr to min_lr over `epochs` epochs (PyTorch's CosineAnnealingLR
// with T_max = epochs, stepped once per epoch).
double cosine_lr(double lr, double min_lr, int64_t epochs, int64_t epoch);

// The checkpoint name of a best epoch: best-epoch=012-val_mae_gy=3.670.safetensors
std::string best_checkpoint_name(int64_t epoch, double val_mae_gy);

// Trains. Throws vmat::Error: NotFinite on a NaN/Inf loss or gradient (last checkpoint kept, naming epoch and step),
// OutOfMemory on CUDA OOM (suggesting a smaller patch or batch), InvalidInput for bad settings.
TrainResult train_model(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases,
                        const TrainerOptions& options, const TrainerCallbacks& callbacks);

}  // namespace vmat
