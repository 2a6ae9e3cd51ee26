#include "settings.h"

#include <cmath>
#include <cstdio>

namespace vmat::binding {

namespace {

std::string type_of(const Napi::Value& value) {
  if (value.IsNull()) return "null";
  if (value.IsArray()) return "an array";
  if (value.IsTypedArray()) return "a typed array";
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_function: return "a function";
    default: return "an object";
  }
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.10g", value);
  return buffer;
}

}  // namespace

SettingsReader::SettingsReader(const Napi::Value& value, std::string what) : what_(std::move(what)) {
  if (!value.IsObject() || value.IsArray()) {
    auto error = Napi::TypeError::New(value.Env(), "the " + what_ + "s must be an object, got " + type_of(value));
    error.Set("code", "VMAT_INVALID_INPUT");
    throw error;
  }
  object_ = value.As<Napi::Object>();
}

void SettingsReader::fail(const std::string& message) const {
  auto error = Napi::TypeError::New(object_.Env(), message);
  error.Set("code", "VMAT_INVALID_INPUT");
  throw error;
}

Napi::Value SettingsReader::required(const char* key) {
  read_.insert(key);
  if (!object_.Has(key) || object_.Get(key).IsUndefined()) fail("the " + what_ + " '" + std::string(key) + "' is missing");
  return object_.Get(key);
}

int64_t SettingsReader::integer(const char* key, int64_t minimum) {
  auto value = required(key);
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(number) || std::floor(number) != number || std::fabs(number) > 9007199254740991.0 ||
      static_cast<int64_t>(number) < minimum) {
    fail("the " + what_ + " '" + std::string(key) + "' must be a whole number" + (minimum == INT64_MIN ? "" : " >= " + std::to_string(minimum)) +
         ", got " + (value.IsNumber() ? format_number(number) : type_of(value)));
  }
  return static_cast<int64_t>(number);
}

double SettingsReader::number(const char* key) {
  auto value = required(key);
  if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue())) {
    fail("the " + what_ + " '" + std::string(key) + "' must be a finite number, got " + type_of(value));
  }
  return value.As<Napi::Number>().DoubleValue();
}

bool SettingsReader::boolean(const char* key) {
  auto value = required(key);
  if (!value.IsBoolean()) fail("the " + what_ + " '" + std::string(key) + "' must be true or false, got " + type_of(value));
  return value.As<Napi::Boolean>().Value();
}

std::string SettingsReader::string(const char* key) {
  auto value = required(key);
  if (!value.IsString()) fail("the " + what_ + " '" + std::string(key) + "' must be a string, got " + type_of(value));
  return value.As<Napi::String>().Utf8Value();
}

std::vector<double> SettingsReader::numbers(const char* key, size_t count) {
  auto value = required(key);
  const std::string expected = "the " + what_ + " '" + std::string(key) + "' must be an array of " + std::to_string(count) + " finite numbers";
  if (!value.IsArray() || value.As<Napi::Array>().Length() != count) fail(expected + ", got " + type_of(value));
  std::vector<double> numbers;
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < count; ++i) {
    Napi::Value item = array[i];
    if (!item.IsNumber() || !std::isfinite(item.As<Napi::Number>().DoubleValue())) fail(expected);
    numbers.push_back(item.As<Napi::Number>().DoubleValue());
  }
  return numbers;
}

std::vector<std::array<int64_t, 2>> SettingsReader::integer_pairs(const char* key) {
  auto value = required(key);
  const std::string expected = "the " + what_ + " '" + std::string(key) + "' must be an array of [a, b] pairs of whole numbers";
  if (!value.IsArray()) fail(expected + ", got " + type_of(value));
  std::vector<std::array<int64_t, 2>> pairs;
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array[i];
    if (!item.IsArray() || item.As<Napi::Array>().Length() != 2) fail(expected);
    std::array<int64_t, 2> pair{};
    for (uint32_t j = 0; j < 2; ++j) {
      Napi::Value entry = item.As<Napi::Array>()[j];
      const double number = entry.IsNumber() ? entry.As<Napi::Number>().DoubleValue() : NAN;
      if (!std::isfinite(number) || std::floor(number) != number) fail(expected);
      pair[j] = static_cast<int64_t>(number);
    }
    pairs.push_back(pair);
  }
  return pairs;
}

std::vector<int64_t> SettingsReader::integers(const char* key) {
  auto value = required(key);
  const std::string expected = "the " + what_ + " '" + std::string(key) + "' must be an array of whole numbers";
  if (!value.IsArray()) fail(expected + ", got " + type_of(value));
  std::vector<int64_t> out;
  auto array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array[i];
    const double number = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(number) || std::floor(number) != number || std::fabs(number) > 9007199254740991.0) fail(expected);
    out.push_back(static_cast<int64_t>(number));
  }
  return out;
}

std::map<std::string, std::string> SettingsReader::string_map(const char* key) {
  auto value = required(key);
  const std::string expected = "the " + what_ + " '" + std::string(key) + "' must be an object of strings";
  if (!value.IsObject() || value.IsArray()) fail(expected + ", got " + type_of(value));
  std::map<std::string, std::string> map;
  auto object = value.As<Napi::Object>();
  auto keys = object.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const auto name = keys.Get(i).As<Napi::String>().Utf8Value();
    auto entry = object.Get(name);
    if (!entry.IsString()) fail(expected + " (its entry '" + name + "' is " + type_of(entry) + ")");
    map[name] = entry.As<Napi::String>().Utf8Value();
  }
  return map;
}

bool SettingsReader::has(const char* key) {
  read_.insert(key);
  return object_.Has(key) && !object_.Get(key).IsUndefined() && !object_.Get(key).IsNull();
}

Napi::Value SettingsReader::value(const char* key) { return required(key); }

void SettingsReader::finish() {
  auto keys = object_.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const auto name = keys.Get(i).As<Napi::String>().Utf8Value();
    if (!read_.count(name)) {
      std::string known;
      for (const auto& key : read_) known += (known.empty() ? "" : ", ") + key;
      fail("unknown " + what_ + " '" + name + "' (the native side reads: " + known + ")");
    }
  }
}

}  // namespace vmat::binding
