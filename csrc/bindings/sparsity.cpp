// Sparse derivatives' building blocks (tapegrad/sparsity.hpp) for python/tapegrad/sparse.py:
// patterns as CSR arrays (indptr int64, indices int32), colorings, star recovery.
#include "tapegrad/sparsity.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "bindings/function.hpp"

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(py::ssize_t(v.size()));
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

py::tuple csr(const pattern& P) { return py::make_tuple(to_array(P.indptr), to_array(P.indices)); }

// A CSR pattern from Python's arrays, checked: rows ascending within each row, in range.
pattern from_csr(
    const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& indptr,
    const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& indices,
    std::size_t cols) {
    if (indptr.ndim() != 1 || indptr.size() < 1 || indices.ndim() != 1)
        throw py::value_error("pattern: indptr and indices must be 1-D, indptr non-empty");
    pattern P;
    P.rows = std::size_t(indptr.size() - 1);
    P.cols = cols;
    P.indptr.assign(indptr.data(), indptr.data() + indptr.size());
    P.indices.assign(indices.data(), indices.data() + indices.size());
    if (P.indptr.front() != 0 || std::size_t(P.indptr.back()) != P.indices.size())
        throw py::value_error("pattern: indptr must run from 0 to len(indices)");
    for (std::size_t r = 0; r < P.rows; ++r) {
        if (P.indptr[r + 1] < P.indptr[r]) throw py::value_error("pattern: indptr decreases");
        for (std::int64_t e = P.indptr[r]; e < P.indptr[r + 1]; ++e) {
            const std::int32_t j = P.indices[std::size_t(e)];
            if (j < 0 || std::size_t(j) >= cols)
                throw py::value_error("pattern: column index " + std::to_string(j) +
                                      " out of range");
            if (e > P.indptr[r] && P.indices[std::size_t(e - 1)] >= j)
                throw py::value_error("pattern: columns must ascend within a row, no repeats");
        }
    }
    return P;
}

}  // namespace

void register_sparsity(py::module_& m) {
    m.def(
        "jacobian_pattern",
        [](const Program& P) {
            const program& p = *P.p;
            return csr(jacobian_pattern(p.view(), p.outputs_.data(), p.outputs_.size()));
        },
        py::arg("program"),
        "The program's Jacobian sparsity (outputs x inputs) as CSR arrays (indptr, indices).");
    m.def(
        "hessian_pattern",
        [](const Program& P) {
            const program& p = *P.p;
            if (p.outputs_.size() != 1)
                throw py::value_error("hessian_pattern: the program has " +
                                      std::to_string(p.outputs_.size()) + " outputs, not 1");
            return csr(hessian_pattern(p.view(), p.outputs_[0]));
        },
        py::arg("program"),
        "The Hessian sparsity of a one-output program (inputs x inputs, symmetric) as CSR "
        "arrays (indptr, indices).");
    m.def(
        "color_columns",
        [](const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& indptr,
           const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& indices,
           std::size_t n_cols) {
            return to_array(color_columns(from_csr(indptr, indices, n_cols)));
        },
        py::arg("indptr"), py::arg("indices"), py::arg("n_cols"),
        "Greedy distance-2 column coloring of a CSR pattern (columns sharing a row differ), "
        "in column order: one color (0, 1, ...) per column.");
    m.def(
        "star_color",
        [](const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& indptr,
           const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& indices) {
            const pattern H = from_csr(indptr, indices, std::size_t(indptr.size() - 1));
            return to_array(star_color(H));
        },
        py::arg("indptr"), py::arg("indices"),
        "Greedy star coloring of a symmetric CSR pattern, largest degree first.");
    m.def(
        "star_recovery",
        [](const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& indptr,
           const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& indices,
           const py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>& colors) {
            const pattern H = from_csr(indptr, indices, std::size_t(indptr.size() - 1));
            if (colors.ndim() != 1 || std::size_t(colors.size()) != H.rows)
                throw py::value_error("star_recovery: one color per column");
            std::vector<std::int32_t> c(colors.data(), colors.data() + colors.size());
            for (std::int32_t x : c)
                if (x < 0 || std::size_t(x) >= H.rows)
                    throw py::value_error("star_recovery: colors must be in [0, n)");
            try {
                return to_array(star_recovery(H, c));
            } catch (const std::logic_error& e) {
                throw py::value_error(e.what());
            }
        },
        py::arg("indptr"), py::arg("indices"), py::arg("colors"),
        "Per nonzero of a star-colored symmetric pattern, its index in the color-major "
        "compressed product (color * n + row).");
}

}  // namespace tapegrad::bind
