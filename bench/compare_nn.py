#!/usr/bin/env python
"""micrograd's moons demo, side by side: micrograd's own demo code vs tapegrad.nn eager vs
tapegrad.nn traced, per training step and for the demo's 100 steps. A subcommand of
bench/compare.py:

    python bench/compare.py nn            # 5 runs of 100 steps per tapegrad mode, 5 micrograd steps
    python bench/compare.py nn --quick    # 3 runs, 3 micrograd steps (~10 s)
    python bench/compare.py nn --micrograd-steps 100   # micrograd's full 100 steps (~1 min)

The workload is the demo's: MLP(2, [16, 16, 1]), 100 moons points (the data sklearn's
make_moons(100, noise=0.1) gives under the demo's seed 1337), SVM max-margin loss +
1e-4 L2, SGD with lr = 1.0 - 0.9 k/100. A step is: loss, gradient and the SGD update
(micrograd: build the graph from Values, zero_grad, backward, update; tapegrad eager: the
same with tapegrad.nn; tapegrad traced: one replay of the compiled loss, value and
gradient, then the update of the numpy parameter vector). micrograd runs with the
garbage collector on, as its demo does (the target's baseline); a second micrograd row with
the collector off is printed for context. All three start from the same parameters; the
losses are checked against each other before any figure is printed (micrograd within
1e-9 relative, eager vs traced within 1e-12), and the exit status is 1 on a mismatch.

Targets: eager step >= 100x faster than micrograd's; traced step <= 0.2 ms.
"""
from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import tapegrad.nn as nn
from tapegrad.nn import demo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

TITLE = "micrograd's moons demo: micrograd vs tapegrad.nn eager and traced"
SEED = 1337
STEPS = 100
SIZES = {  # 100-step runs per tapegrad mode, steps per run, micrograd steps timed
    "full": dict(runs=5, steps=STEPS, micrograd_steps=5),
    "quick": dict(runs=3, steps=STEPS, micrograd_steps=3),
    "smoke": dict(runs=1, steps=3, micrograd_steps=1),
}
EAGER_TARGET = 100.0  # x faster than micrograd, per step
TRACED_TARGET_S = 0.2e-3  # per step


def data() -> tuple[np.ndarray, np.ndarray]:
    return nn.make_moons(100, noise=0.1, seed=SEED)


def lr(k: int) -> float:
    return 1.0 - 0.9 * k / STEPS


# ---------------------------------------------------------------- micrograd's demo code


class MicrogradDemo:
    """micrograd's demo notebook, cell by cell: its MLP, its loss(), its update loop."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        from micrograd.engine import Value
        from micrograd.nn import MLP

        self.Value = Value
        state = random.getstate()
        random.seed(SEED)
        self.model = MLP(2, [16, 16, 1])  # 2-layer neural network
        random.setstate(state)
        self.X, self.y = X, y.astype(int)  # the demo's y: sklearn's 0/1 ints, *2 - 1

    def loss(self):
        Xb, yb = self.X, self.y
        inputs = [list(map(self.Value, xrow)) for xrow in Xb]
        # forward the model to get scores
        scores = list(map(self.model, inputs))
        # svm "max-margin" loss
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yb, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        # L2 regularization
        alpha = 1e-4
        reg_loss = alpha * sum((p * p for p in self.model.parameters()))
        total_loss = data_loss + reg_loss
        # also get accuracy
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores)]
        return total_loss, sum(accuracy) / len(accuracy)

    def step(self, k: int) -> float:
        total_loss, acc = self.loss()
        self.model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9 * k / 100
        for p in self.model.parameters():
            p.data -= learning_rate * p.grad
        return total_loss.data


# ---------------------------------------------------------------- tapegrad


class TapegradEager:
    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.model = nn.MLP(2, [16, 16, 1], seed=SEED)
        self.opt = nn.SGD(self.model.parameters(), lr=1.0)
        self.X, self.y = X.tolist(), y.tolist()

    def step(self, k: int) -> float:
        loss = demo.moons_loss(self.model, self.X, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.lr = lr(k)
        self.opt.step()
        return loss.value


class TapegradTraced:
    """pointwise: the demo's fast path (one point traced, replayed over the 100 points in
    SIMD lanes); else the whole loss traced as one 65 000-op program (compile_loss)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, pointwise: bool = True):
        model = nn.MLP(2, [16, 16, 1], seed=SEED)
        t0 = time.perf_counter()
        self.loss = (nn.compile_pointwise_loss(model, demo.moons_point_loss, X, y,
                                               penalty=demo.moons_penalty) if pointwise
                     else nn.compile_loss(model, demo.moons_loss, X, y))
        self.trace_s = time.perf_counter() - t0
        self.theta = nn.get_parameters(model)
        self.opt = nn.SGD(self.theta, lr=1.0)

    def step(self, k: int) -> float:
        value, grad = self.loss.value_and_grad(self.theta)
        self.opt.lr = lr(k)
        self.opt.step(grad)
        return value


def train(system, steps: int) -> tuple[list[float], list[float], float]:
    """(losses, per-step seconds, wall seconds of the whole loop)."""
    losses, times = [], []
    t_start = time.perf_counter()
    for k in range(steps):
        t0 = time.perf_counter()
        losses.append(system.step(k))
        times.append(time.perf_counter() - t0)
    return losses, times, time.perf_counter() - t_start


# ---------------------------------------------------------------- report


def ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def add_arguments(ap) -> None:
    ap.add_argument("--runs", type=int, help="100-step runs per tapegrad mode (default 5; --quick 3)")
    ap.add_argument("--micrograd-steps", type=int,
                    help="micrograd steps to time (default 5, --quick 3; 100 runs the full demo)")


def run(mode: str, opts, rep: H.Report) -> None:
    cfg = SIZES[mode]
    runs = getattr(opts, "runs", None) or cfg["runs"]
    mg_steps = getattr(opts, "micrograd_steps", None) or cfg["micrograd_steps"]
    steps = cfg["steps"]

    X, y = data()
    peers, missing = H.load_peers(("micrograd",), allowed=opts.peers)
    rep.environment(peers, missing)
    rep.say(f"- micrograd's moons demo: MLP(2, [16, 16, 1]), 100 points, {steps} steps; "
            f"{runs} runs per tapegrad mode, median per step over all steps\n")
    results: dict[str, dict] = {}

    eager_losses, eager_steps, eager_walls = None, [], []
    modes = {"tapegrad traced": True, "traced, whole loss": False}  # name -> pointwise
    traced = {name: {"losses": None, "steps": [], "walls": [], "trace_s": []} for name in modes}
    for _ in range(runs):  # interleaved, so every mode sees the same machine load
        losses, times, wall = train(TapegradEager(X, y), steps)
        eager_losses, eager_steps, eager_walls = losses, eager_steps + times, eager_walls + [wall]
        for name, pointwise in modes.items():
            system = TapegradTraced(X, y, pointwise)
            r = traced[name]
            r["trace_s"].append(system.trace_s)
            losses, times, wall = train(system, steps)
            r["losses"], r["steps"], r["walls"] = losses, r["steps"] + times, r["walls"] + [wall]
    results["tapegrad eager"] = {"step_s": statistics.median(eager_steps),
                                 "steps_s": statistics.median(eager_walls),
                                 "final_loss": eager_losses[-1]}
    for name, r in traced.items():
        diff = max(abs(a - b) for a, b in zip(eager_losses, r["losses"]))
        if diff > 1e-12:
            rep.fail(f"eager and {name} losses differ by {diff:.3g} (> 1e-12)")
        results[name] = {"step_s": statistics.median(r["steps"]),
                         "steps_s": statistics.median(r["walls"]),
                         "trace_s": statistics.median(r["trace_s"]),
                         "final_loss": r["losses"][-1], "max_loss_diff_vs_eager": diff}

    if "micrograd" in peers:
        losses, times, wall = train(MicrogradDemo(X, y), mg_steps)
        rel = max(abs(a - b) / abs(b) for a, b in zip(losses, eager_losses))
        if rel > 1e-9:
            rep.fail(f"micrograd's losses differ from tapegrad's by {rel:.3g} relative")
        results["micrograd"] = {"step_s": statistics.median(times),
                                "steps_s": wall if mg_steps == steps else None,
                                "steps_timed": mg_steps, "max_rel_loss_diff": rel}
        # For context: most of micrograd's step is the cyclic GC walking its Value graph.
        gc.collect()
        gc.disable()
        try:
            _, times, _ = train(MicrogradDemo(X, y), mg_steps)
        finally:
            gc.enable()
        results["micrograd, gc off"] = {"step_s": statistics.median(times), "steps_s": None,
                                        "steps_timed": mg_steps}
    else:
        rep.say("micrograd is not loaded (see the peers above; pip install micrograd==0.1.0): "
                "its rows are skipped\n")

    base = results.get("micrograd", {}).get("step_s")
    rows = []
    for name, r in results.items():
        if r.get("steps_s") is not None:
            all_steps = ms(r["steps_s"]) + " (measured)"
        else:
            all_steps = f"~{ms(steps * r['step_s'])} ({steps} x median)"
        rows.append([name, ms(r["step_s"]), all_steps, f"{base / r['step_s']:.0f}x" if base else "-"])
    rep.table(["system", "time/step (median)", f"{steps} steps", "vs micrograd"], rows)
    t = results["tapegrad traced"]
    w = results["traced, whole loss"]
    rep.say(f"\ntraced (the demo's path: one point traced, replayed over 100 points in SIMD "
            f"lanes): tracing {ms(t['trace_s'])}; the step is "
            f"{results['tapegrad eager']['step_s'] / t['step_s']:.1f}x faster than eager and "
            f"{w['step_s'] / t['step_s']:.2f}x faster than the whole-loss program "
            f"(compile_loss, traced in {ms(w['trace_s'])})")
    targets = []
    if base:
        r = base / results["tapegrad eager"]["step_s"]
        targets.append([f"eager step >= {EAGER_TARGET:.0f}x faster than micrograd", f"{r:.0f}x",
                        H.met(r >= EAGER_TARGET)])
    if "micrograd, gc off" in results:
        r = results["micrograd, gc off"]["step_s"] / results["tapegrad eager"]["step_s"]
        targets.append(["(for context, not the target) eager vs micrograd with its garbage "
                        "collector off", f"{r:.0f}x", "—"])
    targets.append([f"traced step <= {TRACED_TARGET_S * 1e3:.1f} ms", f"{ms(t['step_s'])} (whole-loss "
                    f"program: {ms(w['step_s'])})", H.met(t["step_s"] <= TRACED_TARGET_S)])
    rep.table(["target", "measured", "met"], targets, title="Targets")
    rep.say("\nlosses agree (micrograd within 1e-9 relative, eager vs traced within 1e-12)"
            if rep.ok else "\nLOSS MISMATCH: see the failures below")
    rep.data.update({"results": results, "targets": targets})


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["nn"] + sys.argv[1:]))
