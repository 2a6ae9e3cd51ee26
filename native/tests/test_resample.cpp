#include <gtest/gtest.h>

#include <cmath>

#include "vmat/error.h"
#include "vmat/resample.h"

namespace {

vmat::GridPlacement axis_grid(std::array<double, 3> origin, std::array<double, 3> spacing, std::array<int64_t, 3> shape) {
  vmat::GridPlacement grid;
  grid.origin = origin;
  grid.shape = shape;
  for (int a = 0; a < 3; ++a) grid.step[a][a] = spacing[a];
  return grid;
}

std::array<double, 3> centre(const vmat::GridPlacement& grid, int64_t k, int64_t j, int64_t i) {
  std::array<double, 3> p = grid.origin;
  for (int r = 0; r < 3; ++r) p[r] += k * grid.step[0][r] + j * grid.step[1][r] + i * grid.step[2][r];
  return p;
}

// An affine function of the position: trilinear interpolation reproduces it exactly on any grid.
double affine(const std::array<double, 3>& p) { return 3.0 + 0.5 * p[0] - 0.25 * p[1] + 0.125 * p[2]; }

at::Tensor sample(const vmat::GridPlacement& grid, double (*f)(const std::array<double, 3>&)) {
  at::Tensor t = at::empty({grid.shape[0], grid.shape[1], grid.shape[2]}, at::kFloat);
  auto a = t.accessor<float, 3>();
  for (int64_t k = 0; k < grid.shape[0]; ++k)
    for (int64_t j = 0; j < grid.shape[1]; ++j)
      for (int64_t i = 0; i < grid.shape[2]; ++i) a[k][j][i] = static_cast<float>(f(centre(grid, k, j, i)));
  return t;
}

}  // namespace

TEST(Resample, SameGridIsACopy) {
  auto grid = axis_grid({-10, 4, 7}, {2.5, 1.5, 1.0}, {5, 6, 7});
  auto source = at::rand({5, 6, 7});
  auto out = vmat::resample_trilinear(source, grid, grid, -1.0f);
  EXPECT_TRUE(at::allclose(out, source, 0, 1e-6));
}

// A rotated, offset, finer target inside a coarse source: exact for an affine dose, and the outside value beyond it.
TEST(Resample, ObliqueTargetIsExactForAnAffineDoseAndMarksOutside) {
  auto from = axis_grid({0, 0, 0}, {3, 2, 2.5}, {10, 12, 11});
  vmat::GridPlacement to;
  to.origin = {4, 3, 2};
  to.shape = {9, 10, 12};
  const double c = std::cos(0.4), s = std::sin(0.4);
  to.step = {{{1.5, 0, 0}, {0, 1.2 * c, 1.2 * s}, {0, -1.1 * s, 1.1 * c}}};
  auto out = vmat::resample_trilinear(sample(from, affine), from, to, -7.0f);
  auto a = out.accessor<float, 3>();
  int64_t inside = 0, outside = 0;
  for (int64_t k = 0; k < 9; ++k)
    for (int64_t j = 0; j < 10; ++j)
      for (int64_t i = 0; i < 12; ++i) {
        auto p = centre(to, k, j, i);
        const bool in = p[0] >= 0 && p[0] <= 27 && p[1] >= 0 && p[1] <= 22 && p[2] >= 0 && p[2] <= 25;
        if (in) {
          ASSERT_NEAR(a[k][j][i], affine(p), 1e-4) << k << "," << j << "," << i;
          ++inside;
        } else {
          ASSERT_EQ(a[k][j][i], -7.0f);
          ++outside;
        }
      }
  EXPECT_GT(inside, 100);
  EXPECT_GT(outside, 10);
}

// Trilinear, not nearest: halfway between two voxels is their mean, a quarter of the way is weighted 3:1.
TEST(Resample, InterpolatesLinearlyBetweenVoxels) {
  auto from = axis_grid({0, 0, 0}, {1, 1, 2}, {1, 1, 2});
  auto source = at::tensor({10.0f, 30.0f}).reshape({1, 1, 2});
  auto to = axis_grid({0, 0, 0}, {1, 1, 0.5}, {1, 1, 5});
  auto out = vmat::resample_trilinear(source, from, to, 0.0f);
  auto a = out.accessor<float, 3>();
  const float want[5] = {10, 15, 20, 25, 30};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(a[0][0][i], want[i], 1e-5);
}

// A source whose axis points the other way (steps negative, as a feet-first dose grid) gives the same dose.
TEST(Resample, FlippedSourceGivesTheSameDose) {
  auto from = axis_grid({0, 0, 0}, {2, 2, 2}, {6, 5, 4});
  auto source = sample(from, affine);
  vmat::GridPlacement flipped = from;
  flipped.origin[0] = 10;
  flipped.step[0][0] = -2;
  auto to = axis_grid({1, 1, 1}, {1.7, 1.3, 0.9}, {5, 6, 6});
  auto straight = vmat::resample_trilinear(source, from, to, 0.0f);
  auto reversed = vmat::resample_trilinear(source.flip({0}), flipped, to, 0.0f);
  EXPECT_TRUE(at::allclose(straight, reversed, 0, 1e-4));
}

// Rounding does not clip grids that share a boundary plane; a one-slice axis keeps only its plane.
TEST(Resample, BoundaryPlanesAndSingleSlices) {
  auto from = axis_grid({0, 0, 0}, {0.1, 1, 1}, {31, 2, 2});
  auto to = axis_grid({3.0000000001, 0, 0}, {1, 1, 1}, {1, 2, 2});  // 30·0.1 is 3.0000000000000004
  auto out = vmat::resample_trilinear(at::ones({31, 2, 2}), from, to, -1.0f);
  EXPECT_TRUE(at::equal(out, at::ones({1, 2, 2})));
  auto below = vmat::resample_trilinear(at::ones({31, 2, 2}), from, axis_grid({-1e-10, 0, 0}, {1, 1, 1}, {1, 2, 2}), -1.0f);
  EXPECT_TRUE(at::equal(below, at::ones({1, 2, 2})));
  auto single = axis_grid({5, 0, 0}, {1, 1, 1}, {1, 2, 2});
  auto on = vmat::resample_trilinear(at::full({1, 2, 2}, 4.0f), single, axis_grid({5, 0.5, 0.5}, {1, 1, 1}, {1, 1, 1}), -1.0f);
  EXPECT_FLOAT_EQ(on.item<float>(), 4.0f);
  auto off = vmat::resample_trilinear(at::full({1, 2, 2}, 4.0f), single, axis_grid({5.5, 0.5, 0.5}, {1, 1, 1}, {1, 1, 1}), -1.0f);
  EXPECT_FLOAT_EQ(off.item<float>(), -1.0f);
}

TEST(Resample, RejectsDegenerateAxesAndShapeMismatch) {
  auto from = axis_grid({0, 0, 0}, {1, 1, 1}, {2, 2, 2});
  auto flat = from;
  flat.step[2] = flat.step[1];
  EXPECT_THROW(vmat::resample_trilinear(at::ones({2, 2, 2}), flat, from, 0.0f), vmat::Error);
  EXPECT_THROW(vmat::resample_trilinear(at::ones({2, 2, 3}), from, from, 0.0f), vmat::Error);
}
