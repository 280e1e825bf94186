"""The scope of tg.detect_anomaly: on inside, restored on exit and after an exception,
nested, as a decorator, and per thread."""
import importlib
import math
import threading

import pytest
from anomaly_helpers import markers

import tapegrad as tg

core = importlib.import_module("tapegrad._core")
inf = math.inf

LINES, at, source = markers(__file__)
pytestmark = pytest.mark.usefixtures("detection_starts_off")


# ---------------------------------------------------------------------------- scope

def test_on_inside_off_after_and_after_an_exception():
    assert not core.is_anomaly_enabled()
    with tg.detect_anomaly() as d:
        assert isinstance(d, tg.detect_anomaly)
        assert core.is_anomaly_enabled()
    assert not core.is_anomaly_enabled()

    with pytest.raises(tg.AnomalyError):
        with tg.detect_anomaly():
            tg.log(tg.Var(0.0))
    assert not core.is_anomaly_enabled()

    with pytest.raises(KeyError):
        with tg.detect_anomaly():
            raise KeyError("unrelated")
    assert not core.is_anomaly_enabled()
    assert tg.log(tg.Var(0.0)).value == -inf  # off again: no error


def test_nested_use_restores_the_outer_state():
    outer = tg.detect_anomaly()
    with outer:
        with tg.detect_anomaly():
            assert core.is_anomaly_enabled()
        assert core.is_anomaly_enabled()  # the inner exit keeps the outer one on
        with outer:  # the same object, re-entered
            assert core.is_anomaly_enabled()
        assert core.is_anomaly_enabled()
        with pytest.raises(tg.AnomalyError):
            with tg.detect_anomaly():
                tg.sqrt(tg.Var(-1.0))
        assert core.is_anomaly_enabled()
    assert not core.is_anomaly_enabled()


def test_decorator_turns_detection_on_for_the_call_only():
    seen = []

    @tg.detect_anomaly()
    def step(v):
        """docstring kept"""
        seen.append(core.is_anomaly_enabled())
        return tg.log(v)  # @decorated

    assert step.__name__ == "step" and step.__doc__ == "docstring kept"
    assert not core.is_anomaly_enabled()
    assert step(tg.Var(1.0)).value == 0.0
    assert not core.is_anomaly_enabled()
    with pytest.raises(tg.AnomalyError) as info:
        step(tg.Var(0.0))
    assert info.value.location == at("decorated")
    assert not core.is_anomaly_enabled()
    with tg.detect_anomaly():
        step(tg.Var(2.0))
        assert core.is_anomaly_enabled()  # a decorated call inside keeps the outer on
    assert seen == [True, True, True]


def test_detection_is_per_thread():
    ready, checked = threading.Event(), threading.Event()
    out = {}

    def other():
        try:
            ready.wait(5)
            out["other_enabled"] = core.is_anomaly_enabled()
            out["other_value"] = tg.log(tg.Var(0.0)).value  # no error on this thread
            with tg.detect_anomaly():
                out["other_on"] = core.is_anomaly_enabled()
                checked.set()
                try:
                    tg.log(tg.Var(0.0))
                except tg.AnomalyError as e:
                    out["other_error"] = e.kind
        except BaseException as e:  # pragma: no cover - reported below
            out["crash"] = e
        finally:
            checked.set()

    t = threading.Thread(target=other)
    t.start()
    with tg.detect_anomaly():
        ready.set()
        checked.wait(5)
        with pytest.raises(tg.AnomalyError):
            tg.log(tg.Var(0.0))
    t.join(10)
    assert "crash" not in out, out
    assert out["other_enabled"] is False and out["other_value"] == -inf
    assert out["other_on"] is True and out["other_error"] == "forward"
    # the other thread's detection did not leak here
    assert not core.is_anomaly_enabled()
    assert tg.log(tg.Var(0.0)).value == -inf


def test_a_decorated_function_on_another_thread_leaves_this_one_alone():
    @tg.detect_anomaly()
    def worker(box):
        box.append(core.is_anomaly_enabled())

    box = []
    t = threading.Thread(target=worker, args=(box,))
    t.start()
    t.join(10)
    assert box == [True]
    assert not core.is_anomaly_enabled()
