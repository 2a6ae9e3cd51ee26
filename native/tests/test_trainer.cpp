#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "vmat/error.h"
#include "vmat/trainer.h"

namespace {

TEST(Trainer, CosineScheduleGoesFromLrToMinLrOverTheEpochs) {
  EXPECT_DOUBLE_EQ(vmat::cosine_lr(1e-4, 1e-6, 200, 0), 1e-4);
  EXPECT_NEAR(vmat::cosine_lr(1e-4, 1e-6, 200, 100), (1e-4 + 1e-6) / 2, 1e-15);
  EXPECT_NEAR(vmat::cosine_lr(1e-4, 1e-6, 200, 200), 1e-6, 1e-15);
  // PyTorch's CosineAnnealingLR closed form at epoch 37 of 200.
  EXPECT_NEAR(vmat::cosine_lr(1e-4, 1e-6, 200, 37), 1e-6 + (1e-4 - 1e-6) * (1 + std::cos(M_PI * 37 / 200)) / 2, 1e-18);
  for (int e = 1; e < 200; ++e) EXPECT_LT(vmat::cosine_lr(1e-4, 1e-6, 200, e), vmat::cosine_lr(1e-4, 1e-6, 200, e - 1));
}

TEST(Trainer, BestCheckpointNameHasZeroPaddedEpochAndMaeToThreeDecimals) {
  EXPECT_EQ(vmat::best_checkpoint_name(12, 3.6704), "best-epoch=012-val_mae_gy=3.670.safetensors");
  EXPECT_EQ(vmat::best_checkpoint_name(1234, 10.0), "best-epoch=1234-val_mae_gy=10.000.safetensors");
}

}  // namespace

namespace {

namespace fs = std::filesystem;

vmat::TrainingCase tiny_case(const std::string& id, int64_t seed, int64_t cond_dim) {
  torch::manual_seed(seed);
  vmat::TrainingCase item;
  item.id = id;
  item.input = torch::rand({3, 16, 16, 16});
  item.dose = torch::rand({16, 16, 16}) * 70;
  item.constraints = torch::rand({cond_dim});
  item.body = torch::ones({16, 16, 16}, torch::kByte);
  return item;
}

vmat::TrainerOptions tiny_options(const fs::path& dir) {
  vmat::TrainerOptions options;
  options.in_channels = 3;
  options.base_channels = 8;
  options.cond_dim = 5;
  options.epochs = 2;
  options.batch_size = 1;
  options.patch_size = 16;
  options.patches_per_volume = 1;
  options.lr = 1e-3;
  options.weight_decay = 0.01;
  options.beta1 = 0.9;
  options.beta2 = 0.999;
  options.min_lr = 1e-5;
  options.grad_clip = 1.0;
  options.precision = "fp32";
  options.patience = 10;
  options.seed = 7;
  options.normalisation_dose_gy = 70;
  options.device = "cpu";
  options.num_workers = 1;
  options.sw_batch = 1;
  options.overlap = 0.5;
  options.left_right_pairs = {{1, 2}};
  options.checkpoint_dir = (dir / "checkpoints").string();
  return options;
}

fs::path fresh_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("vmat-trainer-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

// A trainer as data-parallel training will derive one: it records where the loop calls each hook.
class RecordingTrainer : public vmat::Trainer {
 public:
  using vmat::Trainer::Trainer;
  std::vector<std::string> calls;
  bool write = true;
  std::vector<size_t> share{0, 1};

 protected:
  void after_backward(vmat::LossTerms&, int64_t) override {
    bool all_have_gradients = true;
    for (const auto& parameter : parameters()) all_have_gradients &= parameter.grad().defined();
    calls.push_back(all_have_gradients ? "after_backward" : "after_backward without gradients");
  }
  std::vector<size_t> validation_share() const override { return share; }
  void reduce_validation(vmat::ValidationSums& sums) override { calls.push_back("reduce " + std::to_string(sums.cases)); }
  bool writes_files() const override { return write; }
  vmat::LossTerms compute_loss(const vmat::LossInputs& inputs) const override {
    EXPECT_EQ(inputs.input.size(1), 3);
    EXPECT_EQ(inputs.constraints.size(1), 5);
    return vmat::Trainer::compute_loss(inputs);
  }
};

TEST(Trainer, CallsTheHooksAtTheirPlacesInTheLoop) {
  const auto dir = fresh_dir("hooks");
  const std::vector<vmat::TrainingCase> train{tiny_case("a", 1, 5), tiny_case("b", 2, 5)};
  const std::vector<vmat::TrainingCase> val{tiny_case("v0", 3, 5), tiny_case("v1", 4, 5)};
  std::vector<std::string> events;
  vmat::TrainerCallbacks callbacks;
  callbacks.emit = [&](const std::string& json) { events.push_back(json); };
  RecordingTrainer trainer(train, val, tiny_options(dir), callbacks);
  trainer.share = {1};  // this "rank" validates the second case only
  const auto result = trainer.run();
  EXPECT_EQ(result.stop_reason, "max_epochs");
  EXPECT_EQ(result.epochs_run, 2);
  // 2 epochs x 2 steps (2 cases, 1 patch each, batch 1): after_backward once per step, with the gradients there;
  // the validation sums reduced once per epoch, over the one case of this share.
  const std::vector<std::string> expected{"after_backward", "after_backward", "reduce 1", "after_backward", "after_backward", "reduce 1"};
  EXPECT_EQ(trainer.calls, expected);
  int validated = 0;
  for (const auto& event : events) {
    if (event.find("\"type\":\"validate\"") != std::string::npos) {
      ++validated;
      EXPECT_NE(event.find("\"case\":\"v1\""), std::string::npos) << event;
    }
  }
  EXPECT_EQ(validated, 2);
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "last.safetensors"));
  fs::remove_all(dir);
}

TEST(Trainer, WritesNothingAndSendsNoEventsWhereWritesFilesIsFalse) {
  const auto dir = fresh_dir("silent");
  const std::vector<vmat::TrainingCase> train{tiny_case("a", 1, 5)};
  const std::vector<vmat::TrainingCase> val{tiny_case("v0", 3, 5)};
  int events = 0;
  vmat::TrainerCallbacks callbacks;
  callbacks.emit = [&](const std::string&) { ++events; };
  RecordingTrainer trainer(train, val, tiny_options(dir), callbacks);
  trainer.write = false;
  trainer.share = {0};
  const auto result = trainer.run();
  EXPECT_EQ(result.epochs_run, 2);
  EXPECT_GE(result.best_epoch, 1);  // the bookkeeping of the best epochs goes on
  EXPECT_EQ(events, 0);
  EXPECT_FALSE(fs::exists(dir));
}

TEST(Trainer, RefusesCasesWhoseConditioningIsNotCondDimLongAndBadFlipPairs) {
  const auto dir = fresh_dir("refuse");
  const std::vector<vmat::TrainingCase> train{tiny_case("a", 1, 5)};
  const std::vector<vmat::TrainingCase> val{tiny_case("short", 3, 4)};
  try {
    vmat::train_model(train, val, tiny_options(dir), {});
    FAIL() << "a 4-value conditioning vector was accepted with condDim 5";
  } catch (const vmat::Error& error) {
    EXPECT_EQ(std::string(error.what()), "case short has 4 conditioning values, the model expects condDim = 5");
  }
  auto options = tiny_options(dir);
  options.left_right_pairs = {{1, 3}};
  const std::vector<vmat::TrainingCase> good_val{tiny_case("v", 3, 5)};
  try {
    vmat::train_model(train, good_val, options, {});
    FAIL() << "a pair outside the input channels was accepted";
  } catch (const vmat::Error& error) {
    EXPECT_NE(std::string(error.what()).find("the left-right pair [1, 3] names a channel outside the model's 3 input channels"), std::string::npos) << error.what();
  }
  fs::remove_all(dir);
}

// The weights and state of one save share a token; last's whole pair becomes previous before last is replaced, and
// a pair from two saves (a kill between the two renames) is refused on resume.
TEST(Trainer, KeepsThePreviousPairAndRefusesToResumeFromAMixedOne) {
  const auto dir = fresh_dir("pairs");
  const std::vector<vmat::TrainingCase> train{tiny_case("a", 1, 5)};
  const std::vector<vmat::TrainingCase> val{tiny_case("v", 3, 5)};
  const auto checkpoints = dir / "checkpoints";
  vmat::train_model(train, val, tiny_options(dir), {});
  const auto token = [&](const char* name) { return vmat::read_safetensors_metadata((checkpoints / name).string()).at("checkpoint_pair"); };
  EXPECT_EQ(token("last.safetensors"), token("last.state.safetensors"));
  EXPECT_EQ(token("previous.safetensors"), token("previous.state.safetensors"));
  EXPECT_NE(token("last.safetensors"), token("previous.safetensors"));
  EXPECT_EQ(vmat::read_safetensors_metadata((checkpoints / "previous.state.safetensors").string()).at("epoch"), "1");
  for (const auto& entry : fs::directory_iterator(checkpoints)) EXPECT_EQ(entry.path().extension(), ".safetensors") << entry.path();

  fs::copy_file(checkpoints / "previous.safetensors", checkpoints / "last.safetensors", fs::copy_options::overwrite_existing);
  auto options = tiny_options(dir);
  options.epochs = 3;
  options.resume = true;
  try {
    vmat::train_model(train, val, options, {});
    FAIL() << "a mixed pair was resumed from";
  } catch (const vmat::Error& error) {
    EXPECT_NE(std::string(error.what()).find("are not from the same save"), std::string::npos) << error.what();
  }
  options.resume_from = (checkpoints / "previous.safetensors").string();
  const auto result = vmat::train_model(train, val, options, {});
  EXPECT_EQ(result.epochs_run, 3);
  EXPECT_EQ(token("last.safetensors"), token("last.state.safetensors"));
  fs::remove_all(dir);
}

}  // namespace
