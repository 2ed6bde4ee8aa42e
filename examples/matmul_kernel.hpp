// matmul's kernel and data, shared by the example (its routine and its sequential run)
// and by bench/matmul_floor_bench, which must time the very same loop on the same values
// without the runtime.
#pragma once

#include <cstddef>

namespace example {

// The example's A and B, nn doubles each.
inline void fill_operands(double* a, double* b, std::size_t nn) {
  for (std::size_t i = 0; i < nn; ++i) {
    a[i] = static_cast<double>((i * 7 + 3) % 101) / 17.0;
    b[i] = static_cast<double>((i * 13 + 5) % 97) / 23.0;
  }
}

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
