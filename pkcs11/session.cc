#include "pkcs11/session.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdio>

#include <openssl/err.h>

namespace sealpost::pkcs11::internal {
namespace {

std::atomic<bool> g_abandoned{false};

std::mutex& RegistryMu() {
  static std::mutex* mu = new std::mutex;  // never destroyed: used until exit
  return *mu;
}
std::map<std::string, std::weak_ptr<ModuleSession>>& Registry() {
  static auto* r = new std::map<std::string, std::weak_ptr<ModuleSession>>;
  return *r;
}

std::string Seconds(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------- CallThread

CallThread::CallThread() : queue_(std::make_shared<Queue>()) {
  thread_ = std::thread([q = queue_] {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(q->mu);
        q->cv.wait(lock, [&] { return q->stop || !q->tasks.empty(); });
        if (q->tasks.empty()) return;  // stop requested and nothing left
        task = std::move(q->tasks.front());
        q->tasks.pop_front();
      }
      task();
    }
  });
}

CallThread::~CallThread() {
  {
    std::lock_guard<std::mutex> lock(queue_->mu);
    queue_->stop = true;
  }
  queue_->cv.notify_all();
  // A hung thread cannot be joined; the last owner may also be the thread
  // itself (a closure dropping the final reference).
  if (hung() || std::this_thread::get_id() == thread_.get_id()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void CallThread::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(queue_->mu);
    queue_->tasks.push_back(std::move(fn));
  }
  queue_->cv.notify_one();
}

bool CallThread::hung() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hung_op_.has_value();
}

Status CallThread::CheckNotHung(Lang lang) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!hung_op_) return Status::Ok();
  return Status::Unavailable(
      std::string(Tr(lang, "token unavailable: an earlier call (", "token không phản hồi: lệnh trước (")) +
      *hung_op_ +
      std::string(Tr(lang, ") still has not returned", ") vẫn chưa trả lời")));
}

Status CallThread::MarkHung(const std::string& op, std::chrono::milliseconds timeout, Lang lang) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    hung_op_ = op;
  }
  g_abandoned = true;
  return Status::Unavailable(
      std::string(Tr(lang, "token unavailable: ", "token không phản hồi: ")) + op +
      std::string(Tr(lang, " did not answer within ", " không trả lời trong ")) + Seconds(timeout) +
      " s");
}

bool AnyCallAbandoned() { return g_abandoned.load(); }

// ------------------------------------------------------------- ModuleSession

Result<std::shared_ptr<ModuleSession>> ModuleSession::Acquire(const std::string& real_path,
                                                              Lang lang) {
  std::lock_guard<std::mutex> lock(RegistryMu());
  auto& slot = Registry()[real_path];
  if (auto existing = slot.lock()) {
    if (existing->thread_.hung()) {
      return Err(Status::Unavailable(
          std::string(Tr(lang, "token unavailable: module ", "token không phản hồi: mô-đun ")) +
          real_path +
          std::string(Tr(lang, " has a call that never returned; restart the process",
                         " có lệnh không bao giờ trả lời; hãy khởi động lại tiến trình"))));
    }
    return existing;
  }
  std::shared_ptr<ModuleSession> s(new ModuleSession(real_path));
  slot = s;
  return s;
}

ModuleSession::~ModuleSession() {
  // Never reached while a hung call runs: that closure holds a reference.
  // No closure is queued either (each holds a reference), so the libp11
  // state can be torn down from whichever thread dropped the last reference.
  TearDown();
}

void ModuleSession::TearDown() {
  // Order matters (LIBRARY-NOTES): EVP_PKEYs first, then slots, then the context.
  resolved_keys_.clear();
  key_cache_.clear();
  logged_in_.clear();
  if (slots_ != nullptr) {
    PKCS11_release_all_slots(ctx_, slots_, nslots_);
    slots_ = nullptr;
    nslots_ = 0;
  }
  if (ctx_ != nullptr) {
    PKCS11_CTX_unload(ctx_);
    PKCS11_CTX_free(ctx_);
    ctx_ = nullptr;
  }
  ClearOpenSslErrors();
}

Status ModuleSession::EnsureLoaded(Lang lang) {
  if (ctx_ != nullptr && !stale_) return Status::Ok();
  TearDown();
  stale_ = false;
  ctx_ = PKCS11_CTX_new();
  if (ctx_ == nullptr) return OpenSslStatus(Code::kInternal, "PKCS11_CTX_new");
  if (PKCS11_CTX_load(ctx_, path_.c_str()) != 0) {
    std::string text;
    TakeCkr(&text);
    PKCS11_CTX_free(ctx_);
    ctx_ = nullptr;
    return Status::Unavailable(
        std::string(Tr(lang, "cannot load PKCS#11 module ", "không nạp được mô-đun PKCS#11 ")) +
        path_ + (text.empty() ? "" : ": " + text));
  }
  if (functions_ == nullptr) {
    // Same file as libp11 loaded: dlopen hands back the same, already
    // initialised module. Kept open for the life of the process.
    void* h = ::dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h == nullptr) h = ::dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    auto get = h ? reinterpret_cast<CK_C_GetFunctionList>(::dlsym(h, "C_GetFunctionList")) : nullptr;
    if (get == nullptr || get(&functions_) != CKR_OK || functions_ == nullptr) {
      functions_ = nullptr;
      return Status::Unavailable("PKCS#11 module " + path_ + ": no usable C_GetFunctionList");
    }
  }
  if (PKCS11_enumerate_slots(ctx_, &slots_, &nslots_) != 0) {
    std::string text;
    unsigned long rv = TakeCkr(&text);
    slots_ = nullptr;
    nslots_ = 0;
    // libp11 0.4.12 fails on a module with no slot at all (OpenSC without a
    // reader): that is an empty list, not an error.
    CK_ULONG count = 1;
    if (rv == 0 && functions_->C_GetSlotList(CK_FALSE, nullptr, &count) == CKR_OK && count == 0) {
      ++generation_;
      return Status::Ok();
    }
    stale_ = true;
    return Status::Unavailable(
        std::string(Tr(lang, "token unavailable: listing slots of ", "token không phản hồi: liệt kê khe của ")) +
        path_ + " failed" + (rv ? " (" + CkrName(rv) + ")" : "") + (text.empty() ? "" : ": " + text));
  }
  ++generation_;
  return Status::Ok();
}

std::vector<PKCS11_SLOT*> ModuleSession::Slots() const {
  std::vector<PKCS11_SLOT*> out;
  for (unsigned int i = 0; i < nslots_; ++i) out.push_back(&slots_[i]);
  return out;
}

CK_RV ModuleSession::FreshTokenInfo(unsigned long slot_id, CK_TOKEN_INFO* info) const {
  if (functions_ == nullptr || functions_->C_GetTokenInfo == nullptr) return CKR_GENERAL_ERROR;
  return functions_->C_GetTokenInfo(slot_id, info);
}

// ------------------------------------------------------------------ errors

unsigned long TakeCkr(std::string* text) {
  unsigned long ckr = 0;
  std::string line;
  const int ckr_lib = ERR_LIB_PKCS11;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    if (ERR_GET_LIB(e) == ckr_lib && ckr == 0) ckr = ERR_GET_REASON(e);
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!line.empty()) line += "; ";
    line += buf;
  }
  if (text) *text = line;
  return ckr;
}

std::string CkrName(unsigned long rv) {
  static const std::map<unsigned long, const char*> names = {
      {CKR_OK, "CKR_OK"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
      {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
      {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
      {CKR_PIN_INVALID, "CKR_PIN_INVALID"},
      {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
      {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
      {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
      {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
      {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
      {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
      {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
      {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
      {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
      {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
      {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
  };
  if (auto it = names.find(rv); it != names.end()) return it->second;
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKR 0x%lx", rv);
  return buf;
}

bool NeedsRebuild(unsigned long rv) {
  switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_ERROR:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return true;
    default:
      return false;
  }
}

}  // namespace sealpost::pkcs11::internal
