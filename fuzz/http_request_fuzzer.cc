// Fuzz target: the request-parsing path of the HTTP front end. The input is the raw bytes a
// client sends on a connection: Beast's request parser reads them with the server's own limits
// (HttpServer::Options: header and body size), chunked or not; a request it completes is
// converted as the server converts it (beast_request.h: target decoding, query splitting) and
// handed to the whole API (routing, microversion negotiation, authentication, body and query
// validation, the handlers) on an in-memory world. Any crash, sanitizer report or uncaught
// exception is a finding; the HTTP status the API answers is not checked (any is fine), but a
// 5xx other than 503 is (the handlers must refuse bad input as a 4xx, never fail on it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "clinker/adapters/http/beast_request.h"
#include "clinker/adapters/http/http_server.h"
#include "clinker/services/microversion.h"

#include "fuzz_world.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  clinker::fuzz::FuzzWorld::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const clinker::adapters::HttpServer::Options limits;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
  parser.eager(true);
  boost::beast::error_code error;
  std::size_t used = 0;
  while (used < size && !parser.is_done()) {
    std::size_t n = parser.put(boost::asio::buffer(data + used, size - used), error);
    used += n;
    if (error || n == 0) {
      break;
    }
  }
  if (!parser.is_done() && parser.got_some() && (!error || error == http::error::need_more)) {
    error = {};
    parser.put_eof(error);  // The client closed the connection.
  }
  if (error || !parser.is_done()) {
    return 0;  // The server refuses it (400, 413, 431) or closes.
  }
  http::request<http::string_body> message = parser.release();
  clinker::ports::HttpRequest request =
      clinker::adapters::ToHttpRequest(message, "http://127.0.0.1:8776");
  (void)clinker::services::NegotiateMicroversion(request.Header("OpenStack-API-Version"));

  clinker::fuzz::FuzzWorld world;
  clinker::ports::HttpResponse response = world.Send(request);
  if (response.status >= 500 && response.status != 503) {
    std::fprintf(stderr,
                 "%s %s answered %d: %s\n",
                 request.method.c_str(),
                 request.path.c_str(),
                 response.status,
                 response.body.c_str());
    std::abort();
  }
  return 0;
}
