// The network from JavaScript: a parameter summary, initial weights written as a checkpoint, and the metadata of a
// checkpoint (header only).
#include <napi.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "js_error.h"
#include "promise_worker.h"
#include "registry.h"
#include "vmat/checkpoint.h"
#include "vmat/unet.h"

namespace {

using vmat::binding::CallSync;
using vmat::binding::PromiseWorker;

int64_t IntegerArgument(const Napi::CallbackInfo& call, size_t index, const char* what) {
  const double value = call[index].IsNumber() ? call[index].As<Napi::Number>().DoubleValue() : NAN;
  // Int64Value() would quietly saturate 1e300 or truncate 8.5: only whole numbers within int64 go through.
  if (!(std::floor(value) == value && std::fabs(value) < 9.0e15)) {
    auto error = Napi::TypeError::New(call.Env(), std::string(what) + " must be a whole number");
    error.Set("code", "VMAT_INVALID_INPUT");
    throw error;
  }
  return static_cast<int64_t>(value);
}

std::string StringArgument(const Napi::CallbackInfo& call, size_t index, const char* what) {
  if (!call[index].IsString()) {
    auto error = Napi::TypeError::New(call.Env(), std::string(what) + " must be a string");
    error.Set("code", "VMAT_INVALID_INPUT");
    throw error;
  }
  return call[index].As<Napi::String>().Utf8Value();
}

vmat::UNetConfig ConfigFrom(const Napi::CallbackInfo& call) {
  vmat::UNetConfig config;
  config.in_channels = IntegerArgument(call, 0, "inChannels");
  config.base_channels = IntegerArgument(call, 1, "baseChannels");
  return config;
}

// modelSummary(inChannels, baseChannels) -> { parameters, layers: [{ name, shape, parameters }] }, without allocating
Napi::Value ModelSummary(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  const auto config = ConfigFrom(call);
  // Worked out from the config: printing the table of a wide network must not build it.
  const auto layers = CallSync(env, [&] { return vmat::parameter_layout(config); });
  auto list = Napi::Array::New(env, layers.size());
  double total = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto layer = Napi::Object::New(env);
    layer.Set("name", layers[i].name);
    auto shape = Napi::Array::New(env, layers[i].shape.size());
    for (size_t d = 0; d < layers[i].shape.size(); ++d)
      shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, static_cast<double>(layers[i].shape[d])));
    layer.Set("shape", shape);
    layer.Set("parameters", Napi::Number::New(env, static_cast<double>(layers[i].parameters)));
    total += static_cast<double>(layers[i].parameters);
    list.Set(static_cast<uint32_t>(i), layer);
  }
  auto result = Napi::Object::New(env);
  result.Set("parameters", total);
  result.Set("layers", list);
  return result;
}

// saveInitialWeights(path, inChannels, baseChannels, seed, options) -> Promise<{ path, parameters, config }>
class SaveInitialWeightsWorker : public PromiseWorker {
 public:
  SaveInitialWeightsWorker(const Napi::CallbackInfo& call, std::string path, vmat::UNetConfig config, int64_t seed)
      : PromiseWorker(call.Env(), "vmat:saveInitialWeights", call[4]), path_(std::move(path)), config_(config), seed_(seed) {}

 protected:
  void Run() override {
    config_.validate();
    vmat::require(seed_ >= 0, "the seed must be a non-negative integer, got " + std::to_string(seed_));
    torch::manual_seed(static_cast<uint64_t>(seed_));
    vmat::BaselineUNet3D model(config_);
    parameters_ = vmat::count_parameters(*model);
    vmat::save_model(path_, model, {{"seed", std::to_string(seed_)}, {"created_by", "vmat-native model --save"}});
  }
  Napi::Value Result(Napi::Env env) override {
    auto result = Napi::Object::New(env);
    result.Set("path", path_);
    result.Set("parameters", Napi::Number::New(env, static_cast<double>(parameters_)));
    result.Set("config", config_.to_json());
    return result;
  }

 private:
  std::string path_;
  vmat::UNetConfig config_;
  int64_t seed_;
  int64_t parameters_ = 0;
};

Napi::Value SaveInitialWeights(const Napi::CallbackInfo& call) {
  const auto path = StringArgument(call, 0, "path");
  vmat::UNetConfig config;
  config.in_channels = IntegerArgument(call, 1, "inChannels");
  config.base_channels = IntegerArgument(call, 2, "baseChannels");
  const auto seed = IntegerArgument(call, 3, "seed");
  return (new SaveInitialWeightsWorker(call, path, config, seed))->Start();
}

// readCheckpointMetadata(path) -> { [key]: string } (the __metadata__ map; reads the header only)
Napi::Value ReadCheckpointMetadata(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  const auto path = StringArgument(call, 0, "path");
  const auto metadata = CallSync(env, [&] { return vmat::read_safetensors_metadata(path); });
  auto result = Napi::Object::New(env);
  for (const auto& entry : metadata) result.Set(entry.first, entry.second);
  return result;
}

}  // namespace

VMAT_BINDING(model) {
  exports.Set("modelSummary", Napi::Function::New(env, ModelSummary, "modelSummary"));
  exports.Set("saveInitialWeights", Napi::Function::New(env, SaveInitialWeights, "saveInitialWeights"));
  exports.Set("readCheckpointMetadata", Napi::Function::New(env, ReadCheckpointMetadata, "readCheckpointMetadata"));
}
