#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "vmat/checkpoint.h"
#include "vmat/error.h"
#include "vmat/safetensors.h"

namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("vmat_test_st_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string header_file(const std::string& header, const std::string& data = "") {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

vmat::ErrorCode code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const vmat::Error& error) {
    return error.code();
  }
  return vmat::ErrorCode::Internal;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const vmat::Error& error) {
    return error.what();
  }
  return "";
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// How a call run by run_bounded ended.
enum class Outcome { Returned, Refused, OtherVmatError, OtherException, Signal, Timeout };

const char* outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::Returned: return "returned";
    case Outcome::Refused: return "refused (InvalidInput or Io)";
    case Outcome::OtherVmatError: return "another vmat::Error";
    case Outcome::OtherException: return "another exception (bad_alloc, c10::Error, ...)";
    case Outcome::Signal: return "crashed (signal)";
    case Outcome::Timeout: return "hung (past its time limit)";
  }
  return "?";
}

// Runs `fn` in a forked child whose address space may grow by at most `extra_bytes` and which is killed after
// `seconds`: an input that would allocate without bound or hang is caught as such, not taken down with the test.
Outcome run_bounded(const std::function<void()>& fn, size_t extra_bytes, unsigned seconds) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + extra_bytes;
    const rlimit bound{limit, limit};
    ::setrlimit(RLIMIT_AS, &bound);
    ::alarm(seconds);
    at::set_num_threads(1);  // no OpenMP team after fork()
    int code = 0;
    try {
      fn();
    } catch (const vmat::Error& error) {
      code = error.code() == vmat::ErrorCode::InvalidInput || error.code() == vmat::ErrorCode::Io ? 1 : 2;
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGALRM ? Outcome::Timeout : Outcome::Signal;
  switch (WEXITSTATUS(status)) {
    case 0: return Outcome::Returned;
    case 1: return Outcome::Refused;
    case 2: return Outcome::OtherVmatError;
    default: return Outcome::OtherException;
  }
}

constexpr size_t kMiB = size_t{1} << 20;

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  const auto path = temp_path("roundtrip.safetensors");
  vmat::TensorMap tensors{
      {"f32", torch::randn({3, 4})},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"f16", torch::randn({5}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"i64", torch::arange(7, torch::kLong)},
      {"i32", torch::arange(3, torch::kInt)},
      {"u8", torch::arange(9, torch::kByte).reshape({3, 3})},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::zeros({0, 4})},
      {"strided", torch::arange(12, torch::kFloat).reshape({3, 4}).t()},
  };
  const vmat::Metadata metadata{{"config", "{\"a\":\"quote \\\" and \\n\"}"}, {"unicode", "Gy \xc2\xb7 \xe2\x80\x94"}};
  vmat::save_tensors(path, tensors, metadata);
  const auto loaded = vmat::load_tensors(path);
  EXPECT_EQ(loaded.metadata, metadata);
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (const auto& entry : tensors) {
    const auto& back = loaded.tensors.at(entry.first);
    EXPECT_EQ(back.scalar_type(), entry.second.scalar_type()) << entry.first;
    EXPECT_TRUE(torch::equal(back, entry.second.contiguous())) << entry.first;
  }
  EXPECT_EQ(vmat::read_safetensors_metadata(path), metadata);
  // The data starts 8-byte aligned, as in files written by the safetensors package.
  std::ifstream in(path, std::ios::binary);
  uint64_t length = 0;
  in.read(reinterpret_cast<char*>(&length), 8);
  EXPECT_EQ(length % 8, 0u);
  fs::remove(path);
}

TEST(Safetensors, ReadsAFileWrittenByPython) {
  // Written by native/tests/data/make_unet_fixture.py with struct + json.
  const auto file = vmat::load_tensors(std::string(VMAT_TEST_DATA_DIR) + "/unet_base8_reference.safetensors");
  EXPECT_EQ(file.tensors.at("output").sizes(), (std::vector<int64_t>{2, 1, 16, 16, 16}));
  EXPECT_EQ(file.metadata.at("made_by"), "make_unet_fixture.py");
}

TEST(Safetensors, RejectsMalformedFiles) {
  const auto path = temp_path("bad.safetensors");
  EXPECT_EQ(code_of([&] { vmat::load_tensors(path + ".missing"); }), vmat::ErrorCode::Io);
  const std::vector<std::string> bad = {
      "short",
      header_file("not json"),
      std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10),
      header_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "1234"),        // data too short
      header_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "12345678"),    // size mismatch
      header_file("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678"),     // unknown dtype
      header_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  "123456789012"),                                                                 // overlap
      header_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "12345678"),  // float size
      header_file("{\"__metadata__\":{\"k\":1}}"),                                                 // non-string metadata
      header_file("{\"a\":1,\"a\":2}"),                                                            // duplicate key
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    write_bytes(path, bad[i]);
    const auto message = message_of([&] { vmat::load_tensors(path); });
    EXPECT_NE(message.find(path), std::string::npos) << "case " << i << ": " << message;
    EXPECT_EQ(code_of([&] { vmat::load_tensors(path); }), vmat::ErrorCode::InvalidInput) << "case " << i;
  }
  fs::remove(path);
}

TEST(Checkpoint, SaveAndLoadGiveTheSameModel) {
  const auto path = temp_path("model.safetensors");
  torch::manual_seed(3);
  vmat::BaselineUNet3D model(vmat::UNetConfig{10, 8});
  vmat::save_model(path, model, {{"epoch", "12"}});
  auto loaded = vmat::load_model(path);
  EXPECT_EQ(loaded.config, model->config());
  EXPECT_EQ(loaded.metadata.at("epoch"), "12");
  EXPECT_EQ(loaded.metadata.at("format_version"), "1");
  EXPECT_EQ(vmat::read_checkpoint_config(path), model->config());
  const auto ours = model->named_parameters();
  for (const auto& item : loaded.model->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), ours[item.key()])) << item.key();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 10, 16, 16, 16});
  const auto c = torch::randn({1, 13});
  EXPECT_TRUE(torch::equal(model->forward(x, c), loaded.model->forward(x, c)));
  EXPECT_THROW(vmat::save_model(path, model, {{"config", "x"}}), vmat::Error);
  fs::remove(path);
}

TEST(Checkpoint, ClearErrorsForOtherFiles) {
  const auto path = temp_path("other.safetensors");
  EXPECT_EQ(code_of([&] { vmat::load_model(path); }), vmat::ErrorCode::Io);
  write_bytes(path, "PK\x03\x04 this is a zip");
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("not a valid safetensors file"), std::string::npos);
  vmat::save_tensors(path, {{"w", torch::zeros({2})}});
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("not a vmat-native checkpoint"), std::string::npos);

  // A config that does not fit its tensors (another architecture): the first mismatch is named.
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  vmat::TensorMap tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace(item.key(), item.value());
  const vmat::Metadata metadata{{"config", vmat::UNetConfig{10, 8}.to_json()}, {"format_version", "1"}};
  vmat::save_tensors(path, tensors, metadata);
  const auto mismatch = message_of([&] { vmat::load_model(path); });
  EXPECT_NE(mismatch.find("\"enc.0.conv1.weight\" has shape [8, 9, 3, 3, 3], expected [8, 10, 3, 3, 3]"), std::string::npos) << mismatch;

  tensors.erase("head.bias");
  vmat::save_tensors(path, tensors, {{"config", vmat::UNetConfig{9, 8}.to_json()}, {"format_version", "1"}});
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("\"head.bias\" is missing"), std::string::npos);
  tensors.emplace("head.bias", torch::zeros({1}));
  tensors.emplace("extra.weight", torch::zeros({1}));
  vmat::save_tensors(path, tensors, {{"config", vmat::UNetConfig{9, 8}.to_json()}, {"format_version", "1"}});
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("unexpected tensor \"extra.weight\""), std::string::npos);
  vmat::save_tensors(path, tensors, {{"config", vmat::UNetConfig{9, 8}.to_json()}, {"format_version", "2"}});
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("format version"), std::string::npos);
  fs::remove(path);
}

TEST(Checkpoint, ParameterLayoutIsTheBuiltNetworksWithoutBuildingIt) {
  for (const vmat::UNetConfig config : {vmat::UNetConfig{9, 8}, vmat::UNetConfig{10, 16, 13, 64}, vmat::UNetConfig{1, 24, 3, 17}}) {
    vmat::BaselineUNet3D model(config);
    const auto built = vmat::parameter_summary(*model);
    const auto layout = vmat::parameter_layout(config);
    ASSERT_EQ(layout.size(), built.size()) << config.to_json();
    for (size_t i = 0; i < built.size(); ++i) {
      EXPECT_EQ(layout[i].name, built[i].name) << config.to_json();
      EXPECT_EQ(layout[i].shape, built[i].shape) << built[i].name;
      EXPECT_EQ(layout[i].parameters, built[i].parameters) << built[i].name;
    }
  }
  // The widest network the core accepts is described without allocating its 655 million parameters.
  int64_t total = 0;
  for (const auto& layer : vmat::parameter_layout(vmat::UNetConfig{9, 256})) total += layer.parameters;
  EXPECT_EQ(total, 654973697);
  EXPECT_NE(message_of([] { vmat::parameter_layout(vmat::UNetConfig{9, 1000000}); }).find("from 8 to 256"), std::string::npos);
}

TEST(Checkpoint, ChecksTheConfigAgainstTheTensorsBeforeBuildingTheNetwork) {
  // A 3 MB file whose metadata claims the widest network: refused without the gigabytes that network would take.
  const auto path = temp_path("wide_config.safetensors");
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  vmat::TensorMap tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace(item.key(), item.value());
  vmat::save_tensors(path, tensors, {{"config", vmat::UNetConfig{9, 256, 13, 4096}.to_json()}, {"format_version", "1"}});
  EXPECT_EQ(run_bounded([&] { vmat::load_model(path); }, 512 * kMiB, 60), Outcome::Refused);
  EXPECT_NE(message_of([&] { vmat::load_model(path); }).find("does not match a 9-input, base-256 BaselineUNet3D"), std::string::npos);
  fs::remove(path);
}

TEST(Checkpoint, RefusesWeightsThatAreNotFinite) {
  const auto path = temp_path("nan.safetensors");
  torch::manual_seed(4);
  vmat::BaselineUNet3D model(vmat::UNetConfig{9, 8});
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    {
      torch::NoGradGuard no_grad;
      model->named_parameters()["dec.2.film.weight"].view(-1)[5] = bad;
    }
    vmat::save_model(path, model);
    const auto message = message_of([&] { vmat::load_model(path); });
    EXPECT_NE(message.find("tensor \"dec.2.film.weight\" holds 1 value that is NaN or infinite"), std::string::npos) << message;
    EXPECT_EQ(code_of([&] { vmat::load_model(path); }), vmat::ErrorCode::InvalidInput);
  }
  fs::remove(path);
}

TEST(Safetensors, RefusesTensorsSharingBytesBeforeAllocatingThem) {
  // 4000 tensors over the same 1 MiB: 4 GB if each were read, refused on the header alone.
  const auto path = temp_path("shared.safetensors");
  std::ostringstream header;
  header << "{";
  for (int i = 0; i < 4000; ++i) header << (i ? "," : "") << "\"t" << i << "\":{\"dtype\":\"F32\",\"shape\":[262144],\"data_offsets\":[0,1048576]}";
  header << "}";
  write_bytes(path, header_file(header.str(), std::string(kMiB, '\0')));
  EXPECT_EQ(run_bounded([&] { vmat::load_tensors(path); }, 256 * kMiB, 60), Outcome::Refused);
  EXPECT_NE(message_of([&] { vmat::load_tensors(path); }).find("share data bytes"), std::string::npos);
  fs::remove(path);
}

TEST(Safetensors, ReadsAHeaderOfManyKeysInLinearTime) {
  // 400 000 metadata keys: a few hundred milliseconds when duplicate keys are found by hashing, hours when each key
  // is compared with every earlier one. The limit is a hang detector with a wide margin, not a speed claim.
  const auto path = temp_path("many_keys.safetensors");
  std::ostringstream header;
  header << "{\"__metadata__\":{";
  for (int i = 0; i < 400000; ++i) header << (i ? "," : "") << "\"k" << i << "\":\"\"";
  header << "}}";
  write_bytes(path, header_file(header.str()));
  EXPECT_EQ(run_bounded([&] { vmat::read_safetensors_metadata(path); }, 1024 * kMiB, 60), Outcome::Returned);
  fs::remove(path);
}

TEST(Safetensors, NamesAFolderGivenAsTheFile) {
  const auto path = temp_path("folder.safetensors");
  fs::create_directories(path);
  const auto message = message_of([&] { vmat::load_tensors(path); });
  EXPECT_NE(message.find(path + " is a folder: expected a .safetensors file"), std::string::npos) << message;
  EXPECT_EQ(code_of([&] { vmat::read_safetensors_metadata(path); }), vmat::ErrorCode::InvalidInput);
  fs::remove_all(path);
}

// ---------------------------------------------------------------- fuzzing

namespace {

// splitmix64: a seeded stream, so that a failing input is reproduced by its (seed, index).
struct Stream {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// A mutation of `seed`, mostly within its first `focus` bytes (the length field and the JSON header), where the
// reader's decisions are made; the data bytes only change values.
std::string mutate(const std::string& seed, size_t focus, Stream& stream) {
  static const uint64_t kInteresting[] = {0, 1, 7, 8, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffffull, 1ull << 32,
                                          1ull << 40, 0x7fffffffffffffffull, ~0ull};
  static const char* kTokens[] = {"0", "-1", "1e300", "99999999999999999999", "[", "]", "{", "}", "\"", ",", ":",
                                  "\"__metadata__\"", "\"data_offsets\"", "\"shape\"", "\"dtype\":\"F64\"", "null", "\\u0000"};
  std::string out = seed;
  const int steps = 1 + static_cast<int>(stream.below(4));
  for (int step = 0; step < steps && !out.empty(); ++step) {
    const size_t span = std::min(out.size(), focus);
    const size_t at = stream.below(span);
    switch (stream.below(7)) {
      case 0: out[at] = static_cast<char>(out[at] ^ (1 << stream.below(8))); break;
      case 1: out[at] = static_cast<char>(kInteresting[stream.below(7)]); break;
      case 2: {  // an interesting little-endian integer over 8 bytes (the header length among them)
        const uint64_t value = kInteresting[stream.below(std::size(kInteresting))];
        const size_t where = stream.below(4) == 0 ? 0 : at;
        for (size_t i = 0; i < 8 && where + i < out.size(); ++i) out[where + i] = static_cast<char>(value >> (8 * i));
        break;
      }
      case 3: out.insert(at, kTokens[stream.below(std::size(kTokens))]); break;
      case 4: out.erase(at, 1 + stream.below(16)); break;
      case 5: {  // a digit run replaced by another number: offsets, shapes, widths in the config
        const size_t digit = out.find_first_of("0123456789", at);
        if (digit != std::string::npos && digit < span) {
          const size_t end = out.find_first_not_of("0123456789", digit);
          out.replace(digit, end - digit, std::to_string(kInteresting[stream.below(std::size(kInteresting))] >> stream.below(40)));
        }
        break;
      }
      default: out.resize(stream.below(out.size() + 1)); break;
    }
  }
  return out;
}

// VMAT_FUZZ_INPUTS scales the run (the bench script runs many more); the default keeps ctest to seconds.
int fuzz_inputs(int fallback) {
  const char* text = std::getenv("VMAT_FUZZ_INPUTS");
  return text ? std::max(1, std::atoi(text)) : fallback;
}

uint64_t fuzz_seed() {
  const char* text = std::getenv("VMAT_FUZZ_SEED");
  return text ? std::strtoull(text, nullptr, 10) : 20240601;
}

// Runs the mutated inputs in forked children, each taking inputs in turn until one misbehaves (an exception other
// than a refusal, a crash, a hang past 20 s, memory beyond 512 MiB more than it started with); a pipe tells the
// parent which input each child was on. Forking once per input would cost more than the reading itself.
void fuzz(const std::string& seed_file, size_t focus, int inputs, const std::function<void(const std::string&)>& read) {
  const uint64_t seed = fuzz_seed();
  const auto path_of = [](int index) { return temp_path("fuzz_" + std::to_string(index) + ".safetensors"); };
  const auto input = [&](int index) {
    Stream stream{seed * 1000003 + static_cast<uint64_t>(index)};
    return mutate(seed_file, focus, stream);
  };
  int refused = 0;
  for (int next = 0; next < inputs;) {
    int channel[2];
    ASSERT_EQ(::pipe(channel), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(channel[0]);
      long pages = 0;
      std::ifstream("/proc/self/statm") >> pages;
      const rlim_t limit = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + 512 * kMiB;
      const rlimit bound{limit, limit};
      ::setrlimit(RLIMIT_AS, &bound);
      at::set_num_threads(1);  // no OpenMP team after fork()
      for (int index = next; index < inputs; ++index) {
        const auto path = path_of(index);
        write_bytes(path, input(index));
        ::alarm(20);
        char outcome = 'r';  // returned
        try {
          read(path);
        } catch (const vmat::Error& error) {
          outcome = error.code() == vmat::ErrorCode::InvalidInput || error.code() == vmat::ErrorCode::Io ? 'f' : 'v';
        } catch (...) {
          outcome = 'x';
        }
        ::alarm(0);
        fs::remove(path);
        const int record[2] = {index, outcome};
        if (::write(channel[1], record, sizeof record) != sizeof record || (outcome != 'r' && outcome != 'f')) ::_exit(1);
      }
      ::_exit(0);
    }
    ::close(channel[1]);
    int record[2];
    int last = next - 1;
    while (::read(channel[0], record, sizeof record) == sizeof record) {
      last = record[0];
      const Outcome outcome = record[1] == 'r' ? Outcome::Returned : record[1] == 'f' ? Outcome::Refused : record[1] == 'v' ? Outcome::OtherVmatError : Outcome::OtherException;
      refused += outcome == Outcome::Refused;
      if (outcome != Outcome::Returned && outcome != Outcome::Refused) {
        write_bytes(path_of(last), input(last));
        ADD_FAILURE() << "input " << last << " (VMAT_FUZZ_SEED=" << seed << "): " << outcome_name(outcome) << "; kept at " << path_of(last);
      }
    }
    ::close(channel[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
      const int culprit = last + 1;  // started, never reported
      write_bytes(path_of(culprit), input(culprit));
      ADD_FAILURE() << "input " << culprit << " (VMAT_FUZZ_SEED=" << seed << "): "
                    << outcome_name(WTERMSIG(status) == SIGALRM ? Outcome::Timeout : Outcome::Signal) << "; kept at " << path_of(culprit);
      last = culprit;
    }
    next = last + 1;
  }
  // The mutations reach the checks: many inputs are refused, so the run is not vacuous.
  EXPECT_GT(refused, inputs / 4);
}

}  // namespace

TEST(SafetensorsFuzz, MutatedHeadersAreReadOrRefusedWithinBounds) {
  const auto path = temp_path("fuzz_seed.safetensors");
  vmat::save_tensors(path, {{"a", torch::arange(6, torch::kFloat).reshape({2, 3})}, {"b", torch::ones({4}, torch::kHalf)}, {"c", torch::zeros({0})}},
                     {{"config", vmat::UNetConfig{9, 8}.to_json()}, {"format_version", "1"}, {"structures", "[\"PTV70\"]"}});
  const auto seed = read_bytes(path);
  fuzz(seed, seed.size(), fuzz_inputs(1500), [](const std::string& file) { vmat::load_tensors(file); });
  fuzz(seed, seed.size(), fuzz_inputs(300), [](const std::string& file) {
    const auto metadata = vmat::read_safetensors_metadata(file);
    if (metadata.count("config")) vmat::UNetConfig::from_json(metadata.at("config"));
  });
  fs::remove(path);
}

TEST(SafetensorsFuzz, MutatedCheckpointsLoadOrAreRefusedWithinBounds) {
  const auto path = temp_path("fuzz_checkpoint.safetensors");
  torch::manual_seed(5);
  vmat::save_model(path, vmat::BaselineUNet3D(vmat::UNetConfig{9, 8}));
  const auto seed = read_bytes(path);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<unsigned char>(seed[i]);
  fuzz(seed, 8 + header_length, fuzz_inputs(150), [](const std::string& file) { vmat::load_model(file); });
  fs::remove(path);
}
