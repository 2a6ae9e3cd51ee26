#pragma once
// Training losses on the normalised dose (spec/model.md, README "Losses"). Every term is computed in float32,
// whatever the dtype of the prediction (bf16 under mixed precision).
//
// The training step calls one entry point, TrainingLoss: built once from a LossConfig (it checks the settings and
// loads the VGG16 weights), then called on each batch. The structure terms read their masks from the model input's
// signed distance channels (negative inside, data.md), so the patch sampler provides nothing more.
//
// Adding a term: write a function `at::Tensor xxx_loss(pred, target, ...)`, add its settings to LossConfig and its
// value to LossTerms (and to LossTerms::named), and one block in TrainingLoss::operator() that adds it.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vmat/safetensors.h"

namespace vmat {

// The signed distance channels are clipped to ±50 mm and divided by 50 (data.md): a value v is v * 50 mm.
constexpr double kSdfClipMm = 50.0;

struct LossConfig {
  // The first version's terms (dose_loss).
  double negative_penalty_weight = 0.1;
  bool use_gradient_loss = false;
  double gradient_loss_weight = 0.1;

  // VGG16 perceptual loss, 2.5D (vgg_perceptual_loss).
  bool use_vgg_loss = false;
  double vgg_loss_weight = 0.001;
  int64_t vgg_slice_stride = 8;  // every 8th slice of each orientation; the offset moves with the step
  std::string vgg_weights;       // VGG16 safetensors file (scripts/convert-vgg16.py)

  // Structure-weighted MSE (structure_weighted_mse).
  bool use_structure_weighted = false;
  double structure_weighted_weight = 1.0;
  double structure_target_weight = 2.0;      // inside a target
  double structure_boundary_weight = 1.5;    // near the surface of a boundary structure (an organ at risk)
  double structure_background_weight = 0.5;  // elsewhere
  double structure_boundary_width_mm = 5.0;

  // Asymmetric PTV under-dose penalty (asymmetric_ptv_loss).
  bool use_asymmetric_ptv = false;
  double asymmetric_ptv_weight = 1.0;
  double asymmetric_underdose_weight = 3.0;
  double asymmetric_overdose_weight = 1.0;

  // Differentiable DVH loss (dvh_loss).
  bool use_dvh_loss = false;
  double dvh_loss_weight = 0.1;
  int64_t dvh_bins = 60;
  double dvh_max_dose = 1.2;  // highest threshold, in units of the normalisation dose

  // Model-input channels (0 is the CT; 1.. the structures' signed distance maps).
  std::vector<int64_t> target_channels;    // the PTVs: structure-weighted (inside) and asymmetric terms
  std::vector<int64_t> boundary_channels;  // organs at risk: structure-weighted term (near the surface)
  std::vector<int64_t> dvh_channels;       // the structures whose DVHs the DVH term compares
};

// Scalar float32 tensors. A term that is off is a zero scalar (no graph).
struct LossTerms {
  at::Tensor total, mse, grad, neg, vgg, structure_weighted, asymmetric_ptv, dvh;
  // (name, value) for logging: "mse", "grad", "neg" always (as the first version logged them), then each later
  // term that is on: "vgg", "structure_weighted", "asymmetric_ptv", "dvh".
  std::vector<std::pair<std::string, at::Tensor>> named(const LossConfig& config) const;
};

// The VGG16 convolutions up to relu3_3 (torchvision's features.0 to features.15), float32, on one device.
struct Vgg16Features {
  std::vector<at::Tensor> weights, biases;  // conv1_1, conv1_2, conv2_1, conv2_2, conv3_1, conv3_2, conv3_3
  // From torchvision's tensor names (features.0.weight, ...); InvalidInput naming `source` when a tensor is missing,
  // mis-shaped or not finite.
  static Vgg16Features from_tensors(const TensorMap& tensors, const std::string& source);
  // From a safetensors file written by scripts/convert-vgg16.py.
  static Vgg16Features load(const std::string& path);
  Vgg16Features to(const torch::Device& device) const;
  // relu1_2, relu2_2 and relu3_3 of images [N, 3, h, w] (already ImageNet-normalised).
  std::vector<at::Tensor> forward(const at::Tensor& images) const;
};

// The loss of one training step. Holds the settings and the VGG16 weights (on `device`).
class TrainingLoss {
 public:
  // Throws InvalidInput naming the setting (camelCase, as the user wrote it) when a setting is out of range, and
  // when the VGG16 weights cannot be loaded.
  explicit TrainingLoss(LossConfig config, const torch::Device& device = torch::kCPU);

  // pred, target: [B, 1, D, H, W] (pred any floating dtype, cast to float32). input: the model input [B, C, D, H, W]
  // the prediction was made from (needed by the structure terms; may be undefined otherwise). step: the training
  // step, which picks the VGG slices (0 for validation). Differentiable w.r.t. pred.
  LossTerms operator()(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input = {},
                       int64_t step = 0) const;

 private:
  LossConfig config_;
  std::shared_ptr<const Vgg16Features> vgg_;
};

// ------------------------------------------------------------------ the first version's entry point
// The trainer's present call, until it moves to TrainingLoss (whose mse, grad and neg are these).
struct LossWeights {
  bool use_gradient_loss = false;
  double gradient_loss_weight = 0.1;
  double negative_penalty_weight = 0.1;
};

// total = mse + w_neg * neg + w_grad * grad (when enabled), differentiable w.r.t. pred.
// pred and target: [B, 1, D, H, W] (any floating dtype; cast to float32), same shape, same device.
// Of the returned terms only total, mse, grad and neg are set.
LossTerms dose_loss(const at::Tensor& pred, const at::Tensor& target, const LossWeights& weights);

// ------------------------------------------------------------------ the terms (float32 [B, 1, D, H, W] unless said)
// mean((p - t)^2)
at::Tensor dose_mse(const at::Tensor& pred, const at::Tensor& target);

// mean(relu(-p))
at::Tensor negative_penalty(const at::Tensor& pred);

// Sobel gradient loss: mean over voxels and the 3 axes of |G_k * p - G_k * t| with the 3x3x3 Sobel kernels / 32,
// zero padding 1. Fused kernel (CPU; CUDA when built with it), forward and backward by hand, registered with
// autograd: differentiable w.r.t. both arguments. Inputs: float32 [B, C, D, H, W] (each of the B*C volumes
// filtered on its own), same shape and device.
at::Tensor sobel_gradient_loss(const at::Tensor& pred, const at::Tensor& target);

// On CUDA each thread of the Sobel loss marches this many planes of one voxel column (default 16). The environment
// variable VMAT_SOBEL_PLANES_PER_THREAD or set_sobel_planes_per_thread() changes it, to time other values; the
// result is the same for any value. Accepted: 1 to 1024.
void set_sobel_planes_per_thread(int64_t planes);
int64_t sobel_planes_per_thread();

// The slices the VGG loss uses along an axis of `size` voxels at `step`: o, o + stride, o + 2 stride, ... < size,
// with o = (step mod stride) mod size, so that every slice position is used once every `stride` steps.
std::vector<int64_t> vgg_slice_indices(int64_t size, int64_t stride, int64_t step);

// 2.5D VGG perceptual loss: the axial (z), coronal (y) and sagittal (x) slices at vgg_slice_indices of p and t, each
// slice repeated into 3 channels and ImageNet-normalised ((v - mean_c) / std_c, mean 0.485 0.456 0.406, std 0.229
// 0.224 0.225), through VGG16 to relu1_2, relu2_2 and relu3_3; the mean over the 3 orientations and 3 layers of the
// mean absolute feature difference. D, H, W >= 4.
at::Tensor vgg_perceptual_loss(const at::Tensor& pred, const at::Tensor& target, const Vgg16Features& vgg,
                               int64_t slice_stride, int64_t step);

// The voxel weight map of the structure-weighted MSE, [B, 1, D, H, W]: the background weight; the boundary weight
// where 0 < |sdf| < width_mm / 50 mm for a boundary channel; the target weight where sdf < 0 for a target channel
// (later rules win). An empty structure (sdf exactly 0 everywhere) marks nothing.
at::Tensor structure_weight_map(const at::Tensor& input, const LossConfig& config);

// mean(w * (p - t)^2) with w = structure_weight_map(input, config).
at::Tensor structure_weighted_mse(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                                  const LossConfig& config);

// Over the voxels U inside any target channel (sdf < 0), the whole batch together: sum_U w(e) e^2 / |U| with
// e = p - t, w = underdose weight where e < 0, overdose weight elsewhere; 0 when U is empty.
at::Tensor asymmetric_ptv_loss(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                               const std::vector<int64_t>& target_channels, double underdose_weight,
                               double overdose_weight);

// Soft cumulative DVH: for values v [N] and thresholds d [K], mean_n sigmoid((v_n - d_k) / temperature), [K].
// Differentiable w.r.t. v; works in chunks of voxels, so memory stays O(chunk * K) whatever N.
at::Tensor soft_cumulative_dvh(const at::Tensor& values, const at::Tensor& thresholds, double temperature);

// DVH loss: thresholds d_k = k * max_dose / bins (k = 1..bins), temperature max_dose / bins. For each sample b and
// DVH channel s with a non-empty mask M (sdf < 0), mean_k (V_p(d_k) - V_t(d_k))^2 with V the soft cumulative DVH
// of the dose in M; the loss is the mean over the (b, s) pairs with a mask, 0 when there is none.
at::Tensor dvh_loss(const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input,
                    const std::vector<int64_t>& channels, int64_t bins, double max_dose);

}  // namespace vmat
