// gamma(ref, refShape, refSpacing, refOrigin, eval, evalShape, evalSpacing, evalOrigin, settings, options):
// the 3D gamma index off the event loop. The doses are viewed without copies; Γ comes back as a Float32Array
// that owns the native tensor's memory.
#include <napi.h>
#include <torch/torch.h>

#include <chrono>
#include <string>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/gamma.h"

namespace {

using vmat::binding::PromiseWorker;

std::array<double, 3> Triple(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 3) {
    throw Napi::TypeError::New(value.Env(), what + " must be an array of 3 numbers (z, y, x)");
  }
  std::array<double, 3> triple{};
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value item = value.As<Napi::Array>()[i];
    if (!item.IsNumber()) throw Napi::TypeError::New(value.Env(), what + " must be an array of 3 numbers (z, y, x)");
    triple[i] = item.As<Napi::Number>().DoubleValue();
  }
  return triple;
}

vmat::GammaGrid Grid(const Napi::Value& shape, const Napi::Value& spacing, const Napi::Value& origin, const std::string& what) {
  vmat::GammaGrid grid;
  const auto sizes = vmat::binding::ShapeFrom(shape, what + " shape");
  if (sizes.size() != 3) throw Napi::TypeError::New(shape.Env(), what + " shape must have 3 sizes (z, y, x)");
  grid.shape = {sizes[0], sizes[1], sizes[2]};
  grid.spacing_mm = Triple(spacing, what + " spacing");
  grid.origin_mm = Triple(origin, what + " origin");
  return grid;
}

double NumberField(const Napi::Object& object, const char* name, double fallback) {
  if (!object.Has(name) || object.Get(name).IsUndefined() || object.Get(name).IsNull()) return fallback;
  if (!object.Get(name).IsNumber()) throw Napi::TypeError::New(object.Env(), std::string("settings.") + name + " must be a number");
  return object.Get(name).As<Napi::Number>().DoubleValue();
}

class GammaWorker : public PromiseWorker {
 public:
  GammaWorker(const Napi::CallbackInfo& call, at::Tensor reference, vmat::GammaGrid reference_grid, at::Tensor evaluated,
              vmat::GammaGrid evaluated_grid, vmat::GammaSettings settings, std::string device)
      : PromiseWorker(call.Env(), "vmat:gamma", call[9]),
        reference_(std::move(reference)),
        evaluated_(std::move(evaluated)),
        reference_grid_(reference_grid),
        evaluated_grid_(evaluated_grid),
        settings_(settings),
        device_(std::move(device)) {
    Retain(call[0]);
    Retain(call[4]);
  }

 protected:
  void Run() override {
    vmat::GammaHooks hooks;
    const auto flag = cancel_flag();
    hooks.cancel = flag.get();
    hooks.threads = threads();
    int64_t last_percent = -1;
    hooks.progress = [this, &last_percent](int64_t done, int64_t total) {
      const int64_t percent = total > 0 ? done * 100 / total : 100;
      if (percent == last_percent) return;
      last_percent = percent;
      Emit("{\"done\":" + std::to_string(done) + ",\"total\":" + std::to_string(total) + "}");
    };
    const auto start = std::chrono::steady_clock::now();
    result_ = vmat::gamma_index(reference_, reference_grid_, evaluated_, evaluated_grid_, settings_, device_, hooks);
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  Napi::Value Result(Napi::Env env) override {
    auto object = Napi::Object::New(env);
    object.Set("gamma", vmat::binding::ToTypedArray(env, result_.gamma));
    object.Set("passRatePct", result_.summary.pass_rate_pct);
    object.Set("nEvaluated", Napi::Number::New(env, static_cast<double>(result_.summary.n_evaluated)));
    object.Set("nPassed", Napi::Number::New(env, static_cast<double>(result_.summary.n_passed)));
    object.Set("meanGamma", result_.summary.mean_gamma);
    object.Set("medianGamma", result_.summary.median_gamma);
    object.Set("normalisationGy", result_.normalisation_gy);
    object.Set("cutoffGy", result_.cutoff_gy);
    object.Set("device", result_.device);
    object.Set("seconds", seconds_);
    return object;
  }

 private:
  at::Tensor reference_;
  at::Tensor evaluated_;
  vmat::GammaGrid reference_grid_;
  vmat::GammaGrid evaluated_grid_;
  vmat::GammaSettings settings_;
  std::string device_;
  vmat::GammaResult result_;
  double seconds_ = 0;
};

Napi::Value Gamma(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  if (call.Length() < 9 || !call[8].IsObject()) throw Napi::TypeError::New(env, "gamma needs 2 doses with shape, spacing and origin, then settings");
  const auto reference_grid = Grid(call[1], call[2], call[3], "reference");
  const auto evaluated_grid = Grid(call[5], call[6], call[7], "evaluated");
  if (!call[0].IsTypedArray() || call[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      !call[4].IsTypedArray() || call[4].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, "gamma's doses must be Float32Arrays");
  }
  auto reference = vmat::binding::TensorView(call[0], {reference_grid.shape.begin(), reference_grid.shape.end()}, "reference dose");
  auto evaluated = vmat::binding::TensorView(call[4], {evaluated_grid.shape.begin(), evaluated_grid.shape.end()}, "evaluated dose");
  const auto object = call[8].As<Napi::Object>();
  vmat::GammaSettings settings;
  settings.dose_percent = NumberField(object, "dosePercent", settings.dose_percent);
  settings.dta_mm = NumberField(object, "dtaMm", settings.dta_mm);
  settings.cutoff_percent = NumberField(object, "cutoffPercent", settings.cutoff_percent);
  settings.normalisation_gy = NumberField(object, "normGy", 0.0);
  settings.interp_fraction = NumberField(object, "interpFraction", settings.interp_fraction);
  settings.max_gamma = NumberField(object, "maxGamma", settings.max_gamma);
  settings.local = object.Has("local") && object.Get("local").ToBoolean().Value();
  std::string device = "auto";
  if (object.Has("device") && object.Get("device").IsString()) device = object.Get("device").As<Napi::String>().Utf8Value();
  auto* worker = new GammaWorker(call, std::move(reference), reference_grid, std::move(evaluated), evaluated_grid, settings, device);
  return worker->Start();
}

}  // namespace

VMAT_BINDING(gamma) { exports.Set("gamma", Napi::Function::New(env, Gamma, "gamma")); }
