// rediskit::detail::post_handler: completes a handler through its associated executor, never
// inside the caller, with Asio's post machinery instantiated once for every handler type.
//
// asio::post(ex, append(handler, args...)) instantiates a chain of Asio templates for each
// handler type; a library with a hundred typed commands, each completing a few handler types,
// pays for that in every test and user translation unit. Here the handler and its arguments go
// into one block behind a virtual call, and what Asio sees is always the same function object
// and an any_io_executor. The block comes from Asio's thread-local recycling allocator, so in
// steady state a completion costs no malloc; the cost at run time is one virtual call.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <memory>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

namespace rediskit::detail {

struct ErasedCall {
  /// Runs the call, then frees this (its memory goes back before the upcall).
  virtual void call() = 0;
  /// Frees this without running it (the executor was shut down).
  virtual void destroy() noexcept = 0;

 protected:
  ~ErasedCall() = default;
};

template <class Impl>
void free_erased(Impl* p) noexcept {
  boost::asio::recycling_allocator<Impl> alloc;
  p->~Impl();
  alloc.deallocate(p, 1);
}

template <class Handler, class... Args>
struct ErasedCallImpl final : ErasedCall {
  template <class H, class... A>
  explicit ErasedCallImpl(H&& h, A&&... a)
      : handler(std::forward<H>(h)), args(std::forward<A>(a)...) {}
  void call() override {
    // Freed after the upcall, not before as Asio's own operations do: the arguments go to the
    // handler from here rather than being moved out once more (a reply is still moved four
    // times on its way, three of them inside Asio's awaitable). The handler's next operation takes another block from the
    // thread's recycling cache meanwhile, so memory stays bounded and malloc-free.
    struct Free {
      ErasedCallImpl* self;
      ~Free() { free_erased(self); }
    } const free{this};
    std::apply(std::move(handler), std::move(args));
  }
  void destroy() noexcept override { free_erased(this); }
  Handler handler;
  std::tuple<Args...> args;
};

struct ErasedCallDeleter {
  void operator()(ErasedCall* c) const noexcept { c->destroy(); }
};
using ErasedCallPtr = std::unique_ptr<ErasedCall, ErasedCallDeleter>;

/// The one function object Asio's post sees.
struct InvokeErased {
  ErasedCallPtr call;
  void operator()() { call.release()->call(); }
};

template <class Handler, class... Args>
ErasedCallPtr make_erased_call(Handler&& h, Args&&... args) {
  using Impl = ErasedCallImpl<std::decay_t<Handler>, std::decay_t<Args>...>;
  boost::asio::recycling_allocator<Impl> alloc;
  Impl* p = alloc.allocate(1);
  try {
    ::new (static_cast<void*>(p)) Impl(std::forward<Handler>(h), std::forward<Args>(args)...);
  } catch (...) {
    alloc.deallocate(p, 1);
    throw;
  }
  return ErasedCallPtr(p);
}

/// f() behind the virtual call (a continuation kept by a timer, a waiter, ...).
template <class F>
ErasedCallPtr erase_call(F&& f) {
  return make_erased_call(std::forward<F>(f));
}

/// Posts `call` to `ex`, never running it inside the caller. When `ex` is an io_context's
/// executor (a coroutine's, a strand-less handler's: nearly always), it is posted there
/// directly: one operation block, where going through any_io_executor wraps the function in
/// a second one and copies the executor to add its properties (callgrind: a MemoryBackend GET
/// from 1827 to 1531 instructions).
inline void post_erased(boost::asio::any_io_executor const& ex, ErasedCallPtr call) {
  if (auto const* io = ex.target<boost::asio::io_context::executor_type>())
    boost::asio::post(*io, InvokeErased{std::move(call)});
  else
    boost::asio::post(ex, InvokeErased{std::move(call)});
}

/// Posts handler(args...) to the handler's associated executor (or `fallback`).
template <class Handler, class... Args>
void post_handler(boost::asio::any_io_executor const& fallback, Handler&& handler,
                  Args&&... args) {
  boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler, fallback);
  post_erased(ex, make_erased_call(std::forward<Handler>(handler), std::forward<Args>(args)...));
}

}  // namespace rediskit::detail
