// Case-data kernels for JS: signed distance maps and the derived body mask, as Promises off the event loop.
// Inputs are viewed without copies (kept alive by Retain) and results handed over without copies.
#include <napi.h>
#include <torch/torch.h>

#include <array>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/sdf.h"

namespace {

using vmat::binding::PromiseWorker;

// signedDistanceMaps(masks: Uint8Array, shape: [S,Z,Y,X], spacing: [z,y,x], options?: { clipMm, onProgress,
// cancel, threads }) → Promise<{ data: Float32Array, shape }>. Progress: {"structure": s+1, "of": S}.
class DistanceWorker : public PromiseWorker {
 public:
  explicit DistanceWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:sdf", call[3]) {
    masks_ = vmat::binding::TensorView(call[0], vmat::binding::ShapeFrom(call[1], "shape"), "masks");
    Retain(call[0]);
    auto spacing = call[2];
    if (!spacing.IsArray() || spacing.As<Napi::Array>().Length() != 3) {
      throw Napi::TypeError::New(call.Env(), "spacing must be an array of 3 numbers (z, y, x) in mm");
    }
    for (uint32_t i = 0; i < 3; ++i) spacing_[i] = spacing.As<Napi::Array>().Get(i).ToNumber().DoubleValue();
    if (call[3].IsObject() && call[3].As<Napi::Object>().Get("clipMm").IsNumber()) {
      clip_mm_ = call[3].As<Napi::Object>().Get("clipMm").ToNumber().DoubleValue();
    }
  }

 protected:
  void Run() override {
    const int64_t total = masks_.dim() > 0 ? masks_.size(0) : 0;
    result_ = vmat::signed_distance_maps(
        masks_, spacing_, clip_mm_,
        [&](int64_t s) { Emit("{\"structure\":" + std::to_string(s + 1) + ",\"of\":" + std::to_string(total) + "}"); },
        cancel_flag().get());
  }
  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, result_); }

 private:
  at::Tensor masks_;
  std::array<double, 3> spacing_{};
  double clip_mm_ = 50.0;
  at::Tensor result_;
};

// deriveBodyMask(ct: Int16Array | Float32Array, shape: [Z,Y,X], options?) → Promise<{ data: Uint8Array, shape }>.
class BodyWorker : public PromiseWorker {
 public:
  explicit BodyWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:body", call[2]) {
    ct_ = vmat::binding::TensorView(call[0], vmat::binding::ShapeFrom(call[1], "shape"), "ct");
    Retain(call[0]);
  }

 protected:
  void Run() override { result_ = vmat::derive_body_mask(ct_); }
  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, result_); }

 private:
  at::Tensor ct_;
  at::Tensor result_;
};

Napi::Value SignedDistanceMaps(const Napi::CallbackInfo& call) { return (new DistanceWorker(call))->Start(); }
Napi::Value DeriveBodyMask(const Napi::CallbackInfo& call) { return (new BodyWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(data) {
  auto data = Napi::Object::New(env);
  data.Set("signedDistanceMaps", Napi::Function::New(env, SignedDistanceMaps, "signedDistanceMaps"));
  data.Set("deriveBodyMask", Napi::Function::New(env, DeriveBodyMask, "deriveBodyMask"));
  exports.Set("data", data);
}
