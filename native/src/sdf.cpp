#include "vmat/sdf.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "vmat/error.h"

namespace vmat {

namespace {

constexpr int64_t kBlock = 16;  // lines gathered together in the strided passes, for cache locality

struct Box {
  int64_t lo[3];
  int64_t hi[3];  // exclusive
  int64_t size(int d) const { return hi[d] - lo[d]; }
  int64_t count() const { return size(0) * size(1) * size(2); }
};

// Lower envelope of parabolas (Felzenszwalb & Huttenlocher 2012) on one line of n samples, spacing w:
// d[q] = min_r (w (q - r))^2 + f[r]. v, z are scratch of n and n + 1 entries.
void distance_1d(const double* f, int64_t n, double w, double* d, int64_t* v, double* z) {
  const double w2 = w * w;
  int64_t k = 0;
  v[0] = 0;
  z[0] = -std::numeric_limits<double>::infinity();
  z[1] = std::numeric_limits<double>::infinity();
  auto intersection = [&](int64_t q, int64_t r) { return ((f[q] + w2 * q * q) - (f[r] + w2 * r * r)) / (2.0 * w2 * (q - r)); };
  for (int64_t q = 1; q < n; ++q) {
    // f is finite (capped), so s is finite and the loop stops at z[0] = -inf at the latest.
    double s = intersection(q, v[k]);
    while (s <= z[k]) s = intersection(q, v[--k]);
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = std::numeric_limits<double>::infinity();
  }
  k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[k + 1] < q) ++k;
    const double dq = w * (q - v[k]);
    d[q] = dq * dq + f[v[k]];
  }
}

// The squared distance (mm²) to the nearest feature voxel, for every voxel of `box`, capped at `cap` (= clip²:
// values at or above it are clipped anyway, and the cap keeps the arithmetic finite and exact below it).
// is_feature(index into the full volume) says which voxels are features.
template <typename IsFeature>
std::vector<float> squared_distances(const Box& box, int64_t Y, int64_t X, const std::array<double, 3>& spacing,
                                     double cap, IsFeature is_feature, const std::atomic<bool>* cancel) {
  const int64_t nz = box.size(0), ny = box.size(1), nx = box.size(2);
  std::vector<float> out(static_cast<size_t>(box.count()));
  auto check_cancel = [&] {
    if (cancel && cancel->load()) throw Error(ErrorCode::Cancelled, "the distance maps were cancelled");
  };
  // Pass 1 (x, contiguous): distance along the row to the nearest feature, by two sweeps.
  at::parallel_for(0, nz * ny, 64, [&](int64_t begin, int64_t end) {
    std::vector<double> run(nx);
    for (int64_t line = begin; line < end; ++line) {
      const int64_t zi = line / ny, yi = line % ny;
      const int64_t base = ((box.lo[0] + zi) * Y + (box.lo[1] + yi)) * X + box.lo[2];
      const double far = std::numeric_limits<double>::infinity();
      double last = -far;
      for (int64_t xi = 0; xi < nx; ++xi) {
        if (is_feature(base + xi)) last = static_cast<double>(xi);
        run[xi] = xi - last;
      }
      last = far;
      float* row = out.data() + line * nx;
      for (int64_t xi = nx - 1; xi >= 0; --xi) {
        if (is_feature(base + xi)) last = static_cast<double>(xi);
        const double mm = std::min(run[xi], last - xi) * spacing[2];
        row[xi] = static_cast<float>(std::min(mm * mm, cap));
      }
    }
  });
  check_cancel();
  // Passes 2 (y) and 3 (z): lower envelopes along strided lines, kBlock neighbouring lines gathered at a time.
  auto strided_pass = [&](int64_t n, int64_t step, int64_t outer, int64_t outer_step, double w) {
    const int64_t blocks_per_outer = (nx + kBlock - 1) / kBlock;
    at::parallel_for(0, outer * blocks_per_outer, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> f(n * kBlock), line(n), d(n), z(n + 1);
      std::vector<int64_t> v(n);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t o = task / blocks_per_outer;
        const int64_t x0 = (task % blocks_per_outer) * kBlock;
        const int64_t width = std::min(kBlock, nx - x0);
        float* start = out.data() + o * outer_step + x0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t b = 0; b < width; ++b) f[b * n + i] = start[i * step + b];
        for (int64_t b = 0; b < width; ++b) {
          const double* fb = f.data() + b * n;
          bool informative = false;
          for (int64_t i = 0; i < n && !informative; ++i) informative = fb[i] < cap;
          if (!informative) continue;  // every value is already at the cap
          distance_1d(fb, n, w, d.data(), v.data(), z.data());
          for (int64_t i = 0; i < n; ++i) start[i * step + b] = static_cast<float>(std::min(d[i], cap));
        }
      }
    });
    check_cancel();
  };
  strided_pass(ny, nx, nz, ny * nx, spacing[1]);  // y lines: one per (z, x)
  strided_pass(nz, ny * nx, ny, nx, spacing[0]);  // z lines: one per (y, x)
  return out;
}

}  // namespace

at::Tensor signed_distance_maps(const at::Tensor& masks_input, std::array<double, 3> spacing, double clip_mm,
                                const std::function<void(int64_t)>& on_structure_done,
                                const std::atomic<bool>* cancel) {
  require(masks_input.dim() == 4, "masks must have 4 dimensions [S,Z,Y,X], got " + std::to_string(masks_input.dim()));
  require(masks_input.scalar_type() == at::kByte || masks_input.scalar_type() == at::kBool,
          std::string("masks must be uint8 or bool, got ") + c10::toString(masks_input.scalar_type()));
  for (double s : spacing) require(std::isfinite(s) && s > 0, "spacing must be 3 positive millimetre values, got " + std::to_string(s));
  require(std::isfinite(clip_mm) && clip_mm > 0, "clip_mm must be positive, got " + std::to_string(clip_mm));
  const at::Tensor masks = masks_input.to(at::kCPU).to(at::kByte).contiguous();
  const int64_t S = masks.size(0), Z = masks.size(1), Y = masks.size(2), X = masks.size(3);
  const int64_t volume = Z * Y * X;
  at::Tensor result = at::empty({S, Z, Y, X}, at::kFloat);
  const double cap = clip_mm * clip_mm;
  const int64_t dims[3] = {Z, Y, X};

  for (int64_t s = 0; s < S; ++s) {
    const uint8_t* mask = masks.data_ptr<uint8_t>() + s * volume;
    float* out = result.data_ptr<float>() + s * volume;
    Box bbox{{Z, Y, X}, {0, 0, 0}};
    for (int64_t zi = 0; zi < Z; ++zi)
      for (int64_t yi = 0; yi < Y; ++yi) {
        const uint8_t* row = mask + (zi * Y + yi) * X;
        for (int64_t xi = 0; xi < X; ++xi) {
          if (!row[xi]) continue;
          bbox.lo[0] = std::min(bbox.lo[0], zi), bbox.hi[0] = std::max(bbox.hi[0], zi + 1);
          bbox.lo[1] = std::min(bbox.lo[1], yi), bbox.hi[1] = std::max(bbox.hi[1], yi + 1);
          bbox.lo[2] = std::min(bbox.lo[2], xi), bbox.hi[2] = std::max(bbox.hi[2], xi + 1);
        }
      }
    if (bbox.hi[0] == 0) {  // empty structure
      std::fill(out, out + volume, 0.0f);
      if (on_structure_done) on_structure_done(s);
      continue;
    }
    auto grown = [&](const int64_t margin[3]) {
      Box box;
      for (int d = 0; d < 3; ++d) box.lo[d] = std::max<int64_t>(0, bbox.lo[d] - margin[d]), box.hi[d] = std::min(dims[d], bbox.hi[d] + margin[d]);
      return box;
    };
    // Outside: beyond the clip distance every value is +1, so only the box grown by it needs the transform.
    int64_t clip_margin[3];
    for (int d = 0; d < 3; ++d) clip_margin[d] = static_cast<int64_t>(std::ceil(clip_mm / spacing[d])) + 1;
    const Box outer = grown(clip_margin);
    // Inside: the nearest outside voxel of a structure voxel is always within the bounding box grown by one voxel.
    const int64_t one[3] = {1, 1, 1};
    const Box inner = grown(one);
    const auto outside = squared_distances(outer, Y, X, spacing, cap, [&](int64_t i) { return mask[i] != 0; }, cancel);
    const auto inside = squared_distances(inner, Y, X, spacing, cap, [&](int64_t i) { return mask[i] == 0; }, cancel);

    const float inv_clip = static_cast<float>(1.0 / clip_mm);
    at::parallel_for(0, Z, 1, [&](int64_t begin, int64_t end) {
      for (int64_t zi = begin; zi < end; ++zi)
        for (int64_t yi = 0; yi < Y; ++yi) {
          const int64_t base = (zi * Y + yi) * X;
          const bool in_outer = zi >= outer.lo[0] && zi < outer.hi[0] && yi >= outer.lo[1] && yi < outer.hi[1];
          for (int64_t xi = 0; xi < X; ++xi) {
            const int64_t i = base + xi;
            if (mask[i]) {
              // Structure voxels always lie in `inner`.
              const int64_t j = ((zi - inner.lo[0]) * inner.size(1) + (yi - inner.lo[1])) * inner.size(2) + (xi - inner.lo[2]);
              out[i] = -std::min(std::sqrt(inside[j]) * inv_clip, 1.0f);
            } else if (in_outer && xi >= outer.lo[2] && xi < outer.hi[2]) {
              const int64_t j = ((zi - outer.lo[0]) * outer.size(1) + (yi - outer.lo[1])) * outer.size(2) + (xi - outer.lo[2]);
              out[i] = std::min(std::sqrt(outside[j]) * inv_clip, 1.0f);
            } else {
              out[i] = 1.0f;
            }
          }
        }
    });
    if (on_structure_done) on_structure_done(s);
  }
  return result;
}

at::Tensor derive_body_mask(const at::Tensor& ct_input) {
  require(ct_input.dim() == 3, "ct must have 3 dimensions [Z,Y,X], got " + std::to_string(ct_input.dim()));
  require(ct_input.is_floating_point() || ct_input.scalar_type() == at::kShort || ct_input.scalar_type() == at::kInt,
          std::string("ct must be int16, int32 or floating point HU, got ") + c10::toString(ct_input.scalar_type()));
  const at::Tensor above = (ct_input.to(at::kCPU) > -500).to(at::kByte).contiguous();
  const int64_t Z = above.size(0), Y = above.size(1), X = above.size(2);
  const int64_t volume = Z * Y * X;
  const uint8_t* candidate = above.data_ptr<uint8_t>();
  at::Tensor body = at::zeros({Z, Y, X}, at::kByte);
  uint8_t* out = body.data_ptr<uint8_t>();
  if (volume == 0) return body;

  // Largest 6-connected component of the candidate voxels (iterative flood fill, labels in an int32 volume).
  std::vector<int32_t> label(static_cast<size_t>(volume), 0);
  std::vector<int64_t> stack;
  int32_t next = 0, best = 0;
  int64_t best_size = 0;
  const int64_t steps[3] = {Y * X, X, 1};
  const int64_t dims[3] = {Z, Y, X};
  for (int64_t seed = 0; seed < volume; ++seed) {
    if (!candidate[seed] || label[seed]) continue;
    ++next;
    int64_t size = 0;
    label[seed] = next;
    stack.push_back(seed);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      ++size;
      const int64_t coord[3] = {i / steps[0], (i / X) % Y, i % X};
      for (int d = 0; d < 3; ++d) {
        if (coord[d] > 0 && candidate[i - steps[d]] && !label[i - steps[d]]) label[i - steps[d]] = next, stack.push_back(i - steps[d]);
        if (coord[d] + 1 < dims[d] && candidate[i + steps[d]] && !label[i + steps[d]]) label[i + steps[d]] = next, stack.push_back(i + steps[d]);
      }
    }
    if (size > best_size) best_size = size, best = next;
  }
  if (best == 0) return body;
  for (int64_t i = 0; i < volume; ++i) out[i] = label[i] == best;

  // Fill holes slice by slice: background not 4-connected to the slice's edge becomes body.
  at::parallel_for(0, Z, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> outside(static_cast<size_t>(Y * X));
    std::vector<int64_t> queue;
    for (int64_t zi = begin; zi < end; ++zi) {
      uint8_t* slice = out + zi * Y * X;
      std::fill(outside.begin(), outside.end(), 0);
      queue.clear();
      auto visit = [&](int64_t i) {
        if (!slice[i] && !outside[i]) outside[i] = 1, queue.push_back(i);
      };
      for (int64_t xi = 0; xi < X; ++xi) visit(xi), visit((Y - 1) * X + xi);
      for (int64_t yi = 0; yi < Y; ++yi) visit(yi * X), visit(yi * X + X - 1);
      while (!queue.empty()) {
        const int64_t i = queue.back();
        queue.pop_back();
        const int64_t yi = i / X, xi = i % X;
        if (yi > 0) visit(i - X);
        if (yi + 1 < Y) visit(i + X);
        if (xi > 0) visit(i - 1);
        if (xi + 1 < X) visit(i + 1);
      }
      for (int64_t i = 0; i < Y * X; ++i) slice[i] = outside[i] ? 0 : 1;
    }
  });
  return body;
}

}  // namespace vmat
