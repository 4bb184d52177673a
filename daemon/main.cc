// sealpostd: the appliance's HTTPS daemon. See docs/daemon.md.
//
//   sealpostd --config /etc/sealpost/sealpostd.yaml [--log-level debug|info|warn|error]
//
// Runs in the foreground (systemd Type=notify): READY=1 once both listeners
// accept, WATCHDOG=1 every half WatchdogSec= (when systemd asks for it),
// STOPPING=1 on SIGTERM/SIGINT, then requests in progress finish and the
// process exits 0.
#include <signal.h>
#include <systemd/sd-daemon.h>

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/status.h"
#include "daemon/config.h"
#include "daemon/server.h"

namespace {

int Usage() {
  std::fputs("usage: sealpostd --config FILE [--log-level debug|info|warn|error]\n", stderr);
  return 64;
}

int Fail(const sealpost::Status& s) {
  std::fprintf(stderr, "sealpostd: %s\n", s.message().c_str());
  return sealpost::ExitCodeFor(s);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sealpost;
  std::string config_path;
  LogLevel level = LogLevel::kInfo;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--log-level" && i + 1 < argc) {
      std::string_view v = argv[++i];
      if (v == "debug") level = LogLevel::kDebug;
      else if (v == "info") level = LogLevel::kInfo;
      else if (v == "warn") level = LogLevel::kWarn;
      else if (v == "error") level = LogLevel::kError;
      else return Usage();
    } else {
      return Usage();
    }
  }
  if (config_path.empty()) return Usage();
  SetLogLevel(level);

  // Every thread the server starts inherits this mask: the signals are
  // taken only by sigwait() below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto config = daemon::LoadConfig(config_path);
  if (!config) return Fail(config.error());
  auto server = daemon::Server::Create(*config);
  if (!server) return Fail(server.error());
  Status started = (*server)->Start();
  if (!started.ok()) return Fail(started);
  std::string ready = "READY=1\nSTATUS=peer_port=" + std::to_string((*server)->peer_port()) +
                      " user_port=" + std::to_string((*server)->user_port());
  sd_notify(0, ready.c_str());

  // WATCHDOG_USEC is set by systemd when the unit has WatchdogSec=; without
  // it this simply waits for the signal.
  uint64_t watchdog_usec = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  uint64_t tick_usec = watchdog ? std::max<uint64_t>(watchdog_usec / 2, 10000) : 3600ULL * 1000000;
  timespec tick{static_cast<time_t>(tick_usec / 1000000), static_cast<long>(tick_usec % 1000000) * 1000};
  int sig = -1;
  while (sig < 0) {
    if (watchdog) sd_notify(0, "WATCHDOG=1");
    sig = sigtimedwait(&set, nullptr, &tick);
    if (sig < 0 && errno != EAGAIN && errno != EINTR) {
      Log(LogLevel::kError, "sigtimedwait failed", "errno=" + std::to_string(errno));
      sig = SIGTERM;
    }
  }
  Log(LogLevel::kInfo, "stopping", "signal=" + std::to_string(sig));
  sd_notify(0, "STOPPING=1");
  (*server)->Stop();
  server->reset();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}
