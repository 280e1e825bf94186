// What the files of the Var type share (var.cpp: the type and op application; tapes.cpp:
// a tape per thread; tracing.cpp: guards and the refusals while tracing; anomaly.cpp:
// tg.detect_anomaly's reports). Not a public header: the module sees var.hpp.
#pragma once
#include <Python.h>

#include <string>

#include "bindings/var.hpp"

namespace tapegrad::bind {

using index = tape::index;

inline VarObject* as_var(PyObject* o) {
    return is_var(o) ? reinterpret_cast<VarObject*>(o) : nullptr;
}
// A new Var for node i (a new reference), or nullptr with MemoryError set.
PyObject* new_var(shared_tape* t, index i);
// Drops one reference to t; the last one deletes it.
void unref(shared_tape* t);

// tracing.cpp
std::string python_location();  // file:line of the running Python frame
recorder* live_recorder();      // this thread's innermost live recorder, or nullptr
// Record that comparing a and b (values x and y) with c gave `outcome`.
// `where` names the comparison in the trace error (default: the running Python line).
void record_guard(PyObject* a, double x, PyObject* b, double y, cmp c, bool outcome,
                  const std::string& where = {});
// A Var's value leaving the graph for Python while tracing: replay must see the same value.
void record_escape(PyObject* self, double value);
// TraceError for `what` (backward(), local_grads(), ...) inside a traced function.
PyObject* refuse_inside_trace(const char* what, const char* instead);
extern PyMethodDef tracing_functions[];

// A recorded .grad (shared_tape::graph_grads): the Var (borrowed), or nullptr for none.
inline PyObject* graph_grad(const VarObject* v) {
    const auto& g = v->tape->graph_grads;
    if (TG_LIKELY(g.empty())) return nullptr;
    const auto it = g.find(v);
    return it == g.end() ? nullptr : it->second;
}
// Forget v's recorded .grad (its float adjoint is what .grad reads again).
inline void drop_graph_grad(const VarObject* v) {
    auto& g = v->tape->graph_grads;
    if (TG_LIKELY(g.empty())) return;
    const auto it = g.find(v);
    if (it == g.end()) return;
    PyObject* old = it->second;
    g.erase(it);
    Py_DECREF(old);
}

// autograd.cpp
// root.backward(create_graph=True): every leaf Var below root that root reaches gets
// .grad = r (or old + r), r its recorded gradient. Py_None, or nullptr with an error set.
PyObject* backward_with_graph(VarObject* root);
// After a plain backward(): Vars whose .grad is a recorded gradient G take their node's new
// float adjoint a into it (G + a) and the adjoint goes back to 0. False: error set.
bool fold_float_grads(shared_tape* t);

// anomaly.cpp
// Calls tapegrad.anomaly's reporter for node i, which raises; returns nullptr.
PyObject* report_anomaly(const char* kind, shared_tape* t, index i, PyObject* extra);
// After a sweep from root: the first edge where a finite adjoint gave a non-finite
// contribution is reported (nullptr, AnomalyError set); else Py_None.
PyObject* check_backward_edges(shared_tape* t, index root);
extern PyMethodDef anomaly_functions[];

}  // namespace tapegrad::bind
