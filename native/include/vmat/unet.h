#pragma once
// BaselineUNet3D (spec/model.md): a 3D U-Net with FiLM conditioning on the 13 plan constraints.
// Parameter names and shapes are PyTorch's for the same module tree (cond.0.weight, enc.0.conv1.weight, ...,
// head.bias), so that weights move to and from PyTorch (shared/reference/unet_ref.py) by name.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vmat {

struct UNetConfig {
  int64_t in_channels = 9;
  int64_t base_channels = 48;
  int64_t cond_dim = 13;
  int64_t embed_dim = 256;

  // {"architecture":"BaselineUNet3D","in_channels":9,"base_channels":48,"cond_dim":13,"embed_dim":256}
  std::string to_json() const;
  // Parses to_json()'s form; throws vmat::Error(InvalidInput) naming what is wrong.
  static UNetConfig from_json(const std::string& json);
  // Throws vmat::Error(InvalidInput) unless every width is positive, within the limits below (a checkpoint's
  // metadata must not make the core build a network of gigabytes), and the widths suit GroupNorm(8).
  void validate() const;
  static constexpr int64_t kMaxInChannels = 256;
  static constexpr int64_t kMaxBaseChannels = 256;
  static constexpr int64_t kMaxCondDim = 1024;
  static constexpr int64_t kMaxEmbedDim = 4096;
  bool operator==(const UNetConfig& other) const;
  bool operator!=(const UNetConfig& other) const { return !(*this == other); }
};

// conv3-GN-SiLU, FiLM (scale, shift) from the embedding, conv3-GN-SiLU, residual (1x1x1 conv when cin != cout).
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t cin, int64_t cout, int64_t embed_dim);
  // x [B, cin, D, H, W]; embedding_silu = SiLU(e) [B, embed_dim] (computed once per forward for all blocks).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& embedding_silu);

 private:
  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear film{nullptr};
};
TORCH_MODULE(ResBlock);

class BaselineUNet3DImpl : public torch::nn::Module {
 public:
  // Layers get PyTorch's default initialisation from the current torch RNG (seed it with torch::manual_seed).
  explicit BaselineUNet3DImpl(const UNetConfig& config = {});
  // x [B, in_channels, D, H, W] with D, H, W multiples of 16; c [B, cond_dim]. Returns [B, 1, D, H, W].
  // Throws vmat::Error(InvalidInput) for other shapes.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);
  const UNetConfig& config() const { return config_; }

 private:
  UNetConfig config_;
  torch::nn::Sequential cond{nullptr};
  torch::nn::ModuleList enc{nullptr}, dec{nullptr};
  std::vector<ResBlock> encoder_blocks_, decoder_blocks_;
  torch::nn::Conv3d head{nullptr};
};
TORCH_MODULE(BaselineUNet3D);

struct LayerSummary {
  std::string name;            // parameter name, e.g. "enc.0.conv1.weight"
  std::vector<int64_t> shape;
  int64_t parameters = 0;
};

int64_t count_parameters(const torch::nn::Module& module);
std::vector<LayerSummary> parameter_summary(const torch::nn::Module& module);
// The parameters BaselineUNet3D(config) has (names, shapes, counts, in named_parameters() order), worked out from
// the config without building the network: a checkpoint is checked against it before anything is allocated.
std::vector<LayerSummary> parameter_layout(const UNetConfig& config);

}  // namespace vmat
