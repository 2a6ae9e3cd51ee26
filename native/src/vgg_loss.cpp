// 2.5D VGG16 perceptual loss (README "Losses"): the seed's VGGPerceptualLoss2D (relu1_2, relu2_2, relu3_3, L1,
// every 8th slice, the dose repeated into 3 ImageNet-normalised channels) on the three orientations instead of one.
#include <array>
#include <cmath>

#include "vmat/error.h"
#include "vmat/losses.h"
#include "vmat/shape_text.h"

namespace vmat {

namespace {

namespace F = torch::nn::functional;

// torchvision's vgg16().features up to relu3_3: (index, out channels, in channels) of each 3x3 convolution.
struct ConvSpec {
  int index;
  int64_t out, in;
};
constexpr std::array<ConvSpec, 7> kConvs{{{0, 64, 3}, {2, 64, 64}, {5, 128, 64}, {7, 128, 128},
                                          {10, 256, 128}, {12, 256, 256}, {14, 256, 256}}};
constexpr std::array<double, 3> kImageNetMean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImageNetStd{0.229, 0.224, 0.225};

at::Tensor conv_relu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return torch::relu(F::conv2d(x, weight, F::Conv2dFuncOptions().bias(bias).padding(1)));
}

// Slices `indices` of [B, 1, D, H, W] along `axis` (2: axial, 3: coronal, 4: sagittal) as ImageNet-normalised
// 3-channel images [B * n, 3, rows, columns]: rows y, columns x (axial); rows z, columns x (coronal); rows z,
// columns y (sagittal).
at::Tensor slice_images(const at::Tensor& volume, int64_t axis, const std::vector<int64_t>& indices) {
  const auto index = torch::tensor(indices, torch::TensorOptions().dtype(torch::kLong)).to(volume.device());
  auto slices = volume.index_select(axis, index).squeeze(1);  // [B, n, H, W] | [B, D, n, W] | [B, D, H, n]
  if (axis == 3) slices = slices.permute({0, 2, 1, 3});
  if (axis == 4) slices = slices.permute({0, 3, 1, 2});
  const auto images = slices.reshape({-1, 1, slices.size(2), slices.size(3)}).expand({-1, 3, -1, -1});
  const auto options = volume.options().requires_grad(false);
  const auto mean = torch::tensor({kImageNetMean[0], kImageNetMean[1], kImageNetMean[2]}, options).view({1, 3, 1, 1});
  const auto deviation = torch::tensor({kImageNetStd[0], kImageNetStd[1], kImageNetStd[2]}, options).view({1, 3, 1, 1});
  return (images - mean) / deviation;
}

}  // namespace

Vgg16Features Vgg16Features::from_tensors(const TensorMap& tensors, const std::string& source) {
  const std::string expected = ": expected torchvision's VGG16 weights as scripts/convert-vgg16.py writes them";
  Vgg16Features vgg;
  for (const auto& conv : kConvs) {
    for (const char* part : {"weight", "bias"}) {
      const std::string name = "features." + std::to_string(conv.index) + "." + part;
      const auto found = tensors.find(name);
      require(found != tensors.end(), source + " has no tensor " + name + expected);
      const std::vector<int64_t> shape = part[0] == 'w' ? std::vector<int64_t>{conv.out, conv.in, 3, 3}
                                                        : std::vector<int64_t>{conv.out};
      require(found->second.sizes() == at::IntArrayRef(shape), source + ": " + name + " has shape " +
                                                                   shape_text(found->second.sizes()) + ", VGG16's is " +
                                                                   shape_text(shape) + expected);
      require(found->second.is_floating_point(), source + ": " + name + " is not a floating-point tensor" + expected);
      const auto value = found->second.to(torch::kFloat).contiguous();
      require(torch::isfinite(value).all().item<bool>(), source + ": " + name + " holds NaN or infinite values");
      (part[0] == 'w' ? vgg.weights : vgg.biases).push_back(value);
    }
  }
  return vgg;
}

Vgg16Features Vgg16Features::load(const std::string& path) {
  return from_tensors(load_tensors(path).tensors, path);
}

Vgg16Features Vgg16Features::to(const torch::Device& device) const {
  Vgg16Features moved;
  for (const auto& w : weights) moved.weights.push_back(w.to(device));
  for (const auto& b : biases) moved.biases.push_back(b.to(device));
  return moved;
}

std::vector<at::Tensor> Vgg16Features::forward(const at::Tensor& images) const {
  auto x = conv_relu(images, weights[0], biases[0]);
  x = conv_relu(x, weights[1], biases[1]);
  const auto relu1_2 = x;
  x = conv_relu(F::max_pool2d(x, F::MaxPool2dFuncOptions(2).stride(2)), weights[2], biases[2]);
  x = conv_relu(x, weights[3], biases[3]);
  const auto relu2_2 = x;
  x = conv_relu(F::max_pool2d(x, F::MaxPool2dFuncOptions(2).stride(2)), weights[4], biases[4]);
  x = conv_relu(x, weights[5], biases[5]);
  x = conv_relu(x, weights[6], biases[6]);
  return {relu1_2, relu2_2, x};
}

std::vector<int64_t> vgg_slice_indices(int64_t size, int64_t stride, int64_t step) {
  require(size >= 1 && stride >= 1 && step >= 0, "VGG slices need a size and stride >= 1 and a step >= 0");
  std::vector<int64_t> indices;
  for (int64_t i = (step % stride) % size; i < size; i += stride) indices.push_back(i);
  return indices;
}

at::Tensor vgg_perceptual_loss(const at::Tensor& pred, const at::Tensor& target, const Vgg16Features& vgg,
                               int64_t slice_stride, int64_t step) {
  require(pred.dim() == 5 && pred.size(1) == 1, "the VGG loss needs [batch, 1, depth, height, width] doses, got shape " +
                                                    shape_text(pred.sizes()));
  require(pred.sizes() == target.sizes(), "the VGG loss got a prediction of shape " + shape_text(pred.sizes()) +
                                              " and a target of shape " + shape_text(target.sizes()));
  require(pred.size(2) >= 4 && pred.size(3) >= 4 && pred.size(4) >= 4,
          "the VGG loss needs volumes of at least 4 voxels along each axis (two 2x poolings), got shape " +
              shape_text(pred.sizes()));
  require(pred.scalar_type() == torch::kFloat && target.scalar_type() == torch::kFloat, "the VGG loss needs float32 doses");
  at::Tensor sum;
  for (const int64_t axis : {2, 3, 4}) {
    const auto indices = vgg_slice_indices(pred.size(axis), slice_stride, step);
    const auto predicted = vgg.forward(slice_images(pred, axis, indices));
    std::vector<at::Tensor> planned;
    {
      torch::NoGradGuard no_grad;
      planned = vgg.forward(slice_images(target.detach(), axis, indices));
    }
    for (size_t layer = 0; layer < predicted.size(); ++layer) {
      const auto term = (predicted[layer] - planned[layer]).abs().mean();
      sum = sum.defined() ? sum + term : term;
    }
  }
  return sum / 9.0;
}

}  // namespace vmat
