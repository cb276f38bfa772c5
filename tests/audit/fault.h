// tests/audit/fault.h: faults injected into the real LMDB (and the checkpoint file) under the
// audit log. fault_test.cc defines fdatasync() in the test executable; liblmdb's call resolves to
// it (symbol interposition) and it forwards to libc's unless a fault is armed.
#ifndef SIGNET_TESTS_AUDIT_FAULT_H_
#define SIGNET_TESTS_AUDIT_FAULT_H_

namespace signet::audit::testing {

// From now on, fdatasync fails with `err` (0 disarms). Counts the failures it caused.
void FailFdatasync(int err);
int FdatasyncFailures();

}  // namespace signet::audit::testing

#endif  // SIGNET_TESTS_AUDIT_FAULT_H_
