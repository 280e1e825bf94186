#!/usr/bin/env python
"""One training step of a physics-informed network, side by side. A subcommand of
bench/compare.py:

    python bench/compare.py pinn            # full run
    python bench/compare.py pinn --quick

The network and loss of examples/pinn.py: u = MLP 1-32-32-1 (tanh), loss = mean over 100
collocation points of (u''(x) + pi^2 sin(pi x))^2 plus u(0)^2 + u(1)^2; a step is the
loss and its gradient with respect to the 1153 parameters (second derivatives inside a
gradient: a derivative of a derivative of a derivative).

- tapegrad traced: tg.nn.compile_pointwise_loss of the per-point loss, whose u'' is
  tg.grad(tg.grad(u)) recorded into the trace; one batched replay per step (trace time
  reported, not timed). Target: at most PyTorch's tensorized step.
- tapegrad eager: every point's graph built again, u'' by recorded sweeps, then backward().
- PyTorch tensorized: the 100 points as one (100, 1) tensor, u'' by two
  torch.autograd.grad(create_graph=True), then backward().
- PyTorch with scalar tensors: the eager code's structure (one scalar tensor per weight
  and per intermediate), on fewer points, reported per point. Target: tapegrad eager at
  least 50x faster per point.
- JAX: jax.jit(jax.value_and_grad(loss)) with jax.grad(jax.grad(u)) under vmap inside,
  float64, compile excluded and reported; the ratio is reported.

Every system's loss and gradient are checked against tapegrad's before timing (1e-10
relative). Cases are interleaved round-robin; figures are medians over repeats.
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np

import tapegrad as tg

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import harness  # noqa: E402
from harness import Case, human, med, paired  # noqa: E402

TITLE = "physics-informed network training step (nested derivatives) vs PyTorch and JAX"
POINTS = 100
SCALAR_POINTS = {"full": 4, "quick": 2, "smoke": 1}
TRACED_TARGET = 1.0  # tapegrad traced / torch tensorized
EAGER_TARGET = 50.0  # torch scalar / tapegrad eager, per point
SIZES = {
    "full": dict(points=POINTS, repeats=9, warmup=1, sample_s=0.2),
    "quick": dict(points=POINTS, repeats=3, warmup=1, sample_s=0.05),
    "smoke": dict(points=4, repeats=1, warmup=0, sample_s=None),
}
PI = math.pi


def load_example():
    path = ROOT.parent / "examples" / "pinn.py"
    spec = importlib.util.spec_from_file_location("pinn_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def weights(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per layer, W of shape (out, in), from the tapegrad model."""
    return [(np.array([[w.value for w in n.w] for n in layer.neurons]),
             np.array([n.b.value for n in layer.neurons])) for layer in model.layers]


def flat(grads_per_layer) -> np.ndarray:
    """Gradients (dW, db) per layer in tapegrad's parameter order: per neuron w then b."""
    return np.concatenate([np.concatenate([np.append(dW[j], db[j]) for j in range(len(db))])
                           for dW, db in grads_per_layer])


# ---------------------------------------------------------------- PyTorch


def torch_tensorized(torch, Wb, X):
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
              for W, b in Wb]
    XT = torch.tensor(X[:, None], requires_grad=True)
    src = torch.sin(PI * torch.tensor(X[:, None])) * PI ** 2  # data: no graph
    edges = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def u(x):
        for k, (W, b) in enumerate(params):
            x = x @ W.T + b
            if k < len(params) - 1:
                x = torch.tanh(x)
        return x

    def step():
        for W, b in params:
            W.grad = b.grad = None
        out = u(XT)
        (ux,) = torch.autograd.grad(out.sum(), XT, create_graph=True)
        (uxx,) = torch.autograd.grad(ux.sum(), XT, create_graph=True)
        loss = ((uxx + src) ** 2).mean() + (u(edges) ** 2).sum()
        loss.backward()
        return loss.item(), flat([(W.grad.numpy(), b.grad.numpy()) for W, b in params])

    return step


def torch_scalars(torch, Wb, X):
    """The eager tapegrad code's structure with 0-d tensors: one per weight."""
    params = [([[torch.tensor(w, requires_grad=True) for w in row] for row in W],
               [torch.tensor(v, requires_grad=True) for v in b]) for W, b in Wb]

    def u(x):
        h = [x]
        for k, (W, b) in enumerate(params):
            h = [sum((w * v for w, v in zip(row, h)), bj) for row, bj in zip(W, b)]
            if k < len(params) - 1:
                h = [torch.tanh(v) for v in h]
        return h[0]

    def step():
        terms = []
        for x in X:
            xt = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
            (ux,) = torch.autograd.grad(u(xt), xt, create_graph=True)
            (uxx,) = torch.autograd.grad(ux, xt, create_graph=True)
            terms.append((uxx + PI ** 2 * math.sin(PI * float(x))) ** 2)
        z = torch.tensor(0.0, dtype=torch.float64)
        loss = sum(terms) / len(terms) + u(z) ** 2 + u(z + 1.0) ** 2
        for W, b in params:
            for p in [*sum(W, []), *b]:
                p.grad = None
        loss.backward()
        return loss.item(), flat([(np.array([[w.grad.item() for w in row] for row in W]),
                                   np.array([v.grad.item() for v in b])) for W, b in params])

    return step


# ---------------------------------------------------------------- JAX


def jax_step(jax, Wb, X):
    import jax.numpy as jnp

    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in Wb]

    def u(p, x):  # x: a scalar
        h = jnp.reshape(x, (1,))
        for k, (W, b) in enumerate(p):
            h = W @ h + b
            if k < len(p) - 1:
                h = jnp.tanh(h)
        return h[0]

    def loss(p, xs):
        uxx = jax.vmap(jax.grad(jax.grad(u, argnums=1), argnums=1), in_axes=(None, 0))(p, xs)
        return jnp.mean((uxx + PI ** 2 * jnp.sin(PI * xs)) ** 2) + u(p, 0.0) ** 2 + u(p, 1.0) ** 2

    vg = jax.jit(jax.value_and_grad(loss))
    XJ = jnp.asarray(X)
    t0 = time.perf_counter()
    jax.block_until_ready(vg(params, XJ))
    compile_s = time.perf_counter() - t0

    def step():
        value, g = jax.block_until_ready(vg(params, XJ))
        return float(value), flat([(np.asarray(dW), np.asarray(db)) for dW, db in g])

    return step, compile_s


# ---------------------------------------------------------------- the comparison


def check(rep, name, got, want) -> bool:
    loss_err = abs(got[0] - want[0]) / abs(want[0])
    grad_err = float(np.max(np.abs(got[1] - want[1])) / np.max(np.abs(want[1])))
    ok = loss_err <= 1e-10 and grad_err <= 1e-10
    rep.say(f"- check {name}: loss {loss_err:.1e}, gradient {grad_err:.1e} relative "
            f"({'ok' if ok else '**DISAGREES**'})")
    if not ok:
        rep.fail(f"{name} disagrees with tapegrad: loss {loss_err:.2e}, gradient {grad_err:.2e}")
    return ok


def run(mode: str, opts, rep: harness.Report) -> None:
    cfg = SIZES[mode]
    peers, missing = harness.load_peers(("torch", "jax"), allowed=opts.peers)
    rep.environment(peers, missing)
    pinn = load_example()
    model = pinn.make_model()
    X = np.linspace(0, 1, cfg["points"] + 2)[1:-1]
    theta = tg.nn.get_parameters(model)
    Wb = weights(model)
    t0 = time.perf_counter()
    traced = tg.nn.compile_pointwise_loss(model, pinn.point_loss, X, penalty=pinn.boundary)
    trace_s = time.perf_counter() - t0
    want = traced.value_and_grad(theta)
    rep.say(f"\n## one step: loss and gradient, {len(theta)} parameters, {len(X)} points\n")
    rep.say(f"- tapegrad trace (not timed): {human(trace_s)}; `{traced.function!r}`")

    def eager():
        tg.nn.set_parameters(model, theta)
        return pinn.eager_value_and_grad(model, X)

    check(rep, "tapegrad eager vs traced", eager(), want)
    cases = {"tapegrad traced": Case(lambda: traced.value_and_grad(theta)),
             "tapegrad eager": Case(eager, fresh=True)}
    n_scalar = min(SCALAR_POINTS[mode], len(X))
    Xs = X[:n_scalar]
    eager_few = None
    if "torch" in peers:
        torch = peers["torch"]
        tens = torch_tensorized(torch, Wb, X)
        if check(rep, "PyTorch tensorized", tens(), want):
            cases["PyTorch tensorized"] = Case(tens)
        scal = torch_scalars(torch, Wb, Xs)
        few = tg.nn.compile_pointwise_loss(model, pinn.point_loss, Xs, penalty=pinn.boundary)
        if check(rep, f"PyTorch scalar tensors ({n_scalar} points)", scal(),
                 few.value_and_grad(theta)):
            cases[f"PyTorch scalar tensors, {n_scalar} points"] = Case(scal, fresh=True)

            def eager_few():
                tg.nn.set_parameters(model, theta)
                return pinn.eager_value_and_grad(model, Xs)

            cases[f"tapegrad eager, {n_scalar} points"] = Case(eager_few, fresh=True)
    else:
        rep.say("- PyTorch rows skipped: torch is not loaded")
    if "jax" in peers:
        jstep, compile_s = jax_step(peers["jax"], Wb, X)
        rep.say(f"- JAX compile (excluded from timings): {human(compile_s)}")
        if check(rep, "JAX", jstep(), want):
            cases["JAX jit(value_and_grad), grad(grad(u)) under vmap"] = Case(jstep)
    else:
        rep.say("- JAX rows skipped: JAX is not loaded")
    harness.run_cases(cases, cfg["repeats"], cfg["warmup"], cfg["sample_s"], on_error=rep.note)
    rep.say("")
    rep.table(["case", "median", "min – max", "samples"],
              [[name, human(med(c.wall)), f"{human(min(c.wall))} – {human(max(c.wall))}",
                str(len(c.wall))] for name, c in cases.items()])
    summary, data = [], {"trace_s": trace_s}
    t = cases["tapegrad traced"]
    if "PyTorch tensorized" in cases:
        p = cases["PyTorch tensorized"]
        r = med(t.wall) / med(p.wall)
        summary.append(["tapegrad traced / PyTorch tensorized", f"{r:.2f}x "
                        f"(per-repeat {paired(t.wall, p.wall)})", f"<= {TRACED_TARGET:g}x",
                        harness.met(r <= TRACED_TARGET)])
        data["traced/torch"] = r
    sname, ename = f"PyTorch scalar tensors, {n_scalar} points", f"tapegrad eager, {n_scalar} points"
    if sname in cases and ename in cases:
        r = med(cases[sname].wall) / med(cases[ename].wall)
        summary.append([f"PyTorch scalar tensors / tapegrad eager ({n_scalar} points)",
                        f"{r:.1f}x", f">= {EAGER_TARGET:g}x", harness.met(r >= EAGER_TARGET)])
        data["torch_scalar/eager"] = r
    jname = "JAX jit(value_and_grad), grad(grad(u)) under vmap"
    if jname in cases:
        r = med(t.wall) / med(cases[jname].wall)
        summary.append(["tapegrad traced / JAX", f"{r:.2f}x", "reported", ""])
        data["traced/jax"] = r
    if summary:
        rep.table(["ratio", "measured", "target", "met"], summary, title="Summary")
    rep.data.update(data)


if __name__ == "__main__":
    import compare

    sys.exit(compare.main(["pinn"] + sys.argv[1:]))
