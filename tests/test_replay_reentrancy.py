"""Python code that runs in the middle of a one-point replay (a garbage collection whose
__del__ replays another Function on the same thread, an argument's __float__) must not
overwrite the outer replay's buffers."""
import gc
import importlib

import numpy as np
import pytest

tg = importlib.import_module("tapegrad")

F = tg.trace(lambda x, y: x * y, 1.0, 1.0)  # grad at (3, 4) is (4, 3)
G = tg.trace(lambda x, y: 100 * x + 200 * y, 1.0, 1.0)
FV = tg.trace(lambda v: v[0] * v[1] + tg.sin(v[2]), np.ones(3))
GV = tg.trace(lambda v: 100 * v[0] + 200 * v[1] + 300 * v[2], np.ones(3))


class Bomb:
    """A cycle, so only the cyclic GC frees it; its __del__ replays other Functions."""

    def __init__(self, replay):
        self.me = self
        self.replay = replay

    def __del__(self):
        self.replay()


def nested_gc_calls(call, inner):
    """call() with a collection (running inner()) forced at every possible allocation."""
    results = []
    gc.collect()
    gc.freeze()  # everything older is left alone, so each collection below is quick
    try:
        for threshold in range(1, 60):
            gc.collect()
            gc.set_threshold(threshold)
            try:
                Bomb(inner)
                results.append(call())
            finally:
                gc.set_threshold(700)
    finally:
        gc.unfreeze()
    return results


X3 = np.array([3.0, 4.0, 0.5])
CASES = {
    "scalar grad": (lambda: F.grad(3.0, 4.0), lambda: G.grad(5.0, 6.0)),
    "scalar value_and_grad": (lambda: F.value_and_grad(3.0, 4.0),
                              lambda: G.value_and_grad(5.0, 6.0)),
    "scalar value": (lambda: F(3.0, 4.0), lambda: G(5.0, 6.0)),
    "vector grad": (lambda: FV.grad(X3), lambda: GV.grad(np.ones(3))),
    "vector jacobian": (lambda: FV.jacobian(X3), lambda: GV.jacobian(np.ones(3))),
    "jvp": (lambda: FV.jvp(X3, np.array([1.0, 2.0, 3.0])),
            lambda: GV.jvp(np.ones(3), np.ones(3))),
    "hvp": (lambda: FV.hvp(X3, np.array([1.0, 2.0, 3.0])),
            lambda: GV.hvp(np.ones(3), np.ones(3))),
    "batch grad": (lambda: FV.grad(np.stack([X3, X3])), lambda: GV.grad(np.ones((2, 3)))),
}


@pytest.mark.parametrize("name", CASES)
def test_a_replay_inside_a_collection_does_not_overwrite_the_outer_result(name):
    call, inner = CASES[name]
    want = call()
    for got in nested_gc_calls(call, inner):
        np.testing.assert_array_equal(_flat(got), _flat(want))


def _flat(r):
    if isinstance(r, tuple):
        return np.concatenate([_flat(x) for x in r])
    return np.ravel(np.asarray(r, dtype=np.float64))


def test_an_argument_whose_conversion_replays_does_not_overwrite_the_outer_inputs():
    class Sneaky(float):
        """A float subclass: the fast path cannot take it as an exact float, so the
        general path converts it, and its __float__ replays GV first."""

        def __float__(self):
            GV.grad(np.ones(3))
            return float.__float__(self)

    x = np.array([3.0, Sneaky(4.0), 0.5], dtype=object)
    np.testing.assert_array_equal(FV.grad(x), FV.grad(X3))
