#include "cancel_token.h"

#include "registry.h"

namespace vmat::binding {

static Napi::FunctionReference* cancel_token_constructor = nullptr;

Napi::Function CancelToken::Define(Napi::Env env) {
  auto constructor = DefineClass(env, "CancelToken",
                                 {InstanceMethod("cancel", &CancelToken::Cancel),
                                  InstanceAccessor("cancelled", &CancelToken::IsCancelled, nullptr)});
  cancel_token_constructor = new Napi::FunctionReference(Napi::Persistent(constructor));
  env.SetInstanceData(cancel_token_constructor);
  return constructor;
}

std::shared_ptr<std::atomic<bool>> CancelToken::FlagOf(Napi::Object object) {
  if (!cancel_token_constructor || !object.InstanceOf(cancel_token_constructor->Value())) {
    throw Napi::TypeError::New(object.Env(), "cancel must be a CancelToken");
  }
  return Unwrap(object)->flag_;
}

CancelToken::CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {}

Napi::Value CancelToken::Cancel(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value CancelToken::IsCancelled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flag_->load());
}

}  // namespace vmat::binding

VMAT_BINDING(cancel_token) { exports.Set("CancelToken", vmat::binding::CancelToken::Define(env)); }
