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
#include <string>

#include "base/status.h"
#include "daemon/problem.h"

namespace Poco::Net {
class HTTPServerRequest;
}  // namespace Poco::Net

namespace sealpost::daemon {

// A file in the spool directory, removed when this object is destroyed.
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
  [[nodiscard]] Status Close();
  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

 private:
  SpoolFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint64_t size_ = 0;
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
// bytes (413 beyond), into `spool_dir`. Malformed multipart, a missing or
// extra part, a bad signature header -> 400; another media type -> 415.
std::expected<Upload, UploadError> ReceiveUpload(Poco::Net::HTTPServerRequest& req,
                                                 const std::string& spool_dir, uint64_t max_body);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_UPLOAD_H_
