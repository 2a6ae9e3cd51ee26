#include "vmat/synth.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "vmat/error.h"

namespace vmat {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;

// ------------------------------------------------------------------------------------------------ randomness
// splitmix64: fixed output on every platform, unlike std:: distributions.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash64(uint64_t value) { return splitmix64(value); }

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  double uniform() { return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

// Per-voxel Gaussian noise from a counter-based hash: the same value whichever thread computes the voxel.
double voxel_normal(uint64_t key, uint64_t voxel) {
  const uint64_t bits = hash64(key ^ (voxel * 0xD1B54A32D192ED03ull));
  const double u1 = (static_cast<double>(bits >> 40) + 0.5) * 0x1.0p-24;
  const double u2 = static_cast<double>(bits & 0xFFFFFFu) * 0x1.0p-24;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

// ------------------------------------------------------------------------------------------------ geometry
struct Vec3 {
  double x = 0, y = 0, z = 0;
};
Vec3 operator+(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
Vec3 operator-(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
Vec3 operator*(Vec3 a, double s) { return {a.x * s, a.y * s, a.z * s}; }
double dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
double norm(Vec3 a) { return std::sqrt(dot(a, a)); }

// Rotation R = Rz(yaw) * Ry(pitch) * Rx(roll); stored as rows so that local = R^T * v is three dot products.
struct Rotation {
  Vec3 col[3];  // columns of R: the local axes expressed in the patient frame
  static Rotation euler(double roll, double pitch, double yaw) {
    const double cr = std::cos(roll), sr = std::sin(roll), cp = std::cos(pitch), sp = std::sin(pitch);
    const double cy = std::cos(yaw), sy = std::sin(yaw);
    Rotation r;
    r.col[0] = {cy * cp, sy * cp, -sp};
    r.col[1] = {cy * sp * sr - sy * cr, sy * sp * sr + cy * cr, cp * sr};
    r.col[2] = {cy * sp * cr + sy * sr, sy * sp * cr - cy * sr, cp * cr};
    return r;
  }
  Vec3 to_local(Vec3 v) const { return {dot(col[0], v), dot(col[1], v), dot(col[2], v)}; }
};

// An ellipsoid with a low-order undulation of its surface (so organs are not perfect quadrics).
struct Ellipsoid {
  Vec3 centre;
  Rotation rotation = Rotation::euler(0, 0, 0);
  Vec3 semi;
  double lobe[3] = {0, 0, 0};

  // < 1 inside, 1 on the surface; roughly distance / semi-axis.
  double radius(Vec3 p) const {
    const Vec3 l = rotation.to_local(p - centre);
    const Vec3 n{l.x / semi.x, l.y / semi.y, l.z / semi.z};
    const double r2 = dot(n, n);
    if (r2 == 0) return 0;
    const double undulation = 1 + (lobe[0] * n.x * n.y + lobe[1] * n.z * n.x + lobe[2] * (n.x * n.x - n.y * n.y)) / r2;
    return std::sqrt(r2) / undulation;
  }
  double bound() const {
    return std::max({semi.x, semi.y, semi.z}) * (1 + std::fabs(lobe[0]) + std::fabs(lobe[1]) + std::fabs(lobe[2]));
  }
  bool near(Vec3 p) const {
    const Vec3 d = p - centre;
    const double b = bound();
    return dot(d, d) <= b * b;
  }
  bool contains(Vec3 p) const { return near(p) && radius(p) <= 1; }
};

// A tube along a polyline with a radius interpolated along each segment.
struct Tube {
  std::vector<Vec3> points;
  std::vector<double> radii;
  Vec3 box_lo, box_hi;

  void finish() {
    const double r = *std::max_element(radii.begin(), radii.end());
    box_lo = box_hi = points[0];
    for (const auto& p : points) {
      box_lo = {std::min(box_lo.x, p.x), std::min(box_lo.y, p.y), std::min(box_lo.z, p.z)};
      box_hi = {std::max(box_hi.x, p.x), std::max(box_hi.y, p.y), std::max(box_hi.z, p.z)};
    }
    box_lo = box_lo - Vec3{r, r, r};
    box_hi = box_hi + Vec3{r, r, r};
  }
  // Distance to the tube's surface, negative inside (exact per segment, minimum over segments).
  double signed_distance(Vec3 p) const {
    if (p.x < box_lo.x || p.y < box_lo.y || p.z < box_lo.z || p.x > box_hi.x || p.y > box_hi.y || p.z > box_hi.z) {
      return std::numeric_limits<double>::infinity();
    }
    double best = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i + 1 < points.size(); ++i) {
      const Vec3 ab = points[i + 1] - points[i];
      const double t = std::clamp(dot(p - points[i], ab) / dot(ab, ab), 0.0, 1.0);
      const double r = radii[i] + t * (radii[i + 1] - radii[i]);
      best = std::min(best, norm(p - (points[i] + ab * t)) - r);
    }
    return best;
  }
};

Tube segment(Vec3 a, Vec3 b, double ra, double rb) {
  Tube tube{{a, b}, {ra, rb}, {}, {}};
  tube.finish();
  return tube;
}

// ------------------------------------------------------------------------------------------------ anatomy
// All lengths in mm of a compact adult pelvis, patient frame: x patient-left, y posterior, z superior, origin on the
// body's axis at the volume's mid slice. The voxel grid sees it scaled by `scale`, turned by `yaw`, moved by `shift`.
enum class Tissue : uint8_t { Air, Fat, Muscle, PelvicFat, Prostate, Vesicle, Bladder, Rectum, Bowel, Bone };

struct Anatomy {
  double scale = 1, yaw = 0;
  Vec3 shift;
  double body_a = 0, body_b = 0, fat_thickness = 0;
  double fat_hu = -100, muscle_hu = 45;
  Ellipsoid pelvic_fat, prostate, bladder;
  Tube vesicles[2];
  Tube rectum;
  double rectum_wall_mm = 5, rectum_lumen_hu = -60;
  std::vector<Tube> bowel;
  std::vector<double> bowel_lumen_hu;
  Ellipsoid femoral_head[2];  // 0 = left (+x), 1 = right (-x)
  Tube femur_neck[2], femur_shaft[2];
  double femur_mask_floor_z[2] = {0, 0};  // Femur_L/R stop at the lesser trochanter, as usually contoured
  Ellipsoid ilium[2], sacrum;
  Tube pubis[2], ischium[2], coccyx;
};

Ellipsoid organ(Rng& rng, Vec3 centre, Vec3 semi, double max_tilt_deg, double lobes) {
  Ellipsoid e;
  e.centre = centre;
  e.semi = semi;
  e.rotation = Rotation::euler(rng.uniform(-max_tilt_deg, max_tilt_deg) * kDeg,
                               rng.uniform(-max_tilt_deg, max_tilt_deg) * kDeg * 0.5,
                               rng.uniform(-max_tilt_deg, max_tilt_deg) * kDeg);
  for (double& lobe : e.lobe) lobe = rng.uniform(-lobes, lobes);
  return e;
}

Anatomy make_anatomy(Rng& rng, double scale) {
  Anatomy a;
  a.scale = scale;
  a.yaw = rng.uniform(-4, 4) * kDeg;
  a.shift = {rng.uniform(-4, 4), rng.uniform(-4, 4), 0};
  a.body_a = rng.uniform(110, 120);
  a.body_b = rng.uniform(95, 107);
  a.fat_thickness = rng.uniform(10, 24);
  a.fat_hu = rng.uniform(-115, -85);
  a.muscle_hu = rng.uniform(38, 52);

  const Vec3 p{rng.uniform(-4, 4), rng.uniform(-6, 6), rng.uniform(-30, -10)};
  a.prostate = organ(rng, p, {rng.uniform(17, 24), rng.uniform(13, 18), rng.uniform(15, 22)}, 10, 0.08);
  const Vec3 ps = a.prostate.semi;

  for (int side = 0; side < 2; ++side) {
    const double sx = side == 0 ? 1 : -1;
    const Vec3 root = p + Vec3{sx * 5, 0.55 * ps.y, 0.7 * ps.z};
    const Vec3 tip = root + Vec3{sx * rng.uniform(16, 26), rng.uniform(3, 9), rng.uniform(12, 20)};
    a.vesicles[side] = segment(root, tip, rng.uniform(4.5, 6.5), rng.uniform(4.5, 7));
  }

  const Vec3 bladder_semi{rng.uniform(30, 45), rng.uniform(22, 34), rng.uniform(22, 34)};
  a.bladder = organ(rng, p + Vec3{rng.uniform(-5, 5), -rng.uniform(8, 16), ps.z + 0.8 * bladder_semi.z}, bladder_semi, 8, 0.1);

  // Rectum: posterior to the prostate, from the anal canal up to the recto-sigmoid, bending back along the sacrum
  // and to the left at the top.
  const double rectum_radius = rng.uniform(12, 17);
  const double rectum_y = p.y + ps.y + rectum_radius + rng.uniform(0, 3);
  for (double dz = -50; dz <= 75.1; dz += 25) {
    const double bend_back = std::max(0.0, dz - 20) * 0.12;
    const double bend_left = std::max(0.0, dz - 40) * 0.4;
    a.rectum.points.push_back({p.x + bend_left + rng.uniform(-3, 3), rectum_y + bend_back + rng.uniform(-2, 2), p.z + dz});
    a.rectum.radii.push_back(dz < -30 ? rectum_radius * 0.6 : rectum_radius * rng.uniform(0.9, 1.1));
  }
  a.rectum.finish();
  a.rectum_wall_mm = rng.uniform(4, 7);
  a.rectum_lumen_hu = rng.chance(0.4) ? rng.uniform(-850, -650) : rng.uniform(-90, 10);

  a.pelvic_fat = organ(rng, p + Vec3{0, 0, 35}, {rng.uniform(55, 65), rng.uniform(50, 58), 100}, 3, 0.05);

  // Small-bowel loops above the bladder: short random walks of tubes, kept anterior and within the pelvis.
  const double bowel_floor = a.bladder.centre.z + a.bladder.semi.z * 0.6;
  const int loops = 5 + static_cast<int>(rng.uniform() * 3);
  for (int loop = 0; loop < loops; ++loop) {
    Tube tube;
    Vec3 at{rng.uniform(-60, 60), rng.uniform(-60, 15), rng.uniform(bowel_floor, bowel_floor + 70)};
    const double radius = rng.uniform(9, 13);
    for (int step = 0; step < 6; ++step) {
      tube.points.push_back(at);
      tube.radii.push_back(radius);
      const double heading = rng.uniform(0, 2 * kPi);
      at = at + Vec3{std::cos(heading) * 24, std::sin(heading) * 18, rng.uniform(-10, 10)};
      at.x = std::clamp(at.x, -70.0, 70.0);
      at.y = std::clamp(at.y, -70.0, 20.0);
      at.z = std::max(at.z, bowel_floor);
    }
    tube.finish();
    a.bowel.push_back(tube);
    a.bowel_lumen_hu.push_back(rng.chance(0.3) ? rng.uniform(-800, -600) : rng.uniform(5, 30));
  }

  const double head_x = rng.uniform(68, 76), head_y = p.y + rng.uniform(-8, 4), head_z = p.z + rng.uniform(-4, 10);
  const double head_r = rng.uniform(21, 25);
  for (int side = 0; side < 2; ++side) {
    const double sx = side == 0 ? 1 : -1;
    const Vec3 head{sx * (head_x + rng.uniform(-2, 2)), head_y + rng.uniform(-2, 2), head_z + rng.uniform(-2, 2)};
    const double r = head_r + rng.uniform(-0.5, 0.5);
    a.femoral_head[side].centre = head;
    a.femoral_head[side].semi = {r, r, r};
    const Vec3 trochanter = head + Vec3{sx * 20, 4, -24};
    a.femur_neck[side] = segment(head, trochanter, 12, 10);
    a.femur_shaft[side] = segment(trochanter, trochanter + Vec3{-sx * 6, 4, -220}, 13, 12);
    a.femur_mask_floor_z[side] = head.z - 55;

    a.ilium[side].centre = head + Vec3{-sx * 4, 18, 62};
    a.ilium[side].semi = {8, 48, 52};
    a.ilium[side].rotation = Rotation::euler(0, 0, sx * 35 * kDeg);
    a.pubis[side] = segment(head + Vec3{-sx * 18, -18, -8}, Vec3{sx * 3, p.y - ps.y - 22, p.z - 12}, 9, 8);
    a.ischium[side] = segment(head + Vec3{-sx * 12, 14, -12}, head + Vec3{-sx * 26, 32, -48}, 10, 12);
  }
  // The sacrum slopes from the promontory (superior, anterior) down and back; the coccyx curls forward again.
  const double sacrum_y = std::min(std::max(a.rectum.box_hi.y + 20, head_y + 50), a.body_b - 35);
  a.sacrum.centre = {0, sacrum_y, head_z + 80};
  a.sacrum.semi = {42, 10, 50};
  a.sacrum.rotation = Rotation::euler(15 * kDeg, 0, 0);
  a.coccyx = segment({0, sacrum_y + 12, head_z + 35}, {0, sacrum_y + 2, head_z + 5}, 6, 4);
  return a;
}

// Structure bits while rasterising; the output masks follow synth_structure_names().
enum : uint8_t { kProstate = 1, kVesicle = 2, kBladder = 4, kRectum = 8, kBowel = 16, kFemurL = 32, kFemurR = 64 };

struct Voxel {
  double hu;
  uint8_t structures;
  bool body;
};

// Cortical shell over cancellous bone, from the distance to the bone's surface.
double bone_hu(double depth_mm) { return depth_mm < 2.5 ? 1150 : 380; }

Voxel classify(const Anatomy& a, Vec3 p) {
  Voxel v{-1000, 0, false};
  const double bx = p.x / a.body_a, by = p.y / a.body_b;
  if (bx * bx + by * by > 1) return v;
  v.body = true;
  const double ix = p.x / (a.body_a - a.fat_thickness), iy = p.y / (a.body_b - 0.8 * a.fat_thickness);
  const bool under_fat = ix * ix + iy * iy <= 1;
  v.hu = under_fat ? a.muscle_hu : a.fat_hu;
  if (under_fat && a.pelvic_fat.contains(p)) v.hu = a.fat_hu + 10;

  // Bones of the pelvis (CT only).
  for (int side = 0; side < 2; ++side) {
    const Ellipsoid& head = a.femoral_head[side];
    const Vec3 from_head = p - head.centre;
    const double d = norm(from_head);
    const double r = head.semi.x;
    const double medial_superior = (-(side == 0 ? 1 : -1) * from_head.x + from_head.z) / (std::sqrt(2.0) * std::max(d, 1e-9));
    if (d > r + 2.5 && d < r + 9 && medial_superior > -0.15) v.hu = bone_hu(std::min(d - r - 2.5, r + 9 - d));
    if (a.ilium[side].contains(p)) v.hu = bone_hu((1 - a.ilium[side].radius(p)) * a.ilium[side].semi.x);
    for (const Tube* tube : {&a.pubis[side], &a.ischium[side]}) {
      const double sd = tube->signed_distance(p);
      if (sd <= 0) v.hu = bone_hu(-sd);
    }
  }
  if (a.sacrum.contains(p)) v.hu = bone_hu((1 - a.sacrum.radius(p)) * a.sacrum.semi.y);
  if (const double sd = a.coccyx.signed_distance(p); sd <= 0) v.hu = bone_hu(-sd);

  // Soft organs, first match wins (the prostate indents the bladder base, and so on).
  if (a.prostate.contains(p)) {
    v.structures = kProstate;
    v.hu = a.muscle_hu - 5;
    return v;
  }
  for (const Tube& vesicle : a.vesicles) {
    if (vesicle.signed_distance(p) <= 0) {
      v.structures = kVesicle;
      v.hu = a.muscle_hu - 10;
      return v;
    }
  }
  if (a.bladder.contains(p)) {
    v.structures = kBladder;
    v.hu = a.bladder.radius(p) > 1 - 3.0 / a.bladder.semi.y ? a.muscle_hu - 5 : 8;  // wall, then urine
    return v;
  }
  if (const double sd = a.rectum.signed_distance(p); sd <= 0) {
    v.structures = kRectum;
    v.hu = -sd > a.rectum_wall_mm ? a.rectum_lumen_hu : a.muscle_hu;
    return v;
  }
  for (int side = 0; side < 2; ++side) {
    const double head_depth = a.femoral_head[side].semi.x - norm(p - a.femoral_head[side].centre);
    const double bone_depth = std::max({head_depth, -a.femur_neck[side].signed_distance(p), -a.femur_shaft[side].signed_distance(p)});
    if (bone_depth >= 0) {
      v.hu = bone_hu(bone_depth);
      if (p.z >= a.femur_mask_floor_z[side]) v.structures = side == 0 ? kFemurL : kFemurR;
      return v;
    }
  }
  for (size_t i = 0; i < a.bowel.size(); ++i) {
    const double sd = a.bowel[i].signed_distance(p);
    if (sd <= 0) {
      v.structures = kBowel;
      v.hu = -sd > 3 ? a.bowel_lumen_hu[i] : a.muscle_hu - 10;
      return v;
    }
  }
  return v;
}

// ------------------------------------------------------------------------------------------------ volumes
struct Grid {
  int64_t nz, ny, nx;
  double sz, sy, sx;
  int64_t size() const { return nz * ny * nx; }
  int64_t slice() const { return ny * nx; }
  // Voxel centre in mm from the volume's centre (the "world" frame of the beams).
  double wz(int64_t z) const { return (static_cast<double>(z) - 0.5 * (nz - 1)) * sz; }
  double wy(int64_t y) const { return (static_cast<double>(y) - 0.5 * (ny - 1)) * sy; }
  double wx(int64_t x) const { return (static_cast<double>(x) - 0.5 * (nx - 1)) * sx; }
};

// Voxels within `radius_mm` of `source` (a ball, using the real spacing), restricted to where `limit` is set.
std::vector<uint8_t> dilate(const Grid& g, const std::vector<uint8_t>& source, double radius_mm, const uint8_t* limit) {
  std::vector<uint8_t> out(source.size(), 0);
  int64_t lo[3] = {g.nz, g.ny, g.nx}, hi[3] = {-1, -1, -1};
  for (int64_t z = 0; z < g.nz; ++z)
    for (int64_t y = 0; y < g.ny; ++y)
      for (int64_t x = 0; x < g.nx; ++x)
        if (source[(z * g.ny + y) * g.nx + x]) {
          lo[0] = std::min(lo[0], z), lo[1] = std::min(lo[1], y), lo[2] = std::min(lo[2], x);
          hi[0] = std::max(hi[0], z), hi[1] = std::max(hi[1], y), hi[2] = std::max(hi[2], x);
        }
  if (hi[0] < 0) return out;
  const int64_t rz = static_cast<int64_t>(radius_mm / g.sz), ry = static_cast<int64_t>(radius_mm / g.sy),
                rx = static_cast<int64_t>(radius_mm / g.sx);
  struct Offset {
    int64_t dz, dy, dx;
  };
  std::vector<Offset> ball;
  for (int64_t dz = -rz; dz <= rz; ++dz)
    for (int64_t dy = -ry; dy <= ry; ++dy)
      for (int64_t dx = -rx; dx <= rx; ++dx) {
        const double d2 = dz * g.sz * dz * g.sz + dy * g.sy * dy * g.sy + dx * g.sx * dx * g.sx;
        if (d2 <= radius_mm * radius_mm + 1e-9) ball.push_back({dz, dy, dx});
      }
  // Nearest offsets first: most voxels near the source stop at the first hits.
  std::sort(ball.begin(), ball.end(), [&](const Offset& a, const Offset& b) {
    const double da = a.dz * a.dz * g.sz * g.sz + a.dy * a.dy * g.sy * g.sy + a.dx * a.dx * g.sx * g.sx;
    const double db = b.dz * b.dz * g.sz * g.sz + b.dy * b.dy * g.sy * g.sy + b.dx * b.dx * g.sx * g.sx;
    return da < db || (da == db && std::tie(a.dz, a.dy, a.dx) < std::tie(b.dz, b.dy, b.dx));
  });
  const int64_t z0 = std::max<int64_t>(0, lo[0] - rz), z1 = std::min(g.nz - 1, hi[0] + rz);
  at::parallel_for(z0, z1 + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t z = begin; z < end; ++z)
      for (int64_t y = std::max<int64_t>(0, lo[1] - ry); y <= std::min(g.ny - 1, hi[1] + ry); ++y)
        for (int64_t x = std::max<int64_t>(0, lo[2] - rx); x <= std::min(g.nx - 1, hi[2] + rx); ++x) {
          const int64_t i = (z * g.ny + y) * g.nx + x;
          if (limit && !limit[i]) continue;
          for (const auto& o : ball) {
            const int64_t zz = z + o.dz, yy = y + o.dy, xx = x + o.dx;
            if (zz < 0 || yy < 0 || xx < 0 || zz >= g.nz || yy >= g.ny || xx >= g.nx) continue;
            if (source[(zz * g.ny + yy) * g.nx + xx]) {
              out[i] = 1;
              break;
            }
          }
        }
  });
  return out;
}

// ------------------------------------------------------------------------------------------------ dose
// A VMAT-like plan: kBeams coplanar parallel beams around the isocentre. Each beam's fluence is an MLC-like aperture
// (one open interval per leaf pair = slice row: the hull of PTV56's beam's-eye projection) blurred by a sharp
// penumbra and a broad scatter Gaussian, times a smooth intensity modulation, attenuated with depth in homogeneous
// water after a short build-up. The modulation is found by a few multiplicative fluence-rescaling iterations (each
// beamlet scaled by the dose-weighted mean of goal/dose over the objective points on its ray): PTV70 -> 70 Gy,
// PTV56 away from PTV70 -> 56 Gy (SIB), rectum and bladder outside the targets pushed under a per-case limit (38 to
// 52 Gy, with a per-case weight). A last global
// scale sets D95(PTV70) = 70 Gy.
constexpr int kBeams = 60;
constexpr double kAttenuationPerMm = 0.005;  // about 6 MV beyond the build-up
constexpr double kBuildupMm = 5.0;
constexpr double kSurfaceDose = 0.45;
constexpr double kPenumbraSigmaMm = 2.5;      // 80-20 % width of about 4 mm
constexpr double kScatterSigmaMm = 18.0;
constexpr double kScatterFraction = 0.07;
constexpr double kFluenceBinMm = 1.0;
constexpr int kOptimiserIterations = 10;
constexpr double kOptimiserStep = 0.7;        // exponent of the multiplicative update (damping)
constexpr double kModulationSmoothingMm = 2.0;

std::vector<double> gaussian_kernel(double sigma_bins) {
  const int radius = std::max(1, static_cast<int>(std::ceil(4 * sigma_bins)));
  std::vector<double> kernel(2 * radius + 1);
  double sum = 0;
  for (int i = -radius; i <= radius; ++i) sum += kernel[i + radius] = std::exp(-0.5 * i * i / (sigma_bins * sigma_bins));
  for (double& k : kernel) k /= sum;
  return kernel;
}

// Separable blur of a [rows][cols] map with zero padding. Apertures are small in a large map, so only the
// neighbourhood of the non-zero entries is computed.
std::vector<double> blur2d(const std::vector<double>& map, int64_t rows, int64_t cols, const std::vector<double>& k_row,
                           const std::vector<double>& k_col) {
  std::vector<double> tmp(map.size(), 0), out(map.size(), 0);
  int64_t r0 = rows, r1 = -1, c0 = cols, c1 = -1;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (map[r * cols + c] != 0) r0 = std::min(r0, r), r1 = std::max(r1, r), c0 = std::min(c0, c), c1 = std::max(c1, c);
  if (r1 < 0) return out;
  const int64_t rc = static_cast<int64_t>(k_col.size() / 2), rr = static_cast<int64_t>(k_row.size() / 2);
  const int64_t out_c0 = std::max<int64_t>(0, c0 - rc), out_c1 = std::min(cols - 1, c1 + rc);
  const int64_t out_r0 = std::max<int64_t>(0, r0 - rr), out_r1 = std::min(rows - 1, r1 + rr);
  for (int64_t r = r0; r <= r1; ++r)
    for (int64_t c = out_c0; c <= out_c1; ++c) {
      double s = 0;
      for (int64_t k = std::max(-rc, c0 - c); k <= std::min(rc, c1 - c); ++k) s += k_col[k + rc] * map[r * cols + c + k];
      tmp[r * cols + c] = s;
    }
  for (int64_t r = out_r0; r <= out_r1; ++r)
    for (int64_t c = out_c0; c <= out_c1; ++c) {
      double s = 0;
      for (int64_t k = std::max(-rr, r0 - r); k <= std::min(rr, r1 - r); ++k) s += k_row[k + rr] * tmp[(r + k) * cols + c];
      out[r * cols + c] = s;
    }
  return out;
}

// Depth-dose: build-up to a maximum, then exponential fall-off; tabulated every 0.25 mm.
struct DepthDose {
  double step = 0.25;
  std::vector<float> table;
  explicit DepthDose(double max_depth) {
    table.resize(static_cast<size_t>(max_depth / step) + 2);
    for (size_t i = 0; i < table.size(); ++i) {
      const double d = static_cast<double>(i) * step;
      table[i] = static_cast<float>((1 - (1 - kSurfaceDose) * std::exp(-d / kBuildupMm)) * std::exp(-kAttenuationPerMm * d));
    }
  }
  float operator()(double depth) const {
    const double f = std::clamp(depth / step, 0.0, static_cast<double>(table.size() - 2));
    const size_t i = static_cast<size_t>(f);
    const float t = static_cast<float>(f - static_cast<double>(i));
    return table[i] + t * (table[i + 1] - table[i]);
  }
};

// The body is an elliptic cylinder: the depth of a voxel along a beam is the distance back to the ellipse.
struct BodyEllipse {
  double cy, cx, cos_yaw, sin_yaw, a, b;  // centre (mm, world), orientation, semi-axes (x, y in the patient frame)
  // Ellipse-normalised coordinates of a world offset or direction.
  void normalise(double dy, double dx, double& qy, double& qx) const {
    qx = (cos_yaw * dx + sin_yaw * dy) / a;
    qy = (-sin_yaw * dx + cos_yaw * dy) / b;
  }
};

// A point where dose is computed, with what every beam needs precomputed.
struct DosePoint {
  int64_t z;
  double wy, wx;      // world mm
  double qy, qx, qq;  // body-ellipse-normalised position, |q|^2 - 1
};

struct Beam {
  double cu, su;      // lateral axis u = (cos, sin) in (x, y)
  double ey, ex, ee, inv_ee;  // travel direction, body-normalised, its squared length and the inverse of that
  double u_offset;    // maps world position to the fluence map's u coordinate
};

DosePoint dose_point(const Grid& g, const BodyEllipse& body, int64_t z, int64_t y, int64_t x) {
  DosePoint p{z, g.wy(y), g.wx(x), 0, 0, 0};
  body.normalise(p.wy - body.cy, p.wx - body.cx, p.qy, p.qx);
  p.qq = p.qy * p.qy + p.qx * p.qx - 1;
  return p;
}

class Plan {
 public:
  Plan(const Grid& g, const BodyEllipse& body, double iso_y, double iso_x, const std::vector<DosePoint>& ptv56)
      : g_(g), body_(body), depth_dose_(2.2 * std::max(body.a, body.b) + 10) {
    u_max_ = 0.5 * std::hypot(g.ny * g.sy, g.nx * g.sx) + 4 * kScatterSigmaMm;
    nu_ = static_cast<int64_t>(std::ceil(2 * u_max_ / kFluenceBinMm)) + 1;
    for (int k = 0; k < kBeams; ++k) {
      const double gantry = 2 * kPi * k / kBeams;
      Beam beam;
      beam.cu = std::cos(gantry);
      beam.su = std::sin(gantry);
      // Travel direction perpendicular to u: gantry 0 enters anteriorly and travels to +y (posterior).
      body.normalise(beam.cu, -beam.su, beam.ey, beam.ex);
      beam.ee = beam.ex * beam.ex + beam.ey * beam.ey;
      beam.inv_ee = 1 / beam.ee;
      beam.u_offset = -(iso_x * beam.cu + iso_y * beam.su) + u_max_;
      beams_.push_back(beam);
    }
    make_apertures(ptv56);
    modulation_.assign(aperture_.size(), 1.f);
    fluence_ = aperture_;
  }

  // Depth-dose of beam k at point p; `fu` receives the fluence-map coordinate.
  float depth_dose_at(int k, const DosePoint& p, double& fu) const {
    const Beam& beam = beams_[k];
    // Entry point: the ray p - t*d meets the ellipse at the larger root of |q - t e|^2 = 1.
    const double qe = p.qx * beam.ex + p.qy * beam.ey;
    const double depth = (qe + std::sqrt(std::max(0.0, qe * qe - beam.ee * p.qq))) * beam.inv_ee;
    fu = (p.wx * beam.cu + p.wy * beam.su + beam.u_offset) / kFluenceBinMm;
    return depth_dose_(depth);
  }

  // Modulated fluence of beam k on row z at map coordinate fu (linear interpolation).
  float fluence(int k, int64_t z, double fu) const {
    const int64_t iu = std::clamp<int64_t>(static_cast<int64_t>(fu), 0, nu_ - 2);
    const float t = static_cast<float>(fu - static_cast<double>(iu));
    const int64_t at = (static_cast<int64_t>(k) * g_.nz + z) * nu_ + iu;
    return fluence_[at] + t * (fluence_[at + 1] - fluence_[at]);
  }

  // Dose at points that all lie on slice z, beam by beam (the same sums, in the same order, as dose()).
  void dose_on_slice(int64_t z, const std::vector<DosePoint>& points, float* out) const {
    std::fill(out, out + points.size(), 0.f);
    for (int k = 0; k < kBeams; ++k) {
      const float* row = fluence_.data() + (static_cast<int64_t>(k) * g_.nz + z) * nu_;
      for (size_t j = 0; j < points.size(); ++j) {
        double fu;
        const float dd = depth_dose_at(k, points[j], fu);
        const int64_t iu = std::clamp<int64_t>(static_cast<int64_t>(fu), 0, nu_ - 2);
        const float t = static_cast<float>(fu - static_cast<double>(iu));
        out[j] += dd * (row[iu] + t * (row[iu + 1] - row[iu]));
      }
    }
  }

  float dose(const DosePoint& p) const {
    float sum = 0;
    for (int k = 0; k < kBeams; ++k) {
      double fu;
      const float dd = depth_dose_at(k, p, fu);
      sum += dd * fluence(k, p.z, fu);
    }
    return sum;
  }

  // Where each beam meets each point: depth-dose and fluence-map coordinate, fixed while the modulation changes.
  struct Footprint {
    std::vector<float> depth_dose, fu;  // [point][beam]
  };
  Footprint footprint(const std::vector<DosePoint>& points) const {
    Footprint f;
    f.depth_dose.resize(points.size() * kBeams);
    f.fu.resize(points.size() * kBeams);
    at::parallel_for(0, static_cast<int64_t>(points.size()), 256, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j)
        for (int k = 0; k < kBeams; ++k) {
          double fu;
          f.depth_dose[j * kBeams + k] = depth_dose_at(k, points[j], fu);
          f.fu[j * kBeams + k] = static_cast<float>(fu);
        }
    });
    return f;
  }

  // One fluence-rescaling iteration over the objective points: goal[j] > 0 asks for exactly goal[j] Gy, goal[j] < 0
  // for at most -goal[j] Gy.
  void rescale(const std::vector<DosePoint>& points, const Footprint& where, const std::vector<float>& goal,
               const std::vector<float>& weight) {
    const int64_t n = static_cast<int64_t>(points.size());
    std::vector<float> contribution(where.depth_dose.size()), dose_at(points.size());
    at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        float sum = 0;
        for (int k = 0; k < kBeams; ++k) {
          const int64_t jk = j * kBeams + k;
          sum += contribution[jk] = where.depth_dose[jk] * fluence(k, points[j].z, where.fu[jk]);
        }
        dose_at[j] = std::max(sum, 1e-6f);
      }
    });
    std::vector<float> ratio(points.size());
    for (int64_t j = 0; j < n; ++j) ratio[j] = goal[j] > 0 ? goal[j] / dose_at[j] : std::min(1.f, -goal[j] / dose_at[j]);
    const auto kernel = gaussian_kernel(kModulationSmoothingMm / kFluenceBinMm);
    const int64_t radius = static_cast<int64_t>(kernel.size() / 2);
    at::parallel_for(0, kBeams, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> num(g_.nz * nu_), den(g_.nz * nu_), correction(nu_);
      for (int64_t k = begin; k < end; ++k) {
        std::fill(num.begin(), num.end(), 0.0);
        std::fill(den.begin(), den.end(), 0.0);
        for (int64_t j = 0; j < n; ++j) {
          const int64_t jk = j * kBeams + k;
          const double share = contribution[jk] / dose_at[j] * weight[j];
          const double fu = where.fu[jk];
          const int64_t iu = std::clamp<int64_t>(static_cast<int64_t>(fu), 0, nu_ - 2);
          const double t = fu - static_cast<double>(iu);
          const int64_t bin = points[j].z * nu_ + iu;
          num[bin] += (1 - t) * share * ratio[j], den[bin] += (1 - t) * share;
          num[bin + 1] += t * share * ratio[j], den[bin + 1] += t * share;
        }
        for (int64_t z = 0; z < g_.nz; ++z) {
          const double* row_num = num.data() + z * nu_;
          const double* row_den = den.data() + z * nu_;
          int64_t first = nu_, last = -1;
          for (int64_t i = 0; i < nu_; ++i)
            if (row_den[i] > 0) first = std::min(first, i), last = i;
          if (last < 0) continue;
          // Smoothed correction (normalised convolution) inside the visited span, held constant beyond it.
          const int64_t lo = std::max<int64_t>(0, first - radius), hi = std::min(nu_ - 1, last + radius);
          for (int64_t i = lo; i <= hi; ++i) {
            double num_sum = 0, den_sum = 0;
            for (int64_t o = std::max(-radius, first - i); o <= std::min(radius, last - i); ++o)
              num_sum += kernel[o + radius] * row_num[i + o], den_sum += kernel[o + radius] * row_den[i + o];
            correction[i] = den_sum > 0 ? std::pow(num_sum / den_sum, kOptimiserStep) : 1.0;
          }
          const int64_t row = (k * g_.nz + z) * nu_;
          for (int64_t i = 0; i < nu_; ++i) {
            float& m = modulation_[row + i];
            m = static_cast<float>(std::clamp(m * correction[std::clamp(i, lo, hi)], 0.05, 5.0));
            fluence_[row + i] = aperture_[row + i] * m;
          }
        }
      }
    });
  }

  void scale(double factor) {
    for (size_t i = 0; i < modulation_.size(); ++i) {
      modulation_[i] = static_cast<float>(modulation_[i] * factor);
      fluence_[i] = aperture_[i] * modulation_[i];
    }
  }

 private:
  void make_apertures(const std::vector<DosePoint>& ptv56) {
    aperture_.assign(static_cast<size_t>(kBeams) * g_.nz * nu_, 0.f);
    const auto k_u_pen = gaussian_kernel(kPenumbraSigmaMm / kFluenceBinMm), k_z_pen = gaussian_kernel(kPenumbraSigmaMm / g_.sz);
    const auto k_u_sca = gaussian_kernel(kScatterSigmaMm / kFluenceBinMm), k_z_sca = gaussian_kernel(kScatterSigmaMm / g_.sz);
    at::parallel_for(0, kBeams, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const Beam& beam = beams_[k];
        // A voxel projects to an interval as wide as its footprint across the beam.
        const double half_width = 0.5 * (std::fabs(beam.cu) * g_.sx + std::fabs(beam.su) * g_.sy);
        std::vector<double> lo(g_.nz, std::numeric_limits<double>::infinity()), hi(g_.nz, -std::numeric_limits<double>::infinity());
        for (const auto& p : ptv56) {
          const double u = p.wx * beam.cu + p.wy * beam.su + beam.u_offset - u_max_;
          lo[p.z] = std::min(lo[p.z], u - half_width);
          hi[p.z] = std::max(hi[p.z], u + half_width);
        }
        std::vector<double> open(g_.nz * nu_, 0);
        for (int64_t z = 0; z < g_.nz; ++z) {
          if (!(lo[z] < hi[z])) continue;
          for (int64_t i = 0; i < nu_; ++i) {
            const double u0 = -u_max_ + (static_cast<double>(i) - 0.5) * kFluenceBinMm;  // coverage anti-aliases
            const double covered = std::min(hi[z], u0 + kFluenceBinMm) - std::max(lo[z], u0);
            if (covered > 0) open[z * nu_ + i] = covered / kFluenceBinMm;
          }
        }
        const auto primary = blur2d(open, g_.nz, nu_, k_z_pen, k_u_pen);
        const auto scatter = blur2d(open, g_.nz, nu_, k_z_sca, k_u_sca);
        float* out = aperture_.data() + k * g_.nz * nu_;
        for (int64_t i = 0; i < g_.nz * nu_; ++i)
          out[i] = static_cast<float>((1 - kScatterFraction) * primary[i] + kScatterFraction * scatter[i]);
      }
    });
  }

  const Grid& g_;
  BodyEllipse body_;
  DepthDose depth_dose_;
  std::vector<Beam> beams_;
  double u_max_ = 0;
  int64_t nu_ = 0;
  std::vector<float> aperture_;    // [beam][z][u]: blurred open aperture, primary + scatter
  std::vector<float> modulation_;  // [beam][z][u]: intensity found by the optimiser
  std::vector<float> fluence_;     // aperture x modulation
};

// Dose received by at least `fraction` of the values (D95 for 0.95): the (1 - fraction) quantile from below.
double dose_covering(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  const size_t k = static_cast<size_t>(std::floor((1 - fraction) * static_cast<double>(values.size() - 1)));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

}  // namespace

const std::vector<std::string>& synth_structure_names() {
  static const std::vector<std::string> names{"PTV70", "PTV56", "Prostate", "Rectum", "Bladder", "Femur_L", "Femur_R", "Bowel"};
  return names;
}

SynthCase generate_synth_case(uint64_t seed, int index, std::array<int64_t, 3> shape_zyx, std::array<double, 3> spacing_mm) {
  for (int axis = 0; axis < 3; ++axis) {
    require(shape_zyx[axis] >= 16 && shape_zyx[axis] <= 1024,
            "synthetic case shape must be 16 to 1024 voxels per axis, got " + std::to_string(shape_zyx[axis]));
    require(std::isfinite(spacing_mm[axis]) && spacing_mm[axis] > 0 && spacing_mm[axis] <= 20,
            "synthetic case spacing must be in (0, 20] mm per axis, got " + std::to_string(spacing_mm[axis]));
  }
  require(index >= 0 && index < 100000, "synthetic case index must be 0 to 99999, got " + std::to_string(index));

  const Grid g{shape_zyx[0], shape_zyx[1], shape_zyx[2], spacing_mm[0], spacing_mm[1], spacing_mm[2]};
  const uint64_t case_key = hash64(seed ^ hash64(0x5EED0000ull + static_cast<uint64_t>(index)));
  Rng rng(case_key);
  // The compact pelvis spans about +-128 mm (x), +-118 mm (y), +-120 mm (z, bowel to femoral shafts).
  const double scale = std::min({1.0, 0.5 * g.nx * g.sx / 128.0, 0.5 * g.ny * g.sy / 118.0, 0.5 * g.nz * g.sz / 120.0});
  const Anatomy anatomy = make_anatomy(rng, scale);
  const double noise_sigma_hu = rng.uniform(10, 16);
  // Planners trade rectum and bladder sparing against target coverage differently: the achieved constraint values
  // then vary between cases, as the model's constraint input expects.
  const double oar_limit_gy = rng.uniform(30, 50), oar_weight = rng.uniform(0.1, 0.8);

  SynthCase out;
  char id[32];
  std::snprintf(id, sizeof id, "synth_%03d", index);
  out.case_id = id;
  out.shape = shape_zyx;
  out.spacing_mm = spacing_mm;
  out.structures = synth_structure_names();
  out.ct = torch::empty({g.nz, g.ny, g.nx}, torch::kInt16);
  out.body = torch::empty({g.nz, g.ny, g.nx}, torch::kUInt8);
  std::vector<uint8_t> labels(g.size());
  int16_t* ct = out.ct.data_ptr<int16_t>();
  uint8_t* body = out.body.data_ptr<uint8_t>();

  const double cos_yaw = std::cos(anatomy.yaw), sin_yaw = std::sin(anatomy.yaw);
  at::parallel_for(0, g.nz, 1, [&](int64_t begin, int64_t end) {
    for (int64_t z = begin; z < end; ++z)
      for (int64_t y = 0; y < g.ny; ++y)
        for (int64_t x = 0; x < g.nx; ++x) {
          const int64_t i = (z * g.ny + y) * g.nx + x;
          const double dx = g.wx(x) - scale * anatomy.shift.x, dy = g.wy(y) - scale * anatomy.shift.y;
          const Vec3 p{(cos_yaw * dx + sin_yaw * dy) / scale, (-sin_yaw * dx + cos_yaw * dy) / scale, g.wz(z) / scale};
          const Voxel v = classify(anatomy, p);
          const double noise = voxel_normal(case_key, static_cast<uint64_t>(i)) * (v.body ? noise_sigma_hu : 4.0);
          ct[i] = static_cast<int16_t>(std::clamp(std::lround(v.hu + noise), -1024l, 3071l));
          body[i] = v.body ? 1 : 0;
          labels[i] = v.structures;
        }
  });

  // Planning target volumes (margins scale with the anatomy).
  std::vector<uint8_t> prostate(g.size()), prostate_and_vesicles(g.size());
  for (int64_t i = 0; i < g.size(); ++i) {
    prostate[i] = (labels[i] & kProstate) ? 1 : 0;
    prostate_and_vesicles[i] = (labels[i] & (kProstate | kVesicle)) ? 1 : 0;
  }
  const std::vector<uint8_t> ptv70 = dilate(g, prostate, 5.0 * scale, body);
  std::vector<uint8_t> ptv56 = dilate(g, prostate_and_vesicles, 7.0 * scale, body);
  for (int64_t i = 0; i < g.size(); ++i) ptv56[i] |= ptv70[i];

  const BodyEllipse body_ellipse{scale * anatomy.shift.y, scale * anatomy.shift.x, cos_yaw, sin_yaw,
                                 scale * anatomy.body_a, scale * anatomy.body_b};
  // Objective points: PTV70 (70 Gy), PTV56 outside a transition zone around PTV70 (56 Gy), and rectum and bladder
  // outside a zone around PTV56 (at most the case's limit, weaker).
  const std::vector<uint8_t> near70 = dilate(g, ptv70, 4.0 * scale, body);
  const std::vector<uint8_t> near56 = dilate(g, ptv56, 3.0 * scale, body);
  std::vector<DosePoint> ptv56_points, objective, ptv70_points;
  std::vector<float> goal, weight;
  double iso[3] = {0, 0, 0};
  for (int64_t z = 0; z < g.nz; ++z)
    for (int64_t y = 0; y < g.ny; ++y)
      for (int64_t x = 0; x < g.nx; ++x) {
        const int64_t i = (z * g.ny + y) * g.nx + x;
        if (!body[i]) continue;
        const DosePoint p = dose_point(g, body_ellipse, z, y, x);
        if (ptv56[i]) ptv56_points.push_back(p);
        if (ptv70[i]) {
          ptv70_points.push_back(p);
          objective.push_back(p), goal.push_back(70.f), weight.push_back(1.f);
          iso[0] += g.wz(z), iso[1] += p.wy, iso[2] += p.wx;
        } else if (ptv56[i] && !near70[i]) {
          objective.push_back(p), goal.push_back(56.f), weight.push_back(1.f);
        } else if ((labels[i] & (kRectum | kBladder)) && !near56[i] && (x + y) % 2 == 0) {  // sampled: cheaper
          objective.push_back(p), goal.push_back(static_cast<float>(-oar_limit_gy)), weight.push_back(static_cast<float>(oar_weight));
        }
      }
  require(!ptv70_points.empty(),
          "the synthetic case's field of view is too small or too coarse to hold a prostate; use a finer spacing or more voxels");
  for (double& c : iso) c /= static_cast<double>(ptv70_points.size());

  Plan plan(g, body_ellipse, iso[1], iso[2], ptv56_points);
  const Plan::Footprint footprint = plan.footprint(objective);
  for (int iteration = 0; iteration < kOptimiserIterations; ++iteration) plan.rescale(objective, footprint, goal, weight);
  {
    std::vector<double> values(ptv70_points.size());
    for (size_t j = 0; j < ptv70_points.size(); ++j) values[j] = plan.dose(ptv70_points[j]);
    plan.scale(70.0 / dose_covering(std::move(values), 0.95));
  }

  out.dose = torch::zeros({g.nz, g.ny, g.nx}, torch::kFloat);
  float* dose = out.dose.data_ptr<float>();
  at::parallel_for(0, g.nz, 1, [&](int64_t begin, int64_t end) {
    std::vector<DosePoint> points;
    std::vector<float> values;
    for (int64_t z = begin; z < end; ++z) {
      points.clear();
      for (int64_t y = 0; y < g.ny; ++y)
        for (int64_t x = 0; x < g.nx; ++x)
          if (body[(z * g.ny + y) * g.nx + x]) points.push_back(dose_point(g, body_ellipse, z, y, x));
      values.resize(points.size());
      plan.dose_on_slice(z, points, values.data());
      size_t j = 0;
      for (int64_t i = z * g.slice(); i < (z + 1) * g.slice(); ++i)
        if (body[i]) dose[i] = values[j++];
    }
  });

  // Masks in the canonical order.
  out.masks = torch::zeros({8, g.nz, g.ny, g.nx}, torch::kUInt8);
  uint8_t* masks = out.masks.data_ptr<uint8_t>();
  const uint8_t bits[8] = {0, 0, kProstate, kRectum, kBladder, kFemurL, kFemurR, kBowel};
  for (int64_t i = 0; i < g.size(); ++i) {
    masks[0 * g.size() + i] = ptv70[i];
    masks[1 * g.size() + i] = ptv56[i];
    for (int s = 2; s < 8; ++s) masks[s * g.size() + i] = (labels[i] & bits[s]) ? 1 : 0;
  }

  // Achieved values in the constraint vector's slots (data.md).
  auto fraction_at_least = [&](uint8_t structure_bits, double gy) {
    int64_t n = 0, hit = 0;
    for (int64_t i = 0; i < g.size(); ++i)
      if (labels[i] & structure_bits) ++n, hit += dose[i] >= gy;
    return n == 0 ? 0.0 : static_cast<double>(hit) / static_cast<double>(n);
  };
  double rectum_max = 0;
  int64_t bowel_v45 = 0;
  for (int64_t i = 0; i < g.size(); ++i) {
    if (labels[i] & kRectum) rectum_max = std::max(rectum_max, static_cast<double>(dose[i]));
    if ((labels[i] & kBowel) && dose[i] >= 45) ++bowel_v45;
  }
  const double voxel_cc = g.sz * g.sy * g.sx / 1000.0;
  const float constraints[13] = {
      1.0f, 0.8f, 0.0f,
      static_cast<float>(fraction_at_least(kRectum, 50)), static_cast<float>(fraction_at_least(kRectum, 60)),
      static_cast<float>(fraction_at_least(kRectum, 70)), static_cast<float>(rectum_max / 70.0),
      static_cast<float>(fraction_at_least(kBladder, 65)), static_cast<float>(fraction_at_least(kBladder, 70)),
      static_cast<float>(fraction_at_least(kBladder, 75)),
      static_cast<float>(fraction_at_least(kFemurL | kFemurR, 50)),
      static_cast<float>(bowel_v45 * voxel_cc / 500.0), static_cast<float>(45.0 / 70.0)};
  out.constraints = torch::from_blob(const_cast<float*>(constraints), {13}, torch::kFloat).clone();

  out.plan.beams = kBeams;
  out.plan.attenuation_per_mm = kAttenuationPerMm;
  out.plan.penumbra_sigma_mm = kPenumbraSigmaMm;
  out.plan.optimiser_iterations = kOptimiserIterations;
  out.plan.oar_limit_gy = oar_limit_gy;
  out.plan.oar_weight = oar_weight;
  out.plan.isocentre_mm = {iso[0] + 0.5 * (g.nz - 1) * g.sz, iso[1] + 0.5 * (g.ny - 1) * g.sy, iso[2] + 0.5 * (g.nx - 1) * g.sx};
  return out;
}

}  // namespace vmat
