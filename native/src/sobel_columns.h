#pragma once
// The fused Sobel loss on CUDA, one voxel column per thread (sobel_loss.cu). The per-column work lives here as plain
// host/device functions so that the CPU tests run exactly what each CUDA thread runs (test_losses.cpp).
//
// Each Sobel kernel is separable: G_z = D_z S_y S_x, G_y = S_z D_y S_x, G_x = S_z S_y D_x, with S = [1, 2, 1] and
// D = [-1, 0, 1]. A thread owns the column (y, x) for a run of planes and marches along z: for each new plane it
// filters the 3 x 3 in-plane neighbourhood once into A = S_y S_x f, B = D_y S_x f and C = S_y D_x f, keeps those of
// planes z-1, z, z+1 in registers, and combines them along z (G_z = A(z+1) - A(z-1), G_y = S_z B, G_x = S_z C).
// Neighbouring threads read overlapping neighbourhoods, which the L1 cache serves; there is no shared memory and no
// barrier.
//
// Forward writes sign(G_k * (p - t)) for the three axes, packed 2 bits each into one byte per voxel. Backward needs
// nothing else: d loss / d u = coefficient * sum_k (G_k * S_k) (see sobel_loss.cpp), the same filtering applied to
// the sign fields. Values outside the volume are zero, as with the zero-padded convolution.
#include <cstdint>

#include "host_device.h"

namespace vmat::sobel_columns {

// `planes_per_thread`: each thread marches that many planes of one column (the last run of a column may be shorter);
// it re-reads 2 planes per run, and fewer planes mean more threads.
struct Dims {
  int64_t volumes, depth, height, width, planes_per_thread;
};

VMAT_HD int64_t runs_per_column(const Dims& d) {
  return (d.depth + d.planes_per_thread - 1) / d.planes_per_thread;
}

// The three in-plane filtered values of one plane at one column.
struct Filtered {
  float a = 0.f, b = 0.f, c = 0.f;  // S_y S_x f_z, D_y S_x f_y, S_y D_x f_x
};

// One voxel of the fields seen by G_z, G_y and G_x: the same u forward, the three sign fields backward.
struct Fields {
  float z, y, x;
};

// Filters the 3 x 3 neighbourhood of (y, x) in one plane; `sample(index)` reads the fields at a flat in-plane index
// that is known to be inside the plane.
template <typename Sample>
VMAT_HD Filtered filter_plane(const Dims& d, int64_t y, int64_t x, Sample sample) {
  float smoothed_z[3], smoothed_y[3], differenced_x[3];  // along x, per row y-1, y, y+1
  for (int row = 0; row < 3; ++row) {
    const int64_t yy = y + row - 1;
    Fields left{0.f, 0.f, 0.f}, centre{0.f, 0.f, 0.f}, right{0.f, 0.f, 0.f};
    if (yy >= 0 && yy < d.height) {
      const int64_t base = yy * d.width + x;
      centre = sample(base);
      if (x > 0) left = sample(base - 1);
      if (x + 1 < d.width) right = sample(base + 1);
    }
    smoothed_z[row] = left.z + 2.f * centre.z + right.z;
    smoothed_y[row] = left.y + 2.f * centre.y + right.y;
    differenced_x[row] = right.x - left.x;
  }
  Filtered f;
  f.a = smoothed_z[0] + 2.f * smoothed_z[1] + smoothed_z[2];
  f.b = smoothed_y[2] - smoothed_y[0];
  f.c = differenced_x[0] + 2.f * differenced_x[1] + differenced_x[2];
  return f;
}

// Marches planes [first, last) of one volume's column, calling `emit(z, gz, gy, gx)` with the unnormalised Sobel
// components (G_z f_z, G_y f_y, G_x f_x) at each plane; `plane(z)` returns a sampler of plane z (called only for
// 0 <= z < depth).
template <typename PlaneSampler, typename Emit>
VMAT_HD void march(const Dims& d, int64_t y, int64_t x, int64_t first, int64_t last, PlaneSampler plane,
                          Emit emit) {
  Filtered before, here;
  if (first > 0) before = filter_plane(d, y, x, plane(first - 1));
  here = filter_plane(d, y, x, plane(first));
  for (int64_t z = first; z < last; ++z) {
    Filtered after;
    if (z + 1 < d.depth) after = filter_plane(d, y, x, plane(z + 1));
    emit(z, after.a - before.a, before.b + 2.f * here.b + after.b, before.c + 2.f * here.c + after.c);
    before = here;
    here = after;
  }
}

VMAT_HD uint8_t pack_signs(float gz, float gy, float gx) {
  return static_cast<uint8_t>((gz > 0.f) | (gz < 0.f) << 1 | (gy > 0.f) << 2 | (gy < 0.f) << 3 | (gx > 0.f) << 4 |
                              (gx < 0.f) << 5);
}

// Sign of component `axis` (0 = z, 1 = y, 2 = x) stored by pack_signs.
VMAT_HD float unpack_sign(uint8_t bits, int axis) {
  return static_cast<float>((bits >> (2 * axis)) & 1) - static_cast<float>((bits >> (2 * axis + 1)) & 1);
}

// One forward thread: run `run` of column (y, x) of volume `volume`. Returns the sum of |G_z u| + |G_y u| + |G_x u|
// over its planes (u = p - t, unnormalised) and writes their packed signs.
VMAT_HD float forward_run(const float* p, const float* t, uint8_t* signs, const Dims& d, int64_t volume,
                                 int64_t run, int64_t y, int64_t x) {
  const int64_t plane_size = d.height * d.width;
  const int64_t first = run * d.planes_per_thread;
  const int64_t last = first + d.planes_per_thread < d.depth ? first + d.planes_per_thread : d.depth;
  const float* pv = p + volume * d.depth * plane_size;
  const float* tv = t + volume * d.depth * plane_size;
  uint8_t* sv = signs + volume * d.depth * plane_size;
  float sum = 0.f;
  march(
      d, y, x, first, last,
      [&](int64_t z) {
        const float* pz = pv + z * plane_size;
        const float* tz = tv + z * plane_size;
        return [pz, tz](int64_t i) {
          const float u = pz[i] - tz[i];
          return Fields{u, u, u};
        };
      },
      [&](int64_t z, float gz, float gy, float gx) {
        sum += (gz < 0.f ? -gz : gz) + (gy < 0.f ? -gy : gy) + (gx < 0.f ? -gx : gx);
        sv[z * plane_size + y * d.width + x] = pack_signs(gz, gy, gx);
      });
  return sum;
}

// One backward thread: gradient of the loss with respect to p over run `run` of column (y, x), coefficient *
// sum_k (G_k * S_k); grad_t gets its negation. Either output may be null.
VMAT_HD void backward_run(const uint8_t* signs, float coefficient, float* grad_p, float* grad_t, const Dims& d,
                                 int64_t volume, int64_t run, int64_t y, int64_t x) {
  const int64_t plane_size = d.height * d.width;
  const int64_t first = run * d.planes_per_thread;
  const int64_t last = first + d.planes_per_thread < d.depth ? first + d.planes_per_thread : d.depth;
  const int64_t offset = volume * d.depth * plane_size;
  const uint8_t* sv = signs + offset;
  march(
      d, y, x, first, last,
      [&](int64_t z) {
        const uint8_t* sz = sv + z * plane_size;
        return [sz](int64_t i) {
          const uint8_t bits = sz[i];
          return Fields{unpack_sign(bits, 0), unpack_sign(bits, 1), unpack_sign(bits, 2)};
        };
      },
      [&](int64_t z, float gz, float gy, float gx) {
        const int64_t index = offset + z * plane_size + y * d.width + x;
        const float value = coefficient * (gz + gy + gx);
        if (grad_p) grad_p[index] = value;
        if (grad_t) grad_t[index] = -value;
      });
}

}  // namespace vmat::sobel_columns
