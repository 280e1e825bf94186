// While a function is traced: guards (every comparison of a Var, every value that
// leaves the graph) and the refusals (derivatives taken inside the traced function).
#include <string>

#include "bindings/var_internal.hpp"

namespace tapegrad::bind {

recorder::~recorder() {
    for (VarObject* v : held) Py_DECREF(reinterpret_cast<PyObject*>(v));
}

recorder* live_active_recorder() { return live_recorder(); }

std::string python_location() {
    PyFrameObject* f = PyEval_GetFrame();  // borrowed
    if (!f) return "<unknown>";
    PyCodeObject* code = PyFrame_GetCode(f);
    const char* file = PyUnicode_AsUTF8(code->co_filename);
    std::string where =
        (file ? file : "<unknown>") + std::string(":") + std::to_string(PyFrame_GetLineNumber(f));
    Py_DECREF(code);
    if (!file) PyErr_Clear();
    return where;
}

namespace {

operand operand_of(recorder& r, PyObject* o, double value) {
    VarObject* v = as_var(o);
    if (v && v->tape == r.tape) {
        Py_INCREF(o);
        r.held.push_back(v);
        // The node's position in `held`, not its tape index: the tape may compact (and
        // move the node) before the trace is compiled; the Var in `held` follows it.
        return {true, tape::index(r.held.size() - 1), value};
    }
    return {false, 0, value};
}

}  // namespace

// This thread's innermost live recorder, dropping abandoned ones on the way.
recorder* live_recorder() {
    recorder*& innermost = active_recorder();
    while (innermost && innermost->abandoned) {
        recorder* dead = innermost;
        innermost = dead->outer;
        delete dead;
    }
    return innermost;
}

// Record that comparing a and b (values x and y) with c gave `outcome`.
void record_guard(PyObject* a, double x, PyObject* b, double y, cmp c, bool outcome,
                  const std::string& where) {
    recorder* r = live_recorder();
    if (!r) return;
    r->guards.push_back({c, operand_of(*r, a, x), operand_of(*r, b, y), outcome,
                         where.empty() ? python_location() : where});
}

void record_escape(PyObject* self, double x) { record_guard(self, x, Py_None, x, cmp::same, true); }

// A trace records values, not the derivatives taken inside the traced function: gradients
// computed there are numbers to it, and a replay would return them frozen at the traced
// point. So the operations that produce them refuse while a trace records on this thread.
namespace {
PyObject* trace_error = nullptr;  // tapegrad.TraceError, set by function.py
}  // namespace

PyObject* refuse_inside_trace(const char* what, const char* instead) {
    const std::string msg = std::string(what) + " inside a traced function (at " +
                            python_location() +
                            "): a trace does not record derivatives taken inside it, so a "
                            "replay would return this one frozen at the traced point. " +
                            instead;
    PyErr_SetString(trace_error ? trace_error : PyExc_RuntimeError, msg.c_str());
    return nullptr;
}

namespace {

PyObject* f_is_tracing(PyObject*, PyObject*) { return PyBool_FromLong(live_recorder() != nullptr); }

PyObject* f_set_trace_error(PyObject*, PyObject* type) {
    if (!PyType_Check(type) ||
        !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(type),
                          reinterpret_cast<PyTypeObject*>(PyExc_Exception))) {
        PyErr_SetString(PyExc_TypeError, "_set_trace_error expects an exception class");
        return nullptr;
    }
    Py_XSETREF(trace_error, Py_NewRef(type));
    Py_RETURN_NONE;
}

}  // namespace

PyMethodDef tracing_functions[] = {
    {"is_tracing", f_is_tracing, METH_NOARGS,
     "Whether a trace (tg.trace) is recording on this thread."},
    {"_set_trace_error", f_set_trace_error, METH_O,
     "Set the exception class for derivatives taken inside a trace (tapegrad.TraceError)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace tapegrad::bind
