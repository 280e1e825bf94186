"""Does the gradient vanish or explode on its way down the graph? ``grad_report``
summarises |grad| by depth from the root, per depth band, and flags the paths where it
falls below 1e-8 or rises above 1e8 relative to the root's seed.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from .graph import topo_order

__all__ = ["GradReport", "GradBand", "GradStep", "GradFlag", "grad_report"]


@dataclass(frozen=True)
class GradBand:
    """The nodes at one depth: |grad| relative to the root's seed, over the nodes whose
    gradient is nonzero and not NaN (``zeros`` and ``nans`` are counted apart)."""

    depth: int
    count: int             # nodes at this depth (constants are never counted)
    zeros: int
    nans: int
    min: float             # 0.0 when no node here has a nonzero gradient
    median: float
    max: float
    ops: dict[str, int]    # op name -> how many nodes at this depth


@dataclass(frozen=True)
class GradStep:
    """From one depth band to the next: how the median |grad| changes, and the ops of the
    nodes at ``depth`` whose local rules made that change."""

    depth: int             # from depth to depth + 1
    ratio: float           # median(depth + 1) / median(depth): < 1 shrinks, > 1 grows
    ops: dict[str, int]


@dataclass(frozen=True)
class GradFlag:
    """A vanishing or exploding gradient: a leaf whose |grad| crossed a threshold, or the
    node where a path first crosses it (its consumer on the path is still inside)."""

    kind: str              # "vanishing" or "exploding"
    node_id: int
    op: str
    depth: int
    grad: float
    relative: float        # |grad| / |root's grad|
    path: tuple[str, ...]  # op names from the root down to this node, along its depth path

    def __str__(self) -> str:
        where = "leaf" if self.op == "leaf" else f"{self.op} node (onset)"
        return (f"{self.kind.upper()}: {where} at depth {self.depth}: |grad| = "
                f"{self.relative:.3g} × root; path: {_runs(self.path)}")


@dataclass
class GradReport:
    """Gradient magnitudes by depth from a root; see ``grad_report``."""

    depth_mode: str                    # "longest" or "shortest" path from the root
    seed: float                        # the root's grad (1.0 after root.backward())
    vanishing: float
    exploding: float
    bands: list[GradBand]
    steps: list[GradStep]
    flags: list[GradFlag]
    constants: int                     # constant nodes, left out of everything
    node_depth: dict[int, int] = field(repr=False, default_factory=dict)
    node_relative: dict[int, float] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        """No vanishing or exploding path."""
        return not self.flags

    @property
    def ratios(self) -> list[float]:
        """Median |grad| of each depth over the one before (one per step)."""
        return [s.ratio for s in self.steps]

    @property
    def mean_ratio(self) -> float:
        """The geometric mean of the per-depth ratios (nan without any step)."""
        finite = [s.ratio for s in self.steps if s.ratio > 0 and math.isfinite(s.ratio)]
        if not finite:
            return math.nan
        return math.exp(sum(math.log(r) for r in finite) / len(finite))

    def shrinking(self, k: int = 3) -> list[GradStep]:
        """The k steps where |grad| shrinks the most."""
        return sorted((s for s in self.steps if s.ratio < 1), key=lambda s: s.ratio)[:k]

    def growing(self, k: int = 3) -> list[GradStep]:
        """The k steps where |grad| grows the most."""
        return sorted((s for s in self.steps if s.ratio > 1), key=lambda s: -s.ratio)[:k]

    def text(self, max_rows: int = 40) -> str:
        n = sum(b.count for b in self.bands)
        lines = [f"grad_report: {n} nodes ({self.constants} constants left out), depth 0.."
                 f"{len(self.bands) - 1} ({self.depth_mode} path from the root); |grad| "
                 f"relative to the root's {self.seed:g}"]
        rows = [("depth", "nodes", "min", "median", "max", "ops")]
        bands = self.bands
        if len(bands) > max_rows:
            half = max_rows // 2
            bands = bands[:half] + [None] + bands[-half:]
        for b in bands:
            if b is None:
                rows.append(("...", "", "", "", "", ""))
                continue
            mark = " <- vanishing" if 0 < b.min < self.vanishing else ""
            mark += " <- exploding" if b.max > self.exploding else ""
            extra = "".join(f", {c} {w}" for c, w in ((b.zeros, "zero"), (b.nans, "nan")) if c)
            rows.append((str(b.depth), f"{b.count}{extra}", f"{b.min:.3e}", f"{b.median:.3e}",
                         f"{b.max:.3e}", _ops(b.ops) + mark))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines += ["  " + "  ".join(s.rjust(w) if i < 5 else s for i, (s, w) in
                                   enumerate(zip(r, widths))).rstrip() for r in rows]
        if self.steps:
            m = self.mean_ratio
            by = f" (÷{1 / m:.4g})" if m < 1 else ""
            lines.append(f"  per depth: ×{m:.4g}{by} on average (geometric mean of the median "
                         "ratios)")
        for title, steps in (("shrinks most", self.shrinking()), ("grows most", self.growing())):
            for s in steps:
                by = f" (÷{1 / s.ratio:.4g})" if s.ratio < 1 else ""
                lines.append(f"  {title}: depth {s.depth}→{s.depth + 1} ×{s.ratio:.4g}{by} "
                             f"through {_ops(s.ops)}")
        lines += [f"  {f}" for f in self.flags[:10]]
        if len(self.flags) > 10:
            lines.append(f"  ... and {len(self.flags) - 10} more flags")
        if not self.flags:
            lines.append(f"  no vanishing (< {self.vanishing:g}) or exploding "
                         f"(> {self.exploding:g}) path")
        return "\n".join(lines)

    __str__ = text

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (e.g. the explain page): node ids as strings,
        since they do not fit a JavaScript number."""
        return {
            "depth_mode": self.depth_mode, "seed": self.seed, "ok": self.ok,
            "vanishing": self.vanishing, "exploding": self.exploding,
            "constants": self.constants, "mean_ratio": self.mean_ratio,
            "bands": [asdict(b) for b in self.bands],
            "steps": [asdict(s) for s in self.steps],
            "flags": [{**asdict(f), "node_id": str(f.node_id), "path": list(f.path)}
                      for f in self.flags],
            "nodes": {str(i): {"depth": d, "relative": self.node_relative[i]}
                      for i, d in self.node_depth.items()},
        }

    def plot(self, path: Any = None):
        """min–max band and median of |grad| per depth on a log axis, with the thresholds.
        Returns the matplotlib Figure (Agg canvas, no pyplot state); saves it to ``path``
        (PNG, SVG, ... by extension) when given."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError("GradReport.plot needs matplotlib: pip install matplotlib") from err
        fig = Figure(figsize=(7, 4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        live = [b for b in self.bands if 0 < b.max < math.inf]  # a log axis
        depths = [b.depth for b in live]
        if live:
            ax.fill_between(depths, [b.min for b in live], [b.max for b in live],
                            alpha=0.25, label="min–max")
            ax.plot(depths, [b.median for b in live], marker="o", ms=3, label="median")
        ax.axhline(self.vanishing, color="tab:purple", ls="--", lw=1, label="vanishing")
        ax.axhline(self.exploding, color="tab:red", ls="--", lw=1, label="exploding")
        ax.set_yscale("log")
        ax.set_xlabel(f"depth from the root ({self.depth_mode} path)")
        ax.set_ylabel("|grad| / root's grad")
        ax.set_title(f"gradient magnitude by depth (×{self.mean_ratio:.3g} per depth)")
        ax.legend(loc="best", fontsize="small")
        if path is not None:
            fig.savefig(path)
        return fig


def grad_report(root: Any, *, depth: str = "longest", vanishing: float = 1e-8,
                exploding: float = 1e8) -> GradReport:
    """Summarise |grad| by depth from ``root`` (a Var of either backend).

    Runs ``root.backward()`` first if ``root.grad`` is 0 (no backward yet); otherwise
    reads the adjoints a backward from ``root`` left on every node. A node's depth is the
    number of ops on the longest path from the root down to it (``depth="longest"``, the
    default: every edge then goes to a deeper band, so bands are the graph's layers) or on
    the shortest (``"shortest"``: how near the root it is). Magnitudes are relative to the
    root's grad (the seed, 1.0). Constants take no gradient and are left out; zero and NaN
    gradients are counted per band but left out of its min/median/max.

    Flags a leaf whose relative |grad| is below ``vanishing`` (but not 0) or above
    ``exploding``, and the onset of each such path: a node past the threshold whose
    consumer on its depth path is not.

    Examples:
        >>> import tapegrad as tg
        >>> s = tg.Var(0.5)
        >>> for _ in range(30):
        ...     s = tg.sigmoid(s)
        >>> report = tg.grad_report(s)
        >>> report.ok, report.flags[0].kind
        (False, 'vanishing')
    """
    if depth not in ("longest", "shortest"):
        raise ValueError(f"grad_report: depth must be 'longest' or 'shortest', got {depth!r}")
    if root.grad == 0:
        root.backward()
    seed = abs(root.grad)
    order = topo_order(root)
    depth_of: dict[int, int] = {root.id: 0}
    parent: dict[int, Any] = {}
    if depth == "longest":
        for v in reversed(order):  # every consumer of v comes before v
            d = depth_of[v.id] + 1
            for p in v.inputs:
                if depth_of.get(p.id, -1) < d:
                    depth_of[p.id], parent[p.id] = d, v
    else:
        queue = deque([root])
        while queue:
            v = queue.popleft()
            for p in v.inputs:
                if p.id not in depth_of:
                    depth_of[p.id], parent[p.id] = depth_of[v.id] + 1, v
                    queue.append(p)

    def kind_of(rel: float) -> str | None:
        if rel > exploding:
            return "exploding"
        return "vanishing" if 0 < rel < vanishing else None

    by_depth: dict[int, list[Any]] = {}
    relative: dict[int, float] = {}
    constants = 0
    for v in order:
        if v.op == "const":
            constants += 1
            continue
        relative[v.id] = abs(v.grad) / seed
        by_depth.setdefault(depth_of[v.id], []).append(v)

    bands = []
    for d in sorted(by_depth):
        nodes = by_depth[d]
        mags = [relative[v.id] for v in nodes]
        live = sorted(m for m in mags if m != 0 and not math.isnan(m))
        bands.append(GradBand(
            depth=d, count=len(nodes), zeros=sum(m == 0 for m in mags),
            nans=sum(math.isnan(m) for m in mags),
            min=live[0] if live else 0.0, median=statistics.median(live) if live else 0.0,
            max=live[-1] if live else 0.0, ops=dict(Counter(v.op for v in nodes))))
    steps = [GradStep(a.depth, b.median / a.median, a.ops)
             for a, b in zip(bands, bands[1:])
             if b.depth == a.depth + 1 and a.median > 0 and b.median > 0]

    flags = []
    for v in order:
        if v.op == "const":
            continue
        kind = kind_of(relative[v.id])
        if kind is None:
            continue
        up = parent.get(v.id)
        onset = up is None or kind_of(relative[up.id]) != kind
        if v.op == "leaf" or onset:
            flags.append(GradFlag(kind, v.id, v.op, depth_of[v.id], v.grad, relative[v.id],
                                  _path(v, parent)))
    flags.sort(key=lambda f: (f.kind, f.depth))
    return GradReport(depth, seed, vanishing, exploding, bands, steps, flags, constants,
                      {i: depth_of[i] for i in relative}, relative)


def _path(v: Any, parent: dict[int, Any]) -> tuple[str, ...]:
    ops = [v.op]
    while v.id in parent:
        v = parent[v.id]
        ops.append(v.op)
    return tuple(reversed(ops))


def _runs(path: tuple[str, ...]) -> str:
    """('sigmoid',) * 30 + ('leaf',) -> 'sigmoid ×30 → leaf'."""
    out: list[list[Any]] = []
    for op in path:
        if out and out[-1][0] == op:
            out[-1][1] += 1
        else:
            out.append([op, 1])
    return " → ".join(op if n == 1 else f"{op} ×{n}" for op, n in out)


def _ops(ops: dict[str, int]) -> str:
    return ", ".join(op if n == 1 else f"{op} ×{n}" for op, n in
                     sorted(ops.items(), key=lambda kv: -kv[1]))
