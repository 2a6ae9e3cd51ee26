// trainModel() and predictDose(): the training engine and sliding-window prediction as Promise-returning calls that
// run on a worker thread. Case volumes cross from JS without copies (TensorView + Retain); settings cross through
// the typed bridge (settings.h): every key required with its type, unknown keys refused, no defaults here.
#include <napi.h>
#include <torch/torch.h>

#include "promise_worker.h"
#include "registry.h"
#include "settings.h"
#include "tensor_bridge.h"
#include "vmat/checkpoint.h"
#include "vmat/runtime.h"
#include "vmat/sliding_window.h"
#include "vmat/trainer.h"

namespace {

using vmat::binding::PromiseWorker;

using vmat::binding::SettingsReader;

// NativeTrainCase of src/native/addon.ts: { id, input: Float32Array [C,Z,Y,X], shape, dose: Float32Array (Gy),
// body?: Uint8Array, ptv70?: Uint8Array, constraints: Float32Array(condDim) }
vmat::TrainingCase CaseFrom(PromiseWorker& worker, const Napi::Value& value, int64_t cond_dim) {
  SettingsReader reader(value, "training case field");
  vmat::TrainingCase item;
  item.id = reader.string("id");
  const auto shape = vmat::binding::ShapeFrom(reader.value("shape"), item.id + ".shape");
  if (shape.size() != 4) throw Napi::TypeError::New(value.Env(), item.id + ".shape must be [C, Z, Y, X]");
  const std::vector<int64_t> grid{shape[1], shape[2], shape[3]};
  const auto view = [&](const char* key, const std::vector<int64_t>& sizes) {
    auto array = reader.value(key);
    worker.Retain(array);
    return vmat::binding::TensorView(array, sizes, item.id + "." + key);
  };
  item.input = view("input", shape);
  item.dose = view("dose", grid);
  item.constraints = view("constraints", {cond_dim});
  if (reader.has("body")) item.body = view("body", grid);
  if (reader.has("ptv70")) item.ptv70 = view("ptv70", grid);
  reader.finish();
  return item;
}

// NativeTrainSettings of src/native/addon.ts: every key required, no other key allowed. To add a setting: the field
// in src/config/schema.ts, its key in NATIVE_TRAIN_FIELDS (src/train/native-settings.ts), its member in
// TrainerOptions, and one line here.
vmat::TrainerOptions TrainOptionsFrom(const Napi::Value& value) {
  SettingsReader s(value, "training setting");
  vmat::TrainerOptions options;
  options.in_channels = s.integer("inChannels");
  options.base_channels = s.integer("baseChannels");
  options.cond_dim = s.integer("condDim");
  options.epochs = s.integer("epochs");
  options.batch_size = s.integer("batchSize");
  options.patch_size = s.integer("patchSize");
  options.patches_per_volume = s.integer("patchesPerVolume");
  options.lr = s.number("lr");
  options.weight_decay = s.number("weightDecay");
  const auto betas = s.numbers("betas", 2);
  options.beta1 = betas[0];
  options.beta2 = betas[1];
  options.min_lr = s.number("minLr");
  options.grad_clip = s.number("gradClip");
  options.precision = s.string("precision");
  options.patience = s.integer("patience");
  options.seed = static_cast<uint64_t>(s.integer("seed", 0));
  options.loss.use_gradient_loss = s.boolean("useGradientLoss");
  options.loss.gradient_loss_weight = s.number("gradientLossWeight");
  options.loss.negative_penalty_weight = s.number("negativePenaltyWeight");
  options.loss.use_vgg_loss = s.boolean("useVggLoss");
  options.loss.vgg_loss_weight = s.number("vggLossWeight");
  options.loss.vgg_slice_stride = s.integer("vggSliceStride");
  options.loss.vgg_weights = s.string("vggWeights");
  options.loss.use_structure_weighted = s.boolean("useStructureWeighted");
  options.loss.structure_weighted_weight = s.number("structureWeightedWeight");
  options.loss.structure_target_weight = s.number("structureTargetWeight");
  options.loss.structure_boundary_weight = s.number("structureBoundaryWeight");
  options.loss.structure_background_weight = s.number("structureBackgroundWeight");
  options.loss.structure_boundary_width_mm = s.number("structureBoundaryWidthMm");
  options.loss.use_asymmetric_ptv = s.boolean("useAsymmetricPtv");
  options.loss.asymmetric_ptv_weight = s.number("asymmetricPtvWeight");
  options.loss.asymmetric_underdose_weight = s.number("asymmetricUnderdoseWeight");
  options.loss.asymmetric_overdose_weight = s.number("asymmetricOverdoseWeight");
  options.loss.use_dvh_loss = s.boolean("useDvhLoss");
  options.loss.dvh_loss_weight = s.number("dvhLossWeight");
  options.loss.dvh_bins = s.integer("dvhBins");
  options.loss.dvh_max_dose = s.number("dvhMaxDose");
  options.loss.target_channels = s.integers("targetChannels");
  options.loss.boundary_channels = s.integers("boundaryChannels");
  options.loss.dvh_channels = s.integers("dvhChannels");
  options.normalisation_dose_gy = s.number("normalisationDoseGy");
  options.device = s.string("device");
  options.num_workers = static_cast<int>(s.integer("numWorkers"));
  options.sw_batch = s.integer("swBatch");
  options.overlap = s.number("overlap");
  options.left_right_pairs = s.integer_pairs("leftRightPairs");
  options.checkpoint_dir = s.string("checkpointDir");
  options.resume = s.boolean("resume");
  options.resume_from = s.string("resumeFrom");
  for (const auto& [key, text] : s.string_map("checkpointMetadata")) options.checkpoint_metadata[key] = text;
  SettingsReader d(s.value("distributed"), "distributed setting");
  options.distributed.world_size = d.integer("worldSize", 1);
  options.distributed.rank = d.integer("rank", 0);
  options.distributed.local_rank = d.integer("localRank", 0);
  options.distributed.master_addr = d.string("masterAddr");
  options.distributed.master_port = d.integer("masterPort", 0);
  options.distributed.timeout_seconds = d.number("timeoutSeconds");
  d.finish();
  s.finish();
  return options;
}

class TrainWorker : public PromiseWorker {
 public:
  explicit TrainWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:train", call[2]) {
    ReadArguments([&] {
      auto env = call.Env();
      if (!call[0].IsObject()) throw Napi::TypeError::New(env, "trainModel(cases, settings, options)");
      options_ = TrainOptionsFrom(call[1]);
      auto cases = call[0].As<Napi::Object>();
      for (const char* set : {"train", "val"}) {
        auto list = cases.Get(set);
        if (!list.IsArray()) throw Napi::TypeError::New(env, std::string("cases.") + set + " must be an array");
        auto array = list.As<Napi::Array>();
        for (uint32_t i = 0; i < array.Length(); ++i) {
          (std::string(set) == "train" ? train_ : val_).push_back(CaseFrom(*this, array.Get(i), options_.cond_dim));
        }
      }
    });
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

// predictDose(checkpoint, input Float32Array, shape [C,Z,Y,X], constraints Float32Array(the checkpoint's cond_dim),
//             NativePredictSettings { patchSize, overlap, swBatch, device, normalisationDoseGy }, options)
//   → { data, shape } dose in Gy
class PredictWorker : public PromiseWorker {
 public:
  explicit PredictWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:predict", call[5]) {
    ReadArguments([&] {
      if (!call[0].IsString()) throw Napi::TypeError::New(call.Env(), "predictDose(checkpoint, input, shape, constraints, settings, options)");
      checkpoint_ = call[0].As<Napi::String>().Utf8Value();
      const auto shape = vmat::binding::ShapeFrom(call[2], "shape");
      if (shape.size() != 4) throw Napi::TypeError::New(call.Env(), "shape must be [C, Z, Y, X]");
      input_ = vmat::binding::TensorView(call[1], shape, "input");
      Retain(call[1]);
      if (!call[3].IsTypedArray()) throw Napi::TypeError::New(call.Env(), "constraints must be a Float32Array");
      constraints_ = vmat::binding::TensorView(call[3], {static_cast<int64_t>(call[3].As<Napi::TypedArray>().ElementLength())}, "constraints");
      Retain(call[3]);
      SettingsReader s(call[4], "prediction setting");
      window_.patch = s.integer("patchSize");
      window_.overlap = s.number("overlap");
      window_.batch = s.integer("swBatch");
      device_ = s.string("device");
      normalisation_dose_gy_ = s.number("normalisationDoseGy");
      s.finish();
    });
  }

 protected:
  void Run() override {
    const torch::Device device(vmat::resolve_device(device_));
    auto loaded = vmat::load_model(checkpoint_, device);
    vmat::require(loaded.config.in_channels == input_.size(0),
                  "the checkpoint " + checkpoint_ + " expects " + std::to_string(loaded.config.in_channels) + " input channels, the case gives " +
                      std::to_string(input_.size(0)));
    vmat::require(loaded.config.cond_dim == constraints_.numel(),
                  "the checkpoint " + checkpoint_ + " expects " + std::to_string(loaded.config.cond_dim) + " conditioning values, the case gives " +
                      std::to_string(constraints_.numel()));
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
  double normalisation_dose_gy_ = 0;
};

Napi::Value TrainModel(const Napi::CallbackInfo& call) { return (new TrainWorker(call))->Start(); }
Napi::Value PredictDose(const Napi::CallbackInfo& call) { return (new PredictWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(train) {
  exports.Set("trainModel", Napi::Function::New(env, TrainModel, "trainModel"));
  exports.Set("predictDose", Napi::Function::New(env, PredictDose, "predictDose"));
}
