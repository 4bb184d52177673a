// Crash safety of the archive: a child process appends from several threads
// and reports each acknowledged append on a pipe; the parent kills it with
// SIGKILL at a random moment, reopens the archive, and checks that every
// acknowledged append is there, unchanged, and that the head commit's
// checkpoint matches the entries. Repeated many times on one archive.
#include "storage/archive.h"

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/encoding.h"
#include "crypto/checkpoint.h"
#include "crypto/software_signer.h"
#include "tests/support/cms_peers.h"
#include "tests/support/test_pki.h"

namespace sealpost::storage {
namespace {

using sealpost::testing::CertSpec;
using sealpost::testing::RunCommand;
using sealpost::testing::ShellQuote;
using sealpost::testing::TempDir;
using sealpost::testing::TestCa;
namespace merkle = crypto::merkle;

constexpr const char* kOrigin = "cd-baichay.vn/archive";

EntryInput Document(uint64_t i) {
  EntryInput e;
  e.kind = EntryKind::kDocumentReceived;
  e.fields["id"] = "doc-" + std::to_string(i);
  e.files.push_back({"content.txt", "document " + std::to_string(i) + std::string(2000, 'x')});
  return e;
}

class ArchiveCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = std::make_unique<TestCa>(TestCa::CreateRoot("/CN=Test Root/O=Test Federation/C=VN"));
    CertSpec spec;
    spec.subject = "/CN=Con dấu/O=Công đoàn Bãi Cháy/C=VN";
    seal_ = ca_->Issue(spec);
    path_ = tmp_.file("archive.git");
  }

  std::unique_ptr<crypto::SoftwareKeySigner> Signer() {
    EVP_PKEY_up_ref(seal_.key.get());
    X509_up_ref(seal_.cert.get());
    auto s = crypto::SoftwareKeySigner::CreateForTesting("seal", EvpPkeyPtr(seal_.key.get()),
                                                         X509Ptr(seal_.cert.get()));
    EXPECT_TRUE(s.has_value());
    return std::move(*s);
  }

  ArchiveOptions Options(crypto::Signer* signer) {
    ArchiveOptions o;
    o.origin = kOrigin;
    o.signer = signer;
    o.seal_key = {"seal"};
    return o;
  }

  // In the child: open, append from 4 threads forever, report "seq leafhex".
  // stop_at > 0: the stop_at-th commit stops after its sync round, before
  // its renames and acknowledgement, and reports "intent <commit hex>" (the
  // parent then kills it there: what a power loss right after an
  // acknowledgement leaves on disk).
  [[noreturn]] void ChildAppendForever(int fd, uint64_t base, int stop_at) {
    auto signer = Signer();
    ArchiveOptions options = Options(signer.get());
    if (stop_at > 0) {
      auto commits = std::make_shared<std::atomic<int>>(0);
      options.before_renames_for_testing = [fd, stop_at, commits](const std::string& commit) {
        if (commits->fetch_add(1) + 1 != stop_at) return;
        std::string line = "intent " + commit + "\n";
        if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(7);
        for (;;) ::pause();
      };
    }
    auto a = Archive::Open(path_, std::move(options));
    if (!a.has_value()) {
      std::fprintf(stderr, "child: %s\n", a.error().ToString().c_str());
      _exit(3);
    }
    if (::write(fd, "ready\n", 6) != 6) _exit(4);
    std::mutex out_mu;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (uint64_t i = 0;; ++i) {
          auto r = (*a)->Append(Document(base + t * 1000000 + i));
          if (!r.has_value()) _exit(5);
          std::string line = std::to_string(r->seq) + " " + merkle::ToHex(r->leaf) + "\n";
          std::lock_guard<std::mutex> lock(out_mu);
          if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(6);
        }
      });
    }
    for (auto& th : threads) th.join();
    _exit(0);
  }

  TempDir tmp_;
  std::unique_ptr<TestCa> ca_;
  sealpost::testing::Issued seal_;
  std::string path_;
};

TEST_F(ArchiveCrashTest, AppendsKilledAtRandomPointsLoseNothingAcknowledged) {
  {
    auto signer = Signer();
    auto a = Archive::Create(path_, Options(signer.get()));
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
  }
  std::map<uint64_t, std::string> acknowledged;  // seq -> leaf hex
  std::mt19937 rng(12345);
  // At least kRuns kills, and more (up to kMaxRuns) until enough appends were
  // acknowledged: a slow build (ASan) acknowledges fewer per run, and the
  // test must still exercise as many appends.
  constexpr int kRuns = 25;
  constexpr int kMaxRuns = 120;
  constexpr size_t kMinAcknowledged = 50;
  int runs_with_acks = 0;
  int runs = 0;
  int intent_runs = 0;
  for (int run = 0; run < kMaxRuns && (run < kRuns || acknowledged.size() <= kMinAcknowledged);
       ++run) {
    ++runs;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    // Every third run stops a commit between its sync round and its
    // renames and is killed there; the others at a random moment.
    const int stop_at = run % 3 == 1 ? std::uniform_int_distribution<int>(1, 6)(rng) : 0;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ChildAppendForever(fds[1], static_cast<uint64_t>(run) * 100000000ull, stop_at);
    }
    ::close(fds[1]);
    FILE* in = ::fdopen(fds[0], "r");
    char line[256];
    ASSERT_NE(std::fgets(line, sizeof line, in), nullptr) << "child did not start (run " << run << ")";
    ASSERT_STREQ(line, "ready\n");
    int got = 0;
    std::string intent;  // the commit stopped before its renames
    auto take = [&](const char* text) {
      std::istringstream ls(text);
      std::string first, second;
      if (!(ls >> first >> second)) return;  // a line cut by the kill
      if (first == "intent") {
        intent = second;
        return;
      }
      if (second.size() != 64) return;
      const uint64_t seq = std::stoull(first);
      EXPECT_EQ(acknowledged.count(seq), 0u) << "seq " << seq << " acknowledged twice";
      acknowledged[seq] = second;
      ++got;
    };
    if (stop_at > 0) {
      while (intent.empty() && std::fgets(line, sizeof line, in) != nullptr) take(line);
      ASSERT_FALSE(intent.empty()) << "run " << run << ": the child did not stop before renames";
    } else {
      // Kill at a random point: some runs early (inside the first commits),
      // most after a few batches.
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 600)(rng)));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited by itself with " << WEXITSTATUS(status);
    while (std::fgets(line, sizeof line, in) != nullptr) take(line);
    if (stop_at > 0) {
      // The window: the commit's intent (main.lock) and temporary pack are
      // there, the branch still names its parent.
      struct stat st {};
      EXPECT_EQ(::stat((path_ + "/refs/heads/main.lock").c_str(), &st), 0) << "run " << run;
      EXPECT_NE(sealpost::testing::ReadTestFile(path_ + "/refs/heads/main"), intent + "\n");
      ++intent_runs;
    }
    std::fclose(in);
    if (got > 0) ++runs_with_acks;

    // Reopen (recovery) and check every acknowledged append.
    auto signer = Signer();
    auto a = Archive::Open(path_, Options(signer.get()));
    ASSERT_TRUE(a.has_value()) << "run " << run << ": " << a.error().ToString();
    if (stop_at > 0) {
      // Rolled forward: its sync round had finished.
      EXPECT_EQ((*a)->head(), intent) << "run " << run;
    }
    auto leaves = (*a)->ReadLeafHashes();
    ASSERT_TRUE(leaves.has_value()) << leaves.error().ToString();
    for (const auto& [seq, leaf] : acknowledged) {
      ASSERT_LE(seq, leaves->size()) << "run " << run << ": acknowledged #" << seq << " lost";
      ASSERT_EQ(merkle::ToHex((*leaves)[seq - 1]), leaf) << "run " << run << ": #" << seq;
    }
    crypto::Checkpoint cp = (*a)->checkpoint();
    ASSERT_EQ(cp.size, leaves->size());
    ASSERT_EQ(cp.root, merkle::RootFromLeafHashes(*leaves)) << "run " << run;
  }
  EXPECT_GT(runs_with_acks, runs / 2) << "most runs should have acknowledged something";
  EXPECT_GE(intent_runs, kRuns / 3);
  EXPECT_GT(acknowledged.size(), kMinAcknowledged);

  std::string out;
  EXPECT_EQ(RunCommand("git -C " + ShellQuote(path_) + " fsck --strict --no-dangling", &out), 0)
      << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
  // Every commit on the branch carries a valid seal signature.
  sealpost::testing::GpgsmHome gpg(tmp_.path());
  ASSERT_TRUE(gpg.TrustCa(ca_->cert()));
  std::string commits;
  RunCommand("git -C " + ShellQuote(path_) + " rev-list main", &commits);
  std::istringstream cs(commits);
  std::string c;
  int verified = 0;
  while (std::getline(cs, c)) {
    // Every 7th commit (and the last) keeps the run time bounded.
    if (verified++ % 7 != 0 && cs.peek() != EOF) continue;
    std::string vout;
    EXPECT_EQ(RunCommand("GNUPGHOME=" + ShellQuote(tmp_.path() + "/gnupg") + " git -C " +
                             ShellQuote(path_) + " -c gpg.format=x509 verify-commit " + c,
                         &vout),
              0)
        << c << ": " << vout;
  }
}

}  // namespace
}  // namespace sealpost::storage
