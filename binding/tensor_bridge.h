#pragma once
// Tensors cross the boundary without copies (as onnxruntime-node does):
//  - TensorView wraps a TypedArray's memory as an at::Tensor; the caller keeps the array alive while the tensor is
//    in use (PromiseWorker::Retain for async calls).
//  - ToTypedArray hands a CPU tensor's storage to JS; the ArrayBuffer owns a reference to the tensor, released by
//    the garbage collector, so the memory lives exactly as long as JS can see it.
#include <napi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace vmat::binding {

// Views `array` as a tensor of `shape` (checked against the element count). `what` names the argument in errors.
at::Tensor TensorView(const Napi::Value& array, const std::vector<int64_t>& shape, const std::string& what);

// Reads a JS array of non-negative integers (a shape).
std::vector<int64_t> ShapeFrom(const Napi::Value& value, const std::string& what);

// Returns a TypedArray sharing `tensor`'s memory (made contiguous and moved to CPU first if needed).
// float16/bfloat16 become float32 (Node 20 has no Float16Array), bool becomes uint8.
Napi::TypedArray ToTypedArray(Napi::Env env, at::Tensor tensor);

// { data: TypedArray, shape: number[], dtype: string }
Napi::Object ToJsTensor(Napi::Env env, const at::Tensor& tensor);

}  // namespace vmat::binding
