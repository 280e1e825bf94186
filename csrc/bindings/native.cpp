// F.compile()'s C++ side (tapegrad/codegen.hpp) for python/tapegrad/native.py: a
// program's generated source, and a Program that runs a built library's code.
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "bindings/function.hpp"
#include "tapegrad/codegen.hpp"

namespace py = pybind11;

namespace tapegrad::bind {

void register_native(py::module_& m) {
    m.def(
        "native_source",
        [](const Program& P, bool reassociate) {
            std::string src;
            codegen_stats st;
            {
                py::gil_scoped_release unlocked;
                src = native_source(*P.p, &st, reassociate);
            }
            py::dict stats;
            stats["loops"] = st.loops;
            stats["looped_ops"] = st.looped_ops;
            stats["straight_ops"] = st.straight_ops;
            stats["sums_reassociated"] = st.sums_reassociated;
            return py::make_tuple(src, stats);
        },
        py::arg("program"), py::arg("reassociate") = false,
        "C++ source for the program's one-point forward and reverse sweeps (runs as loops), "
        "and counts: (source, {'loops', 'looped_ops', 'straight_ops', 'sums_reassociated'}). "
        "reassociate: loops' sums are added in partial sums (F.compile(reassociate=True)).");
    m.def(
        "native_batch_source",
        [](const Program& P, const std::string& isa) -> py::tuple {
            std::string src, why;
            {
                py::gil_scoped_release unlocked;
                src = native_batch_source(*P.p, isa, &why);
            }
            if (src.empty()) return py::make_tuple(py::none(), why);
            return py::make_tuple(src, std::string());
        },
        py::arg("program"), py::arg("isa"),
        "C++ source running blocks of points, each point's forward and reverse as "
        "straight-line code in one SIMD loop, for the lane set isa ('avx2' or 'baseline'): "
        "(source, '') or (None, why there is none).");
    m.def(
        "with_native",
        [](const Program& P, const std::string& path, py::object batch_path) {
            auto native = std::make_shared<const native_code>(path, *P.p);
            std::shared_ptr<const native_batch> batch;
            if (!batch_path.is_none())
                batch = std::make_shared<const native_batch>(batch_path.cast<std::string>(), *P.p);
            auto Q = std::make_shared<Program>(P);
            Q->native = std::move(native);
            Q->batch = std::move(batch);
            return Q;
        },
        py::arg("program"), py::arg("path"), py::arg("batch_path") = py::none(),
        "A Program sharing this one's program and signature whose one-point values and "
        "gradients run the library at path (built from native_source(program)), and, with "
        "batch_path (built from native_batch_source), its plain batched values and "
        "gradients too. Raises ValueError for a library made from another program, "
        "RuntimeError if one does not load or was made for other lanes.");
    m.def(
        "native_path",
        [](const Program& P) -> py::object {
            if (!P.native) return py::none();
            return py::str(P.native->path());
        },
        py::arg("program"), "The library a Program runs (with_native), or None.");
    m.def(
        "native_batch_path",
        [](const Program& P) -> py::object {
            if (!P.batch) return py::none();
            return py::str(P.batch->path());
        },
        py::arg("program"), "The batch library a Program runs (with_native), or None.");
}

}  // namespace tapegrad::bind
