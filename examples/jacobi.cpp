// Jacobi relaxation on an n x n grid of doubles: every sweep is one parallel step in
// which each segment updates a block of rows of the new grid from the old one; the two
// grids then swap roles. Boundary values are fixed. The manager repeats the computation
// sequentially in private memory and compares bit for bit.
//
//   calypso-run -n 2 ./jacobi [n] [sweeps] [segments]
#include "report.hpp"

#include <calypso/calypso.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

struct SweepArgs {
  const double* from;
  double* to;
  int n;
};

static void sweep_rows(const double* from, double* to, int n, int row_begin, int row_end) {
  for (int i = std::max(row_begin, 1); i < std::min(row_end, n - 1); ++i) {
    const double* up = from + static_cast<std::size_t>(i - 1) * n;
    const double* mid = from + static_cast<std::size_t>(i) * n;
    const double* down = from + static_cast<std::size_t>(i + 1) * n;
    double* out = to + static_cast<std::size_t>(i) * n;
    for (int j = 1; j < n - 1; ++j) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
  }
}

void sweep(const calypso::Segment& seg, const SweepArgs& x) {
  const int begin = static_cast<int>(static_cast<long>(x.n) * seg.index / seg.count);
  const int end = static_cast<int>(static_cast<long>(x.n) * (seg.index + 1) / seg.count);
  sweep_rows(x.from, x.to, x.n, begin, end);
}
CALYPSO_ROUTINE(sweep);

static void init(double* g, int n) {
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const bool edge = i == 0 || j == 0 || i == n - 1 || j == n - 1;
      g[static_cast<std::size_t>(i) * n + j] = edge ? (i == 0 ? 100.0 : 10.0 * j / n) : 0.0;
    }
  }
}

// calypso::Error (a bad CALYPSO_* setting, a full region, a failed step): say why and
// exit 2 rather than abort.
int main(int argc, char** argv) try {
  calypso::Runtime rt(argc, argv);
  const int n = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int sweeps = argc > 2 ? std::atoi(argv[2]) : 200;
  const auto segments = static_cast<std::uint32_t>(argc > 3 ? std::atoi(argv[3]) : 16);
  return rt.run([&](calypso::Manager& m) {
    const std::size_t nn = static_cast<std::size_t>(n) * n;
    double* a = m.alloc<double>(nn);
    double* b = m.alloc<double>(nn);
    init(a, n);
    init(b, n);
    // The sequential run's memory is set up untimed too, as the workers' is on joining,
    // with its grids as far apart as the shared ones (the shared heap staggers large
    // blocks; the distance between the grids changes the sweep's speed by up to ~20%).
    const std::ptrdiff_t apart = b - a;
    const std::size_t span = nn + static_cast<std::size_t>(apart < 0 ? -apart : apart);
    constexpr std::size_t kAlign = 4096 / sizeof(double);   // the shared grids' page offset
    std::vector<double> seq_memory(span + kAlign);
    double* base = seq_memory.data();
    base += (kAlign - reinterpret_cast<std::uintptr_t>(base) / sizeof(double) % kAlign) % kAlign;
    double* ra = apart >= 0 ? base : base - apart;
    double* rb = ra + apart;
    init(ra, n);
    init(rb, n);
    m.wait_for_workers();   // time the computation, not the workers' start-up
    double t0 = example::now();
    for (int s = 0; s < sweeps; ++s) {
      m.parallel(sweep, segments, SweepArgs{a, b, n});
      std::swap(a, b);
    }
    double t1 = example::now();

    for (int s = 0; s < sweeps; ++s) {
      sweep_rows(ra, rb, n, 0, n);
      std::swap(ra, rb);
    }
    double t2 = example::now();
    bool ok = std::memcmp(ra, a, nn * sizeof(double)) == 0;
    return example::report("jacobi", ok, t1 - t0, t2 - t1, m);
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "%s: %s\n", "jacobi", e.what());
  return 2;
}
