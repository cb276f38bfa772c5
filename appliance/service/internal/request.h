// appliance/service/internal/request.h: parsing and checking POST /v1/sign bodies.
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_REQUEST_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_REQUEST_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/base/base.h"
#include "appliance/formats/formats.h"
#include "hsm/hsm.h"

namespace signet::service::internal {

inline constexpr std::size_t kMaxNameBytes = 4096;
inline constexpr std::size_t kMaxFieldBytes = 1024;  // key, tool, host, ticket

struct SignItem {
  std::string name;
  std::optional<std::uint64_t> size;
  std::map<std::string, std::string> digests;  // algorithm -> lower-case hex (checked)
};

// A sign request after its envelope is checked. Items are checked by CheckItems, once the key
// (and so the hash) is known.
struct SignBody {
  std::string key;
  std::string tool_name;
  std::string tool_version;
  std::string client_host;
  std::string ticket;
  std::size_t item_count = 0;
  // The client builds the proofs of a batch made of its own leaves alone (the request header
  // X-Signet-Batch-Proofs: client; BATCH.md, "The sign answer"). A header rather than a body field,
  // so that an older signetd ignores it and an older client, which does not send it, still gets
  // every proof.
  bool client_builds_proofs = false;
};

// The parsed document, kept opaque to callers (nlohmann stays in the .cc files).
class ParsedBody {
 public:
  ParsedBody();
  ~ParsedBody();
  ParsedBody(ParsedBody&&) noexcept;
  ParsedBody& operator=(ParsedBody&&) noexcept;

  SignBody envelope;
  // Checks every item against `hash` (its digest must be present), the algorithms, hex and names,
  // and moves them out: call it once. Errors: kInvalidArgument naming the item index and field.
  [[nodiscard]] Result<std::vector<SignItem>> CheckItems(hsm::Hash hash);

  struct Doc;
  std::unique_ptr<Doc> doc;
};

// How ParseSignBody reads JSON. kFast reads a body of the usual shape as SAX events, without
// building a DOM, and hands any other body (and every error) to the DOM reference path; kDom (for
// tests, which compare the two) always takes the reference path. The result, errors included, is
// the same either way.
enum class ParsePath : std::uint8_t { kFast, kDom };

// Parses a body as JSON or (cbor) CBOR and checks the envelope: an object with only the fields
// key, tool{name, version}, client_host, ticket, items (an array). Errors: kInvalidArgument.
[[nodiscard]] Result<ParsedBody> ParseSignBody(std::string_view body, bool cbor,
                                               ParsePath path = ParsePath::kFast);

// The UTF-8 check shared with the receipts and the JSON string writer (formats.h).
using formats::IsUtf8;

}  // namespace signet::service::internal

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_REQUEST_H_
