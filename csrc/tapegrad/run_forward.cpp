// forward_by_runs(): one point's forward values with each run evaluated block op by
// block op, as a loop over the run's iterations. The recorded Hessian's replay runs this
// way (forward_by_runs_finite), checking the values finite as the loops store them.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tapegrad/program.hpp"
#include "tapegrad/structure.hpp"

namespace tapegrad {

namespace {

double eval(op o, double x, double y) {
    switch (o) {
#define TG_OP(name, ...) \
    case op::name: return kernel::name::forward(x, y);
#include "tapegrad/ops.def"
#undef TG_OP
        default: return 0.0;
    }
}

// Bit 63 set if v is inf or NaN: its exponent bits are all ones, and adding 1 to that
// exponent field then carries into the sign bit. Integer operations only, so loops that
// OR it up vectorize (a floating-point test keeps its order, one value at a time).
inline std::uint64_t non_finite_bit(double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return (bits & 0x7ff0000000000000ull) + (1ull << 52);
}

// out[k * P] = f(xa[k * sa], xb[k * sb]) for k in [0, K), and bit 63 of the return
// value set if any of them is not finite (computed in registers as the values are
// stored, so checking them costs no second pass): no address is both written and read
// (same-iteration and carried operands are other block ops; strided and invariant ones
// lie before the run), hence the restrict.
template <class F>
std::uint64_t loop(F f, double* __restrict out, std::ptrdiff_t P, const double* __restrict xa,
                   std::ptrdiff_t sa, const double* __restrict xb, std::ptrdiff_t sb, slot K) {
    std::uint64_t acc = 0;
    const auto put = [&](slot k, double v) {
        out[k] = v;
        acc |= non_finite_bit(v);
    };
    if (P == 1 && sa == 1 && sb == 1) {  // the elementwise case, unit strides: SIMD
        for (slot k = 0; k < K; ++k) put(k, f(xa[k], xb[k]));
        return acc;
    }
    // One operand invariant, the other at unit stride either way (a recorded Hessian's
    // products with a number): SIMD too.
    if (P == 1 && sa == 0 && (sb == 1 || sb == -1)) {
        const double x = xa[0];
        if (sb == 1)
            for (slot k = 0; k < K; ++k) put(k, f(x, xb[k]));
        else
            for (slot k = 0; k < K; ++k) put(k, f(x, xb[-std::ptrdiff_t(k)]));
        return acc;
    }
    if (P == 1 && sb == 0 && (sa == 1 || sa == -1)) {
        const double y = xb[0];
        if (sa == 1)
            for (slot k = 0; k < K; ++k) put(k, f(xa[k], y));
        else
            for (slot k = 0; k < K; ++k) put(k, f(xa[-std::ptrdiff_t(k)], y));
        return acc;
    }
    for (slot k = 0; k < K; ++k) put(k * P, f(xa[k * sa], xb[k * sb]));
    return acc;
}

std::uint64_t loop_op(op o, double* out, std::ptrdiff_t P, const double* xa, std::ptrdiff_t sa,
                      const double* xb, std::ptrdiff_t sb, slot K) {
    switch (o) {
#define TG_OP(name, ...)                                                                        \
    case op::name:                                                                              \
        return loop([](double x, double y) { return kernel::name::forward(x, y); }, out, P, xa, \
                    sa, xb, sb, K);
#include "tapegrad/ops.def"
#undef TG_OP
        default: return 0;
    }
}

// A reduction in traced order: out[k * P] = f(out[(k - 1) * P], x[k * sx]) (or with
// the operands the other way round), the running value kept in a register.
template <class F>
void recur(F f, double* out, std::ptrdiff_t P, bool carried_a, const double* x, std::ptrdiff_t sx,
           slot K) {
    double acc = out[-P];
    if (carried_a)
        for (slot k = 0; k < K; ++k) acc = out[k * P] = f(acc, x[k * sx]);
    else
        for (slot k = 0; k < K; ++k) acc = out[k * P] = f(x[k * sx], acc);
}

void recur_op(op o, double* out, std::ptrdiff_t P, bool carried_a, const double* x,
              std::ptrdiff_t sx, slot K) {
    switch (o) {
#define TG_OP(name, ...)                                                                     \
    case op::name:                                                                           \
        return recur([](double u, double v) { return kernel::name::forward(u, v); }, out, P, \
                     carried_a, x, sx, K);
#include "tapegrad/ops.def"
#undef TG_OP
        default: return;
    }
}

// Iterations [1, count) of an operand: its slot is base + k * step.
void operand_line(const run& r, const block_operand& o, std::int64_t& base, std::int64_t& step) {
    switch (o.kind) {
        case operand_kind::same: base = r.start + o.source, step = r.period; break;
        case operand_kind::carried:
            base = std::int64_t(r.start) - r.period + o.source, step = r.period;
            break;
        default: base = o.first, step = o.stride;
    }
}

}  // namespace

bool all_finite(const double* v, std::size_t n) {
    std::uint64_t acc = 0;
    for (std::size_t k = 0; k < n; ++k) acc |= non_finite_bit(v[k]);
    return !(acc >> 63);
}

namespace {

// Run r's slots (every slot before r.start holds its value). With Check, clears `finite`
// if one of the serial ops' values is not finite, and returns the loops' values' bit 63
// (set if one of them is not finite).
template <bool Check>
std::uint64_t one_run(const program& p, const run& r, double* val, std::vector<char>& serial,
                      bool& finite) {
    std::uint64_t looped = 0;
    const auto check = [&](slot from, slot to) {
        if constexpr (Check) finite &= all_finite(val + from, to - from);
    };
    const op* ops = p.op_.data();
    const slot *a = p.a_.data(), *b = p.b_.data();
    const slot P = r.period, K = r.count;
    // A block op is serial if it needs a value of the previous iteration that the
    // op-by-op order has not made yet (a carried operand from itself or a later
    // block op), or a serial op's value; it runs iteration by iteration after the rest.
    serial.assign(P, 0);
    bool any = false;
    for (slot j = 0; j < P; ++j) {
        for (const block_operand* o : {&r.a[j], &r.b[j]}) {
            if (o->kind == operand_kind::carried && (o->source >= j || serial[o->source]))
                serial[j] = 1;
            if (o->kind == operand_kind::same && serial[o->source]) serial[j] = 1;
        }
        any |= serial[j] != 0;
    }
    // Iteration 0 reads the initial values: slot by slot. Then chunks of iterations:
    // each vector op over the chunk, then the serial ops. A block op's loop touches
    // one slot per iteration, P apart; on the MLP loss (P = 640, 99 iterations)
    // chunks of 32 ran 1.0x the interpreter, of 8 0.74x, of 128 0.38x.
    for (slot t = r.start; t < r.start + P; ++t) val[t] = eval(ops[t], val[a[t]], val[b[t]]);
    check(r.start, r.start + P);
    // One serial op that carries only itself, the other operand ready (a running sum
    // or product): a reduction loop instead of op-by-op dispatch.
    slot only = P;
    bool carried_a = false;
    if (std::count(serial.begin(), serial.end(), 1) == 1) {
        const slot j = slot(std::find(serial.begin(), serial.end(), 1) - serial.begin());
        const block_operand &oa = r.a[j], &ob = r.b[j];
        auto self = [&](const block_operand& o) {
            return o.kind == operand_kind::carried && o.source == j;
        };
        if (ops[r.start + j] != op::leaf && op_table[int(ops[r.start + j])].arity == 2 &&
            self(oa) != self(ob)) {
            only = j;
            carried_a = self(oa);
        }
    }
    const slot chunk = std::max<slot>(32, 2048 / P);
    for (slot k0 = 1; k0 < K; k0 += chunk) {
        const slot k1 = std::min(K, k0 + chunk);
        for (slot j = 0; j < P; ++j) {
            if (serial[j]) continue;
            const slot t0 = r.start + k0 * P + j;
            std::int64_t ba, sa, bb, sb;
            operand_line(r, r.a[j], ba, sa);
            operand_line(r, r.b[j], bb, sb);
            looped |= loop_op(ops[t0], val + t0, P, val + ba + k0 * sa, sa, val + bb + k0 * sb, sb,
                              k1 - k0);
        }
        if (only < P) {
            const block_operand& o = carried_a ? r.b[only] : r.a[only];
            std::int64_t base, step;
            operand_line(r, o, base, step);
            recur_op(ops[r.start + only], val + r.start + k0 * P + only, P, carried_a,
                     val + base + k0 * step, step, k1 - k0);
        } else if (any)
            for (slot k = k0; k < k1; ++k)
                for (slot j = 0; j < P; ++j)
                    if (serial[j]) {
                        const slot t = r.start + k * P + j;
                        val[t] = eval(ops[t], val[a[t]], val[b[t]]);
                    }
        if (any) check(r.start + k0 * P, r.start + k1 * P);  // the serial ops' values
    }
    return looped;
}

// forward_by_runs, and with Check, whether the inputs and every op slot are finite.
template <bool Check>
bool by_runs(const program& p, const std::vector<run>& runs, const double* x, double* val) {
    bool finite = !Check || all_finite(x, p.n_inputs);
    std::uint64_t looped = 0;  // the loops' values: bit 63 set if one is not finite
    const op* ops = p.op_.data();
    const slot *a = p.a_.data(), *b = p.b_.data();
    std::memcpy(val, x, sizeof(double) * p.n_inputs);
    std::copy(p.init_.begin() + p.n_inputs, p.init_.end(), val + p.n_inputs);
    auto scalar = [&](slot from, slot to) {
        for (slot t = from; t < to; ++t) val[t] = eval(ops[t], val[a[t]], val[b[t]]);
        if constexpr (Check) finite &= all_finite(val + from, to - from);
    };
    std::vector<char> serial;
    slot s = p.first_op();
    for (const run& r : runs) {
        scalar(s, r.start);
        looped |= one_run<Check>(p, r, val, serial, finite);
        s = r.end();
    }
    scalar(s, p.n_slots());
    return finite && !(looped >> 63);
}

}  // namespace

void forward_by_runs(const program& p, const std::vector<run>& runs, const double* x, double* val) {
    by_runs<false>(p, runs, x, val);
}

bool forward_by_runs_finite(const program& p, const std::vector<run>& runs, const double* x,
                            double* val) {
    return by_runs<true>(p, runs, x, val);
}

void forward_run(const program& p, const run& r, double* val, std::vector<char>& scratch) {
    bool finite = true;
    one_run<false>(p, r, val, scratch, finite);
}

}  // namespace tapegrad
