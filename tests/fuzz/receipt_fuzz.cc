// Fuzzes what `signet verify` reads from files anyone may have written: receipts (FILE.receipt,
// lines of a bundle) and the batch statements inside their notes. No crash; a receipt that parses
// serializes (in both layouts) to text that parses back to the same receipt, and a batch
// statement that parses is written back as exactly the input.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "appliance/formats/formats.h"

namespace {

void Check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace formats = signet::formats;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto receipt = formats::ParseReceipt(text); receipt) {
    for (auto layout : {formats::ReceiptLayout::kIndented, formats::ReceiptLayout::kOneLine}) {
      auto written = formats::SerializeReceipt(*receipt, layout);
      Check(written.has_value());
      auto again = formats::ParseReceipt(*written);
      Check(again.has_value() && *again == *receipt);
    }
    // The checks `signet verify` makes, up to the note (whose signature no fuzzed input has).
    (void)formats::VerifyReceipt(*receipt, receipt->leaf.size, receipt->leaf.digest,
                                 receipt->key_fingerprint,
                                 [](std::string_view) -> signet::Result<std::string> {
                                   return signet::MakeError(signet::ErrorCode::kCrypto, "fuzz");
                                 });
  }
  if (auto statement = formats::ParseBatchStatement(text); statement) {
    auto written = formats::BatchStatementText(*statement);
    Check(written.has_value() && *written == text);
  }
  return 0;
}
