"""Datasets in numpy only (no scikit-learn needed)."""
from __future__ import annotations

import numpy as np


def make_moons(n_samples: int = 100, noise: float | None = 0.1, seed: int | None = 1337,
               shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: X of shape (n, 2), y in {-1.0, +1.0} of shape (n,).

    scikit-learn's ``make_moons`` algorithm with a ``np.random.RandomState(seed)``: the
    points in the order sklearn draws them, shuffled, then Gaussian noise; so
    ``make_moons(100, 0.1, seed=s)`` equals sklearn's ``make_moons(100, noise=0.1,
    random_state=s)`` with labels mapped to -1/+1 as micrograd's demo does (``y*2 - 1``;
    ``(y + 1) / 2`` gives 0/1 for binary cross-entropy). The default seed is the demo's.

    Examples:
        >>> import tapegrad as tg
        >>> X, y = tg.nn.make_moons(100)
        >>> X.shape, sorted(set(y.tolist()))
        ((100, 2), [-1.0, 1.0])
    """
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples: expected an int >= 2, got {n_samples!r}")
    rng = np.random.RandomState(seed)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(t_out), 1 - np.cos(t_in)),
                   np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5)]).T
    y = np.hstack([np.zeros(n_out), np.ones(n_in)])
    if shuffle:
        order = np.arange(n_samples)
        rng.shuffle(order)
        X, y = X[order], y[order]
    if noise is not None:
        X = X + rng.normal(scale=noise, size=X.shape)
    return X, y * 2 - 1
