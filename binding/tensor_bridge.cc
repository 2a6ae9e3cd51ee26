#include "tensor_bridge.h"

namespace vmat::binding {

namespace {

at::ScalarType ScalarTypeOf(napi_typedarray_type type, const Napi::Env& env, const std::string& what) {
  switch (type) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int8_array: return at::kChar;
    case napi_uint8_array: return at::kByte;
    case napi_uint8_clamped_array: return at::kByte;
    case napi_int16_array: return at::kShort;
    case napi_int32_array: return at::kInt;
    case napi_bigint64_array: return at::kLong;
    default: break;
  }
  throw Napi::TypeError::New(env, what + " has a TypedArray type that tensors cannot use");
}

}  // namespace

std::vector<int64_t> ShapeFrom(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), what + " must be an array of sizes");
  auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array[i];
    if (!item.IsNumber() || item.As<Napi::Number>().DoubleValue() < 0) {
      throw Napi::TypeError::New(value.Env(), what + " must hold non-negative integers");
    }
    shape.push_back(item.As<Napi::Number>().Int64Value());
  }
  return shape;
}

at::Tensor TensorView(const Napi::Value& value, const std::vector<int64_t>& shape, const std::string& what) {
  if (!value.IsTypedArray()) throw Napi::TypeError::New(value.Env(), what + " must be a TypedArray");
  auto array = value.As<Napi::TypedArray>();
  int64_t count = 1;
  for (auto size : shape) count *= size;
  if (count != static_cast<int64_t>(array.ElementLength())) {
    throw Napi::RangeError::New(value.Env(), what + " holds " + std::to_string(array.ElementLength()) +
                                                 " values but its shape needs " + std::to_string(count));
  }
  auto type = ScalarTypeOf(array.TypedArrayType(), value.Env(), what);
  auto* data = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return torch::from_blob(data, shape, torch::TensorOptions().dtype(type));
}

Napi::TypedArray ToTypedArray(Napi::Env env, at::Tensor tensor) {
  tensor = tensor.to(torch::kCPU);
  switch (tensor.scalar_type()) {
    case at::kHalf:
    case at::kBFloat16: tensor = tensor.to(at::kFloat); break;
    case at::kBool: tensor = tensor.to(at::kByte); break;
    default: break;
  }
  tensor = tensor.contiguous();
  const size_t bytes = tensor.numel() * tensor.element_size();
  Napi::ArrayBuffer buffer;
  if (bytes == 0) {
    buffer = Napi::ArrayBuffer::New(env, 0);
  } else {
    auto* owner = new at::Tensor(tensor);
    buffer = Napi::ArrayBuffer::New(env, tensor.data_ptr(), bytes,
                                    [](Napi::Env, void*, at::Tensor* hint) { delete hint; }, owner);
  }
  const size_t length = tensor.numel();
  switch (tensor.scalar_type()) {
    case at::kFloat: return Napi::Float32Array::New(env, length, buffer, 0);
    case at::kDouble: return Napi::Float64Array::New(env, length, buffer, 0);
    case at::kChar: return Napi::Int8Array::New(env, length, buffer, 0);
    case at::kByte: return Napi::Uint8Array::New(env, length, buffer, 0);
    case at::kShort: return Napi::Int16Array::New(env, length, buffer, 0);
    case at::kInt: return Napi::Int32Array::New(env, length, buffer, 0);
    case at::kLong: return Napi::BigInt64Array::New(env, length, buffer, 0);
    default: break;
  }
  throw Napi::TypeError::New(env, std::string("tensor dtype ") + c10::toString(tensor.scalar_type()) +
                                      " has no TypedArray counterpart");
}

Napi::Object ToJsTensor(Napi::Env env, const at::Tensor& tensor) {
  auto object = Napi::Object::New(env);
  auto data = ToTypedArray(env, tensor);
  auto shape = Napi::Array::New(env, tensor.dim());
  for (int64_t i = 0; i < tensor.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, tensor.size(i)));
  object.Set("data", data);
  object.Set("shape", shape);
  return object;
}

}  // namespace vmat::binding
