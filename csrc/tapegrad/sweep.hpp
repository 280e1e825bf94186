// The sweeps over a topologically ordered struct-of-arrays graph: the eager tape's
// reverse sweep, and a frozen program's one-point sweeps (csrc/README.md maps which
// sweep serves which API). Node i has op o[i], arguments a[i], b[i] (unary ops: b = a)
// and value val[i]; leaf kinds carry their own value and have no arguments.
//
// Each sweep is a list of handlers, one or more per op, that sweep_dispatch.inc expands.
// With GCC or Clang it dispatches by computed goto ("threaded code"): every handler can
// end in its own indirect jump, so the branch predictor learns which op tends to follow
// which; with a `switch`, graphs that interleave op kinds ran up to 2x slower when
// measured here. GCC may still merge the reverse sweeps' jumps into one (it did:
// -fno-crossjumping un-merged them and changed nothing measurable here). Elsewhere (MSVC,
// or -DTG_THREADED=0, CMake's TAPEGRAD_THREADED_DISPATCH=OFF, its default with compilers
// other than GCC: Clang compiles the threaded form very slowly) the same handlers run as
// the cases of a switch.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tapegrad/ops.hpp"
#include "tapegrad/program_view.hpp"

#ifndef TG_THREADED
#if defined(__GNUC__) || defined(__clang__)
#define TG_THREADED 1
#else
#define TG_THREADED 0
#endif
#endif

namespace tapegrad {

// sweep_dispatch.inc's check that a handler list gives code k at position k.
template <std::size_t N>
constexpr bool dispatch_codes_dense(const unsigned (&code)[N]) {
    for (std::size_t k = 0; k < N; ++k)
        if (code[k] != k) return false;
    return true;
}

// The forward sweep of a frozen program: val[i] for every op slot i, in order, with the
// previous op's value kept in a register:
// fc[i] = op << 2 | (a[i] == i - 1) | (b[i] == i - 1) << 1 says which operands are that
// value, so a chain (z = z * y, sums) does not wait for a store to reach its load.
// The sweep starts at op slot `from` and stops at the first leaf kind (fc < 8) without
// a bounds test per op: program::finish puts one past the last op, and a program's
// by-runs codes one at each run it loops over. Returns the slot it stopped at.
inline std::uint32_t forward_sweep_carry(const program_view& p, double* val, std::uint32_t from) {
    const std::uint16_t* const fc = p.fcode;
    const std::uint32_t *const a = p.a, *const b = p.b;
    std::uint32_t i = from;
    if (i >= p.n_slots) return i;
    double prev = val[i - 1];
#define TG_CARRY(name, x, y) prev = val[i] = kernel::name::forward(x, y);
#define TG_CODE fc[i]
#define TG_START
#define TG_STEP ++i;
#define TG_LEAVES(H, S) S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7)
#define TG_OP_HANDLERS(H, S, name, arity)                                          \
    H(int(op::name) << 2 | 0, fw_##name##_0, TG_CARRY(name, val[a[i]], val[b[i]])) \
    H(int(op::name) << 2 | 1, fw_##name##_a, TG_CARRY(name, prev, val[b[i]]))      \
    H(int(op::name) << 2 | 2, fw_##name##_b, TG_CARRY(name, val[a[i]], prev))      \
    H(int(op::name) << 2 | 3, fw_##name##_ab, TG_CARRY(name, prev, prev))
#include "tapegrad/sweep_dispatch.inc"
#undef TG_CARRY
    return i;
}

inline void forward_sweep_carry(const program_view& p, double* val) {
    forward_sweep_carry(p, val, p.first_op);
}

// Reverse sweep over [lo, hi), newest first: each node with a nonzero adjoint adds its
// local rule's contribution to its arguments' adjoints. Zero adjoints are skipped, so
// 0 * inf never leaks NaN into a branch whose gradient is zero. Constants get no
// contribution: nothing reads their adjoint, and skipping them spares e.g. the log in
// pow's d/dy for `x ** 3`.
// `is_const(i)`: whether node i is a constant. The eager tape asks its op array; a frozen
// program keeps its constants in one range of slots (consts_in_range).
struct consts_by_op {
    const op* o;
    bool operator()(std::uint32_t i) const { return o[i] == op::constant; }
};

// With Carry, a contribution to a node at most two below (chains: z = z * y, with or
// without a constant in between) waits in a register for that node's step instead of
// going through memory, where the step would stall on the store reaching its load. It is
// settled before any other contribution to the same node and when its step comes, so
// every adjoint is the same sum in the same order as with plain stores. It pays on the
// eager tape's long chains; on replayed programs, measured here, it did not.
template <class IsConst = consts_by_op, bool Carry = false>
inline void reverse_sweep(const op* o, const std::uint32_t* a, const std::uint32_t* b,
                          const double* val, double* adj, std::uint32_t lo, std::uint32_t hi,
                          IsConst is_const) {
    [[maybe_unused]] double carry = 0.0;  // owed to node carry_to when `owed`
    [[maybe_unused]] std::uint32_t carry_to = 0;
    [[maybe_unused]] bool owed = false;
#define TG_SETTLE_AT(n)                \
    if constexpr (Carry) {             \
        if (owed && carry_to == (n)) { \
            adj[n] += carry;           \
            owed = false;              \
        }                              \
    }
#define TG_GIVE(to, d)                    \
    {                                     \
        const double d_ = (d);            \
        if constexpr (Carry) {            \
            TG_SETTLE_AT(to)              \
            if (!owed && (to) + 2 >= i) { \
                carry = d_;               \
                carry_to = (to);          \
                owed = true;              \
            } else {                      \
                adj[to] += d_;            \
            }                             \
        } else {                          \
            adj[to] += d_;                \
        }                                 \
    }
#define TG_RULE(name, arity)                                                   \
    {                                                                          \
        TG_SETTLE_AT(i)                                                        \
        const double g = adj[i];                                               \
        if (g != 0.0) {                                                        \
            const std::uint32_t ai = a[i], bi = b[i];                          \
            const double x = val[ai], y = val[bi], out = val[i];               \
            if (!is_const(ai)) TG_GIVE(ai, kernel::name::dx(x, y, out, g))     \
            if constexpr (arity == 2)                                          \
                if (!is_const(bi)) TG_GIVE(bi, kernel::name::dy(x, y, out, g)) \
        }                                                                      \
    }
    std::uint32_t i = hi;
    if (i <= lo) return;
#define TG_CODE int(o[i])
#define TG_START --i;
#define TG_STEP                \
    if (i == lo) goto tg_done; \
    --i;
#define TG_LEAVES(H, S) H(0, rv_leaf, TG_SETTLE_AT(i)) H(1, rv_constant, TG_SETTLE_AT(i))
#define TG_OP_HANDLERS(H, S, name, arity) H(int(op::name), rv_##name, TG_RULE(name, arity))
#include "tapegrad/sweep_dispatch.inc"
    if constexpr (Carry)
        if (owed) adj[carry_to] += carry;  // owed below the range
#undef TG_RULE
#undef TG_GIVE
#undef TG_SETTLE_AT
}

// reverse_sweep for a frozen program, where each op's code says how each contribution
// is delivered: rc[i] = op << 5 | gc << 4 | (mode for b) << 2 | (mode for a).
//   mode 0: added to the argument's adjoint;
//   mode 1: stored, being the first the argument gets in this sweep (i is its last
//           user), so the adjoints need no clearing beforehand and the store waits on
//           no earlier value;
//   mode 2: the argument is slot i - 1 and i its only user: the contribution is its
//           whole adjoint and goes to the next handler in a register, and that slot's
//           code has gc set (its g is the register), so a chain never waits for a store
//           to reach a load. Measured: Rosenbrock d=1000 forward+reverse 0.69-0.79x the
//           time with modes 0 and 1 only, the MLP step 0.87-0.93x.
// Slots no contribution reaches must be cleared by the caller (program::zero_: outputs,
// which get their seed, and slots without users).
// A zero adjoint still skips its rule but stores (or hands over) 0 where it would have
// been first.
// Linear ops skip the zero test: their contributions to a zero adjoint are exact zeros,
// and adding or storing one leaves the same sum (up to the sign of a zero sum, which no
// rule can see: a zero adjoint skips the rules that use it, and callers add the
// gradient to +0).
// Contributions to constants are computed and stored (nothing reads a constant's
// adjoint), except pow's: skipping those spares e.g. the log in pow's d/dy for x ** 3.
// finish() marks every contribution to a constant as first, so it is a plain store and
// ops sharing a constant do not queue on its adjoint.
// The sweep starts below slot `from` and stops at the first leaf kind (rc < 64): in a
// program, the last input or constant, which exists below the first op, or where a
// program's by-runs codes put one, the last slot of a run it loops over. Returns the
// slot it stopped at. A slot handing its contribution over in a register must not stop
// the sweep, nor may `from` - 1 expect one.
inline std::uint32_t reverse_sweep_first(const program_view& p, const double* val, double* adj,
                                         std::uint32_t from) {
    const std::uint16_t* const rc = p.rcode;
    const std::uint32_t *const a = p.a, *const b = p.b;
    const consts_in_range is_const = p.consts();
#define TG_PUT(to, d, mode)   \
    {                         \
        if ((mode) == 2)      \
            carry = (d);      \
        else if ((mode) == 1) \
            adj[to] = (d);    \
        else                  \
            adj[to] += (d);   \
    }
#define TG_ZERO(to, mode)     \
    {                         \
        if ((mode) == 2)      \
            carry = 0.0;      \
        else if ((mode) == 1) \
            adj[to] = 0.0;    \
    }
#define TG_RULE(name, arity, fa, fb, gc)                           \
    {                                                              \
        const double g = (gc) ? carry : adj[i];                    \
        const std::uint32_t ai = a[i], bi = b[i];                  \
        if (kernel::name::linear || g != 0.0) {                    \
            const double x = val[ai], y = val[bi], out = val[i];   \
            if (op::name != op::pow || !is_const(ai))              \
                TG_PUT(ai, kernel::name::dx(x, y, out, g), fa)     \
            if constexpr (arity == 2)                              \
                if (op::name != op::pow || !is_const(bi))          \
                    TG_PUT(bi, kernel::name::dy(x, y, out, g), fb) \
        } else {                                                   \
            TG_ZERO(ai, fa)                                        \
            if (arity == 2) TG_ZERO(bi, fb)                        \
        }                                                          \
    }
    if (from <= p.first_op) return from;
    double carry = 0.0;
    std::uint32_t i = from;
    // One op's 32 codes: for gc = 0 and 1, modes (fa, fb) in 0..2 each, the code of
    // mode 3 (unused) ending the sweep.
#define TG_RF(H, name, arity, fa, fb, gc)                                    \
    H(int(op::name) << 5 | gc << 4 | fb << 2 | fa, rv_##name##_##fa##fb##gc, \
      TG_RULE(name, arity, fa, fb, gc))
#define TG_RF4(H, S, name, arity, fb, gc) \
    TG_RF(H, name, arity, 0, fb, gc)      \
    TG_RF(H, name, arity, 1, fb, gc)      \
    TG_RF(H, name, arity, 2, fb, gc) S(int(op::name) << 5 | gc << 4 | fb << 2 | 3)
#define TG_RF16(H, S, name, arity, gc) \
    TG_RF4(H, S, name, arity, 0, gc)   \
    TG_RF4(H, S, name, arity, 1, gc)   \
    TG_RF4(H, S, name, arity, 2, gc) TG_STOP4(S, int(op::name) << 5 | gc << 4 | 12)
#define TG_STOP4(S, c) S((c)) S((c) + 1) S((c) + 2) S((c) + 3)
#define TG_STOP16(S, c) \
    TG_STOP4(S, (c)) TG_STOP4(S, (c) + 4) TG_STOP4(S, (c) + 8) TG_STOP4(S, (c) + 12)
#define TG_CODE rc[i]
#define TG_START --i;
#define TG_STEP --i;
#define TG_LEAVES(H, S) TG_STOP16(S, 0) TG_STOP16(S, 16) TG_STOP16(S, 32) TG_STOP16(S, 48)
#define TG_OP_HANDLERS(H, S, name, arity) \
    TG_RF16(H, S, name, arity, 0) TG_RF16(H, S, name, arity, 1)
#include "tapegrad/sweep_dispatch.inc"
#undef TG_RF
#undef TG_RF4
#undef TG_RF16
#undef TG_STOP4
#undef TG_STOP16
#undef TG_RULE
#undef TG_PUT
#undef TG_ZERO
    return i;
}

inline void reverse_sweep_first(const program_view& p, const double* val, double* adj) {
    reverse_sweep_first(p, val, adj, p.n_slots);
}

// Forward mode at one point: t[i] for every op slot i from its operands' tangents, by
// the table's tangent column (leaf kinds keep theirs: inputs given, constants 0).
inline void tangent_sweep(const program_view& p, const double* val, double* t) {
    const op* const o = p.ops;
    const std::uint32_t *const a = p.a, *const b = p.b;
    const std::uint32_t hi = p.n_slots;
    std::uint32_t i = p.first_op;
    if (i >= hi) return;
#define TG_TANGENT(name) \
    t[i] = kernel::name::tangent(val[a[i]], val[b[i]], val[i], t[a[i]], t[b[i]]);
#define TG_CODE int(o[i])
#define TG_START
#define TG_STEP \
    if (++i >= hi) goto tg_done;
#define TG_LEAVES(H, S) H(0, tg_leaf, ) H(1, tg_constant, )
#define TG_OP_HANDLERS(H, S, name, arity) H(int(op::name), tg_##name, TG_TANGENT(name))
#include "tapegrad/sweep_dispatch.inc"
#undef TG_TANGENT
}

// Forward-over-reverse at one point: reverse_sweep on dual numbers (value, tangent), so
// adj gets the gradient and adjt its directional derivative. A node whose adjoint and
// adjoint tangent are both 0 is skipped; constants get nothing.
inline void reverse_dual_sweep(const program_view& p, const double* val, const double* t,
                               double* adj, double* adjt) {
    using fwd::dual;
    const op* const o = p.ops;
    const std::uint32_t *const a = p.a, *const b = p.b;
    const std::uint32_t lo = p.first_op;
    const consts_in_range is_const = p.consts();
#define TG_DUAL_RULE(name, arity)                                                       \
    {                                                                                   \
        const double g = adj[i], gt = adjt[i];                                          \
        if (g != 0.0 || gt != 0.0) {                                                    \
            const std::uint32_t ai = a[i], bi = b[i];                                   \
            const dual X{val[ai], t[ai]}, Y{val[bi], t[bi]}, O{val[i], t[i]}, G{g, gt}; \
            if (!is_const(ai)) {                                                        \
                const dual d = kernel::name::dx(X, Y, O, G);                            \
                adj[ai] += d.v;                                                         \
                adjt[ai] += d.d;                                                        \
            }                                                                           \
            if constexpr (arity == 2)                                                   \
                if (!is_const(bi)) {                                                    \
                    const dual d = kernel::name::dy(X, Y, O, G);                        \
                    adj[bi] += d.v;                                                     \
                    adjt[bi] += d.d;                                                    \
                }                                                                       \
        }                                                                               \
    }
    std::uint32_t i = p.n_slots;
    if (i <= lo) return;
#define TG_CODE int(o[i])
#define TG_START --i;
#define TG_STEP                \
    if (i == lo) goto tg_done; \
    --i;
#define TG_LEAVES(H, S) H(0, rd_leaf, ) H(1, rd_constant, )
#define TG_OP_HANDLERS(H, S, name, arity) H(int(op::name), rd_##name, TG_DUAL_RULE(name, arity))
#include "tapegrad/sweep_dispatch.inc"
#undef TG_DUAL_RULE
}

}  // namespace tapegrad
