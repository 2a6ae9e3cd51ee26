#pragma once
// Per-element math of the fused GroupNorm -> SiLU -> FiLM (-> + residual) op, shared by the CPU loops
// (norm_act.cpp) and the CUDA kernels (norm_act.cu) so that both compute exactly the same expressions.
//   n = (x - mean) * rstd                  group-normalised
//   a = n * gamma + beta                   GroupNorm's affine
//   s = silu(a) = a * sigmoid(a)
//   y = s * (1 + scale) + shift (+ r)      FiLM, optional residual
#include <cmath>

#ifdef __CUDACC__
#define VMAT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VMAT_HOST_DEVICE inline
#endif

namespace vmat::norm_act {

VMAT_HOST_DEVICE float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

struct Forward {
  float n, a, sig, s;
};

VMAT_HOST_DEVICE Forward forward(float x, float mean, float rstd, float gamma, float beta) {
  Forward f;
  f.n = (x - mean) * rstd;
  f.a = f.n * gamma + beta;
  f.sig = sigmoid(f.a);
  f.s = f.a * f.sig;
  return f;
}

// d loss / d a, given d loss / d y: through FiLM's (1 + scale) and SiLU's derivative sig * (1 + a * (1 - sig)).
VMAT_HOST_DEVICE float grad_a(float dy, float film_gain, const Forward& f) {
  return dy * film_gain * f.sig * (1.0f + f.a * (1.0f - f.sig));
}

}  // namespace vmat::norm_act
