// A sent document's bundle made again from the archive alone (docs/daemon.md
// "Bundles"): the bundle file in <state_dir>/bundles is a cache of what the
// archive holds, so it need not be durable by itself. A bundle lost to a
// crash or a power loss (missing, truncated, zeroed) is rebuilt from the
// document-sent entry's files (content, content.p7s, document.json and its
// .p7s, certs.pem, crls.pem) and the archive evidence (manifest, a signed
// checkpoint covering the entry, the inclusion proof in it).
//
// The rebuilt bundle verifies at a recipient exactly as the original does:
// every member is the same bytes except the checkpoint, its signature and
// the inclusion proof, which may be of a later (larger) tree.
//
// A received document's bundle is made the same way from its
// document-received entry, which also holds the sender's evidence as it
// came: every member the same bytes as in the bundle that was delivered.
//
// Memory: libgit2 reads a blob whole, so rebuilding the bundle of a document
// of N bytes holds N bytes in memory for a moment (the content is written to
// a temporary file and packed from there like at submission). A submission
// never rebuilds; only repairs and GETs of received bundles do.
//
// Thread-safety: the functions are reentrant; an ArchiveEvidence is shared
// (it locks itself).
#ifndef SEALPOST_DAEMON_BUNDLE_REBUILD_H_
#define SEALPOST_DAEMON_BUNDLE_REBUILD_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "crypto/bundle.h"
#include "daemon/archive_evidence.h"

namespace sealpost::daemon {

// Builds the bundle of the document-sent or document-received entry `seq`
// of the archive in `archive_dir` at `out_path` (temporary file + rename: a
// reader never sees a partial file). `work_dir` receives the content for a
// moment. A sent document's evidence comes from `evidence` (this archive:
// required); a received one's is the sender's, as archived on receipt
// (sender-manifest.json, sender-checkpoint and its .p7s, the inclusion
// proof), so the bundle is the one that came: every member the same bytes.
// Errors: NotFound (no such entry), FailedPrecondition (another kind of
// entry; a sent one without `evidence`), DataError (the archive's files do
// not make a bundle: e.g. the content does not match document.json), the
// reader's and BuildBundle's errors, each naming the entry.
[[nodiscard]] Status RebuildBundle(const std::string& archive_dir, ArchiveEvidence* evidence,
                                   uint64_t seq, const std::string& out_path,
                                   const std::string& work_dir);

// True when the file at `path` is a complete bundle as far as its container
// goes: the ZIP's central directory and end record read, "mimetype" present,
// and every member's data inflates to its size with its CRC-32 (the whole
// file is read once). A missing file is NotFound; anything else wrong is
// DataError naming the file and the member. It does not check signatures:
// a bundle written by this daemon that is complete is the one it wrote.
[[nodiscard]] Status CheckBundleFile(const std::string& path);

// Puts the archive evidence of entry `seq` into a bundle's parts: the
// manifest as committed, the checkpoint and its signature, and the
// inclusion proof of leaf seq - 1 in that checkpoint's tree (used at
// submission and by RebuildBundle alike).
void SetArchiveEvidence(uint64_t seq, EntryEvidence evidence, crypto::BundleParts* parts);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_BUNDLE_REBUILD_H_
