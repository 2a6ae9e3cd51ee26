// Case-data kernels for JS: signed distance maps and the derived body mask, as Promises off the event loop.
// Inputs are viewed without copies (kept alive by Retain) and results handed over without copies.
#include <napi.h>
#include <torch/torch.h>

#include <sys/mman.h>

#include <array>
#include <cstdlib>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/sdf.h"

namespace {

using vmat::binding::PromiseWorker;

// signedDistanceMaps(masks: Uint8Array, shape: [S,Z,Y,X], spacing: [z,y,x], options?: { clipMm, onProgress,
// cancel, threads }) → Promise<{ data: Float32Array, shape }>. Progress: {"structure": s+1, "of": S}.
class DistanceWorker : public PromiseWorker {
 public:
  explicit DistanceWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:sdf", call[3]) {
    ReadArguments([&] {
      masks_ = vmat::binding::TensorView(call[0], vmat::binding::ShapeFrom(call[1], "shape"), "masks");
      Retain(call[0]);
      auto spacing = call[2];
      if (!spacing.IsArray() || spacing.As<Napi::Array>().Length() != 3) {
        throw Napi::TypeError::New(call.Env(), "spacing must be an array of 3 numbers (z, y, x) in mm");
      }
      for (uint32_t i = 0; i < 3; ++i) spacing_[i] = spacing.As<Napi::Array>().Get(i).ToNumber().DoubleValue();
      if (call[3].IsObject() && call[3].As<Napi::Object>().Get("clipMm").IsNumber()) {
        clip_mm_ = call[3].As<Napi::Object>().Get("clipMm").ToNumber().DoubleValue();
      }
    });
  }

 protected:
  void Run() override {
    const int64_t total = masks_.dim() > 0 ? masks_.size(0) : 0;
    result_ = vmat::signed_distance_maps(
        masks_, spacing_, clip_mm_,
        [&](int64_t s) { Emit("{\"structure\":" + std::to_string(s + 1) + ",\"of\":" + std::to_string(total) + "}"); },
        cancel_flag().get());
  }
  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, result_); }

 private:
  at::Tensor masks_;
  std::array<double, 3> spacing_{};
  double clip_mm_ = 50.0;
  at::Tensor result_;
};

// deriveBodyMask(ct: Int16Array | Float32Array, shape: [Z,Y,X], options?) → Promise<{ data: Uint8Array, shape }>.
class BodyWorker : public PromiseWorker {
 public:
  explicit BodyWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:body", call[2]) {
    ReadArguments([&] {
      ct_ = vmat::binding::TensorView(call[0], vmat::binding::ShapeFrom(call[1], "shape"), "ct");
      Retain(call[0]);
    });
  }

 protected:
  void Run() override { result_ = vmat::derive_body_mask(ct_); }
  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, result_); }

 private:
  at::Tensor ct_;
  at::Tensor result_;
};

// allocateBuffer(bytes) → ArrayBuffer on 2 MiB-aligned memory advised for transparent huge pages, as NumPy does
// for its large arrays: filling a fresh 500 MB buffer from a file otherwise costs more in 4 KiB page faults than
// in reading. Freed when the garbage collector drops the ArrayBuffer.
Napi::Value AllocateBuffer(const Napi::CallbackInfo& call) {
  auto env = call.Env();
  const double requested = call[0].ToNumber().DoubleValue();
  if (!(requested >= 0) || requested > 9.0e15) throw Napi::RangeError::New(env, "bytes must be a non-negative integer");
  const size_t bytes = static_cast<size_t>(requested);
  if (bytes == 0) return Napi::ArrayBuffer::New(env, 0);
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* data = nullptr;
  if (posix_memalign(&data, kHugePage, rounded) != 0) {
    auto error = Napi::Error::New(env, "out of host memory allocating " + std::to_string(bytes) + " bytes");
    error.Set("code", "VMAT_OUT_OF_MEMORY");
    throw error;
  }
#ifdef MADV_HUGEPAGE
  madvise(data, rounded, MADV_HUGEPAGE);
#endif
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  return Napi::ArrayBuffer::New(
      env, data, bytes,
      [](Napi::Env env, void* memory, size_t* size) {
        Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(*size));
        delete size;
        std::free(memory);
      },
      new size_t(bytes));
}

Napi::Value SignedDistanceMaps(const Napi::CallbackInfo& call) { return (new DistanceWorker(call))->Start(); }
Napi::Value DeriveBodyMask(const Napi::CallbackInfo& call) { return (new BodyWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(data) {
  auto data = Napi::Object::New(env);
  data.Set("signedDistanceMaps", Napi::Function::New(env, SignedDistanceMaps, "signedDistanceMaps"));
  data.Set("deriveBodyMask", Napi::Function::New(env, DeriveBodyMask, "deriveBodyMask"));
  data.Set("allocateBuffer", Napi::Function::New(env, AllocateBuffer, "allocateBuffer"));
  exports.Set("data", data);
}
