#pragma once
// The typed bridge for settings objects that cross from TypeScript (src/native/addon.ts declares each one's type):
// every key the native side reads is required and must have its type, and a key the native side does not read is
// refused, so a misspelt or forgotten key is one sentence naming it instead of a silent fallback. No defaults live
// here: the one copy of every default is the schema (src/config/schema.ts).
//
//   SettingsReader s(value, "training setting");
//   options.epochs = s.integer("epochs");
//   ...
//   s.finish();  // refuses any key left unread
#include <napi.h>

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace vmat::binding {

class SettingsReader {
 public:
  // `what` names one entry in messages, e.g. "training setting" → "the training setting 'epochs' is missing".
  SettingsReader(const Napi::Value& value, std::string what);

  int64_t integer(const char* key, int64_t minimum = INT64_MIN);  // a whole number >= minimum
  double number(const char* key);    // a finite number
  bool boolean(const char* key);
  std::string string(const char* key);
  std::vector<double> numbers(const char* key, size_t count);               // exactly `count` finite numbers
  std::vector<std::array<int64_t, 2>> integer_pairs(const char* key);       // [[a, b], ...] of whole numbers
  std::vector<int64_t> integers(const char* key);                          // [a, b, ...] of whole numbers
  std::map<std::string, std::string> string_map(const char* key);           // { [key]: string }
  // Optional entries (a case's masks): whether the key is present and neither undefined nor null; marks it read.
  bool has(const char* key);
  Napi::Value value(const char* key);  // the raw value of a required key (typed arrays)

  // Refuses the keys that were not read, naming the first.
  void finish();

 private:
  Napi::Value required(const char* key);
  [[noreturn]] void fail(const std::string& message) const;

  Napi::Object object_;
  std::string what_;
  std::set<std::string> read_;
};

}  // namespace vmat::binding
