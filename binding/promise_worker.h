#pragma once
// The one shape of every long native call: a Promise settled by an AsyncProgressQueueWorker.
//  - Run() executes on a libuv worker thread (never on Node's event loop); throw vmat::Error to reject.
//  - Emit(json) sends a progress event to the optional JS callback; events arrive in order and all before the
//    Promise settles (node-addon-api defers OnOK until the progress queue is drained).
//  - Cancelled() reads the CancelToken that JS flips from an AbortSignal.
//  - Errors reject with an Error whose `code` is vmat::error_code_name(...); TS adds the caller's stack.
#include <napi.h>

#include <atomic>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "cancel_token.h"
#include "vmat/error.h"

namespace vmat::binding {

class PromiseWorker : public Napi::AsyncProgressQueueWorker<char> {
 public:
  // options may hold { onProgress?: (json: string) => void, cancel?: CancelToken, threads?: number }.
  PromiseWorker(Napi::Env env, const char* name, Napi::Value options);
  ~PromiseWorker() override;

  Napi::Promise Promise() { return deferred_.Promise(); }
  // Queues the worker and returns its Promise.
  Napi::Value Start();

  // Keeps a JS value (typically a TypedArray viewed as a tensor) alive until the worker is destroyed.
  void Retain(Napi::Value value);

 protected:
  // Reads the call's arguments (a worker constructor's body). A refusal is kept and thrown by Start(): thrown from
  // the constructor, it would free the worker while the base's thread-safe function still points at it, and that
  // function's finalizer would crash the process when it exits.
  template <typename Read>
  void ReadArguments(Read&& read) {
    try {
      read();
    } catch (...) {
      refusal_ = std::current_exception();
    }
  }

  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Emit(const std::string& json);
  bool Cancelled() const { return cancel_ && cancel_->load(); }
  std::shared_ptr<std::atomic<bool>> cancel_flag() const { return cancel_; }
  int threads() const { return threads_; }

 private:
  void Execute(const ExecutionProgress& progress) final;
  void OnProgress(const char* data, size_t count) final;
  void OnOK() final;
  void OnError(const Napi::Error& error) final;

  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_progress_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::vector<Napi::Reference<Napi::Value>> retained_;
  const ExecutionProgress* progress_ = nullptr;
  std::string error_code_ = "VMAT_INTERNAL";
  std::string name_;
  int threads_ = 0;
  std::exception_ptr refusal_;  // the arguments were refused: Start() throws it, the worker completes doing nothing
  std::string threads_error_;  // set when `threads` is out of bounds: the call rejects with it before any work
};

}  // namespace vmat::binding
