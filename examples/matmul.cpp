// Dense matrix multiplication C = A * B with n x n doubles in the shared heap.
// Each segment computes a contiguous block of rows of C (i-k-j order). The manager then
// computes the same product sequentially in private memory and compares bit for bit.
//
//   calypso-run -n 2 ./matmul [n] [segments]
#include "matmul_kernel.hpp"
#include "report.hpp"

#include <calypso/calypso.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct MatArgs {
  const double* a;
  const double* b;
  double* c;
  int n;
};

void multiply_rows(const calypso::Segment& seg, const MatArgs& x) {
  const int begin = static_cast<int>(static_cast<long>(x.n) * seg.index / seg.count);
  const int end = static_cast<int>(static_cast<long>(x.n) * (seg.index + 1) / seg.count);
  example::multiply_block(x.a, x.b, x.c, x.n, begin, end);
}
CALYPSO_ROUTINE(multiply_rows);

// calypso::Error (a bad CALYPSO_* setting, a full region, a failed step): say why and
// exit 2 rather than abort.
int main(int argc, char** argv) try {
  calypso::Runtime rt(argc, argv);
  const int n = argc > 1 ? std::atoi(argv[1]) : 1024;
  const auto segments = static_cast<std::uint32_t>(argc > 2 ? std::atoi(argv[2]) : 64);
  return rt.run([&](calypso::Manager& m) {
    const std::size_t nn = static_cast<std::size_t>(n) * n;
    double* a = m.alloc<double>(nn);
    double* b = m.alloc<double>(nn);
    double* c = m.alloc<double>(nn);
    example::fill_operands(a, b, nn);
    // A and B are inputs: frozen, workers on this host read the manager's copy of them
    // instead of one copy each (B is streamed once per row of C).
    m.freeze(a, nn);
    m.freeze(b, nn);
    // The sequential run's memory is allocated untimed too, as the workers' is on joining.
    std::vector<double> ref(nn);
    m.wait_for_workers();   // time the computation, not the workers' start-up
    double t0 = example::now();
    m.parallel(multiply_rows, segments, MatArgs{a, b, c, n});
    double t1 = example::now();

    example::multiply_block(a, b, ref.data(), n, 0, n);
    double t2 = example::now();
    bool ok = std::memcmp(ref.data(), c, nn * sizeof(double)) == 0;
    return example::report("matmul", ok, t1 - t0, t2 - t1, m);
  });
} catch (const calypso::Error& e) {
  std::fprintf(stderr, "%s: %s\n", "matmul", e.what());
  return 2;
}
