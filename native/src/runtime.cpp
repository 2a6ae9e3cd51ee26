#include "vmat/runtime.h"

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "vmat/error.h"

#ifdef VMAT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace vmat {

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.libtorch_version = TORCH_VERSION;
#ifdef VMAT_WITH_CUDA
  info.cuda_compiled = true;
#endif
  const auto& hooks = at::detail::getCUDAHooks();
  info.torch_cuda_compiled = hooks.hasCUDA() || torch::cuda::is_available();
  info.cuda_available = torch::cuda::is_available();
  info.threads = at::get_num_threads();
  info.interop_threads = at::get_num_interop_threads();
  info.parallel_info = at::get_parallel_info();
  if (info.cuda_available) {
    info.cudnn_available = torch::cuda::cudnn_is_available();
    try {
      info.cudnn_version = hooks.versionCuDNN();
    } catch (const std::exception&) {
      info.cudnn_version = 0;
    }
#ifdef VMAT_WITH_CUDA
    int runtime_version = 0;
    if (cudaRuntimeGetVersion(&runtime_version) == cudaSuccess) {
      info.cuda_version = std::to_string(runtime_version / 1000) + "." + std::to_string((runtime_version % 1000) / 10);
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
      info.devices.push_back({i, prop.name, static_cast<int64_t>(prop.totalGlobalMem), prop.major, prop.minor});
    }
#else
    const int count = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < count; ++i) info.devices.push_back({i, "CUDA device " + std::to_string(i), 0, 0, 0});
#endif
  }
  return info;
}

std::string resolve_device(const std::string& requested) {
  if (requested == "cpu") return "cpu";
  if (requested == "auto") return torch::cuda::is_available() ? "cuda:0" : "cpu";
  if (requested.rfind("cuda", 0) == 0) {
    int index = 0;
    if (requested.size() > 4) {
      require(requested[4] == ':' && requested.size() > 5, "device '" + requested + "' is not auto, cpu, cuda or cuda:N");
      try {
        index = std::stoi(requested.substr(5));
      } catch (const std::exception&) {
        throw Error(ErrorCode::InvalidInput, "device '" + requested + "' is not auto, cpu, cuda or cuda:N");
      }
    }
    require(torch::cuda::is_available(),
            "device '" + requested + "' was asked for, but no CUDA device is available to this libtorch (run `vmat-native info`)");
    require(index >= 0 && index < static_cast<int>(torch::cuda::device_count()),
            "device '" + requested + "' does not exist: " + std::to_string(torch::cuda::device_count()) + " CUDA device(s) found");
    return "cuda:" + std::to_string(index);
  }
  throw Error(ErrorCode::InvalidInput, "device '" + requested + "' is not auto, cpu, cuda or cuda:N");
}

}  // namespace vmat
