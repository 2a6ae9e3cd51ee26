// info(): what the addon was built with and what it finds at run time.
#include <napi.h>

#include "js_error.h"
#include "registry.h"
#include "vmat/distributed.h"
#include "vmat/runtime.h"

namespace {

Napi::Value Info(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  const auto info = vmat::runtime_info();
  auto result = Napi::Object::New(env);
  result.Set("libtorchVersion", info.libtorch_version);
  result.Set("cudaCompiled", info.cuda_compiled);
  result.Set("torchCudaCompiled", info.torch_cuda_compiled);
  result.Set("cudaAvailable", info.cuda_available);
  result.Set("cudaVersion", info.cuda_version);
  result.Set("cudnnAvailable", info.cudnn_available);
  result.Set("cudnnVersion", Napi::Number::New(env, static_cast<double>(info.cudnn_version)));
  result.Set("threads", info.threads);
  result.Set("interopThreads", info.interop_threads);
  result.Set("parallelInfo", info.parallel_info);
  const auto backends = vmat::distributed_backends();
  auto distributed = Napi::Array::New(env, backends.size());
  for (size_t i = 0; i < backends.size(); ++i) distributed.Set(static_cast<uint32_t>(i), backends[i]);
  result.Set("distributedBackends", distributed);
  auto devices = Napi::Array::New(env, info.devices.size());
  for (size_t i = 0; i < info.devices.size(); ++i) {
    const auto& device = info.devices[i];
    auto item = Napi::Object::New(env);
    item.Set("index", device.index);
    item.Set("name", device.name);
    item.Set("totalMemoryBytes", Napi::Number::New(env, static_cast<double>(device.total_memory_bytes)));
    item.Set("computeCapability", std::to_string(device.compute_major) + "." + std::to_string(device.compute_minor));
    devices.Set(static_cast<uint32_t>(i), item);
  }
  result.Set("devices", devices);
  return result;
}

Napi::Value ResolveDevice(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  const auto requested = call[0].As<Napi::String>().Utf8Value();
  return Napi::String::New(env, vmat::binding::CallSync(env, [&] { return vmat::resolve_device(requested); }));
}

}  // namespace

VMAT_BINDING(info) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("resolveDevice", Napi::Function::New(env, ResolveDevice, "resolveDevice"));
}
