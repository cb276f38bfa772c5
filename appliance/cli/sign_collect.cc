// `signet sign --collect ID`: what it needs besides the run itself (internal/sign_wait.h): the
// check of raw signatures against the files as they are now, and the match of the files to the
// held request's answer.
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <span>

#include "appliance/cli/internal/sign_wait.h"

namespace signet::cli {
namespace {

using nlohmann::json;

// How long --collect (without --wait) waits for a request that is approved and being signed.
constexpr std::chrono::milliseconds kApprovedSigningWait{60'000};
constexpr std::chrono::milliseconds kFirstPoll{100};
using Bio = std::unique_ptr<BIO, FnDeleter<&BIO_free>>;
using EvpPkeyCtx = std::unique_ptr<EVP_PKEY_CTX, FnDeleter<&EVP_PKEY_CTX_free>>;

const EVP_MD* HashMd(pipeline::DigestAlgorithm algorithm) {
  switch (algorithm) {
    case pipeline::DigestAlgorithm::kSha384:
      return EVP_sha384();
    case pipeline::DigestAlgorithm::kSha512:
      return EVP_sha512();
    default:
      return EVP_sha256();
  }
}

// How the files hashed for --collect line up with the items of a "signed" answer.
struct CollectMatch {
  // For each of answer["items"], the index in `names` of its file; nullopt when it names none.
  std::vector<std::optional<std::size_t>> file_of_item;
  std::vector<std::string> missing;  // in `names` but not answered, in `names`' order
  std::vector<std::string> extra;    // answered but not in `names`, in the answer's order
};

// Matches `names` (distinct) to the names of answer["items"]. Errors: kUnavailable (no "items"
// array, an item without a string "name", or a name answered twice).
Result<CollectMatch> MatchCollected(const json& answer, std::span<const std::string> names) {
  if (!answer.is_object() || !answer.contains("items") || !answer["items"].is_array()) {
    return MakeError(ErrorCode::kUnavailable, "signetd's answer lists no items");
  }
  std::map<std::string_view, std::size_t> unanswered;  // name -> its index in `names`
  for (std::size_t i = 0; i < names.size(); ++i) {
    unanswered.emplace(names[i], i);
  }
  std::set<std::string_view> seen;
  CollectMatch match;
  for (const json& item : answer["items"]) {
    if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
      return MakeError(ErrorCode::kUnavailable, "signetd's answer has an item without a name");
    }
    const std::string& name = item["name"].get_ref<const std::string&>();
    if (!seen.insert(name).second) {
      return MakeError(ErrorCode::kUnavailable,
                       fmt::format("signetd's answer names {} twice", DisplayName(name)));
    }
    auto it = unanswered.find(name);
    if (it == unanswered.end()) {
      match.extra.push_back(name);
      match.file_of_item.push_back(std::nullopt);
      continue;
    }
    match.file_of_item.push_back(it->second);
    unanswered.erase(it);
  }
  for (const std::string& name : names) {
    if (unanswered.contains(name)) {
      match.missing.push_back(name);
    }
  }
  return match;
}

std::string Files(std::size_t n) { return fmt::format("{} file{}", n, n == 1 ? "" : "s"); }

}  // namespace

Result<RawKey> MakeRawKey(std::string_view public_key_pem, std::string_view scheme,
                          pipeline::DigestAlgorithm hash) {
  enum class Padding { kNone, kPkcs1, kPss };
  Padding padding = Padding::kNone;
  int want = EVP_PKEY_EC;
  if (scheme == "RSA PKCS#1 v1.5") {
    padding = Padding::kPkcs1;
    want = EVP_PKEY_RSA;
  } else if (scheme == "RSA-PSS") {
    padding = Padding::kPss;
    want = EVP_PKEY_RSA;
  } else if (scheme != "ECDSA") {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("signetd signs with scheme \"{}\", which this signet cannot check",
                                 DisplayName(scheme)));
  }
  if (hash == pipeline::DigestAlgorithm::kBlake2b512) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "signetd signs BLAKE2b digests, which this "
                     "signet cannot check");
  }
  std::shared_ptr<EVP_PKEY> pkey;
  {
    Bio bio(BIO_new_mem_buf(public_key_pem.data(), static_cast<int>(public_key_pem.size())));
    if (bio) {
      pkey.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
    }
  }
  ERR_clear_error();  // a parse failure is said below
  if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != want) {
    return MakeError(ErrorCode::kInvalidArgument,
                     fmt::format("signetd's public key is not a{} public key",
                                 want == EVP_PKEY_EC ? "n EC" : "n RSA"));
  }
  RawKey key;
  key.hash_name = std::string(pipeline::DigestAlgorithmName(hash));
  const std::size_t digest_length = pipeline::DigestLength(hash);
  key.verify = [pkey, padding, hash, digest_length](
                   std::span<const std::uint8_t> digest,
                   std::span<const std::uint8_t> signature) -> Status {
    if (digest.size() != digest_length) {
      return MakeError(ErrorCode::kInternal,
                       fmt::format("a digest of {} bytes, not {}", digest.size(), digest_length));
    }
    const EVP_MD* md = HashMd(hash);
    EvpPkeyCtx ctx(EVP_PKEY_CTX_new(pkey.get(), nullptr));
    bool ready = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
                 EVP_PKEY_CTX_set_signature_md(ctx.get(), md) == 1;
    if (ready && padding == Padding::kPkcs1) {
      ready = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1;
    } else if (ready && padding == Padding::kPss) {
      ready = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    if (!ready) {  // not a verdict on the signature: kInternal, not kCrypto
      return MakeError(ErrorCode::kInternal,
                       OpenSslError("setting up the signature check").message());
    }
    // 0 is a mismatch, and so for the user is a negative value (a signature that does not even
    // parse): this key did not sign this digest.
    const int rc = EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(),
                                   digest.size());
    ERR_clear_error();
    if (rc != 1) {
      return MakeError(ErrorCode::kCrypto, "the signature does not match");
    }
    return OkStatus();
  };
  return key;
}

std::optional<std::string> CheckCollectedSignature(const RawKey& key, std::string_view digest_hex,
                                                   std::span<const std::uint8_t> signature) {
  auto digest = HexDecode(digest_hex);
  const Status verified =
      digest ? key.verify(*digest, signature) : Status(MakeError(digest.error()));
  if (verified) {
    return std::nullopt;
  }
  if (verified.error().code() != ErrorCode::kCrypto) {
    return "the signature could not be checked: " + verified.error().message();
  }
  return fmt::format(
      "the signature does not match the file as it is now: the file changed since it was sent "
      "for signing (the signature does not verify over its {} digest with the key's public "
      "key); nothing written",
      key.hash_name);
}

CollectPlan PlanCollect(DaemonClient& client, const CollectRequest& request,
                        const CollectFiles& files, Console& console) {
  const HeldRequest& held = request.held;
  const std::string id = DisplayName(held.approval_id);
  CollectPlan plan;
  auto fail_all = [&](const std::string& message) {
    if (files.names.empty()) {
      console.Error(message);  // no file's line would say it
    }
    for (std::size_t i = 0; i < files.names.size(); ++i) {
      plan.unwritten.emplace_back(i, message);
    }
    return std::move(plan);
  };
  WaitOutcome outcome = request.wait
                            ? std::move(WaitForApprovals(client, std::span(&held, 1),
                                                         {.timeout = request.wait_timeout}, console)
                                            .front())
                            : CheckHeld(client, held);
  if (outcome.state == WaitOutcome::State::kPending && outcome.approved) {
    // Approved a moment ago, and signetd is signing it: that is the machine's wait, not a
    // person's, so it is waited for even without --wait (up to kApprovedSigningWait).
    outcome = std::move(
        WaitForApprovals(client, std::span(&held, 1),
                         {.timeout = kApprovedSigningWait, .first_delay = kFirstPoll}, console)
            .front());
  }
  switch (outcome.state) {
    case WaitOutcome::State::kSigned:
      break;
    case WaitOutcome::State::kPending:
      console.Error(fmt::format(
          "held for approval: {}; nothing written for its {}. Run this again once it is "
          "approved, or with --wait to wait for it; approvers run: signet admin approvals "
          "approve {}",
          outcome.message, Files(files.names.size()), id));
      plan.held = true;
      return fail_all("held for approval: " + held.approval_id);
    case WaitOutcome::State::kTimedOut:
      console.Error(outcome.message);
      return fail_all("still waiting for approval: " + held.approval_id);
    case WaitOutcome::State::kRefused:
      return fail_all(outcome.message);
  }

  const json& answer = outcome.answer;
  const std::string key = answer.is_object() ? answer.value("key", request.key) : request.key;
  const std::string fingerprint = answer.is_object()
                                      ? answer.value("key_fingerprint", request.key_fingerprint)
                                      : request.key_fingerprint;
  if (key != request.key) {
    return fail_all(fmt::format("held request {} was signed with key {}, not {}: run with --key {}",
                                id, DisplayName(key), DisplayName(request.key), DisplayName(key)));
  }
  if (fingerprint != request.key_fingerprint) {
    return fail_all(fmt::format(
        "held request {} was signed by key {} {}, but that name now has "
        "key {}",
        id, DisplayName(key), DisplayName(fingerprint), DisplayName(request.key_fingerprint)));
  }
  auto match = MatchCollected(answer, files.names);
  if (!match) {
    return fail_all(fmt::format("held request {}: {}", id, match.error().message()));
  }

  const std::set<std::string> unanswered(match->missing.begin(), match->missing.end());
  std::vector<bool> done(files.names.size(), false);
  std::set<std::size_t> missing;
  for (std::size_t i = 0; i < files.names.size(); ++i) {
    if (!unanswered.contains(files.names[i])) {
      continue;
    }
    if (i < files.refused.size() && files.refused[i]) {  // sign did not send it either
      plan.unwritten.emplace_back(i, *files.refused[i]);
      done[i] = true;
    } else {
      missing.insert(i);
    }
  }
  std::vector<std::string> extra;
  for (const std::string& name : match->extra) {
    if (!files.unreadable.contains(name)) {
      extra.push_back(name);
    }
  }
  if (!missing.empty() || !extra.empty()) {
    console.Error(fmt::format(
        "the files do not match held request {}: nothing written. Give the FILES of the "
        "original request, named as they were then (from the same directory, with the same -r)",
        id));
    for (const std::string& name : extra) {
      console.Error(fmt::format("held request {} signed {}, which is not among the files given", id,
                                DisplayName(name)));
    }
    for (std::size_t i = 0; i < files.names.size(); ++i) {
      if (!done[i]) {
        plan.unwritten.emplace_back(
            i, missing.contains(i)
                   ? fmt::format("not in held request {}", id)
                   : fmt::format("not written: the files do not match held request {}", id));
      }
    }
    return plan;
  }
  // The answer's items for the files given, in its order: the caller pairs them one to one.
  plan.reply = answer;
  plan.reply["items"] = json::array();
  for (std::size_t i = 0; i < match->file_of_item.size(); ++i) {
    if (const auto file = match->file_of_item[i]; file && !done[*file]) {
      plan.reply["items"].push_back(answer["items"][i]);
      plan.write.push_back(*file);
    }
  }
  return plan;
}

}  // namespace signet::cli
