// The thread pool behind fastloss/parallel.hpp (compiled once, baseline flags).
//
// One job at a time: the caller publishes it, wakes sleeping helpers, and takes chunks from the
// shared counter itself. When the counter runs out the caller closes the job and waits only for
// helpers that are inside it (running a chunk); a helper that wakes later finds the job closed.
// Helpers spin briefly after a job (passes in quick succession find them awake), poll with
// sched_yield for half a millisecond (calls with other work between them find them awake too),
// then sleep on a futex. A longer pure spin (2000 pauses, ~70 us) kept helpers spinning between
// the calls of a loop and took a shared core's time from the caller: MSE n=1e5 at up to 1.6x its
// one-thread time with one busy process, against at most 1.2x with 200; yielding gives the core
// away instead (bench/bench_threads.py: every case at most 1.1x under load).
// After fork() the child starts a fresh pool: the parent's helpers do not exist there.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>  // WaitOnAddress, WakeByAddressAll (Synchronization.lib, Windows 8+)
#else
#include <pthread.h>
#include <signal.h>
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "fastloss/parallel.hpp"

namespace fastloss {
namespace {

constexpr int kMaxHelpers = 255;
constexpr int kSpin = 200;  // pauses before polling: a few microseconds (see above)
constexpr auto kPoll = std::chrono::microseconds(500);  // polling with sched_yield, then sleep

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(_M_X64)
  YieldProcessor();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

using Word = std::atomic<std::uint32_t>;
static_assert(sizeof(Word) == sizeof(std::uint32_t), "futex word");

void sleep_while(Word& w, std::uint32_t v) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT_PRIVATE, v, nullptr,
          nullptr, 0);
#elif defined(_WIN32)
  WaitOnAddress(reinterpret_cast<volatile VOID*>(&w), &v, sizeof v, INFINITE);
#else  // macOS and the BSDs: no portable futex; a short sleep between checks
  if (w.load() == v) std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
}

void wake(Word& w, int n) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE_PRIVATE, n, nullptr,
          nullptr, 0);
#elif defined(_WIN32)
  WakeByAddressAll(reinterpret_cast<PVOID>(&w));
#endif
}

struct Pool {
  Word epoch{0};                  // bumped once per job; sleeping helpers wait on it
  std::atomic<int> sleepers{0};   // helpers in (or about to enter) the futex wait
  std::atomic<int> active{0};     // helpers between waking and leaving the current job
  std::atomic<int> seats{0};      // helpers that joined the current job
  std::atomic<bool> open{false};  // the job's chunks may be taken
  std::atomic<bool> busy{false};  // a caller owns the pool
  std::atomic<index_t> next{0};   // next chunk to hand out
  std::mutex error_lock;          // guards `error`: the first exception a helper's chunk threw
  std::exception_ptr error;
  // The job; written by its caller before `open`, read by helpers after seeing `open`.
  index_t chunks = 0;
  int helpers = 0;
  void (*fn)(void*, index_t, int) = nullptr;
  void* ctx = nullptr;
  int started = 0;  // helper threads created (only the owning caller changes it)

  void helper_loop(std::uint32_t seen) {
    for (;;) {
      for (int i = 0; i < kSpin && epoch.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      // Then poll politely for a while: sched_yield hands the core to any other runnable thread
      // (a busy process, or the caller itself), so the polling costs nobody else's time, and the
      // next call soon after (a loop with other work between its calls) finds the helper awake
      // instead of paying a futex wake-up that can take longer than the call.
      if (epoch.load(std::memory_order_acquire) == seen) {
        const auto until = std::chrono::steady_clock::now() + kPoll;
        while (epoch.load(std::memory_order_acquire) == seen &&
               std::chrono::steady_clock::now() < until)
          std::this_thread::yield();
      }
      if (epoch.load(std::memory_order_acquire) == seen) {
        sleepers.fetch_add(1);  // seq_cst, paired with the caller's bump then sleepers check
        while (epoch.load() == seen) sleep_while(epoch, seen);
        sleepers.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = epoch.load(std::memory_order_acquire);
      active.fetch_add(1);  // seq_cst, paired with the caller's close then active check
      int seat;
      if (open.load() && (seat = seats.fetch_add(1, std::memory_order_relaxed)) < helpers) {
        index_t c;
        try {
          while ((c = next.fetch_add(1, std::memory_order_relaxed)) < chunks) fn(ctx, c, seat + 1);
        } catch (...) {  // handed to the caller, which rethrows it after closing the job
          next.store(chunks);
          std::lock_guard<std::mutex> hold(error_lock);
          if (!error) error = std::current_exception();
        }
      }
      active.fetch_sub(1, std::memory_order_release);
    }
  }

  // Creates helpers up to n; returns how many exist (fewer if the system refuses threads).
  int grow(int n) {
#if !defined(_WIN32)
    sigset_t all, old;  // helpers inherit a mask that blocks every signal: they go to the
    sigfillset(&all);   // interpreter's threads
    pthread_sigmask(SIG_BLOCK, &all, &old);
#endif
    while (started < n) {
      try {
        const std::uint32_t now = epoch.load();
        std::thread([this, now] { helper_loop(now); }).detach();
      } catch (const std::system_error&) {
        break;
      }
      ++started;
    }
#if !defined(_WIN32)
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
#endif
    return started;
  }
};

// Never destroyed: detached helpers may still sleep on it at exit. A forked child replaces it.
std::atomic<Pool*> g_pool{nullptr};
[[maybe_unused]] std::atomic<bool> g_atfork{false};

[[maybe_unused]] void forget_pool_in_child() { g_pool.store(nullptr, std::memory_order_relaxed); }

Pool* acquire() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (!p) {
#if !defined(_WIN32)  // Windows has no fork
    if (!g_atfork.exchange(true)) pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
    Pool* fresh = new Pool;
    if (g_pool.compare_exchange_strong(p, fresh))
      p = fresh;
    else
      delete fresh;
  }
  return p->busy.exchange(true, std::memory_order_acquire) ? nullptr : p;
}

}  // namespace

void run_chunks(index_t chunks, int helpers, void (*fn)(void*, index_t, int), void* ctx) {
  Pool* p = helpers > 0 && chunks > 1 ? acquire() : nullptr;
  if (p) {
    const int have = p->grow(helpers < kMaxHelpers ? helpers : kMaxHelpers);
    helpers = have < helpers ? have : helpers;
  }
  if (!p || helpers <= 0) {
    struct Release {  // the pool is free again also when a chunk throws
      Pool* p;
      ~Release() {
        if (p) p->busy.store(false, std::memory_order_release);
      }
    } release{p};
    for (index_t c = 0; c < chunks; ++c) {
      fn(ctx, c, 0);
      poll_interrupt();
    }
    return;
  }
  p->chunks = chunks, p->helpers = helpers, p->fn = fn, p->ctx = ctx;
  p->seats.store(0, std::memory_order_relaxed);
  p->next.store(0, std::memory_order_relaxed);
  p->open.store(true);
  p->epoch.fetch_add(1);
  if (p->sleepers.load() > 0) wake(p->epoch, helpers);
  std::exception_ptr error;  // a helper's, taken once no helper is inside the job
  auto close = [p, &error] {
    p->open.store(false);
    for (int i = 0; p->active.load(std::memory_order_acquire) != 0; ++i)
      if (i < kSpin)
        cpu_relax();
      else
        std::this_thread::yield();  // a helper inside a chunk was preempted: let it finish
    error = std::move(p->error);
    p->error = nullptr;
    p->busy.store(false, std::memory_order_release);
  };
  try {
    index_t c;
    while ((c = p->next.fetch_add(1, std::memory_order_relaxed)) < chunks) {
      fn(ctx, c, 0);
      poll_interrupt();
    }
  } catch (...) {
    p->next.store(chunks);
    close();
    throw;
  }
  close();
  if (error) std::rethrow_exception(error);
}

namespace {
// A clock reading costs ~0.25 us on some virtual machines (against ~5 us for a chunk of 16384
// elements): it is taken once every kPollsPerClock polls, so polling stays far below 1 %.
constexpr unsigned kPollsPerClock = 32;
thread_local void (*t_check)() = nullptr;
thread_local long long t_deadline = 0;  // 0: the clock not read yet in this scope
thread_local unsigned t_polls = 0;

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

InterruptScope::InterruptScope(void (*check)()) : saved_check(t_check), saved_deadline(t_deadline) {
  t_check = check, t_deadline = 0;
}

InterruptScope::~InterruptScope() { t_check = saved_check, t_deadline = saved_deadline; }

void poll_interrupt() {
  if (!t_check || ++t_polls % kPollsPerClock) return;
  const long long now = now_ns();
  if (t_deadline == 0) {  // the first reading in this call: the period starts here
    t_deadline = now + kInterruptPeriodNs;
  } else if (now >= t_deadline) {
    t_deadline = now + kInterruptPeriodNs;
    t_check();
  }
}

}  // namespace fastloss
