#pragma once
// Errors of the native core. The code travels to JavaScript as `error.code`, so that the CLI can tell a user's
// mistake (exit 1, one sentence) from an internal failure (exit 2).
#include <stdexcept>
#include <string>

namespace vmat {

enum class ErrorCode { InvalidInput, Cancelled, OutOfMemory, NotFinite, Io, Internal };

inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidInput: return "VMAT_INVALID_INPUT";
    case ErrorCode::Cancelled: return "VMAT_CANCELLED";
    case ErrorCode::OutOfMemory: return "VMAT_OUT_OF_MEMORY";
    case ErrorCode::NotFinite: return "VMAT_NOT_FINITE";
    case ErrorCode::Io: return "VMAT_IO";
    case ErrorCode::Internal: return "VMAT_INTERNAL";
  }
  return "VMAT_INTERNAL";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// Throws InvalidInput with `message` unless `condition` holds.
inline void require(bool condition, const std::string& message) {
  if (!condition) throw Error(ErrorCode::InvalidInput, message);
}

}  // namespace vmat
