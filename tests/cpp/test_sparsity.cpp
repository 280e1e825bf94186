// Sparsity patterns and colorings (sparsity.hpp): the op table's second-order structure,
// the greedy colorings' validity and counts, and star recovery.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "tapegrad/sparsity.hpp"

using namespace tapegrad;

namespace {

pattern symmetric(std::size_t n, const std::set<std::pair<int, int>>& edges, bool diagonal) {
    std::vector<std::vector<int>> rows(n);
    for (auto [i, j] : edges) {
        rows[std::size_t(i)].push_back(j);
        rows[std::size_t(j)].push_back(i);
    }
    pattern P;
    P.rows = P.cols = n;
    for (std::size_t i = 0; i < n; ++i) {
        if (diagonal) rows[i].push_back(int(i));
        std::sort(rows[i].begin(), rows[i].end());
        rows[i].erase(std::unique(rows[i].begin(), rows[i].end()), rows[i].end());
        for (int j : rows[i]) P.indices.push_back(j);
        P.indptr.push_back(std::int64_t(P.indices.size()));
    }
    return P;
}

pattern banded(std::size_t n, int half_width) {
    std::set<std::pair<int, int>> e;
    for (int i = 0; i < int(n); ++i)
        for (int k = 1; k <= half_width && i + k < int(n); ++k) e.insert({i, i + k});
    return symmetric(n, e, true);
}

pattern arrowhead(std::size_t n) {
    std::set<std::pair<int, int>> e;
    for (int i = 1; i < int(n); ++i) e.insert({0, i});
    return symmetric(n, e, true);
}

int n_colors(const std::vector<std::int32_t>& c) {
    return c.empty() ? 0 : *std::max_element(c.begin(), c.end()) + 1;
}

// Brute force: a distance-1 coloring with no two-colored path on four vertices.
bool is_star_coloring(const pattern& H, const std::vector<std::int32_t>& c) {
    const std::size_t n = H.rows;
    std::vector<std::vector<int>> nb(n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::int64_t e = H.indptr[i]; e < H.indptr[i + 1]; ++e)
            if (std::size_t(H.indices[std::size_t(e)]) != i)
                nb[i].push_back(H.indices[std::size_t(e)]);
    for (std::size_t v = 0; v < n; ++v)
        for (int w : nb[v]) {
            if (c[v] == c[std::size_t(w)]) return false;
            for (int x : nb[std::size_t(w)])
                for (int y : nb[std::size_t(x)])
                    if (x != int(v) && y != w && y != int(v) && c[v] == c[std::size_t(x)] &&
                        c[std::size_t(w)] == c[std::size_t(y)])
                        return false;
        }
    return true;
}

}  // namespace

TEST_CASE("op structure: first and second order read off the table") {
    CHECK(structure_of(op::mul).d2[1]);
    CHECK_FALSE(structure_of(op::mul).d2[0]);
    CHECK_FALSE(structure_of(op::mul).d2[2]);
    CHECK(structure_of(op::div).d2[1]);
    CHECK(structure_of(op::div).d2[2]);
    CHECK_FALSE(structure_of(op::div).d2[0]);
    CHECK(structure_of(op::sin).d2[0]);
    CHECK(structure_of(op::square).d2[0]);
    for (op o : {op::add, op::sub, op::neg, op::relu, op::abs, op::maximum, op::if_true}) {
        const op_structure& s = structure_of(o);
        CHECK_FALSE((s.d2[0] || s.d2[1] || s.d2[2]));
    }
    CHECK(structure_of(op::floor).dzero[0]);
    CHECK(structure_of(op::lt).dzero[0]);
    CHECK(structure_of(op::lt).dzero[1]);
    CHECK(structure_of(op::if_true).dzero[0]);
    CHECK_FALSE(structure_of(op::if_true).dzero[1]);
    CHECK(structure_of(op::detach).dzero[0]);
    CHECK_FALSE(structure_of(op::sin).dzero[0]);
    CHECK(structure_of(op::pow).d2[0]);
    CHECK(structure_of(op::pow).d2[1]);
    CHECK(structure_of(op::pow).d2[2]);
}

TEST_CASE("star coloring: banded patterns take bandwidth + 1 colors, arrowheads 2") {
    for (int w : {1, 2, 3}) {
        const pattern H = banded(50, w);
        const auto c = star_color(H);
        CHECK(is_star_coloring(H, c));
        // The optimum for a band of half-width w is at most 2w + 1 (and at least w + 1).
        CHECK(n_colors(c) >= w + 1);
        CHECK(n_colors(c) <= 2 * w + 1);
        CHECK_NOTHROW(star_recovery(H, c));
    }
    CHECK(n_colors(star_color(banded(50, 1))) == 3);  // a path needs 3: the optimum
    const pattern A = arrowhead(40);
    const auto c = star_color(A);
    CHECK(n_colors(c) == 2);
    CHECK(is_star_coloring(A, c));
}

TEST_CASE("star coloring: random symmetric patterns are star colored and recoverable") {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 40; ++trial) {
        const std::size_t n = 5 + rng() % 30;
        std::set<std::pair<int, int>> e;
        const std::size_t m = rng() % (2 * n + 1);
        for (std::size_t k = 0; k < m; ++k) {
            int i = int(rng() % n), j = int(rng() % n);
            if (i != j) e.insert({std::min(i, j), std::max(i, j)});
        }
        const pattern H = symmetric(n, e, trial % 2 == 0);
        const auto c = star_color(H);
        CHECK(is_star_coloring(H, c));
        CHECK_NOTHROW(star_recovery(H, c));
    }
}

TEST_CASE("star recovery: refuses a coloring that is not a star coloring") {
    const pattern path = banded(4, 1);  // 0 - 1 - 2 - 3
    CHECK_THROWS_AS(star_recovery(path, {0, 1, 0, 1}), std::logic_error);  // two colors
    CHECK_THROWS_AS(star_recovery(path, {0, 0, 1, 2}), std::logic_error);  // neighbours
}

TEST_CASE("column coloring: columns sharing a row differ; a band of width w takes w") {
    pattern J;  // 6 x 8, row i covers columns i, i + 1, i + 2
    J.rows = 6;
    J.cols = 8;
    for (int i = 0; i < 6; ++i) {
        for (int k = 0; k < 3; ++k) J.indices.push_back(i + k);
        J.indptr.push_back(std::int64_t(J.indices.size()));
    }
    const auto c = color_columns(J);
    CHECK(n_colors(c) == 3);
    for (int i = 0; i < 6; ++i)
        for (int k = 0; k < 3; ++k)
            for (int l = k + 1; l < 3; ++l) CHECK(c[std::size_t(i + k)] != c[std::size_t(i + l)]);
}
