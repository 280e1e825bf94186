"""Smoke test of bench/compare.py, the one entry point of the side-by-side comparisons:
every registered subcommand dispatched at tiny sizes (--smoke) with no peers, `all` in its
child processes, the peer table with whatever peers are installed, and registering a new
subcommand. The figures at these sizes mean nothing; the structure, the checks against
the references and the exit status do."""
from __future__ import annotations

import json
import os
import sys
import types

import compare as C
import pytest

# First cells of rows each subcommand must report: evidence that it ran its workloads.
EXPECTED_ROWS = {
    "peers": ["W1 599 ops", "W2 MLP 2-16-16-1, 100 pts", "W3 d=20", "W4 500 points", "W5 depth 2000"],
    "core": ["tapegrad", "Var*Var", "tapegrad W1", "tapegrad chain", "tapegrad.reference"],
    "replay": ["tapegrad, loop-traced", "tapegrad F.grad, threads=2", "tapegrad F.value_and_grad",
               "MLP step"],
    "nn": ["tapegrad eager", "tapegrad traced", "traced, whole loss"],
    "transforms": ["F.grad(x)", "F.hvp(x, v)", "tapegrad F.hessian(X)"],
    "anomaly": ["eager build+backward, 1e5 nodes", "traced F3 value_and_grad, 1e5 points"],
    "pinn": ["tapegrad traced", "tapegrad eager"],
    "calls": ["1", "F.grad(x), x a 2-vector", "fresh results", "out=",
              "a new thread's tape (another thread's freed before)",
              "the first tape of a new process"],
    "sparse": ["tapegrad F.grad(x)", "tapegrad F.hessian(x, sparse=True)", "tapegrad R(u)",
               "tapegrad R.jacobian(u, sparse=True)", "tg.trace", "F.hessian_sparsity()",
               "F.jacobian_sparsity()", "tapegrad + IPOPT (cyipopt)"],
}

PEER_ROW_KEYS = {"workload", "size", "system", "variant", "mode", "unit", "units", "status",
                 "check", "median_s", "min_s", "max_s", "repeats", "per_unit_ns", "ratio",
                 "setup_s", "notes"}


def run_cli(argv: list[str], path) -> tuple[int, str, dict]:
    lines: list[str] = []
    rc = C.main(argv + ["--json", str(path)], out=lines.append)
    return rc, "\n".join(lines), json.loads(path.read_text())


def first_cells(report: dict) -> set[str]:
    return {row[0] for t in report["tables"] for row in t["rows"]}


def assert_report(name: str, report: dict, text: str) -> None:
    assert report["name"] == name and report["mode"] == "smoke"
    assert report["ok"] and not report["failures"], report["failures"]
    assert report["environment"]["loaded_peers"] == []
    assert report["tables"], "every subcommand reports at least one table"
    for t in report["tables"]:
        assert t["rows"] and all(len(row) == len(t["header"]) for row in t["rows"]), t
        assert "| " + " | ".join(t["header"]) + " |" in text
    missing = set(EXPECTED_ROWS.get(name, [])) - first_cells(report)
    assert not missing, f"{name} did not report {missing}"


def assert_peer_table(data: dict, peers: tuple) -> None:
    rows = data["rows"]
    assert rows and all(PEER_ROW_KEYS <= set(r) for r in rows)
    assert not data["mismatches"], data["mismatches"]
    tg = [r for r in rows if r["system"] == "tapegrad"]
    assert {r["workload"] for r in tg} == {"W1", "W2", "W3", "W4", "W5"}
    for r in tg:  # tapegrad itself must run, agree with the reference and be timed
        assert r["status"] == "ok", r
        assert r["median_s"] > 0 and r["per_unit_ns"] > 0 and r["ratio"] is not None
    for r in rows:
        assert r["status"] in ("ok", "skipped") or r["status"].startswith("fails"), r
        if r["status"] == "ok":
            assert r["min_s"] <= r["median_s"] <= r["max_s"]
    loaded = set(data["environment"]["loaded_peers"])
    assert loaded <= set(peers) and loaded <= {r["system"] for r in rows}


@pytest.mark.parametrize("name", list(C.SUBCOMMANDS))
def test_subcommand_smoke_without_peers(name, tmp_path):
    rc, text, res = run_cli([name, "--smoke", "--peers", ""], tmp_path / "out.json")
    assert rc == 0, text
    assert res["ok"] and res["command"] == name and res["mode"] == "smoke"
    assert list(res["results"]) == [name]
    assert text.startswith(f"# {C.module(name).TITLE} [smoke]")
    assert "- CPU: " in text  # the environment block
    assert_report(name, res["results"][name], text)
    if name == "peers":
        assert_peer_table(res["results"][name]["data"], ())


def test_all_runs_every_subcommand_in_a_child(tmp_path):
    rc, text, res = run_cli(["all", "--smoke", "--peers", ""], tmp_path / "all.json")
    assert rc == 0, text
    assert res["ok"] and res["command"] == "all"
    assert list(res["results"]) == list(C.SUBCOMMANDS)
    assert text.count("- CPU: ") == 1  # the environment once, not per subcommand
    for name, report in res["results"].items():
        assert f"# {C.module(name).TITLE} [smoke]" in text
        assert_report(name, report, text)
        assert report["environment"]["usable_cpus"] >= 1  # the child's own environment
    summary = text[text.index("# Summary"):]
    assert all(f"| {name} | yes |" in summary for name in C.SUBCOMMANDS)


def test_peer_table_with_installed_peers(tmp_path):
    rc, text, res = run_cli(["peers", "--smoke"], tmp_path / "out.json")
    assert rc == 0, text
    data = res["results"]["peers"]["data"]
    assert_peer_table(data, C.H.PEERS)
    env = data["environment"]
    assert set(C.H.PEERS) <= set(env["versions"]) and {"enabled", "thresholds"} <= set(env["gc"])
    for name in env["loaded_peers"]:  # every peer that imports gets at least one row
        assert any(r["system"] == name for r in data["rows"]), name


def test_peer_table_plot(tmp_path):
    png = tmp_path / "cmp.png"
    rc, text, _ = run_cli(["peers", "--smoke", "--peers", "", "--plot", str(png)],
                          tmp_path / "out.json")
    assert rc == 0, text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not available" in text and not png.exists()
    else:
        assert png.stat().st_size > 0


def test_registering_a_subcommand(tmp_path, monkeypatch):
    """One line in SUBCOMMANDS makes a module a subcommand, with its own options; a failure
    it reports makes the exit status 1."""
    mod = types.ModuleType("compare_fake")
    mod.TITLE = "a registered comparison"

    def add_arguments(ap):
        ap.add_argument("--size", type=int, default=3)

    def run(mode, opts, rep):
        rep.environment()
        rep.table(["case", "size", "mode"], [["fake", opts.size, mode]], title="Fake")
        if opts.size < 0:
            rep.fail("negative size")

    mod.add_arguments, mod.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "compare_fake", mod)
    monkeypatch.setitem(C.SUBCOMMANDS, "fake", "compare_fake")
    rc, text, res = run_cli(["fake", "--quick", "--size", "5"], tmp_path / "a.json")
    assert rc == 0 and "| fake | 5 | quick |" in text
    assert res["results"]["fake"]["tables"][0]["rows"] == [["fake", "5", "quick"]]
    rc, text, res = run_cli(["fake", "--smoke", "--size", "-1"], tmp_path / "b.json")
    assert rc == 1 and not res["ok"]
    assert res["results"]["fake"]["failures"] == ["negative size"]
    assert "negative size" in text


@pytest.mark.parametrize("argv", [["nosuchcommand"], ["core", "--peers", "nosuchpeer"],
                                  ["core", "--quick", "--smoke"], []])
def test_bad_command_lines(argv):
    with pytest.raises(SystemExit) as exc:
        C.main(argv)
    assert exc.value.code == 2


def test_casadi_jit_writes_nothing_to_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("casadi")
    import replay_workloads as R

    monkeypatch.chdir(tmp_path)
    jit = R.CasadiF3Jit(10)
    X, Y, Z = R.f3_points(10)
    for got, want in zip(jit.grad_buffer(X, Y, Z), R.f3_grad_numpy(X, Y, Z)):
        assert R.rel_err(got, want) <= 1e-12
    tmp = jit.tmp_dir
    assert os.listdir(tmp_path) == [] and os.listdir(tmp)  # the C file and the compiler's outputs
    del jit
    assert not os.path.exists(tmp)
