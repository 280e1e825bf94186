// What every sweep over a frozen program reads: the one-point sweeps (sweep.hpp), the
// lanes (lanes.hpp) and the Hessian planner (hessian.hpp) all take this view, never the
// program itself. Slots [0, n_inputs) are the inputs, [n_inputs, first_op) the
// constants, [first_op, n_slots) the ops, in topological order.
#pragma once
#include <cstdint>

#include "tapegrad/ops.hpp"

namespace tapegrad {

using slot = std::uint32_t;

// Whether slot s is a constant: a program keeps its constants in one range of slots.
struct consts_in_range {
    slot first, count;
    bool operator()(slot s) const { return s - first < count; }
};

struct program_view {
    const op* ops;    // per slot; leaf kinds below first_op
    const slot* a;    // first argument of each op slot
    const slot* b;    // second argument (unary ops: b == a)
    // The one-point sweeps' codes (sweep.hpp): fcode has n_slots + 1 entries, the last
    // a leaf kind where forward_sweep_carry stops.
    const std::uint16_t* fcode;
    const std::uint16_t* rcode;
    slot n_inputs, first_op, n_slots;

    consts_in_range consts() const { return {n_inputs, first_op - n_inputs}; }
    // Op slot s: op << 2 | (s gives its argument a its first contribution of a reverse
    // sweep) | (the same for b) << 1, read off the one-point reverse codes, where "first"
    // is a store or a hand-over in a register.
    unsigned first_code(slot s) const {
        const unsigned c = rcode[s];
        return (c >> 5) << 2 | unsigned((c & 3) != 0) | unsigned((c >> 2 & 3) != 0) << 1;
    }
};

}  // namespace tapegrad
