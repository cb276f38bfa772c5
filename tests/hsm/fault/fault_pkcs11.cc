// tests/hsm/fault/fault_pkcs11.cc: a PKCS#11 module for tests that forwards every call to a real
// module (SoftHSM) and makes chosen calls fail, so that recovery code meets real failures.
//
// Environment, read by each C_Initialize:
//   SIGNET_FAULT_TARGET      the real module; default /usr/lib/softhsm/libsofthsm2.so. It is
//                            dlopen'ed by the first C_Initialize and never closed, so later
//                            changes of this variable are ignored.
//   SIGNET_FAULT_RULES       fault rules (below); unset or empty: no faults.
//   SIGNET_FAULT_RULES_FILE  a file holding the rules instead (setting both is an error). It is
//                            stat'ed on every call and re-read when its inode, size or mtime
//                            changes, and all call counters restart from 0. A missing file means
//                            no rules. Replace it atomically (write a temporary file, rename it):
//                            a half-written rule aborts the process.
//   SIGNET_FAULT_LOG         a file to which one line is appended per injected fault,
//                            "C_Sign #5 -> CKR_SESSION_HANDLE_INVALID" (one write(2) per line,
//                            O_APPEND, so lines from several threads never interleave).
//
// Rules are separated by ';' or newlines (blanks around a rule are ignored). A rule is
// FUNCTION:WHEN:ACTION:
//   FUNCTION  any function of the v2.40 list except C_Initialize and C_GetFunctionList, e.g.
//             C_Sign, C_SignInit, C_OpenSession, C_Login, C_FindObjectsInit, C_GetAttributeValue,
//             C_GenerateKeyPair.
//   WHEN      N (the Nth call only, 1-based), N+ (the Nth and every later call), N-M (calls N
//             to M), every:K (calls K, 2K, 3K, ...). Calls are counted per function from
//             C_Initialize (or from the last rules-file change), whether or not a rule fires,
//             length queries (a null output buffer) included.
//   ACTION    a CK_RV name (CKR_DEVICE_ERROR, ...; see kRvNames) or a non-zero hex value 0x...:
//             the call returns it without reaching the real module. C_Sign only:
//             corrupt  forward, then flip one bit in the middle of the signature (only when one was
//                      returned: a non-null buffer and CKR_OK; otherwise nothing is logged);
//             logout   C_Logout the session on the real module (which logs every session of the
//                      token out and invalidates the handles of private objects, even after a
//                      new C_Login), end the signing operation, return CKR_USER_NOT_LOGGED_IN.
//                      Not forwarded: SoftHSM would complete a C_Sign whose C_SignInit came
//                      before the logout and return CKR_OK;
//             close    C_CloseSession the session on the real module, then forward (SoftHSM
//                      returns CKR_SESSION_HANDLE_INVALID; closing the last session also logs out).
// The first rule that matches a call applies. A malformed rule makes C_Initialize print the rule
// and the reason to stderr and return CKR_ARGUMENTS_BAD.
//
// WARNING: an injected CK_RV changes nothing on the real token: after "C_Login:1:CKR_DEVICE_ERROR"
// nobody is logged in, but after "C_Sign:1:CKR_USER_NOT_LOGGED_IN" the token still is (use
// "logout" for the genuine state). The one exception is C_Sign: as a real failed C_Sign ends the
// signing operation, an injected one signs into a scratch buffer to end it on the real token, so
// that the next C_SignInit does not get CKR_OPERATION_ACTIVE. Other multi-call operations
// (C_SignFinal, C_Encrypt*, ...) stay active on the real token after an injected fault.
#include <dlfcn.h>
#include <fcntl.h>
#include <p11-kit/pkcs11.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Every function of the v2.40 CK_FUNCTION_LIST, in its order.
// clang-format off
#define SIGNET_FAULT_FUNCTIONS(X)                                                                  \
  X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList)                 \
  X(C_GetSlotInfo) X(C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo) X(C_InitToken)    \
  X(C_InitPIN) X(C_SetPIN) X(C_OpenSession) X(C_CloseSession) X(C_CloseAllSessions)                \
  X(C_GetSessionInfo) X(C_GetOperationState) X(C_SetOperationState) X(C_Login) X(C_Logout)         \
  X(C_CreateObject) X(C_CopyObject) X(C_DestroyObject) X(C_GetObjectSize) X(C_GetAttributeValue)   \
  X(C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects) X(C_FindObjectsFinal)               \
  X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) X(C_EncryptFinal)                               \
  X(C_DecryptInit) X(C_Decrypt) X(C_DecryptUpdate) X(C_DecryptFinal)                               \
  X(C_DigestInit) X(C_Digest) X(C_DigestUpdate) X(C_DigestKey) X(C_DigestFinal)                    \
  X(C_SignInit) X(C_Sign) X(C_SignUpdate) X(C_SignFinal) X(C_SignRecoverInit) X(C_SignRecover)     \
  X(C_VerifyInit) X(C_Verify) X(C_VerifyUpdate) X(C_VerifyFinal) X(C_VerifyRecoverInit)            \
  X(C_VerifyRecover) X(C_DigestEncryptUpdate) X(C_DecryptDigestUpdate) X(C_SignEncryptUpdate)      \
  X(C_DecryptVerifyUpdate) X(C_GenerateKey) X(C_GenerateKeyPair) X(C_WrapKey) X(C_UnwrapKey)       \
  X(C_DeriveKey) X(C_SeedRandom) X(C_GenerateRandom) X(C_GetFunctionStatus) X(C_CancelFunction)    \
  X(C_WaitForSlotEvent)
// clang-format on

// Enumerators are named after the PKCS#11 functions (not kName) so rules, logs and code agree.
enum class Fn : std::size_t {
#define SIGNET_FAULT_ENUM(name) name,
  SIGNET_FAULT_FUNCTIONS(SIGNET_FAULT_ENUM)
#undef SIGNET_FAULT_ENUM
      kCount
};

constexpr std::array<std::string_view, static_cast<std::size_t>(Fn::kCount)> kFnNames = {
#define SIGNET_FAULT_NAME(name) #name,
    SIGNET_FAULT_FUNCTIONS(SIGNET_FAULT_NAME)
#undef SIGNET_FAULT_NAME
};

struct RvName {
  std::string_view name;
  CK_RV rv;
};
#define SIGNET_FAULT_RV(name) \
  RvName { #name, (name) }
constexpr RvName kRvNames[] = {
    SIGNET_FAULT_RV(CKR_OK),  // for logs; a rule may not inject it
    SIGNET_FAULT_RV(CKR_CANCEL),
    SIGNET_FAULT_RV(CKR_HOST_MEMORY),
    SIGNET_FAULT_RV(CKR_SLOT_ID_INVALID),
    SIGNET_FAULT_RV(CKR_GENERAL_ERROR),
    SIGNET_FAULT_RV(CKR_FUNCTION_FAILED),
    SIGNET_FAULT_RV(CKR_ARGUMENTS_BAD),
    SIGNET_FAULT_RV(CKR_ATTRIBUTE_SENSITIVE),
    SIGNET_FAULT_RV(CKR_DATA_LEN_RANGE),
    SIGNET_FAULT_RV(CKR_DEVICE_ERROR),
    SIGNET_FAULT_RV(CKR_DEVICE_MEMORY),
    SIGNET_FAULT_RV(CKR_DEVICE_REMOVED),
    SIGNET_FAULT_RV(CKR_FUNCTION_CANCELED),
    SIGNET_FAULT_RV(CKR_KEY_HANDLE_INVALID),
    SIGNET_FAULT_RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    SIGNET_FAULT_RV(CKR_MECHANISM_INVALID),
    SIGNET_FAULT_RV(CKR_OBJECT_HANDLE_INVALID),
    SIGNET_FAULT_RV(CKR_OPERATION_ACTIVE),
    SIGNET_FAULT_RV(CKR_OPERATION_NOT_INITIALIZED),
    SIGNET_FAULT_RV(CKR_PIN_INCORRECT),
    SIGNET_FAULT_RV(CKR_PIN_LOCKED),
    SIGNET_FAULT_RV(CKR_SESSION_CLOSED),
    SIGNET_FAULT_RV(CKR_SESSION_COUNT),
    SIGNET_FAULT_RV(CKR_SESSION_HANDLE_INVALID),
    SIGNET_FAULT_RV(CKR_SIGNATURE_INVALID),
    SIGNET_FAULT_RV(CKR_TOKEN_NOT_PRESENT),
    SIGNET_FAULT_RV(CKR_TOKEN_NOT_RECOGNIZED),
    SIGNET_FAULT_RV(CKR_USER_ALREADY_LOGGED_IN),
    SIGNET_FAULT_RV(CKR_USER_NOT_LOGGED_IN),
    SIGNET_FAULT_RV(CKR_BUFFER_TOO_SMALL),
    SIGNET_FAULT_RV(CKR_CRYPTOKI_NOT_INITIALIZED),
};
#undef SIGNET_FAULT_RV

std::string RvToString(CK_RV rv) {
  for (const RvName& entry : kRvNames) {
    if (entry.rv == rv) {
      return std::string(entry.name);
    }
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

struct Rule {
  enum class When : std::uint8_t { kOnly, kFrom, kRange, kEvery };
  enum class Action : std::uint8_t { kReturn, kCorrupt, kLogout, kClose };

  bool Matches(unsigned long call) const {
    switch (when) {
      case When::kOnly:
        return call == first;
      case When::kFrom:
        return call >= first;
      case When::kRange:
        return call >= first && call <= last;
      case When::kEvery:
        return call % first == 0;
    }
    return false;
  }

  Fn fn = Fn::kCount;
  When when = When::kOnly;
  unsigned long first = 0;  // N, or K for every:K
  unsigned long last = 0;   // M of N-M
  Action action = Action::kReturn;
  CK_RV rv = CKR_OK;  // for kReturn
};

// One generation of rules with its call counters: replacing the rules replaces the counters.
// Immutable but for the counters, so calls share it without a lock.
struct RuleSet {
  std::vector<Rule> rules;
  std::array<std::atomic<unsigned long>, static_cast<std::size_t>(Fn::kCount)> calls{};
};

bool ParseNumber(std::string_view text, unsigned long* out) {
  if (text.empty() || text.size() > 18) {
    return false;
  }
  for (const char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  std::from_chars(text.data(), text.data() + text.size(), *out);
  return *out >= 1;
}

// Parses one rule; on failure returns the reason.
std::optional<std::string> ParseRule(std::string_view text, Rule* rule) {
  // WHEN may hold a colon of its own (every:K), FUNCTION and ACTION never do.
  const std::size_t first_colon = text.find(':');
  const std::size_t last_colon = text.rfind(':');
  if (first_colon == std::string_view::npos || first_colon == last_colon) {
    return "want FUNCTION:WHEN:ACTION";
  }
  const std::string_view fn = text.substr(0, first_colon);
  const std::string_view when = text.substr(first_colon + 1, last_colon - first_colon - 1);
  const std::string_view action = text.substr(last_colon + 1);

  rule->fn = Fn::kCount;
  for (std::size_t i = 0; i < kFnNames.size(); ++i) {
    if (kFnNames[i] == fn) {
      rule->fn = static_cast<Fn>(i);
    }
  }
  if (rule->fn == Fn::kCount) {
    return "unknown function '" + std::string(fn) + "'";
  }
  if (rule->fn == Fn::C_Initialize || rule->fn == Fn::C_GetFunctionList) {
    return std::string(fn) + " cannot fail: it reads the rules";
  }

  const std::size_t dash = when.find('-');
  bool ok = false;
  if (when.starts_with("every:")) {
    rule->when = Rule::When::kEvery;
    ok = ParseNumber(when.substr(6), &rule->first);
  } else if (when.ends_with('+')) {
    rule->when = Rule::When::kFrom;
    ok = ParseNumber(when.substr(0, when.size() - 1), &rule->first);
  } else if (dash != std::string_view::npos) {
    rule->when = Rule::When::kRange;
    ok = ParseNumber(when.substr(0, dash), &rule->first) &&
         ParseNumber(when.substr(dash + 1), &rule->last) && rule->first <= rule->last;
  } else {
    rule->when = Rule::When::kOnly;
    ok = ParseNumber(when, &rule->first);
  }
  if (!ok) {
    return "WHEN must be N, N+, N-M (N <= M) or every:K, with numbers from 1";
  }

  rule->action = Rule::Action::kReturn;
  rule->rv = CKR_OK;
  if (action == "corrupt" || action == "logout" || action == "close") {
    if (rule->fn != Fn::C_Sign) {
      return "'" + std::string(action) + "' applies only to C_Sign";
    }
    rule->action = action == "corrupt"  ? Rule::Action::kCorrupt
                   : action == "logout" ? Rule::Action::kLogout
                                        : Rule::Action::kClose;
    return std::nullopt;
  }
  if (action.starts_with("0x") || action.starts_with("0X")) {
    const std::string_view hex = action.substr(2);
    unsigned long value = 0;
    const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
    if (hex.empty() || ec != std::errc() || end != hex.data() + hex.size()) {
      return "bad hex CK_RV '" + std::string(action) + "'";
    }
    rule->rv = value;
  } else {
    const auto* entry = std::find_if(std::begin(kRvNames), std::end(kRvNames),
                                     [&](const RvName& e) { return e.name == action; });
    if (entry == std::end(kRvNames)) {
      return "unknown ACTION '" + std::string(action) +
             "': a CKR_ name this module knows, 0x..., corrupt, logout or close";
    }
    rule->rv = entry->rv;
  }
  if (rule->rv == CKR_OK) {
    return "a fault must not be CKR_OK: the caller would read outputs nobody wrote";
  }
  return std::nullopt;
}

// Parses rules separated by ';' or newlines. On a bad rule, prints it (with `source`, the variable
// or file it came from) and returns null.
std::shared_ptr<RuleSet> ParseRules(std::string_view text, const std::string& source) {
  auto set = std::make_shared<RuleSet>();
  while (!text.empty()) {
    const std::size_t end = text.find_first_of(";\n");
    std::string_view item = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    while (!item.empty() &&
           std::string_view(" \t\r").find(item.front()) != std::string_view::npos) {
      item.remove_prefix(1);
    }
    while (!item.empty() && std::string_view(" \t\r").find(item.back()) != std::string_view::npos) {
      item.remove_suffix(1);
    }
    if (item.empty()) {
      continue;
    }
    Rule rule;
    if (const std::optional<std::string> error = ParseRule(item, &rule)) {
      std::fprintf(stderr, "signet_fault_pkcs11: bad rule '%.*s' in %s: %s\n",
                   static_cast<int>(item.size()), item.data(), source.c_str(), error->c_str());
      return nullptr;
    }
    set->rules.push_back(rule);
  }
  return set;
}

// What identifies one version of the rules file; a missing file is all zeros.
struct FileKey {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  bool operator==(const FileKey& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

FileKey StatRulesFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return {};
  }
  return {st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}

std::shared_ptr<RuleSet> ReadRulesFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return std::make_shared<RuleSet>();  // no file: no rules
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseRules(text.str(), path);
}

// Process-wide state. `real` is published once and never changes (the real module stays loaded);
// the rest is guarded by g_mu.
std::atomic<CK_FUNCTION_LIST*> g_real{nullptr};
std::mutex g_mu;
std::shared_ptr<RuleSet> g_rules;
std::string g_rules_file;  // empty: rules come from SIGNET_FAULT_RULES
FileKey g_rules_file_key;
std::string g_log;  // empty: no log

std::shared_ptr<RuleSet> CurrentRules() {
  const std::lock_guard lock(g_mu);
  if (!g_rules_file.empty()) {
    const FileKey key = StatRulesFile(g_rules_file);
    if (!(key == g_rules_file_key)) {
      std::shared_ptr<RuleSet> rules = ReadRulesFile(g_rules_file);
      if (rules == nullptr) {
        std::fprintf(stderr, "signet_fault_pkcs11: aborting: %s changed to a bad rule\n",
                     g_rules_file.c_str());
        std::abort();
      }
      g_rules = std::move(rules);
      g_rules_file_key = key;
    }
  }
  return g_rules;
}

void LogFault(Fn fn, unsigned long call, const std::string& what) {
  std::string log;
  {
    const std::lock_guard lock(g_mu);
    log = g_log;
  }
  if (log.empty()) {
    return;
  }
  const std::string line = std::string(kFnNames[static_cast<std::size_t>(fn)]) + " #" +
                           std::to_string(call) + " -> " + what + "\n";
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "signet_fault_pkcs11: cannot append to %s\n", log.c_str());
  }
  if (fd >= 0) {
    ::close(fd);
  }
}

// The rule that applies to this call of `fn`, if any. Counts the call.
struct Decision {
  std::shared_ptr<RuleSet> rules;  // keeps `rule` alive
  const Rule* rule = nullptr;
  unsigned long call = 0;
};

Decision Decide(Fn fn) {
  Decision decision;
  decision.rules = CurrentRules();
  if (decision.rules == nullptr) {
    return decision;
  }
  decision.call =
      decision.rules->calls[static_cast<std::size_t>(fn)].fetch_add(1, std::memory_order_relaxed) +
      1;
  for (const Rule& rule : decision.rules->rules) {
    if (rule.fn == fn && rule.Matches(decision.call)) {
      decision.rule = &rule;
      break;
    }
  }
  return decision;
}

// Forwards a function nobody intercepts, failing it when a rule says so.
template <Fn kFn, auto kMember, class Signature>
struct Forward;
template <Fn kFn, auto kMember, class... Args>
struct Forward<kFn, kMember, CK_RV (*)(Args...)> {
  static CK_RV Call(Args... args) {
    CK_FUNCTION_LIST* real = g_real.load(std::memory_order_acquire);
    if (real == nullptr) {
      return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    try {
      const Decision decision = Decide(kFn);
      if (decision.rule != nullptr) {
        LogFault(kFn, decision.call, RvToString(decision.rule->rv));
        return decision.rule->rv;
      }
    } catch (...) {
      return CKR_GENERAL_ERROR;
    }
    return (real->*kMember)(args...);
  }
};

// Loads the real module once. Called under g_mu.
CK_RV LoadRealLocked() {
  if (g_real.load(std::memory_order_acquire) != nullptr) {
    return CKR_OK;
  }
  const char* env = std::getenv("SIGNET_FAULT_TARGET");
  const std::string path = env != nullptr && *env != '\0' ? env : "/usr/lib/softhsm/libsofthsm2.so";
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    std::fprintf(stderr, "signet_fault_pkcs11: dlopen(%s): %s\n", path.c_str(), ::dlerror());
    return CKR_GENERAL_ERROR;
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* list = nullptr;
  if (get_list == nullptr || get_list(&list) != CKR_OK || list == nullptr) {
    std::fprintf(stderr, "signet_fault_pkcs11: %s has no usable C_GetFunctionList\n", path.c_str());
    ::dlclose(handle);
    return CKR_GENERAL_ERROR;
  }
  g_real.store(list, std::memory_order_release);  // `handle` stays open for the process
  return CKR_OK;
}

// Loads the real module, reads the environment and forwards; when the real C_Initialize succeeds,
// starts the new rules with fresh counters.
CK_RV Initialize(void* init_args) {
  try {
    const std::lock_guard lock(g_mu);
    if (const CK_RV rv = LoadRealLocked(); rv != CKR_OK) {
      return rv;
    }
    const char* rules_env = std::getenv("SIGNET_FAULT_RULES");
    const char* file_env = std::getenv("SIGNET_FAULT_RULES_FILE");
    const char* log_env = std::getenv("SIGNET_FAULT_LOG");
    const bool has_rules = rules_env != nullptr && *rules_env != '\0';
    const bool has_file = file_env != nullptr && *file_env != '\0';
    if (has_rules && has_file) {
      std::fprintf(stderr,
                   "signet_fault_pkcs11: set SIGNET_FAULT_RULES or SIGNET_FAULT_RULES_FILE, "
                   "not both\n");
      return CKR_ARGUMENTS_BAD;
    }
    const FileKey key = has_file ? StatRulesFile(file_env) : FileKey();
    std::shared_ptr<RuleSet> rules =
        has_file ? ReadRulesFile(file_env)
                 : ParseRules(has_rules ? rules_env : "", "SIGNET_FAULT_RULES");
    if (rules == nullptr) {
      return CKR_ARGUMENTS_BAD;
    }
    const CK_RV rv = g_real.load(std::memory_order_acquire)->C_Initialize(init_args);
    if (rv == CKR_OK) {
      g_rules = std::move(rules);
      g_rules_file = has_file ? file_env : "";
      g_rules_file_key = key;
      g_log = log_env != nullptr ? log_env : "";
    }
    return rv;
  } catch (...) {
    return CKR_HOST_MEMORY;
  }
}

// Signs into a scratch buffer to end the session's signing operation on the real token, as a
// real failed C_Sign would have ended it.
void EndSignOperation(CK_FUNCTION_LIST* real, CK_SESSION_HANDLE session, CK_BYTE_PTR data,
                      CK_ULONG data_len) {
  std::array<CK_BYTE, 4096> scratch;  // RSA up to 32768 bits
  CK_ULONG scratch_len = scratch.size();
  (void)real->C_Sign(session, data, data_len, scratch.data(), &scratch_len);
}

CK_RV Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR signature,
           CK_ULONG_PTR signature_len) {
  CK_FUNCTION_LIST* real = g_real.load(std::memory_order_acquire);
  if (real == nullptr) {
    return CKR_CRYPTOKI_NOT_INITIALIZED;
  }
  try {
    const Decision decision = Decide(Fn::C_Sign);
    if (decision.rule == nullptr) {
      return real->C_Sign(session, data, data_len, signature, signature_len);
    }
    const unsigned long call = decision.call;
    switch (decision.rule->action) {
      case Rule::Action::kReturn:
        if (decision.rule->rv != CKR_BUFFER_TOO_SMALL) {  // which leaves the operation active
          EndSignOperation(real, session, data, data_len);
        }
        LogFault(Fn::C_Sign, call, RvToString(decision.rule->rv));
        return decision.rule->rv;
      case Rule::Action::kCorrupt: {
        const CK_RV rv = real->C_Sign(session, data, data_len, signature, signature_len);
        if (rv == CKR_OK && signature != nullptr && signature_len != nullptr &&
            *signature_len > 0) {
          signature[*signature_len / 2] ^= 0x10;
          LogFault(Fn::C_Sign, call, "corrupt");
        }
        return rv;
      }
      case Rule::Action::kLogout: {
        // SoftHSM finishes a signature begun while logged in, so report the logout ourselves.
        const CK_RV logout_rv = real->C_Logout(session);
        EndSignOperation(real, session, data, data_len);
        LogFault(Fn::C_Sign, call,
                 "logout (C_Logout: " + RvToString(logout_rv) + "), CKR_USER_NOT_LOGGED_IN");
        return CKR_USER_NOT_LOGGED_IN;
      }
      case Rule::Action::kClose:
        LogFault(Fn::C_Sign, call,
                 "close (C_CloseSession: " + RvToString(real->C_CloseSession(session)) + ")");
        return real->C_Sign(session, data, data_len, signature, signature_len);
    }
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
  return CKR_GENERAL_ERROR;
}

CK_RV GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_FUNCTION_LIST MakeFunctionList() {
  CK_FUNCTION_LIST list{};
  list.version = {2, 40};
#define SIGNET_FAULT_FORWARD(name) \
  list.name = &Forward<Fn::name, &CK_FUNCTION_LIST::name, CK_##name>::Call;
  SIGNET_FAULT_FUNCTIONS(SIGNET_FAULT_FORWARD)
#undef SIGNET_FAULT_FORWARD
  list.C_Initialize = &Initialize;
  list.C_GetFunctionList = &GetFunctionList;
  list.C_Sign = &Sign;
  return list;
}

CK_RV GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  static CK_FUNCTION_LIST function_list = MakeFunctionList();
  *list = &function_list;
  return CKR_OK;
}

}  // namespace

// The module's one exported symbol.
extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST_PTR_PTR list) {
  return GetFunctionList(list);
}
