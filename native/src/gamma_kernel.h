#pragma once
// The per-point gamma search, shared word for word by the CPU (gamma.cpp) and the GPU (gamma.cu), so that both
// give the same Γ bit for bit. Torch-free: nvcc compiles it without libtorch's headers.
//
// All arithmetic is in double and goes through mul/add/sub/div, which on the GPU are the _rn intrinsics: nvcc would
// otherwise fuse a*b+c into one FMA (one rounding instead of two) and the two devices would disagree in the last bit.
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define VMAT_HD __host__ __device__ __forceinline__
#else
#define VMAT_HD inline
#endif

namespace vmat::gamma_detail {

// Voxels per side of the blocks whose dose range bounds the interpolated dose (see may_improve).
constexpr int64_t kBlock = 4;

struct Grid {
  int64_t n[3];
  double origin[3];
  double spacing[3];
  double step[3];   // (origin + spacing) - origin, the node distance as pymedphys' interpolation measures it
  double upper[3];  // origin + (n - 1) * spacing: the last boundary plane, which is inside
};

// One polar-angle row of a sphere: its points share the third-axis offset and lie on a circle of `radius`.
struct Row {
  double radius;
  double offset2;
  int32_t first_point;
  int32_t n_points;
};

struct Shell {
  double distance;
  double distance_over_dta;
  int32_t first_row;
  int32_t n_rows;
};

struct Params {
  Grid ref;
  Grid eval;
  const float* ref_dose;
  const float* eval_dose;
  const Shell* shells;
  int32_t n_shells;
  const Row* rows;
  const double* offsets;  // 3 per point: first, second, third axis (mm)
  const float* block_min; // eval dose range over the voxels [b*kBlock, b*kBlock + kBlock] of each block
  const float* block_max;
  int64_t n_blocks[3];
  double normalisation;   // global normalisation (Gy)
  double cutoff;          // reference points with R >= cutoff are evaluated
  double dose_fraction;   // dose% / 100
  double max_gamma;
  bool local;
};

#ifdef __CUDA_ARCH__
VMAT_HD double mul(double a, double b) { return __dmul_rn(a, b); }
VMAT_HD double add(double a, double b) { return __dadd_rn(a, b); }
VMAT_HD double sub(double a, double b) { return __dsub_rn(a, b); }
VMAT_HD double quot(double a, double b) { return __ddiv_rn(a, b); }
#else
VMAT_HD double mul(double a, double b) { return a * b; }
VMAT_HD double add(double a, double b) { return a + b; }
VMAT_HD double sub(double a, double b) { return a - b; }
VMAT_HD double quot(double a, double b) { return a / b; }
#endif

VMAT_HD int64_t clamp_index(int64_t value, int64_t low, int64_t high) {
  return value < low ? low : (value > high ? high : value);
}

// Trilinear interpolation of the evaluated dose at p (mm), in pymedphys' order (first axis, then second, then
// third). Outside the grid: +inf; a point on a boundary plane is inside.
VMAT_HD double interpolate(const Params& k, const double p[3]) {
  int64_t lo[3], hi[3];
  double w[3];
  for (int a = 0; a < 3; ++a) {
    const double origin = k.eval.origin[a];
    if (!(p[a] >= origin && p[a] <= k.eval.upper[a])) return INFINITY;
    const int64_t n = k.eval.n[a];
    if (n == 1) {
      lo[a] = hi[a] = 0;
      w[a] = 0.0;
      continue;
    }
    const int64_t i0 = clamp_index(static_cast<int64_t>(floor(quot(sub(p[a], origin), k.eval.spacing[a]))), 0, n - 2);
    lo[a] = i0;
    hi[a] = i0 + 1;
    w[a] = quot(sub(p[a], add(origin, mul(static_cast<double>(i0), k.eval.spacing[a]))), k.eval.step[a]);
  }
  const int64_t s0 = k.eval.n[1] * k.eval.n[2];
  const int64_t s1 = k.eval.n[2];
  const float* e = k.eval_dose;
  const double c000 = e[lo[0] * s0 + lo[1] * s1 + lo[2]];
  const double c001 = e[lo[0] * s0 + lo[1] * s1 + hi[2]];
  const double c010 = e[lo[0] * s0 + hi[1] * s1 + lo[2]];
  const double c011 = e[lo[0] * s0 + hi[1] * s1 + hi[2]];
  const double c100 = e[hi[0] * s0 + lo[1] * s1 + lo[2]];
  const double c101 = e[hi[0] * s0 + lo[1] * s1 + hi[2]];
  const double c110 = e[hi[0] * s0 + hi[1] * s1 + lo[2]];
  const double c111 = e[hi[0] * s0 + hi[1] * s1 + hi[2]];
  const double u0 = sub(1.0, w[0]);
  const double c00 = add(mul(c000, u0), mul(c100, w[0]));
  const double c01 = add(mul(c001, u0), mul(c101, w[0]));
  const double c10 = add(mul(c010, u0), mul(c110, w[0]));
  const double c11 = add(mul(c011, u0), mul(c111, w[0]));
  const double u1 = sub(1.0, w[1]);
  const double c0 = add(mul(c00, u1), mul(c10, w[1]));
  const double c1 = add(mul(c01, u1), mul(c11, w[1]));
  return add(mul(c0, sub(1.0, w[2])), mul(c1, w[2]));
}

// Γ at one distance from the smallest relative dose difference found there.
VMAT_HD double gamma_from(double min_relative_difference, double distance_over_dta, double dose_fraction) {
  const double dose_term = quot(min_relative_difference, dose_fraction);
  return sqrt(add(mul(dose_term, dose_term), mul(distance_over_dta, distance_over_dta)));
}

// A lower bound of |E(p) - R| / N over every point p of the box centre ± half (mm), from the block dose ranges;
// +inf when the box misses the grid. Only used to skip work: a row is skipped when even this bound could not
// change Γ, so skipping never changes the result. The margin covers the rounding of the interpolation.
VMAT_HD double relative_difference_bound(const Params& k, const double centre[3], const double half[3], double reference,
                                         double normalisation) {
  int64_t block_lo[3], block_hi[3];
  for (int a = 0; a < 3; ++a) {
    const double low = quot(sub(sub(centre[a], half[a]), k.eval.origin[a]), k.eval.spacing[a]);
    const double high = quot(sub(add(centre[a], half[a]), k.eval.origin[a]), k.eval.spacing[a]);
    const int64_t n = k.eval.n[a];
    if (high < -1e-9 || low > static_cast<double>(n - 1) + 1e-9) return INFINITY;
    const int64_t voxel_lo = clamp_index(static_cast<int64_t>(floor(low)) - 1, 0, n - 1);
    const int64_t voxel_hi = clamp_index(static_cast<int64_t>(ceil(high)) + 1, 0, n - 1);
    block_lo[a] = voxel_lo / kBlock;
    block_hi[a] = clamp_index(voxel_hi / kBlock, 0, k.n_blocks[a] - 1);
  }
  float low = INFINITY, high = -INFINITY;
  for (int64_t b0 = block_lo[0]; b0 <= block_hi[0]; ++b0) {
    for (int64_t b1 = block_lo[1]; b1 <= block_hi[1]; ++b1) {
      const int64_t row = (b0 * k.n_blocks[1] + b1) * k.n_blocks[2];
      for (int64_t b2 = block_lo[2]; b2 <= block_hi[2]; ++b2) {
        low = fminf(low, k.block_min[row + b2]);
        high = fmaxf(high, k.block_max[row + b2]);
      }
    }
  }
  double gap = 0.0;
  if (reference < low) gap = sub(static_cast<double>(low), reference);
  else if (reference > high) gap = sub(reference, static_cast<double>(high));
  const double margin = mul(1e-9, add(add(fabs(reference), fabs(static_cast<double>(low))), fabs(static_cast<double>(high))));
  gap = sub(gap, margin);
  if (gap <= 0.0) return 0.0;
  return quot(gap, normalisation);
}

// Γ at reference voxel `index`: NaN where not evaluated (below the cutoff, or no evaluated point found within
// DTA · max_gamma), clipped to max_gamma.
VMAT_HD float gamma_at(const Params& k, int64_t index) {
  const double reference = k.ref_dose[index];
  if (!(reference >= k.cutoff)) return NAN;
  const double normalisation = k.local ? reference : k.normalisation;
  if (!(normalisation > 0.0)) return NAN;

  const int64_t n12 = k.ref.n[1] * k.ref.n[2];
  const int64_t i0 = index / n12;
  const int64_t i1 = (index - i0 * n12) / k.ref.n[2];
  const int64_t i2 = index - i0 * n12 - i1 * k.ref.n[2];
  const double r[3] = {add(k.ref.origin[0], mul(static_cast<double>(i0), k.ref.spacing[0])),
                       add(k.ref.origin[1], mul(static_cast<double>(i1), k.ref.spacing[1])),
                       add(k.ref.origin[2], mul(static_cast<double>(i2), k.ref.spacing[2]))};

  double gamma = INFINITY;
  for (int32_t s = 0; s < k.n_shells; ++s) {
    const Shell shell = k.shells[s];
    double best = INFINITY;  // smallest |E(p) - R| / N on this sphere so far
    for (int32_t j = 0; j < shell.n_rows; ++j) {
      const Row row = k.rows[shell.first_row + j];
      if (gamma < INFINITY || best < INFINITY) {
        const double centre[3] = {r[0], r[1], add(r[2], row.offset2)};
        const double half[3] = {row.radius, row.radius, 0.0};
        const double bound = relative_difference_bound(k, centre, half, reference, normalisation);
        if (!(bound < best) || !(gamma_from(bound, shell.distance_over_dta, k.dose_fraction) < gamma)) continue;
      }
      const double* offset = k.offsets + 3 * static_cast<int64_t>(row.first_point);
      for (int32_t q = 0; q < row.n_points; ++q, offset += 3) {
        const double p[3] = {add(r[0], offset[0]), add(r[1], offset[1]), add(r[2], offset[2])};
        const double evaluated = interpolate(k, p);
        const double difference = fabs(quot(sub(evaluated, reference), normalisation));
        if (difference < best) best = difference;
      }
    }
    const double at_distance = gamma_from(best, shell.distance_over_dta, k.dose_fraction);
    if (at_distance < gamma) gamma = at_distance;
    // No farther sphere can do better once Γ <= d / DTA.
    if (!(gamma > shell.distance_over_dta)) break;
  }
  if (gamma == INFINITY) return NAN;
  if (gamma > k.max_gamma) gamma = k.max_gamma;
  return static_cast<float>(gamma);
}

// The evaluated dose range of block (b0, b1, b2), over the voxels [b*kBlock, b*kBlock + kBlock] per axis (one
// voxel of overlap, so that every interpolation cell lies wholly inside some block).
VMAT_HD void block_range(const Params& k, int64_t b0, int64_t b1, int64_t b2, float* low, float* high) {
  const int64_t n0 = k.eval.n[0], n1 = k.eval.n[1], n2 = k.eval.n[2];
  float lo = INFINITY, hi = -INFINITY;
  const int64_t e0 = b0 * kBlock + kBlock < n0 - 1 ? b0 * kBlock + kBlock : n0 - 1;
  const int64_t e1 = b1 * kBlock + kBlock < n1 - 1 ? b1 * kBlock + kBlock : n1 - 1;
  const int64_t e2 = b2 * kBlock + kBlock < n2 - 1 ? b2 * kBlock + kBlock : n2 - 1;
  for (int64_t v0 = b0 * kBlock; v0 <= e0; ++v0) {
    for (int64_t v1 = b1 * kBlock; v1 <= e1; ++v1) {
      const float* line = k.eval_dose + (v0 * n1 + v1) * n2;
      for (int64_t v2 = b2 * kBlock; v2 <= e2; ++v2) {
        lo = fminf(lo, line[v2]);
        hi = fmaxf(hi, line[v2]);
      }
    }
  }
  *low = lo;
  *high = hi;
}

}  // namespace vmat::gamma_detail
