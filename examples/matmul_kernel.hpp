// matmul's kernel, shared by the example (its routine and its sequential run) and by
// bench/matmul_floor_bench, which must time the very same loop without the runtime.
#pragma once

#include <cstddef>

namespace example {

// C's rows [row_begin, row_end) = A's rows times B, n x n doubles, in i-k-j order.
inline void multiply_block(const double* a, const double* b, double* c, int n, int row_begin, int row_end) {
  for (int i = row_begin; i < row_end; ++i) {
    double* ci = c + static_cast<std::size_t>(i) * n;
    for (int j = 0; j < n; ++j) ci[j] = 0.0;
    for (int k = 0; k < n; ++k) {
      const double aik = a[static_cast<std::size_t>(i) * n + k];
      const double* bk = b + static_cast<std::size_t>(k) * n;
      for (int j = 0; j < n; ++j) ci[j] += aik * bk[j];
    }
  }
}

}  // namespace example
