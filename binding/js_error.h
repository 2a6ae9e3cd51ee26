#pragma once
// Synchronous native calls turn core errors into JS errors with the same `code` as PromiseWorker's rejections.
#include <napi.h>

#include <utility>

#include "vmat/error.h"

namespace vmat::binding {

template <typename Fn>
auto CallSync(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const vmat::Error& error) {
    auto js = Napi::Error::New(env, error.what());
    js.Set("code", vmat::error_code_name(error.code()));
    throw js;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& error) {
    auto js = Napi::Error::New(env, error.what());
    js.Set("code", "VMAT_INTERNAL");
    throw js;
  }
}

}  // namespace vmat::binding
