// appliance/service/internal/json_scan.h: a reader of a strict subset of JSON that drives an
// nlohmann SAX handler, for the sign body's fast path (request.cc).
//
// The subset: objects, arrays, strings without escapes or control characters (UTF-8 checked
// with IsUtf8), and unsigned integers that fit 64 bits, with JSON's whitespace between tokens.
// Everything else (true, false, null, a minus sign, a fraction or exponent, an escape, a byte
// order mark, bad UTF-8, anything that is not JSON) makes it give up, and so does the handler
// returning false: the caller then hands the body to nlohmann's own parser. What the scanner
// accepts, nlohmann accepts too, with the same events in the same order, so a handler cannot
// tell which of the two read the body. It never recurses deeper than the handler lets it (a
// handler that refuses what it does not expect bounds the depth).
#ifndef SIGNET_APPLIANCE_SERVICE_INTERNAL_JSON_SCAN_H_
#define SIGNET_APPLIANCE_SERVICE_INTERNAL_JSON_SCAN_H_

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "appliance/service/internal/request.h"

namespace signet::service::internal {

template <class Handler>
class JsonSubsetScanner {
 public:
  JsonSubsetScanner(std::string_view in, Handler& handler) : in_(in), handler_(handler) {}

  // True when the whole input was read (one value, then only whitespace) and the handler took
  // every event.
  bool Scan() {
    if (!Value()) {
      return false;
    }
    SkipSpace();
    return pos_ == in_.size();
  }

 private:
  void SkipSpace() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\n' || in_[pos_] == '\r' || in_[pos_] == '\t')) {
      ++pos_;
    }
  }
  // Consumes `c` after whitespace.
  bool Take(char c) {
    SkipSpace();
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  // A string at pos_ (after its opening quote) into scratch_.
  bool String() {
    const std::size_t start = pos_;
    bool ascii = true;
    for (; pos_ < in_.size(); ++pos_) {
      const auto c = static_cast<unsigned char>(in_[pos_]);
      if (c == '"') {
        break;
      }
      if (c == '\\' || c < 0x20) {
        return false;
      }
      ascii = ascii && c < 0x80;
    }
    if (pos_ == in_.size()) {
      return false;
    }
    const std::string_view text = in_.substr(start, pos_ - start);
    ++pos_;  // the closing quote
    if (!ascii && !IsUtf8(text)) {
      return false;
    }
    scratch_.assign(text);
    return true;
  }

  bool Number() {
    const std::size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
      ++pos_;
    }
    if (pos_ < in_.size() && (in_[pos_] == '.' || in_[pos_] == 'e' || in_[pos_] == 'E')) {
      return false;  // a float to nlohmann
    }
    if (pos_ - start > 1 && in_[start] == '0') {
      return false;  // a leading zero: not JSON
    }
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(in_.data() + start, in_.data() + pos_, value);
    if (ec != std::errc() || end != in_.data() + pos_) {
      return false;  // past 64 bits: a float to nlohmann
    }
    return handler_.number_unsigned(value);
  }

  bool Object() {
    if (!handler_.start_object(static_cast<std::size_t>(-1))) {
      return false;
    }
    if (Take('}')) {
      return handler_.end_object();
    }
    do {
      if (!Take('"') || !String() || !handler_.key(scratch_) || !Take(':') || !Value()) {
        return false;
      }
    } while (Take(','));
    return Take('}') && handler_.end_object();
  }

  bool Array() {
    if (!handler_.start_array(static_cast<std::size_t>(-1))) {
      return false;
    }
    if (Take(']')) {
      return handler_.end_array();
    }
    do {
      if (!Value()) {
        return false;
      }
    } while (Take(','));
    return Take(']') && handler_.end_array();
  }

  bool Value() {
    SkipSpace();
    if (pos_ == in_.size()) {
      return false;
    }
    const char c = in_[pos_++];
    if (c == '{') {
      return Object();
    }
    if (c == '[') {
      return Array();
    }
    if (c == '"') {
      return String() && handler_.string(scratch_);
    }
    if (c >= '0' && c <= '9') {
      --pos_;
      return Number();
    }
    return false;
  }

  std::string_view in_;
  Handler& handler_;
  std::size_t pos_ = 0;
  std::string scratch_;  // the current string; the handler may move from it
};

}  // namespace signet::service::internal

#endif  // SIGNET_APPLIANCE_SERVICE_INTERNAL_JSON_SCAN_H_
