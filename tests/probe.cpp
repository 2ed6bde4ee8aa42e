// A Calypso-DSM program made for the integration tests: each mode checks one promise of
// the runtime from inside a real job and exits 0 only if it held.
//
//   probe adjacent            segments write neighbouring bytes of the same words
//   probe snapshot STEPS      segments read shared data that other segments write
//   probe sparse MIB          one segment writes one byte in every other 4 KiB page
//   probe kill-once DIR       the first run of segment 3 SIGKILLs its own worker
//   probe early-death DIR     the first worker to start exits before it joins (it
//                             creates DIR/died); the program waits for 2 workers with a
//                             120 s timeout, prints how many were ready, and runs a step
//   probe occupied DIR        the same, but the first worker (it creates DIR/first) has
//                             a page mapped inside the region's range: it joins, cannot
//                             map the region, and says why as it leaves
//   probe misuse              two threads step at once, a step of too many segments, a
//                             routine that calls exit(), a second Runtime (see misuse())
//   probe crash-always        segment 2 SIGKILLs every worker that runs it
//   probe pids STEPS MS       segments record their worker's pid; each step lasts >= MS ms
//   probe null                a segment dereferences a null pointer
//   probe multi               one step holding two routines with different counts
//   probe shared              routines read and write declared Shared<T> variables
//   probe conflict            two segments write different values to one byte
//   probe big                 4 segments each write 1.5 MiB (results of several chunks)
//   probe tiny N              steps of N segments of a few nanoseconds: three where
//                             segment i writes a[i], then b[i] = a[i] + a[i+1] (results
//                             come bundled from the second step on)
//   probe crash-bunched       a step of 256 short segments, a step of longer ones, then
//                             the short ones again, where segment 200 SIGKILLs every
//                             worker that runs it (results bunched)
//   probe bigargs             8 short segments whose arguments are 600 KB each; then
//                             arguments too large for a message must be refused
//   probe frozen              segments read frozen input; then a segment that changes
//                             it must fail its step (and change nothing); then the
//                             input is read again
//   probe frozen-write        the program writes frozen memory itself: the run must end
//   probe long MS             one segment that runs for MS ms (sleeping in small steps)
//   probe idle MS FILE        one step, then a sequential step that sleeps MS ms; FILE
//                             gets "start" when the sleep begins
//   probe policy              segments record the scheduling policy of the thread that
//                             runs them; prints "probe policy: batch", "normal" or "mixed"
//   probe prefault MIB PIDS   allocates MIB MiB that nothing touches; as soon as the
//                             workers are ready, prints each one's resident shared memory (their
//                             pids from calypso-run's --pid-file PIDS), and the
//                             manager's own after the allocation; then one step
#include <calypso/calypso.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include <csignal>
#include <sys/mman.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <sched.h>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

struct Bytes { unsigned char* p; };
void write_my_byte(const calypso::Segment& seg, const Bytes& x) {
  // Segment i writes byte i of a 64-byte stretch that straddles a page boundary too.
  x.p[seg.index] = static_cast<unsigned char>(0xA0 + seg.index);
}

struct Snap { const long* in; long* out; int n; };
void sum_and_write(const calypso::Segment& seg, const Snap& x) {
  long sum = 0;
  for (int i = 0; i < x.n; ++i) sum += x.in[i];
  // out aliases in: if this segment saw another segment's write, sum is off.
  x.out[seg.index] = sum + seg.index;
}

struct Sparse { unsigned char* p; std::size_t pages; };
void touch_every_other_page(const calypso::Segment&, const Sparse& x) {
  for (std::size_t i = 0; i < x.pages; i += 2) x.p[i * 4096 + (i % 4093)] = static_cast<unsigned char>(1 + i % 251);
}

void fill_block(const calypso::Segment& seg, long* const& out) {
  for (int i = 0; i < 512; ++i) out[seg.index * 512 + i] = static_cast<long>(seg.index) * 1000 + i;
}
CALYPSO_ROUTINE(fill_block);

struct KillOnce { long* out; char dir[200]; };
void kill_once(const calypso::Segment& seg, const KillOnce& x) {
  if (seg.index == 3) {
    std::string marker = std::string(x.dir) + "/killed";
    int fd = open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd >= 0) {   // first run only: die in the middle of the segment
      close(fd);
      x.out[seg.index * 512] = -1;
      kill(getpid(), SIGKILL);
    }
  }
  for (int i = 0; i < 512; ++i) x.out[seg.index * 512 + i] = static_cast<long>(seg.index) * 1000 + i;
}

struct Crash { long* out; };
void crash_always(const calypso::Segment& seg, const Crash& x) {
  if (seg.index == 2) kill(getpid(), SIGKILL);
  x.out[seg.index] = seg.index;
}

struct CrashAt { long* out; std::uint32_t crash_at; };
void crash_bunched(const calypso::Segment& seg, const CrashAt& x) {
  if (seg.index == x.crash_at) kill(getpid(), SIGKILL);
  x.out[seg.index] = seg.index;
}

struct Pids { long* out; int ms; };
void record_pid(const calypso::Segment& seg, const Pids& x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(x.ms));
  x.out[seg.index * 4096 / sizeof(long)] = getpid();
}

struct Squares { long* out; };
void squares(const calypso::Segment& seg, const Squares& x) { x.out[seg.index] = static_cast<long>(seg.index) * seg.index; }
struct Cubes { long* out; long offset; };
void cubes(const calypso::Segment& seg, const Cubes& x) {
  x.out[seg.index] = static_cast<long>(seg.index) * seg.index * seg.index + x.offset;
}

struct Params { long scale; long table[64]; };
calypso::Shared<Params> params;          // a declared shared variable
calypso::Shared<long> total;             // another one, beside it
void scale_table(const calypso::Segment& seg) { params->table[seg.index] *= params->scale; }

void clash(const calypso::Segment& seg, const Bytes& x) { x.p[0] = static_cast<unsigned char>(seg.index + 1); }

constexpr std::size_t kBigWords = 3 * 65536;   // 1.5 MiB of doubles per segment
struct Big { double* out; };
void write_big(const calypso::Segment& seg, const Big& x) {
  volatile double sink = x.out[0];   // read first: a page fetch happens before the writes
  (void)sink;
  double* mine = x.out + seg.index * kBigWords;
  for (std::size_t i = 0; i < kBigWords; ++i) mine[i] = static_cast<double>(seg.index) * 1e7 + static_cast<double>(i);
}

struct Long { long* out; int ms; };
void run_long(const calypso::Segment&, const Long& x) {
  for (int i = 0; i < x.ms / 10; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  x.out[0] = 42;
}

struct Null { int* p; };
void deref_null(const calypso::Segment&, const Null& x) {
  volatile int* q = x.p;
  *q = 1;
}

}  // namespace

CALYPSO_ROUTINE(write_my_byte);
CALYPSO_ROUTINE(sum_and_write);
CALYPSO_ROUTINE(touch_every_other_page);
CALYPSO_ROUTINE(kill_once);
CALYPSO_ROUTINE(crash_always);
CALYPSO_ROUTINE(crash_bunched);
CALYPSO_ROUTINE(record_pid);
CALYPSO_ROUTINE(deref_null);
CALYPSO_ROUTINE(squares);
CALYPSO_ROUTINE(cubes);
CALYPSO_ROUTINE(scale_table);
CALYPSO_ROUTINE(clash);
CALYPSO_ROUTINE(write_big);
CALYPSO_ROUTINE(run_long);

struct Policies { long* out; };
void record_policy(const calypso::Segment& seg, const Policies& x) {
  x.out[seg.index] = sched_getscheduler(0);
}
CALYPSO_ROUTINE(record_policy);

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "probe: FAILED: %s\n", what);
  return 1;
}

// Misuse a program may commit: two threads stepping at once (one must be refused, and
// neither hang), a step of more segments than allowed (refused before anything runs),
// and a routine that calls exit() (its worker fails, saying why; the step fails once
// it has killed CALYPSO_MAX_ATTEMPTS workers).
void exit_zero(const calypso::Segment&) { std::exit(0); }
CALYPSO_ROUTINE(exit_zero);

int misuse(calypso::Manager& m) {
  long* out = m.alloc<long>(8 * 4096 / sizeof(long));
  m.wait_for_workers();
  std::atomic<int> refused{0}, done{0};
  auto steps = [&] {
    for (int i = 0; i < 20; ++i) {
      try {
        m.parallel(record_pid, 8, Pids{out, 5});
        ++done;
      } catch (const calypso::Error& e) {
        if (std::strstr(e.what(), "another thread's parallel() runs") == nullptr) std::printf("unexpected: %s\n", e.what());
        else ++refused;
      }
    }
  };
  std::thread a(steps), b(steps);
  a.join();
  b.join();
  if (refused == 0 || done + refused != 40) return fail("two threads stepping at once were not told apart");
  try {
    m.parallel({calypso::Task(record_pid, calypso::kMaxSegmentsPerStep, Pids{out, 0}), calypso::Task(record_pid, 1, Pids{out, 0})});
    return fail("a step of more than kMaxSegmentsPerStep segments ran");
  } catch (const calypso::Error& e) {
    if (std::strstr(e.what(), "segments; at most") == nullptr) return fail("a step too large was refused for another reason");
  }
  try {
    m.parallel(exit_zero, 1);
    return fail("a routine that calls exit() did not fail its step");
  } catch (const calypso::Error& e) {
    std::printf("probe misuse: exit() in a routine: %s\n", e.what());
  }
  try {
    calypso::Runtime second(0, nullptr);
    return fail("a second Runtime was made");
  } catch (const calypso::Error& e) {
    if (std::strstr(e.what(), "one calypso::Runtime at a time") == nullptr) return fail("a second Runtime: another error");
  }
  std::printf("probe misuse: ok (%d steps refused while another ran)\n", refused.load());
  return 0;
}

int adjacent(calypso::Manager& m) {
  // 64 bytes starting 24 bytes before a page boundary: 8 words, one crossing the page.
  auto* block = m.alloc<unsigned char>(3 * 16384);
  unsigned char* p = block + 16384 - 24;
  m.parallel(write_my_byte, 64, Bytes{p});
  for (int i = 0; i < 64; ++i) {
    if (p[i] != 0xA0 + i) return fail("a byte written by one segment was lost");
  }
  if (p[-1] != 0 || p[64] != 0) return fail("bytes next to the written ones changed");
  // A count whose size in bytes wraps around is refused, not turned into a small block.
  try {
    m.alloc<double>(SIZE_MAX / sizeof(double) + 2);
    return fail("alloc<double>(SIZE_MAX / 8 + 2) returned a block");
  } catch (const calypso::Error&) {
  }
  std::puts("probe adjacent: ok");
  return 0;
}

int snapshot(calypso::Manager& m, int steps) {
  const int n = 32;
  long* v = m.alloc<long>(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  for (int s = 0; s < steps; ++s) {
    long sum = 0;
    for (int i = 0; i < n; ++i) sum += v[i];
    m.parallel(sum_and_write, n, Snap{v, v, n});
    for (int i = 0; i < n; ++i) {
      if (v[i] != sum + i) return fail("a segment saw another segment's write");
    }
    v[s % n] += 7;   // a sequential write: workers must see it next step (write notice)
  }
  std::puts("probe snapshot: ok");
  return 0;
}

int sparse(calypso::Manager& m, std::size_t mib) {
  const std::size_t pages = mib * 256;
  auto* p = m.alloc<unsigned char>(pages * 4096);
  m.parallel(touch_every_other_page, 1, Sparse{p, pages});
  for (std::size_t i = 0; i < pages; ++i) {
    unsigned char want = i % 2 == 0 ? static_cast<unsigned char>(1 + i % 251) : 0;
    if (p[i * 4096 + (i % 4093)] != want) return fail("a sparse write is missing");
  }
  std::printf("probe sparse: ok (%zu pages written)\n", pages / 2);
  return 0;
}

int kill_once_mode(calypso::Manager& m, const char* dir) {
  const int segs = 8;
  long* out = m.alloc<long>(segs * 512);
  KillOnce args{out, {}};
  std::snprintf(args.dir, sizeof args.dir, "%s", dir);
  m.parallel(kill_once, segs, args);
  for (int s = 0; s < segs; ++s) {
    for (int i = 0; i < 512; ++i) {
      if (out[s * 512 + i] != static_cast<long>(s) * 1000 + i) return fail("wrong value after a worker died");
    }
  }
  std::printf("probe kill-once: ok (%llu re-executions)\n",
              static_cast<unsigned long long>(m.stats().reexecutions));
  return 0;
}

// A worker that dies before joining: only calypso-run sees it, and tells the manager, so
// that this wait ends with the one worker that came instead of at its timeout.
int early_death(calypso::Manager& m) {
  const int segs = 8;
  long* out = m.alloc<long>(segs * 512);
  const auto start = std::chrono::steady_clock::now();
  const std::size_t ready = m.wait_for_workers(2, std::chrono::seconds(120));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.parallel(fill_block, segs, out);
  for (int s = 0; s < segs; ++s) {
    if (out[s * 512 + 7] != static_cast<long>(s) * 1000 + 7) return fail("wrong value");
  }
  std::printf("probe early-death: ok (%zu ready after %.1f s)\n", ready, waited);
  return 0;
}

int pids(calypso::Manager& m, int steps, int ms) {
  const int segs = 8;
  long* out = m.alloc<long>(segs * 4096 / sizeof(long));
  std::set<long> seen;
  // Tests that stop or kill a worker wait for this line, so that it has joined.
  std::printf("probe pids: started with %zu workers\n", m.wait_for_workers());
  std::fflush(stdout);
  for (int s = 0; s < steps; ++s) {
    m.parallel(record_pid, segs, Pids{out, ms});
    for (int i = 0; i < segs; ++i) {
      long pid = out[i * 4096 / sizeof(long)];
      if (pid <= 0) return fail("a segment did not run");
      seen.insert(pid);
    }
  }
  std::printf("probe pids: ok (%zu distinct workers ran segments)\n", seen.size());
  return 0;
}

// The resident shared memory of a process (the region's memfd pages it has mapped, not
// its heap, which MALLOC_PERTURB_ under meson test fills), from /proc/PID/status; -1 if
// unreadable.
long resident_kib(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("RssShmem:", 0) == 0) return std::atol(line.c_str() + 9);
  }
  return -1;
}

// What wait_for_workers() promises about memory: the workers have allocated the part of
// the region in use (CALYPSO_PREFAULT) before it returns, so steps do not pay for it.
int prefault(calypso::Manager& m, std::size_t mib, const std::string& pid_file) {
  char* unused = m.alloc<char>(mib << 20);
  (void)unused;
  std::printf("probe prefault: manager resident %ld KiB\n", resident_kib(getpid()));
  const std::size_t workers = m.wait_for_workers();
  std::vector<long> pids;
  for (int tries = 0; tries < 100 && pids.size() < workers; ++tries) {   // written at launch
    pids.clear();
    std::ifstream f(pid_file);
    std::string role;
    long pid = 0;
    while (f >> role >> pid) {
      if (role == "worker") pids.push_back(pid);
    }
    if (pids.size() < workers) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (pids.size() != workers) return fail("the pid file does not list every worker");
  for (long pid : pids) std::printf("probe prefault: worker %ld resident %ld KiB\n", pid, resident_kib(pid));
  long* out = m.alloc<long>(4 * 4096 / sizeof(long));
  m.parallel(record_pid, 4, Pids{out, 0});
  std::puts("probe prefault: ok");
  return 0;
}

struct Tiny { long* a; long* b; std::uint32_t n; long step; };
void tiny_write(const calypso::Segment& seg, const Tiny& x) { x.a[seg.index] = 3L * seg.index + 1 + x.step; }
void tiny_sum(const calypso::Segment& seg, const Tiny& x) {
  x.b[seg.index] = x.a[seg.index] + x.a[(seg.index + 1) % x.n];
}
CALYPSO_ROUTINE(tiny_write);
CALYPSO_ROUTINE(tiny_sum);

// Segments far shorter than a message: their results travel bundled, and each still
// counts once, with every other segment's write to the same pages intact.
int tiny(calypso::Manager& m, std::uint32_t n) {
  long* a = m.alloc<long>(n);
  long* b = m.alloc<long>(n);
  std::printf("probe tiny: started with %zu workers\n", m.wait_for_workers());
  std::fflush(stdout);
  // A worker holds results only across segments it ran short before: from step 2 on.
  for (long s = 0; s < 3; ++s) {
    m.parallel(tiny_write, n, Tiny{a, b, n, s});
    for (std::uint32_t i = 0; i < n; ++i) {
      if (a[i] != 3L * i + 1 + s) return fail("a tiny segment's write is missing");
    }
  }
  m.parallel(tiny_sum, n, Tiny{a, b, n, 0});
  for (std::uint32_t i = 0; i < n; ++i) {
    if (b[i] != a[i] + a[(i + 1) % n]) return fail("a tiny segment read something other than the snapshot");
  }
  std::printf("probe tiny: ok (%u segments, %llu results bundled)\n", n,
              static_cast<unsigned long long>(m.stats().bundled_results));
  return 0;
}

// Arguments of 600 KB: two assignments do not fit one message (1 MiB), so two must
// never go out in one bundle.
struct BigArgs {
  long* out;
  unsigned char blob[600000];
};
void sum_blob(const calypso::Segment& seg, const BigArgs& x) {
  long sum = 0;
  for (unsigned char c : x.blob) sum += c;
  x.out[seg.index * 512] = sum + seg.index;
}
CALYPSO_ROUTINE(sum_blob);
struct HugeArgs {
  unsigned char blob[1100000];
};
void never_runs(const calypso::Segment&, const HugeArgs&) { std::abort(); }
CALYPSO_ROUTINE(never_runs);

struct Frozen { const long* in; long* out; std::size_t n; };
void sum_frozen(const calypso::Segment& seg, const Frozen& x) {
  long sum = 0;
  for (std::size_t j = seg.index; j < x.n; j += seg.count) sum += x.in[j];
  x.out[seg.index * 512] = sum;
}
CALYPSO_ROUTINE(sum_frozen);
void write_frozen(const calypso::Segment& seg, const Frozen& x) {
  x.out[seg.index * 512] = -1;
  if (seg.index == 1) const_cast<long*>(x.in)[100] = -1;
}
CALYPSO_ROUTINE(write_frozen);

// Manager::freeze: frozen input is read by every segment (mapped on this host), and a
// routine that changes it fails its step without changing anything.
int frozen(calypso::Manager& m) {
  const std::size_t n = (std::size_t{4} << 20) / sizeof(long);
  long* in = m.alloc<long>(n);
  long* out = m.alloc<long>(8 * 512);
  for (std::size_t j = 0; j < n; ++j) in[j] = static_cast<long>(j * 2654435761u % 1000003);
  if (m.freeze(in, n) != n * sizeof(long)) return fail("freeze did not cover the whole page-aligned block");
  if (m.freeze(in + 1, 10) != 0) return fail("freeze covered a page it only partly holds");
  long local = 0;
  try {
    m.freeze(&local, 1);
    return fail("freeze accepted memory outside the region");
  } catch (const calypso::Error&) {
  }
  try {   // inside the region, but not handed out: it would be cleared when it is
    m.freeze(reinterpret_cast<const char*>(out) + (std::size_t{64} << 20), std::size_t{1} << 20);
    return fail("freeze accepted memory that is not allocated");
  } catch (const calypso::Error&) {
  }
  auto check = [&] {
    for (std::uint32_t i = 0; i < 8; ++i) {
      long want = 0;
      for (std::size_t j = i; j < n; j += 8) want += in[j];
      if (out[i * 512] != want) return false;
    }
    return true;
  };
  m.parallel(sum_frozen, 8, Frozen{in, out, n});
  if (!check()) return fail("a segment read frozen memory wrong");
  try {
    m.parallel(write_frozen, 8, Frozen{in, out, n});
    return fail("a step that changed frozen memory succeeded");
  } catch (const calypso::Error& e) {
    std::printf("probe frozen: refused: %s\n", e.what());
  }
  if (in[100] != static_cast<long>(std::size_t{100} * 2654435761u % 1000003)) return fail("frozen memory changed");
  for (std::uint32_t i = 0; i < 8; ++i) {
    if (out[i * 512] == -1) return fail("the failed step's writes reached shared memory");
  }
  m.parallel(sum_frozen, 8, Frozen{in, out, n});
  if (!check()) return fail("a segment read frozen memory wrong after the failed step");
  std::puts("probe frozen: ok");
  return 0;
}

int bigargs(calypso::Manager& m) {
  auto args = std::make_unique<BigArgs>();
  long want = 0;
  for (std::size_t i = 0; i < sizeof args->blob; ++i) {
    args->blob[i] = static_cast<unsigned char>(i * 7);
    want += args->blob[i];
  }
  args->out = m.alloc<long>(8 * 512);
  m.parallel(sum_blob, 8, *args);
  for (int i = 0; i < 8; ++i) {
    if (args->out[i * 512] != want + i) return fail("a segment with large arguments");
  }
  auto huge = std::make_unique<HugeArgs>();
  try {
    m.parallel(never_runs, 2, *huge);
    return fail("1.1 MB of arguments were accepted");
  } catch (const calypso::Error& e) {
    if (std::string(e.what()).find("bytes of arguments; at most") == std::string::npos) return fail(e.what());
  }
  m.parallel(sum_blob, 8, *args);   // the job goes on
  std::printf("probe bigargs: ok\n");
  return 0;
}

int multi(calypso::Manager& m) {
  long* sq = m.alloc<long>(40);
  long* cu = m.alloc<long>(25);
  m.parallel({calypso::Task(squares, 40, Squares{sq}), calypso::Task(cubes, 25, Cubes{cu, 7})});
  for (long i = 0; i < 40; ++i) {
    if (sq[i] != i * i) return fail("first routine of a two-routine step");
  }
  for (long i = 0; i < 25; ++i) {
    if (cu[i] != i * i * i + 7) return fail("second routine of a two-routine step");
  }
  std::puts("probe multi: ok");
  return 0;
}

int shared(calypso::Manager& m) {
  params->scale = 3;
  for (long i = 0; i < 64; ++i) params->table[i] = i + 1;
  *total = 5;
  m.parallel(scale_table, 64);
  m.parallel(scale_table, 64);   // second step: the workers must see the first's writes
  for (long i = 0; i < 64; ++i) {
    if (params->table[i] != (i + 1) * 9) return fail("a shared variable lost a write");
  }
  if (*total != 5 || reinterpret_cast<char*>(total.get()) < reinterpret_cast<char*>(params.get() + 1)) {
    return fail("shared variables overlap");
  }
  std::puts("probe shared: ok");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const char* role = std::getenv("CALYPSO_ROLE");
  if (mode == "early-death" && argc > 2 && role != nullptr && std::string(role) == "worker") {
    const std::string died = std::string(argv[2]) + "/died";
    const int fd = open(died.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd >= 0) _exit(3);   // the first worker: before the runtime, so before joining
  }
  if (mode == "occupied" && argc > 2 && role != nullptr && std::string(role) == "worker") {
    const std::string first = std::string(argv[2]) + "/first";
    if (open(first.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600) >= 0) {
      // The first worker: a page of its own inside the region (at the default address),
      // so that it joins and then cannot map the region.
      void* in_region = reinterpret_cast<void*>(std::uintptr_t{0x3c0000000000} + (std::uintptr_t{1} << 21));
      if (mmap(in_region, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != in_region) {
        return fail("could not occupy the region's address range");
      }
    }
  }
  calypso::Runtime rt(argc, argv);
  return rt.run([&](calypso::Manager& m) -> int {
    if (mode == "adjacent") return adjacent(m);
    if (mode == "misuse") return misuse(m);
    if (mode == "snapshot") return snapshot(m, argc > 2 ? std::atoi(argv[2]) : 5);
    if (mode == "sparse") return sparse(m, argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 512);
    if (mode == "kill-once" && argc > 2) return kill_once_mode(m, argv[2]);
    if (mode == "early-death" || mode == "occupied") return early_death(m);
    if (mode == "crash-bunched") {
      long* out = m.alloc<long>(256);
      m.wait_for_workers();
      m.parallel(crash_bunched, 256, CrashAt{out, 256});   // they ran short: bunched from now on
      m.parallel(record_pid, 8, Pids{m.alloc<long>(8 * 4096 / sizeof(long)), 2});   // 2 ms each
      std::printf("probe crash-bunched: warmed up (%llu results bundled)\n",
                  static_cast<unsigned long long>(m.stats().bundled_results));
      std::fflush(stdout);
      m.parallel(crash_bunched, 256, CrashAt{out, 200});
      return 0;
    }
    if (mode == "crash-always") {
      m.parallel(crash_always, 4, Crash{m.alloc<long>(4)});
      return 0;
    }
    if (mode == "prefault" && argc > 3) return prefault(m, std::strtoul(argv[2], nullptr, 10), argv[3]);
    if (mode == "pids") return pids(m, argc > 2 ? std::atoi(argv[2]) : 10, argc > 3 ? std::atoi(argv[3]) : 50);
    if (mode == "idle" && argc > 3) {
      m.parallel(record_pid, 8, Pids{m.alloc<long>(8 * 4096 / sizeof(long)), 0});
      std::FILE* f = std::fopen(argv[3], "w");
      if (f == nullptr) return fail("cannot write the marker file");
      std::fputs("start\n", f);
      std::fclose(f);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(argv[2])));
      std::puts("probe idle: ok");
      return 0;
    }
    if (mode == "big") {
      double* out = m.alloc<double>(4 * kBigWords);
      // Written by the program first: untouched memory is known to be zero and would
      // never be fetched, and the death points before and during fetches need fetches.
      std::fill(out, out + 4 * kBigWords, -1.0);
      for (int round = 0; round < 2; ++round) m.parallel(write_big, 4, Big{out});
      for (std::size_t s = 0; s < 4; ++s) {
        for (std::size_t i = 0; i < kBigWords; ++i) {
          if (out[s * kBigWords + i] != static_cast<double>(s) * 1e7 + static_cast<double>(i)) {
            return fail("a big result was lost or half applied");
          }
        }
      }
      std::printf("probe big: ok (%llu re-executions)\n", static_cast<unsigned long long>(m.stats().reexecutions));
      return 0;
    }
    if (mode == "long" && argc > 2) {
      long* out = m.alloc<long>(1);
      m.parallel(run_long, 1, Long{out, std::atoi(argv[2])});
      if (*out != 42) return fail("the long segment's write is missing");
      std::puts("probe long: ok");
      return 0;
    }
    if (mode == "policy") {
      constexpr std::uint32_t n = 8;
      long* out = m.alloc<long>(n);
      m.parallel(record_policy, n, Policies{out});
      const auto batch = std::count(out, out + n, long{SCHED_BATCH});
      const auto normal = std::count(out, out + n, long{SCHED_OTHER});
      std::printf("probe policy: %s\n", batch == n ? "batch" : normal == n ? "normal" : "mixed");
      return 0;
    }
    if (mode == "multi") return multi(m);
    if (mode == "bigargs") return bigargs(m);
    if (mode == "frozen") return frozen(m);
    if (mode == "frozen-write") {   // [filled]: written just before it is frozen
      long* x = m.alloc<long>(std::size_t{1} << 16);
      if (argc > 2 && std::string(argv[2]) == "filled") {
        for (std::size_t i = 0; i < (std::size_t{1} << 16); ++i) x[i] = static_cast<long>(i);
      }
      m.freeze(x, std::size_t{1} << 16);
      x[5] = 1;   // must end the run
      return fail("the program wrote frozen memory and went on");
    }
    if (mode == "tiny") return tiny(m, argc > 2 ? static_cast<std::uint32_t>(std::atoi(argv[2])) : 4000);
    if (mode == "shared") return shared(m);
    if (mode == "conflict") {
      auto* p = m.alloc<unsigned char>(64);
      m.parallel(clash, 4, Bytes{p});
      std::printf("probe conflict: byte is %d\n", p[0]);   // 4 without the checker: highest wins
      return 0;
    }
    if (mode == "null") {
      m.parallel(deref_null, 1, Null{nullptr});
      return 0;
    }
    return fail("unknown mode");
  });
}
