// bench_upload: how much a real sealpostd's memory grows while it receives,
// seals and archives one large document (issue 5: a 100 MiB upload, RSS
// growth at most 16 MiB, packing not counted).
//
//   bench_upload [--mib N] [--compressible]
//
// Starts sealpostd + sealpost-signer (P-256 seal on SoftHSM2) through the
// tests' DaemonHarness, submits N MiB (default 100; pseudo-random bytes,
// or text-like bytes with --compressible) with `curl -T` (streamed from the
// file), and reads VmRSS / VmHWM of the daemon from /proc/<pid>/status
// before and after. The peak is reset first (/proc/<pid>/clear_refs, "5"),
// so growth = VmHWM after - VmRSS before. Prints one line per figure and the
// growth next to the 16 MiB target. Not a test: exit 0 unless something
// failed (a growth above the target is reported, not an error).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "bench/bench_proc.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/test_pki.h"

namespace {

using sealpost::bench::LoadAverage;

using sealpost::testing::DaemonHarness;
using sealpost::testing::DaemonOptions;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;

int g_mib = 100;
bool g_compressible = false;

// "VmRSS" / "VmHWM" of `pid` in KiB, -1 if unreadable.
long StatusKib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return -1;
}

bool ResetPeak(pid_t pid) {
  int fd = ::open(("/proc/" + std::to_string(pid) + "/clear_refs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, "5", 1) == 1;
  ::close(fd);
  return ok;
}

TEST(BenchUpload, LargeDocumentSealedAndArchived) {
  DaemonOptions o;
  o.seal = true;
  o.max_body_bytes = (static_cast<uint64_t>(g_mib) + 1) << 20;
  o.max_notice_bytes = o.max_body_bytes;
  o.read_timeout_seconds = 60;
  auto d = DaemonHarness::Start(o);
  ASSERT_NE(d, nullptr);
  std::string token = d->CreateToken("clerk", "bench clerk");
  ASSERT_FALSE(token.empty());

  // The document, written in 1 MiB pieces.
  const std::string doc = d->file("large.bin");
  {
    std::ofstream out(doc, std::ios::binary);
    std::string piece(1u << 20, '\0');
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int m = 0; m < g_mib; ++m) {
      for (size_t i = 0; i < piece.size(); ++i) {
        if (g_compressible) {
          piece[i] = "Cong doan co so, bao cao tai chinh nam 2026.\n"[(i + static_cast<size_t>(m)) % 45];
        } else {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          piece[i] = static_cast<char>(x);
        }
      }
      out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
    }
  }

  // A small submission first: the exchange, archive and signer connections
  // are set up, so the figure is the large document's own.
  const std::string small = d->file("small.txt");
  sealpost::testing::WriteTestFile(small, "Thong bao\n");
  const std::string common = "-H " + ShellQuote("Authorization: Bearer " + token) +
                             " -H 'Content-Type: application/octet-stream' -X POST -w '\\n%{http_code}'";
  const std::string query = "/api/v1/documents?type=notice&recipients=" +
                            std::string(DaemonHarness::kPeerUnion) +
                            "&name=large.bin&media_type=application/octet-stream";
  std::string out;
  RunCommand(d->Curl(query, common + " -T " + ShellQuote(small)), &out);
  ASSERT_NE(out.find("\n201"), std::string::npos) << out << "\n" << d->Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  const pid_t pid = d->pid();
  const long rss_before = StatusKib(pid, "VmRSS");
  const long hwm_since_start = StatusKib(pid, "VmHWM");
  const bool reset = ResetPeak(pid);
  const long hwm_reset = StatusKib(pid, "VmHWM");
  auto t0 = std::chrono::steady_clock::now();
  out.clear();
  RunCommand(d->Curl(query, common + " --max-time 600 -T " + ShellQuote(doc)), &out);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long rss_after = StatusKib(pid, "VmRSS");
  const long hwm_after = StatusKib(pid, "VmHWM");
  ASSERT_NE(out.find("\n201"), std::string::npos) << out << "\n" << d->Log();

  const long growth = hwm_after - rss_before;
  std::printf("document: %d MiB (%s), load average before: %s\n", g_mib,
              g_compressible ? "text-like" : "pseudo-random", LoadAverage().c_str());
  std::printf("daemon VmRSS before: %ld KiB; VmHWM since start %ld KiB, after reset %ld KiB%s\n",
              rss_before, hwm_since_start, hwm_reset, reset ? "" : " (reset refused: peak is since start)");
  std::printf("submit (receive + seal + archive + bundle + queue): %.2f s, %.1f MiB/s\n", seconds,
              g_mib / seconds);
  std::printf("daemon VmRSS after: %ld KiB, VmHWM after: %ld KiB\n", rss_after, hwm_after);
  std::printf("RSS growth (VmHWM after - VmRSS before): %.1f MiB   target <= 16 MiB   %s\n",
              growth / 1024.0, growth <= 16 * 1024 ? "met" : "NOT met");
  RecordProperty("rss_growth_kib", std::to_string(growth));
  EXPECT_EQ(d->Terminate(), 0);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
      g_mib = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--compressible") == 0) {
      g_compressible = true;
    } else {
      std::fprintf(stderr, "usage: bench_upload [--mib N] [--compressible]\n");
      return 64;
    }
  }
  return RUN_ALL_TESTS();
}
