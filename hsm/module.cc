#include <dlfcn.h>

#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "hsm/internal/p11.h"

namespace signet::hsm::internal {

std::string RvName(CK_RV rv) {
  switch (rv) {
#define SIGNET_RV(name) \
  case name:            \
    return #name;
    SIGNET_RV(CKR_OK)
    SIGNET_RV(CKR_CANCEL)
    SIGNET_RV(CKR_HOST_MEMORY)
    SIGNET_RV(CKR_SLOT_ID_INVALID)
    SIGNET_RV(CKR_GENERAL_ERROR)
    SIGNET_RV(CKR_FUNCTION_FAILED)
    SIGNET_RV(CKR_ARGUMENTS_BAD)
    SIGNET_RV(CKR_ATTRIBUTE_SENSITIVE)
    SIGNET_RV(CKR_ATTRIBUTE_TYPE_INVALID)
    SIGNET_RV(CKR_ATTRIBUTE_VALUE_INVALID)
    SIGNET_RV(CKR_DATA_INVALID)
    SIGNET_RV(CKR_DATA_LEN_RANGE)
    SIGNET_RV(CKR_DEVICE_ERROR)
    SIGNET_RV(CKR_DEVICE_MEMORY)
    SIGNET_RV(CKR_DEVICE_REMOVED)
    SIGNET_RV(CKR_FUNCTION_CANCELED)
    SIGNET_RV(CKR_FUNCTION_NOT_SUPPORTED)
    SIGNET_RV(CKR_KEY_HANDLE_INVALID)
    SIGNET_RV(CKR_KEY_SIZE_RANGE)
    SIGNET_RV(CKR_KEY_TYPE_INCONSISTENT)
    SIGNET_RV(CKR_KEY_FUNCTION_NOT_PERMITTED)
    SIGNET_RV(CKR_MECHANISM_INVALID)
    SIGNET_RV(CKR_MECHANISM_PARAM_INVALID)
    SIGNET_RV(CKR_OBJECT_HANDLE_INVALID)
    SIGNET_RV(CKR_OPERATION_ACTIVE)
    SIGNET_RV(CKR_OPERATION_NOT_INITIALIZED)
    SIGNET_RV(CKR_PIN_INCORRECT)
    SIGNET_RV(CKR_PIN_LOCKED)
    SIGNET_RV(CKR_SESSION_CLOSED)
    SIGNET_RV(CKR_SESSION_COUNT)
    SIGNET_RV(CKR_SESSION_HANDLE_INVALID)
    SIGNET_RV(CKR_SESSION_READ_ONLY)
    SIGNET_RV(CKR_TEMPLATE_INCOMPLETE)
    SIGNET_RV(CKR_TEMPLATE_INCONSISTENT)
    SIGNET_RV(CKR_TOKEN_NOT_PRESENT)
    SIGNET_RV(CKR_TOKEN_NOT_RECOGNIZED)
    SIGNET_RV(CKR_USER_ALREADY_LOGGED_IN)
    SIGNET_RV(CKR_USER_NOT_LOGGED_IN)
    SIGNET_RV(CKR_USER_PIN_NOT_INITIALIZED)
    SIGNET_RV(CKR_USER_TYPE_INVALID)
    SIGNET_RV(CKR_BUFFER_TOO_SMALL)
    SIGNET_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    SIGNET_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    SIGNET_RV(CKR_CURVE_NOT_SUPPORTED)
#undef SIGNET_RV
    default:
      break;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKR_0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

Error CkError(CK_RV rv, std::string_view what) {
  const ErrorCode code = rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED
                             ? ErrorCode::kPermissionDenied
                             : ErrorCode::kHsm;
  return Error(code, std::string(what) + ": " + RvName(rv), ErrorDomain::kPkcs11,
               static_cast<std::int64_t>(rv));
}

bool IsSessionLost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
         rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_TOKEN_NOT_PRESENT;
}

// ---- Module -------------------------------------------------------------------------------------

namespace {

// One Module per path per process: a second C_Initialize would fail, and C_Finalize must wait for
// the last user. An entry whose Module is expired but still present is being finalized: Load waits
// for ~Module to erase it, so a new C_Initialize never races the old C_Finalize.
std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::condition_variable& RegistryChanged() {
  static std::condition_variable cv;
  return cv;
}
std::map<std::string, std::weak_ptr<Module>>& Registry() {
  static std::map<std::string, std::weak_ptr<Module>> registry;
  return registry;
}

}  // namespace

Result<std::shared_ptr<Module>> Module::Load(const std::filesystem::path& path) {
  std::unique_lock lock(RegistryMutex());
  for (;;) {
    auto it = Registry().find(path.string());
    if (it == Registry().end()) {
      break;
    }
    if (auto existing = it->second.lock()) {
      return existing;
    }
    RegistryChanged().wait(lock);  // the last user is finalizing it
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return MakeError(ErrorCode::kNotFound,
                     "PKCS#11 module " + path.string() +
                         " does not exist; set the module path of the HSM in the config");
  }
  std::unique_ptr<Module> module(new Module());  // NOLINT: private constructor
  module->path_ = path;
  // RTLD_LOCAL: the module's symbols must not satisfy anyone else's (or ours).
  module->handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (module->handle_ == nullptr) {
    return MakeError(ErrorCode::kHsm, "dlopen " + path.string() + ": " + ::dlerror());
  }
  auto get_list =
      reinterpret_cast<CK_C_GetFunctionList>(::dlsym(module->handle_, "C_GetFunctionList"));
  if (get_list == nullptr) {
    return MakeError(ErrorCode::kHsm,
                     path.string() + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  if (CK_RV rv = get_list(&module->fn_); rv != CKR_OK || module->fn_ == nullptr) {
    return MakeError(CkError(rv, "C_GetFunctionList of " + path.string()));
  }
  // CKF_OS_LOCKING_OK: sessions are used from several threads; SoftHSM, for one, turns its own
  // locking off without it.
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  if (CK_RV rv = module->fn_->C_Initialize(&args); rv != CKR_OK) {
    module->fn_ = nullptr;  // not initialized: the destructor must not C_Finalize
    return MakeError(CkError(rv, "C_Initialize of " + path.string()));
  }
  // The last user finalizes it under the registry lock and erases its entry, waking any Load that
  // waits for a fresh C_Initialize.
  std::shared_ptr<Module> shared(module.release(), [](Module* m) {
    std::lock_guard finalizing(RegistryMutex());
    const std::string key = m->path_.string();
    std::default_delete<Module>()(m);
    Registry().erase(key);
    RegistryChanged().notify_all();
  });
  Registry()[path.string()] = shared;
  return shared;
}

Module::~Module() {
  if (fn_ != nullptr) {
    fn_->C_Finalize(nullptr);
  }
  // The module is finalized but stays mapped (no dlclose): some modules do not survive being
  // unloaded and loaded again, and a leak checker can only name a library that is still there.
}

// ---- SessionPool --------------------------------------------------------------------------------

Result<std::unique_ptr<SessionPool>> SessionPool::Open(std::shared_ptr<Module> module,
                                                       CK_SLOT_ID slot, SecureBuffer pin,
                                                       unsigned count) {
  std::unique_ptr<SessionPool> pool(new SessionPool());  // NOLINT: private constructor
  pool->module_ = std::move(module);
  pool->slot_ = slot;
  pool->pin_ = std::move(pin);
  SIGNET_ASSIGN_OR_RETURN(pool->login_session_, pool->OpenOne());
  SIGNET_RETURN_IF_ERROR(pool->Login(pool->login_session_));
  for (unsigned i = 0; i < count; ++i) {
    SIGNET_ASSIGN_OR_RETURN(CK_SESSION_HANDLE session, pool->OpenOne());
    pool->free_.push_back(session);
  }
  pool->size_ = count;
  return pool;
}

SessionPool::~SessionPool() {
  std::lock_guard lock(login_mu_);
  for (CK_SESSION_HANDLE session : free_) {
    fn()->C_CloseSession(session);
  }
  if (login_session_ != CK_INVALID_HANDLE) {
    fn()->C_Logout(login_session_);
    fn()->C_CloseSession(login_session_);
  }
}

Result<CK_SESSION_HANDLE> SessionPool::OpenOne() {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  const CK_RV rv =
      fn()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session);
  if (rv != CKR_OK) {
    return MakeError(CkError(rv, "C_OpenSession"));
  }
  return session;
}

Status SessionPool::Login(CK_SESSION_HANDLE session) {
  // The PIN is passed straight from its SecureBuffer; it is never copied or logged.
  const CK_RV rv = fn()->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin_.bytes().data()),
                                 static_cast<CK_ULONG>(pin_.size()));
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    return MakeError(CkError(rv, "C_Login as user")
                         .WithContext(rv == CKR_PIN_INCORRECT ? "the PIN in the PIN file is wrong"
                                                              : "logging in to the token"));
  }
  return OkStatus();
}

std::size_t SessionPool::in_use() const {
  std::lock_guard lock(mu_);
  return size_ - free_.size();
}

Status SessionPool::CheckLogin() {
  std::lock_guard lock(login_mu_);
  CK_SESSION_INFO info{};
  CK_RV rv = fn()->C_GetSessionInfo(login_session_, &info);
  if (IsSessionLost(rv)) {
    // The token lost its sessions (the signing workers reopen theirs when they next sign): open
    // the login session again, so that the check says whether logging in works now.
    fn()->C_CloseSession(login_session_);
    login_session_ = CK_INVALID_HANDLE;
    SIGNET_ASSIGN_OR_RETURN(login_session_, OpenOne());
    SIGNET_RETURN_IF_ERROR(Login(login_session_));
    rv = fn()->C_GetSessionInfo(login_session_, &info);
  }
  if (rv != CKR_OK) {
    return MakeError(CkError(rv, "C_GetSessionInfo"));
  }
  if (info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
    // Logged out (another process or a fault logged the token out): log in again, as the
    // workers would on their next signature.
    SIGNET_RETURN_IF_ERROR(Login(login_session_));
    rv = fn()->C_GetSessionInfo(login_session_, &info);
    if (rv != CKR_OK) {
      return MakeError(CkError(rv, "C_GetSessionInfo"));
    }
    if (info.state != CKS_RO_USER_FUNCTIONS && info.state != CKS_RW_USER_FUNCTIONS) {
      return MakeError(ErrorCode::kPermissionDenied, "the token is not logged in (session state " +
                                                         std::to_string(info.state) + ")");
    }
  }
  return OkStatus();
}

Result<SessionPool::Lease> SessionPool::Acquire(Deadline deadline) {
  std::unique_lock lock(mu_);
  while (free_.empty()) {
    if (deadline.IsNever()) {
      returned_.wait(lock);
    } else if (returned_.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
               free_.empty()) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       "no HSM session became free before the deadline (all are busy signing)");
    }
  }
  const CK_SESSION_HANDLE handle = free_.back();
  free_.pop_back();
  return Lease(this, handle);
}

void SessionPool::Return(CK_SESSION_HANDLE handle) {
  {
    std::lock_guard lock(mu_);
    free_.push_back(handle);
  }
  returned_.notify_one();
}

std::uint64_t SessionPool::reopened() const {
  std::lock_guard lock(mu_);
  return reopened_;
}

SessionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      handle_(std::exchange(other.handle_, CK_INVALID_HANDLE)) {}

SessionPool::Lease& SessionPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::exchange(other.pool_, nullptr);
    handle_ = std::exchange(other.handle_, CK_INVALID_HANDLE);
  }
  return *this;
}

SessionPool::Lease::~Lease() { Release(); }

void SessionPool::Lease::Release() {
  if (pool_ != nullptr) {
    pool_->Return(handle_);
    pool_ = nullptr;
  }
}

Status SessionPool::Lease::Reopen() {
  CK_FUNCTION_LIST* fn = pool_->fn();
  fn->C_CloseSession(handle_);  // it is dead or dying; its error does not matter
  SIGNET_ASSIGN_OR_RETURN(handle_, pool_->OpenOne());
  // The login is token-wide; it is gone when the token was reset or removed. Logging in again is
  // harmless when it is still there (CKR_USER_ALREADY_LOGGED_IN).
  SIGNET_RETURN_IF_ERROR(pool_->Login(handle_));
  std::lock_guard lock(pool_->mu_);
  ++pool_->reopened_;
  return OkStatus();
}

}  // namespace signet::hsm::internal
