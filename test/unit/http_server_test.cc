// HttpServer over loopback sockets: what clients see of its limits, timeouts, ordering, refusals
// and drain.
//
// Method: each test starts a server on a free loopback port with short timeouts and a handler
// the test controls, and talks to it with raw sockets (so a client can send half a request, stop
// reading, or pipeline). Waits are bounded; timings are asserted only loosely (a lower bound where
// a timeout must not fire early, a generous upper bound where it must fire).
#include "clinker/adapters/http/http_server.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clinker/core/metrics.h"

namespace clinker::adapters {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kWait{5000};  // Upper bound for anything that must happen.

// One client connection with blocking I/O bounded by poll().
class Client {
 public:
  explicit Client(int port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  ~Client() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }

  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads what arrives until `until(buffer)` holds, the peer closes, or the deadline passes.
  // Returns false on the deadline.
  template <class Predicate>
  bool ReadUntil(Predicate until, milliseconds timeout = kWait) {
    auto deadline = Clock::now() + timeout;
    while (!until(buffer_)) {
      if (closed_) {
        return true;
      }
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        return false;
      }
      pollfd poll_fd{fd_, POLLIN, 0};
      if (poll(&poll_fd, 1, static_cast<int>(left)) <= 0) {
        continue;
      }
      char chunk[65536];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        closed_ = true;
      } else {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        received_ += static_cast<std::size_t>(n);
      }
    }
    return true;
  }

  struct Answer {
    int status = 0;
    std::string head;  // Status line and headers.
    std::string body;
  };

  // Reads one response (Content-Length framed); status 0 if none came.
  Answer ReadResponse(milliseconds timeout = kWait) {
    Answer answer;
    auto complete = [](const std::string& data) {
      std::size_t end = data.find("\r\n\r\n");
      if (end == std::string::npos) {
        return false;
      }
      return data.size() >= end + 4 + ContentLength(data.substr(0, end));
    };
    ReadUntil(complete, timeout);
    if (!complete(buffer_)) {
      return answer;
    }
    std::size_t end = buffer_.find("\r\n\r\n");
    answer.head = buffer_.substr(0, end);
    std::size_t length = ContentLength(answer.head);
    answer.body = buffer_.substr(end + 4, length);
    buffer_.erase(0, end + 4 + length);
    answer.status = std::stoi(answer.head.substr(9, 3));
    return answer;
  }

  // True once the server closed the connection (within the timeout); what arrived is kept.
  bool WaitClosed(milliseconds timeout = kWait) {
    ReadUntil([](const std::string&) { return false; }, timeout);
    return closed_;
  }

  std::size_t received() const { return received_; }

 private:
  static std::size_t ContentLength(const std::string& head) {
    std::string lower = head;
    for (char& c : lower) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    std::size_t at = lower.find("content-length:");
    return at == std::string::npos ? 0 : std::stoul(head.substr(at + 15));
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string buffer_;
  std::size_t received_ = 0;
};

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: api.example:8776\r\n" + extra + "\r\n";
}

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() {
    options_.listen_address = "127.0.0.1";
    options_.port = 0;
    options_.threads = 4;
    options_.io_threads = 2;  // Two loop threads: connections' strands must keep them apart.
    options_.header_timeout = milliseconds(400);
    options_.body_timeout = milliseconds(400);
    options_.keep_alive_timeout = milliseconds(3000);
    options_.write_timeout = milliseconds(400);
    options_.drain_timeout = milliseconds(3000);
    options_.max_header_bytes = 4096;
    options_.max_body_bytes = 1024;
  }

  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
  }

  // Starts the server; the handler echoes the path unless a test sets handler_.
  void StartServer() {
    HttpServer::Handler handler = [this](const ports::HttpRequest& request) {
      calls_.fetch_add(1);
      if (handler_) {
        return handler_(request);
      }
      ports::HttpResponse response;
      response.body = request.path;
      response.content_type = "text/plain";
      return response;
    };
    server_ = std::make_unique<HttpServer>(options_, handler);
    ASSERT_TRUE(server_->Start().has_value());
    ASSERT_GT(server_->port(), 0);
  }

  int port() const { return server_->port(); }

  HttpServer::Options options_;
  HttpServer::Handler handler_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<int> calls_{0};
};

TEST_F(HttpServerTest, DecodesPathQueryHeadersAndBaseUrl) {
  ports::HttpRequest seen;
  std::mutex mutex;
  handler_ = [&](const ports::HttpRequest& request) {
    std::lock_guard<std::mutex> lock(mutex);
    seen = request;
    return ports::HttpResponse{201, {{"X-Reply", "yes"}}, "{}", "application/json"};
  };
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(
      "POST /v3/p/a%20b+c?z=1&name=a+b%26c&z=2&flag HTTP/1.1\r\nHost: api.example:8776\r\n"
      "X-Custom: v\r\nContent-Length: 4\r\n\r\nbody"));
  Client::Answer answer = client.ReadResponse();
  ASSERT_EQ(answer.status, 201) << answer.head;
  EXPECT_NE(answer.head.find("X-Reply: yes"), std::string::npos) << answer.head;
  EXPECT_NE(answer.head.find("Content-Type: application/json"), std::string::npos);
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.path, "/v3/p/a b+c");
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(seen.query, (Pairs{{"z", "1"}, {"name", "a b&c"}, {"z", "2"}, {"flag", ""}}));
  EXPECT_EQ(seen.Header("x-custom"), "v");
  EXPECT_EQ(seen.body, "body");
  EXPECT_EQ(seen.base_url, "http://api.example:8776");
}

TEST_F(HttpServerTest, HandlerFailuresAndBodilessAnswersKeepTheConnectionUsable) {
  handler_ = [](const ports::HttpRequest& request) -> ports::HttpResponse {
    if (request.path == "/throw") {
      throw std::runtime_error("boom");
    }
    if (request.path == "/no-content") {
      return ports::HttpResponse{204, {}, "dropped", "text/plain"};
    }
    if (request.path == "/bad-status") {
      return ports::HttpResponse{1000, {}, "", "text/plain"};
    }
    return ports::HttpResponse{200, {}, "0123456789", "text/plain"};
  };
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/throw")));
  Client::Answer failed = client.ReadResponse();
  EXPECT_EQ(failed.status, 500);
  EXPECT_NE(failed.body.find("computeFault"), std::string::npos) << failed.body;
  ASSERT_TRUE(client.Send(Get("/no-content")));
  Client::Answer empty = client.ReadResponse();
  EXPECT_EQ(empty.status, 204);
  EXPECT_EQ(empty.body, "");
  ASSERT_TRUE(client.Send(Get("/bad-status")));
  Client::Answer invalid = client.ReadResponse();
  EXPECT_EQ(invalid.status, 500);
  EXPECT_NE(invalid.body.find("invalid response"), std::string::npos) << invalid.body;
  EXPECT_TRUE(client.WaitClosed());

  // HEAD: the Content-Length of the body left out, and no body bytes before the next answer.
  Client pipelined(port());
  ASSERT_TRUE(pipelined.Send("HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n" + Get("/after")));
  std::string raw;
  pipelined.ReadUntil([&](const std::string& data) {
    raw = data;
    return data.ends_with("0123456789");
  });
  std::size_t first_end = raw.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << raw;
  EXPECT_NE(raw.substr(0, first_end).find("Content-Length: 10"), std::string::npos) << raw;
  EXPECT_TRUE(raw.substr(first_end + 4).starts_with("HTTP/1.1 200 OK")) << raw;
}

TEST_F(HttpServerTest, OversizedHeaderIs431AndClosed) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/x", "X-Big: " + std::string(8192, 'a') + "\r\n")));
  Client::Answer answer = client.ReadResponse();
  EXPECT_EQ(answer.status, 431) << answer.head;
  EXPECT_NE(answer.body.find("\"code\":431"), std::string::npos) << answer.body;
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, OversizedBodyIs413AtOnceWithoutReadingIt) {
  options_.body_timeout = milliseconds(4000);
  StartServer();
  Client client(port());
  auto start = Clock::now();
  // Only the header: the answer must not wait for a body that never comes.
  ASSERT_TRUE(client.Send("POST /v3/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n"));
  Client::Answer answer = client.ReadResponse();
  EXPECT_EQ(answer.status, 413) << answer.head;
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  EXPECT_NE(answer.body.find("\"overLimit\""), std::string::npos) << answer.body;
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, ChunkedBodyGrowingPastTheLimitIs413) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(
      client.Send("POST /v3/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "800\r\n" +
                  std::string(0x800, 'b') + "\r\n0\r\n\r\n"));
  EXPECT_EQ(client.ReadResponse().status, 413);
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, ShortBodyTimesOutAndIsClosed) {
  StartServer();
  Client client(port());
  auto start = Clock::now();
  ASSERT_TRUE(client.Send("POST /v3/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345"));
  Client::Answer answer = client.ReadResponse();
  EXPECT_EQ(answer.status, 408) << answer.head;
  EXPECT_GE(Clock::now() - start, milliseconds(350));
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, HalfSentHeaderGets408AndIsClosedAfterTheHeaderTimeout) {
  StartServer();
  Client client(port());
  auto start = Clock::now();
  ASSERT_TRUE(client.Send("GET /v3/x HTTP/1.1\r\nHost: h\r\n"));
  Client::Answer answer = client.ReadResponse();
  EXPECT_EQ(answer.status, 408) << answer.head;
  EXPECT_GE(Clock::now() - start, milliseconds(350));
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(HttpServerTest, MalformedRequestIs400InCindersShape) {
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send("GARBAGE\r\n\r\n"));
  Client::Answer answer = client.ReadResponse();
  EXPECT_EQ(answer.status, 400) << answer.head;
  EXPECT_NE(answer.body.find("{\"badRequest\":{\"code\":400,\"message\":"), std::string::npos)
      << answer.body;
  EXPECT_TRUE(client.WaitClosed());
}

// Ambiguous framing is how requests are smuggled past a proxy: two Content-Length values, or a
// length beside chunked coding, are 400 and closed without reaching the handler. The same length
// twice is one length (RFC 9112 section 6.3).
TEST_F(HttpServerTest, AmbiguousBodyFramingIs400AndClosed) {
  StartServer();
  for (const char* framing : {"Content-Length: 2\r\nContent-Length: 3\r\n",
                              "Content-Length: 2, 3\r\n",
                              "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
                              "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"}) {
    Client client(port());
    ASSERT_TRUE(
        client.Send(std::string("POST /v3/x HTTP/1.1\r\nHost: h\r\n") + framing + "\r\n{}"));
    Client::Answer answer = client.ReadResponse();
    EXPECT_EQ(answer.status, 400) << framing << answer.head;
    EXPECT_NE(answer.body.find("\"badRequest\""), std::string::npos) << answer.body;
    EXPECT_TRUE(client.WaitClosed()) << framing;
  }
  EXPECT_EQ(calls_.load(), 0);
  Client same(port());
  ASSERT_TRUE(
      same.Send("POST /v3/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: "
                "2\r\n\r\n{}"));
  EXPECT_EQ(same.ReadResponse().status, 200);
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedSilently) {
  options_.keep_alive_timeout = milliseconds(300);
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/one")));
  EXPECT_EQ(client.ReadResponse().status, 200);
  std::size_t before = client.received();
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(client.received(), before);  // Nothing more: no 408 for an idle connection.
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  // The first request is the slowest: with several workers, answering in completion order
  // would put it last.
  handler_ = [](const ports::HttpRequest& request) {
    if (request.path == "/1") {
      std::this_thread::sleep_for(milliseconds(300));
    } else if (request.path == "/2") {
      std::this_thread::sleep_for(milliseconds(100));
    }
    return ports::HttpResponse{200, {}, request.path, "text/plain"};
  };
  StartServer();
  Client client(port());
  ASSERT_TRUE(client.Send(Get("/1") + Get("/2") + Get("/3")));
  for (const char* expected : {"/1", "/2", "/3"}) {
    Client::Answer answer = client.ReadResponse();
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.body, expected);
  }
}

TEST_F(HttpServerTest, SlowHandlerDoesNotBlockOtherConnections) {
  std::mutex mutex;
  std::condition_variable released;
  bool release = false;
  handler_ = [&](const ports::HttpRequest& request) {
    if (request.path == "/slow") {
      std::unique_lock<std::mutex> lock(mutex);
      released.wait_for(lock, kWait, [&] { return release; });
    }
    return ports::HttpResponse{200, {}, request.path, "text/plain"};
  };
  StartServer();
  Client slow(port());
  ASSERT_TRUE(slow.Send(Get("/slow")));
  std::this_thread::sleep_for(milliseconds(50));
  auto start = Clock::now();
  for (int i = 0; i < 3; ++i) {
    Client fast(port());
    ASSERT_TRUE(fast.Send(Get("/fast")));
    EXPECT_EQ(fast.ReadResponse().body, "/fast");
  }
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  released.notify_all();
  EXPECT_EQ(slow.ReadResponse().body, "/slow");
}

TEST_F(HttpServerTest, ClientThatStopsReadingIsClosedAfterTheWriteTimeoutWhileOthersAreServed) {
  const std::size_t kBig = 64u << 20;
  handler_ = [&](const ports::HttpRequest& request) {
    ports::HttpResponse response;
    response.content_type = "text/plain";
    response.body = request.path == "/big" ? std::string(kBig, 'x') : request.path;
    return response;
  };
  StartServer();
  std::uint64_t timeouts_before = metrics::Global().http_timeouts.load();
  Client stalled(port(), /*receive_buffer=*/4096);
  ASSERT_TRUE(stalled.Send(Get("/big")));
  // It reads nothing for a while; meanwhile others are answered.
  auto start = Clock::now();
  for (int i = 0; i < 3; ++i) {
    Client other(port());
    ASSERT_TRUE(other.Send(Get("/small")));
    EXPECT_EQ(other.ReadResponse().body, "/small");
  }
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  std::this_thread::sleep_for(milliseconds(1500));
  // The server gave up on it: what it reads now ends long before the body does.
  EXPECT_TRUE(stalled.WaitClosed(milliseconds(10000)));
  EXPECT_LT(stalled.received(), kBig);
  EXPECT_GT(metrics::Global().http_timeouts.load(), timeouts_before);
}

TEST_F(HttpServerTest, FullWorkerQueueIs503WithRetryAfter) {
  options_.threads = 1;
  options_.max_queued_requests = 1;
  std::mutex mutex;
  std::condition_variable released;
  bool release = false;
  std::atomic<int> started{0};
  handler_ = [&](const ports::HttpRequest& request) {
    started.fetch_add(1);
    std::unique_lock<std::mutex> lock(mutex);
    released.wait_for(lock, kWait, [&] { return release; });
    return ports::HttpResponse{200, {}, request.path, "text/plain"};
  };
  StartServer();
  Client running(port());
  ASSERT_TRUE(running.Send(Get("/running")));
  for (int i = 0; i < 200 && started.load() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(started.load(), 1);
  Client queued(port());
  ASSERT_TRUE(queued.Send(Get("/queued")));
  std::this_thread::sleep_for(milliseconds(100));
  Client refused(port());
  ASSERT_TRUE(refused.Send(Get("/refused")));
  Client::Answer answer = refused.ReadResponse();
  EXPECT_EQ(answer.status, 503) << answer.head;
  EXPECT_NE(answer.head.find("Retry-After: 1"), std::string::npos) << answer.head;
  EXPECT_NE(answer.body.find("serviceUnavailable"), std::string::npos);
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  released.notify_all();
  EXPECT_EQ(running.ReadResponse().body, "/running");
  EXPECT_EQ(queued.ReadResponse().body, "/queued");
}

TEST_F(HttpServerTest, ConnectionsBeyondTheCapAreRefused) {
  options_.max_connections = 3;
  StartServer();
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<Client>(port()));
    ASSERT_TRUE(held.back()->Send(Get("/held")));
    ASSERT_EQ(held.back()->ReadResponse().status, 200);
  }
  Client extra(port());
  Client::Answer answer = extra.ReadResponse();
  EXPECT_EQ(answer.status, 503) << answer.head;
  EXPECT_TRUE(extra.WaitClosed());
  // The held ones still work; once one goes, a new connection is served again.
  ASSERT_TRUE(held[0]->Send(Get("/again")));
  EXPECT_EQ(held[0]->ReadResponse().body, "/again");
  held.pop_back();
  std::this_thread::sleep_for(milliseconds(200));
  Client later(port());
  ASSERT_TRUE(later.Send(Get("/later")));
  EXPECT_EQ(later.ReadResponse().body, "/later");
}

TEST_F(HttpServerTest, StopFinishesRequestsInFlightAndClosesIdleConnections) {
  std::atomic<bool> in_handler{false};
  handler_ = [&](const ports::HttpRequest& request) {
    if (request.path == "/slow") {
      in_handler = true;
      std::this_thread::sleep_for(milliseconds(500));
    }
    return ports::HttpResponse{200, {}, request.path, "text/plain"};
  };
  StartServer();
  int bound = port();
  Client idle(bound);
  ASSERT_TRUE(idle.Send(Get("/idle")));
  ASSERT_EQ(idle.ReadResponse().status, 200);
  Client busy(bound);
  ASSERT_TRUE(busy.Send(Get("/slow")));
  for (int i = 0; i < 200 && !in_handler; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(in_handler);
  auto start = Clock::now();
  std::thread stopper([this] { server_->Stop(); });
  EXPECT_TRUE(idle.WaitClosed(milliseconds(1000)));
  Client::Answer answer = busy.ReadResponse();
  EXPECT_EQ(answer.status, 200);
  EXPECT_EQ(answer.body, "/slow");
  EXPECT_NE(answer.head.find("Connection: close"), std::string::npos) << answer.head;
  stopper.join();
  EXPECT_LT(Clock::now() - start, milliseconds(3000));
  Client after(bound);
  EXPECT_FALSE(after.connected());
}

TEST_F(HttpServerTest, StopIsBoundedByTheDrainTimeout) {
  options_.drain_timeout = milliseconds(300);
  // A body that never completes keeps the connection busy past the drain timeout.
  options_.body_timeout = milliseconds(10000);
  StartServer();
  Client uploading(port());
  ASSERT_TRUE(uploading.Send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n12"));
  std::this_thread::sleep_for(milliseconds(100));
  auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, milliseconds(2500));
  EXPECT_TRUE(uploading.WaitClosed(milliseconds(1000)));
}

TEST_F(HttpServerTest, PortInUseIsUnavailable) {
  StartServer();
  HttpServer::Options other = options_;
  other.port = port();
  HttpServer second(other, [](const ports::HttpRequest&) { return ports::HttpResponse{}; });
  auto started = second.Start();
  ASSERT_FALSE(started.has_value());
  EXPECT_EQ(started.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace clinker::adapters
