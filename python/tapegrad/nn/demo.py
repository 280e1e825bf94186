"""``python -m tapegrad demo moons``: micrograd's demo, eagerly and traced.

MLP(2, [16, 16, 1]) on 100 two-moons points, SVM max-margin loss + 1e-4 L2, SGD with
lr = 1.0 - 0.9 k / steps, 100 steps, from micrograd's seeds (1337): its first loss is
micrograd's, 0.8958441028683222. ``--mode both`` (the default) trains eagerly (the graph
rebuilt every step, as micrograd does) and traced (recorded once, replayed in C++) from
the same start, checks that the two agree step by step, and prints the time per step of
each. Progress: a tqdm bar, or a line every 10 steps without tqdm. Plots (loss curve,
decision boundary) need matplotlib: ``pip install tapegrad[demo]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import make_moons
from .layers import MLP
from .losses import accuracy, hinge_loss, l2_penalty
from .optim import SGD
from .traced import compile_model, compile_pointwise_loss, get_parameters, set_parameters

SIZES = [16, 16, 1]
ALPHA = 1e-4
SEED = 1337
EXTRA_HINT = "pip install tapegrad[demo]"


def objective(scores: list, y: Any, params: list) -> Any:
    """micrograd's demo loss: SVM max-margin + ALPHA * L2."""
    return hinge_loss(scores, y) + ALPHA * l2_penalty(params)


def moons_loss(model: Any, X: Any, y: Any) -> Any:
    """The demo's loss as loss_fn(model, X, y), for eager calls and compile_loss alike."""
    return objective([model(x) for x in X], y, model.parameters())


def moons_point_loss(model: Any, x: Any, yi: Any) -> Any:
    """One point's term of moons_loss's hinge part, for compile_pointwise_loss."""
    return (1 - yi * model(x)).relu()


def moons_penalty(model: Any) -> Any:
    """moons_loss's L2 part."""
    return ALPHA * l2_penalty(model.parameters())


def learning_rate(k: int, steps: int) -> float:
    return 1.0 - 0.9 * k / steps


@dataclass
class History:
    mode: str
    losses: list = field(default_factory=list)
    accuracies: list = field(default_factory=list)
    step_seconds: list = field(default_factory=list)  # loss + gradient + update, per step
    setup_seconds: float = 0.0  # traced: compile_loss (the trace) once
    theta: np.ndarray | None = None  # the final parameters

    @property
    def step_median(self) -> float:
        return statistics.median(self.step_seconds)


def make_model(seed: int = SEED) -> MLP:
    return MLP(2, SIZES, seed=seed)


def train_eager(model: MLP, X: np.ndarray, y: np.ndarray, steps: int,
                progress: Callable[[int, float, float], None] | None = None) -> History:
    """micrograd's loop: rebuild the graph, backward, SGD; the model is updated in place."""
    h = History("eager")
    opt = SGD(model.parameters(), lr=1.0)
    Xl, yl = X.tolist(), y.tolist()
    for k in range(steps):
        t0 = time.perf_counter()
        scores = [model(x) for x in Xl]
        loss = objective(scores, yl, model.parameters())
        opt.zero_grad()
        loss.backward()
        opt.lr = learning_rate(k, steps)
        opt.step()
        h.step_seconds.append(time.perf_counter() - t0)
        h.losses.append(loss.value)
        h.accuracies.append(accuracy(scores, yl))
        if progress:
            progress(k, h.losses[-1], h.accuracies[-1])
    h.theta = get_parameters(model)
    return h


def train_traced(model: MLP, X: np.ndarray, y: np.ndarray, steps: int,
                 progress: Callable[[int, float, float], None] | None = None) -> History:
    """The same training on the parameter vector: one trace, then a C++ replay per step.
    Accuracy (for the progress display) comes from a traced forward pass, outside the
    timed step. The final parameters are written back into the model."""
    h = History("traced")
    t0 = time.perf_counter()
    # One point traced, replayed over all points in SIMD lanes (compile_loss would trace
    # the whole 65 000-op loss: the same numbers up to summation order, ~1.5x slower).
    loss = compile_pointwise_loss(model, moons_point_loss, X, y, penalty=moons_penalty)
    forward = compile_model(model, X[0])
    h.setup_seconds = time.perf_counter() - t0
    theta = get_parameters(model)
    opt = SGD(theta, lr=1.0)
    for k in range(steps):
        t0 = time.perf_counter()
        value, grad = loss.value_and_grad(theta)
        t1 = time.perf_counter()
        scores = forward(theta, X)  # the scores the loss was taken at (not timed)
        t2 = time.perf_counter()
        opt.lr = learning_rate(k, steps)
        opt.step(grad)
        h.step_seconds.append(time.perf_counter() - t2 + (t1 - t0))
        h.losses.append(value)
        h.accuracies.append(accuracy(scores, y))
        if progress:
            progress(k, value, h.accuracies[-1])
    set_parameters(model, theta)
    h.theta = theta
    return h


# ------------------------------------------------------------------------ output


def _progress(mode: str,
              steps: int) -> tuple[Callable[[int, float, float], None], Callable[[], None]]:
    """A tqdm bar with loss and accuracy, or (without tqdm) a line every 10 steps."""
    try:
        from tqdm import tqdm
    except ImportError:
        every = max(1, steps // 10)

        def line(k: int, loss: float, acc: float) -> None:
            if k % every == 0 or k == steps - 1:
                print(f"  [{mode}] step {k + 1:>4}/{steps}  loss {loss:.6f}  accuracy {acc:.0%}",
                      flush=True)

        return line, lambda: None
    bar = tqdm(total=steps, desc=f"{mode:>6}", unit="step", leave=True)

    def update(k: int, loss: float, acc: float) -> None:
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.0%}", refresh=False)
        bar.update(1)

    return update, bar.close


def write_plots(out: str, histories: list[History], X: np.ndarray, y: np.ndarray,
                model: MLP) -> list[str]:
    """loss_curve.png and decision_boundary.png in ``out``; [] (and a hint) without
    matplotlib."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        print(f"plots skipped: they need matplotlib ({EXTRA_HINT})")
        return []
    os.makedirs(out, exist_ok=True)
    paths = []

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for h in histories:
        ax.plot(range(1, len(h.losses) + 1), h.losses, label=f"{h.mode} loss",
                linestyle="-" if h.mode == "eager" else "--")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (SVM max-margin + 1e-4 L2)")
    ax.set_yscale("log")
    acc_ax = ax.twinx()
    acc_ax.plot(range(1, len(histories[-1].accuracies) + 1), histories[-1].accuracies,
                color="tab:green", alpha=0.6, label="accuracy")
    acc_ax.set_ylabel("training accuracy")
    acc_ax.set_ylim(0, 1.05)
    lines = ax.get_legend_handles_labels()
    more = acc_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    ax.set_title("tapegrad: micrograd's moons demo, MLP(2, [16, 16, 1])")
    paths.append(os.path.join(out, "loss_curve.png"))
    fig.savefig(paths[-1], dpi=100)

    # The decision boundary: the trained model on a grid, one batched replay.
    h = 0.02
    x0 = np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, h)
    x1 = np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, h)
    xx, yy = np.meshgrid(x0, x1)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    scores = compile_model(model, grid[0])(get_parameters(model), grid).reshape(xx.shape)
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Spectral"]
    ax.contourf(xx, yy, scores > 0, cmap=cmap, alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=cmap, edgecolors="k")
    ax.set_xlim(xx.min(), xx.max())
    ax.set_ylim(yy.min(), yy.max())
    ax.set_title(f"decision boundary, training accuracy {histories[-1].accuracies[-1]:.0%}")
    paths.append(os.path.join(out, "decision_boundary.png"))
    fig.savefig(paths[-1], dpi=100)
    return paths


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tapegrad demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["moons"], help="the demo to run")
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--mode", choices=["eager", "traced", "both"], default="both",
                        help="eager, traced, or both and compare (default)")
    parser.add_argument("--out", default=".", help="directory for the PNGs (default: .)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"data and initialisation seed (default {SEED}, micrograd's)")
    parser.add_argument("--points", type=int, default=100, help="moons points (default 100)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    X, y = make_moons(args.points, noise=0.1, seed=args.seed)
    modes = ["eager", "traced"] if args.mode == "both" else [args.mode]
    print(f"micrograd's moons demo: MLP(2, {SIZES}), {args.points} points, SVM loss + "
          f"{ALPHA:g} L2, SGD lr 1.0 - 0.9 k/{args.steps}, {args.steps} steps, seed {args.seed}")
    histories, model = [], None
    for mode in modes:
        model = make_model(args.seed)  # every mode starts from the same parameters
        update, close = _progress(mode, args.steps)
        try:
            train = train_eager if mode == "eager" else train_traced
            histories.append(train(model, X, y, args.steps, update))
        finally:
            close()

    ok = True
    print(f"\nmode      time/step (median)   all {args.steps} steps   final loss          accuracy")
    for h in histories:
        extra = f"   (+ {_ms(h.setup_seconds)} to trace once)" if h.setup_seconds else ""
        print(f"{h.mode:<8}  {_ms(h.step_median):>18}   {_ms(sum(h.step_seconds)):>13}   "
              f"{h.losses[-1]:<18.12g}  {h.accuracies[-1]:.0%}{extra}")
    print("(a step: loss, gradient and SGD update; progress display not included)")
    if len(histories) == 2:
        eager, traced = histories
        diff = max(abs(a - b) for a, b in zip(eager.losses, traced.losses))
        same = diff <= 1e-12
        ok &= same
        print(f"traced step is {eager.step_median / traced.step_median:.1f}x faster than eager; "
              f"largest loss difference over {args.steps} steps: {diff:.3g} "
              f"({'identical within 1e-12' if same else 'MISMATCH > 1e-12'})")
    print(f"final training accuracy: {histories[-1].accuracies[-1]:.0%}")
    if not args.no_plots and model is not None:
        for path in write_plots(args.out, histories, X, y, model):
            print(f"wrote {path}")
    return 0 if ok else 1
