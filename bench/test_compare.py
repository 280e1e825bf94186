"""Smoke test for bench/compare.py (the one-command peer table): its quick path on tiny
sizes, in-process, with whatever peers are installed (and with none)."""
from __future__ import annotations

import json

import compare as C
import pytest

ROW_KEYS = {"workload", "size", "system", "variant", "mode", "unit", "units", "status", "check",
            "median_s", "min_s", "max_s", "repeats", "per_unit_ns", "ratio", "setup_s", "notes"}


def assert_structure(res: dict, peers: tuple) -> None:
    json.dumps(res, default=str)  # JSON-able
    assert res["mode"] == "smoke"
    env = res["environment"]
    for key in ("cpu", "versions", "threads", "gc", "missing", "python"):
        assert key in env
    assert {"enabled", "thresholds"} <= set(env["gc"])
    assert set(peers) <= set(env["versions"])
    assert not res["mismatches"], res["mismatches"]
    rows = res["rows"]
    assert rows and all(ROW_KEYS <= set(r) for r in rows)
    tg = [r for r in rows if r["system"] == "tapegrad"]
    assert {r["workload"] for r in tg} == {"W1", "W2", "W3", "W4", "W5"}
    for r in tg:  # tapegrad itself must run, agree with the reference and be timed
        assert r["status"] == "ok", r
        assert r["median_s"] > 0 and r["per_unit_ns"] > 0 and r["ratio"] is not None
    for r in rows:
        assert r["status"] in ("ok", "skipped") or r["status"].startswith("fails"), r
        if r["status"] == "ok":
            assert r["min_s"] <= r["median_s"] <= r["max_s"]
    installed = set(peers) - set(env["missing"])
    assert installed <= {r["system"] for r in rows}


def test_compare_smoke_no_peers():
    assert_structure(C.run("smoke", peer_names=(), log=lambda m: None), ())


def test_compare_smoke_installed_peers():
    res = C.run("smoke", peer_names=C.PEERS, log=lambda m: None)
    assert_structure(res, C.PEERS)
    assert "tapegrad" in C.report(res)


def test_compare_cli_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert C.main(["--smoke", "--peers", "", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "| W5 depth" in text and "tapegrad" in text
    res = json.loads(out.read_text())
    assert_structure(res, ())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not available" in text and not png.exists()
    else:
        assert png.stat().st_size > 0


def test_compare_unknown_peer():
    with pytest.raises(SystemExit):
        C.main(["--smoke", "--peers", "nosuchpeer"])
