#pragma once
// The synthetic prostate SIB cohort: anatomy, CT and a VMAT-like dose made natively, deterministic per (seed, index).
//
// Conventions (DICOM LPS with identity direction cosines):
//  - volumes are [Z,Y,X]; x (column) grows towards the patient's Left, y (row) towards Posterior, z (slice) towards
//    Superior. So Femur_L lies at larger x, the rectum at larger y than the prostate, the bladder at larger z.
//  - PTV56 contains PTV70 (clinical SIB structure sets): PTV70 = prostate + 5 mm, PTV56 = (prostate + seminal
//    vesicles) + 7 mm, united with PTV70; both clipped to the body.
//  - The anatomy of a compact adult pelvis (about 240 x 180 mm) is scaled by one factor so that it fits the field of
//    view (about 1 for the default 96x128x128 grid at 2.5x2x2 mm); margins scale with it, dose physics does not.
// Randomness comes from a fixed splitmix64 stream (and counter-based hashing for per-voxel noise), never from std::
// distributions, so a (seed, index) gives the same bytes with any standard library and any thread count.
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace vmat {

// Bumped whenever the same (seed, index, shape, spacing) would give different bytes.
inline constexpr const char* kSynthGeneratorVersion = "1.0.0";

// Canonical structure order of the masks (data.md).
const std::vector<std::string>& synth_structure_names();

struct SynthPlanSummary {
  int beams = 0;                      // coplanar gantry angles, equally spaced over 360 degrees
  double attenuation_per_mm = 0;      // exponential fall-off with depth beyond build-up
  double penumbra_sigma_mm = 0;       // Gaussian blur of the aperture edges
  int optimiser_iterations = 0;       // fluence-rescaling iterations
  double oar_limit_gy = 0;            // rectum and bladder objective outside the targets: at most this dose,
  double oar_weight = 0;              // with this weight relative to the targets'
  std::array<double, 3> isocentre_mm{};  // (z, y, x) from the volume's first voxel centre
};

struct SynthCase {
  std::string case_id;                // synth_%03d
  std::array<int64_t, 3> shape{};     // (Z, Y, X)
  std::array<double, 3> spacing_mm{}; // (z, y, x)
  at::Tensor ct;                      // int16 [Z,Y,X], HU
  at::Tensor dose;                    // float32 [Z,Y,X], Gy
  at::Tensor masks;                   // uint8 [8,Z,Y,X], synth_structure_names() order
  at::Tensor body;                    // uint8 [Z,Y,X]
  at::Tensor constraints;             // float32 [13], achieved values (data.md)
  std::vector<std::string> structures;
  SynthPlanSummary plan;
};

// Makes case `index` of the cohort `seed`. Each dimension of shape must be at least 16 voxels and spacing in
// (0, 20] mm. Runs on libtorch's intra-op thread pool (at::parallel_for); the result does not depend on its size.
SynthCase generate_synth_case(uint64_t seed, int index, std::array<int64_t, 3> shape_zyx,
                              std::array<double, 3> spacing_mm);

}  // namespace vmat
