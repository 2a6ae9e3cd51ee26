#include "promise_worker.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <new>

namespace vmat::binding {

PromiseWorker::PromiseWorker(Napi::Env env, const char* name, Napi::Value options)
    : Napi::AsyncProgressQueueWorker<char>(env, name), deferred_(Napi::Promise::Deferred::New(env)) {
  if (!options.IsObject()) return;
  auto object = options.As<Napi::Object>();
  if (object.Has("onProgress") && object.Get("onProgress").IsFunction()) {
    on_progress_ = Napi::Persistent(object.Get("onProgress").As<Napi::Function>());
  }
  if (object.Has("cancel") && object.Get("cancel").IsObject()) {
    cancel_ = CancelToken::FlagOf(object.Get("cancel").As<Napi::Object>());
  }
  if (object.Has("threads") && object.Get("threads").IsNumber()) {
    threads_ = object.Get("threads").As<Napi::Number>().Int32Value();
  }
}

PromiseWorker::~PromiseWorker() {
  for (auto& reference : retained_) reference.Reset();
}

Napi::Value PromiseWorker::Start() {
  auto promise = deferred_.Promise();
  Queue();
  return promise;
}

void PromiseWorker::Retain(Napi::Value value) { retained_.push_back(Napi::Persistent(value)); }

void PromiseWorker::Emit(const std::string& json) {
  if (progress_ && !on_progress_.IsEmpty()) progress_->Send(json.data(), json.size());
}

void PromiseWorker::Execute(const ExecutionProgress& progress) {
  progress_ = &progress;
  // libtorch's intra-op pool is per thread: set it on the thread that does the work.
  if (threads_ > 0) at::set_num_threads(threads_);
  try {
    Run();
  } catch (const vmat::Error& error) {
    error_code_ = vmat::error_code_name(error.code());
    SetError(error.what());
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    const bool oom = message.find("out of memory") != std::string::npos;
    error_code_ = oom ? "VMAT_OUT_OF_MEMORY" : "VMAT_INTERNAL";
    SetError(message);
  } catch (const std::bad_alloc&) {
    error_code_ = "VMAT_OUT_OF_MEMORY";
    SetError("out of host memory");
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
