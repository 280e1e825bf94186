// tapegrad._core: pybind11 module. The per-op hot path (Var) is a plain CPython type
// registered from var.cpp; everything else is bound here with pybind11.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/function.hpp"
#include "bindings/var.hpp"

namespace py = pybind11;
using namespace tapegrad;

PYBIND11_MODULE(_core, m) {
    m.doc() = "tapegrad's C++ core: a flat tape of scalar nodes and the Var type.";
    if (!bind::register_var(m.ptr())) throw py::error_already_set();

    m.def(
        "ops",
        [] {
            std::vector<std::pair<std::string, int>> rows;
            for (int o = int(op::constant) + 1; o < int(op::count_); ++o)
                rows.emplace_back(op_table[o].name, op_table[o].arity);
            return rows;
        },
        "The op table: (name, arity) per op, in table order.\n\nExamples:\n"
        "    >>> import tapegrad as tg\n    >>> dict(tg.ops())['sin'], dict(tg.ops())['atan2']\n"
        "    (1, 2)");

    m.def(
        "op_aliases",
        [] {
            std::vector<std::pair<std::string, std::string>> rows;
#define TG_ALIAS(alias, name) rows.emplace_back(#alias, #name);
#include "tapegrad/op_aliases.def"
#undef TG_ALIAS
            return rows;
        },
        "Other names of table ops (numpy's): (alias, op) per alias, in op_aliases.def order.\n\n"
        "Examples:\n    >>> import tapegrad as tg\n    >>> dict(tg.op_aliases())['arcsin']\n"
        "    'asin'");

    m.def(
        "op_rules",
        [] {
            py::list rows;
#define TG_OP(name, arity, fwd, dx, dy, tangent)                            \
    rows.append(py::dict(py::arg("name") = #name, py::arg("arity") = arity, \
                         py::arg("forward") = #fwd, py::arg("dx") = #dx,    \
                         py::arg("dy") = arity == 2 ? #dy : "", py::arg("tangent") = #tangent));
#include "tapegrad/ops.def"
#undef TG_OP
            return rows;
        },
        "The op table as ops.def writes it: per op its name, arity and the C++ text of its "
        "forward value, local rules (x, y: operands; out: value; g: adjoint) and tangent.");

    m.def(
        "tape_stats",
        [] {
            const tape& t = bind::current_tape().nodes;
            py::dict d;
            d["size"] = t.size();
            d["garbage"] = t.garbage();
            d["live"] = t.size() - t.garbage();
            d["capacity"] = t.capacity();
            d["bytes"] = t.bytes();
            d["resident_bytes"] = t.resident_bytes();
            d["bytes_per_node"] = tape::bytes_per_node;
            d["max_nodes"] = t.max_nodes();
            return d;
        },
        "Size and memory of the calling thread's tape: nodes on it (size), of which "
        "garbage (unreachable, removed at the next compaction) and live; capacity in nodes; "
        "bytes of capacity, of which resident_bytes in physical memory.");

    m.def(
        "_tape_check",
        [] {
            bind::shared_tape& t = bind::current_tape();
            std::vector<std::uint32_t> hosts(t.nodes.size());
            for (const bind::VarObject* v : t.vars) ++hosts.at(v->idx);
            const std::string problem = t.nodes.check(hosts.data());
            if (!problem.empty()) throw std::logic_error("tape check: " + problem);
        },
        "Recount the calling thread's tape's references from scratch and raise if they "
        "differ from what it keeps (for tests).");

    m.def(
        "_sweep_nodes",
        [](py::handle h) {
            if (!bind::is_var(h.ptr())) throw py::type_error("_sweep_nodes takes a Var");
            const auto* v = reinterpret_cast<const bind::VarObject*>(h.ptr());
            return v->idx - std::min(v->tape->nodes.sweep_start(v->idx), v->idx) + 1;
        },
        "How many tape nodes v.backward() visits (for tests).");

    bind::register_function(m);
    bind::register_buffers(m);
    bind::register_autograd(m);
    bind::register_sparsity(m);
    bind::register_structure(m);
    bind::register_native(m);

    m.def("_set_max_nodes", &bind::set_default_max_nodes, py::arg("n"),
          "Node limit for tapes created from now on (new threads); returns the previous one.");
}
