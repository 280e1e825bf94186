"""Losses over a batch of scalar predictions, each the mean over the batch.

Predictions are Vars of either backend (or numbers); targets are numbers, or Vars when a
loss is traced with the data as arguments. Everything is built from graph ops (relu,
maximum, abs, exp, log), never from a Python comparison of a Var, so a traced loss
replays correctly for any input. A mean is ``sum(terms) * (1.0 / n)``, as in micrograd's
demo, so the same batch gives bit-identical losses here and there.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from .layers import VAR_TYPES


def _batch(x: Any, what: str) -> list:
    if isinstance(x, (*VAR_TYPES, numbers.Real)):
        return [x]
    tolist = getattr(x, "tolist", None)  # numpy arrays: floats, or the Vars of object arrays
    items = tolist() if tolist is not None else list(x)
    if items and isinstance(items[0], list):
        raise ValueError(f"{what}: expected a 1-D batch of scalars, got nested sequences")
    return items


def _pair(pred: Any, target: Any, name: str) -> tuple[list, list]:
    p, t = _batch(pred, f"{name}: predictions"), _batch(target, f"{name}: targets")
    if len(p) != len(t):
        raise ValueError(f"{name}: {len(p)} predictions but {len(t)} targets")
    if not p:
        raise ValueError(f"{name}: empty batch")
    return p, t


def _mean(terms: list) -> Any:
    return sum(terms) * (1.0 / len(terms))


def mse_loss(pred: Any, target: Any) -> Any:
    """mean((pred - target)^2).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.mse_loss([tg.Var(1.0), tg.Var(2.0)], [0.0, 2.0]).value
        0.5
    """
    p, t = _pair(pred, target, "mse_loss")
    return _mean([(pi - ti) * (pi - ti) for pi, ti in zip(p, t)])


def hinge_loss(scores: Any, y: Any) -> Any:
    """SVM max-margin loss mean(relu(1 - y * score)) with labels y in {-1, +1}
    (micrograd's demo writes ``(1 + -yi*scorei).relu()``: bit-identical numbers).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.hinge_loss([tg.Var(2.0), tg.Var(0.5)], [1, 1]).value  # (0 + 0.5) / 2
        0.25
    """
    s, t = _pair(scores, y, "hinge_loss")
    return _mean([(1 - si * yi).relu() for si, yi in zip(s, t)])


svm_loss = hinge_loss


def _softplus_neg_abs(z: Any) -> Any:
    """log(1 + exp(-|z|)): exp's argument is <= 0, so it never overflows and the log's
    argument stays in [1, 2] (no log(0))."""
    if isinstance(z, VAR_TYPES):
        return (1 + (-abs(z)).exp()).log()
    return math.log1p(math.exp(-abs(z)))


def binary_cross_entropy_with_logits(logits: Any, y: Any) -> Any:
    """mean(max(z, 0) - z*y + log(1 + exp(-|z|))) for logits z and labels y in {0, 1}
    (or probabilities in [0, 1]): -[y log sigmoid(z) + (1-y) log(1 - sigmoid(z))] without
    overflow or log(0) for any finite z. max is ``maximum(z, 0)``, whose tie at z = 0
    splits the gradient 0.5 / 0.5, so d/dz = sigmoid(z) - y holds at z = 0 too.

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.binary_cross_entropy_with_logits([tg.Var(0.0)], [1]).value  # log 2
        0.6931471805599453
    """
    z, t = _pair(logits, y, "binary_cross_entropy_with_logits")
    terms = []
    for zi, yi in zip(z, t):
        relu = zi.maximum(0.0) if isinstance(zi, VAR_TYPES) else max(zi, 0.0)
        terms.append(relu - zi * yi + _softplus_neg_abs(zi))
    return _mean(terms)


bce_with_logits = binary_cross_entropy_with_logits


def l2_penalty(params: Iterable[Any]) -> Any:
    """sum(p * p): add ``alpha * l2_penalty(model.parameters())`` for weight decay.

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.l2_penalty([tg.Var(3.0), tg.Var(4.0)]).value
        25.0
    """
    return sum(p * p for p in params)


def accuracy(scores: Any, y: Any) -> float:
    """Fraction of points where sign(score) agrees with sign(y) (score > 0 predicts the
    positive class; labels in {-1, +1} or {0, 1} with 0 as the negative class).

    Examples:
        >>> import tapegrad as tg
        >>> tg.nn.accuracy([tg.Var(2.0), tg.Var(-1.0), 0.5], [1, 1, 1])
        0.6666666666666666
    """
    s, t = _pair(scores, y, "accuracy")
    values = [float(si.value) if isinstance(si, VAR_TYPES) else float(si) for si in s]
    return sum((v > 0) == (float(ti) > 0) for v, ti in zip(values, t)) / len(values)


__all__ = ["accuracy", "bce_with_logits", "binary_cross_entropy_with_logits", "hinge_loss",
           "l2_penalty", "mse_loss", "svm_loss"]
