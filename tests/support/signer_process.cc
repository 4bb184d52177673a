#include "tests/support/signer_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "tests/support/test_pki.h"

extern char** environ;

namespace sealpost::testing {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

SignerProcess::SignerProcess(std::vector<std::string> args, std::string log_path)
#ifdef SEALPOST_SIGNER_PATH
    : SignerProcess(SEALPOST_SIGNER_PATH, std::move(args), std::move(log_path)) {
}
#else
    : log_(std::move(log_path)) {
  (void)args;
}
#endif

SignerProcess::SignerProcess(const std::string& program, std::vector<std::string> args,
                             std::string log_path)
    : log_(std::move(log_path)) {
  std::vector<std::string> argv{program};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (posix_spawn(&pid_, cargv[0], &fa, nullptr, cargv.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&fa);
}

SignerProcess::~SignerProcess() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool SignerProcess::WaitListening(const std::string& socket, double limit) {
  auto t0 = Clock::now();
  while (Since(t0) < limit) {
    if (Exited()) return false;
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool SignerProcess::Exited() {
  if (exited_) return true;
  if (pid_ <= 0) return true;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    exited_ = true;
    status_ = st;
  }
  return exited_;
}

int SignerProcess::WaitExit(double limit) {
  auto t0 = Clock::now();
  while (!Exited() && Since(t0) < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited_) return -1;
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

void SignerProcess::Kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::string SignerProcess::Log() const { return ReadTestFile(log_); }

}  // namespace sealpost::testing
