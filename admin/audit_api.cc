// GET /v1/audit/records, /v1/audit/export, /v1/audit/checkpoint, /v1/audit/consistency (API.md,
// "Audit"). Reads only, for peers with the auditor role; an export is recorded (kind admin,
// decision export) before its body is sent.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/internal/state.h"

namespace signet::admin::internal {
namespace {

using nlohmann::json;

constexpr std::size_t kDefaultPage = 100;
constexpr std::size_t kMaxFilterBytes = 1024;  // key, identity
constexpr std::size_t kMaxConsistencySizes = 64;

net::Response BadParameter(std::string_view name, std::string_view why) {
  return net::JsonError(400, "invalid_argument", std::string(name) + ": " + std::string(why));
}

// Refuses parameters the endpoint does not take (a misspelt filter would otherwise select
// everything).
std::optional<net::Response> CheckParameters(const Call& call,
                                             std::initializer_list<std::string_view> accepted) {
  for (const auto& [name, value] : call.query) {
    if (std::ranges::find(accepted, name) == accepted.end()) {
      std::string list;
      for (std::string_view one : accepted) {
        list += (list.empty() ? "" : ", ") + std::string(one);
      }
      return BadParameter(name, "unknown parameter for GET " + call.path + "; it takes " +
                                    (list.empty() ? std::string("none") : list));
    }
  }
  return std::nullopt;
}

std::optional<std::uint64_t> ParseCount(std::string_view text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || text.size() > 20 || ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

// The filters of /v1/audit/records and /v1/audit/export, as ExportOptions. The error response
// names the parameter.
struct Filters {
  audit::ExportOptions options;
  std::optional<net::Response> error;
};

Filters ParseFilters(const Call& call) {
  Filters out;
  audit::ExportOptions& options = out.options;
  const auto& q = call.query;
  auto find = [&](std::string_view name) -> const std::string* {
    auto it = q.find(name);
    return it == q.end() ? nullptr : &it->second;
  };
  if (const std::string* v = find("from_seq")) {
    auto seq = ParseCount(*v);
    if (!seq) {
      out.error = BadParameter("from_seq", "'" + *v + "' is not a sequence number");
      return out;
    }
    options.from_seq = *seq;
  }
  if (const std::string* v = find("to_seq")) {
    auto seq = ParseCount(*v);
    if (!seq) {
      out.error = BadParameter("to_seq", "'" + *v + "' is not a sequence number");
      return out;
    }
    options.to_seq = *seq;
    if (options.from_seq > *seq) {
      out.error = BadParameter("to_seq", std::to_string(*seq) + " is before from_seq " +
                                             std::to_string(options.from_seq) +
                                             " (the range is [from_seq, to_seq))");
      return out;
    }
  }
  for (auto [name, field] :
       {std::pair{"from_time", &options.from_time_us}, std::pair{"to_time", &options.to_time_us}}) {
    if (const std::string* v = find(name)) {
      // The API also takes µs since the epoch as a bare integer (what records carry).
      std::int64_t micros = 0;
      const char* end = v->data() + v->size();
      const auto [ptr, ec] = std::from_chars(v->data(), end, micros);
      Result<std::int64_t> time = !v->empty() && ec == std::errc() && ptr == end
                                      ? Result<std::int64_t>(micros)
                                      : audit::ParseTimeUs(*v);
      if (!time) {
        out.error = BadParameter(name, "'" + v->substr(0, 64) + "' " + time.error().message() +
                                           "; accepted: microseconds since the epoch, " +
                                           std::string(audit::kTimeForms));
        return out;
      }
      *field = *time;
    }
  }
  if (options.from_time_us && options.to_time_us && *options.from_time_us > *options.to_time_us) {
    out.error = BadParameter("to_time", "is before from_time (the range is [from_time, to_time))");
    return out;
  }
  for (auto [name, field] :
       {std::pair{"key", &options.key}, std::pair{"identity", &options.identity}}) {
    if (const std::string* v = find(name)) {
      if (v->empty() || v->size() > kMaxFilterBytes) {
        out.error = BadParameter(
            name, "must be 1 to " + std::to_string(kMaxFilterBytes) + " bytes (or left out)");
        return out;
      }
      *field = *v;
    }
  }
  if (const std::string* v = find("digest")) {
    auto raw = HexDecode(*v);
    if (!raw || raw->empty() || raw->size() > pipeline::kMaxDigestLength) {
      out.error = BadParameter(
          "digest", "'" + v->substr(0, 2 * pipeline::kMaxDigestLength + 2) +
                        "' is not a hex digest (64 hex digits for sha256; 96 sha384; 128 sha512 "
                        "or blake2b512)");
      return out;
    }
    options.digest = *v;
  }
  return out;
}

// The log's errors name ExportOptions fields; the API's parameters for times differ.
net::Response FilterError(const Error& error) {
  if (error.code() != ErrorCode::kInvalidArgument) {
    return ErrorResponse(error);
  }
  std::string message = error.message();
  for (auto [field, parameter] :
       {std::pair{"from_time_us", "from_time"}, std::pair{"to_time_us", "to_time"}}) {
    for (std::size_t at = message.find(field); at != std::string::npos;
         at = message.find(field, at + 1)) {
      message.replace(at, std::string_view(field).size(), parameter);
    }
  }
  return net::JsonError(400, "invalid_argument", message);
}

void Records(State& state, Call& call) {
  if (auto bad = CheckParameters(call, {"from_seq", "to_seq", "from_time", "to_time", "key",
                                        "identity", "digest", "limit"})) {
    call.respond(std::move(*bad));
    return;
  }
  Filters filters = ParseFilters(call);
  if (filters.error) {
    call.respond(std::move(*filters.error));
    return;
  }
  const std::size_t max_page = std::min(state.options.max_records_page, audit::kMaxRecordsLimit);
  std::size_t limit = std::min(kDefaultPage, max_page);
  if (auto it = call.query.find("limit"); it != call.query.end()) {
    auto value = ParseCount(it->second);
    if (!value || *value == 0 || *value > max_page) {
      call.respond(BadParameter("limit", "'" + it->second.substr(0, 32) +
                                             "' is not a page size: 1 to " +
                                             std::to_string(max_page) + " records"));
      return;
    }
    limit = static_cast<std::size_t>(*value);
  }
  auto page = state.log.Records(filters.options, limit);
  if (!page) {
    call.respond(FilterError(page.error()));
    return;
  }
  // Each record's canonical bytes are a JSON object already: spliced in as they are.
  std::string body = "{\"next_seq\":";
  body += page->next_seq ? std::to_string(*page->next_seq) : "null";
  body += ",\"records\":[";
  for (std::size_t i = 0; i < page->records.size(); ++i) {
    body += i == 0 ? "" : ",";
    body += page->records[i].bytes;
  }
  body += "]}";
  net::Response response;
  response.body = std::move(body);
  call.respond(std::move(response));
}

void Export(State& state, Call& call) {
  if (auto bad = CheckParameters(call, {"from_seq", "to_seq", "from_time", "to_time", "key",
                                        "identity", "digest", "consistency_from", "proofs"})) {
    call.respond(std::move(*bad));
    return;
  }
  Filters filters = ParseFilters(call);
  if (filters.error) {
    call.respond(std::move(*filters.error));
    return;
  }
  if (auto it = call.query.find("consistency_from"); it != call.query.end()) {
    std::string_view list = it->second;
    while (true) {
      const std::size_t comma = list.find(',');
      const std::string_view one = list.substr(0, comma);
      auto size = ParseCount(one);
      if (!size) {
        call.respond(BadParameter("consistency_from",
                                  "'" + std::string(one.substr(0, 32)) +
                                      "' is not a tree size (give sizes as N or N,M,...)"));
        return;
      }
      if (filters.options.consistency_from.size() == kMaxConsistencySizes) {
        call.respond(
            BadParameter("consistency_from",
                         "at most " + std::to_string(kMaxConsistencySizes) + " sizes per export"));
        return;
      }
      filters.options.consistency_from.push_back(*size);
      if (comma == std::string_view::npos) {
        break;
      }
      list.remove_prefix(comma + 1);
    }
  }

  if (auto it = call.query.find("proofs"); it != call.query.end()) {
    if (it->second != "true" && it->second != "false") {
      call.respond(BadParameter("proofs", "'" + it->second.substr(0, 32) +
                                              "' is not true or false (a full export carries "
                                              "inclusion proofs unless proofs=false)"));
      return;
    }
    filters.options.full_proofs = it->second == "true";
  }
  // The export streams from a thread of its own, so a slow reader holds no worker. Its record
  // (kind admin, decision export, the filters) is committed before the first byte leaves, so
  // the size is not in it.
  call.recorded->store(true);
  std::shared_ptr<Call> shared = call.shared_from_this();
  const bool started = RunExport(state, [&state, shared, options = std::move(filters.options)] {
    Call& export_call = *shared;
    std::optional<Error> not_recorded;
    net::Response response;
    response.content_type = "application/jsonl";
    response.stream = [&](const net::BodyWriter& write) -> Status {
      bool recorded = false;
      return state.log.Export(options, [&](std::string_view line) -> Status {
        if (!recorded) {
          auto committed =
              Record(state, ActionRecord(export_call, audit::RecordKind::kAdmin, "export",
                                         "audit export through the admin API: filters " +
                                             audit::FiltersText(options)));
          if (!committed) {
            not_recorded = committed.error();
            return MakeError(committed.error());
          }
          recorded = true;
        }
        if (!write(line)) {
          return MakeError(ErrorCode::kUnavailable,
                           "the client went away or stopped reading (request_timeout)");
        }
        return OkStatus();
      });
    };
    response.refuse_stream = [&](const Error& error) {
      return not_recorded ? AuditUnavailable(error) : FilterError(error);
    };
    export_call.respond(std::move(response));
  });
  if (!started) {
    call.recorded->store(false);  // the refusal is recorded with the answer
    call.respond(net::JsonError(
        503, "too_many_exports",
        std::to_string(state.options.max_exports) +
            " audit exports are streaming already (max_exports); retry when one has finished",
        "max_exports"));
  }
}

void Checkpoint(State& state, Call& call) {
  if (auto bad = CheckParameters(call, {})) {
    call.respond(std::move(*bad));
    return;
  }
  std::string note = state.log.LatestCheckpoint();
  if (note.empty()) {
    call.respond(net::JsonError(503, "unavailable",
                                "the log has no signed checkpoint yet (one is signed soon after "
                                "the first record); ask again shortly"));
    return;
  }
  net::Response response;
  response.content_type = "text/plain; charset=utf-8";
  response.body = std::move(note);
  call.respond(std::move(response));
}

void Consistency(State& state, Call& call) {
  if (auto bad = CheckParameters(call, {"from", "to"})) {
    call.respond(std::move(*bad));
    return;
  }
  std::uint64_t sizes[2] = {0, 0};
  const char* names[2] = {"from", "to"};
  for (int i = 0; i < 2; ++i) {
    auto it = call.query.find(names[i]);
    if (it == call.query.end()) {
      call.respond(BadParameter(names[i],
                                "required: GET /v1/audit/consistency?from=N&to=M "
                                "(tree sizes, M at most the latest checkpoint's)"));
      return;
    }
    auto size = ParseCount(it->second);
    if (!size) {
      call.respond(BadParameter(names[i], "'" + it->second.substr(0, 32) + "' is not a tree size"));
      return;
    }
    sizes[i] = *size;
  }
  auto proof = state.log.ConsistencyProof(sizes[0], sizes[1]);
  if (!proof) {
    call.respond(ErrorResponse(proof.error()));
    return;
  }
  json hashes = json::array();
  for (const pipeline::MerkleHash& hash : *proof) {
    hashes.push_back(Base64Encode(hash));
  }
  call.respond(
      JsonResponse(200, json{{"from", sizes[0]}, {"to", sizes[1]}, {"proof", std::move(hashes)}}));
}

}  // namespace

void HandleAudit(State& state, Call& call) {
  using Handler = void (*)(State&, Call&);
  constexpr std::pair<std::string_view, Handler> kEndpoints[] = {
      {"/v1/audit/records", &Records},
      {"/v1/audit/export", &Export},
      {"/v1/audit/checkpoint", &Checkpoint},
      {"/v1/audit/consistency", &Consistency},
  };
  const auto* endpoint =
      std::ranges::find_if(kEndpoints, [&](const auto& entry) { return entry.first == call.path; });
  if (endpoint == std::end(kEndpoints)) {
    call.respond(net::JsonError(404, "not_found",
                                "no such endpoint: " + call.path +
                                    "; the audit endpoints are /v1/audit/records, "
                                    "/v1/audit/export, /v1/audit/checkpoint and "
                                    "/v1/audit/consistency (admin/API.md)"));
    return;
  }
  if (!call.Has(policy::Role::kAuditor)) {
    call.respond(RoleRequired(call, policy::Role::kAuditor));
    return;
  }
  if (call.request.method != "GET") {
    net::Response response =
        net::JsonError(405, "method_not_allowed", "use GET " + call.path + " (it changes nothing)");
    response.headers.emplace_back("Allow", "GET");
    call.respond(std::move(response));
    return;
  }
  endpoint->second(state, call);
}

}  // namespace signet::admin::internal
