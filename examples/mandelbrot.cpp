// Mandelbrot set: iteration counts of an n x n grid over [-2, 1] x [-1.5, 1.5], at most
// max_iter iterations per point. Rows near the middle cost far more than rows near the
// edge, which is where eager scheduling pays: idle workers take the remaining segments.
// The manager recomputes sequentially and compares bit for bit.
//
//   calypso-run -n 2 ./mandelbrot [n] [max_iter] [segments]
#include "report.hpp"

#include <calypso/calypso.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct MandelArgs {
  std::int32_t* out;
  int n;
  int max_iter;
};

static void mandel_rows(std::int32_t* out, int n, int max_iter, int row_begin, int row_end) {
  for (int i = row_begin; i < row_end; ++i) {
    const double ci = -1.5 + 3.0 * i / n;
    for (int j = 0; j < n; ++j) {
      const double cr = -2.0 + 3.0 * j / n;
      double zr = 0, zi = 0;
      int k = 0;
      while (k < max_iter && zr * zr + zi * zi <= 4.0) {
        const double t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        ++k;
      }
      out[static_cast<std::size_t>(i) * n + j] = k;
    }
  }
}

void mandel(const calypso::Segment& seg, const MandelArgs& x) {
  const int begin = static_cast<int>(static_cast<long>(x.n) * seg.index / seg.count);
  const int end = static_cast<int>(static_cast<long>(x.n) * (seg.index + 1) / seg.count);
  mandel_rows(x.out, x.n, x.max_iter, begin, end);
}
CALYPSO_ROUTINE(mandel);

// calypso::Error (a bad CALYPSO_* setting, a full region, a failed step): say why and
// exit 2 rather than abort.
int main(int argc, char** argv) try {
  calypso::Runtime rt(argc, argv);
  const int n = argc > 1 ? std::atoi(argv[1]) : 2048;
  const int max_iter = argc > 2 ? std::atoi(argv[2]) : 1000;
  const auto segments = static_cast<std::uint32_t>(argc > 3 ? std::atoi(argv[3]) : 64);
  return rt.run([&](calypso::Manager& m) {
    const std::size_t nn = static_cast<std::size_t>(n) * n;
    std::int32_t* out = m.alloc<std::int32_t>(nn);
    // The sequential run's memory is allocated untimed too, as the workers' is on joining.
    std::vector<std::int32_t> ref(nn);
    m.wait_for_workers();   // time the computation, not the workers' start-up
    double t0 = example::now();
    m.parallel(mandel, segments, MandelArgs{out, n, max_iter});
    double t1 = example::now();
    mandel_rows(ref.data(), n, max_iter, 0, n);
    double t2 = example::now();
    bool ok = std::memcmp(ref.data(), out, nn * sizeof(std::int32_t)) == 0;
    return example::report("mandelbrot", ok, t1 - t0, t2 - t1, m);
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "%s: %s\n", "mandelbrot", e.what());
  return 2;
}
