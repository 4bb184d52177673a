#include "crypto/digest.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

namespace sealpost::crypto {

Result<std::vector<std::string>> DigestFile(const std::string& path,
                                            const std::vector<const EVP_MD*>& mds) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err(Status::NotFound(path + ": cannot open: " + std::strerror(errno)));
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  std::vector<EvpMdCtxPtr> ctxs;
  for (const EVP_MD* md : mds) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "cannot initialise digest"));
    }
    ctxs.push_back(std::move(ctx));
  }
  // 1 MiB reads: large enough that syscalls do not show next to hashing,
  // small enough that memory stays flat whatever the file size.
  constexpr size_t kBuf = 1 << 20;
  std::unique_ptr<unsigned char[]> buf(new unsigned char[kBuf]);
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kBuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Err(Status::NotFound(path + ": cannot read: " + std::strerror(errno)));
    }
    if (n == 0) break;
    for (auto& ctx : ctxs) {
      if (EVP_DigestUpdate(ctx.get(), buf.get(), static_cast<size_t>(n)) != 1) {
        return Err(OpenSslStatus(Code::kInternal, "digest update failed"));
      }
    }
  }
  std::vector<std::string> out;
  for (auto& ctx : ctxs) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
      return Err(OpenSslStatus(Code::kInternal, "digest final failed"));
    }
    out.emplace_back(reinterpret_cast<char*>(md), len);
  }
  return out;
}

Result<std::string> DigestBytes(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "digest failed"));
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace sealpost::crypto
