#pragma once
// "[2, 9, 128, 128, 128]": tensor shapes in error messages.
#include <ATen/core/TensorBody.h>

#include <sstream>
#include <string>

namespace vmat {

inline std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  return out.str() + "]";
}

}  // namespace vmat
