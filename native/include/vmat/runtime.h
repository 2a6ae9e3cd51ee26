#pragma once
// What the linked libtorch offers: versions, CUDA/cuDNN compiled in and available, devices, threads.
#include <cstdint>
#include <string>
#include <vector>

namespace vmat {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int64_t total_memory_bytes = 0;
  int compute_major = 0;
  int compute_minor = 0;
};

struct RuntimeInfo {
  std::string libtorch_version;
  bool cuda_compiled = false;       // vmat-native's own CUDA kernels were built
  bool torch_cuda_compiled = false; // the linked libtorch has CUDA
  bool cuda_available = false;      // and a device answers
  std::string cuda_version;         // libtorch's CUDA runtime, "" without CUDA
  bool cudnn_available = false;
  int64_t cudnn_version = 0;
  std::vector<DeviceInfo> devices;
  int threads = 0;
  int interop_threads = 0;
  std::string parallel_info;
};

RuntimeInfo runtime_info();

// Parses "auto" | "cpu" | "cuda" | "cuda:N" into a torch device string, checking that it exists.
std::string resolve_device(const std::string& requested);

}  // namespace vmat
