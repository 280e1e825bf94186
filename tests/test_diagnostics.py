"""Debugging gradients: tg.gradcheck (C++ gradient vs finite differences and the reference)
and tg.grad_report (|grad| by depth, vanishing and exploding paths)."""
import json
import math
import pickle
import random
import sys

import numpy as np
import pytest
from helpers import differentiable, programs, run, spec_for, table_ops
from hypothesis import given, settings

import tapegrad as tg
from tapegrad import reference
from tapegrad.gradient_check import GradcheckError

OPS = table_ops()


# ----------------------------------------------------------------------------- gradcheck

def mixed(x, y):
    return tg.sin(x * y) + tg.exp(-y * y) / (1 + x * x) + tg.tanh(y - x) * x + x ** 2.5


def with_array(x, w):
    return tg.log(1 + w[0] ** 2) + tg.sigmoid(w[1] * x) - tg.sqrt(x) / w[2] + np.sum(w * w) * x


def matrix(a):
    return tg.cos(a[0, 0] * a[1, 1]) - a[0, 1] / (2 + a[1, 0] ** 2)


def shared(x):  # reuse: x feeds six nodes
    y = x * x
    return y * tg.exp(y) - y / x + tg.maximum(x, y) + tg.relu(x)


HEALTHY = [
    (mixed, (0.7, -0.3)),
    (with_array, (1.3, [0.3, -0.4, 1.2])),
    (matrix, (np.array([[0.5, -1.0], [2.0, 0.25]]),)),
    (shared, (0.8,)),
]
HEALTHY_IDS = [fn.__name__ for fn, _ in HEALTHY]


@pytest.mark.parametrize("fn, args", HEALTHY, ids=HEALTHY_IDS)
@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_gradcheck_passes_healthy(fn, args, mode):
    f = tg.trace(fn, *args) if mode == "traced" else fn
    report = tg.gradcheck(f, *args, raise_exception=True)
    assert report.ok and not report.failures and not report.rule_mismatches
    assert report.traced == (mode == "traced")
    n = sum(np.size(a) for a in args)
    assert len(report.inputs) == n
    for c in report.inputs:
        assert c.fd_abs <= 1e-6 * max(1.0, abs(c.fd))
        assert c.ref_abs is not None and c.ref_abs <= 1e-12 * max(1.0, abs(c.ref))
    # the report's numbers are the gradient itself, per input in argument order
    F = tg.trace(fn, *args)
    expected = F.grad(*args)
    flat = np.concatenate([np.ravel(g) for g in (expected if len(args) > 1 else [expected])])
    np.testing.assert_allclose([c.grad for c in report.inputs], flat, rtol=1e-12)
    assert report.value == pytest.approx(float(F(*args)), rel=1e-14)


def test_gradcheck_names_inputs_and_formats():
    report = tg.gradcheck(with_array, 1.3, [0.3, -0.4, 1.2])
    assert [c.name for c in report.inputs] == ["x", "w[0]", "w[1]", "w[2]"]
    assert [c.value for c in report.inputs] == [1.3, 0.3, -0.4, 1.2]
    text = str(report)
    assert text.startswith("gradcheck passed") and "w[2]" in text
    names = [c.name for c in tg.gradcheck(matrix, np.eye(2) + 0.5).inputs]
    assert names == ["a[0, 0]", "a[0, 1]", "a[1, 0]", "a[1, 1]"]
    d = report.as_dict()
    assert d["ok"] is True and len(d["inputs"]) == 4
    json.dumps(d)


@pytest.mark.parametrize("op, arity", OPS, ids=[op for op, _ in OPS])
def test_gradcheck_every_op(op, arity):
    """Every table row passes on its smooth domain, eager and traced (a stop-gradient op
    fails against finite differences, and only there)."""
    spec = spec_for(op)
    args = spec.domain(random.Random(op))
    fn = getattr(tg, op)
    for f in (fn, tg.trace(fn, *args)):
        report = tg.gradcheck(f, *args)
        assert report.ok == differentiable(spec), report
        assert all(c.ref_ok for c in report.inputs) and not report.rule_mismatches


def wrong_rule(row):
    """The row with 1 added to every local derivative (so even an all-zero rule is wrong)."""
    rule = row[2]
    return (*row[:2], lambda x, y, out, g: tuple(d + g for d in rule(x, y, out, g)), *row[3:])


@pytest.mark.parametrize("op, arity", OPS, ids=[op for op, _ in OPS])
def test_gradcheck_catches_a_wrong_reference_rule(op, arity, monkeypatch):
    spec = spec_for(op)
    args = spec.domain(random.Random(op))
    monkeypatch.setitem(reference.OPS, op, wrong_rule(reference.OPS[op]))
    report = tg.gradcheck(getattr(tg, op), *args)
    assert not report.ok
    assert all(not c.ref_ok for c in report.inputs)
    assert [m.op for m in report.rule_mismatches] == [op]
    if differentiable(spec):  # finite differences back C++ here
        assert all(c.fd_ok for c in report.inputs)
        assert "suspect the reference rule" in str(report)
    with pytest.raises(GradcheckError) as info:
        tg.gradcheck(getattr(tg, op), *args, raise_exception=True)
    assert isinstance(info.value, AssertionError)
    assert info.value.report.rule_mismatches[0].op == op
    assert "FAILED" in str(info.value) and op in str(info.value)


def test_wrong_rule_found_deep_in_a_graph_eager_and_traced(monkeypatch):
    monkeypatch.setitem(reference.OPS, "sin", wrong_rule(reference.OPS["sin"]))
    for f in (mixed, tg.trace(mixed, 0.7, -0.3)):
        report = tg.gradcheck(f, 0.7, -0.3)
        assert not report.ok
        (m,) = report.rule_mismatches
        assert m.op == "sin" and m.input_values == (pytest.approx(0.7 * -0.3),)
        assert m.cpp[0] == pytest.approx(math.cos(0.7 * -0.3))
        assert m.ref[0] == pytest.approx(math.cos(0.7 * -0.3) + 1)


def test_gradcheck_catches_a_detached_path():
    """float(x) silently cuts the graph: C++ and the reference agree on that graph's
    gradient (x), but finite differences see d(x²)/dx = 2x."""
    def f(x):
        return x * float(x)
    report = tg.gradcheck(f, 1.5)
    assert not report.ok
    (c,) = report.inputs
    assert c.grad == 1.5 and c.ref == 1.5 and c.fd == pytest.approx(3.0, rel=1e-8)
    assert c.ref_ok and not c.fd_ok
    assert "<-- finite diff" in str(report)
    with pytest.raises(AssertionError):
        tg.gradcheck(f, 1.5, raise_exception=True)


def test_tolerances_decide():
    report = tg.gradcheck(mixed, 0.7, -0.3, eps=1e-2, rtol=0, atol=1e-14)
    assert not report.ok and all(not c.fd_ok and c.ref_ok for c in report.inputs)
    assert tg.gradcheck(mixed, 0.7, -0.3, eps=1e-2, rtol=1e-6, atol=1e-8).ok


def test_gradcheck_unpickled_function_skips_the_reference():
    F = pickle.loads(pickle.dumps(tg.trace(mixed, 0.7, -0.3)))
    report = tg.gradcheck(F, 0.7, -0.3)
    assert report.ok and all(c.ref is None for c in report.inputs)
    assert any("reference check was skipped" in n for n in report.notes)


def test_gradcheck_constant_function():
    report = tg.gradcheck(lambda x: 3.0, 1.0)
    assert report.ok and report.inputs[0].grad == 0.0 and report.inputs[0].fd == 0.0


def test_gradcheck_rejects_bad_arguments():
    with pytest.raises(TypeError, match="holds Vars"):
        tg.gradcheck(mixed, tg.Var(1.0), 2.0)
    with pytest.raises(TypeError, match="scalar Var"):
        tg.gradcheck(lambda x: x * np.ones(2), 1.0)
    with pytest.raises(ValueError, match="scalar"):
        tg.gradcheck(tg.trace(lambda x: [x, x * x], 1.0), 1.0)
    with pytest.raises(TypeError, match="callable"):
        tg.gradcheck(42, 1.0)


@settings(max_examples=60)
@given(program=programs(reference.ops(), max_steps=10))
def test_reference_rebuild_is_faithful_on_random_graphs(program):
    """The reference, run on the graph C++ recorded (shared nodes, constants on either
    side, x ** 2 as square), agrees everywhere: no false alarms."""
    def f(*xs):
        return run(program, tg, leaves=xs)[-1]
    report = tg.gradcheck(f, *program[0])
    assert report.value_ok and not report.rule_mismatches
    assert all(c.ref_ok for c in report.inputs)


# --------------------------------------------------------------------------- grad_report

def sigmoid_chain(backend, x0, n):
    x = backend.Var(x0)
    s = x
    for _ in range(n):
        s = backend.sigmoid(s)
    return x, s


def test_sigmoid_chain_shrinks_by_sigma_prime(backend):
    x, root = sigmoid_chain(backend, 0.5, 30)
    report = tg.grad_report(root)
    # Independently: s_0 = x, s_k = σ(s_{k-1}); the node at depth d is s_{30-d}, and
    # the step d → d+1 multiplies by σ'(s_{29-d}) = s_{30-d} (1 - s_{30-d}).
    s = [0.5]
    for _ in range(30):
        s.append(1 / (1 + math.exp(-s[-1])))
    expected = [s[30 - d] * (1 - s[30 - d]) for d in range(30)]
    assert [b.depth for b in report.bands] == list(range(31))
    assert all(b.count == 1 for b in report.bands)
    assert report.ratios == pytest.approx(expected, rel=1e-12)
    shrink = [1 / r for r in report.ratios]
    assert all(4.0 <= k <= 4.5 for k in shrink)  # σ' ≤ 1/4; σ' at the fixed point 0.659
    assert 1 / report.mean_ratio == pytest.approx(math.prod(shrink) ** (1 / 30), rel=1e-12)
    assert report.bands[-1].max == pytest.approx(math.prod(expected), rel=1e-12)
    assert report.bands[-1].ops == {"leaf": 1} and report.bands[0].ops == {"sigmoid": 1}
    assert report.shrinking(1)[0].ops == {"sigmoid": 1} and report.growing() == []

    # Vanishing: the leaf, and the onset where the product first drops below 1e-8.
    onset = next(d for d in range(31) if math.prod(expected[:d]) < 1e-8)
    assert not report.ok
    assert [(f.kind, f.op, f.depth) for f in report.flags] == [
        ("vanishing", "sigmoid", onset), ("vanishing", "leaf", 30)]
    assert report.flags[1].path == ("sigmoid",) * 30 + ("leaf",)
    assert report.flags[1].grad == x.grad
    text = report.text()
    assert "VANISHING: leaf at depth 30" in text and "sigmoid ×30 → leaf" in text
    assert f"÷{shrink[0]:.4g}" in text


@pytest.mark.parametrize("factor, n", [(3.0, 20), (10.0, 9)])
def test_exploding_chain(backend, factor, n):
    x = backend.Var(0.5)
    y = x
    for _ in range(n):
        y = y * factor
    report = tg.grad_report(y)
    assert report.ratios == pytest.approx([factor] * n, rel=1e-14)
    assert report.constants == n
    assert report.bands[-1].max == pytest.approx(factor ** n, rel=1e-12)
    onset = next(d for d in range(n + 1) if factor ** d > 1e8)
    expected = [("exploding", "leaf" if d == n else "mul", d) for d in sorted({onset, n})]
    assert [(f.kind, f.op, f.depth) for f in report.flags] == expected  # one flag per node
    assert report.growing(1)[0].ops == {"mul": 1} and report.shrinking() == []
    assert "EXPLODING: leaf" in report.text()


def test_healthy_graph_has_no_flags(backend):
    x, y = backend.Var(0.3), backend.Var(-1.2)
    root = backend.tanh(x * y) + backend.sin(x) * y + x / (1 + y * y)
    report = tg.grad_report(root)
    assert report.ok and report.flags == []
    assert "no vanishing" in report.text()
    band = report.bands[0]
    assert (band.depth, band.count, band.min, band.max) == (0, 1, 1.0, 1.0)


def test_depth_longest_or_shortest(backend):
    """x reaches the root directly and through 5 sigmoids: depth 6 or 1."""
    x, chain = sigmoid_chain(backend, 0.2, 5)
    root = chain + x
    longest = tg.grad_report(root)
    shortest = tg.grad_report(root, depth="shortest")
    assert longest.bands[-1].ops == {"leaf": 1} and longest.bands[-1].depth == 6
    assert shortest.bands[1].ops == {"sigmoid": 1, "leaf": 1}
    assert len(shortest.bands) == 6
    # the same per-node numbers, binned differently
    assert longest.node_relative == shortest.node_relative
    assert sorted(longest.node_depth.values()) == [0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="depth"):
        tg.grad_report(root, depth="widest")


def test_zero_gradients_are_counted_not_flagged(backend):
    x = backend.Var(-2.0)
    dead = backend.relu(x) * 5.0  # relu'(x < 0) = 0: nothing flows, nothing vanishes
    report = tg.grad_report(dead + backend.Var(1.0))
    band = next(b for b in report.bands if "leaf" in b.ops and b.depth == 3)
    assert band.zeros == 1 and band.count == 1 and band.max == 0.0
    assert report.ok


def test_backward_runs_once(backend):
    x = backend.Var(2.0)
    root = backend.exp(x) * x
    tg.grad_report(root)
    assert x.grad == pytest.approx(3 * math.exp(2.0))  # backward ran
    tg.grad_report(root)
    assert x.grad == pytest.approx(3 * math.exp(2.0))  # ... and not again


def test_text_elides_long_reports():
    _, root = sigmoid_chain(tg, 0.5, 100)
    text = tg.grad_report(root).text(max_rows=10)
    rows = [line for line in text.splitlines() if line.split()[0].isdigit()]
    assert len(rows) == 10 and "..." in text


def test_as_dict_is_json_with_string_ids():
    x, root = sigmoid_chain(tg, 0.5, 30)
    d = tg.grad_report(root).as_dict()
    back = json.loads(json.dumps(d))
    assert back["ok"] is False and len(back["bands"]) == 31 and len(back["steps"]) == 30
    assert str(x.id) in back["nodes"] and back["nodes"][str(root.id)] == {"depth": 0,
                                                                         "relative": 1.0}
    assert back["flags"][-1]["node_id"] == str(x.id)


def test_plot_writes_a_png(tmp_path):
    _, root = sigmoid_chain(tg, 0.5, 30)
    path = tmp_path / "grads.png"
    fig = tg.grad_report(root).plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.axes[0].get_yscale() == "log"


def test_plot_without_matplotlib(monkeypatch):
    _, root = sigmoid_chain(tg, 0.5, 3)
    report = tg.grad_report(root)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        report.plot()
