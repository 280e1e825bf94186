#!/usr/bin/env python
"""A physics-informed network: u'' = -pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0, whose
solution is sin(pi x). u is an MLP 1-32-32-1 with tanh; the loss is the mean squared
residual u''(x_i) + pi^2 sin(pi x_i) at 100 collocation points plus u(0)^2 + u(1)^2, and
u'' comes from nested derivatives: tg.grad(tg.grad(u)).

    python examples/pinn.py                       # traced, 3000 Adam steps, plot
    python examples/pinn.py --mode eager --steps 20
    python examples/pinn.py --mode both --steps 300 --check

- traced: the per-point residual, second derivative included, is traced once
  (tg.nn.compile_pointwise_loss: the recorded reverse sweeps are part of the Function)
  and each step is one batched replay over the points plus its gradient;
- eager: every step builds each point's graph again, u'' by recorded sweeps
  (tg.autograd.grad with create_graph=True), then backward().

Both compute the same loss and gradient (--check compares them at the start), and the
result is compared with the exact solution. Progress: tqdm if installed; plot: matplotlib.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import tapegrad as tg

PI2 = math.pi ** 2


def make_model(seed: int = 0) -> tg.nn.MLP:
    model = tg.nn.MLP(1, [32, 32, 1], nonlin="tanh", seed=seed)
    # micrograd's uniform(-1, 1) weights, scaled by 1/sqrt(fan-in) (Glorot-like) for tanh
    for layer in model.layers:
        for n in layer.neurons:
            for w in n.w:
                w.value = w.value * math.sqrt(3.0 / len(n.w))
    return model


def point_loss(model, x):
    """The squared residual at one collocation point x (a Var while tracing)."""
    u = lambda t: model([t])  # noqa: E731
    uxx = tg.grad(tg.grad(u))(x)
    return (uxx + PI2 * tg.sin(math.pi * x)) ** 2


def boundary(model):
    return model([0.0]) ** 2 + model([1.0]) ** 2


def eager_value_and_grad(model, X):
    """The loss and its gradient, building every point's graph now."""
    params = model.parameters()
    terms = []
    for x in X:
        xv = tg.Var(float(x))
        u = model([xv])
        (ux,) = tg.autograd.grad(u, xv, create_graph=True)
        (uxx,) = tg.autograd.grad(ux, xv, create_graph=True)
        terms.append((uxx + PI2 * math.sin(math.pi * float(x))) ** 2)
    loss = sum(terms[1:], terms[0]) * (1.0 / len(terms)) + boundary(model)
    for p in params:
        p.zero_grad()
    loss.backward()
    return loss.value, np.array([p.grad for p in params])


def train(mode, model, X, steps, lr, bar):
    params = model.parameters()
    theta = np.array([p.value for p in params])
    opt = tg.nn.Adam(theta, lr=lr)
    losses = []
    if mode == "traced":
        t0 = time.perf_counter()
        loss = tg.nn.compile_pointwise_loss(model, point_loss, X, penalty=boundary)
        compile_s = time.perf_counter() - t0
        step = lambda th: loss.value_and_grad(th)  # noqa: E731
    else:
        compile_s = 0.0

        def step(th):
            tg.nn.set_parameters(model, th)
            return eager_value_and_grad(model, X)
    t0 = time.perf_counter()
    for _ in bar(range(steps), mode):
        value, g = step(theta)
        losses.append(value)
        opt.step(g)
    seconds = time.perf_counter() - t0
    tg.nn.set_parameters(model, theta)
    return losses, compile_s, seconds


def progress_bar():
    try:
        from tqdm import tqdm
    except ImportError:
        def plain(it, mode):
            n = len(it)
            for k in it:
                if k % max(1, n // 10) == 0:
                    print(f"  {mode}: step {k}/{n}", file=sys.stderr)
                yield k
        return plain
    return lambda it, mode: tqdm(it, desc=mode, mininterval=0.5)


def error_vs_exact(model):
    xs = np.linspace(0, 1, 201)
    u = np.array([model([float(x)]).value for x in xs])
    return float(np.max(np.abs(u - np.sin(np.pi * xs)))), xs, u


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="a physics-informed network with nested derivatives")
    ap.add_argument("--mode", choices=("traced", "eager", "both"), default="traced")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--points", type=int, default=100, help="collocation points")
    ap.add_argument("--out", default="pinn.png", help="plot file ('' for none)")
    ap.add_argument("--check", action="store_true",
                    help="check that eager and traced agree on the first loss and gradient")
    args = ap.parse_args(argv)
    X = np.linspace(0, 1, args.points + 2)[1:-1]  # interior points

    if args.check:
        model = make_model()
        theta = tg.nn.get_parameters(model)
        le, ge = eager_value_and_grad(model, X)
        tg.nn.set_parameters(model, theta)
        lt, gt = tg.nn.compile_pointwise_loss(model, point_loss, X, penalty=boundary) \
            .value_and_grad(theta)
        diff = float(np.max(np.abs(ge - gt)) / np.max(np.abs(ge)))
        print(f"check: eager loss {le:.12g}, traced {lt:.12g}; gradients differ by {diff:.2e} "
              "(relative to the largest)")
        if not (math.isclose(le, lt, rel_tol=1e-12) and diff < 1e-12):
            print("check FAILED", file=sys.stderr)
            return 1

    bar = progress_bar()
    results = {}
    for mode in (("eager", "traced") if args.mode == "both" else (args.mode,)):
        model = make_model()
        losses, compile_s, seconds = train(mode, model, X, args.steps, args.lr, bar)
        err, xs, u = error_vs_exact(model)
        results[mode] = (losses, xs, u)
        print(f"{mode}: {args.steps} steps in {seconds:.2f} s ({1e3 * seconds / args.steps:.2f} "
              f"ms/step{f', trace {compile_s:.2f} s' if compile_s else ''}); loss "
              f"{losses[0]:.3g} -> {losses[-1]:.3g}; max |u - sin(pi x)| = {err:.2e}")
    if args.out:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("(no matplotlib: no plot)", file=sys.stderr)
            return 0
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        for mode, (losses, xs, u) in results.items():
            a.semilogy(losses, label=mode)
            b.plot(xs, u, label=f"u, {mode}")
        b.plot(xs, np.sin(np.pi * xs), "k--", label="sin(pi x)")
        a.set(title="loss", xlabel="Adam step")
        b.set(title="solution", xlabel="x")
        a.legend()
        b.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
