// cluster::for_each_key (the key_specs table of rediskit/cluster/route.hpp) against a real
// redis-server's COMMAND GETKEYS: for every command type rediskit has (with its options set and
// unset, and with names that look like keywords: a group called "streams"), and for a sample
// command line of every entry of the table. In one pipelined request to the CTest fixture's
// server (COMMAND GETKEYS only parses: it reads and writes no key).
#include "support/test_redis.hpp"

#include <rediskit/cluster/route.hpp>
#include <rediskit/commands.hpp>
#include <rediskit/connection.hpp>
#include <rediskit/script.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
using namespace rediskit;
using namespace std::chrono_literals;

namespace {

// A command line the table is asked about as it is (for the table's entries that no command
// type of rediskit writes yet).
struct Raw {
  std::vector<std::string> args;
  using reply_type = int;
  template <class W>
  void write(W& w) const {
    for (auto const& a : args)
      w(std::string_view(a));
  }
};

Raw raw(std::string_view line) {
  Raw r;
  std::istringstream in{std::string(line)};
  for (std::string a; in >> a;)
    r.args.push_back(a);
  return r;
}

struct Case {
  std::vector<std::string> argv;
  std::vector<std::string> ours;  // cluster::for_each_key's keys, in order
};

struct Cases {
  std::vector<Case> all;
  template <Command C>
  Cases& add(C const& c) {
    Case k{rediskit::argv(c), {}};
    cluster::for_each_key(c, [&](std::string_view key) { k.ours.emplace_back(key); });
    all.push_back(std::move(k));
    return *this;
  }
};

auto const script =
    make_script<long long>("return 1", [](ScriptContext auto&) -> long long { return 1; });

std::string join(std::vector<std::string> const& v) {
  std::string out = "[";
  for (auto const& s : v)
    out += (out.size() > 1 ? " " : "") + s;
  return out + "]";
}

// Every command type in include/rediskit/cmd/ (and cmd::evalsha), its options on and off.
Cases typed_cases() {
  Cases c;
  auto const lo = ScoreBound::excl(1), hi = ScoreBound::pos_inf();
  // strings
  c.add(cmd::get{"k"}).add(cmd::set{.key = "k", .value = "v"});
  c.add(cmd::set{.key = "k", .value = "v", .ttl = 5s, .nx = true});
  c.add(cmd::set{.key = "k", .value = "v", .xx = true, .keep_ttl = true});
  c.add(cmd::set_get{.key = "k", .value = "v", .ttl = 5s});
  c.add(cmd::getdel{"k"}).add(cmd::incr{"k"}).add(cmd::incrby{"k", 2}).add(cmd::decr{"k"});
  c.add(cmd::decrby{"k", 2}).add(cmd::incrbyfloat{"k", 1.5});
  c.add(cmd::mget{{"a", "b", "a"}}).add(cmd::mget{{"a"}});
  c.add(cmd::mset{{{"a", "1"}, {"b", "2"}, {"a", "3"}}}).add(cmd::mset{{{"a", "1"}}});
  c.add(cmd::append{"k", "v"}).add(cmd::strlen{"k"});
  // keys
  c.add(cmd::del{{"a", "b"}}).add(cmd::del{"a"}).add(cmd::unlink{{"a", "b"}});
  c.add(cmd::exists{{"a", "b", "a"}});
  c.add(cmd::expire{.key = "k", .ttl = 5s}).add(cmd::pexpire{.key = "k", .ttl = 5ms});
  c.add(cmd::expire{.key = "k", .ttl = 5s, .condition = ExpireCondition::gt});
  c.add(cmd::pexpire{.key = "k", .ttl = 5ms, .condition = ExpireCondition::nx});
  c.add(cmd::ttl{"k"}).add(cmd::pttl{"k"}).add(cmd::persist{"k"}).add(cmd::type{"k"});
  c.add(cmd::scan{}).add(cmd::scan{.cursor = 7, .match = "u:*", .count = 5, .type = "hash"});
  c.add(cmd::keys{"*"});
  // hashes
  c.add(cmd::hset{.key = "h", .fields = {{"f", "v"}, {"g", "w"}}});
  c.add(cmd::hsetnx{"h", "f", "v"}).add(cmd::hget{"h", "f"});
  c.add(cmd::hmget{.key = "h", .fields = {"f", "g"}}).add(cmd::hgetall{"h"});
  c.add(cmd::hdel{.key = "h", .fields = {"f", "g"}}).add(cmd::hincrby{"h", "f", 1});
  c.add(cmd::hincrbyfloat{"h", "f", 1.5}).add(cmd::hexists{"h", "f"}).add(cmd::hlen{"h"});
  c.add(cmd::hkeys{"h"}).add(cmd::hvals{"h"}).add(cmd::hscan{.key = "h"});
  c.add(cmd::hscan{.key = "h", .cursor = 3, .match = "*", .count = 10});
  // lists
  c.add(cmd::lpush{.key = "l", .values = {"a", "b"}}).add(cmd::rpush{.key = "l", .values = "a"});
  c.add(cmd::lpop{"l"}).add(cmd::rpop{"l"}).add(cmd::lpop_count{"l", 2});
  c.add(cmd::rpop_count{"l", 2}).add(cmd::lrange{.key = "l"}).add(cmd::ltrim{.key = "l"});
  c.add(cmd::llen{"l"}).add(cmd::lrem{.key = "l", .count = 1, .element = "x"});
  c.add(cmd::lindex{"l", 0}).add(cmd::lset{.key = "l", .index = 0, .element = "x"});
  c.add(cmd::lmove{"src", "dst", ListEnd::left, ListEnd::right});
  c.add(cmd::blmove{.source = "src", .destination = "dst", .timeout = 1500ms});
  // sets
  c.add(cmd::sadd{.key = "s", .members = {"a", "b"}}).add(cmd::srem{.key = "s", .members = "a"});
  c.add(cmd::smembers{"s"}).add(cmd::sismember{"s", "a"});
  c.add(cmd::smismember{.key = "s", .members = {"a", "b"}}).add(cmd::scard{"s"});
  c.add(cmd::sinter{.keys = {"a", "b", "c"}}).add(cmd::sunion{.keys = {"a", "b"}});
  c.add(cmd::sdiff{.keys = {"a", "b"}}).add(cmd::sintercard{.keys = {"a", "b"}});
  c.add(cmd::sintercard{.keys = {"a", "b", "c"}, .limit = 2});
  c.add(cmd::sscan{.key = "s"}).add(cmd::sscan{.key = "s", .cursor = 1, .match = "a*", .count = 3});
  // sorted sets
  c.add(cmd::zadd{.key = "z", .members = {{1, "a"}, {2, "b"}}});
  c.add(cmd::zadd{.key = "z", .members = {{1, "a"}}, .xx = true, .gt = true, .ch = true});
  c.add(cmd::zadd_incr{.key = "z", .increment = 2, .member = "m", .nx = true});
  c.add(cmd::zincrby{.key = "z", .increment = 2, .member = "m"});
  c.add(cmd::zrem{.key = "z", .members = {"a", "b"}}).add(cmd::zscore{"z", "a"});
  c.add(cmd::zmscore{"z", {"a", "b"}}).add(cmd::zrank{"z", "a"}).add(cmd::zrevrank{"z", "a"});
  c.add(cmd::zcard{"z"}).add(cmd::zcount{.key = "z", .min = lo, .max = hi});
  c.add(cmd::zrange{"z"}).add(cmd::zrange{.key = "z", .start = 1, .stop = 2, .rev = true});
  c.add(cmd::zrange_withscores{.key = "z", .rev = true});
  c.add(cmd::zrange_by_score{.key = "z", .min = lo, .max = hi, .rev = true, .limit = {{1, 2}}});
  c.add(cmd::zrange_by_score_withscores{.key = "z", .min = lo, .limit = {{0, 5}}});
  c.add(cmd::zrange_by_lex{.key = "z", .min = LexBound::incl("a"), .rev = true});
  c.add(cmd::zremrangebyscore{.key = "z", .min = lo}).add(cmd::zremrangebyrank{.key = "z"});
  c.add(cmd::zpopmin{"z"}).add(cmd::zpopmin{"z", 2}).add(cmd::zpopmax{"z", 3});
  // streams
  c.add(cmd::xadd{.key = "x", .fields = {{"f", "v"}}});
  c.add(cmd::xadd{.key = "x",
                  .id = "1-0",
                  .fields = {{"f", "v"}},
                  .trim = StreamTrim::max_len(5, true),
                  .nomkstream = true});
  c.add(cmd::xrange{.key = "x", .count = 2}).add(cmd::xrevrange{.key = "x"});
  c.add(cmd::xlen{"x"}).add(cmd::xdel{.key = "x", .ids = {"1-0", "2-0"}});
  c.add(cmd::xtrim{.key = "x", .trim = StreamTrim::min_id("5")});
  c.add(cmd::xgroup_create{.key = "x", .group = "g", .mkstream = true});
  c.add(cmd::xgroup_setid{.key = "x", .group = "g", .id = "0", .entries_read = 3});
  c.add(cmd::xgroup_destroy{.key = "x", .group = "g"});
  c.add(cmd::xgroup_createconsumer{.key = "x", .group = "g", .consumer = "c"});
  c.add(cmd::xgroup_delconsumer{.key = "x", .group = "g", .consumer = "c"});
  c.add(cmd::xreadgroup{.group = "g", .consumer = "c", .keys = "x"});
  c.add(cmd::xreadgroup{.group = "g",
                        .consumer = "c",
                        .keys = {"a", "b", "c"},
                        .ids = {"0", ">", "1-0"},
                        .count = 2,
                        .block = 100ms,
                        .noack = true});
  // Names that are XREADGROUP's keywords: the keys follow the STREAMS *option*.
  c.add(cmd::xreadgroup{.group = "streams", .consumer = "c", .keys = {"a", "b"}});
  c.add(cmd::xreadgroup{.group = "g", .consumer = "STREAMS", .keys = {"a", "b"}});
  c.add(cmd::xreadgroup{.group = "count", .consumer = "block", .keys = {"streams", "x"}});
  c.add(cmd::xack{.key = "x", .group = "g", .ids = {"1-0", "2-0"}});
  c.add(cmd::xpending{.key = "x", .group = "g"});
  c.add(
      cmd::xpending_range{.key = "x", .group = "g", .count = 5, .consumer = "c", .min_idle = 10ms});
  c.add(cmd::xclaim{.key = "x", .group = "g", .consumer = "c", .ids = {"1-0", "2-0"}});
  c.add(cmd::xclaim{.key = "x",
                    .group = "g",
                    .consumer = "c",
                    .min_idle = 5ms,
                    .ids = "1-0",
                    .idle = 10ms,
                    .retry_count = 3,
                    .force = true,
                    .last_id = "9-0"});
  c.add(cmd::xclaim_justid{.key = "x", .group = "g", .consumer = "c", .ids = "1-0"});
  c.add(cmd::xautoclaim{.key = "x", .group = "g", .consumer = "c", .count = 5});
  c.add(cmd::xautoclaim_justid{.key = "x", .group = "g", .consumer = "c"});
  // scripts
  c.add(script({"a", "b"}, {"1", "2"})).add(script({}, {"1"})).add(script({"a"}));
  // server and pub/sub: no key
  c.add(cmd::ping{}).add(cmd::ping{"hi"}).add(cmd::echo{"e"}).add(cmd::time{});
  c.add(cmd::dbsize{}).add(cmd::flushdb{}).add(cmd::info{}).add(cmd::info{"keyspace"});
  c.add(cmd::publish{"ch", "m"});
  return c;
}

// A command line for every entry of cluster::detail::key_specs (checked below: a new entry
// needs one here).
Cases table_cases() {
  Cases c;
  // A few command lines a row.
  // clang-format off
  for (auto line : {
      "APPEND k v", "ASKING", "AUTH user pass", "BITCOUNT k 0 1", "BLMOVE a b LEFT RIGHT 0",
      "BLMPOP 0 2 a b LEFT COUNT 2", "BLPOP a b 0", "BRPOP a 0", "BRPOPLPUSH a b 0",
      "BZMPOP 0 2 a b MIN", "BZPOPMAX a b 0", "BZPOPMIN a 0", "CLIENT LIST", "CLUSTER INFO",
      "COMMAND COUNT", "CONFIG GET maxmemory", "COPY a b REPLACE", "DBSIZE", "DECR k", "DECRBY k 2",
      "DEL a b", "DISCARD", "DUMP k", "ECHO e", "EVAL return 2 a b x", "EVALSHA 0123 1 a x",
      "EVALSHA_RO 0123 2 a b", "EVAL_RO return 1 a", "EXEC", "EXISTS a b", "EXPIRE k 5",
      "EXPIREAT k 5", "FCALL f 2 a b x", "FCALL_RO f 1 a", "FLUSHALL", "FLUSHDB ASYNC",
      "FUNCTION LIST", "GET k", "GETDEL k", "GETEX k PX 5", "GETRANGE k 0 1", "GETSET k v",
      "HDEL h f", "HELLO 3", "HEXISTS h f", "HGET h f", "HGETALL h", "HINCRBY h f 1",
      "HINCRBYFLOAT h f 1", "HKEYS h", "HLEN h", "HMGET h f g", "HMSET h f v", "HSCAN h 0",
      "HSET h f v", "HSETNX h f v", "HVALS h", "INCR k", "INCRBY k 1", "INCRBYFLOAT k 1", "INFO",
      "KEYS *", "LINDEX l 0", "LINSERT l BEFORE p v", "LLEN l", "LMOVE a b LEFT RIGHT",
      "LMPOP 2 a b LEFT", "LPOP l", "LPOS l v", "LPUSH l v", "LPUSHX l v", "LRANGE l 0 1",
      "LREM l 0 v", "LSET l 0 v", "LTRIM l 0 1", "MEMORY USAGE k SAMPLES 5", "MEMORY STATS",
      "MGET a b", "MSET a 1 b 2", "MSETNX a 1 b 2", "MULTI", "OBJECT ENCODING k", "OBJECT HELP",
      "PERSIST k", "PEXPIRE k 5", "PEXPIREAT k 5", "PING", "PSETEX k 5 v", "PSUBSCRIBE p*",
      "PTTL k", "PUBLISH ch m", "PUBSUB CHANNELS", "PUNSUBSCRIBE", "RANDOMKEY", "READONLY",
      "READWRITE", "RENAME a b", "RENAMENX a b", "ROLE", "RPOP l", "RPOPLPUSH a b", "RPUSH l v",
      "RPUSHX l v", "SADD s m", "SCAN 0 MATCH k*", "SCARD s", "SCRIPT FLUSH", "SDIFF a b",
      "SDIFFSTORE d a b", "SELECT 0", "SET k v PX 5", "SETEX k 5 v", "SETNX k v", "SETRANGE k 0 v",
      "SINTER a b", "SINTERCARD 2 a b LIMIT 1", "SINTERSTORE d a b", "SISMEMBER s m", "SMEMBERS s",
      "SMISMEMBER s m n", "SMOVE a b m", "SPOP s", "SPUBLISH ch m", "SRANDMEMBER s", "SREM s m",
      "SSCAN s 0", "SSUBSCRIBE a b", "STRLEN k", "SUBSCRIBE ch", "SUNION a b", "SUNIONSTORE d a b",
      "SUNSUBSCRIBE a", "TIME", "TOUCH a b", "TTL k", "TYPE k", "UNLINK a b", "UNSUBSCRIBE",
      "UNWATCH", "WAIT 0 0", "WATCH a b", "XACK x g 1-0", "XADD x * f v", "XAUTOCLAIM x g c 0 0",
      "XCLAIM x g c 0 1-0", "XDEL x 1-0", "XGROUP CREATE x g $", "XGROUP HELP", "XINFO STREAM x",
      "XINFO CONSUMERS x g", "XLEN x", "XPENDING x g", "XRANGE x - +",
      "XREAD COUNT 2 BLOCK 0 STREAMS a b 0 0", "XREAD STREAMS streams 0",
      "XREADGROUP GROUP streams STREAMS NOACK STREAMS a b > >", "XREVRANGE x + -", "XSETID x 1-0",
      "XTRIM x MAXLEN 5", "ZADD z 1 m", "ZCARD z", "ZCOUNT z 0 1", "ZDIFF 2 a b",
      "ZDIFFSTORE d 2 a b", "ZINCRBY z 1 m", "ZINTER 2 a b WITHSCORES", "ZINTERCARD 2 a b",
      "ZINTERSTORE d 2 a b WEIGHTS 1 2", "ZLEXCOUNT z - +", "ZMPOP 2 a b MIN", "ZMSCORE z a b",
      "ZPOPMAX z", "ZPOPMIN z 2", "ZRANDMEMBER z", "ZRANGE z 0 1", "ZRANGEBYLEX z - +",
      "ZRANGEBYSCORE z 0 1", "ZRANGESTORE d z 0 1", "ZRANK z m", "ZREM z m", "ZREMRANGEBYLEX z - +",
      "ZREMRANGEBYRANK z 0 1", "ZREMRANGEBYSCORE z 0 1", "ZREVRANGE z 0 1", "ZREVRANGEBYLEX z + -",
      "ZREVRANGEBYSCORE z 1 0", "ZREVRANK z m", "ZSCAN z 0", "ZSCORE z m", "ZUNION 2 a b",
      "ZUNIONSTORE d 2 a b AGGREGATE MIN"})
    c.add(raw(line));
  // clang-format on
  return c;
}

// Where rediskit routes on purpose by something COMMAND GETKEYS does not call a key: a shard
// channel (SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE) lives in the slot of its name.
bool shard_channel_command(std::string_view name) {
  return name == "SPUBLISH" || name == "SSUBSCRIBE" || name == "SUNSUBSCRIBE";
}

// Asks the server for the keys of every case and compares; returns the mismatches.
std::size_t check_against_server(Cases const& cases) {
  resp3::Request req;
  for (auto const& k : cases.all) {
    std::vector<std::string> line{"GETKEYS"};
    line.insert(line.end(), k.argv.begin(), k.argv.end());
    req.push_range("COMMAND", line);
  }
  resp3::Replies<resp3::Result<std::vector<std::string>>> keys;

  asio::io_context ioc;
  ConnectionConfig cfg;
  cfg.port = test::shared_redis_port();
  Connection conn(ioc.get_executor(), cfg);
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await conn.async_exec(req, keys, asio::use_awaitable);
        conn.close();
      },
      [&](std::exception_ptr e) {
        done = true;
        failure = e;
      });
  ioc.run_for(std::chrono::seconds(30));
  BOOST_REQUIRE_MESSAGE(done, "COMMAND GETKEYS did not answer in time");
  if (failure) std::rethrow_exception(failure);
  BOOST_REQUIRE_EQUAL(keys.size(), cases.all.size());

  std::size_t mismatches = 0, with_keys = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto const& k = cases.all[i];
    // The server's "no key arguments" error is no key.
    std::vector<std::string> const server = keys[i] ? *keys[i] : std::vector<std::string>{};
    with_keys += !server.empty();
    if (!keys[i] && !k.ours.empty() && shard_channel_command(k.argv.at(0))) continue;
    if (server != k.ours) {
      ++mismatches;
      BOOST_ERROR(join(k.argv) << ": COMMAND GETKEYS " << join(server)
                               << (keys[i] ? "" : " (" + keys[i].error().message + ")")
                               << ", cluster::for_each_key " << join(k.ours));
    }
  }
  BOOST_TEST(with_keys > cases.all.size() / 2, "most cases have keys: the request was read");
  return mismatches;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cluster_route_on_redis)

BOOST_AUTO_TEST_CASE(for_each_key_agrees_with_command_getkeys_for_every_command_type) {
  BOOST_TEST(check_against_server(typed_cases()) == 0u);
}

BOOST_AUTO_TEST_CASE(every_key_spec_agrees_with_command_getkeys) {
  auto const cases = table_cases();
  std::set<std::string> sampled;
  for (auto const& k : cases.all)
    sampled.insert(k.argv.at(0));
  for (auto const& spec : cluster::detail::key_specs)
    BOOST_TEST(sampled.count(std::string(spec.name)) == 1u,
               spec.name << " has no sample command line in table_cases()");
  BOOST_TEST(check_against_server(cases) == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
