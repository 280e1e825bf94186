"""What the transforms reject and how they say it: argument counts and shapes,
non-scalar functions, functional arguments."""
import numpy as np
import pytest
from transforms_helpers import scalar_fn, vec_fn, x2_plus_xy

import tapegrad as tg

# ---------------------------------------------------------------------------- errors


def test_errors_on_arguments_and_shapes():
    F = tg.trace(scalar_fn, np.zeros(3))
    x = np.ones(3)
    with pytest.raises(TypeError, match="1 argument"):
        F.hvp(x)  # no v
    with pytest.raises(TypeError, match="1 argument"):
        F.hvp(x, x, x)
    with pytest.raises(TypeError, match="1 argument"):
        F.jvp(x)
    with pytest.raises(TypeError, match="argument"):
        F.hessian(x, x)
    with pytest.raises(TypeError, match="argument"):
        F.hessian()
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.hessian(np.ones(4))
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.hvp(x, np.ones(2))
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        F.jvp(x, np.ones((3, 2)))
    G = tg.trace(x2_plus_xy, 0.0, 0.0)
    with pytest.raises(TypeError, match="tuple of 2"):
        G.jvp(1.0, 2.0, (1.0,))
    with pytest.raises(TypeError, match="tuple of 2"):
        G.hvp(1.0, 2.0, 1.0)
    V = tg.trace(vec_fn, np.zeros(3))
    _, vjp_fn = V.vjp(x)
    with pytest.raises(ValueError, match="cotangent"):
        vjp_fn(np.ones(3))
    with pytest.raises(TypeError):
        F.hessian("abc")


def test_errors_on_non_scalar_functions():
    with pytest.raises(ValueError, match="scalar"):
        tg.hessian(vec_fn)(np.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        tg.hvp(vec_fn, (np.ones(3),), (np.ones(3),))
    V = tg.trace(vec_fn, np.zeros(3))
    for call in (lambda: V.hessian(np.ones(3)), lambda: V.hvp(np.ones(3), np.ones(3)),
                 lambda: V.grad(np.ones(3))):
        with pytest.raises(ValueError, match="scalar"):
            call()
    with pytest.raises(TypeError, match="scalar"):
        tg.grad(vec_fn)(np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        tg.value_and_grad(lambda x: "nope")(1.0)


def test_errors_on_functional_arguments():
    # (Vars as arguments: every transform nests, tests/test_autograd.py)
    for bad in (2, -3, (0, 5)):
        with pytest.raises(ValueError, match="out of range"):
            tg.grad(x2_plus_xy, argnums=bad)(1.0, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        tg.hessian(x2_plus_xy, argnums=2)(1.0, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        tg.jacobian(x2_plus_xy, argnums=(3,))(1.0, 2.0)
    for bad in ((), (0.5,), "0"):
        with pytest.raises(TypeError, match="argnums"):
            tg.grad(x2_plus_xy, argnums=bad)(1.0, 2.0)
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        tg.jvp(x2_plus_xy, (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match="1 primals but 2 tangents"):
        tg.hvp(lambda a: a * a, (1.0,), (1.0, 2.0))
    with pytest.raises(TypeError, match="tuple"):
        tg.jvp(x2_plus_xy, 1.0, 1.0)
    with pytest.raises(TypeError, match="tuple"):
        tg.hvp(lambda a: a * a, 1.0, (1.0,))
    with pytest.raises(TypeError, match="callable"):
        tg.grad(3.0)
    with pytest.raises(TypeError, match="real numbers"):
        tg.grad(x2_plus_xy)("x", 1.0)
