#include "daemon/bundle_cache.h"

#include <utility>

namespace sealpost::daemon {

bool BundleCache::Put(const std::string& id, std::shared_ptr<const std::string> bytes) {
  if (!bytes || bytes->size() > max_bytes_) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(id); it != index_.end()) EraseLocked(it->second);
  while (!lru_.empty() && bytes_ + bytes->size() > max_bytes_) {
    EraseLocked(std::prev(lru_.end()));
    ++evictions_;
  }
  bytes_ += bytes->size();
  lru_.push_front(Item{id, std::move(bytes)});
  index_[id] = lru_.begin();
  return true;
}

std::shared_ptr<const std::string> BundleCache::Get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->bytes;
}

void BundleCache::Erase(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(id); it != index_.end()) EraseLocked(it->second);
}

void BundleCache::EraseLocked(std::list<Item>::iterator it) {
  bytes_ -= it->bytes->size();
  index_.erase(it->id);
  lru_.erase(it);
}

BundleCache::Stats BundleCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return Stats{lru_.size(), bytes_, hits_, misses_, evictions_};
}

}  // namespace sealpost::daemon
