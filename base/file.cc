#include "base/file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace sealpost {
namespace {

std::string ErrnoText(int e) { return std::strerror(e); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
 private:
  int fd_;
};

Status ReadAllInto(int fd, const std::string& path, size_t max_bytes, std::vector<char>* out) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::NotFound(path + ": cannot read: " + ErrnoText(errno));
    }
    if (n == 0) break;
    if (out->size() + static_cast<size_t>(n) > max_bytes) {
      return Status::DataError(path + ": file is larger than " + std::to_string(max_bytes) +
                               " bytes");
    }
    out->insert(out->end(), buf, buf + n);
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Err(Status::NotFound(path + ": cannot open: " + ErrnoText(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Err(Status::NotFound(path + ": is a directory"));
  }
  std::vector<char> data;
  if (st.st_size > 0 && static_cast<size_t>(st.st_size) <= max_bytes) data.reserve(st.st_size);
  Status s = ReadAllInto(fd.get(), path, max_bytes, &data);
  if (!s.ok()) return Err(s);
  return std::string(data.begin(), data.end());
}

// The rest of an open secret file, without a trailing newline; the buffer
// it passed through is wiped.
static Result<SecretBytes> ReadSecretFromFd(int fd, const std::string& path, size_t max_bytes) {
  std::vector<char> data;
  data.reserve(max_bytes + 1);  // no reallocation: no stray copies of the secret
  Status s = ReadAllInto(fd, path, max_bytes, &data);
  SecretBytes out(std::string_view(data.data(), data.size()));
  std::memset(data.data(), 0, data.size());
  data.clear();
  if (!s.ok()) return Err(s);
  out.StripOneTrailingNewline();
  return out;
}

Result<SecretBytes> ReadSecretFile(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Err(Status::NotFound(path + ": cannot open: " + ErrnoText(errno)));
  return ReadSecretFromFd(fd.get(), path, max_bytes);
}

Result<SecretBytes> ReadPrivateSecretFile(const std::string& path, std::string_view what,
                                          size_t max_bytes) {
  const std::string name = std::string(what) + " " + path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ELOOP) return Err(Status::DataError(name + ": is a symbolic link (refused)"));
    return Err(Status::NotFound(name + ": " + ErrnoText(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Err(Status::NotFound(name + ": " + ErrnoText(errno)));
  if (!S_ISREG(st.st_mode)) return Err(Status::DataError(name + ": not a regular file"));
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Err(Status::PermissionDenied(name + " is accessible by group or others (mode " + mode +
                                        "); chmod 600 it"));
  }
  auto out = ReadSecretFromFd(fd.get(), path, max_bytes);
  if (!out) return Err(out.error().WithContext(std::string(what)));
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view data, int mode) {
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  Fd fd(::mkostemp(name.data(), O_CLOEXEC));
  if (fd.get() < 0) return Status::IoError(path + ": cannot create temporary file: " + ErrnoText(errno));
  std::string tmp(name.data());
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::unlink(tmp.c_str());
    return Status::IoError(path + ": " + what + ": " + ErrnoText(e));
  };
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) return fail("chmod");
  if (::fsync(fd.get()) != 0) return fail("fsync");
  if (::close(fd.release()) != 0) return fail("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename");
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());
  return Status::Ok();
}

}  // namespace sealpost
