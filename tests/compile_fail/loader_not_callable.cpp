// expect: the loader must be callable as loader\(std::string const& key\) or loader\(\)
// A loader that takes neither the key nor nothing is refused with one readable message.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/io_context.hpp>

int main() {
  boost::asio::io_context ioc;
  rediskit::MemoryBackend db(ioc);
  rediskit::CacheService<rediskit::MemoryBackend> cache(db);
  auto op = cache.async_get_or_load<int>("k", [](int id) { return id; });
  (void)op;
}
