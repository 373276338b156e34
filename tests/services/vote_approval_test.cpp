// enqueue_on_threshold (VoteService's threshold hook onto a JobQueue) on MemoryBackend,
// FakeBackend, RedisBackend and ClusterBackend: 20 racing voters queue exactly one approval
// job, with the event as its data; the hook called again adds nothing; a failed add reaches
// on_error with the event.
#include "support/backends.hpp"

#include <rediskit/services/vote_approval.hpp>

#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>
#include <vector>

using namespace rediskit;
using boost::system::error_code;
using rediskit::test::AllBackends;
using rediskit::test::BackendFixture;

BOOST_AUTO_TEST_SUITE(vote_approval)

BOOST_AUTO_TEST_CASE_TEMPLATE(crossing_the_threshold_queues_one_approval_job, B, AllBackends) {
  BackendFixture<B> f;
  JobQueue<B> approvals(f.backend, "auto-approval");
  VoteOptions o;
  o.threshold = 3;
  o.on_threshold = enqueue_on_threshold(approvals);
  VoteService<B> votes(f.backend, std::move(o));

  int done = 0;
  for (int i = 0; i < 20; ++i)
    votes.async_vote_on_suggestion("s1", "u" + std::to_string(i), +1,
                                   [&](error_code ec, VoteResult const&) {
                                     BOOST_TEST(!ec);
                                     ++done;
                                   });
  f.run_until([&] { return done == 20; });
  std::optional<Job> job;
  f.run_until([&] {  // the add runs after the vote that crossed, without holding it up
    auto [ec, j] = f.wait(approvals.async_get_job("suggestion-s1"));
    BOOST_TEST(!ec);
    job = std::move(j);
    return job.has_value();
  });
  BOOST_TEST_REQUIRE(job.has_value());
  BOOST_TEST(job->name == "approve");
  auto const data = job->template data<VoteApprovalJob>();
  BOOST_TEST(data.suggestion_id == "s1");
  BOOST_TEST(data.threshold == 3);
  BOOST_TEST(data.score == 3);  // the vote that crossed it: the third
  BOOST_TEST(data.up == 3);
  BOOST_TEST(!data.user_id.empty());

  // The hook again (another process's service, or your own call): the same id, no new job.
  VoteThresholdEvent again;
  again.suggestion_id = "s1";
  again.threshold = 3;
  std::vector<error_code> errors;
  enqueue_on_threshold(approvals, "approve", {},
                       [&](error_code e, VoteThresholdEvent const&) { errors.push_back(e); })(again);
  // The add runs before this read (one connection, in order; in process, posted before it).
  auto [ec, counts] = f.wait(approvals.async_get_job_counts());
  BOOST_TEST(errors.empty());  // a duplicate is not an error
  BOOST_TEST(!ec);
  BOOST_TEST(counts.waiting + counts.prioritized + counts.delayed == 1);
}

BOOST_AUTO_TEST_CASE(a_failed_add_reaches_on_error_with_the_event) {
  BackendFixture<FakeBackend> f;
  JobQueue<FakeBackend> approvals(f.backend, "auto-approval");
  std::vector<std::string> failed;
  auto hook = enqueue_on_threshold(approvals, "approve", {},
                                   [&](error_code ec, VoteThresholdEvent const& e) {
                                     BOOST_TEST(ec == make_error_code(Error::not_connected));
                                     failed.push_back(e.suggestion_id);
                                   });
  f.backend.drop_connection();
  VoteThresholdEvent e;
  e.suggestion_id = "s9";
  hook(e);
  f.run_until([&] { return !failed.empty(); });
  BOOST_TEST(failed == std::vector<std::string>{"s9"}, boost::test_tools::per_element());
  f.backend.restore_connection();
  auto [ec, job] = f.wait(approvals.async_get_job("suggestion-s9"));
  BOOST_TEST(!ec);
  BOOST_TEST(!job.has_value());  // nothing was queued
}

BOOST_AUTO_TEST_SUITE_END()
