#pragma once
// The optimizer step of training over all parameters at once. libtorch's C++ AdamW and clip_grad_norm_ loop over
// the parameter tensors (about ten small kernels each for AdamW, one norm each for clipping, then a read back to the
// host); on a GPU those hundreds of launches leave it idle between backward and the next forward. These use
// PyTorch's multi-tensor `_foreach` kernels instead (what torch.optim.AdamW and clip_grad_norm_ use by default on
// CUDA): a handful of launches per step, the same arithmetic, the same state.
#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace vmat {

// Total 2-norm of the parameters' gradients, as a 0-dim float tensor on their device (nothing read back); when it
// exceeds max_norm, scales the gradients by max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_. An infinite
// max_norm only measures. Parameters without a gradient are skipped; with none at all the norm is 0.
at::Tensor clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm);

// torch::optim::AdamW with the same options, state (AdamWParamState per parameter, so checkpoints and resume code
// see no difference) and results, stepping all parameters of a group with multi-tensor kernels. amsgrad falls back
// to AdamW's own step.
class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  at::Tensor step(LossClosure closure = nullptr) override;
};

// The key of a parameter in an optimizer's state map: libtorch 1.x keys it by the parameter's TensorImpl address
// printed as a string, 2.x by the address itself.
template <typename StateMap>
typename StateMap::key_type state_key(const StateMap&, const at::Tensor& parameter) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream stream;
    stream << parameter.unsafeGetTensorImpl();
    return stream.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

}  // namespace vmat
