// rediskit::detail::AnyHandler<void(Args...)>: a move-only completion handler of any type
// behind one type, as asio::any_completion_handler (Boost 1.82+, not in Debian 12's 1.81).
//
// Every backend and service erases the caller's handler into an AnyHandler before it reaches
// the code that does the work, so that code is compiled once per command or operation, not
// once per completion token, lambda or coroutine that calls it. The erased handler keeps what
// Asio asks of a handler: its associated executor (where it must run), its cancellation slot,
// and its allocator (used for its own storage when it does not fit inline).
//
// Cost: handlers up to `inline_size` bytes that move without throwing live inside the
// AnyHandler (a coroutine's or a lambda's handler with a few captures: no allocation); a larger
// one takes one block from its associated allocator (Asio's thread-local recycling allocator by
// default, so no malloc in steady state). A call is one indirect call.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/recycling_allocator.hpp>

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace rediskit::detail {

template <class Sig>
class AnyHandler;

template <class... Args>
class AnyHandler<void(Args...)> {
  static_assert((!std::is_reference_v<Args> && ...),
                "AnyHandler's signature takes its arguments by value (as a completion signature)");

 public:
  static constexpr std::size_t inline_size = 4 * sizeof(void*);

  AnyHandler() noexcept = default;

  template <class H>
    requires(!std::is_same_v<std::decay_t<H>, AnyHandler> &&
             std::is_invocable_v<std::decay_t<H>, Args...>)
  AnyHandler(H&& h) {  // NOLINT(google-explicit-constructor): a handler converts implicitly
    using D = std::decay_t<H>;
    if constexpr (fits_inline<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<H>(h));
      vt_ = &inline_vtable<D>;
    } else {
      auto alloc = rebound<Heap<D>>(h);
      using Traits = std::allocator_traits<decltype(alloc)>;
      Heap<D>* p = Traits::allocate(alloc, 1);
      try {
        ::new (static_cast<void*>(p)) Heap<D>{D(std::forward<H>(h))};
      } catch (...) {
        Traits::deallocate(alloc, p, 1);
        throw;
      }
      *reinterpret_cast<Heap<D>**>(buf_) = p;
      vt_ = &heap_vtable<D>;
    }
  }

  AnyHandler(AnyHandler&& o) noexcept : vt_(std::exchange(o.vt_, nullptr)) {
    if (vt_) vt_->move(buf_, o.buf_);
  }
  AnyHandler& operator=(AnyHandler&& o) noexcept {
    if (this != &o) {
      reset();
      vt_ = std::exchange(o.vt_, nullptr);
      if (vt_) vt_->move(buf_, o.buf_);
    }
    return *this;
  }
  AnyHandler(AnyHandler const&) = delete;
  AnyHandler& operator=(AnyHandler const&) = delete;
  ~AnyHandler() { reset(); }

  explicit operator bool() const noexcept { return vt_ != nullptr; }

  /// Calls the handler once: its storage is freed first (Asio's rule: memory goes back before
  /// the upcall, so the handler may start the next operation with it). An rvalue argument of
  /// the signature's own type reaches the handler as it is; anything else is converted first.
  /// (By value, a reply would be moved once more on its way from the engine to the coroutine,
  /// where every move of a reply string shows in a MemoryBackend GET's cost.)
  template <class... A>
    requires(sizeof...(A) == sizeof...(Args) && (std::is_convertible_v<A &&, Args> && ...))
  void operator()(A&&... args) && {
    auto const* vt = std::exchange(vt_, nullptr);
    vt->invoke(buf_, as_arg<Args>(std::forward<A>(args))...);
  }

  /// The handler's associated executor, or `fallback` when it has none.
  boost::asio::any_io_executor executor(boost::asio::any_io_executor const& fallback) const {
    return vt_->executor(buf_, fallback);
  }
  /// The handler's associated cancellation slot (unconnected when it has none).
  boost::asio::cancellation_slot cancellation_slot() const noexcept { return vt_->slot(buf_); }

 private:
  struct VTable {
    void (*invoke)(unsigned char*, Args&&...);
    void (*move)(unsigned char* to, unsigned char* from) noexcept;
    void (*destroy)(unsigned char*) noexcept;
    boost::asio::any_io_executor (*executor)(unsigned char const*,
                                             boost::asio::any_io_executor const&);
    boost::asio::cancellation_slot (*slot)(unsigned char const*) noexcept;
  };

  // T&& to an rvalue T itself; otherwise a T converted from `a` (a temporary that lives until
  // the call returns).
  template <class T, class A>
  static decltype(auto) as_arg(A&& a) {
    if constexpr (std::is_same_v<std::remove_cvref_t<A>, T> && !std::is_lvalue_reference_v<A>)
      return static_cast<T&&>(a);
    else
      return T(std::forward<A>(a));
  }

  template <class D>
  static constexpr bool fits_inline = sizeof(D) <= inline_size &&
                                      alignof(D) <= alignof(std::max_align_t) &&
                                      std::is_nothrow_move_constructible_v<D>;

  template <class D>
  struct Heap {
    D handler;
  };

  template <class T, class H>
  static auto rebound(H const& h) {
    auto a = boost::asio::get_associated_allocator(h, boost::asio::recycling_allocator<void>());
    return typename std::allocator_traits<decltype(a)>::template rebind_alloc<T>(a);
  }

  template <class D>
  static D& in(unsigned char* b) noexcept {
    return *std::launder(reinterpret_cast<D*>(b));
  }
  template <class D>
  static D const& in(unsigned char const* b) noexcept {
    return *std::launder(reinterpret_cast<D const*>(b));
  }
  template <class D>
  static Heap<D>* heap(unsigned char const* b) noexcept {
    return *reinterpret_cast<Heap<D>* const*>(b);
  }
  template <class D>
  static void free_heap(Heap<D>* p) noexcept {
    auto alloc = rebound<Heap<D>>(p->handler);
    p->~Heap<D>();
    std::allocator_traits<decltype(alloc)>::deallocate(alloc, p, 1);
  }

  template <class D>
  static constexpr VTable inline_vtable{
      [](unsigned char* b, Args&&... a) {
        D h(std::move(in<D>(b)));
        in<D>(b).~D();
        std::move(h)(std::forward<Args>(a)...);
      },
      [](unsigned char* to, unsigned char* from) noexcept {
        ::new (static_cast<void*>(to)) D(std::move(in<D>(from)));
        in<D>(from).~D();
      },
      [](unsigned char* b) noexcept { in<D>(b).~D(); },
      [](unsigned char const* b, boost::asio::any_io_executor const& fb) {
        return boost::asio::any_io_executor(boost::asio::get_associated_executor(in<D>(b), fb));
      },
      [](unsigned char const* b) noexcept {
        return boost::asio::cancellation_slot(
            boost::asio::get_associated_cancellation_slot(in<D>(b)));
      },
  };

  template <class D>
  static constexpr VTable heap_vtable{
      [](unsigned char* b, Args&&... a) {
        Heap<D>* p = heap<D>(b);
        D h(std::move(p->handler));
        free_heap(p);
        std::move(h)(std::forward<Args>(a)...);
      },
      [](unsigned char* to, unsigned char* from) noexcept {
        *reinterpret_cast<Heap<D>**>(to) = heap<D>(from);
      },
      [](unsigned char* b) noexcept { free_heap(heap<D>(b)); },
      [](unsigned char const* b, boost::asio::any_io_executor const& fb) {
        return boost::asio::any_io_executor(
            boost::asio::get_associated_executor(heap<D>(b)->handler, fb));
      },
      [](unsigned char const* b) noexcept {
        return boost::asio::cancellation_slot(
            boost::asio::get_associated_cancellation_slot(heap<D>(b)->handler));
      },
  };

  void reset() noexcept {
    if (auto const* vt = std::exchange(vt_, nullptr)) vt->destroy(buf_);
  }

  alignas(std::max_align_t) unsigned char buf_[inline_size];
  VTable const* vt_ = nullptr;
};

/// A caller's handler, not moved yet: `erase()` moves it into an AnyHandler. Lets code that is
/// compiled once per command (not per handler type) read the command before the handler, and
/// whatever the command views in it, moves.
template <class Sig>
class LazyHandler {
 public:
  template <class H>
  explicit LazyHandler(H& h) noexcept
      : h_(std::addressof(h)),
        make_([](void* p) { return AnyHandler<Sig>(std::move(*static_cast<H*>(p))); }) {}
  AnyHandler<Sig> operator()() const { return make_(h_); }

 private:
  void* h_;
  AnyHandler<Sig> (*make_)(void*);
};

}  // namespace rediskit::detail

// Asio finds the erased handler's executor and cancellation slot through these, as it would
// the handler's own.
template <class... Args, class Default>
struct boost::asio::associated_executor<rediskit::detail::AnyHandler<void(Args...)>, Default> {
  using type = boost::asio::any_io_executor;
  static type get(rediskit::detail::AnyHandler<void(Args...)> const& h,
                  Default const& d = Default()) {
    return h.executor(type(d));
  }
};

template <class... Args, class Default>
struct boost::asio::associated_cancellation_slot<rediskit::detail::AnyHandler<void(Args...)>,
                                                 Default> {
  using type = boost::asio::cancellation_slot;
  static type get(rediskit::detail::AnyHandler<void(Args...)> const& h,
                  Default const& = Default()) noexcept {
    return h.cancellation_slot();
  }
};
