"""How a traced Function is called: the C++ fast path for one point and for plain batches
(Program.call, and the C callables F.grad / F.value_and_grad), which must give exactly
what the general Python path gives for every argument layout it accepts and decline the
rest; and out=, the caller's arrays filled in place, with its checks."""
import gc
import importlib
import weakref

import numpy as np
import pytest

tg = importlib.import_module("tapegrad")
function = importlib.import_module("tapegrad.function")
Mode = function.Mode


def f3(x, y, z):
    """The 3-input function of the call-overhead benchmark."""
    return tg.sin(x * y) + tg.exp(-z * z) / (1 + x * x) + tg.tanh(y - z) * x + tg.log(1 + y * y)


def vector_fn(v, s):
    return tg.sin(v[0] * s) + v[1] * v[2] - s * s


@pytest.fixture(scope="module")
def F():
    return tg.trace(f3, 0.1, 0.2, 0.3)


@pytest.fixture(scope="module")
def V():
    return tg.trace(vector_fn, np.array([0.1, 0.2, 0.3]), 0.5)


def general(F, args, mode):
    """The general Python path (what the fast path must equal bit for bit)."""
    return F._run(args, mode, 1)


def same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


rng = np.random.default_rng(7)
X, Y, Z = (rng.uniform(-2, 2, (6, 5)) for _ in range(3))


# Layouts the fast path takes: contiguous, strided, transposed (one stride per point is
# not needed for a batch of size-1 dims), negative strides, a scalar or size-1 batch that
# broadcasts, 0-d arrays.
FAST_LAYOUTS = {
    "contiguous": (X, Y, Z),
    "1-d": (X[0], Y[0], Z[0]),
    "strided": (X[0, ::2], Y[0, ::2], Z[0, ::2]),
    "negative stride": (X[0, ::-1], Y[0, ::-1], Z[0, ::-1]),
    "a column": (X[:, 1], Y[:, 1], Z[:, 1]),
    "rows of a wider array": (X[1:4, :], Y[1:4, :], Z[1:4, :]),
    "a number broadcasts": (X, 0.5, Z),
    "size-1 batch broadcasts": (X, Y[:1, :1], Z),
    "0-d array": (X, np.array(0.25), Z),
}
# Layouts it declines (general path): a real broadcast, 2-D batches with no single stride
# from point to point, ints, lists, float32.
DECLINED = {
    "real broadcast": (X[:, :1], Y[:1, :], Z),
    "transposed": (X.T, Y.T, Z.T),
    "strided rows": (X[:, ::2], Y[:, ::2], Z[:, ::2]),
    "negative strides": (X[::-1], Y[::-1], Z[::-1]),
    "ints": (np.arange(5), Y[0], Z[0]),
    "list": (list(X[0]), Y[0], Z[0]),
    "float32": (X.astype(np.float32), Y, Z),
}


@pytest.mark.parametrize("layout", list(FAST_LAYOUTS) + list(DECLINED))
def test_the_fast_path_equals_the_general_path(F, layout):
    args = {**FAST_LAYOUTS, **DECLINED}[layout]
    P = F._programs[0]
    fast_v, fast_vg = P.call(args, 0, 1), P.call(args, 1, 1)
    if layout in DECLINED:
        assert fast_v is None and fast_vg is None
    else:
        assert same(fast_v, general(F, args, Mode.VALUE)[0])
        assert same(fast_vg, general(F, args, Mode.GRAD))
    # and the public calls, whichever path they take
    assert same(F(*args), general(F, args, Mode.VALUE)[0])
    assert same(F.value_and_grad(*args), general(F, args, Mode.GRAD))
    assert same(F.grad(*args), general(F, args, Mode.GRAD)[1])


def test_vector_arguments_and_mixed_batches(V):
    vs = rng.normal(size=(4, 3))
    for args in ((vs, 0.5), (vs, rng.normal(size=4)), (vs[::2], np.array([0.1, 0.2])),
                 (np.array([0.1, 0.2, 0.3]), 0.5)):
        assert same(V.value_and_grad(*args), general(V, args, Mode.GRAD))
        assert same(V.grad(*args), general(V, args, Mode.GRAD)[1])
        assert same(V(*args), general(V, args, Mode.VALUE)[0])


def test_grad_and_value_and_grad_are_c_callables_that_fall_back_with_keywords(F):
    assert type(F.grad).__name__ == "FastMethod" and "Gradient" in F.grad.__doc__
    x = (X[0], Y[0], Z[0])
    assert same(F.grad(*x, threads=2), F.grad(*x))
    with pytest.raises(ValueError, match="threads must be"):
        F.grad(*x, threads=0)
    with pytest.raises(TypeError, match="argument 0: expected real numbers"):
        F.grad("x", 1.0, 1.0)  # declined by the fast path, explained by the Python one
    with pytest.raises(ValueError, match="batch dimensions do not broadcast"):
        F.grad(np.ones(3), np.ones(2), 1.0)
    with pytest.raises(TypeError, match="takes 3 argument"):
        F.value_and_grad(1.0, 2.0)


def test_a_function_with_fast_methods_is_collected():
    F = tg.trace(f3, 0.1, 0.2, 0.3)
    F.grad(1.0, 2.0, 3.0)
    ref = weakref.ref(F)
    del F
    gc.collect()
    assert ref() is None


def test_anomaly_mode_and_failed_guards_take_the_general_path():
    F = tg.trace(lambda x: tg.log(x) if x > 0 else -x, 1.0)
    with pytest.raises(tg.TraceError, match="another branch"):
        F.grad(np.array([1.0, -1.0]))
    with pytest.raises(tg.TraceError, match="another branch"):
        F.grad(np.array([1.0, -1.0]), out=np.empty(2))
    R = tg.trace(lambda x: tg.log(x) if x > 0 else -x, 1.0, retrace=True)
    assert R.grad(np.array([1.0, -1.0])).tolist() == [1.0, -1.0]
    L = tg.trace(tg.log, 1.0)
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match="log"):
        L.grad(np.array([1.0, 0.0]))


# ---------------------------------------------------------------- out=

@pytest.mark.parametrize("layout", ["contiguous", "strided", "a number broadcasts",
                                    "real broadcast", "ints"])
def test_out_fills_the_callers_arrays_bit_for_bit(F, layout):
    args = {**FAST_LAYOUTS, **DECLINED}[layout]
    value, grads = F.value_and_grad(*args)
    v = np.full(value.shape, np.nan)
    gs = tuple(np.full(g.shape, np.nan) for g in grads)
    assert F(*args, out=v) is v and same(v, value)
    v[...] = np.nan
    got = F.value_and_grad(*args, out=(v, gs))
    assert got[0] is v and all(a is b for a, b in zip(got[1], gs))
    assert same(got, (value, grads))
    for g in gs:
        g[...] = np.nan
    got = F.grad(*args, out=gs)
    assert all(a is b for a, b in zip(got, gs)) and same(got, grads)
    got = F.value_and_grad(*args, out=(None, gs))  # values not kept
    assert got[0] is None and same(got[1], grads)


def test_out_at_one_point_and_with_one_argument(V):
    v = np.empty(())
    assert V(np.array([0.1, 0.2, 0.3]), 0.5, out=v) is v
    assert v == V(np.array([0.1, 0.2, 0.3]), 0.5)
    G = tg.trace(lambda x: x * x * 3.0, 1.0)
    g = np.empty(4)
    assert G.grad(np.arange(4.0), out=g) is g and g.tolist() == [0.0, 6.0, 12.0, 18.0]
    g0 = np.empty(())
    assert G.grad(2.0, out=g0) is g0 and g0 == 12.0


def test_out_is_checked(F):
    x = (X[0], Y[0], Z[0])
    gs = tuple(np.empty(5) for _ in range(3))
    cases = [
        (dict(out=np.empty(4)), ValueError, r"out has shape \(4,\); this call's result has "
                                            r"shape \(5,\)"),
        (dict(out=np.empty(5, np.float32)), TypeError, "float64 numpy array, got ndarray of "
                                                        "float32"),
        (dict(out=[0.0] * 5), TypeError, "got list"),
        (dict(out=np.empty(10)[::2]), ValueError, "C-contiguous"),
        (dict(out=np.empty(5)[None, :].repeat(1, 0)[0].view()), None, None),
        (dict(out=x[1]), ValueError, "overlaps an input"),
    ]
    ro = np.empty(5)
    ro.flags.writeable = False
    cases.append((dict(out=ro), ValueError, "writable"))
    for kw, err, msg in cases:
        if err is None:
            F(*x, **kw)  # a valid view is fine
            continue
        with pytest.raises(err, match=msg):
            F(*x, **kw)
    with pytest.raises(TypeError, match="a pair"):
        F.value_and_grad(*x, out=gs)
    with pytest.raises(TypeError, match="tuple of 3 arrays"):
        F.grad(*x, out=gs[0])
    with pytest.raises(ValueError, match="overlaps an input or another output"):
        F.grad(*x, out=(gs[0], gs[0], gs[2]))
    with pytest.raises(ValueError, match=r"out \(gradient of argument 1\) has shape"):
        F.grad(*x, out=(gs[0], np.empty(3), gs[2]))
    # nothing was written by a refused call
    before = np.full(5, 7.0)
    with pytest.raises(ValueError):
        F.grad(*x, out=(before, np.empty(3), gs[2]))
    assert (before == 7.0).all()


def test_out_for_a_non_scalar_function_grad_still_refuses():
    J = tg.trace(lambda x: np.array([x, x * x]), 1.0)
    with pytest.raises(ValueError, match="scalar function"):
        J.grad(np.ones(3), out=np.empty(3))


def test_vars_as_arguments_raise_instead_of_dropping_their_gradients():
    """A Function replays numbers: an array of Vars (from an enclosing transform, say) must
    not be converted by float() on the fast path and give a gradient of zero."""
    F = tg.trace(lambda x: tg.sin(x[0]) * x[1], np.ones(2))
    G = tg.trace(lambda x, y: x * y, 1.0, 2.0)
    held = np.array([tg.Var(1.0), tg.Var(2.0)])
    for call in (lambda: F(held), lambda: F.grad(held), lambda: F.value_and_grad(held),
                 lambda: G(tg.Var(3.0), 2.0), lambda: G.grad(tg.Var(3.0), 2.0),
                 lambda: tg.grad(lambda v: F(v))(np.array([1.0, 2.0]))):
        with pytest.raises(TypeError, match="real numbers"):
            call()
