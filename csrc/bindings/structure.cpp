// Runs of isomorphic blocks (tapegrad/structure.hpp) for python/tapegrad/structure.py.
#include "tapegrad/structure.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/function.hpp"

namespace py = pybind11;

namespace tapegrad::bind {

void register_structure(py::module_& m) {
    m.def(
        "find_runs",
        [](const Program& P, slot min_count) {
            const program& p = *P.p;
            std::vector<run> runs;
            {
                py::gil_scoped_release unlocked;
                runs = find_runs(p.view(), min_count);
            }
            py::list out;
            for (const run& r : runs) {
                py::array_t<std::int64_t> operands(
                    {py::ssize_t(r.period), py::ssize_t(2), py::ssize_t(4)});
                std::int64_t* d = operands.mutable_data();
                for (slot j = 0; j < r.period; ++j)
                    for (const block_operand* o : {&r.a[j], &r.b[j]}) {
                        *d++ = std::int64_t(o->kind);
                        *d++ = o->first;
                        *d++ = o->source;
                        *d++ = o->stride;
                    }
                out.append(py::make_tuple(r.start, r.period, r.count, operands, r.swapped));
            }
            return out;
        },
        py::arg("program"), py::arg("min_count") = 3,
        "The program's runs of at least min_count isomorphic blocks: per run (start, period, "
        "count, operands, swapped), operands[j, i] = (kind, first, source, stride) for operand "
        "i (a, b) of block op j (kind 0 same iteration, 1 carried, 2 strided, 3 invariant); "
        "swapped: some iteration's add or mul reads them the other way round.");
    m.def(
        "_forward_slots",
        [](const Program& P,
           const py::array_t<double, py::array::c_style | py::array::forcecast>& x,
           const std::string& how, int repeat) {
            const program& p = *P.p;
            if (x.ndim() != 1 || std::size_t(x.size()) != p.n_inputs)
                throw py::value_error("_forward_slots: x must hold one value per input");
            if (repeat < 1) throw py::value_error("_forward_slots: repeat must be positive");
            if (how != "interpreter" && how != "by_runs" && how != "program")
                throw py::value_error(
                    "_forward_slots: how must be 'interpreter', 'by_runs' or "
                    "'program', got '" +
                    how + "'");
            const bool by_runs = how == "by_runs";
            py::array_t<double> val(py::ssize_t(p.n_slots()));
            double* v = val.mutable_data();
            const double* in = x.data();
            double seconds = 0;
            {
                py::gil_scoped_release unlocked;
                const std::vector<run> runs = by_runs ? find_runs(p.view()) : std::vector<run>{};
                const auto t0 = std::chrono::steady_clock::now();
                for (int r = 0; r < repeat; ++r)
                    if (by_runs)
                        forward_by_runs(p, runs, in, v);
                    else if (how == "program")
                        p.forward(in, v);
                    else
                        p.forward_interpreted(in, v);
                seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                    repeat;
            }
            return py::make_tuple(val, seconds);
        },
        py::arg("program"), py::arg("x"), py::arg("how"), py::arg("repeat") = 1,
        "Every slot's value at one point, and the seconds per call over `repeat` calls (for "
        "tests and measurement), by the interpreter alone ('interpreter'), with every run "
        "looped over (forward_by_runs, 'by_runs'), or as calls compute it ('program': the "
        "interpreter, and from the program's 32nd call its elementwise loops if they pay).");
    m.def(
        "_point_loops",
        [](const Program& P, bool look) -> py::object {
            std::optional<std::vector<program::loop_info>> loops;
            {
                py::gil_scoped_release unlocked;
                loops = P.p->point_loops(look);
            }
            if (!loops) return py::none();
            py::list out;
            for (const auto& l : *loops) out.append(py::make_tuple(l.start, l.count, l.reverse));
            return std::move(out);
        },
        py::arg("program"), py::arg("look") = true,
        "The runs (start, count, reverse) the program's one-point forward loops over, and "
        "whether its reverse does too (empty when too little of the program is elementwise "
        "runs for loops to pay), looked for now if no call has made it look yet; with "
        "look=False, None if none has.");
}

}  // namespace tapegrad::bind
