// The gamma index on analytic cases (spec/gamma.md), and against a plain search written independently here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "vmat/error.h"
#include "vmat/gamma.h"

namespace {

using vmat::GammaGrid;
using vmat::GammaSettings;

GammaGrid grid(int64_t nz, int64_t ny, int64_t nx, double spacing = 1.0, std::array<double, 3> origin = {0, 0, 0}) {
  GammaGrid g;
  g.shape = {nz, ny, nx};
  g.spacing_mm = {spacing, spacing, spacing};
  g.origin_mm = origin;
  return g;
}

// A smooth dose: a broad Gaussian of peak `peak` Gy centred in the volume (sigma in mm).
at::Tensor gaussian(const GammaGrid& g, double peak, double sigma) {
  auto dose = torch::empty({g.shape[0], g.shape[1], g.shape[2]}, torch::kFloat);
  auto a = dose.accessor<float, 3>();
  const double c[3] = {g.origin_mm[0] + (g.shape[0] - 1) * g.spacing_mm[0] / 2, g.origin_mm[1] + (g.shape[1] - 1) * g.spacing_mm[1] / 2,
                       g.origin_mm[2] + (g.shape[2] - 1) * g.spacing_mm[2] / 2};
  for (int64_t z = 0; z < g.shape[0]; ++z)
    for (int64_t y = 0; y < g.shape[1]; ++y)
      for (int64_t x = 0; x < g.shape[2]; ++x) {
        const double dz = g.origin_mm[0] + z * g.spacing_mm[0] - c[0];
        const double dy = g.origin_mm[1] + y * g.spacing_mm[1] - c[1];
        const double dx = g.origin_mm[2] + x * g.spacing_mm[2] - c[2];
        a[z][y][x] = static_cast<float>(peak * std::exp(-(dz * dz + dy * dy + dx * dx) / (2 * sigma * sigma)));
      }
  return dose;
}

// Γ by the definition, without any shortcut: every sphere, every point, independent interpolation.
at::Tensor plain_gamma(const at::Tensor& reference, const GammaGrid& rg, const at::Tensor& evaluated, const GammaGrid& eg,
                       const GammaSettings& s) {
  const double norm = reference.max().item<double>();
  const double cutoff = s.cutoff_percent / 100 * norm;
  auto out = torch::full(reference.sizes(), std::numeric_limits<float>::quiet_NaN());
  auto r = reference.accessor<float, 3>();
  auto e = evaluated.accessor<float, 3>();
  auto o = out.accessor<float, 3>();
  const auto spheres = vmat::gamma_search_spheres(s);
  auto sample = [&](double p0, double p1, double p2) {
    const double p[3] = {p0, p1, p2};
    double f[3];
    int64_t i[3];
    for (int a = 0; a < 3; ++a) {
      const double t = (p[a] - eg.origin_mm[a]) / eg.spacing_mm[a];
      if (t < -1e-12 || t > eg.shape[a] - 1 + 1e-12) return std::numeric_limits<double>::infinity();
      i[a] = std::min<int64_t>(std::max<int64_t>(static_cast<int64_t>(std::floor(t)), 0), eg.shape[a] - 2);
      f[a] = t - i[a];
    }
    double value = 0;
    for (int c = 0; c < 8; ++c) {
      double w = 1;
      int64_t j[3];
      for (int a = 0; a < 3; ++a) {
        const int bit = (c >> a) & 1;
        j[a] = i[a] + bit;
        w *= bit ? f[a] : 1 - f[a];
      }
      value += w * e[j[0]][j[1]][j[2]];
    }
    return value;
  };
  for (int64_t z = 0; z < rg.shape[0]; ++z)
    for (int64_t y = 0; y < rg.shape[1]; ++y)
      for (int64_t x = 0; x < rg.shape[2]; ++x) {
        const double R = r[z][y][x];
        if (R < cutoff) continue;
        const double n = s.local ? R : norm;
        const double c[3] = {rg.origin_mm[0] + z * rg.spacing_mm[0], rg.origin_mm[1] + y * rg.spacing_mm[1], rg.origin_mm[2] + x * rg.spacing_mm[2]};
        double gamma = std::numeric_limits<double>::infinity();
        for (const auto& sphere : spheres) {
          double best = std::numeric_limits<double>::infinity();
          for (const auto& p : sphere.points) best = std::min(best, std::fabs(sample(c[0] + p[0], c[1] + p[1], c[2] + p[2]) - R) / n);
          gamma = std::min(gamma, std::hypot(best / (s.dose_percent / 100), sphere.distance_mm / s.dta_mm));
          if (gamma <= sphere.distance_mm / s.dta_mm) break;
        }
        if (std::isfinite(gamma)) o[z][y][x] = static_cast<float>(std::min(gamma, s.max_gamma));
      }
  return out;
}

TEST(GammaSpheres, DistancesAccumulateAsPymedphys) {
  GammaSettings s;  // 3 mm, interp 10, max gamma 2
  auto spheres = vmat::gamma_search_spheres(s);
  ASSERT_EQ(spheres.size(), 22u);
  EXPECT_EQ(spheres[0].distance_mm, 0.0);
  EXPECT_EQ(spheres[0].points.size(), 1u);
  // The shell at DTA is searched twice: once reached by addition, once forced onto DTA.
  EXPECT_EQ(spheres[10].distance_mm, 2.9999999999999996);
  EXPECT_EQ(spheres[11].distance_mm, 3.0);
  EXPECT_EQ(spheres.back().distance_mm, 5.999999999999998);

  s.dta_mm = 2.0;
  spheres = vmat::gamma_search_spheres(s);
  ASSERT_EQ(spheres.size(), 21u);
  // Twenty additions of 0.2 overshoot 4 mm: the last shell is 3.8 mm, not 4.
  EXPECT_NEAR(spheres.back().distance_mm, 3.8, 1e-12);
  EXPECT_EQ(spheres[11].distance_mm, 2.0);
}

TEST(GammaSpheres, PointSetsFollowTheRowFormula) {
  GammaSettings s;
  for (const auto& sphere : vmat::gamma_search_spheres(s)) {
    if (sphere.distance_mm == 0) continue;
    const double step = sphere.step_mm;
    const auto rows = static_cast<size_t>(std::ceil(M_PI * sphere.distance_mm / step)) + 1;
    ASSERT_EQ(sphere.row_sizes.size(), rows);
    size_t total = 0;
    for (size_t i = 0; i < rows; ++i) {
      const double polar = i + 1 == rows ? M_PI : i * (M_PI / (rows - 1));
      EXPECT_EQ(sphere.row_sizes[i], std::ceil(2 * M_PI * (sphere.distance_mm * std::sin(polar)) / step) + 1);
      total += sphere.row_sizes[i];
    }
    ASSERT_EQ(sphere.points.size(), total);
    for (const auto& p : sphere.points) EXPECT_NEAR(std::hypot(p[0], p[1], p[2]), sphere.distance_mm, 1e-12);
  }
}

TEST(Gamma, IdenticalDosesPassEverywhereWithZeroGamma) {
  const auto g = grid(12, 14, 16, 2.0);
  const auto dose = gaussian(g, 70, 8);
  const auto result = vmat::gamma_index(dose, g, dose, g, GammaSettings{});
  EXPECT_EQ(result.summary.pass_rate_pct, 100.0);
  EXPECT_GT(result.summary.n_evaluated, 100);
  EXPECT_EQ(result.summary.n_passed, result.summary.n_evaluated);
  const auto gamma = result.gamma;
  const auto evaluated = ~torch::isnan(gamma);
  EXPECT_EQ(gamma.masked_select(evaluated).abs().max().item<float>(), 0.0f);
  // Exactly the points at or above 10 % of the maximum are evaluated.
  EXPECT_EQ(evaluated.sum().item<int64_t>(), (dose >= 0.1 * dose.max().item<double>()).sum().item<int64_t>());
  EXPECT_EQ(result.normalisation_gy, dose.max().item<double>());
}

TEST(Gamma, PureShiftStaysWithinShiftOverDta) {
  // Linear along x (trilinear interpolation is exact there), smooth in z and y; the evaluated dose is the
  // reference moved 1.5 mm along +x, a distance the search reaches exactly.
  const auto g = grid(8, 10, 24, 1.0);
  auto reference = torch::empty({8, 10, 24});
  auto evaluated = torch::empty({8, 10, 24});
  auto r = reference.accessor<float, 3>();
  auto e = evaluated.accessor<float, 3>();
  for (int z = 0; z < 8; ++z)
    for (int y = 0; y < 10; ++y)
      for (int x = 0; x < 24; ++x) {
        const double base = 40 + 10 * std::exp(-((z - 3.5) * (z - 3.5) + (y - 4.5) * (y - 4.5)) / 18.0);
        r[z][y][x] = static_cast<float>(base + 1.0 * x);
        e[z][y][x] = static_cast<float>(base + 1.0 * (x - 1.5));
      }
  const auto result = vmat::gamma_index(reference, g, evaluated, g, GammaSettings{});
  auto gamma = result.gamma.accessor<float, 3>();
  for (int z = 0; z < 8; ++z)
    for (int y = 0; y < 10; ++y)
      for (int x = 0; x + 1.5 <= 23; ++x) EXPECT_LE(gamma[z][y][x], 0.5f + 1e-6f) << z << "," << y << "," << x;
  EXPECT_EQ(result.summary.pass_rate_pct, 100.0);
}

TEST(Gamma, UniformScaleGivesItsPercentageAtTheMaximum) {
  // A flat top of 10 mm radius with smooth shoulders: around the maximum, no nearby point of the scaled dose is
  // closer to R(max) than the point itself, so Γ(max) = x / dose%. (On a pointed peak, trilinear interpolation
  // lowers the dose linearly with distance and nearby points would win.)
  const auto g = grid(15, 15, 15, 2.0);
  auto reference = torch::empty({15, 15, 15});
  auto r = reference.accessor<float, 3>();
  for (int z = 0; z < 15; ++z)
    for (int y = 0; y < 15; ++y)
      for (int x = 0; x < 15; ++x) {
        const double radius = 2 * std::sqrt((z - 7.0) * (z - 7.0) + (y - 7.0) * (y - 7.0) + (x - 7.0) * (x - 7.0));
        const double shoulder = std::max(0.0, radius - 10);
        r[z][y][x] = static_cast<float>(60 * std::exp(-shoulder * shoulder / 200));
      }
  for (const double percent : {1.0, 2.0, 4.5}) {
    const auto evaluated = reference * (1 + percent / 100);
    const auto result = vmat::gamma_index(reference, g, evaluated, g, GammaSettings{});
    const auto at_max = result.gamma[7][7][7].item<float>();
    EXPECT_NEAR(at_max, percent / 3.0, 1e-5) << percent;
  }
  // Beyond max_gamma it is clipped: 9 % / 3 % = 3 > 2.
  const auto result = vmat::gamma_index(reference, g, reference * 1.09, g, GammaSettings{});
  EXPECT_EQ(result.gamma[7][7][7].item<float>(), 2.0f);
}

TEST(Gamma, OutsideTheEvaluatedGridIsInfinityAndBoundaryPlanesAreInside) {
  // Uniform doses; the evaluated grid covers x in [0, 4] mm, the reference x in [0, 19] mm.
  const auto ref_grid = grid(3, 3, 20, 1.0);
  const auto eval_grid = grid(3, 3, 5, 1.0);
  const auto reference = torch::full({3, 3, 20}, 10.0f);
  const auto evaluated = torch::full({3, 3, 5}, 10.0f);
  const auto result = vmat::gamma_index(reference, ref_grid, evaluated, eval_grid, GammaSettings{});
  auto gamma = result.gamma.accessor<float, 3>();
  for (int x = 0; x < 20; ++x) {
    if (x <= 4) {
      EXPECT_EQ(gamma[1][1][x], 0.0f) << x;  // x = 4 lies on the boundary plane: inside
    } else if (x < 10) {
      // The dose agrees; only the distance to the nearest inside point counts.
      EXPECT_GE(gamma[1][1][x], (x - 4) / 3.0 - 1e-6) << x;
      EXPECT_LE(gamma[1][1][x], (x - 4 + 0.3) / 3.0 + 1e-6) << x;
    } else {
      // Beyond DTA · max_gamma (x = 10 needs 6 mm; the last shell is 5.999999999999998 mm): not evaluated.
      EXPECT_TRUE(std::isnan(gamma[1][1][x])) << x;
    }
  }
  EXPECT_EQ(result.summary.n_evaluated, 3 * 3 * 10);
}

TEST(Gamma, TheDta2mmSearchStopsAt3_8mm) {
  GammaSettings s;
  s.dta_mm = 2.0;
  // Uniform doses; the evaluated grid covers x in [-1, 0] mm, the reference points sit at x = 3.75 and 3.85 mm.
  const auto eval_grid = grid(3, 3, 2, 1.0, {-1, -1, -1});
  const auto ref_grid = grid(1, 1, 2, 0.1, {0, 0, 3.75});
  const auto reference = torch::full({1, 1, 2}, 5.0f);
  const auto evaluated = torch::full({3, 3, 2}, 5.0f);
  const auto result = vmat::gamma_index(reference, ref_grid, evaluated, eval_grid, s);
  auto gamma = result.gamma.accessor<float, 3>();
  EXPECT_NEAR(gamma[0][0][0], 3.8000000000000016 / 2.0, 1e-6);  // 3.75 mm away: found on the 3.8 mm shell
  EXPECT_TRUE(std::isnan(gamma[0][0][1]));                       // 3.85 mm: beyond the last shell, although < 4
  EXPECT_EQ(result.summary.n_evaluated, 1);
}

TEST(Gamma, LocalDividesByTheReferenceAtThePoint) {
  const auto g = grid(16, 16, 16, 1.0);
  auto reference = torch::full({16, 16, 16}, 10.0f);
  reference[0][0][0] = 50.0f;  // sets the global normalisation
  auto evaluated = reference * 1.03;
  GammaSettings s;
  const auto global = vmat::gamma_index(reference, g, evaluated, g, s);
  s.local = true;
  const auto local = vmat::gamma_index(reference, g, evaluated, g, s);
  // Far from the hot voxel: 0.3 Gy of difference is 3 % locally and 0.6 % of 50 Gy globally.
  EXPECT_NEAR(global.gamma[12][12][12].item<float>(), 0.2, 1e-5);
  EXPECT_NEAR(local.gamma[12][12][12].item<float>(), 1.0, 1e-5);
  // The cutoff stays 10 % of the global normalisation in local mode: every voxel (10 Gy >= 5 Gy) is evaluated.
  EXPECT_EQ(local.summary.n_evaluated, 16 * 16 * 16);
}

TEST(Gamma, CutoffIsInclusiveAndFollowsTheNormalisation) {
  const auto g = grid(1, 1, 4, 1.0);
  const auto reference = torch::tensor({10.0f, 9.99f, 20.0f, 100.0f}).reshape({1, 1, 4});
  GammaSettings s;
  s.normalisation_gy = 100;
  const auto result = vmat::gamma_index(reference, g, reference, g, s);
  EXPECT_EQ(result.cutoff_gy, 10.0);
  EXPECT_EQ(result.gamma[0][0][0].item<float>(), 0.0f);  // exactly at the cutoff: evaluated
  EXPECT_TRUE(std::isnan(result.gamma[0][0][1].item<float>()));
  EXPECT_EQ(result.summary.n_evaluated, 3);
  s.normalisation_gy = 200;  // the cutoff follows --norm: 20 Gy
  EXPECT_EQ(vmat::gamma_index(reference, g, reference, g, s).summary.n_evaluated, 2);
}

TEST(Gamma, LargeDifferencesClipToMaxGamma) {
  const auto g = grid(6, 6, 6, 1.0);
  const auto reference = torch::full({6, 6, 6}, 10.0f);
  const auto evaluated = torch::full({6, 6, 6}, 20.0f);
  const auto result = vmat::gamma_index(reference, g, evaluated, g, GammaSettings{});
  EXPECT_EQ(result.gamma.max().item<float>(), 2.0f);
  EXPECT_EQ(result.gamma.min().item<float>(), 2.0f);
  EXPECT_EQ(result.summary.pass_rate_pct, 0.0);
  EXPECT_EQ(result.summary.mean_gamma, 2.0);  // clipped values count in the mean
}

TEST(Gamma, MatchesThePlainSearchOnDifferentGrids) {
  torch::manual_seed(3);
  const auto rg = grid(10, 12, 11, 2.5, {-3.0, 1.0, 0.5});
  auto eg = grid(13, 11, 14, 2.0, {-4.0, 0.0, -1.0});
  eg.spacing_mm = {2.0, 2.5, 1.5};
  // A smooth field with a hot spot, and an evaluated dose that differs by a few percent and a little blur.
  const auto reference = gaussian(rg, 70, 9) + 3 * torch::rand({10, 12, 11});
  const auto evaluated = gaussian(eg, 68, 10) + 3 * torch::rand({13, 11, 14});
  for (const bool local : {false, true}) {
    GammaSettings s;
    s.local = local;
    s.dose_percent = 2;
    s.dta_mm = 2;
    const auto fast = vmat::gamma_index(reference, rg, evaluated, eg, s).gamma;
    const auto plain = plain_gamma(reference, rg, evaluated, eg, s);
    ASSERT_TRUE(torch::equal(torch::isnan(fast), torch::isnan(plain)));
    const auto both = ~torch::isnan(plain);
    EXPECT_LT((fast - plain).abs().masked_select(both).max().item<float>(), 1e-5) << "local " << local;
    EXPECT_GT(both.sum().item<int64_t>(), 200);
  }
}

TEST(Gamma, ThreadCountDoesNotChangeTheResult) {
  torch::manual_seed(5);
  const auto g = grid(16, 16, 16, 2.0);
  const auto reference = gaussian(g, 70, 8);
  const auto evaluated = reference * (1 + 0.05 * torch::randn({16, 16, 16}));
  vmat::GammaHooks one, three;
  one.threads = 1;
  three.threads = 3;
  const auto a = vmat::gamma_index(reference, g, evaluated, g, GammaSettings{}, "cpu", one).gamma;
  const auto b = vmat::gamma_index(reference, g, evaluated, g, GammaSettings{}, "cpu", three).gamma;
  EXPECT_TRUE(torch::equal(torch::isnan(a), torch::isnan(b)));
  EXPECT_TRUE(torch::equal(torch::nan_to_num(a, -1), torch::nan_to_num(b, -1)));
}

TEST(Gamma, RejectsBadInput) {
  const auto g = grid(4, 4, 4);
  const auto dose = torch::ones({4, 4, 4});
  GammaSettings bad;
  bad.dta_mm = 0;
  EXPECT_THROW(vmat::gamma_index(dose, g, dose, g, bad), vmat::Error);
  auto nan_dose = dose.clone();
  nan_dose[1][1][1] = std::nanf("");
  EXPECT_THROW(vmat::gamma_index(dose, g, nan_dose, g, GammaSettings{}), vmat::Error);
  EXPECT_THROW(vmat::gamma_index(dose, grid(4, 4, 5), dose, g, GammaSettings{}), vmat::Error);
  auto zero_spacing = g;
  zero_spacing.spacing_mm[1] = 0;
  EXPECT_THROW(vmat::gamma_index(dose, zero_spacing, dose, g, GammaSettings{}), vmat::Error);
  EXPECT_THROW(vmat::gamma_index(torch::zeros({4, 4, 4}), g, dose, g, GammaSettings{}), vmat::Error);
}

TEST(Gamma, SummaryCountsMeanAndMedian) {
  const float nan = std::nanf("");
  const float values[] = {0.5f, nan, 1.0f, 1.5f, 2.0f, nan};
  const auto s = vmat::summarise_gamma(values, 6);
  EXPECT_EQ(s.n_evaluated, 4);
  EXPECT_EQ(s.n_passed, 2);  // Γ <= 1 passes
  EXPECT_DOUBLE_EQ(s.pass_rate_pct, 50.0);
  EXPECT_DOUBLE_EQ(s.mean_gamma, 1.25);
  EXPECT_DOUBLE_EQ(s.median_gamma, 1.25);
}

}  // namespace

// The summary against a plain sort: NumPy's median (mean of the two middle values for an even count), NaN skipped.
TEST(GammaSummary, MatchesASortedReference) {
  std::mt19937 random(5);
  std::uniform_real_distribution<float> uniform(0.f, 2.f);
  const std::vector<std::vector<float>> fixed = {
      {0.5f}, {1.f, 0.f}, {0.f, 0.f, 0.f, 0.f}, {INFINITY, 0.25f, NAN, 1.f}, {2.f, -0.f, 0.f, 1e-30f, 1.f, 1.5f},
      {NAN, NAN, 0.75f}};
  std::vector<std::vector<float>> cases = fixed;
  for (const int64_t size : {1001, 1000, 70000}) {
    std::vector<float> values(static_cast<size_t>(size));
    for (auto& value : values) {
      const float u = uniform(random);
      value = u < 0.3f ? NAN : u < 0.4f ? 0.f : u < 0.5f ? 1.f : u;  // NaNs, ties at 0 and 1, spread values
    }
    cases.push_back(values);
  }
  for (const auto& values : cases) {
    std::vector<float> valid;
    for (const float value : values) {
      if (!std::isnan(value)) valid.push_back(value);
    }
    std::sort(valid.begin(), valid.end());
    const size_t n = valid.size();
    const double median = n % 2 ? valid[n / 2] : (static_cast<double>(valid[n / 2 - 1]) + valid[n / 2]) / 2.0;
    const auto summary = vmat::summarise_gamma(values.data(), static_cast<int64_t>(values.size()));
    EXPECT_EQ(summary.n_evaluated, static_cast<int64_t>(n));
    EXPECT_EQ(summary.n_passed, std::count_if(valid.begin(), valid.end(), [](float v) { return v <= 1.f; }));
    EXPECT_EQ(summary.median_gamma, median) << "of " << n << " values";
  }
  const std::vector<float> none = {NAN, NAN};
  EXPECT_TRUE(std::isnan(vmat::summarise_gamma(none.data(), 2).median_gamma));
}
