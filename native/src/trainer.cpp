#include "vmat/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "vmat/checkpoint.h"
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

struct BestEntry {
  int64_t epoch;  // 1-based
  double val_mae_gy;
  std::string path;
};

// Everything besides the weights that an exact resume needs.
struct LoopState {
  int64_t epoch = 0;  // 0-based epoch in progress
  int64_t step = 0;   // next step of that epoch
  double sum_total = 0, sum_mse = 0, sum_grad = 0, sum_neg = 0;
  int64_t steps_done = 0;  // steps of this epoch whose losses are in the sums
  double best_val_mae = std::numeric_limits<double>::infinity();
  int64_t best_epoch = 0;
  int64_t epochs_without_improvement = 0;
  std::vector<BestEntry> best;
  double loss_scale = 65536.0;  // fp16 only
  int64_t scale_growth_tracker = 0;
};

Metadata state_metadata(const LoopState& state) {
  Metadata metadata;
  metadata["format"] = "vmat-native-training-state-1";
  metadata["epoch"] = std::to_string(state.epoch);
  metadata["step"] = std::to_string(state.step);
  metadata["sum_total"] = format_double(state.sum_total);
  metadata["sum_mse"] = format_double(state.sum_mse);
  metadata["sum_grad"] = format_double(state.sum_grad);
  metadata["sum_neg"] = format_double(state.sum_neg);
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

LoopState parse_state(const Metadata& metadata, const std::string& path, const std::string& checkpoint_dir) {
  require(metadata.count("format") && metadata.at("format") == "vmat-native-training-state-1",
          "the file " + path + " is not a vmat-native training state");
  LoopState state;
  try {
    state.epoch = std::stoll(need(metadata, "epoch", path));
    state.step = std::stoll(need(metadata, "step", path));
    state.sum_total = std::stod(need(metadata, "sum_total", path));
    state.sum_mse = std::stod(need(metadata, "sum_mse", path));
    state.sum_grad = std::stod(need(metadata, "sum_grad", path));
    state.sum_neg = std::stod(need(metadata, "sum_neg", path));
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

TrainResult train_model(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases,
                        const TrainerOptions& options, const TrainerCallbacks& callbacks) {
  require(!train_cases.empty(), "there are no training cases");
  require(!val_cases.empty(), "there are no validation cases (validation picks the best checkpoint)");
  require(options.epochs >= 1 && options.batch_size >= 1 && options.patches_per_volume >= 1, "epochs, batch size and patches per volume must be >= 1");
  require(options.patch_size >= 16 && options.patch_size % 16 == 0, "the patch size must be a multiple of 16, got " + std::to_string(options.patch_size));
  require(!options.checkpoint_dir.empty(), "the checkpoint folder is not set");
  for (const auto* set : {&train_cases, &val_cases}) {
    for (const auto& item : *set) {
      require(item.input.dim() == 4 && item.input.size(0) == options.in_channels,
              "case " + item.id + " has " + std::to_string(item.input.dim() == 4 ? item.input.size(0) : 0) +
                  " input channels, the model expects " + std::to_string(options.in_channels));
      require(item.dose.defined(), "case " + item.id + " has no dose to train or validate on");
    }
  }
  const auto emit = [&](const std::string& json) { if (callbacks.emit) callbacks.emit(json); };
  const auto cancelled = [&] { return callbacks.cancelled && callbacks.cancelled(); };

  const torch::Device device(resolve_device(options.device));
  // Patch shapes are fixed for the whole run: let cuDNN pick the fastest convolution algorithms once.
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  std::string precision = options.precision;
  if (precision == "auto") {
    precision = "fp32";
    if (device.is_cuda()) {
      precision = "bf16";
      for (const auto& info : runtime_info().devices) {
        if (info.index == device.index() && info.compute_major > 0 && info.compute_major < 8) precision = "fp16";
      }
    }
  }
  require(precision == "fp32" || precision == "bf16" || precision == "fp16", "precision '" + precision + "' is not auto, fp32, bf16 or fp16");
  require(precision == "fp32" || device.is_cuda(), "precision " + precision + " needs a CUDA device; on the CPU use fp32 (or auto)");
  const bool mixed = precision != "fp32";
  const auto autocast_dtype = precision == "fp16" ? at::kHalf : at::kBFloat16;

  fs::create_directories(options.checkpoint_dir);
  const std::string last_path = (fs::path(options.checkpoint_dir) / "last.safetensors").string();

  // ---------------------------------------------------------------- model, optimizer, state
  torch::manual_seed(options.seed);
  UNetConfig config;
  config.in_channels = options.in_channels;
  config.base_channels = options.base_channels;
  config.validate();
  BaselineUNet3D model(config);
  LoopState state;
  TensorMap saved_optimizer;
  if (options.resume) {
    require(fs::exists(last_path) && fs::exists(state_path_of(last_path)),
            "cannot resume: " + last_path + " and its .state.safetensors are not both there");
    auto loaded = load_model(last_path, torch::kCPU);
    require(loaded.config == config, "cannot resume: " + last_path + " holds a model of another configuration (" +
                                         loaded.config.to_json() + ") than the settings ask for (" + config.to_json() + ")");
    model = loaded.model;
    auto saved = load_tensors(state_path_of(last_path));
    state = parse_state(saved.metadata, state_path_of(last_path), options.checkpoint_dir);
    saved_optimizer = std::move(saved.tensors);
  }
  model->to(device);
  const auto named = model->named_parameters();
  std::vector<at::Tensor> parameters;
  for (const auto& item : named) parameters.push_back(item.value());
  MultiTensorAdamW optimizer(parameters, torch::optim::AdamWOptions(options.lr)
                                                .betas({options.beta1, options.beta2})
                                                .weight_decay(options.weight_decay)
                                                .eps(1e-8));
  if (options.resume) {
    auto& optimizer_state = optimizer.state();
    for (const auto& item : named) {
      auto avg = saved_optimizer.find("exp_avg." + item.key());
      auto avg_sq = saved_optimizer.find("exp_avg_sq." + item.key());
      auto step = saved_optimizer.find("step." + item.key());
      if (avg == saved_optimizer.end() || avg_sq == saved_optimizer.end() || step == saved_optimizer.end()) continue;
      auto param_state = std::make_unique<torch::optim::AdamWParamState>();
      param_state->step(step->second.item<int64_t>());
      param_state->exp_avg(avg->second.to(device, torch::kFloat).clone());
      param_state->exp_avg_sq(avg_sq->second.to(device, torch::kFloat).clone());
      optimizer_state[state_key(optimizer_state, item.value())] = std::move(param_state);
    }
    auto rng = saved_optimizer.find("rng.torch_cpu");
    if (rng != saved_optimizer.end()) {
      at::Generator generator = at::detail::getDefaultCPUGenerator();
      generator.set_state(rng->second);
    }
  }
  const int64_t parameter_count = count_parameters(*model);

  // Writes the weights and the state beside them (atomically each).
  auto save_checkpoint = [&](const std::string& path, int64_t epoch, double val_mae) {
    Metadata metadata = options.checkpoint_metadata;
    metadata["epoch"] = std::to_string(epoch);
    if (finite(val_mae)) metadata["val_mae_gy"] = format_double(val_mae);
    save_model(path, model, metadata);
    TensorMap tensors;
    auto& optimizer_state = optimizer.state();
    for (const auto& item : named) {
      auto found = optimizer_state.find(state_key(optimizer_state, item.value()));
      if (found == optimizer_state.end()) continue;
      auto& adam = static_cast<torch::optim::AdamWParamState&>(*found->second);
      tensors["exp_avg." + item.key()] = adam.exp_avg();
      tensors["exp_avg_sq." + item.key()] = adam.exp_avg_sq();
      tensors["step." + item.key()] = torch::tensor({adam.step()}, torch::kLong);
    }
    tensors["rng.torch_cpu"] = at::detail::getDefaultCPUGenerator().get_state();
    save_tensors(state_path_of(path), tensors, state_metadata(state));
  };

  // ---------------------------------------------------------------- data
  PatchSamplerOptions sampler;
  sampler.patch = options.patch_size;
  sampler.patches_per_volume = options.patches_per_volume;
  sampler.batch_size = options.batch_size;
  sampler.seed = options.seed;
  sampler.femur_left_channel = options.femur_left_channel;
  sampler.femur_right_channel = options.femur_right_channel;
  sampler.workers = std::max(1, options.num_workers);
  sampler.pin_memory = device.is_cuda();
  auto sampling_cases = std::make_shared<std::vector<SamplingCase>>();
  for (const auto& item : train_cases) {
    sampling_cases->push_back(prepare_sampling_case(item, options.patch_size, 0.1, options.normalisation_dose_gy));
  }
  PatchLoader loader(sampling_cases, sampler);
  const int64_t steps = loader.steps_per_epoch();

  SlidingWindowOptions window;
  window.patch = options.patch_size;
  window.overlap = options.overlap;
  window.batch = options.sw_batch;
  window.device = device;
  window.autocast = mixed;
  window.autocast_dtype = autocast_dtype;

  emit(JsonEvent("start")
           .integer("parameters", parameter_count)
           .string("device", device.str())
           .string("precision", precision)
           .integer("stepsPerEpoch", steps)
           .integer("trainCases", static_cast<int64_t>(train_cases.size()))
           .integer("valCases", static_cast<int64_t>(val_cases.size()))
           .integer("startEpoch", state.epoch + 1)
           .integer("startStep", state.step)
           .str());

  TrainResult result;
  result.parameters = parameter_count;
  auto finish = [&](const std::string& reason) {
    result.stop_reason = reason;
    result.best_epoch = state.best_epoch;
    result.best_val_mae_gy = state.best_val_mae;
    if (!state.best.empty()) {
      auto best = std::min_element(state.best.begin(), state.best.end(), [](const auto& a, const auto& b) { return a.val_mae_gy < b.val_mae_gy; });
      result.best_checkpoint = best->path;
    }
    return result;
  };
  result.epochs_run = state.epoch;
  if (state.epoch >= options.epochs) return finish("max_epochs");
  if (state.epochs_without_improvement >= options.patience) return finish("early_stop");

  const double patch_voxels = std::pow(static_cast<double>(options.patch_size), 3);
  try {
    for (; state.epoch < options.epochs; ++state.epoch) {
      const int64_t epoch = state.epoch;
      const double lr = cosine_lr(options.lr, options.min_lr, options.epochs, epoch);
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const auto epoch_start = Clock::now();
      double voxels = 0, step_seconds = 0;
      double data_wait_seconds = 0;  // the device idles while the step waits for the loader
      model->train();
      if (state.step < steps) loader.start_epoch(epoch, state.step);
      for (; state.step < steps; ++state.step) {
        const auto step_start = Clock::now();
        auto batch = loader.next();
        data_wait_seconds += seconds_since(step_start);
        auto input = batch.input.to(device, /*non_blocking=*/true);
        auto target = batch.dose.to(device, true);
        auto constraints = batch.constraints.to(device, true);
        optimizer.zero_grad();
        at::Tensor prediction;
        with_autocast(mixed, device, autocast_dtype, [&] { prediction = model->forward(input, constraints); });
        auto terms = dose_loss(prediction.to(torch::kFloat), target, options.loss);
        bool stepped = true;
        if (precision == "fp16") {
          (terms.total * state.loss_scale).backward();
          torch::NoGradGuard no_grad;
          for (auto& parameter : parameters) {
            if (parameter.grad().defined()) parameter.grad().div_(state.loss_scale);
          }
        } else {
          terms.total.backward();
        }
        const double max_norm = options.grad_clip > 0 ? options.grad_clip : std::numeric_limits<double>::infinity();
        const auto gradient_norm = clip_grad_norm(parameters, max_norm);
        // One read back to the host per step (each one stalls the device until all queued work is done): the loss
        // terms and the gradient norm together, after backward.
        const auto scalars = torch::stack({terms.total.detach(), terms.mse.detach(), terms.grad.detach(),
                                           terms.neg.detach(), gradient_norm.to(terms.total.device(), torch::kFloat)})
                                 .to(torch::kCPU, torch::kDouble);
        const double* values = scalars.data_ptr<double>();
        const double total = values[0], norm = values[4];
        if (!finite(total)) {
          throw Error(ErrorCode::NotFinite,
                      "training stopped: the loss became " + std::string(std::isnan(total) ? "NaN" : "infinite") + " at epoch " +
                          std::to_string(epoch + 1) + ", step " + std::to_string(state.step + 1) + " of " + std::to_string(steps) +
                          " (lr " + format_double(lr, "%.3g") + "); " +
                          (fs::exists(last_path) ? "checkpoints/last.safetensors keeps the end of the last good epoch"
                                                 : "no epoch completed, so there is no checkpoint") +
                          ". Try a lower --lr or --precision fp32");
        }
        if (precision == "fp16") {
          // Dynamic loss scaling (as torch.cuda.amp.GradScaler): skip the step on overflow and halve the scale.
          if (!finite(norm)) {
            stepped = false;
            state.loss_scale /= 2.0;
            state.scale_growth_tracker = 0;
          } else if (++state.scale_growth_tracker >= 2000) {
            state.loss_scale *= 2.0;
            state.scale_growth_tracker = 0;
          }
        } else if (!finite(norm)) {
          throw Error(ErrorCode::NotFinite, "training stopped: the gradient became NaN or infinite at epoch " + std::to_string(epoch + 1) +
                                                ", step " + std::to_string(state.step + 1) + " of " + std::to_string(steps) +
                                                "; checkpoints/last.safetensors keeps the end of the last good epoch. Try a lower --lr");
        }
        if (stepped) optimizer.step();
        state.sum_total += total;
        state.sum_mse += values[1];
        state.sum_grad += values[2];
        state.sum_neg += values[3];
        state.steps_done += 1;
        const double seconds = seconds_since(step_start);
        voxels += static_cast<double>(input.size(0)) * patch_voxels;
        step_seconds += seconds;
        const int64_t done_here = state.step + 1;
        emit(JsonEvent("step")
                 .integer("epoch", epoch + 1)
                 .integer("epochs", options.epochs)
                 .integer("step", done_here)
                 .integer("steps", steps)
                 .number("loss", total)
                 .number("lr", lr)
                 .number("voxelsPerSecond", step_seconds > 0 ? voxels / step_seconds : 0)
                 .number("etaSeconds", step_seconds / std::max<double>(1, state.steps_done) * static_cast<double>(steps - done_here))
                 .str());
        if (cancelled()) {
          state.step = done_here;
          save_checkpoint(last_path, epoch + 1, std::numeric_limits<double>::quiet_NaN());
          emit(JsonEvent("checkpoint").string("kind", "last").string("path", last_path).integer("epoch", epoch + 1).integer("step", state.step).str());
          result.epochs_run = epoch;
          return finish("aborted");
        }
      }

      // ---------------------------------------------------------------- validation over whole volumes
      model->eval();
      double val_loss = 0, val_mae = 0, ptv_mae = 0;
      int64_t ptv_cases = 0;
      for (size_t index = 0; index < val_cases.size(); ++index) {
        const auto& item = val_cases[index];
        emit(JsonEvent("validate")
                 .integer("epoch", epoch + 1)
                 .string("case", item.id)
                 .integer("index", static_cast<int64_t>(index) + 1)
                 .integer("of", static_cast<int64_t>(val_cases.size()))
                 .str());
        if (cancelled()) {
          // Training of this epoch is complete; a resume validates it.
          save_checkpoint(last_path, epoch + 1, std::numeric_limits<double>::quiet_NaN());
          emit(JsonEvent("checkpoint").string("kind", "last").string("path", last_path).integer("epoch", epoch + 1).integer("step", state.step).str());
          result.epochs_run = epoch;
          return finish("aborted");
        }
        auto constraints = item.constraints.to(device, torch::kFloat).view({1, -1});
        auto network = [&](const at::Tensor& windows) { return model->forward(windows, constraints.expand({windows.size(0), constraints.size(1)})); };
        const auto normalised = sliding_window_normalised(item.input, network, window);
        const auto target = item.dose.to(torch::kFloat) / options.normalisation_dose_gy;
        {
          torch::NoGradGuard no_grad;
          val_loss += dose_loss(normalised.unsqueeze(0).unsqueeze(0), target.unsqueeze(0).unsqueeze(0), options.loss).total.item<double>();
        }
        const auto error = ((normalised * options.normalisation_dose_gy).clamp_min(0.0) - item.dose.to(torch::kFloat)).abs();
        const auto body = item.body.defined() ? item.body.to(torch::kBool) : torch::ones_like(error, torch::kBool);
        require(body.any().item<bool>(), "validation case " + item.id + " has an empty body mask");
        val_mae += error.masked_select(body).mean().item<double>();
        if (item.ptv70.defined() && item.ptv70.to(torch::kBool).any().item<bool>()) {
          ptv_mae += error.masked_select(item.ptv70.to(torch::kBool)).mean().item<double>();
          ++ptv_cases;
        }
      }
      const double cases = static_cast<double>(val_cases.size());
      val_loss /= cases;
      val_mae /= cases;
      const double val_ptv = ptv_cases > 0 ? ptv_mae / static_cast<double>(ptv_cases) : std::numeric_limits<double>::quiet_NaN();
      const int64_t epoch_number = epoch + 1;
      const double epoch_seconds = seconds_since(epoch_start);
      const double mean_total = state.sum_total / std::max<int64_t>(1, state.steps_done);
      const bool improved = val_mae < state.best_val_mae;
      if (improved) {
        state.best_val_mae = val_mae;
        state.best_epoch = epoch_number;
        state.epochs_without_improvement = 0;
      } else {
        state.epochs_without_improvement += 1;
      }
      emit(JsonEvent("epoch")
               .integer("epoch", epoch_number)
               .integer("epochs", options.epochs)
               .number("lr", lr)
               .number("trainLoss", mean_total)
               .number("trainMse", state.sum_mse / std::max<int64_t>(1, state.steps_done))
               .number("trainGrad", state.sum_grad / std::max<int64_t>(1, state.steps_done))
               .number("trainNeg", state.sum_neg / std::max<int64_t>(1, state.steps_done))
               .number("valLoss", val_loss)
               .number("valMaeGy", val_mae)
               .number("valMaePtv70Gy", val_ptv)
               .number("epochSeconds", epoch_seconds)
               .number("voxelsPerSecond", step_seconds > 0 ? voxels / step_seconds : 0)
               .number("dataWaitFraction", step_seconds > 0 ? data_wait_seconds / step_seconds : 0)
               .boolean("improved", improved)
               .integer("bestEpoch", state.best_epoch)
               .number("bestValMaeGy", state.best_val_mae)
               .str());

      // The epoch is complete: the state of the next one starts here.
      state.step = 0;
      state.sum_total = state.sum_mse = state.sum_grad = state.sum_neg = 0;
      state.steps_done = 0;
      const int64_t next_epoch = epoch + 1;
      state.epoch = next_epoch;
      std::vector<std::string> removed;
      const bool keep = static_cast<int>(state.best.size()) < options.keep_best ||
                        std::any_of(state.best.begin(), state.best.end(), [&](const auto& e) { return val_mae < e.val_mae_gy; });
      if (keep) {
        const auto path = (fs::path(options.checkpoint_dir) / best_checkpoint_name(epoch_number, val_mae)).string();
        state.best.push_back({epoch_number, val_mae, path});
        std::stable_sort(state.best.begin(), state.best.end(), [](const auto& a, const auto& b) { return a.val_mae_gy < b.val_mae_gy; });
        while (static_cast<int>(state.best.size()) > options.keep_best) {
          removed.push_back(state.best.back().path);
          state.best.pop_back();
        }
        save_checkpoint(path, epoch_number, val_mae);
        for (const auto& old : removed) {
          fs::remove(old);
          fs::remove(state_path_of(old));
        }
        emit(JsonEvent("checkpoint").string("kind", "best").string("path", path).integer("epoch", epoch_number).number("valMaeGy", val_mae).str());
      }
      save_checkpoint(last_path, epoch_number, val_mae);
      emit(JsonEvent("checkpoint").string("kind", "last").string("path", last_path).integer("epoch", epoch_number).number("valMaeGy", val_mae).str());
      state.epoch = epoch;  // the loop's ++ moves it on
      result.epochs_run = epoch_number;
      if (state.epochs_without_improvement >= options.patience) {
        state.epoch = next_epoch;
        return finish("early_stop");
      }
      if (cancelled()) {
        state.epoch = next_epoch;
        return finish("aborted");
      }
    }
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    if (message.find("out of memory") != std::string::npos) {
      throw Error(ErrorCode::OutOfMemory, "the device ran out of memory while training with patch " + std::to_string(options.patch_size) +
                                              "³ and batch " + std::to_string(options.batch_size) +
                                              ": try a smaller --patch-size (e.g. " + std::to_string(std::max<int64_t>(16, options.patch_size / 2 / 16 * 16)) +
                                              ") or --batch-size (e.g. 1)");
    }
    throw;
  }
  return finish("max_epochs");
}

}  // namespace vmat
