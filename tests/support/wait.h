// Polling for tests that watch real processes: true as soon as `done()`
// holds, false if it still does not after `seconds` (checked once more at
// the end). Polls every 100 ms.
#ifndef SEALPOST_TESTS_SUPPORT_WAIT_H_
#define SEALPOST_TESTS_SUPPORT_WAIT_H_

#include <chrono>
#include <functional>
#include <thread>

namespace sealpost::testing {

inline bool WaitFor(const std::function<bool()>& done, double seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_WAIT_H_
