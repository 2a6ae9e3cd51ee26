#pragma once
// Launchers of the fused GroupNorm -> SiLU -> FiLM (-> + residual) CUDA kernels (norm_act.cu). Raw device pointers
// only. Tensors are contiguous NCDHW: x, y, residual, dy, dx of `dtype` ([batch, channels, spatial]); gamma, beta
// [channels] float32; gain (= 1 + scale) and shift [batch, channels] float32 or null; mean/rstd [batch, groups] float32.
#include <cstdint>

namespace vmat::cuda {

enum class NormActDtype { Float32, BFloat16, Float16 };

struct NormActShape {
  int64_t batch, channels, spatial, groups;
};

// stats: [batch * groups * 2] double, zeroed by the launcher; mean, rstd: [batch * groups].
void norm_act_forward(const void* x, const float* gamma, const float* beta, const float* gain, const float* shift,
                      const void* residual, void* y, double* stats, float* mean, float* rstd, NormActShape shape,
                      double eps, NormActDtype dtype, void* stream);

// sums: [4 * batch * channels] double (zeroed by the launcher): per (b, c) the sums of dy, dy * s, da, da * n.
void norm_act_backward_reduce(const void* x, const void* dy, const float* gamma, const float* beta, const float* gain,
                              const float* mean, const float* rstd, double* sums, NormActShape shape,
                              NormActDtype dtype, void* stream);

// dx = rstd * (dn - mean_dn - n * mean_dn_n), dn = da * gamma; mean_dn and mean_dn_n: [batch * groups] float32.
void norm_act_backward_apply(const void* x, const void* dy, const float* gamma, const float* beta, const float* gain,
                             const float* mean, const float* rstd, const float* mean_dn, const float* mean_dn_n,
                             void* dx, NormActShape shape, NormActDtype dtype, void* stream);

}  // namespace vmat::cuda
