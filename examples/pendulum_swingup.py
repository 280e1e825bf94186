#!/usr/bin/env python
"""Optimal control by direct collocation: swing a pendulum up with the least effort, solved
by IPOPT with tapegrad's sparse derivatives, and the same NLP solved by CasADi's IPOPT.

The pendulum: theta' = omega, omega' = u - G sin(theta) - B omega, from hanging at rest
(theta = 0) to upright at rest (theta = pi) in T seconds, with a torque |u| <= U_MAX too
weak to lift it directly (U_MAX < G), so it has to swing. The cost is the integral of u^2.
Trapezoidal collocation on N intervals: the unknowns z = (theta_k, omega_k, u_k) for
k = 0..N (3(N + 1) of them, interleaved, so the derivatives are banded), the 2N defect
constraints x_{k+1} - x_k - h/2 (f_k + f_{k+1}) = 0, and the boundary states fixed by
bounds.

    python examples/pendulum_swingup.py                    # N = 400, both solvers, table
    python examples/pendulum_swingup.py --intervals 100 --check

The NLP is written once (`cost`, `defects`) and built twice: traced by tapegrad
(tapegrad.optimize.ipopt_problem, which needs cyipopt: the extra 'ipopt') and as CasADi SX
expressions for casadi.nlpsol('ipopt'). Both IPOPTs run with the same options from the same
start. The table gives the optimum, iterations, and the seconds spent in derivative
evaluation (gradient, constraint Jacobian, Lagrangian Hessian): timers around tapegrad's
callbacks, CasADi's own statistics on its side. --check exits 1 unless both converge to
the same optimum (cost within 1e-6 relative, states and controls within 1e-4).
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

G, B, U_MAX, T = 9.81, 0.1, 3.0, 8.0
IPOPT_OPTIONS = {"tol": 1e-8, "print_level": 0, "sb": "yes", "max_iter": 500}


def cost(z, N):
    """Trapezoidal integral of u^2."""
    h = T / N
    u = [z[3 * k + 2] for k in range(N + 1)]
    return h / 2 * sum(u[k] * u[k] + u[k + 1] * u[k + 1] for k in range(N))


def defects(z, N, sin):
    """The 2N trapezoidal defects, as a list (tapegrad Vars or CasADi SX)."""
    h = T / N
    out = []
    for k in range(N):
        th0, om0, u0 = z[3 * k], z[3 * k + 1], z[3 * k + 2]
        th1, om1, u1 = z[3 * k + 3], z[3 * k + 4], z[3 * k + 5]
        a0 = u0 - G * sin(th0) - B * om0
        a1 = u1 - G * sin(th1) - B * om1
        out.append(th1 - th0 - h / 2 * (om0 + om1))
        out.append(om1 - om0 - h / 2 * (a0 + a1))
    return out


def bounds(N):
    """(lb, ub) on z: |u| <= U_MAX, the boundary states fixed, the rest free."""
    lb = np.tile([-np.inf, -np.inf, -U_MAX], N + 1)
    ub = np.tile([np.inf, np.inf, U_MAX], N + 1)
    lb[[0, 1]] = ub[[0, 1]] = 0.0, 0.0
    lb[[3 * N, 3 * N + 1]] = ub[[3 * N, 3 * N + 1]] = math.pi, 0.0
    return lb, ub


def start(N):
    """The straight line from hanging to upright, no torque."""
    t = np.linspace(0.0, T, N + 1)
    return np.column_stack([math.pi * t / T, np.full(N + 1, math.pi / T),
                            np.zeros(N + 1)]).ravel()


def solve_tapegrad(N, options=IPOPT_OPTIONS):
    import tapegrad as tg

    lb, ub = bounds(N)
    z0 = start(N)
    t0 = time.perf_counter()
    problem = tg.optimize.ipopt_problem(
        lambda z: cost(z, N), z0, lambda z: np.array(defects(z, N, tg.sin)),
        lb=lb, ub=ub, options=options)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    z, info = problem.solve(z0)
    solve = time.perf_counter() - t0
    nlp = problem.nlp
    return dict(system="tapegrad + IPOPT (cyipopt)", z=z, cost=info["obj_val"],
                status=info["status"], converged=info["status"] == 0,
                iterations=nlp.iterations, setup_s=setup, solve_s=solve,
                derivative_s=nlp.derivative_seconds,
                per_callback={k: tuple(v) for k, v in nlp.timings.items()},
                nnz_jacobian=len(nlp.jacobianstructure()[0]),
                nnz_hessian=len(nlp.hessianstructure()[0]))


def solve_casadi(N, options=IPOPT_OPTIONS):
    import casadi as ca

    lb, ub = bounds(N)
    z0 = start(N)
    t0 = time.perf_counter()
    z = ca.SX.sym("z", 3 * (N + 1))
    nlp = {"x": z, "f": cost(z, N), "g": ca.vertcat(*defects(z, N, ca.sin))}
    opts = {"ipopt": dict(options), "print_time": False}
    solver = ca.nlpsol("pendulum", "ipopt", nlp, opts)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = solver(x0=z0, lbx=lb, ubx=ub, lbg=0.0, ubg=0.0)
    solve = time.perf_counter() - t0
    st = solver.stats()
    calls = {k: (st.get(f"n_call_{name}", 0), st.get(f"t_wall_{name}", 0.0))
             for k, name in (("objective", "nlp_f"), ("constraints", "nlp_g"),
                             ("gradient", "nlp_grad_f"), ("jacobian", "nlp_jac_g"),
                             ("hessian", "nlp_hess_l"))}
    return dict(system=f"CasADi {ca.__version__} SX + IPOPT (nlpsol)", z=np.asarray(sol["x"]).ravel(),
                cost=float(sol["f"]), status=st["return_status"], converged=st["success"],
                iterations=st["iter_count"], setup_s=setup, solve_s=solve,
                derivative_s=sum(calls[k][1] for k in ("gradient", "jacobian", "hessian")),
                per_callback=calls)


def compare(a, b):
    """(relative cost difference, max abs difference of the solutions)."""
    return (abs(a["cost"] - b["cost"]) / max(abs(b["cost"]), 1e-300),
            float(np.max(np.abs(a["z"] - b["z"]))))


def report(results, N):
    from textwrap import dedent

    print(dedent(f"""
        Pendulum swing-up, trapezoidal collocation: N = {N} intervals, {3 * (N + 1)} unknowns,
        {2 * N} constraints, T = {T} s, |u| <= {U_MAX}.
        """).strip())
    r0 = results[0]
    if "nnz_jacobian" in r0:
        print(f"Jacobian nonzeros {r0['nnz_jacobian']}, Hessian lower-triangle nonzeros "
              f"{r0['nnz_hessian']}")
    head = ("system", "status", "cost", "iterations", "derivatives s", "solve s", "setup s")
    rows = [(r["system"], "converged" if r["converged"] else f"FAILED ({r['status']})",
             f"{r['cost']:.10g}", r["iterations"], f"{r['derivative_s']:.4f}",
             f"{r['solve_s']:.3f}", f"{r['setup_s']:.3f}") for r in results]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    for r in results:
        calls = ", ".join(f"{k} {n} calls {s * 1e3:.1f} ms" for k, (n, s) in r["per_callback"].items())
        print(f"- {r['system']}: {calls}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intervals", type=int, default=400, help="N (default 400)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless both solvers converge to the same optimum")
    ap.add_argument("--no-casadi", action="store_true",
                    help="tapegrad only (also what happens when casadi is not installed)")
    args = ap.parse_args(argv)
    N = args.intervals
    results = [solve_tapegrad(N)]
    if not args.no_casadi:
        try:
            results.append(solve_casadi(N))
        except ImportError as err:
            print(f"CasADi not run ({err}): tapegrad only\n")
    report(results, N)
    ok = all(r["converged"] for r in results)
    if len(results) == 2:
        dcost, dz = compare(*results)
        ratio = results[0]["derivative_s"] / max(results[1]["derivative_s"], 1e-12)
        print(f"\nsame optimum: cost differs by {dcost:.2e} (relative), solutions by {dz:.2e} "
              f"(max abs); derivative time tapegrad / CasADi = {ratio:.2f}x")
        ok = ok and dcost <= 1e-6 and dz <= 1e-4
    if args.check:
        print("check:", "ok" if ok else "FAILED")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
