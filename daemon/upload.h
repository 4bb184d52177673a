// Receiving an uploaded file and its detached signature from an HTTP request
// body without ever holding the file in memory: the file goes to a spool
// file in 64 KiB pieces, the body is counted while it is read, and the
// client's file name is never used as a path.
//
// Two forms (docs/api/openapi.yaml, POST /api/v1/verify):
//  - multipart/form-data with a part "file" (the document) and a part
//    "signature" (the .p7s, DER or PEM, at most 1 MiB); no other parts;
//  - raw: Content-Type application/octet-stream, the document as the body
//    and the signature, base64, in the header "Sealpost-Signature".
#ifndef SEALPOST_DAEMON_UPLOAD_H_
#define SEALPOST_DAEMON_UPLOAD_H_

#include <cstdint>
#include <expected>
#include <istream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "daemon/problem.h"

namespace Poco::Net {
class HTTPServerRequest;
}  // namespace Poco::Net

namespace sealpost::daemon {

class SpoolPool;

// A file in the spool directory. Made by SpoolFile::Create it is removed
// when this object is destroyed; taken from a SpoolPool it goes back to the
// pool, emptied, instead (see SpoolPool).
class SpoolFile {
 public:
  // Creates an empty file (mode 0600, unique name) in `dir`.
  [[nodiscard]] static Result<std::unique_ptr<SpoolFile>> Create(const std::string& dir);
  ~SpoolFile();
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;

  [[nodiscard]] Status Append(const char* data, size_t n);
  // Copies `in` to the file until EOF; stops early (returns OK) when `in`
  // fails, which the caller checks.
  [[nodiscard]] Status CopyFrom(std::istream& in);
  // No more writes. A pooled file keeps its descriptor (to be emptied and
  // reused); the content stays readable through path() until destruction.
  [[nodiscard]] Status Close();
  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

 private:
  friend class SpoolPool;
  SpoolFile(int fd, std::string path, SpoolPool* pool = nullptr)
      : fd_(fd), path_(std::move(path)), pool_(pool) {}
  int fd_;
  std::string path_;
  uint64_t size_ = 0;
  SpoolPool* pool_;      // null: not pooled (unlinked when destroyed)
  bool closed_ = false;  // Close() was called (pooled files keep fd_)
};

// Spool files kept for reuse. Creating and unlinking a file per request
// costs an inode allocation per request, and on ext4 without a journal the
// allocator scans past every inode freed in the last minutes
// (recently_deleted): a stream of create+unlink made that scan grow with
// the request rate (docs/performance.md, "CPU per submission"). A pooled
// file is created once, and when its SpoolFile is destroyed it is emptied
// (ftruncate to 0, offset back to 0, size checked to be 0 with fstat) and
// kept for the next request; one that cannot be emptied is unlinked, never
// reused, so a reused spool never carries bytes of an earlier request.
// At most `max_idle` emptied files are kept; more are unlinked.
//
// The pool must outlive every SpoolFile it handed out. Removes its idle
// files when destroyed. Thread-safety: Acquire() and the SpoolFiles'
// destruction may happen on any thread.
class SpoolPool {
 public:
  // `dir` must exist and be used by this process only (sealpostd holds the
  // state directory's lock). Files of an earlier process ("upload-*", and
  // the ".rebuild-*" of a bundle being made, left by a crash) are removed by
  // RemoveLeftovers().
  SpoolPool(std::string dir, size_t max_idle) : dir_(std::move(dir)), max_idle_(max_idle) {}
  ~SpoolPool();
  SpoolPool(const SpoolPool&) = delete;
  SpoolPool& operator=(const SpoolPool&) = delete;

  // An empty spool file: a kept one or a new one (SpoolFile::Create's errors).
  [[nodiscard]] Result<std::unique_ptr<SpoolFile>> Acquire();
  // Unlinks every "upload-*" and ".rebuild-*" file in the directory that
  // this pool does not hold; returns how many. Call once at start, before
  // Acquire() and before any request.
  size_t RemoveLeftovers();

  const std::string& dir() const { return dir_; }
  // Emptied files kept now (tests, metrics).
  size_t idle() const;
  // Files created since construction (tests: reuse means no new file).
  uint64_t created() const;

 private:
  friend class SpoolFile;
  // Takes back `fd` (open, read-write) at `path`: emptied and kept, or
  // closed and unlinked.
  void Release(int fd, std::string path);

  struct Idle {
    int fd;
    std::string path;
  };
  const std::string dir_;
  const size_t max_idle_;
  mutable std::mutex mu_;
  std::vector<Idle> idle_;  // guarded by mu_
  uint64_t created_ = 0;    // guarded by mu_
};

struct Upload {
  std::unique_ptr<SpoolFile> file;
  std::string signature;  // as uploaded (DER or PEM)
  std::string file_name;  // the client's name for it, UTF-8-cleaned; display only
  // True when the request body was read to its end (keep-alive is safe).
  bool body_consumed = false;
};

// What went wrong, as the problem to answer with; `body_consumed` false
// means the caller must close the connection.
struct UploadError {
  Problem problem;
  bool body_consumed = false;
};

// Reads the request body of `req` (either form above), at most `max_body`
// bytes (413 beyond), into a spool file of `pool`. Malformed multipart, a missing or
// extra part, a bad signature header -> 400; another media type -> 415.
std::expected<Upload, UploadError> ReceiveUpload(Poco::Net::HTTPServerRequest& req,
                                                 SpoolPool& pool, uint64_t max_body);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_UPLOAD_H_
