// expect: the loader must return T, std::optional<T>, or an awaitable of one of them
// A loader whose result is not the cached type is refused with one readable message.
#include <rediskit/backend/memory_backend.hpp>
#include <rediskit/services/cache_service.hpp>

#include <boost/asio/io_context.hpp>

#include <string>

int main() {
  boost::asio::io_context ioc;
  rediskit::MemoryBackend db(ioc);
  rediskit::CacheService<rediskit::MemoryBackend> cache(db);
  auto op = cache.async_get_or_load<int>("k", [] { return std::string("not an int"); });
  (void)op;
}
