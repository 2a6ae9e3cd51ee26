#include "vmat/distributed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>

#include "vmat/error.h"
#include "vmat/runtime.h"

#if VMAT_WITH_C10D
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if VMAT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace vmat {

std::vector<std::string> distributed_backends() {
#if VMAT_WITH_C10D && VMAT_WITH_NCCL
  return {"gloo", "nccl"};
#elif VMAT_WITH_C10D
  return {"gloo"};
#else
  return {};
#endif
}

namespace {

void check_settings(const DistributedOptions& d) {
  require(d.world_size >= 1, "the world size must be >= 1, got " + std::to_string(d.world_size));
  require(d.rank >= 0 && d.rank < d.world_size, "the rank " + std::to_string(d.rank) + " is not between 0 and world size - 1 (" + std::to_string(d.world_size - 1) + ")");
  require(d.local_rank >= 0, "the local rank must be >= 0, got " + std::to_string(d.local_rank));
  require(!d.master_addr.empty(), "the master address (the host of rank 0) is not set");
  require(d.master_port >= 1 && d.master_port <= 65535, "the master port must be between 1 and 65535, got " + std::to_string(d.master_port));
  require(std::isfinite(d.timeout_seconds) && d.timeout_seconds > 0, "the distributed timeout must be a positive number of seconds");
}

}  // namespace

#if !VMAT_WITH_C10D

TrainResult train_data_parallel(const std::vector<TrainingCase>&, const std::vector<TrainingCase>&, const TrainerOptions& options,
                                const TrainerCallbacks&) {
  check_settings(options.distributed);
  throw Error(ErrorCode::InvalidInput,
              "this build of vmat-native has no data-parallel training: libtorch's c10d headers or gloo's were not found when it was built "
              "(on Debian: apt-get install libgloo-dev, then build again; `vmat-native info` lists the backends)");
}

#else

namespace {

using Milliseconds = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string seconds_text(Milliseconds timeout) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g s", static_cast<double>(timeout.count()) / 1000.0);
  return buffer;
}

// c10d and gloo messages start with "[file.cc:line] " and may carry a backtrace: keep the first line's words.
std::string reason_of(const std::exception& error) {
  std::string text = error.what();
  text = text.substr(0, text.find('\n'));
  if (!text.empty() && text[0] == '[') {
    const auto end = text.find("] ");
    if (end != std::string::npos) text = text.substr(end + 2);
  }
  return text;
}

std::string ranks_text(const std::vector<int64_t>& ranks, int64_t world) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return text + " of " + std::to_string(world);
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

// One collective over a process group of either libtorch (1.13: ProcessGroup, 2.x: Backend): a sum all-reduce.
struct Collective {
  virtual ~Collective() = default;
  virtual void allreduce_sum(at::Tensor& tensor) = 0;
};

template <class Group>
struct CollectiveOf : Collective {
  explicit CollectiveOf(c10::intrusive_ptr<Group> group) : group(std::move(group)) {}
  void allreduce_sum(at::Tensor& tensor) override {
    std::vector<at::Tensor> tensors{tensor};
    group->allreduce(tensors)->wait();
  }
  c10::intrusive_ptr<Group> group;
};

// (name, value) of every setting that must be the same on all ranks: otherwise the reduced gradients would mix runs.
std::vector<std::pair<std::string, std::string>> shared_settings(const TrainerOptions& o, const std::vector<TrainingCase>& train,
                                                                 const std::vector<TrainingCase>& val) {
  const auto ids = [](const std::vector<TrainingCase>& cases) {
    std::string text;
    for (const auto& item : cases) text += (text.empty() ? "" : ",") + item.id;
    return text;
  };
  const auto number = [](double value) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%.17g", value);
    return std::string(buffer);
  };
  return {{"world size", std::to_string(o.distributed.world_size)},
          {"inChannels", std::to_string(o.in_channels)},
          {"baseChannels", std::to_string(o.base_channels)},
          {"condDim", std::to_string(o.cond_dim)},
          {"epochs", std::to_string(o.epochs)},
          {"batchSize", std::to_string(o.batch_size)},
          {"patchSize", std::to_string(o.patch_size)},
          {"patchesPerVolume", std::to_string(o.patches_per_volume)},
          {"lr", number(o.lr)},
          {"minLr", number(o.min_lr)},
          {"weightDecay", number(o.weight_decay)},
          {"betas", number(o.beta1) + "," + number(o.beta2)},
          {"gradClip", number(o.grad_clip)},
          {"precision", o.precision},
          {"patience", std::to_string(o.patience)},
          {"seed", std::to_string(o.seed)},
          {"useGradientLoss", o.loss.use_gradient_loss ? "true" : "false"},
          {"gradientLossWeight", number(o.loss.gradient_loss_weight)},
          {"negativePenaltyWeight", number(o.loss.negative_penalty_weight)},
          {"normalisationDoseGy", number(o.normalisation_dose_gy)},
          {"resume", o.resume ? "true" : "false"},
          {"training cases", ids(train)},
          {"validation cases", ids(val)}};
}

std::string encode(const std::vector<std::pair<std::string, std::string>>& settings) {
  std::string text;
  for (const auto& [name, value] : settings) text += name + "=" + value + "\n";
  return text;
}

// The process group of this rank, and the one place where a failed collective becomes a sentence naming the rank(s)
// that did not take part.
class Group {
 public:
  Group(const DistributedOptions& options, const torch::Device& device, const std::vector<std::pair<std::string, std::string>>& settings)
      : options_(options), timeout_(static_cast<int64_t>(std::llround(options.timeout_seconds * 1000))) {
    const std::string where = options.master_addr + ":" + std::to_string(options.master_port);
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = static_cast<size_t>(options.world_size);
    store_options.waitWorkers = false;  // joining is checked below, naming who is missing
    store_options.timeout = timeout_;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
    } catch (const std::exception& error) {
      if (options.rank == 0) {
        throw Error(ErrorCode::Io, "rank 0 could not listen at " + where + " for the other ranks (" + reason_of(error) + "): choose another master port");
      }
      throw Error(ErrorCode::Io, "rank " + std::to_string(options.rank) + " could not reach rank 0 at " + where + " within " + seconds_text(timeout_) +
                                     " (" + reason_of(error) + "): start rank 0, or check the master address and port");
    }
    const auto me = std::to_string(options.rank);
    const auto text = encode(settings);
    store_->set("vmat/settings/" + me, std::vector<uint8_t>(text.begin(), text.end()));
    store_->set("vmat/joined/" + me, std::vector<uint8_t>{1});
    wait_for_all("vmat/joined/", "join the run at " + where);
    compare_settings(settings);

    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("vmat/group", store_);
    try {
#if VMAT_WITH_NCCL
      if (device.is_cuda()) {
        auto nccl = c10d::ProcessGroupNCCL::Options::create();
        nccl->timeout = timeout_;
        collective_ = std::make_unique<CollectiveOf<c10d::ProcessGroupNCCL>>(
            c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, static_cast<int>(options.rank), static_cast<int>(options.world_size), nccl));
        backend_ = "nccl";
      }
#endif
      if (!collective_) {
        require(!device.is_cuda(), "data-parallel training on CUDA devices needs NCCL, and this build has none (libtorch's NCCL headers or nccl.h "
                                   "were not found when it was built); train on the CPU (device cpu) or build against a libtorch with NCCL");
        auto gloo = c10d::ProcessGroupGloo::Options::create(timeout_);
        const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
        if (interface && *interface) {
          gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
        } else if (is_loopback(options.master_addr)) {
          gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        } else {
          gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        collective_ = std::make_unique<CollectiveOf<c10d::ProcessGroupGloo>>(
            c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, static_cast<int>(options.rank), static_cast<int>(options.world_size), gloo));
        backend_ = "gloo";
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& error) {
      fail("connecting the ranks' process group", error);
    }
  }

  const std::string& backend() const { return backend_; }

  // Sums `tensor` over the ranks, in place; `what` names the collective in the error when a rank does not take part.
  void allreduce_sum(at::Tensor& tensor, const std::string& what) {
    try {
      collective_->allreduce_sum(tensor);
    } catch (const std::exception& error) {
      fail(what, error);
    }
  }

 private:
  std::string key(const std::string& prefix, int64_t rank) const { return prefix + std::to_string(rank); }

  void wait_for_all(const std::string& prefix, const std::string& what) {
    std::vector<std::string> keys;
    for (int64_t r = 0; r < options_.world_size; ++r) keys.push_back(key(prefix, r));
    try {
      store_->wait(keys, timeout_);
    } catch (const std::exception& error) {
      std::vector<int64_t> missing;
      try {
        for (int64_t r = 0; r < options_.world_size; ++r) {
          if (!store_->check({key(prefix, r)})) missing.push_back(r);
        }
      } catch (const std::exception&) {
        missing = {0};  // the store (rank 0's) went away
      }
      if (missing.empty()) throw Error(ErrorCode::Io, "the ranks could not " + what + " (" + reason_of(error) + ")");
      throw Error(ErrorCode::Io, ranks_text(missing, options_.world_size) + " did not " + what + " within " + seconds_text(timeout_) +
                                     " (the distributed timeout): start every rank with the same world size, master address and port");
    }
  }

  void compare_settings(const std::vector<std::pair<std::string, std::string>>& mine) {
    const auto parse = [](const std::vector<uint8_t>& bytes) {
      std::vector<std::pair<std::string, std::string>> settings;
      std::string text(bytes.begin(), bytes.end()), line;
      std::stringstream lines(text);
      while (std::getline(lines, line)) {
        const auto equals = line.find('=');
        if (equals != std::string::npos) settings.emplace_back(line.substr(0, equals), line.substr(equals + 1));
      }
      return settings;
    };
    std::vector<std::vector<std::pair<std::string, std::string>>> all;
    for (int64_t r = 0; r < options_.world_size; ++r) all.push_back(r == options_.rank ? mine : parse(store_->get(key("vmat/settings/", r))));
    // Rank 0 hosts the store: it waits until every rank has read the settings, so that a refusal reaches each rank as
    // the sentence below, not as a broken connection to a store that went away.
    store_->add("vmat/settings-read", 1);
    if (options_.rank == 0) {
      const auto deadline = Clock::now() + timeout_;
      while (store_->add("vmat/settings-read", 0) < options_.world_size && Clock::now() < deadline) std::this_thread::sleep_for(Milliseconds(5));
    }
    const auto& reference = all[0];
    for (int64_t r = 1; r < options_.world_size; ++r) {
      const auto& theirs = all[r];
      for (size_t i = 0; i < reference.size(); ++i) {
        const auto found = std::find_if(theirs.begin(), theirs.end(), [&](const auto& item) { return item.first == reference[i].first; });
        const std::string value = found == theirs.end() ? "(none)" : found->second;
        if (value == reference[i].second) continue;
        const bool cases = reference[i].first.find("cases") != std::string::npos;
        throw Error(ErrorCode::InvalidInput, "rank " + std::to_string(r) + " was started with other settings than rank 0: its " + reference[i].first +
                                                 (cases ? " differ" : " is " + value + ", rank 0's " + reference[i].second) +
                                                 "; start every rank with the same settings and data");
      }
    }
  }

  // A collective failed here: find which ranks did not fail with it (they exited or hang), then stop with a sentence
  // naming them. Every rank that fails marks itself in the store and looks for the others' marks for a short while.
  [[noreturn]] void fail(const std::string& what, const std::exception& error) {
    const auto grace = std::min(timeout_, Milliseconds(2000));
    std::vector<int64_t> missing;
    try {
      store_->set(key("vmat/failed/", options_.rank), std::vector<uint8_t>{1});
      const auto deadline = Clock::now() + grace;
      while (true) {
        missing.clear();
        for (int64_t r = 0; r < options_.world_size; ++r) {
          if (r != options_.rank && !store_->check({key("vmat/failed/", r)})) missing.push_back(r);
        }
        if (missing.empty() || Clock::now() >= deadline) break;
        std::this_thread::sleep_for(Milliseconds(100));
      }
      // Rank 0 holds the store: it stays while the others look.
      if (options_.rank == 0) std::this_thread::sleep_for(grace);
    } catch (const std::exception&) {
      missing = {0};  // rank 0's store is gone: rank 0 exited
    }
    if (missing.empty()) {
      throw Error(ErrorCode::Io, what + " failed on every rank (" + reason_of(error) + "); the run stops");
    }
    throw Error(ErrorCode::Io, ranks_text(missing, options_.world_size) + " stopped answering during " + what + " (it exited or hangs; rank " +
                                   std::to_string(options_.rank) + " waited up to " + seconds_text(timeout_) + ", the distributed timeout); the run stops");
  }

  DistributedOptions options_;
  Milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::unique_ptr<Collective> collective_;
  std::string backend_;
};

class DataParallelTrainer : public Trainer {
 public:
  DataParallelTrainer(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases, TrainerOptions options,
                      TrainerCallbacks callbacks, Group& group)
      : Trainer(train_cases, val_cases, std::move(options), std::move(callbacks)), group_(group), val_count_(val_cases.size()) {}

 protected:
  std::unique_ptr<PatchLoader> prepare_loader(const PatchSamplerOptions& sampler, std::shared_ptr<std::vector<SamplingCase>> cases) override {
    auto share = sampler;
    share.rank = options().distributed.rank;
    share.world_size = options().distributed.world_size;
    return std::make_unique<PatchLoader>(std::move(cases), share);
  }

  // One all-reduce per step of one flat buffer: every gradient times this rank's patch count, then the loss terms
  // times it, the count, and the stop request. Dividing by the summed count gives the mean over the step's patches,
  // as one process with the whole batch computes it.
  void after_backward(LossTerms& terms, int64_t samples) override {
    torch::NoGradGuard no_grad;
    const double n = static_cast<double>(samples);
    std::vector<at::Tensor> pieces;
    for (const auto& parameter : parameters()) {
      const auto& grad = parameter.grad();
      pieces.push_back(grad.defined() ? grad.reshape({-1}).to(torch::kFloat) * n : torch::zeros({parameter.numel()}, parameter.options().dtype(torch::kFloat)));
    }
    const auto scalars = torch::stack({terms.total.detach().to(torch::kFloat) * n, terms.mse.detach().to(torch::kFloat) * n,
                                       terms.grad.detach().to(torch::kFloat) * n, terms.neg.detach().to(torch::kFloat) * n})
                             .to(device());
    pieces.push_back(scalars);
    pieces.push_back(torch::tensor({static_cast<float>(samples), cancel_requested() ? 1.0f : 0.0f}, torch::TensorOptions().device(device())));
    auto flat = torch::cat(pieces);
    group_.allreduce_sum(flat, "the gradient all-reduce of epoch " + std::to_string(state().epoch + 1) + ", step " + std::to_string(state().step + 1));
    const int64_t end = flat.numel();
    const auto count = flat.narrow(0, end - 2, 1);
    agreed_cancel_ = flat[end - 1].item<float>() > 0;
    flat.narrow(0, 0, end - 2).div_(count);
    int64_t offset = 0;
    for (const auto& parameter : parameters()) {
      const auto reduced = flat.narrow(0, offset, parameter.numel()).view(parameter.sizes());
      auto& grad = parameter.mutable_grad();
      if (grad.defined()) {
        grad.copy_(reduced);
      } else {
        grad = reduced.to(parameter.dtype()).clone();
      }
      offset += parameter.numel();
    }
    terms.total = flat[offset];
    terms.mse = flat[offset + 1];
    terms.grad = flat[offset + 2];
    terms.neg = flat[offset + 3];
  }

  std::vector<size_t> validation_share() const override {
    std::vector<size_t> share;
    for (size_t i = static_cast<size_t>(options().distributed.rank); i < val_count_; i += static_cast<size_t>(options().distributed.world_size)) {
      share.push_back(i);
    }
    return share;
  }

  void reduce_validation(ValidationSums& sums) override {
    auto values = torch::tensor({sums.loss, sums.mae_gy, sums.ptv70_mae_gy, static_cast<double>(sums.cases), static_cast<double>(sums.ptv70_cases),
                                 cancel_requested() ? 1.0 : 0.0},
                                torch::TensorOptions().dtype(torch::kDouble).device(device()));
    group_.allreduce_sum(values, "the validation reduction of epoch " + std::to_string(state().epoch + 1));
    values = values.cpu();
    const double* v = values.data_ptr<double>();
    sums.loss = v[0];
    sums.mae_gy = v[1];
    sums.ptv70_mae_gy = v[2];
    sums.cases = static_cast<int64_t>(std::llround(v[3]));
    sums.ptv70_cases = static_cast<int64_t>(std::llround(v[4]));
    agreed_cancel_ = v[5] > 0;
  }

  bool writes_files() const override { return options().distributed.rank == 0; }

  // A stop request takes effect where the ranks agreed on it (the step's or the validation's reduction), so that
  // every rank stops at the same step.
  bool cancelled() const override { return agreed_cancel_; }

 private:
  Group& group_;
  size_t val_count_;
  bool agreed_cancel_ = false;
};

}  // namespace

TrainResult train_data_parallel(const std::vector<TrainingCase>& train_cases, const std::vector<TrainingCase>& val_cases, const TrainerOptions& options,
                                const TrainerCallbacks& callbacks) {
  check_settings(options.distributed);
  TrainerOptions rank_options = options;
  // One CUDA device per process on its machine: "auto" and "cuda" mean the local rank's.
  const auto& info = runtime_info();
  if ((options.device == "auto" && info.cuda_available) || options.device == "cuda") rank_options.device = "cuda:" + std::to_string(options.distributed.local_rank);
  const torch::Device device(resolve_device(rank_options.device));
  Group group(rank_options.distributed, device, shared_settings(rank_options, train_cases, val_cases));
  DataParallelTrainer trainer(train_cases, val_cases, rank_options, callbacks, group);
  return trainer.run();
}

#endif

}  // namespace vmat
