// SpoolPool (daemon/upload.h): spool files reused across requests, emptied
// in between, never carrying one request's bytes into the next.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/upload.h"

namespace sealpost::daemon {
namespace {

namespace fs = std::filesystem;

class SpoolPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sealpost-spool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static uint64_t SizeOf(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return UINT64_MAX;
    return static_cast<uint64_t>(st.st_size);
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
};

TEST_F(SpoolPoolTest, ReusedFileHoldsOnlyTheNewBytesNotTheLongerEarlierOnes) {
  SpoolPool pool(dir_, 4);
  std::string first_path;
  {
    auto f = pool.Acquire();
    ASSERT_TRUE(f.has_value()) << f.error().message();
    const std::string earlier(100000, 'A');
    ASSERT_TRUE((*f)->Append(earlier.data(), earlier.size()).ok());
    ASSERT_TRUE((*f)->Close().ok());
    first_path = (*f)->path();
    EXPECT_EQ(Read(first_path), earlier);
  }
  // Given back: emptied at once, kept for the next request.
  EXPECT_EQ(SizeOf(first_path), 0u);
  EXPECT_EQ(pool.idle(), 1u);
  auto g = pool.Acquire();
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ((*g)->path(), first_path);  // the same file, not a new inode
  EXPECT_EQ(pool.created(), 1u);
  EXPECT_EQ((*g)->size(), 0u);
  ASSERT_TRUE((*g)->Append("BBBBB", 5).ok());
  ASSERT_TRUE((*g)->Close().ok());
  // Written from offset 0: no hole, no tail of the 100,000 A's.
  EXPECT_EQ(Read((*g)->path()), "BBBBB");
  EXPECT_EQ(SizeOf((*g)->path()), 5u);
}

TEST_F(SpoolPoolTest, ReusedFileCopiesAStreamFromItsStart) {
  SpoolPool pool(dir_, 1);
  {
    auto f = pool.Acquire();
    ASSERT_TRUE(f.has_value());
    std::istringstream in(std::string(70000, 'x'));  // more than one 64 KiB piece
    ASSERT_TRUE((*f)->CopyFrom(in).ok());
    EXPECT_EQ((*f)->size(), 70000u);
  }
  auto g = pool.Acquire();
  ASSERT_TRUE(g.has_value());
  std::istringstream in("second document\n");
  ASSERT_TRUE((*g)->CopyFrom(in).ok());
  ASSERT_TRUE((*g)->Close().ok());
  EXPECT_EQ((*g)->size(), 16u);
  EXPECT_EQ(Read((*g)->path()), "second document\n");
}

TEST_F(SpoolPoolTest, WriteAfterCloseIsRefused) {
  SpoolPool pool(dir_, 1);
  auto f = pool.Acquire();
  ASSERT_TRUE(f.has_value());
  ASSERT_TRUE((*f)->Append("a", 1).ok());
  ASSERT_TRUE((*f)->Close().ok());
  Status s = (*f)->Append("b", 1);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(Read((*f)->path()), "a");
}

TEST_F(SpoolPoolTest, FailedUploadLeavesOnlyEmptyFiles) {
  SpoolPool pool(dir_, 4);
  {
    auto f = pool.Acquire();
    ASSERT_TRUE(f.has_value());
    const std::string part(5000, 'S');  // a body cut short: the caller drops it
    ASSERT_TRUE((*f)->Append(part.data(), part.size()).ok());
  }  // dropped without Close()
  for (const std::string& p : Files()) EXPECT_EQ(SizeOf(p), 0u) << p;
  EXPECT_EQ(Files().size(), 1u);
}

TEST_F(SpoolPoolTest, MoreFilesThanMaxIdleAreUnlinkedWhenGivenBack) {
  SpoolPool pool(dir_, 2);
  {
    std::vector<std::unique_ptr<SpoolFile>> held;
    for (int i = 0; i < 5; ++i) {
      auto f = pool.Acquire();
      ASSERT_TRUE(f.has_value());
      ASSERT_TRUE((*f)->Append("data", 4).ok());
      held.push_back(std::move(*f));
    }
    EXPECT_EQ(Files().size(), 5u);
    EXPECT_EQ(pool.created(), 5u);
  }
  EXPECT_EQ(pool.idle(), 2u);
  EXPECT_EQ(Files().size(), 2u);
  for (const std::string& p : Files()) EXPECT_EQ(SizeOf(p), 0u);
}

TEST_F(SpoolPoolTest, FileUnlinkedWhileHeldIsNotReused) {
  SpoolPool pool(dir_, 4);
  std::string path;
  {
    auto f = pool.Acquire();
    ASSERT_TRUE(f.has_value());
    path = (*f)->path();
    ASSERT_EQ(::unlink(path.c_str()), 0);  // gone from the directory meanwhile
  }
  EXPECT_EQ(pool.idle(), 0u);
  auto g = pool.Acquire();
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(pool.created(), 2u);
  EXPECT_EQ(SizeOf((*g)->path()), 0u);
}

TEST_F(SpoolPoolTest, RemoveLeftoversRemovesEarlierUploadsOnly) {
  for (const char* name :
       {"upload-abc123", "upload-zzz999", "upload-bundle-Q1w2E3", ".rebuild-a1b2c3", "bundle-1.tmp"}) {
    std::ofstream(dir_ + "/" + name) << "left by a crashed process";
  }
  SpoolPool pool(dir_, 4);
  EXPECT_EQ(pool.RemoveLeftovers(), 4u);
  ASSERT_EQ(Files().size(), 1u);
  EXPECT_EQ(fs::path(Files()[0]).filename(), "bundle-1.tmp");
  // Files the pool holds are kept.
  { ASSERT_TRUE(pool.Acquire().has_value()); }
  EXPECT_EQ(pool.RemoveLeftovers(), 0u);
  EXPECT_EQ(pool.idle(), 1u);
}

TEST_F(SpoolPoolTest, DestroyingThePoolRemovesItsIdleFiles) {
  {
    SpoolPool pool(dir_, 4);
    auto a = pool.Acquire();
    auto b = pool.Acquire();
    ASSERT_TRUE(a.has_value() && b.has_value());
  }
  EXPECT_TRUE(Files().empty());
}

TEST_F(SpoolPoolTest, ConcurrentRequestsEachReadBackExactlyTheirOwnBytes) {
  SpoolPool pool(dir_, 4);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        auto f = pool.Acquire();
        if (!f) {
          ++bad;
          continue;
        }
        // Sizes vary so that a shorter document follows a longer one.
        std::string mine(static_cast<size_t>(1 + (t * 7919 + i * 104729) % 9000),
                         static_cast<char>('a' + t));
        if (!(*f)->Append(mine.data(), mine.size()).ok() || !(*f)->Close().ok() ||
            Read((*f)->path()) != mine) {
          ++bad;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(pool.created(), 6u);  // never more files than requests at once
  EXPECT_LE(Files().size(), 4u);
}

}  // namespace
}  // namespace sealpost::daemon
