// `tapegrad.Var` as a plain CPython extension type with number slots.
//
// Why not a pybind11 class: every arithmetic op creates a Var, and measured here a
// pybind11 instance costs 130-250 ns (holder allocation, instance registry, overload
// dispatch), against ~30 ns for a static type whose nb_* slots call the tape directly.
// Everything that is not per-op hot stays in pybind11 (module.cpp). A Var holds no
// Python references, so it is not tracked by the cyclic GC.
#include "bindings/var_internal.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tapegrad::bind {

PyObject* new_var(shared_tape* t, index i);

namespace {

// ---------------------------------------------------------------- helpers

}  // namespace

namespace {

// A new object of `type` (Var, or Condition of `size` bytes) for node i.
inline PyObject* new_node_object(shared_tape* t, index i, PyTypeObject* type, std::size_t size) {
    auto* v = static_cast<VarObject*>(PyObject_Malloc(size));
    if (v) {
        try {
            t->vars.push_back(v);
        } catch (const std::bad_alloc&) {
            PyObject_Free(v);
            v = nullptr;
        }
    }
    if (!v) {
        t->nodes.trim();
        return PyErr_NoMemory();
    }
    PyObject_Init(reinterpret_cast<PyObject*>(v), type);
    v->tape = t;
    v->idx = i;
    v->pos = std::uint32_t(t->vars.size() - 1);
    ++t->refs;
    t->nodes.retain(i);
    return reinterpret_cast<PyObject*>(v);
}

}  // namespace

PyObject* new_var(shared_tape* t, index i) {
    return new_node_object(t, i, &VarType, sizeof(VarObject));
}

namespace {

// Translate a C++ exception from the tape into a Python one; returns nullptr.
PyObject* set_error_from_exception() {
    try {
        throw;
    } catch (const std::length_error& e) {
        PyErr_SetString(PyExc_OverflowError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

PyObject* numbers_real = nullptr;  // numbers.Real: numpy floats and ints, Fraction, ...

// The slow path for operands that are not float or int (numpy scalars, mostly).
bool is_real_number(PyObject* o) {
    if (!numbers_real) {
        PyObject* numbers = PyImport_ImportModule("numbers");
        if (!numbers) {
            PyErr_Clear();
            return false;
        }
        numbers_real = PyObject_GetAttrString(numbers, "Real");
        Py_DECREF(numbers);
        if (!numbers_real) {
            PyErr_Clear();
            return false;
        }
    }
    const int r = PyObject_IsInstance(o, numbers_real);
    if (r < 0) PyErr_Clear();
    return r > 0;
}

// 1: *out holds the number; 0: not a number we take; -1: a Python error is set.
int as_double(PyObject* o, double* out) {
    if (PyFloat_Check(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 1;
    }
    if (PyLong_Check(o) || (!as_var(o) && is_real_number(o))) {
        *out = PyFloat_AsDouble(o);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 1;
    }
    return 0;
}

PyObject* different_tapes() {
    PyErr_SetString(PyExc_ValueError,
                    "cannot combine Vars from different tapes: each thread records on its "
                    "own tape, so build each graph within one thread (pass plain values, "
                    "not Vars, between threads)");
    return nullptr;
}

PyObject* not_a_number(const char* where, PyObject* o) {
    PyErr_Format(PyExc_TypeError, "%s: expected a Var or a real number, got %.100s", where,
                 Py_TYPE(o)->tp_name);
    return nullptr;
}

// ---------------------------------------------------------------- op application

// tg.no_grad(): per thread, as in PyTorch.
thread_local bool grad_enabled = true;
thread_local recorder* innermost_recorder = nullptr;  // see "guards while tracing"
thread_local bool anomaly_on = false;                 // see "tg.detect_anomaly()"

// Nodes one op application may append: 1, or 2 when it records and then detaches.
index room_for_op() { return grad_enabled ? 1 : 2; }

// The node for K over a, b, as the grad mode asks (room_for_op() reserved beforehand):
// recorded (grad on); with grad off, a constant with its value, or, while tracing,
// recorded and then detached, so replays recompute the value but no gradient flows (in
// anomaly mode too, so the check sees the op).
template <class K>
index push_op(tape& n, index a, index b) {
    if (grad_enabled) return n.push<K>(a, b);
    if (!innermost_recorder && !anomaly_on)
        return n.push_leaf(op::constant, K::forward(n.val(a), n.val(b)));
    return n.push<kernel::detach>(n.push<K>(a, b));
}

// The Var for node i, or nullptr with AnomalyError set if anomaly mode is on and the
// op made a NaN or an infinity. The Var is made first either way: every new node must be
// taken by a Var (or trimmed), or its arguments' reference counts would never fall.
PyObject* checked_var(shared_tape* t, index i) {
    PyObject* v = new_var(t, i);
    if (!v || !anomaly_on || std::isfinite(t->nodes.val(i)) || is_leaf(t->nodes.op_at(i))) return v;
    // The Var of node i keeps it (and a detach node's argument) alive while reporting.
    report_anomaly("forward", t, t->nodes.op_at(i) == op::detach ? t->nodes.arg0(i) : i, Py_None);
    Py_DECREF(v);
    return nullptr;
}

// ---------------------------------------------------------------- conditions
//
// While tracing, `x > y` (any of < <= > >= == != on a Var) returns a Condition: a Var of
// the comparison node (lt, le, gt, ge, eq, ne), so where(), if_true, maximum, arithmetic,
// ... take it as a node and a replay recomputes it at any input, with no guard. Python
// asking for its truth value (if, while, and/or, bool(), numpy's object loops, index())
// records then the guard the comparison itself recorded before Conditions existed, and
// gets the same bool; `if x > 0:` traces exactly as it always did. `&`, `|` and `~` on a
// Condition record logical_and, logical_or and logical_not nodes, Conditions again, whose
// truth value is guarded as bool(v) of a Var is.
//
// Why a subtype of Var and not a flag on every Var: Var's slots, its layout and the eager
// comparison stay exactly as they were (outside tracing `x > y` is still a Python bool,
// and no slot tests a flag), while what only a Condition does (&, |, ~, the comparison's
// guard as truth value) lives in its own type's slots, so `~v` on a plain Var stays a
// TypeError and type(c) says what c is. Every op takes a Condition: as_var accepts both
// types. Python code still cannot subclass Var (no Py_TPFLAGS_BASETYPE); this C type does,
// and cannot be instantiated from Python (Py_TPFLAGS_DISALLOW_INSTANTIATION).
//
// Memory safety: like every Var, a Condition retains its node, and the node retains its
// arguments. It also holds new references to the Vars it compared (for the guard; they
// follow the tape when it compacts), and since a Var holds no Python references, no cycle
// can form: the type needs no GC tracking, as Var needs none.
struct ConditionObject {
    VarObject var;
    PyObject* lhs;  // the compared operands: a Var (a new reference), or nullptr for a number
    PyObject* rhs;
    double x, y;    // their values when compared
    cmp c;
    bool compared;  // false for &, |, ~ results (and tg.* ops on Conditions are plain Vars)
};

// A Condition for node i that is not (yet) a comparison: its truth value is bool(v)'s.
PyObject* new_condition(shared_tape* t, index i) {
    PyObject* o = new_node_object(t, i, &ConditionType, sizeof(ConditionObject));
    if (o) {
        auto* c = reinterpret_cast<ConditionObject*>(o);
        c->lhs = c->rhs = nullptr;
        c->x = c->y = 0.0;
        c->c = cmp::ne;
        c->compared = false;
    }
    return o;
}

// Every append reserves first and reads operand indices after: reserving may compact
// the tape, which moves nodes (and updates the Vars pointing at them). Make turns the new
// node into a Python object: a Var (checked_var), or a Condition (new_condition).
template <class K, PyObject* (*Make)(shared_tape*, index) = checked_var>
PyObject* apply_unary(VarObject* v) {
    shared_tape* t = v->tape;
    index i;
    try {
        t->nodes.reserve_more(room_for_op());
        i = push_op<K>(t->nodes, v->idx, v->idx);
    } catch (...) {
        return set_error_from_exception();
    }
    return Make(t, i);
}

// K applied to a and b, at least one a Var; NotImplemented for an operand we don't take.
template <class K, PyObject* (*Make)(shared_tape*, index) = checked_var>
PyObject* apply_binary(PyObject* a, PyObject* b) {
    VarObject* va = as_var(a);
    VarObject* vb = as_var(b);
    shared_tape* t;
    index i;
    try {
        if (va && vb) {
            if (va->tape != vb->tape) return different_tapes();
            t = va->tape;
            t->nodes.reserve_more(room_for_op());
            i = push_op<K>(t->nodes, va->idx, vb->idx);
        } else {
            double c;
            const int r = as_double(va ? b : a, &c);
            if (r <= 0) return r < 0 ? nullptr : Py_NewRef(Py_NotImplemented);
            t = (va ? va : vb)->tape;
            if constexpr (std::is_same_v<K, kernel::pow>) {
                if (va && c == 2.0) {  // x ** 2: the square op (see ops.def)
                    t->nodes.reserve_more(room_for_op());
                    i = push_op<kernel::square>(t->nodes, va->idx, va->idx);
                    return Make(t, i);
                }
            }
            if (!grad_enabled && !innermost_recorder && !anomaly_on) {
                // no_grad: the result is a constant, and the number never becomes a node
                // (one no Var would take: the tape's garbage count would miss it)
                t->nodes.reserve_more(1);
                const double v = (va ? va : vb)->tape->nodes.val((va ? va : vb)->idx);
                i = t->nodes.push_leaf(op::constant, va ? K::forward(v, c) : K::forward(c, v));
                return Make(t, i);
            }
            t->nodes.reserve_more(1 + room_for_op());
            const index k = t->nodes.push_leaf(op::constant, c);
            i = va ? push_op<K>(t->nodes, va->idx, k) : push_op<K>(t->nodes, k, vb->idx);
        }
    } catch (...) {
        return set_error_from_exception();
    }
    return Make(t, i);
}

// x.sin() / x.maximum(y): same as the slots, but a bad operand is a TypeError.
template <class K>
PyObject* op_method(PyObject* self, PyObject* other) {
    if constexpr (K::arity == 1) {
        return apply_unary<K>(reinterpret_cast<VarObject*>(self));
    } else {
        PyObject* r = apply_binary<K>(self, other);
        if (r == Py_NotImplemented) {
            Py_DECREF(r);
            return not_a_number(K::label, other);
        }
        return r;
    }
}

// tapegrad.sin(x) / tapegrad.maximum(x, y): Vars give a node, plain numbers a float.
template <class K>
PyObject* op_function(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != K::arity) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d argument%s (%zd given)", K::label, K::arity,
                     K::arity == 1 ? "" : "s", nargs);
        return nullptr;
    }
    bool any_var = false;
    double v[2] = {0.0, 0.0};
    for (Py_ssize_t k = 0; k < nargs; ++k) {
        if (as_var(args[k])) {
            any_var = true;
            continue;
        }
        const int r = as_double(args[k], &v[k]);
        if (r < 0) return nullptr;
        if (r == 0) return not_a_number(K::label, args[k]);
    }
    if (!any_var) return PyFloat_FromDouble(K::forward(v[0], K::arity == 2 ? v[1] : v[0]));
    if constexpr (K::arity == 1)
        return apply_unary<K>(reinterpret_cast<VarObject*>(args[0]));
    else
        return apply_binary<K>(args[0], args[1]);
}

double value_of(PyObject* self) {
    auto* v = reinterpret_cast<VarObject*>(self);
    return v->tape->nodes.val(v->idx);
}

// ---------------------------------------------------------------- number slots

PyObject* var_power(PyObject* a, PyObject* b, PyObject* mod) {
    if (mod != Py_None) {
        PyErr_SetString(PyExc_TypeError, "pow() with a modulus is not supported for Var");
        return nullptr;
    }
    return apply_binary<kernel::pow>(a, b);
}

PyObject* var_neg(PyObject* a) { return apply_unary<kernel::neg>(as_var(a)); }
PyObject* var_abs(PyObject* a) { return apply_unary<kernel::abs>(as_var(a)); }
PyObject* var_pos(PyObject* a) { return Py_NewRef(a); }

PyObject* var_float(PyObject* self) {
    if (innermost_recorder) record_escape(self, value_of(self));
    return PyFloat_FromDouble(value_of(self));
}
PyObject* var_int(PyObject* self) {
    if (innermost_recorder) record_escape(self, value_of(self));
    return PyLong_FromDouble(value_of(self));
}
int var_bool(PyObject* self) {
    const double x = value_of(self);
    if (innermost_recorder) record_guard(self, x, Py_None, 0.0, cmp::ne, x != 0.0);
    return x != 0.0;
}

// divmod(a, b) = (a // b, a % b), as for floats.
PyObject* var_divmod(PyObject* a, PyObject* b) {
    PyObject* q = apply_binary<kernel::floor_divide>(a, b);
    if (!q || q == Py_NotImplemented) return q;
    PyObject* r = apply_binary<kernel::remainder>(a, b);
    if (!r) {
        Py_DECREF(q);
        return nullptr;
    }
    return Py_BuildValue("(NN)", q, r);
}

PyNumberMethods var_as_number = [] {
    PyNumberMethods n{};
    n.nb_add = apply_binary<kernel::add>;
    n.nb_subtract = apply_binary<kernel::sub>;
    n.nb_multiply = apply_binary<kernel::mul>;
    n.nb_true_divide = apply_binary<kernel::div>;
    n.nb_floor_divide = apply_binary<kernel::floor_divide>;
    n.nb_remainder = apply_binary<kernel::remainder>;
    n.nb_divmod = var_divmod;
    n.nb_power = var_power;
    n.nb_negative = var_neg;
    n.nb_positive = var_pos;
    n.nb_absolute = var_abs;
    n.nb_bool = var_bool;
    n.nb_float = var_float;
    n.nb_int = var_int;
    return n;
}();

// A Condition's truth value: a comparison's guard, or bool(v)'s for &, |, ~ results.
int condition_bool(PyObject* self) {
    auto* c = reinterpret_cast<ConditionObject*>(self);
    if (!c->compared) return var_bool(self);
    const bool outcome = compare(c->c, c->x, c->y);
    if (innermost_recorder)
        record_guard(c->lhs ? c->lhs : Py_None, c->x, c->rhs ? c->rhs : Py_None, c->y, c->c,
                     outcome);
    return outcome;
}

// operator.index(c), so a Condition indexes as a bool does (`names[x > 0]`): its truth value.
PyObject* condition_index(PyObject* self) {
    const int r = condition_bool(self);
    return r < 0 ? nullptr : PyLong_FromLong(r);
}

PyObject* condition_invert(PyObject* a) {
    return apply_unary<kernel::logical_not, new_condition>(as_var(a));
}

// Only the slots a Condition adds; PyType_Ready copies the rest from Var's.
PyNumberMethods condition_as_number = [] {
    PyNumberMethods n{};
    n.nb_bool = condition_bool;
    n.nb_index = condition_index;
    n.nb_and = apply_binary<kernel::logical_and, new_condition>;
    n.nb_or = apply_binary<kernel::logical_or, new_condition>;
    n.nb_invert = condition_invert;
    return n;
}();

// ---------------------------------------------------------------- object protocol

void var_dealloc(PyObject* self) {
    auto* v = reinterpret_cast<VarObject*>(self);
    shared_tape* t = v->tape;
    drop_graph_grad(v);  // first: it may free Vars of this tape, while v is still listed
    VarObject* last = t->vars.back();  // swap-remove from the tape's list
    t->vars[v->pos] = last;
    last->pos = v->pos;
    t->vars.pop_back();
    if (t->vars.capacity() > 4096 && t->vars.size() < t->vars.capacity() / 4)
        t->vars.shrink_to_fit();  // after many Vars died at once, as the tape's memory
    t->nodes.release(v->idx);
    unref(t);
    PyObject_Free(self);
}

void condition_dealloc(PyObject* self) {
    auto* c = reinterpret_cast<ConditionObject*>(self);
    Py_CLEAR(c->lhs);
    Py_CLEAR(c->rhs);
    var_dealloc(self);
}

PyObject* var_new(PyTypeObject*, PyObject* args, PyObject* kwargs) {
    if ((kwargs && PyDict_GET_SIZE(kwargs)) || PyTuple_GET_SIZE(args) != 1) {
        PyErr_SetString(PyExc_TypeError, "Var() takes exactly one argument, the value");
        return nullptr;
    }
    PyObject* x = PyTuple_GET_ITEM(args, 0);
    double d;
    const int r = as_double(x, &d);
    if (r < 0) return nullptr;
    if (r == 0) {
        PyErr_Format(PyExc_TypeError, "Var() takes a real number, got %.100s%s",
                     Py_TYPE(x)->tp_name,
                     as_var(x) ? " (use v.detach() for a new leaf's value)" : "");
        return nullptr;
    }
    shared_tape& t = current_tape();
    index i;
    try {
        i = t.nodes.push_leaf(op::leaf, d);
    } catch (...) {
        return set_error_from_exception();
    }
    return new_var(&t, i);
}

PyObject* var_repr(PyObject* self) {
    auto* v = reinterpret_cast<VarObject*>(self);
    const char* type = Py_TYPE(self) == &ConditionType ? "Condition" : "Var";
    PyObject* val = PyFloat_FromDouble(v->tape->nodes.val(v->idx));
    if (!val) return nullptr;
    PyObject* r;
    if (PyObject* g = graph_grad(v)) {  // a recorded gradient: the Var's own repr
        r = PyUnicode_FromFormat("%s(value=%R, grad=%R)", type, val, g);
    } else {
        PyObject* grad = PyFloat_FromDouble(v->tape->nodes.adj(v->idx));
        r = grad ? PyUnicode_FromFormat("%s(value=%R, grad=%R)", type, val, grad) : nullptr;
        Py_XDECREF(grad);
    }
    Py_DECREF(val);
    return r;
}

// v.id is (tape serial << 64) | node uid: unique for the process's life, and stable when
// the tape compacts. hash(v) == hash(v.id), computed the way CPython hashes an int
// (n mod 2**61 - 1, and 2**64 = 8 mod 2**61 - 1).
Py_hash_t var_hash(PyObject* self) {
    auto* v = reinterpret_cast<VarObject*>(self);
    constexpr std::uint64_t P = (std::uint64_t(1) << 61) - 1;
    std::uint64_t uid;
    try {
        uid = v->tape->nodes.uid(v->idx);
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
    return static_cast<Py_hash_t>((v->tape->serial * 8 % P + uid % P) % P);
}

// A comparison while tracing (off the eager path: outside tracing var_richcompare never
// calls it). A Condition when every Var operand is on the traced tape; otherwise, as
// before Conditions, the guard now and a bool.
template <class K>
PyObject* condition_of(PyObject* a, PyObject* b) {
    return apply_binary<K, new_condition>(a, b);
}

[[gnu::noinline]] PyObject* compare_while_tracing(PyObject* a, double x, PyObject* b, double y,
                                                  int opid) {
    static constexpr cmp by_opid[] = {cmp::lt, cmp::le, cmp::eq, cmp::ne, cmp::gt, cmp::ge};
    static constexpr PyObject* (*node_by_opid[])(PyObject*, PyObject*) = {
        condition_of<kernel::lt>, condition_of<kernel::le>, condition_of<kernel::eq>,
        condition_of<kernel::ne>, condition_of<kernel::gt>, condition_of<kernel::ge>};
    const cmp c = by_opid[opid];
    const recorder* r = live_recorder();
    VarObject* va = as_var(a);
    VarObject* vb = as_var(b);
    if (!r || (va && va->tape != r->tape) || (vb && vb->tape != r->tape)) {
        record_guard(a, x, b, y, c, compare(c, x, y));
        Py_RETURN_RICHCOMPARE(x, y, opid);
    }
    PyObject* o = node_by_opid[opid](a, b);
    if (!o) return nullptr;
    auto* cond = reinterpret_cast<ConditionObject*>(o);
    cond->lhs = va ? Py_NewRef(a) : nullptr;
    cond->rhs = vb ? Py_NewRef(b) : nullptr;
    cond->x = x;
    cond->y = y;
    cond->c = c;
    cond->compared = true;
    return o;
}

PyObject* var_richcompare(PyObject* a, PyObject* b, int opid) {
    double x, y;
    for (auto [o, d] : {std::pair{a, &x}, std::pair{b, &y}}) {
        if (VarObject* v = as_var(o)) {
            *d = v->tape->nodes.val(v->idx);
            continue;
        }
        const int r = as_double(o, d);
        if (r <= 0) return r < 0 ? nullptr : Py_NewRef(Py_NotImplemented);
    }
    if (innermost_recorder) return compare_while_tracing(a, x, b, y, opid);
    Py_RETURN_RICHCOMPARE(x, y, opid);
}

// ---------------------------------------------------------------- properties

PyObject* get_value(PyObject* self, void*) { return var_float(self); }

int set_value(PyObject* self, PyObject* x, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    if (!x) {
        PyErr_SetString(PyExc_TypeError, "cannot delete a Var's value");
        return -1;
    }
    const op o = v->tape->nodes.op_at(v->idx);
    if (!is_leaf(o)) {
        PyErr_Format(PyExc_ValueError,
                     "cannot set .value of a non-leaf Var (op '%s'): only leaves made by "
                     "Var() or constants hold values of their own",
                     op_table[int(o)].name);
        return -1;
    }
    double d;
    const int r = as_double(x, &d);
    if (r < 0) return -1;
    if (r == 0) {
        not_a_number("Var.value", x);
        return -1;
    }
    v->tape->nodes.val(v->idx) = d;
    return 0;
}

PyObject* get_grad(PyObject* self, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    if (PyObject* g = graph_grad(v)) return Py_NewRef(g);
    return PyFloat_FromDouble(v->tape->nodes.adj(v->idx));
}

int set_grad(PyObject* self, PyObject* x, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    double d = 0.0;
    if (x && x != Py_None) {
        const int r = as_double(x, &d);
        if (r < 0) return -1;
        if (r == 0) {
            not_a_number("Var.grad", x);
            return -1;
        }
    }
    drop_graph_grad(v);
    v->tape->nodes.set_adj(v->idx, d);
    return 0;
}

PyObject* op_names[int(op::count_)];  // interned names, indexed by op code

PyObject* get_op(PyObject* self, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    return Py_NewRef(op_names[int(v->tape->nodes.op_at(v->idx))]);
}

PyObject* get_inputs(PyObject* self, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    tape& t = v->tape->nodes;
    const int arity = op_table[int(t.op_at(v->idx))].arity;
    PyObject* tup = PyTuple_New(arity);
    if (!tup) return nullptr;
    const index args[2] = {t.arg0(v->idx), t.arg1(v->idx)};
    for (int k = 0; k < arity; ++k) {
        PyObject* p = new_var(v->tape, args[k]);
        if (!p) {
            Py_DECREF(tup);
            return nullptr;
        }
        PyTuple_SET_ITEM(tup, k, p);
    }
    return tup;
}

PyObject* get_is_leaf(PyObject* self, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    return PyBool_FromLong(is_leaf(v->tape->nodes.op_at(v->idx)));
}

PyObject* get_id(PyObject* self, void*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    PyObject* hi = PyLong_FromUnsignedLongLong(v->tape->serial);
    PyObject* shift = PyLong_FromLong(64);
    std::uint64_t uid;
    try {
        uid = v->tape->nodes.uid(v->idx);
    } catch (...) {
        return set_error_from_exception();
    }
    PyObject* lo = PyLong_FromUnsignedLongLong(uid);
    PyObject* top = (hi && shift) ? PyNumber_Lshift(hi, shift) : nullptr;
    PyObject* id = (top && lo) ? PyNumber_Or(top, lo) : nullptr;
    Py_XDECREF(hi);
    Py_XDECREF(shift);
    Py_XDECREF(lo);
    Py_XDECREF(top);
    return id;
}

PyGetSetDef var_getset[] = {
    {"value", get_value, set_value, "The node's value (settable on leaves).", nullptr},
    {"data", get_value, set_value, "Alias of .value, for micrograd users.", nullptr},
    {"grad", get_grad, set_grad,
     "The node's adjoint after backward(); 0.0 before. After backward(create_graph=True), "
     "a Var with a graph, kept on this Var object (as PyTorch keeps .grad on the tensor) "
     "until zero_grad() or an assignment.",
     nullptr},
    {"op", get_op, nullptr, "The op name, or 'leaf' / 'const'.", nullptr},
    {"inputs", get_inputs, nullptr, "The Vars this node was computed from.", nullptr},
    {"is_leaf", get_is_leaf, nullptr, "True for 'leaf' and 'const' nodes.", nullptr},
    {"id", get_id, nullptr, "An int naming the node (same for every Var of one node).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

// ---------------------------------------------------------------- methods

// In anomaly mode: a non-finite root is reported before the sweep, and after it the
// first edge (in sweep order) where a finite adjoint gave a non-finite contribution.
// The adjoints are final when the sweep reaches a node, so rerunning each rule on them
// finds exactly the contributions the sweep added.
PyObject* m_backward(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    int create_graph = 0;
    if (nargs == 0 && nkw == 1 &&
        PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "create_graph") == 0) {
        if (!PyBool_Check(args[0])) {
            PyErr_SetString(PyExc_TypeError, "backward: create_graph must be True or False");
            return nullptr;
        }
        create_graph = args[0] == Py_True;
    } else if (nargs != 0 || nkw != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "Var.backward() takes one optional keyword argument, create_graph "
                        "(it seeds 1 and accumulates leaf grads; for other seeds or chosen "
                        "inputs use tg.autograd.grad(outputs, inputs, grad_outputs))");
        return nullptr;
    }
    auto* v = reinterpret_cast<VarObject*>(self);
    tape& n = v->tape->nodes;
    if (!create_graph && live_recorder())
        return refuse_inside_trace("backward()",
                                   "Differentiate the traced Function instead (F.grad, F.jacobian, "
                                   "F.hessian), use backward(create_graph=True) (recorded in the "
                                   "trace), or call backward() outside tg.trace.");
    if (anomaly_on && !std::isfinite(n.val(v->idx)))
        return report_anomaly("loss", v->tape, v->idx, Py_None);
    if (create_graph) return backward_with_graph(v);
    n.backward(v->idx, 1.0);
    if (!v->tape->graph_grads.empty() && !fold_float_grads(v->tape)) return nullptr;
    if (!anomaly_on) Py_RETURN_NONE;
    return check_backward_edges(v->tape, v->idx);
}

PyObject* m_item(PyObject* self, PyObject*) { return var_float(self); }

PyObject* m_zero_grad(PyObject* self, PyObject*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    drop_graph_grad(v);
    v->tape->nodes.set_adj(v->idx, 0.0);
    Py_RETURN_NONE;
}

// Jupyter's rich display: the graph as a picture, drawn by tapegrad.viz.
PyObject* call_viz(const char* name, PyObject* self, PyObject* args, PyObject* kwargs) {
    PyObject* viz = PyImport_ImportModule("tapegrad.viz");
    if (!viz) return nullptr;
    PyObject* fn = PyObject_GetAttrString(viz, name);
    Py_DECREF(viz);
    if (!fn) return nullptr;
    PyObject* full = nullptr;
    if (args) {
        const Py_ssize_t n = PyTuple_GET_SIZE(args);
        full = PyTuple_New(n + 1);
        if (full) {
            PyTuple_SET_ITEM(full, 0, Py_NewRef(self));
            for (Py_ssize_t k = 0; k < n; ++k)
                PyTuple_SET_ITEM(full, k + 1, Py_NewRef(PyTuple_GET_ITEM(args, k)));
        }
    } else {
        full = PyTuple_Pack(1, self);
    }
    PyObject* r = full ? PyObject_Call(fn, full, kwargs) : nullptr;
    Py_XDECREF(full);
    Py_DECREF(fn);
    return r;
}
PyObject* m_repr_svg(PyObject* self, PyObject*) {
    return call_viz("_repr_svg_", self, nullptr, nullptr);
}
PyObject* m_repr_mimebundle(PyObject* self, PyObject* args, PyObject* kwargs) {
    return call_viz("_repr_mimebundle_", self, args, kwargs);
}

// Eagerly a new constant; while tracing the detach op, so a replay recomputes the value.
PyObject* m_detach(PyObject* self, PyObject*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    index i;
    try {
        tape& n = v->tape->nodes;
        n.reserve_more(1);
        i = innermost_recorder ? n.push<kernel::detach>(v->idx)
                               : n.push_leaf(op::constant, n.val(v->idx));
    } catch (...) {
        return set_error_from_exception();
    }
    return new_var(v->tape, i);
}

// copy/deepcopy give an independent leaf (as PyTorch does for leaf tensors).
PyObject* m_copy(PyObject* self, PyObject*) {
    auto* v = reinterpret_cast<VarObject*>(self);
    tape& t = v->tape->nodes;
    const op o = t.op_at(v->idx);
    if (!is_leaf(o)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "only leaf Vars support copy/deepcopy; use .detach() or .value");
        return nullptr;
    }
    index i;
    try {
        t.reserve_more(1);
        i = t.push_leaf(o, t.val(v->idx));
    } catch (...) {
        return set_error_from_exception();
    }
    t.set_adj(i, t.adj(v->idx));
    PyObject* copy = new_var(v->tape, i);
    if (PyObject* g = graph_grad(v); g && copy) {  // the copy's .grad is the same Var
        try {
            v->tape->graph_grads.emplace(reinterpret_cast<VarObject*>(copy), g);
        } catch (...) {
            Py_DECREF(copy);
            return set_error_from_exception();
        }
        Py_INCREF(g);
    }
    return copy;
}

PyObject* m_reduce(PyObject*, PyObject*) {
    PyErr_SetString(PyExc_TypeError,
                    "cannot pickle a Var: it points into a tape in this process; pickle its "
                    ".value, or trace a tapegrad.Function");
    return nullptr;
}

PyObject* m_format(PyObject* self, PyObject* spec) {
    PyObject* f = var_float(self);
    if (!f) return nullptr;
    PyObject* r = PyObject_Format(f, spec);
    Py_DECREF(f);
    return r;
}

// round(v): the round op (half to even, as round() on floats). round(v, n): numpy's
// around, round(v * 10**n) / 10**n, three nodes (not Python's exact decimal rounding).
PyObject* m_round(PyObject* self, PyObject* args) {
    PyObject* nd = Py_None;
    if (!PyArg_UnpackTuple(args, "__round__", 0, 1, &nd)) return nullptr;
    if (nd == Py_None) return op_method<kernel::round>(self, nullptr);
    const long n = PyLong_AsLong(nd);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n < -308 || n > 308) {
        PyErr_SetString(PyExc_ValueError, "round(Var, ndigits): ndigits must be in [-308, 308]");
        return nullptr;
    }
    PyObject* scale = PyFloat_FromDouble(std::pow(10.0, double(n)));
    if (!scale) return nullptr;
    PyObject* up = apply_binary<kernel::mul>(self, scale);
    PyObject* rounded = up ? op_method<kernel::round>(up, nullptr) : nullptr;
    PyObject* r = rounded ? apply_binary<kernel::div>(rounded, scale) : nullptr;
    Py_XDECREF(up);
    Py_XDECREF(rounded);
    Py_DECREF(scale);
    return r;
}

// clip(x, lo, hi) = clamp_max(clamp_min(x, lo), hi); the module function takes numbers too.
PyObject* clip(PyObject* x, PyObject* lo, PyObject* hi) {
    PyObject* low = op_function<kernel::clamp_min>(nullptr, std::array{x, lo}.data(), 2);
    if (!low) return nullptr;
    PyObject* r = op_function<kernel::clamp_max>(nullptr, std::array{low, hi}.data(), 2);
    Py_DECREF(low);
    return r;
}

PyObject* m_clip(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "Var.clip() takes 2 arguments, lo and hi (%zd given)", nargs);
        return nullptr;
    }
    return clip(self, args[0], args[1]);
}

PyObject* f_clip(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "clip() takes 3 arguments, x, lo and hi (%zd given)", nargs);
        return nullptr;
    }
    return clip(args[0], args[1], args[2]);
}

PyMethodDef var_methods[] = {
    {"backward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(m_backward)),
     METH_FASTCALL | METH_KEYWORDS,
     "backward(create_graph=False): reverse-mode sweep from this node, seeded with 1; leaf "
     "grads accumulate. With create_graph=True the sweep is recorded (as "
     "tg.autograd.grad's), and each leaf Var it reaches gets a Var as .grad (the old grad "
     "plus the recorded gradient), which can be differentiated again; non-leaf grads are "
     "not touched."
     "\n\nExamples:\n    >>> import tapegrad as tg\n    >>> x = tg.Var(2.0)\n"
     "    >>> (x ** 3).backward(); x.grad\n    12.0\n"
     "    >>> (x ** 3).backward(); x.grad  # leaf grads accumulate\n    24.0\n"
     "    >>> x.zero_grad(); (x ** 3).backward(create_graph=True)\n"
     "    >>> g = x.grad; x.zero_grad(); g.backward(); x.grad  # d2/dx2 x**3 = 6x\n    12.0"},
    {"item", m_item, METH_NOARGS, "The value as a Python float."},
    {"zero_grad", m_zero_grad, METH_NOARGS, "Set this node's grad to 0."},
    {"detach", m_detach, METH_NOARGS,
     "This node's value with no gradient: a new constant (while tracing, a detach node "
     "that replays recompute)."},
    {"_repr_svg_", m_repr_svg, METH_NOARGS, "The graph below this node as SVG (tapegrad.viz)."},
    {"_repr_mimebundle_",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(m_repr_mimebundle)),
     METH_VARARGS | METH_KEYWORDS, "Jupyter's rich display of the graph (tapegrad.viz)."},
    {"__copy__", m_copy, METH_NOARGS, nullptr},
    {"__deepcopy__", m_copy, METH_O, nullptr},
    {"__reduce__", m_reduce, METH_NOARGS, nullptr},
    {"__format__", m_format, METH_O, nullptr},
#define TG_OP(name, arity, ...)                                            \
    {#name, op_method<kernel::name>, arity == 1 ? METH_NOARGS : METH_O,    \
     arity == 1 ? "Apply op '" #name "' to this Var (see tapegrad.ops())." \
                : "Apply op '" #name "' to this Var and another Var or number."},
#include "tapegrad/ops.def"
#undef TG_OP
#define TG_ALIAS(alias, name)                                                          \
    {#alias, op_method<kernel::name>, kernel::name::arity == 1 ? METH_NOARGS : METH_O, \
     "numpy's name for op '" #name "'."},
#include "tapegrad/op_aliases.def"
#undef TG_ALIAS
    // math.floor(v), math.ceil(v), math.trunc(v), round(v): the ops, so the result stays
    // in the graph (and np.floor, np.ceil, np.trunc on object arrays, which call these).
    {"__floor__", op_method<kernel::floor>, METH_NOARGS, nullptr},
    {"__ceil__", op_method<kernel::ceil>, METH_NOARGS, nullptr},
    {"__trunc__", op_method<kernel::trunc>, METH_NOARGS, nullptr},
    {"__round__", m_round, METH_VARARGS, nullptr},
    {"clip", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(m_clip)), METH_FASTCALL,
     "clip(lo, hi): clamp_max(clamp_min(x, lo), hi) (PyTorch's clamp)."},
    {nullptr, nullptr, 0, nullptr},
};

// local_grads(v, g=v.grad): what each input of v receives from v in a backward sweep.
PyObject* f_local_grads(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    VarObject* v = nargs >= 1 ? as_var(args[0]) : nullptr;
    if (!v || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "local_grads(v, g=None) takes a Var and an optional g");
        return nullptr;
    }
    if (live_recorder())
        return refuse_inside_trace("local_grads()", "Call it on a graph built outside tg.trace.");
    tape& t = v->tape->nodes;
    double g = t.adj(v->idx);
    if (nargs == 2 && args[1] != Py_None) {
        const int r = as_double(args[1], &g);
        if (r <= 0) return r < 0 ? nullptr : not_a_number("local_grads", args[1]);
    }
    const op o = t.op_at(v->idx);
    const index a = t.arg0(v->idx), b = t.arg1(v->idx);
    double d[2];
    local_grads(o, t.val(a), t.val(b), t.val(v->idx), g, d);
    const int arity = op_table[int(o)].arity;
    return arity == 0   ? PyTuple_New(0)
           : arity == 1 ? Py_BuildValue("(d)", d[0])
                        : Py_BuildValue("(dd)", d[0], d[1]);
}

// leaves(values): a list of new leaf Vars, one per float in `values` (a sequence of
// floats), made in one go: tracing makes one placeholder per input element.
PyObject* f_leaves(PyObject*, PyObject* values) {
    PyObject* seq = PySequence_Fast(values, "leaves() takes a sequence of floats");
    if (!seq) return nullptr;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject* list = PyList_New(n);
    shared_tape& t = current_tape();
    for (Py_ssize_t k = 0; list && k < n; ++k) {
        double d;
        const int r = as_double(PySequence_Fast_GET_ITEM(seq, k), &d);
        PyObject* v = nullptr;
        if (r > 0) {
            try {
                v = new_var(&t, t.nodes.push_leaf(op::leaf, d));
            } catch (...) {
                set_error_from_exception();
            }
        } else if (r == 0) {
            not_a_number("leaves", PySequence_Fast_GET_ITEM(seq, k));
        }
        if (!v)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, k, v);
    }
    Py_DECREF(seq);
    return list;
}

// Sets one of this thread's switches from a Python truth value; returns the previous one.
PyObject* set_switch(bool& flag, PyObject* on) {
    const int r = PyObject_IsTrue(on);
    if (r < 0) return nullptr;
    const bool before = flag;
    flag = r != 0;
    return PyBool_FromLong(before);
}

PyObject* f_set_grad_enabled(PyObject*, PyObject* on) { return set_switch(grad_enabled, on); }
PyObject* f_is_grad_enabled(PyObject*, PyObject*) { return PyBool_FromLong(grad_enabled); }
PyObject* f_set_anomaly_enabled(PyObject*, PyObject* on) { return set_switch(anomaly_on, on); }
PyObject* f_is_anomaly_enabled(PyObject*, PyObject*) { return PyBool_FromLong(anomaly_on); }

PyMethodDef module_functions[] = {
    {"set_grad_enabled", f_set_grad_enabled, METH_O,
     "set_grad_enabled(on) -> the previous setting: whether ops on Vars record gradients "
     "(this thread only; see tapegrad.no_grad)."},
    {"is_grad_enabled", f_is_grad_enabled, METH_NOARGS,
     "Whether ops on Vars record gradients on this thread."},
    {"set_anomaly_enabled", f_set_anomaly_enabled, METH_O,
     "set_anomaly_enabled(on) -> the previous setting (this thread; see "
     "tapegrad.detect_anomaly)."},
    {"is_anomaly_enabled", f_is_anomaly_enabled, METH_NOARGS,
     "Whether anomaly detection is on for this thread."},
    {"leaves", f_leaves, METH_O, "leaves(values): a list of new leaf Vars, one per value."},
    {"local_grads", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f_local_grads)),
     METH_FASTCALL,
     "local_grads(v, g=None): the adjoint each of v's inputs receives from v when v's adjoint "
     "is g (default: v.grad), by the op table's rules."
     "\n\nExamples:\n    >>> import tapegrad as tg\n    >>> x, y = tg.Var(3.0), tg.Var(4.0)\n"
     "    >>> tg.local_grads(x * y, 1.0)  # d/dx = g * y, d/dy = g * x\n    (4.0, 3.0)"},
// Each op function's docstring, with an example the docs tests run (unary, binary).
#define TG_OP_DOC1(name)                                                                \
    #name "(x): op '" #name                                                             \
          "' of the table: a new node for a Var, a float for a "                        \
          "number.\n\nExamples:\n    >>> import tapegrad as tg\n    >>> type(tg." #name \
          "(tg.Var(0.5))).__name__, type(tg." #name "(0.5)).__name__\n    ('Var', 'float')"
#define TG_OP_DOC2(name)                                                                           \
    #name "(x, y): op '" #name                                                                     \
          "' of the table: a new node if x or y is a Var, a "                                      \
          "float for numbers.\n\nExamples:\n    >>> import tapegrad as tg\n    >>> type(tg." #name \
          "(tg.Var(2.0), 3.0)).__name__, type(tg." #name                                           \
          "(2.0, 3.0)).__name__\n"                                                                 \
          "    ('Var', 'float')"
#define TG_OP(name, arity, ...)                                                                  \
    {#name,                                                                                      \
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(op_function<kernel::name>)), \
     METH_FASTCALL, arity == 1 ? TG_OP_DOC1(name) : TG_OP_DOC2(name)},
#include "tapegrad/ops.def"
#undef TG_OP
#undef TG_OP_DOC1
#undef TG_OP_DOC2
#define TG_ALIAS(alias, name)                                                                    \
    {#alias,                                                                                     \
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(op_function<kernel::name>)), \
     METH_FASTCALL,                                                                              \
     kernel::name::arity == 1 ? "numpy's name for op '" #name                                    \
                                "'.\n\nExamples:\n    >>> import tapegrad as tg\n    "           \
                                ">>> tg." #alias "(tg.Var(0.5)).op\n    '" #name "'"             \
                              : "numpy's name for op '" #name                                    \
                                "'.\n\nExamples:\n    >>> import tapegrad as tg\n    "           \
                                ">>> tg." #alias "(tg.Var(0.5), 2.0).op\n    '" #name "'"},
#include "tapegrad/op_aliases.def"
#undef TG_ALIAS
    {"clip", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f_clip)), METH_FASTCALL,
     "clip(x, lo, hi): clamp_max(clamp_min(x, lo), hi), PyTorch's clamp: x gets the gradient "
     "where lo <= x <= hi, a bound where it wins; a float for numbers."
     "\n\nExamples:\n    >>> import tapegrad as tg\n    >>> x = tg.Var(5.0)\n"
     "    >>> y = tg.clip(x, 0.0, 1.0); y.backward(); y.value, x.grad\n    (1.0, 0.0)\n"
     "    >>> tg.clip(-5.0, 0.0, 1.0)\n    0.0"},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

recorder*& active_recorder() { return innermost_recorder; }
bool anomaly_enabled() { return anomaly_on; }

PyTypeObject VarType = [] {
    PyTypeObject t{};
    Py_SET_REFCNT(reinterpret_cast<PyObject*>(&t), 1);  // what PyVarObject_HEAD_INIT does
    t.tp_name = "tapegrad.Var";
    t.tp_basicsize = sizeof(VarObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT;  // final, and not GC-tracked
    t.tp_doc =
        "A scalar node in a computational graph.\n\n"
        "Var(x) makes a leaf; arithmetic on Vars records new nodes on the tape.\n\n"
        "Examples:\n    >>> import tapegrad as tg\n    >>> x, y = tg.Var(3.0), tg.Var(4.0)\n"
        "    >>> f = x * x + x * y\n    >>> f.backward()\n    >>> f.value, x.grad, y.grad\n"
        "    (21.0, 10.0, 3.0)\n    >>> f.op, [v.op for v in f.inputs]\n"
        "    ('add', ['mul', 'mul'])";
    t.tp_dealloc = var_dealloc;
    t.tp_new = var_new;
    t.tp_repr = var_repr;
    t.tp_hash = var_hash;
    t.tp_richcompare = var_richcompare;
    t.tp_as_number = &var_as_number;
    t.tp_getset = var_getset;
    t.tp_methods = var_methods;
    return t;
}();

PyTypeObject ConditionType = [] {
    PyTypeObject t{};
    Py_SET_REFCNT(reinterpret_cast<PyObject*>(&t), 1);
    t.tp_name = "tapegrad.Condition";
    t.tp_basicsize = sizeof(ConditionObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION;  // final, no GC
    t.tp_doc =
        "A comparison of Vars recorded while tracing (x > 0 inside tg.trace): a Var of the "
        "comparison node (1.0 or 0.0), which tg.where and every op take as a node.\n\n"
        "Its truth value (if, while, and/or, bool()) is guarded as the comparison always "
        "was. a & b, a | b and ~a record logical_and, logical_or and logical_not.\n\n"
        "Examples:\n    >>> import tapegrad as tg\n"
        "    >>> F = tg.trace(lambda x: tg.where(x > 0, x, -x), 1.0)  # no guard recorded\n"
        "    >>> float(F(-2.0)), float(F.grad(-2.0))\n    (2.0, -1.0)";
    t.tp_base = &VarType;
    t.tp_dealloc = condition_dealloc;
    t.tp_as_number = &condition_as_number;
    return t;
}();

bool register_var(PyObject* module) {
    for (int o = 0; o < int(op::count_); ++o) {
        op_names[o] = PyUnicode_InternFromString(op_table[o].name);
        if (!op_names[o]) return false;
    }
    if (PyType_Ready(&VarType) < 0) return false;
    Py_INCREF(&VarType);
    if (PyModule_AddObject(module, "Var", reinterpret_cast<PyObject*>(&VarType)) < 0) {
        Py_DECREF(&VarType);
        return false;
    }
    if (PyType_Ready(&ConditionType) < 0) return false;
    Py_INCREF(&ConditionType);
    if (PyModule_AddObject(module, "Condition", reinterpret_cast<PyObject*>(&ConditionType)) < 0) {
        Py_DECREF(&ConditionType);
        return false;
    }
    return PyModule_AddFunctions(module, module_functions) == 0 &&
           PyModule_AddFunctions(module, tracing_functions) == 0 &&
           PyModule_AddFunctions(module, anomaly_functions) == 0;
}

}  // namespace tapegrad::bind
