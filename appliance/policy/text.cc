// Globs and message quoting. The glob matcher runs the pattern as an NFA over the name, one
// character at a time, because artifact names come from clients: a backtracking matcher can be
// made to take exponential time by a name built against a pattern with several stars.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/policy/internal/text.h"

namespace signet::policy::internal {
namespace {

struct GlobToken {
  enum class Type : std::uint8_t { kLiteral, kAnyOne, kStar, kDoubleStar, kSet };
  Type type = Type::kLiteral;
  char c = 0;
  bool negate = false;
  std::string ranges;  // pairs (low, high) for kSet
};

// Splits `pattern` into tokens; `error` (when not null) gets what is wrong.
bool Tokenize(std::string_view pattern, std::vector<GlobToken>& tokens, std::string* error) {
  tokens.clear();
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    GlobToken token;
    if (c == '*') {
      if (i + 1 < pattern.size() && pattern[i + 1] == '*') {
        token.type = GlobToken::Type::kDoubleStar;
        while (i + 1 < pattern.size() && pattern[i + 1] == '*') {
          ++i;
        }
      } else {
        token.type = GlobToken::Type::kStar;
      }
    } else if (c == '?') {
      token.type = GlobToken::Type::kAnyOne;
    } else if (c == '\\') {
      if (i + 1 == pattern.size()) {
        if (error != nullptr) {
          *error = "trailing '\\' (write '\\\\' for a backslash)";
        }
        return false;
      }
      token.c = pattern[++i];
    } else if (c == '[') {
      const std::size_t open = i;
      token.type = GlobToken::Type::kSet;
      std::size_t j = i + 1;
      if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) {
        token.negate = true;
        ++j;
      }
      bool first = true;
      bool closed = false;
      while (j < pattern.size()) {
        char low = pattern[j];
        if (low == ']' && !first) {
          closed = true;
          break;
        }
        first = false;
        if (low == '\\' && j + 1 < pattern.size()) {
          low = pattern[++j];
        }
        char high = low;
        if (j + 2 < pattern.size() && pattern[j + 1] == '-' && pattern[j + 2] != ']') {
          j += 2;
          high = pattern[j];
          if (high == '\\' && j + 1 < pattern.size()) {
            high = pattern[++j];
          }
          if (static_cast<unsigned char>(high) < static_cast<unsigned char>(low)) {
            if (error != nullptr) {
              *error = "reversed range in '[' at offset " + std::to_string(open);
            }
            return false;
          }
        }
        token.ranges.push_back(low);
        token.ranges.push_back(high);
        ++j;
      }
      if (!closed) {
        if (error != nullptr) {
          *error = "unclosed '[' at offset " + std::to_string(open);
        }
        return false;
      }
      i = j;
    } else {
      token.c = c;
    }
    tokens.push_back(std::move(token));
  }
  return true;
}

bool InSet(const GlobToken& token, char c) {
  const auto u = static_cast<unsigned char>(c);
  bool in = false;
  for (std::size_t k = 0; k + 1 < token.ranges.size(); k += 2) {
    if (u >= static_cast<unsigned char>(token.ranges[k]) &&
        u <= static_cast<unsigned char>(token.ranges[k + 1])) {
      in = true;
      break;
    }
  }
  return in != token.negate;
}

// Stars match the empty string: a state on a star also stands on the token after it.
void Close(const std::vector<GlobToken>& tokens, std::vector<char>& states) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (states[i] != 0 && (tokens[i].type == GlobToken::Type::kStar ||
                           tokens[i].type == GlobToken::Type::kDoubleStar)) {
      states[i + 1] = 1;
    }
  }
}

}  // namespace

Status CheckGlob(std::string_view pattern) {
  std::vector<GlobToken> tokens;
  std::string error;
  if (!Tokenize(pattern, tokens, &error)) {
    return MakeError(ErrorCode::kInvalidArgument, error);
  }
  return OkStatus();
}

bool GlobMatch(std::string_view pattern, std::string_view name, GlobSyntax syntax) {
  char separator = 0;
  if (syntax == GlobSyntax::kPath) {
    separator = '/';
    if (pattern.find('/') == std::string_view::npos) {
      if (const std::size_t slash = name.rfind('/'); slash != std::string_view::npos) {
        name.remove_prefix(slash + 1);
      }
    }
  } else if (syntax == GlobSyntax::kSubject) {
    separator = ',';
  }
  std::vector<GlobToken> tokens;
  if (!Tokenize(pattern, tokens, nullptr)) {
    return false;
  }
  const std::size_t n = tokens.size();
  std::vector<char> states(n + 1, 0);
  std::vector<char> next(n + 1, 0);
  states[0] = 1;
  Close(tokens, states);
  for (const char c : name) {
    std::fill(next.begin(), next.end(), 0);
    bool any = false;
    const bool is_separator = separator != 0 && c == separator;
    for (std::size_t i = 0; i < n; ++i) {
      if (states[i] == 0) {
        continue;
      }
      const GlobToken& token = tokens[i];
      switch (token.type) {
        case GlobToken::Type::kStar:
          if (!is_separator) {
            next[i] = 1;
            any = true;
          }
          break;
        case GlobToken::Type::kDoubleStar:
          next[i] = 1;
          any = true;
          break;
        case GlobToken::Type::kAnyOne:
          if (!is_separator) {
            next[i + 1] = 1;
            any = true;
          }
          break;
        case GlobToken::Type::kLiteral:
          if (c == token.c) {
            next[i + 1] = 1;
            any = true;
          }
          break;
        case GlobToken::Type::kSet:
          if (!is_separator && InSet(token, c)) {
            next[i + 1] = 1;
            any = true;
          }
          break;
      }
    }
    if (!any) {
      return false;
    }
    states.swap(next);
    Close(tokens, states);
  }
  return states[n] != 0;
}

std::string Printable(std::string_view text) {
  constexpr std::size_t kMaxShown = 200;
  constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (i >= kMaxShown) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(text[i]);
    // Length of the UTF-8 sequence `byte` starts, or 0 when it starts none.
    std::size_t length = 0;
    if (byte < 0x80) {
      length = 1;
    } else if (byte >= 0xc2 && byte <= 0xdf) {
      length = 2;
    } else if (byte >= 0xe0 && byte <= 0xef) {
      length = 3;
    } else if (byte >= 0xf0 && byte <= 0xf4) {
      length = 4;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    if (valid && length >= 3) {
      // Refuse overlong forms, surrogates and code points past U+10FFFF.
      const auto second = static_cast<unsigned char>(text[i + 1]);
      valid = !(byte == 0xe0 && second < 0xa0) && !(byte == 0xed && second >= 0xa0) &&
              !(byte == 0xf0 && second < 0x90) && !(byte == 0xf4 && second >= 0x90);
    }
    if (!valid) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
      ++i;
      continue;
    }
    if (length == 1) {
      if (byte == '\n') {
        out += "\\n";
      } else if (byte == '\t') {
        out += "\\t";
      } else if (byte == '\\' || byte == '\'') {
        out += '\\';
        out += static_cast<char>(byte);
      } else if (byte < 0x20 || byte == 0x7f) {
        out += "\\x";
        out += kHex[byte >> 4];
        out += kHex[byte & 0xf];
      } else {
        out += static_cast<char>(byte);
      }
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

std::string Quoted(std::string_view text) { return "'" + Printable(text) + "'"; }

}  // namespace signet::policy::internal
