#!/usr/bin/env python
"""Side-by-side comparisons of tapegrad with its peers and with its own targets, from one
command. The README's performance tables come from `python bench/compare.py all`.

    python bench/compare.py all --quick                  # every table, ~4 min on 2 cores
    python bench/compare.py replay                       # one subcommand, full run
    python bench/compare.py core --quick --json /tmp/core.json
    python bench/compare.py all --smoke --peers ''       # tiny sizes, no peers (the tests)

Subcommands (one module each in bench/, importable on its own):
    peers       compare_peers.py       five workloads (W1-W5) against micrograd, PyTorch,
                                       JAX, CasADi and autograd
    core        compare_core.py        eager build, backward, memory, W1 vs micrograd/torch
    replay      compare_replay.py      trace once, replay many vs JAX jit and CasADi
    nn          compare_nn.py          micrograd's moons demo, step by step
    transforms  compare_transforms.py  HVP vs gradient, batched Hessian vs JAX
    anomaly     compare_anomaly.py     what detect_anomaly() costs
    tape        compare_tape.py        backward and memory follow the live graph, not history
    accuracy    accuracy.py            max ulp error per op against mpmath, eager and lanes
    pinn        compare_pinn.py        a physics-informed network's training step (nested
                                       derivatives) vs PyTorch and JAX
    calls       compare_calls.py       call overhead (batched and one point) vs JAX and
                                       numpy, big batches and out=, a fresh tape
    sparse      compare_sparse.py      sparse Hessian and Jacobian vs a gradient, JAX +
                                       sparsejac and CasADi; sparsity detection vs
                                       tracing; IPOPT optimal control vs CasADi's
    compile     compare_compile.py     F.compile()'s native code: Rosenbrock gradient vs
                                       the interpreter and CasADi's generated C, compile
                                       times
    all         every subcommand above, each in a fresh interpreter, one after another

Options for every subcommand: --quick (fewer, shorter repeats; same workloads), --smoke
(tiny sizes, 1-2 repeats: checks that the code runs, its figures mean nothing), --json FILE
(the tables, figures and environment), --peers LIST (comma-separated peers to try, '' for
none; a missing peer is reported, never fatal), --no-env (leave out the environment
block). Some subcommands add options of their own (see `compare.py SUBCOMMAND -h`). The
exit status is 1 when a result disagrees with its reference (or a subcommand fails a
check it treats as an error), 2 when tapegrad itself cannot be imported.

Adding a subcommand: write bench/compare_<topic>.py (timing, tables and the environment
come from harness.py) with

    TITLE = "what it compares"             # the heading of its report and its --help line

    def run(mode, opts, rep):              # mode: "full", "quick" or "smoke";
        ...                                # opts.peers: the peers it may import
                                           # (harness.load_peers); rep: a harness.Report
                                           # to write its tables, notes and failures into

    def add_arguments(ap):                 # optional: options of its own (with defaults,
        ...                                # since `all` passes none)

then register it with one line in SUBCOMMANDS below, e.g. "tape": "compare_tape". `all`
and the smoke test (bench/test_compare.py) pick it up from there.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import harness as H  # noqa: E402

SUBCOMMANDS = {  # name -> module in bench/; `all` runs them in this order
    "peers": "compare_peers",
    "core": "compare_core",
    "replay": "compare_replay",
    "nn": "compare_nn",
    "transforms": "compare_transforms",
    "anomaly": "compare_anomaly",
    "tape": "compare_tape",
    "accuracy": "accuracy",
    "pinn": "compare_pinn",
    "calls": "compare_calls",
    "sparse": "compare_sparse",
    "compile": "compare_compile",
}


def module(name: str):
    return importlib.import_module(SUBCOMMANDS[name])


def common_options() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(add_help=False)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    size.add_argument("--smoke", action="store_true",
                      help="tiny sizes, 1-2 repeats (tests: the figures mean nothing)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    ap.add_argument("--peers", default=",".join(H.PEERS), type=peer_list,
                    help=f"comma-separated peers to try (default: {','.join(H.PEERS)}; "
                         "'' = none)")
    ap.add_argument("--no-env", action="store_true", help="leave out the environment block")
    return ap


def peer_list(text: str) -> tuple[str, ...]:
    names = tuple(p for p in text.split(",") if p)
    unknown = set(names) - set(H.PEERS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peers: {', '.join(sorted(unknown))}")
    return names


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    common = common_options()
    for name in SUBCOMMANDS:
        mod = module(name)
        sp = sub.add_parser(name, parents=[common], help=mod.TITLE, description=mod.TITLE)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(sp)
    sub.add_parser("all", parents=[common], help="every subcommand, each in a fresh interpreter")
    return ap


def mode_of(args) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def run_one(name: str, args, out) -> dict:
    """Run one subcommand in this process; returns its report as a dict."""
    mod = module(name)
    mode = mode_of(args)
    rep = H.Report(name, mod.TITLE, mode, out=out, show_env=not args.no_env)
    rep.say(f"# {mod.TITLE} [{mode}]\n")
    try:
        mod.run(mode, args, rep)
    finally:
        rep.close()
    return rep.as_dict()


def run_all(args, out) -> dict:
    """Every subcommand in a fresh interpreter of its own, so that each runs as it does
    alone: no peer imported by another one (importing casadi alone changes glibc's malloc
    thresholds for the whole process), no other subcommand's objects on the GC heap or
    threads in a pool, and a crash in one still leaves the others' tables."""
    mode = mode_of(args)
    env = H.environment()
    out(f"# tapegrad side by side [{mode}]: {', '.join(SUBCOMMANDS)}\n")
    if not args.no_env:
        out("\n".join(H.env_lines(env)))
    flags = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tapegrad-compare-") as tmp:
        for name in SUBCOMMANDS:
            path = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), name, *flags,
                   "--peers", ",".join(args.peers), "--json", str(path), "--no-env"]
            out("")
            sys.stdout.flush()
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
                for line in proc.stdout:  # streamed: a long run shows its progress
                    out(line.rstrip("\n"))
            try:
                results[name] = json.loads(path.read_text())["results"][name]
            except (OSError, ValueError, KeyError):
                results[name] = {"name": name, "ok": False, "failures": [
                    f"exit status {proc.returncode} and no results"]}
            if proc.returncode and results[name]["ok"]:
                results[name]["ok"] = False
                results[name]["failures"].append(f"exit status {proc.returncode}")
    return {"environment": env, "results": results}


def main(argv=None, out=print) -> int:
    try:
        import tapegrad  # noqa: F401
    except Exception as err:
        print(f"tapegrad itself is not importable: {err}", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.command == "all":
        res = run_all(args, out)
    else:
        res = {"results": {args.command: run_one(args.command, args, out)}}
    failed = [f"{name}: {f}" for name, r in res["results"].items() for f in r["failures"]]
    if args.command == "all":
        out("\n# Summary\n")
        out(H.table(["subcommand", "ok", "wall s", "failures"],
                    [[name, H.met(r["ok"]), r.get("wall_seconds", "—"), "; ".join(r["failures"])]
                     for name, r in res["results"].items()]))
    ok = not failed and all(r["ok"] for r in res["results"].values())
    res = {"tool": "bench/compare.py", "command": args.command, "mode": mode_of(args), "ok": ok,
           **res, "wall_seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        out(f"\nJSON written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
