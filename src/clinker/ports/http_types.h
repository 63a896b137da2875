// Transport-free HTTP request and response: the API services are plain functions of these, which
// unit tests call without sockets, and the HTTP adapter converts its library's types to them.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace clinker::ports {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // Decoded path, without the query string.
  std::vector<std::pair<std::string, std::string>> query;    // Decoded, in request order.
  std::vector<std::pair<std::string, std::string>> headers;  // Names as received.
  std::string body;
  std::string base_url;  // "http://host:port", for links.

  // Case-insensitive header lookup; empty if absent.
  std::string Header(std::string_view name) const;
  // First value of a query parameter; empty and false if absent.
  bool QueryValue(std::string_view name, std::string* value) const;
};

struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
};

}  // namespace clinker::ports
