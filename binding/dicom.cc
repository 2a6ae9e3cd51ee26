// DICOM-RT kernels for JS (src/dicom): contour rasterisation and trilinear dose resampling, as Promises off the
// event loop. Inputs are viewed without copies (kept alive by Retain); results are handed over without copies.
#include <napi.h>
#include <torch/torch.h>

#include <array>
#include <string>

#include "promise_worker.h"
#include "registry.h"
#include "tensor_bridge.h"
#include "vmat/rasterise.h"
#include "vmat/resample.h"

namespace {

using vmat::binding::PromiseWorker;

at::Tensor Int32View(const Napi::Value& value, const std::string& what) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(value.Env(), what + " must be an Int32Array");
  }
  return vmat::binding::TensorView(value, {static_cast<int64_t>(value.As<Napi::TypedArray>().ElementLength())}, what);
}

std::array<int64_t, 3> Shape3(const Napi::Value& value, const std::string& what) {
  const auto sizes = vmat::binding::ShapeFrom(value, what);
  if (sizes.size() != 3) throw Napi::TypeError::New(value.Env(), what + " must have 3 sizes");
  return {sizes[0], sizes[1], sizes[2]};
}

std::array<double, 3> Vector3(const Napi::Value& value, const std::string& what) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(value.Env(), what + " must be 3 numbers");
  std::array<double, 3> vector{};
  for (uint32_t i = 0; i < 3; ++i) {
    Napi::Value item = value.As<Napi::Array>()[i];
    if (!item.IsNumber()) throw Napi::TypeError::New(value.Env(), what + " must be 3 numbers");
    vector[i] = item.As<Napi::Number>().DoubleValue();
  }
  return vector;
}

// { origin: [3], steps: [[3], [3], [3]] } and a shape → a grid placement.
vmat::GridPlacement Placement(const Napi::Value& value, const Napi::Value& shape, const std::string& what) {
  if (!value.IsObject()) throw Napi::TypeError::New(value.Env(), what + " must be { origin, steps }");
  auto object = value.As<Napi::Object>();
  vmat::GridPlacement grid;
  grid.origin = Vector3(object.Get("origin"), what + ".origin");
  auto steps = object.Get("steps");
  if (!steps.IsArray() || steps.As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(value.Env(), what + ".steps must be 3 vectors");
  for (uint32_t a = 0; a < 3; ++a) grid.step[a] = Vector3(steps.As<Napi::Array>().Get(a), what + ".steps");
  grid.shape = Shape3(shape, what + " shape");
  return grid;
}

// rasterisePolygons(points: Float64Array [N·2], offsets: Int32Array [P+1], slices: Int32Array [P],
// labels: Int32Array [P], structures, shape [Z,Y,X], options?) → Promise<{ data: Uint8Array, shape, voxels }>
// (voxels: the number inside, per structure).
class RasteriseWorker : public PromiseWorker {
 public:
  explicit RasteriseWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:rasterise", call[6]) {
    ReadArguments([&] {
      if (!call[0].IsTypedArray() || call[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
        throw Napi::TypeError::New(call.Env(), "points must be a Float64Array of (x, y) pairs");
      }
      const auto values = static_cast<int64_t>(call[0].As<Napi::TypedArray>().ElementLength());
      if (values % 2 != 0) throw Napi::RangeError::New(call.Env(), "points must hold (x, y) pairs");
      points_ = vmat::binding::TensorView(call[0], {values / 2, 2}, "points");
      offsets_ = Int32View(call[1], "offsets");
      slices_ = Int32View(call[2], "slices");
      labels_ = Int32View(call[3], "labels");
      for (int i = 0; i < 4; ++i) Retain(call[i]);
      structures_ = call[4].ToNumber().Int64Value();
      shape_ = Shape3(call[5], "shape");
    });
  }

 protected:
  void Run() override {
    result_ = vmat::rasterise_polygons(points_, offsets_, slices_, labels_, structures_, shape_, cancel_flag().get());
  }
  Napi::Value Result(Napi::Env env) override {
    auto object = vmat::binding::ToJsTensor(env, result_.masks);
    auto voxels = Napi::Array::New(env, result_.voxels.size());
    for (size_t i = 0; i < result_.voxels.size(); ++i) voxels.Set(static_cast<uint32_t>(i), static_cast<double>(result_.voxels[i]));
    object.Set("voxels", voxels);
    return object;
  }

 private:
  at::Tensor points_, offsets_, slices_, labels_;
  vmat::RasterisedMasks result_;
  int64_t structures_ = 0;
  std::array<int64_t, 3> shape_{};
};

// resampleTrilinear(source: Float32Array, sourceShape, sourcePlacement, targetShape, targetPlacement, outside,
// options?) → Promise<{ data: Float32Array, shape }>.
class ResampleWorker : public PromiseWorker {
 public:
  explicit ResampleWorker(const Napi::CallbackInfo& call) : PromiseWorker(call.Env(), "vmat:resample", call[6]) {
    ReadArguments([&] {
      from_ = Placement(call[2], call[1], "source placement");
      to_ = Placement(call[4], call[3], "target placement");
      if (!call[0].IsTypedArray() || call[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw Napi::TypeError::New(call.Env(), "the source must be a Float32Array");
      }
      source_ = vmat::binding::TensorView(call[0], {from_.shape[0], from_.shape[1], from_.shape[2]}, "source");
      Retain(call[0]);
      outside_ = call[5].ToNumber().FloatValue();
    });
  }

 protected:
  void Run() override { result_ = vmat::resample_trilinear(source_, from_, to_, outside_, cancel_flag().get()); }
  Napi::Value Result(Napi::Env env) override { return vmat::binding::ToJsTensor(env, result_); }

 private:
  at::Tensor source_, result_;
  vmat::GridPlacement from_, to_;
  float outside_ = 0;
};

Napi::Value RasterisePolygons(const Napi::CallbackInfo& call) { return (new RasteriseWorker(call))->Start(); }
Napi::Value ResampleTrilinear(const Napi::CallbackInfo& call) { return (new ResampleWorker(call))->Start(); }

}  // namespace

VMAT_BINDING(dicom) {
  auto dicom = Napi::Object::New(env);
  dicom.Set("rasterisePolygons", Napi::Function::New(env, RasterisePolygons, "rasterisePolygons"));
  dicom.Set("resampleTrilinear", Napi::Function::New(env, ResampleTrilinear, "resampleTrilinear"));
  exports.Set("dicom", dicom);
}
