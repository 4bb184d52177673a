// One sealpost-signer child process for tests that talk to the real signer
// over its socket (tests/signer_process_test.cc, tests/email_delivery_test.cc):
// stdin from /dev/null, stderr appended to a log file the test can read;
// SIGKILLed and reaped on destruction if still running. (The daemon
// harnesses, tests/support/daemon_harness.h and federation.h, start their
// signers themselves, supervised like the systemd unit.)
//
// Thread-safety: none; use from the test's thread.
#ifndef SEALPOST_TESTS_SUPPORT_SIGNER_PROCESS_H_
#define SEALPOST_TESTS_SUPPORT_SIGNER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace sealpost::testing {

class SignerProcess {
 public:
  // Spawns SEALPOST_SIGNER_PATH with `args`; pid() is -1 if that failed.
  SignerProcess(std::vector<std::string> args, std::string log_path);
  // The same with another sealpost-signer binary (bench_signer --signer:
  // an older build as the "before" of a measurement).
  SignerProcess(const std::string& program, std::vector<std::string> args, std::string log_path);
  ~SignerProcess();
  SignerProcess(const SignerProcess&) = delete;
  SignerProcess& operator=(const SignerProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Waits until `socket` accepts connections. False if the process exited
  // first or `limit` seconds passed.
  bool WaitListening(const std::string& socket, double limit = 15);
  // True once the process has exited (reaps it).
  bool Exited();
  // Waits up to `limit` seconds for the exit; its exit code (128+signal
  // when killed by one), or -1.
  int WaitExit(double limit);
  void Kill(int sig);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  std::string log_;
  bool exited_ = false;
  int status_ = 0;
};

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_SIGNER_PROCESS_H_
