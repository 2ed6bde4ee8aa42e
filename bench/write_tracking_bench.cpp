// How should a worker learn which pages a segment wrote? The runtime uses page
// protection (mprotect). DESIGN.md §5 names a candidate second backend: userfaultfd
// write-protection in asynchronous mode, where the kernel itself resolves the first write
// to a protected page (no signal) and PAGEMAP_SCAN then lists the written pages and
// protects them again, in one call; and userfaultfd write-protection in synchronous mode,
// where a handler thread resolves each fault (the mode that could copy twins). This
// benchmark measures the three on the same region, in the same run, for one segment of
// Jacobi's shape (128 pages of 16 KiB, 2 MiB):
//
//  - dense: the segment writes every page it was expected to write (Jacobi: the rows it
//    wrote last time). mprotect: the runtime un-protects the run before the segment and
//    protects it again after (PageCache::prepare_writes / finish_segment): two calls.
//    uffd: nothing before; the kernel takes one in-kernel fault per 4 KiB page written,
//    then one PAGEMAP_SCAN. uffd sync: protection lifted from the run in one call before
//    and set again in one after, as with mprotect.
//  - sparse: the segment writes 8 of the 128 pages, unexpected. mprotect: a SIGSEGV per
//    written page whose handler un-protects it, one mprotect of the range after. uffd:
//    one in-kernel fault per 4 KiB written, one PAGEMAP_SCAN. uffd sync: a fault per
//    written page that the handler thread resolves, one call after.
//
// Twins are left out on both sides: the asynchronous mode cannot copy a page before its
// first write at all, so it could only serve pages whose twins are current already (the
// dense case); what is compared is the cost of tracking alone. Time is the CPU time of
// the writing thread, kernel time included; no other thread runs, except in the sync
// rows, which count the CPU time of the whole process (writer and handler).
//
// The async rows need Linux 6.7 (UFFD_FEATURE_WP_ASYNC, PAGEMAP_SCAN), the sync rows 5.19
// (write-protection of shared memory); an older kernel, or
// one that refuses userfaultfd, reports them as skipped with the reason.
//
// Suggested run: write_tracking_bench --benchmark_min_time=0.05 --benchmark_repetitions=3
#include "recording_reporter.hpp"

#include <benchmark/benchmark.h>

#include "dsm/region.hpp"
#include "unique_fd.hpp"

#include <calypso/error.hpp>

#include <linux/userfaultfd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

// Linux 6.7 interfaces, absent from older uapi headers (Debian 12 ships 6.1's).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

namespace {

using calypso::Error;
using calypso::UniqueFd;
using calypso::dsm::Access;
using calypso::dsm::PageNumber;
using calypso::dsm::Region;

// struct pm_scan_arg / page_region of <linux/fs.h> (6.7), under our own names.
struct ScanRegion {
  std::uint64_t start, end, categories;
};
struct ScanArg {
  std::uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  std::uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, ScanArg);
constexpr std::uint64_t kScanWpMatching = 1 << 0;    // protect the pages it reports
constexpr std::uint64_t kScanCheckWpAsync = 1 << 1;  // fail (EPERM) where async WP is off
constexpr std::uint64_t kPageIsWritten = 1 << 1;

constexpr std::size_t kPage = 16384;           // the runtime's default page
constexpr PageNumber kSegmentPages = 128;      // one Jacobi segment: 128 rows of 2048 doubles
constexpr PageNumber kSparseStride = 16;       // sparse: every 16th page written
constexpr std::uintptr_t kAddress = 0x3e2000000000;

// One store per 4 KiB (the kernel's page): what tracking sees of a whole-page write.
void touch_pages(std::byte* base, PageNumber stride) {
  for (PageNumber p = 0; p < kSegmentPages; p += stride) {
    for (std::size_t o = 0; o < kPage; o += 4096) {
      auto* b = static_cast<volatile std::byte*>(base + std::size_t{p} * kPage + o);
      *b = std::byte{static_cast<unsigned char>(static_cast<unsigned char>(*b) + 1)};
    }
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

void protect_or_throw(const Region& r, PageNumber first, PageNumber count, Access a) {
  if (const int e = r.protect(first, count, a); e != 0) throw Error(std::string("mprotect: ") + std::strerror(e));
}

// Pages allocated and mapped in both views up front, so that no timed iteration pays a
// first touch.
Region segment_region() {
  Region r = Region::map(kAddress, std::size_t{kSegmentPages} * kPage, kPage, Access::read_write);
  std::memset(r.runtime_view(), 1, r.size());
  std::memset(r.base(), 1, r.size());
  protect_or_throw(r, 0, r.pages(), Access::read);
  return r;
}


// --- mprotect, as the runtime does it ---

struct {
  std::uintptr_t base = 0, size = 0;
  struct sigaction previous {};
} g_sig;

void unprotect_on_sigsegv(int, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (addr - g_sig.base >= g_sig.size) {   // not ours: crash as we would without this
    sigaction(SIGSEGV, &g_sig.previous, nullptr);
    return;
  }
  void* page = reinterpret_cast<void*>(addr & ~std::uintptr_t{kPage - 1});
  if (mprotect(page, kPage, PROT_READ | PROT_WRITE) != 0) _exit(70);
}

class SegvUnprotect {
 public:
  explicit SegvUnprotect(const Region& r) {
    g_sig.base = reinterpret_cast<std::uintptr_t>(r.base());
    g_sig.size = r.size();
    struct sigaction sa {};
    sa.sa_sigaction = &unprotect_on_sigsegv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &g_sig.previous) != 0) throw Error(std::string("sigaction: ") + std::strerror(errno));
  }
  ~SegvUnprotect() { sigaction(SIGSEGV, &g_sig.previous, nullptr); }
  SegvUnprotect(const SegvUnprotect&) = delete;
  SegvUnprotect& operator=(const SegvUnprotect&) = delete;
};

void bm_mprotect_dense(benchmark::State& state) {
  Region r = segment_region();
  for (auto _ : state) {
    protect_or_throw(r, 0, kSegmentPages, Access::read_write);   // prepare_writes
    touch_pages(r.base(), 1);
    protect_or_throw(r, 0, kSegmentPages, Access::read);         // finish_segment
  }
  state.SetItemsProcessed(state.iterations() * kSegmentPages);
}

void bm_mprotect_sparse(benchmark::State& state) {
  Region r = segment_region();
  SegvUnprotect handler(r);
  for (auto _ : state) {
    touch_pages(r.base(), kSparseStride);                        // a fault per page
    protect_or_throw(r, 0, kSegmentPages, Access::read);
  }
  state.SetItemsProcessed(state.iterations() * kSegmentPages);
}

// --- userfaultfd, both modes ---

// Sets (or lifts, which also wakes writers waiting there) write-protection of `bytes`
// from `base`; 0 or the errno.
int write_protect(int uffd, const void* base, std::uint64_t bytes, bool protect) noexcept {
  uffdio_writeprotect wp{{reinterpret_cast<std::uint64_t>(base), bytes}, protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
  return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : errno;
}

// A userfaultfd with the given features, the whole region registered for write-protection
// and protected by it alone (the pages' own protection is lifted). `what` names the
// features in the error when the kernel refuses them.
UniqueFd write_protect_fd(const Region& r, std::uint64_t features, const char* what) {
  UniqueFd uffd(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)));
  if (uffd.get() < 0) throw Error(std::string("userfaultfd: ") + std::strerror(errno));
  uffdio_api api{UFFD_API, features, 0};
  if (ioctl(uffd.get(), UFFDIO_API, &api) != 0) throw Error(std::string("UFFDIO_API with ") + what + ": " + std::strerror(errno));
  protect_or_throw(r, 0, r.pages(), Access::read_write);   // only the uffd bit protects
  uffdio_register reg{{reinterpret_cast<std::uint64_t>(r.base()), r.size()}, UFFDIO_REGISTER_MODE_WP, 0};
  if (ioctl(uffd.get(), UFFDIO_REGISTER, &reg) != 0) throw Error(std::string("UFFDIO_REGISTER: ") + std::strerror(errno));
  if (const int e = write_protect(uffd.get(), r.base(), r.size(), true); e != 0)
    throw Error(std::string("UFFDIO_WRITEPROTECT: ") + std::strerror(e));
  return uffd;
}

// --- userfaultfd asynchronous write-protection + PAGEMAP_SCAN ---

class AsyncWriteProtect {
 public:
  explicit AsyncWriteProtect(const Region& r) : region_(r), found_(std::size_t{kSegmentPages} * kPage / 4096) {
    uffd_ = write_protect_fd(r, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED,
                             "asynchronous write-protection (Linux 6.7)");
    pagemap_ = UniqueFd(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (pagemap_.get() < 0) throw Error(std::string("/proc/self/pagemap: ") + std::strerror(errno));
  }
  // Lists the 4 KiB pages written since the last call and protects them again. Returns
  // how many there were.
  std::size_t take_written() {
    ScanArg a{};
    a.size = sizeof a;
    a.flags = kScanWpMatching | kScanCheckWpAsync;
    a.start = reinterpret_cast<std::uint64_t>(region_.base());
    a.end = a.start + region_.size();
    a.vec = reinterpret_cast<std::uint64_t>(found_.data());
    a.vec_len = found_.size();
    a.category_mask = kPageIsWritten;
    a.return_mask = kPageIsWritten;
    const long n = ioctl(pagemap_.get(), kPagemapScan, &a);
    if (n < 0) throw Error(std::string("PAGEMAP_SCAN: ") + std::strerror(errno));
    std::size_t pages = 0;
    for (long i = 0; i < n; ++i) pages += (found_[static_cast<std::size_t>(i)].end - found_[static_cast<std::size_t>(i)].start) / 4096;
    return pages;
  }

 private:
  const Region& region_;
  UniqueFd uffd_, pagemap_;
  std::vector<ScanRegion> found_;
};

void bm_uffd(benchmark::State& state, PageNumber stride) {
  Region r = segment_region();
  AsyncWriteProtect wp(r);
  const std::size_t expected = (kSegmentPages + stride - 1) / stride * (kPage / 4096);
  for (auto _ : state) {
    touch_pages(r.base(), stride);
    if (const std::size_t n = wp.take_written(); n != expected) {
      state.SkipWithError(("PAGEMAP_SCAN found " + std::to_string(n) + " written pages, not " + std::to_string(expected)).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kSegmentPages);
}
void bm_uffd_dense(benchmark::State& state) { bm_uffd(state, 1); }
void bm_uffd_sparse(benchmark::State& state) { bm_uffd(state, kSparseStride); }

// --- userfaultfd synchronous write-protection: a handler thread un-protects ---
//
// The mode that could keep twins: the first write to a protected page stops the writer
// until a handler thread, told through the userfaultfd, has done what it must (copy the
// twin, here nothing, as on the other rows) and lifted the protection of that page,
// which wakes the writer. No signal, but two thread switches per fault.

class SyncWriteProtect {
 public:
  explicit SyncWriteProtect(const Region& r) : region_(r) {
    uffd_ = write_protect_fd(r, UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "write-protection of shared memory (Linux 5.19)");
    stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    if (stop_.get() < 0) throw Error(std::string("eventfd: ") + std::strerror(errno));
    handler_ = std::thread([this] { serve(); });
  }
  ~SyncWriteProtect() {
    const std::uint64_t one = 1;
    if (write(stop_.get(), &one, sizeof one) != sizeof one) std::abort();   // the thread would never end
    handler_.join();
  }
  SyncWriteProtect(const SyncWriteProtect&) = delete;
  SyncWriteProtect& operator=(const SyncWriteProtect&) = delete;

  // Protects (or lifts the protection of) pages [first, first + count); lifting wakes
  // whoever waits on them.
  void set(PageNumber first, PageNumber count, bool protect) const {
    const int e = write_protect(uffd_.get(), region_.base() + std::size_t{first} * kPage, std::uint64_t{count} * kPage, protect);
    if (e != 0) throw Error(std::string("UFFDIO_WRITEPROTECT: ") + std::strerror(e));
  }
  // Faults the handler could not resolve as it should (not a write-protect fault, a
  // failed call, a failed poll). The benchmark then reports an error.
  int strays() const { return strays_.load(); }

 private:
  void serve() {
    pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    for (;;) {
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return give_up();
      }
      if ((fds[1].revents & POLLIN) != 0) return;
      uffd_msg m;
      while (read(uffd_.get(), &m, sizeof m) == sizeof m) {
        const bool wp = m.event == UFFD_EVENT_PAGEFAULT && (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
        const std::uint64_t page = (m.arg.pagefault.address - reinterpret_cast<std::uint64_t>(region_.base())) / kPage;
        try {
          if (!wp) throw Error("not a write-protect fault");
          set(static_cast<PageNumber>(page), 1, false);
        } catch (const Error&) {
          return give_up();
        }
      }
    }
  }
  // A writer waits until its page is released: rather than leave it asleep for ever,
  // release the whole region (and wake everyone) and stop serving.
  void give_up() noexcept {
    ++strays_;
    if (write_protect(uffd_.get(), region_.base(), region_.size(), false) != 0) {
      uffdio_range all{reinterpret_cast<std::uint64_t>(region_.base()), region_.size()};
      if (ioctl(uffd_.get(), UFFDIO_WAKE, &all) != 0) std::abort();   // a writer would hang
    }
  }

  const Region& region_;
  UniqueFd uffd_, stop_;
  std::atomic<int> strays_{0};
  std::thread handler_;
};

// dense: the expected pages un-protected in one call before and protected in one after,
// as with mprotect; sparse: a fault per written page, one call after.
void bm_uffd_sync(benchmark::State& state, PageNumber stride) {
  Region r = segment_region();
  SyncWriteProtect wp(r);
  for (auto _ : state) {
    if (stride == 1) wp.set(0, kSegmentPages, false);
    touch_pages(r.base(), stride);
    if (wp.strays() != 0) {   // the handler has stopped serving: protecting again would hang
      state.SkipWithError("a fault the handler thread could not resolve");
      break;
    }
    wp.set(0, kSegmentPages, true);
  }
  state.SetItemsProcessed(state.iterations() * kSegmentPages);
}
void bm_uffd_sync_dense(benchmark::State& state) { bm_uffd_sync(state, 1); }
void bm_uffd_sync_sparse(benchmark::State& state) { bm_uffd_sync(state, kSparseStride); }

void guarded(benchmark::State& state, void (*fn)(benchmark::State&)) {
  try {
    fn(state);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void print_table(const RecordingReporter& r) {
  std::printf("\nwrite tracking per segment of %u pages of %zu KiB (CPU time; the median when repetitions run):\n",
              kSegmentPages, kPage / 1024);
  for (const char* shape : {"dense", "sparse"}) {
    const double mp = r.time(std::string("mprotect/") + shape), uf = r.time(std::string("uffd_async/") + shape);
    if (mp <= 0) continue;
    if (uf <= 0) {
      std::printf("%-6s: mprotect %7.2f us; userfaultfd rows did not run (see their error)\n", shape, mp / 1e3);
      continue;
    }
    std::printf("%-6s: mprotect %7.2f us, userfaultfd async + PAGEMAP_SCAN %7.2f us: %5.2fx mprotect\n", shape,
                mp / 1e3, uf / 1e3, uf / mp);
  }
  for (const char* shape : {"dense", "sparse"}) {
    const double mp = r.time(std::string("mprotect/") + shape), us = r.time(std::string("uffd_sync/") + shape);
    if (mp <= 0 || us <= 0) continue;
    std::printf("%-6s: userfaultfd sync, a handler thread un-protecting, %7.2f us of the process's CPU: %5.2fx "
                "mprotect (its wall time is in the table above)\n",
                shape, us / 1e3, us / mp);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("mprotect/dense", guarded, bm_mprotect_dense);
  benchmark::RegisterBenchmark("uffd_async/dense", guarded, bm_uffd_dense);
  benchmark::RegisterBenchmark("mprotect/sparse", guarded, bm_mprotect_sparse);
  benchmark::RegisterBenchmark("uffd_async/sparse", guarded, bm_uffd_sparse);
  // Two threads take part: the CPU time of both counts.
  benchmark::RegisterBenchmark("uffd_sync/dense", guarded, bm_uffd_sync_dense)->MeasureProcessCPUTime();
  benchmark::RegisterBenchmark("uffd_sync/sparse", guarded, bm_uffd_sync_sparse)->MeasureProcessCPUTime();
  return run_benchmarks(RecordingReporter::Metric::cpu_time, print_table);
}
