// find_runs(): candidate periods from next-occurrence links, each checked exactly by
// run_count(). The check is the definition; the links only choose what to check, so a
// weak candidate costs time, never a wrong run.
#include "tapegrad/structure.hpp"

#include <algorithm>
#include <cstring>

namespace tapegrad {

namespace {

// The operand class read off iterations 0 and 1 (slots o0, o1), or false if none fits.
bool classify(slot start, slot period, slot o0, slot o1, block_operand& r) {
    if (o1 >= start + period) {  // in iteration 1's block: the same op in iteration 0
        if (o0 != o1 - period) return false;
        r = {operand_kind::same, o0, o1 - start - period, 0};
    } else if (o1 >= start) {  // iteration 0's block: carried, o0 its value before the run
        if (o0 >= start) return false;
        r = {operand_kind::carried, o0, o1 - start, 0};
    } else {  // before the run in both
        if (o0 >= start) return false;
        const std::int64_t d = std::int64_t(o1) - std::int64_t(o0);
        r = {d ? operand_kind::strided : operand_kind::invariant, o0, 0, d};
    }
    return true;
}

// The slot operand r has in iteration k >= 2 of a run at start with this period.
std::int64_t expected(const block_operand& r, slot start, slot period, std::int64_t k) {
    switch (r.kind) {
        case operand_kind::same: return std::int64_t(start) + k * period + r.source;
        case operand_kind::carried: return std::int64_t(start) + (k - 1) * period + r.source;
        default: return std::int64_t(r.first) + k * r.stride;
    }
}

// Iteration k of op j: the operand is where the class says, and the strided and
// invariant ones lie before the run.
bool holds(const block_operand& r, slot start, slot period, std::int64_t k, slot o) {
    if (std::int64_t(o) != expected(r, start, period, k)) return false;
    return r.kind == operand_kind::same || r.kind == operand_kind::carried || o < start;
}

// find_runs()'s working arrays, kept per thread: fresh memory costs about 0.5 ms per MB
// here (page faults), a large share of a scan over a 10^6-op program.
struct structure_scratch {
    std::vector<slot> next_shape, next_a, next_b, last;
    std::vector<std::uint64_t> keys;  // open addressing: shape hash, 0 = empty
    std::vector<slot> at;             // the latest slot filed under keys[i]
    run probe, best;
};

// An op slot's shape: its op, and per operand the distance back to it if it is a recent
// op, else which range it lies in. Equal for the same block op in every iteration of most
// runs (not for a strided or invariant operand a few slots back); a hint only.
std::uint64_t shape(const program_view& p, slot s) {
    constexpr slot near = 64;
    auto where = [&](slot o) -> std::uint64_t {
        if (o >= p.first_op && s - o <= near) return s - o;
        return o < p.n_inputs ? near + 1 : o < p.first_op ? near + 2 : near + 3;
    };
    const std::uint64_t h = (std::uint64_t(p.ops[s]) << 16 | where(p.a[s]) << 8 | where(p.b[s]));
    return (h + 1) * 0x9E3779B97F4A7C15ull;  // never 0
}

// next_shape[s]: the next op slot with s's shape (0: none), by one backward pass over a
// table that grows with the number of distinct shapes (few in a program with loops).
void link_shapes(const program_view& p, structure_scratch& w) {
    const slot n = p.n_slots, f = p.first_op;
    w.next_shape.assign(n, 0);
    w.keys.assign(1024, 0);
    w.at.assign(1024, 0);
    std::size_t used = 0;
    for (slot s = n; s-- > f;) {
        const std::uint64_t h = shape(p, s);
        std::size_t mask = w.keys.size() - 1, i = (h >> 20) & mask;
        while (w.keys[i] != 0 && w.keys[i] != h) i = (i + 1) & mask;
        if (w.keys[i] == h) {
            w.next_shape[s] = w.at[i];
            w.at[i] = s;
            continue;
        }
        w.keys[i] = h;
        w.at[i] = s;
        if (2 * ++used <= w.keys.size()) continue;
        std::vector<std::uint64_t> keys(2 * w.keys.size(), 0);
        std::vector<slot> at(keys.size(), 0);
        mask = keys.size() - 1;
        for (std::size_t e = 0; e < w.keys.size(); ++e) {
            if (w.keys[e] == 0) continue;
            std::size_t j = (w.keys[e] >> 20) & mask;
            while (keys[j] != 0) j = (j + 1) & mask;
            keys[j] = w.keys[e];
            at[j] = w.at[e];
        }
        w.keys.swap(keys);
        w.at.swap(at);
    }
}

// next[s]: the next op slot whose operand (arg) is the same slot as s's (0: none).
void link_uses(const program_view& p, const slot* arg, std::vector<slot>& next,
               std::vector<slot>& last) {
    const slot n = p.n_slots, f = p.first_op;
    next.assign(n, 0);
    last.assign(n, 0);
    for (slot s = n; s-- > f;) {
        next[s] = last[arg[s]];
        last[arg[s]] = s;
    }
}

}  // namespace

// The ops whose operands compile puts in slot order (commutative: either order holds).
bool commutes(op o) { return o == op::add || o == op::mul; }

slot run_count(const program_view& p, slot start, slot period, run* out) {
    const slot n = p.n_slots;
    run local;
    run& r = out ? *out : local;
    r.start = start;
    r.period = period;
    r.count = 1;
    r.swapped = false;
    if (period == 0 || start < p.first_op || start >= n ||
        std::uint64_t(n - start) < 2 * std::uint64_t(period))
        return 1;
    // Iterations 0 and 1 fix each operand's class; a first pass that stores nothing, so
    // a far candidate that fails early costs no O(period) setup. An add or mul may read
    // its operands in iteration 0 the other way round.
    auto pair = [&](slot j, bool flip, block_operand& ca, block_operand& cb) {
        const slot t0 = start + j, t1 = t0 + period;
        return classify(start, period, flip ? p.b[t0] : p.a[t0], p.a[t1], ca) &&
               classify(start, period, flip ? p.a[t0] : p.b[t0], p.b[t1], cb);
    };
    block_operand ca, cb;
    for (slot j = 0; j < period; ++j) {
        const slot t0 = start + j;
        if (p.ops[t0] != p.ops[t0 + period]) return 1;
        if (!pair(j, false, ca, cb) && !(commutes(p.ops[t0]) && pair(j, true, ca, cb))) return 1;
    }
    // Iteration k of op j in either order; true if it holds, `flip` if only swapped.
    auto fits = [&](slot j, std::int64_t k, const block_operand& ca, const block_operand& cb,
                    bool& flip) {
        const slot t = start + slot(k) * period + j;
        flip = false;
        if (holds(ca, start, period, k, p.a[t]) && holds(cb, start, period, k, p.b[t])) return true;
        flip = commutes(p.ops[t]) && holds(ca, start, period, k, p.b[t]) &&
               holds(cb, start, period, k, p.a[t]);
        return flip;
    };
    r.a.resize(period);
    r.b.resize(period);
    const bool third = std::uint64_t(start) + 3 * std::uint64_t(period) <= n;
    for (slot j = 0; j < period; ++j) {
        bool flip = false;
        const bool straight = pair(j, false, r.a[j], r.b[j]);
        // Both orders fit two iterations (two slots before the run always make a
        // stride): iteration 2 decides.
        if (!straight || (commutes(p.ops[start + j]) && third &&
                          p.ops[start + 2 * period + j] == p.ops[start + j] &&
                          !fits(j, 2, r.a[j], r.b[j], flip) && pair(j, true, ca, cb) &&
                          fits(j, 2, ca, cb, flip))) {
            pair(j, true, r.a[j], r.b[j]);
            r.swapped = true;
        }
    }
    std::int64_t k = 2;
    for (; std::uint64_t(start) + std::uint64_t(k + 1) * period <= n; ++k) {
        const slot t = start + slot(k) * period;
        slot j = 0;
        bool flip = false, flipped = false;
        for (; j < period; ++j) {
            if (p.ops[t + j] != p.ops[start + j] || !fits(j, k, r.a[j], r.b[j], flip)) break;
            flipped |= flip;
        }
        if (j < period) break;
        r.swapped |= flipped;
    }
    r.count = slot(k);
    return r.count;
}

namespace {

// A run's worth: the op slots it covers beyond its first iteration. Two iterations of
// any block of the same ops reading leaves fit (two slots make a stride), so a long
// block repeated twice must not win over a short one repeated often.
std::uint64_t score(slot period, slot count) { return std::uint64_t(period) * (count - 1); }

// The best run of at least min_count iterations starting at s among the linked
// candidates, into w.best; its score, or 0. Shorter periods go first, and a multiple of
// the period of a run that holds its first two iterations is passed over: on those slots
// it scores less.
std::uint64_t best_at(const program_view& p, structure_scratch& w, slot s, slot min_count) {
    // Links followed: shapes repeat within a block, so a few; a next use is usually the
    // next iteration's (and far away in memory), so fewer.
    constexpr int hops = 4, use_hops = 2;
    const slot n = p.n_slots;
    slot cand[3 * hops];
    int n_cand = 0;
    // A candidate needs room for min_count iterations (links ascend: the first one out
    // of room ends a chain), and the same ops at a block's first, second and last slot
    // in each: a cheap test that rejects most candidates of a program without loops
    // before run_count classifies anything.
    const std::uint64_t last = s + (std::uint64_t(n) - s) / min_count;
    auto add = [&](slot t) {
        const slot P = t - s;
        for (slot k = 1; k < min_count; ++k)
            for (const slot j : {slot(0), std::min<slot>(1, P - 1), P - 1})
                if (p.ops[s + k * P + j] != p.ops[s + j]) return;
        cand[n_cand++] = P;
    };
    slot t = s;
    for (int h = 0; h < hops && (t = w.next_shape[t]) != 0 && t <= last; ++h) add(t);
    for (const std::vector<slot>* next : {&w.next_a, &w.next_b}) {
        t = s;
        for (int h = 0; h < use_hops && (t = (*next)[t]) != 0 && t <= last; ++h)
            if (p.ops[t] == p.ops[s]) add(t);
    }
    for (int i = 1; i < n_cand; ++i)  // insertion sort (std::sort trips -Warray-bounds)
        for (int j = i; j > 0 && cand[j - 1] > cand[j]; --j) std::swap(cand[j - 1], cand[j]);
    std::uint64_t best = 0;
    slot made[3 * hops];  // periods of runs found, and where each ends
    std::uint64_t made_end[3 * hops];
    int n_made = 0;
    for (int c = 0; c < n_cand; ++c) {
        const slot P = cand[c];
        if (c && cand[c - 1] == P) continue;
        bool covered = false;
        for (int m = 0; m < n_made; ++m)
            covered |= P % made[m] == 0 && made_end[m] >= s + 2 * std::uint64_t(P);
        if (covered) continue;
        const slot K = run_count(p, s, P, &w.probe);
        if (K < min_count) continue;
        made[n_made] = P;
        made_end[n_made++] = s + std::uint64_t(P) * K;
        if (score(P, K) <= best) continue;
        best = score(P, K);
        std::swap(w.best, w.probe);
    }
    return best;
}

}  // namespace

std::vector<run> find_runs(const program_view& p, slot min_count) {
    thread_local structure_scratch scratch;
    structure_scratch& w = scratch;  // one TLS lookup (the extension's are calls)
    std::vector<run> runs;
    const slot n = p.n_slots;
    min_count = std::max<slot>(min_count, 2);
    if (n <= p.first_op) return runs;
    link_shapes(p, w);
    link_uses(p, p.a, w.next_a, w.last);
    link_uses(p, p.b, w.next_b, w.last);

    constexpr slot look_ahead = 64;
    slot lower = p.first_op;  // where the previous run ends
    for (slot s = p.first_op; s + 1 < n;) {
        std::uint64_t best = best_at(p, w, s, min_count);
        if (best == 0) {
            ++s;
            continue;
        }
        // A block repeated just a few times may swallow an odd iteration of a longer run
        // starting a little later: then leave s uncovered.
        if (w.best.count <= min_count) {
            const run found = w.best;
            slot t = s + 1;
            const slot stop = s + std::min(found.period, look_ahead);
            for (; t <= stop && t + 1 < n; ++t)
                if (best_at(p, w, t, min_count) > best) break;
            if (t <= stop && t + 1 < n) {
                s = t;
                continue;
            }
            w.best = found;
        }
        // Iteration 0 often gives no hint (a carried operand reads its initial value
        // there, or a shape differs), so the run found may start late or rotated: try the
        // starts up to one period earlier that the previous run leaves free.
        const slot P = w.best.period;
        for (slot r = 1; r <= P && r <= s - lower; ++r) {
            const slot K = run_count(p, s - r, P, &w.probe);
            if (K < min_count || score(P, K) <= best) continue;
            best = score(P, K);
            std::swap(w.best, w.probe);
        }
        runs.push_back(w.best);
        s = lower = w.best.end();
    }
    return runs;
}

}  // namespace tapegrad
