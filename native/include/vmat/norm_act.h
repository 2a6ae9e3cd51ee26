#pragma once
// The memory-bound middle of every ResBlock, fused: y = SiLU(GroupNorm(x)) * (1 + scale) + shift (+ residual).
// Unfused, GroupNorm, SiLU, the FiLM multiply-add and the residual add each read and write the whole activation
// (48 x 128^3 per sample at full resolution); fused, the forward reads x twice and writes y once, and the backward
// reads x and dy twice and writes dx once. Forward and backward are written by hand (CPU loops and CUDA kernels
// sharing their per-element math) and registered with autograd.
#include <torch/torch.h>

namespace vmat {

// x: [B, C, ...] float32 (CPU) or float32/bf16/fp16 (CUDA); gamma, beta: [C]; scale, shift: [B, C] or undefined;
// residual: x's shape or undefined. The output has x's dtype.
at::Tensor group_norm_silu_film(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, int64_t groups,
                                double eps, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& residual);

// The same function from libtorch's own ops (the reference for tests, and the path where the fused one is off).
at::Tensor group_norm_silu_film_reference(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                                          int64_t groups, double eps, const at::Tensor& scale, const at::Tensor& shift,
                                          const at::Tensor& residual);

// Whether BaselineUNet3D uses the fused op for a tensor on `device`: by default on CUDA (when the kernels were
// compiled) and not on the CPU, where libtorch's own ops keep results identical to PyTorch's. The environment
// variable VMAT_FUSED_NORM_ACT=0|1 or set_fused_norm_act() overrides it for both.
enum class FusedNormAct { Auto, On, Off };
void set_fused_norm_act(FusedNormAct mode);
bool fused_norm_act_enabled(const at::Tensor& x);

}  // namespace vmat
