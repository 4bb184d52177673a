// Secret bytes (PINs, key material): wiped when freed, compared in constant
// time, never printable. Grep for SecretBytes to find every secret.
#ifndef SEALPOST_BASE_SECRET_H_
#define SEALPOST_BASE_SECRET_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sealpost {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::string_view bytes);
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  // Borrowed view; valid while this object lives and is not modified.
  std::string_view view() const { return std::string_view(data_.data(), data_.size()); }
  const char* data() const { return data_.data(); }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }

  // Removes one trailing "\n" or "\r\n" (a PIN file's line end is not PIN).
  void StripOneTrailingNewline();
  void Wipe();

  // Constant-time comparison (length may leak).
  bool Equals(const SecretBytes& other) const;

 private:
  std::vector<char> data_;
};

}  // namespace sealpost

#endif  // SEALPOST_BASE_SECRET_H_
