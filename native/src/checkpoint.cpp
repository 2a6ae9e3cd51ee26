#include "vmat/checkpoint.h"

#include <set>
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
  const auto architecture = "a " + std::to_string(loaded.config.in_channels) + "-input, base-" +
                            std::to_string(loaded.config.base_channels) + " BaselineUNet3D";
  // The tensors are checked against the parameters the config implies before the network is built, so that the
  // network allocated is never larger than the file (a small file whose config claims huge widths is refused).
  const auto layout = parameter_layout(loaded.config);
  std::set<std::string> expected;
  for (const auto& layer : layout) {
    expected.insert(layer.name);
    const auto found = file.tensors.find(layer.name);
    require(found != file.tensors.end(), path + " does not match " + architecture + ": tensor \"" + layer.name + "\" is missing");
    require(found->second.sizes() == c10::IntArrayRef(layer.shape),
            path + " does not match " + architecture + ": tensor \"" + layer.name + "\" has shape " +
                shape_text(found->second.sizes()) + ", expected " + shape_text(layer.shape));
    require(at::isFloatingType(found->second.scalar_type()), path + ": tensor \"" + layer.name + "\" is not floating point");
    // Weights that are not finite give a prediction that is not finite: refuse them here, naming the tensor.
    const int64_t not_finite = (~torch::isfinite(found->second)).sum().item<int64_t>();
    require(not_finite == 0, path + ": tensor \"" + layer.name + "\" holds " + std::to_string(not_finite) +
                                 (not_finite == 1 ? " value that is" : " values that are") +
                                 " NaN or infinite (the training that wrote it diverged?): use an earlier checkpoint");
  }
  for (const auto& entry : file.tensors)
    require(expected.count(entry.first) > 0,
            path + " does not match " + architecture + ": it has an unexpected tensor \"" + entry.first + "\"");
  loaded.model = BaselineUNet3D(loaded.config);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : loaded.model->named_parameters()) item.value().copy_(file.tensors.at(item.key()));
  }
  loaded.model->to(device);
  return loaded;
}

UNetConfig read_checkpoint_config(const std::string& path) { return config_of(read_safetensors_metadata(path), path); }

}  // namespace vmat
