"""Recorded reverse sweeps (tapegrad.autograd.grad with create_graph=True) and nested
tg.grad: the seed's examples one order up, every smooth op's derivatives up to order 4
against mpmath, the recorded sweep against backward() on random graphs, the tape staying
flat in a loop whose loss holds a gradient, and bad input."""
import copy
import importlib
import math
import random

import mpmath
import numpy as np
import pytest
from helpers import programs, run, spec_for, table_ops
from hypothesis import given, settings
from mpmath_oracle import ORACLES, M

tg = importlib.import_module("tapegrad")
core = importlib.import_module("tapegrad._core")
autograd = importlib.import_module("tapegrad.autograd")

# Ops whose derivatives are smooth on their oracle's domain (no piecewise rules).
SMOOTH = [(op, arity) for op, arity in table_ops()
          if not ORACLES[op].piecewise_constant and not ORACLES[op].piecewise_linear
          and op not in ("if_true", "if_false", "detach", "maximum", "minimum", "relu",
                         "abs", "clamp_min", "clamp_max", "fmax", "fmin", "copysign")]


def test_nested_grad_of_a_cube():
    f = lambda x: x ** 3  # noqa: E731
    assert tg.grad(f)(2.0) == 12.0
    assert tg.grad(tg.grad(f))(2.0) == 12.0
    assert tg.grad(tg.grad(tg.grad(f)))(2.0) == 6.0
    assert tg.grad(tg.grad(tg.grad(tg.grad(f))))(2.0) == 0.0


def test_grad_of_vars_returns_vars():
    """tg.grad called on Vars (an enclosing transform's) records its sweep and returns
    Vars, for a Var and for an object array of Vars."""
    x = tg.Var(1.0)
    g = tg.grad(lambda a, b: a * a + a * b)(x, 2.0)
    assert isinstance(g, tg.Var) and g.value == 4.0
    assert autograd.grad(g, x) == (2.0,)
    w = np.array([tg.Var(1.0), tg.Var(2.0)], dtype=object)
    gw = tg.grad(lambda v: (v * v).sum())(w)
    assert gw.dtype == object and [v.value for v in gw] == [2.0, 4.0]
    value, gv = tg.value_and_grad(lambda a: tg.exp(a))(x)
    assert isinstance(value, tg.Var) and value.value == gv.value == math.e


def test_the_seeds_examples_one_order_up():
    # f = x^2 + x y: d2f/dx2 = 2, d2f/dxdy = 1 (the seed's first example at x=3, y=4)
    x, y = tg.Var(3.0), tg.Var(4.0)
    f = x * x + x * y
    gx, gy = autograd.grad(f, [x, y], create_graph=True)
    assert (gx.value, gy.value) == (10.0, 3.0)
    assert autograd.grad(gx, [x, y]) == (2.0, 1.0)
    assert autograd.grad(gy, [x, y]) == (1.0, 0.0)
    # sigmoid(w x) at w = 0.5, x = 2 (the seed's second): d/dx = s (1 - s) w
    w, x = tg.Var(0.5), tg.Var(2.0)
    (gx,) = autograd.grad(tg.sigmoid(w * x), x, create_graph=True)
    s = 1 / (1 + math.exp(-1.0))
    assert gx.value == pytest.approx(s * (1 - s) * 0.5, rel=1e-15)
    # d/dw of that: s(1-s) + w x s(1-s)(1-2s)
    (gxw,) = autograd.grad(gx, w)
    assert gxw == pytest.approx(s * (1 - s) + 1.0 * s * (1 - s) * (1 - 2 * s), rel=1e-14)


def derivatives(backend, op, p, orders):
    """[d^n op / dx_{i1} ... dx_{in}] for each index tuple in orders, by nested recorded
    sweeps (each order differentiates the previous order's Var) on ``backend``."""
    xs = [backend.Var(v) for v in p]
    out = getattr(backend, op)(*xs)
    got = {}
    for idx in orders:
        d = out
        for i in idx:
            (d,) = backend.autograd.grad(d, xs[i], create_graph=True)
        got[idx] = d.value
    return got


def mp_derivative(op, p, idx):
    f = ORACLES[op].f
    counts = tuple(idx.count(i) for i in range(len(p)))
    with mpmath.workdps(60):
        return mpmath.diff(lambda *a: f(*a), tuple(M(v) for v in p), counts)


@pytest.mark.parametrize("op, arity", SMOOTH, ids=[op for op, _ in SMOOTH])
def test_derivatives_up_to_order_4_match_mpmath(backend, op, arity):
    """Orders 1-3 in every argument combination, and order 4 of unary ops, at moderate
    points of the domain (tests/helpers.py's SPECS), within 1e-9 relative of mpmath's (the
    recorded rules round like the rules, so errors grow with the order a few ulp at a
    time), on both backends."""
    o = ORACLES[op]
    if arity == 1:
        orders = [(0,) * n for n in (1, 2, 3, 4)]
    else:
        wrt = [i for i in range(2) if i not in o.no_grad]
        orders = [(i,) for i in wrt] + [(i, j) for i in wrt for j in wrt] + \
            [(i, j, k) for i in wrt for j in wrt for k in wrt]
    r = random.Random(f"autograd-{op}")
    for _ in range(4):
        p = tuple(float(a) for a in spec_for(op).domain(r))  # moderate points of the domain
        got = derivatives(backend, op, p, orders)
        for idx, g in got.items():
            want = mp_derivative(op, p, list(idx))
            # (mpmath.diff's own noise where the exact derivative is 0: ~1e-70)
            assert abs(g - float(want)) <= 1e-9 * abs(float(want)) + 1e-50, (
                op, p, idx, g, float(want))


@settings(max_examples=150, deadline=None)
@given(program=programs(table_ops()))
def test_recorded_sweep_values_are_backwards(program):
    """First derivatives recorded equal backward()'s (the same rules in the same order),
    as numbers: -0.0 and 0.0 compare equal, and NaN matches NaN."""
    nodes = run(program, tg)
    leaves = nodes[:len(program[0])]
    recorded = autograd.grad(nodes[-1], leaves, create_graph=True)
    numbers = autograd.grad(nodes[-1], leaves)
    nodes[-1].backward()
    for leaf, r, n in zip(leaves, recorded, numbers):
        for got in (r.value, n):
            assert got == leaf.grad or (math.isnan(got) and math.isnan(leaf.grad)), (
                program, got, leaf.grad)
    core._tape_check()


def test_inputs_grad_is_left_alone():
    x = tg.Var(1.5)
    (g,) = autograd.grad(x * x, x, create_graph=True)
    assert x.grad == 0.0 and g.value == 3.0


def penalty_gradient_by_autograd(w, x):
    (fx,) = autograd.grad(w * tg.sin(w * x), x, create_graph=True)
    return fx


def penalty_gradient_by_backward(w, x):
    (w * tg.sin(w * x)).backward(create_graph=True)
    w.zero_grad()  # (w's .grad got a recorded gradient too: not this loss's)
    return x.grad


@pytest.mark.parametrize("gradient", [penalty_gradient_by_autograd,
                                      penalty_gradient_by_backward])
def test_a_loss_that_holds_a_gradient_keeps_the_tape_flat(gradient):
    """Gradient penalty: loss = (d f / d x - 0.5)^2 with f = w sin(w x), trained on w, the
    gradient recorded by autograd.grad or by backward(create_graph=True)."""
    w = tg.Var(0.3)
    sizes = []
    for step in range(300):
        x = tg.Var(0.7)
        loss = (gradient(w, x) - 0.5) ** 2
        loss.backward()
        w.value -= 0.1 * w.grad
        w.zero_grad()
        if step % 50 == 49:
            core._tape_check()
            sizes.append(core.tape_stats()["live"])
    assert len(set(sizes)) == 1, sizes  # the same live nodes every step: nothing leaks
    assert abs(w.value ** 2 * math.cos(w.value * 0.7) - 0.5) < 1e-6  # it trained


def test_seeds_and_several_outputs():
    x, y = tg.Var(2.0), tg.Var(3.0)
    a, b = x * y, x + y
    assert autograd.grad([a, b], [x, y], grad_outputs=[2.0, -1.0]) == (5.0, 3.0)
    s = tg.Var(10.0)
    (g,) = autograd.grad(a, x, grad_outputs=s, create_graph=True)
    assert g.value == 30.0
    assert autograd.grad(g, [s, y]) == (3.0, 10.0)


def test_unused_inputs_get_zero():
    x, y = tg.Var(1.0), tg.Var(2.0)
    (g,) = autograd.grad(x * 3.0, y, create_graph=True)
    assert g.value == 0.0
    assert autograd.grad(x * 3.0, y) == (0.0,)


def test_arrays_of_vars():
    w = np.array([tg.Var(1.0), tg.Var(2.0)], dtype=object)
    f = (w[0] * w[1]) ** 2
    (g,) = autograd.grad(f, w)
    np.testing.assert_array_equal(g, [8.0, 4.0])
    (g,) = autograd.grad(f, w, create_graph=True)
    assert g.dtype == object and [v.value for v in g] == [8.0, 4.0]


@pytest.mark.parametrize("call, error, message", [
    (lambda x: autograd.grad(x * x, 3.0), TypeError, "inputs must be a Var"),
    (lambda x: autograd.grad(2.0, x), TypeError, "outputs must be a Var"),
    (lambda x: autograd.grad(x * x, [x], grad_outputs=[1.0, 2.0]), ValueError, "2 grad_outputs"),
    (lambda x: autograd.grad(x * x, [x], grad_outputs=["a"]), TypeError, "numbers or Vars"),
    (lambda x: autograd.grad(x * x, [], create_graph=True), ValueError, "inputs is empty"),
    (lambda x: autograd.grad(x * x, x, create_graph=1), TypeError, "True or False"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call(tg.Var(1.0))


def test_vars_of_another_thread_are_refused():
    from helpers import in_new_thread
    x = tg.Var(1.0)
    other = in_new_thread(lambda: tg.Var(2.0))
    with pytest.raises(ValueError, match="different tapes"):
        autograd.grad(x * 2.0, other)


def test_inside_a_trace_floats_are_refused():
    def f(x):
        (g,) = autograd.grad(x * x, x)  # floats: they would be constants of the trace
        return g * x
    with pytest.raises(tg.TraceError, match="create_graph"):
        tg.trace(f, 1.0)


def test_traced_gradients_replay_and_differentiate_again():
    """tg.trace(tg.grad(f)): the recorded sweep is part of the Function, so it replays at
    new points and F.grad / F.hessian give the second and third derivatives."""
    f = lambda x: x ** 3 * tg.sin(x)  # noqa: E731
    F = tg.trace(tg.grad(f), 0.5)
    for x in (0.5, -1.3, 2.0, 7.5):
        assert F(x) == tg.grad(f)(x)
        with mpmath.workdps(40):
            mf = lambda t: t ** 3 * mpmath.sin(t)  # noqa: E731
            d2, d3 = (float(mpmath.diff(mf, x, n)) for n in (2, 3))
        assert F.grad(x) == pytest.approx(d2, rel=1e-13)
        assert F.hessian(x) == pytest.approx(d3, rel=1e-12)
    X = np.linspace(-2, 2, 101)  # (0 included: x ** 3's constant exponent guards nothing)
    # batched: libmvec's sin and cos, a few ulp from scalar libm (tests/test_trace_batch.py)
    np.testing.assert_allclose(F(X), [tg.grad(f)(x) for x in X], rtol=1e-13)


def test_a_rule_branch_in_a_trace_is_a_guard():
    """relu's recorded derivative is the adjoint for x > 0: replayed at x < 0 that would be
    silently wrong, so the rule's comparison is a guard (or a retrace)."""
    f = lambda x: tg.relu(x) * x * x  # noqa: E731
    F = tg.trace(tg.grad(f), 1.0)
    assert F(2.0) == 12.0
    with pytest.raises(tg.TraceError, match="relu's derivative rule, in the gradient taken at "
                       ".*test_autograd.py"):
        F(-1.0)
    R = tg.trace(tg.grad(f), 1.0, retrace=True)
    assert (R(2.0), R(-1.0)) == (12.0, 0.0)


@settings(max_examples=100, deadline=None)
@given(program=programs(SMOOTH, max_leaves=3, max_steps=10))
def test_recorded_hessian_matches_forward_over_reverse(program):
    """Reverse-over-reverse (a recorded sweep, differentiated again) against the traced
    Function's Hessian (forward-over-reverse on dual numbers): the same second derivatives,
    in other orders of rounding, wherever both are finite."""
    values = program[0]
    nodes = run(program, tg)
    leaves = nodes[:len(values)]
    grads = autograd.grad(nodes[-1], leaves, create_graph=True)
    H = np.array([list(autograd.grad(g, leaves)) for g in grads])

    def fn(*xs):
        return run(program, tg, leaves=xs)[-1]

    F = tg.trace(fn, *values)
    want = np.array(F.hessian(*values), dtype=float).reshape(len(values), len(values))
    both = np.isfinite(H) & np.isfinite(want)
    scale = np.max(np.abs(want[both]), initial=1.0)
    np.testing.assert_allclose(H[both], want[both], rtol=1e-9, atol=1e-12 * scale)


def test_gradcheck_and_the_explain_page_see_recorded_sweeps():
    """gradcheck of a function that takes a gradient (finite differences of the gradient
    against its recorded derivative), and the page of a gradient shows its backward nodes
    (sin's rule recorded cos)."""
    f = lambda y: tg.sin(y) * y  # noqa: E731
    report = tg.gradcheck(lambda x: tg.grad(f)(x), 2.0)
    assert report.ok, report
    assert report.inputs[0].grad == pytest.approx(2 * math.cos(2.0) - 2.0 * math.sin(2.0),
                                                  rel=1e-14)
    x = tg.Var(2.0)
    (g,) = autograd.grad(f(x), x, create_graph=True)
    explain_page = importlib.import_module("tapegrad.explain_page")
    ops = [n["op"] for n in explain_page.explain_data(g)["nodes"]]
    assert "cos" in ops and "sin" in ops


F3 = lambda t: t ** 3 * tg.sin(t)  # noqa: E731


def f3_derivative(n, x=2.0):
    with mpmath.workdps(40):
        return float(mpmath.diff(lambda t: t ** 3 * mpmath.sin(t), x, n))


@pytest.mark.parametrize("name, fn, order", [
    ("grad(jvp)", lambda x: tg.jvp(F3, (x,), (1.0,))[1], 2),
    ("grad(hvp)", lambda x: tg.hvp(F3, (x,), (1.0,)), 3),
    ("grad(hessian)", lambda x: tg.hessian(F3)(x), 3),
    ("grad(jacobian)", lambda x: tg.jacobian(F3)(x), 2),
    ("grad(vjp)", lambda x: tg.vjp(F3, x)[1](1.0)[0], 2),
    ("grad(grad(grad))", lambda x: tg.grad(tg.grad(F3))(x), 3),
])
def test_every_transform_nests_inside_grad(name, fn, order):
    """Each transform called on an enclosing transform's Vars is recorded, so the enclosing
    tg.grad differentiates through it: one order more, against mpmath."""
    assert tg.grad(fn)(2.0) == pytest.approx(f3_derivative(order), rel=1e-13), name


@pytest.mark.parametrize("name, call, order", [
    ("hessian(grad)", lambda: tg.hessian(lambda x: tg.grad(F3)(x))(2.0), 3),
    ("jvp(grad)", lambda: tg.jvp(tg.grad(F3), (2.0,), (1.0,))[1], 2),
    ("jacobian(grad)", lambda: tg.jacobian(tg.grad(F3))(2.0), 2),
    ("hvp(grad . grad)", lambda: tg.hvp(lambda x: tg.grad(F3)(x), (2.0,), (1.0,)), 3),
])
def test_transforms_of_a_function_that_takes_a_gradient(name, call, order):
    """The outer transform traces fn, whose gradient is recorded into the trace."""
    assert float(call()) == pytest.approx(f3_derivative(order), rel=1e-13), name


def test_mixed_partials_through_a_nested_hessian():
    h = lambda a, b: tg.sin(a * b) + a ** 2 * b  # noqa: E731
    with mpmath.workdps(40):
        want = float(mpmath.diff(lambda a, b: mpmath.sin(a * b) + a ** 2 * b, (0.3, 1.2), (2, 1)))
    got = tg.grad(lambda a: tg.hessian(h, argnums=(0, 1))(a, 1.2)[0][1])(0.3)
    assert got == pytest.approx(want, rel=1e-13)
    # an enclosing Var reaching fn through an argument that is not differentiated
    with mpmath.workdps(40):
        want = float(mpmath.diff(lambda a, b: mpmath.sin(a * b) + a ** 2 * b, (0.3, 1.2), (1, 1)))
    b = tg.Var(1.2)
    assert tg.grad(lambda bb: tg.grad(h)(0.3, bb))(1.2) == pytest.approx(want, rel=1e-14)
    assert b.grad == 0.0


def test_vector_functions_nest():
    g = lambda v: tg.sin(v[0] * v[1]) + v[0] ** 2 * v[1]  # noqa: E731
    x0 = np.array([0.3, 1.2])
    H = tg.hessian(g)(x0)
    np.testing.assert_allclose(tg.jacobian(lambda v: tg.grad(g)(v))(x0), H, rtol=1e-14)
    third = tg.grad(lambda v: tg.hessian(g)(v).sum())(x0)
    with mpmath.workdps(40):
        F = lambda a, b: mpmath.sin(a * b) + a ** 2 * b  # noqa: E731
        d = {k: float(mpmath.diff(F, (0.3, 1.2), k)) for k in [(3, 0), (2, 1), (1, 2), (0, 3)]}
    np.testing.assert_allclose(third, [d[3, 0] + 2 * d[2, 1] + d[1, 2],
                                       d[2, 1] + 2 * d[1, 2] + d[0, 3]], rtol=1e-12)


def test_backward_with_create_graph_gives_leaves_gradients_with_graphs():
    """PyTorch's backward(create_graph=True): each leaf's .grad becomes a Var (old grad plus
    the recorded gradient), differentiable again; non-leaf grads are not touched."""
    x, y, unused = tg.Var(2.0), tg.Var(3.0), tg.Var(5.0)
    h = x * y
    f = x ** 3 * y + h
    f.backward(create_graph=True)
    gx, gy = x.grad, y.grad
    assert isinstance(gx, tg.Var) and (gx.value, gy.value) == (39.0, 10.0)
    assert (h.grad, unused.grad) == (0.0, 0.0)
    assert repr(x) == "Var(value=2.0, grad=Var(value=39.0, grad=0.0))"
    x.zero_grad()
    y.zero_grad()
    gx.backward()  # d/dx (3 x^2 y + y) = 6 x y, d/dy = 3 x^2 + 1
    assert (x.grad, y.grad) == (36.0, 13.0)
    with pytest.raises(TypeError, match="one optional keyword argument, create_graph"):
        f.backward(1.0)
    with pytest.raises(TypeError, match="create_graph"):
        f.backward(retain_graph=True)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_with_create_graph_accumulates_like_torch():
    torch = pytest.importorskip("torch")
    x, t = tg.Var(1.5), torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    x.grad = 0.25
    t.grad = torch.tensor(0.25, dtype=torch.float64)
    for v in (x, t):
        (v * v * v).backward(create_graph=True)  # a float grad, then a Var grad, ...
        (v * v).backward(create_graph=True)
        (v ** 4).backward()  # a plain backward into a grad with a graph
    assert float(x.grad) == t.grad.item()
    (ggx,) = autograd.grad(x.grad, x)
    (ggt,) = torch.autograd.grad(t.grad, t)
    assert ggx == ggt.item()


def test_a_recorded_grad_lives_on_its_var_object():
    """Like PyTorch's .grad, the recorded gradient is kept by the Var objects that exist
    at the call (copies carry it); dropping the Var frees the gradient's graph."""
    x = tg.Var(2.0)
    twin = x + 0.0  # not a leaf: untouched
    (x * x).backward(create_graph=True)
    c = copy.copy(x)
    assert c.grad is x.grad and twin.grad == 0.0
    x.grad = 1.0
    assert x.grad == 1.0 and c.grad.value == 4.0
    live = core.tape_stats()["live"]
    del c
    assert core.tape_stats()["live"] < live
    core._tape_check()


def test_backward_with_create_graph_inside_a_trace_is_recorded():
    def g(x, y):
        (x ** 3 * y).backward(create_graph=True)
        return x.grad * y.grad
    F = tg.trace(g, 1.0, 2.0)
    for x, y in ((2.0, 3.0), (-1.0, 0.5), (0.0, 1.0)):
        assert F(x, y) == 3 * x ** 2 * y * x ** 3
    # d/dx (3 x^5 y) = 15 x^4 y, d/dy = 3 x^5
    assert F.grad(2.0, 3.0) == (15 * 16 * 3.0, 3 * 32.0)
    with pytest.raises(tg.TraceError, match="backward"):
        tg.trace(lambda x: (x * x).backward(), 1.0)


def test_a_constant_exponent_is_no_guard_at_zero():
    """x ** 3's exponent is a constant: its d/dy (which branches at x == 0) is never
    evaluated, so a traced gradient of x ** 3 replays at 0 and across it."""
    F = tg.trace(tg.grad(tg.grad(lambda x: x ** 3)), 1.0)
    assert [F(x) for x in (0.0, -2.0, 2.0)] == [0.0, -12.0, 12.0]
    G = tg.trace(tg.grad(lambda x, y: x ** y), 1.0, 3.0)  # a Var exponent still guards
    with pytest.raises(tg.TraceError, match="pow's derivative rule"):
        G(0.0, 3.0)


def test_anomaly_mode_checks_recorded_nodes_as_they_are_made():
    z = tg.Var(0.0)
    log_z = tg.log(z)  # -inf, made before anomaly mode is on
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError, match=r"div\(2, 0\) = inf: .*sqrt's derivative "
                           r"rule in a gradient recorded with create_graph=True\n  at "
                           r".*test_autograd.py") as e:
            autograd.grad(tg.sqrt(z) * 2, z, create_graph=True)
        assert e.value.kind == "recorded" and e.value.op == "div"
        with pytest.raises(tg.AnomalyError, match="sqrt's derivative rule"):
            (tg.sqrt(z) + z).backward(create_graph=True)
        with pytest.raises(tg.AnomalyError, match="non-finite loss"):
            log_z.backward(create_graph=True)
        assert z.grad == 0.0
        x = tg.Var(2.0)
        (x * tg.sqrt(x)).backward(create_graph=True)  # finite: no report
        assert x.grad.value == pytest.approx(1.5 * math.sqrt(2.0))
    core._tape_check()
