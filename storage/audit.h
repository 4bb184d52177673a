// `sealpost audit`: an offline check of a whole archive (a bare repository
// or any clone of it) that reads and never writes. What is checked, and the
// reason codes reported, are in docs/audit.md; in short:
//  - the first-parent history of the audited branch is linear; every commit
//    carries a gpgsig that is a detached CMS over the commit buffer made by
//    the seal in force for that commit (the seal.pem of the latest
//    key-change entry in that commit or before it), whose certificate
//    chains to the trust anchors at the commit's time; the root seal.pem
//    is that certificate; FORMAT is known;
//  - each commit adds exactly the entries previous size + 1 .. new size and
//    leaves every earlier entry directory untouched (tree ids compared);
//  - each entry's manifest is canonical, names the archive's origin and its
//    own seq, lists exactly the entry's files with their SHA-256 and size;
//    content_sha256/content_size fields match `content`; every X.p7s is a
//    detached CMS over X that verifies at the entry's archiving time with
//    the entry's certs.pem/crls.pem as evidence and the anchors as trust;
//  - every commit's log/checkpoint names the origin, has the size and the
//    Merkle root of the entries so far (a CompactRange kept while walking),
//    is signed by the seal; log/frontier matches;
//  - with a trusted checkpoint: the history holds the same root at that
//    size (else "history rewritten" or "history truncated"), and entries up
//    to its size are only hashed into the Merkle tree (incremental audit).
//
// Thread-safety: Audit() is reentrant (no shared state). With jobs > 1 it
// forks worker processes for the entry checks; call it from a process that
// has no other threads running libgit2 or OpenSSL work at that moment.
#ifndef SEALPOST_STORAGE_AUDIT_H_
#define SEALPOST_STORAGE_AUDIT_H_

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/lang.h"
#include "base/status.h"
#include "crypto/checkpoint.h"

namespace sealpost::storage {

// How bad a problem is: kFailed (tampering, a signature that does not
// verify) or kIndeterminate (evidence missing, e.g. no CRL at hand).
enum class Severity { kFailed, kIndeterminate };

// One finding. `code` is a stable, language-neutral reason code (the list is
// in docs/audit.md and AuditProblemSentence); `seq` is the entry it is
// about (0: none), `commit` the hex id of the commit (may be empty),
// `detail` technical, language-neutral text (file name, OpenSSL error).
struct AuditProblem {
  std::string code;
  Severity severity = Severity::kFailed;
  uint64_t seq = 0;
  std::string commit;
  std::string detail;
};

// A checkpoint the auditor trusts from an earlier audit (or got from a
// peer): its body and, when available, its CMS signature by the seal.
struct TrustedCheckpoint {
  std::string body;
  std::string signature_der;  // empty: not checked (the auditor vouches)
  std::string source;         // file name, for messages
};

struct AuditOptions {
  // PEM/DER files of trust anchors (at least one).
  std::vector<std::string> trust_files;
  std::optional<TrustedCheckpoint> trusted;
  // Worker processes for the entry checks (1: all in this process).
  int jobs = 1;
  // Called from this process now and then with (entries done, entries to
  // check) — for a progress bar. May be empty.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct AuditReport {
  std::string ref;     // the audited branch, e.g. "refs/heads/main"
  std::string head;    // its commit (hex)
  std::string origin;  // the log's name from the checkpoints
  uint64_t commits = 0;
  uint64_t entries = 0;
  uint64_t entries_checked = 0;     // fully checked (not skipped by a trusted checkpoint)
  uint64_t signatures_checked = 0;  // entry .p7s files verified
  uint64_t trusted_size = 0;        // size of the trusted checkpoint (0: none)
  double entry_check_seconds = 0;   // wall time of the entry checks
  // The commit a refs/heads/main.lock names (hex), when there is one and it
  // is not the head: a write in progress, or, after a crash, appends the
  // archive acknowledged and rolls forward when the appliance next opens it
  // (decision 0005, "Durability"). Not a problem: the audit (which changes
  // nothing) checks the head, the last commit on the branch.
  std::string pending_commit;
  std::vector<AuditProblem> problems;

  // 0 clean, 1 a problem (any kFailed), 2 only indeterminate problems.
  int ExitCode() const;
};

// Audits the archive at `dir`. Errors (not problems): NotFound when `dir`
// does not exist or a trust file cannot be read, DataError when it is not a
// git repository / not a sealpost archive (no FORMAT, no branch) / an
// object cannot be read (a corrupt pack or loose object), InvalidArgument
// for bad options. Everything else is reported in AuditReport::problems.
Result<AuditReport> Audit(const std::string& dir, const AuditOptions& options);

// A trusted checkpoint as `sealpost archive checkpoint DIR -o FILE` writes
// it: FILE holds the body, FILE.p7s (`signature`, DER or PEM; optional) its
// CMS signature. FILE may also carry the armored signature after the body
// ("-----BEGIN CMS-----" / "SIGNED MESSAGE" block).
// DataError naming `source` if the body does not parse.
Result<TrustedCheckpoint> ParseTrustedCheckpoint(std::string_view data,
                                                 std::optional<std::string_view> signature,
                                                 std::string_view source);

// One sentence for a problem, in `lang` (the code stays in --json).
std::string AuditProblemSentence(const AuditProblem& p, Lang lang);
// The whole report as one JSON object with a trailing newline (language-neutral).
std::string AuditReportToJson(const AuditReport& r);
// The report as text, one line a problem, then a summary, in `lang`.
std::string AuditReportToText(const AuditReport& r, Lang lang);

}  // namespace sealpost::storage

#endif  // SEALPOST_STORAGE_AUDIT_H_
