#include "daemon/upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <streambuf>
#include <vector>

#include <Poco/Exception.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/MessageHeader.h>
#include <Poco/Net/MultipartReader.h>
#include <Poco/Net/NameValueCollection.h>

#include "base/encoding.h"
#include "base/utf8.h"

namespace sealpost::daemon {
namespace {

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxSignature = 1 << 20;

// Reads from another stream, counting; past `limit` bytes it reports EOF
// and sets exceeded().
class LimitedBuf : public std::streambuf {
 public:
  LimitedBuf(std::istream& src, uint64_t limit) : src_(src), limit_(limit), buf_(kChunk) {}
  bool exceeded() const { return exceeded_; }
  bool source_ended() const { return source_ended_; }
  uint64_t count() const { return count_; }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    if (exceeded_ || source_ended_) return traits_type::eof();
    src_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    std::streamsize n = src_.gcount();
    if (n <= 0) {
      source_ended_ = true;
      return traits_type::eof();
    }
    count_ += static_cast<uint64_t>(n);
    if (count_ > limit_) {
      exceeded_ = true;
      return traits_type::eof();
    }
    setg(buf_.data(), buf_.data(), buf_.data() + n);
    return traits_type::to_int_type(*gptr());
  }

 private:
  std::istream& src_;
  uint64_t limit_;
  std::vector<char> buf_;
  uint64_t count_ = 0;
  bool exceeded_ = false;
  bool source_ended_ = false;
};

Problem TooLarge(uint64_t max_body) {
  return Problem{413, "body-too-large", "Request body too large", "Nội dung yêu cầu quá lớn",
                 "The body is larger than the limit of " + std::to_string(max_body) + " bytes.",
                 "Nội dung lớn hơn giới hạn " + std::to_string(max_body) + " byte."};
}

Problem Malformed(const std::string& en, const std::string& vi) {
  return Problem{400, "malformed-upload", "Malformed upload", "Tệp tải lên không đúng dạng", en,
                 vi};
}

Problem Internal(const Status& s) {
  return Problem{500, "internal", "Internal error", "Lỗi nội bộ",
                 "The upload could not be stored: " + s.message(),
                 "Không lưu được tệp tải lên: " + s.message()};
}

// Drains what is left of the body so the connection can be kept alive.
bool Drain(std::istream& in, LimitedBuf& lim) {
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
  }
  return !lim.exceeded();
}

std::string Param(const std::string& header_value, const std::string& name) {
  std::string value;
  Poco::Net::NameValueCollection params;
  Poco::Net::MessageHeader::splitParameters(header_value, value, params);
  return params.get(name, "");
}

}  // namespace

Result<std::unique_ptr<SpoolFile>> SpoolFile::Create(const std::string& dir) {
  std::string templ = dir + "/upload-XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    return Err(Status::IoError("cannot create a spool file in " + dir + ": " +
                               std::strerror(errno)));
  }
  ::fchmod(fd, 0600);
  return std::unique_ptr<SpoolFile>(new SpoolFile(fd, std::string(name.data())));
}

SpoolFile::~SpoolFile() {
  if (pool_ != nullptr && fd_ >= 0) {
    pool_->Release(fd_, std::move(path_));
    return;
  }
  if (fd_ >= 0) ::close(fd_);
  ::unlink(path_.c_str());
}

SpoolPool::~SpoolPool() {
  for (const Idle& f : idle_) {
    ::close(f.fd);
    ::unlink(f.path.c_str());
  }
}

Result<std::unique_ptr<SpoolFile>> SpoolPool::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      Idle f = std::move(idle_.back());
      idle_.pop_back();
      return std::unique_ptr<SpoolFile>(new SpoolFile(f.fd, std::move(f.path), this));
    }
  }
  auto made = SpoolFile::Create(dir_);
  if (!made) return Err(made.error());
  std::lock_guard<std::mutex> lock(mu_);
  ++created_;
  (*made)->pool_ = this;
  return made;
}

void SpoolPool::Release(int fd, std::string path) {
  // Emptied and rewound before it is kept; anything less and it is dropped,
  // so that the next request can never read this one's bytes.
  struct stat st {};
  bool empty = ::ftruncate(fd, 0) == 0 && ::lseek(fd, 0, SEEK_SET) == 0 &&
               ::fstat(fd, &st) == 0 && st.st_size == 0 && st.st_nlink == 1;
  if (empty) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < max_idle_) {
      idle_.push_back(Idle{fd, std::move(path)});
      return;
    }
  }
  ::close(fd);
  ::unlink(path.c_str());
}

size_t SpoolPool::RemoveLeftovers() {
  std::set<std::string> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Idle& f : idle_) held.insert(f.path);
  }
  size_t removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    // ".rebuild-": the content of a received document's bundle being made
    // (DocumentsService::BundleOf; its bundle is an "upload-bundle-" file).
    const bool ours = name.starts_with("upload-") || name.starts_with(".rebuild-");
    if (!ours || held.contains(e.path().string())) continue;
    if (::unlink(e.path().c_str()) == 0) ++removed;
  }
  return removed;
}

size_t SpoolPool::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

uint64_t SpoolPool::created() const {
  std::lock_guard<std::mutex> lock(mu_);
  return created_;
}

Status SpoolFile::Append(const char* data, size_t n) {
  if (closed_ || fd_ < 0) return Status::FailedPrecondition("spool file " + path_ + " is closed");
  while (n > 0) {
    ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::IoError("cannot write spool file " + path_ + ": " + std::strerror(errno));
    }
    data += w;
    n -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

Status SpoolFile::CopyFrom(std::istream& in) {
  std::vector<char> buf(kChunk);
  while (true) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    std::streamsize n = in.gcount();
    if (n > 0) {
      Status s = Append(buf.data(), static_cast<size_t>(n));
      if (!s.ok()) return s;
    }
    if (!in) return Status::Ok();
  }
}

Status SpoolFile::Close() {
  closed_ = true;
  // A pooled file keeps its descriptor for the next request; write errors
  // were reported by write() (no NFS here).
  if (pool_ != nullptr) return Status::Ok();
  if (fd_ >= 0 && ::close(fd_) != 0) {
    fd_ = -1;
    return Status::IoError("cannot close spool file " + path_);
  }
  fd_ = -1;
  return Status::Ok();
}

std::expected<Upload, UploadError> ReceiveUpload(Poco::Net::HTTPServerRequest& req,
                                                 SpoolPool& pool, uint64_t max_body) {
  using Unexpected = std::unexpected<UploadError>;
  std::string media_type;
  Poco::Net::NameValueCollection ct_params;
  Poco::Net::MessageHeader::splitParameters(req.getContentType(), media_type, ct_params);
  for (char& c : media_type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));

  LimitedBuf lim(req.stream(), max_body);
  std::istream body(&lim);
  auto spool = pool.Acquire();
  if (!spool) return Unexpected(UploadError{Internal(spool.error()), false});
  Upload up;
  up.file = std::move(*spool);

  if (media_type == "application/octet-stream") {
    std::string sig_b64 = req.get("Sealpost-Signature", "");
    auto sig = Base64Decode(sig_b64);
    if (sig_b64.empty() || !sig) {
      return Unexpected(UploadError{
          Malformed("A raw upload needs the signature, base64, in the Sealpost-Signature header.",
                    "Tải lên dạng thô cần chữ ký (base64) trong tiêu đề Sealpost-Signature."),
          false});
    }
    up.signature = std::move(*sig);
    Status s = up.file->CopyFrom(body);
    if (!s.ok()) return Unexpected(UploadError{Internal(s), false});
    if (lim.exceeded()) return Unexpected(UploadError{TooLarge(max_body), false});
    up.body_consumed = true;
    Status c = up.file->Close();
    if (!c.ok()) return Unexpected(UploadError{Internal(c), true});
    return up;
  }
  if (media_type != "multipart/form-data") {
    return Unexpected(UploadError{
        Problem{415, "unsupported-media-type", "Unsupported media type",
                "Kiểu nội dung không được hỗ trợ",
                "Send multipart/form-data (parts 'file' and 'signature') or "
                "application/octet-stream with a Sealpost-Signature header.",
                "Hãy gửi multipart/form-data (phần 'file' và 'signature') hoặc "
                "application/octet-stream kèm tiêu đề Sealpost-Signature."},
        false});
  }
  std::string boundary = ct_params.get("boundary", "");
  if (boundary.empty() || boundary.size() > 70) {
    return Unexpected(UploadError{Malformed("The multipart boundary is missing or too long.",
                                            "Thiếu ranh giới multipart hoặc ranh giới quá dài."),
                                  false});
  }
  bool have_file = false, have_sig = false;
  try {
    Poco::Net::MultipartReader reader(body, boundary);
    while (reader.hasNextPart()) {
      Poco::Net::MessageHeader h;
      reader.nextPart(h);
      std::string disposition = h.get("Content-Disposition", "");
      std::string name = Param(disposition, "name");
      std::istream& part = reader.stream();
      if (name == "file" && !have_file) {
        have_file = true;
        std::string fname = Param(disposition, "filename");
        if (IsCleanUtf8Text(fname) && fname.size() <= 255) up.file_name = fname;
        Status s = up.file->CopyFrom(part);
        if (!s.ok()) return Unexpected(UploadError{Internal(s), false});
      } else if (name == "signature" && !have_sig) {
        have_sig = true;
        std::vector<char> buf(kChunk);
        while (part.read(buf.data(), static_cast<std::streamsize>(buf.size())) ||
               part.gcount() > 0) {
          up.signature.append(buf.data(), static_cast<size_t>(part.gcount()));
          if (up.signature.size() > kMaxSignature) {
            return Unexpected(UploadError{
                Malformed("The signature part is larger than 1 MiB.",
                          "Phần chữ ký lớn hơn 1 MiB."),
                false});
          }
        }
      } else {
        return Unexpected(UploadError{
            Malformed("Unexpected or repeated part '" + name +
                          "': only 'file' and 'signature', once each.",
                      "Phần '" + name +
                          "' không được chờ đợi hoặc bị lặp: chỉ có 'file' và 'signature', "
                          "mỗi phần một lần."),
            false});
      }
      if (lim.exceeded()) return Unexpected(UploadError{TooLarge(max_body), false});
    }
  } catch (const Poco::Exception& e) {
    if (lim.exceeded()) return Unexpected(UploadError{TooLarge(max_body), false});
    return Unexpected(UploadError{Malformed("The multipart body is malformed: " + e.displayText(),
                                            "Nội dung multipart không đúng dạng: " +
                                                e.displayText()),
                                  false});
  } catch (const std::exception& e) {
    if (lim.exceeded()) return Unexpected(UploadError{TooLarge(max_body), false});
    return Unexpected(UploadError{
        Malformed(std::string("The multipart body is malformed: ") + e.what(),
                  std::string("Nội dung multipart không đúng dạng: ") + e.what()),
        false});
  }
  if (lim.exceeded()) return Unexpected(UploadError{TooLarge(max_body), false});
  bool drained = Drain(body, lim);
  if (!drained) return Unexpected(UploadError{TooLarge(max_body), false});
  up.body_consumed = true;
  if (!have_file || !have_sig) {
    return Unexpected(UploadError{
        Malformed("The upload needs both parts 'file' and 'signature'.",
                  "Tệp tải lên cần đủ hai phần 'file' và 'signature'."),
        true});
  }
  Status c = up.file->Close();
  if (!c.ok()) return Unexpected(UploadError{Internal(c), true});
  return up;
}

}  // namespace sealpost::daemon
