// Crash safety of the archive: a child process appends from several threads
// and reports each acknowledged append on a pipe; the parent kills it with
// SIGKILL at a random moment, reopens the archive, and checks that every
// acknowledged append is there, unchanged, and that the head commit's
// checkpoint matches the entries. Repeated many times on one archive.
#include "storage/archive.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <filesystem>

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

  // In the child: the two-stage pipeline's window (decision 0005). Appends
  // one entry (commit N) and, once N is held after its sync round (before
  // its renames), a second one, which the writer builds as N+1 on N while N
  // is held. Then, with `between_rounds` false, stops there: N's intent and
  // pack are durable, N+1's pack and index are complete in their temporary
  // files, nothing of N is renamed; reports "window N N+1". With
  // `between_rounds` true, lets N finish (renames, acknowledgement: the
  // line "seq leafhex") and stops N+1 before its own round; reports
  // "between N N+1". The parent kills the child there.
  [[noreturn]] void ChildPipelineWindow(int fd, bool between_rounds) {
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      std::string held;                 // N
      std::vector<std::string> built;   // N, N+1
      bool first_reported = false;      // N's append acknowledged and written
    };
    auto sh = std::make_shared<Shared>();
    auto say = [fd](const std::string& line) {
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(6);
    };
    // Generous bounds (ASan, a loaded CI): a wait that runs out is a
    // failure of the child the parent reports, never a hang.
    constexpr auto kBound = std::chrono::seconds(120);
    auto signer = Signer();
    ArchiveOptions options = Options(signer.get());
    options.built_for_testing = [sh](const std::string& commit) {
      std::lock_guard<std::mutex> lock(sh->mu);
      sh->built.push_back(commit);
      sh->cv.notify_all();
    };
    options.before_renames_for_testing = [sh, say, between_rounds, kBound](const std::string& commit) {
      std::unique_lock<std::mutex> lock(sh->mu);
      if (!sh->held.empty()) return;  // only N is held
      sh->held = commit;
      sh->cv.notify_all();
      if (!sh->cv.wait_for(lock, kBound, [&] { return sh->built.size() >= 2; })) _exit(8);
      if (between_rounds) return;  // N goes on: renames, acknowledgement
      say("window " + commit + " " + sh->built[1] + "\n");
      lock.unlock();
      for (;;) ::pause();
    };
    options.before_round_for_testing = [sh, say, between_rounds, kBound](const std::string& commit) {
      if (!between_rounds) return;
      std::unique_lock<std::mutex> lock(sh->mu);
      if (sh->built.size() < 2 || commit != sh->built[1]) return;
      if (!sh->cv.wait_for(lock, kBound, [&] { return sh->first_reported; })) _exit(9);
      say("between " + sh->held + " " + commit + "\n");
      lock.unlock();
      for (;;) ::pause();
    };
    auto a = Archive::Open(path_, std::move(options));
    if (!a.has_value()) {
      std::fprintf(stderr, "child: %s\n", a.error().ToString().c_str());
      _exit(3);
    }
    say("ready\n");
    std::thread first([&] {
      auto r = (*a)->Append(Document(1));
      if (!r.has_value()) _exit(5);
      std::lock_guard<std::mutex> lock(sh->mu);
      say(std::to_string(r->seq) + " " + merkle::ToHex(r->leaf) + " " + r->commit + "\n");
      sh->first_reported = true;
      sh->cv.notify_all();
    });
    {
      std::unique_lock<std::mutex> lock(sh->mu);
      if (!sh->cv.wait_for(lock, kBound, [&] { return !sh->held.empty(); })) _exit(10);
    }
    std::thread second([&] {
      (void)(*a)->Append(Document(2));  // never acknowledged: killed before
      _exit(11);
    });
    first.join();
    second.join();
    _exit(12);
  }

  // Runs ChildPipelineWindow, kills it where it stopped; returns N and N+1
  // and (between rounds) N's acknowledged seq and leaf.
  struct Window {
    std::string n, next;
    uint64_t seq = 0;
    std::string leaf;
  };
  Window KillInPipelineWindow(bool between_rounds) {
    Window w;
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    EXPECT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ChildPipelineWindow(fds[1], between_rounds);
    }
    ::close(fds[1]);
    FILE* in = ::fdopen(fds[0], "r");
    char line[512];
    std::string acked_commit;
    while (std::fgets(line, sizeof line, in) != nullptr) {
      std::istringstream ls(line);
      std::string first, second, third;
      ls >> first >> second >> third;
      if (first == "window" || first == "between") {
        EXPECT_EQ(first, between_rounds ? "between" : "window");
        w.n = second;
        w.next = third;
        break;
      }
      if (first != "ready") {
        w.seq = std::stoull(first);
        w.leaf = second;
        acked_commit = third;
      }
    }
    // N's acknowledgement (between rounds) names N.
    if (!acked_commit.empty()) {
      EXPECT_EQ(acked_commit, w.n);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status)) << "child exited by itself with " << WEXITSTATUS(status);
    std::fclose(in);
    EXPECT_EQ(w.n.size(), 40u) << "the child did not stop in the window";
    EXPECT_EQ(w.next.size(), 40u);
    EXPECT_NE(w.n, w.next);
    return w;
  }

  // objects/pack files named `prefix`* whose index lists `commit`.
  std::string IndexHolding(const std::string& dir, const std::string& prefix, const std::string& commit) {
    git_oid id;
    if (git_oid_fromstr(&id, commit.c_str()) < 0) return "";
    for (const auto& e : std::filesystem::directory_iterator(dir + "/objects/pack")) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with(prefix)) continue;
      if (prefix == "pack-" && e.path().extension() != ".idx") continue;
      auto ids = ReadPackIndex(e.path().string());
      if (!ids.has_value()) continue;
      for (const git_oid& x : *ids) {
        if (git_oid_equal(&x, &id)) return e.path().string();
      }
    }
    return "";
  }

  bool HasObject(const std::string& dir, const std::string& id) {
    return RunCommand("git -C " + ShellQuote(dir) + " cat-file -e " + id + " 2>/dev/null") == 0;
  }

  int TemporaryFiles(const std::string& dir) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir + "/objects/pack")) {
      if (e.path().filename().string().starts_with("tmp_sealpost_")) ++n;
    }
    return n;
  }

  // Reopens `dir` and checks: the head is N, N+1 is nowhere (not rolled
  // into place, its temporary files gone), the log goes on gapless from N,
  // and stock git accepts the archive.
  void ExpectRecoveredToN(const std::string& dir, const Window& w, uint64_t n_size) {
    auto signer = Signer();
    auto a = Archive::Open(dir, Options(signer.get()));
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    EXPECT_EQ((*a)->head(), w.n);
    EXPECT_EQ((*a)->size(), n_size);
    EXPECT_FALSE(HasObject(dir, w.next)) << "the unacknowledged N+1 was kept";
    EXPECT_EQ(TemporaryFiles(dir), 0);
    struct stat st {};
    EXPECT_NE(::stat((dir + "/refs/heads/main.lock").c_str(), &st), 0);
    auto leaves = (*a)->ReadLeafHashes();
    ASSERT_TRUE(leaves.has_value()) << leaves.error().ToString();
    ASSERT_EQ(leaves->size(), n_size);
    if (!w.leaf.empty()) {
      EXPECT_EQ(merkle::ToHex(leaves->back()), w.leaf);
    }
    EXPECT_EQ((*a)->checkpoint().root, merkle::RootFromLeafHashes(*leaves));
    auto r = (*a)->Append(Document(3));
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(r->seq, n_size + 1);
    a->reset();
    std::string out;
    EXPECT_EQ(RunCommand("git -C " + ShellQuote(dir) + " fsck --strict --no-dangling", &out), 0)
        << out;
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

// The pipeline's window: N+1 built and its pack complete on disk while N is
// held between its sync round and its renames. A crash there (N's intent
// durable, N+1 never acknowledged) recovers N, and only N.
TEST_F(ArchiveCrashTest, CrashWithNextCommitsPackWrittenBeforeRenamesRecoversOnlyTheDurableOne) {
  uint64_t created_size = 0;
  std::string created_head;
  {
    auto signer = Signer();
    auto a = Archive::Create(path_, Options(signer.get()));
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    created_size = (*a)->size();
    created_head = (*a)->head();
  }
  const Window w = KillInPipelineWindow(false);
  ASSERT_EQ(w.n.size(), 40u);
  // On disk: N's intent, the branch still on N's parent, N's and N+1's
  // packs complete under their temporary names (N+1's names N as parent).
  EXPECT_EQ(sealpost::testing::ReadTestFile(path_ + "/refs/heads/main.lock"), w.n + "\n");
  EXPECT_EQ(sealpost::testing::ReadTestFile(path_ + "/refs/heads/main"), created_head + "\n");
  EXPECT_NE(IndexHolding(path_, "tmp_sealpost_idx_", w.n), "");
  EXPECT_NE(IndexHolding(path_, "tmp_sealpost_idx_", w.next), "");
  ExpectRecoveredToN(path_, w, created_size + 1);
}

// Between N's renames (N acknowledged) and N+1's round. Killed there: the
// branch names N. And the power loss that keeps N's ref rename but loses its
// pack renames (a file system that reorders renames): only N's pack is
// rolled into place, never the complete pack of N+1.
TEST_F(ArchiveCrashTest, CrashBetweenTwoRoundsKeepsTheAcknowledgedAndDropsTheNext) {
  uint64_t created_size = 0;
  {
    auto signer = Signer();
    auto a = Archive::Create(path_, Options(signer.get()));
    ASSERT_TRUE(a.has_value()) << a.error().ToString();
    created_size = (*a)->size();
  }
  const Window w = KillInPipelineWindow(true);
  ASSERT_EQ(w.n.size(), 40u);
  ASSERT_EQ(w.seq, created_size + 1) << "N was not acknowledged before N+1's round";
  EXPECT_EQ(sealpost::testing::ReadTestFile(path_ + "/refs/heads/main"), w.n + "\n");
  const std::string n_idx = IndexHolding(path_, "pack-", w.n);
  ASSERT_NE(n_idx, "");
  EXPECT_NE(IndexHolding(path_, "tmp_sealpost_idx_", w.next), "");

  // The same state with N's pack renames lost (a copy).
  const std::string lost = tmp_.file("renames-lost.git");
  ASSERT_EQ(RunCommand("cp -a " + ShellQuote(path_) + " " + ShellQuote(lost)), 0);
  const std::string base = lost + "/objects/pack/" + std::filesystem::path(n_idx).stem().string();
  ASSERT_EQ(::rename((base + ".pack").c_str(), (lost + "/objects/pack/tmp_sealpost_pack_lost").c_str()), 0);
  ASSERT_EQ(::rename((base + ".idx").c_str(), (lost + "/objects/pack/tmp_sealpost_idx_lost").c_str()), 0);

  ExpectRecoveredToN(path_, w, created_size + 1);
  ExpectRecoveredToN(lost, w, created_size + 1);
}

}  // namespace
}  // namespace sealpost::storage
