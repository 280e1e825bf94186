// The layout question for running loops op by op, measured outside tapegrad: the
// Rosenbrock loop's 8-op block over K = 10^4 iterations (80,000 ops), each block op a
// loop over the iterations, the carried sum a reduction in traced order. Slots as traced
// (iteration-major: one op's values 8 apart) against op-major (one op's values
// contiguous), which a run's slots could be renumbered to (non-carried ops first; a
// topological order, so every sweep still works on the program).
//
//   g++ -O3 -std=c++17 -ffp-contract=off bench/structure_layout.cpp -o /tmp/layout && /tmp/layout
//
// Measured here (2 shared cores, best of 200): iteration-major 79 us (0.99 ns/op),
// op-major 22 us (0.28 ns/op); the interpreter's one-point forward of the same traced
// program takes 48-57 us (_core._forward_slots, bench/structure_cost.py --forward).
#include <chrono>
#include <cstdio>
#include <vector>
using clk = std::chrono::steady_clock;
template <class F> __attribute__((noinline)) void loop(F f, double* __restrict o, long so, const double* __restrict a, long sa, const double* __restrict b, long sb, long K) {
    if (so == 1 && sa == 1 && sb == 1) { for (long k = 0; k < K; ++k) o[k] = f(a[k], b[k]); return; }
    for (long k = 0; k < K; ++k) o[k * so] = f(a[k * sa], b[k * sb]);
}
int main() {
    const long K = 10000, P = 8;
    std::vector<double> x(K + 1), v(P * K + 16), c100(1, 100.0), c1(1, 1.0);
    for (long i = 0; i <= K; ++i) x[i] = 0.001 * i;
    auto sq = [](double u, double) { return u * u; };
    auto sub = [](double u, double w) { return u - w; };
    auto mul = [](double u, double w) { return u * w; };
    for (int layout = 0; layout < 2; ++layout) {
        // op j's value at iteration k: v[at(j, k)]
        auto at = [&](long j, long k) { return layout ? j * K + k : k * P + j; };
        const long so = layout ? 1 : P;
        double best = 1e9, sum = 0;
        for (int rep = 0; rep < 200; ++rep) {
            auto t0 = clk::now();
            double* V = v.data();
            loop(sq, V + at(0, 0), so, x.data(), 1, x.data(), 1, K);                 // x[i]^2
            loop(sub, V + at(1, 0), so, x.data() + 1, 1, V + at(0, 0), so, K);      // x[i+1] - .
            loop(sq, V + at(2, 0), so, V + at(1, 0), so, V + at(1, 0), so, K);
            loop(mul, V + at(3, 0), so, c100.data(), 0, V + at(2, 0), so, K);
            loop(sub, V + at(5, 0), so, c1.data(), 0, x.data(), 1, K);              // 1 - x[i]
            loop(sq, V + at(6, 0), so, V + at(5, 0), so, V + at(5, 0), so, K);
            double s = 0;                                                         // the carried sum, traced order
            for (long k = 0; k < K; ++k) { s = V[at(4, k)] = s + V[at(3, k)]; s = V[at(7, k)] = s + V[at(6, k)]; }
            double t = std::chrono::duration<double, std::micro>(clk::now() - t0).count();
            if (t < best) best = t;
            sum += s;
        }
        printf("%s: %.1f us for %ld ops (%.2f ns/op) [%g]\n", layout ? "op-major (unit stride)" : "iteration-major (stride 8)", best, P * K, 1e3 * best / (P * K), sum);
    }
}
