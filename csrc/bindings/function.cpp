// Tracing and replay: guard recording, compile(), and the frozen Program (pybind11).
// Shapes, broadcasting and output structure are handled in python/tapegrad/function.py;
// this layer checks buffers, releases the GIL and maps errors.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#ifdef __linux__
#include <sched.h>
#endif

#include "bindings/function.hpp"
#include "tapegrad/column.hpp"
#include "tapegrad/hessian.hpp"
#include "tapegrad/hessian_program.hpp"
#include "bindings/var.hpp"
#include "tapegrad/lanes.hpp"
#include "tapegrad/vector_math.hpp"

namespace py = pybind11;

namespace tapegrad::bind {
namespace {

// `with _core.Recording() as rec:` — guards of comparisons made on this thread.
class Recording {
public:
    Recording() : rec_(std::make_unique<recorder>()) {}
    ~Recording() {
        if (!active_) return;
        if (PyThread_get_thread_ident() == thread_ && active_recorder() == rec_.get()) {
            active_recorder() = rec_->outer;
        } else {
            // Dropped while still recording, out of order or from another thread: some
            // thread's chain still points at it. That thread frees it when it next meets
            // it at the top of its chain.
            rec_->abandoned = true;
            (void)rec_.release();
        }
    }
    void start() {
        if (active_) throw std::logic_error("Recording already started");
        rec_->tape = &current_tape();
        rec_->outer = live_active_recorder();
        active_recorder() = rec_.get();
        thread_ = PyThread_get_thread_ident();
        active_ = true;
    }
    void stop() {
        if (!active_) return;
        if (PyThread_get_thread_ident() != thread_ || live_active_recorder() != rec_.get())
            throw std::logic_error("Recording stopped out of order or on another thread");
        active_recorder() = rec_->outer;
        active_ = false;
    }
    std::size_t size() const { return rec_->guards.size(); }
    const recorder& get() const { return *rec_; }

private:
    std::unique_ptr<recorder> rec_;
    bool active_ = false;
    unsigned long thread_ = 0;
};

VarObject* var_arg(py::handle h, const char* what) {
    if (!is_var(h.ptr()))
        throw py::type_error(std::string(what) + " must be a tapegrad.Var, got " +
                             Py_TYPE(h.ptr())->tp_name);
    return reinterpret_cast<VarObject*>(h.ptr());
}

// Per-thread buffers for the one-point replays. Python code can run while a replay holds
// them (converting an argument calls __float__ or __array__; any allocation can start a
// garbage collection, whose __del__ may replay again on this thread), so each call leases
// a set of its own: a nested call gets the next set, never the one in use.
class scratch_lease {
public:
    scratch_lease() : depth_(level()++) {
        auto& pool = sets();
        while (pool.size() <= depth_) pool.push_back(std::make_unique<buffers>());
        set_ = pool[depth_].get();
    }
    ~scratch_lease() { --level(); }
    scratch_lease(const scratch_lease&) = delete;
    scratch_lease& operator=(const scratch_lease&) = delete;

    // Buffer `which` with room for n doubles; ask for each buffer once per lease.
    std::vector<double>& get(std::size_t which, std::size_t n) {
        auto& b = (*set_)[which];
        if (b.size() < n) b.resize(n);
        return b;
    }

private:
    using buffers = std::array<std::vector<double>, 7>;
    static std::size_t& level() {
        thread_local std::size_t depth = 0;
        return depth;
    }
    static std::vector<std::unique_ptr<buffers>>& sets() {
        thread_local std::vector<std::unique_ptr<buffers>> pool;
        return pool;
    }
    std::size_t depth_;
    buffers* set_;
};

py::array_t<double> vector_of(const double* p, std::size_t n) {
    py::array_t<double> a(static_cast<py::ssize_t>(n));
    if (n) std::memcpy(a.mutable_data(), p, n * sizeof(double));
    return a;
}

// Batches read and write doubles in place: numpy also makes arrays at odd addresses.
bool aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % alignof(double) == 0; }

// Column j of point p lives at base[j] + p * stride[j] (strides in doubles): the flat
// inputs of a batch (what = "argument"), its input tangents, or its output cotangents.
void describe_columns(const py::list& arrays, std::size_t n, std::size_t expected,
                      const std::string& what, std::vector<const double*>& base,
                      std::vector<std::ptrdiff_t>& stride) {
    for (py::handle h : arrays) {
        auto a = py::reinterpret_borrow<py::object>(h);
        if (!py::isinstance<py::array_t<double>>(a) || a.cast<py::array>().ndim() != 2)
            throw py::type_error("batch: every " + what + " must be a 2-D float64 array");
        auto arr = a.cast<py::array>();
        if (arr.strides(0) % sizeof(double) || arr.strides(1) % sizeof(double) ||
            !aligned(arr.data()))
            throw py::value_error("batch: " + what +
                                  " must be aligned, with strides that are multiples of 8 bytes");
        const std::size_t rows = std::size_t(arr.shape(0));
        if (rows != n && rows != 1)
            throw py::value_error("batch: " + what + " has " + std::to_string(rows) +
                                  " points, expected " + std::to_string(n) + " or 1");
        const auto* p = static_cast<const double*>(arr.data());
        for (py::ssize_t j = 0; j < arr.shape(1); ++j) {
            base.push_back(p + j * (arr.strides(1) / py::ssize_t(sizeof(double))));
            stride.push_back(rows == 1 ? 0 : arr.strides(0) / py::ssize_t(sizeof(double)));
        }
    }
    if (base.size() != expected)
        throw py::value_error("batch: " + what + "s hold " + std::to_string(base.size()) +
                              " columns per point, the program takes " + std::to_string(expected));
}

void describe_outputs(py::array a, std::size_t n, std::size_t cols, const char* what,
                      std::vector<double*>& base, std::vector<std::ptrdiff_t>& stride) {
    if (!py::isinstance<py::array_t<double>>(a) || a.ndim() != 2 || std::size_t(a.shape(0)) != n ||
        std::size_t(a.shape(1)) != cols || !a.writeable() || a.strides(0) % sizeof(double) ||
        a.strides(1) % sizeof(double) || !aligned(a.data()))
        throw py::value_error(std::string("batch: ") + what + " must be a writable, aligned (" +
                              std::to_string(n) + ", " + std::to_string(cols) + ") float64 array");
    auto* p = static_cast<double*>(a.mutable_data());
    for (std::size_t j = 0; j < cols; ++j) {
        base.push_back(p + py::ssize_t(j) * (a.strides(1) / py::ssize_t(sizeof(double))));
        stride.push_back(a.strides(0) / py::ssize_t(sizeof(double)));
    }
}

py::object float64(double v) {
    static PyObject* type =
        py::object(py::module_::import("numpy").attr("float64")).release().ptr();
    PyObject* f = PyFloat_FromDouble(v);
    if (!f) throw py::error_already_set();
    PyObject* r = PyObject_CallOneArg(type, f);
    Py_DECREF(f);
    if (!r) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(r);
}

py::object shaped(const double* p, const std::vector<py_ssize>& shape) {
    if (shape.empty()) return float64(*p);
    py::array_t<double> a(shape);
    std::memcpy(a.mutable_data(), p, sizeof(double) * std::size_t(a.size()));
    return std::move(a);
}

// A caller's out= array for a result of `shape`: a writable, aligned, C-contiguous float64
// array of exactly that shape whose memory overlaps none of `taken`'s ranges; else None.
struct byte_range {
    const char* lo;
    const char* hi;
};
byte_range extent(const py::array& a) {
    const char* lo = static_cast<const char*>(a.data());
    const char* hi = lo;
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (a.shape(d) == 0) return {lo, lo};
        const py::ssize_t span = (a.shape(d) - 1) * a.strides(d);
        (span < 0 ? lo : hi) += span;
    }
    return {lo, hi + a.itemsize()};
}
py::object out_array(py::handle h, const std::vector<py_ssize>& shape,
                     std::vector<byte_range>& taken) {
    if (!py::isinstance<py::array_t<double>>(h)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(h);
    if (!(a.flags() & py::array::c_style) || !a.writeable() || !aligned(a.data()) ||
        std::size_t(a.ndim()) != shape.size())
        return py::none();
    for (std::size_t d = 0; d < shape.size(); ++d)
        if (a.shape(py::ssize_t(d)) != shape[d]) return py::none();
    const byte_range r = extent(a);
    for (const byte_range& t : taken)
        if (r.lo < t.hi && t.lo < r.hi) return py::none();
    taken.push_back(r);
    return std::move(a);
}

// F(*args) / F.value_and_grad(*args) at one point, without leaving C++: arguments whose
// shapes are exactly the traced point shapes. Anything else (batches, odd types, a failed
// guard) returns None, and function.py takes the general path, which also explains errors.
// grad_out (mode 2): the caller's gradient array (a tuple of them for several arguments),
// filled and returned; any doubt about it returns None (the batch path decides).
// Programs of more slots than this run their one-point sweeps without the GIL.
constexpr std::size_t nogil_slots = 20000;

py::object call_point(const Program& P, PyObject* const* args, std::size_t n_args, int mode,
                      PyObject* grad_out = nullptr) {
    const program& p = *P.p;
    // Anomaly mode takes the general path, which checks what the replay produced; so does
    // a gradient without an output to seed, which explains itself there.
    if (n_args != P.arg_shapes.size() || anomaly_enabled() || (mode && p.outputs_.empty()))
        return py::none();
    scratch_lease scratch;
    std::vector<double>& x = scratch.get(2, p.n_inputs);
    const double* x_in = x.data();  // the point: x, or the one argument's own data
    std::size_t at = 0;
    for (std::size_t k = 0; k < n_args; ++k) {
        PyObject* a = args[k];
        const auto& shape = P.arg_shapes[k];
        if (shape.empty()) {
            if (PyFloat_CheckExact(a)) {
                x[at++] = PyFloat_AS_DOUBLE(a);
            } else if (PyLong_CheckExact(a)) {
                x[at++] = PyLong_AsDouble(a);
                if (x[at - 1] == -1.0 && PyErr_Occurred()) throw py::error_already_set();
            } else {
                return py::none();
            }
            continue;
        }
        if (!py::isinstance<py::array>(a)) return py::none();
        auto arr = py::reinterpret_borrow<py::array>(a);
        if (std::size_t(arr.ndim()) != shape.size()) return py::none();
        for (std::size_t d = 0; d < shape.size(); ++d)
            if (arr.shape(py::ssize_t(d)) != shape[d]) return py::none();
        const double* src;
        py::object converted;  // a copy, when the array is not float64 C-order (no array: null)
        if (py::isinstance<py::array_t<double>>(arr) && (arr.flags() & py::array::c_style) &&
            aligned(arr.data())) {
            src = static_cast<const double*>(arr.data());
        } else {
            // Numbers only: an object array (of Vars, say) would be converted by float()
            // and lose its gradients; the general path names it.
            const char kind = arr.dtype().kind();
            if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f') return py::none();
            auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
            if (!c) throw py::error_already_set();
            src = c.data();
            converted = std::move(c);
        }
        // One float64 argument is read where it is, unless the sweeps run without the GIL
        // (where another thread could write it meanwhile).
        if (n_args == 1 && !converted && p.n_slots() <= nogil_slots)
            x_in = src;
        else
            std::memcpy(x.data() + at, src, sizeof(double) * std::size_t(arr.size()));
        at += std::size_t(arr.size());
    }
    if (at != p.n_inputs) return py::none();
    // The caller's gradient arrays, checked as call_batch checks them: one argument's
    // gradient goes straight into its array, several arguments' are copied there.
    double* grad = scratch.get(3, p.n_inputs).data();
    std::vector<py::object> grad_outs;  // several arguments'
    if (grad_out) {
        if (mode != 2) return py::none();
        thread_local std::vector<byte_range> taken;  // (no Python code runs while in use)
        taken.clear();
        for (std::size_t k = 0; k < n_args; ++k)
            if (!P.arg_shapes[k].empty())
                taken.push_back(extent(py::reinterpret_borrow<py::array>(args[k])));
        if (n_args == 1) {
            const py::object a = out_array(grad_out, P.arg_shapes[0], taken);
            if (a.is_none()) return py::none();
            grad = static_cast<double*>(py::reinterpret_borrow<py::array>(a).mutable_data());
        } else {
            if (!PyTuple_Check(grad_out) || std::size_t(PyTuple_GET_SIZE(grad_out)) != n_args)
                return py::none();
            for (std::size_t k = 0; k < n_args; ++k) {
                grad_outs.push_back(
                    out_array(PyTuple_GET_ITEM(grad_out, py_ssize(k)), P.arg_shapes[k], taken));
                if (grad_outs.back().is_none()) return py::none();
            }
        }
    }
    // One array argument's gradient, returned in a new array: the sweeps write it there.
    py::object fresh;
    if (!grad_out && mode && n_args == 1 && !P.arg_shapes[0].empty()) {
        py::array_t<double> a(P.arg_shapes[0]);
        grad = a.mutable_data();
        fresh = std::move(a);
    }
    const std::size_t n = p.n_slots();
    double* val = scratch.get(0, n).data();
    double* adj = scratch.get(1, n).data();
    std::vector<double>& seed_buffer = scratch.get(5, p.outputs_.size());
    {
        std::unique_ptr<py::gil_scoped_release> nogil;
        if (n > nogil_slots) nogil = std::make_unique<py::gil_scoped_release>();
        if (mode == 2)
            P.forward_gradient(x_in, val);
        else
            P.forward(x_in, val);
        if (p.failing_guard(val) >= 0) return py::none();
        if (mode) {
            double* seed = seed_buffer.data();
            std::fill_n(seed, p.outputs_.size(), 0.0);
            seed[0] = 1.0;
            if (mode == 2) {
                P.reverse_gradient(val, adj, seed, grad);
            } else {
                std::fill_n(grad, p.n_inputs, 0.0);
                P.reverse(val, adj, seed, grad);
            }
        }
    }
    if (grad_out) {
        if (!grad_outs.empty()) {
            std::size_t at = 0;
            for (const py::object& g : grad_outs) {
                auto a = py::reinterpret_borrow<py::array>(g);
                std::memcpy(a.mutable_data(), grad + at, sizeof(double) * std::size_t(a.size()));
                at += std::size_t(a.size());
            }
        }
        return py::reinterpret_borrow<py::object>(grad_out);
    }
    std::vector<double>& out = scratch.get(4, p.outputs_.size());
    for (std::size_t k = 0; k < p.outputs_.size(); ++k) out[k] = val[p.outputs_[k]];
    // mode 2: the gradients alone (F.grad), 1: (value, gradients), 0: the value
    py::object value = mode == 2 ? py::none() : shaped(out.data(), P.out_shape);
    if (!mode) return value;
    py::tuple grads(n_args);
    at = 0;
    for (std::size_t k = 0; k < n_args; ++k) {
        grads[k] = fresh ? fresh : shaped(grad + at, P.arg_shapes[k]);
        std::size_t size = 1;
        for (py_ssize d : P.arg_shapes[k]) size *= std::size_t(d);
        at += size;
    }
    py::object g = n_args == 1 ? py::object(grads[0]) : py::object(grads);
    return mode == 2 ? g : py::make_tuple(value, g);
}
py::object call_point(const Program& P, const py::tuple& args, int mode) {
    return call_point(P, &PyTuple_GET_ITEM(args.ptr(), 0), args.size(), mode);
}

// Every core this process may run on (function.py's default for threads=None).
int default_threads() {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return int(std::max(1u, std::thread::hardware_concurrency()));
}

// One argument of a batched call: its point columns' base addresses and the stride (in
// doubles) from one point to the next (0: the same value for every point).
struct batch_arg {
    const double* data = nullptr;
    std::vector<py_ssize> lead;     // its batch dimensions
    std::vector<py_ssize> strides;  // in doubles, for all its dimensions
};

// F(*args) / F.value_and_grad(*args) over a batch, without leaving C++: float64 arrays
// (or numbers, for scalar point shapes) whose trailing dimensions are the traced point
// shapes, and whose batch dimensions are either the batch's (laid out so that one stride
// steps from point to point) or all 1. Results are C-contiguous arrays of shape batch +
// out_shape (and batch + each argument's shape). Anything else (a real broadcast, other
// dtypes, a failed guard, anomaly mode, one point) returns None, and function.py takes
// the general path, which also explains errors.

py::object call_batch(const Program& P, const py::tuple& args, int mode, int threads,
                      const py::object& outs) {
    const program& p = *P.p;
    const std::size_t n_args = P.arg_shapes.size();
    if (args.size() != n_args || anomaly_enabled() || (mode && p.outputs_.empty()))
        return py::none();
    std::vector<batch_arg> in(n_args);
    std::vector<double> numbers(n_args);
    std::vector<py_ssize> batch;  // the broadcast of the arguments' batch dimensions
    for (std::size_t k = 0; k < n_args; ++k) {
        PyObject* a = args[k].ptr();
        const auto& shape = P.arg_shapes[k];
        batch_arg& b = in[k];
        if (PyFloat_CheckExact(a) && shape.empty()) {
            numbers[k] = PyFloat_AS_DOUBLE(a);
            b.data = &numbers[k];
            continue;
        }
        if (!py::isinstance<py::array_t<double>>(args[k])) return py::none();
        auto arr = py::reinterpret_borrow<py::array>(args[k]);
        const std::size_t nd = std::size_t(arr.ndim()), pd = shape.size();
        if (nd < pd || !aligned(arr.data())) return py::none();
        for (std::size_t d = 0; d < pd; ++d)
            if (arr.shape(py::ssize_t(nd - pd + d)) != shape[d]) return py::none();
        for (std::size_t d = 0; d < nd; ++d) {
            if (arr.strides(py::ssize_t(d)) % py::ssize_t(sizeof(double))) return py::none();
            b.strides.push_back(arr.strides(py::ssize_t(d)) / py::ssize_t(sizeof(double)));
        }
        b.data = static_cast<const double*>(arr.data());
        b.lead.assign(arr.shape(), arr.shape() + (nd - pd));
        if (b.lead.size() > batch.size())
            batch.insert(batch.begin(), b.lead.size() - batch.size(), 1);
        for (std::size_t d = 0; d < b.lead.size(); ++d) {
            py_ssize& out = batch[batch.size() - b.lead.size() + d];
            const py_ssize here = b.lead[d];
            if (out == 1)
                out = here;
            else if (here != 1 && here != out)
                return py::none();  // general path: error
        }
    }
    std::size_t n = 1;
    for (const py_ssize d : batch) n *= std::size_t(d);
    if (batch.empty() || n == 0) return py::none();
    // The caller's arrays (out=), checked before anything runs; any doubt: None.
    py::object value_out = py::none();
    std::vector<py::object> grad_outs;
    if (!outs.is_none()) {
        std::vector<byte_range> taken;
        for (std::size_t k = 0; k < n_args; ++k)
            if (in[k].data != &numbers[k])  // an array, not a number
                taken.push_back(extent(py::reinterpret_borrow<py::array>(args[k])));
        std::vector<py_ssize> shape = batch;
        shape.insert(shape.end(), P.out_shape.begin(), P.out_shape.end());
        py::handle v = mode ? py::handle(Py_None) : py::handle(outs);
        py::handle g = Py_None;
        if (mode) {
            if (!py::isinstance<py::tuple>(outs) || py::len(outs) != 2) return py::none();
            v = py::reinterpret_borrow<py::tuple>(outs)[0];
            g = py::reinterpret_borrow<py::tuple>(outs)[1];
        }
        if (!v.is_none() && (value_out = out_array(v, shape, taken)).is_none()) return py::none();
        if (mode) {
            py::tuple gs;
            if (n_args == 1) {
                gs = py::make_tuple(g);
            } else {
                if (!py::isinstance<py::tuple>(g) || py::len(g) != n_args) return py::none();
                gs = py::reinterpret_borrow<py::tuple>(g);
            }
            for (std::size_t k = 0; k < n_args; ++k) {
                std::vector<py_ssize> gshape = batch;
                gshape.insert(gshape.end(), P.arg_shapes[k].begin(), P.arg_shapes[k].end());
                grad_outs.push_back(out_array(gs[k], gshape, taken));
                if (grad_outs.back().is_none()) return py::none();
            }
        }
    }
    program::batch_io io;
    io.native = P.native_block();
    io.in_base.reserve(p.n_inputs);
    io.in_stride.reserve(p.n_inputs);
    io.out_base.reserve(p.outputs_.size());
    io.out_stride.reserve(p.outputs_.size());
    if (mode) {
        io.grad_base.reserve(p.n_inputs);
        io.grad_stride.reserve(p.n_inputs);
    }
    for (std::size_t k = 0; k < n_args; ++k) {
        const batch_arg& b = in[k];
        const auto& shape = P.arg_shapes[k];
        std::size_t lead_n = 1;
        for (const py_ssize d : b.lead) lead_n *= std::size_t(d);
        std::ptrdiff_t step = 0;  // from point to point
        if (lead_n != 1) {
            // Every point of the batch, in order: the same batch dimensions, and one stride.
            if (b.lead.size() != batch.size()) return py::none();
            std::ptrdiff_t want = 0;
            for (std::size_t d = b.lead.size(); d-- > 0;) {
                if (b.lead[d] != batch[d]) return py::none();
                if (b.lead[d] == 1) continue;
                if (want && b.strides[d] != want) return py::none();
                if (!want) step = b.strides[d];
                want = b.strides[d] * b.lead[d];
            }
        }
        // The point's elements in C order, at their strides.
        const std::size_t pd = shape.size(), first = b.lead.size();
        std::size_t size = 1;
        for (const py_ssize d : shape) size *= std::size_t(d);
        for (std::size_t j = 0; j < size; ++j) {
            std::ptrdiff_t off = 0;
            std::size_t rest = j;
            for (std::size_t d = pd; d-- > 0;) {
                off += std::ptrdiff_t(rest % std::size_t(shape[d])) * b.strides[first + d];
                rest /= std::size_t(shape[d]);
            }
            io.in_base.push_back(b.data + off);
            io.in_stride.push_back(step);
        }
    }
    std::vector<py_ssize> out_shape = batch;
    out_shape.insert(out_shape.end(), P.out_shape.begin(), P.out_shape.end());
    py::array_t<double> value = value_out.is_none()
                                    ? empty(out_shape)
                                    : py::reinterpret_borrow<py::array_t<double>>(value_out);
    const std::size_t n_out = p.outputs_.size();
    for (std::size_t j = 0; j < n_out; ++j) {
        io.out_base.push_back(value.mutable_data() + j);
        io.out_stride.push_back(std::ptrdiff_t(n_out));
    }
    std::vector<py::array_t<double>> grads;
    grads.reserve(n_args);
    if (mode) {
        for (std::size_t k = 0; k < n_args; ++k) {
            std::vector<py_ssize> shape = batch;
            shape.insert(shape.end(), P.arg_shapes[k].begin(), P.arg_shapes[k].end());
            grads.push_back(grad_outs.empty()
                                ? empty(shape)
                                : py::reinterpret_borrow<py::array_t<double>>(grad_outs[k]));
            const std::size_t size = std::size_t(grads.back().size()) / n;
            for (std::size_t j = 0; j < size; ++j) {
                io.grad_base.push_back(grads.back().mutable_data() + j);
                io.grad_stride.push_back(std::ptrdiff_t(size));
            }
        }
    }
    std::vector<std::size_t> failed;
    bool finished;
    if (n * p.n_slots() <= nogil_slots) {  // a few microseconds: releasing the GIL costs more
        finished = p.run_batch(io, n, 1, failed, [] { return PyErr_CheckSignals() != 0; });
    } else {
        py::gil_scoped_release nogil;
        finished = p.run_batch(io, n, threads > 0 ? threads : default_threads(), failed, [] {
            py::gil_scoped_acquire gil;
            return PyErr_CheckSignals() != 0;
        });
    }
    if (!finished) throw py::error_already_set();
    if (!failed.empty()) return py::none();  // the general path repairs or explains
    if (!mode) return std::move(value);
    py::object g = n_args == 1 ? py::object(grads[0]) : py::object(py::cast(grads));
    if (n_args != 1) g = py::tuple(g);
    // value_and_grad(out=(None, grads)) keeps no values
    py::object v = !outs.is_none() && value_out.is_none() ? py::none() : py::object(value);
    return py::make_tuple(std::move(v), std::move(g));
}

using c_doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Program.point: one point, values and (mode 1) the gradient of output 0 or (mode 2)
// the Jacobian, and the first failing guard or -1.
py::object point(const Program& P, c_doubles x, int mode) {
    // mode 0: values; 1: values and the gradient of output 0; 2: + Jacobian.
    const program& p = *P.p;
    if (x.ndim() != 1 || std::size_t(x.shape(0)) != p.n_inputs)
        throw py::value_error("point: expected " + std::to_string(p.n_inputs) +
                              " inputs, got shape " + std::to_string(x.size()));
    if (mode < 0 || mode > 2)
        throw py::value_error(
            "point: mode must be 0 (values), 1 (gradient) or "
            "2 (Jacobian), got " +
            std::to_string(mode));
    if (mode == 1 && p.outputs_.empty())
        throw py::value_error(
            "point: a gradient needs an output to seed; this "
            "program has none");
    const std::size_t n = p.n_slots(), m_out = p.outputs_.size();
    scratch_lease scratch;
    double* val = scratch.get(0, n).data();
    double* adj = scratch.get(1, n).data();
    std::vector<double> out(m_out), jac(mode ? (mode == 1 ? 1 : m_out) * p.n_inputs : 0);
    long failed;
    {
        std::unique_ptr<py::gil_scoped_release> nogil;
        if (n > nogil_slots) nogil = std::make_unique<py::gil_scoped_release>();
        P.forward(x.data(), val);
        failed = p.failing_guard(val);
        for (std::size_t k = 0; k < m_out; ++k) out[k] = val[p.outputs_[k]];
        std::vector<double> seed(m_out, 0.0);
        for (std::size_t k = 0; mode && k < (mode == 1 ? 1 : m_out); ++k) {
            seed.assign(m_out, 0.0);
            seed[k] = 1.0;
            P.reverse(val, adj, seed.data(), jac.data() + k * p.n_inputs);
        }
    }
    py::object j = py::none();
    if (mode) j = vector_of(jac.data(), jac.size());
    return py::make_tuple(vector_of(out.data(), m_out), j, failed);
}

// Program.point_tangent: one point, forward mode.
py::object point_tangent(const Program& P, c_doubles x, c_doubles tx, bool hvp) {
    // One point, forward mode: (values, their tangents along tx, the Hessian
    // of output 0 times tx if hvp else None, failing guard or -1). The same
    // sweeps as a batch of one point, without the batch machinery.
    const program& p = *P.p;
    for (const auto* a : {&x, &tx})
        if (a->ndim() != 1 || std::size_t(a->shape(0)) != p.n_inputs)
            throw py::value_error("point_tangent: expected " + std::to_string(p.n_inputs) +
                                  " inputs");
    if (hvp && p.outputs_.empty())
        throw py::value_error(
            "point_tangent: a Hessian-vector product needs an "
            "output to seed; this program has none");
    const std::size_t n = p.n_slots(), m_out = p.outputs_.size();
    scratch_lease scratch;
    double* val = scratch.get(0, n).data();
    double* adj = scratch.get(1, n).data();
    std::vector<double>& tb = scratch.get(5, n);
    double* adjt = scratch.get(6, n).data();
    std::vector<double> out(m_out), tout(m_out), h(hvp ? p.n_inputs : 0);
    long failed;
    {
        std::unique_ptr<py::gil_scoped_release> nogil;
        if (n > nogil_slots) nogil = std::make_unique<py::gil_scoped_release>();
        p.forward(x.data(), val);
        failed = p.failing_guard(val);
        double* t = tb.data();
        std::memcpy(t, tx.data(), sizeof(double) * p.n_inputs);
        std::fill(t + p.n_inputs, t + p.first_op(), 0.0);  // constants
        p.tangent(val, t);
        for (std::size_t k = 0; k < m_out; ++k) {
            out[k] = val[p.outputs_[k]];
            tout[k] = t[p.outputs_[k]];
        }
        if (hvp) {
            p.reverse_dual(val, t, adj, adjt, 0);
            std::copy(adjt, adjt + p.n_inputs, h.begin());
        }
    }
    py::object hv = py::none();
    if (hvp) hv = vector_of(h.data(), h.size());
    return py::make_tuple(vector_of(out.data(), m_out), vector_of(tout.data(), m_out), hv, failed);
}

// Program.point_sweeps: one point's forward sweep shared by many tangent sweeps (rows of
// tangents, n_inputs wide) and adjoint sweeps (rows of seeds, n_outputs wide), as a
// compressed sparse Jacobian runs them (sparse.py): (values, tangent rows or None,
// gradient rows or None, failing guard or -1).
py::object point_sweeps(const Program& P, c_doubles x, py::object tangents, py::object seeds) {
    const program& p = *P.p;
    const std::size_t n = p.n_slots(), m_out = p.outputs_.size(), n_in = p.n_inputs;
    if (x.ndim() != 1 || std::size_t(x.shape(0)) != n_in)
        throw py::value_error("point_sweeps: expected " + std::to_string(n_in) + " inputs");
    const auto rows = [](const py::object& o, std::size_t width, const char* what) {
        if (o.is_none()) return c_doubles();
        c_doubles a = py::cast<c_doubles>(o);
        if (a.ndim() != 2 || std::size_t(a.shape(1)) != width)
            throw py::value_error(std::string("point_sweeps: ") + what + " must be 2-D with " +
                                  std::to_string(width) + " columns");
        return a;
    };
    const c_doubles tan = rows(tangents, n_in, "tangents"), seed = rows(seeds, m_out, "seeds");
    const std::size_t n_tan = tangents.is_none() ? 0 : std::size_t(tan.shape(0));
    const std::size_t n_seed = seeds.is_none() ? 0 : std::size_t(seed.shape(0));
    scratch_lease scratch;
    double* val = scratch.get(0, n).data();
    double* adj = scratch.get(1, n).data();
    double* t = scratch.get(5, n).data();
    std::vector<double> out(m_out), tout(n_tan * m_out), grads(n_seed * n_in, 0.0);
    long failed;
    {
        std::unique_ptr<py::gil_scoped_release> nogil;
        if (n * (1 + n_tan + n_seed) > nogil_slots)
            nogil = std::make_unique<py::gil_scoped_release>();
        p.forward(x.data(), val);
        failed = p.failing_guard(val);
        for (std::size_t k = 0; k < m_out; ++k) out[k] = val[p.outputs_[k]];
        std::fill(t + n_in, t + p.first_op(), 0.0);  // constants
        for (std::size_t r = 0; r < n_tan; ++r) {
            std::memcpy(t, tan.data() + r * n_in, sizeof(double) * n_in);
            p.tangent(val, t);
            for (std::size_t k = 0; k < m_out; ++k) tout[r * m_out + k] = t[p.outputs_[k]];
        }
        for (std::size_t r = 0; r < n_seed; ++r)
            p.reverse(val, adj, seed.data() + r * m_out, grads.data() + r * n_in);
    }
    py::object to = py::none(), g = py::none();
    if (!tangents.is_none()) to = vector_of(tout.data(), tout.size()).reshape({n_tan, m_out});
    if (!seeds.is_none()) g = vector_of(grads.data(), grads.size()).reshape({n_seed, n_in});
    return py::make_tuple(vector_of(out.data(), m_out), to, g, failed);
}

// A Hessian plan over seed groups (the colors of a sparse Hessian), for one program, and
// the tangent scratch its columns run in: hessian_block leaves it zero, so a call that
// finds it free skips clearing 2 * n_slots doubles (a concurrent call clears its own).
struct HessianPlan {
    std::shared_ptr<const program> p;
    hessian_plan plan;
    std::mutex busy;
    std::vector<double> t, adjt;
    // The (input, column) entries hessian_entries gives, and their recorded program
    // (Program.record_hessian), once.
    std::vector<std::pair<slot, slot>> entries;
    std::shared_ptr<const recorded_hessian> recorded;
    // The recorded program's values (10 MB for Rosenbrock at d = 1e5), on huge pages where
    // the system gives them. Used by the call that holds replay_busy, others lease their own.
    std::mutex replay_busy;
    column<double> replay_val{true};
    std::size_t replay_slots = 0;
};

// Program.hessian_columns: one point's Hessian of output 0 times each group's 0/1 seed
// vector, the gradient's reverse sweep shared (hessian_block over one lane): an
// (n_inputs, n_groups) array, and the failing guard or -1.
py::object hessian_columns(const Program& P, c_doubles x, HessianPlan& H) {
    const program& p = *P.p;
    if (H.p != P.p) throw py::value_error("hessian_columns: the plan was made for another program");
    if (p.outputs_.size() != 1)
        throw py::value_error("hessian_columns: the program has " +
                              std::to_string(p.outputs_.size()) + " outputs, not 1");
    const std::size_t n = p.n_slots(), n_in = p.n_inputs;
    if (x.ndim() != 1 || std::size_t(x.shape(0)) != n_in)
        throw py::value_error("hessian_columns: expected " + std::to_string(n_in) + " inputs");
    const std::size_t n_cols = H.plan.groups.size();
    scratch_lease scratch;
    double* val = scratch.get(0, n).data();
    double* adj = scratch.get(1, n).data();
    std::vector<double> cols(n_in * n_cols);
    long failed;
    {
        std::unique_ptr<py::gil_scoped_release> nogil;
        if (n > nogil_slots) nogil = std::make_unique<py::gil_scoped_release>();
        std::unique_lock<std::mutex> kept(H.busy, std::try_to_lock);
        std::vector<double> own_t, own_adjt;
        if (kept && H.t.size() != n) H.t.assign(n, 0.0), H.adjt.assign(n, 0.0);
        if (!kept) own_t.assign(n, 0.0), own_adjt.assign(n, 0.0);
        double* t = kept ? H.t.data() : own_t.data();
        double* adjt = kept ? H.adjt.data() : own_adjt.data();
        p.forward(x.data(), val);
        failed = p.failing_guard(val);
        p.adjoints(val, adj, 0);
        hessian_block(p.view(), H.plan, p.outputs_[0], val, adj, t, adjt, 1, 1, cols.data(), 0,
                      true);
    }
    return py::make_tuple(vector_of(cols.data(), cols.size()).reshape({n_in, n_cols}), failed);
}

using c_int64s = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// Program.record_hessian: records the plan's entries of the compressed Hessian as a program
// (hessian_program.hpp) at x, unless it would pass max_ops op slots. True if recorded.
bool record_hessian_entries(const Program& P, c_doubles x, HessianPlan& H, std::size_t max_ops) {
    const program& p = *P.p;
    if (H.p != P.p) throw py::value_error("record_hessian: the plan was made for another program");
    if (p.outputs_.size() != 1)
        throw py::value_error("record_hessian: the program has not 1 output");
    if (x.ndim() != 1 || std::size_t(x.shape(0)) != p.n_inputs)
        throw py::value_error("record_hessian: expected " + std::to_string(p.n_inputs) + " inputs");
    std::unique_ptr<recorded_hessian> r;
    {
        py::gil_scoped_release nogil;
        r = record_hessian(p, H.plan, H.entries, x.data(), max_ops);
    }
    if (!r) return false;
    std::lock_guard<std::mutex> kept(H.busy);
    H.recorded = std::move(r);
    return true;
}

// Program.hessian_entries: the plan's entries of the compressed Hessian at x, by the
// recorded program where there is one and it does not decline x, else by hessian_block;
// and the failing guard or -1.
py::object hessian_entries(const Program& P, c_doubles x, HessianPlan& H) {
    if (H.p != P.p) throw py::value_error("hessian_entries: the plan was made for another program");
    if (x.ndim() != 1 || std::size_t(x.shape(0)) != P.p->n_inputs)
        throw py::value_error("hessian_entries: expected " + std::to_string(P.p->n_inputs) +
                              " inputs");
    std::shared_ptr<const recorded_hessian> r;
    {
        std::lock_guard<std::mutex> kept(H.busy);
        r = H.recorded;
    }
    const std::size_t m = H.entries.size();
    py::array_t<double> result(static_cast<py::ssize_t>(m));  // written in place
    double* out = result.mutable_data();
    if (r) {
        bool ok;
        {
            std::unique_ptr<py::gil_scoped_release> nogil;
            if (r->n_ops > nogil_slots) nogil = std::make_unique<py::gil_scoped_release>();
            const std::size_t n = r->prog.n_slots();
            std::unique_lock<std::mutex> kept(H.replay_busy, std::try_to_lock);
            if (kept) {
                if (H.replay_slots < n) H.replay_val.resize(0, n), H.replay_slots = n;
                ok = run_recorded_hessian(*r, x.data(), H.replay_val.get(), out);
            } else {
                scratch_lease scratch;
                ok = run_recorded_hessian(*r, x.data(), scratch.get(0, n).data(), out);
            }
        }
        if (ok) return py::make_tuple(result, -1L);
    }
    py::tuple cf = hessian_columns(P, x, H);
    const auto cols = cf[0].cast<c_doubles>();
    const std::size_t n_cols = H.plan.groups.size();
    for (std::size_t k = 0; k < m; ++k)
        out[k] = cols.data()[std::size_t(H.entries[k].first) * n_cols + H.entries[k].second];
    return py::make_tuple(result, cf[1]);
}

// Program.batch: n points in the lanes, with the GIL released.
py::object batch(const Program& P, py::list args, py::array out, py::object grads, int threads,
                 std::size_t seed_output, py::object seeds, py::object tangents,
                 py::object tangent_out, py::object hvp, py::object hessian) {
    const program& p = *P.p;
    const std::size_t n = std::size_t(out.ndim() == 2 ? out.shape(0) : 0);
    const std::size_t n_out = p.outputs_.size();
    program::batch_io io;
    io.native = P.native_block();
    describe_columns(args, n, p.n_inputs, "argument", io.in_base, io.in_stride);
    describe_outputs(out, n, n_out, "out", io.out_base, io.out_stride);
    auto per_input = [&](py::object arrays, const char* what, std::vector<double*>& base,
                         std::vector<std::ptrdiff_t>& stride) {
        for (py::handle g : arrays.cast<py::list>()) {
            auto a = py::reinterpret_borrow<py::array>(g);
            describe_outputs(a, n, std::size_t(a.ndim() == 2 ? a.shape(1) : 0), what, base, stride);
        }
        if (base.size() != p.n_inputs)
            throw py::value_error(std::string("batch: ") + what +
                                  " arrays do not match the inputs");
    };
    if (!grads.is_none()) {
        if (seed_output >= n_out) throw py::value_error("batch: seed_output out of range");
        io.seed_output = seed_output;
        per_input(grads, "grad", io.grad_base, io.grad_stride);
    }
    if (!seeds.is_none())
        describe_columns(seeds.cast<py::list>(), n, n_out, "seed", io.seed_base, io.seed_stride);
    if (!tangents.is_none())
        describe_columns(tangents.cast<py::list>(), n, p.n_inputs, "tangent", io.tan_base,
                         io.tan_stride);
    if (!tangent_out.is_none()) {
        if (io.tan_base.empty()) throw py::value_error("batch: tangent_out needs tangents");
        describe_outputs(tangent_out.cast<py::array>(), n, n_out, "tangent_out", io.tout_base,
                         io.tout_stride);
    }
    if (!hvp.is_none()) {
        if (io.tan_base.empty()) throw py::value_error("batch: hvp needs tangents");
        if (seed_output >= n_out) throw py::value_error("batch: seed_output out of range");
        io.seed_output = seed_output;
        per_input(hvp, "hvp", io.hvp_base, io.hvp_stride);
    }
    if (!hessian.is_none()) {
        auto h = hessian.cast<py::array>();
        const auto m = py::ssize_t(p.n_inputs);
        if (!py::isinstance<py::array_t<double>>(h) || h.ndim() != 3 ||
            std::size_t(h.shape(0)) != n || h.shape(1) != m || h.shape(2) != m || !h.writeable() ||
            !(h.flags() & py::array::c_style) || !aligned(h.data()))
            throw py::value_error("batch: hessian must be a writable aligned C-contiguous (" +
                                  std::to_string(n) + ", " + std::to_string(m) + ", " +
                                  std::to_string(m) + ") float64 array");
        if (seed_output >= n_out) throw py::value_error("batch: seed_output out of range");
        io.seed_output = seed_output;
        io.hess_base = static_cast<double*>(h.mutable_data());
        io.hess_stride = m * m;
    }
    std::vector<std::size_t> failed;
    bool finished;
    {
        py::gil_scoped_release nogil;
        finished = p.run_batch(io, n, threads, failed, [] {
            py::gil_scoped_acquire gil;
            return PyErr_CheckSignals() != 0;
        });
    }
    if (!finished) throw py::error_already_set();
    py::array_t<std::int64_t> f(static_cast<py::ssize_t>(failed.size()));
    for (std::size_t k = 0; k < failed.size(); ++k) f.mutable_data()[k] = std::int64_t(failed[k]);
    return f;
}

// F.grad / F.value_and_grad as C callables: function.py puts one on each Function as an
// instance attribute, so a call without keywords goes from Python straight into C++ (no
// Python frame, no pybind11 dispatch): the one-point path, then a plain batch. Anything
// else (keywords, a declined call) goes to `fallback`, the Python method, unchanged.
struct FastMethod {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject* program;   // the Program (keeps `p` alive)
    const Program* p;
    PyObject* fallback;  // called with the same arguments when the fast path declines
    int mode;            // 0: values; 1: (value, grads); 2: grads; -1: always the fallback
};

PyObject* fast_method_call(PyObject* self, PyObject* const* args, std::size_t nargsf,
                           PyObject* kwnames) {
    auto* m = reinterpret_cast<FastMethod*>(self);
    const Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    // Keywords it takes: threads (None or an int >= 1) and out (mode 1: as given; mode 2:
    // the gradients, i.e. (None, out)); anything else, or any doubt, is the fallback's.
    int threads = 0;
    PyObject* out = nullptr;
    bool fast = m->mode >= 0;
    for (Py_ssize_t k = 0; fast && kwnames && k < PyTuple_GET_SIZE(kwnames); ++k) {
        PyObject* name = PyTuple_GET_ITEM(kwnames, k);
        PyObject* value = args[n + k];
        if (PyUnicode_CompareWithASCIIString(name, "threads") == 0) {
            if (value == Py_None) continue;
            const long t = PyLong_CheckExact(value) ? PyLong_AsLong(value) : -1;
            if (t == -1 && PyErr_Occurred()) PyErr_Clear();
            fast = t >= 1 && t <= INT_MAX;
            threads = fast ? int(t) : 0;
        } else if (PyUnicode_CompareWithASCIIString(name, "out") == 0) {
            out = value == Py_None ? nullptr : value;
        } else {
            fast = false;
        }
    }
    if (fast) {
        PyObject* result = nullptr;
        const bool ok = with_python_errors([&] {
            py::object r = !out || m->mode == 2
                               ? call_point(*m->p, args, std::size_t(n), m->mode, out)
                               : py::none();
            if (r.is_none()) {
                py::tuple t(n);
                for (Py_ssize_t k = 0; k < n; ++k) PyTuple_SET_ITEM(t.ptr(), k, Py_NewRef(args[k]));
                py::object outs = py::none();
                if (out)
                    outs = m->mode == 2 ? py::object(py::make_tuple(py::none(), py::handle(out)))
                                        : py::reinterpret_borrow<py::object>(out);
                r = call_batch(*m->p, t, m->mode ? 1 : 0, threads, outs);
                if (!r.is_none() && m->mode == 2) r = r[py::int_(1)];  // the gradients
            }
            if (!r.is_none()) result = r.release().ptr();
        });
        if (!ok) return nullptr;
        if (result) return result;
    }
    if (!m->fallback) {  // (cleared by the garbage collector while still reachable)
        PyErr_SetString(PyExc_RuntimeError, "this Function is being collected");
        return nullptr;
    }
    return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
}

int fast_method_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* m = reinterpret_cast<FastMethod*>(self);
    Py_VISIT(m->program);
    Py_VISIT(m->fallback);
    return 0;
}

int fast_method_clear(PyObject* self) {
    auto* m = reinterpret_cast<FastMethod*>(self);
    Py_CLEAR(m->fallback);
    // (program stays until dealloc: `p` points into it)
    return 0;
}

void fast_method_dealloc(PyObject* self) {
    PyObject_GC_UnTrack(self);
    auto* m = reinterpret_cast<FastMethod*>(self);
    Py_CLEAR(m->fallback);
    Py_CLEAR(m->program);
    PyObject_GC_Del(self);
}

// The fallback's docstring (through a functools.partial, its function's).
PyObject* fast_method_get_doc(PyObject* self, void*) {
    PyObject* fallback = reinterpret_cast<FastMethod*>(self)->fallback;
    if (!fallback) Py_RETURN_NONE;
    PyObject* fn = PyObject_GetAttrString(fallback, "func");
    if (!fn) {
        PyErr_Clear();
        fn = Py_NewRef(fallback);
    }
    PyObject* doc = PyObject_GetAttrString(fn, "__doc__");
    Py_DECREF(fn);
    return doc;
}

PyGetSetDef fast_method_getset[] = {
    {"__doc__", fast_method_get_doc, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject FastMethodType = [] {
    PyTypeObject t{};
    Py_SET_REFCNT(reinterpret_cast<PyObject*>(&t), 1);  // what PyVarObject_HEAD_INIT does
    t.tp_name = "tapegrad._core.FastMethod";
    t.tp_basicsize = sizeof(FastMethod);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
    t.tp_vectorcall_offset = offsetof(FastMethod, vectorcall);
    t.tp_call = PyVectorcall_Call;
    t.tp_traverse = fast_method_traverse;
    t.tp_clear = fast_method_clear;
    t.tp_dealloc = fast_method_dealloc;
    t.tp_getset = fast_method_getset;
    t.tp_doc = "A Function method's C fast path, with its Python method as fallback.";
    return t;
}();

py::object fast_method(py::object program, int mode, py::object fallback) {
    if (mode < -1 || mode > 2) throw py::value_error("fast_method: mode must be -1, 0, 1 or 2");
    const Program* p = &program.cast<const Program&>();
    if (!PyCallable_Check(fallback.ptr()))
        throw py::type_error("fast_method: fallback must be callable");
    auto* m = PyObject_GC_New(FastMethod, &FastMethodType);
    if (!m) throw py::error_already_set();
    m->vectorcall = fast_method_call;
    m->program = program.release().ptr();
    m->p = p;
    m->fallback = fallback.release().ptr();
    m->mode = mode;
    PyObject_GC_Track(reinterpret_cast<PyObject*>(m));
    return py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(m));
}

}  // namespace

void register_function(py::module_& m) {
    if (PyType_Ready(&FastMethodType) < 0) throw py::error_already_set();
    m.def("fast_method", &fast_method, py::arg("program"), py::arg("mode"), py::arg("fallback"),
          "A callable running Program.call's fast path (mode 0: values, 1: (value, grads), 2: "
          "grads, -1: none) for calls without keywords, and fallback(*args, **kwargs) "
          "otherwise (Function.grad and value_and_grad, as instance attributes).");
    py::class_<Recording>(m, "Recording",
                          "Records comparisons of Vars on this thread as guards (tracing).")
        .def(py::init<>())
        .def("start", &Recording::start)
        .def("stop", &Recording::stop)
        .def("__len__", &Recording::size);

    py::class_<HessianPlan>(m, "HessianPlan",
                            "A program's Hessian plan over seed groups (Program.hessian_plan).")
        .def_property_readonly(
            "recorded_ops",
            [](HessianPlan& H) {
                std::lock_guard<std::mutex> kept(H.busy);
                return H.recorded ? H.recorded->n_ops : std::size_t(0);
            },
            "Op slots of the recorded Hessian program (Program.record_hessian), 0 if none.");

    py::class_<Program, std::shared_ptr<Program>>(
        m, "Program", "A frozen, optimised tape: replay it at new inputs.")
        .def_property_readonly("n_inputs", [](const Program& P) { return P.p->n_inputs; })
        .def_property_readonly("n_outputs", [](const Program& P) { return P.p->outputs_.size(); })
        .def_property_readonly("n_nodes", [](const Program& P) { return P.p->n_slots(); })
        .def_property_readonly("n_ops",
                               [](const Program& P) { return P.p->n_slots() - P.p->first_op(); })
        .def("histogram", [](const Program& P) { return P.p->histogram(); })
        .def("set_signature",
             [](Program& P, std::vector<std::vector<py_ssize>> args, std::vector<py_ssize> out) {
                 // The fast path trusts these, so they must match the program exactly.
                 auto count = [](const std::vector<py_ssize>& shape) {
                     std::size_t n = 1;
                     for (py_ssize d : shape) {
                         if (d < 0) throw py::value_error("signature: negative dimension");
                         n *= std::size_t(d);
                     }
                     return n;
                 };
                 std::size_t n_in = 0;
                 for (const auto& a : args) n_in += count(a);
                 if (n_in != P.p->n_inputs || count(out) != P.p->outputs_.size())
                     throw py::value_error(
                         "signature does not match the program (" + std::to_string(n_in) +
                         " inputs, " + std::to_string(count(out)) + " outputs; the program has " +
                         std::to_string(P.p->n_inputs) + " and " +
                         std::to_string(P.p->outputs_.size()) + ")");
                 P.arg_shapes = std::move(args);
                 P.out_shape = std::move(out);
             })
        .def(
            "call",
            [](const Program& P, const py::tuple& args, int mode, int threads,
               const py::object& out) {
                if (mode < 0) return py::object(py::none());  // declined by the caller
                if (mode > 1) throw py::value_error("call: mode must be 0 or 1");
                py::object r = out.is_none() ? call_point(P, args, mode) : py::object(py::none());
                return r.is_none() ? call_batch(P, args, mode, threads, out) : r;
            },
            py::arg("args"), py::arg("mode"), py::arg("threads"), py::arg("out") = py::none(),
            "F(*args) (mode 0) or (value, grads) (mode 1) without leaving C++: at one point of "
            "the traced shapes, or over a batch of float64 arrays whose batch dimensions are "
            "the batch's or all 1 (threads 0: every core); out: the arrays to fill (as "
            "Function's out=). None when the general path must run (function.py).")
        .def("guard_location",
             [](const Program& P, std::size_t k) { return P.p->guards_.at(k).where; })
        .def_property_readonly("n_guards", [](const Program& P) { return P.p->guards_.size(); })
        .def("point", &point, py::arg("x"), py::arg("mode") = 0)
        .def("point_tangent", &point_tangent, py::arg("x"), py::arg("tangent"), py::arg("hvp"))
        .def("point_sweeps", &point_sweeps, py::arg("x"), py::arg("tangents") = py::none(),
             py::arg("seeds") = py::none())
        .def(
            "hessian_plan",
            [](const Program& P, const std::vector<std::vector<slot>>& groups,
               const c_int64s& inputs, const c_int64s& columns) {
                for (const auto& g : groups)
                    for (slot i : g)
                        if (i >= P.p->n_inputs)
                            throw py::value_error("hessian_plan: input " + std::to_string(i) +
                                                  " out of range");
                if (groups.empty()) throw py::value_error("hessian_plan: no seed groups");
                if (inputs.ndim() != 1 || columns.ndim() != 1 ||
                    inputs.shape(0) != columns.shape(0))
                    throw py::value_error(
                        "hessian_plan: inputs and columns must be 1-D of one length");
                auto H = std::make_unique<HessianPlan>();
                H->p = P.p;
                H->entries.resize(std::size_t(inputs.shape(0)));
                for (std::size_t k = 0; k < H->entries.size(); ++k) {
                    const std::int64_t i = inputs.data()[k], c = columns.data()[k];
                    if (i < 0 || std::uint64_t(i) >= P.p->n_inputs || c < 0 ||
                        std::uint64_t(c) >= groups.size())
                        throw py::value_error("hessian_plan: entry " + std::to_string(k) +
                                              " out of range");
                    H->entries[k] = {slot(i), slot(c)};
                }
                H->plan = plan_hessian(P.p->view(), groups);
                return H;
            },
            py::arg("groups"), py::arg("inputs") = c_int64s(0), py::arg("columns") = c_int64s(0),
            "A Hessian plan whose column c seeds every input of groups[c] at once; its "
            "entries (inputs[k], columns[k]) are what hessian_entries and record_hessian give.")
        .def("hessian_columns", &hessian_columns, py::arg("x"), py::arg("plan"))
        .def("record_hessian", &record_hessian_entries, py::arg("x"), py::arg("plan"),
             py::arg("max_ops"),
             "Record the plan's entries of the compressed Hessian as a program, its rules' "
             "branches taken at x; False if it would pass max_ops ops.")
        .def("hessian_entries", &hessian_entries, py::arg("x"), py::arg("plan"),
             "The plan's entries of the compressed Hessian at x, by the recorded program where "
             "it holds, else by the plan's sweeps; and the failing guard or -1.")
        .def("batch", &batch, py::arg("args"), py::arg("out"), py::arg("grads") = py::none(),
             py::arg("threads") = 1, py::arg("seed_output") = 0, py::arg("seeds") = py::none(),
             py::arg("tangents") = py::none(), py::arg("tangent_out") = py::none(),
             py::arg("hvp") = py::none(), py::arg("hessian") = py::none(),
             "Replay at n points (rows of the 2-D float64 arrays in args; one row broadcasts). "
             "Values go to out (n, n_outputs); with grads, the gradient of output "
             "seed_output (or of sum_k seeds[k] * output k) per input; with tangents, "
             "output tangents to tangent_out and the gradient's tangent to hvp; with hessian, "
             "the Hessian of output seed_output (n, n_inputs, n_inputs). Returns "
             "the indices of points whose guards failed.")
        .def(py::pickle(
            [](const Program& P) { return program_state(*P.p); },
            [](py::tuple st) {
                return std::make_shared<Program>(Program{
                    std::make_shared<const program>(program_from_state(st)), {}, {}, {}, {}});
            }));

    m.def(
        "compile",
        [](py::list inputs, py::list outputs, const Recording& rec, bool cse) {
            shared_tape* t = nullptr;
            auto index_of = [&](py::handle h, const char* what) {
                VarObject* v = var_arg(h, what);
                if (t && v->tape != t)
                    throw py::value_error(
                        "trace: inputs and outputs are on different tapes "
                        "(was a Var from another thread used?)");
                t = v->tape;
                return v->idx;
            };
            std::vector<tape::index> in, out;
            for (py::handle h : inputs) in.push_back(index_of(h, "an input"));
            for (py::handle h : outputs) out.push_back(index_of(h, "an output"));
            if (!t) throw py::value_error("trace: a function needs an input or an output");
            // Guard operands name Vars the recorder holds; their nodes' indices now.
            std::vector<recorded_guard> guards = rec.get().guards;
            for (auto& g : guards)
                for (operand* o : {&g.lhs, &g.rhs})
                    if (o->is_node) {
                        VarObject* v = rec.get().held.at(o->node);
                        if (v->tape != t) {  // compared, but not on the traced tape
                            *o = {false, 0, v->tape->nodes.val(v->idx)};
                            continue;
                        }
                        o->node = v->idx;
                    }
            return std::make_shared<Program>(
                Program{std::make_shared<const program>(compile(t->nodes, in, out, guards, cse)),
                        {},
                        {},
                        {},
                        {}});
        },
        py::arg("inputs"), py::arg("outputs"), py::arg("recording"), py::arg("cse") = true,
        "Compile the graph from `inputs` (placeholder leaves) to `outputs` into a Program.");

    m.def(
        "lanes", [] { return std::string(lanes::get().name); },
        "The instruction set batched replay uses here.");
    m.def(
        "vector_math",
        [] {
            py::dict d;
            for (const auto& f : vector_math::functions()) d[f.name] = f.from_libmvec;
            return d;
        },
        "Per libm function batched replay may vectorise: whether it comes from glibc's "
        "libmvec here (looked up at import; TAPEGRAD_LIBMVEC=0 keeps scalar libm).");
}

}  // namespace tapegrad::bind
