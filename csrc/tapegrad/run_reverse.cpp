// reverse_run(): the one-point reverse sweep over one elementwise run (period 1, nothing
// carried), as a loop over its iterations per op instead of one dispatch per slot. Each
// adjoint gets the same contributions, stored or added as reverse_sweep_first does, in
// the same order, so the adjoints are bit for bit the interpreter's.
//
// Compiled with -fno-trapping-math (CMakeLists.txt): it lets the compiler vectorise the
// selects below (a skipped contribution's sum is computed and then not used) and changes
// no value.
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "tapegrad/program.hpp"
#include "tapegrad/structure.hpp"

namespace tapegrad {

namespace {

// Iteration k's operand slot: first + k * stride (stride 0: the same slot every time).
struct stream {
    slot first;
    std::int64_t stride;
    slot at(slot k) const { return slot(std::int64_t(first) + std::int64_t(k) * stride); }
    bool operator==(const stream& o) const { return first == o.first && stride == o.stride; }
};

bool as_stream(const block_operand& o, stream& s) {
    if (o.kind != operand_kind::strided && o.kind != operand_kind::invariant) return false;
    s = {o.first, o.kind == operand_kind::strided ? o.stride : 0};
    return true;
}

// How reverse_sweep_first delivers a contribution: mode 0 adds it, 1 stores it (the
// argument's first), 2 hands it to slot i - 1 in a register, which a run's loop replaces
// by a store (the same value, there being no earlier contribution): so here, add or not.
inline bool adds(unsigned mode) { return mode == 0; }

// One op's loop. A contribution is computed whether or not it is used, and selected: a
// zero adjoint skips a nonlinear rule (storing 0 where the contribution would have been
// first), and pow gives nothing to a constant. Operand a of iteration k is slot
// a0 + k * sa (KA: the stride 0, 1, or any), b likewise; the two streams never share
// a slot unless they are one stream (Same), and both lie below the run: hence the
// restrict. A stream of constants only gets nothing (GiveA, GiveB false): nothing reads
// a constant's adjoint, which the sweep stores to only because that costs it less than
// a test.
//
// Only a stream of one slot (stride 0) gets several contributions from the loop, which
// must then come newest first, as in the sweep. Unit streams get one each, so the loop
// runs oldest first there, which GCC 12 vectorises (the other way round it does not).
enum stride_kind { invariant, unit, any };

template <class K, int Arity, bool Same, int KA, int KB, bool GiveA, bool GiveB>
void rule_loop(const slot count, const double* __restrict V, const double* __restrict G,
               const std::uint16_t* __restrict rc, const double* __restrict XA,
               double* __restrict A, const std::ptrdiff_t sa, const double* __restrict XB,
               double* __restrict B, const std::ptrdiff_t sb, const slot a0, const slot b0,
               const consts_in_range is_const) {
    constexpr bool Pow = std::is_same_v<K, kernel::pow>;
    constexpr bool oldest_first = (!GiveA || KA == unit) && (!GiveB || KB == unit);
    for (std::ptrdiff_t n = 0; n < std::ptrdiff_t(count); ++n) {
        const std::ptrdiff_t k = oldest_first ? n : std::ptrdiff_t(count) - 1 - n;
        const std::ptrdiff_t ia = KA == invariant ? 0 : KA == unit ? k : k * sa;
        const std::ptrdiff_t ib = KB == invariant ? 0 : KB == unit ? k : k * sb;
        const double g = G[k], x = XA[ia], y = Arity == 2 ? XB[ib] : x, out = V[k];
        const bool skip = !K::linear && g == 0.0;
        const unsigned code = rc[k];
        if constexpr (GiveA) {
            const double c = K::dx(x, y, out, g);
            const bool give = !Pow || !is_const(slot(a0 + ia));
            const double t = A[ia];
            const double put = skip ? 0.0 : c;
            const double sum = skip ? t : t + c;
            if (skip || give) A[ia] = adds(code & 3) ? sum : put;
        }
        if constexpr (Arity == 2 && GiveB) {
            const double c = K::dy(x, y, out, g);
            const bool give = !Pow || !is_const(slot(b0 + ib));
            double* T = Same ? A : B;  // b == a: reverse_sweep_first's b is never first
            const double t = T[ib];
            const double put = skip ? 0.0 : c;
            const double sum = skip ? t : t + c;
            if (skip || give) T[ib] = !Same && !adds(code >> 2 & 3) ? put : sum;
        }
    }
}

template <class K, int Arity>
void run_op(const run& r, const stream sa, const stream sb, const std::uint16_t* rc,
            const double* val, double* adj, consts_in_range is_const) {
    const double *V = val + r.start, *G = adj + r.start;
    const double *XA = val + sa.first, *XB = val + sb.first;
    double *A = adj + sa.first, *B = adj + sb.first;
    const auto constants = [&](const stream& s) {  // the range of constants is contiguous
        return is_const(s.first) && is_const(s.at(r.count - 1));
    };
    const bool same = Arity == 2 && sa == sb, give_a = !constants(sa);
    const bool give_b = Arity == 2 && !same && !constants(sb);
    const auto go = [&](auto same_, auto ka, auto kb, auto give_a_, auto give_b_) {
        rule_loop<K, Arity, decltype(same_)::value, decltype(ka)::value, decltype(kb)::value,
                  decltype(give_a_)::value, decltype(give_b_)::value>(
            r.count, V, G, rc + r.start, XA, A, sa.stride, XB, decltype(same_)::value ? nullptr : B,
            sb.stride, sa.first, sb.first, is_const);
    };
    using yes = std::true_type;
    using no = std::false_type;
    using U = std::integral_constant<int, unit>;
    using N = std::integral_constant<int, any>;
    using I = std::integral_constant<int, invariant>;
    const bool ua = sa.stride == 1, ub = Arity == 1 || sb.stride == 1;
    if (same) {
        if (give_a) ua ? go(yes{}, U{}, U{}, yes{}, yes{}) : go(yes{}, N{}, N{}, yes{}, yes{});
    } else if (give_a && give_b) {
        ua&& ub ? go(no{}, U{}, U{}, yes{}, yes{}) : go(no{}, N{}, N{}, yes{}, yes{});
    } else if (give_a) {  // b: constants, read only
        if (ua && sb.stride == 0)
            go(no{}, U{}, I{}, yes{}, no{});
        else
            ua&& ub ? go(no{}, U{}, U{}, yes{}, no{}) : go(no{}, N{}, N{}, yes{}, no{});
    } else if (give_b) {
        if (ub && sa.stride == 0)
            go(no{}, I{}, U{}, no{}, yes{});
        else
            ua&& ub ? go(no{}, U{}, U{}, no{}, yes{}) : go(no{}, N{}, N{}, no{}, yes{});
    }
}

}  // namespace

bool reverse_runnable(const program& p, const run& r) {
    if (r.period != 1 || r.count < 1) return false;
    const op o = p.op_[r.start];
    if (o == op::leaf || o == op::constant) return false;
    stream sa, sb;
    if (!as_stream(r.a[0], sa) || !as_stream(r.b[0], sb)) return false;
    if (op_table[int(o)].arity == 1 || sa == sb) return true;
    // Two operands: no slot may get contributions from both (their order across
    // iterations would then matter), so the two streams must not meet.
    std::vector<slot> as(r.count);
    for (slot k = 0; k < r.count; ++k) as[k] = sa.at(k);
    std::sort(as.begin(), as.end());
    for (slot k = 0; k < r.count; ++k)
        if (std::binary_search(as.begin(), as.end(), sb.at(k))) return false;
    return true;
}

void reverse_run(const program& p, const run& r, const double* val, double* adj) {
    stream sa{}, sb{};
    as_stream(r.a[0], sa);
    as_stream(r.b[0], sb);
    const std::uint16_t* rc = p.view().rcode;
    const consts_in_range is_const{p.n_inputs, p.first_op() - p.n_inputs};
    switch (p.op_[r.start]) {
#define TG_OP(name, arity, ...) \
    case op::name: return run_op<kernel::name, arity>(r, sa, sb, rc, val, adj, is_const);
#include "tapegrad/ops.def"
#undef TG_OP
        default: return;
    }
}

}  // namespace tapegrad
