// Archive entries: their kinds, what a caller hands in, the canonical
// manifest that the Merkle leaf is computed from, and where an entry lives
// in the git tree. See docs/decisions/0005-archive-layout.md.
//
// Thread-safety: the functions are pure and reentrant.
#ifndef SEALPOST_STORAGE_ENTRY_H_
#define SEALPOST_STORAGE_ENTRY_H_

#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "crypto/merkle.h"

namespace sealpost::storage {

// Version of the archive layout, in the FORMAT file at the root of the tree.
inline constexpr int kFormatVersion = 1;

enum class EntryKind {
  kDocumentSent,      // "document-sent"
  kDocumentReceived,  // "document-received"
  kDeliveryReceipt,   // "delivery-receipt"
  kPolicyVersion,     // "policy-version"
  kCheckpoint,        // "checkpoint" (e.g. a peer's checkpoint we saw)
  kKeyChange,         // "key-change" (the seal certificate announced or replaced)
  kWithdrawal,        // "withdrawal" (a document withdrawn or superseded)
  kDeliveryAttempts,  // "delivery-attempts" (a batch of the outbox's finished attempts)
  kCrl,               // "crl" (a CRL fetched from a policy CRL source that changed; docs/archive.md)
};

std::string_view EntryKindName(EntryKind kind);
// DataError for a name that is not one of the above.
Result<EntryKind> ParseEntryKind(std::string_view name);

// Limits (an entry comes from the network in the daemon).
inline constexpr size_t kMaxEntryFiles = 64;
inline constexpr size_t kMaxFileNameBytes = 100;
inline constexpr size_t kMaxFieldNameBytes = 64;
inline constexpr size_t kMaxFieldValueBytes = 64 * 1024;
inline constexpr size_t kMaxFields = 64;
inline constexpr size_t kMaxEntryBytes = 256u << 20;

struct EntryFile {
  EntryFile() = default;
  EntryFile(std::string n, std::string d) : name(std::move(n)), data(std::move(d)) {}
  // A file that stays on disk: the archive's writer reads it in pieces and
  // deflates it into the pack (content of any size is never held whole in
  // memory). `size` and `sha256` (32 raw bytes) must describe it: Append()
  // checks the size at once, the writer checks both while reading and fails
  // the commit (DataError) if the file differs. The file must stay in place,
  // unchanged, until Append() returns.
  static EntryFile FromPath(std::string name, std::string path, uint64_t size, std::string sha256) {
    EntryFile f(std::move(name), std::string());
    f.path = std::move(path);
    f.size = size;
    f.sha256 = std::move(sha256);
    return f;
  }

  std::string name;  // [A-Za-z0-9][A-Za-z0-9._-]*, not "manifest.json"
  std::string data;
  std::string path;     // when not empty: the content is this file, `data` is empty
  uint64_t size = 0;    // with path: its size
  std::string sha256;   // with path: its SHA-256, raw

  uint64_t content_size() const { return path.empty() ? data.size() : size; }
};

// What a caller appends. The archive adds seq, time and origin.
struct EntryInput {
  EntryKind kind = EntryKind::kDocumentSent;
  // Descriptive metadata (id, type, reference, subject, issuer, recipients,
  // policy_version, ...): names [a-z][a-z0-9_]*, values UTF-8 without
  // control characters other than none (a value is one line).
  std::map<std::string, std::string> fields;
  std::vector<EntryFile> files;
  // The entry this one is about (the withdrawn or superseded document, the
  // document a receipt acknowledges); 0 for none. Must be an existing seq.
  uint64_t refers_to = 0;
};

// Checks names, values and limits. InvalidArgument naming the offending
// file or field.
Status ValidateEntry(const EntryInput& entry);

// The canonical manifest of entry `seq` (RFC 8785-style JSON: keys sorted,
// no white space, only strings, integers, arrays and objects):
//   {"fields":{...},"files":[{"name":..,"sha256":..,"size":..},...],
//    "format":1,"kind":"...","origin":"...","refers_to":N,"seq":N,
//    "time":"YYYY-MM-DDTHH:MM:SSZ"}
// files are listed in name order. The Merkle leaf of the entry is
// merkle::LeafHash(manifest bytes).
// REQUIRES: ValidateEntry(entry).ok().
std::string BuildManifest(const EntryInput& entry, std::string_view origin, uint64_t seq,
                          std::time_t time);
// BuildManifest in two steps, for an entry made ready before its seq is
// known (the archive does this in the appender's thread):
// FinishManifest(ManifestPrefix(entry, origin, sha), seq, time) ==
// BuildManifest(entry, origin, seq, time). `file_sha256[i]`, when 32 bytes,
// is taken as the SHA-256 of entry.files[i].data (the caller computed it);
// otherwise it is computed. REQUIRES: as BuildManifest.
std::string ManifestPrefix(const EntryInput& entry, std::string_view origin,
                           const std::vector<std::string>& file_sha256 = {});
std::string FinishManifest(std::string prefix, uint64_t seq, std::time_t time);

// Directory of entry `seq` in the tree, without a trailing slash:
// "entries/<hh>/<hh>/<hh>/<seq>" where the three <hh> are (seq >> 24),
// (seq >> 16) & 0xff, (seq >> 8) & 0xff in lower-case hex (the first one
// may be longer than two digits). Each directory therefore holds at most
// 256 children below the top, and an append rewrites five small trees.
std::string EntryDir(uint64_t seq);

// "YYYY-MM-DDTHH:MM:SSZ".
std::string Rfc3339Utc(std::time_t t);

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_ENTRY_H_
