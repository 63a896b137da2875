#include "clinker/adapters/http/http_server.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <httplib.h>
#include <sys/socket.h>

namespace clinker::adapters {
namespace {

ports::HttpRequest ToRequest(const httplib::Request& in, const std::string& base_url) {
  ports::HttpRequest out;
  out.method = in.method;
  out.path = in.path;
  for (const auto& [key, value] : in.params) {
    out.query.emplace_back(key, value);
  }
  for (const auto& [key, value] : in.headers) {
    out.headers.emplace_back(key, value);
  }
  out.body = in.body;
  // Links point back at the address the client used (the Host header), as Cinder does.
  std::string host = in.get_header_value("Host");
  out.base_url = host.empty() ? base_url : "http://" + host;
  return out;
}

}  // namespace

HttpServer::HttpServer(Options options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  Stop();
}

Result<void> HttpServer::Start() {
  server_ = std::make_unique<httplib::Server>();
  int threads = options_.threads;
  server_->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  server_->set_keep_alive_timeout(options_.keep_alive_timeout.count());
  server_->set_keep_alive_max_count(1000);
  // Small JSON responses must not wait for delayed ACKs (Nagle): tens of ms per request otherwise.
  server_->set_tcp_nodelay(true);
  server_->set_read_timeout(options_.read_timeout.count(), 0);
  server_->set_payload_max_length(options_.max_body_bytes);
  std::string base_url = "http://" + options_.listen_address + ":";
  auto serve = [this, base_url](const httplib::Request& in, httplib::Response& out) {
    ports::HttpResponse response = handler_(ToRequest(in, base_url + std::to_string(bound_port_)));
    out.status = response.status;
    for (const auto& [key, value] : response.headers) {
      out.set_header(key, value);
    }
    if (!response.body.empty()) {
      out.set_content(response.body, response.content_type);
    }
  };
  server_->Get(".*", serve);
  server_->Post(".*", serve);
  server_->Put(".*", serve);
  server_->Delete(".*", serve);
  server_->Patch(".*", serve);
  server_->set_error_handler([](const httplib::Request&, httplib::Response& out) {
    // Only reached for errors httplib detects itself (e.g. 413, 400 on a broken request line).
    if (out.body.empty()) {
      std::string name = out.status == 413 ? "overLimit" : "badRequest";
      if (out.status == 404) {
        name = "itemNotFound";
      }
      out.set_content("{\"" + name + "\": {\"code\": " + std::to_string(out.status) +
                          ", \"message\": \"The request could not be handled.\"}}",
                      "application/json");
    }
  });
  // Debian's compiled cpp-httplib listens with a backlog of 5, so a burst of new connections
  // overflows the accept queue and clients wait a second for the SYN retry. The socket-options
  // hook sees the listening socket before bind (it must then set SO_REUSEADDR itself, as the
  // default hook does); listening again on it afterwards raises the backlog (Linux allows it).
  int listening_fd = -1;
  server_->set_socket_options([&listening_fd](int fd) {
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listening_fd = fd;
  });
  // Port 0 asks the kernel for a free port (tests); port() tells which.
  int bound =
      options_.port == 0
          ? server_->bind_to_any_port(options_.listen_address)
          : (server_->bind_to_port(options_.listen_address, options_.port) ? options_.port : -1);
  if (bound <= 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot listen on " + options_.listen_address + ":" +
                         std::to_string(options_.port) + ": " +
                         std::system_category().message(errno));
  }
  bound_port_ = bound;
  if (listening_fd >= 0 && listen(listening_fd, options_.listen_backlog) != 0) {
    return MakeError(
        ErrorCode::kUnavailable,
        std::string("cannot set the listen backlog: ") + std::system_category().message(errno));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return {};
}

void HttpServer::Stop() {
  if (server_) {
    server_->stop();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace clinker::adapters
