"""Workloads for the trace/replay benchmarks (tg.trace -> tg.Function), one definition per
system, each in that system's natural fast form. Shared by bench/compare_replay.py and
bench/test_bench_replay.py.

    Rosenbrock  f(x) = sum_{i<d-1} 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, gradient at a new
                point, numpy in and out (d = 1000, 10000)
    F3          f(x, y, z) = sin(xy) + exp(-z z) / (1 + x x) + tanh(y - z) x + log(1 + y y),
                gradient at N points (17 ops per point)
    MLP step    micrograd's demo: MLP(2, [16, 16, 1]) on 100 two-moons points, SVM loss
                mean(relu(1 - y score)) + 1e-4 sum p^2, as a function of the flat
                parameter vector (337 numbers), value and gradient

Every builder returns ready-to-time callables that take numpy arrays and return numpy
arrays (or floats), so the checks and the timings use the very same code path. Peers are
imported inside their builders: importing this module needs numpy and tapegrad only.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import weakref
from typing import Callable

import numpy as np

SEED = 20240611
ROSEN_DIMS = (1000, 10000)
F3_N = 100_000
THREADS_N = 1_000_000
MLP_SIZES = (2, 16, 16, 1)
MLP_POINTS = 100
MLP_ALPHA = 1e-4


# ================================================================ data


def rosen_point(d: int, seed: int = SEED) -> np.ndarray:
    """A point to differentiate at (not the traced example, which is zeros)."""
    return np.random.default_rng(seed + d).uniform(-1.5, 1.5, d)


def f3_points(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + n)
    return tuple(rng.uniform(-2.0, 2.0, n) for _ in range(3))  # type: ignore[return-value]


def two_moons(n: int = MLP_POINTS, noise: float = 0.1, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """sklearn.datasets.make_moons in numpy: (X of shape (n, 2), y in {-1, +1} of shape (n,))."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)])
    y = np.concatenate([-np.ones(n_out), np.ones(n_in)])
    X = X + rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(n)
    return X[order], y[order]


def mlp_shapes(sizes=MLP_SIZES) -> list[tuple[int, ...]]:
    """Parameter blocks in flat order: W1 (2, 16), b1 (16,), W2 (16, 16), b2, W3 (16, 1), b3."""
    shapes: list[tuple[int, ...]] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        shapes += [(a, b), (b,)]
    return shapes


MLP_SHAPES = mlp_shapes()
MLP_N_PARAMS = sum(math.prod(s) for s in MLP_SHAPES)  # 337


def mlp_params(seed: int = SEED) -> np.ndarray:
    """Flat parameters, uniform(-1, 1) like micrograd's Neuron init (fixed seed)."""
    return np.random.default_rng(seed + 1).uniform(-1.0, 1.0, MLP_N_PARAMS)


def mlp_blocks(p):
    """The flat parameter vector (numpy float or object array) as [W1, b1, W2, b2, W3, b3]
    views, row-major."""
    out, o = [], 0
    for s in MLP_SHAPES:
        k = math.prod(s)
        out.append(p[o:o + k].reshape(s))
        o += k
    return out


# ================================================================ numpy (hand-written)


def rosen_value_numpy(x: np.ndarray) -> float:
    a = x[1:] - x[:-1] ** 2
    b = 1.0 - x[:-1]
    return float(np.sum(100.0 * a * a + b * b))


def rosen_grad_numpy(x: np.ndarray) -> np.ndarray:
    a = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * x[:-1] - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * a
    return g


def f3_value_numpy(x, y, z):
    return np.sin(x * y) + np.exp(-z * z) / (1 + x * x) + np.tanh(y - z) * x + np.log(1 + y * y)


def f3_grad_numpy(x, y, z):
    """Hand-written gradient of F3 (the float64 reference for the batched workloads)."""
    c = np.cos(x * y)
    e = np.exp(-z * z)
    q = 1 + x * x
    t = np.tanh(y - z)
    s = 1 - t * t
    gx = c * y - 2 * x * e / (q * q) + t
    gy = c * x + s * x + 2 * y / (1 + y * y)
    gz = -2 * z * e / q - s * x
    return gx, gy, gz


# ================================================================ tapegrad


def rosen_loop(x):
    """Rosenbrock with a Python loop over the elements (Vars while tracing)."""
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def rosen_slices(x):
    """Rosenbrock on numpy object-array slices (the same ops as rosen_loop, another order)."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def rosen_slices_mul(x):
    """rosen_slices with squares written as products: a*a instead of a**2 (info only: shows
    what pow(x, 2) costs tapegrad's replay)."""
    xm = x[:-1]
    a = x[1:] - xm * xm
    b = 1 - xm
    return (100 * (a * a) + b * b).sum()


ROSEN_FORMS = {"loop": rosen_loop, "slices": rosen_slices, "slices, a*a": rosen_slices_mul}


def f3_generic(x, y, z, m):
    """F3 over any math namespace m with sin/exp/tanh/log (tapegrad, numpy, jax.numpy, casadi)."""
    return m.sin(x * y) + m.exp(-z * z) / (1 + x * x) + m.tanh(y - z) * x + m.log(1 + y * y)


def f3_tapegrad(x, y, z):
    import tapegrad as tg

    return f3_generic(x, y, z, tg)


def _relu_objects():
    import tapegrad as tg

    return np.frompyfunc(tg.relu, 1, 1)


def make_mlp_loss_tapegrad(X: np.ndarray, y: np.ndarray) -> Callable:
    """loss(p) on a numpy object array of 337 Vars, the data as float constants; numpy
    object matmul does the multiply-adds on Vars (the same graph as micrograd's loops,
    built ~3x faster)."""
    return make_mlp_loss_objects(X, y, _relu_objects())


def make_mlp_loss_objects(X: np.ndarray, y: np.ndarray, relu: Callable) -> Callable:
    """The MLP loss on a numpy object array of scalar nodes of any system (tapegrad Vars,
    micrograd Values, 0-dim torch tensors); relu maps an object array elementwise."""
    n = len(y)

    def mlp_loss(p):
        blocks = mlp_blocks(p)
        h = X
        for k in range(0, len(blocks), 2):
            h = h @ blocks[k] + blocks[k + 1]
            if k < len(blocks) - 2:
                h = relu(h)
        margins = relu(1 - y * h[:, 0])
        return margins.sum() * (1.0 / n) + MLP_ALPHA * (p * p).sum()

    return mlp_loss


def make_mlp_point_loss_tapegrad() -> Callable:
    """The hinge term of ONE data point, loss_i(p, x (2,), y ()): traced once and replayed
    batched over the 100 points (info: the batched form of the same step)."""
    import tapegrad as tg

    relu = _relu_objects()

    def point_loss(p, x, yi):
        blocks = mlp_blocks(p)
        h = x
        for k in range(0, len(blocks), 2):
            h = h @ blocks[k] + blocks[k + 1]
            if k < len(blocks) - 2:
                h = relu(h)
        return tg.relu(1 - yi * h[0])

    return point_loss


def var_array(values: np.ndarray) -> np.ndarray:
    """Fresh leaf Vars for values, as an object array of the same shape (what tg.trace
    makes for its placeholders)."""
    import tapegrad as tg

    leaves = np.empty(values.size, dtype=object)
    leaves[:] = [tg.Var(v) for v in values.reshape(-1).tolist()]
    return leaves.reshape(values.shape)


def eager_value_and_grad(fn: Callable, values: np.ndarray) -> tuple[float, np.ndarray]:
    """fn built eagerly on fresh Var leaves, then backward: tapegrad's float64 reference."""
    leaves = var_array(values)
    root = fn(leaves)
    root.backward()
    return root.value, np.array([v.grad for v in leaves.reshape(-1)]).reshape(values.shape)


class TapegradRosen:
    def __init__(self, d: int, form: str = "loop"):
        import tapegrad as tg

        self.d, self.form, self.fn = d, form, ROSEN_FORMS[form]
        t0 = time.perf_counter()
        self.F = tg.trace(self.fn, np.zeros(d))
        self.trace_s = time.perf_counter() - t0

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.F.grad(x)


class TapegradF3:
    def __init__(self):
        import tapegrad as tg

        t0 = time.perf_counter()
        self.F = tg.trace(f3_tapegrad, 0.5, 0.5, 0.5)
        self.trace_s = time.perf_counter() - t0

    def grad(self, X, Y, Z, threads: int = 1):
        return self.F.grad(X, Y, Z, threads=threads)


class TapegradMLP:
    def __init__(self, X: np.ndarray, y: np.ndarray, p0: np.ndarray):
        import tapegrad as tg

        self.loss = make_mlp_loss_tapegrad(X, y)
        t0 = time.perf_counter()
        self.F = tg.trace(self.loss, p0)
        self.trace_s = time.perf_counter() - t0
        self.X, self.y = X, y
        self.F_point = tg.trace(make_mlp_point_loss_tapegrad(), p0, X[0], y[0])

    def value_and_grad(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        return self.F.value_and_grad(p)

    def value_and_grad_batched(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """The per-point program replayed over the 100 points (1 thread), then the mean and
        the regulariser in numpy."""
        v, (gp, _, _) = self.F_point.value_and_grad(p, self.X, self.y, threads=1)
        n = len(self.y)
        return float(v.mean() + MLP_ALPHA * np.dot(p, p)), gp.sum(axis=0) / n + 2 * MLP_ALPHA * p


# ================================================================ JAX


def jax_setup():
    """Import JAX in float64 (must run before any JAX array is made)."""
    import harness

    return harness.import_peer("jax")


def _jit_compiled(jax, fn, *example) -> tuple[Callable, float]:
    """fn jitted and compiled ahead of time for these shapes: (callable, compile seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*example).compile()
    return compiled, time.perf_counter() - t0


class JaxRosen:
    def __init__(self, d: int):
        jax = jax_setup()
        import jax.numpy as jnp

        def rosen(x):
            return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

        self.g, self.compile_s = _jit_compiled(jax, jax.grad(rosen), np.zeros(d))

    def grad(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.g(x))


class JaxF3:
    def __init__(self, n: int):
        jax = jax_setup()
        import jax.numpy as jnp

        def f3(x, y, z):
            return f3_generic(x, y, z, jnp)

        z = np.zeros(n)
        self.g, self.compile_s = _jit_compiled(jax, jax.vmap(jax.grad(f3, argnums=(0, 1, 2))), z, z, z)

    def grad(self, X, Y, Z):
        return tuple(np.asarray(a) for a in self.g(X, Y, Z))


class JaxMLP:
    def __init__(self, X: np.ndarray, y: np.ndarray):
        jax = jax_setup()
        import jax.numpy as jnp

        Xj, yj = jnp.asarray(X), jnp.asarray(y)

        def loss(p):
            blocks = mlp_blocks(p)
            h = Xj
            for k in range(0, len(blocks), 2):
                h = h @ blocks[k] + blocks[k + 1]
                if k < len(blocks) - 2:
                    h = jax.nn.relu(h)
            return jnp.mean(jax.nn.relu(1 - yj * h[:, 0])) + MLP_ALPHA * jnp.sum(p * p)

        self.vg, self.compile_s = _jit_compiled(jax, jax.value_and_grad(loss), np.zeros(MLP_N_PARAMS))

    def value_and_grad(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = self.vg(p)
        return float(v), np.asarray(g)


# ================================================================ CasADi (SX)


class CasadiBuffer:
    """A casadi Function evaluated through Function.buffer(): inputs and outputs bound as
    memoryviews of numpy arrays (zero-copy), one VM run per call."""

    def __init__(self, fn):
        self.fb, self.evaluate = fn.buffer()
        self.out = [np.zeros(fn.nnz_out(k)) for k in range(fn.n_out())]
        for k, o in enumerate(self.out):
            self.fb.set_res(k, memoryview(o))

    def __call__(self, *args: np.ndarray) -> list[np.ndarray]:
        """Bind the caller's arrays (no copy) and evaluate; results land in self.out."""
        for k, a in enumerate(args):
            self.fb.set_arg(k, memoryview(a))
        self.evaluate()
        return self.out


def _casadi_mlp_blocks(ca, p):
    """W (a, b) row-major from the flat SX p: reshape is column-major in casadi, so take
    (b, a) and transpose."""
    out, o = [], 0
    for s in MLP_SHAPES:
        k = math.prod(s)
        seg = p[o:o + k]
        out.append(ca.reshape(seg, s[1], s[0]).T if len(s) == 2 else seg.T)  # b: a 1 x n row
        o += k
    return out


class CasadiRosen:
    def __init__(self, d: int):
        import casadi as ca

        t0 = time.perf_counter()
        x = ca.SX.sym("x", d)
        f = ca.sum1(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        self.g = ca.Function("g", [x], [ca.gradient(f, x)])
        self.build_s = time.perf_counter() - t0
        self.buf = CasadiBuffer(self.g)

    def grad_buffer(self, x: np.ndarray) -> np.ndarray:
        """Zero-copy: x bound as the input, the gradient left in a bound numpy array."""
        return self.buf(x)[0]

    def grad_call(self, x: np.ndarray) -> np.ndarray:
        """The ordinary call: numpy -> DM -> DM -> numpy."""
        return self.g(x).full().ravel()


class CasadiF3:
    def __init__(self, n: int, parallel: str = "serial", workers: int = 1):
        import casadi as ca

        x, y, z = ca.SX.sym("x"), ca.SX.sym("y"), ca.SX.sym("z")
        f = f3_generic(x, y, z, ca)
        grad = ca.gradient(f, ca.vertcat(x, y, z))  # one reverse sweep for all three
        g = ca.Function("g", [x, y, z], [grad[0], grad[1], grad[2]])
        self.m = g.map(n, parallel, workers) if parallel != "serial" else g.map(n)
        self.buf = CasadiBuffer(self.m)

    def grad_buffer(self, X, Y, Z):
        return tuple(self.buf(X, Y, Z))

    def grad_call(self, X, Y, Z):
        return tuple(r.full().ravel() for r in self.m(X, Y, Z))


class CasadiF3Jit(CasadiF3):
    """The same map, code-generated to C and compiled by CasADi's JIT (the system C
    compiler, -O3 -march=native) instead of run in the SX virtual machine. The map is
    wrapped in an MX Function so the loop over points is compiled too (JIT of the scalar
    function alone and then map(n) runs ~4x slower).

    The generated C and the compiler's outputs go to a temporary directory that lives as
    long as this object (CasADi's default is the current directory)."""

    def __init__(self, n: int):
        import casadi as ca

        super().__init__(n)
        self.tmp_dir = tempfile.mkdtemp(prefix="tapegrad-casadi-jit-")
        # Removing the directory removes the files, so CasADi's own clean-up is off (it
        # would warn about files already gone).
        weakref.finalize(self, shutil.rmtree, self.tmp_dir, ignore_errors=True)
        args = [ca.MX.sym(s, 1, n) for s in "XYZ"]
        t0 = time.perf_counter()
        self.m = ca.Function("g_map_jit", args, self.m(*args),
                             {"jit": True, "compiler": "shell", "jit_cleanup": False,
                              "jit_options": {"flags": ["-O3", "-march=native"], "cleanup": False,
                                              "directory": self.tmp_dir + os.sep}})
        self.buf = CasadiBuffer(self.m)
        self.buf(*(np.zeros(n),) * 3)  # the compiler runs on first use in some versions
        self.compile_s = time.perf_counter() - t0


class CasadiMLP:
    def __init__(self, X: np.ndarray, y: np.ndarray):
        import casadi as ca

        t0 = time.perf_counter()
        p = ca.SX.sym("p", MLP_N_PARAMS)
        blocks = _casadi_mlp_blocks(ca, p)
        n = X.shape[0]
        h = ca.DM(X)
        for k in range(0, len(blocks), 2):
            h = ca.mtimes(h, blocks[k]) + ca.repmat(blocks[k + 1], n, 1)
            if k < len(blocks) - 2:
                h = ca.fmax(h, 0)
        margins = ca.fmax(1 - ca.DM(y) * h[:, 0], 0)
        loss = ca.sum1(margins) / n + MLP_ALPHA * ca.sumsqr(p)
        self.vg = ca.Function("vg", [p], [loss, ca.gradient(loss, p)])
        self.build_s = time.perf_counter() - t0
        self.buf = CasadiBuffer(self.vg)

    def value_and_grad_buffer(self, p):
        v, g = self.buf(p)
        return float(v[0]), g

    def value_and_grad_call(self, p):
        v, g = self.vg(p)
        return float(v), g.full().ravel()


# ================================================================ checks


def rel_err(got, want) -> float:
    """Max-norm relative error ||got - want||_inf / ||want||_inf (0 when equal; inf on shape
    mismatch or NaN)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    if np.array_equal(got, want):
        return 0.0
    diff = np.max(np.abs(got - want))
    if diff != diff:
        return math.inf
    return float(diff / max(np.max(np.abs(want)), 1e-300))
