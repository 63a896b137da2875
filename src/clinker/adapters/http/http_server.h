// HttpServer: serves a transport-free handler (ports/http_types.h) over HTTP/1.1 with
// Boost.Beast on an Asio event loop.
//
// Design: a small number of I/O threads (Options::io_threads) run every connection's reads,
// parsing and writes; a connection waiting for its next request costs a socket and a few hundred
// bytes, never a thread. The handler is blocking (it calls the database), so a complete request is
// handed to a bounded pool of Options::threads workers and its response is written back on the
// connection's strand. One request of a connection is handled at a time: pipelined requests wait
// in the connection's buffer and are answered in order.
//
// Refusals the server makes itself (the handler never sees these requests) have Cinder's error
// shape, {"<fault>": {"code": N, "message": "..."}}:
// - a request header not complete within header_timeout of its first byte: 408, then close;
// - a body not complete within body_timeout of its header (e.g. shorter than its
//   Content-Length): 408, then close;
// - a header larger than max_header_bytes: 431, then close;
// - a Content-Length above max_body_bytes: 413 at once, without reading the body, then close
//   (a chunked body that grows past it: 413 when it does);
// - a malformed request: 400, then close;
// - the worker queue full (max_queued_requests waiting): 503 with Retry-After;
// - more than max_connections open: the new connection gets a 503 (best effort) and is closed.
// A connection idle for keep_alive_timeout between requests (or after connecting) is closed
// silently; one whose client does not take its response within write_timeout is closed.
//
// Thread safety: Start and Stop from one thread; the handler runs on up to `threads` threads at
// once. Errors: Start returns kUnavailable if the address cannot be bound (with the reason).
// Stop drains: it stops accepting, closes idle connections, lets requests being handled finish and
// their responses be written (for at most drain_timeout), then closes everything and returns.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "clinker/core/error.h"
#include "clinker/ports/http_types.h"

namespace clinker::adapters {
namespace http_detail {
class Server;
}  // namespace http_detail

class HttpServer {
 public:
  using Handler = std::function<ports::HttpResponse(const ports::HttpRequest&)>;

  struct Options {
    std::string listen_address = "127.0.0.1";
    int port = 8776;                 // 0: a free port (see port()).
    int threads = 32;                // Handler workers.
    int io_threads = 1;              // Threads running the event loop.
    int max_queued_requests = 1024;  // Complete requests waiting for a worker; beyond: 503.
    int max_connections = 10000;     // Open connections; beyond: refused.
    int listen_backlog = 1024;       // Pending connections the kernel queues before accept.
    std::chrono::milliseconds header_timeout{std::chrono::seconds(10)};
    std::chrono::milliseconds body_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds keep_alive_timeout{std::chrono::seconds(60)};
    std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
    std::size_t max_header_bytes = 65536;
    std::size_t max_body_bytes = 1048576;
  };

  HttpServer(Options options, Handler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // Binds, listens and starts the I/O threads and the workers.
  Result<void> Start();
  // Drains (see above) and joins every thread. Idempotent.
  void Stop();

  // The bound port (the one the kernel chose for port 0); valid after Start.
  int port() const;

 private:
  std::unique_ptr<http_detail::Server> impl_;
};

}  // namespace clinker::adapters
