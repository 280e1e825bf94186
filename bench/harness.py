"""The measuring kit every comparison in bench/ shares, each piece defined once: timing
(calibrated samples, interleaved round-robin runs), spreads and ratios, target verdicts,
markdown tables, the environment block, peer loading, and the Report a subcommand of
bench/compare.py writes its tables into; also the resident set size, and the two helpers the
pytest-benchmark suites (bench/test_bench_*.py) share.

Timing model: a Case is one thing to time. Cases compared with each other run in the same
process, interleaved round-robin after warm-ups, so that noise from other jobs on the
machine hits all of them alike; figures are medians with the min-max over repeats, and
ratios are taken between medians (or per round, between samples of the same round).
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import numpy as np

PEERS = ("micrograd", "torch", "jax", "casadi", "autograd")
THREAD_ENV = ("XLA_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "TAPEGRAD_BLOCK_BYTES")


# ---------------------------------------------------------------- numbers


def med(xs) -> float:
    return statistics.median(xs) if len(xs) else math.nan


def fmt(x: float | None, digits: int = 3) -> str:
    """x to `digits` significant digits (integers above that)."""
    if x is None or x != x:
        return "n/a"
    if x == 0 or abs(x) >= 10 ** digits:
        return f"{x:.0f}"
    return f"{x:.{max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))}f}"


def _time_unit(seconds: float) -> tuple[str, float]:
    return next(((u, s) for u, s in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)) if seconds >= s),
                ("ns", 1e-9))


def human(seconds: float | None) -> str:
    """A duration with its unit: 1.23 ms, 45.6 µs."""
    if seconds is None or seconds != seconds:
        return "n/a"
    unit, scale = _time_unit(seconds)
    return f"{fmt(seconds / scale)} {unit}"


def spread(xs, scale: float = 1.0) -> str:
    """median (min–max)."""
    if not len(xs):
        return "n/a"
    return f"{fmt(med(xs) * scale)} ({fmt(min(xs) * scale)}–{fmt(max(xs) * scale)})"


def human_spread(xs) -> str:
    """median (min–max) of durations, in the median's unit."""
    if not len(xs):
        return "n/a"
    unit, scale = _time_unit(med(xs))
    return f"{spread(xs, 1 / scale)} {unit}"


def paired(a, b) -> str:
    """Range of the per-round ratios a[i] / b[i]: two series sampled in the same rounds."""
    rs = [x / y for x, y in zip(a, b) if y]
    return f"{fmt(min(rs))}–{fmt(max(rs))}" if rs else "n/a"


def met(ok: bool) -> str:
    """A target verdict cell."""
    return "yes" if ok else "**NO**"


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- timing


class Case:
    """One thing to time: a zero-argument callable.

    A sample calls fn `inner` times in a row (set by calibrate) and records wall and
    process CPU seconds per call. fresh: fn builds a graph, so a sample is one call after
    an untimed gc.collect() (the collector's work on the previous graph is not this one's).
    self_timed: fn times the part that counts and returns those seconds, so that set-up and
    teardown inside it stay untimed. repeats: at most this many samples (None: no cap).
    """

    def __init__(self, fn: Callable, fresh: bool = False, self_timed: bool = False):
        self.fn, self.fresh, self.self_timed = fn, fresh, self_timed
        self.inner = 1
        self.repeats: int | None = None
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def calibrate(self, target_s: float) -> None:
        """Enough calls per sample for ~target_s, so that a fast call is not timer noise."""
        if self.fresh or self.self_timed:
            return
        t0 = time.perf_counter()
        self.fn()
        t = time.perf_counter() - t0
        self.inner = max(1, min(100_000, int(target_s / max(t, 1e-7))))

    def sample(self, record: bool = True) -> None:
        if self.self_timed:
            seconds = self.fn()
            if record:
                self.wall.append(seconds)
            return
        fn = self.fn
        if self.fresh:
            gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(self.inner):
            fn()
        t1, c1 = time.perf_counter(), time.process_time()
        if record:
            self.wall.append((t1 - t0) / self.inner)
            self.cpu.append((c1 - c0) / self.inner)


def interleave(cases: list[Case], repeats: int, warmup: int = 0, alternate: bool = False) -> None:
    """`warmup` untimed rounds, then `repeats` timed rounds; a round samples every case once.
    alternate: every other round runs in reverse order, so that of two cases neither always
    runs first. A case with .repeats set stops sampling after that many samples."""
    for r in range(warmup + repeats):
        order = cases[::-1] if alternate and r % 2 == 0 else cases
        for case in order:
            if r < warmup:
                case.sample(record=False)
            elif case.repeats is None or len(case.wall) < case.repeats:
                case.sample()


def run_cases(cases: dict[str, Case], repeats: int, warmup: int, sample_s: float | None = None,
              *, on_error: Callable[[str], None] | None = None, try_first: bool = True,
              alternate: bool = False) -> dict[str, Case]:
    """Time the cases of one table side by side; returns those that ran.

    try_first: each case runs once untimed first (an extra warm-up, and where a broken case
    shows up: with on_error it is dropped and reported, so the other systems still get
    measured; without, the error propagates). sample_s: calibrate each case to about that
    many seconds per sample (None: one call per sample)."""
    if try_first:
        for name in list(cases):
            try:
                cases[name].fn()
            except Exception as err:
                if on_error is None:
                    raise
                on_error(f"{name}: {type(err).__name__}: {err} (not timed)")
                del cases[name]
    if sample_s is not None:
        for case in cases.values():
            case.calibrate(sample_s)
    interleave(list(cases.values()), repeats, warmup, alternate)
    return cases


# ---------------------------------------------------------------- memory


@contextlib.contextmanager
def empty_compile_cache():
    """F.compile() into a new, empty cache directory ($TAPEGRAD_CACHE_DIR) for the block;
    the variable is restored and the directory removed after (a loaded library stays
    mapped after its file is gone, on POSIX)."""
    old = os.environ.get("TAPEGRAD_CACHE_DIR")
    d = tempfile.mkdtemp(prefix="tg-compile-bench-")
    os.environ["TAPEGRAD_CACHE_DIR"] = d
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("TAPEGRAD_CACHE_DIR", None)
        else:
            os.environ["TAPEGRAD_CACHE_DIR"] = old
        shutil.rmtree(d, ignore_errors=True)


def rss_bytes() -> int:
    """The process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- pytest-benchmark suites


def collect() -> None:
    """gc.collect() untimed before each round: benchmark.pedantic(..., setup=collect) (a
    setup must return None)."""
    gc.collect()


def record_per_unit(benchmark, key: str, units: int) -> None:
    """benchmark.extra_info[key] = median ns per unit (only when timings were taken)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info[key] = stats.stats.median / units * 1e9


# ---------------------------------------------------------------- peers


def import_peer(name: str):
    """The peer's module (micrograd: its engine). JAX is switched to float64, as every
    other row is; that must happen before any JAX array exists."""
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return jax
    if name == "micrograd":
        import micrograd.engine

        return micrograd.engine
    return importlib.import_module(name)


def load_peers(names, allowed=PEERS) -> tuple[dict, dict]:
    """(modules of the peers in `names` that are also `allowed` and import, name -> why
    not for those that fail). A missing peer is reported, never fatal."""
    found, missing = {}, {}
    for name in names:
        if name not in allowed:
            continue
        try:
            found[name] = import_peer(name)
        except Exception as err:
            missing[name] = f"{type(err).__name__}: {err}"
    return found, missing


def freeze_imports() -> int:
    """Move what the imports allocated (torch alone: ~150k GC-tracked objects) to the
    permanent generation, so the cyclic GC that micrograd and the reference trigger does
    not also walk the peers' heap, as in a process without the other peers. Returns the
    number of objects frozen."""
    gc.collect()
    before = gc.get_freeze_count()
    gc.freeze()
    return gc.get_freeze_count() - before


# ---------------------------------------------------------------- environment


def pkg(name: str) -> str | None:
    """Installed version of a distribution, None if not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def core_build() -> str:
    """Identity of the compiled core on disk (a rebuild mid-run changes it)."""
    import tapegrad._core as core

    st = os.stat(core.__file__)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
    return f"{core.__file__} ({st.st_size} bytes, modified {stamp})"


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment(peers: dict | None = None, missing: dict | None = None,
                frozen: int | None = None) -> dict:
    """Machine, versions, threads and GC settings. peers: the peer modules this run loaded
    (their thread settings are read); None when it did not load any on purpose (versions
    only, as `compare.py all` reports before its subcommands run)."""
    import tapegrad as tg

    try:
        from tapegrad.function import _default_threads

        tg_threads = _default_threads()
    except Exception:
        tg_threads = "unknown"
    threads: dict = {"tapegrad_default_threads": tg_threads,
                     "env": {k: os.environ.get(k) for k in THREAD_ENV}}
    loaded = None if peers is None else sorted(peers)
    peers = peers or {}
    if "torch" in peers:
        threads["torch_num_threads"] = peers["torch"].get_num_threads()
        threads["torch_num_interop_threads"] = peers["torch"].get_num_interop_threads()
    if "jax" in peers:
        threads["jax_devices"] = [str(d) for d in peers["jax"].devices()]
    versions = {"tapegrad": tg.__version__, "numpy": np.__version__}
    versions.update({name: pkg(name) for name in PEERS + ("jaxlib",)})
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()}, "
                  f"{platform.machine()})",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "load_average_start": list(os.getloadavg()),
        "tapegrad_core": core_build(),
        "versions": versions,
        "loaded_peers": loaded,
        "missing": dict(missing or {}),
        "threads": threads,
        "gc": {"enabled": gc.isenabled(), "thresholds": list(gc.get_threshold()),
               "frozen_after_imports": frozen},
    }


def env_lines(env: dict) -> list[str]:
    v, th = env["versions"], env["threads"]

    def peer(name):
        if name in env["missing"] or not v.get(name):
            return f"{name} MISSING"
        loaded = env["loaded_peers"]
        return f"{name} {v[name]}" + ("" if loaded is None or name in loaded else " (not used here)")

    lines = [
        f"- python {env['python']}, {env['platform']}",
        f"- CPU: {env['cpu']}; {env['logical_cpus']} logical CPUs, {env['usable_cpus']} usable",
        f"- tapegrad {v['tapegrad']} (_core: {env['tapegrad_core']}), numpy {v['numpy']}",
        "- peers: " + ", ".join(peer(k) for k in PEERS)
        + (f", jaxlib {v['jaxlib']}" if v.get("jaxlib") else ""),
        f"- threads: tapegrad default {th['tapegrad_default_threads']} (rows say which they use)"
        + (f", torch intra-op {th['torch_num_threads']} / inter-op {th['torch_num_interop_threads']}"
           if "torch_num_threads" in th else "")
        + (f", JAX devices {th['jax_devices']} (XLA default threading)" if "jax_devices" in th else "")
        + "; env " + ", ".join(f"{k}={val if val is not None else '(unset)'}"
                               for k, val in th["env"].items()),
        f"- GC: enabled={env['gc']['enabled']}, thresholds={tuple(env['gc']['thresholds'])}"
        + (f"; gc.freeze() after imports ({env['gc']['frozen_after_imports']} objects), so "
           "GC-tracked systems pay for their own objects only"
           if env["gc"]["frozen_after_imports"] is not None else ""),
        f"- load average at start: {', '.join(f'{x:.2f}' for x in env['load_average_start'])} "
        "(shared machine: compare ratios within a run, not absolute times across runs)",
    ]
    lines += [f"- MISSING {name}: {why}" for name, why in env["missing"].items()]
    return lines


# ---------------------------------------------------------------- the report


class Report:
    """What one subcommand of bench/compare.py produces: markdown text, written to `out`
    as it comes (a long run shows its progress), its tables and figures for --json, notes
    (a peer that failed to run, a rebuilt core), and failures (a result that disagrees with
    its reference, a missed target that the subcommand treats as an error): any failure
    makes the exit status 1."""

    def __init__(self, name: str, title: str, mode: str, out: Callable[[str], None] | None = print,
                 show_env: bool = True):
        self.name, self.title, self.mode = name, title, mode
        self.out, self.show_env = out, show_env
        self.lines: list[str] = []
        self.tables: list[dict] = []
        self.notes: list[str] = []
        self.failures: list[str] = []
        self.data: dict = {}
        self.sections: dict[str, float] = {}
        self.env: dict | None = None
        self.t_start = time.perf_counter()
        self.core_at_start: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def say(self, text: str = "") -> None:
        for line in text.split("\n"):
            self.lines.append(line)
            if self.out is not None:
                self.out(line)
        sys.stdout.flush()

    def table(self, header: list[str], rows: list[list], title: str | None = None) -> None:
        """A markdown table (under a `## title` heading when given), kept for --json."""
        if title:
            self.say(f"\n## {title}\n")
        self.say(table(header, rows))
        self.tables.append({"title": title, "header": header,
                            "rows": [[str(c) for c in row] for row in rows]})

    def section(self, label: str, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs), with its wall time kept under `label` (reported at the end)."""
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.sections[label] = round(time.perf_counter() - t0, 2)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, text: str) -> None:
        self.failures.append(text)

    def environment(self, peers: dict | None = None, missing: dict | None = None,
                    frozen: int | None = None) -> dict:
        """Record the environment (and print its block unless show_env is off). peers: the
        peer modules the subcommand loaded (none by default)."""
        self.env = environment(peers or {}, missing, frozen)
        self.core_at_start = self.env["tapegrad_core"]
        if self.show_env:
            self.say("\n".join(env_lines(self.env)))
        return self.env

    def close(self) -> None:
        """The notes, failures and wall time at the end of the report."""
        if self.core_at_start and core_build() != self.core_at_start:
            self.note(f"tapegrad._core was REBUILT during this run (now {core_build()}): this "
                      "process kept the build it loaded first, but child processes may have "
                      "used the new one. Re-run for consistent numbers.")
        if self.notes:
            self.say("\n## Notes\n")
            self.say("\n".join(f"- {n}" for n in self.notes))
        if self.failures:
            self.say("\n**FAILED:**\n")
            self.say("\n".join(f"- {f}" for f in self.failures))
        self.say(f"\nwall time: {time.perf_counter() - self.t_start:.1f} s"
                 + (" (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.sections.items()) + ")"
                    if self.sections else ""))

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "mode": self.mode, "ok": self.ok,
                "failures": self.failures, "notes": self.notes, "environment": self.env,
                "tables": self.tables, "data": self.data, "section_seconds": self.sections,
                "wall_seconds": round(time.perf_counter() - self.t_start, 2)}
