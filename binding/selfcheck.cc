// Self-check of the addon's plumbing, run by `vmat-native info --check` and the tests: a tensor shared with JS,
// a Promise that runs off the event loop, ordered progress events, cancellation and error codes.
#include <napi.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"

namespace {

using vmat::binding::PromiseWorker;

// Multiplies a TypedArray in place through a tensor view: proves the view shares the array's memory.
Napi::Value ScaleInPlace(const Napi::CallbackInfo& call) {
  auto tensor = vmat::binding::TensorView(call[0], {static_cast<int64_t>(call[0].As<Napi::TypedArray>().ElementLength())}, "array");
  tensor.mul_(call[1].As<Napi::Number>().DoubleValue());
  return call.Env().Undefined();
}

// A tensor made by libtorch, handed to JS without a copy: arange(n) as float32.
Napi::Value Arange(const Napi::CallbackInfo& call) {
  auto n = call[0].As<Napi::Number>().Int64Value();
  return vmat::binding::ToJsTensor(call.Env(), torch::arange(n, torch::kFloat));
}

// Sums `array` in `steps` steps on a worker thread, sleeping `stepMs` per step, emitting progress per step and
// stopping early when cancelled. Rejects with VMAT_INVALID_INPUT when steps < 0 (to exercise error codes).
class SumWorker : public PromiseWorker {
 public:
  SumWorker(const Napi::CallbackInfo& call)
      : PromiseWorker(call.Env(), "vmat:selfcheck", call[3]),
        steps_(call[1].As<Napi::Number>().Int32Value()),
        step_ms_(call[2].As<Napi::Number>().Int32Value()) {
    input_ = vmat::binding::TensorView(call[0], {static_cast<int64_t>(call[0].As<Napi::TypedArray>().ElementLength())}, "array");
    Retain(call[0]);
  }

 protected:
  void Run() override {
    vmat::require(steps_ >= 0, "steps must be >= 0, got " + std::to_string(steps_));
    for (int step = 0; step < steps_; ++step) {
      if (Cancelled()) {
        cancelled_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(step_ms_));
      sum_ = input_.sum().item<double>() * (step + 1);
      Emit("{\"step\":" + std::to_string(step + 1) + ",\"of\":" + std::to_string(steps_) + "}");
      steps_done_ = step + 1;
    }
  }
  Napi::Value Result(Napi::Env env) override {
    auto result = Napi::Object::New(env);
    result.Set("sum", sum_);
    result.Set("stepsDone", steps_done_);
    result.Set("cancelled", cancelled_);
    return result;
  }

 private:
  at::Tensor input_;
  int steps_;
  int step_ms_;
  int steps_done_ = 0;
  double sum_ = 0;
  bool cancelled_ = false;
};

Napi::Value SumAsync(const Napi::CallbackInfo& call) { return (new SumWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(selfcheck) {
  auto selfcheck = Napi::Object::New(env);
  selfcheck.Set("scaleInPlace", Napi::Function::New(env, ScaleInPlace, "scaleInPlace"));
  selfcheck.Set("arange", Napi::Function::New(env, Arange, "arange"));
  selfcheck.Set("sumAsync", Napi::Function::New(env, SumAsync, "sumAsync"));
  exports.Set("selfcheck", selfcheck);
}
