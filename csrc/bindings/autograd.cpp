// _core._gradient: gradients of Vars with respect to Vars, as numbers or recorded on the
// tape as nodes (tapegrad.autograd.grad, and nested tg.grad).
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "bindings/function.hpp"
#include "bindings/var_internal.hpp"
#include "tapegrad/backward_graph.hpp"

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

const VarObject* var_arg(py::handle h, const char* what, std::size_t k) {
    if (!is_var(h.ptr()))
        throw py::type_error(std::string("autograd.grad: ") + what + "[" + std::to_string(k) +
                             "] is a " + Py_TYPE(h.ptr())->tp_name + ", not a Var");
    return reinterpret_cast<const VarObject*>(h.ptr());
}

// Every Var must live on one tape: a gradient never crosses tapes (threads).
void same_tape(shared_tape*& t, const VarObject* v) {
    if (!t) t = v->tape;
    if (v->tape != t)
        throw py::value_error(
            "autograd.grad: the Vars belong to different tapes (built on different threads); "
            "a gradient is taken on the tape its Vars were built on");
}

// While tracing, every comparison a recorded rule makes on a node is a guard, like a
// comparison in the traced Python code: a replay whose values would take another branch
// of a rule raises (or retraces) instead of reusing this one.
struct guard_observer final : compare_observer {
    shared_tape* t;
    std::string where;  // the gradient call's line in the user's code
    guard_observer(shared_tape* tape, std::string line) : t(tape), where(std::move(line)) {}
    PyObject* operand(const term& a) const {
        return a.node ? new_var(t, a.i) : (Py_INCREF(Py_None), Py_None);
    }
    void compared(const term& a, const term& b, cmp c, bool outcome, op rule_of) override {
        PyObject* x = operand(a);
        PyObject* y = x ? operand(b) : nullptr;
        if (!x || !y) {
            Py_XDECREF(x);
            throw py::error_already_set();
        }
        record_guard(x, a.v, y, b.v, c, outcome,
                     std::string("a branch of ") + op_table[int(rule_of)].name +
                         "'s derivative rule, in the gradient taken at " + where);
        Py_DECREF(x);
        Py_DECREF(y);
    }
};

py::list gradient(const py::sequence& outputs, const py::sequence& seeds,
                  const py::sequence& inputs, bool create_graph, const std::string& where) {
    if (live_recorder() && !create_graph) {
        refuse_inside_trace("tg.autograd.grad() without create_graph",
                            "Its floats would be constants of the trace. Use "
                            "create_graph=True (the gradient is then part of the traced "
                            "function), or differentiate the traced Function (F.grad).");
        throw py::error_already_set();
    }
    if (py::len(outputs) != py::len(seeds))
        throw py::value_error("autograd.grad: one grad_output per output");
    shared_tape* t = nullptr;
    grad_request r;
    for (std::size_t k = 0; k < py::len(outputs); ++k) {
        const VarObject* v = var_arg(outputs[k], "outputs", k);
        same_tape(t, v);
        r.outputs.push_back(v->idx);
    }
    for (std::size_t k = 0; k < py::len(inputs); ++k) {
        const VarObject* v = var_arg(inputs[k], "inputs", k);
        same_tape(t, v);
        r.wrt.push_back(v->idx);
    }
    for (std::size_t k = 0; k < py::len(seeds); ++k) {
        py::handle s = seeds[k];
        if (is_var(s.ptr())) {
            const auto* v = reinterpret_cast<const VarObject*>(s.ptr());
            same_tape(t, v);
            r.seeds.push_back(create_graph ? term::of(t->nodes, v->idx)
                                           : term(t->nodes.val(v->idx)));
        } else {
            r.seeds.push_back(term(s.cast<double>()));
        }
    }
    py::list out;
    if (!t) return out;
    if (!create_graph) {
        for (const double g : gradient_values(t->nodes, r)) out.append(g);
        return out;
    }
    // Recorded: the tape must not compact while node indices are held here; each result
    // becomes a Var before the nodes the sweep held are released.
    std::vector<tape::index> held;
    tape& n = t->nodes;
    n.set_relocator(nullptr);
    struct on_exit {
        tape& n;
        shared_tape* t;
        std::vector<tape::index>& held;
        ~on_exit() {
            for (const tape::index i : held) n.release(i);
            n.set_relocator(t);
        }
    } release_held{n, t, held};
    guard_observer guards(t, where);
    const std::vector<tape::index> grads =
        gradient_graph(n, r, held, live_recorder() ? &guards : nullptr);
    for (const tape::index i : grads) {
        PyObject* v = new_var(t, i);
        if (!v) throw py::error_already_set();
        out.append(py::reinterpret_steal<py::object>(v));
    }
    return out;
}

}  // namespace

void register_autograd(py::module_& m) {
    m.def("_gradient", &gradient, py::arg("outputs"), py::arg("seeds"), py::arg("inputs"),
          py::arg("create_graph"), py::arg("where") = "",
          "d(sum_k seeds[k] * outputs[k]) / d inputs[j] for Vars on one tape: floats, or with "
          "create_graph new Vars whose graphs are the recorded reverse sweep. Leaves' .grad "
          "are not touched (tapegrad.autograd.grad).");
}

}  // namespace tapegrad::bind
