// The training loss entry point and the later terms (VGG perceptual, structure-weighted MSE, asymmetric PTV, DVH),
// value and gradient against the PyTorch reference native/tests/data/loss_reference.py (torchvision's VGG16 with
// random weights, converted by scripts/convert-vgg16.py), plus the rules that need no reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <unistd.h>

#include "vmat/error.h"
#include "vmat/losses.h"
#include "vmat/safetensors.h"

namespace fs = std::filesystem;

namespace {

const std::string kData = VMAT_TEST_DATA_DIR;
const std::string kRepo = kData + "/../../..";

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("vmat_test_loss_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string python() {
  const char* env = std::getenv("VMAT_PYTHON");
  return env ? env : "/usr/bin/python3";
}

bool python_has_torchvision() {
  return std::system((python() + " -c 'import torch, torchvision' >/dev/null 2>&1").c_str()) == 0;
}

// A signed distance map in the data.md convention (mm / 50, clipped to ±1, negative inside) of a sphere.
at::Tensor sphere_sdf(int64_t d, int64_t h, int64_t w, double cz, double cy, double cx, double radius_voxels,
                      double spacing_mm) {
  const auto z = torch::arange(d, torch::kFloat).view({d, 1, 1});
  const auto y = torch::arange(h, torch::kFloat).view({1, h, 1});
  const auto x = torch::arange(w, torch::kFloat).view({1, 1, w});
  const auto r = ((z - cz).square() + (y - cy).square() + (x - cx).square()).sqrt();
  return ((r - radius_voxels) * spacing_mm / vmat::kSdfClipMm).clamp(-1, 1);
}

struct Case {
  at::Tensor pred, target, input;
};

// Two samples, 6 input channels: CT, two targets (1, 2), an organ (3), an empty structure (4: all 0), an organ
// present only in sample 1 (5). Doses in [0, 1.1] with errors of both signs.
Case make_case(int64_t d, int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  const auto target = torch::rand({2, 1, d, h, w}) * 1.1;
  const auto pred = target + 0.15 * torch::randn({2, 1, d, h, w});
  auto input = torch::zeros({2, 6, d, h, w});
  input.select(1, 0).copy_(torch::rand({2, d, h, w}));
  for (int64_t b = 0; b < 2; ++b) {
    const double shift = static_cast<double>(b);
    input[b][1].copy_(sphere_sdf(d, h, w, d / 2.0, h / 2.0 + shift, w / 2.0, 0.25 * w, 10.0));
    input[b][2].copy_(sphere_sdf(d, h, w, d / 2.0, h / 2.0, w / 2.0 - shift, 0.4 * w, 10.0));
    input[b][3].copy_(sphere_sdf(d, h, w, 2.0, 3.0 + shift, 4.0, 3.0, 10.0));
    input[b][5].copy_(b == 0 ? sphere_sdf(d, h, w, -20.0, -20.0, -20.0, 2.0, 10.0)
                             : sphere_sdf(d, h, w, d - 3.0, h - 3.0, w - 4.0, 2.5, 10.0));
  }
  return {pred, target, input};
}

vmat::LossConfig every_term(const std::string& vgg_weights) {
  vmat::LossConfig config;
  config.use_gradient_loss = true;
  config.gradient_loss_weight = 0.3;
  config.negative_penalty_weight = 0.2;
  config.use_vgg_loss = !vgg_weights.empty();
  config.vgg_loss_weight = 0.05;
  config.vgg_slice_stride = 3;
  config.vgg_weights = vgg_weights;
  config.use_structure_weighted = true;
  config.structure_weighted_weight = 0.7;
  config.structure_target_weight = 2.5;
  config.structure_boundary_weight = 1.25;
  config.structure_background_weight = 0.4;
  config.structure_boundary_width_mm = 12.0;
  config.use_asymmetric_ptv = true;
  config.asymmetric_ptv_weight = 0.9;
  config.asymmetric_underdose_weight = 3.5;
  config.asymmetric_overdose_weight = 0.75;
  config.use_dvh_loss = true;
  config.dvh_loss_weight = 1.5;
  config.dvh_bins = 20;
  config.dvh_max_dose = 1.2;
  config.target_channels = {1, 2};
  config.boundary_channels = {3, 4, 5};
  config.dvh_channels = {1, 2, 3, 4, 5};
  return config;
}

std::string json_list(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str() + "]";
}

std::string config_json(const vmat::LossConfig& c, int64_t step) {
  std::ostringstream out;
  out.precision(17);
  const auto flag = [](bool on) { return on ? "true" : "false"; };
  out << "{\"negative_penalty_weight\":" << c.negative_penalty_weight << ",\"use_gradient_loss\":" << flag(c.use_gradient_loss)
      << ",\"gradient_loss_weight\":" << c.gradient_loss_weight << ",\"use_vgg_loss\":" << flag(c.use_vgg_loss)
      << ",\"vgg_loss_weight\":" << c.vgg_loss_weight << ",\"vgg_slice_stride\":" << c.vgg_slice_stride
      << ",\"use_structure_weighted\":" << flag(c.use_structure_weighted)
      << ",\"structure_weighted_weight\":" << c.structure_weighted_weight
      << ",\"structure_target_weight\":" << c.structure_target_weight
      << ",\"structure_boundary_weight\":" << c.structure_boundary_weight
      << ",\"structure_background_weight\":" << c.structure_background_weight
      << ",\"structure_boundary_width_mm\":" << c.structure_boundary_width_mm
      << ",\"use_asymmetric_ptv\":" << flag(c.use_asymmetric_ptv) << ",\"asymmetric_ptv_weight\":" << c.asymmetric_ptv_weight
      << ",\"asymmetric_underdose_weight\":" << c.asymmetric_underdose_weight
      << ",\"asymmetric_overdose_weight\":" << c.asymmetric_overdose_weight << ",\"use_dvh_loss\":" << flag(c.use_dvh_loss)
      << ",\"dvh_loss_weight\":" << c.dvh_loss_weight << ",\"dvh_bins\":" << c.dvh_bins << ",\"dvh_max_dose\":" << c.dvh_max_dose
      << ",\"target_channels\":" << json_list(c.target_channels) << ",\"boundary_channels\":" << json_list(c.boundary_channels)
      << ",\"dvh_channels\":" << json_list(c.dvh_channels) << ",\"step\":" << step << "}";
  return out.str();
}

// VGG16's convolutions up to relu3_3 under torchvision's names: zero, or random (He-scaled weights, biases N(0, 0.1)).
vmat::TensorMap vgg_tensors(bool random) {
  vmat::TensorMap tensors;
  const std::vector<std::pair<int, std::vector<int64_t>>> convs{{0, {64, 3}}, {2, {64, 64}}, {5, {128, 64}}, {7, {128, 128}},
                                                                {10, {256, 128}}, {12, {256, 256}}, {14, {256, 256}}};
  for (const auto& [index, shape] : convs) {
    const std::string name = "features." + std::to_string(index);
    tensors[name + ".weight"] = random ? torch::randn({shape[0], shape[1], 3, 3}) * std::sqrt(2.0 / (9.0 * shape[0]))
                                       : torch::zeros({shape[0], shape[1], 3, 3});
    tensors[name + ".bias"] = random ? 0.1 * torch::randn({shape[0]}) : torch::zeros({shape[0]});
  }
  return tensors;
}

int run(const std::string& command) { return std::system(command.c_str()); }

// Every term of `config` on `data` against the reference: value to float32 rounding, gradient w.r.t. pred to a
// small fraction of its largest component.
void expect_terms_match_the_reference(const vmat::LossConfig& config, const Case& data, int64_t step,
                                      const std::string& vgg_pth, double gradient_tolerance) {
  const vmat::TrainingLoss loss(config);
  auto pred = data.pred.clone().requires_grad_(true);
  const auto terms = loss(pred, data.target, data.input, step);
  const auto io = temp_path("io.safetensors"), reference_path = temp_path("reference.safetensors");
  vmat::save_tensors(io, {{"pred", data.pred}, {"target", data.target}, {"input", data.input}},
                     {{"config", config_json(config, step)}});
  const std::string command = python() + " " + kData + "/loss_reference.py check " + io + " " + reference_path + " " + vgg_pth;
  ASSERT_EQ(run(command), 0) << command;
  const auto reference = vmat::load_tensors(reference_path).tensors;
  fs::remove(io);
  fs::remove(reference_path);

  for (const auto& [name, value] : terms.named(config)) {
    SCOPED_TRACE("term " + name);
    ASSERT_TRUE(reference.count(name)) << "the reference has no " << name;
    const double theirs = reference.at(name).item<double>();
    EXPECT_NEAR(value.item<double>(), theirs, 2e-6 * std::abs(theirs) + 1e-12);
    EXPECT_GT(theirs, 0.0) << "a term of the check is zero, so it checks nothing";
    const auto ours = torch::autograd::grad({value}, {pred}, {}, /*retain_graph=*/true)[0];
    const auto& expected = reference.at(name + ".grad");
    const double scale = expected.abs().max().item<double>();
    EXPECT_GT(scale, 0.0);
    EXPECT_LE((ours - expected).abs().max().item<double>(), gradient_tolerance * scale);
  }
  EXPECT_NEAR(terms.total.item<double>(), reference.at("total").item<double>(), 2e-6 * reference.at("total").item<double>());
}

}  // namespace

TEST(TrainingLoss, EveryTermMatchesThePyTorchReference) {
  if (!python_has_torchvision()) GTEST_SKIP() << python() << " with torch and torchvision is not available";
  const auto pth = temp_path("vgg16.pth"), weights = temp_path("vgg16.safetensors");
  ASSERT_EQ(run(python() + " " + kData + "/loss_reference.py make-vgg16 " + pth + " 3"), 0);
  ASSERT_EQ(run(python() + " " + kRepo + "/scripts/convert-vgg16.py " + pth + " " + weights + " >/dev/null"), 0);
  // Not cubic, so that the three orientations differ; step 4 with stride 3 starts the slices at 1.
  expect_terms_match_the_reference(every_term(weights), make_case(12, 16, 20, 5), 4, pth, 1e-5);
  // Another step and sizes smaller than the stride along no axis but uneven ones along all.
  auto config = every_term(weights);
  config.vgg_slice_stride = 5;
  expect_terms_match_the_reference(config, make_case(8, 9, 11, 6), 7, pth, 1e-5);
  fs::remove(pth);
  fs::remove(weights);
}

TEST(TrainingLoss, FirstVersionTermsAreIdenticalThroughTheEntryPoint) {
  torch::manual_seed(11);
  for (const bool gradient : {false, true}) {
    const auto pred = torch::randn({2, 1, 8, 8, 8}).requires_grad_(true);
    const auto target = torch::rand({2, 1, 8, 8, 8});
    vmat::LossConfig config;
    config.use_gradient_loss = gradient;
    config.gradient_loss_weight = 0.3;
    config.negative_penalty_weight = 0.2;
    const auto ours = vmat::TrainingLoss(config)(pred, target);
    const auto before = vmat::dose_loss(pred, target, vmat::LossWeights{gradient, 0.3, 0.2});
    EXPECT_EQ(ours.total.item<float>(), before.total.item<float>());
    EXPECT_EQ(ours.mse.item<float>(), before.mse.item<float>());
    EXPECT_EQ(ours.grad.item<float>(), before.grad.item<float>());
    EXPECT_EQ(ours.neg.item<float>(), before.neg.item<float>());
    // The spec's formula, written out.
    const auto mse = (pred - target).square().mean(), neg = torch::relu(-pred).mean();
    auto spec = mse + 0.2 * neg;
    if (gradient) spec = spec + 0.3 * vmat::sobel_gradient_loss(pred, target);
    EXPECT_EQ(ours.total.item<float>(), spec.item<float>());
    const auto g_ours = torch::autograd::grad({ours.total}, {pred})[0];
    const auto g_spec = torch::autograd::grad({spec}, {pred})[0];
    EXPECT_TRUE(torch::equal(g_ours, g_spec));
    EXPECT_EQ(ours.vgg.item<float>(), 0.f);
    EXPECT_EQ(ours.dvh.item<float>(), 0.f);
    const auto names = ours.named(config);
    ASSERT_EQ(names.size(), 3u);
    EXPECT_EQ(names[0].first, "mse");
    EXPECT_EQ(names[1].first, "grad");
    EXPECT_EQ(names[2].first, "neg");
  }
}

TEST(TrainingLoss, NamedTermsListWhatIsOn) {
  auto config = every_term("");
  const auto data = make_case(8, 8, 8, 1);
  const auto terms = vmat::TrainingLoss(config)(data.pred, data.target, data.input);
  std::vector<std::string> names;
  for (const auto& item : terms.named(config)) names.push_back(item.first);
  EXPECT_EQ(names, (std::vector<std::string>{"mse", "grad", "neg", "structure_weighted", "asymmetric_ptv", "dvh"}));
  double sum = terms.mse.item<double>() + 0.3 * terms.grad.item<double>() + 0.2 * terms.neg.item<double>() +
               0.7 * terms.structure_weighted.item<double>() + 0.9 * terms.asymmetric_ptv.item<double>() +
               1.5 * terms.dvh.item<double>();
  EXPECT_NEAR(terms.total.item<double>(), sum, 1e-6 * sum);
}

TEST(TrainingLoss, StructureWeightMapFollowsItsRules) {
  // One sample, 1 x 1 x 6 voxels: a target inside at x = 0, an organ whose surface lies near x = 2..3, an empty
  // structure (0 everywhere) that must mark nothing.
  auto input = torch::zeros({1, 4, 1, 1, 6});
  input[0][1] = torch::tensor({-0.1f, 0.02f, 0.3f, 0.3f, 0.3f, 0.3f}).view({1, 1, 6});
  input[0][2] = torch::tensor({0.5f, 0.5f, 0.08f, -0.02f, -0.5f, 0.09f}).view({1, 1, 6});
  vmat::LossConfig config;
  config.structure_target_weight = 4;
  config.structure_boundary_weight = 2;
  config.structure_background_weight = 0.5;
  config.structure_boundary_width_mm = 5.0;  // 0.1 in distance-map units
  config.target_channels = {1};
  config.boundary_channels = {2, 3};
  const auto map = vmat::structure_weight_map(input, config).flatten();
  EXPECT_TRUE(torch::equal(map, torch::tensor({4.f, 0.5f, 2.f, 2.f, 0.5f, 2.f})));
}

TEST(TrainingLoss, EmptyMasksGiveZeroTermsAndGradients) {
  auto data = make_case(8, 8, 8, 2);
  auto input = data.input.clone();
  input.slice(1, 1).fill_(0.5);  // every structure outside the patch
  auto pred = data.pred.clone().requires_grad_(true);
  const auto asymmetric = vmat::asymmetric_ptv_loss(pred, data.target, input, {1, 2}, 3.0, 1.0);
  const auto dvh = vmat::dvh_loss(pred, data.target, input, {1, 2, 3}, 10, 1.2);
  EXPECT_EQ(asymmetric.item<double>(), 0.0);
  EXPECT_EQ(dvh.item<double>(), 0.0);
  (asymmetric + dvh + 0 * pred.sum()).backward();
  EXPECT_EQ(pred.grad().abs().max().item<double>(), 0.0);
}

TEST(TrainingLoss, SoftDvhInChunksMatchesTheDirectFormula) {
  torch::manual_seed(4);
  // 1000 thresholds give chunks of 4194 values: 10000 values cross two chunk boundaries.
  auto values = (torch::rand({10000}) * 1.2).requires_grad_(true);
  const auto thresholds = torch::linspace(0.001, 1.2, 1000);
  const auto weights = torch::randn({1000});
  const auto chunked = vmat::soft_cumulative_dvh(values, thresholds, 0.01);
  auto direct_values = values.detach().clone().requires_grad_(true);
  const auto direct = torch::sigmoid((direct_values.unsqueeze(1) - thresholds.unsqueeze(0)) / 0.01).mean(0);
  EXPECT_LE((chunked - direct).abs().max().item<double>(), 1e-6);
  (chunked * weights).sum().backward();
  (direct * weights).sum().backward();
  const double scale = direct_values.grad().abs().max().item<double>();
  EXPECT_GT(scale, 0.0);
  EXPECT_LE((values.grad() - direct_values.grad()).abs().max().item<double>(), 1e-5 * scale);
  EXPECT_THROW(vmat::soft_cumulative_dvh(torch::zeros({0}), thresholds, 0.01), vmat::Error);
}

TEST(TrainingLoss, VggSlicesCoverEveryPositionOverStrideSteps) {
  EXPECT_EQ(vmat::vgg_slice_indices(12, 3, 4), (std::vector<int64_t>{1, 4, 7, 10}));
  EXPECT_EQ(vmat::vgg_slice_indices(16, 8, 0), (std::vector<int64_t>{0, 8}));
  EXPECT_EQ(vmat::vgg_slice_indices(16, 8, 15), (std::vector<int64_t>{7, 15}));
  EXPECT_EQ(vmat::vgg_slice_indices(5, 8, 6), (std::vector<int64_t>{1}));  // fewer slices than the stride
  std::vector<int> used(20, 0);
  for (int64_t step = 0; step < 8; ++step) {
    for (const int64_t i : vmat::vgg_slice_indices(20, 8, step)) ++used[i];
  }
  for (const int count : used) EXPECT_EQ(count, 1);
}

TEST(TrainingLoss, SettingsAreCheckedWithTheirNames) {
  const auto message_of = [](const vmat::LossConfig& config) {
    try {
      vmat::TrainingLoss loss(config);
    } catch (const vmat::Error& error) {
      EXPECT_EQ(error.code(), vmat::ErrorCode::InvalidInput);
      return std::string(error.what());
    }
    return std::string("no error");
  };
  vmat::LossConfig config;
  config.vgg_loss_weight = -1;
  EXPECT_NE(message_of(config).find("vggLossWeight must be a finite number >= 0"), std::string::npos);
  config = {};
  config.dvh_loss_weight = std::nan("");
  EXPECT_NE(message_of(config).find("dvhLossWeight"), std::string::npos);
  config = {};
  config.use_vgg_loss = true;
  EXPECT_NE(message_of(config).find("useVggLoss needs vggWeights"), std::string::npos);
  config.vgg_weights = temp_path("missing.safetensors");
  EXPECT_THROW(vmat::TrainingLoss{config}, vmat::Error);
  config = {};
  config.use_asymmetric_ptv = true;
  EXPECT_NE(message_of(config).find("useAsymmetricPtv needs targetChannels"), std::string::npos);
  config.target_channels = {0};
  EXPECT_NE(message_of(config).find("channel 0 is the CT"), std::string::npos);
  config = {};
  config.use_structure_weighted = true;
  EXPECT_NE(message_of(config).find("useStructureWeighted needs targetChannels or boundaryChannels"), std::string::npos);
  config.boundary_channels = {2};
  config.structure_boundary_width_mm = 50;
  EXPECT_NE(message_of(config).find("structureBoundaryWidthMm must be between 0 and 50 mm"), std::string::npos);
  config = {};
  config.dvh_bins = 0;
  EXPECT_NE(message_of(config).find("dvhBins"), std::string::npos);
  config = {};
  config.vgg_slice_stride = 0;
  EXPECT_NE(message_of(config).find("vggSliceStride"), std::string::npos);
}

TEST(TrainingLoss, BadInputIsRefusedWithASentence) {
  auto config = every_term("");
  const vmat::TrainingLoss loss(config);
  const auto data = make_case(8, 8, 8, 3);
  const auto message_of = [&](const at::Tensor& pred, const at::Tensor& target, const at::Tensor& input) {
    try {
      loss(pred, target, input);
    } catch (const vmat::Error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of(data.pred, data.target, {}).find("needs the model input"), std::string::npos);
  EXPECT_NE(message_of(data.pred, data.target, data.input.slice(1, 0, 3)).find("reads input channel 3 but the model input has 3 channels"),
            std::string::npos);
  EXPECT_NE(message_of(data.pred, data.target, data.input.slice(4, 0, 4)).find("got a model input of shape"), std::string::npos);
  EXPECT_NE(message_of(data.pred, data.target.slice(2, 0, 4), data.input).find("and a target of shape"), std::string::npos);
}

TEST(Vgg16Features, MissingOrMisshapedTensorsAreNamed) {
  const auto tensors = vgg_tensors(false);
  EXPECT_NO_THROW(vmat::Vgg16Features::from_tensors(tensors, "vgg.safetensors"));
  auto wrong = tensors;
  wrong.erase("features.7.bias");
  try {
    vmat::Vgg16Features::from_tensors(wrong, "vgg.safetensors");
    ADD_FAILURE() << "no error";
  } catch (const vmat::Error& error) {
    EXPECT_NE(std::string(error.what()).find("vgg.safetensors has no tensor features.7.bias"), std::string::npos) << error.what();
  }
  wrong = tensors;
  wrong["features.5.weight"] = torch::zeros({128, 64, 5, 5});
  EXPECT_THROW(vmat::Vgg16Features::from_tensors(wrong, "vgg.safetensors"), vmat::Error);
  wrong = tensors;
  wrong["features.0.bias"] = torch::full({64}, std::nanf(""));
  EXPECT_THROW(vmat::Vgg16Features::from_tensors(wrong, "vgg.safetensors"), vmat::Error);
}

TEST(TrainingLossCuda, SameAsTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto& context = at::globalContext();
  const bool cudnn_tf32 = context.allowTF32CuDNN();
  context.setAllowTF32CuDNN(false);  // full float32 VGG convolutions, as on the CPU
  torch::manual_seed(8);
  const auto weights = temp_path("cuda_vgg.safetensors");
  vmat::save_tensors(weights, vgg_tensors(true));
  const auto config = every_term(weights);
  const auto data = make_case(16, 16, 16, 9);
  auto p_cpu = data.pred.clone().requires_grad_(true);
  auto p_gpu = data.pred.cuda().requires_grad_(true);
  const auto on_cpu = vmat::TrainingLoss(config)(p_cpu, data.target, data.input, 3);
  const auto on_gpu = vmat::TrainingLoss(config, torch::kCUDA)(p_gpu, data.target.cuda(), data.input.cuda(), 3);
  on_cpu.total.backward();
  on_gpu.total.backward();
  const auto gpu_terms = on_gpu.named(config);
  const auto cpu_terms = on_cpu.named(config);
  for (size_t i = 0; i < cpu_terms.size(); ++i) {
    SCOPED_TRACE(cpu_terms[i].first);
    EXPECT_TRUE(gpu_terms[i].second.is_cuda());
    EXPECT_NEAR(gpu_terms[i].second.item<double>(), cpu_terms[i].second.item<double>(), 1e-5 * std::abs(cpu_terms[i].second.item<double>()));
  }
  const double scale = p_cpu.grad().abs().max().item<double>();
  EXPECT_LE((p_gpu.grad().cpu() - p_cpu.grad()).abs().max().item<double>(), 1e-4 * scale);
  context.setAllowTF32CuDNN(cudnn_tf32);
  fs::remove(weights);
}
