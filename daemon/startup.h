// sealpostd's start-up pass over the archive (docs/daemon.md "Start-up"):
// every manifest read once and fed to each part that keeps state derived
// from the archive (daemon/startup_scan.h).
#ifndef SEALPOST_DAEMON_STARTUP_H_
#define SEALPOST_DAEMON_STARTUP_H_

#include <memory>
#include <string>

#include "base/status.h"
#include "daemon/archive_evidence.h"
#include "daemon/delivery.h"
#include "daemon/exchange.h"
#include "daemon/inbox.h"
#include "daemon/policy_update.h"
#include "daemon/startup_scan.h"

namespace sealpost::daemon {

struct StartupScans {
  uint64_t entries = 0;    // the archive's size at the pass
  uint64_t open_ns = 0;    // opening the reader (checkpoint signature verified)
  FeedStats feed;          // the pass itself
  PolicyDocumentsScan policy;                     // for RecoverPolicyUpdate
  std::shared_ptr<SentDocumentsScan> sent;        // for Exchange::Create
  std::shared_ptr<LeafHashesScan> leaves;         // for Exchange::Create (evidence)
  std::shared_ptr<ReceivedDocumentsScan> inbox;   // for Inbox::Create
  std::unique_ptr<DeliveryIndex> delivery;        // for DeliveryWorker::SeedIndex
};

// The pass over <archive_dir> (which need not exist: then every scan is
// empty and covers nothing). Errors: the reader's (DataError for a hole or
// a manifest that does not parse), a scan's (e.g. a repeated reference
// number). Logs one line with the time it took.
[[nodiscard]] Result<std::unique_ptr<StartupScans>> ScanArchiveAtStart(
    const std::string& archive_dir, const std::string& union_id);

}  // namespace sealpost::daemon

#endif  // SEALPOST_DAEMON_STARTUP_H_
