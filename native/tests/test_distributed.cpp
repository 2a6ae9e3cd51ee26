// Data-parallel training over Gloo on 127.0.0.1: each test starts its other rank as a second process (this test
// binary again, filtered to the same test, with VMAT_DP_RANK set) and plays rank 0 itself.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "vmat/distributed.h"
#include "vmat/error.h"
#include "vmat/safetensors.h"
#include "vmat/trainer.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;

bool have_c10d() { return !vmat::distributed_backends().empty(); }

vmat::TrainingCase tiny_case(const std::string& id, int64_t seed) {
  torch::manual_seed(seed);
  vmat::TrainingCase item;
  item.id = id;
  item.input = torch::rand({3, 16, 16, 16});
  item.dose = torch::rand({16, 16, 16}) * 70;
  item.constraints = torch::rand({5});
  item.body = torch::ones({16, 16, 16}, torch::kByte);
  return item;
}

struct Cases {
  std::vector<vmat::TrainingCase> train{tiny_case("a", 1), tiny_case("b", 2), tiny_case("c", 3)};
  std::vector<vmat::TrainingCase> val{tiny_case("v0", 4), tiny_case("v1", 5), tiny_case("v2", 6)};
};

vmat::TrainerOptions tiny_options(const fs::path& dir, int64_t batch, int64_t patches_per_volume) {
  vmat::TrainerOptions options;
  options.in_channels = 3;
  options.base_channels = 8;
  options.cond_dim = 5;
  options.epochs = 1;
  options.batch_size = batch;
  options.patch_size = 16;
  options.patches_per_volume = patches_per_volume;
  options.lr = 1e-3;
  options.weight_decay = 0.01;
  options.beta1 = 0.9;
  options.beta2 = 0.999;
  options.min_lr = 1e-5;
  options.grad_clip = 1.0;
  options.precision = "fp32";
  options.patience = 10;
  options.seed = 7;
  options.loss.use_gradient_loss = true;
  options.loss.gradient_loss_weight = 0.1;
  options.loss.negative_penalty_weight = 0.1;
  options.normalisation_dose_gy = 70;
  options.device = "cpu";
  options.num_workers = 1;
  options.sw_batch = 1;
  options.overlap = 0.5;
  options.left_right_pairs = {{1, 2}};
  options.checkpoint_dir = (dir / "checkpoints").string();
  return options;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

vmat::TrainerOptions with_rank(vmat::TrainerOptions options, int64_t rank, int port, double timeout) {
  options.distributed.world_size = 2;
  options.distributed.rank = rank;
  options.distributed.master_addr = "127.0.0.1";
  options.distributed.master_port = port;
  options.distributed.timeout_seconds = timeout;
  return options;
}

// Set in the second process: which rank it is, the port and the folder of the run.
struct Role {
  bool child = false;
  int port = 0;
  fs::path dir;
};

Role role() {
  Role role;
  if (const char* rank = std::getenv("VMAT_DP_RANK")) {
    role.child = std::string(rank) == "1";
    role.port = std::atoi(std::getenv("VMAT_DP_PORT"));
    role.dir = std::getenv("VMAT_DP_DIR");
  }
  return role;
}

// Starts this binary as rank 1 of the current test.
pid_t start_rank_one(int port, const fs::path& dir) {
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = std::string("--gtest_filter=") + test->test_suite_name() + "." + test->name();
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> env_text{"VMAT_DP_RANK=1", "VMAT_DP_PORT=" + std::to_string(port), "VMAT_DP_DIR=" + dir.string()};
  for (char** e = environ; *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> env;
  for (auto& item : env_text) env.push_back(item.data());
  env.push_back(nullptr);
  std::vector<char*> argv{const_cast<char*>(exe.c_str()), const_cast<char*>(filter.c_str()), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), env.data()), 0);
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

fs::path fresh_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("vmat-dp-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

struct Difference {
  double largest = 0;  // absolute
  std::string where;
};

// The largest difference between the float tensors of two safetensors files, by name (the AdamW step counts aside).
Difference compare(const fs::path& a, const fs::path& b) {
  const auto left = vmat::load_tensors(a.string()), right = vmat::load_tensors(b.string());
  EXPECT_EQ(left.tensors.size(), right.tensors.size());
  Difference result;
  for (const auto& [name, tensor] : left.tensors) {
    const auto found = right.tensors.find(name);
    EXPECT_NE(found, right.tensors.end()) << name;
    if (found == right.tensors.end() || name.rfind("step.", 0) == 0 || name.rfind("rng.", 0) == 0) continue;
    const double largest = (tensor.to(torch::kDouble) - found->second.to(torch::kDouble)).abs().max().item<double>();
    if (largest > result.largest) result.where = name;
    result.largest = std::max(result.largest, largest);
  }
  return result;
}

// Two ranks of batch 1 against one process of batch 2, from the same seed: the same patches in the same steps and
// the gradients averaged before clipping, so the same AdamW moments (sums of the gradients) to float32 rounding.
void expect_two_ranks_equal_one_process(const std::string& name, int64_t patches_per_volume, int64_t steps) {
  if (!have_c10d()) GTEST_SKIP() << "built without c10d";
  const Cases cases;
  const auto me = role();
  if (me.child) {
    vmat::train_model(cases.train, cases.val, with_rank(tiny_options(me.dir, 1, patches_per_volume), 1, me.port, 20), {});
    return;
  }
  const auto dir = fresh_dir(name);
  const int port = free_port();
  const pid_t child = start_rank_one(port, dir / "parallel");
  int64_t steps_seen = 0;
  vmat::TrainerCallbacks callbacks;
  callbacks.emit = [&](const std::string& json) { steps_seen += json.find("\"type\":\"step\"") != std::string::npos; };
  const auto parallel = vmat::train_model(cases.train, cases.val, with_rank(tiny_options(dir / "parallel", 1, patches_per_volume), 0, port, 20), callbacks);
  EXPECT_EQ(wait_for(child), 0);
  EXPECT_EQ(steps_seen, steps);
  const auto single = vmat::train_model(cases.train, cases.val, tiny_options(dir / "single", 2, patches_per_volume), {});
  EXPECT_EQ(parallel.stop_reason, "max_epochs");
  // Validation: rank 0 evaluated v0 and v2, rank 1 v1; the reduced MAE is the mean over the three.
  EXPECT_NEAR(parallel.best_val_mae_gy, single.best_val_mae_gy, 1e-4);
  // The AdamW moments are sums of the (averaged) gradients: float32 rounding apart (they are at most about 1e-2).
  const auto moments = compare(dir / "parallel/checkpoints/last.state.safetensors", dir / "single/checkpoints/last.state.safetensors");
  EXPECT_LT(moments.largest, 1e-7) << moments.where;
  // The weights: AdamW's m / sqrt(v) turns rounding in gradients near zero into steps of up to about lr either way
  // (the convolution biases of the width-8 blocks, whose GroupNorm of one channel per group cancels them, have a
  // gradient of zero in exact arithmetic, i.e. pure rounding), so two runs of one process that differ only in the
  // order of their sums (1 thread against 2) differ by about lr after 3 steps too. Data parallel must not be further
  // from one process than that; a missed or un-averaged gradient would show in the moments above.
  auto reordered = tiny_options(dir / "reordered", 2, patches_per_volume);
  const int threads = at::get_num_threads();
  at::set_num_threads(threads == 1 ? 2 : 1);
  vmat::train_model(cases.train, cases.val, reordered, {});
  at::set_num_threads(threads);
  const auto noise = compare(dir / "reordered/checkpoints/last.safetensors", dir / "single/checkpoints/last.safetensors");
  const auto weights = compare(dir / "parallel/checkpoints/last.safetensors", dir / "single/checkpoints/last.safetensors");
  EXPECT_LE(weights.largest, std::max(3 * noise.largest, 1e-6)) << weights.where << " after " << steps << " steps; one process at another thread count: "
                                                << noise.largest << " (" << noise.where << ")";
  EXPECT_LT(weights.largest, 4 * steps * reordered.lr);
  fs::remove_all(dir);
}

TEST(DataParallel, TwoRanksOfBatchOneGiveTheWeightsOfOneProcessWithBatchTwo) {
  expect_two_ranks_equal_one_process("even", 2, 3);  // 3 cases x 2 patches: 3 steps of 2
}

TEST(DataParallel, ARankWithoutPatchesInTheLastStepStillMatchesOneProcess) {
  expect_two_ranks_equal_one_process("uneven", 1, 2);  // 3 patches: the second step has one, on rank 0
}

// The second process dies (or hangs) at its second step; rank 0 must stop within the timeout naming it.
void expect_rank_one_named(const std::string& name, bool hang) {
  if (!have_c10d()) GTEST_SKIP() << "built without c10d";
  const Cases cases;
  const auto me = role();
  if (me.child) {
    int calls = 0;
    vmat::TrainerCallbacks callbacks;
    callbacks.cancelled = [&] {
      if (++calls == 2) {
        if (hang) std::this_thread::sleep_for(std::chrono::hours(1));
        ::_exit(9);
      }
      return false;
    };
    vmat::train_model(cases.train, cases.val, with_rank(tiny_options(me.dir, 1, 2), 1, me.port, 4), callbacks);
    return;
  }
  const auto dir = fresh_dir(name);
  const int port = free_port();
  const pid_t child = start_rank_one(port, dir);
  const auto start = std::chrono::steady_clock::now();
  try {
    vmat::train_model(cases.train, cases.val, with_rank(tiny_options(dir, 1, 2), 0, port, 4), {});
    ADD_FAILURE() << "rank 0 finished although rank 1 " << (hang ? "hung" : "died");
  } catch (const vmat::Error& error) {
    EXPECT_EQ(error.code(), vmat::ErrorCode::Io);
    EXPECT_NE(std::string(error.what()).find("rank 1 of 2 stopped answering during the gradient all-reduce of epoch 1, step 2"), std::string::npos)
        << error.what();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30) << "rank 0 took too long to give up";
  if (hang) ::kill(child, SIGKILL);
  wait_for(child);
  fs::remove_all(dir);
}

TEST(DataParallel, ARankThatDiesStopsTheOthersNamingIt) { expect_rank_one_named("dies", false); }

TEST(DataParallel, ARankThatHangsStopsTheOthersWithinTheTimeoutNamingIt) { expect_rank_one_named("hangs", true); }

TEST(DataParallel, RanksWithOtherSettingsAreRefusedNamingTheSetting) {
  if (!have_c10d()) GTEST_SKIP() << "built without c10d";
  const Cases cases;
  const auto me = role();
  const auto expect_refused = [&](const vmat::TrainerOptions& options) {
    try {
      vmat::train_model(cases.train, cases.val, options, {});
      ADD_FAILURE() << "ranks of different batch sizes trained together";
    } catch (const vmat::Error& error) {
      EXPECT_EQ(std::string(error.what()), "rank 1 was started with other settings than rank 0: its batchSize is 2, rank 0's 1; start every rank with the same settings and data");
    }
  };
  if (me.child) {
    expect_refused(with_rank(tiny_options(me.dir, 2, 1), 1, me.port, 10));
    return;
  }
  const auto dir = fresh_dir("settings");
  const int port = free_port();
  const pid_t child = start_rank_one(port, dir);
  expect_refused(with_rank(tiny_options(dir, 1, 1), 0, port, 10));
  EXPECT_EQ(wait_for(child), 0);
  fs::remove_all(dir);
}

TEST(DataParallel, ARankThatNeverJoinsIsNamedAfterTheTimeout) {
  if (!have_c10d()) GTEST_SKIP() << "built without c10d";
  const Cases cases;
  const auto dir = fresh_dir("join");
  try {
    vmat::train_model(cases.train, cases.val, with_rank(tiny_options(dir, 1, 1), 0, free_port(), 1), {});
    ADD_FAILURE() << "rank 0 trained alone";
  } catch (const vmat::Error& error) {
    EXPECT_NE(std::string(error.what()).find("rank 1 of 2 did not join the run at 127.0.0.1:"), std::string::npos) << error.what();
  }
  fs::remove_all(dir);
}

// The NCCL path on one GPU (NCCL refuses two ranks on one device): a world of one rank through the process group
// against the single-process trainer, on the same CUDA device. Runs where the build has NCCL and a GPU answers.
TEST(DataParallel, NcclOnOneGpuMatchesOneProcess) {
  const auto backends = vmat::distributed_backends();
  if (std::find(backends.begin(), backends.end(), "nccl") == backends.end() || !torch::cuda::is_available()) {
    GTEST_SKIP() << "needs a build with NCCL and a CUDA device";
  }
  const Cases cases;
  const auto dir = fresh_dir("nccl");
  auto options = tiny_options(dir / "parallel", 2, 2);
  options.device = "cuda";
  auto one_rank = with_rank(options, 0, free_port(), 20);
  one_rank.distributed.world_size = 1;
  const auto parallel = vmat::train_data_parallel(cases.train, cases.val, one_rank, {});
  options.checkpoint_dir = (dir / "single" / "checkpoints").string();
  const auto single = vmat::train_model(cases.train, cases.val, options, {});
  EXPECT_NEAR(parallel.best_val_mae_gy, single.best_val_mae_gy, 1e-3);
  // cuDNN's convolution backward is not bitwise deterministic: a looser bound than on the CPU.
  EXPECT_LT(compare(dir / "parallel/checkpoints/last.state.safetensors", dir / "single/checkpoints/last.state.safetensors").largest, 1e-6);
  fs::remove_all(dir);
}

TEST(DataParallel, RefusesBadSettingsNamingThem) {
  const Cases cases;
  auto options = with_rank(tiny_options(fresh_dir("bad"), 1, 1), 2, 29500, 10);
  try {
    vmat::train_model(cases.train, cases.val, options, {});
    ADD_FAILURE() << "rank 2 of 2 was accepted";
  } catch (const vmat::Error& error) {
    EXPECT_EQ(std::string(error.what()), "the rank 2 is not between 0 and world size - 1 (1)");
  }
}

}  // namespace
