// A real SMTP server for tests: tests/support/smtp_sink.py (aiosmtpd, the
// Debian package python3-aiosmtpd) on 127.0.0.1 with a port the OS picks,
// saving each message byte for byte. Killed with the test process
// (PR_SET_PDEATHSIG) and on destruction.
#ifndef SEALPOST_TESTS_SUPPORT_SMTP_SINK_H_
#define SEALPOST_TESTS_SUPPORT_SMTP_SINK_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace sealpost::testing {

class SmtpSink {
 public:
  // Starts the server saving into `dir` (created if missing). With `tls_cert`
  // and `tls_key` (PEM files), STARTTLS is offered and required. `port` 0:
  // any free port; else that one (to restart a sink on the same port).
  // nullptr (and a test failure) when it does not come up within 20 s.
  static std::unique_ptr<SmtpSink> Start(const std::string& dir, int port = 0,
                                         const std::string& tls_cert = "",
                                         const std::string& tls_key = "");
  ~SmtpSink();  // Stop()
  void Stop();

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // Makes the server answer the end of DATA with `reply` (e.g. "451 4.3.0
  // later") instead of accepting; "" accepts again.
  void SetReply(const std::string& reply);
  // The messages received so far, in order (raw bytes, CRLF lines).
  std::vector<std::string> Messages() const;
  // Their envelopes: "from\nrcpt,rcpt\n".
  std::vector<std::string> Envelopes() const;
  // Waits up to `seconds` for at least `n` messages.
  bool WaitForMessages(size_t n, int seconds) const;

 private:
  SmtpSink() = default;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sealpost::testing

#endif  // SEALPOST_TESTS_SUPPORT_SMTP_SINK_H_
