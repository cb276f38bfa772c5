// hsm/internal/p11.h: the PKCS#11 module and its sessions. Not public: names pkcs11.h types.
//
// Caveats:
// - Module::Load returns the one Module for a path in this process (dlopen'ed and C_Initialize'd
//   once, with CKF_OS_LOCKING_OK; C_Finalize'd when the last user drops it, but never unloaded).
// - A Session handle is used by one thread at a time; SessionPool hands them out as leases.
#ifndef SIGNET_HSM_INTERNAL_P11_H_
#define SIGNET_HSM_INTERNAL_P11_H_

#include <p11-kit/pkcs11.h>

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"

namespace signet::hsm::internal {

// "CKR_SESSION_HANDLE_INVALID" (or "CKR_0x1234" for codes without a name).
std::string RvName(CK_RV rv);
// A kHsm error "what: CKR_NAME", with the CK_RV as native code. CKR_PIN_INCORRECT and
// CKR_PIN_LOCKED become kPermissionDenied.
Error CkError(CK_RV rv, std::string_view what);
// True for the CK_RVs after which a session is dead and must be reopened (and logged in again).
bool IsSessionLost(CK_RV rv);

class Module {
 public:
  // Errors: kNotFound (no such file), kHsm (dlopen/dlsym/C_Initialize failed, with the reason).
  [[nodiscard]] static Result<std::shared_ptr<Module>> Load(const std::filesystem::path& path);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* fn() const { return fn_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  Module() = default;

  std::filesystem::path path_;
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fn_ = nullptr;
};

// SessionPool owns the signing sessions of one token and the one session that holds the login.
class SessionPool {
 public:
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();  // gives the session back (or closes it, when marked lost)

    CK_SESSION_HANDLE handle() const { return handle_; }
    // Replaces a session that died (closing it, opening another, logging in again if needed).
    // Errors: kHsm naming the CK_RV of C_OpenSession or C_Login.
    [[nodiscard]] Status Reopen();

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, CK_SESSION_HANDLE handle) : pool_(pool), handle_(handle) {}
    void Release();

    SessionPool* pool_ = nullptr;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
  };

  // Opens `count` sessions on `slot` after logging in with `pin` on a session kept open for it.
  [[nodiscard]] static Result<std::unique_ptr<SessionPool>> Open(std::shared_ptr<Module> module,
                                                                 CK_SLOT_ID slot, SecureBuffer pin,
                                                                 unsigned count);
  ~SessionPool();  // closes every session (all leases must be back)

  // Waits for a free session until `deadline`. Errors: kDeadlineExceeded.
  [[nodiscard]] Result<Lease> Acquire(Deadline deadline);

  CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  std::uint64_t reopened() const;
  // Signing sessions in the pool, and how many are leased out (signing) now.
  std::size_t size() const { return size_; }
  std::size_t in_use() const;
  // Asks the token whether the user is logged in (C_GetSessionInfo on the login session). A login
  // session that died is reopened and logged in again. Errors: kHsm naming the CK_RV,
  // kPermissionDenied when the session is not in a user state.
  [[nodiscard]] Status CheckLogin();

 private:
  SessionPool() = default;
  [[nodiscard]] Result<CK_SESSION_HANDLE> OpenOne();
  [[nodiscard]] Status Login(CK_SESSION_HANDLE session);
  void Return(CK_SESSION_HANDLE handle);

  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_ = 0;
  SecureBuffer pin_;
  CK_SESSION_HANDLE login_session_ = CK_INVALID_HANDLE;  // guarded by login_mu_ after Open
  std::mutex login_mu_;
  mutable std::mutex mu_;
  std::condition_variable returned_;
  std::vector<CK_SESSION_HANDLE> free_;
  std::uint64_t reopened_ = 0;
  std::size_t size_ = 0;  // set by Open
};

}  // namespace signet::hsm::internal

#endif  // SIGNET_HSM_INTERNAL_P11_H_
