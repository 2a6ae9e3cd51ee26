#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
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
