// synthCase(seed, index, shape, spacing, options): one synthetic prostate SIB case (native/include/vmat/synth.h),
// made on a worker thread and handed to JS without copies.
#include <napi.h>

#include <cmath>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/synth.h"

namespace {

using vmat::binding::PromiseWorker;

std::array<double, 3> TripleFrom(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 3) {
    throw Napi::TypeError::New(value.Env(), what + " must be an array of 3 numbers (z, y, x)");
  }
  auto array = value.As<Napi::Array>();
  std::array<double, 3> out{};
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value item = array[i];
    if (!item.IsNumber()) throw Napi::TypeError::New(value.Env(), what + " must be an array of 3 numbers (z, y, x)");
    out[i] = item.As<Napi::Number>().DoubleValue();
  }
  return out;
}

class SynthWorker : public PromiseWorker {
 public:
  explicit SynthWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:synth", call[4]) {
    ReadArguments([&] {
      auto env = call.Env();
      if (!call[0].IsNumber() || !call[1].IsNumber()) throw Napi::TypeError::New(env, "seed and index must be numbers");
      const double seed = call[0].As<Napi::Number>().DoubleValue();
      const double index = call[1].As<Napi::Number>().DoubleValue();
      if (!(seed >= 0 && seed <= 9007199254740991.0 && std::floor(seed) == seed)) {
        throw Napi::RangeError::New(env, "seed must be an integer from 0 to 2^53-1");
      }
      if (!(index >= 0 && index <= 99999 && std::floor(index) == index)) {
        throw Napi::RangeError::New(env, "index must be an integer from 0 to 99999");
      }
      seed_ = static_cast<uint64_t>(seed);
      index_ = static_cast<int>(index);
      const auto shape = TripleFrom(call[2], "shape");
      for (int axis = 0; axis < 3; ++axis) {
        if (std::floor(shape[axis]) != shape[axis]) throw Napi::TypeError::New(env, "shape must hold integers");
        shape_[axis] = static_cast<int64_t>(shape[axis]);
      }
      spacing_ = TripleFrom(call[3], "spacing");
    });
  }

 protected:
  void Run() override {
    // A case takes about a second: cancellation is honoured before it starts.
    if (Cancelled()) throw vmat::Error(vmat::ErrorCode::Cancelled, "making the synthetic case was cancelled");
    case_ = vmat::generate_synth_case(seed_, index_, shape_, spacing_);
  }

  Napi::Value Result(Napi::Env env) override {
    auto result = Napi::Object::New(env);
    result.Set("caseId", case_.case_id);
    result.Set("ct", vmat::binding::ToTypedArray(env, case_.ct));
    result.Set("dose", vmat::binding::ToTypedArray(env, case_.dose));
    result.Set("masks", vmat::binding::ToTypedArray(env, case_.masks));
    result.Set("body", vmat::binding::ToTypedArray(env, case_.body));
    result.Set("constraints", vmat::binding::ToTypedArray(env, case_.constraints));
    auto structures = Napi::Array::New(env, case_.structures.size());
    for (uint32_t i = 0; i < case_.structures.size(); ++i) structures.Set(i, case_.structures[i]);
    result.Set("structures", structures);
    auto shape = Napi::Array::New(env, 3), spacing = Napi::Array::New(env, 3), isocentre = Napi::Array::New(env, 3);
    for (uint32_t i = 0; i < 3; ++i) {
      shape.Set(i, Napi::Number::New(env, static_cast<double>(case_.shape[i])));
      spacing.Set(i, case_.spacing_mm[i]);
      isocentre.Set(i, case_.plan.isocentre_mm[i]);
    }
    result.Set("shape", shape);
    result.Set("spacingMm", spacing);
    auto plan = Napi::Object::New(env);
    plan.Set("beams", case_.plan.beams);
    plan.Set("attenuationPerMm", case_.plan.attenuation_per_mm);
    plan.Set("penumbraSigmaMm", case_.plan.penumbra_sigma_mm);
    plan.Set("optimiserIterations", case_.plan.optimiser_iterations);
    plan.Set("oarLimitGy", case_.plan.oar_limit_gy);
    plan.Set("oarWeight", case_.plan.oar_weight);
    plan.Set("isocentreMm", isocentre);
    result.Set("plan", plan);
    return result;
  }

 private:
  uint64_t seed_ = 0;
  int index_ = 0;
  std::array<int64_t, 3> shape_{};
  std::array<double, 3> spacing_{};
  vmat::SynthCase case_;
};

Napi::Value SynthCase(const Napi::CallbackInfo& call) { return (new SynthWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(synth) {
  exports.Set("synthCase", Napi::Function::New(env, SynthCase, "synthCase"));
  exports.Set("synthGeneratorVersion", Napi::String::New(env, vmat::kSynthGeneratorVersion));
}
