#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "vmat/error.h"
#include "vmat/synth.h"

namespace {

// The same physical field of view as the default cohort (240 x 256 x 256 mm) on a coarse grid: fast, and the anatomy
// is not scaled down, so the dose statistics mean what they mean for the default grid.
constexpr std::array<int64_t, 3> kShape{48, 64, 64};
constexpr std::array<double, 3> kSpacing{5.0, 4.0, 4.0};

enum Channel { PTV70, PTV56, Prostate, Rectum, Bladder, FemurL, FemurR, Bowel };

struct View {
  const vmat::SynthCase& c;
  int64_t n() const { return c.shape[0] * c.shape[1] * c.shape[2]; }
  const uint8_t* mask(int channel) const { return c.masks.data_ptr<uint8_t>() + channel * n(); }
  const float* dose() const { return c.dose.data_ptr<float>(); }
  std::vector<double> dose_in(int channel) const {
    std::vector<double> values;
    for (int64_t i = 0; i < n(); ++i)
      if (mask(channel)[i]) values.push_back(dose()[i]);
    return values;
  }
  // Centroid (z, y, x) in mm of a structure.
  std::array<double, 3> centroid(int channel) const {
    std::array<double, 3> sum{0, 0, 0};
    int64_t count = 0;
    for (int64_t z = 0; z < c.shape[0]; ++z)
      for (int64_t y = 0; y < c.shape[1]; ++y)
        for (int64_t x = 0; x < c.shape[2]; ++x)
          if (mask(channel)[(z * c.shape[1] + y) * c.shape[2] + x]) {
            sum[0] += z * c.spacing_mm[0], sum[1] += y * c.spacing_mm[1], sum[2] += x * c.spacing_mm[2];
            ++count;
          }
    for (double& s : sum) s /= std::max<int64_t>(count, 1);
    return sum;
  }
};

// Dose received by at least `fraction` of the values, computed by sorting (independent of the generator's code).
double covering(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(std::floor((1 - fraction) * (values.size() - 1)))];
}

TEST(Synth, IsDeterministicPerSeedAndIndexWhateverTheThreadCount) {
  at::set_num_threads(1);
  const auto a = vmat::generate_synth_case(7, 3, {24, 32, 32}, {5, 4, 4});
  at::set_num_threads(2);
  const auto b = vmat::generate_synth_case(7, 3, {24, 32, 32}, {5, 4, 4});
  const auto other_index = vmat::generate_synth_case(7, 4, {24, 32, 32}, {5, 4, 4});
  const auto other_seed = vmat::generate_synth_case(8, 3, {24, 32, 32}, {5, 4, 4});
  EXPECT_EQ(a.case_id, "synth_003");
  for (auto [x, y] : {std::pair{a.ct, b.ct}, {a.dose, b.dose}, {a.masks, b.masks}, {a.body, b.body}, {a.constraints, b.constraints}}) {
    ASSERT_EQ(x.nbytes(), y.nbytes());
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0);
  }
  EXPECT_NE(std::memcmp(a.ct.data_ptr(), other_index.ct.data_ptr(), a.ct.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.ct.data_ptr(), other_seed.ct.data_ptr(), a.ct.nbytes()), 0);
}

TEST(Synth, HasTheContractsShapesAndTypes) {
  const auto c = vmat::generate_synth_case(42, 0, {20, 24, 28}, {5, 4.5, 4});
  EXPECT_EQ(c.ct.sizes(), (std::vector<int64_t>{20, 24, 28}));
  EXPECT_EQ(c.ct.scalar_type(), at::kShort);
  EXPECT_EQ(c.dose.scalar_type(), at::kFloat);
  EXPECT_EQ(c.masks.sizes(), (std::vector<int64_t>{8, 20, 24, 28}));
  EXPECT_EQ(c.masks.scalar_type(), at::kByte);
  EXPECT_EQ(c.body.scalar_type(), at::kByte);
  EXPECT_EQ(c.constraints.sizes(), (std::vector<int64_t>{13}));
  EXPECT_EQ(c.structures, (std::vector<std::string>{"PTV70", "PTV56", "Prostate", "Rectum", "Bladder", "Femur_L", "Femur_R", "Bowel"}));
  EXPECT_LE(c.masks.max().item<int>(), 1);
}

TEST(Synth, RejectsBadGrids) {
  EXPECT_THROW(vmat::generate_synth_case(1, 0, {8, 64, 64}, {2.5, 2, 2}), vmat::Error);
  EXPECT_THROW(vmat::generate_synth_case(1, 0, {32, 64, 64}, {2.5, 0, 2}), vmat::Error);
  EXPECT_THROW(vmat::generate_synth_case(1, 0, {32, 64, 64}, {2.5, NAN, 2}), vmat::Error);
  EXPECT_THROW(vmat::generate_synth_case(1, -1, {32, 64, 64}, {2.5, 2, 2}), vmat::Error);
}

class SynthSeeds : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SynthSeeds, AnatomyIsConsistent) {
  const auto c = vmat::generate_synth_case(GetParam(), 1, kShape, kSpacing);
  const View v{c};
  const uint8_t* body = c.body.data_ptr<uint8_t>();
  const int16_t* ct = c.ct.data_ptr<int16_t>();
  int64_t counts[8] = {0};
  for (int64_t i = 0; i < v.n(); ++i) {
    for (int s = 0; s < 8; ++s) counts[s] += v.mask(s)[i];
    EXPECT_TRUE(!v.mask(PTV70)[i] || v.mask(PTV56)[i]) << "PTV70 must lie inside PTV56";
    EXPECT_TRUE(!v.mask(Prostate)[i] || v.mask(PTV70)[i]) << "the prostate must lie inside PTV70";
    EXPECT_TRUE(!v.mask(PTV56)[i] || body[i]) << "targets must lie inside the body";
    if (!body[i]) {
      EXPECT_LE(ct[i], -950);
      EXPECT_EQ(v.dose()[i], 0.f);
    }
  }
  for (int s = 0; s < 8; ++s) EXPECT_GT(counts[s], 0) << c.structures[s] << " is empty";
  EXPECT_GT(counts[PTV56], counts[PTV70]);
  // LPS: x grows to the patient's left, y to posterior, z to superior.
  const auto prostate = v.centroid(Prostate);
  EXPECT_GT(v.centroid(FemurL)[2], prostate[2] + 40);
  EXPECT_LT(v.centroid(FemurR)[2], prostate[2] - 40);
  EXPECT_GT(v.centroid(Rectum)[1], prostate[1]);
  EXPECT_GT(v.centroid(Bladder)[0], prostate[0]);
  EXPECT_GT(v.centroid(Bowel)[0], v.centroid(Bladder)[0]);
  // CT: soft tissue in the prostate, bone in the femoral heads, fat under the skin.
  double prostate_hu = 0, femur_hu = 0;
  for (int64_t i = 0; i < v.n(); ++i) {
    if (v.mask(Prostate)[i]) prostate_hu += ct[i];
    if (v.mask(FemurL)[i]) femur_hu += ct[i];
  }
  EXPECT_NEAR(prostate_hu / counts[Prostate], 40, 25);
  EXPECT_GT(femur_hu / counts[FemurL], 500);
  const int64_t mid = (c.shape[0] / 2 * c.shape[1] + c.shape[1] / 2) * c.shape[2];
  int64_t edge = 0;
  while (!body[mid + edge]) ++edge;  // first body voxel on the mid row, from the right side of the patient
  EXPECT_LT(ct[mid + edge + 1], -40) << "expected the subcutaneous fat layer";
}

TEST_P(SynthSeeds, DoseLooksLikeAnSibPlan) {
  const auto c = vmat::generate_synth_case(GetParam(), 2, kShape, kSpacing);
  const View v{c};
  const double d95_70 = covering(v.dose_in(PTV70), 0.95);
  const double d95_56 = covering(v.dose_in(PTV56), 0.95);
  const double dmax = c.dose.max().item<double>();
  EXPECT_NEAR(d95_70, 70, 3.5);
  EXPECT_LE(dmax, 1.07 * 70);
  EXPECT_GE(d95_56, 53);
  // The SIB: the part of PTV56 outside PTV70 sits well below the boost.
  std::vector<double> ring;
  for (int64_t i = 0; i < v.n(); ++i)
    if (v.mask(PTV56)[i] && !v.mask(PTV70)[i]) ring.push_back(v.dose()[i]);
  EXPECT_LT(covering(ring, 0.5), 66);

  // Low dose far from the targets: body voxels more than 60 mm from every PTV56 voxel get little.
  const auto& s = c.spacing_mm;
  std::vector<std::array<double, 3>> target;
  for (int64_t z = 0; z < c.shape[0]; ++z)
    for (int64_t y = 0; y < c.shape[1]; ++y)
      for (int64_t x = 0; x < c.shape[2]; ++x)
        if (v.mask(PTV56)[(z * c.shape[1] + y) * c.shape[2] + x]) target.push_back({z * s[0], y * s[1], x * s[2]});
  const uint8_t* body = c.body.data_ptr<uint8_t>();
  double far_sum = 0;
  int64_t far_count = 0;
  for (int64_t z = 0; z < c.shape[0]; z += 2)
    for (int64_t y = 0; y < c.shape[1]; y += 2)
      for (int64_t x = 0; x < c.shape[2]; x += 2) {
        const int64_t i = (z * c.shape[1] + y) * c.shape[2] + x;
        if (!body[i]) continue;
        double nearest = 1e9;
        for (const auto& t : target)
          nearest = std::min(nearest, std::hypot(z * s[0] - t[0], y * s[1] - t[1], x * s[2] - t[2]));
        if (nearest > 60) far_sum += v.dose()[i], ++far_count;
      }
  ASSERT_GT(far_count, 100);
  EXPECT_LT(far_sum / far_count, 0.15 * 70);

  // Fall-off: from the in-plane edge of PTV56 (a target voxel next to a non-target voxel) two voxels outwards, the
  // dose drops by several % of 70 Gy per mm.
  double drop_sum = 0;
  int64_t edges = 0;
  for (int64_t z = 0; z < c.shape[0]; ++z)
    for (int64_t y = 2; y + 2 < c.shape[1]; ++y)
      for (int64_t x = 2; x + 2 < c.shape[2]; ++x) {
        const int64_t i = (z * c.shape[1] + y) * c.shape[2] + x;
        for (const int64_t step : {int64_t{1}, int64_t{-1}, c.shape[2], -c.shape[2]}) {
          if (v.mask(PTV56)[i] && !v.mask(PTV56)[i + step]) {
            const double mm = (step == 1 || step == -1) ? s[2] : s[1];
            drop_sum += (v.dose()[i] - v.dose()[i + 2 * step]) / (2 * mm) / 70 * 100;
            ++edges;
          }
        }
      }
  ASSERT_GT(edges, 50);
  EXPECT_GT(drop_sum / edges, 2.5) << "% of 70 Gy per mm at the PTV56 edge";

  // Achieved constraint values agree with the dose.
  const float* k = c.constraints.data_ptr<float>();
  EXPECT_FLOAT_EQ(k[0], 1.0f);
  EXPECT_FLOAT_EQ(k[1], 0.8f);
  EXPECT_FLOAT_EQ(k[2], 0.0f);
  EXPECT_FLOAT_EQ(k[12], static_cast<float>(45.0 / 70.0));
  const auto rectum = v.dose_in(Rectum);
  const double rectum_v50 = std::count_if(rectum.begin(), rectum.end(), [](double d) { return d >= 50; }) / double(rectum.size());
  EXPECT_NEAR(k[3], rectum_v50, 1e-6);
  EXPECT_NEAR(k[6], *std::max_element(rectum.begin(), rectum.end()) / 70, 1e-6);
  EXPECT_GE(k[3], k[4]);
  EXPECT_GE(k[4], k[5]);
  EXPECT_GE(k[7], k[8]);
  EXPECT_GE(k[8], k[9]);
  std::printf("seed %llu: D95(PTV70) %.2f Gy, Dmax %.2f Gy (%.1f%%), D95(PTV56) %.2f Gy, far mean %.2f Gy, edge %.2f %%/mm\n",
              static_cast<unsigned long long>(GetParam()), d95_70, dmax, dmax / 0.7, d95_56, far_sum / far_count,
              drop_sum / edges);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SynthSeeds, ::testing::Values(1, 42, 2026, 99991));

}  // namespace
