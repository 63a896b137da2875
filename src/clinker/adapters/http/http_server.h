// HttpServer: serves a transport-free handler (ports/http_types.h) over HTTP/1.1 with
// cpp-httplib.
//
// cpp-httplib gives each connection a pool thread for its whole keep-alive life, so the pool is
// sized for the expected number of concurrent clients and idle keep-alive connections are closed
// quickly (keep_alive_timeout), so idle clients cannot starve busy ones for long.
//
// Thread safety: Start and Stop from one thread; the handler runs on many threads at once.
// Errors: Start returns kUnavailable if the address cannot be bound (with the reason).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "clinker/core/error.h"
#include "clinker/ports/http_types.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace clinker::adapters {

class HttpServer {
 public:
  using Handler = std::function<ports::HttpResponse(const ports::HttpRequest&)>;

  struct Options {
    std::string listen_address = "127.0.0.1";
    int port = 8776;
    int threads = 32;
    std::chrono::seconds keep_alive_timeout{2};
    std::chrono::seconds read_timeout{10};
    std::size_t max_body_bytes = 1 << 20;
    int listen_backlog = 1024;  // Pending connections the kernel queues before accept.
  };

  HttpServer(Options options, Handler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // Binds and starts serving on a background thread.
  Result<void> Start();
  // Stops accepting, lets running requests finish, joins the thread. Idempotent.
  void Stop();

  int port() const { return bound_port_; }

 private:
  Options options_;
  Handler handler_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int bound_port_ = 0;
};

}  // namespace clinker::adapters
