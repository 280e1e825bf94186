#include "tapegrad/hessian.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "tapegrad/lanes.hpp"

namespace tapegrad {

hessian_plan plan_hessian(const program_view& p, std::vector<std::vector<slot>> groups) {
    const slot n = p.n_slots, first_op = p.first_op;
    const slot *a = p.a, *b = p.b;
    const slot n_columns = groups.empty() ? p.n_inputs : slot(groups.size());
    hessian_plan plan;
    plan.groups = std::move(groups);
    plan.fwd.resize(n_columns);
    plan.rev.resize(n_columns);
    plan.t_set.resize(n_columns);
    plan.adjt_set.resize(n_columns);
    // TAPEGRAD_HESSIAN_PLAN=dense forces the dense columns (tests compare the two).
    static const bool force_dense = [] {
        const char* e = std::getenv("TAPEGRAD_HESSIAN_PLAN");
        return e && std::strcmp(e, "dense") == 0;
    }();
    const auto dense = [&plan] {
        hessian_plan d;
        d.groups = std::move(plan.groups);
        d.dense = true;
        return d;
    };
    if (force_dense) return dense();
    // Column by column over just the slots it reaches, so a sparse Hessian plans in time
    // proportional to what it touches. The slots that depend on input j (its cone, where
    // tangents can be nonzero) are found through each slot's users; marks are stamped with
    // j + 1, so nothing is cleared between columns.
    std::vector<std::uint32_t> user_start(n + 1, 0), users;
    for (slot s = first_op; s < n; ++s) {
        ++user_start[a[s] + 1];
        if (b[s] != a[s]) ++user_start[b[s] + 1];
    }
    for (slot s = 0; s < n; ++s) user_start[s + 1] += user_start[s];
    users.resize(user_start[n]);
    {
        std::vector<std::uint32_t> at(user_start.begin(), user_start.end() - 1);
        for (slot s = first_op; s < n; ++s) {
            users[at[a[s]]++] = s;
            if (b[s] != a[s]) users[at[b[s]]++] = s;
        }
    }
    auto nonlinear = [&](slot s) { return !op_table[int(p.ops[s])].linear; };
    std::vector<std::uint32_t> in_cone(n, 0), active(n, 0), got_adjt(n, 0), need(n, 0);
    std::vector<slot> cone, stack;
    std::size_t entries = 0;
    for (slot j = 0; j < n_columns; ++j) {
        const std::uint32_t mark = j + 1;
        // tz: the cone of input j, or of group j's inputs (ascending, the inputs first).
        if (plan.groups.empty())
            cone.assign(1, j);
        else
            cone.assign(plan.groups[j].begin(), plan.groups[j].end());
        for (slot i : cone) in_cone[i] = mark;
        for (std::size_t k = 0; k < cone.size(); ++k)
            for (std::uint32_t u = user_start[cone[k]]; u < user_start[cone[k] + 1]; ++u)
                if (in_cone[users[u]] != mark) {
                    in_cone[users[u]] = mark;
                    cone.push_back(users[u]);
                }
        std::sort(cone.begin(), cone.end());
        // rev: the nonlinear ops of the cone and every op below them (an op whose adjoint
        // tangent is nonzero passes it on); their arguments get adjoint tangents.
        std::vector<slot>& rev = plan.rev[j];
        stack.clear();
        for (slot s : cone)
            if (s >= first_op && nonlinear(s)) {
                active[s] = mark;
                stack.push_back(s);
            }
        while (!stack.empty()) {
            const slot r = stack.back();
            stack.pop_back();
            rev.push_back(r);
            for (slot arg : {a[r], b[r]}) {
                if (got_adjt[arg] != mark) {
                    got_adjt[arg] = mark;
                    plan.adjt_set[j].push_back(arg);
                }
                if (arg >= first_op && active[arg] != mark) {
                    active[arg] = mark;
                    stack.push_back(arg);
                }
            }
        }
        std::sort(rev.begin(), rev.end(), std::greater<slot>());
        // fwd: the cone's tangents that a nonlinear rule reads, and what they are made of.
        for (slot r : rev)
            if (nonlinear(r)) need[r] = need[a[r]] = need[b[r]] = mark;
        for (std::size_t k = cone.size(); k-- > 0;) {
            const slot s = cone[k];
            if (s >= first_op && need[s] == mark) need[a[s]] = need[b[s]] = mark;
        }
        std::vector<slot>& fwd = plan.fwd[j];
        for (slot s : cone)
            if (s >= first_op && need[s] == mark) fwd.push_back(s);
        plan.t_set[j] = fwd;
        if (plan.groups.empty())
            plan.t_set[j].push_back(j);
        else
            plan.t_set[j].insert(plan.t_set[j].end(), plan.groups[j].begin(), plan.groups[j].end());
        entries += plan.fwd[j].size() + plan.rev[j].size() + plan.t_set[j].size() +
                   plan.adjt_set[j].size();
        if (entries > hessian_plan::max_entries) return dense();
    }
    return plan;
}

void hessian_block(const program_view& p, const hessian_plan& plan, slot root, const double* v,
                   double* adj, double* t, double* adjt, std::size_t B, std::size_t L, double* hess,
                   std::ptrdiff_t hess_stride, bool adj_ready) {
    const lanes::kernels& k = lanes::get();
    const std::size_t n_in = p.n_inputs;
    const std::size_t n_columns = plan.groups.empty() ? n_in : plan.groups.size();
    if (!adj_ready) {
        std::memset(adj, 0, sizeof(double) * B * p.n_slots);
        double* seed = adj + std::size_t(root) * B;
        for (std::size_t l = 0; l < L; ++l) seed[l] = 1.0;
        k.reverse(p, v, adj, B, L);
    }
    const auto seed_column = [&](slot j, double value) {
        if (plan.groups.empty()) {
            std::fill_n(t + std::size_t(j) * B, L, value);
            return;
        }
        for (slot i : plan.groups[j]) std::fill_n(t + std::size_t(i) * B, L, value);
    };
    for (slot j = 0; j < n_columns; ++j) {
        seed_column(j, 1.0);
        if (plan.dense) {
            k.tangent(p, v, t, B, L, nullptr, 0);
            k.reverse_tangent(p, v, t, adj, adjt, B, L, nullptr, 0);
        } else {
            k.tangent(p, v, t, B, L, plan.fwd[j].data(), plan.fwd[j].size());
            k.reverse_tangent(p, v, t, adj, adjt, B, L, plan.rev[j].data(), plan.rev[j].size());
        }
        for (std::size_t i = 0; i < n_in; ++i) {
            const double* src = adjt + i * B;
            double* dst = hess + i * n_columns + j;
            for (std::size_t l = 0; l < L; ++l) dst[std::ptrdiff_t(l) * hess_stride] = src[l];
        }
        if (plan.dense) {  // everything but the constants' tangents, which stay 0
            seed_column(j, 0.0);
            std::fill(t + std::size_t(p.first_op) * B, t + std::size_t(p.n_slots) * B, 0.0);
            std::fill(adjt, adjt + std::size_t(p.n_slots) * B, 0.0);
            continue;
        }
        for (slot z : plan.t_set[j]) std::fill_n(t + std::size_t(z) * B, L, 0.0);
        for (slot z : plan.adjt_set[j]) std::fill_n(adjt + std::size_t(z) * B, L, 0.0);
    }
}

}  // namespace tapegrad
