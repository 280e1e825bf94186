"""Nested transforms against JAX float64 on random functions: grad(grad), jvp(grad),
grad(jvp), vjp(grad) and hessian(grad) of random expressions, each written once and run
by both libraries. Skipped without JAX (`pip install "jax[cpu]==0.10.2"`; CI installs it)."""
import importlib
import math
import random

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

tg = importlib.import_module("tapegrad")

# op name -> (tapegrad, jax, domain check on the operand values)
UNARY = {
    "sin": (tg.sin, jnp.sin), "cos": (tg.cos, jnp.cos), "tanh": (tg.tanh, jnp.tanh),
    "exp": (lambda v: tg.exp(0.3 * v), lambda v: jnp.exp(0.3 * v)),
    "sigmoid": (tg.sigmoid, jax.nn.sigmoid), "softplus": (tg.softplus, jax.nn.softplus),
    "atan": (tg.atan, jnp.arctan), "square": (lambda v: v * v, lambda v: v * v),
    "log1p_sq": (lambda v: tg.log1p(v * v), lambda v: jnp.log1p(v * v)),
    "erf": (tg.erf, jax.scipy.special.erf),
}
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "hypot1": (lambda a, b: tg.hypot(a, b + 2.0), lambda a, b: jnp.hypot(a, b + 2.0)),
    "div1": (lambda a, b: a / (1.5 + b * b), lambda a, b: a / (1.5 + b * b)),
}


def random_function(seed, n_in=2, steps=8):
    """A random smooth expression of n_in inputs: (tapegrad fn, jax fn) on vectors, and
    its steps."""
    r = random.Random(seed)
    prog = []
    for i in range(steps):
        n = n_in + i
        if r.random() < 0.5:
            prog.append((r.choice(sorted(UNARY)), (r.randrange(n),)))
        else:
            prog.append((r.choice(sorted(BINARY)), (r.randrange(n), r.randrange(n))))

    def build(which):
        def fn(x):
            vals = [x[i] for i in range(n_in)]
            for op, args in prog:
                table = UNARY if len(args) == 1 else BINARY
                vals.append(table[op][which](*(vals[a] for a in args)))
            return sum(vals[n_in:], vals[-1] * 0.5)
        return fn

    return build(0), build(1), prog


def close(got, want, rel=1e-10):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * scale)


SEEDS = list(range(8))


@pytest.mark.parametrize("seed", SEEDS)
def test_nested_transforms_match_jax(seed):
    f_tg, f_jax, _ = random_function(seed)
    r = np.random.default_rng(seed)
    x = r.uniform(-1.5, 1.5, 2)
    t = r.uniform(-1, 1, 2)
    xj, tj = jnp.asarray(x), jnp.asarray(t)
    # grad(sum of grad): a second derivative through a nested gradient
    close(tg.grad(lambda v: tg.grad(f_tg)(v).sum())(x),
          jax.grad(lambda v: jax.grad(f_jax)(v).sum())(xj))
    # jvp of the gradient (forward over reverse) and grad of a jvp (reverse over forward)
    close(tg.jvp(tg.grad(f_tg), (x,), (t,))[1], jax.jvp(jax.grad(f_jax), (xj,), (tj,))[1])
    close(tg.grad(lambda v: tg.jvp(f_tg, (v,), (t,))[1])(x),
          jax.grad(lambda v: jax.jvp(f_jax, (v,), (tj,))[1])(xj))
    # vjp of the gradient with a cotangent, and the Hessian of a gradient's component
    ct = r.uniform(-1, 1, 2)
    close(tg.vjp(tg.grad(f_tg), x)[1](ct)[0], jax.vjp(jax.grad(f_jax), xj)[1](jnp.asarray(ct))[0])
    close(tg.hessian(lambda v: tg.grad(f_tg)(v)[0])(x),
          jax.hessian(lambda v: jax.grad(f_jax)(v)[0])(xj))
    # third order, three deep
    close(tg.grad(lambda v: tg.grad(lambda w: tg.grad(f_tg)(w)[1])(v)[0])(x),
          jax.grad(lambda v: jax.grad(lambda w: jax.grad(f_jax)(w)[1])(v)[0])(xj), rel=1e-9)


def test_random_functions_are_not_trivial():
    """The generated functions use every op at least once over the seeds, and their second
    derivatives are not all zero (the comparison above compares something)."""
    used = {op for seed in SEEDS for op, _ in random_function(seed)[2]}
    assert used == set(UNARY) | set(BINARY)
    f_tg, _, _ = random_function(0)
    assert np.abs(tg.hessian(f_tg)(np.array([0.3, -0.4]))).max() > 1e-3
    assert math.isfinite(float(tg.grad(lambda v: tg.grad(f_tg)(v).sum())(np.array([0.1, 0.2]))[0]))
