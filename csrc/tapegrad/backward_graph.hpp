// The reverse sweep as a function of the tape, not of its adjoint column: gradients of
// chosen outputs with respect to chosen nodes, either as numbers or recorded on the tape as
// ordinary nodes (create_graph, as PyTorch's; what nested derivatives differentiate).
//
// Both use the op table's d/dx and d/dy templates, on doubles or on `term`, a value whose
// arithmetic appends nodes: the recorded rule is the rule, and each node's value is the
// same double operation the plain sweep does. A rule's numbers fold (0.0, 1 - ...), so a
// zero branch of a rule costs no node.
#pragma once
#include <cstdint>
#include <vector>

#include "tapegrad/program.hpp"
#include "tapegrad/tape.hpp"

namespace tapegrad {

// A value inside a recorded rule: node i of the tape being recorded on, or a number.
struct term {
    double v = 0.0;
    tape::index i = 0;
    bool node = false;
    term() = default;
    term(double value) : v(value) {}  // NOLINT: numbers mix into rules implicitly
    static term of(const tape& t, tape::index i) {
        term r(t.val(i));
        r.i = i;
        r.node = true;
        return r;
    }
};

// Watches a recording. Told of each comparison a recorded rule makes on a node's value:
// the branch the rule takes depends on it (a trace turns these into guards, so a replay
// that would take the other branch does not go on silently); and of each node a rule
// appends (anomaly mode checks its value as it is made).
struct compare_observer {
    // rule_of: the op whose rule compared, or appended node i
    virtual void compared(const term& a, const term& b, cmp c, bool outcome, op rule_of) = 0;
    virtual void appended(tape::index /*i*/, op /*rule_of*/) {}
    virtual ~compare_observer() = default;
};

// What one gradient call asks for: the outputs and their seeds (d output_k, the adjoint
// each output starts with), and the nodes to differentiate with respect to.
struct grad_request {
    std::vector<tape::index> outputs;
    std::vector<term> seeds;  // one per output: a number, or a node (a recorded seed)
    std::vector<tape::index> wrt;
};

// Constant nodes take no gradient: a rule's part for a constant operand is not evaluated
// (nor compared on: pow's d/dy at x == 0 is no guard of x ** 3).

// d(sum_k seed_k * output_k) / d wrt_j as numbers (the plain sweep's skipping of zero
// adjoints; nothing on the tape changes, leaf .grad included). Seeds must be numbers.
std::vector<double> gradient_values(const tape& t, const grad_request& r);

// The same, recorded: one node per wrt_j (a constant 0 where wrt_j does not reach the
// outputs). Every node appended is retained once in `held`; the caller takes what it
// keeps, then releases `held` (which collects the rest). The tape must not compact
// meanwhile (its relocator is off during the call: indices stay put).
// Values equal gradient_values' except that a single contribution of -0.0 stays -0.0
// (the plain sweep adds it to 0.0), and where an adjoint is 0 the recorded sweep still
// records contributions with finite values (their derivatives need not be 0).
std::vector<tape::index> gradient_graph(tape& t, const grad_request& r,
                                        std::vector<tape::index>& held,
                                        compare_observer* observer = nullptr);

// Whether each of `nodes` is `root` or below it in the graph (through any op's operands,
// detach's included): the leaves backward(create_graph=True) gives a .grad.
std::vector<bool> below(const tape& t, tape::index root, const std::vector<tape::index>& nodes);

}  // namespace tapegrad
