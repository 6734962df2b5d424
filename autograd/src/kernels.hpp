// Loops over contiguous float/double buffers that the ops share: exponentials and
// row softmax. Not installed.
#pragma once

#include <cstddef>

namespace xtgrad::kernels {

// x[i] = exp(x[i]). Float uses a polynomial that the compiler vectorises (within 2 ulp
// of std::exp, checked against it in the tests; exp(x) = 0 below -87.3, where the float
// result would be subnormal; inf above 88.37; NaN stays NaN); double calls std::exp.
void exp_in_place(float* x, std::size_t n);
void exp_in_place(double* x, std::size_t n);

// Softmax of each of `rows` contiguous rows of `len` values, in place. A row that is all
// -inf (everything masked) becomes zeros.
template <class T>
void softmax_rows(T* x, std::size_t rows, std::size_t len);

// Sums with eight independent partial sums: the compiler keeps them in vector registers,
// where one running sum would be a chain of dependent adds (it may not reorder float
// additions itself). The order is fixed, so results are the same on every run.
template <class T, class F>
inline T sum_of(std::size_t n, F term) {
  T partial[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t j = 0; j < 8; ++j) partial[j] += term(i + j);
  T total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  for (; i < n; ++i) total += term(i);
  return total;
}

}  // namespace xtgrad::kernels
