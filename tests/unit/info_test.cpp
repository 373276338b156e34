// detail::info_value: one field of an INFO reply, as CacheService::async_status and Worker's
// eviction check read them.
#include <rediskit/detail/info.hpp>

#include <boost/test/unit_test.hpp>

using rediskit::detail::info_value;

BOOST_AUTO_TEST_SUITE(info)

BOOST_AUTO_TEST_CASE(a_field_is_its_line_s_value) {
  constexpr std::string_view text =
      "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Stats\r\n"
      "evicted_keys_total:9\r\nevicted_keys:12\r\nlast:7";
  BOOST_TEST(info_value(text, "maxmemory_policy") == "allkeys-lru");
  BOOST_TEST(info_value(text, "evicted_keys") == "12");  // not evicted_keys_total's
  BOOST_TEST(info_value(text, "used_memory") == "1024");
  BOOST_TEST(info_value(text, "last") == "7");          // the last line, without an end
  BOOST_TEST(info_value(text, "memory").empty());       // only a whole name matches
  BOOST_TEST(info_value(text, "Memory").empty());       // a section title is no field
  BOOST_TEST(info_value("a:1\nb:2\n", "b") == "2");     // "\n" endings too
  BOOST_TEST(info_value("", "a").empty());
}

BOOST_AUTO_TEST_SUITE_END()
