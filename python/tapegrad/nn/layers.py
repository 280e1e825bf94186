"""Modules in micrograd's style: Neuron, Layer and MLP over scalar Vars.

A Module keeps its parameters as attributes: Vars, lists or tuples of Vars, and
submodules. ``parameters()`` walks them in attribute order, so a user-defined Module
written that way needs no ``parameters()`` of its own and can be compiled with
``tapegrad.nn.compile_loss``.
"""
from __future__ import annotations

import numbers
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import reference
from .._core import Var

VAR_TYPES = (Var, reference.Var)

# name -> the activation applied to a neuron's pre-activation (a Var of either backend).
ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "relu": lambda v: v.relu(),
    "tanh": lambda v: v.tanh(),
    "sigmoid": lambda v: v.sigmoid(),
    "linear": lambda v: v,
}


def relu(v: Any) -> Any:
    """max(v, 0) with relu'(0) = 0 (micrograd's and PyTorch's convention).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.relu(tg.Var(-2.0)).value, tg.nn.relu(tg.Var(3.0)).value
        (0.0, 3.0)
    """
    return v.relu()


def tanh(v: Any) -> Any:
    """tanh(v).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.tanh(tg.Var(0.0)).value
        0.0
    """
    return v.tanh()


def sigmoid(v: Any) -> Any:
    """1 / (1 + exp(-v)).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.sigmoid(tg.Var(0.0)).value
        0.5
    """
    return v.sigmoid()


def _activation(nonlin: Any) -> tuple[str, Callable[[Any], Any]]:
    if nonlin is True:
        return "relu", ACTIVATIONS["relu"]
    if nonlin is False or nonlin is None:
        return "linear", ACTIVATIONS["linear"]
    if isinstance(nonlin, str):
        if nonlin not in ACTIVATIONS:
            raise ValueError(f"nonlin: unknown activation {nonlin!r}; expected one of "
                             f"{sorted(ACTIVATIONS)}, True (relu), False (linear) or a callable")
        return nonlin, ACTIVATIONS[nonlin]
    if callable(nonlin):
        return getattr(nonlin, "__name__", "custom"), nonlin
    raise TypeError(f"nonlin: expected a name, a bool or a callable, got {type(nonlin).__name__}")


def _rng(seed: Any) -> Any:
    """None: the global `random` module (micrograd's behaviour); an int: a private
    random.Random(seed); a random.Random: drawn from as is (shared across layers)."""
    if seed is None or seed is random:
        return random
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return random.Random(seed)
    raise TypeError(f"seed: expected None, an int or a random.Random, got {type(seed).__name__}")


def _backend_var(backend: Any) -> type:
    if backend is None:
        return Var
    var = getattr(backend, "Var", None)
    if var not in VAR_TYPES:
        raise TypeError("backend: expected the tapegrad module or tapegrad.reference, got "
                        f"{backend!r}")
    return var


def _points(x: Any) -> Any:
    """A point as a list: numpy rows become Python floats (or the Vars of an object array),
    a single Var (the output of a one-neuron layer) a list of one."""
    if isinstance(x, (*VAR_TYPES, numbers.Real)):
        return [x]
    tolist = getattr(x, "tolist", None)
    return tolist() if tolist is not None else x


class Module:
    """Base class: ``parameters()``, ``zero_grad()`` and ``__call__`` (PyTorch's and
    micrograd's names).

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [4, 1], seed=1)  # a Module
        >>> loss = model([0.5, -0.5]) ** 2
        >>> loss.backward(); model.zero_grad()
        >>> len(model.parameters()), {p.grad for p in model.parameters()}
        (17, {0.0})
    """

    def __call__(self, x: Any) -> Any:
        raise NotImplementedError

    def parameters(self) -> list:
        """Every parameter Var, in attribute order (submodules and lists recursively)."""
        out: list = []
        _walk(self, out.append)
        return out

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0."""
        for p in self.parameters():
            p.grad = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _walk(obj: Any, visit: Callable[[Any], Any]) -> Any:
    """Visit every parameter Var of obj in order; visit's result (if not None) replaces it."""
    if isinstance(obj, VAR_TYPES):
        new = visit(obj)
        return obj if new is None else new
    if isinstance(obj, Module):
        for name, value in vars(obj).items():
            new = _walk(value, visit)
            if new is not value:
                setattr(obj, name, new)
        return obj
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            obj[i] = _walk(value, visit)
        return obj
    if isinstance(obj, tuple):
        items = [_walk(value, visit) for value in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    return obj


def replace_parameters(model: Module, new: Sequence[Any]) -> list:
    """Put the Vars ``new`` in place of model's parameters (same order as
    ``parameters()``); return the old ones. Used to trace a model on placeholder Vars.

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.Neuron(2, seed=1)
        >>> old = tg.nn.replace_parameters(model, [tg.Var(1.0), tg.Var(2.0), tg.Var(0.5)])
        >>> len(old), [p.value for p in model.parameters()]
        (3, [1.0, 2.0, 0.5])
    """
    new = list(new)
    old = model.parameters()
    if len(new) != len(old):
        raise ValueError(f"replace_parameters: the model has {len(old)} parameters, got "
                         f"{len(new)}")
    it: Iterator[Any] = iter(new)
    _walk(model, lambda _: next(it))
    if any(a is not b for a, b in zip(model.parameters(), new)):
        restore = iter(old)
        _walk(model, lambda _: next(restore))
        raise TypeError(f"{type(model).__name__}.parameters() does not list the Vars held in "
                        "its attributes, in attribute order; keep parameters in attributes "
                        "(Vars, lists of Vars, submodules) and do not override parameters()")
    return old


class Neuron(Module):
    """act(w · x + b), weights uniform(-1, 1) and b = 0 as in micrograd.

    ``nonlin``: True (relu, micrograd's default), False (linear), "relu", "tanh",
    "sigmoid", "linear" or a callable on a Var.

    Examples:
        >>> import tapegrad as tg
        >>> n = tg.nn.Neuron(2, seed=1)  # w1, w2, b
        >>> len(n.parameters()), n([1.0, 2.0]).op
        (3, 'relu')
    """

    def __init__(self, nin: int, nonlin: Any = True, *, seed: Any = None, backend: Any = None):
        rng = _rng(seed)
        make = _backend_var(backend)
        self.w = [make(rng.uniform(-1, 1)) for _ in range(nin)]
        self.b = make(0.0)
        self.nonlin, self._act = _activation(nonlin)

    def __call__(self, x: Any) -> Any:
        x = _points(x)
        if len(x) != len(self.w):
            raise ValueError(f"Neuron({len(self.w)}): got an input of length {len(x)}")
        return self._forward(x)

    def _forward(self, x: Sequence[Any]) -> Any:
        return self._act(sum((wi * xi for wi, xi in zip(self.w, x)), self.b))

    def __repr__(self) -> str:
        kind = {"relu": "ReLU", "linear": "Linear"}.get(self.nonlin, self.nonlin.capitalize())
        return f"{kind}Neuron({len(self.w)})"


class Layer(Module):
    """nout Neurons on the same input; one output is returned as a Var, more as a list.

    Examples:
        >>> import tapegrad as tg
        >>> layer = tg.nn.Layer(2, 3, seed=1)
        >>> len(layer([1.0, 2.0])), len(layer.parameters())
        (3, 9)
    """

    def __init__(self, nin: int, nout: int, *, seed: Any = None, backend: Any = None,
                 **kwargs: Any):
        rng = _rng(seed)
        self.neurons = [Neuron(nin, seed=rng, backend=backend, **kwargs) for _ in range(nout)]
        self.nin = nin

    def __call__(self, x: Any) -> Any:
        x = _points(x)
        if len(x) != self.nin:
            raise ValueError(f"Layer({self.nin}, {len(self.neurons)}): got an input of length "
                             f"{len(x)}")
        out = [n._forward(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Layers of sizes nin -> nouts[0] -> ... -> nouts[-1]; hidden layers use ``nonlin``
    (relu by default), the last layer is linear, as in micrograd.

    Examples:
        >>> import tapegrad as tg
        >>> model = tg.nn.MLP(2, [16, 16, 1], seed=1337)  # micrograd's demo network and weights
        >>> len(model.parameters()), type(model([0.5, -0.5])).__name__
        (337, 'Var')
    """

    def __init__(self, nin: int, nouts: Sequence[int], nonlin: Any = "relu", *,
                 seed: Any = None, backend: Any = None):
        rng = _rng(seed)
        sz = [nin, *nouts]
        self.layers = [Layer(sz[i], sz[i + 1], seed=rng, backend=backend,
                             nonlin=nonlin if i != len(nouts) - 1 else False)
                       for i in range(len(nouts))]

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
