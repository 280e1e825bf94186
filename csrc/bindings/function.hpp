#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "tapegrad/codegen.hpp"
#include "tapegrad/codegen_batch.hpp"
#include "tapegrad/program.hpp"

namespace tapegrad::bind {

using py_ssize = pybind11::ssize_t;

// The Python handle of a frozen program; shared, immutable, safe across threads.
struct Program {
    std::shared_ptr<const program> p;
    // The traced signature, for the one-point fast path: each argument's point shape
    // and the output shape.
    std::vector<std::vector<py_ssize>> arg_shapes;
    std::vector<py_ssize> out_shape;
    // F.compile()'s library: the one-point forward and reverse (values, gradients,
    // Jacobians) run its code instead of the interpreter's sweeps, bit for bit the same.
    std::shared_ptr<const native_code> native;
    // Its batch library, if it has one: plain batched values and gradients run its code
    // instead of the lanes, bit for bit the same (codegen_batch.hpp).
    std::shared_ptr<const native_batch> batch;
    const program::native_block* native_block() const { return batch ? &batch->fns : nullptr; }

    void forward(const double* x, double* val) const {
        native ? native->forward(x, val) : p->forward(x, val);
    }
    // The sweeps of a gradient alone: val holds what reverse_gradient() and the guards
    // read (all of it, in the interpreter), not necessarily the outputs' values; grad is
    // set to what reverse() would add to zeros.
    void forward_gradient(const double* x, double* val) const {
        native ? native->forward_gradient(x, val) : p->forward(x, val);
    }
    void reverse_gradient(const double* val, double* adj, const double* seed, double* grad) const {
        if (native) return native->reverse_gradient(val, adj, seed, grad);
        std::fill_n(grad, p->n_inputs, 0.0);
        p->reverse(val, adj, seed, grad);
    }
    void reverse(const double* val, double* adj, const double* seed, double* grad) const {
        native ? native->reverse(val, adj, seed, grad) : p->reverse(val, adj, seed, grad);
    }
};

void register_function(pybind11::module_& m);

// Run f from a CPython entry point: true, or false with its C++ or Python exception set as
// the Python error.
template <class F>
bool with_python_errors(F&& f) {
    try {
        f();
        return true;
    } catch (pybind11::error_already_set& e) {
        e.restore();
    } catch (const pybind11::builtin_exception& e) {
        e.set_error();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return false;
}

// program_pickle.cpp: a Program's pickled state, and the program it describes (a corrupt
// or hostile state raises ValueError).
pybind11::tuple program_state(const program& p);
program program_from_state(const pybind11::tuple& st);
void register_buffers(pybind11::module_& m);  // buffers.cpp: _core.empty
// A float64 array for a batched result, from buffers.cpp's cache of mapped blocks.
pybind11::array_t<double> empty(const std::vector<py_ssize>& shape);
void register_autograd(pybind11::module_& m);  // autograd.cpp: _core._gradient
void register_sparsity(pybind11::module_& m);  // sparsity.cpp: patterns and colorings
void register_structure(pybind11::module_& m);  // structure.cpp: runs of isomorphic blocks
void register_native(pybind11::module_& m);  // native.cpp: F.compile()'s source and library

}  // namespace tapegrad::bind
