// The bundles of recently submitted small documents, kept in memory
// (docs/decisions/0014-small-bundles-in-memory.md): a submission builds a
// small document's bundle into memory instead of a file, and the deliveries
// and GET /documents/{id}/bundle take the bytes from here. The cache is
// derived data like the bundle files: a miss (evicted, or after a restart)
// is served by Exchange::EnsureBundle, which rebuilds the file from the
// archive.
//
// Bounded by the bytes it holds: Put() drops the least recently used
// bundles until the new one fits; a bundle larger than the bound is not kept.
//
// Thread-safety: every method may be called from any thread (one mutex,
// held for map operations only; the bytes are shared, never copied).
#ifndef SEALPOST_DAEMON_BUNDLE_CACHE_H_
#define SEALPOST_DAEMON_BUNDLE_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace sealpost::daemon {

class BundleCache {
 public:
  // `max_bytes`: the bound on the bundles' bytes held (0: nothing is kept).
  explicit BundleCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  BundleCache(const BundleCache&) = delete;
  BundleCache& operator=(const BundleCache&) = delete;

  // Keeps `bytes` as the bundle of document `id` (replacing one kept for
  // it), dropping the least recently used bundles as needed. False, and
  // nothing kept, when the bundle alone exceeds the bound or is null.
  bool Put(const std::string& id, std::shared_ptr<const std::string> bytes);

  // The bundle of `id` (now the most recently used), or null.
  std::shared_ptr<const std::string> Get(const std::string& id);

  // Forgets `id`'s bundle, if kept.
  void Erase(const std::string& id);

  struct Stats {
    uint64_t entries = 0, bytes = 0;           // now
    uint64_t hits = 0, misses = 0, evictions = 0;  // since construction
  };
  Stats stats() const;
  uint64_t max_bytes() const { return max_bytes_; }

 private:
  struct Item {
    std::string id;
    std::shared_ptr<const std::string> bytes;
  };
  void EraseLocked(std::list<Item>::iterator it);

  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Item> lru_;  // most recently used first; guarded by mu_
  std::unordered_map<std::string, std::list<Item>::iterator> index_;  // guarded by mu_
  uint64_t bytes_ = 0, hits_ = 0, misses_ = 0, evictions_ = 0;         // guarded by mu_
};

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_BUNDLE_CACHE_H_
