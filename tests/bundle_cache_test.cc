// The cache of small bundles (daemon/bundle_cache.h): bounded by bytes,
// least recently used dropped first, a bundle larger than the bound never
// kept. Pure logic: no files, no daemon.
#include "daemon/bundle_cache.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace sealpost::daemon {
namespace {

std::shared_ptr<const std::string> Bytes(size_t n, char c) {
  return std::make_shared<const std::string>(n, c);
}

TEST(BundleCacheTest, PutThenGetReturnsTheSameBytes) {
  BundleCache cache(100);
  auto b = Bytes(40, 'a');
  ASSERT_TRUE(cache.Put("doc-a", b));
  EXPECT_EQ(cache.Get("doc-a"), b);
  EXPECT_EQ(cache.Get("doc-b"), nullptr);
  BundleCache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, 40u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.evictions, 0u);
}

TEST(BundleCacheTest, PutBeyondTheBoundEvictsLeastRecentlyUsed) {
  BundleCache cache(100);
  ASSERT_TRUE(cache.Put("a", Bytes(40, 'a')));
  ASSERT_TRUE(cache.Put("b", Bytes(40, 'b')));
  ASSERT_NE(cache.Get("a"), nullptr);          // a is now more recent than b
  ASSERT_TRUE(cache.Put("c", Bytes(40, 'c')));  // 120 > 100: b goes
  EXPECT_EQ(cache.Get("b"), nullptr);
  EXPECT_NE(cache.Get("a"), nullptr);
  EXPECT_NE(cache.Get("c"), nullptr);
  EXPECT_EQ(cache.stats().bytes, 80u);
  EXPECT_EQ(cache.stats().evictions, 1u);
  // One large enough to need both gone.
  ASSERT_TRUE(cache.Put("d", Bytes(100, 'd')));
  EXPECT_EQ(cache.Get("a"), nullptr);
  EXPECT_EQ(cache.Get("c"), nullptr);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().bytes, 100u);
  EXPECT_EQ(cache.stats().evictions, 3u);
}

TEST(BundleCacheTest, BundleLargerThanTheBoundIsNotKeptAndEvictsNothing) {
  BundleCache cache(100);
  ASSERT_TRUE(cache.Put("a", Bytes(60, 'a')));
  EXPECT_FALSE(cache.Put("big", Bytes(101, 'x')));
  EXPECT_FALSE(cache.Put("null", nullptr));
  EXPECT_EQ(cache.Get("big"), nullptr);
  EXPECT_NE(cache.Get("a"), nullptr);
  EXPECT_EQ(cache.stats().evictions, 0u);
  BundleCache none(0);
  EXPECT_FALSE(none.Put("a", Bytes(1, 'a')));
}

TEST(BundleCacheTest, PutAgainReplacesAndEraseForgets) {
  BundleCache cache(100);
  ASSERT_TRUE(cache.Put("a", Bytes(60, 'a')));
  auto second = Bytes(30, 'z');
  ASSERT_TRUE(cache.Put("a", second));  // replaced, not counted twice
  EXPECT_EQ(cache.stats().bytes, 30u);
  EXPECT_EQ(cache.stats().evictions, 0u);
  EXPECT_EQ(cache.Get("a"), second);
  // A reader holding the bytes keeps them after an erase.
  auto held = cache.Get("a");
  cache.Erase("a");
  EXPECT_EQ(cache.Get("a"), nullptr);
  EXPECT_EQ(cache.stats().bytes, 0u);
  EXPECT_EQ(*held, std::string(30, 'z'));
}

}  // namespace
}  // namespace sealpost::daemon
