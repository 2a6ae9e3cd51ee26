#pragma once
// safetensors files (https://github.com/huggingface/safetensors): 8-byte little-endian header length, a JSON header
// {"__metadata__": {string: string}, name: {"dtype", "shape", "data_offsets"}}, then the raw little-endian data.
// Dtypes: F64, F32, F16, BF16, I64, I32, U8 (and BOOL as U8-sized booleans on read).
#include <torch/torch.h>

#include <map>
#include <string>

namespace vmat {

using Metadata = std::map<std::string, std::string>;
using TensorMap = std::map<std::string, at::Tensor>;

struct TensorFile {
  TensorMap tensors;  // on the CPU, in the file's dtypes
  Metadata metadata;
};

// Writes `tensors` (any device; copied to the CPU) atomically: a temporary file in the same folder, then a rename.
// Throws vmat::Error(Io) when the file cannot be written, InvalidInput for an unsupported dtype.
void save_tensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Reads and checks the whole file. Throws vmat::Error(Io) when it cannot be read, InvalidInput (naming the path and
// the problem) when it is not a well-formed safetensors file.
TensorFile load_tensors(const std::string& path);

// The `__metadata__` map only, reading just the header.
Metadata read_safetensors_metadata(const std::string& path);

}  // namespace vmat
