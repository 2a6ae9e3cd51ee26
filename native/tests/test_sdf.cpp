#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <fstream>
#include <vector>

#include "vmat/error.h"
#include "vmat/sdf.h"

namespace {

at::Tensor masks_of(int64_t Z, int64_t Y, int64_t X, const std::function<bool(int64_t, int64_t, int64_t)>& inside) {
  at::Tensor masks = at::zeros({1, Z, Y, X}, at::kByte);
  auto a = masks.accessor<uint8_t, 4>();
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = 0; y < Y; ++y)
      for (int64_t x = 0; x < X; ++x) a[0][z][y][x] = inside(z, y, x);
  return masks;
}

}  // namespace

// One structure voxel: outside it, the value is the exact anisotropic Euclidean distance to its centre.
TEST(SignedDistance, SingleVoxelIsExactWithAnisotropicSpacing) {
  const std::array<double, 3> spacing{2.5, 1.2, 0.7};
  const double clip = 12.0;
  auto masks = masks_of(9, 11, 13, [](int64_t z, int64_t y, int64_t x) { return z == 3 && y == 6 && x == 4; });
  auto sdf = vmat::signed_distance_maps(masks, spacing, clip);
  ASSERT_EQ(sdf.sizes(), masks.sizes());
  auto a = sdf.accessor<float, 4>();
  for (int64_t z = 0; z < 9; ++z)
    for (int64_t y = 0; y < 11; ++y)
      for (int64_t x = 0; x < 13; ++x) {
        const double d = std::sqrt(std::pow((z - 3) * spacing[0], 2) + std::pow((y - 6) * spacing[1], 2) + std::pow((x - 4) * spacing[2], 2));
        const double want = (z == 3 && y == 6 && x == 4) ? -std::min(spacing[2], clip) / clip : std::min(d, clip) / clip;
        ASSERT_NEAR(a[0][z][y][x], want, 1e-6) << z << "," << y << "," << x;
      }
}

// A half-space z < 4: the distance is exact along z, negative inside, positive outside.
TEST(SignedDistance, PlaneIsExactAndSigned) {
  const std::array<double, 3> spacing{2.0, 1.0, 3.0};
  auto masks = masks_of(10, 5, 6, [](int64_t z, int64_t, int64_t) { return z < 4; });
  auto sdf = vmat::signed_distance_maps(masks, spacing, 50.0);
  auto a = sdf.accessor<float, 4>();
  for (int64_t z = 0; z < 10; ++z)
    for (int64_t y = 0; y < 5; ++y)
      for (int64_t x = 0; x < 6; ++x) {
        const double want = z < 4 ? -(4 - z) * spacing[0] : (z - 3) * spacing[0];
        ASSERT_NEAR(a[0][z][y][x] * 50.0, want, 1e-4) << z;
      }
}

// A sphere of radius 15 mm: the value is the distance to the sphere's surface within a voxel, and clipped far away.
TEST(SignedDistance, SphereFollowsTheSurface) {
  const std::array<double, 3> spacing{2.0, 1.5, 1.0};
  const double radius = 15.0, clip = 20.0;
  const int64_t Z = 24, Y = 40, X = 60;
  const double cz = 11.5 * spacing[0], cy = 19.5 * spacing[1], cx = 29.5 * spacing[2];
  auto distance = [&](int64_t z, int64_t y, int64_t x) {
    return std::sqrt(std::pow(z * spacing[0] - cz, 2) + std::pow(y * spacing[1] - cy, 2) + std::pow(x * spacing[2] - cx, 2));
  };
  auto masks = masks_of(Z, Y, X, [&](int64_t z, int64_t y, int64_t x) { return distance(z, y, x) <= radius; });
  auto sdf = vmat::signed_distance_maps(masks, spacing, clip);
  auto a = sdf.accessor<float, 4>();
  const double tolerance = 2.0;  // the voxelised surface is within a voxel diagonal (2.7 mm) of the sphere
  int64_t clipped = 0;
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = 0; y < Y; ++y)
      for (int64_t x = 0; x < X; ++x) {
        const double want = std::clamp(distance(z, y, x) - radius, -clip, clip);
        ASSERT_NEAR(a[0][z][y][x] * clip, want, tolerance);
        ASSERT_EQ(a[0][z][y][x] < 0, distance(z, y, x) <= radius);
        clipped += a[0][z][y][x] == 1.0f;
      }
  EXPECT_GT(clipped, 0);
}

TEST(SignedDistance, EmptyStructureIsZero) {
  at::Tensor masks = at::zeros({2, 4, 5, 6}, at::kByte);
  masks[1][2][2][2] = 1;
  auto sdf = vmat::signed_distance_maps(masks, {1, 1, 1});
  EXPECT_EQ(sdf[0].abs().max().item<float>(), 0.0f);
  EXPECT_GT(sdf[1].max().item<float>(), 0.0f);
}

TEST(SignedDistance, RejectsBadInput) {
  EXPECT_THROW(vmat::signed_distance_maps(at::zeros({4, 5, 6}, at::kByte), {1, 1, 1}), vmat::Error);
  EXPECT_THROW(vmat::signed_distance_maps(at::zeros({1, 4, 5, 6}, at::kFloat), {1, 1, 1}), vmat::Error);
  EXPECT_THROW(vmat::signed_distance_maps(at::zeros({1, 4, 5, 6}, at::kByte), {1, 0, 1}), vmat::Error);
}

TEST(SignedDistance, CancelStops) {
  std::atomic<bool> cancel{true};
  auto masks = masks_of(6, 6, 6, [](int64_t z, int64_t, int64_t) { return z < 2; });
  try {
    vmat::signed_distance_maps(masks, {1, 1, 1}, 50.0, {}, &cancel);
    FAIL() << "expected a Cancelled error";
  } catch (const vmat::Error& error) {
    EXPECT_EQ(error.code(), vmat::ErrorCode::Cancelled);
  }
}

// Against scipy.ndimage.distance_transform_edt(sampling=spacing) on irregular blobs (make_sdf_fixture.py).
TEST(SignedDistance, MatchesScipy) {
  std::ifstream file(std::string(VMAT_TEST_DATA_DIR) + "/sdf_fixture.bin", std::ios::binary);
  ASSERT_TRUE(file.good());
  int64_t dims[4];
  double params[4];
  file.read(reinterpret_cast<char*>(dims), sizeof dims);
  file.read(reinterpret_cast<char*>(params), sizeof params);
  const int64_t count = dims[0] * dims[1] * dims[2] * dims[3];
  at::Tensor masks = at::empty({dims[0], dims[1], dims[2], dims[3]}, at::kByte);
  at::Tensor expected = at::empty({dims[0], dims[1], dims[2], dims[3]}, at::kFloat);
  file.read(reinterpret_cast<char*>(masks.data_ptr<uint8_t>()), count);
  file.read(reinterpret_cast<char*>(expected.data_ptr<float>()), count * 4);
  ASSERT_TRUE(file.good());
  auto sdf = vmat::signed_distance_maps(masks, {params[0], params[1], params[2]}, params[3]);
  EXPECT_LT((sdf - expected).abs().max().item<float>(), 1e-5);
}

TEST(BodyMask, KeepsLargestComponentAndFillsHoles) {
  at::Tensor ct = at::full({6, 20, 24}, -1000, at::kShort);
  auto a = ct.accessor<int16_t, 3>();
  for (int64_t z = 0; z < 6; ++z)
    for (int64_t y = 0; y < 20; ++y)
      for (int64_t x = 0; x < 24; ++x) {
        const bool body = std::pow((y - 10) / 8.0, 2) + std::pow((x - 11) / 9.0, 2) <= 1;
        const bool air_inside = std::abs(y - 10) <= 1 && std::abs(x - 11) <= 2;  // bowel gas
        if (body && !air_inside) a[z][y][x] = 40;
      }
  a[2][1][22] = 500;  // an isolated bright voxel (couch, noise): not the body
  auto body = vmat::derive_body_mask(ct);
  auto b = body.accessor<uint8_t, 3>();
  EXPECT_EQ(b[2][1][22], 0);
  EXPECT_EQ(b[3][10][11], 1);  // the air pocket is filled
  EXPECT_EQ(b[3][10][0], 0);
  int64_t expected = 0;
  for (int64_t y = 0; y < 20; ++y)
    for (int64_t x = 0; x < 24; ++x) expected += std::pow((y - 10) / 8.0, 2) + std::pow((x - 11) / 9.0, 2) <= 1;
  EXPECT_EQ(body.sum().item<int64_t>(), 6 * expected);
  EXPECT_EQ(vmat::derive_body_mask(at::full({2, 3, 4}, -1000.0f)).sum().item<int64_t>(), 0);
}
