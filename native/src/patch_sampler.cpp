#include "vmat/patch_sampler.h"

#include <algorithm>
#include <random>

#include "vmat/error.h"
#include "vmat/sliding_window.h"

namespace vmat {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Independent stream per (seed, epoch, index): no state to carry between epochs or threads.
std::mt19937_64 stream(uint64_t seed, int64_t epoch, int64_t index) {
  return std::mt19937_64(splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(index)));
}

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
int64_t uniform_int(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

}  // namespace

SamplingCase prepare_sampling_case(const TrainingCase& source, int64_t patch, double hot_threshold, double normalisation_dose_gy) {
  require(source.input.dim() == 4 && source.dose.dim() == 3, "case " + source.id + ": input must be [C,Z,Y,X] and dose [Z,Y,X]");
  SamplingCase prepared;
  prepared.input = pad_model_input(source.input.to(torch::kFloat), patch).contiguous();
  const int64_t z = prepared.input.size(1), y = prepared.input.size(2), x = prepared.input.size(3);
  prepared.dose = torch::zeros({z, y, x}, torch::kFloat);
  prepared.dose.slice(0, 0, source.dose.size(0)).slice(1, 0, source.dose.size(1)).slice(2, 0, source.dose.size(2)).copy_(source.dose.to(torch::kFloat) / normalisation_dose_gy);
  prepared.constraints = source.constraints.to(torch::kFloat).contiguous();
  const float* dose = prepared.dose.data_ptr<float>();
  const int64_t count = prepared.dose.numel();
  require(count < (int64_t{1} << 31), "case " + source.id + " is too large to sample from");
  for (int64_t i = 0; i < count; ++i) {
    if (dose[i] > hot_threshold) prepared.hot_voxels.push_back(static_cast<int32_t>(i));
  }
  return prepared;
}

PatchPlan plan_patch(const std::vector<SamplingCase>& cases, const PatchSamplerOptions& options, int64_t epoch, int64_t index) {
  auto rng = stream(options.seed, epoch, index + 1);
  PatchPlan plan;
  plan.case_index = index / options.patches_per_volume;
  const auto& source = cases[plan.case_index];
  const int64_t p = options.patch;
  const std::array<int64_t, 3> size{source.dose.size(0), source.dose.size(1), source.dose.size(2)};
  const bool hot = !source.hot_voxels.empty() && uniform01(rng) < options.hot_probability;
  if (hot) {
    int64_t voxel = source.hot_voxels[uniform_int(rng, 0, static_cast<int64_t>(source.hot_voxels.size()) - 1)];
    const std::array<int64_t, 3> centre{voxel / (size[1] * size[2]), (voxel / size[2]) % size[1], voxel % size[2]};
    for (int a = 0; a < 3; ++a) plan.origin[a] = std::clamp<int64_t>(centre[a] - p / 2, 0, size[a] - p);
  } else {
    for (int a = 0; a < 3; ++a) plan.origin[a] = uniform_int(rng, 0, size[a] - p);
  }
  if (options.augment) {
    plan.flip_x = uniform01(rng) < options.flip_probability;
    if (uniform01(rng) < options.shift_probability) {
      for (int a = 0; a < 3; ++a) plan.shift[a] = uniform_int(rng, -options.max_shift, options.max_shift);
    }
  }
  return plan;
}

void cut_patch(const SamplingCase& source, const PatchPlan& plan, const PatchSamplerOptions& options, at::Tensor input, at::Tensor dose) {
  const int64_t p = options.patch;
  const int64_t channels = source.input.size(0);
  const int64_t sy = source.input.size(2), sx = source.input.size(3);
  const int64_t volume = source.input.size(1) * sy * sx;
  // Per-axis source index of each output position: translated content, edge fill, x reversed by the flip.
  std::array<std::vector<int64_t>, 3> index;
  for (int a = 0; a < 3; ++a) {
    index[a].resize(p);
    for (int64_t i = 0; i < p; ++i) index[a][i] = plan.origin[a] + std::clamp<int64_t>(i - plan.shift[a], 0, p - 1);
  }
  const float* in = source.input.data_ptr<float>();
  const float* dose_in = source.dose.data_ptr<float>();
  float* out = input.data_ptr<float>();
  float* dose_out = dose.data_ptr<float>();
  // Along x (the contiguous axis) the source is a run of consecutive voxels between two edge fills: copy it as a
  // block (reversed under the flip) rather than voxel by voxel.
  const int64_t t = std::clamp<int64_t>(plan.shift[2], -(p - 1), p - 1);
  const int64_t run_start = std::max<int64_t>(0, t), run_end = std::min<int64_t>(p, p + t);  // output range of the run
  const int64_t first_x = plan.origin[2] + std::max<int64_t>(0, -t), last_x = plan.origin[2] + p - 1 - std::max<int64_t>(0, t);
  auto copy_channel = [&](const float* src, float* dst) {
    for (int64_t z = 0; z < p; ++z) {
      for (int64_t y = 0; y < p; ++y) {
        const float* row = src + (index[0][z] * sy + index[1][y]) * sx;
        float* target = dst + (z * p + y) * p;
        std::fill(target, target + run_start, row[first_x]);
        std::copy(row + first_x, row + last_x + 1, target + run_start);
        std::fill(target + run_end, target + p, row[last_x]);
        if (plan.flip_x) std::reverse(target, target + p);
      }
    }
  };
  std::vector<int64_t> source_channel(channels);
  for (int64_t c = 0; c < channels; ++c) source_channel[c] = c;
  if (plan.flip_x) {
    for (const auto& [a, b] : options.left_right_pairs) {
      require(a >= 0 && a < channels && b >= 0 && b < channels, "a left-right pair names a channel outside the input's " + std::to_string(channels));
      std::swap(source_channel[a], source_channel[b]);
    }
  }
  for (int64_t c = 0; c < channels; ++c) copy_channel(in + source_channel[c] * volume, out + c * p * p * p);
  copy_channel(dose_in, dose_out);
}

PatchLoader::PatchLoader(std::shared_ptr<const std::vector<SamplingCase>> cases, PatchSamplerOptions options)
    : cases_(std::move(cases)), options_(options) {
  require(!cases_->empty(), "there are no training cases to sample patches from");
  require(options_.batch_size >= 1 && options_.patches_per_volume >= 1 && options_.workers >= 1 && options_.world_size >= 1 &&
              options_.rank >= 0 && options_.rank < options_.world_size,
          "invalid patch loader settings");
}

PatchLoader::~PatchLoader() { stop(); }

int64_t PatchLoader::patches_per_epoch() const { return static_cast<int64_t>(cases_->size()) * options_.patches_per_volume; }

int64_t PatchLoader::steps_per_epoch() const {
  const int64_t global_batch = options_.batch_size * options_.world_size;
  return (patches_per_epoch() + global_batch - 1) / global_batch;
}

void PatchLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

void PatchLoader::start_epoch(int64_t epoch, int64_t first_step) {
  stop();
  order_.resize(patches_per_epoch());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
  auto rng = stream(options_.seed, epoch, 0);
  std::shuffle(order_.begin(), order_.end(), rng);
  epoch_ = epoch;
  next_claim_ = next_take_ = first_step;
  end_step_ = steps_per_epoch();
  stopping_ = false;
  error_ = nullptr;
  ready_.clear();
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { work(); });
}

PatchBatch PatchLoader::make_batch(int64_t step) const {
  const int64_t size = static_cast<int64_t>(order_.size());
  const int64_t first = std::min<int64_t>((step * options_.world_size + options_.rank) * options_.batch_size, size);
  const int64_t last = std::min<int64_t>(first + options_.batch_size, size);
  const int64_t p = options_.patch;
  const int64_t channels = (*cases_)[0].input.size(0);
  const auto options = torch::TensorOptions().dtype(torch::kFloat).pinned_memory(options_.pin_memory);
  PatchBatch batch;
  batch.input = torch::empty({last - first, channels, p, p, p}, options);
  batch.dose = torch::empty({last - first, 1, p, p, p}, options);
  batch.constraints = torch::empty({last - first, (*cases_)[0].constraints.numel()}, options);
  for (int64_t i = first; i < last; ++i) {
    const auto plan = plan_patch(*cases_, options_, epoch_, order_[i]);
    const auto& source = (*cases_)[plan.case_index];
    cut_patch(source, plan, options_, batch.input[i - first], batch.dose[i - first][0]);
    batch.constraints[i - first].copy_(source.constraints);
  }
  return batch;
}

void PatchLoader::work() {
  // Each worker owns whole batches; at most `workers + 1` batches wait, bounding memory.
  const int64_t depth = options_.workers + 1;
  while (true) {
    int64_t step;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || next_claim_ >= end_step_ || next_claim_ < next_take_ + depth; });
      if (stopping_ || next_claim_ >= end_step_) return;
      step = next_claim_++;
    }
    try {
      auto batch = make_batch(step);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(step, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    changed_.notify_all();
  }
}

PatchBatch PatchLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  require(next_take_ < end_step_, "the patch loader has no more batches in this epoch");
  changed_.wait(lock, [&] { return error_ || ready_.count(next_take_) > 0; });
  if (error_) std::rethrow_exception(error_);
  auto batch = std::move(ready_[next_take_]);
  ready_.erase(next_take_);
  ++next_take_;
  lock.unlock();
  changed_.notify_all();
  return batch;
}

}  // namespace vmat
