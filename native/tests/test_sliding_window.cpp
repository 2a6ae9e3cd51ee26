#include <gtest/gtest.h>
#include <torch/torch.h>

#include "vmat/patch_sampler.h"
#include "vmat/sliding_window.h"

namespace {

TEST(SlidingWindow, StartsCoverEveryVoxelAndEndFlush) {
  for (int64_t patch : {16, 32, 128}) {
    for (double overlap : {0.0, 0.25, 0.5, 0.75}) {
      for (int64_t size = patch; size < patch * 4 + 7; size += 3) {
        const auto starts = vmat::window_starts(size, patch, overlap);
        ASSERT_EQ(starts.front(), 0);
        ASSERT_EQ(starts.back(), size - patch);
        const double max_step = std::max(1.0, std::floor(patch * (1 - overlap)));
        for (size_t i = 1; i < starts.size(); ++i) {
          ASSERT_GT(starts[i], starts[i - 1]);
          ASSERT_LE(starts[i] - starts[i - 1], max_step + 1e-9) << size << " " << patch << " " << overlap;
        }
      }
    }
  }
  EXPECT_EQ(vmat::window_starts(96, 64, 0.5), (std::vector<int64_t>{0, 32}));
  EXPECT_EQ(vmat::window_starts(128, 128, 0.5), (std::vector<int64_t>{0}));
}

TEST(SlidingWindow, GaussianHasPeakOneSigmaQuarterPatchAndFloor) {
  const auto w = vmat::gaussian_window(32);
  EXPECT_NEAR(w.max().item<float>(), 1.0f, 1e-6);
  EXPECT_GE(w.min().item<float>(), 1e-3f - 1e-9);
  // Along one axis through the centre, exp(-d^2 / (2 sigma^2)) with sigma = 8, relative to the peak at d = 0.5.
  const double sigma = 8.0;
  const double expected = std::exp(-(15.5 * 15.5 - 0.5 * 0.5) / (2 * sigma * sigma));
  EXPECT_NEAR(w[16][16][31].item<float>() / w[16][16][16].item<float>(), expected, 1e-5);
  EXPECT_TRUE(torch::allclose(w, w.flip({0, 1, 2})));
}

// A fixed network that is not pointwise: a 3x3x3 convolution of the inputs with given weights.
struct ConvNet {
  at::Tensor weight;
  at::Tensor operator()(const at::Tensor& x) const { return torch::conv3d(x, weight, {}, 1, 1) - 0.2; }
};

TEST(SlidingWindow, OnePatchVolumeEqualsNetworkTimesDoseClamped) {
  torch::manual_seed(3);
  ConvNet net{torch::randn({1, 3, 3, 3, 3}) * 0.2};
  auto input = torch::randn({3, 32, 32, 32});
  vmat::SlidingWindowOptions options;
  options.patch = 32;
  const auto dose = vmat::sliding_window_dose(input, net, options, 70.0);
  const auto expected = (net(input.unsqueeze(0))[0][0] * 70.0).clamp_min(0.0);
  EXPECT_TRUE(torch::allclose(dose, expected, 1e-5, 1e-4));
  EXPECT_GT((expected == 0).sum().item<int64_t>(), 0);  // the clamp did something
}

TEST(SlidingWindow, PointwiseNetworkIsReproducedAcrossOverlappingWindows) {
  auto pointwise = [](const at::Tensor& x) { return x.select(1, 0).unsqueeze(1) * 2.0 + x.select(1, 1).unsqueeze(1); };
  auto input = torch::rand({2, 40, 50, 37});
  for (int64_t batch : {1, 3}) {
    vmat::SlidingWindowOptions options;
    options.patch = 16;
    options.overlap = 0.5;
    options.batch = batch;
    const auto stitched = vmat::sliding_window_normalised(input, pointwise, options);
    ASSERT_EQ(stitched.sizes(), (std::vector<int64_t>{40, 50, 37}));
    EXPECT_TRUE(torch::allclose(stitched, input[0] * 2.0 + input[1], 1e-5, 1e-5));
  }
}

TEST(SlidingWindow, SmallVolumeIsPaddedWithAirAndCroppedBack) {
  // The network sees the padded window: check the padding values through a network that returns channel means.
  at::Tensor seen;
  auto record = [&](const at::Tensor& x) {
    seen = x.clone();
    return torch::zeros({x.size(0), 1, x.size(2), x.size(3), x.size(4)});
  };
  auto input = torch::full({3, 10, 20, 33}, 0.7f);
  vmat::SlidingWindowOptions options;
  options.patch = 32;
  const auto out = vmat::sliding_window_normalised(input, record, options);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{10, 20, 33}));
  ASSERT_EQ(seen.size(2), 32);
  EXPECT_FLOAT_EQ(seen[0][0][31][0][0].item<float>(), vmat::kAirCtValue);
  EXPECT_FLOAT_EQ(seen[0][1][31][0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(seen[0][2][0][0][0].item<float>(), 0.7f);
}

vmat::SamplingCase ramp_case(int64_t z, int64_t y, int64_t x, int64_t channels) {
  vmat::TrainingCase source;
  source.id = "ramp";
  source.input = torch::arange(channels * z * y * x, torch::kFloat).view({channels, z, y, x});
  source.dose = torch::rand({z, y, x});
  source.constraints = torch::arange(13, torch::kFloat);
  return vmat::prepare_sampling_case(source, 16, 0.1, 1.0);
}

TEST(PatchSampler, CutWithoutAugmentationIsASlice) {
  auto prepared = ramp_case(20, 24, 30, 3);
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  vmat::PatchPlan plan;
  plan.origin = {2, 5, 11};
  auto input = torch::empty({3, 16, 16, 16});
  auto dose = torch::empty({16, 16, 16});
  vmat::cut_patch(prepared, plan, options, input, dose);
  EXPECT_TRUE(torch::equal(input, prepared.input.slice(1, 2, 18).slice(2, 5, 21).slice(3, 11, 27)));
  EXPECT_TRUE(torch::equal(dose, prepared.dose.slice(0, 2, 18).slice(1, 5, 21).slice(2, 11, 27)));
}

TEST(PatchSampler, FlipReversesXAndSwapsFemurChannels) {
  auto prepared = ramp_case(16, 16, 16, 4);
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  options.left_right_pairs = {{2, 3}};
  vmat::PatchPlan plan;
  plan.flip_x = true;
  auto input = torch::empty({4, 16, 16, 16});
  auto dose = torch::empty({16, 16, 16});
  vmat::cut_patch(prepared, plan, options, input, dose);
  EXPECT_TRUE(torch::equal(input[0], prepared.input[0].flip({2})));
  EXPECT_TRUE(torch::equal(input[2], prepared.input[3].flip({2})));
  EXPECT_TRUE(torch::equal(input[3], prepared.input[2].flip({2})));
  EXPECT_TRUE(torch::equal(dose, prepared.dose.flip({2})));
}

TEST(PatchSampler, FlipSwapsEveryLeftRightPairAndOnlyUnderTheFlip) {
  auto prepared = ramp_case(16, 16, 16, 6);
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  options.left_right_pairs = {{1, 4}, {5, 2}};
  vmat::PatchPlan plan;
  plan.flip_x = true;
  auto input = torch::empty({6, 16, 16, 16});
  auto dose = torch::empty({16, 16, 16});
  vmat::cut_patch(prepared, plan, options, input, dose);
  const int64_t source[6] = {0, 4, 5, 3, 1, 2};
  for (int64_t c = 0; c < 6; ++c) EXPECT_TRUE(torch::equal(input[c], prepared.input[source[c]].flip({2}))) << "channel " << c;
  plan.flip_x = false;
  vmat::cut_patch(prepared, plan, options, input, dose);
  EXPECT_TRUE(torch::equal(input, prepared.input));
}

TEST(PatchSampler, TranslationMovesContentWithEdgeFill) {
  auto prepared = ramp_case(16, 16, 16, 1);
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  vmat::PatchPlan plan;
  plan.shift = {3, 0, -2};
  auto input = torch::empty({1, 16, 16, 16});
  auto dose = torch::empty({16, 16, 16});
  vmat::cut_patch(prepared, plan, options, input, dose);
  const auto& src = prepared.input[0];
  EXPECT_TRUE(torch::equal(input[0].slice(0, 3, 16).slice(2, 0, 14), src.slice(0, 0, 13).slice(2, 2, 16)));
  EXPECT_TRUE(torch::equal(input[0][0], input[0][3]));                   // edge fill on the low z side
  EXPECT_TRUE(torch::equal(input[0].select(2, 15), src.slice(0, 0, 13).select(2, 15).index({torch::tensor({0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})})));
}

TEST(PatchSampler, SmallCaseIsPaddedCtAirSdfOneDoseZero) {
  vmat::TrainingCase source;
  source.input = torch::full({2, 8, 16, 16}, 0.5f);
  source.dose = torch::full({8, 16, 16}, 0.9f);
  source.constraints = torch::zeros({13});
  const auto prepared = vmat::prepare_sampling_case(source, 16, 0.1, 1.0);
  ASSERT_EQ(prepared.input.sizes(), (std::vector<int64_t>{2, 16, 16, 16}));
  EXPECT_FLOAT_EQ(prepared.input[0][12][3][3].item<float>(), vmat::kAirCtValue);
  EXPECT_FLOAT_EQ(prepared.input[1][12][3][3].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(prepared.dose[12][3][3].item<float>(), 0.0f);
  EXPECT_EQ(prepared.hot_voxels.size(), 8u * 16 * 16);
}

TEST(PatchSampler, HotCentresHitHighDoseAndStayInside) {
  vmat::TrainingCase source;
  source.input = torch::zeros({1, 64, 64, 64});
  source.dose = torch::zeros({64, 64, 64});
  source.dose[50][10][60] = 1.0f;
  source.constraints = torch::zeros({13});
  std::vector<vmat::SamplingCase> cases{vmat::prepare_sampling_case(source, 16, 0.1, 1.0)};
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  options.patches_per_volume = 1;
  options.hot_probability = 1.0;
  options.augment = false;
  for (int64_t epoch = 0; epoch < 20; ++epoch) {
    const auto plan = vmat::plan_patch(cases, options, epoch, 0);
    EXPECT_EQ(plan.origin[0], 42);
    EXPECT_EQ(plan.origin[1], 2);
    EXPECT_EQ(plan.origin[2], 48);  // clamped: the centre 60 would put the window past the edge
  }
}

TEST(PatchSampler, BatchesDoNotDependOnWorkersAndRestartMidEpoch) {
  std::vector<vmat::SamplingCase> cases{ramp_case(20, 24, 30, 3), ramp_case(16, 16, 16, 3), ramp_case(33, 17, 20, 3)};
  auto shared = std::make_shared<const std::vector<vmat::SamplingCase>>(cases);
  vmat::PatchSamplerOptions options;
  options.patch = 16;
  options.patches_per_volume = 3;
  options.batch_size = 2;
  options.workers = 1;
  vmat::PatchLoader one(shared, options);
  options.workers = 3;
  vmat::PatchLoader three(shared, options);
  ASSERT_EQ(one.steps_per_epoch(), 5);
  one.start_epoch(4, 0);
  three.start_epoch(4, 2);
  std::vector<vmat::PatchBatch> all;
  for (int i = 0; i < 5; ++i) all.push_back(one.next());
  EXPECT_EQ(all[4].input.size(0), 1);
  for (int i = 2; i < 5; ++i) {
    auto batch = three.next();
    EXPECT_TRUE(torch::equal(batch.input, all[i].input));
    EXPECT_TRUE(torch::equal(batch.dose, all[i].dose));
    EXPECT_TRUE(torch::equal(batch.constraints, all[i].constraints));
  }
  one.start_epoch(5, 0);
  EXPECT_FALSE(torch::equal(one.next().input, all[0].input));  // another epoch draws other patches
}

}  // namespace
