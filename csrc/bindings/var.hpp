// The Python `Var`: a plain CPython extension type living in the pybind11 module.
#pragma once
#include <Python.h>

#include <cstdint>

#include "tapegrad/tape.hpp"

namespace tapegrad::bind {

// A tape shared by the Var objects that point into it; deleted with the last one.
// Every access happens with the GIL held, so the counts need no atomics.
struct shared_tape {
    explicit shared_tape(std::uint64_t max_nodes);
    tape nodes;
    Py_ssize_t refs = 0;
    std::uint64_t serial;
};

struct VarObject {
    PyObject_HEAD
    shared_tape* tape;
    tape::index idx;
};

extern PyTypeObject VarType;

// Adds Var and the per-op functions (tapegrad.sin, ...) to the module. False: error set.
bool register_var(PyObject* module);

// The calling thread's tape (where Var(x) records leaves), created on first use.
shared_tape& current_tape();

// Node limit for tapes created from now on; returns the previous one.
std::uint64_t set_default_max_nodes(std::uint64_t n);

}  // namespace tapegrad::bind
