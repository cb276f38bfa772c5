// Fuzzes the audit module's parsers, which read what an attacker may have written (an export
// handed to an auditor, a checkpoint file): records, signed notes, checkpoint bodies and whole
// exports. No crash; a record that parses re-serializes to the exact input.
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "appliance/audit/audit.h"

namespace {

// A fixed Ed25519 public key (RFC 8032 test 1), so export verification runs past key set-up; no
// fuzzed note can carry a valid signature, so this explores the parsing around it.
const signet::audit::NoteVerifier& Key() {
  static const signet::audit::NoteVerifier key = [] {
    const std::string hex =
        "302a300506032b6570032100"
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    return signet::audit::MakeNoteVerifier("signet.fuzz/audit", signet::HexDecode(hex).value())
        .value();
  }();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto record = signet::audit::ParseRecord(text); record) {
    auto again = signet::audit::SerializeRecord(*record);
    if (!again || *again != text) {
      std::abort();
    }
  }
  if (auto note = signet::audit::ParseNote(text); note) {
    (void)signet::audit::VerifyNote(*note, Key());
  }
  if (auto checkpoint = signet::audit::ParseCheckpointText(text); checkpoint) {
    if (signet::audit::CheckpointText(*checkpoint) != text) {
      std::abort();
    }
  }
  std::istringstream in{std::string(text)};
  (void)signet::audit::VerifyExport(in, Key());
  return 0;
}
