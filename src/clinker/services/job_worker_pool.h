// JobWorkerPool: worker threads that receive jobs from one JobQueue session, run a handler, and
// acknowledge each job only after the handler finished it. The ack-after-completion is what
// makes a dead worker's job come back to the queue for a survivor.
//
// Stop() lets every running job finish, then returns. Workers take no job after it, except that a
// worker already waiting in Receive may still take one published within `receive_wait`; that job
// also runs to completion and is acked. Jobs never taken stay queued, so nothing needs requeueing.
// Thread safe. Start and Stop are called once each, from one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clinker/ports/job_queue.h"

namespace clinker::services {

enum class JobOutcome {
  kDone,        // Finished (done, dropped as a duplicate, or failed for good): ack.
  kRetryLater,  // Could not be worked on now (lock busy, engine down): give it back, later.
};

class JobWorkerPool {
 public:
  using Handler = std::function<JobOutcome(const ports::Delivery&)>;

  struct Options {
    std::string name;  // For logs: "volume", "scheduler".
    int workers = 1;
    std::chrono::milliseconds receive_wait{250};
    std::chrono::milliseconds retry_delay{1000};  // Before a kRetryLater job is given back.
  };

  JobWorkerPool(ports::JobQueue& queue, Handler handler, Options options);
  JobWorkerPool(const JobWorkerPool&) = delete;
  JobWorkerPool& operator=(const JobWorkerPool&) = delete;
  ~JobWorkerPool();

  void Start();
  void Stop();

 private:
  void WorkerLoop(int worker_index);
  // Sleeps up to `duration`, returning early when Stop is called.
  void PauseUnlessStopping(std::chrono::milliseconds duration);

  ports::JobQueue& queue_;
  Handler handler_;
  Options options_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable stop_signal_;
  std::vector<std::thread> threads_;
};

}  // namespace clinker::services
