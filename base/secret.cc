#include "base/secret.h"

#include <openssl/crypto.h>

namespace sealpost {

SecretBytes::SecretBytes(std::string_view bytes) : data_(bytes.begin(), bytes.end()) {}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : data_(std::move(other.data_)) {
  other.data_.clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::move(other.data_);
    other.data_.clear();
  }
  return *this;
}

SecretBytes::~SecretBytes() { Wipe(); }

void SecretBytes::Wipe() {
  if (!data_.empty()) OPENSSL_cleanse(data_.data(), data_.size());
  data_.clear();
}

void SecretBytes::StripOneTrailingNewline() {
  if (!data_.empty() && data_.back() == '\n') {
    data_.back() = 0;
    data_.pop_back();
    if (!data_.empty() && data_.back() == '\r') {
      data_.back() = 0;
      data_.pop_back();
    }
  }
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  if (data_.size() != other.data_.size()) return false;
  return CRYPTO_memcmp(data_.data(), other.data_.data(), data_.size()) == 0;
}

}  // namespace sealpost
