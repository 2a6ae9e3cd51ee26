#include "vmat/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "json_lite.h"
#include "vmat/error.h"

namespace vmat {

namespace {

// The header of a real file is a few kB to a few MB; anything larger is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"U8", at::kByte},  {"BOOL", at::kBool},
};

const char* dtype_name(at::ScalarType type, const std::string& tensor) {
  for (const auto& entry : kDtypes)
    if (entry.type == type) return entry.name;
  throw Error(ErrorCode::InvalidInput, "tensor \"" + tensor + "\" has dtype " + std::string(c10::toString(type)) +
                                           ", which safetensors files written by vmat-native do not support");
}

void write_le64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};
using File = std::unique_ptr<FILE, FileCloser>;

File open_for_reading(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error(ErrorCode::Io, "cannot read " + path + ": " + std::strerror(errno));
  File owned(file);
  // fopen opens a folder for reading on Linux; reading it then fails with a misleading "shorter than 8 bytes".
  struct stat info {};
  if (::fstat(::fileno(file), &info) == 0 && !S_ISREG(info.st_mode))
    throw Error(ErrorCode::InvalidInput, path + " is " + (S_ISDIR(info.st_mode) ? "a folder" : "not a regular file") +
                                             ": expected a .safetensors file");
  return owned;
}

[[noreturn]] void not_safetensors(const std::string& path, const std::string& why) {
  throw Error(ErrorCode::InvalidInput, path + " is not a valid safetensors file: " + why);
}

struct Header {
  json::Value json;
  uint64_t data_start = 0;
  uint64_t file_size = 0;
};

Header read_header(FILE* file, const std::string& path) {
  if (std::fseek(file, 0, SEEK_END) != 0) throw Error(ErrorCode::Io, "cannot read " + path + ": " + std::strerror(errno));
  const long size = std::ftell(file);
  if (size < 0) throw Error(ErrorCode::Io, "cannot read " + path + ": " + std::strerror(errno));
  std::rewind(file);
  Header header;
  header.file_size = static_cast<uint64_t>(size);
  unsigned char length_bytes[8];
  if (header.file_size < 8 || std::fread(length_bytes, 1, 8, file) != 8) not_safetensors(path, "it is shorter than 8 bytes");
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | length_bytes[i];
  if (length < 2 || length > kMaxHeaderBytes || length > header.file_size - 8)
    not_safetensors(path, "the header length " + std::to_string(length) + " does not fit the file of " +
                              std::to_string(header.file_size) + " bytes");
  std::string text(length, '\0');
  if (std::fread(text.data(), 1, length, file) != length) throw Error(ErrorCode::Io, "cannot read the header of " + path);
  if (text[0] != '{') not_safetensors(path, "the header does not start with '{'");
  header.json = json::parse(text, "the header of " + path);
  header.data_start = 8 + length;
  return header;
}

Metadata metadata_of(const json::Value& header, const std::string& path) {
  Metadata metadata;
  const auto* map = header.find("__metadata__");
  if (!map) return metadata;
  if (map->kind != json::Value::Kind::Object) not_safetensors(path, "__metadata__ is not an object");
  for (const auto& entry : map->object) {
    if (entry.second.kind != json::Value::Kind::String)
      not_safetensors(path, "__metadata__ value \"" + entry.first + "\" is not a string");
    metadata[entry.first] = entry.second.string;
  }
  return metadata;
}

}  // namespace

void save_tensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  std::vector<at::Tensor> contiguous;
  std::ostringstream header;
  header << "{";
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (const auto& entry : metadata) {
      header << (first ? "" : ",") << json::quote(entry.first) << ":" << json::quote(entry.second);
      first = false;
    }
    header << "}";
  }
  uint64_t offset = 0;
  for (const auto& entry : tensors) {
    require(entry.first != "__metadata__", "a tensor cannot be named __metadata__");
    const auto tensor = entry.second.detach().to(torch::kCPU).contiguous();
    const char* dtype = dtype_name(tensor.scalar_type(), entry.first);
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    header << (first ? "" : ",") << json::quote(entry.first) << ":{\"dtype\":\"" << dtype
           << "\",\"shape\":[";
    for (int64_t d = 0; d < tensor.dim(); ++d) header << (d ? "," : "") << tensor.size(d);
    header << "],\"data_offsets\":[" << offset << "," << offset + bytes << "]}";
    first = false;
    offset += bytes;
    contiguous.push_back(tensor);
  }
  header << "}";
  std::string header_text = header.str();
  // Pad with spaces so that the data starts 8-byte aligned (as the reference implementation does).
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string prefix;
  write_le64(prefix, header_text.size());
  // `.name.<pid>.<random>.tmp` beside the file, as src/io/atomic.ts names its temporaries, so that the next run's
  // removeStaleTemporaries() finds what a killed writer left.
  const auto slash = path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  char random_part[16];
  std::snprintf(random_part, sizeof random_part, "%08x", static_cast<unsigned>(std::random_device{}()));
  const std::string temporary = folder + "." + name + "." + std::to_string(::getpid()) + "." + random_part + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(ErrorCode::Io, "cannot write " + path + ": " + std::strerror(errno));
  const auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    std::remove(temporary.c_str());
    throw Error(ErrorCode::Io, "cannot write " + path + ": " + what + reason);
  };
  const auto write_all = [&](const char* data, uint64_t size) {
    while (size > 0) {
      const ssize_t done = ::write(fd, data, static_cast<size_t>(std::min<uint64_t>(size, 1u << 30)));
      if (done < 0 && errno == EINTR) continue;
      if (done <= 0) fail("");
      data += done;
      size -= static_cast<uint64_t>(done);
    }
  };
  write_all(prefix.data(), prefix.size());
  write_all(header_text.data(), header_text.size());
  for (const auto& tensor : contiguous)
    write_all(static_cast<const char*>(tensor.data_ptr()), static_cast<uint64_t>(tensor.numel()) * tensor.element_size());
  // On disk before the rename: after a crash of the machine the name holds the old file or the whole new one.
  if (::fsync(fd) != 0) fail("");
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(temporary.c_str());
    throw Error(ErrorCode::Io, "cannot write " + path + ": " + reason);
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(temporary.c_str());
    throw Error(ErrorCode::Io, "cannot write " + path + ": " + reason);
  }
}

TensorFile load_tensors(const std::string& path) {
  const File file = open_for_reading(path);
  const Header header = read_header(file.get(), path);
  if (header.json.kind != json::Value::Kind::Object) not_safetensors(path, "the header is not a JSON object");
  TensorFile result;
  result.metadata = metadata_of(header.json, path);
  const uint64_t data_bytes = header.file_size - header.data_start;
  // First every description is checked (dtype, shape, offsets within the data, no two tensors sharing bytes), then
  // the tensors are allocated: memory never exceeds the file's data, whatever the header claims.
  struct Described {
    const std::string* name;
    const DtypeName* dtype;
    std::vector<int64_t> sizes;
    uint64_t begin, end;
  };
  std::vector<Described> described;
  for (const auto& entry : header.json.object) {
    const std::string& name = entry.first;
    if (name == "__metadata__") continue;
    const auto& info = entry.second;
    const auto bad = [&](const std::string& why) { not_safetensors(path, "tensor \"" + name + "\" " + why); };
    if (info.kind != json::Value::Kind::Object) bad("has no description object");
    const auto* dtype = info.find("dtype");
    const auto* shape = info.find("shape");
    const auto* offsets = info.find("data_offsets");
    if (!dtype || dtype->kind != json::Value::Kind::String) bad("has no dtype");
    if (!shape || shape->kind != json::Value::Kind::Array) bad("has no shape");
    if (!offsets || offsets->kind != json::Value::Kind::Array || offsets->array.size() != 2 ||
        offsets->array[0].kind != json::Value::Kind::Integer || offsets->array[1].kind != json::Value::Kind::Integer)
      bad("has no data_offsets [begin, end]");
    const DtypeName* known = nullptr;
    for (const auto& candidate : kDtypes)
      if (dtype->string == candidate.name) known = &candidate;
    if (!known) bad("has dtype \"" + dtype->string + "\", which is not supported (F64, F32, F16, BF16, I64, I32, U8, BOOL)");
    if (shape->array.size() > 32) bad("has " + std::to_string(shape->array.size()) + " dimensions, more than the 32 supported");
    std::vector<int64_t> sizes;
    uint64_t numel = 1;
    for (const auto& dim : shape->array) {
      if (dim.kind != json::Value::Kind::Integer || dim.integer < 0) bad("has a shape entry that is not a size");
      sizes.push_back(dim.integer);
      if (dim.integer != 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(dim.integer)) bad("is too large");
      numel *= static_cast<uint64_t>(dim.integer);
    }
    const int64_t begin = offsets->array[0].integer, end = offsets->array[1].integer;
    if (numel > (uint64_t{1} << 62) / c10::elementSize(known->type)) bad("is too large");
    const uint64_t bytes = numel * c10::elementSize(known->type);
    if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_bytes)
      bad("has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] outside the " +
          std::to_string(data_bytes) + " data bytes");
    if (static_cast<uint64_t>(end - begin) != bytes)
      bad("has " + std::to_string(end - begin) + " data bytes but its dtype and shape need " + std::to_string(bytes));
    described.push_back({&name, known, std::move(sizes), static_cast<uint64_t>(begin), static_cast<uint64_t>(end)});
  }
  std::vector<const Described*> by_offset;
  for (const auto& tensor : described) by_offset.push_back(&tensor);
  std::sort(by_offset.begin(), by_offset.end(), [](const Described* a, const Described* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      not_safetensors(path, "tensors \"" + *by_offset[i - 1]->name + "\" and \"" + *by_offset[i]->name + "\" share data bytes");
  for (const auto& tensor : described) {
    auto data = torch::empty(tensor.sizes, torch::TensorOptions().dtype(tensor.dtype->type));
    const uint64_t bytes = tensor.end - tensor.begin;
    if (bytes > 0) {
      if (std::fseek(file.get(), static_cast<long>(header.data_start + tensor.begin), SEEK_SET) != 0 ||
          std::fread(data.data_ptr(), 1, bytes, file.get()) != bytes)
        throw Error(ErrorCode::Io, "cannot read tensor \"" + *tensor.name + "\" of " + path);
    }
    result.tensors.emplace(*tensor.name, std::move(data));
  }
  return result;
}

Metadata read_safetensors_metadata(const std::string& path) {
  const File file = open_for_reading(path);
  const Header header = read_header(file.get(), path);
  if (header.json.kind != json::Value::Kind::Object) not_safetensors(path, "the header is not a JSON object");
  return metadata_of(header.json, path);
}

}  // namespace vmat
