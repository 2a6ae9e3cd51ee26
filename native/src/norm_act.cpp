#include "vmat/norm_act.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "norm_act_cuda.h"
#include "norm_act_math.h"
#include "vmat/error.h"

#ifdef VMAT_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace vmat {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

FusedNormAct initial_mode() {
  const char* value = std::getenv("VMAT_FUSED_NORM_ACT");
  if (value == nullptr) return FusedNormAct::Auto;
  return std::string(value) == "0" ? FusedNormAct::Off : FusedNormAct::On;
}

std::atomic<FusedNormAct>& mode() {
  static std::atomic<FusedNormAct> current{initial_mode()};
  return current;
}

struct Geometry {
  int64_t batch, channels, spatial, groups;
};

Geometry geometry_of(const at::Tensor& x, int64_t groups) {
  return {x.size(0), x.size(1), x.numel() / (x.size(0) * x.size(1)), groups};
}

// Runs fn(slab, channel, batch_group, offset) for every (batch, channel) slab, in parallel over slabs.
template <typename Fn>
void for_each_slab(Geometry g, Fn&& fn) {
  const int64_t per_group = g.channels / g.groups;
  at::parallel_for(0, g.batch * g.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t slab = begin; slab < end; ++slab) {
      const int64_t b = slab / g.channels, c = slab % g.channels;
      fn(slab, c, b * g.groups + c / per_group, slab * g.spatial);
    }
  });
}

// Per (b, c) slab: sums of x and x^2 (CPU), combined per group into mean and rstd.
void cpu_forward(const float* x, const float* gamma, const float* beta, const float* gain, const float* shift,
                 const float* residual, float* y, float* mean, float* rstd, Geometry g, double eps) {
  const int64_t slabs = g.batch * g.channels;
  std::vector<double> sums(2 * slabs);
  for_each_slab(g, [&](int64_t slab, int64_t, int64_t, int64_t offset) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < g.spatial; ++i) {
      s += x[offset + i];
      ss += static_cast<double>(x[offset + i]) * x[offset + i];
    }
    sums[2 * slab] = s;
    sums[2 * slab + 1] = ss;
  });
  const int64_t per_group = g.channels / g.groups;
  const double count = static_cast<double>(per_group) * static_cast<double>(g.spatial);
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t group = 0; group < g.groups; ++group) {
      double s = 0, ss = 0;
      for (int64_t c = group * per_group; c < (group + 1) * per_group; ++c) {
        s += sums[2 * (b * g.channels + c)];
        ss += sums[2 * (b * g.channels + c) + 1];
      }
      const double m = s / count;
      const double var = std::max(ss / count - m * m, 0.0);
      mean[b * g.groups + group] = static_cast<float>(m);
      rstd[b * g.groups + group] = static_cast<float>(1.0 / std::sqrt(var + eps));
    }
  }
  for_each_slab(g, [&](int64_t slab, int64_t c, int64_t bg, int64_t offset) {
    const float film_gain = gain ? gain[slab] : 1.0f;
    const float film_shift = shift ? shift[slab] : 0.0f;
    for (int64_t i = 0; i < g.spatial; ++i) {
      const auto f = norm_act::forward(x[offset + i], mean[bg], rstd[bg], gamma[c], beta[c]);
      y[offset + i] = f.s * film_gain + film_shift + (residual ? residual[offset + i] : 0.0f);
    }
  });
}

void cpu_backward_reduce(const float* x, const float* dy, const float* gamma, const float* beta, const float* gain,
                         const float* mean, const float* rstd, double* sums, Geometry g) {
  const int64_t slabs = g.batch * g.channels;
  for_each_slab(g, [&](int64_t slab, int64_t c, int64_t bg, int64_t offset) {
    const float film_gain = gain ? gain[slab] : 1.0f;
    double v[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < g.spatial; ++i) {
      const auto f = norm_act::forward(x[offset + i], mean[bg], rstd[bg], gamma[c], beta[c]);
      const float d = dy[offset + i];
      const float da = norm_act::grad_a(d, film_gain, f);
      v[0] += d;
      v[1] += d * f.s;
      v[2] += da;
      v[3] += da * f.n;
    }
    for (int k = 0; k < 4; ++k) sums[k * slabs + slab] = v[k];
  });
}

void cpu_backward_apply(const float* x, const float* dy, const float* gamma, const float* beta, const float* gain,
                        const float* mean, const float* rstd, const float* mean_dn, const float* mean_dn_n, float* dx,
                        Geometry g) {
  for_each_slab(g, [&](int64_t slab, int64_t c, int64_t bg, int64_t offset) {
    const float film_gain = gain ? gain[slab] : 1.0f;
    for (int64_t i = 0; i < g.spatial; ++i) {
      const auto f = norm_act::forward(x[offset + i], mean[bg], rstd[bg], gamma[c], beta[c]);
      const float dn = norm_act::grad_a(dy[offset + i], film_gain, f) * gamma[c];
      dx[offset + i] = rstd[bg] * (dn - mean_dn[bg] - f.n * mean_dn_n[bg]);
    }
  });
}

#ifdef VMAT_WITH_CUDA
cuda::NormActDtype cuda_dtype(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return cuda::NormActDtype::Float32;
    case at::kBFloat16: return cuda::NormActDtype::BFloat16;
    case at::kHalf: return cuda::NormActDtype::Float16;
    default: break;
  }
  throw Error(ErrorCode::Internal, std::string("group_norm_silu_film: unsupported dtype ") + c10::toString(x.scalar_type()));
}
#endif

const float* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

class GroupNormSiluFilm : public torch::autograd::Function<GroupNormSiluFilm> {
 public:
  // scale, shift and residual_in may be empty (numel 0): then that term is absent.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& gamma_in,
                            const at::Tensor& beta_in, const at::Tensor& scale_in, const at::Tensor& shift_in,
                            const at::Tensor& residual_or_empty, int64_t groups, double eps) {
    const auto scale = scale_in.numel() > 0 ? scale_in : at::Tensor();
    const auto shift = shift_in.numel() > 0 ? shift_in : at::Tensor();
    const auto residual_in = residual_or_empty.numel() > 0 ? residual_or_empty : at::Tensor();
    const auto x = x_in.contiguous();
    const auto gamma = gamma_in.to(at::kFloat).contiguous();
    const auto beta = beta_in.to(at::kFloat).contiguous();
    const auto gain = scale.defined() ? (scale.to(at::kFloat) + 1.0f).contiguous() : at::Tensor();
    const auto film_shift = shift.defined() ? shift.to(at::kFloat).contiguous() : at::Tensor();
    const auto residual = residual_in.defined() ? residual_in.to(x.scalar_type()).contiguous() : at::Tensor();
    const auto g = geometry_of(x, groups);
    auto y = torch::empty_like(x);
    auto stats_options = x.options().dtype(at::kFloat);
    auto mean = torch::empty({g.batch, groups}, stats_options);
    auto rstd = torch::empty({g.batch, groups}, stats_options);
    if (x.is_cuda()) {
#ifdef VMAT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(x.device());
      auto stats = torch::empty({g.batch * groups * 2}, x.options().dtype(at::kDouble));
      cuda::norm_act_forward(x.data_ptr(), gamma.data_ptr<float>(), beta.data_ptr<float>(), data_or_null(gain),
                             data_or_null(film_shift), residual.defined() ? residual.data_ptr() : nullptr, y.data_ptr(),
                             stats.data_ptr<double>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                             {g.batch, g.channels, g.spatial, groups}, eps, cuda_dtype(x),
                             c10::cuda::getCurrentCUDAStream().stream());
#endif
    } else {
      cpu_forward(x.data_ptr<float>(), gamma.data_ptr<float>(), beta.data_ptr<float>(), data_or_null(gain),
                  data_or_null(film_shift), residual.defined() ? residual.data_ptr<float>() : nullptr,
                  y.data_ptr<float>(), mean.data_ptr<float>(), rstd.data_ptr<float>(), g, eps);
    }
    ctx->save_for_backward({x, gamma, beta, gain, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["has_scale"] = scale.defined();
    ctx->saved_data["has_shift"] = shift.defined();
    ctx->saved_data["has_residual"] = residual_in.defined();
    ctx->saved_data["gamma_dtype"] = static_cast<int64_t>(gamma_in.scalar_type());
    ctx->saved_data["film_dtype"] =
        static_cast<int64_t>(scale.defined() ? scale.scalar_type() : (shift.defined() ? shift.scalar_type() : at::kFloat));
    ctx->saved_data["residual_dtype"] =
        static_cast<int64_t>(residual_in.defined() ? residual_in.scalar_type() : x.scalar_type());
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& gamma = saved[1];
    const auto& beta = saved[2];
    const auto& gain = saved[3];
    const auto& mean = saved[4];
    const auto& rstd = saved[5];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const auto dy = grad_outputs[0].to(x.scalar_type()).contiguous();
    const auto g = geometry_of(x, groups);
    auto sums = torch::empty({4, g.batch, g.channels}, x.options().dtype(at::kDouble));
    if (x.is_cuda()) {
#ifdef VMAT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(x.device());
      cuda::norm_act_backward_reduce(x.data_ptr(), dy.data_ptr(), gamma.data_ptr<float>(), beta.data_ptr<float>(),
                                     data_or_null(gain), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                     sums.data_ptr<double>(), {g.batch, g.channels, g.spatial, groups}, cuda_dtype(x),
                                     c10::cuda::getCurrentCUDAStream().stream());
#endif
    } else {
      cpu_backward_reduce(x.data_ptr<float>(), dy.data_ptr<float>(), gamma.data_ptr<float>(), beta.data_ptr<float>(),
                          data_or_null(gain), mean.data_ptr<float>(), rstd.data_ptr<float>(), sums.data_ptr<double>(), g);
    }
    // Per (b, group): mean of dn = da * gamma and of dn * n, over the group's elements.
    const double count = static_cast<double>(g.channels / groups) * static_cast<double>(g.spatial);
    const auto gamma_grouped = gamma.to(at::kDouble).view({1, groups, g.channels / groups});
    const auto mean_dn = (sums[2].view({g.batch, groups, -1}) * gamma_grouped).sum(-1).div(count).to(at::kFloat).contiguous();
    const auto mean_dn_n = (sums[3].view({g.batch, groups, -1}) * gamma_grouped).sum(-1).div(count).to(at::kFloat).contiguous();

    auto dx = torch::empty_like(x);
    if (x.is_cuda()) {
#ifdef VMAT_WITH_CUDA
      const c10::cuda::CUDAGuard guard(x.device());
      cuda::norm_act_backward_apply(x.data_ptr(), dy.data_ptr(), gamma.data_ptr<float>(), beta.data_ptr<float>(),
                                    data_or_null(gain), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                    mean_dn.data_ptr<float>(), mean_dn_n.data_ptr<float>(), dx.data_ptr(),
                                    {g.batch, g.channels, g.spatial, groups}, cuda_dtype(x),
                                    c10::cuda::getCurrentCUDAStream().stream());
#endif
    } else {
      cpu_backward_apply(x.data_ptr<float>(), dy.data_ptr<float>(), gamma.data_ptr<float>(), beta.data_ptr<float>(),
                         data_or_null(gain), mean.data_ptr<float>(), rstd.data_ptr<float>(), mean_dn.data_ptr<float>(),
                         mean_dn_n.data_ptr<float>(), dx.data_ptr<float>(), g);
    }
    const auto gamma_dtype = static_cast<at::ScalarType>(ctx->saved_data["gamma_dtype"].toInt());
    const auto film_dtype = static_cast<at::ScalarType>(ctx->saved_data["film_dtype"].toInt());
    const auto residual_dtype = static_cast<at::ScalarType>(ctx->saved_data["residual_dtype"].toInt());
    const auto d_gamma = sums[3].sum(0).to(gamma_dtype);
    const auto d_beta = sums[2].sum(0).to(gamma_dtype);
    const auto d_scale = ctx->saved_data["has_scale"].toBool() ? sums[1].to(film_dtype) : at::Tensor();
    const auto d_shift = ctx->saved_data["has_shift"].toBool() ? sums[0].to(film_dtype) : at::Tensor();
    const auto d_residual = ctx->saved_data["has_residual"].toBool() ? grad_outputs[0].to(residual_dtype) : at::Tensor();
    return {dx, d_gamma, d_beta, d_scale, d_shift, d_residual, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor group_norm_silu_film_reference(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                                          int64_t groups, double eps, const at::Tensor& scale, const at::Tensor& shift,
                                          const at::Tensor& residual) {
  auto h = torch::silu(torch::group_norm(x, groups, gamma, beta, eps));
  std::vector<int64_t> film_shape = {x.size(0), x.size(1)};
  film_shape.resize(x.dim(), 1);
  if (scale.defined()) h = h * (1 + scale.view(film_shape));
  if (shift.defined()) h = h + shift.view(film_shape);
  if (residual.defined()) h = h + residual;
  return h;
}

at::Tensor group_norm_silu_film(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, int64_t groups,
                                double eps, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& residual) {
  require(x.dim() >= 3 && x.size(1) % groups == 0,
          "group_norm_silu_film needs x [batch, channels, ...] with channels divisible by " + std::to_string(groups));
  if (!x.is_cuda()) require(x.scalar_type() == at::kFloat, "group_norm_silu_film on the CPU takes float32");
  // libtorch 1.13's custom Functions reject undefined inputs: an empty tensor stands for "none".
  const auto none = torch::empty({0}, x.options().dtype(at::kFloat));
  return GroupNormSiluFilm::apply(x, gamma, beta, scale.defined() ? scale : none, shift.defined() ? shift : none,
                                  residual.defined() ? residual : none, groups, eps);
}

void set_fused_norm_act(FusedNormAct new_mode) { mode().store(new_mode); }

bool fused_norm_act_enabled(const at::Tensor& x) {
  const auto current = mode().load();
  if (current == FusedNormAct::Off) return false;
  if (x.is_cuda()) {
#ifdef VMAT_WITH_CUDA
    return true;
#else
    return false;
#endif
  }
  return current == FusedNormAct::On && x.scalar_type() == at::kFloat;
}

}  // namespace vmat
