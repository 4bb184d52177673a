// sealpostd under systemd's watchdog (systemd/sealpostd.service has
// WatchdogSec=): WATCHDOG=1 every half period while WATCHDOG_USEC is set,
// nothing without it; STOPPING=1 and exit 0 on SIGTERM either way.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/daemon_harness.h"

namespace sealpost::testing {
namespace {

TEST(DaemonWatchdogTest, WatchdogUsecSetSendsWatchdogEveryHalfPeriod) {
  DaemonOptions o;
  o.watchdog_usec = 200000;  // a ping every 100 ms
  auto d = DaemonHarness::Start(o);
  ASSERT_NE(d, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(d->Terminate(), 0) << d->Log();
  EXPECT_TRUE(d->stopping_seen());
  // 7 expected; the loaded test machine may delay some.
  EXPECT_GE(d->watchdog_pings(), 3) << d->Log();
}

TEST(DaemonWatchdogTest, WithoutWatchdogUsecSendsNoWatchdog) {
  auto d = DaemonHarness::Start();
  ASSERT_NE(d, nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(d->Terminate(), 0) << d->Log();
  EXPECT_TRUE(d->stopping_seen());
  EXPECT_EQ(d->watchdog_pings(), 0);
}

}  // namespace
}  // namespace sealpost::testing
