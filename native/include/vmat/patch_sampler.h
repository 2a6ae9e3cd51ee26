#pragma once
// Training patches (spec/training.md, "Patch sampling", "Augmentation"): per epoch, `patches_per_volume` cubic patches
// per training case, in a shuffled order, cut, augmented and batched on background threads while the model steps.
// Every random choice of patch j of epoch e comes from its own generator seeded by (seed, e, j), so the batches are
// the same whatever the number of threads, and an epoch can restart at any step (exact resume).
#include <torch/torch.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vmat {

struct TrainingCase {
  std::string id;
  at::Tensor input;        // [C, Z, Y, X] float32: normalised CT + SDF channels
  at::Tensor dose;         // [Z, Y, X] float32, Gy
  at::Tensor constraints;  // [cond_dim] float32: the conditioning (constraint) vector
  at::Tensor body;         // [Z, Y, X] uint8 (validation metrics)
  at::Tensor ptv70;        // [Z, Y, X] uint8, undefined when the case has no PTV70 (validation metrics)
};

// A case ready for sampling: padded up to the patch size, with the voxels above the dose threshold listed.
struct SamplingCase {
  at::Tensor input;                 // [C, Z', Y', X'] contiguous float32, Z' >= patch ...
  at::Tensor dose;                  // [Z', Y', X'] contiguous float32, dose / normalisation dose
  at::Tensor constraints;           // [cond_dim]
  std::vector<int32_t> hot_voxels;  // flat indices with dose > hot_threshold
};

struct PatchSamplerOptions {
  int64_t patch = 128;
  int64_t patches_per_volume = 4;
  int64_t batch_size = 2;
  uint64_t seed = 42;
  double hot_probability = 0.5;  // centre on a voxel above the threshold with this probability
  double hot_threshold = 0.1;    // of the normalisation dose
  bool augment = true;
  double flip_probability = 0.5;
  double shift_probability = 0.5;
  int64_t max_shift = 16;
  // Pairs of input channels that swap under the x flip (left and right structures, e.g. the femoral heads).
  std::vector<std::array<int64_t, 2>> left_right_pairs;
  int workers = 2;
  // Page-locked batches, for training on CUDA: their host-to-device copies run asynchronously (non_blocking) instead
  // of blocking the training thread. Needs a libtorch with CUDA.
  bool pin_memory = false;
  // Data parallel: each step's global batch is batch_size × world_size patches of the epoch's order, and this process
  // cuts the rank-th batch_size of them (fewer, or none, in an epoch's last step), so that the ranks together see
  // exactly the patches one process with batch batch_size × world_size sees.
  int64_t rank = 0;
  int64_t world_size = 1;
};

struct PatchBatch {
  at::Tensor input;        // [B, C, p, p, p]
  at::Tensor dose;         // [B, 1, p, p, p]
  at::Tensor constraints;  // [B, cond_dim]
};

// Where and how one patch is cut: the window origin in the padded volume, the translation, the flip.
struct PatchPlan {
  int64_t case_index = 0;
  std::array<int64_t, 3> origin{};
  std::array<int64_t, 3> shift{};
  bool flip_x = false;
};

// hot_threshold is a fraction of the normalisation dose.
SamplingCase prepare_sampling_case(const TrainingCase& source, int64_t patch, double hot_threshold, double normalisation_dose_gy);

// The plan of patch `index` of `epoch` (pure function of the seed, the epoch and the index).
PatchPlan plan_patch(const std::vector<SamplingCase>& cases, const PatchSamplerOptions& options, int64_t epoch, int64_t index);

// Cuts a planned patch into `input` [C, p, p, p] and `dose` [p, p, p] (contiguous float32, preallocated). A translation
// by t moves the content by t voxels and fills the uncovered side with the patch's edge values.
void cut_patch(const SamplingCase& source, const PatchPlan& plan, const PatchSamplerOptions& options, at::Tensor input, at::Tensor dose);

class PatchLoader {
 public:
  PatchLoader(std::shared_ptr<const std::vector<SamplingCase>> cases, PatchSamplerOptions options);
  ~PatchLoader();
  PatchLoader(const PatchLoader&) = delete;
  PatchLoader& operator=(const PatchLoader&) = delete;

  int64_t patches_per_epoch() const;
  int64_t steps_per_epoch() const;
  // Starts the background production of the batches of `epoch`, from `first_step` on.
  void start_epoch(int64_t epoch, int64_t first_step);
  // The next batch of the epoch, in order (blocks until it is ready). Rethrows a worker's error.
  PatchBatch next();

 private:
  void stop();
  void work();
  PatchBatch make_batch(int64_t step) const;

  std::shared_ptr<const std::vector<SamplingCase>> cases_;
  PatchSamplerOptions options_;
  std::vector<int64_t> order_;  // shuffled patch indices of the current epoch
  int64_t epoch_ = 0;
  int64_t next_claim_ = 0;      // next step a worker may start
  int64_t next_take_ = 0;       // next step next() returns
  int64_t end_step_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::map<int64_t, PatchBatch> ready_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::thread> threads_;
};

}  // namespace vmat
