// trainModel() and predictDose(): the training engine and sliding-window prediction as Promise-returning calls that
// run on a worker thread. Case volumes cross from JS without copies (TensorView + Retain).
#include <napi.h>
#include <torch/torch.h>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/checkpoint.h"
#include "vmat/runtime.h"
#include "vmat/sliding_window.h"
#include "vmat/trainer.h"

namespace {

using vmat::binding::PromiseWorker;

double NumberOr(const Napi::Object& object, const char* key, double fallback) {
  if (!object.Has(key) || object.Get(key).IsUndefined()) return fallback;
  if (!object.Get(key).IsNumber()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a number");
  return object.Get(key).As<Napi::Number>().DoubleValue();
}

std::string StringOr(const Napi::Object& object, const char* key, const std::string& fallback) {
  if (!object.Has(key) || object.Get(key).IsUndefined()) return fallback;
  if (!object.Get(key).IsString()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a string");
  return object.Get(key).As<Napi::String>().Utf8Value();
}

bool BoolOr(const Napi::Object& object, const char* key, bool fallback) {
  if (!object.Has(key) || object.Get(key).IsUndefined()) return fallback;
  return object.Get(key).ToBoolean().Value();
}

// { id, input: Float32Array [C,Z,Y,X], shape, dose: Float32Array (Gy), body?: Uint8Array, ptv70?: Uint8Array,
//   constraints: Float32Array(13) }
vmat::TrainingCase CaseFrom(PromiseWorker& worker, const Napi::Value& value) {
  if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), "each case must be an object");
  auto object = value.As<Napi::Object>();
  vmat::TrainingCase item;
  item.id = StringOr(object, "id", "case");
  const auto shape = vmat::binding::ShapeFrom(object.Get("shape"), item.id + ".shape");
  if (shape.size() != 4) throw Napi::TypeError::New(value.Env(), item.id + ".shape must be [C, Z, Y, X]");
  const std::vector<int64_t> grid{shape[1], shape[2], shape[3]};
  item.input = vmat::binding::TensorView(object.Get("input"), shape, item.id + ".input");
  worker.Retain(object.Get("input"));
  item.dose = vmat::binding::TensorView(object.Get("dose"), grid, item.id + ".dose");
  worker.Retain(object.Get("dose"));
  item.constraints = vmat::binding::TensorView(object.Get("constraints"), {13}, item.id + ".constraints");
  worker.Retain(object.Get("constraints"));
  for (const char* key : {"body", "ptv70"}) {
    if (!object.Has(key) || object.Get(key).IsUndefined() || object.Get(key).IsNull()) continue;
    auto tensor = vmat::binding::TensorView(object.Get(key), grid, item.id + "." + key);
    worker.Retain(object.Get(key));
    (std::string(key) == "body" ? item.body : item.ptv70) = tensor;
  }
  return item;
}

class TrainWorker : public PromiseWorker {
 public:
  explicit TrainWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:train", call[2]) {
    auto env = call.Env();
    if (!call[0].IsObject() || !call[1].IsObject()) throw Napi::TypeError::New(env, "trainModel(cases, settings, options)");
    auto cases = call[0].As<Napi::Object>();
    for (const char* set : {"train", "val"}) {
      auto list = cases.Get(set);
      if (!list.IsArray()) throw Napi::TypeError::New(env, std::string("cases.") + set + " must be an array");
      auto array = list.As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); ++i) (std::string(set) == "train" ? train_ : val_).push_back(CaseFrom(*this, array.Get(i)));
    }
    auto s = call[1].As<Napi::Object>();
    options_.in_channels = static_cast<int64_t>(NumberOr(s, "inChannels", 9));
    options_.base_channels = static_cast<int64_t>(NumberOr(s, "baseChannels", 48));
    options_.epochs = static_cast<int64_t>(NumberOr(s, "epochs", 200));
    options_.batch_size = static_cast<int64_t>(NumberOr(s, "batchSize", 2));
    options_.patch_size = static_cast<int64_t>(NumberOr(s, "patchSize", 128));
    options_.patches_per_volume = static_cast<int64_t>(NumberOr(s, "patchesPerVolume", 4));
    options_.lr = NumberOr(s, "lr", 1e-4);
    options_.weight_decay = NumberOr(s, "weightDecay", 0.01);
    if (s.Has("betas") && s.Get("betas").IsArray()) {
      auto betas = s.Get("betas").As<Napi::Array>();
      options_.beta1 = betas.Get(0u).As<Napi::Number>().DoubleValue();
      options_.beta2 = betas.Get(1u).As<Napi::Number>().DoubleValue();
    }
    options_.min_lr = NumberOr(s, "minLr", 1e-6);
    options_.grad_clip = NumberOr(s, "gradClip", 1.0);
    options_.precision = StringOr(s, "precision", "auto");
    options_.patience = static_cast<int64_t>(NumberOr(s, "patience", 50));
    options_.seed = static_cast<uint64_t>(NumberOr(s, "seed", 42));
    options_.loss.use_gradient_loss = BoolOr(s, "useGradientLoss", false);
    options_.loss.gradient_loss_weight = NumberOr(s, "gradientLossWeight", 0.1);
    options_.loss.negative_penalty_weight = NumberOr(s, "negativePenaltyWeight", 0.1);
    options_.normalisation_dose_gy = NumberOr(s, "normalisationDoseGy", 70);
    options_.device = StringOr(s, "device", "auto");
    options_.num_workers = static_cast<int>(NumberOr(s, "numWorkers", 2));
    options_.sw_batch = static_cast<int64_t>(NumberOr(s, "swBatch", 2));
    options_.overlap = NumberOr(s, "overlap", 0.5);
    options_.femur_left_channel = static_cast<int>(NumberOr(s, "femurLeftChannel", -1));
    options_.femur_right_channel = static_cast<int>(NumberOr(s, "femurRightChannel", -1));
    options_.checkpoint_dir = StringOr(s, "checkpointDir", "");
    options_.resume = BoolOr(s, "resume", false);
    if (s.Has("checkpointMetadata") && s.Get("checkpointMetadata").IsObject()) {
      auto metadata = s.Get("checkpointMetadata").As<Napi::Object>();
      auto keys = metadata.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        auto key = keys.Get(i).As<Napi::String>().Utf8Value();
        options_.checkpoint_metadata[key] = metadata.Get(key).ToString().Utf8Value();
      }
    }
  }

 protected:
  void Run() override {
    vmat::TrainerCallbacks callbacks;
    callbacks.emit = [this](const std::string& json) { Emit(json); };
    callbacks.cancelled = [this] { return Cancelled(); };
    result_ = vmat::train_model(train_, val_, options_, callbacks);
  }

  Napi::Value Result(Napi::Env env) override {
    auto result = Napi::Object::New(env);
    result.Set("stopReason", result_.stop_reason);
    result.Set("epochsRun", Napi::Number::New(env, static_cast<double>(result_.epochs_run)));
    result.Set("bestEpoch", Napi::Number::New(env, static_cast<double>(result_.best_epoch)));
    result.Set("bestValMaeGy", result_.best_epoch > 0 ? Napi::Number::New(env, result_.best_val_mae_gy) : env.Null());
    result.Set("bestCheckpoint", result_.best_checkpoint.empty() ? env.Null() : Napi::String::New(env, result_.best_checkpoint));
    result.Set("parameters", Napi::Number::New(env, static_cast<double>(result_.parameters)));
    return result;
  }

 private:
  std::vector<vmat::TrainingCase> train_, val_;
  vmat::TrainerOptions options_;
  vmat::TrainResult result_;
};

// predictDose(checkpoint, input Float32Array, shape [C,Z,Y,X], constraints Float32Array(13),
//             { patchSize, overlap, swBatch, device, normalisationDoseGy }, options) → { data, shape } dose in Gy
class PredictWorker : public PromiseWorker {
 public:
  explicit PredictWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:predict", call[5]) {
    checkpoint_ = call[0].As<Napi::String>().Utf8Value();
    const auto shape = vmat::binding::ShapeFrom(call[2], "shape");
    if (shape.size() != 4) throw Napi::TypeError::New(call.Env(), "shape must be [C, Z, Y, X]");
    input_ = vmat::binding::TensorView(call[1], shape, "input");
    Retain(call[1]);
    constraints_ = vmat::binding::TensorView(call[3], {13}, "constraints");
    Retain(call[3]);
    auto s = call[4].IsObject() ? call[4].As<Napi::Object>() : Napi::Object::New(call.Env());
    window_.patch = static_cast<int64_t>(NumberOr(s, "patchSize", 128));
    window_.overlap = NumberOr(s, "overlap", 0.5);
    window_.batch = static_cast<int64_t>(NumberOr(s, "swBatch", 2));
    device_ = StringOr(s, "device", "auto");
    normalisation_dose_gy_ = NumberOr(s, "normalisationDoseGy", 70);
  }

 protected:
  void Run() override {
    const torch::Device device(vmat::resolve_device(device_));
    auto loaded = vmat::load_model(checkpoint_, device);
    vmat::require(loaded.config.in_channels == input_.size(0),
                  "the checkpoint " + checkpoint_ + " expects " + std::to_string(loaded.config.in_channels) + " input channels, the case gives " +
                      std::to_string(input_.size(0)));
    loaded.model->eval();
    window_.device = device;
    window_.autocast = device.is_cuda();
    window_.cancelled = [this] { return Cancelled(); };
    auto constraints = constraints_.to(device, torch::kFloat).view({1, -1});
    auto network = [&](const at::Tensor& windows) {
      return loaded.model->forward(windows, constraints.expand({windows.size(0), constraints.size(1)}));
    };
    dose_ = vmat::sliding_window_dose(input_, network, window_, normalisation_dose_gy_);
  }

  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, dose_); }

 private:
  std::string checkpoint_;
  at::Tensor input_, constraints_, dose_;
  vmat::SlidingWindowOptions window_;
  std::string device_;
  double normalisation_dose_gy_ = 70;
};

Napi::Value TrainModel(const Napi::CallbackInfo& call) { return (new TrainWorker(call))->Start(); }
Napi::Value PredictDose(const Napi::CallbackInfo& call) { return (new PredictWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(train) {
  exports.Set("trainModel", Napi::Function::New(env, TrainModel, "trainModel"));
  exports.Set("predictDose", Napi::Function::New(env, PredictDose, "predictDose"));
}
