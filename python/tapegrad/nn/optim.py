"""Optimisers with PyTorch's update rules: SGD (momentum, dampening, Nesterov, weight
decay) and Adam (weight decay, AMSGrad).

One optimiser works on either kind of parameters:

* eager: a list of Vars (``model.parameters()``); ``loss.backward()`` then ``step()``
  reads each Var's grad and writes its new value; ``zero_grad()`` clears the grads;
* traced: a float64 numpy vector (``get_parameters(model)``), updated in place by
  ``step(grad)`` with the gradient from a compiled loss.

Both run the same numpy update, so the two training loops agree bit for bit.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .layers import VAR_TYPES


class Optimizer:
    """Base class: holds the parameters, ``lr`` (settable between steps, for schedules)
    and per-parameter state (``state``: name -> numpy array).

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> theta = np.array([1.0, 2.0])  # a parameter vector, updated in place
        >>> opt = tg.nn.SGD(theta, lr=0.5)
        >>> opt.step(np.array([1.0, 1.0])); theta
        array([0.5, 1.5])
    """

    def __init__(self, params: Any, lr: float):
        if isinstance(params, np.ndarray):
            if params.dtype != np.float64 or not params.flags.writeable:
                raise TypeError("params: a numpy parameter vector must be a writeable float64 "
                                f"array (updated in place), got {params.dtype}")
            self._vector: np.ndarray | None = params
            self._vars: list | None = None
        else:
            self._vars = list(params)
            self._vector = None
            if not self._vars:
                raise ValueError("params: got an empty parameter list")
            bad = next((p for p in self._vars if not isinstance(p, VAR_TYPES)), None)
            if bad is not None:
                raise TypeError("params: expected Vars (model.parameters()) or a float64 numpy "
                                f"vector, got a {type(bad).__name__} among them")
        if not lr >= 0.0:
            raise ValueError(f"lr: expected a non-negative learning rate, got {lr}")
        self.lr = float(lr)
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0

    def zero_grad(self) -> None:
        """Set every parameter Var's grad to 0 (nothing to do for a numpy vector)."""
        for p in self._vars or ():
            p.grad = 0.0

    def step(self, grad: Any = None) -> None:
        """One update. Vars: from their grads (``grad`` must be None). A numpy vector:
        from ``grad``, an array of the vector's shape; the vector is updated in place."""
        if self._vars is not None:
            if grad is not None:
                raise TypeError("step: this optimiser holds Vars and reads their .grad; "
                                "pass no gradient")
            values = np.array([p.value for p in self._vars])
            g = np.array([p.grad for p in self._vars])
            self.steps += 1
            self._update(values, g)
            for p, v in zip(self._vars, values.tolist()):
                p.value = v
            return
        assert self._vector is not None
        if grad is None:
            raise TypeError("step: this optimiser holds a numpy vector; pass its gradient, "
                            "step(grad)")
        g = np.asarray(grad, dtype=np.float64)
        if g.shape != self._vector.shape:
            raise ValueError(f"step: grad has shape {g.shape}, the parameters {self._vector.shape}")
        self.steps += 1
        self._update(self._vector, g)

    def _update(self, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD: g += weight_decay p; buf = g (first step), else
    momentum buf + (1 - dampening) g; p -= lr (g + momentum buf if nesterov else buf).

    Examples:
        >>> import tapegrad as tg
        >>> w = tg.Var(1.0)
        >>> opt = tg.nn.SGD([w], lr=0.1)
        >>> for _ in range(3):
        ...     opt.zero_grad(); (w * w).backward(); opt.step()
        >>> round(w.value, 12)  # w *= 0.8 per step
        0.512
    """

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be non-negative")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def _update(self, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = self.state.get("momentum_buffer")
            if buf is None:
                buf = self.state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adam(Optimizer):
    """torch.optim.Adam: m, v moving averages of g and g^2, bias-corrected;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

    Examples:
        >>> import tapegrad as tg
        >>> w = tg.Var(1.0)
        >>> opt = tg.nn.Adam([w], lr=0.1)
        >>> opt.zero_grad(); (w * w).backward(); opt.step()
        >>> round(w.value, 6)  # the first step moves by about lr
        0.9
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas: expected each in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be non-negative")
        self.betas = (float(b1), float(b2))
        self.eps, self.weight_decay, self.amsgrad = float(eps), float(weight_decay), bool(amsgrad)

    def _update(self, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "exp_avg" not in self.state:
            self.state["exp_avg"] = np.zeros_like(p)
            self.state["exp_avg_sq"] = np.zeros_like(p)
            if self.amsgrad:
                self.state["max_exp_avg_sq"] = np.zeros_like(p)
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        m += (g - m) * (1 - b1)  # torch's lerp(m, g, 1 - b1)
        v *= b2
        v += (1 - b2) * g * g
        t = self.steps
        step_size = self.lr / (1 - b1 ** t)
        bc2_sqrt = math.sqrt(1 - b2 ** t)
        if self.amsgrad:
            vmax = self.state["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v) / bc2_sqrt + self.eps
        p -= step_size * (m / denom)
