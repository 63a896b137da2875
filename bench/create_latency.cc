// bench_create_latency: create→available latency and create+delete throughput of a running
// Clinker API, measured from a client's point of view.
//
// Method: each client thread keeps one HTTP keep-alive connection; it creates a volume, polls
// GET until the volume is `available` (polling every --poll-us), deletes it, and polls until the
// volume is gone. Latencies are from the POST to the first GET that shows `available`.
// Prints p50/p99/max latency, cycles per second, and (with --pid) the daemon's RSS.
// A benchmark, not a test: it reports figures and asserts nothing beyond "every volume made it".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  std::string host = "127.0.0.1";
  int port = 8776;
  std::string project = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
  int count = 200;
  int clients = 1;
  int poll_us = 200;
  int timeout_s = 30;
  int pid = 0;
  bool keep = false;
};

long RssKib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  auto index =
      static_cast<std::size_t>(std::lround(fraction * static_cast<double>(values.size() - 1)));
  return values[std::min(index, values.size() - 1)];
}

class Client {
 public:
  explicit Client(const Settings& settings)
      : settings_(settings), http_(settings.host, settings.port) {
    http_.set_keep_alive(true);
    http_.set_tcp_nodelay(true);
    headers_ = {{"X-Auth-Token", "bench:" + settings.project}};
    base_ = "/v3/" + settings.project + "/volumes";
  }

  // Returns the volume id, or "" on failure.
  std::string Create() {
    auto response = http_.Post(base_, headers_, R"({"volume": {"size": 1}})", "application/json");
    if (!response || response->status != 202) {
      return "";
    }
    return nlohmann::json::parse(response->body)["volume"]["id"].get<std::string>();
  }

  // Polls until the volume shows `wanted` ("" means: until it is gone). False on timeout/error.
  bool WaitFor(const std::string& id, const std::string& wanted) {
    auto deadline = Clock::now() + std::chrono::seconds(settings_.timeout_s);
    while (Clock::now() < deadline) {
      auto response = http_.Get(base_ + "/" + id, headers_);
      if (!response) {
        return false;
      }
      if (wanted.empty() && response->status == 404) {
        return true;
      }
      if (!wanted.empty() && response->status == 200) {
        std::string status =
            nlohmann::json::parse(response->body)["volume"]["status"].get<std::string>();
        if (status == wanted) {
          return true;
        }
        if (status == "error") {
          return false;
        }
      }
      std::this_thread::sleep_for(std::chrono::microseconds(settings_.poll_us));
    }
    return false;
  }

  bool Delete(const std::string& id) {
    auto response = http_.Delete(base_ + "/" + id, headers_);
    return response && response->status == 202;
  }

 private:
  const Settings& settings_;
  httplib::Client http_;
  httplib::Headers headers_;
  std::string base_;
};

int Run(int argc, char** argv) {
  Settings settings;
  CLI::App app(
      "Measures create→available latency and create+delete cycles per second of a "
      "running Clinker API (noauth).");
  app.add_option("--host", settings.host, "API address");
  app.add_option("--port", settings.port, "API port");
  app.add_option("--project", settings.project, "Project id (hex)");
  app.add_option("--count", settings.count, "Volumes per client");
  app.add_option("--clients", settings.clients, "Concurrent clients");
  app.add_option("--poll-us", settings.poll_us, "Pause between status polls, microseconds");
  app.add_option("--timeout-s", settings.timeout_s, "Give up on one volume after this long");
  app.add_option("--pid", settings.pid, "Daemon pid, to report its resident memory");
  app.add_flag(
      "--keep", settings.keep, "Keep the volumes (no deletes): measures memory with many volumes");
  CLI11_PARSE(app, argc, argv);

  long rss_before = settings.pid > 0 ? RssKib(settings.pid) : -1;
  std::mutex mutex;
  std::vector<double> latencies_ms;
  std::atomic<int> failures{0};
  auto started = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(settings.clients));
  for (int c = 0; c < settings.clients; ++c) {
    threads.emplace_back([&] {
      Client client(settings);
      for (int i = 0; i < settings.count; ++i) {
        auto begin = Clock::now();
        std::string id = client.Create();
        if (id.empty() || !client.WaitFor(id, "available")) {
          ++failures;
          continue;
        }
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
        {
          std::lock_guard<std::mutex> lock(mutex);
          latencies_ms.push_back(ms);
        }
        if (settings.keep) {
          continue;
        }
        if (!client.Delete(id) || !client.WaitFor(id, "")) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  int cycles = static_cast<int>(latencies_ms.size());
  std::printf("clients=%d volumes=%d failures=%d elapsed_s=%.2f\n",
              settings.clients,
              cycles,
              failures.load(),
              seconds);
  std::printf("create_to_available_ms p50=%.2f p99=%.2f max=%.2f\n",
              Percentile(latencies_ms, 0.50),
              Percentile(latencies_ms, 0.99),
              Percentile(latencies_ms, 1.0));
  std::printf("%s=%.1f\n",
              settings.keep ? "creates_per_s" : "create_delete_cycles_per_s",
              seconds > 0 ? cycles / seconds : 0.0);
  if (settings.pid > 0) {
    std::printf("daemon_rss_kib before=%ld after=%ld\n", rss_before, RssKib(settings.pid));
  }
  return failures.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_create_latency: %s\n", error.what());
    return 1;
  }
}
