#pragma once
// The per-point gamma search, shared word for word by the CPU (gamma.cpp) and the GPU (gamma.cu), so that both
// give the same Γ bit for bit. Torch-free: nvcc compiles it without libtorch's headers.
//
// All arithmetic is in double and goes through mul/add/sub/div, which on the GPU are the _rn intrinsics: nvcc would
// otherwise fuse a*b+c into one FMA (one rounding instead of two) and the two devices would disagree in the last bit.
#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace vmat::gamma_detail {

struct Grid {
  int64_t n[3];
  double origin[3];
  double spacing[3];
  double inverse_spacing[3];
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
  const float* cell_min;  // evaluated dose range over the 8 corners of each interpolation cell
  const float* cell_max;
  const float* cell_slope;  // a bound of |∇E| (Gy/mm) inside each cell
  int64_t n_cells[3];     // max(n - 1, 1) per axis
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

// floor() as an integer without a libm call (the CPU build has no SSE4.1 rounding instruction).
VMAT_HD int64_t floor_index(double value) {
  const int64_t truncated = static_cast<int64_t>(value);
  return static_cast<double>(truncated) > value ? truncated - 1 : truncated;
}

// Where coordinate x (mm) falls on axis a of the evaluated grid: the lower node, the upper node and the weight of
// the upper one. False outside the grid; a point on a boundary plane is inside.
struct AxisPosition {
  int64_t lo;
  int64_t hi;
  double w;
};

VMAT_HD bool axis_position(const Params& k, int a, double x, AxisPosition* position) {
  if (!(x >= k.eval.origin[a] && x <= k.eval.upper[a])) return false;
  const int64_t n = k.eval.n[a];
  if (n == 1) {
    *position = {0, 0, 0.0};
    return true;
  }
  // x >= origin, so the fractional index is >= 0 and truncation is floor.
  const double index = mul(sub(x, k.eval.origin[a]), k.eval.inverse_spacing[a]);
  const int64_t i0 = clamp_index(static_cast<int64_t>(index), 0, n - 2);
  *position = {i0, i0 + 1, sub(index, static_cast<double>(i0))};
  return true;
}

// Trilinear interpolation of the evaluated dose at (x0, x1) on the first two axes and a known third-axis position,
// in pymedphys' order (first axis, then second, then third). Outside the grid: +inf.
VMAT_HD double interpolate_at(const Params& k, double x0, double x1, const AxisPosition& p2) {
  AxisPosition p0, p1;
  if (!axis_position(k, 0, x0, &p0) || !axis_position(k, 1, x1, &p1)) return INFINITY;
  const int64_t s0 = k.eval.n[1] * k.eval.n[2];
  const int64_t s1 = k.eval.n[2];
  const float* e = k.eval_dose;
  const float* l0 = e + p0.lo * s0;
  const float* h0 = e + p0.hi * s0;
  const double c000 = l0[p1.lo * s1 + p2.lo];
  const double c001 = l0[p1.lo * s1 + p2.hi];
  const double c010 = l0[p1.hi * s1 + p2.lo];
  const double c011 = l0[p1.hi * s1 + p2.hi];
  const double c100 = h0[p1.lo * s1 + p2.lo];
  const double c101 = h0[p1.lo * s1 + p2.hi];
  const double c110 = h0[p1.hi * s1 + p2.lo];
  const double c111 = h0[p1.hi * s1 + p2.hi];
  const double u0 = sub(1.0, p0.w);
  const double c00 = add(mul(c000, u0), mul(c100, p0.w));
  const double c01 = add(mul(c001, u0), mul(c101, p0.w));
  const double c10 = add(mul(c010, u0), mul(c110, p0.w));
  const double c11 = add(mul(c011, u0), mul(c111, p0.w));
  const double u1 = sub(1.0, p1.w);
  const double c0 = add(mul(c00, u1), mul(c10, p1.w));
  const double c1 = add(mul(c01, u1), mul(c11, p1.w));
  return add(mul(c0, sub(1.0, p2.w)), mul(c1, p2.w));
}

VMAT_HD double interpolate(const Params& k, const double p[3]) {
  AxisPosition p2;
  if (!axis_position(k, 2, p[2], &p2)) return INFINITY;
  return interpolate_at(k, p[0], p[1], p2);
}

// Γ at one distance from the smallest relative dose difference found there.
VMAT_HD double gamma_from(double min_relative_difference, double distance_over_dta, double dose_fraction) {
  const double dose_term = quot(min_relative_difference, dose_fraction);
  return sqrt(add(mul(dose_term, dose_term), mul(distance_over_dta, distance_over_dta)));
}

// The interpolation cells that the box centre ± half (mm) touches, clamped to the grid; false when the box misses
// the grid. The box edges are computed with the same operations as the points' positions, so rounding keeps every
// point's cell inside the range (a small widening covers the rest).
VMAT_HD bool cells_of_box(const Params& k, const double centre[3], const double half[3], int64_t lo[3], int64_t hi[3]) {
  for (int a = 0; a < 3; ++a) {
    const double origin = k.eval.origin[a];
    const double low_edge = add(centre[a], -half[a]);
    const double high_edge = add(centre[a], half[a]);
    if (high_edge < origin || low_edge > k.eval.upper[a]) return false;
    const int64_t last_cell = k.n_cells[a] - 1;
    lo[a] = clamp_index(floor_index(sub(mul(sub(low_edge, origin), k.eval.inverse_spacing[a]), 1e-7)), 0, last_cell);
    hi[a] = clamp_index(floor_index(add(mul(sub(high_edge, origin), k.eval.inverse_spacing[a]), 1e-7)), 0, last_cell);
  }
  return true;
}

// A lower bound of |E(p) - R| / N over the points p that a sphere row (half = its box) or a whole sphere can reach,
// or +inf when none lies inside the grid. Two bounds, the larger wins:
//  - the evaluated dose range over the cells of the box: E(p) lies in [low, high];
//  - for a whole sphere of radius d around r (slope_distance = d, anchor = |E(r) - R|, finite when r is inside the
//    grid): E is Lipschitz with the largest cell slope L of the box, so |E(p) - R| >= anchor - L·d.
// Only used to skip work: a row or sphere is skipped when even this bound could not lower Γ, so skipping never
// changes the result; the margin covers the rounding of the interpolation and of the stored ranges.
VMAT_HD double relative_difference_bound(const Params& k, const double centre[3], const double half[3], double reference,
                                         double normalisation, double slope_distance, double anchor) {
  int64_t lo[3], hi[3];
  if (!cells_of_box(k, centre, half, lo, hi)) return INFINITY;
  float low = INFINITY, high = -INFINITY, slope = 0.0f;
  const bool use_slope = slope_distance > 0.0 && anchor < INFINITY;
  for (int64_t c0 = lo[0]; c0 <= hi[0]; ++c0) {
    for (int64_t c1 = lo[1]; c1 <= hi[1]; ++c1) {
      const int64_t line = (c0 * k.n_cells[1] + c1) * k.n_cells[2];
      for (int64_t c2 = lo[2]; c2 <= hi[2]; ++c2) {
        low = k.cell_min[line + c2] < low ? k.cell_min[line + c2] : low;
        high = k.cell_max[line + c2] > high ? k.cell_max[line + c2] : high;
        if (use_slope) slope = k.cell_slope[line + c2] > slope ? k.cell_slope[line + c2] : slope;
      }
    }
  }
  double gap = 0.0;
  if (reference < low) gap = sub(static_cast<double>(low), reference);
  else if (reference > high) gap = sub(reference, static_cast<double>(high));
  double reach = 0.0;
  if (use_slope) {
    reach = mul(static_cast<double>(slope), slope_distance);
    const double slope_gap = sub(anchor, reach);
    if (slope_gap > gap) gap = slope_gap;
  }
  const double magnitude = add(add(add(fabs(reference), fabs(static_cast<double>(low))), fabs(static_cast<double>(high))), reach);
  gap = sub(gap, add(mul(1e-6, magnitude), 1e-12));
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

  // |E(r) - R| in Gy: the anchor of the slope bound.
  const double anchor = fabs(sub(interpolate(k, r), reference));
  double gamma = INFINITY;
  for (int32_t s = 0; s < k.n_shells; ++s) {
    const Shell shell = k.shells[s];
    bool skip = false;
    if (gamma < INFINITY && shell.distance > 0.0) {
      const double half[3] = {shell.distance, shell.distance, shell.distance};
      const double bound = relative_difference_bound(k, r, half, reference, normalisation, shell.distance, anchor);
      skip = !(gamma_from(bound, shell.distance_over_dta, k.dose_fraction) < gamma);
    }
    if (!skip) {
      // The smallest |E(p) - R| (Gy) on this sphere so far; divided by N once per sphere (division by a positive
      // number keeps the order, so this is the smallest relative difference exactly).
      double best = INFINITY;
      for (int32_t j = 0; j < shell.n_rows; ++j) {
        const Row row = k.rows[shell.first_row + j];
        if (gamma < INFINITY || best < INFINITY) {
          const double centre[3] = {r[0], r[1], add(r[2], row.offset2)};
          const double half[3] = {row.radius, row.radius, 0.0};
          const double bound = relative_difference_bound(k, centre, half, reference, normalisation, 0.0, INFINITY);
          if (!(bound < quot(best, normalisation)) || !(gamma_from(bound, shell.distance_over_dta, k.dose_fraction) < gamma)) continue;
        }
        // Every point of a row shares its third-axis coordinate: place it once; a row beyond the grid is skipped.
        AxisPosition p2;
        if (!axis_position(k, 2, add(r[2], row.offset2), &p2)) continue;
        const double* offset = k.offsets + 3 * static_cast<int64_t>(row.first_point);
        for (int32_t q = 0; q < row.n_points; ++q, offset += 3) {
          const double difference = fabs(sub(interpolate_at(k, add(r[0], offset[0]), add(r[1], offset[1]), p2), reference));
          if (difference < best) best = difference;
        }
      }
      const double at_distance = gamma_from(quot(best, normalisation), shell.distance_over_dta, k.dose_fraction);
      if (at_distance < gamma) gamma = at_distance;
    }
    // No farther sphere can do better once Γ <= d / DTA.
    if (!(gamma > shell.distance_over_dta)) break;
  }
  if (gamma == INFINITY) return NAN;
  if (gamma > k.max_gamma) gamma = k.max_gamma;
  // A Γ just above 1 must not round down to 1 (a pass) in float32: pass or fail is decided in double, as pymedphys.
  if (gamma > 1.0 && static_cast<float>(gamma) <= 1.0f) return nextafterf(1.0f, 2.0f);
  return static_cast<float>(gamma);
}

// The evaluated dose range of interpolation cell (c0, c1, c2) over its 8 corner voxels (fewer on an axis of one
// voxel), and a bound of the gradient's norm inside it: per axis the steepest of its 4 edges.
VMAT_HD void cell_range(const Params& k, int64_t c0, int64_t c1, int64_t c2, float* low, float* high, float* slope) {
  const int64_t n1 = k.eval.n[1], n2 = k.eval.n[2];
  const int64_t v0[2] = {c0, c0 + 1 < k.eval.n[0] ? c0 + 1 : c0};
  const int64_t v1[2] = {c1, c1 + 1 < n1 ? c1 + 1 : c1};
  const int64_t v2[2] = {c2, c2 + 1 < n2 ? c2 + 1 : c2};
  double corner[2][2][2];
  double lo = INFINITY, hi = -INFINITY;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c) {
        corner[a][b][c] = k.eval_dose[(v0[a] * n1 + v1[b]) * n2 + v2[c]];
        lo = corner[a][b][c] < lo ? corner[a][b][c] : lo;
        hi = corner[a][b][c] > hi ? corner[a][b][c] : hi;
      }
  double edge[3] = {0.0, 0.0, 0.0};
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      edge[0] = fmax(edge[0], fabs(corner[1][a][b] - corner[0][a][b]));
      edge[1] = fmax(edge[1], fabs(corner[a][1][b] - corner[a][0][b]));
      edge[2] = fmax(edge[2], fabs(corner[a][b][1] - corner[a][b][0]));
    }
  double norm2 = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double per_mm = edge[a] * k.eval.inverse_spacing[a];
    norm2 += per_mm * per_mm;
  }
  *low = static_cast<float>(lo);
  *high = static_cast<float>(hi);
  // Rounded up a little so that the float never understates the slope.
  *slope = static_cast<float>(sqrt(norm2) * (1 + 1e-6));
}

}  // namespace vmat::gamma_detail
