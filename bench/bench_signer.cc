// bench_signer: signatures through a real sealpost-signer over its Unix
// socket, and the signer's CPU per signature (issue 5: the submissions bench
// spends ~1.1 ms of signer CPU per document, 2-3 signatures each).
//
//   bench_signer [--seconds S] [--threads T] [--signer PATH]
//
// --signer: another sealpost-signer binary (e.g. main's build, for a
// before/after comparison); default: this build's.
// Sets up a SoftHSM2 token with a P-256 key and its certificate
// (tests/support/softhsm.h), starts sealpost-signer on it with a journal,
// then for S seconds each (default 5):
//   1. CAdES signed-attribute signatures from 1 client connection;
//   2. the same from T concurrent connections (default 16, like the
//      daemon's HTTP workers);
//   3. certificate requests (connection, framing and socket only: no token
//      call, no journal), a new connection each (RemoteSigner keeps a
//      certificate once fetched).
// For each: operations/s, and the signer's CPU (utime+stime from
// /proc/<pid>/stat) per operation. References side by side: the same
// SoftHSM2 key signed in-process through pkcs11/ (libp11, one thread, CPU
// from getrusage), and `openssl speed -seconds 3 ecdsap256` (software
// P-256). The load average is printed: the machine may be shared.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_proc.h"
#include "crypto/cades_sign.h"
#include "daemon/signer/remote_signer.h"
#include "pkcs11/open.h"
#include "tests/support/signer_process.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace {

using sealpost::bench::CpuSeconds;
using sealpost::bench::LoadAverage;

using Clock = std::chrono::steady_clock;
using sealpost::crypto::DigestAlg;
using sealpost::crypto::KeyRef;

double g_seconds = 5;
int g_threads = 16;
std::string g_signer;  // empty: this build's sealpost-signer

double SelfCpu() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Figures {
  long ops = 0;
  long failures = 0;
  double wall = 0;
  double cpu = 0;  // of the measured process
};

void Print(const char* what, const Figures& f) {
  std::printf("%-44s %8.0f/s  %7.1f us CPU/op  (%ld ops in %.1f s, %ld failed)\n", what,
              f.wall > 0 ? static_cast<double>(f.ops) / f.wall : 0.0,
              f.ops > 0 ? f.cpu * 1e6 / static_cast<double>(f.ops) : 0.0, f.ops, f.wall, f.failures);
}

// Runs `op` from `threads` threads for g_seconds; CPU of `pid` (0: self).
template <typename MakeOp>
Figures Run(int threads, pid_t pid, MakeOp make_op) {
  std::atomic<long> ops{0}, failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  double cpu0 = pid ? CpuSeconds(pid) : SelfCpu();
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      auto op = make_op();
      while (!stop.load(std::memory_order_relaxed)) {
        if (op()) ++ops;
        else ++failures;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(g_seconds));
  stop = true;
  for (auto& th : pool) th.join();
  Figures f;
  f.wall = std::chrono::duration<double>(Clock::now() - t0).count();
  f.cpu = (pid ? CpuSeconds(pid) : SelfCpu()) - cpu0;
  f.ops = ops;
  f.failures = failures;
  return f;
}

std::string OpensslSpeed() {
  FILE* p = ::popen("openssl speed -elapsed -seconds 3 ecdsap256 2>/dev/null | tail -2", "r");
  if (p == nullptr) return "(openssl speed did not run)\n";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  ::pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) g_seconds = std::atof(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) g_threads = std::atoi(argv[++i]);
    else if (a == "--signer" && i + 1 < argc) g_signer = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_signer [--seconds S] [--threads T] [--signer PATH]\n");
      return 64;
    }
  }
  if (g_seconds <= 0 || g_threads <= 0) {
    std::fprintf(stderr, "bench_signer: --seconds and --threads must be positive\n");
    return 64;
  }
  using namespace sealpost;  // crypto::, signer::, pkcs11::
  sealpost::testing::SoftHsm hsm;
  const std::string token = "bench-seal", pin = "246810";
  if (!hsm.InitToken(token, "13579135", pin)) {
    std::fprintf(stderr, "bench_signer: cannot initialise the SoftHSM2 token\n");
    return 1;
  }
  sealpost::testing::TestCa ca = sealpost::testing::TestCa::CreateRoot("/CN=Bench Root/O=Bench/C=VN");
  auto issued = hsm.AddKeyWithCert(token, pin, ca, sealpost::testing::KeyType::kP256, "01", "seal");
  if (!issued) {
    std::fprintf(stderr, "bench_signer: cannot add the key\n");
    return 1;
  }
  const std::string uri = hsm.KeyUri(token, "seal");
  const std::string socket = hsm.file("signer.sock");
  const std::string pin_file = hsm.WritePinFile(pin + "\n");
  const std::string journal = hsm.file("journal.jsonl");
  std::vector<std::string> args{"--key",     uri,     "--socket",       socket, "--pin-file", pin_file,
                                "--journal", journal, "--call-timeout", "10", "--verbose"};
  auto started = g_signer.empty()
                     ? std::make_unique<sealpost::testing::SignerProcess>(args, hsm.file("signer.log"))
                     : std::make_unique<sealpost::testing::SignerProcess>(g_signer, args, hsm.file("signer.log"));
  sealpost::testing::SignerProcess& signer = *started;
  if (!signer.WaitListening(socket)) {
    std::fprintf(stderr, "bench_signer: the signer did not start:\n%s\n", signer.Log().c_str());
    return 1;
  }
  std::printf("bench_signer: sealpost-signer %s (pid %d), SoftHSM2 P-256, journal %s\n",
              g_signer.empty() ? "(this build)" : g_signer.c_str(), signer.pid(), journal.c_str());
  std::printf("load average before: %s (2 cores; the machine may be shared)\n\n", LoadAverage().c_str());

  KeyRef key{uri};
  const std::string digest(32, '\x5a');
  auto sign_op = [&] {
    auto remote = std::make_shared<signer::RemoteSigner>(signer::RemoteSignerOptions{socket, std::chrono::seconds(30)});
    auto cert = remote->Certificate(key);
    std::shared_ptr<X509> c(cert ? cert->release() : nullptr, X509_free);
    return [remote, c, &key, &digest]() -> bool {
      if (!c) return false;
      return crypto::BuildDetachedSignature(*remote, key, c.get(), DigestAlg::kSha256, digest, {})
          .has_value();
    };
  };
  // Warm-up: the first signature opens the key.
  { auto op = sign_op(); op(); }

  Figures one = Run(1, signer.pid(), sign_op);
  Print("signatures through the signer, 1 connection", one);
  Figures many = Run(g_threads, signer.pid(), sign_op);
  std::string label = "signatures through the signer, " + std::to_string(g_threads) + " connections";
  Print(label.c_str(), many);
  // RemoteSigner keeps a key's certificate once fetched, so each request
  // is made through a new RemoteSigner (and so a new connection).
  Figures certs = Run(1, signer.pid(), [&] {
    return [&socket, &key]() -> bool {
      signer::RemoteSigner remote(signer::RemoteSignerOptions{socket, std::chrono::seconds(30)});
      return remote.Certificate(key).has_value();
    };
  });
  Print("certificate requests, a connection each", certs);
  std::printf("load average after the signer runs: %s\n\n", LoadAverage().c_str());
  signer.Kill(SIGTERM);
  signer.WaitExit(10);
  // The signer logs its journal's lines and fdatasyncs when it stops.
  std::string log = signer.Log();
  size_t at = log.find("journal_lines=");
  if (at != std::string::npos) {
    std::string stats = log.substr(at, log.find('\n', at) - at);
    std::printf("journal over both signature runs: %s\n\n", stats.c_str());
  } else {
    std::printf("(the signer logged no journal figures at stop:\n%s)\n\n",
                log.substr(log.size() > 400 ? log.size() - 400 : 0).c_str());
  }

  // Reference: the same key, in this process through pkcs11/ (libp11).
  pkcs11::OpenOptions o;
  o.pin_file = pin_file;
  o.interactive = false;
  auto local = pkcs11::OpenTokenSigner(uri, o);
  if (!local) {
    std::fprintf(stderr, "bench_signer: in-process open failed: %s\n", local.error().message().c_str());
    return 1;
  }
  Figures direct = Run(1, 0, [&] {
    return [&]() -> bool { return (*local)->Sign(key, DigestAlg::kSha256, digest).has_value(); };
  });
  Print("reference: raw digest signatures in-process", direct);
  std::printf("reference: openssl speed -elapsed -seconds 3 ecdsap256 (software, 1 core):\n%s",
              OpensslSpeed().c_str());
  std::printf("load average at the end: %s\n", LoadAverage().c_str());
  local->reset();
  std::fflush(stdout);
  // libp11 teardown at exit is not measured; leave at once.
  std::quick_exit(0);
}
