"""tapegrad.nn: modules, losses, optimisers, the moons data, the traced fast path and the
demo. Oracles: the reference backend (the same network built on pure-Python Vars),
central finite differences, micrograd (its init and its demo's loss), PyTorch's optimisers
and BCE (when installed), and exact documented values at kinks."""
import gc
import importlib
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

tg = importlib.import_module("tapegrad")
ref = importlib.import_module("tapegrad.reference")
nn = importlib.import_module("tapegrad.nn")
demo = importlib.import_module("tapegrad.nn.demo")

ACTS = ("relu", "tanh", "sigmoid", "linear")
MICROGRAD_FIRST_LOSS = 0.8958441028683222  # micrograd's demo notebook, step 0


# ---------------------------------------------------------------------------- helpers

def leaves(backend, values):
    return [backend.Var(float(v)) for v in values]


def scalar_out(out, weights):
    """A scalar from a module output (a Var or a list of Vars): sum of w_i * out_i."""
    outs = out if isinstance(out, list) else [out]
    return sum(w * o for w, o in zip(weights, outs))


MODULES = {
    **{f"neuron-{a}": lambda seed, be, a=a: nn.Neuron(3, nonlin=a, seed=seed, backend=be)
       for a in ACTS},
    **{f"layer-{a}": lambda seed, be, a=a: nn.Layer(3, 4, nonlin=a, seed=seed, backend=be)
       for a in ACTS},
    **{f"mlp-{a}": lambda seed, be, a=a: nn.MLP(3, [5, 4, 2], nonlin=a, seed=seed, backend=be)
       for a in ACTS if a != "linear"},
}
X3 = [0.7, -1.3, 0.4]
OUT_WEIGHTS = [1.0, -0.5, 0.25, 2.0]


def module_value_and_grads(make, backend, seed=4, x=X3):
    """(value, d/dparams, d/dx) of sum w_i out_i for a module built on ``backend``."""
    model = make(seed, backend)
    xs = leaves(backend, x)
    out = scalar_out(model(xs), OUT_WEIGHTS)
    out.backward()
    return out.value, [p.grad for p in model.parameters()], [v.grad for v in xs]


def central_differences(f, theta, h=1e-6):
    g = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


# ---------------------------------------------------------------------------- modules

def test_mlp_init_and_repr_match_micrograd():
    micrograd_nn = pytest.importorskip("micrograd.nn")
    state = random.getstate()
    try:
        random.seed(1337)
        theirs = micrograd_nn.MLP(2, [16, 16, 1])
        random.seed(1337)
        global_rng = nn.MLP(2, [16, 16, 1])  # seed=None draws from `random`, as micrograd
    finally:
        random.setstate(state)
    ours = nn.MLP(2, [16, 16, 1], seed=1337)
    want = [p.data for p in theirs.parameters()]
    assert [p.value for p in ours.parameters()] == want
    assert [p.value for p in global_rng.parameters()] == want
    assert repr(ours) == repr(theirs)


def test_seeds_give_the_same_network_on_both_backends():
    a = nn.MLP(2, [4, 3, 1], seed=7)
    b = nn.MLP(2, [4, 3, 1], seed=7, backend=ref)
    c = nn.MLP(2, [4, 3, 1], seed=8)
    assert [p.value for p in a.parameters()] == [p.value for p in b.parameters()]
    assert [p.value for p in a.parameters()] != [p.value for p in c.parameters()]
    assert all(type(p) is tg.Var for p in a.parameters())
    assert all(type(p) is ref.Var for p in b.parameters())
    assert len(a.parameters()) == (2 + 1) * 4 + (4 + 1) * 3 + (3 + 1) * 1


@pytest.mark.parametrize("name", MODULES)
def test_module_gradients_match_the_reference_backend(name):
    value, gp, gx = module_value_and_grads(MODULES[name], tg)
    rvalue, rgp, rgx = module_value_and_grads(MODULES[name], ref)
    assert value == pytest.approx(rvalue, rel=1e-14)
    np.testing.assert_allclose(gp, rgp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gx, rgx, rtol=1e-12, atol=1e-15)
    assert any(g != 0 for g in gp)


@pytest.mark.parametrize("name", MODULES)
def test_module_gradients_match_finite_differences(backend, name):
    model = MODULES[name](4, backend)
    _, gp, gx = module_value_and_grads(MODULES[name], backend)

    def at_params(theta):
        nn.set_parameters(model, theta)
        return scalar_out(model(X3), OUT_WEIGHTS).value

    def at_inputs(x):
        return scalar_out(model(list(x)), OUT_WEIGHTS).value

    theta = nn.get_parameters(model)
    assert np.any(gp) and np.any(gx)
    np.testing.assert_allclose(gp, central_differences(at_params, theta), rtol=1e-6, atol=1e-8)
    nn.set_parameters(model, theta)
    np.testing.assert_allclose(gx, central_differences(at_inputs, np.array(X3)), rtol=1e-6,
                               atol=1e-8)


def test_activations_compute_what_they_say(backend):
    x = [0.5, -2.0]
    for act, f in [("relu", lambda z: max(z, 0.0)), ("tanh", math.tanh),
                   ("sigmoid", lambda z: 1 / (1 + math.exp(-z))), ("linear", lambda z: z)]:
        n = nn.Neuron(2, nonlin=act, seed=1, backend=backend)
        pre = n.b.value + sum(w.value * xi for w, xi in zip(n.w, x))
        assert n(x).value == pytest.approx(f(pre), rel=1e-15, abs=1e-300)
    assert repr(nn.Neuron(2, nonlin=True)) == "ReLUNeuron(2)"
    assert repr(nn.Neuron(2, nonlin=False)) == "LinearNeuron(2)"
    assert repr(nn.Neuron(2, nonlin="tanh")) == "TanhNeuron(2)"
    assert nn.Neuron(1, nonlin=lambda v: v * 2, seed=1)(1.0).value == pytest.approx(
        2 * nn.Neuron(1, seed=1, nonlin=False)(1.0).value)


def test_module_errors_and_zero_grad():
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Neuron(2, nonlin="gelu")
    with pytest.raises(TypeError, match="seed"):
        nn.MLP(2, [3], seed=1.5)
    with pytest.raises(TypeError, match="backend"):
        nn.MLP(2, [3], backend=math)
    model = nn.MLP(2, [3, 1], seed=0)
    with pytest.raises(ValueError, match="length 3"):
        model([1.0, 2.0, 3.0])
    model([1.0, 2.0]).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())


class Affine(nn.Module):
    """A user module in micrograd's style: parameters in attributes, no parameters()."""

    def __init__(self):
        self.scale = tg.Var(2.0)
        self.shift = (tg.Var(-1.0),)
        self.inner = nn.Neuron(2, nonlin="tanh", seed=5)

    def __call__(self, x):
        return self.inner(x) * self.scale + self.shift[0]


def test_user_modules_get_parameters_and_compile():
    m = Affine()
    params = m.parameters()
    assert params[:2] == [m.scale, m.shift[0]] and params[2:] == m.inner.parameters()
    X = np.array([[0.3, -0.2], [1.0, 0.5]])
    y = np.array([0.5, -0.25])

    def loss_fn(model, X, y):
        return nn.mse_loss([model(x) for x in X], y)

    loss = nn.compile_loss(m, loss_fn, X, y)
    assert all(a is b for a, b in zip(m.parameters(), params))  # restored after tracing
    theta = nn.get_parameters(m) + 0.1
    nn.set_parameters(m, theta)
    eager = loss_fn(m, X, y)
    eager.backward()
    value, grad = loss.value_and_grad(theta)
    assert value == eager.value
    np.testing.assert_array_equal(grad, [p.grad for p in params])


def test_replace_parameters_refuses_a_module_whose_parameters_hide_elsewhere():
    class Hidden(nn.Module):
        def __init__(self):
            self._store = {"w": tg.Var(1.0)}  # in a dict: not walked

        def parameters(self):
            return [self._store["w"]]

        def __call__(self, x):
            return self._store["w"] * x

    hidden = Hidden()
    w = hidden.parameters()[0]
    with pytest.raises(TypeError, match="does not list the Vars held in its attributes"):
        nn.replace_parameters(hidden, [tg.Var(2.0)])
    assert hidden.parameters()[0] is w
    m = nn.Neuron(1, seed=0)
    with pytest.raises(ValueError, match="has 2 parameters"):
        nn.replace_parameters(m, [tg.Var(2.0)])


# ---------------------------------------------------------------------------- losses

LOSSES = {
    "mse": (nn.mse_loss, [0.3, -1.2, 2.5, 0.1], [0.0, -1.0, 3.0, 0.5]),
    "hinge": (nn.hinge_loss, [0.3, -1.2, 2.5, 0.1], [1.0, -1.0, -1.0, 1.0]),
    "bce": (nn.binary_cross_entropy_with_logits, [0.3, -1.2, 2.5, -0.1], [1.0, 0.0, 0.0, 1.0]),
}


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradients_match_reference_and_finite_differences(backend, name):
    loss_fn, preds, targets = LOSSES[name]
    zs = leaves(backend, preds)
    out = loss_fn(zs, targets)
    out.backward()
    grads = np.array([z.grad for z in zs])
    rz = leaves(ref, preds)
    r = loss_fn(rz, targets)
    r.backward()
    assert out.value == pytest.approx(r.value, rel=1e-15)
    np.testing.assert_allclose(grads, [z.grad for z in rz], rtol=1e-14)
    fd = central_differences(lambda p: loss_fn(leaves(backend, p), targets).value,
                             np.array(preds))
    np.testing.assert_allclose(grads, fd, rtol=1e-7, atol=1e-9)
    assert np.count_nonzero(grads) >= 3


def test_loss_values():
    assert nn.mse_loss([tg.Var(1.0), tg.Var(3.0)], [0.0, 1.0]).value == 2.5
    # hinge: relu(1 - y s) per point: 0.7, 0, 3.5, 0.9
    assert nn.hinge_loss([tg.Var(v) for v in [0.3, -1.2, 2.5, 0.1]],
                         [1, -1, -1, 1]).value == pytest.approx((0.7 + 3.5 + 0.9) / 4)
    with pytest.raises(ValueError, match="2 predictions but 3 targets"):
        nn.mse_loss([tg.Var(1.0), tg.Var(2.0)], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        nn.hinge_loss([], [])
    assert nn.accuracy([tg.Var(0.5), tg.Var(-0.1), tg.Var(2.0)], [1, 1, -1]) == 1 / 3
    assert nn.accuracy(np.array([0.5, -0.1]), np.array([1.0, 0.0])) == 1.0


def test_hinge_at_the_margin_has_relu_kink_gradient_zero(backend):
    s = backend.Var(1.0)
    out = nn.hinge_loss([s], [1.0])  # 1 - y s = 0 exactly: relu'(0) = 0
    out.backward()
    assert out.value == 0.0 and s.grad == 0.0


def bce_exact(z, y):
    """-[y log sigmoid(z) + (1-y) log(1-sigmoid(z))], with log1p."""
    return max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


@pytest.mark.parametrize("z", [-800.0, -40.0, -1.5, 0.0, 1e-300, 2.0, 40.0, 800.0])
@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_bce_with_logits_is_stable_and_exact(backend, z, y):
    v = backend.Var(z)
    out = nn.binary_cross_entropy_with_logits([v], [y])
    out.backward()
    assert math.isfinite(out.value) and math.isfinite(v.grad)
    # log(1 + e) for e = exp(-|z|) < 1.1e-16 is 0 (no log1p op): absolute error < 1.2e-16
    assert out.value == pytest.approx(bce_exact(z, y), rel=1e-15, abs=1.2e-16)
    sig = 0.5 if z == 0 else (1 / (1 + math.exp(-z)) if z > -700 else 0.0)
    assert v.grad == pytest.approx(sig - y, rel=1e-12, abs=1e-300)  # sigmoid(z) - y, at 0 too


def test_bce_with_logits_matches_torch():
    torch = pytest.importorskip("torch")
    z = [-800.0, -40.0, -1.5, 0.0, 0.25, 2.0, 40.0, 800.0]
    y = [0.0, 1.0, 1.0, 1.0, 0.0, 0.3, 0.0, 1.0]
    zs = [tg.Var(v) for v in z]
    out = nn.bce_with_logits(zs, y)
    out.backward()
    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        t, torch.tensor(y, dtype=torch.float64))
    want.backward()
    assert out.value == pytest.approx(want.item(), rel=1e-14)
    np.testing.assert_allclose([v.grad for v in zs], t.grad.tolist(), rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------------- data

def test_make_moons_is_seeded_balanced_and_on_the_moons():
    X, y = nn.make_moons(101, noise=0.1, seed=4)
    X2, y2 = nn.make_moons(101, noise=0.1, seed=4)
    X3_, _ = nn.make_moons(101, noise=0.1, seed=5)
    assert X.shape == (101, 2) and y.shape == (101,) and X.dtype == y.dtype == np.float64
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, X3_)
    assert sorted(set(y.tolist())) == [-1.0, 1.0] and (y == -1).sum() == 50
    clean, labels = nn.make_moons(20, noise=None, shuffle=False)
    outer, inner = clean[labels < 0], clean[labels > 0]
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0)  # upper half circle
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0)
    assert outer[:, 1].min() >= 0 and inner[:, 1].max() <= 0.5


def test_make_moons_equals_sklearn():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = nn.make_moons(100, noise=0.1, seed=1337)
    Xs, ys = datasets.make_moons(n_samples=100, noise=0.1, random_state=1337)
    np.testing.assert_array_equal(X, Xs)
    np.testing.assert_array_equal(y, ys * 2 - 1)


# ---------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def moons():
    return nn.make_moons(100, noise=0.1, seed=demo.SEED)


@pytest.fixture(scope="module")
def trained(moons):
    X, y = moons
    return (demo.train_eager(demo.make_model(), X, y, 100),
            demo.train_traced(demo.make_model(), X, y, 100))


def test_pointwise_loss_matches_the_whole_loss_program(moons):
    X, y = moons
    model = demo.make_model()
    theta = nn.get_parameters(model) + 0.01 * np.arange(len(model.parameters())) % 0.07
    whole = nn.compile_loss(model, demo.moons_loss, X, y)
    pointwise = nn.compile_pointwise_loss(model, demo.moons_point_loss, X, y,
                                          penalty=demo.moons_penalty)
    assert pointwise.function.n_ops < whole.function.n_ops / 50  # one point, not 100
    v1, g1 = whole.value_and_grad(theta)
    v2, g2 = pointwise.value_and_grad(theta)
    assert math.isclose(v1, v2, rel_tol=1e-13) and v1 != 0  # summation order only
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)
    # new data of the traced shapes; and without a penalty, the plain mean of point terms
    X2, y2 = X[::-1].copy(), y[::-1].copy()
    np.testing.assert_allclose(pointwise.grad(theta, X2, y2), whole.grad(theta, X2, y2),
                               rtol=1e-12, atol=1e-15)
    bare = nn.compile_pointwise_loss(model, demo.moons_point_loss, X, y)
    nn.set_parameters(model, theta)
    terms = [demo.moons_point_loss(model, x, yi).value for x, yi in zip(X, y)]
    assert math.isclose(bare(theta), sum(terms) / len(terms), rel_tol=1e-13)


def test_pointwise_loss_errors(moons):
    X, y = moons
    model = demo.make_model()
    with pytest.raises(ValueError, match="different numbers of points"):
        nn.compile_pointwise_loss(model, demo.moons_point_loss, X, y[:10])
    with pytest.raises(ValueError, match="one row per point"):
        nn.compile_pointwise_loss(model, demo.moons_point_loss, 1.0)
    with pytest.raises(TypeError, match="must return a scalar Var"):
        nn.compile_pointwise_loss(model, lambda m, x, yi: 1.0, X, y)
    loss = nn.compile_pointwise_loss(model, demo.moons_point_loss, X, y)
    with pytest.raises(TypeError, match="expected 2 data argument"):
        loss.value_and_grad(nn.get_parameters(model), X)


def test_demo_training_reaches_100_percent_in_both_modes(trained):
    eager, traced = trained
    assert eager.accuracies[-1] == 1.0 and traced.accuracies[-1] == 1.0
    assert eager.accuracies[0] < 0.9  # it did learn: not separable at the start
    assert eager.losses[-1] < eager.losses[0] / 10


def test_eager_and_traced_losses_are_identical_step_by_step(trained):
    eager, traced = trained
    assert len(eager.losses) == len(traced.losses) == 100
    np.testing.assert_allclose(traced.losses, eager.losses, rtol=0, atol=1e-12)
    np.testing.assert_allclose(traced.theta, eager.theta, rtol=0, atol=1e-10)
    assert eager.accuracies == traced.accuracies


def test_first_loss_is_micrograd_demos(trained):
    assert trained[0].losses[0] == pytest.approx(MICROGRAD_FIRST_LOSS, rel=1e-15)


def test_training_follows_micrograd_step_by_step(moons):
    """micrograd's own demo code (its MLP, Values and loss) on the same data and seeds."""
    micrograd_nn = pytest.importorskip("micrograd.nn")
    engine = pytest.importorskip("micrograd.engine")
    X, y = moons
    state = random.getstate()
    try:
        random.seed(1337)
        theirs = micrograd_nn.MLP(2, [16, 16, 1])
    finally:
        random.setstate(state)
    ours = nn.MLP(2, [16, 16, 1], seed=1337)
    opt = nn.SGD(ours.parameters(), lr=1.0)
    gc.disable()  # micrograd's Values form reference cycles: collection dominates its time
    try:
        micrograd_steps(theirs, ours, opt, X, y, engine)
    finally:
        gc.enable()


def micrograd_steps(theirs, ours, opt, X, y, engine):
    for k in range(2):
        inputs = [list(map(engine.Value, row)) for row in X.tolist()]
        scores = list(map(theirs, inputs))
        losses = [(1 + -yi * si).relu() for yi, si in zip(y.tolist(), scores)]
        total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in theirs.parameters())
        theirs.zero_grad()
        total.backward()
        lr = 1.0 - 0.9 * k / 100
        for p in theirs.parameters():
            p.data -= lr * p.grad
        mine = demo.moons_loss(ours, X, y)
        opt.zero_grad()
        mine.backward()
        opt.lr = lr
        opt.step()
        assert mine.value == pytest.approx(total.data, rel=1e-13)
        np.testing.assert_allclose(nn.get_parameters(ours), [p.data for p in theirs.parameters()],
                                   rtol=1e-12, atol=1e-14)


def test_compiled_loss_matches_eager_at_new_parameters_and_data(moons):
    X, y = moons
    model = nn.MLP(2, [6, 1], seed=2)
    loss = nn.compile_loss(model, demo.moons_loss, X, y)
    assert loss.n_params == len(model.parameters()) == 25
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, loss.n_params)
    X2, y2 = X + 0.05, -y
    for data in [(), (X2, y2)]:
        nn.set_parameters(model, theta)
        eager = demo.moons_loss(model, *(data or (X, y)))
        eager.backward()
        value, grad = loss.value_and_grad(theta, *data)
        assert value == pytest.approx(eager.value, rel=1e-14)
        np.testing.assert_allclose(grad, [p.grad for p in model.parameters()], rtol=1e-12,
                                   atol=1e-15)
        assert loss(theta, *data) == value
        np.testing.assert_array_equal(loss.grad(theta, *data), grad)
        model.zero_grad()
    with pytest.raises(TypeError, match="2 data argument"):
        loss.value_and_grad(theta, X2)


def test_compile_errors():
    X = np.zeros((3, 2))
    with pytest.raises(TypeError, match="C\\+\\+ backend"):
        nn.compile_loss(nn.MLP(2, [1], seed=0, backend=ref), demo.moons_loss, X, np.ones(3))
    with pytest.raises(TypeError, match="scalar Var"):
        nn.compile_loss(nn.MLP(2, [2], seed=0), lambda m, X: [m(x) for x in X], X)
    with pytest.raises(ValueError, match="has 3 parameters"):
        nn.set_parameters(nn.Neuron(2, seed=0), [1.0, 2.0])


def test_compiled_model_evaluates_batches(moons):
    X, _ = moons
    model = nn.MLP(2, [5, 3], nonlin="tanh", seed=9)
    forward = nn.compile_model(model, X[0])
    out = forward(nn.get_parameters(model), X)
    assert out.shape == (100, 3)
    # batched replay may use vectorised tanh (a few ulp from scalar tanh)
    np.testing.assert_allclose(out, [[v.value for v in model(x)] for x in X], rtol=1e-12,
                               atol=1e-15)


# ---------------------------------------------------------------------------- optimisers

def run_ours(make_opt, theta0, steps, lr_schedule, vector):
    """Minimise f(p) = sum(c_i p_i^2 + sin(3 p_i)) with gradients from tapegrad."""
    c = np.linspace(0.5, 2.0, theta0.size)
    ps = [tg.Var(v) for v in theta0]
    theta = theta0.copy()
    opt = make_opt(theta if vector else ps)
    for k in range(steps):
        if vector:
            xs = [tg.Var(v) for v in theta]
        else:
            opt.zero_grad()
            xs = ps
        f = sum(ci * x * x + tg.sin(3 * x) for ci, x in zip(c.tolist(), xs))
        f.backward()
        opt.lr = lr_schedule(k)
        opt.step(np.array([x.grad for x in xs]) if vector else None)
    return theta if vector else np.array([p.value for p in ps])


def run_torch(torch, make_opt, theta0, steps, lr_schedule):
    c = torch.tensor(np.linspace(0.5, 2.0, theta0.size), dtype=torch.float64)
    p = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = make_opt([p])
    for k in range(steps):
        opt.zero_grad()
        f = (c * p * p + torch.sin(3 * p)).sum()
        f.backward()
        for group in opt.param_groups:
            group["lr"] = lr_schedule(k)
        opt.step()
    return p.detach().numpy().copy()


OPTIMIZERS = {
    "sgd": ("SGD", {}),
    "sgd-momentum": ("SGD", {"momentum": 0.9}),
    "sgd-dampening-decay": ("SGD", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.05}),
    "sgd-nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adam": ("Adam", {}),
    "adam-betas-decay": ("Adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    "adam-amsgrad": ("Adam", {"amsgrad": True}),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_match_torch(name):
    torch = pytest.importorskip("torch")
    cls, kwargs = OPTIMIZERS[name]
    theta0 = np.random.default_rng(1).uniform(-2, 2, 12)
    schedule = (lambda k: 0.05 * (1 - k / 60)) if cls == "SGD" else (lambda k: 0.1 / (1 + k / 20))
    want = run_torch(torch, lambda p: getattr(torch.optim, cls)(p, lr=1.0, **kwargs), theta0,
                     40, schedule)
    got_vars = run_ours(lambda p: getattr(nn, cls)(p, lr=1.0, **kwargs), theta0, 40, schedule,
                        vector=False)
    got_vec = run_ours(lambda p: getattr(nn, cls)(p, lr=1.0, **kwargs), theta0, 40, schedule,
                       vector=True)
    np.testing.assert_array_equal(got_vars, got_vec)  # one update rule for both forms
    np.testing.assert_allclose(got_vars, want, rtol=1e-12, atol=1e-13)
    assert not np.allclose(got_vars, theta0, atol=1e-3)


def test_optimizer_updates_by_hand():
    p = np.array([1.0, -2.0])
    opt = nn.SGD(p, lr=0.5, momentum=0.9)
    opt.step(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(p, [0.5, -2.5])
    opt.step(np.array([1.0, 1.0]))  # buf = 0.9 * 1 + 1 = 1.9
    np.testing.assert_array_equal(p, [0.5 - 0.95, -2.5 - 0.95])
    q = np.array([3.0])
    adam = nn.Adam(q, lr=0.1)
    adam.step(np.array([123.0]))  # first Adam step moves by lr * sign(g) (up to eps)
    assert q[0] == pytest.approx(2.9, rel=1e-9)


def test_optimizer_errors_and_zero_grad():
    v = tg.Var(1.0)
    (v * v).backward()
    opt = nn.Adam([v], lr=0.1)
    with pytest.raises(TypeError, match="pass no gradient"):
        opt.step(np.array([1.0]))
    opt.zero_grad()
    assert v.grad == 0.0
    with pytest.raises(TypeError, match="pass its gradient"):
        nn.SGD(np.zeros(2)).step()
    with pytest.raises(ValueError, match="shape"):
        nn.SGD(np.zeros(2)).step(np.zeros(3))
    with pytest.raises(TypeError, match="float64"):
        nn.SGD(np.zeros(2, dtype=np.float32))
    with pytest.raises(TypeError, match="float"):
        nn.SGD([v, 1.0])
    with pytest.raises(ValueError, match="empty"):
        nn.SGD([])
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD([v], nesterov=True)


# ---------------------------------------------------------------------------- the demo

def test_demo_command_end_to_end_with_plots(tmp_path):
    pytest.importorskip("matplotlib")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tapegrad", "demo", "moons", "--out",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert elapsed < 60
    assert "identical within 1e-12" in out
    assert "final training accuracy: 100%" in out
    for mode in ("eager", "traced"):
        line = next(s for s in out.splitlines() if s.startswith(mode))
        assert " ms " in line and line.rstrip().endswith(("100%", "to trace once)"))
    for name in ("loss_curve.png", "decision_boundary.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_demo_without_the_extra_prints_progress_and_the_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = demo.main(["moons", "--steps", "20", "--mode", "traced", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "[traced] step    1/20" in out and "[traced] step   20/20" in out
    assert "pip install tapegrad[demo]" in out
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        demo.main(["circles"])
