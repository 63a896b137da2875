#include "clinker/services/job_worker_pool.h"

#include "clinker/core/log.h"

namespace clinker::services {

JobWorkerPool::JobWorkerPool(ports::JobQueue& queue, Handler handler, Options options)
    : queue_(queue), handler_(std::move(handler)), options_(std::move(options)) {}

JobWorkerPool::~JobWorkerPool() {
  Stop();
}

void JobWorkerPool::Start() {
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

void JobWorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_signal_.notify_all();
  for (std::thread& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  threads_.clear();
}

void JobWorkerPool::PauseUnlessStopping(std::chrono::milliseconds duration) {
  std::unique_lock<std::mutex> lock(mutex_);
  stop_signal_.wait_for(lock, duration, [this] { return stopping_.load(); });
}

void JobWorkerPool::WorkerLoop(int worker_index) {
  while (!stopping_) {
    auto received = queue_.Receive(options_.receive_wait);
    if (!received) {
      log::Warn("job.receive_failed",
                {{"pool", options_.name}, {"error", received.error().ToString()}});
      PauseUnlessStopping(options_.retry_delay);
      continue;
    }
    if (!received->has_value()) {
      continue;
    }
    const ports::Delivery& delivery = **received;
    log::Debug("job.received",
               {{"pool", options_.name},
                {"worker", static_cast<long long>(worker_index)},
                {"job_id", delivery.job_id},
                {"redelivered", delivery.redelivered}});
    JobOutcome outcome = handler_(delivery);
    if (outcome == JobOutcome::kRetryLater) {
      PauseUnlessStopping(options_.retry_delay);
      if (auto requeued = queue_.Requeue(delivery); !requeued) {
        // The session still holds the job; it returns to the queue when the session ends.
        log::Warn("job.requeue_failed",
                  {{"job_id", delivery.job_id}, {"error", requeued.error().ToString()}});
      }
      continue;
    }
    if (auto acked = queue_.Ack(delivery); !acked) {
      // Unacked, the job will be delivered again; the stuck-job rules recognise it as done.
      log::Warn("job.ack_failed",
                {{"job_id", delivery.job_id}, {"error", acked.error().ToString()}});
    }
  }
}

}  // namespace clinker::services
