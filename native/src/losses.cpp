// The training loss (spec/model.md, README "Losses"): the first version's three terms and the later ones, behind
// one entry point. The Sobel term is in sobel_loss.cpp, the VGG term in vgg_loss.cpp.
#include "vmat/losses.h"

#include <cmath>

#include "vmat/error.h"
#include "vmat/shape_text.h"

namespace vmat {

namespace {

at::Tensor zero_like_scalar(const at::Tensor& like) { return torch::zeros({}, like.options().requires_grad(false)); }

void require_weight(double value, const std::string& setting) {
  require(std::isfinite(value) && value >= 0, setting + " must be a finite number >= 0, got " + std::to_string(value));
}

void require_channels(const std::vector<int64_t>& channels, const std::string& setting, const std::string& needed_by) {
  require(!channels.empty(), needed_by + " needs " + setting + ": the model-input channels of its structures");
  for (const int64_t channel : channels) {
    require(channel >= 1, setting + " holds channel " + std::to_string(channel) +
                              ": structure channels start at 1 (channel 0 is the CT)");
  }
}

// [B, 1, D, H, W] bool: where any of `channels` of `input` satisfies `test`.
template <typename Test>
at::Tensor any_channel(const at::Tensor& input, const std::vector<int64_t>& channels, Test&& test) {
  const auto index = torch::tensor(channels, torch::TensorOptions().dtype(torch::kLong)).to(input.device());
  return test(input.index_select(1, index)).any(1, /*keepdim=*/true);
}

// Autograd for soft_cumulative_dvh: forward and backward both walk the values in chunks, recomputing the sigmoids in
// backward instead of keeping an [N, K] tensor.
class SoftCumulativeDvh : public torch::autograd::Function<SoftCumulativeDvh> {
 public:
  static constexpr int64_t kChunkElements = int64_t{1} << 22;  // 16 MiB of float32 per chunk

  static int64_t chunk_rows(int64_t bins) { return std::max<int64_t>(1, kChunkElements / bins); }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor values, at::Tensor thresholds,
                            double temperature) {
    ctx->save_for_backward({values, thresholds});
    ctx->saved_data["temperature"] = temperature;
    const int64_t count = values.size(0), rows = chunk_rows(thresholds.size(0));
    auto sum = torch::zeros_like(thresholds);
    for (int64_t start = 0; start < count; start += rows) {
      const auto chunk = values.narrow(0, start, std::min(rows, count - start));
      sum += torch::sigmoid((chunk.unsqueeze(1) - thresholds.unsqueeze(0)) / temperature).sum(0);
    }
    return sum / static_cast<double>(count);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& values = saved[0];
    const auto& thresholds = saved[1];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t count = values.size(0), rows = chunk_rows(thresholds.size(0));
    // d mean_n sigmoid(z_nk) / d v_n = sigmoid (1 - sigmoid) / (temperature N)
    const auto upstream = (grad_outputs[0] / (temperature * static_cast<double>(count))).unsqueeze(1);
    auto grad = torch::empty_like(values);
    for (int64_t start = 0; start < count; start += rows) {
      const int64_t length = std::min(rows, count - start);
      const auto s = torch::sigmoid((values.narrow(0, start, length).unsqueeze(1) - thresholds.unsqueeze(0)) / temperature);
      grad.narrow(0, start, length).copy_(torch::mm(s * (1 - s), upstream).squeeze(1));
    }
    return {grad, at::Tensor(), at::Tensor()};
  }
};

void require_input(const at::Tensor& input, const at::Tensor& pred, const std::vector<int64_t>& channels,
                   const std::string& term) {
  require(input.defined(), "the " + term + " needs the model input (its signed distance channels give the structures)");
  require(input.dim() == 5 && input.size(0) == pred.size(0) && input.size(2) == pred.size(2) &&
              input.size(3) == pred.size(3) && input.size(4) == pred.size(4),
          "the " + term + " got a model input of shape " + shape_text(input.sizes()) + " for a prediction of shape " +
              shape_text(pred.sizes()) + ": expected [batch, channels, depth, height, width] of the same batch and size");
  require(input.device() == pred.device(), "the " + term + " got the model input and the prediction on different devices");
  require(input.is_floating_point(), "the " + term + " needs a floating-point model input");
  for (const int64_t channel : channels) {
    require(channel < input.size(1), "the " + term + " reads input channel " + std::to_string(channel) +
                                         " but the model input has " + std::to_string(input.size(1)) + " channels");
  }
}

void require_prediction(const at::Tensor& pred, const at::Tensor& target, const std::string& term) {
  require(pred.dim() == 5 && pred.size(1) == 1, "the " + term + " needs [batch, 1, depth, height, width] doses, got shape " +
                                                    shape_text(pred.sizes()));
  require(pred.sizes() == target.sizes(), "the " + term + " got a prediction of shape " + shape_text(pred.sizes()) +
                                              " and a target of shape " + shape_text(target.sizes()));
  require(pred.device() == target.device(), "the " + term + " got the prediction and the target on different devices");
}

}  // namespace

at::Tensor dose_mse(const at::Tensor& pred, const at::Tensor& target) { return (pred - target).square().mean(); }

at::Tensor negative_penalty(const at::Tensor& pred) { return torch::relu(-pred).mean(); }

LossTerms dose_loss(const at::Tensor& pred_in, const at::Tensor& target_in, const LossWeights& weights) {
  require(pred_in.sizes() == target_in.sizes(), "the prediction has shape " + shape_text(pred_in.sizes()) +
                                                    " but the target has shape " + shape_text(target_in.sizes()));
  require(pred_in.device() == target_in.device(), "the prediction and the target are on different devices");
  const auto pred = pred_in.to(torch::kFloat);
  const auto target = target_in.to(torch::kFloat);

  LossTerms terms;
  terms.mse = vmat::dose_mse(pred, target);
  terms.neg = vmat::negative_penalty(pred);
  terms.total = terms.mse + weights.negative_penalty_weight * terms.neg;
  if (weights.use_gradient_loss) {
    terms.grad = vmat::sobel_gradient_loss(pred, target);
    terms.total = terms.total + weights.gradient_loss_weight * terms.grad;
  } else {
    terms.grad = zero_like_scalar(pred);
  }
  return terms;
}

at::Tensor structure_weight_map(const at::Tensor& input, const LossConfig& config) {
  const auto sizes = input.sizes();
  auto weights = torch::full({sizes[0], 1, sizes[2], sizes[3], sizes[4]}, config.structure_background_weight,
                             input.options().dtype(torch::kFloat));
  if (!config.boundary_channels.empty()) {
    const double width = config.structure_boundary_width_mm / kSdfClipMm;
    const auto near = any_channel(input, config.boundary_channels, [&](const at::Tensor& sdf) {
      const auto distance = sdf.abs();
      return (distance > 0) & (distance < width);
    });
    weights.masked_fill_(near, config.structure_boundary_weight);
  }
  if (!config.target_channels.empty()) {
    const auto inside = any_channel(input, config.target_channels, [](const at::Tensor& sdf) { return sdf < 0; });
    weights.masked_fill_(inside, config.structure_target_weight);
  }
  return weights;
}

at::Tensor structure_weighted_mse(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                                  const LossConfig& config) {
  return (structure_weight_map(input, config) * (pred - target).square()).mean();
}

at::Tensor asymmetric_ptv_loss(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                               const std::vector<int64_t>& target_channels, double underdose_weight,
                               double overdose_weight) {
  const auto inside = any_channel(input, target_channels, [](const at::Tensor& sdf) { return sdf < 0; });
  const auto error = pred - target;
  const auto weights = torch::where(error < 0, torch::full_like(error, underdose_weight), torch::full_like(error, overdose_weight));
  const auto sum = (weights * error.square()).masked_fill(inside.logical_not(), 0).sum();
  // No read back to the host: an empty U gives 0 / 1.
  return sum / inside.sum().to(torch::kFloat).clamp_min(1);
}

at::Tensor soft_cumulative_dvh(const at::Tensor& values, const at::Tensor& thresholds, double temperature) {
  require(values.dim() == 1 && values.numel() > 0, "the soft DVH needs a non-empty list of dose values, got shape " +
                                                       shape_text(values.sizes()));
  require(thresholds.dim() == 1 && thresholds.numel() > 0, "the soft DVH needs at least one dose threshold");
  require(values.scalar_type() == torch::kFloat && thresholds.scalar_type() == torch::kFloat,
          "the soft DVH needs float32 tensors");
  require(values.device() == thresholds.device(), "the soft DVH got values and thresholds on different devices");
  require(std::isfinite(temperature) && temperature > 0, "the soft DVH temperature must be > 0");
  return SoftCumulativeDvh::apply(values.contiguous(), thresholds.contiguous(), temperature);
}

at::Tensor dvh_loss(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                    const std::vector<int64_t>& channels, int64_t bins, double max_dose) {
  const double step = max_dose / static_cast<double>(bins);
  const auto thresholds = torch::arange(1, bins + 1, pred.options().requires_grad(false)) * step;
  at::Tensor sum = zero_like_scalar(pred);
  int64_t pairs = 0;
  for (int64_t b = 0; b < pred.size(0); ++b) {
    const auto dose = pred[b][0];
    const auto reference = target[b][0].detach();
    for (const int64_t channel : channels) {
      const auto mask = input[b][channel] < 0;
      const auto values = dose.masked_select(mask);
      if (values.numel() == 0) continue;
      const auto predicted = soft_cumulative_dvh(values, thresholds, step);
      at::Tensor planned;
      {
        torch::NoGradGuard no_grad;
        planned = soft_cumulative_dvh(reference.masked_select(mask), thresholds, step);
      }
      sum = sum + (predicted - planned).square().mean();
      ++pairs;
    }
  }
  return pairs > 0 ? sum / static_cast<double>(pairs) : sum;
}

std::vector<std::pair<std::string, at::Tensor>> LossTerms::named(const LossConfig& config) const {
  std::vector<std::pair<std::string, at::Tensor>> out{{"mse", mse}, {"grad", grad}, {"neg", neg}};
  if (config.use_vgg_loss) out.emplace_back("vgg", vgg);
  if (config.use_structure_weighted) out.emplace_back("structure_weighted", structure_weighted);
  if (config.use_asymmetric_ptv) out.emplace_back("asymmetric_ptv", asymmetric_ptv);
  if (config.use_dvh_loss) out.emplace_back("dvh", dvh);
  return out;
}

TrainingLoss::TrainingLoss(LossConfig config, const torch::Device& device) : config_(std::move(config)) {
  const auto& c = config_;
  require_weight(c.negative_penalty_weight, "negativePenaltyWeight");
  require_weight(c.gradient_loss_weight, "gradientLossWeight");
  require_weight(c.vgg_loss_weight, "vggLossWeight");
  require_weight(c.structure_weighted_weight, "structureWeightedWeight");
  require_weight(c.structure_target_weight, "structureTargetWeight");
  require_weight(c.structure_boundary_weight, "structureBoundaryWeight");
  require_weight(c.structure_background_weight, "structureBackgroundWeight");
  require_weight(c.asymmetric_ptv_weight, "asymmetricPtvWeight");
  require_weight(c.asymmetric_underdose_weight, "asymmetricUnderdoseWeight");
  require_weight(c.asymmetric_overdose_weight, "asymmetricOverdoseWeight");
  require_weight(c.dvh_loss_weight, "dvhLossWeight");
  require(c.vgg_slice_stride >= 1, "vggSliceStride must be an integer >= 1, got " + std::to_string(c.vgg_slice_stride));
  require(c.structure_boundary_width_mm > 0 && c.structure_boundary_width_mm < kSdfClipMm,
          "structureBoundaryWidthMm must be between 0 and 50 mm (the distance maps are clipped at 50 mm), got " +
              std::to_string(c.structure_boundary_width_mm));
  require(c.dvh_bins >= 1 && c.dvh_bins <= 1000, "dvhBins must be an integer from 1 to 1000, got " + std::to_string(c.dvh_bins));
  require(std::isfinite(c.dvh_max_dose) && c.dvh_max_dose > 0,
          "dvhMaxDose must be > 0 (a dose in units of the normalisation dose), got " + std::to_string(c.dvh_max_dose));
  if (c.use_structure_weighted) {
    require(!c.target_channels.empty() || !c.boundary_channels.empty(),
            "useStructureWeighted needs targetChannels or boundaryChannels: the model-input channels of its structures");
    if (!c.target_channels.empty()) require_channels(c.target_channels, "targetChannels", "useStructureWeighted");
    if (!c.boundary_channels.empty()) require_channels(c.boundary_channels, "boundaryChannels", "useStructureWeighted");
  }
  if (c.use_asymmetric_ptv) require_channels(c.target_channels, "targetChannels", "useAsymmetricPtv");
  if (c.use_dvh_loss) require_channels(c.dvh_channels, "dvhChannels", "useDvhLoss");
  if (c.use_vgg_loss) {
    require(!c.vgg_weights.empty(), "useVggLoss needs vggWeights: a VGG16 safetensors file, which "
                                    "scripts/convert-vgg16.py makes from torchvision's vgg16 weights");
    vgg_ = std::make_shared<const Vgg16Features>(Vgg16Features::load(c.vgg_weights).to(device));
  }
}

LossTerms TrainingLoss::operator()(const at::Tensor& pred_in, const at::Tensor& target_in, const at::Tensor& input,
                                   int64_t step) const {
  const auto& c = config_;
  require_prediction(pred_in, target_in, "loss");
  const auto pred = pred_in.to(torch::kFloat);
  const auto target = target_in.to(torch::kFloat);
  LossTerms terms = dose_loss(pred, target, LossWeights{c.use_gradient_loss, c.gradient_loss_weight, c.negative_penalty_weight});
  terms.vgg = terms.structure_weighted = terms.asymmetric_ptv = terms.dvh = zero_like_scalar(pred);

  if (c.use_vgg_loss) {
    require(vgg_->weights[0].device() == pred.device(), "the VGG loss weights are on " + vgg_->weights[0].device().str() +
                                                            " but the prediction is on " + pred.device().str());
    terms.vgg = vgg_perceptual_loss(pred, target, *vgg_, c.vgg_slice_stride, step);
    terms.total = terms.total + c.vgg_loss_weight * terms.vgg;
  }
  if (c.use_structure_weighted) {
    auto channels = c.target_channels;
    channels.insert(channels.end(), c.boundary_channels.begin(), c.boundary_channels.end());
    require_input(input, pred, channels, "structure-weighted MSE");
    terms.structure_weighted = structure_weighted_mse(pred, target, input, c);
    terms.total = terms.total + c.structure_weighted_weight * terms.structure_weighted;
  }
  if (c.use_asymmetric_ptv) {
    require_input(input, pred, c.target_channels, "asymmetric PTV loss");
    terms.asymmetric_ptv = asymmetric_ptv_loss(pred, target, input, c.target_channels, c.asymmetric_underdose_weight,
                                               c.asymmetric_overdose_weight);
    terms.total = terms.total + c.asymmetric_ptv_weight * terms.asymmetric_ptv;
  }
  if (c.use_dvh_loss) {
    require_input(input, pred, c.dvh_channels, "DVH loss");
    terms.dvh = dvh_loss(pred, target, input, c.dvh_channels, c.dvh_bins, c.dvh_max_dose);
    terms.total = terms.total + c.dvh_loss_weight * terms.dvh;
  }
  return terms;
}

}  // namespace vmat
