// The bundle: the sealed document as it travels between unions and as a
// user downloads it. An ASiC-S container (ETSI EN 319 162-1, CAdES form),
// see docs/bundle.md and docs/decisions/0007-bundle-container.md:
//
//   mimetype                              "application/vnd.etsi.asic-s+zip",
//                                         first, STORED, no extra field
//   document[.ext]                        the content (the one data object;
//                                         its original UTF-8 name is in
//                                         document.json)
//   META-INF/signature.p7s                detached CAdES over the content:
//                                         officers and the union seal, one
//                                         SignedData (archive file content.p7s)
//   META-INF/sealpost/document.json       canonical JSON describing the document
//   META-INF/sealpost/document.json.p7s   detached CAdES by the seal over it
//   META-INF/sealpost/certs.pem           certificates to verify the signatures
//   META-INF/sealpost/crls.pem            CRLs used (absent when none)
//   META-INF/sealpost/archive-manifest.json  the sender's archive entry
//                                         manifest (storage::BuildManifest: the
//                                         Merkle leaf), listing the sha256 of
//                                         every file above by its archive name
//   META-INF/sealpost/checkpoint          the sender's checkpoint body (C2SP)
//   META-INF/sealpost/checkpoint.p7s      detached CMS by the seal over it
//   META-INF/sealpost/inclusion-proof.json  the leaf's inclusion proof in it
//
// Stock tools: `unzip` extracts it; `openssl cms -verify -binary -inform DER
// -in META-INF/signature.p7s -content document.pdf -CAfile ca.pem -purpose
// any` checks the content signature (and likewise document.json).
//
// Three steps, each with its own kind of failure:
//  - BuildBundle(): writes a bundle from parts, streaming the content from a
//    file (constant memory);
//  - ReadBundle(): the container and the formats (bounded ZIP reader, the
//    exact member set, strict JSON/checkpoint parsers); the content is
//    extracted to a file and digested on the way. Errors are DataError;
//  - VerifyBundle(): the cryptographic checks, as a report with reasons.
// Policy decisions (may this union send this type, were the required
// officers present) are not made here: policies/ decides, the daemon
// combines.
//
// Thread-safety: functions are reentrant; a ParsedBundle is a value owned by
// one thread at a time.
#ifndef SEALPOST_CRYPTO_BUNDLE_H_
#define SEALPOST_CRYPTO_BUNDLE_H_

#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/lang.h"
#include "base/openssl.h"
#include "base/status.h"
#include "base/zip.h"
#include "crypto/checkpoint.h"
#include "crypto/merkle.h"
#include "crypto/path.h"
#include "crypto/report.h"

namespace sealpost::crypto {

inline constexpr std::string_view kBundleMimetype = "application/vnd.etsi.asic-s+zip";
inline constexpr std::string_view kBundleMimetypeMember = "mimetype";
inline constexpr std::string_view kBundleSignatureMember = "META-INF/signature.p7s";
inline constexpr std::string_view kBundleDocumentMember = "META-INF/sealpost/document.json";
inline constexpr std::string_view kBundleDocumentSealMember = "META-INF/sealpost/document.json.p7s";
inline constexpr std::string_view kBundleCertsMember = "META-INF/sealpost/certs.pem";
inline constexpr std::string_view kBundleCrlsMember = "META-INF/sealpost/crls.pem";
inline constexpr std::string_view kBundleManifestMember = "META-INF/sealpost/archive-manifest.json";
inline constexpr std::string_view kBundleCheckpointMember = "META-INF/sealpost/checkpoint";
inline constexpr std::string_view kBundleCheckpointSigMember = "META-INF/sealpost/checkpoint.p7s";
inline constexpr std::string_view kBundleProofMember = "META-INF/sealpost/inclusion-proof.json";

// What document.json says. Serialized as canonical JSON (keys sorted, no
// white space; strings, one integer, arrays of strings):
//   {"content_media_type":..,"content_name":..,"content_sha256":..,
//    "content_size":N,"format":1,"id":..,"issued_at":..,"issuer":..,
//    "policy_sha256":..,"recipients":[..],"reference":..,"revokes":[..],
//    "subject":..,"supersedes":[..],"type":..}
// The string fields carry the names of the archive entry fields of
// conventions.md, so the archive manifest's fields can be compared.
struct DocumentInfo {
  std::string id;                  // non-empty
  std::string type;                // non-empty
  std::string reference;           // may be empty
  std::string subject;
  std::string issuer;              // union id of the sender, non-empty
  std::vector<std::string> recipients;  // union ids, at least one, no ','
  std::string issued_at;           // RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ"
  std::string content_name;        // the original UTF-8 file name, non-empty
  std::string content_media_type;  // e.g. "application/pdf"
  uint64_t content_size = 0;
  std::string content_sha256;      // 64 lower-case hex digits
  std::vector<std::string> supersedes;  // document ids
  std::vector<std::string> revokes;     // document ids
  std::string policy_sha256;       // 64 lower-case hex digits, or empty

  friend bool operator==(const DocumentInfo&, const DocumentInfo&) = default;
};

// The canonical bytes. InvalidArgument naming the field if a value is out of
// range: empty where required, not one line of clean UTF-8 (base/utf8.h
// IsCleanUtf8Text), longer than 4 KiB (255 bytes for content_name), a
// recipient with ',', a malformed hash or time.
Result<std::string> SerializeDocumentJson(const DocumentInfo& doc);
// Strict parse: exactly the keys above, the right types, and the input must
// be the canonical serialization of what it says. DataError naming `source`.
Result<DocumentInfo> ParseDocumentJson(std::string_view json, std::string_view source);

// The name of the content member: "document" plus the original name's
// extension when it is 1..10 ASCII letters/digits (lower-cased), e.g.
// "Báo cáo quý 3.PDF" -> "document.pdf", "notes" -> "document".
std::string BundleContentName(std::string_view original_name);

// The inclusion proof of the entry's leaf, as
//   {"hashes":["<hex>",...],"leaf_index":N,"tree_size":N}
struct InclusionProof {
  uint64_t leaf_index = 0;
  uint64_t tree_size = 0;
  std::vector<merkle::Hash> hashes;
};
std::string SerializeInclusionProof(const InclusionProof& proof);
// DataError naming `source` (at most 64 hashes; leaf_index < tree_size).
Result<InclusionProof> ParseInclusionProof(std::string_view json, std::string_view source);

// The archive entry manifest, as far as a bundle needs it (storage/entry.h
// BuildManifest writes it; crypto/ cannot include storage/, so it is parsed
// here from its documented form).
struct ArchiveManifest {
  struct File {
    std::string name;
    std::string sha256;  // lower-case hex
    uint64_t size = 0;
  };
  std::map<std::string, std::string> fields;
  std::vector<File> files;
  uint64_t format = 0;
  std::string kind;
  std::string origin;
  uint64_t refers_to = 0;
  uint64_t seq = 0;
  std::string time;
};
// DataError naming `source` if it is not such a manifest (strict JSON,
// exactly the keys of storage::BuildManifest, seq >= 1).
Result<ArchiveManifest> ParseArchiveManifest(std::string_view json, std::string_view source);

// Everything BuildBundle packs. Strings are the exact bytes of each member.
struct BundleParts {
  std::string content_path;       // the spooled content file (read once, streamed)
  std::string document_json;      // SerializeDocumentJson output
  std::string document_json_p7s;  // DER
  std::string content_p7s;        // DER
  std::string certs_pem;          // non-empty
  std::string crls_pem;           // empty: the member is left out
  std::string archive_manifest;
  std::string checkpoint;         // body
  std::string checkpoint_p7s;     // DER
  InclusionProof proof;
};

// Writes the bundle to `out_path` (atomically: a temporary file renamed into
// place; nothing is left behind on error). Checks on the way that the
// content file has the size and SHA-256 document.json declares (one pass
// over the content, which is also the pass that packs it). Errors:
// InvalidArgument (a part does not parse, content does not match
// document.json, certs_pem empty), NotFound (content unreadable), IoError.
// `sync` false: the file and its directory are not synced (ZipWriter::set_sync;
// the daemon's bundles, rebuilt from the archive when lost).
Status BuildBundle(const BundleParts& parts, const std::string& out_path,
                   std::optional<std::time_t> mtime = std::nullopt, bool sync = true);

// The same bundle (byte for byte, for the same parts and `mtime`) made in
// memory (ZipWriter::CreateInMemory): nothing is written to the file system.
// The whole bundle is held, so callers use it for small documents only (the
// daemon: docs/decisions/0014-small-bundles-in-memory.md). Errors as
// BuildBundle's, without IoError.
Result<std::string> BuildBundleInMemory(const BundleParts& parts,
                                        std::optional<std::time_t> mtime = std::nullopt);

struct BundleLimits {
  ZipLimits zip;                          // defaults: 64 members, 4 GiB, ...
  uint64_t max_content_bytes = 1ull << 30;
  uint64_t max_metadata_bytes = 32u << 20;  // each META-INF member (CRLs can be large)
};

// A bundle read and checked for form; the content extracted to a file that
// the ParsedBundle owns (removed on destruction unless released).
class ParsedBundle {
 public:
  ParsedBundle(ParsedBundle&& other) noexcept;
  ParsedBundle& operator=(ParsedBundle&& other) noexcept;
  ParsedBundle(const ParsedBundle&) = delete;
  ParsedBundle& operator=(const ParsedBundle&) = delete;
  ~ParsedBundle();

  // The extracted content (a file in ReadBundle's work_dir, mode 0600).
  const std::string& content_path() const { return content_path_; }
  // Hands the content file to the caller: it is no longer removed.
  std::string ReleaseContent();

  std::string content_member;   // its name in the zip
  uint64_t content_size = 0;    // as extracted
  std::string content_sha256;   // lower-case hex, as extracted
  std::string document_json;
  DocumentInfo document;
  std::string document_json_p7s;
  std::string content_p7s;
  std::string certs_pem;
  std::string crls_pem;         // empty when the bundle has none
  std::string archive_manifest;
  ArchiveManifest manifest;
  std::string checkpoint_body;
  Checkpoint checkpoint;
  std::string checkpoint_p7s;
  InclusionProof proof;

 private:
  friend Result<ParsedBundle> ReadBundle(const std::string&, const std::string&,
                                         const BundleLimits&);
  ParsedBundle() = default;
  std::string content_path_;
};

// Reads and checks the form of the bundle at `path`: the ZIP (base/zip.h
// limits), "mimetype" first and STORED without extra field with the ASiC-S
// media type, exactly one data object at the root, exactly the META-INF
// members above (crls.pem optional, nothing else), each within its limit;
// document.json, the archive manifest, the checkpoint and the proof parse;
// certs.pem (and crls.pem) hold certificates (CRLs). The content is
// extracted into `work_dir` (which must exist). Errors: NotFound (path),
// DataError naming the bundle and what is wrong, IoError (work_dir).
// On error no file is left in work_dir.
Result<ParsedBundle> ReadBundle(const std::string& path, const std::string& work_dir,
                                const BundleLimits& limits = {});

// ---------------------------------------------------------------------------
// Verification

// What each finding is about.
enum class BundleCheck {
  kDocumentSeal,         // document.json.p7s: one signer, the seal, valid
  kContentSignature,     // signature.p7s over the content, every signer
  kContentSealed,        // the seal is one of the content's signers
  kContentDigest,        // content size and SHA-256 as document.json says
  kArchiveEntry,         // the archive manifest lists exactly these files and fields
  kCheckpointSignature,  // checkpoint.p7s by the same seal certificate
  kInclusion,            // the manifest's leaf is in the checkpoint's tree
  kOrigin,               // manifest origin == checkpoint origin (== expected)
};

enum class BundleReason {
  kNone,
  kSignatureFailed,         // a signature report did not pass (see its report)
  kSealNotSingleSigner,     // document.json.p7s has other than one signer
  kSealUnknown,             // the seal's certificate could not be found
  kContentNotSealed,        // no SignerInfo of signature.p7s is by the seal
  kContentSizeMismatch,
  kContentHashMismatch,
  kEntryKindWrong,          // not a "document-sent" entry
  kEntryFileMissing,        // a bundle member is not listed, or a listed file not carried
  kEntryFileMismatch,       // listed with another sha256/size
  kEntryFieldMismatch,      // a manifest field differs from document.json
  kCheckpointSignatureInvalid,
  kTreeSizeMismatch,        // proof tree size != checkpoint size
  kLeafIndexMismatch,       // proof leaf index != manifest seq - 1
  kInclusionProofInvalid,
  kOriginMismatch,          // manifest origin != checkpoint origin
  kUnexpectedOrigin,        // != the origin the caller expected
};

std::string_view BundleCheckName(BundleCheck c);    // "document-seal", ...
std::string_view BundleReasonName(BundleReason r);  // "content-hash-mismatch", ...
std::string BundleReasonText(BundleReason r, Lang lang);

struct BundleFinding {
  BundleCheck check = BundleCheck::kDocumentSeal;
  Indication indication = Indication::kPassed;
  SubIndication sub_indication = SubIndication::kNone;
  BundleReason reason = BundleReason::kNone;
  std::string detail;  // language-neutral (member names, hashes, sizes)
};

struct BundleReport {
  Indication indication = Indication::kPassed;
  SubIndication sub_indication = SubIndication::kNone;
  std::vector<BundleFinding> findings;  // one per BundleCheck, in enum order
  Report document_seal;                 // document.json.p7s
  Report content;                       // signature.p7s over the content
  std::string origin;                   // the sender's log
  uint64_t seq = 0;                     // the entry in it
  uint64_t tree_size = 0;               // of the checkpoint
  std::string root_hex;

  // The first finding that did not pass, or null.
  const BundleFinding* FirstProblem() const;
};

struct BundleVerifyOptions {
  // Trust anchors (borrowed for the call; at least one).
  STACK_OF(X509)* anchors = nullptr;
  // CRLs besides those the bundle carries (borrowed; may be null).
  STACK_OF(X509_CRL)* crls = nullptr;
  TrustOptions trust;
  std::optional<std::time_t> at;  // validation time; default now
  // When set, the checkpoint origin must be this (the peer's registered log).
  std::optional<std::string> expected_origin;
};

// Runs every check and reports; the overall indication is the worst of the
// findings and of both signature reports. Errors (not reports):
// InvalidArgument if no anchor is given; DataError if a signature file is
// not a detached CMS SignedData at all.
Result<BundleReport> VerifyBundle(const ParsedBundle& bundle, const BundleVerifyOptions& options);

// Multi-line human report in `lang`; one JSON object (language-neutral, with
// a trailing newline):
// {"indication","subIndication","origin","seq","treeSize","root",
//  "findings":[{"check","indication","subIndication","reason","detail"}],
//  "documentSeal":{...ReportToJson...},"content":{...}}
std::string BundleReportToText(const BundleReport& report, Lang lang);
std::string BundleReportToJson(const BundleReport& report);

}  // namespace sealpost::crypto

#endif  // SEALPOST_CRYPTO_BUNDLE_H_
