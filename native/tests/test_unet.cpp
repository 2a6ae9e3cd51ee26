#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "vmat/checkpoint.h"
#include "vmat/error.h"
#include "vmat/unet.h"

namespace fs = std::filesystem;

namespace {

const std::string kData = VMAT_TEST_DATA_DIR;

// The formulas of native/tests/data/unet_fixture_common.py (deterministic_ and deterministic_inputs).
void deterministic_weights(vmat::BaselineUNet3D& model) {
  torch::NoGradGuard no_grad;
  int i = 0;
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    const auto k = torch::arange(p.numel(), torch::kFloat);
    const auto pattern = torch::sin(0.37 * k + 1.3 * i);
    at::Tensor value;
    if (p.dim() >= 2) {
      value = pattern / std::sqrt(static_cast<double>(p.numel() / p.size(0)));
    } else if (item.key().find(".norm") != std::string::npos && item.key().size() >= 6 &&
               item.key().compare(item.key().size() - 6, 6, "weight") == 0) {
      value = 1.0 + 0.1 * pattern;
    } else {
      value = 0.1 * pattern;
    }
    p.copy_(value.reshape(p.sizes()));
    ++i;
  }
}

std::pair<at::Tensor, at::Tensor> deterministic_inputs(int64_t batch, int64_t in_ch, int64_t size) {
  const auto k = torch::arange(batch * in_ch * size * size * size, torch::kFloat);
  const auto x = torch::sin(0.05 * k).reshape({batch, in_ch, size, size, size});
  const auto c = torch::cos(0.3 * torch::arange(batch * 13, torch::kFloat)).reshape({batch, 13});
  return {x, c};
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("vmat_test_unet_" + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST(UNet, ParameterCountsMatchTheSpec) {
  torch::manual_seed(0);
  EXPECT_EQ(vmat::count_parameters(*vmat::BaselineUNet3D(vmat::UNetConfig{9, 48})), 23732801);
  EXPECT_EQ(vmat::count_parameters(*vmat::BaselineUNet3D(vmat::UNetConfig{10, 48})), 23734145);
}

TEST(UNet, ParameterNamesArePyTorchs) {
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  const auto layers = vmat::parameter_summary(*model);
  ASSERT_GE(layers.size(), 8u);
  EXPECT_EQ(layers[0].name, "cond.0.weight");
  EXPECT_EQ(layers[0].shape, (std::vector<int64_t>{256, 13}));
  EXPECT_EQ(layers[1].name, "cond.0.bias");
  EXPECT_EQ(layers[2].name, "cond.2.weight");
  EXPECT_EQ(layers[3].name, "cond.2.bias");
  EXPECT_EQ(layers[4].name, "enc.0.conv1.weight");
  EXPECT_EQ(layers[4].shape, (std::vector<int64_t>{8, 9, 3, 3, 3}));
  EXPECT_EQ(layers[6].name, "enc.0.norm1.weight");
  EXPECT_EQ(layers[8].name, "enc.0.film.weight");
  EXPECT_EQ(layers[8].shape, (std::vector<int64_t>{16, 256}));
  EXPECT_EQ(layers.back().name, "head.bias");
  EXPECT_EQ(layers[layers.size() - 2].name, "head.weight");
  const auto params = model->named_parameters();
  EXPECT_TRUE(params.contains("dec.3.skip.bias"));
  EXPECT_TRUE(params.contains("enc.3.skip.weight"));
  EXPECT_FALSE(params.contains("enc.4.skip.weight"));  // the bottleneck keeps 8b channels
  EXPECT_EQ(params["dec.0.conv1.weight"].sizes(), (std::vector<int64_t>{32, 128, 3, 3, 3}));
}

TEST(UNet, DefaultInitialisationIsPyTorchs) {
  // PyTorch: Conv/Linear weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); GroupNorm weight 1, bias 0.
  torch::manual_seed(1);
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  const auto params = model->named_parameters();
  for (const char* conv : {"enc.1.conv2", "cond.2", "enc.0.film"}) {
    const auto weight = params[std::string(conv) + ".weight"];
    const auto bias = params[std::string(conv) + ".bias"];
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight.numel() / weight.size(0)));
    EXPECT_LE(weight.abs().max().item<double>(), bound) << conv;
    EXPECT_GT(weight.abs().max().item<double>(), 0.95 * bound) << conv;
    EXPECT_NEAR(weight.std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound) << conv;
    EXPECT_LE(bias.abs().max().item<double>(), bound) << conv;
  }
  EXPECT_TRUE(torch::equal(params["enc.2.norm1.weight"], torch::ones({32})));
  EXPECT_TRUE(torch::equal(params["enc.2.norm1.bias"], torch::zeros({32})));
}

TEST(UNet, ForwardShapeAndInputChecks) {
  vmat::BaselineUNet3D model(vmat::UNetConfig{10, 8});
  torch::NoGradGuard no_grad;
  const auto out = model->forward(torch::randn({2, 10, 16, 32, 16}), torch::randn({2, 13}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 1, 16, 32, 16}));
  EXPECT_THROW(model->forward(torch::randn({1, 10, 24, 16, 16}), torch::randn({1, 13})), vmat::Error);
  EXPECT_THROW(model->forward(torch::randn({1, 9, 16, 16, 16}), torch::randn({1, 13})), vmat::Error);
  EXPECT_THROW(model->forward(torch::randn({1, 10, 16, 16, 16}), torch::randn({1, 12})), vmat::Error);
  EXPECT_THROW(vmat::BaselineUNet3D(vmat::UNetConfig{9, 12}), vmat::Error);
  try {
    model->forward(torch::randn({1, 10, 24, 16, 16}), torch::randn({1, 13}));
  } catch (const vmat::Error& error) {
    EXPECT_NE(std::string(error.what()).find("multiples of 16"), std::string::npos) << error.what();
  }
}

TEST(UNet, ConfigJsonRoundTrip) {
  const vmat::UNetConfig config{10, 16, 13, 256};
  EXPECT_EQ(vmat::UNetConfig::from_json(config.to_json()), config);
  EXPECT_THROW(vmat::UNetConfig::from_json("{\"architecture\":\"Other\",\"in_channels\":9}"), vmat::Error);
  EXPECT_THROW(vmat::UNetConfig::from_json("{\"architecture\":\"BaselineUNet3D\"}"), vmat::Error);
  EXPECT_THROW(vmat::UNetConfig::from_json("not json"), vmat::Error);
}

// The committed fixture: output of the PyTorch reference for deterministic weights and inputs
// (native/tests/data/make_unet_fixture.py). Runs without Python.
TEST(UNet, MatchesThePyTorchReferenceFixture) {
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  model->eval();
  deterministic_weights(model);
  const auto [x, c] = deterministic_inputs(2, 9, 16);
  torch::NoGradGuard no_grad;
  const auto ours = model->forward(x, c);
  const auto fixture = vmat::load_tensors(kData + "/unet_base8_reference.safetensors");
  const auto& reference = fixture.tensors.at("output");
  ASSERT_EQ(ours.sizes(), reference.sizes());
  const double difference = (ours - reference).abs().max().item<double>();
  EXPECT_LT(difference, 1e-4) << "max abs difference to the PyTorch reference";
  EXPECT_GT(reference.std().item<double>(), 0.05);  // the fixture is not degenerate
}

// Live check with the PyTorch reference: our checkpoint (random init, base 8) loaded by name into unet_ref.py
// with a struct+json safetensors reader, same input (32^3), same output.
TEST(UNet, CheckpointLoadsIntoThePyTorchReference) {
  const char* python_env = std::getenv("VMAT_PYTHON");
  const std::string python = python_env ? python_env : "/usr/bin/python3";
  if (std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " with torch is not available; MatchesThePyTorchReferenceFixture covers the network";
  torch::manual_seed(7);
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 9, 32, 32, 32});
  const auto c = torch::randn({1, 13});
  const auto output = model->forward(x, c);
  const auto checkpoint = temp_path("model.safetensors");
  const auto io = temp_path("io.safetensors");
  vmat::save_model(checkpoint, model);
  vmat::save_tensors(io, {{"x", x}, {"c", c}, {"output", output}});
  const std::string command = python + " " + kData + "/check_unet_against_reference.py " + checkpoint + " " + io;
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  fs::remove(checkpoint);
  fs::remove(io);
}
