// rediskit::enqueue_on_threshold: VoteService's threshold hook as a JobQueue job, seed 002's
// auto-approval (a suggestion that reaches N votes goes to `queue:auto-approval`).
//
//   rediskit::JobQueue<B> approvals(backend, "auto-approval");
//   rediskit::VoteOptions o;
//   o.threshold = 10;
//   o.on_threshold = rediskit::enqueue_on_threshold(approvals);   // job "approve", id
//   rediskit::VoteService<B> votes(backend, std::move(o));         //   "suggestion-<id>"
//   // a Worker on `approvals` gets job.data<rediskit::VoteApprovalJob>()
//
// The hook fires once per suggestion (VoteService decides it inside its vote script); the job
// it adds has the id "suggestion-<suggestion id>", so even a second call for the same
// suggestion (a second VoteService with its own hook, a hook called again by your code) adds
// no second job: JobQueue reports the duplicate and writes nothing. The add is asynchronous:
// the vote's handler does not wait for it. When it fails (the queue's backend is down), the
// approval is not queued: `on_error` hears it with the event, to log it or add it again later
// (VoteService::async_get_suggestion_votes shows `threshold_reached` for a reconciliation).
//
// Thread safety and lifetimes: the queue must outlive the votes whose hooks may run; the hook
// runs where VoteService calls it (the vote handler's executor).
#pragma once

#include <rediskit/services/job_queue.hpp>
#include <rediskit/services/vote_service.hpp>

#include <boost/describe/class.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace rediskit {

/// The data of an auto-approval job (JSON with the default codec: the members by name).
struct VoteApprovalJob {
  std::string suggestion_id;
  std::string user_id;  ///< whose vote crossed the threshold (empty: a recount did)
  std::int64_t up = 0;
  std::int64_t down = 0;
  std::int64_t score = 0;
  std::int64_t threshold = 0;
};
BOOST_DESCRIBE_STRUCT(VoteApprovalJob, (), (suggestion_id, user_id, up, down, score, threshold))

/// A VoteOptions::on_threshold that adds job `job_name` with id "suggestion-<id>" and the event
/// as a VoteApprovalJob to `queue` (any JobQueue<B, C>), with `options` (its job_id replaced).
/// `on_error(ec, event)`: the add failed (nothing queued); a duplicate is not an error.
template <class Queue>
std::function<void(VoteThresholdEvent const&)> enqueue_on_threshold(
    Queue& queue, std::string job_name = "approve", JobOptions options = {},
    std::function<void(boost::system::error_code, VoteThresholdEvent const&)> on_error = {}) {
  return [&queue, name = std::move(job_name), options = std::move(options),
          on_error = std::move(on_error)](VoteThresholdEvent const& e) {
    VoteApprovalJob const job{e.suggestion_id, e.user_id,      e.counts.up,
                              e.counts.down,   e.counts.score, e.threshold};
    JobOptions o = options;
    o.job_id = "suggestion-" + e.suggestion_id;
    queue.async_add(name, job, std::move(o),
                    [on_error, e](boost::system::error_code ec, auto const&) {
                      if (ec && on_error) on_error(ec, e);
                    });
  };
}

}  // namespace rediskit
