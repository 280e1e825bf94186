// Runs of isomorphic blocks (tapegrad/structure.hpp) for python/tapegrad/structure.py.
#include "tapegrad/structure.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
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
                out.append(py::make_tuple(r.start, r.period, r.count, operands));
            }
            return out;
        },
        py::arg("program"), py::arg("min_count") = 3,
        "The program's runs of at least min_count isomorphic blocks: per run (start, period, "
        "count, operands), "
        "operands[j, i] = (kind, first, source, stride) for operand i (a, b) of block op j; "
        "kind 0 same iteration, 1 carried, 2 strided, 3 invariant.");
}

}  // namespace tapegrad::bind
