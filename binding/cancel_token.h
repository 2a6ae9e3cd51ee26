#pragma once
// A flag shared between JS (set from an AbortSignal) and a native worker (polled between steps).
#include <napi.h>

#include <atomic>
#include <memory>

namespace vmat::binding {

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Define(Napi::Env env);
  static std::shared_ptr<std::atomic<bool>> FlagOf(Napi::Object object);

  explicit CancelToken(const Napi::CallbackInfo& info);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value IsCancelled(const Napi::CallbackInfo& info);

  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace vmat::binding
