// Matrix products for the ops: a matrix view over memory in place and one gemm,
// C = alpha A B + beta C. Kept apart from xtensor-blas: <cblas.h> and
// xtensor-blas/xlinalg.hpp do not compile in one translation unit.
#pragma once

#include <cstddef>
#include <type_traits>

namespace xtgrad::blas {

// A row-major matrix in place: rows x cols, element (i, j) at data[i * stride + j]. The
// stride may exceed cols: one head's columns of a (L, D) array are matrix(p + h * dh, L,
// dh, D). t() reads the same memory as the transpose (BLAS's transpose flag): no copy.
template <class T> struct Matrix {
  T* data = nullptr;
  std::size_t rows = 0, cols = 0, stride = 0;
  bool transposed = false;  // stored as (cols, rows): element (i, j) at data[j * stride + i]

  Matrix() = default;
  Matrix(T* data, std::size_t rows, std::size_t cols, std::size_t stride, bool transposed = false)
      : data(data), rows(rows), cols(cols), stride(stride), transposed(transposed) {}
  // A read-only view of a writable matrix.
  template <class U, class = std::enable_if_t<std::is_same_v<T, const U>>>
  Matrix(const Matrix<U>& m) : Matrix(m.data, m.rows, m.cols, m.stride, m.transposed) {}

  Matrix t() const { return {data, cols, rows, stride, !transposed}; }
  // Rows r0..r1 and columns c0..c1 of this matrix as seen (transposed or not).
  Matrix row_range(std::size_t r0, std::size_t r1) const {
    return {transposed ? data + r0 : data + r0 * stride, r1 - r0, cols, stride, transposed};
  }
  Matrix col_range(std::size_t c0, std::size_t c1) const {
    return {transposed ? data + c0 * stride : data + c0, rows, c1 - c0, stride, transposed};
  }
};

// rows x cols at data, row stride `stride` (cols when 0: contiguous rows).
template <class T> Matrix<T> matrix(T* data, std::size_t rows, std::size_t cols, std::size_t stride = 0) {
  return {data, rows, cols, stride ? stride : cols};
}

// Keeps a parameter out of template deduction, so that a writable Matrix<T> converts to
// the Matrix<const T> gemm reads.
template <class T> struct read_only { using type = Matrix<const T>; };

// C (m,n) = alpha A (m,k) B (k,n) + beta C, as gemm(c, a, b.t(), alpha, beta) for A B^T.
// C is not transposed; beta 0 never reads C (it may be uninitialised). With several
// threads a large product is split into bands. Shapes that do not fit throw logic_error.
template <class T>
void gemm(Matrix<T> c, typename read_only<T>::type a, typename read_only<T>::type b, T alpha = T(1), T beta = T(0));

// When OpenBLAS picked a generic core on a CPU with better kernels and the user did not
// set OPENBLAS_CORETYPE: sets it and execv's the program again with argv
// (xtgrad/backend.hpp); on failure, warns once and goes on.
void restart_on_generic_core(char** argv);

}  // namespace xtgrad::blas
