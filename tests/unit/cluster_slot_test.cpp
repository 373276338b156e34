// rediskit::cluster::key_slot: CRC16 and the hash-tag rule, against the values Redis documents
// (CLUSTER KEYSLOT's examples, CRC16/XMODEM's check value). The same function is compared with
// a real cluster-enabled redis-server in tests/integration/cluster_slot_test.cpp.
#include <rediskit/cluster/slot.hpp>
#include <rediskit/key_space.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <string_view>

using namespace std::string_view_literals;
using rediskit::cluster::crc16;
using rediskit::cluster::hash_tag;
using rediskit::cluster::key_slot;
using rediskit::cluster::same_slot;

// Usable at compile time (a service can check its own key layout in a static_assert).
static_assert(crc16("123456789") == 0x31C3);
static_assert(key_slot("somekey") == 11058);
static_assert(same_slot({"{user:1}:rooms", "{user:1}:unread"}));

BOOST_AUTO_TEST_SUITE(cluster_slot)

BOOST_AUTO_TEST_CASE(slots_are_the_ones_redis_documents) {
  BOOST_TEST(key_slot("somekey") == 11058);
  BOOST_TEST(key_slot("foo{hash_tag}") == 2515);
  BOOST_TEST(key_slot("bar{hash_tag}") == 2515);
  BOOST_TEST(key_slot("foo") == 12182);
  BOOST_TEST(key_slot("") == 0);
}

BOOST_AUTO_TEST_CASE(the_hash_tag_is_the_first_non_empty_braces) {
  BOOST_TEST(hash_tag("{user1000}.following") == "user1000");
  BOOST_TEST(hash_tag("a{b}{c}") == "b");         // the first '{' and the first '}' after it
  BOOST_TEST(hash_tag("{{x}}") == "{x");          // the tag may hold a '{'
  BOOST_TEST(hash_tag("{}x") == "{}x");           // an empty tag: the whole key
  BOOST_TEST(hash_tag("{}{x}") == "{}{x}");       // only the first '{' is looked at
  BOOST_TEST(hash_tag("x{") == "x{");             // no closing brace
  BOOST_TEST(hash_tag("}{a}") == "a");            // a '}' before the '{' does not count
  BOOST_TEST(hash_tag("no tag") == "no tag");
  BOOST_TEST(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  BOOST_TEST(key_slot("{user1000}.following") == key_slot("user1000"));
}

BOOST_AUTO_TEST_CASE(every_slot_is_below_16384_and_binary_keys_hash) {
  std::string key;
  for (int b = 0; b < 256; ++b) {
    key.push_back(static_cast<char>(b));
    BOOST_TEST(key_slot(key) < rediskit::cluster::slot_count);
  }
  // A NUL byte is hashed like any other (the key is a string_view, not a C string). CRC16 with
  // a zero start value leaves a leading NUL without effect, in Redis too.
  BOOST_TEST(key_slot("a\0"sv) != key_slot("a"sv));
  BOOST_TEST(key_slot("a\0b"sv) != key_slot("ab"sv));
  BOOST_TEST(key_slot("\0a"sv) == key_slot("a"sv));
  BOOST_TEST(!same_slot({"a", "b"}));
  BOOST_TEST(same_slot({}));
}

BOOST_AUTO_TEST_CASE(every_slot_has_a_short_tag_without_braces) {
  auto const& tags = rediskit::detail::keys::slot_tags();
  for (std::size_t slot = 0; slot < rediskit::cluster::slot_count; ++slot) {
    std::string_view const t(tags[slot].data(), tags[slot].size());
    BOOST_TEST_REQUIRE(key_slot(t) == slot, "slot " << slot << ": tag '" << t << "'");
    BOOST_TEST_REQUIRE(t.find_first_of("{}") == std::string_view::npos);
  }
}

BOOST_AUTO_TEST_CASE(a_key_beside_another_is_in_its_slot) {
  using rediskit::beside;
  for (std::string_view base : {"c:user:1", "c:{room}:1", "a}b", "a{b", "{}x}", "x{}", "}", "{",
                                "", "a{b}c}", "\0{"}) {
    auto const k = beside(base, "c~lock:", base.substr(base.size() / 2));
    BOOST_TEST(key_slot(k) == key_slot(base), "'" << k << "' beside '" << base << "'");
    BOOST_TEST(k.starts_with("c~lock:{"));
    BOOST_TEST(k.ends_with(base.substr(base.size() / 2)));
  }
  auto const k = beside("c:user:1", "c~lock:", "user:1");
  BOOST_TEST(k.size() == std::string_view("c~lock:{abc}user:1").size());
  // beside_pattern finds shadows by their name: literal braces, any slot's tag.
  BOOST_TEST(rediskit::beside_pattern("c~lock:", rediskit::glob("user:{}*", "1")) ==
             "c~lock:{???}user:1*");
}

BOOST_AUTO_TEST_CASE(an_entitys_keys_share_its_tag) {
  using rediskit::hash_tag_for;
  BOOST_TEST(hash_tag_for("42") == "{42}");
  BOOST_TEST(key_slot("room_users:" + hash_tag_for("42")) == key_slot("rooms:" + hash_tag_for("42")));
  for (std::string_view id : {"a}b", "}", "", "{x}", "a{b"}) {
    auto const t = hash_tag_for(id);
    BOOST_TEST(key_slot("a:" + t + ":x") == key_slot("b:" + t), "id '" << id << "'");
    BOOST_TEST(hash_tag(t + ":x").size() + 2 == t.size(), "id '" << id << "': not a tag");
  }
  BOOST_TEST(hash_tag_for("a}b") != hash_tag_for("a}c"));
}

BOOST_AUTO_TEST_CASE(a_clustered_key_space_is_one_slot) {
  rediskit::KeySpace const plain("presence"), tagged("presence", rediskit::KeyLayout::clustered);
  BOOST_TEST(plain.key("online") == "presence:online");
  BOOST_TEST(tagged.key("online") == "{presence}:online");
  BOOST_TEST(tagged.prefix() == "{presence}");
  BOOST_TEST(key_slot(tagged.key("online")) == key_slot(tagged.key("stats")));
  BOOST_TEST(tagged.strip("{presence}:online") == "online");
  BOOST_TEST(tagged.pattern("user:*") == "{presence}:user:*");
  BOOST_TEST(rediskit::KeySpace("", rediskit::KeyLayout::clustered).key("x") == "x");
}

BOOST_AUTO_TEST_SUITE_END()
