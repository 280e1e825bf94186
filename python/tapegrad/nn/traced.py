"""The fast path: a model's loss traced once as a function of the flat parameter vector
(and the data), then replayed in C++ every training step.

    theta = tg.nn.get_parameters(model)                  # float64 vector, a copy
    loss = tg.nn.compile_loss(model, loss_fn, X, y)      # loss_fn(model, X, y) -> Var
    opt = tg.nn.SGD(theta, lr=0.1)
    for _ in range(100):
        value, grad = loss.value_and_grad(theta)         # replay: no Python per node
        opt.step(grad)                                   # theta updated in place
    tg.nn.set_parameters(model, theta)                   # back into the model's Vars

``loss_fn`` is the very function an eager loop calls, so both loops compute the same
numbers. While tracing, the model's parameters are swapped for the trace's placeholder
Vars and the data arrive as numpy object arrays of Vars, so one compiled loss serves
any parameter values and any data of the traced shapes. ``loss_fn`` must be branch-free
in the values (relu, maximum, tg.where; no ``if var > 0``): a Python comparison is
recorded as a guard and raises TraceError on an input that takes the other branch.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._core import Var
from ..function import Function, trace
from .layers import Module, replace_parameters


def get_parameters(model: Module) -> np.ndarray:
    """The model's parameter values as a new float64 vector, in ``parameters()`` order.

    Examples:
        >>> import tapegrad as tg
        >>> theta = tg.nn.get_parameters(tg.nn.MLP(2, [4, 1], seed=1))
        >>> theta.shape, theta.dtype
        ((17,), dtype('float64'))
    """
    return np.array([p.value for p in model.parameters()], dtype=np.float64)


def set_parameters(model: Module, theta: Any) -> None:
    """Write the vector ``theta`` (``parameters()`` order) into the model's parameter Vars.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> model = tg.nn.Neuron(2, seed=1)
        >>> tg.nn.set_parameters(model, np.array([1.0, 2.0, 0.5]))
        >>> [p.value for p in model.parameters()]
        [1.0, 2.0, 0.5]
    """
    params = model.parameters()
    values = np.asarray(theta, dtype=np.float64).reshape(-1)
    if values.size != len(params):
        raise ValueError(f"set_parameters: the model has {len(params)} parameters, got "
                         f"{values.size} values")
    for p, v in zip(params, values.tolist()):
        p.value = v


def _check_traceable(model: Module, what: str) -> list:
    params = model.parameters()
    if not params:
        raise ValueError(f"{what}: the model has no parameters")
    if not all(type(p) is Var for p in params):
        raise TypeError(f"{what}: tracing needs a model built on tapegrad's C++ backend "
                        "(backend=None), not tapegrad.reference")
    return params


class _Swapped:
    """Within ``with``: model's parameters are ``new`` (placeholders); restored after."""

    def __init__(self, model: Module, new: Any):
        self.model, self.new = model, list(new)

    def __enter__(self) -> Module:
        self.old = replace_parameters(self.model, self.new)
        return self.model

    def __exit__(self, *exc: Any) -> None:
        replace_parameters(self.model, self.old)


def _of_parameters(model: Module, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``fn(model, *args)`` as a function of the parameter vector: for tracing, the model's
    parameters are swapped for the vector's placeholder Vars, then restored."""

    def of_parameters(theta: np.ndarray, *args: Any) -> Any:
        with _Swapped(model, theta.tolist()):
            out = fn(model, *args)
        if not isinstance(out, Var):
            raise TypeError(f"{what} must return a scalar Var, got {type(out).__name__}")
        return out

    of_parameters.__name__ = getattr(fn, "__name__", "loss")
    return of_parameters


class CompiledLoss:
    """``loss_fn(model, *data)`` traced as a ``tapegrad.Function`` of
    ``(theta, *data)``; made by ``compile_loss``. Calls take the parameter vector and,
    optionally, new data of the traced shapes (default: the data it was compiled with).

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(1, [1], seed=0)  # one neuron: w x + b
        >>> loss = tg.nn.compile_loss(model, lambda m, x: m(x) ** 2, 2.0)  # a CompiledLoss
        >>> value, grad = loss.value_and_grad([1.0, 0.5])  # theta = (w, b)
        >>> value, grad.tolist()  # (2 + 0.5)^2, and 2 (w x + b) (x, 1)
        (6.25, [10.0, 5.0])
    """

    def __init__(self, function: Function, data: tuple, n_params: int):
        self.function = function
        self.data = data
        self.n_params = n_params

    def _args(self, theta: Any, data: tuple) -> tuple:
        if data and len(data) != len(self.data):
            raise TypeError(f"expected {len(self.data)} data argument(s), got {len(data)}")
        return (theta, *(data or self.data))

    def __call__(self, theta: Any, *data: Any) -> float:
        """The loss at ``theta``."""
        return float(self.function(*self._args(theta, data)))

    def value_and_grad(self, theta: Any, *data: Any) -> tuple[float, np.ndarray]:
        """(loss, d loss / d theta) at ``theta``: one forward and one reverse replay."""
        value, grads = self.function.value_and_grad(*self._args(theta, data))
        return float(value), (grads[0] if isinstance(grads, tuple) else grads)

    def grad(self, theta: Any, *data: Any) -> np.ndarray:
        """d loss / d theta at ``theta``."""
        return self.value_and_grad(theta, *data)[1]

    def __repr__(self) -> str:
        return f"<CompiledLoss of {self.n_params} parameters: {self.function!r}>"


def compile_loss(model: Module, loss_fn: Callable[..., Any], *data: Any,
                 cse: bool = True) -> CompiledLoss:
    """Trace ``loss_fn(model, *data)`` (a scalar Var) once, as a function of the model's
    parameter vector and the data (numbers or numpy arrays), at the current parameters.

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)
        >>> X, y = tg.nn.make_moons(20)
        >>> def loss_fn(model, X, y):
        ...     return tg.nn.hinge_loss([model(x) for x in X], y)
        >>> loss = tg.nn.compile_loss(model, loss_fn, X, y)
        >>> theta = tg.nn.get_parameters(model)
        >>> opt = tg.nn.SGD(theta, lr=0.1)
        >>> value, grad = loss.value_and_grad(theta); opt.step(grad)  # theta updated in place
        >>> loss(theta) < value
        True
    """
    params = _check_traceable(model, "compile_loss")
    theta0 = np.array([p.value for p in params])

    F = trace(_of_parameters(model, loss_fn, "compile_loss: loss_fn"), theta0, *data, cse=cse)
    return CompiledLoss(F, tuple(data), len(params))


class PointwiseLoss:
    """``mean_i point_loss(model, *data_i) + penalty(model)``: the per-point loss traced
    once for ONE point and replayed over all points as a batch (SIMD lanes across the
    points, in C++), the penalty traced separately; made by
    ``compile_pointwise_loss``. Same interface as ``CompiledLoss``.

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)
        >>> X, y = tg.nn.make_moons(20)
        >>> def loss_fn(model, X, y):
        ...     return tg.nn.hinge_loss([model(x) for x in X], y)
        >>> point = lambda m, x, yi: (1 - yi * m(x)).relu()
        >>> loss = tg.nn.compile_pointwise_loss(model, point, X, y)  # a PointwiseLoss
        >>> value, grad = loss.value_and_grad(tg.nn.get_parameters(model))
        >>> abs(value - loss_fn(model, X, y).value) < 1e-12
        True
    """

    def __init__(self, point: Function, penalty: Function | None, data: tuple, n_params: int):
        self.function = point
        self.penalty = penalty
        self.data = data
        self.n_params = n_params

    def value_and_grad(self, theta: Any, *data: Any) -> tuple[float, np.ndarray]:
        """(loss, d loss / d theta) at ``theta``: one batched replay over the points (and
        one replay of the penalty)."""
        if data and len(data) != len(self.data):
            raise TypeError(f"expected {len(self.data)} data argument(s), got {len(data)}")
        values, grads = self.function.value_and_grad(theta, *(data or self.data))
        grads = grads[0] if isinstance(grads, tuple) else grads
        value, grad = float(values.mean()), grads.mean(axis=0)
        if self.penalty is not None:
            pv, pg = self.penalty.value_and_grad(theta)
            value, grad = value + pv, grad + pg
        return value, grad

    def __call__(self, theta: Any, *data: Any) -> float:
        return self.value_and_grad(theta, *data)[0]

    def grad(self, theta: Any, *data: Any) -> np.ndarray:
        return self.value_and_grad(theta, *data)[1]

    def __repr__(self) -> str:
        return (f"<PointwiseLoss of {self.n_params} parameters: {self.function!r}"
                + (f" + penalty {self.penalty!r}>" if self.penalty is not None else ">"))


def compile_pointwise_loss(model: Module, point_loss: Callable[..., Any], *data: Any,
                           penalty: Callable[[Module], Any] | None = None,
                           cse: bool = True) -> PointwiseLoss:
    """The mean over points of ``point_loss(model, *point_data)``, plus ``penalty(model)``,
    for losses that are a mean of per-point terms (micrograd's demo: ``point_loss`` =
    ``relu(1 - y * model(x))``, ``penalty`` = ``1e-4 * l2_penalty(model.parameters())``).

    Each array in ``data`` holds one row per point. Only one point is traced (a program
    ~N times smaller than ``compile_loss``'s), and every step replays it over all the
    points at once in SIMD lanes: measured here, micrograd's demo step takes about 0.13 ms
    this way against about 0.2 ms for the whole-loss program. The mean is taken in numpy,
    so the loss may differ from the eager graph's in the last bits (summation order).

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)
        >>> X, y = tg.nn.make_moons(20)
        >>> def loss_fn(model, X, y):
        ...     return tg.nn.hinge_loss([model(x) for x in X], y)
        >>> loss = tg.nn.compile_pointwise_loss(
        ...     model, lambda m, x, yi: (1 - yi * m(x)).relu(), X, y,
        ...     penalty=lambda m: 1e-4 * tg.nn.l2_penalty(m.parameters()))
        >>> grad = loss.grad(tg.nn.get_parameters(model))
        >>> grad.shape
        (17,)
    """
    params = _check_traceable(model, "compile_pointwise_loss")
    if not data or any(np.ndim(d) < 1 for d in data):
        raise ValueError("compile_pointwise_loss: give the data as arrays with one row per "
                         "point")
    n = {len(d) for d in data}
    if len(n) != 1:
        raise ValueError(f"compile_pointwise_loss: data arrays have different numbers of "
                         f"points: {sorted(n)}")
    theta0 = np.array([p.value for p in params])

    arrays = tuple(np.asarray(d, dtype=np.float64) for d in data)
    point = trace(_of_parameters(model, point_loss, "compile_pointwise_loss: point_loss"),
                  theta0, *(a[0] for a in arrays), cse=cse)
    pen = (trace(_of_parameters(model, penalty, "compile_pointwise_loss: penalty"), theta0,
                 cse=cse) if penalty is not None else None)
    return PointwiseLoss(point, pen, arrays, len(params))


class CompiledModel:
    """The model's forward pass on one point, traced as a ``tapegrad.Function`` of
    ``(theta, x)``; made by ``compile_model``. ``model_fn(theta, X)`` evaluates a
    whole batch ``X`` (leading dimensions are batch dimensions) in C++, on all cores.

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)
        >>> X, _ = tg.nn.make_moons(20)
        >>> forward = tg.nn.compile_model(model, X[0])  # a CompiledModel
        >>> scores = forward(tg.nn.get_parameters(model), X)  # all 20 points at once
        >>> scores.shape, bool(abs(scores[0] - model(X[0]).value) < 1e-12)
        ((20,), True)
    """

    def __init__(self, function: Function, n_params: int):
        self.function = function
        self.n_params = n_params

    def __call__(self, theta: Any, X: Any) -> np.ndarray:
        return np.asarray(self.function(theta, X))

    def __repr__(self) -> str:
        return f"<CompiledModel of {self.n_params} parameters: {self.function!r}>"


def compile_model(model: Module, example_x: Any) -> CompiledModel:
    """Trace ``model(x)`` at one example point ``x`` (a number or a 1-D array).

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)
        >>> forward = tg.nn.compile_model(model, [0.0, 0.0])
        >>> forward(tg.nn.get_parameters(model), [[0.5, -0.5], [1.0, 0.0]]).shape
        (2,)
    """
    params = _check_traceable(model, "compile_model")
    theta0 = np.array([p.value for p in params])

    def forward(theta: np.ndarray, x: Any) -> Any:
        with _Swapped(model, theta.tolist()):
            return model(x)

    return CompiledModel(trace(forward, theta0, example_x), len(params))
