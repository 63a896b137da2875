#include "clinker/adapters/http/beast_request.h"

#include <cstddef>
#include <utility>

#include "clinker/core/hex.h"

namespace clinker::adapters {
namespace {

namespace http = boost::beast::http;

}  // namespace

// A '%' not followed by two hex digits stays as it is.
std::string PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int high = HexDigitValue(text[i + 1]);
      int low = HexDigitValue(text[i + 2]);
      if (high >= 0 && low >= 0) {
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

ports::HttpRequest ToHttpRequest(http::request<http::string_body>& message,
                                 const std::string& default_base_url) {
  ports::HttpRequest out;
  out.method = std::string(message.method_string());
  std::string_view target(message.target().data(), message.target().size());
  // Absolute form (a request to a proxy): keep the path and query only.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.starts_with(scheme)) {
      std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  std::size_t question = target.find('?');
  out.path = PercentDecode(target.substr(0, question), /*plus_is_space=*/false);
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      std::size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (pair.empty()) {
        continue;
      }
      std::size_t equals = pair.find('=');
      std::string_view key = pair.substr(0, equals);
      std::string_view value =
          equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
      out.query.emplace_back(PercentDecode(key, true), PercentDecode(value, true));
    }
  }
  for (const auto& field : message) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(message.body());
  // Links point back at the address the client used (the Host header), as Cinder does.
  auto host = message[http::field::host];
  out.base_url = host.empty() ? default_base_url : "http://" + std::string(host);
  return out;
}

}  // namespace clinker::adapters
