#pragma once
// Model checkpoints: the network's weights as a safetensors file whose metadata holds the model config (JSON under
// "config") and "format_version": "1". Tensor names are the PyTorch names of spec/model.md, so PyTorch (or the
// `safetensors` package) loads the weights into unet_ref.py's module directly.
#include <torch/torch.h>

#include <string>

#include "vmat/safetensors.h"
#include "vmat/unet.h"

namespace vmat {

constexpr const char* kCheckpointFormatVersion = "1";

struct LoadedModel {
  BaselineUNet3D model{nullptr};
  UNetConfig config;
  Metadata metadata;  // everything in __metadata__, config and format_version included
};

// Saves the weights (float32, moved to the CPU for writing) and metadata {config, format_version} + extra_metadata.
// The extra keys must not be "config" or "format_version". Atomic (temporary file + rename); overwrites `path`.
void save_model(const std::string& path, const BaselineUNet3D& model, const Metadata& extra_metadata = {});

// Builds the model from the checkpoint's config and loads its weights onto `device`. Throws vmat::Error with one
// sentence: Io when the file cannot be read; InvalidInput when it is not safetensors, has no vmat-native config,
// or its tensors do not match the architecture (naming the first missing, unexpected or mis-shaped tensor).
LoadedModel load_model(const std::string& path, const torch::Device& device = torch::kCPU);

// The model config of a checkpoint's metadata (reads the header only).
UNetConfig read_checkpoint_config(const std::string& path);

}  // namespace vmat
