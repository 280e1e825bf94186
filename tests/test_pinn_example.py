"""examples/pinn.py: the physics-informed network trained through nested derivatives,
eagerly and traced (the same loss and gradient), and close to the exact solution."""
import importlib.util
import pathlib

import numpy as np
import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pinn.py"
spec = importlib.util.spec_from_file_location("pinn_example", PATH)
pinn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pinn)
tg = pinn.tg


def test_eager_and_traced_losses_agree():
    X = np.linspace(0, 1, 12)[1:-1]
    model = pinn.make_model(seed=3)
    theta = tg.nn.get_parameters(model)
    le, ge = pinn.eager_value_and_grad(model, X)
    lt, gt = tg.nn.compile_pointwise_loss(model, pinn.point_loss, X, penalty=pinn.boundary) \
        .value_and_grad(theta)
    assert le == pytest.approx(lt, rel=1e-13)
    np.testing.assert_allclose(ge, gt, rtol=1e-11, atol=1e-13 * np.abs(ge).max())


@pytest.mark.slow
def test_training_finds_sin_pi_x():
    model = pinn.make_model()
    X = np.linspace(0, 1, 42)[1:-1]
    losses, _, _ = pinn.train("traced", model, X, steps=1500, lr=3e-3,
                              bar=lambda it, mode: it)
    err, _, _ = pinn.error_vs_exact(model)
    assert losses[-1] < 1e-2 * losses[0] and err < 1e-2, (losses[-1], err)
