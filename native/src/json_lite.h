#pragma once
// A small strict JSON reader/writer for the two places the core needs JSON: safetensors headers and the model
// config stored in checkpoint metadata. It accepts objects, arrays, strings and integers only (all a safetensors
// header may hold); anything else is rejected rather than guessed at.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vmat::json {

struct Value {
  enum class Kind { Object, Array, String, Integer };
  Kind kind = Kind::Object;
  std::string string;
  int64_t integer = 0;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in file order; duplicate keys are rejected

  const Value* find(const std::string& key) const;
};

// Parses `text`; throws vmat::Error(InvalidInput, "<what> is not valid JSON: ...") on any error.
Value parse(const std::string& text, const std::string& what);

// `text` as a JSON string literal (with quotes).
std::string quote(const std::string& text);

}  // namespace vmat::json
