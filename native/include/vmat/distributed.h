#pragma once
// Data-parallel training on PyTorch's c10d (native/src/distributed.cpp): world_size processes meet through a
// TCPStore at master_addr:master_port (rank 0 holds it) and form a process group, Gloo on the CPU, NCCL on CUDA
// devices. Each rank cuts its share of every step's patches (PatchSamplerOptions rank / world_size), the gradients
// and loss terms are all-reduced (averaged over the step's patches) before clipping, the validation cases are split
// over the ranks and their sums all-reduced, and only rank 0 writes checkpoints and sends events. A rank that exits
// or stops answering makes the others stop within the timeout, with an error naming it.
#include <string>
#include <vector>

#include "vmat/trainer.h"

namespace vmat {

// The c10d backends this build has: none (built without libtorch's c10d headers or gloo's), "gloo", or "gloo" and
// "nccl".
std::vector<std::string> distributed_backends();

// This process's rank of a data-parallel run (options.distributed; world size 1 runs the data-parallel path alone,
// as a check of a backend on one device: train_model() trains one process without it). Throws vmat::Error: Io when a rank exits or does
// not answer within options.distributed.timeout_seconds (naming it), InvalidInput for bad settings or ranks whose
// settings differ, besides what Trainer::run() throws.
TrainResult train_data_parallel(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases,
                                const TrainerOptions& options, const TrainerCallbacks& callbacks);

}  // namespace vmat
