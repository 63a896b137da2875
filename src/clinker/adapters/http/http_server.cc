#include "clinker/adapters/http/http_server.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "clinker/adapters/http/beast_request.h"
#include "clinker/core/log.h"
#include "clinker/core/metrics.h"

namespace clinker::adapters::http_detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Tcp = net::ip::tcp;
using IoError = boost::system::error_code;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

// What a connection's client may send while its request is looked at: bytes read and thrown
// away after an error response, so that closing does not reset the connection (a reset can
// destroy the response before the client reads it).
constexpr std::size_t kLingerBytes = 1 << 20;
constexpr std::chrono::milliseconds kLingerTime{500};
// After an accept failure for lack of descriptors or memory, accepting again at once would spin.
constexpr std::chrono::milliseconds kAcceptRetry{100};

// Cinder's fault names (cinder/api/openstack/wsgi.py Fault): statuses without one are
// computeFault.
std::string FaultName(int status) {
  switch (status) {
    case 400:
      return "badRequest";
    case 413:
      return "overLimit";
    case 503:
      return "serviceUnavailable";
    default:
      return "computeFault";
  }
}

ports::HttpResponse Fault(int status, std::string_view message) {
  ports::HttpResponse response;
  response.status = status;
  nlohmann::json body;
  body[FaultName(status)] = {{"code", status}, {"message", message}};
  response.body = body.dump();
  return response;
}

// A fixed set of threads running tasks from a bounded queue.
class WorkerPool {
 public:
  WorkerPool(int threads, std::size_t capacity) : capacity_(capacity) {
    threads_.reserve(static_cast<std::size_t>(threads));
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  ~WorkerPool() { Stop(); }

  // False when the queue holds `capacity` tasks already, or the pool is stopping.
  bool TrySubmit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ || tasks_.size() >= capacity_) {
        return false;
      }
      tasks_.push_back(std::move(task));
    }
    wake_.notify_one();
    return true;
  }

  // Drops the tasks not started, waits for the running ones. Idempotent.
  void Stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      dropped.swap(tasks_);
    }
    wake_.notify_all();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) {
        thread.join();
      }
    }
    // Destroyed outside the lock: a task owns its connection, whose destructor may take locks.
    dropped.clear();
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) {
          return;
        }
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

class Session;

// The listening socket, the event loop, the workers and the registry of open connections.
class Server {
 public:
  Server(HttpServer::Options options, HttpServer::Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // HttpServer's destructor stops it first.
  ~Server() = default;

  Result<void> Start();
  void Stop();

  int port() const { return port_; }

  const HttpServer::Options& options() const { return options_; }

  const std::string& default_base_url() const { return default_base_url_; }

  bool stopping() const { return stopping_.load(); }

  // Runs the handler; an exception becomes a 500 (the connection stays usable).
  ports::HttpResponse Handle(const ports::HttpRequest& request) const {
    try {
      return handler_(request);
    } catch (const std::exception& e) {
      log::Error("http.handler_failed",
                 {{"error", std::string_view(e.what())}, {"path", request.path}});
      return Fault(500,
                   "The server has either erred or is incapable of performing the "
                   "requested operation.");
    }
  }

  bool Submit(std::function<void()> task) { return workers_->TrySubmit(std::move(task)); }

  void Register(const std::shared_ptr<Session>& session);
  void Unregister(const Session* session);

 private:
  void Accept();
  void OnAccept(IoError error, Tcp::socket socket);
  static void RefuseConnection(Tcp::socket socket);

  const HttpServer::Options options_;
  const HttpServer::Handler handler_;
  std::string default_base_url_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool stopped_ = false;

  // Declared before the event loop: connections left in it when it is destroyed unregister.
  std::mutex sessions_mutex_;
  std::condition_variable sessions_changed_;
  std::unordered_map<const Session*, std::weak_ptr<Session>> sessions_;
  std::atomic<int> open_connections_{0};

  net::io_context io_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  net::strand<net::io_context::executor_type> accept_strand_{net::make_strand(io_)};
  Tcp::acceptor acceptor_{accept_strand_};
  net::steady_timer accept_retry_{accept_strand_};
  std::vector<std::thread> io_threads_;
  std::unique_ptr<WorkerPool> workers_;
};

// One connection. Every member is touched on the connection's strand only (the socket's
// executor); workers hand responses back with a post to it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server* server, Tcp::socket socket)
      : server_(server),
        socket_(std::move(socket)),
        executor_(socket_.get_executor()),
        timer_(executor_) {}

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  ~Session() { server_->Unregister(this); }

  // The connection's strand; any thread may post to it.
  const net::any_io_executor& executor() const { return executor_; }

  void Start() { WaitForRequest(); }

  // Stop(): a connection between requests (or in the middle of a header) is closed; one whose
  // request was read is answered, with Connection: close.
  void Drain() {
    draining_ = true;
    if (phase_ == Phase::kIdle || phase_ == Phase::kHeader) {
      Close();
    }
  }

  void Close() {
    if (phase_ == Phase::kClosed) {
      return;
    }
    phase_ = Phase::kClosed;
    timer_.cancel();
    IoError ignored;
    socket_.shutdown(Tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  enum class Phase { kIdle, kHeader, kBody, kHandling, kWrite, kLinger, kClosed };

  // Arms the one timer of the connection for the current phase: when it fires, the pending
  // operation is cancelled and its handler sees timed_out_.
  void Arm(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    ++timer_generation_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), generation = timer_generation_](IoError ec) {
      if (ec || generation != self->timer_generation_ || self->phase_ == Phase::kClosed) {
        return;
      }
      self->timed_out_ = true;
      IoError ignored;
      self->socket_.cancel(ignored);
    });
  }

  void Disarm() {
    ++timer_generation_;
    timer_.cancel();
  }

  void WaitForRequest() {
    if (draining_ || server_->stopping()) {
      Close();
      return;
    }
    if (buffer_.size() > 0) {
      ReadHeader();  // A pipelined request is already here.
      return;
    }
    // No thread waits: one read of whatever arrives first, bounded by the idle timeout.
    phase_ = Phase::kIdle;
    Arm(server_->options().keep_alive_timeout);
    socket_.async_read_some(
        buffer_.prepare(4096),
        [self = shared_from_this()](IoError ec, std::size_t n) { self->OnFirstBytes(ec, n); });
  }

  void OnFirstBytes(IoError ec, std::size_t n) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    Disarm();
    if (timed_out_ || ec) {
      Close();  // Idle too long, or the client went away: nothing to answer.
      return;
    }
    buffer_.commit(n);
    ReadHeader();
  }

  void ReadHeader() {
    phase_ = Phase::kHeader;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(server_->options().max_header_bytes, UINT32_MAX)));
    parser_->body_limit(server_->options().max_body_bytes);
    Arm(server_->options().header_timeout);
    http::async_read_header(
        socket_, buffer_, *parser_, [self = shared_from_this()](IoError ec, std::size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(IoError ec) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    Disarm();
    if (timed_out_) {
      metrics::Global().http_timeouts.fetch_add(1, std::memory_order_relaxed);
      Refuse(408, "The request header was not received in time.");
      return;
    }
    if (ec == http::error::header_limit) {
      Refuse(431,
             "The request header is larger than " +
                 std::to_string(server_->options().max_header_bytes) + " bytes.");
      return;
    }
    if (ec == http::error::body_limit) {
      RefuseTooLarge();
      return;
    }
    if (ec) {
      if (ec == http::error::end_of_stream || ec == net::error::eof ||
          ec == net::error::connection_reset || ec == net::error::operation_aborted) {
        Close();
      } else {
        Refuse(400, "Malformed request: " + ec.message() + ".");
      }
      return;
    }
    if (parser_->is_done()) {
      Dispatch();
      return;
    }
    if (auto expect = parser_->get()[http::field::expect];
        !expect.empty() && beast::iequals(expect, "100-continue")) {
      // The client waits for this before it sends the body (curl does for large bodies).
      phase_ = Phase::kWrite;
      Arm(server_->options().write_timeout);
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(socket_,
                       net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](IoError write_error, std::size_t) {
                         if (self->phase_ == Phase::kClosed) {
                           return;
                         }
                         self->Disarm();
                         if (write_error || self->timed_out_) {
                           self->Close();
                           return;
                         }
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    phase_ = Phase::kBody;
    Arm(server_->options().body_timeout);
    http::async_read(
        socket_, buffer_, *parser_, [self = shared_from_this()](IoError ec, std::size_t) {
          self->OnBody(ec);
        });
  }

  void OnBody(IoError ec) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    Disarm();
    if (timed_out_) {
      metrics::Global().http_timeouts.fetch_add(1, std::memory_order_relaxed);
      Refuse(408, "The request body was not received in time.");
      return;
    }
    if (ec == http::error::body_limit) {
      RefuseTooLarge();
      return;
    }
    if (ec) {
      if (ec == http::error::partial_message || ec == net::error::eof ||
          ec == net::error::connection_reset || ec == net::error::operation_aborted) {
        Close();
      } else {
        Refuse(400, "Malformed request body: " + ec.message() + ".");
      }
      return;
    }
    Dispatch();
  }

  void RefuseTooLarge() {
    Refuse(413,
           "The request body is larger than " + std::to_string(server_->options().max_body_bytes) +
               " bytes.");
  }

  // Hands the request to a worker; reading stops until its response is written, so requests of
  // one connection are answered in order.
  void Dispatch() {
    Request message = parser_->release();
    parser_.reset();
    bool keep_alive = message.keep_alive() && !draining_;
    bool head = message.method() == http::verb::head;
    ports::HttpRequest request = ToHttpRequest(message, server_->default_base_url());
    phase_ = Phase::kHandling;
    auto& counters = metrics::Global();
    counters.http_requests_in_flight.fetch_add(1, std::memory_order_relaxed);
    bool queued = server_->Submit(
        [self = shared_from_this(), request = std::move(request), keep_alive, head]() mutable {
          ports::HttpResponse response = self->server_->Handle(request);
          metrics::Global().http_requests_in_flight.fetch_sub(1, std::memory_order_relaxed);
          metrics::Global().http_requests.fetch_add(1, std::memory_order_relaxed);
          auto executor = self->executor();
          net::post(
              executor,
              [self = std::move(self), response = std::move(response), keep_alive, head]() mutable {
                self->Write(std::move(response), keep_alive, head);
              });
        });
    if (!queued) {
      counters.http_requests_in_flight.fetch_sub(1, std::memory_order_relaxed);
      counters.http_refusals.fetch_add(1, std::memory_order_relaxed);
      ports::HttpResponse busy = Fault(503, "The server is busy; retry later.");
      busy.headers.emplace_back("Retry-After", "1");
      Write(std::move(busy), keep_alive, head);
    }
  }

  // An error the server answers itself: the connection is closed after it.
  void Refuse(int status, const std::string& message) {
    metrics::Global().http_refusals.fetch_add(1, std::memory_order_relaxed);
    parser_.reset();
    Write(Fault(status, message), /*keep_alive=*/false, /*head=*/false, /*linger=*/true);
  }

  void Write(ports::HttpResponse response, bool keep_alive, bool head, bool linger = false) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    keep_alive = keep_alive && !draining_ && !server_->stopping();
    try {
      response_ = ToBeast(std::move(response), keep_alive, head);
    } catch (const std::exception& e) {
      // Beast refuses a status outside 100-999 or a header it cannot write; the client gets a
      // 500 rather than the process an exception on its event loop.
      log::Error("http.bad_response", {{"error", std::string_view(e.what())}});
      response_ = ToBeast(Fault(500, "The server produced an invalid response."), false, head);
      keep_alive = false;
    }
    phase_ = Phase::kWrite;
    Arm(server_->options().write_timeout);
    http::async_write(socket_,
                      response_,
                      [self = shared_from_this(), keep_alive, linger](IoError ec, std::size_t) {
                        self->OnWrite(ec, keep_alive, linger);
                      });
  }

  static Response ToBeast(ports::HttpResponse response, bool keep_alive, bool head) {
    Response out;
    out.version(11);
    out.result(static_cast<unsigned>(response.status));
    for (auto& [name, value] : response.headers) {
      out.insert(name, value);
    }
    int status = response.status;
    if (status < 200 || status == 204 || status == 304) {
      response.body.clear();  // These statuses have no body (Beast would throw on one).
    }
    if (!response.body.empty()) {
      out.set(http::field::content_type, response.content_type);
    }
    out.body() = std::move(response.body);
    out.keep_alive(keep_alive);
    out.prepare_payload();
    if (head) {
      out.body().clear();  // The Content-Length stays: what a GET would have sent.
    }
    return out;
  }

  void OnWrite(IoError ec, bool keep_alive, bool linger) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    Disarm();
    if (timed_out_) {
      metrics::Global().http_timeouts.fetch_add(1, std::memory_order_relaxed);
      Close();  // The client does not read its response.
      return;
    }
    if (ec) {
      Close();
      return;
    }
    response_ = Response{};
    if (keep_alive) {
      WaitForRequest();
    } else if (linger) {
      Linger();
    } else {
      Close();
    }
  }

  // After an error response, the client may still be sending: read and drop it for a moment,
  // with our side shut down, so the close sends FIN, not RST.
  void Linger() {
    IoError ignored;
    socket_.shutdown(Tcp::socket::shutdown_send, ignored);
    phase_ = Phase::kLinger;
    Arm(kLingerTime);
    ReadAndDrop();
  }

  void ReadAndDrop() {
    buffer_.consume(buffer_.size());
    socket_.async_read_some(buffer_.prepare(16384),
                            [self = shared_from_this()](IoError ec, std::size_t n) {
                              if (self->phase_ == Phase::kClosed) {
                                return;
                              }
                              self->lingered_ += n;
                              if (ec || self->timed_out_ || self->lingered_ > kLingerBytes) {
                                self->Close();
                                return;
                              }
                              self->ReadAndDrop();
                            });
  }

  Server* const server_;
  Tcp::socket socket_;
  const net::any_io_executor executor_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response response_;
  Phase phase_ = Phase::kIdle;
  bool timed_out_ = false;
  bool draining_ = false;
  std::uint64_t timer_generation_ = 0;
  std::size_t lingered_ = 0;
};

Result<void> Server::Start() {
  IoError ec;
  auto address = net::ip::make_address(options_.listen_address, ec);
  auto fail = [this](const std::string& what, const IoError& error) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot listen on " + options_.listen_address + ":" +
                         std::to_string(options_.port) + ": " + what + error.message());
  };
  if (ec) {
    return fail("bad address: ", ec);
  }
  Tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor_.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor_.listen(options_.listen_backlog, ec);
  }
  if (ec) {
    IoError ignored;
    acceptor_.close(ignored);
    return fail("", ec);
  }
  port_ = acceptor_.local_endpoint(ec).port();
  default_base_url_ = "http://" + options_.listen_address + ":" + std::to_string(port_);
  workers_ = std::make_unique<WorkerPool>(
      std::max(1, options_.threads),
      static_cast<std::size_t>(std::max(1, options_.max_queued_requests)));
  work_.emplace(io_.get_executor());
  net::dispatch(accept_strand_, [this] { Accept(); });
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([this] {
      // A handler that throws (allocation failure) loses its connection, not the event loop.
      while (true) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          log::Error("http.event_loop_error", {{"error", std::string_view(e.what())}});
        }
      }
    });
  }
  started_ = true;
  return {};
}

void Server::Accept() {
  acceptor_.async_accept(net::make_strand(io_), [this](IoError ec, Tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void Server::OnAccept(IoError ec, Tcp::socket socket) {
  if (!acceptor_.is_open() || ec == net::error::operation_aborted) {
    return;
  }
  if (ec) {
    // Out of descriptors (or memory): the pending connection stays in the backlog; try again
    // shortly instead of spinning on the same error.
    log::Warn("http.accept_failed", {{"error", ec.message()}});
    accept_retry_.expires_after(kAcceptRetry);
    accept_retry_.async_wait([this](IoError wait_error) {
      if (!wait_error && acceptor_.is_open()) {
        Accept();
      }
    });
    return;
  }
  if (open_connections_.load() >= options_.max_connections) {
    RefuseConnection(std::move(socket));
  } else {
    IoError ignored;
    // Small JSON responses must not wait for delayed ACKs (Nagle): tens of ms per request.
    socket.set_option(Tcp::no_delay(true), ignored);
    auto session = std::make_shared<Session>(this, std::move(socket));
    Register(session);
    net::dispatch(session->executor(), [session] { session->Start(); });
  }
  Accept();
}

// Over max_connections: a short 503 if the socket takes it at once, then close.
void Server::RefuseConnection(Tcp::socket socket) {
  static const std::string kRefusal = [] {
    std::string body = Fault(503, "Too many open connections; retry later.").body;
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  metrics::Global().http_refusals.fetch_add(1, std::memory_order_relaxed);
  IoError ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(net::buffer(kRefusal.data(), kRefusal.size()), ignored);
  socket.shutdown(Tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void Server::Register(const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  sessions_.emplace(session.get(), session);
  open_connections_.fetch_add(1);
  metrics::Global().http_open_connections.fetch_add(1, std::memory_order_relaxed);
}

void Server::Unregister(const Session* session) {
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    if (sessions_.erase(session) == 0) {
      return;
    }
    open_connections_.fetch_sub(1);
    metrics::Global().http_open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  sessions_changed_.notify_all();
}

void Server::Stop() {
  if (!started_ || stopped_) {
    return;
  }
  stopped_ = true;
  stopping_ = true;
  // 1. No new connections.
  std::promise<void> closed;
  net::post(accept_strand_, [this, &closed] {
    IoError ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
    closed.set_value();
  });
  closed.get_future().wait();
  // 2. Close idle connections; the others close once their response is written.
  auto for_each_session = [this](auto action) {
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard<std::mutex> lock(sessions_mutex_);
      for (const auto& [raw, weak] : sessions_) {
        if (auto session = weak.lock()) {
          open.push_back(std::move(session));
        }
      }
    }
    for (auto& session : open) {
      auto executor = session->executor();
      net::post(executor, [session = std::move(session), action] { action(*session); });
    }
  };
  for_each_session([](Session& session) { session.Drain(); });
  // 3. Wait for them, bounded.
  auto all_closed = [this] {
    return sessions_.empty();
  };
  std::unique_lock<std::mutex> lock(sessions_mutex_);
  if (!sessions_changed_.wait_for(lock, options_.drain_timeout, all_closed)) {
    log::Warn("http.drain_timeout",
              {{"open_connections", static_cast<long long>(sessions_.size())}});
    lock.unlock();
    for_each_session([](Session& session) { session.Close(); });
    lock.lock();
    sessions_changed_.wait_for(lock, std::chrono::seconds(1), all_closed);
  }
  lock.unlock();
  // 4. Requests still queued belong to closed connections; running ones finish.
  workers_->Stop();
  work_.reset();
  io_.stop();
  for (std::thread& thread : io_threads_) {
    thread.join();
  }
}

}  // namespace clinker::adapters::http_detail

namespace clinker::adapters {

HttpServer::HttpServer(Options options, Handler handler)
    : impl_(std::make_unique<http_detail::Server>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  try {
    Stop();
  } catch (...) {
    // Only a failure to lock or join (std::system_error) can get here; nothing is left to do.
    log::Error("http.stop_failed");
  }
}

Result<void> HttpServer::Start() {
  return impl_->Start();
}

void HttpServer::Stop() {
  impl_->Stop();
}

int HttpServer::port() const {
  return impl_->port();
}

}  // namespace clinker::adapters
