#include "storage/git.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>

#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "base/encoding.h"
#include "base/openssl.h"

namespace sealpost::storage {

Status EnsureLibgit2() {
  static Status result = [] {
    if (git_libgit2_init() < 0) return GitStatus(Code::kInternal, "cannot initialise libgit2");
    if (git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1) < 0) {
      return GitStatus(Code::kInternal, "cannot enable fsync in libgit2");
    }
    return Status::Ok();
  }();
  return result;
}

Status GitStatus(Code code, std::string_view what) {
  const git_error* e = git_error_last();
  std::string msg(what);
  if (e != nullptr && e->message != nullptr) {
    msg += ": ";
    msg += e->message;
  }
  git_error_clear();
  return Status(code, std::move(msg));
}

std::string OidHex(const git_oid& oid) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof buf, &oid);
  return std::string(buf);
}

namespace {

const char* TypeName(git_object_t type) {
  switch (type) {
    case GIT_OBJECT_COMMIT: return "commit";
    case GIT_OBJECT_TREE: return "tree";
    case GIT_OBJECT_BLOB: return "blob";
    case GIT_OBJECT_TAG: return "tag";
    default: return "";
  }
}

std::string RawId(const git_oid& id) {
  return std::string(reinterpret_cast<const char*>(id.id), GIT_OID_RAWSZ);
}

void PutBe32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(path + ": cannot write: " + std::strerror(errno));
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

std::string RandomSuffix() {
  unsigned char r[8];
  if (RAND_bytes(r, sizeof r) != 1) {
    // Uniqueness, not secrecy: fall back on the pid and the time.
    return std::to_string(::getpid()) + "_" + std::to_string(std::time(nullptr));
  }
  return HexEncode(std::string_view(reinterpret_cast<const char*>(r), sizeof r));
}

}  // namespace

git_oid HashObject(git_object_t type, std::string_view data) {
  std::string header = std::string(TypeName(type)) + " " + std::to_string(data.size());
  header.push_back('\0');
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
  git_oid id{};
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), header.data(), header.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), md, &len) != 1 || len != GIT_OID_RAWSZ) {
    // SHA-1 over memory does not fail short of memory exhaustion; an all-zero
    // id is never a valid object and makes the write fail further on.
    return id;
  }
  std::memcpy(id.id, md, GIT_OID_RAWSZ);
  return id;
}

std::string SerializeTree(std::vector<TreeItem> items) {
  auto key = [](const TreeItem& t) { return t.is_tree ? t.name + "/" : t.name; };
  std::sort(items.begin(), items.end(),
            [&](const TreeItem& a, const TreeItem& b) { return key(a) < key(b); });
  std::string out;
  out.reserve(items.size() * 32);
  for (const TreeItem& t : items) {
    out += t.is_tree ? "40000 " : "100644 ";
    out += t.name;
    out.push_back('\0');
    out.append(reinterpret_cast<const char*>(t.id.id), GIT_OID_RAWSZ);
  }
  return out;
}

Status SyncFilesTogether(const std::vector<int>& fds, std::string_view what) {
  if (fds.empty()) return Status::Ok();
  auto sync_one = [](int fd) { return ::fdatasync(fd) == 0 ? 0 : errno; };
  std::vector<std::future<int>> others;
  for (size_t i = 1; i < fds.size(); ++i) {
    others.push_back(std::async(std::launch::async, sync_one, fds[i]));
  }
  int err = sync_one(fds[0]);
  for (auto& f : others) {
    int e = f.get();
    if (err == 0) err = e;
  }
  if (err != 0) return Status::IoError(std::string(what) + ": fdatasync failed: " + std::strerror(err));
  return Status::Ok();
}

PackWriter::PackWriter(std::string dir, std::string pack_tmp, std::string idx_tmp, int pack_fd)
    : dir_(std::move(dir)), pack_tmp_(std::move(pack_tmp)), idx_tmp_(std::move(idx_tmp)),
      pack_fd_(pack_fd) {}

PackWriter::~PackWriter() {
  if (pack_fd_ >= 0) ::close(pack_fd_);
  if (idx_fd_ >= 0) ::close(idx_fd_);
  if (!published_) {
    ::unlink(pack_tmp_.c_str());
    ::unlink(idx_tmp_.c_str());
  }
}

Result<std::unique_ptr<PackWriter>> PackWriter::Create(const std::string& pack_dir) {
  std::string suffix = RandomSuffix();
  std::string pack_tmp = pack_dir + "/tmp_sealpost_pack_" + suffix;
  std::string idx_tmp = pack_dir + "/tmp_sealpost_idx_" + suffix;
  int fd = ::open(pack_tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) {
    return Err(Status::IoError(pack_tmp + ": cannot create: " + std::strerror(errno)));
  }
  std::unique_ptr<PackWriter> w(new PackWriter(pack_dir, pack_tmp, idx_tmp, fd));
  // "PACK", version 2, and the object count, rewritten by Finish() once known.
  SP_RETURN_IF_ERROR(w->Write(std::string_view("PACK\0\0\0\2\0\0\0\0", 12)));
  return w;
}

Status PackWriter::Write(std::string_view bytes) {
  if (Status s = WriteAll(pack_fd_, bytes, pack_tmp_); !s.ok()) return s;
  offset_ += bytes.size();
  return Status::Ok();
}

Result<git_oid> PackWriter::AddObject(git_object_t type, std::string_view data) {
  git_oid id = HashObject(type, data);
  if (!seen_.insert(RawId(id)).second) return id;
  // Entry header: type and size, 7 bits at a time after the first 4.
  std::string entry;
  uint64_t size = data.size();
  unsigned char c = static_cast<unsigned char>((static_cast<unsigned>(type) << 4) | (size & 0x0f));
  size >>= 4;
  while (size != 0) {
    entry.push_back(static_cast<char>(c | 0x80));
    c = static_cast<unsigned char>(size & 0x7f);
    size >>= 7;
  }
  entry.push_back(static_cast<char>(c));
  const size_t header_len = entry.size();
  uLongf bound = compressBound(static_cast<uLong>(data.size()));
  entry.resize(header_len + bound);
  // Level 1: documents are mostly compressed formats or random; the small
  // text objects (manifests, trees) gain little from harder work.
  int rc = compress2(reinterpret_cast<Bytef*>(entry.data() + header_len), &bound,
                     reinterpret_cast<const Bytef*>(data.data()), static_cast<uLong>(data.size()), 1);
  if (rc != Z_OK) return Err(Status::Internal("zlib cannot deflate an object (" + std::to_string(rc) + ")"));
  entry.resize(header_len + bound);
  uint32_t crc = static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(entry.data()), static_cast<uInt>(entry.size())));
  entries_.push_back({id, offset_, crc});
  SP_RETURN_IF_ERROR(Write(entry));
  return id;
}

Status PackWriter::AddRawEntry(const git_oid& id, std::string_view entry, uint32_t crc) {
  if (!seen_.insert(RawId(id)).second) return Status::Ok();
  entries_.push_back({id, offset_, crc});
  return Write(entry);
}

Result<std::string> PackWriter::Finish(int extra_fd) {
  // The checksum covers the header, which holds the count known only now:
  // hash the file once more, in order (it is in the page cache).
  std::string header("PACK\0\0\0\2", 8);
  PutBe32(&header, static_cast<uint32_t>(entries_.size()));
  if (::pwrite(pack_fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
    return Err(Status::IoError(pack_tmp_ + ": cannot write the header: " + std::strerror(errno)));
  }
  std::unique_ptr<EVP_MD_CTX, CDeleter<EVP_MD_CTX_free>> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack"));
  }
  {
    std::string buf(1 << 20, '\0');
    uint64_t pos = 0;
    while (pos < offset_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), offset_ - pos));
      ssize_t n = ::pread(pack_fd_, buf.data(), want, static_cast<off_t>(pos));
      if (n <= 0) return Err(Status::IoError(pack_tmp_ + ": cannot read back: " + std::strerror(errno)));
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
      pos += static_cast<uint64_t>(n);
    }
  }
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), sum, &sum_len) != 1 || sum_len != GIT_OID_RAWSZ) {
    return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack"));
  }
  std::string_view checksum(reinterpret_cast<const char*>(sum), GIT_OID_RAWSZ);
  if (::pwrite(pack_fd_, checksum.data(), checksum.size(), static_cast<off_t>(offset_)) !=
      static_cast<ssize_t>(checksum.size())) {
    return Err(Status::IoError(pack_tmp_ + ": cannot write the checksum: " + std::strerror(errno)));
  }

  // Version 2 index: magic, version, fan-out, sorted ids, CRCs, 31-bit
  // offsets (with the high bit pointing into a table of 64-bit ones),
  // the pack checksum, and the index's own checksum.
  std::vector<const Entry*> sorted;
  sorted.reserve(entries_.size());
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::memcmp(a->id.id, b->id.id, GIT_OID_RAWSZ) < 0;
  });
  std::string idx("\377tOc\0\0\0\2", 8);
  idx.reserve(8 + 1024 + sorted.size() * 28 + 40);
  uint32_t fanout[256] = {};
  for (const Entry* e : sorted) ++fanout[e->id.id[0]];
  uint32_t running = 0;
  for (uint32_t& f : fanout) {
    running += f;
    f = running;
  }
  for (uint32_t f : fanout) PutBe32(&idx, f);
  for (const Entry* e : sorted) idx.append(reinterpret_cast<const char*>(e->id.id), GIT_OID_RAWSZ);
  for (const Entry* e : sorted) PutBe32(&idx, e->crc);
  std::vector<uint64_t> large;
  for (const Entry* e : sorted) {
    if (e->offset < 0x80000000ull) {
      PutBe32(&idx, static_cast<uint32_t>(e->offset));
    } else {
      PutBe32(&idx, 0x80000000u | static_cast<uint32_t>(large.size()));
      large.push_back(e->offset);
    }
  }
  for (uint64_t off : large) {
    PutBe32(&idx, static_cast<uint32_t>(off >> 32));
    PutBe32(&idx, static_cast<uint32_t>(off));
  }
  idx.append(checksum);
  unsigned char idx_sum[EVP_MAX_MD_SIZE];
  unsigned int idx_sum_len = 0;
  if (EVP_Digest(idx.data(), idx.size(), idx_sum, &idx_sum_len, EVP_sha1(), nullptr) != 1) {
    return Err(OpenSslStatus(Code::kInternal, "SHA-1 for a pack index"));
  }
  idx.append(reinterpret_cast<const char*>(idx_sum), idx_sum_len);

  idx_fd_ = ::open(idx_tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (idx_fd_ < 0) return Err(Status::IoError(idx_tmp_ + ": cannot create: " + std::strerror(errno)));
  SP_RETURN_IF_ERROR(WriteAll(idx_fd_, idx, idx_tmp_));
  std::vector<int> fds = {pack_fd_, idx_fd_};
  if (extra_fd >= 0) fds.push_back(extra_fd);
  SP_RETURN_IF_ERROR(SyncFilesTogether(fds, dir_ + ": new pack"));
  name_ = "pack-" + HexEncode(checksum);
  finished_ = true;
  return name_;
}

Status PackWriter::Publish() {
  if (!finished_) return Status::Internal("PackWriter::Publish before Finish");
  std::string pack = dir_ + "/" + name_ + ".pack";
  std::string idx = dir_ + "/" + name_ + ".idx";
  // The .pack first: a .pack without its .idx is removed at open, an .idx
  // without its .pack would name objects that cannot be read.
  if (::rename(pack_tmp_.c_str(), pack.c_str()) != 0) {
    return Status::IoError(pack + ": cannot rename into place: " + std::strerror(errno));
  }
  if (::rename(idx_tmp_.c_str(), idx.c_str()) != 0) {
    return Status::IoError(idx + ": cannot rename into place: " + std::strerror(errno));
  }
  published_ = true;
  return Status::Ok();
}

}  // namespace sealpost::storage
