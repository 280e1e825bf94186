"""Fixtures for the core benchmarks: the two tapegrad backends and the W1 oracle.

    python -m pytest bench                          # timings (pytest-benchmark)
    python -m pytest bench --benchmark-disable -q   # CI smoke: every benchmark runs once
"""
from __future__ import annotations

import sys

import pytest
import workloads as W


@pytest.fixture(params=["cpp", "reference"])
def backend(request):
    """The tapegrad backend under test as a workloads.System (reference skipped if absent)."""
    if request.param == "reference":
        pytest.importorskip("tapegrad.reference")
        return W.system_reference()
    return W.system_tapegrad()


@pytest.fixture(scope="session")
def w1_oracle():
    """n_terms -> (value, leaf grads) of W1 on tapegrad, for the agreement checks."""
    cache: dict[int, tuple[float, list[float]]] = {}
    tg = W.system_tapegrad()

    def get(n_terms: int):
        if n_terms not in cache:
            root, xs = tg.run_w1(n_terms)
            cache[n_terms] = tg.result(root, xs)
        return cache[n_terms]

    return get


@pytest.fixture
def restore_recursion_limit():
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)

