// The conversion of a request Beast has parsed into the transport-free ports::HttpRequest the API
// services take: the target split into a percent-decoded path and query parameters, the headers
// as received, the body moved over. Kept apart from the server so that the request-parsing path
// (Beast's parser with the server's limits, then this) is testable and fuzzable without sockets.
//
// Pure: no I/O, no state; thread safe. Never fails: any target Beast accepted gives a request
// (a '%' without two hex digits after it stays as it is; an empty query pair is skipped).
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "clinker/ports/http_types.h"

namespace clinker::adapters {

// Percent-decoding; in a query, '+' is a space (HTML forms), in a path it is itself.
std::string PercentDecode(std::string_view text, bool plus_is_space);

// `message`'s body is moved out. `default_base_url` is the base for links when the request has
// no Host header; with one, links point back at "http://<Host>", as Cinder's do.
ports::HttpRequest ToHttpRequest(
    boost::beast::http::request<boost::beast::http::string_body>& message,
    const std::string& default_base_url);

}  // namespace clinker::adapters
