#include "daemon/bundle_rebuild.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/zip.h"
#include "crypto/bundle.h"
#include "crypto/report.h"
#include "storage/entry.h"
#include "storage/reader.h"

namespace sealpost::daemon {

namespace {

// A temporary file removed when this goes out of scope.
class TempFile {
 public:
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  Status Write(const std::string& dir, std::string_view data) {
    std::string tmpl = dir + "/.rebuild-XXXXXX";
    int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0) return Status::IoError(dir + ": cannot create a temporary file: " + std::strerror(errno));
    path_ = tmpl;
    while (!data.empty()) {
      ssize_t w = ::write(fd, data.data(), data.size());
      if (w < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::close(fd);
        return Status::IoError(path_ + ": write failed: " + std::strerror(e));
      }
      data.remove_prefix(static_cast<size_t>(w));
    }
    if (::close(fd) != 0) return Status::IoError(path_ + ": close failed: " + std::strerror(errno));
    return Status::Ok();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

Status RebuildBundle(const std::string& archive_dir, ArchiveEvidence* evidence, uint64_t seq,
                     const std::string& out_path, const std::string& work_dir) {
  const std::string where = "rebuilding the bundle of archive entry " + std::to_string(seq);
  auto reader = storage::ArchiveReader::Open(archive_dir);
  if (!reader) return reader.error().WithContext(where);
  storage::ArchiveReader& r = **reader;
  if (seq == 0 || seq > r.size()) {
    return Status::NotFound(where + ": the archive has " + std::to_string(r.size()) + " entries");
  }
  auto manifest = r.ReadManifest(seq);
  if (!manifest) return manifest.error().WithContext(where);
  const bool sent = manifest->kind == storage::EntryKind::kDocumentSent;
  if (!sent && manifest->kind != storage::EntryKind::kDocumentReceived) {
    return Status::FailedPrecondition(where + ": a " +
                                      std::string(storage::EntryKindName(manifest->kind)) +
                                      " entry, not document-sent or document-received");
  }
  if (sent && evidence == nullptr) {
    return Status::FailedPrecondition(where + ": a document-sent entry needs the archive evidence");
  }
  crypto::BundleParts parts;
  // Entry file `name` into `*into`, its error naming the entry.
  auto read = [&](const char* name, std::string* into) -> Status {
    auto data = r.ReadEntryFile(seq, name);
    if (!data) return data.error().WithContext(where);
    *into = std::move(*data);
    return Status::Ok();
  };
  bool has_crls = false;
  for (const storage::ManifestFile& f : manifest->files) has_crls |= f.name == "crls.pem";
  for (auto [name, into] : {std::pair{"document.json", &parts.document_json},
                            std::pair{"document.json.p7s", &parts.document_json_p7s},
                            std::pair{"content.p7s", &parts.content_p7s},
                            std::pair{"certs.pem", &parts.certs_pem}}) {
    if (Status s = read(name, into); !s.ok()) return s;
  }
  if (has_crls) {
    if (Status s = read("crls.pem", &parts.crls_pem); !s.ok()) return s;
  }
  auto doc = crypto::ParseDocumentJson(parts.document_json, where + ": document.json");
  if (!doc) return doc.error();
  // The content: libgit2 reads the blob whole (see the header); packed
  // from a temporary file like the spooled one at submission.
  TempFile content_file;
  {
    auto data = r.ReadEntryFile(seq, "content");
    if (!data) return data.error().WithContext(where);
    if (Status s = content_file.Write(work_dir, *data); !s.ok()) return s.WithContext(where);
  }
  parts.content_path = content_file.path();
  if (sent) {
    reader->reset();  // the evidence has its own reader
    auto ev = evidence->Get(seq);
    if (!ev) return ev.error().WithContext(where + ": archive evidence");
    SetArchiveEvidence(seq, std::move(*ev), &parts);
  } else {
    // The sender's evidence as it came (Inbox::Receive archives each member).
    std::string proof_json;
    for (auto [name, into] : {std::pair{"sender-manifest.json", &parts.archive_manifest},
                              std::pair{"sender-checkpoint", &parts.checkpoint},
                              std::pair{"sender-checkpoint.p7s", &parts.checkpoint_p7s},
                              std::pair{"sender-inclusion-proof.json", &proof_json}}) {
      if (Status s = read(name, into); !s.ok()) return s;
    }
    auto proof = crypto::ParseInclusionProof(proof_json, where + ": sender-inclusion-proof.json");
    if (!proof) return proof.error();
    parts.proof = std::move(*proof);
  }
  // The members' time as at submission (Exchange::Submit stamps them with
  // the issuing time; the sender's clock for a received document).
  std::optional<std::time_t> mtime;
  if (auto t = crypto::ParseRfc3339(doc->issued_at)) mtime = *t;
  if (Status s = crypto::BuildBundle(parts, out_path, mtime); !s.ok()) {
    return s.code() == Code::kInvalidArgument ? Status::DataError(where + ": " + s.message())
                                              : s.WithContext(where);
  }
  return Status::Ok();
}

Status CheckBundleFile(const std::string& path) {
  auto zip = ZipReader::Open(path);
  if (!zip) return zip.error();
  if (zip->Find(crypto::kBundleMimetypeMember) == nullptr) {
    return Status::DataError(path + ": no member " + std::string(crypto::kBundleMimetypeMember));
  }
  for (const ZipEntry& e : zip->entries()) {
    if (Status s = zip->Check(e); !s.ok()) return s;
  }
  return Status::Ok();
}

void SetArchiveEvidence(uint64_t seq, EntryEvidence evidence, crypto::BundleParts* parts) {
  parts->archive_manifest = std::move(evidence.manifest);
  parts->checkpoint = std::move(evidence.checkpoint_body);
  parts->checkpoint_p7s = std::move(evidence.checkpoint_p7s);
  parts->proof.leaf_index = seq - 1;
  parts->proof.tree_size = evidence.tree_size;
  parts->proof.hashes = std::move(evidence.proof);
}

}  // namespace sealpost::daemon
