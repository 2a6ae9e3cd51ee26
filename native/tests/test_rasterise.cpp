#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include "vmat/error.h"
#include "vmat/rasterise.h"

namespace {

struct Polygons {
  std::vector<double> xy;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> slices;
  std::vector<int32_t> labels;

  void add(const std::vector<std::pair<double, double>>& points, int32_t slice, int32_t label = 0) {
    for (auto [x, y] : points) {
      xy.push_back(x);
      xy.push_back(y);
    }
    offsets.push_back(static_cast<int64_t>(xy.size() / 2));
    slices.push_back(slice);
    labels.push_back(label);
  }

  at::Tensor run(int64_t structures, std::array<int64_t, 3> shape, const std::atomic<bool>* cancel = nullptr) const {
    auto points = at::from_blob(const_cast<double*>(xy.data()), {static_cast<int64_t>(xy.size() / 2), 2}, at::kDouble);
    auto starts = at::from_blob(const_cast<int64_t*>(offsets.data()), {static_cast<int64_t>(offsets.size())}, at::kLong);
    auto s = at::from_blob(const_cast<int32_t*>(slices.data()), {static_cast<int64_t>(slices.size())}, at::kInt);
    auto l = at::from_blob(const_cast<int32_t*>(labels.data()), {static_cast<int64_t>(labels.size())}, at::kInt);
    auto result = vmat::rasterise_polygons(points, starts, s, l, structures, shape, cancel);
    // The per-structure counts are the masks' sums.
    for (int64_t i = 0; i < structures; ++i) EXPECT_EQ(result.voxels[i], result.masks[i].sum().item<int64_t>());
    return result.masks;
  }
};

std::vector<std::pair<double, double>> square(double x0, double y0, double x1, double y1) {
  return {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
}

// The reference inside test, point by point: the crossing number of a ray from the point towards -x, with the same
// half-open rule (an edge counts when its lower end is at or below the point's y and its upper end above it, and
// when its crossing is at or left of the point).
bool inside_reference(const std::vector<std::vector<std::pair<double, double>>>& polygons, double px, double py) {
  int crossings = 0;
  for (const auto& polygon : polygons) {
    const size_t n = polygon.size();
    for (size_t a = 0; a < n; ++a) {
      auto [x0, y0] = polygon[a];
      auto [x1, y1] = polygon[(a + 1) % n];
      if (y0 == y1) continue;
      if (y0 > y1) std::swap(x0, x1), std::swap(y0, y1);
      if (!(y0 <= py && py < y1)) continue;
      const double x = x0 + (py - y0) * (x1 - x0) / (y1 - y0);
      if (x <= px) ++crossings;
    }
  }
  return crossings % 2 == 1;
}

}  // namespace

// Vertices on voxel centres: a centre on the left or lower boundary is inside, on the right or upper one outside.
TEST(Rasterise, BoundaryCentresFollowTheHalfOpenRule) {
  Polygons polygons;
  polygons.add(square(1, 1, 4, 4), 0);
  auto masks = polygons.run(1, {1, 6, 6});
  auto a = masks.accessor<uint8_t, 4>();
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) EXPECT_EQ(a[0][0][y][x], (x >= 1 && x < 4 && y >= 1 && y < 4) ? 1 : 0) << y << "," << x;
  EXPECT_EQ(masks.sum().item<int64_t>(), 9);
}

// A repeated closing point changes nothing; the orientation of the polygon does not matter.
TEST(Rasterise, ClosingPointAndOrientationDoNotMatter) {
  Polygons open, closed, reversed;
  open.add({{0.3, 0.2}, {5.6, 1.1}, {4.2, 6.7}, {0.9, 4.4}}, 0);
  closed.add({{0.3, 0.2}, {5.6, 1.1}, {4.2, 6.7}, {0.9, 4.4}, {0.3, 0.2}}, 0);
  reversed.add({{0.9, 4.4}, {4.2, 6.7}, {5.6, 1.1}, {0.3, 0.2}}, 0);
  auto a = open.run(1, {1, 8, 8});
  EXPECT_GT(a.sum().item<int64_t>(), 10);
  EXPECT_TRUE(at::equal(a, closed.run(1, {1, 8, 8})));
  EXPECT_TRUE(at::equal(a, reversed.run(1, {1, 8, 8})));
}

// Even-odd over all contours of a structure on a slice: a contour inside another is a hole, one inside that an island;
// overlapping contours cancel where they overlap (as TPSs that draw holes as separate contours mean them).
TEST(Rasterise, NestedContoursMakeHolesAndIslands) {
  Polygons polygons;
  polygons.add(square(0.5, 0.5, 19.5, 19.5), 2);
  polygons.add(square(4.5, 4.5, 15.5, 15.5), 2);
  polygons.add(square(8.5, 8.5, 11.5, 11.5), 2);
  auto masks = polygons.run(1, {3, 20, 20});
  auto a = masks.accessor<uint8_t, 4>();
  EXPECT_EQ(a[0][2][2][2], 1);    // outer ring
  EXPECT_EQ(a[0][2][6][6], 0);    // hole
  EXPECT_EQ(a[0][2][10][10], 1);  // island
  EXPECT_EQ(masks.sum().item<int64_t>(), 19 * 19 - 11 * 11 + 3 * 3);
  EXPECT_EQ(masks.select(1, 0).sum().item<int64_t>(), 0);
  EXPECT_EQ(masks.select(1, 1).sum().item<int64_t>(), 0);
}

// Structures and slices are independent planes; polygons on slices outside the grid are ignored.
TEST(Rasterise, StructuresAndSlicesAreSeparate) {
  Polygons polygons;
  polygons.add(square(0.5, 0.5, 2.5, 2.5), 0, 0);
  polygons.add(square(3.5, 3.5, 5.5, 5.5), 0, 0);  // a second, disjoint contour on the same slice
  polygons.add(square(0.5, 0.5, 5.5, 5.5), 1, 1);
  polygons.add(square(0.5, 0.5, 5.5, 5.5), 7, 1);   // beyond the last slice
  polygons.add(square(0.5, 0.5, 5.5, 5.5), -1, 0);  // before the first
  auto masks = polygons.run(2, {2, 6, 6});
  EXPECT_EQ(masks.sizes(), (at::IntArrayRef{2, 2, 6, 6}));
  EXPECT_EQ(masks[0][0].sum().item<int64_t>(), 8);
  EXPECT_EQ(masks[0][1].sum().item<int64_t>(), 0);
  EXPECT_EQ(masks[1][0].sum().item<int64_t>(), 0);
  EXPECT_EQ(masks[1][1].sum().item<int64_t>(), 25);
}

// Random polygons (self-intersecting ones included) and several per slice: the scanline fill equals the point-by-point
// crossing test everywhere.
TEST(Rasterise, MatchesPointInPolygonOnRandomPolygons) {
  std::mt19937 random(7);
  std::uniform_real_distribution<double> coordinate(-3.0, 27.0);
  std::uniform_int_distribution<int> vertices(3, 12);
  for (int trial = 0; trial < 40; ++trial) {
    Polygons polygons;
    std::vector<std::vector<std::pair<double, double>>> reference;
    const int count = 1 + trial % 3;
    for (int c = 0; c < count; ++c) {
      std::vector<std::pair<double, double>> polygon;
      const int n = vertices(random);
      for (int v = 0; v < n; ++v) {
        // Some vertices on whole numbers, so that rows pass exactly through vertices.
        double x = coordinate(random), y = coordinate(random);
        if (v % 3 == 0) x = std::round(x), y = std::round(y);
        polygon.emplace_back(x, y);
      }
      polygons.add(polygon, 0);
      reference.push_back(polygon);
    }
    auto masks = polygons.run(1, {1, 24, 25});
    auto a = masks.accessor<uint8_t, 4>();
    for (int y = 0; y < 24; ++y)
      for (int x = 0; x < 25; ++x) ASSERT_EQ(a[0][0][y][x], inside_reference(reference, x, y) ? 1 : 0) << "trial " << trial << " at " << y << "," << x;
  }
}

// A 200-gon approximating a circle of radius 40 voxels: the area is π r² to within the boundary voxels.
TEST(Rasterise, CircleAreaIsPiRSquared) {
  Polygons polygons;
  std::vector<std::pair<double, double>> circle;
  const double pi = std::acos(-1.0);
  for (int v = 0; v < 200; ++v) circle.emplace_back(50.3 + 40 * std::cos(2 * pi * v / 200), 49.8 + 40 * std::sin(2 * pi * v / 200));
  polygons.add(circle, 0);
  const double area = static_cast<double>(polygons.run(1, {1, 100, 100}).sum().item<int64_t>());
  EXPECT_NEAR(area, pi * 40 * 40, 0.01 * pi * 40 * 40);
}

TEST(Rasterise, RejectsBadLabelsAndOffsets) {
  Polygons polygons;
  polygons.add(square(0, 0, 2, 2), 0, 3);
  EXPECT_THROW(polygons.run(2, {1, 4, 4}), vmat::Error);
  Polygons bad;
  bad.add(square(0, 0, 2, 2), 0, 0);
  bad.offsets.back() = 99;
  EXPECT_THROW(bad.run(1, {1, 4, 4}), vmat::Error);
}

TEST(Rasterise, Cancels) {
  Polygons polygons;
  polygons.add(square(0, 0, 2, 2), 0, 0);
  std::atomic<bool> cancel{true};
  try {
    polygons.run(1, {1, 4, 4}, &cancel);
    FAIL() << "expected a cancellation";
  } catch (const vmat::Error& error) {
    EXPECT_EQ(error.code(), vmat::ErrorCode::Cancelled);
  }
}
