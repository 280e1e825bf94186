"""Random expression graphs through the transforms: symmetric Hessians, jvp against the
reference backend's forward mode, Hessians of smooth graphs against finite differences
of the gradient.

The transforms exist on the C++ backend only (tg.Function), so these tests do not take
the ``backend`` fixture; the reference backend is used as an oracle.
"""
import importlib
import math

import numpy as np
from helpers import programs, run, table_ops
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from transforms_helpers import fd

import tapegrad as tg

ref = importlib.import_module("tapegrad.reference")

OPS = table_ops()


# ---------------------------------------------------------------------------- random graphs

# Smooth ops on all of their domain (no kinks, no singular points away from / 0 and log 0).
SMOOTH = [(op, a) for op, a in OPS if op in
          {"add", "sub", "mul", "div", "square", "neg", "sin", "cos", "tanh", "sigmoid",
           "exp"}]


def traced_program(program):
    values, _ = program
    return tg.trace(lambda *xs: run(program, tg, leaves=xs)[-1], *values)


def matrix_of(H, n):
    """F.hessian of n scalar arguments as an (n, n) array."""
    return np.array(H if n > 1 else [[H]], dtype=np.float64)


@settings(max_examples=60)
@given(programs(OPS, max_steps=10), st.data())
def test_hessians_of_random_graphs_are_symmetric(program, data):
    """Any graph over the whole table (shared leaves and intermediates)."""
    values, _ = program
    n = len(values)
    F = traced_program(program)
    H = matrix_of(F.hessian(*values), n)
    assume(np.all(np.isfinite(H)))
    scale = max(1.0, float(np.max(np.abs(H))))
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-10 * scale)
    v = data.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n))
    hv = np.atleast_1d(np.array(F.hvp(*values, tuple(v) if n > 1 else v[0])))
    np.testing.assert_allclose(hv, H @ np.array(v), rtol=1e-10, atol=1e-10 * scale)


def reference_jvp(program, tangents):
    """Forward mode over the program on the reference backend: each node's tangent by
    reference.tangent, the reference's tangent column (constants have tangent 0)."""
    values, steps = program
    nodes = run(program, ref)
    tan = list(tangents)
    for (op, _, args), _node in zip(steps, nodes[len(values):]):
        xs = [nodes[a].value if isinstance(a, int) else float(a) for a in args]
        ts = [tan[a] if isinstance(a, int) else 0.0 for a in args]
        if op == "pow" and not isinstance(args[1], int) and float(args[1]) == 2.0:
            op, xs, ts = "square", xs[:1], ts[:1]  # x ** 2 with a number 2 records square
        y, ty = (xs[1], ts[1]) if len(xs) == 2 else (0.0, 0.0)
        tan.append(ref.tangent(op, xs[0], y, ts[0], ty))
    return nodes[-1].value, tan[-1]


@settings(max_examples=60)
@given(programs(OPS, max_steps=10), st.data())
def test_jvp_of_random_graphs_matches_reference_forward_mode(program, data):
    values, _ = program
    n = len(values)
    t = data.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n))
    want_value, want_tangent = reference_jvp(program, t)
    assume(math.isfinite(want_value) and math.isfinite(want_tangent))
    F = traced_program(program)
    value, tout = F.jvp(*values, tuple(t) if n > 1 else t[0])
    assert math.isclose(value, want_value, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(tout, want_tangent, rel_tol=1e-9, abs_tol=1e-9), (tout, want_tangent)
    # forward mode and reverse mode agree: J t = grad . t
    g = np.atleast_1d(np.array(F.grad(*values), dtype=np.float64))
    assume(np.all(np.isfinite(g)))
    assert math.isclose(tout, float(g @ np.array(t)), rel_tol=1e-9,
                        abs_tol=1e-9 * max(1.0, float(np.max(np.abs(g)))))


@settings(max_examples=40)
@given(programs(SMOOTH, max_leaves=3, max_steps=8))
def test_hessians_of_smooth_random_graphs_match_finite_differences(program):
    values, _ = program
    n = len(values)
    F = traced_program(program)
    x = np.array(values, dtype=np.float64)

    def gradient(v):
        return np.atleast_1d(np.array(F.grad(*v.tolist()), dtype=np.float64))

    # keep away from poles of div and overflow of exp: moderate values and derivatives
    g = gradient(x)
    assume(np.all(np.isfinite(g)) and np.max(np.abs(g), initial=0.0) < 1e3)
    H = matrix_of(F.hessian(*values), n)
    assume(np.all(np.isfinite(H)) and np.max(np.abs(H)) < 1e4)
    want = np.stack([fd(gradient, x, e, h=1e-3) for e in np.eye(n)], axis=1)
    assume(np.all(np.isfinite(want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(H, want, rtol=1e-6, atol=1e-6 * scale)
