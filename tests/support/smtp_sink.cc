#include "tests/support/smtp_sink.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace sealpost::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> ReadNumbered(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  for (int n = 1;; ++n) {
    std::string p = dir + "/" + std::to_string(n) + ext;
    if (::access(p.c_str(), R_OK) != 0) break;
    out.push_back(Slurp(p));
  }
  return out;
}

}  // namespace

std::unique_ptr<SmtpSink> SmtpSink::Start(const std::string& dir, int port,
                                          const std::string& tls_cert, const std::string& tls_key) {
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/port");
  std::unique_ptr<SmtpSink> s(new SmtpSink());
  s->dir_ = dir;
  std::string script = std::string(SEALPOST_SOURCE_DIR) + "/tests/support/smtp_sink.py";
  std::string port_text = std::to_string(port);
  pid_t parent = ::getpid();
  s->pid_ = ::fork();
  if (s->pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::string log = dir + "/sink.log";
    std::FILE* f = std::fopen(log.c_str(), "a");
    if (f) {
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
    }
    // ASan's preload would follow a sanitized parent into python: drop it.
    ::unsetenv("LD_PRELOAD");
    if (tls_cert.empty()) {
      ::execl("/usr/bin/python3", "python3", script.c_str(), "--dir", dir.c_str(), "--port",
              port_text.c_str(), static_cast<char*>(nullptr));
    } else {
      ::execl("/usr/bin/python3", "python3", script.c_str(), "--dir", dir.c_str(), "--port",
              port_text.c_str(), "--tlscert", tls_cert.c_str(), "--tlskey", tls_key.c_str(),
              static_cast<char*>(nullptr));
    }
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string p = Slurp(dir + "/port");
    if (!p.empty()) {
      s->port_ = std::atoi(p.c_str());
      return s;
    }
    int status = 0;
    if (::waitpid(s->pid_, &status, WNOHANG) == s->pid_) {
      s->pid_ = -1;
      ADD_FAILURE() << "smtp_sink.py exited (python3-aiosmtpd installed?): "
                    << Slurp(dir + "/sink.log");
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "smtp_sink.py did not start: " << Slurp(dir + "/sink.log");
  return nullptr;
}

SmtpSink::~SmtpSink() { Stop(); }

void SmtpSink::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void SmtpSink::SetReply(const std::string& reply) {
  std::string p = dir_ + "/reply";
  if (reply.empty()) {
    std::filesystem::remove(p);
    return;
  }
  std::ofstream(p + ".tmp") << reply << "\n";
  std::filesystem::rename(p + ".tmp", p);
}

std::vector<std::string> SmtpSink::Messages() const { return ReadNumbered(dir_, ".eml"); }
std::vector<std::string> SmtpSink::Envelopes() const { return ReadNumbered(dir_, ".env"); }

bool SmtpSink::WaitForMessages(size_t n, int seconds) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Messages().size() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Messages().size() >= n;
}

}  // namespace sealpost::testing
