// tg.detect_anomaly(), per thread. Checks cost nothing while off: one thread-local flag
// per op (var.cpp). What went wrong is described by tapegrad.anomaly._report (set with
// _set_anomaly_reporter), which raises AnomalyError with the op, its inputs and the user's
// file:line.
#include <cmath>

#include "bindings/var_internal.hpp"

namespace tapegrad::bind {
namespace {

PyObject* anomaly_reporter = nullptr;  // a strong reference, for the module's lifetime

// Each op's local rules as written in the table, for messages.
const char* const dx_text[] = {
    "",
    "",
#define TG_OP(name, arity, fwd, dx, ...) #dx,
#include "tapegrad/ops.def"
#undef TG_OP
};
const char* const dy_text[] = {
    "",
    "",
#define TG_OP(name, arity, fwd, dx, dy, ...) #dy,
#include "tapegrad/ops.def"
#undef TG_OP
};

PyObject* f_set_anomaly_reporter(PyObject*, PyObject* fn) {
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "_set_anomaly_reporter expects a callable");
        return nullptr;
    }
    Py_XSETREF(anomaly_reporter, Py_NewRef(fn));
    Py_RETURN_NONE;
}

}  // namespace

PyObject* report_anomaly(const char* kind, shared_tape* t, index i, PyObject* extra) {
    PyObject* node = new_var(t, i);
    if (!node) return nullptr;
    PyObject* r = anomaly_reporter
                      ? PyObject_CallFunction(anomaly_reporter, "sOO", kind, node, extra)
                      : (PyErr_SetString(PyExc_FloatingPointError, kind), nullptr);
    Py_DECREF(node);
    Py_XDECREF(r);
    return nullptr;  // the reporter raises
}

// The adjoints are final when the sweep reaches a node, so rerunning each rule on them
// finds exactly the contributions the sweep added.
PyObject* check_backward_edges(shared_tape* t, index root) {
    tape& n = t->nodes;
    for (index i = root + 1, lo = std::min(n.sweep_start(root), root); i-- > lo;) {
        const op o = n.op_at(i);
        const double g = n.adj(i);
        if (is_leaf(o) || g == 0.0 || !std::isfinite(g)) continue;
        const index a = n.arg0(i), b = n.arg1(i);
        double d[2];
        local_grads(o, n.val(a), n.val(b), n.val(i), g, d);
        for (int k = 0; k < op_table[int(o)].arity; ++k) {
            if (std::isfinite(d[k]) || n.op_at(k ? b : a) == op::constant) continue;
            PyObject* extra = Py_BuildValue("(iddds)", k, g, d[k], k ? n.val(b) : n.val(a),
                                            k ? dy_text[int(o)] : dx_text[int(o)]);
            if (!extra) return nullptr;
            report_anomaly("backward", t, i, extra);
            Py_DECREF(extra);
            return nullptr;
        }
    }
    Py_RETURN_NONE;
}

PyMethodDef anomaly_functions[] = {
    {"_set_anomaly_reporter", f_set_anomaly_reporter, METH_O,
     "Set the callable that describes an anomaly and raises (tapegrad.anomaly)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace tapegrad::bind
