#pragma once
// The training engine (spec/training.md): AdamW with a per-epoch cosine schedule, gradient clipping, mixed
// precision on CUDA, patches from the background PatchLoader, validation by sliding window over whole volumes, early
// stopping, the best 3 checkpoints + last (each with a .state.safetensors for exact resume), cancellation.
//
// The loop is the class Trainer, in named steps (as nnU-Net's trainer has hooks). Trainer::run() does, in order:
//   prepare()                    device and precision, model (+ resume state), optimizer, prepare_loader()
//   per epoch, per step:
//     train_step(batch)          forward, compute_loss(), backward
//     after_backward(terms, n)   HOOK: nothing for one process; data-parallel training all-reduces the gradients here
//     optimizer_step()           clipping, fp16 loss scaling, AdamW
//   validate()                   sliding window over validation_share(); HOOK reduce_validation() sums over ranks
//   save_checkpoints()           best k + last; HOOK writes_files() (rank 0 only)
//   end_epoch()                  the epoch event, early stopping
// The single-process trainer is this class; data-parallel training derives from it and overrides the virtual hooks
// (prepare_loader for each rank's share of the patches, after_backward, validation_share, reduce_validation,
// writes_files), without another copy of the loop.
#include <torch/torch.h>

#include <array>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmat/losses.h"
#include "vmat/optim.h"
#include "vmat/patch_sampler.h"
#include "vmat/safetensors.h"
#include "vmat/sliding_window.h"
#include "vmat/unet.h"

namespace vmat {

// Data-parallel training (native/src/distributed.cpp): world_size processes, each with its rank, meeting at
// master_addr:master_port (rank 0 listens there). world_size 1 is the single-process trainer.
struct DistributedOptions {
  int64_t world_size = 1;
  int64_t rank = 0;
  int64_t local_rank = 0;  // the CUDA device of this process on its machine
  std::string master_addr;
  int64_t master_port = 0;
  double timeout_seconds = 0;  // a rank that does not answer within this ends the run, named
};

// The settings of a run. The values come from the one schema (src/config/schema.ts) through the typed bridge
// (binding/train.cc); there are no defaults here, so that nothing can silently differ from the schema's.
struct TrainerOptions {
  int64_t in_channels = 0;
  int64_t base_channels = 0;
  int64_t cond_dim = 0;  // length of every case's conditioning (constraint) vector
  int64_t epochs = 0;
  int64_t batch_size = 0;
  int64_t patch_size = 0;
  int64_t patches_per_volume = 0;
  double lr = 0;
  double weight_decay = 0;
  double beta1 = 0;
  double beta2 = 0;
  double min_lr = 0;
  double grad_clip = 0;    // 0: off
  std::string precision;   // auto | fp32 | bf16 | fp16
  int64_t patience = 0;
  uint64_t seed = 0;
  LossConfig loss;  // the terms of the loss and their structure channels (losses.h)
  double normalisation_dose_gy = 0;
  std::string device;
  int num_workers = 0;
  int64_t sw_batch = 0;
  double overlap = 0;
  std::vector<std::array<int64_t, 2>> left_right_pairs;  // model input channels swapped by the x flip
  std::string checkpoint_dir;    // run/checkpoints
  bool resume = false;           // continue from resume_from (+ .state)
  std::string resume_from;       // the checkpoint to resume from: checkpoint_dir/last or previous.safetensors
  Metadata checkpoint_metadata;  // added to every checkpoint (structures, normalisation dose, ...)
  int keep_best = 3;             // spec/training.md: the best 3 checkpoints are kept (not a user setting)
  DistributedOptions distributed;
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

// What the loss sees. prediction and target: normalised dose [B, 1, D, H, W] float32 on one device; input: the model
// input [B, C, D, H, W] (CT and signed distances: the structures are where a channel is < 0) and constraints
// [B, cond_dim], for losses that weight by structure or by the plan.
struct LossInputs {
  at::Tensor prediction, target, input, constraints;
  int64_t step = 0;  // the training step (picks the VGG loss's slices); 0 for validation
};

// Sums over the validation cases a process evaluated (every case for one process; a rank's share otherwise, then
// summed over the ranks by reduce_validation).
struct ValidationSums {
  double loss = 0, mae_gy = 0, ptv70_mae_gy = 0;
  int64_t cases = 0, ptv70_cases = 0;
};

struct BestCheckpoint {
  int64_t epoch;  // 1-based
  double val_mae_gy;
  std::string path;
};

// Everything besides the weights that an exact resume needs (written beside each checkpoint).
struct TrainingLoopState {
  int64_t epoch = 0;  // 0-based epoch in progress
  int64_t step = 0;   // next step of that epoch
  double sum_total = 0, sum_mse = 0, sum_grad = 0, sum_neg = 0;
  // The later terms (vgg, structure_weighted, asymmetric_ptv, dvh), summed where they are on.
  std::array<double, 4> sum_extra{};
  int64_t steps_done = 0;  // steps of this epoch whose losses are in the sums
  double best_val_mae = std::numeric_limits<double>::infinity();
  int64_t best_epoch = 0;
  int64_t epochs_without_improvement = 0;
  std::vector<BestCheckpoint> best;
  double loss_scale = 65536.0;  // fp16 only
  int64_t scale_growth_tracker = 0;
};

// The learning rate of 0-based `epoch`: cosine from lr to min_lr over `epochs` epochs (PyTorch's CosineAnnealingLR
// with T_max = epochs, stepped once per epoch).
double cosine_lr(double lr, double min_lr, int64_t epochs, int64_t epoch);

// The checkpoint name of a best epoch: best-epoch=012-val_mae_gy=3.670.safetensors
std::string best_checkpoint_name(int64_t epoch, double val_mae_gy);

class Trainer {
 public:
  // The cases must outlive the trainer (their tensors are viewed, not copied).
  Trainer(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases, TrainerOptions options,
          TrainerCallbacks callbacks);
  virtual ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains. Throws vmat::Error: NotFinite on a NaN/Inf loss or gradient (last checkpoint kept, naming epoch and step),
  // OutOfMemory on CUDA OOM (suggesting a smaller patch or batch), InvalidInput for bad settings.
  TrainResult run();

 protected:
  // ---- hooks (the single-process behaviour; data-parallel training overrides them)
  // The patch loader of the training cases (data parallel: this rank's share of each epoch's patches).
  virtual std::unique_ptr<PatchLoader> prepare_loader(const PatchSamplerOptions& sampler,
                                                      std::shared_ptr<std::vector<SamplingCase>> cases);
  // After backward (gradients unscaled under fp16), before clipping and the optimizer step: data parallel all-reduces
  // (averages) the gradients of parameters() here, and the loss terms with them (samples: the patches of this
  // process's batch, 0 for a rank without any in an epoch's last step: it has no gradients then).
  virtual void after_backward(LossTerms& terms, int64_t samples) {}
  // The validation cases this process evaluates (indices into the validation cases): all of them.
  virtual std::vector<size_t> validation_share() const;
  // Data parallel: sums each field over the ranks.
  virtual void reduce_validation(ValidationSums&) {}
  // Whether this process writes checkpoints and sends events (data parallel: rank 0 only).
  virtual bool writes_files() const { return true; }

  // ---- the loss: one function for training steps and validation (add terms in losses.h's TrainingLoss)
  virtual LossTerms compute_loss(const LossInputs& inputs) const;

  // ---- what the hooks may use
  const TrainerOptions& options() const { return options_; }
  const std::vector<at::Tensor>& parameters() const { return parameters_; }
  const torch::Device& device() const { return device_; }
  TrainingLoopState& state() { return state_; }
  void emit(const std::string& json) const;
  // Whether to stop (data parallel: what the ranks agreed on at the last reduction, so that they stop together).
  virtual bool cancelled() const;
  bool cancel_requested() const;  // this process's own request (Ctrl-C, AbortSignal)

 private:
  struct StepValues {
    double total, mse, grad, neg;
    std::array<double, 4> extra{};  // as TrainingLoopState::sum_extra
  };
  void validate_settings() const;
  void prepare();
  void prepare_model();
  void prepare_optimizer(TensorMap saved_optimizer);
  StepValues train_step(const PatchBatch& batch, int64_t epoch, double lr);
  StepValues optimizer_step(const LossTerms& terms, int64_t epoch, double lr);
  // Trains the rest of state_.epoch; false when cancelled (last is written).
  bool train_epoch(int64_t epoch, double lr, double& voxels, double& step_seconds, double& data_wait_seconds);
  std::optional<ValidationSums> validate(int64_t epoch);
  void save_checkpoint(const std::string& path, int64_t epoch, double val_mae) const;
  void keep_previous_last() const;
  void save_checkpoints(int64_t epoch_number, double val_mae);
  void save_last_on_cancel(int64_t epoch);
  TrainResult finish(const std::string& reason, int64_t epochs_run) const;
  [[noreturn]] void not_finite(const std::string& what, int64_t epoch, double lr, const std::string& hint) const;

  const std::vector<TrainingCase>& train_cases_;
  const std::vector<TrainingCase>& val_cases_;
  TrainerOptions options_;
  TrainerCallbacks callbacks_;

  torch::Device device_{torch::kCPU};
  std::string precision_;
  bool mixed_ = false;
  at::ScalarType autocast_dtype_ = at::kBFloat16;
  std::string last_path_;

  UNetConfig config_;
  BaselineUNet3D model_{nullptr};
  std::vector<at::Tensor> parameters_;
  std::vector<std::string> parameter_names_;
  std::unique_ptr<MultiTensorAdamW> optimizer_;
  int64_t parameter_count_ = 0;

  std::unique_ptr<TrainingLoss> loss_;
  std::unique_ptr<PatchLoader> loader_;
  int64_t steps_ = 0;
  SlidingWindowOptions window_;
  TrainingLoopState state_;
};

// Trainer(...).run(): the single-process trainer; with options.distributed.world_size > 1, this process's rank of
// data-parallel training (train_data_parallel, distributed.h).
TrainResult train_model(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases,
                        const TrainerOptions& options, const TrainerCallbacks& callbacks);

}  // namespace vmat
