#include "vmat/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <unistd.h>

#include "vmat/checkpoint.h"
#include "vmat/distributed.h"
#include "vmat/error.h"
#include "vmat/optim.h"
#include "vmat/runtime.h"
#include "vmat/sliding_window.h"
#include "vmat/unet.h"

namespace vmat {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string format_double(double value, const char* format = "%.17g") {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

// A flat JSON object for progress events (non-finite numbers become null).
class JsonEvent {
 public:
  explicit JsonEvent(const char* type) { text_ = std::string("{\"type\":\"") + type + "\""; }
  JsonEvent& number(const char* key, double value) {
    text_ += std::string(",\"") + key + "\":" + (std::isfinite(value) ? format_double(value, "%.10g") : "null");
    return *this;
  }
  JsonEvent& integer(const char* key, int64_t value) {
    text_ += std::string(",\"") + key + "\":" + std::to_string(value);
    return *this;
  }
  JsonEvent& boolean(const char* key, bool value) {
    text_ += std::string(",\"") + key + "\":" + (value ? "true" : "false");
    return *this;
  }
  JsonEvent& string(const char* key, const std::string& value) {
    text_ += std::string(",\"") + key + "\":\"";
    for (char c : value) {
      if (c == '"' || c == '\\') text_ += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        text_ += ' ';
        continue;
      }
      text_ += c;
    }
    text_ += '"';
    return *this;
  }
  std::string str() const { return text_ + "}"; }

 private:
  std::string text_;
};

// The loss terms after the first three: each one's switch, its value, the epoch event's key and the training state's.
struct ExtraTerm {
  bool LossConfig::*on;
  at::Tensor LossTerms::*value;
  const char* event;
  const char* state;
};
const ExtraTerm kExtraTerms[4] = {
    {&LossConfig::use_vgg_loss, &LossTerms::vgg, "trainVgg", "sum_vgg"},
    {&LossConfig::use_structure_weighted, &LossTerms::structure_weighted, "trainStructureWeighted", "sum_structure_weighted"},
    {&LossConfig::use_asymmetric_ptv, &LossTerms::asymmetric_ptv, "trainAsymmetricPtv", "sum_asymmetric_ptv"},
    {&LossConfig::use_dvh_loss, &LossTerms::dvh, "trainDvh", "sum_dvh"},
};

// patches_per_step: the global batch (batch × world size) that `step` counts in, so that a run resumes with another
// number of ranks.
Metadata state_metadata(const TrainingLoopState& state, const LossConfig& loss, int64_t patches_per_step) {
  Metadata metadata;
  metadata["patches_per_step"] = std::to_string(patches_per_step);
  metadata["format"] = "vmat-native-training-state-1";
  metadata["epoch"] = std::to_string(state.epoch);
  metadata["step"] = std::to_string(state.step);
  metadata["sum_total"] = format_double(state.sum_total);
  metadata["sum_mse"] = format_double(state.sum_mse);
  metadata["sum_grad"] = format_double(state.sum_grad);
  metadata["sum_neg"] = format_double(state.sum_neg);
  // Only the terms that are on, so that a run without them writes the state files it wrote before they existed.
  for (size_t i = 0; i < 4; ++i) {
    if (loss.*kExtraTerms[i].on) metadata[kExtraTerms[i].state] = format_double(state.sum_extra[i]);
  }
  metadata["steps_done"] = std::to_string(state.steps_done);
  metadata["best_val_mae_gy"] = format_double(state.best_val_mae);
  metadata["best_epoch"] = std::to_string(state.best_epoch);
  metadata["epochs_without_improvement"] = std::to_string(state.epochs_without_improvement);
  std::string best;
  for (const auto& entry : state.best) {
    if (!best.empty()) best += ";";
    best += std::to_string(entry.epoch) + "|" + format_double(entry.val_mae_gy) + "|" + fs::path(entry.path).filename().string();
  }
  metadata["best_checkpoints"] = best;
  metadata["loss_scale"] = format_double(state.loss_scale);
  metadata["scale_growth_tracker"] = std::to_string(state.scale_growth_tracker);
  return metadata;
}

std::string need(const Metadata& metadata, const std::string& key, const std::string& path) {
  auto found = metadata.find(key);
  if (found == metadata.end()) throw Error(ErrorCode::InvalidInput, "the training state " + path + " has no '" + key + "' entry; it cannot be resumed");
  return found->second;
}

TrainingLoopState parse_state(const Metadata& metadata, const std::string& path, const std::string& checkpoint_dir) {
  require(metadata.count("format") && metadata.at("format") == "vmat-native-training-state-1",
          "the file " + path + " is not a vmat-native training state");
  TrainingLoopState state;
  try {
    state.epoch = std::stoll(need(metadata, "epoch", path));
    state.step = std::stoll(need(metadata, "step", path));
    state.sum_total = std::stod(need(metadata, "sum_total", path));
    state.sum_mse = std::stod(need(metadata, "sum_mse", path));
    state.sum_grad = std::stod(need(metadata, "sum_grad", path));
    state.sum_neg = std::stod(need(metadata, "sum_neg", path));
    for (size_t i = 0; i < 4; ++i) {
      const auto found = metadata.find(kExtraTerms[i].state);
      if (found != metadata.end()) state.sum_extra[i] = std::stod(found->second);
    }
    state.steps_done = std::stoll(need(metadata, "steps_done", path));
    state.best_val_mae = std::stod(need(metadata, "best_val_mae_gy", path));
    state.best_epoch = std::stoll(need(metadata, "best_epoch", path));
    state.epochs_without_improvement = std::stoll(need(metadata, "epochs_without_improvement", path));
    state.loss_scale = std::stod(need(metadata, "loss_scale", path));
    state.scale_growth_tracker = std::stoll(need(metadata, "scale_growth_tracker", path));
    std::stringstream list(need(metadata, "best_checkpoints", path));
    std::string item;
    while (std::getline(list, item, ';')) {
      const auto a = item.find('|'), b = item.rfind('|');
      require(a != std::string::npos && b > a, "the training state " + path + " has a malformed best_checkpoints entry");
      state.best.push_back({std::stoll(item.substr(0, a)), std::stod(item.substr(a + 1, b - a - 1)),
                            (fs::path(checkpoint_dir) / item.substr(b + 1)).string()});
    }
  } catch (const std::logic_error&) {
    throw Error(ErrorCode::InvalidInput, "the training state " + path + " holds a value that is not a number; it cannot be resumed");
  }
  return state;
}

std::string state_path_of(const std::string& checkpoint) {
  const std::string suffix = ".safetensors";
  return checkpoint.substr(0, checkpoint.size() - suffix.size()) + ".state.safetensors";
}

bool finite(double value) { return std::isfinite(value); }

// The weights and the state of a checkpoint carry the same random token: a pair written by two different saves (a
// process killed between the two renames) is told apart from a whole one. Files without it predate the token.
constexpr const char* kPairKey = "checkpoint_pair";

std::string new_pair_token(int64_t epoch, int64_t step) {
  std::random_device random;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%08x%08x-e%lld-s%lld", random(), random(), static_cast<long long>(epoch), static_cast<long long>(step));
  return buffer;
}

std::string pair_token(const std::string& path) {
  const auto metadata = read_safetensors_metadata(path);
  const auto found = metadata.find(kPairKey);
  return found == metadata.end() ? std::string() : found->second;
}

// Both files there, with the same token.
bool whole_pair(const std::string& weights) {
  const auto state = state_path_of(weights);
  if (!fs::exists(weights) || !fs::exists(state)) return false;
  try {
    return pair_token(weights) == pair_token(state);
  } catch (const Error&) {
    return false;
  }
}

// `to` becomes a copy of `from` in one rename (a hard link where the file system has them).
void replace_with_copy(const std::string& from, const std::string& to) {
  // Named as every temporary of vmat-native is (.name.<pid>.<random>.tmp), so that a later run removes a leftover.
  char random_part[16];
  std::snprintf(random_part, sizeof random_part, "%08x", static_cast<unsigned>(std::random_device{}()));
  const fs::path target(to);
  const std::string temporary =
      (target.parent_path() / ("." + target.filename().string() + "." + std::to_string(::getpid()) + "." + random_part + ".tmp")).string();
  std::error_code error;
  fs::remove(temporary, error);
  fs::create_hard_link(from, temporary, error);
  try {
    if (error) fs::copy_file(from, temporary, fs::copy_options::overwrite_existing);
    fs::rename(temporary, to);
  } catch (const fs::filesystem_error& failure) {
    fs::remove(temporary, error);
    throw Error(ErrorCode::Io, "cannot write " + to + ": " + failure.code().message());
  }
}

}  // namespace

double cosine_lr(double lr, double min_lr, int64_t epochs, int64_t epoch) {
  if (epochs <= 0) return lr;
  return min_lr + (lr - min_lr) * (1.0 + std::cos(M_PI * static_cast<double>(epoch) / static_cast<double>(epochs))) / 2.0;
}

std::string best_checkpoint_name(int64_t epoch, double val_mae_gy) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "best-epoch=%03lld-val_mae_gy=%.3f.safetensors", static_cast<long long>(epoch), val_mae_gy);
  return buffer;
}


// ------------------------------------------------------------------------------------------------ Trainer

Trainer::Trainer(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases, TrainerOptions options,
                 TrainerCallbacks callbacks)
    : train_cases_(train_cases), val_cases_(val_cases), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

Trainer::~Trainer() = default;

void Trainer::emit(const std::string& json) const {
  if (writes_files() && callbacks_.emit) callbacks_.emit(json);
}

bool Trainer::cancel_requested() const { return callbacks_.cancelled && callbacks_.cancelled(); }

bool Trainer::cancelled() const { return cancel_requested(); }

void Trainer::validate_settings() const {
  require(!train_cases_.empty(), "there are no training cases");
  require(!val_cases_.empty(), "there are no validation cases (validation picks the best checkpoint)");
  require(options_.epochs >= 1 && options_.batch_size >= 1 && options_.patches_per_volume >= 1, "epochs, batch size and patches per volume must be >= 1");
  require(options_.patch_size >= 16 && options_.patch_size % 16 == 0, "the patch size must be a multiple of 16, got " + std::to_string(options_.patch_size));
  require(options_.cond_dim >= 1, "the conditioning length condDim must be >= 1, got " + std::to_string(options_.cond_dim));
  require(!options_.checkpoint_dir.empty(), "the checkpoint folder is not set");
  std::vector<int> paired(static_cast<size_t>(std::max<int64_t>(0, options_.in_channels)), 0);
  for (const auto& pair : options_.left_right_pairs) {
    for (const auto channel : pair) {
      require(channel >= 0 && channel < options_.in_channels, "the left-right pair [" + std::to_string(pair[0]) + ", " + std::to_string(pair[1]) +
                                                                  "] names a channel outside the model's " + std::to_string(options_.in_channels) + " input channels");
      require(++paired[channel] == 1, "channel " + std::to_string(channel) + " is in more than one left-right pair (or paired with itself)");
    }
  }
  for (const auto* set : {&train_cases_, &val_cases_}) {
    for (const auto& item : *set) {
      require(item.input.dim() == 4 && item.input.size(0) == options_.in_channels,
              "case " + item.id + " has " + std::to_string(item.input.dim() == 4 ? item.input.size(0) : 0) +
                  " input channels, the model expects " + std::to_string(options_.in_channels));
      require(item.dose.defined(), "case " + item.id + " has no dose to train or validate on");
      require(item.constraints.defined() && item.constraints.numel() == options_.cond_dim,
              "case " + item.id + " has " + std::to_string(item.constraints.defined() ? item.constraints.numel() : 0) +
                  " conditioning values, the model expects condDim = " + std::to_string(options_.cond_dim));
    }
  }
}

// ---------------------------------------------------------------- prepare: device, model, optimizer, loader

void Trainer::prepare() {
  device_ = torch::Device(resolve_device(options_.device));
  // Patch shapes are fixed for the whole run: let cuDNN pick the fastest convolution algorithms once.
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  precision_ = options_.precision;
  if (precision_ == "auto") {
    precision_ = "fp32";
    if (device_.is_cuda()) {
      precision_ = "bf16";
      for (const auto& info : runtime_info().devices) {
        if (info.index == device_.index() && info.compute_major > 0 && info.compute_major < 8) precision_ = "fp16";
      }
    }
  }
  require(precision_ == "fp32" || precision_ == "bf16" || precision_ == "fp16", "precision '" + precision_ + "' is not auto, fp32, bf16 or fp16");
  require(precision_ == "fp32" || device_.is_cuda(), "precision " + precision_ + " needs a CUDA device; on the CPU use fp32 (or auto)");
  mixed_ = precision_ != "fp32";
  autocast_dtype_ = precision_ == "fp16" ? at::kHalf : at::kBFloat16;

  // Checks the loss settings and loads the VGG16 weights before anything is written.
  loss_ = std::make_unique<TrainingLoss>(options_.loss, device_);
  if (writes_files()) fs::create_directories(options_.checkpoint_dir);
  last_path_ = (fs::path(options_.checkpoint_dir) / "last.safetensors").string();
  prepare_model();

  PatchSamplerOptions sampler;
  sampler.patch = options_.patch_size;
  sampler.patches_per_volume = options_.patches_per_volume;
  sampler.batch_size = options_.batch_size;
  sampler.seed = options_.seed;
  sampler.left_right_pairs = options_.left_right_pairs;
  sampler.workers = std::max(1, options_.num_workers);
  sampler.pin_memory = device_.is_cuda();
  auto sampling_cases = std::make_shared<std::vector<SamplingCase>>();
  for (const auto& item : train_cases_) {
    sampling_cases->push_back(prepare_sampling_case(item, options_.patch_size, 0.1, options_.normalisation_dose_gy));
  }
  loader_ = prepare_loader(sampler, sampling_cases);
  steps_ = loader_->steps_per_epoch();

  window_.patch = options_.patch_size;
  window_.overlap = options_.overlap;
  window_.batch = options_.sw_batch;
  window_.device = device_;
  window_.autocast = mixed_;
  window_.autocast_dtype = autocast_dtype_;
}

std::unique_ptr<PatchLoader> Trainer::prepare_loader(const PatchSamplerOptions& sampler, std::shared_ptr<std::vector<SamplingCase>> cases) {
  return std::make_unique<PatchLoader>(std::move(cases), sampler);
}

void Trainer::prepare_model() {
  torch::manual_seed(options_.seed);
  config_.in_channels = options_.in_channels;
  config_.base_channels = options_.base_channels;
  config_.cond_dim = options_.cond_dim;
  config_.validate();
  model_ = BaselineUNet3D(config_);
  TensorMap saved_optimizer;
  if (options_.resume) {
    const auto from = options_.resume_from.empty() ? last_path_ : options_.resume_from;
    const auto state_path = state_path_of(from);
    require(fs::exists(from) && fs::exists(state_path), "cannot resume: " + from + " and its .state.safetensors are not both there");
    require(pair_token(from) == pair_token(state_path), "cannot resume: " + from + " and " + state_path +
                                                            " are not from the same save (the process was stopped between writing them)");
    auto loaded = load_model(from, torch::kCPU);
    require(loaded.config == config_, "cannot resume: " + from + " holds a model of another configuration (" + loaded.config.to_json() +
                                          ") than the settings ask for (" + config_.to_json() + ")");
    model_ = loaded.model;
    auto saved = load_tensors(state_path);
    state_ = parse_state(saved.metadata, state_path, options_.checkpoint_dir);
    // Stopped mid-epoch with another global batch (another number of ranks or batch size): continue at the first
    // step of this run's batches that does not start past the patches already trained (states written before
    // data-parallel training counted in steps of the batch size).
    const auto found = saved.metadata.find("patches_per_step");
    int64_t saved_per_step = options_.batch_size;
    try {
      if (found != saved.metadata.end()) saved_per_step = std::stoll(found->second);
    } catch (const std::logic_error&) {
      throw Error(ErrorCode::InvalidInput, "the training state " + state_path + " holds a patches_per_step that is not a number; it cannot be resumed");
    }
    const int64_t per_step = options_.batch_size * options_.distributed.world_size;
    if (saved_per_step != per_step && saved_per_step > 0) state_.step = state_.step * saved_per_step / per_step;
    saved_optimizer = std::move(saved.tensors);
  }
  model_->to(device_);
  for (const auto& item : model_->named_parameters()) {
    parameter_names_.push_back(item.key());
    parameters_.push_back(item.value());
  }
  prepare_optimizer(std::move(saved_optimizer));
  parameter_count_ = count_parameters(*model_);
}

void Trainer::prepare_optimizer(TensorMap saved) {
  optimizer_ = std::make_unique<MultiTensorAdamW>(parameters_, torch::optim::AdamWOptions(options_.lr)
                                                                   .betas({options_.beta1, options_.beta2})
                                                                   .weight_decay(options_.weight_decay)
                                                                   .eps(1e-8));
  if (!options_.resume) return;
  auto& optimizer_state = optimizer_->state();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& name = parameter_names_[i];
    auto avg = saved.find("exp_avg." + name);
    auto avg_sq = saved.find("exp_avg_sq." + name);
    auto step = saved.find("step." + name);
    if (avg == saved.end() || avg_sq == saved.end() || step == saved.end()) continue;
    auto param_state = std::make_unique<torch::optim::AdamWParamState>();
    param_state->step(step->second.item<int64_t>());
    param_state->exp_avg(avg->second.to(device_, torch::kFloat).clone());
    param_state->exp_avg_sq(avg_sq->second.to(device_, torch::kFloat).clone());
    optimizer_state[state_key(optimizer_state, parameters_[i])] = std::move(param_state);
  }
  auto rng = saved.find("rng.torch_cpu");
  if (rng != saved.end()) {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(rng->second);
  }
}

// ---------------------------------------------------------------- the loss

LossTerms Trainer::compute_loss(const LossInputs& inputs) const { return (*loss_)(inputs.prediction, inputs.target, inputs.input, inputs.step); }

// ---------------------------------------------------------------- train step, after backward, optimizer step

Trainer::StepValues Trainer::train_step(const PatchBatch& batch, int64_t epoch, double lr) {
  optimizer_->zero_grad();
  const int64_t samples = batch.input.size(0);
  if (samples == 0) {
    // A rank without patches in an epoch's last step (data parallel) still joins the step's reduction.
    LossTerms terms;
    terms.total = terms.mse = terms.grad = terms.neg = torch::zeros({}, torch::TensorOptions().device(device_));
    after_backward(terms, 0);
    return optimizer_step(terms, epoch, lr);
  }
  auto input = batch.input.to(device_, /*non_blocking=*/true);
  auto target = batch.dose.to(device_, true);
  auto constraints = batch.constraints.to(device_, true);
  at::Tensor prediction;
  with_autocast(mixed_, device_, autocast_dtype_, [&] { prediction = model_->forward(input, constraints); });
  auto terms = compute_loss({prediction.to(torch::kFloat), target, input, constraints, epoch * steps_ + state_.step});
  if (precision_ == "fp16") {
    (terms.total * state_.loss_scale).backward();
    torch::NoGradGuard no_grad;
    for (auto& parameter : parameters_) {
      if (parameter.grad().defined()) parameter.grad().div_(state_.loss_scale);
    }
  } else {
    terms.total.backward();
  }
  after_backward(terms, samples);
  return optimizer_step(terms, epoch, lr);
}

void Trainer::not_finite(const std::string& what, int64_t epoch, double lr, const std::string& hint) const {
  throw Error(ErrorCode::NotFinite, "training stopped: the " + what + " at epoch " + std::to_string(epoch + 1) + ", step " +
                                        std::to_string(state_.step + 1) + " of " + std::to_string(steps_) + " (learning rate " + format_double(lr, "%.3g") + "); " +
                                        (fs::exists(last_path_) ? "checkpoints/last.safetensors keeps the end of the last good epoch"
                                                                : "no epoch completed, so there is no checkpoint") +
                                        ". " + hint);
}

Trainer::StepValues Trainer::optimizer_step(const LossTerms& terms, int64_t epoch, double lr) {
  const double max_norm = options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
  const auto gradient_norm = clip_grad_norm(parameters_, max_norm);
  // One read back to the host per step (each one stalls the device until all queued work is done): the loss terms
  // and the gradient norm together, after backward.
  std::vector<at::Tensor> read_back{terms.total.detach(), terms.mse.detach(), terms.grad.detach(), terms.neg.detach(),
                                    gradient_norm.to(terms.total.device(), torch::kFloat)};
  for (const auto& term : kExtraTerms) {
    if (options_.loss.*term.on) read_back.push_back((terms.*term.value).detach());
  }
  const auto scalars = torch::stack(read_back).to(torch::kCPU, torch::kDouble);
  const double* values = scalars.data_ptr<double>();
  const double total = values[0], norm = values[4];
  if (!finite(total)) {
    not_finite(std::string("loss became ") + (std::isnan(total) ? "NaN" : "infinite"), epoch, lr, "Try a lower lr or precision fp32");
  }
  bool stepped = true;
  if (precision_ == "fp16") {
    // Dynamic loss scaling (as torch.cuda.amp.GradScaler): skip the step on overflow and halve the scale.
    if (!finite(norm)) {
      stepped = false;
      state_.loss_scale /= 2.0;
      state_.scale_growth_tracker = 0;
    } else if (++state_.scale_growth_tracker >= 2000) {
      state_.loss_scale *= 2.0;
      state_.scale_growth_tracker = 0;
    }
  } else if (!finite(norm)) {
    not_finite("gradient became NaN or infinite", epoch, lr, "Try a lower lr");
  }
  if (stepped) optimizer_->step();
  StepValues result{total, values[1], values[2], values[3]};
  for (size_t i = 0, next = 5; i < 4; ++i) {
    if (options_.loss.*kExtraTerms[i].on) result.extra[i] = values[next++];
  }
  return result;
}

bool Trainer::train_epoch(int64_t epoch, double lr, double& voxels, double& step_seconds, double& data_wait_seconds) {
  const double patch_voxels = std::pow(static_cast<double>(options_.patch_size), 3);
  if (state_.step < steps_) loader_->start_epoch(epoch, state_.step);
  for (; state_.step < steps_; ++state_.step) {
    const auto step_start = Clock::now();
    auto batch = loader_->next();
    data_wait_seconds += seconds_since(step_start);
    const auto values = train_step(batch, epoch, lr);
    state_.sum_total += values.total;
    state_.sum_mse += values.mse;
    state_.sum_grad += values.grad;
    state_.sum_neg += values.neg;
    for (size_t i = 0; i < 4; ++i) state_.sum_extra[i] += values.extra[i];
    state_.steps_done += 1;
    const double seconds = seconds_since(step_start);
    // The patches of the whole step, over every rank.
    const int64_t per_step = options_.batch_size * options_.distributed.world_size;
    voxels += static_cast<double>(std::min(per_step, loader_->patches_per_epoch() - state_.step * per_step)) * patch_voxels;
    step_seconds += seconds;
    const int64_t done_here = state_.step + 1;
    emit(JsonEvent("step")
             .integer("epoch", epoch + 1)
             .integer("epochs", options_.epochs)
             .integer("step", done_here)
             .integer("steps", steps_)
             .number("loss", values.total)
             .number("lr", lr)
             .number("voxelsPerSecond", step_seconds > 0 ? voxels / step_seconds : 0)
             .number("etaSeconds", step_seconds / std::max<double>(1, state_.steps_done) * static_cast<double>(steps_ - done_here))
             .str());
    if (cancelled()) {
      state_.step = done_here;
      save_last_on_cancel(epoch);
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------- validation over whole volumes

std::vector<size_t> Trainer::validation_share() const {
  std::vector<size_t> all(val_cases_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return all;
}

std::optional<ValidationSums> Trainer::validate(int64_t epoch) {
  model_->eval();
  ValidationSums sums;
  for (const size_t index : validation_share()) {
    require(index < val_cases_.size(), "the validation share names case " + std::to_string(index) + " of " + std::to_string(val_cases_.size()));
    const auto& item = val_cases_[index];
    emit(JsonEvent("validate")
             .integer("epoch", epoch + 1)
             .string("case", item.id)
             .integer("index", static_cast<int64_t>(index) + 1)
             .integer("of", static_cast<int64_t>(val_cases_.size()))
             .str());
    if (cancelled()) {
      // Training of this epoch is complete; a resume validates it.
      save_last_on_cancel(epoch);
      return std::nullopt;
    }
    auto constraints = item.constraints.to(device_, torch::kFloat).view({1, -1});
    auto network = [&](const at::Tensor& windows) { return model_->forward(windows, constraints.expand({windows.size(0), constraints.size(1)})); };
    const auto normalised = sliding_window_normalised(item.input, network, window_);
    const auto target = item.dose.to(torch::kFloat) / options_.normalisation_dose_gy;
    {
      torch::NoGradGuard no_grad;
      // The volume is on the CPU; the VGG weights are on the device, so with them the loss is computed there.
      const auto at = options_.loss.use_vgg_loss ? device_ : torch::Device(torch::kCPU);
      sums.loss += compute_loss({normalised.unsqueeze(0).unsqueeze(0).to(at), target.unsqueeze(0).unsqueeze(0).to(at), item.input.unsqueeze(0).to(at),
                                 item.constraints.to(torch::kFloat).view({1, -1}).to(at)})
                       .total.item<double>();
    }
    const auto error = ((normalised * options_.normalisation_dose_gy).clamp_min(0.0) - item.dose.to(torch::kFloat)).abs();
    const auto body = item.body.defined() ? item.body.to(torch::kBool) : torch::ones_like(error, torch::kBool);
    require(body.any().item<bool>(), "validation case " + item.id + " has an empty body mask");
    sums.mae_gy += error.masked_select(body).mean().item<double>();
    if (item.ptv70.defined() && item.ptv70.to(torch::kBool).any().item<bool>()) {
      sums.ptv70_mae_gy += error.masked_select(item.ptv70.to(torch::kBool)).mean().item<double>();
      ++sums.ptv70_cases;
    }
    ++sums.cases;
  }
  reduce_validation(sums);
  return sums;
}

// ---------------------------------------------------------------- checkpoints

// Before last is replaced, the pair it holds (when whole) becomes previous.safetensors + .state: at every moment of
// the save below, last or previous is a whole pair to resume from.
void Trainer::keep_previous_last() const {
  if (!whole_pair(last_path_)) return;
  const auto previous = (fs::path(options_.checkpoint_dir) / "previous.safetensors").string();
  replace_with_copy(last_path_, previous);
  replace_with_copy(state_path_of(last_path_), state_path_of(previous));
}

// Writes the state, then the weights beside it (atomically each), both with one pair token.
void Trainer::save_checkpoint(const std::string& path, int64_t epoch, double val_mae) const {
  if (!writes_files()) return;
  if (path == last_path_) keep_previous_last();
  const auto token = new_pair_token(state_.epoch, state_.step);
  Metadata metadata = options_.checkpoint_metadata;
  metadata["epoch"] = std::to_string(epoch);
  metadata[kPairKey] = token;
  if (finite(val_mae)) metadata["val_mae_gy"] = format_double(val_mae);
  TensorMap tensors;
  auto& optimizer_state = optimizer_->state();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    auto found = optimizer_state.find(state_key(optimizer_state, parameters_[i]));
    if (found == optimizer_state.end()) continue;
    auto& adam = static_cast<torch::optim::AdamWParamState&>(*found->second);
    tensors["exp_avg." + parameter_names_[i]] = adam.exp_avg();
    tensors["exp_avg_sq." + parameter_names_[i]] = adam.exp_avg_sq();
    tensors["step." + parameter_names_[i]] = torch::tensor({adam.step()}, torch::kLong);
  }
  tensors["rng.torch_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  auto state_entries = state_metadata(state_, options_.loss, options_.batch_size * options_.distributed.world_size);
  state_entries[kPairKey] = token;
  save_tensors(state_path_of(path), tensors, state_entries);
  save_model(path, model_, metadata);
}

void Trainer::save_last_on_cancel(int64_t epoch) {
  save_checkpoint(last_path_, epoch + 1, std::numeric_limits<double>::quiet_NaN());
  emit(JsonEvent("checkpoint").string("kind", "last").string("path", last_path_).integer("epoch", epoch + 1).integer("step", state_.step).str());
}

// The best `keep_best` epochs by validation MAE, then last (state_ already describes the next epoch).
void Trainer::save_checkpoints(int64_t epoch_number, double val_mae) {
  const bool keep = static_cast<int>(state_.best.size()) < options_.keep_best ||
                    std::any_of(state_.best.begin(), state_.best.end(), [&](const auto& e) { return val_mae < e.val_mae_gy; });
  if (keep) {
    const auto path = (fs::path(options_.checkpoint_dir) / best_checkpoint_name(epoch_number, val_mae)).string();
    state_.best.push_back({epoch_number, val_mae, path});
    std::stable_sort(state_.best.begin(), state_.best.end(), [](const auto& a, const auto& b) { return a.val_mae_gy < b.val_mae_gy; });
    std::vector<std::string> removed;
    while (static_cast<int>(state_.best.size()) > options_.keep_best) {
      removed.push_back(state_.best.back().path);
      state_.best.pop_back();
    }
    save_checkpoint(path, epoch_number, val_mae);
    if (writes_files()) {
      for (const auto& old : removed) {
        fs::remove(old);
        fs::remove(state_path_of(old));
      }
    }
    emit(JsonEvent("checkpoint").string("kind", "best").string("path", path).integer("epoch", epoch_number).number("valMaeGy", val_mae).str());
  }
  save_checkpoint(last_path_, epoch_number, val_mae);
  emit(JsonEvent("checkpoint").string("kind", "last").string("path", last_path_).integer("epoch", epoch_number).number("valMaeGy", val_mae).str());
}

TrainResult Trainer::finish(const std::string& reason, int64_t epochs_run) const {
  TrainResult result;
  result.parameters = parameter_count_;
  result.stop_reason = reason;
  result.epochs_run = epochs_run;
  result.best_epoch = state_.best_epoch;
  result.best_val_mae_gy = state_.best_val_mae;
  if (!state_.best.empty()) {
    auto best = std::min_element(state_.best.begin(), state_.best.end(), [](const auto& a, const auto& b) { return a.val_mae_gy < b.val_mae_gy; });
    result.best_checkpoint = best->path;
  }
  return result;
}

// ---------------------------------------------------------------- the loop

TrainResult Trainer::run() {
  validate_settings();
  prepare();
  emit(JsonEvent("start")
           .integer("parameters", parameter_count_)
           .string("device", device_.str())
           .string("precision", precision_)
           .integer("stepsPerEpoch", steps_)
           .integer("trainCases", static_cast<int64_t>(train_cases_.size()))
           .integer("valCases", static_cast<int64_t>(val_cases_.size()))
           .integer("startEpoch", state_.epoch + 1)
           .integer("startStep", state_.step)
           .str());
  if (state_.epoch >= options_.epochs) return finish("max_epochs", state_.epoch);
  if (state_.epochs_without_improvement >= options_.patience) return finish("early_stop", state_.epoch);

  try {
    while (state_.epoch < options_.epochs) {
      const int64_t epoch = state_.epoch;
      const double lr = cosine_lr(options_.lr, options_.min_lr, options_.epochs, epoch);
      for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const auto epoch_start = Clock::now();
      double voxels = 0, step_seconds = 0;
      double data_wait_seconds = 0;  // the device idles while the step waits for the loader
      model_->train();
      if (!train_epoch(epoch, lr, voxels, step_seconds, data_wait_seconds)) return finish("aborted", epoch);
      const auto sums = validate(epoch);
      if (!sums) return finish("aborted", epoch);

      // ---------------------------------------------------------------- epoch end: event, early stopping
      const double cases = static_cast<double>(sums->cases);
      const double val_loss = sums->loss / cases;
      const double val_mae = sums->mae_gy / cases;
      const double val_ptv = sums->ptv70_cases > 0 ? sums->ptv70_mae_gy / static_cast<double>(sums->ptv70_cases) : std::numeric_limits<double>::quiet_NaN();
      const int64_t epoch_number = epoch + 1;
      const double epoch_seconds = seconds_since(epoch_start);
      const double steps_done = static_cast<double>(std::max<int64_t>(1, state_.steps_done));
      const bool improved = val_mae < state_.best_val_mae;
      if (improved) {
        state_.best_val_mae = val_mae;
        state_.best_epoch = epoch_number;
        state_.epochs_without_improvement = 0;
      } else {
        state_.epochs_without_improvement += 1;
      }
      JsonEvent event("epoch");
      event.integer("epoch", epoch_number)
          .integer("epochs", options_.epochs)
          .number("lr", lr)
          .number("trainLoss", state_.sum_total / steps_done)
          .number("trainMse", state_.sum_mse / steps_done)
          .number("trainGrad", state_.sum_grad / steps_done)
          .number("trainNeg", state_.sum_neg / steps_done);
      for (size_t i = 0; i < 4; ++i) {
        if (options_.loss.*kExtraTerms[i].on) event.number(kExtraTerms[i].event, state_.sum_extra[i] / steps_done);
      }
      emit(event.number("valLoss", val_loss)
               .number("valMaeGy", val_mae)
               .number("valMaePtv70Gy", val_ptv)
               .number("epochSeconds", epoch_seconds)
               .number("voxelsPerSecond", step_seconds > 0 ? voxels / step_seconds : 0)
               .number("dataWaitFraction", step_seconds > 0 ? data_wait_seconds / step_seconds : 0)
               .boolean("improved", improved)
               .integer("bestEpoch", state_.best_epoch)
               .number("bestValMaeGy", state_.best_val_mae)
               .str());

      // The epoch is complete: the state of the next one starts here (and is what the checkpoints carry).
      state_.step = 0;
      state_.sum_total = state_.sum_mse = state_.sum_grad = state_.sum_neg = 0;
      state_.sum_extra = {};
      state_.steps_done = 0;
      state_.epoch = epoch_number;
      save_checkpoints(epoch_number, val_mae);
      if (state_.epochs_without_improvement >= options_.patience) return finish("early_stop", epoch_number);
      if (cancelled()) return finish("aborted", epoch_number);
    }
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    if (message.find("out of memory") != std::string::npos) {
      throw Error(ErrorCode::OutOfMemory, "the device ran out of memory while training with patch " + std::to_string(options_.patch_size) +
                                              "³ and batch " + std::to_string(options_.batch_size) +
                                              ": try a smaller patchSize, e.g. " + std::to_string(std::max<int64_t>(16, options_.patch_size / 2 / 16 * 16)) +
                                              ", or a batchSize of 1");
    }
    throw;
  }
  return finish("max_epochs", state_.epoch);
}

TrainResult train_model(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases,
                        const TrainerOptions& options, const TrainerCallbacks& callbacks) {
  if (options.distributed.world_size > 1) return train_data_parallel(train_cases, val_cases, options, callbacks);
  return Trainer(train_cases, val_cases, options, callbacks).run();
}

}  // namespace vmat
