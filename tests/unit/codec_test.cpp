// Codecs: JsonCodec, StringCodec and HashCodec round trips, the formats other services read
// (the Node services' JSON.stringify / String(n) / hash fields), and decode errors that name
// the field.
#include <rediskit/codec/hash_codec.hpp>
#include <rediskit/codec/json_codec.hpp>
#include <rediskit/codec/string_codec.hpp>
#include <rediskit/concepts/codec.hpp>
#include <rediskit/key_space.hpp>

#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>
#include <boost/test/unit_test.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace rediskit;
using namespace std::chrono_literals;

namespace codec_test {

BOOST_DEFINE_ENUM_CLASS(Role, admin, moderator, member)

struct Address {
  std::string city;
  std::string zip;
};
BOOST_DESCRIBE_STRUCT(Address, (), (city, zip))

struct Base {
  std::string id;
};
BOOST_DESCRIBE_STRUCT(Base, (), (id))

struct User : Base {
  std::string name;
  int age = 0;
  bool online = false;
  double score = 0;
  Role role = Role::member;
  std::optional<std::string> avatar;
  std::vector<std::string> rooms;
  std::set<int> badges;
  std::map<std::string, int> unread;
  std::array<int, 2> pair{};
  std::chrono::milliseconds idle{0};
  std::chrono::sys_time<std::chrono::milliseconds> seen{};
  Address address;
  std::uint8_t level = 0;
};
BOOST_DESCRIBE_STRUCT(User, (Base), (name, age, online, score, role, avatar, rooms, badges,
                                     unread, pair, idle, seen, address, level))

User sample() {
  User u;
  u.id = "u1";
  u.name = "Zoé \"Z\"";
  u.age = 31;
  u.online = true;
  u.score = 0.1;
  u.role = Role::moderator;
  u.rooms = {"general", "random"};
  u.badges = {3, 1};
  u.unread = {{"conv:1", 4}};
  u.pair = {7, 8};
  u.idle = 1500ms;
  u.seen = std::chrono::sys_time<std::chrono::milliseconds>(1736862000000ms);
  u.address = {"Yaoundé", "237"};
  u.level = 200;
  return u;
}

bool same(User const& a, User const& b) {
  return a.id == b.id && a.name == b.name && a.age == b.age && a.online == b.online &&
         a.score == b.score && a.role == b.role && a.avatar == b.avatar && a.rooms == b.rooms &&
         a.badges == b.badges && a.unread == b.unread && a.pair == b.pair && a.idle == b.idle &&
         a.seen == b.seen && a.address.city == b.address.city && a.address.zip == b.address.zip &&
         a.level == b.level;
}

// Every kind the direct decoder takes (json_reader.hpp), nested.
struct Place {
  std::string city;
  std::optional<std::int64_t> zip;
  std::vector<std::int32_t> codes;
  friend bool operator==(Place const&, Place const&) = default;
};
BOOST_DESCRIBE_STRUCT(Place, (), (city, zip, codes))

struct Named {
  std::string id;
  friend bool operator==(Named const&, Named const&) = default;
};
BOOST_DESCRIBE_STRUCT(Named, (), (id))

struct Member : Named {
  std::string name;
  int age = 0;
  std::uint8_t level = 0;
  std::int16_t small = 0;
  std::uint64_t big = 0;
  bool online = false;
  double score = 0;
  Role role = Role::member;
  std::optional<std::string> avatar;
  std::vector<std::string> rooms;
  std::optional<Place> home;
  Place work;
  std::vector<Place> places;
  friend bool operator==(Member const&, Member const&) = default;
};
BOOST_DESCRIBE_STRUCT(Member, (Named),
                      (name, age, level, small, big, online, score, role, avatar, rooms, home, work,
                       places))

// A random JSON text for Member: its keys (and unknown ones), in any order, some twice, with
// values of the right kind and of wrong ones, in and out of range; sometimes broken.
std::string random_member_json(std::mt19937& rng) {
  static std::vector<std::string> const keys = {
      "id",   "name",   "age",   "level", "small", "big",    "online", "score",
      "role", "avatar", "rooms", "home",  "work",  "places", "extra",  "city"};
  static std::vector<std::string> const scalars = {R"("s")",
                                                   R"("été \"q\" \u00e9\n")",
                                                   R"("a\"b")",
                                                   R"("")",
                                                   "0",
                                                   "1",
                                                   "-1",
                                                   "255",
                                                   "256",
                                                   "-129",
                                                   "32767",
                                                   "32768",
                                                   "2147483648",
                                                   "9223372036854775807",
                                                   "9223372036854775808",
                                                   "18446744073709551615",
                                                   "18446744073709551616",
                                                   "-9223372036854775808",
                                                   "1.0",
                                                   "1.5",
                                                   "-0.0",
                                                   "1e3",
                                                   "true",
                                                   "false",
                                                   "null",
                                                   R"("admin")",
                                                   R"("owner")",
                                                   "2"};
  auto pick = [&](std::vector<std::string> const& v) { return v[rng() % v.size()]; };
  std::function<std::string(int)> value = [&](int depth) -> std::string {
    switch (rng() % (depth > 2 ? 1 : 6)) {
      case 1: {  // an array
        std::string a = "[";
        for (unsigned i = 0, n = rng() % 4; i < n; ++i)
          a += (i ? "," : "") + value(depth + 1);
        return a + "]";
      }
      case 2: {  // a Place, or something like one
        std::string o = "{";
        static std::vector<std::string> const pk = {"city", "zip", "codes", "x", "zip"};
        for (unsigned i = 0, n = rng() % 4; i < n; ++i)
          o += std::string(i ? "," : "") + "\"" + pick(pk) + "\":" + value(depth + 1);
        return o + "}";
      }
      default:
        return pick(scalars);
    }
  };
  // Half the texts are well typed (each member its own kind, in range), so that the direct
  // reader takes them whole; unknown keys ("extra", "city") still get anything, escaped
  // strings and nested values included.
  static std::map<std::string, std::vector<std::string>> const good = {
      {"id", {R"("a")", R"("q\"r\\s")", R"("\u00e9t\u00e9")"}},
      {"name", {R"("")", R"("Zo\u00e9 \"Z\"")", R"("tab\there")"}},
      {"age", {"0", "-7", "2147483647"}},
      {"level", {"0", "255"}},
      {"small", {"-32768", "12"}},
      {"big", {"0", "18446744073709551615"}},
      {"online", {"true", "false"}},
      {"score", {"1.5", "-2", "1e3"}},
      {"role", {R"("admin")", "2"}},
      {"avatar", {"null", R"("a\/b.png")"}},
      {"rooms", {"[]", R"(["x","y\n"])"}},
      {"home", {"null", R"({"city":"c\"d","zip":5,"codes":[1,2]})", R"({"zip":null})"}},
      {"work", {R"({"city":"w"})", R"({"codes":[],"x":{"y":"\""}})"}},
      {"places", {"[]", R"([{"city":"p"},{}])"}},
  };
  bool const typed = rng() % 2 == 0;
  std::string out = rng() % 2 ? " {" : "{";
  for (unsigned i = 0, n = rng() % 9; i < n; ++i) {
    std::string const key = pick(keys);
    auto const it = good.find(key);
    out += std::string(i ? "," : "") + "\"" + key + "\"" + (rng() % 3 ? ":" : " : ") +
           (typed && it != good.end() ? pick(it->second) : value(0));
  }
  out += "}";
  switch (rng() % 16) {
    case 0:
      out.resize(rng() % out.size());
      break;  // cut short
    case 1:
      out += "x";
      break;  // extra data
    case 2:
      out += "  \n";
      break;  // trailing space is fine
    case 3:
      out.insert(0, "/*c*/");
      break;  // comments are not JSON
    case 4:
      out = value(0);
      break;  // not an object
    default:
      break;
  }
  return out;
}

template <class T, class C>
std::string decode_error(C const& c, std::string_view bytes) {
  T v{};
  std::string why;
  auto ec = c.decode(bytes, v, &why);
  BOOST_TEST(ec == make_error_code(Error::decode_failed));
  return why;
}

}  // namespace codec_test

using namespace codec_test;

BOOST_AUTO_TEST_SUITE(codecs)

BOOST_AUTO_TEST_CASE(json_round_trips_described_types) {
  JsonCodec c;
  std::string bytes;
  c.encode(sample(), bytes);
  BOOST_TEST(bytes ==
             R"({"id":"u1","name":"Zoé \"Z\"","age":31,"online":true,"score":1E-1,)"
             R"("role":"moderator","avatar":null,"rooms":["general","random"],"badges":[1,3],)"
             R"("unread":{"conv:1":4},"pair":[7,8],"idle":1500,"seen":1736862000000,)"
             R"("address":{"city":"Yaoundé","zip":"237"},"level":200})");
  User back;
  BOOST_TEST(!c.decode(bytes, back, nullptr));
  BOOST_TEST(same(back, sample()));
  // What JavaScript writes: members missing keep their defaults, extra members are ignored.
  User partial;
  BOOST_TEST(!c.decode(R"({"name":"Al","extra":[1,2],"avatar":"a.png"})", partial, nullptr));
  BOOST_TEST(partial.name == "Al");
  BOOST_TEST(*partial.avatar == "a.png");
  BOOST_TEST(partial.age == 0);
  // Plain values.
  std::string s;
  c.encode(std::string("x"), s);
  BOOST_TEST(s == R"("x")");
  std::vector<std::optional<int>> v{1, std::nullopt};
  c.encode(v, s);
  BOOST_TEST(s == "[1,null]");
}

BOOST_AUTO_TEST_CASE(json_decode_errors_name_the_field) {
  JsonCodec c;
  BOOST_TEST(decode_error<User>(c, R"({"age":"31"})") ==
             "field 'age': expected an integer, got a string");
  BOOST_TEST(decode_error<User>(c, R"({"address":{"zip":237}})") ==
             "field 'address.zip': expected a string, got an integer");
  BOOST_TEST(decode_error<User>(c, R"({"rooms":["a",2]})") ==
             "field 'rooms[1]': expected a string, got an integer");
  BOOST_TEST(decode_error<User>(c, R"({"unread":{"c":true}})") ==
             "field 'unread.c': expected an integer, got a boolean");
  BOOST_TEST(decode_error<User>(c, R"({"role":"owner"})") ==
             "field 'role': 'owner' is no enumerator of the type");
  BOOST_TEST(decode_error<User>(c, R"({"level":300})") ==
             "field 'level': the number 300 does not fit an integer of this size");
  BOOST_TEST(decode_error<User>(c, R"({"pair":[1]})") ==
             "field 'pair': expected an array of 2 elements, got 1");
  BOOST_TEST(decode_error<User>(c, "[1]") == "expected an object, got an array");
  BOOST_TEST(decode_error<User>(c, "{\"name\":").starts_with("not JSON ("));
  BOOST_TEST(decode_error<int>(c, "") .starts_with("not JSON ("));
  // No `why`: the code alone.
  int n = 0;
  BOOST_TEST(c.decode("\"x\"", n, nullptr) == make_error_code(Error::decode_failed));
}

// JsonCodec decodes plain types straight from the text (json_reader.hpp), and through a
// boost::json::value when that gives up. Whatever the text, the outcome must be the document's:
// the same value, or the same failure and message, and a value left as the document leaves it.
BOOST_AUTO_TEST_CASE(json_direct_decoding_gives_what_the_document_gives) {
  static_assert(detail::json_reader::Direct<Member>);
  static_assert(!detail::json_reader::Direct<User>);  // a set, a map, a duration ...
  JsonCodec c;
  Member start;
  start.id = "m0";
  start.name = "before";
  start.age = 7;
  start.rooms = {"r"};
  start.work.city = "Douala";
  std::mt19937 rng(20261207);
  int direct = 0, failed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string const text = random_member_json(rng);
    Member fast = start, doc = start, probe = start;
    std::string fast_why, doc_why;
    auto const fast_ec = c.decode(text, fast, &fast_why);
    auto const doc_ec = detail::json::decode_document(text, doc, &doc_why);
    BOOST_TEST_INFO("text: " << text);
    BOOST_TEST(fast_ec == doc_ec);
    BOOST_TEST(fast_why == doc_why);
    if (!doc_ec) BOOST_TEST((fast == doc));
    if (detail::json_reader::read(text, probe)) {
      ++direct;
      BOOST_TEST(!doc_ec);  // never accepts what the document refuses
      BOOST_TEST((probe == doc));
    }
    failed += doc_ec ? 1 : 0;
  }
  // Both paths ran many times.
  BOOST_TEST(direct > 4000);
  BOOST_TEST(failed > 4000);
  // An unknown member's string with an escape, then a member's string: the parts before the
  // escape are not the next string's (the first version of the reader wrote "q" + "s").
  Member after;
  BOOST_TEST(detail::json_reader::read(R"({"extra":"q\"r","name":"s"})", after));
  BOOST_TEST(after.name == "s");
  // A value the direct path reads whole, and one a repeated key sends to the document.
  Member m;
  BOOST_TEST(!c.decode(
      R"({"id":"a","name":"Zoé","age":-3,"level":200,"big":18446744073709551615,"online":true,)"
      R"("score":2,"role":"admin","avatar":null,"rooms":["x"],"home":{"city":"c","zip":5},)"
      R"("work":{"codes":[1,2]},"places":[{"city":"p"},{}],"other":{"k":[1,{"z":null}]}})",
      m, nullptr));
  BOOST_TEST(m.big == std::numeric_limits<std::uint64_t>::max());
  BOOST_TEST(m.score == 2.0);
  BOOST_TEST((m.role == Role::admin));
  BOOST_TEST_REQUIRE((m.home && m.home->zip));
  BOOST_TEST(*m.home->zip == 5);
  BOOST_TEST(m.work.codes == (std::vector<std::int32_t>{1, 2}));
  BOOST_TEST(m.places.size() == 2u);
  Member twice;
  BOOST_TEST(!detail::json_reader::read(R"({"name":"a","name":"b"})", twice));
  BOOST_TEST(!c.decode(R"({"name":"a","name":"b"})", twice, nullptr));
  BOOST_TEST(twice.name == "b");  // as Boost.JSON's document keeps it: the last one
}

BOOST_AUTO_TEST_CASE(string_codec_writes_what_redis_counts) {
  StringCodec c;
  std::string s;
  c.encode(std::int64_t{-42}, s);
  BOOST_TEST(s == "-42");
  c.encode(2.5, s);
  BOOST_TEST(s == "2.5");
  c.encode(true, s);
  BOOST_TEST(s == "true");
  c.encode(std::string_view("bytes\0x", 7), s);
  BOOST_TEST(s == std::string("bytes\0x", 7));
  long n = 0;
  BOOST_TEST(!c.decode("123", n, nullptr));
  BOOST_TEST(n == 123);
  BOOST_TEST(decode_error<long>(c, "12abc") == "expected an integer, got '12abc'");
  BOOST_TEST(decode_error<std::uint8_t>(c, "300") == "expected an integer, got '300'");
  BOOST_TEST(decode_error<double>(c, "") == "expected a number, got ''");
  BOOST_TEST(decode_error<bool>(c, "yes") == "expected a boolean, got 'yes'");
  static_assert(!CodecFor<StringCodec, User>);  // no silent fallback for structs
}

BOOST_AUTO_TEST_CASE(hash_codec_maps_members_to_fields) {
  HashCodec h;
  HashCodec::Fields f;
  h.encode(sample(), f);
  std::map<std::string, std::string> m(f.begin(), f.end());
  BOOST_TEST(m.count("avatar") == 0u);  // nullopt: no field
  BOOST_TEST(m["id"] == "u1");
  BOOST_TEST(m["age"] == "31");
  BOOST_TEST(m["online"] == "true");
  BOOST_TEST(m["role"] == "moderator");
  BOOST_TEST(m["seen"] == "1736862000000");  // seed 001's updatedAt form
  BOOST_TEST(m["rooms"] == R"(["general","random"])");
  BOOST_TEST(m["address"] == R"({"city":"Yaoundé","zip":"237"})");
  User back;
  BOOST_TEST(!h.decode(f, back, nullptr));
  BOOST_TEST(same(back, sample()));
  // HMGET order: field_names<User>() (bases first).
  auto names = HashCodec::field_names<User>();
  BOOST_TEST(names[0] == "id");
  BOOST_TEST(names[1] == "name");
  std::vector<std::optional<std::string>> values(names.size());
  values[1] = "Al";
  values[2] = "40";
  User some;
  BOOST_TEST(!h.decode(values, some, nullptr));
  BOOST_TEST(some.name == "Al");
  BOOST_TEST(some.age == 40);
  // Errors name the field.
  std::string why;
  HashCodec::Fields bad{{"name", "x"}, {"age", "forty"}};
  BOOST_TEST(h.decode(bad, some, &why) == make_error_code(Error::decode_failed));
  BOOST_TEST(why == "field 'age': expected an integer, got 'forty'");
  values[2] = "1.5";
  BOOST_TEST(h.decode(values, some, &why) == make_error_code(Error::decode_failed));
  BOOST_TEST(why == "field 'age': expected an integer, got '1.5'");
  HashCodec::Fields bad_json{{"address", "{"}};
  BOOST_TEST(h.decode(bad_json, some, &why) == make_error_code(Error::decode_failed));
  BOOST_TEST(why.starts_with("field 'address': not JSON"));
}

BOOST_AUTO_TEST_CASE(glob_escaping_matches_only_the_literal) {
  BOOST_TEST(escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f");
  BOOST_TEST(glob("user:{}:*", std::string("*")).text() == "user:\\*:*");
  BOOST_TEST(glob("{}-{}", std::string("a"), std::string("?")).text() == "a-\\?");
  BOOST_TEST(glob("no args {}").text() == "no args {}");
  KeySpace ks{"ch[a]t"};
  BOOST_TEST(ks.key("u:1") == "ch[a]t:u:1");
  BOOST_TEST(ks.pattern("u:*") == "ch\\[a\\]t:u:*");
  BOOST_TEST(ks.strip("ch[a]t:u:1") == "u:1");
  BOOST_TEST(KeySpace{}.key("x") == "x");
}

BOOST_AUTO_TEST_SUITE_END()
