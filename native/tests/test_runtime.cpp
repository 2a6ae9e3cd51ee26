#include <gtest/gtest.h>

#include "vmat/error.h"
#include "vmat/runtime.h"

TEST(Runtime, ReportsLibtorchVersion) {
  const auto info = vmat::runtime_info();
  EXPECT_FALSE(info.libtorch_version.empty());
  EXPECT_GE(info.threads, 1);
  if (!info.cuda_available) EXPECT_TRUE(info.devices.empty());
}

TEST(Runtime, ResolvesDevices) {
  EXPECT_EQ(vmat::resolve_device("cpu"), "cpu");
  const auto automatic = vmat::resolve_device("auto");
  EXPECT_TRUE(automatic == "cpu" || automatic == "cuda:0");
  EXPECT_THROW(vmat::resolve_device("tpu"), vmat::Error);
  EXPECT_THROW(vmat::resolve_device("cuda:x"), vmat::Error);
  if (!vmat::runtime_info().cuda_available) EXPECT_THROW(vmat::resolve_device("cuda"), vmat::Error);
}
