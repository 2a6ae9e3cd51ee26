#include "promise_worker.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <new>
#include <thread>

#include "js_error.h"

namespace vmat::binding {

PromiseWorker::PromiseWorker(Napi::Env env, const char* name, Napi::Value options)
    : Napi::AsyncProgressQueueWorker<char>(env, name), deferred_(Napi::Promise::Deferred::New(env)), name_(name) {
  if (!options.IsObject()) return;
  auto object = options.As<Napi::Object>();
  if (object.Has("onProgress") && object.Get("onProgress").IsFunction()) {
    on_progress_ = Napi::Persistent(object.Get("onProgress").As<Napi::Function>());
  }
  if (object.Has("cancel") && object.Get("cancel").IsObject()) {
    cancel_ = CancelToken::FlagOf(object.Get("cancel").As<Napi::Object>());
  }
  if (object.Has("threads") && object.Get("threads").IsNumber()) {
    // Every native call, training included, comes through here: the one place that bounds the thread count.
    // OpenMP would try to start whatever number it is given (100 000 threads hang in the pool's set-up), and
    // more threads than cores only slow libtorch down.
    const double threads = object.Get("threads").As<Napi::Number>().DoubleValue();
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const double most = 4.0 * cores;
    if (threads >= 0 && threads <= most && std::floor(threads) == threads) {
      threads_ = static_cast<int>(threads);
    } else {
      threads_error_ = "threads must be a whole number from 0 to " + std::to_string(static_cast<int>(most)) + " (4 per CPU core; this machine has " +
                       std::to_string(cores) + "), got " + Napi::Number::New(env, threads).ToString().Utf8Value();
    }
  }
}

namespace {

// What each call was doing and what to change when it runs out of memory (settings as the library names them).
struct Activity {
  const char* name;
  const char* doing;
  const char* remedy;
};
constexpr Activity kActivities[] = {
    {"vmat:train", "training", "use a smaller patchSize, batchSize or baseChannels (on a GPU, precision bf16 also halves the activations)"},
    {"vmat:predict", "predicting", "use a smaller patchSize or swBatch"},
    {"vmat:synth", "making a synthetic case", "use a smaller shape"},
    {"vmat:gamma", "computing the gamma index", "use a smaller interpFraction or maxGamma, or a coarser dose grid"},
    {"vmat:sdf", "computing distance maps", "the case is too large for this machine's memory: free memory or use a machine with more"},
    {"vmat:body", "deriving the body mask", "the case is too large for this machine's memory: free memory or use a machine with more"},
    {"vmat:saveInitialWeights", "building the network", "use a smaller baseChannels"},
};

}  // namespace

PromiseWorker::~PromiseWorker() {
  for (auto& reference : retained_) reference.Reset();
}

Napi::Value PromiseWorker::Start() {
  auto promise = deferred_.Promise();
  Queue();  // a refused worker too: it completes doing nothing and deletes itself as node-addon-api expects
  if (refusal_) std::rethrow_exception(refusal_);
  return promise;
}

void PromiseWorker::Retain(Napi::Value value) { retained_.push_back(Napi::Persistent(value)); }

void PromiseWorker::Emit(const std::string& json) {
  if (progress_ && !on_progress_.IsEmpty()) progress_->Send(json.data(), json.size());
}

void PromiseWorker::Execute(const ExecutionProgress& progress) {
  if (refusal_) return;
  progress_ = &progress;
  // libtorch's intra-op pool is per thread: set it on the thread that does the work.
  if (!threads_error_.empty()) {
    error_code_ = "VMAT_INVALID_INPUT";
    SetError(threads_error_);
    progress_ = nullptr;
    return;
  }
  if (threads_ > 0) at::set_num_threads(threads_);
  Activity activity{name_.c_str(), "running a native call", "free memory or use smaller inputs"};
  for (const auto& known : kActivities)
    if (name_ == known.name) activity = known;
  try {
    Run();
  } catch (const vmat::Error& error) {
    error_code_ = vmat::error_code_name(error.code());
    SetError(error.what());
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    const bool oom = IsOutOfMemory(message);
    error_code_ = oom ? "VMAT_OUT_OF_MEMORY" : "VMAT_INTERNAL";
    SetError(oom ? OutOfMemoryMessage(message, activity.doing, activity.remedy) : message);
  } catch (const std::bad_alloc&) {
    error_code_ = "VMAT_OUT_OF_MEMORY";
    SetError(OutOfMemoryMessage("std::bad_alloc", activity.doing, activity.remedy));
  } catch (const std::exception& error) {
    error_code_ = "VMAT_INTERNAL";
    SetError(error.what());
  }
  progress_ = nullptr;
}

void PromiseWorker::OnProgress(const char* data, size_t count) {
  if (on_progress_.IsEmpty()) return;
  Napi::HandleScope scope(Env());
  on_progress_.Call({Napi::String::New(Env(), data, count)});
}

void PromiseWorker::OnOK() {
  Napi::HandleScope scope(Env());
  // Nobody holds the promise of refused arguments (the call threw); settling it releases it, and rejecting it would
  // be an unhandled rejection.
  if (refusal_) {
    deferred_.Resolve(Env().Undefined());
    return;
  }
  try {
    deferred_.Resolve(Result(Env()));
  } catch (const Napi::Error& error) {
    deferred_.Reject(error.Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  Napi::HandleScope scope(Env());
  auto value = error.Value();
  value.Set("code", Napi::String::New(Env(), error_code_));
  deferred_.Reject(value);
}

}  // namespace vmat::binding
