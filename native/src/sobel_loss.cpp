// Fused Sobel gradient loss (spec/model.md), CPU side and autograd registration.
//
// The loss is linear in u = p - t before the absolute value: mean_k,v |(G_k * u)[v]| / 3. Forward reads p and t
// plane by plane (u for three planes in a small ring), never materialising gradient volumes. Backward: with
// S_k = sign(G_k * u), d loss / d u = (1 / 3N) * sum_k (S_k correlated with the flipped G_k) = -(1 / 3N) *
// sum_k (G_k * S_k), because each G_k is odd along its derivative axis; S planes are recomputed in a ring of three
// planes next to the gradient plane being written. Both passes run over chunks of planes with at::parallel_for.
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "sobel_loss_cuda.h"
#include "vmat/error.h"
#include "vmat/shape_text.h"
#include "vmat/losses.h"

#ifdef VMAT_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace vmat {

namespace {

constexpr float kSmooth[3] = {1.f, 2.f, 1.f};
constexpr float kDiff[3] = {-1.f, 0.f, 1.f};
constexpr float kNorm = 1.f / 32.f;  // sum of absolute kernel values
// Planes per parallel chunk: fixed (not per thread count) so the forward sum is the same for any thread count.
constexpr int64_t kPlanesPerChunk = 16;

struct Geometry {
  int64_t volumes, depth, height, width;
  int64_t plane() const { return height * width; }
  int64_t planes() const { return volumes * depth; }
  int64_t voxels() const { return planes() * plane(); }
};

// acc[x] += w * (r[x-1] + 2 r[x] + r[x+1]), zero outside the row.
inline void add_smoothed(float* acc, const float* r, float w, int64_t width) {
  if (width == 1) {
    acc[0] += w * 2.f * r[0];
    return;
  }
  acc[0] += w * (2.f * r[0] + r[1]);
  for (int64_t x = 1; x < width - 1; ++x) acc[x] += w * (r[x - 1] + 2.f * r[x] + r[x + 1]);
  acc[width - 1] += w * (r[width - 2] + 2.f * r[width - 1]);
}

// acc[x] += w * (r[x+1] - r[x-1]), zero outside the row.
inline void add_difference(float* acc, const float* r, float w, int64_t width) {
  if (width == 1) return;
  acc[0] += w * r[1];
  for (int64_t x = 1; x < width - 1; ++x) acc[x] += w * (r[x + 1] - r[x - 1]);
  acc[width - 1] -= w * r[width - 2];
}

// Unnormalised Sobel components of row y of the middle plane: gz from field_z, gy from field_y, gx from field_x.
// Each field is given as its planes z-1, z, z+1 (nullptr outside the volume).
void sobel_row(const float* const field_z[3], const float* const field_y[3], const float* const field_x[3],
               const Geometry& g, int64_t y, float* gz, float* gy, float* gx) {
  std::fill(gz, gz + g.width, 0.f);
  std::fill(gy, gy + g.width, 0.f);
  std::fill(gx, gx + g.width, 0.f);
  for (int a = 0; a < 3; ++a) {
    for (int b = 0; b < 3; ++b) {
      const int64_t row = y + b - 1;
      if (row < 0 || row >= g.height) continue;
      const int64_t offset = row * g.width;
      if (a != 1 && field_z[a]) add_smoothed(gz, field_z[a] + offset, kDiff[a] * kSmooth[b], g.width);
      if (b != 1 && field_y[a]) add_smoothed(gy, field_y[a] + offset, kSmooth[a] * kDiff[b], g.width);
      if (field_x[a]) add_difference(gx, field_x[a] + offset, kSmooth[a] * kSmooth[b], g.width);
    }
  }
}

// A ring of three consecutive planes of u = p - t, filled on demand (access is monotone in z).
class DifferenceRing {
 public:
  DifferenceRing(const float* p, const float* t, const Geometry& g) : p_(p), t_(t), g_(g), data_(3 * g.plane()) {}
  const float* get(int64_t volume, int64_t z) {
    if (z < 0 || z >= g_.depth) return nullptr;
    const int64_t key = volume * g_.depth + z;
    float* slot = data_.data() + (z % 3) * g_.plane();
    if (tags_[z % 3] != key) {
      const float* ps = p_ + key * g_.plane();
      const float* ts = t_ + key * g_.plane();
      for (int64_t i = 0; i < g_.plane(); ++i) slot[i] = ps[i] - ts[i];
      tags_[z % 3] = key;
    }
    return slot;
  }

 private:
  const float* p_;
  const float* t_;
  Geometry g_;
  std::vector<float> data_;
  int64_t tags_[3] = {-1, -1, -1};
};

double sobel_l1_sum_cpu(const float* p, const float* t, const Geometry& g) {
  const int64_t chunks = (g.planes() + kPlanesPerChunk - 1) / kPlanesPerChunk;
  std::vector<double> partial(chunks, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    DifferenceRing u(p, t, g);
    std::vector<float> rows(3 * g.width);
    float* gz = rows.data();
    float* gy = gz + g.width;
    float* gx = gy + g.width;
    for (int64_t chunk = first; chunk < last; ++chunk) {
      double sum = 0.0;
      const int64_t end = std::min(g.planes(), (chunk + 1) * kPlanesPerChunk);
      for (int64_t plane = chunk * kPlanesPerChunk; plane < end; ++plane) {
        const int64_t volume = plane / g.depth, z = plane % g.depth;
        const float* field[3] = {u.get(volume, z - 1), u.get(volume, z), u.get(volume, z + 1)};
        for (int64_t y = 0; y < g.height; ++y) {
          sobel_row(field, field, field, g, y, gz, gy, gx);
          float row_sum = 0.f;
          for (int64_t x = 0; x < g.width; ++x) row_sum += std::fabs(gz[x]) + std::fabs(gy[x]) + std::fabs(gx[x]);
          sum += row_sum;
        }
      }
      partial[chunk] = sum;
    }
  });
  double total = 0.0;
  for (const double value : partial) total += value;
  return total * kNorm;
}

inline float sign_of(float value) { return static_cast<float>((value > 0.f) - (value < 0.f)); }

// grad_p = coefficient * sum_k (G_k * S_k) (unnormalised kernels), grad_t = -grad_p; either may be null.
void sobel_l1_backward_cpu(const float* p, const float* t, const Geometry& g, float coefficient, float* grad_p,
                           float* grad_t) {
  const int64_t chunks = (g.planes() + kPlanesPerChunk - 1) / kPlanesPerChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    DifferenceRing u(p, t, g);
    // Ring of three sign planes, each with its three components (z, y, x).
    std::vector<float> signs(9 * g.plane());
    int64_t sign_tags[3] = {-1, -1, -1};
    std::vector<float> rows(3 * g.width);
    float* gz = rows.data();
    float* gy = gz + g.width;
    float* gx = gy + g.width;
    // Returns the component-k sign plane of plane z (nullptr outside the volume).
    auto sign_plane = [&](int64_t volume, int64_t z, int component) -> const float* {
      if (z < 0 || z >= g.depth) return nullptr;
      const int64_t key = volume * g.depth + z;
      float* slot = signs.data() + (z % 3) * 3 * g.plane();
      if (sign_tags[z % 3] != key) {
        const float* field[3] = {u.get(volume, z - 1), u.get(volume, z), u.get(volume, z + 1)};
        for (int64_t y = 0; y < g.height; ++y) {
          sobel_row(field, field, field, g, y, gz, gy, gx);
          float* sz = slot + y * g.width;
          float* sy = sz + g.plane();
          float* sx = sy + g.plane();
          for (int64_t x = 0; x < g.width; ++x) {
            sz[x] = sign_of(gz[x]);
            sy[x] = sign_of(gy[x]);
            sx[x] = sign_of(gx[x]);
          }
        }
        sign_tags[z % 3] = key;
      }
      return slot + component * g.plane();
    };
    for (int64_t chunk = first; chunk < last; ++chunk) {
      const int64_t end = std::min(g.planes(), (chunk + 1) * kPlanesPerChunk);
      for (int64_t plane = chunk * kPlanesPerChunk; plane < end; ++plane) {
        const int64_t volume = plane / g.depth, z = plane % g.depth;
        // Fill the three sign planes in increasing z (the u ring only moves forward).
        for (int64_t dz = -1; dz <= 1; ++dz) sign_plane(volume, z + dz, 0);
        const float* field_z[3];
        const float* field_y[3];
        const float* field_x[3];
        for (int a = 0; a < 3; ++a) {
          field_z[a] = sign_plane(volume, z + a - 1, 0);
          field_y[a] = sign_plane(volume, z + a - 1, 1);
          field_x[a] = sign_plane(volume, z + a - 1, 2);
        }
        for (int64_t y = 0; y < g.height; ++y) {
          sobel_row(field_z, field_y, field_x, g, y, gz, gy, gx);
          const int64_t offset = plane * g.plane() + y * g.width;
          for (int64_t x = 0; x < g.width; ++x) {
            const float value = coefficient * (gz[x] + gy[x] + gx[x]);
            if (grad_p) grad_p[offset + x] = value;
            if (grad_t) grad_t[offset + x] = -value;
          }
        }
      }
    }
  });
}


constexpr int64_t kMaxPlanesPerThread = 1024;

int64_t initial_planes_per_thread() {
  const char* value = std::getenv("VMAT_SOBEL_PLANES_PER_THREAD");
  if (value == nullptr || *value == '\0') return 16;
  char* end = nullptr;
  const long long planes = std::strtoll(value, &end, 10);
  require(*end == '\0' && planes >= 1 && planes <= kMaxPlanesPerThread,
          std::string("VMAT_SOBEL_PLANES_PER_THREAD must be an integer from 1 to ") +
              std::to_string(kMaxPlanesPerThread) + ", got '" + value + "'");
  return planes;
}

std::atomic<int64_t>& planes_per_thread() {
  static std::atomic<int64_t> current{initial_planes_per_thread()};
  return current;
}

Geometry geometry_of(const at::Tensor& p) { return {p.size(0) * p.size(1), p.size(2), p.size(3), p.size(4)}; }

#ifdef VMAT_WITH_CUDA
// Forward on CUDA: the loss and the packed signs (uint8, p's shape) that backward filters into the gradient.
std::pair<at::Tensor, at::Tensor> sobel_l1_value_cuda(const at::Tensor& p, const at::Tensor& t, int64_t planes) {
  const auto g = geometry_of(p);
  const c10::cuda::CUDAGuard guard(p.device());
  auto loss = torch::empty({}, p.options());
  auto signs = torch::empty(p.sizes(), p.options().dtype(torch::kByte));
  auto partials = torch::empty({cuda::sobel_l1_partial_count(g.volumes, g.depth, g.height, g.width, planes)},
                               p.options().dtype(torch::kDouble));
  cuda::sobel_l1_forward(p.data_ptr<float>(), t.data_ptr<float>(), g.volumes, g.depth, g.height, g.width, planes,
                         signs.data_ptr<uint8_t>(), partials.data_ptr<double>(), loss.data_ptr<float>(),
                         c10::cuda::getCurrentCUDAStream().stream());
  return {loss, signs};
}

std::pair<at::Tensor, at::Tensor> sobel_l1_gradients_cuda(const at::Tensor& signs, int64_t planes,
                                                          const at::Tensor& grad_loss, bool want_p, bool want_t) {
  const auto g = geometry_of(signs);
  const c10::cuda::CUDAGuard guard(signs.device());
  const auto options = signs.options().dtype(torch::kFloat);
  at::Tensor grad_p = want_p ? torch::empty(signs.sizes(), options) : at::Tensor();
  at::Tensor grad_t = want_t ? torch::empty(signs.sizes(), options) : at::Tensor();
  const auto scale = grad_loss.to(torch::kFloat).contiguous();
  cuda::sobel_l1_backward(signs.data_ptr<uint8_t>(), scale.data_ptr<float>(), g.volumes, g.depth, g.height, g.width,
                          planes, want_p ? grad_p.data_ptr<float>() : nullptr, want_t ? grad_t.data_ptr<float>() : nullptr,
                          c10::cuda::getCurrentCUDAStream().stream());
  return {grad_p, grad_t};
}
#endif

at::Tensor sobel_l1_value_cpu(const at::Tensor& p, const at::Tensor& t) {
  const auto g = geometry_of(p);
  const double sum = sobel_l1_sum_cpu(p.data_ptr<float>(), t.data_ptr<float>(), g);
  return torch::full({}, static_cast<float>(sum / (3.0 * static_cast<double>(g.voxels()))), p.options());
}

std::pair<at::Tensor, at::Tensor> sobel_l1_gradients_cpu(const at::Tensor& p, const at::Tensor& t,
                                                         const at::Tensor& grad_loss, bool want_p, bool want_t) {
  const auto g = geometry_of(p);
  at::Tensor grad_p = want_p ? torch::empty_like(p) : at::Tensor();
  at::Tensor grad_t = want_t ? torch::empty_like(t) : at::Tensor();
  const float coefficient =
      static_cast<float>(-grad_loss.item<double>() * kNorm / (3.0 * static_cast<double>(g.voxels())));
  sobel_l1_backward_cpu(p.data_ptr<float>(), t.data_ptr<float>(), g, coefficient,
                        want_p ? grad_p.data_ptr<float>() : nullptr, want_t ? grad_t.data_ptr<float>() : nullptr);
  return {grad_p, grad_t};
}

// CUDA saves only the packed signs (one byte per voxel); the CPU saves p and t and recomputes the signs plane by plane.
class SobelL1Function : public torch::autograd::Function<SobelL1Function> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor p, at::Tensor t) {
    if (p.is_cuda()) {
#ifdef VMAT_WITH_CUDA
      const int64_t planes = planes_per_thread().load();
      auto [loss, signs] = sobel_l1_value_cuda(p, t, planes);
      ctx->save_for_backward({signs});
      ctx->saved_data["planes_per_thread"] = planes;
      return loss;
#else
      throw Error(ErrorCode::InvalidInput,
                  "the Sobel loss got CUDA tensors, but vmat-native was built without its CUDA kernels");
#endif
    }
    ctx->save_for_backward({p, t});
    return sobel_l1_value_cpu(p, t);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const bool want_p = ctx->needs_input_grad(0), want_t = ctx->needs_input_grad(1);
#ifdef VMAT_WITH_CUDA
    if (ctx->saved_data.count("planes_per_thread")) {  // saved by the CUDA forward
      auto grads = sobel_l1_gradients_cuda(saved[0], ctx->saved_data["planes_per_thread"].toInt(), grad_outputs[0],
                                           want_p, want_t);
      return {grads.first, grads.second};
    }
#endif
    auto grads = sobel_l1_gradients_cpu(saved[0], saved[1], grad_outputs[0], want_p, want_t);
    return {grads.first, grads.second};
  }
};

}  // namespace

void set_sobel_planes_per_thread(int64_t planes) {
  require(planes >= 1 && planes <= kMaxPlanesPerThread, "the Sobel loss planes per thread must be from 1 to " +
                                                            std::to_string(kMaxPlanesPerThread) + ", got " +
                                                            std::to_string(planes));
  planes_per_thread().store(planes);
}

int64_t sobel_planes_per_thread() { return planes_per_thread().load(); }

at::Tensor sobel_gradient_loss(const at::Tensor& pred, const at::Tensor& target) {
  require(pred.dim() == 5, "the Sobel loss needs [batch, channels, depth, height, width] volumes, got shape " +
                               shape_text(pred.sizes()));
  require(pred.sizes() == target.sizes(), "the Sobel loss got a prediction of shape " + shape_text(pred.sizes()) +
                                              " and a target of shape " + shape_text(target.sizes()));
  require(pred.numel() > 0, "the Sobel loss got an empty volume");
  require(pred.scalar_type() == torch::kFloat && target.scalar_type() == torch::kFloat,
          "the Sobel loss needs float32 tensors");
  require(pred.device() == target.device(), "the Sobel loss got tensors on different devices");
  return SobelL1Function::apply(pred.contiguous(), target.contiguous());
}

}  // namespace vmat
