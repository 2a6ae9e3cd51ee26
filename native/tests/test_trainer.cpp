#include <gtest/gtest.h>

#include <cmath>

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
