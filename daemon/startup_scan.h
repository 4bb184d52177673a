// One pass over the archive's manifests at start-up (docs/daemon.md
// "Start-up").
//
// Several parts of the daemon keep state derived from the archive's
// manifests: the reference counters and the documents sent (Exchange), the
// Merkle tree's leaves (ArchiveEvidence), the received documents, receipts
// and peers' checkpoints (Inbox), the delivery index (DeliveryWorker) and the
// policy documents (RecoverPolicyUpdate). Each is a ManifestConsumer: state
// that covers entries 1..covered() and is extended one entry at a time, in
// seq order. At start-up sealpostd reads every manifest ONCE and feeds it to
// all of them (FeedManifests); each part then catches up, from its own
// covered(), with the entries appended since (usually none) when it is
// created. A part created without a pre-filled consumer (tests, tools) makes
// its own and reads the whole archive, as before.
//
// Thread-safety: a consumer is used by one thread at a time.
#ifndef SEALPOST_DAEMON_STARTUP_SCAN_H_
#define SEALPOST_DAEMON_STARTUP_SCAN_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "storage/reader.h"

namespace sealpost::daemon {

class ManifestConsumer {
 public:
  virtual ~ManifestConsumer() = default;
  // Entries 1..covered() are in this consumer's state.
  virtual uint64_t covered() const = 0;
  // Adds entry `seq` (== covered() + 1): its manifest.json as committed
  // (`text`, e.g. for its leaf hash) and parsed (`m`, its seq checked).
  // An error stops the pass; the state is then not to be used.
  [[nodiscard]] virtual Status Consume(uint64_t seq, std::string_view text,
                                       const storage::Manifest& m) = 0;
};

struct FeedStats {
  uint64_t first = 0;  // the first entry read (0: none)
  uint64_t last = 0;   // the last entry read
  uint64_t read_ns = 0;     // reading manifests from git
  uint64_t parse_ns = 0;    // parsing them
  uint64_t consume_ns = 0;  // the consumers
};

// Reads the manifests of entries min(covered()) + 1 .. reader.size() once
// each and gives every consumer the entries after its covered(). Errors:
// the reader's (DataError for a hole or a manifest that does not parse or
// names another seq), a consumer's; a consumer covering more than the
// reader's size is FailedPrecondition (state ahead of the archive).
[[nodiscard]] Status FeedManifests(storage::ArchiveReader& reader,
                                   const std::vector<ManifestConsumer*>& consumers,
                                   FeedStats* stats = nullptr);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_STARTUP_SCAN_H_
