// The Python `Var`: a plain CPython extension type living in the pybind11 module.
#pragma once
#include <Python.h>

#include <cstdint>

#include <unordered_map>
#include <vector>

#include "tapegrad/platform.hpp"
#include "tapegrad/program.hpp"
#include "tapegrad/tape.hpp"

namespace tapegrad::bind {

struct VarObject;

// A tape shared by the Var objects that point into it; deleted with the last one.
// It lists its Vars, so that when the tape compacts each one learns its node's new index.
// Every access happens with the GIL held, so nothing here needs atomics.
struct shared_tape final : relocator {
    explicit shared_tape(std::uint64_t max_nodes);
    void relocate(const std::uint32_t* new_index) override;
    tape nodes;
    std::vector<VarObject*> vars;
    // The .grad of Vars that hold a recorded gradient (backward(create_graph=True)), by
    // Var object, as PyTorch keeps .grad on the tensor: new references to Vars of this
    // tape, dropped with their Var (no Python cycle: a gradient's graph holds nodes, not
    // Var objects). Empty on almost every tape: reading .grad pays one test.
    std::unordered_map<const VarObject*, PyObject*> graph_grads;
    Py_ssize_t refs = 0;
    std::uint64_t serial;
};

struct VarObject {
    PyObject_HEAD
    shared_tape* tape;
    tape::index idx;
    std::uint32_t pos;  // in tape->vars
};

extern PyTypeObject VarType;
// tapegrad.Condition: a Var subtype made by comparisons while tracing (see var.cpp).
extern PyTypeObject ConditionType;

// Whether o is a Var (a Condition is one). Plain Vars are tested first: eagerly there are
// no Conditions, and the eager ops pay one comparison for a Var operand, as before.
inline bool is_var(PyObject* o) {
    if (TG_LIKELY(Py_TYPE(o) == &VarType)) return true;
    return Py_TYPE(o) == &ConditionType;
}

// While a function is traced on this thread, every comparison of a Var (and every value
// that escapes into Python: bool(), float(), .value, ...) is recorded here as a guard.
// The recorder keeps the compared nodes alive until the trace is compiled.
struct recorder {
    shared_tape* tape = nullptr;  // the traced tape; Vars of other tapes count as numbers
    std::vector<recorded_guard> guards;  // node operands index `held`, not the tape
    std::vector<VarObject*> held;  // new references
    recorder* outer = nullptr;
    bool abandoned = false;  // its Recording died while it was active: drop it when seen
    ~recorder();
};
bool anomaly_enabled();  // tg.detect_anomaly() is on for this thread
recorder*& active_recorder();  // this thread's innermost recorder, or nullptr
recorder* live_active_recorder();  // the same after freeing abandoned ones on top

// Adds Var and the per-op functions (tapegrad.sin, ...) to the module. False: error set.
bool register_var(PyObject* module);

// The calling thread's tape (where Var(x) records leaves), created on first use.
shared_tape& current_tape();

// Node limit for tapes created from now on; returns the previous one.
std::uint64_t set_default_max_nodes(std::uint64_t n);

}  // namespace tapegrad::bind
