// Internal to pkcs11/: one libp11 context per module per process, driven by
// one thread whose every operation is bounded in time. Not for other folders.
#ifndef SEALPOST_PKCS11_SESSION_H_
#define SEALPOST_PKCS11_SESSION_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <libp11.h>
#include <p11-kit/pkcs11.h>

#include "base/lang.h"
#include "base/openssl.h"
#include "base/status.h"

namespace sealpost::pkcs11::internal {

// Runs closures on one thread, one at a time. Run() waits at most `timeout`;
// a closure still running then is abandoned: Run() returns kUnavailable and
// the thread is marked hung, so every later Run() fails at once (a thread in
// a hung C call can neither be joined nor interrupted). Closures must own
// everything they touch (capture shared_ptrs and copies, never references to
// the caller's stack).
// Thread-safety: Run() may be called from any thread; calls are serialised.
class CallThread {
 public:
  CallThread();
  ~CallThread();  // joins, unless hung (then detaches)
  CallThread(const CallThread&) = delete;
  CallThread& operator=(const CallThread&) = delete;

  template <typename T>
  Result<T> Run(const std::string& op, std::chrono::milliseconds timeout, Lang lang,
                std::function<Result<T>()> fn) {
    if (Status s = CheckNotHung(lang); !s.ok()) return Err(s);
    auto promise = std::make_shared<std::promise<Result<T>>>();
    std::future<Result<T>> fut = promise->get_future();
    auto holder = std::make_shared<std::function<Result<T>()>>(std::move(fn));
    Post([promise, holder] {
      Result<T> r = (*holder)();
      // Drop the closure's references (the token state, the module) before
      // the caller wakes up: the last owner must be the caller's thread, so
      // the libp11 teardown never races with the caller returning (and the
      // process exiting).
      *holder = nullptr;
      promise->set_value(std::move(r));
    });
    if (fut.wait_for(timeout) != std::future_status::ready) return Err(MarkHung(op, timeout, lang));
    return fut.get();
  }

  bool hung() const;

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
  };
  void Post(std::function<void()> fn);
  Status CheckNotHung(Lang lang) const;
  Status MarkHung(const std::string& op, std::chrono::milliseconds timeout, Lang lang);

  std::shared_ptr<Queue> queue_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::optional<std::string> hung_op_;
};

// A token selected inside a module: identity used for login bookkeeping.
struct SlotRef {
  PKCS11_SLOT* slot = nullptr;
  unsigned long slot_id = 0;
  std::string label;
  std::string serial;
  std::string key() const { return label + "\x1f" + serial; }
};

// One loaded module: the libp11 context, its slot list and the module's own
// function list (for fresh C_GetTokenInfo). Every member below `thread` is
// touched only on `thread`. Created and shared through Acquire().
class ModuleSession : public std::enable_shared_from_this<ModuleSession> {
 public:
  // The process-wide session for the module at `real_path` (already
  // allowlisted by the caller). Unavailable if an earlier call into that
  // module hung: it can never be used again in this process.
  static Result<std::shared_ptr<ModuleSession>> Acquire(const std::string& real_path, Lang lang);
  ~ModuleSession();
  ModuleSession(const ModuleSession&) = delete;
  ModuleSession& operator=(const ModuleSession&) = delete;

  const std::string& path() const { return path_; }
  CallThread& thread() { return thread_; }

  // ---- On thread() only. ----
  // Loads the module and enumerates slots if needed, rebuilding everything
  // (keys, slots, context) when a previous call found the token gone.
  Status EnsureLoaded(Lang lang);
  // Marks the context for a full rebuild before the next operation.
  void MarkStale() { stale_ = true; }
  PKCS11_CTX* ctx() const { return ctx_; }
  std::vector<PKCS11_SLOT*> Slots() const;
  // Fresh CK_TOKEN_INFO straight from the module (libp11's copy is a snapshot).
  CK_RV FreshTokenInfo(unsigned long slot_id, CK_TOKEN_INFO* info) const;
  std::set<std::string>& logged_in() { return logged_in_; }
  // libp11 EVP_PKEYs, freed before the context is torn down.
  std::map<std::string, EvpPkeyPtr>& key_cache() { return key_cache_; }
  // Signing keys already looked up (Token::Sign): key URI -> an EVP_PKEY
  // owned by key_cache(), and when it was looked up. Emptied with the
  // context (a rebuild after removal, re-insertion or a lost session).
  struct ResolvedKey {
    EVP_PKEY* pkey = nullptr;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, ResolvedKey>& resolved_keys() { return resolved_keys_; }
  unsigned long generation() const { return generation_; }

 private:
  explicit ModuleSession(std::string real_path) : path_(std::move(real_path)) {}
  void TearDown();

  const std::string path_;
  // Declared before the libp11 state: destroyed after it (the destructor
  // tears libp11 down on the thread, then the thread is joined).
  CallThread thread_;
  PKCS11_CTX* ctx_ = nullptr;
  PKCS11_SLOT* slots_ = nullptr;
  unsigned int nslots_ = 0;
  CK_FUNCTION_LIST* functions_ = nullptr;
  bool stale_ = false;
  unsigned long generation_ = 0;
  std::set<std::string> logged_in_;
  std::map<std::string, EvpPkeyPtr> key_cache_;
  std::map<std::string, ResolvedKey> resolved_keys_;  // points into key_cache_
};

// The CKR_* code a libp11 call left on this thread's OpenSSL error queue (0 if
// none); `text` receives the whole queue as one line. Clears the queue.
unsigned long TakeCkr(std::string* text);
std::string CkrName(unsigned long rv);
// CKR codes after which libp11 0.4.12 recovers only by a full rebuild.
bool NeedsRebuild(unsigned long rv);

// True once any token call in this process was abandoned as hung.
bool AnyCallAbandoned();

}  // namespace sealpost::pkcs11::internal

#endif  // SEALPOST_PKCS11_SESSION_H_
