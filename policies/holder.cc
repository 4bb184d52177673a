#include "policies/holder.h"

#include <utility>

namespace sealpost::policies {

Result<std::unique_ptr<PolicyHolder>> PolicyHolder::Open(const std::vector<std::string>& paths) {
  auto policy = LoadPolicyFiles(paths);
  if (!policy) return Err(policy.error());
  return std::make_unique<PolicyHolder>(std::move(*policy));
}

PolicyHolder::PolicyHolder(std::shared_ptr<const Policy> initial) : current_(std::move(initial)) {}

std::shared_ptr<const Policy> PolicyHolder::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

uint64_t PolicyHolder::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

Status PolicyHolder::Reload(const std::vector<std::string>& paths) {
  // Loading happens outside the lock: readers are never held up by it.
  auto next = LoadPolicyFiles(paths);
  if (!next) return next.error().WithContext("policy reload refused, the running policy stays in force");
  std::lock_guard<std::mutex> lock(mu_);
  current_ = std::move(*next);
  ++generation_;
  return Status::Ok();
}

Status PolicyHolder::Upgrade(std::shared_ptr<const Policy> next) {
  std::lock_guard<std::mutex> lock(mu_);
  if (next->version <= current_->version) {
    return Status::FailedPrecondition("policy version " + std::to_string(next->version) +
                                      " is not greater than " + std::to_string(current_->version) +
                                      " in force");
  }
  current_ = std::move(next);
  ++generation_;
  return Status::Ok();
}

}  // namespace sealpost::policies
