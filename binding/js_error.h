#pragma once
// Synchronous native calls turn core errors into JS errors with the same `code` as PromiseWorker's rejections.
#include <napi.h>
#include <c10/util/Exception.h>

#include <new>
#include <string>
#include <utility>

#include "vmat/error.h"

namespace vmat::binding {

// libtorch reports an allocation it cannot make as "DefaultCPUAllocator: can't allocate memory: you tried to
// allocate N bytes" (or "not enough memory", by version) on the host, "CUDA out of memory. Tried to allocate 2.00 GiB
// (GPU 0; ...)" on a GPU.
inline bool IsOutOfMemory(const std::string& message) {
  return message.find("out of memory") != std::string::npos || message.find("not enough memory") != std::string::npos ||
         message.find("can't allocate memory") != std::string::npos;
}

// One sentence: where memory ran out, the allocation that failed (its size, from libtorch's message), the remedy.
inline std::string OutOfMemoryMessage(const std::string& message, const std::string& activity, const std::string& remedy) {
  const bool gpu = message.find("CUDA") != std::string::npos;
  std::string cause = "an allocation failed";
  for (const char* marker : {"you tried to allocate ", "Tried to allocate "}) {
    const auto at = message.find(marker);
    if (at == std::string::npos) continue;
    const auto start = at + std::string(marker).size();
    const auto end = message.find_first_of("(;.\n", message.find(' ', start) + 1);
    cause = "an allocation of " + message.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!cause.empty() && cause.back() == ' ') cause.pop_back();
    cause += " failed";
    break;
  }
  return std::string("out of ") + (gpu ? "GPU" : "host") + " memory while " + activity + " (" + cause + "): " + remedy;
}

template <typename Fn>
auto CallSync(Napi::Env env, Fn&& fn, const char* activity = "running a native call",
              const char* remedy = "free memory or use smaller inputs") -> decltype(fn()) {
  const auto reject = [&](const std::string& message, const char* code) {
    auto js = Napi::Error::New(env, message);
    js.Set("code", code);
    return js;
  };
  try {
    return fn();
  } catch (const vmat::Error& error) {
    throw reject(error.what(), vmat::error_code_name(error.code()));
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& error) {
    // what() carries libtorch's native stack frames; users see the message alone.
    const std::string message = error.what_without_backtrace();
    if (IsOutOfMemory(message)) throw reject(OutOfMemoryMessage(message, activity, remedy), "VMAT_OUT_OF_MEMORY");
    throw reject(message, "VMAT_INTERNAL");
  } catch (const std::bad_alloc&) {
    throw reject(OutOfMemoryMessage("std::bad_alloc", activity, remedy), "VMAT_OUT_OF_MEMORY");
  } catch (const std::exception& error) {
    throw reject(error.what(), "VMAT_INTERNAL");
  }
}

}  // namespace vmat::binding
