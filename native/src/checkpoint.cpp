#include "vmat/checkpoint.h"

#include <sstream>

#include "vmat/error.h"
#include "vmat/shape_text.h"

namespace vmat {

namespace {


UNetConfig config_of(const Metadata& metadata, const std::string& path) {
  const auto config = metadata.find("config");
  require(config != metadata.end(),
          path + " is a safetensors file but not a vmat-native checkpoint (its metadata has no \"config\")");
  const auto version = metadata.find("format_version");
  require(version != metadata.end() && version->second == kCheckpointFormatVersion,
          path + " has checkpoint format version \"" + (version == metadata.end() ? std::string("none") : version->second) +
              "\", but this build reads version " + kCheckpointFormatVersion);
  try {
    return UNetConfig::from_json(config->second);
  } catch (const Error& error) {
    throw Error(ErrorCode::InvalidInput, path + ": " + error.what());
  }
}

}  // namespace

void save_model(const std::string& path, const BaselineUNet3D& model, const Metadata& extra_metadata) {
  Metadata metadata = extra_metadata;
  require(!metadata.count("config") && !metadata.count("format_version"),
          "extra checkpoint metadata must not use the reserved keys \"config\" and \"format_version\"");
  metadata["config"] = model->config().to_json();
  metadata["format_version"] = kCheckpointFormatVersion;
  TensorMap tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace(item.key(), item.value().detach().to(torch::kFloat));
  for (const auto& item : model->named_buffers()) tensors.emplace(item.key(), item.value().detach());
  save_tensors(path, tensors, metadata);
}

LoadedModel load_model(const std::string& path, const torch::Device& device) {
  auto file = load_tensors(path);
  LoadedModel loaded;
  loaded.config = config_of(file.metadata, path);
  loaded.metadata = std::move(file.metadata);
  loaded.model = BaselineUNet3D(loaded.config);
  const auto architecture = "a " + std::to_string(loaded.config.in_channels) + "-input, base-" +
                            std::to_string(loaded.config.base_channels) + " BaselineUNet3D";
  {
    torch::NoGradGuard no_grad;
    size_t matched = 0;
    for (auto& item : loaded.model->named_parameters()) {
      const auto found = file.tensors.find(item.key());
      require(found != file.tensors.end(),
              path + " does not match " + architecture + ": tensor \"" + item.key() + "\" is missing");
      require(found->second.sizes() == item.value().sizes(),
              path + " does not match " + architecture + ": tensor \"" + item.key() + "\" has shape " +
                  shape_text(found->second.sizes()) + ", expected " + shape_text(item.value().sizes()));
      require(at::isFloatingType(found->second.scalar_type()),
              path + ": tensor \"" + item.key() + "\" is not floating point");
      item.value().copy_(found->second);
      ++matched;
    }
    if (matched != file.tensors.size()) {
      const auto parameters = loaded.model->named_parameters();
      for (const auto& entry : file.tensors)
        require(parameters.contains(entry.first),
                path + " does not match " + architecture + ": it has an unexpected tensor \"" + entry.first + "\"");
    }
  }
  loaded.model->to(device);
  return loaded;
}

UNetConfig read_checkpoint_config(const std::string& path) { return config_of(read_safetensors_metadata(path), path); }

}  // namespace vmat
