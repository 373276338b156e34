// rediskit::detail::Task: how a service operation is written. An operation is a coroutine
// returning Task<void(error_code, R...)>; the public async_ function hands it to launch(), which
// gives it the caller's handler (any completion token: deferred, use_awaitable, use_future, a
// lambda) and starts it:
//
//   template <class Token = boost::asio::deferred_t>
//   auto async_exists(std::string_view key, Token&& token = {}) {
//     return detail::launch(token, backend_->get_executor(), exists_op(keys_.key(key)));
//   }
//   detail::Task<void(error_code, bool)> exists_op(std::string key) {
//     if (key.empty()) co_return {make_error_code(Error::invalid_argument), false};
//     auto [ec, n] = co_await detail::exec(*backend_, cmd::exists{.keys = key});
//     co_return {ec, n > 0};
//   }
//
// Why a coroutine: its frame stays at one address from start to completion, so a command may
// view any local or parameter of the operation across any number of steps (a multi-step
// asio::async_compose op moves itself into each step's handler, and a command viewing one of
// its members would read a moved-from string). And the body is an ordinary member function,
// compiled once per service type, whatever token the caller uses: the caller's handler is
// erased (AnyHandler) before it reaches the body.
//
// Rules the type enforces:
//  - the operation owns its arguments: take parameters by value (std::string, not
//    std::string_view of the caller's data), because with a lazy token (deferred) the body
//    starts after the async_ function returned; views of the service's own members are fine;
//  - it never completes inside the initiating call: if it co_returns before its first
//    co_await, the completion is posted to the handler's executor;
//  - every step resumes on the handler's associated executor (else the fallback given to
//    launch, the backend's), where the final completion then runs directly; the caller's
//    cancellation slot is passed to the operation awaited at the time;
//  - an exception escaping the body completes the handler with Error::operation_threw.
//
// Awaitables inside a Task: detail::exec(backend, x[, diag]) for a command, batch or range;
// detail::await_op<void(Args...)>(start) for any Asio-style operation, where start(handler)
// initiates it with the handler.
#pragma once

#include <rediskit/command.hpp>
#include <rediskit/detail/any_handler.hpp>
#include <rediskit/detail/post.hpp>
#include <rediskit/error.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

namespace rediskit::detail {

/// What the awaitables of a running Task need from it.
struct TaskState {
  boost::asio::any_io_executor home;  ///< where every step and the completion run
  boost::asio::cancellation_slot slot;
  bool suspended = false;  ///< false until the first co_await: completion must then be posted
};

/// Coroutine frames come from Asio's thread-local recycling allocator: an operation started
/// as the previous one completes reuses its block (no malloc in steady state).
struct RecycledFrame {
  static void* operator new(std::size_t n) {
    return boost::asio::recycling_allocator<std::byte>().allocate(n);
  }
  static void operator delete(void* p, std::size_t n) noexcept {
    boost::asio::recycling_allocator<std::byte>().deallocate(static_cast<std::byte*>(p), n);
  }
};

template <class Sig>
class Task;

template <class... Args>
class Task<void(Args...)> {
 public:
  using signature = void(Args...);
  using result_type = std::tuple<Args...>;
  static_assert((std::is_default_constructible_v<Args> && ...),
                "a Task's completion values must be default-constructible (an exception "
                "completes the handler with Error::operation_threw and default values)");

  struct promise_type : TaskState, RecycledFrame {
    AnyHandler<void(Args...)> handler;
    std::optional<result_type> result;
    std::optional<decltype(boost::asio::prefer(
        std::declval<boost::asio::any_io_executor>(),
        boost::asio::execution::outstanding_work.tracked))>
        work;

    Task get_return_object() noexcept {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    auto final_suspend() noexcept { return Final{}; }
    void return_value(result_type r) noexcept(std::is_nothrow_move_constructible_v<result_type>) {
      result.emplace(std::move(r));
    }
    void unhandled_exception() noexcept {
      result.emplace();
      if constexpr (sizeof...(Args) > 0) {
        using First = std::tuple_element_t<0, result_type>;
        if constexpr (std::is_same_v<First, boost::system::error_code>)
          std::get<0>(*result) = make_error_code(Error::operation_threw);
      }
    }
  };

  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~Task() {
    if (h_) h_.destroy();  // launched but never started (a deferred operation dropped)
  }

  /// Gives the operation its handler and runs it up to its first co_await.
  void start(AnyHandler<void(Args...)> handler, boost::asio::any_io_executor const& fallback) && {
    auto& p = h_.promise();
    p.home = handler.executor(fallback);
    p.slot = handler.cancellation_slot();
    // The backend's own operations keep the fallback's context running; another executor (a
    // strand of another io_context, a thread pool) is kept busy by the Task itself.
    if (p.home != fallback)
      p.work.emplace(boost::asio::prefer(p.home, boost::asio::execution::outstanding_work.tracked));
    p.handler = std::move(handler);
    std::exchange(h_, {}).resume();
  }

 private:
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}

  struct Final {
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
      auto& p = h.promise();
      auto handler = std::move(p.handler);
      result_type r = std::move(*p.result);
      bool const inline_start = !p.suspended;
      boost::asio::any_io_executor home = std::move(p.home);
      auto work = std::move(p.work);
      h.destroy();
      if (inline_start)
        std::apply([&](Args&... a) { post_handler(home, std::move(handler), std::move(a)...); },
                   r);
      else
        std::apply(std::move(handler), std::move(r));
    }
    void await_resume() const noexcept {}
  };

  std::coroutine_handle<promise_type> h_;
};

/// The handler an awaited operation completes: stores its values and resumes the Task on the
/// Task's executor.
template <class... Args>
struct Resume {
  std::coroutine_handle<> coro;
  TaskState* task;
  std::tuple<Args...>* out;

  void operator()(Args... a) {
    *out = std::tuple<Args...>(std::move(a)...);
    coro.resume();
  }

  using executor_type = boost::asio::any_io_executor;
  executor_type get_executor() const noexcept { return task->home; }
  using cancellation_slot_type = boost::asio::cancellation_slot;
  cancellation_slot_type get_cancellation_slot() const noexcept { return task->slot; }
};

template <class Sig, class Start>
struct OpAwaiter;

template <class... Args, class Start>
struct OpAwaiter<void(Args...), Start> {
  Start start;
  std::tuple<Args...> values{};

  bool await_ready() const noexcept { return false; }
  template <class P>
  void await_suspend(std::coroutine_handle<P> h) {
    TaskState& t = h.promise();
    t.suspended = true;
    std::move(start)(Resume<Args...>{h, &t, &values});
  }
  std::tuple<Args...> await_resume() { return std::move(values); }
};

/// co_await await_op<void(error_code, T)>([&](auto handler) { timer.async_wait(...); }):
/// any Asio-style operation; the result is a std::tuple of its completion values.
template <class Sig, class Start>
OpAwaiter<Sig, Start> await_op(Start start) {
  return {std::move(start)};
}

template <class X>
struct Stored {
  using type = X;  // a command or a batch: views, cheap to copy
  using reply = reply_t<X>;
};
template <class X>
  requires(!Command<X> && !is_batch_v<X>)
struct Stored<X> {
  using C = std::ranges::range_value_t<X>;
  using type = std::span<C const>;  // a range of commands: viewed, not copied
  using reply = std::vector<reply_t<C>>;
};

/// co_await exec(backend, x): runs a command, batch or range of commands; gives
/// std::tuple<error_code, reply>. `x` is copied into the awaiter (commands are views: what
/// they view must be the Task's own locals or parameters, or the service's members).
template <class B, class X>
auto exec(B& backend, X const& x, Diagnostics* diag = nullptr) {
  using S = typename Stored<X>::type;
  using R = typename Stored<X>::reply;
  return await_op<void(boost::system::error_code, R)>(
      [&backend, s = S(x), diag](auto handler) {
        if (diag)
          backend.async_exec(s, *diag, std::move(handler));
        else
          backend.async_exec(s, std::move(handler));
      });
}

/// Starts `task` with the handler of `token` (see the top of this file). `fallback`: the
/// executor of steps and completion when the handler has none (the backend's).
template <class Token, class Sig>
auto launch(Token&& token, boost::asio::any_io_executor fallback, Task<Sig> task) {
  return boost::asio::async_initiate<Token, Sig>(
      [](auto&& handler, boost::asio::any_io_executor const& fb, Task<Sig> t) {
        std::move(t).start(AnyHandler<Sig>(std::move(handler)), fb);
      },
      token, std::move(fallback), std::move(task));
}

}  // namespace rediskit::detail
