// _core._gradient: gradients of Vars with respect to Vars, as numbers or recorded on the
// tape as nodes (tapegrad.autograd.grad, and nested tg.grad).
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <unordered_map>
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

// Watches a recorded sweep. While tracing, every comparison a recorded rule makes on a
// node is a guard, like a comparison in the traced Python code: a replay whose values
// would take another branch of a rule raises (or retraces) instead of reusing this one.
// In anomaly mode, the first node made non-finite from finite operands is kept, to be
// reported once the sweep is done (while its nodes are still held).
struct sweep_observer final : compare_observer {
    shared_tape* t;
    std::string where;  // the gradient call's line in the user's code
    bool guards, anomaly;
    tape::index bad = tape::none;
    op bad_rule = op::leaf;
    sweep_observer(shared_tape* tape, std::string line, bool guard, bool check)
        : t(tape), where(std::move(line)), guards(guard), anomaly(check) {}
    PyObject* operand(const term& a) const {
        return a.node ? new_var(t, a.i) : (Py_INCREF(Py_None), Py_None);
    }
    void compared(const term& a, const term& b, cmp c, bool outcome, op rule_of) override {
        if (!guards) return;
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
    void appended(tape::index i, op rule_of) override {
        const tape& n = t->nodes;
        if (!anomaly || bad != tape::none || std::isfinite(n.val(i))) return;
        if (!std::isfinite(n.val(n.arg0(i))) || !std::isfinite(n.val(n.arg1(i)))) return;
        bad = i;
        bad_rule = rule_of;
    }
};

// The recorded sweep for r on t, as new Vars (one per r.wrt). While it records, the
// tape must not compact (node indices are held here): each result becomes a Var before
// the nodes the sweep held are released.
std::vector<py::object> recorded_gradients(shared_tape* t, const grad_request& r,
                                           const std::string& where) {
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
    const bool tracing = live_recorder() != nullptr;
    sweep_observer watch(t, where, tracing, anomaly_enabled());
    const std::vector<tape::index> grads =
        gradient_graph(n, r, held, tracing || watch.anomaly ? &watch : nullptr);
    if (watch.bad != tape::none) {
        PyObject* rule = PyUnicode_FromString(op_table[int(watch.bad_rule)].name);
        if (rule) report_anomaly("recorded", t, watch.bad, rule);
        Py_XDECREF(rule);
        throw py::error_already_set();
    }
    std::vector<py::object> out;
    for (const tape::index i : grads) {
        PyObject* v = new_var(t, i);
        if (!v) throw py::error_already_set();
        out.push_back(py::reinterpret_steal<py::object>(v));
    }
    return out;
}

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
    for (py::object& g : recorded_gradients(t, r, where)) out.append(std::move(g));
    return out;
}

// new = old + r, where old is a Var's .grad before: its recorded gradient, else its float
// adjoint (the float 0 adds nothing).
py::object accumulated(const VarObject* v, double adjoint, const py::object& r) {
    if (PyObject* old = graph_grad(v)) return py::reinterpret_borrow<py::object>(old) + r;
    if (adjoint == 0.0) return r;
    return py::float_(adjoint) + r;
}

void set_graph_grad(const VarObject* v, py::object g) {
    drop_graph_grad(v);
    v->tape->graph_grads.emplace(v, g.release().ptr());
}

}  // namespace

PyObject* backward_with_graph(VarObject* root) {
    const bool ok = with_python_errors([&] {
        shared_tape* t = root->tape;
        // The leaf Vars at or below root (new references: Python code may run while the
        // sweep records, and drop the caller's), and one wrt slot per node.
        std::vector<py::object> leaves;
        std::unordered_map<tape::index, std::size_t> slot;
        grad_request r;
        r.outputs.push_back(root->idx);
        r.seeds.push_back(term(1.0));
        for (VarObject* v : t->vars) {  // (a pass over the tape's live Vars)
            if (v->idx > root->idx || t->nodes.op_at(v->idx) != op::leaf) continue;
            leaves.push_back(py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(v)));
            if (slot.try_emplace(v->idx, r.wrt.size()).second) r.wrt.push_back(v->idx);
        }
        std::vector<double> adjoint;  // each node's float grad before this call
        for (const tape::index i : r.wrt) adjoint.push_back(t->nodes.adj(i));
        // The leaves below root (in its graph, whatever their gradient) are the ones whose
        // .grad changes; only they are differentiated for.
        const std::vector<bool> reached = below(t->nodes, root->idx, r.wrt);
        grad_request used{r.outputs, r.seeds, {}};
        std::vector<std::size_t> at(r.wrt.size(), 0);
        for (std::size_t j = 0; j < r.wrt.size(); ++j)
            if (reached[j]) {
                at[j] = used.wrt.size();
                used.wrt.push_back(r.wrt[j]);
            }
        const std::vector<py::object> grads =
            recorded_gradients(t, used, live_recorder() ? python_location() : "");
        // Each leaf's gradient and float grad, while node indices are still the sweep's;
        // the additions below may compact the tape (which moves nodes and updates Vars).
        std::vector<std::pair<const VarObject*, std::size_t>> reached_leaves;
        for (const py::object& o : leaves) {
            const auto* v = reinterpret_cast<const VarObject*>(o.ptr());
            const std::size_t j = slot.at(v->idx);
            if (reached[j]) reached_leaves.emplace_back(v, j);
        }
        std::vector<py::object> updated;
        for (const auto& [v, j] : reached_leaves)
            updated.push_back(accumulated(v, adjoint[j], grads[at[j]]));
        for (std::size_t k = 0; k < updated.size(); ++k) {
            const VarObject* v = reinterpret_cast<const VarObject*>(reached_leaves[k].first);
            set_graph_grad(v, std::move(updated[k]));
            t->nodes.set_adj(v->idx, 0.0);  // the float grad now lives in the Var
        }
    });
    return ok ? Py_NewRef(Py_None) : nullptr;
}

bool fold_float_grads(shared_tape* t) {
    return with_python_errors([&] {
        // A snapshot with new references: the additions run Python code, which may drop
        // Vars (and their entries) meanwhile.
        std::vector<std::pair<py::object, py::object>> entries;
        for (const auto& [v, g] : t->graph_grads)
            entries.emplace_back(py::reinterpret_borrow<py::object>(
                                     reinterpret_cast<PyObject*>(const_cast<VarObject*>(v))),
                                 py::reinterpret_borrow<py::object>(g));
        std::vector<double> adjoint;  // read before any is reset (Vars may share a node)
        for (const auto& e : entries)
            adjoint.push_back(t->nodes.adj(reinterpret_cast<VarObject*>(e.first.ptr())->idx));
        std::vector<py::object> updated;
        for (std::size_t k = 0; k < entries.size(); ++k)
            updated.push_back(adjoint[k] == 0.0 ? entries[k].second
                                                : entries[k].second + py::float_(adjoint[k]));
        for (std::size_t k = 0; k < entries.size(); ++k) {
            const auto* v = reinterpret_cast<const VarObject*>(entries[k].first.ptr());
            set_graph_grad(v, std::move(updated[k]));
            t->nodes.set_adj(v->idx, 0.0);
        }
    });
}

void register_autograd(py::module_& m) {
    m.def("_gradient", &gradient, py::arg("outputs"), py::arg("seeds"), py::arg("inputs"),
          py::arg("create_graph"), py::arg("where") = "",
          "d(sum_k seeds[k] * outputs[k]) / d inputs[j] for Vars on one tape: floats, or with "
          "create_graph new Vars whose graphs are the recorded reverse sweep. Leaves' .grad "
          "are not touched (tapegrad.autograd.grad).");
}

}  // namespace tapegrad::bind
