#include "vmat/unet.h"

#include "vmat/norm_act.h"

#include <sstream>

#include "json_lite.h"
#include "vmat/error.h"
#include "vmat/shape_text.h"

namespace vmat {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {
constexpr int64_t kGroups = 8;
constexpr const char* kArchitecture = "BaselineUNet3D";

// (input, output) widths of the five encoder and four decoder blocks: the network and its parameter layout both
// come from this one table.
struct BlockWidths {
  int64_t encoder[5][2];
  int64_t decoder[4][2];
};

BlockWidths block_widths(const UNetConfig& config) {
  const int64_t b = config.base_channels;
  return {{{config.in_channels, b}, {b, 2 * b}, {2 * b, 4 * b}, {4 * b, 8 * b}, {8 * b, 8 * b}},
          {{16 * b, 4 * b}, {8 * b, 2 * b}, {4 * b, b}, {2 * b, b}}};
}

}  // namespace

// ---------------------------------------------------------------- config

std::string UNetConfig::to_json() const {
  std::ostringstream out;
  out << "{\"architecture\":\"" << kArchitecture << "\",\"in_channels\":" << in_channels
      << ",\"base_channels\":" << base_channels << ",\"cond_dim\":" << cond_dim << ",\"embed_dim\":" << embed_dim << "}";
  return out.str();
}

UNetConfig UNetConfig::from_json(const std::string& text) {
  const auto value = json::parse(text, "the model config");
  require(value.kind == json::Value::Kind::Object, "the model config must be a JSON object");
  const auto* architecture = value.find("architecture");
  require(architecture && architecture->kind == json::Value::Kind::String,
          "the model config has no \"architecture\" string");
  require(architecture->string == kArchitecture, "the model architecture is \"" + architecture->string +
                                                     "\", but this build knows only \"" + kArchitecture + "\"");
  UNetConfig config;
  const auto integer = [&](const char* key, int64_t& target) {
    const auto* field = value.find(key);
    require(field && field->kind == json::Value::Kind::Integer,
            std::string("the model config has no integer \"") + key + "\"");
    target = field->integer;
  };
  integer("in_channels", config.in_channels);
  integer("base_channels", config.base_channels);
  integer("cond_dim", config.cond_dim);
  integer("embed_dim", config.embed_dim);
  config.validate();
  return config;
}

void UNetConfig::validate() const {
  const auto within = [](const char* name, int64_t value, int64_t most) {
    require(value >= 1 && value <= most,
            std::string(name) + " must be from 1 to " + std::to_string(most) + ", got " + std::to_string(value));
  };
  within("in_channels", in_channels, kMaxInChannels);
  within("cond_dim", cond_dim, kMaxCondDim);
  within("embed_dim", embed_dim, kMaxEmbedDim);
  // GroupNorm(8) needs every block width (b, 2b, 4b, 8b) divisible by 8.
  require(base_channels >= kGroups && base_channels % kGroups == 0 && base_channels <= kMaxBaseChannels,
          "base_channels must be a multiple of 8 (GroupNorm has 8 groups) from 8 to " + std::to_string(kMaxBaseChannels) +
              ", got " + std::to_string(base_channels));
}

bool UNetConfig::operator==(const UNetConfig& other) const {
  return in_channels == other.in_channels && base_channels == other.base_channels && cond_dim == other.cond_dim &&
         embed_dim == other.embed_dim;
}

// ---------------------------------------------------------------- ResBlock

ResBlockImpl::ResBlockImpl(int64_t cin, int64_t cout, int64_t embed_dim) {
  // Registration order is PyTorch's attribute order, so named_parameters() lists tensors as unet_ref.py does.
  conv1 = register_module("conv1", nn::Conv3d(nn::Conv3dOptions(cin, cout, 3).padding(1)));
  norm1 = register_module("norm1", nn::GroupNorm(nn::GroupNormOptions(kGroups, cout).eps(1e-5)));
  film = register_module("film", nn::Linear(embed_dim, 2 * cout));
  conv2 = register_module("conv2", nn::Conv3d(nn::Conv3dOptions(cout, cout, 3).padding(1)));
  norm2 = register_module("norm2", nn::GroupNorm(nn::GroupNormOptions(kGroups, cout).eps(1e-5)));
  if (cin != cout) skip = register_module("skip", nn::Conv3d(nn::Conv3dOptions(cin, cout, 1)));
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x, const at::Tensor& embedding_silu) {
  const auto scale_shift = film(embedding_silu).chunk(2, 1);
  if (fused_norm_act_enabled(x)) {
    // The same function with GroupNorm, SiLU, FiLM and the residual add fused (norm_act.h).
    auto h = group_norm_silu_film(conv1(x), norm1->weight, norm1->bias, norm1->options.num_groups(),
                                  norm1->options.eps(), scale_shift[0], scale_shift[1], {});
    return group_norm_silu_film(conv2(h), norm2->weight, norm2->bias, norm2->options.num_groups(),
                                norm2->options.eps(), {}, {}, skip ? skip(x) : x);
  }
  auto h = torch::silu(norm1(conv1(x)));
  h = torch::addcmul(scale_shift[1].unsqueeze(-1).unsqueeze(-1).unsqueeze(-1), h,
                     1 + scale_shift[0].unsqueeze(-1).unsqueeze(-1).unsqueeze(-1));  // h * (1 + scale) + shift in one pass
  h = torch::silu(norm2(conv2(h)));
  return h + (skip ? skip(x) : x);
}

// ---------------------------------------------------------------- BaselineUNet3D

BaselineUNet3DImpl::BaselineUNet3DImpl(const UNetConfig& config) : config_(config) {
  config_.validate();
  const int64_t b = config_.base_channels;
  const int64_t e = config_.embed_dim;
  cond = register_module("cond", nn::Sequential(nn::Linear(config_.cond_dim, e), nn::SiLU(), nn::Linear(e, e)));
  enc = register_module("enc", nn::ModuleList());
  dec = register_module("dec", nn::ModuleList());
  const auto widths = block_widths(config_);
  for (const auto& io : widths.encoder) {
    encoder_blocks_.emplace_back(io[0], io[1], e);
    enc->push_back(encoder_blocks_.back());
  }
  for (const auto& io : widths.decoder) {
    decoder_blocks_.emplace_back(io[0], io[1], e);
    dec->push_back(decoder_blocks_.back());
  }
  head = register_module("head", nn::Conv3d(nn::Conv3dOptions(b, 1, 1)));
}

at::Tensor BaselineUNet3DImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  require(x.dim() == 5 && x.size(1) == config_.in_channels,
          "the model input must have shape [batch, " + std::to_string(config_.in_channels) +
              ", depth, height, width], got " + shape_text(x.sizes()));
  require(x.size(2) % 16 == 0 && x.size(3) % 16 == 0 && x.size(4) % 16 == 0 && x.size(2) > 0 && x.size(3) > 0 &&
              x.size(4) > 0,
          "the model input's depth, height and width must be positive multiples of 16 (four 2x poolings), got " +
              shape_text(x.sizes().slice(2)));
  require(c.dim() == 2 && c.size(0) == x.size(0) && c.size(1) == config_.cond_dim,
          "the constraints must have shape [" + std::to_string(x.size(0)) + ", " + std::to_string(config_.cond_dim) +
              "], got " + shape_text(c.sizes()));

  const auto embedding_silu = torch::silu(cond->forward(c));
  std::vector<at::Tensor> skips;
  at::Tensor h = x;
  for (size_t i = 0; i < encoder_blocks_.size(); ++i) {
    if (i > 0) h = F::max_pool3d(h, F::MaxPool3dFuncOptions(2));
    h = encoder_blocks_[i]->forward(h, embedding_silu);
    skips.push_back(h);
  }
  skips.pop_back();  // the bottleneck output is h itself
  for (auto& block : decoder_blocks_) {
    const std::vector<int64_t> size = {2 * h.size(2), 2 * h.size(3), 2 * h.size(4)};
    h = F::interpolate(h, F::InterpolateFuncOptions().size(size).mode(torch::kTrilinear).align_corners(false));
    h = block->forward(torch::cat({h, skips.back()}, 1), embedding_silu);
    skips.pop_back();
  }
  return head(h);
}

// ---------------------------------------------------------------- summaries

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& parameter : module.parameters()) total += parameter.numel();
  return total;
}

std::vector<LayerSummary> parameter_summary(const torch::nn::Module& module) {
  std::vector<LayerSummary> layers;
  for (const auto& item : module.named_parameters()) {
    layers.push_back({item.key(), item.value().sizes().vec(), item.value().numel()});
  }
  return layers;
}

std::vector<LayerSummary> parameter_layout(const UNetConfig& config) {
  config.validate();
  std::vector<LayerSummary> layers;
  const auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t count = 1;
    for (const auto size : shape) count *= size;
    layers.push_back({name, std::move(shape), count});
  };
  // Each module's weight then bias, in registration order (ResBlockImpl, BaselineUNet3DImpl).
  const auto linear = [&](const std::string& name, int64_t in, int64_t out) {
    add(name + ".weight", {out, in});
    add(name + ".bias", {out});
  };
  const auto conv = [&](const std::string& name, int64_t in, int64_t out, int64_t kernel) {
    add(name + ".weight", {out, in, kernel, kernel, kernel});
    add(name + ".bias", {out});
  };
  const auto norm = [&](const std::string& name, int64_t channels) {
    add(name + ".weight", {channels});
    add(name + ".bias", {channels});
  };
  const auto block = [&](const std::string& name, const int64_t io[2]) {
    conv(name + ".conv1", io[0], io[1], 3);
    norm(name + ".norm1", io[1]);
    linear(name + ".film", config.embed_dim, 2 * io[1]);
    conv(name + ".conv2", io[1], io[1], 3);
    norm(name + ".norm2", io[1]);
    if (io[0] != io[1]) conv(name + ".skip", io[0], io[1], 1);
  };
  linear("cond.0", config.cond_dim, config.embed_dim);
  linear("cond.2", config.embed_dim, config.embed_dim);
  const auto widths = block_widths(config);
  for (int i = 0; i < 5; ++i) block("enc." + std::to_string(i), widths.encoder[i]);
  for (int i = 0; i < 4; ++i) block("dec." + std::to_string(i), widths.decoder[i]);
  conv("head", config.base_channels, 1, 1);
  return layers;
}

}  // namespace vmat
