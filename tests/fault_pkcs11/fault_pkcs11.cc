// sealpost_fault_pkcs11: a PKCS#11 module that forwards to SoftHSM2 and
// injects faults on demand. Test-only.
//
// Environment (read once, at C_GetFunctionList):
//   SEALPOST_FAULT_TARGET    the real module (default /usr/lib/softhsm/libsofthsm2.so)
//   SEALPOST_FAULT_CONTROL   control file, re-read on every wrapped call
//   SEALPOST_FAULT_COUNTERS  counter file, "C_Function N" lines, updated on
//                            every wrapped call (read-modify-write, so several
//                            processes in turn add to the same counts; a
//                            missing file starts from zero)
// Control file, one key=value a line ('#' comments):
//   fail.C_X=CKR_NAME|0xHEX|DEC  C_X returns that code without calling the real module
//   hang.C_X=SECONDS             C_X sleeps that long first (then proceeds)
//   flags.add=CKF_USER_PIN_FINAL_TRY,CKF_USER_PIN_LOCKED,CKF_USER_PIN_COUNT_LOW
//                                ORed into C_GetTokenInfo's flags
//   removed=1                    the token is pulled out: C_GetSlotList(TRUE)
//                                lists no slot, C_GetSlotInfo clears
//                                CKF_TOKEN_PRESENT, C_GetTokenInfo /
//                                C_OpenSession / C_Login give
//                                CKR_TOKEN_NOT_PRESENT, calls on sessions
//                                give CKR_DEVICE_REMOVED.
#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include <p11-kit/pkcs11.h>

namespace {

CK_FUNCTION_LIST g_real;     // the target's table (copied)
CK_FUNCTION_LIST g_wrapped;  // what we hand out
CK_RV g_load_rv = CKR_GENERAL_ERROR;
std::once_flag g_once;
std::mutex g_counter_mu;

struct Control {
  std::map<std::string, CK_RV> fail;
  std::map<std::string, double> hang;
  CK_FLAGS add_flags = 0;
  bool removed = false;
};

const std::map<std::string, unsigned long>& Names() {
  static const std::map<std::string, unsigned long> names = {
      {"CKR_OK", CKR_OK},
      {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
      {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
      {"CKR_PIN_INCORRECT", CKR_PIN_INCORRECT},
      {"CKR_PIN_LOCKED", CKR_PIN_LOCKED},
      {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
      {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
      {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
      {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
      {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
      {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
      {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
      {"CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED},
      {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
      {"CKF_USER_PIN_COUNT_LOW", CKF_USER_PIN_COUNT_LOW},
      {"CKF_USER_PIN_FINAL_TRY", CKF_USER_PIN_FINAL_TRY},
      {"CKF_USER_PIN_LOCKED", CKF_USER_PIN_LOCKED},
  };
  return names;
}

unsigned long ParseValue(const std::string& v) {
  auto it = Names().find(v);
  if (it != Names().end()) return it->second;
  return std::strtoul(v.c_str(), nullptr, 0);
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  size_t e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

Control ReadControl() {
  Control c;
  const char* path = std::getenv("SEALPOST_FAULT_CONTROL");
  if (path == nullptr) return c;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    if (key.rfind("fail.", 0) == 0) {
      c.fail[key.substr(5)] = ParseValue(value);
    } else if (key.rfind("hang.", 0) == 0) {
      c.hang[key.substr(5)] = std::strtod(value.c_str(), nullptr);
    } else if (key == "flags.add") {
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) c.add_flags |= ParseValue(Trim(item));
    } else if (key == "removed") {
      c.removed = value == "1" || value == "true";
    }
  }
  return c;
}

void Count(const char* fn) {
  const char* path = std::getenv("SEALPOST_FAULT_COUNTERS");
  if (path == nullptr) return;
  std::lock_guard<std::mutex> lock(g_counter_mu);
  std::map<std::string, long> counts;
  {
    std::ifstream in(path);
    std::string name;
    long n;
    while (in >> name >> n) counts[name] = n;
  }
  ++counts[fn];
  std::string tmp = std::string(path) + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [name, n] : counts) out << name << ' ' << n << '\n';
  }
  std::rename(tmp.c_str(), path);
}

// Common prologue of every wrapper: count, hang, injected failure.
// Returns true (and *rv) when the call must not reach the real module.
bool Pre(const char* fn, const Control& c, CK_RV* rv) {
  Count(fn);
  if (auto h = c.hang.find(fn); h != c.hang.end() && h->second > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(h->second));
  }
  if (auto f = c.fail.find(fn); f != c.fail.end()) {
    *rv = f->second;
    return true;
  }
  return false;
}

// Session-level calls: a removed token answers CKR_DEVICE_REMOVED.
#define SESSION_WRAPPER(NAME, PARAMS, ARGS)              \
  CK_RV W_##NAME PARAMS {                                \
    Control c = ReadControl();                           \
    CK_RV rv;                                            \
    if (Pre(#NAME, c, &rv)) return rv;                   \
    if (c.removed) return CKR_DEVICE_REMOVED;            \
    return g_real.NAME ARGS;                             \
  }

// Plain pass-through with counting, hanging and failure injection.
#define PLAIN_WRAPPER(NAME, PARAMS, ARGS)                \
  CK_RV W_##NAME PARAMS {                                \
    Control c = ReadControl();                           \
    CK_RV rv;                                            \
    if (Pre(#NAME, c, &rv)) return rv;                   \
    return g_real.NAME ARGS;                             \
  }

PLAIN_WRAPPER(C_Initialize, (CK_VOID_PTR a), (a))
PLAIN_WRAPPER(C_Finalize, (CK_VOID_PTR a), (a))
PLAIN_WRAPPER(C_CloseAllSessions, (CK_SLOT_ID s), (s))
PLAIN_WRAPPER(C_CloseSession, (CK_SESSION_HANDLE h), (h))
SESSION_WRAPPER(C_Logout, (CK_SESSION_HANDLE h), (h))
SESSION_WRAPPER(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
SESSION_WRAPPER(C_Sign,
                (CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG_PTR sl),
                (h, d, dl, s, sl))
SESSION_WRAPPER(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, t, n))
SESSION_WRAPPER(C_FindObjects,
                (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n),
                (h, o, m, n))
SESSION_WRAPPER(C_GetAttributeValue,
                (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n),
                (h, o, t, n))
SESSION_WRAPPER(C_CreateObject,
                (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
                (h, t, n, o))

CK_RV W_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  Control c = ReadControl();
  CK_RV rv;
  if (Pre("C_Login", c, &rv)) return rv;
  if (c.removed) return CKR_TOKEN_NOT_PRESENT;
  return g_real.C_Login(h, u, pin, len);
}

CK_RV W_C_OpenSession(CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR app, CK_NOTIFY n,
                      CK_SESSION_HANDLE_PTR h) {
  Control c = ReadControl();
  CK_RV rv;
  if (Pre("C_OpenSession", c, &rv)) return rv;
  if (c.removed) return CKR_TOKEN_NOT_PRESENT;
  return g_real.C_OpenSession(s, f, app, n, h);
}

CK_RV W_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  Control c = ReadControl();
  CK_RV rv;
  if (Pre("C_GetSlotList", c, &rv)) return rv;
  if (c.removed && present) {
    *count = 0;
    return CKR_OK;
  }
  return g_real.C_GetSlotList(present, list, count);
}

CK_RV W_C_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR info) {
  Control c = ReadControl();
  CK_RV rv;
  if (Pre("C_GetSlotInfo", c, &rv)) return rv;
  rv = g_real.C_GetSlotInfo(s, info);
  if (rv == CKR_OK && c.removed) info->flags &= ~static_cast<CK_FLAGS>(CKF_TOKEN_PRESENT);
  return rv;
}

CK_RV W_C_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR info) {
  Control c = ReadControl();
  CK_RV rv;
  if (Pre("C_GetTokenInfo", c, &rv)) return rv;
  if (c.removed) return CKR_TOKEN_NOT_PRESENT;
  rv = g_real.C_GetTokenInfo(s, info);
  if (rv == CKR_OK) info->flags |= c.add_flags;
  return rv;
}

void Load() {
  const char* target = std::getenv("SEALPOST_FAULT_TARGET");
  if (target == nullptr || *target == '\0') target = "/usr/lib/softhsm/libsofthsm2.so";
  void* h = dlopen(target, RTLD_NOW | RTLD_LOCAL);  // kept loaded for the process
  if (h == nullptr) {
    std::fprintf(stderr, "fault_pkcs11: cannot load %s: %s\n", target, dlerror());
    return;
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(h, "C_GetFunctionList"));
  if (get == nullptr) return;
  CK_FUNCTION_LIST_PTR real = nullptr;
  g_load_rv = get(&real);
  if (g_load_rv != CKR_OK || real == nullptr) return;
  g_real = *real;
  g_wrapped = *real;
#define WRAP(NAME) g_wrapped.NAME = W_##NAME
  WRAP(C_Initialize);
  WRAP(C_Finalize);
  WRAP(C_GetSlotList);
  WRAP(C_GetSlotInfo);
  WRAP(C_GetTokenInfo);
  WRAP(C_OpenSession);
  WRAP(C_CloseSession);
  WRAP(C_CloseAllSessions);
  WRAP(C_Login);
  WRAP(C_Logout);
  WRAP(C_SignInit);
  WRAP(C_Sign);
  WRAP(C_FindObjectsInit);
  WRAP(C_FindObjects);
  WRAP(C_GetAttributeValue);
  WRAP(C_CreateObject);
#undef WRAP
}

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  std::call_once(g_once, Load);
  if (g_load_rv != CKR_OK) return g_load_rv;
  *list = &g_wrapped;
  return CKR_OK;
}
