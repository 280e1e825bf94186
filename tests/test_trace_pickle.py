"""Pickling a tg.Function: round trips (pickle, cloudpickle, a spawned process pool), the
versioned format, and corrupt states, which must raise, never crash the interpreter."""
import copyreg
import importlib
import io
import multiprocessing
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from trace_helpers import assert_bits, f3, rosenbrock

tg = importlib.import_module("tapegrad")
function = importlib.import_module("tapegrad.function")


def guarded(x, v):
    """Vector argument, a guard, libm ops: a bit of everything a Program stores."""
    t = tg.sin(x * v[0]) + v[1] / (1 + x * x)
    return t * 2.0 if v[2] > 0 else tg.exp(t)


def functions():
    return {
        "f3": (tg.trace(f3, 0.5, 0.5, 0.5), (0.3, -1.2, 0.7)),
        "guarded": (tg.trace(guarded, 0.5, np.ones(3)), (0.25, np.array([1.5, -0.5, 2.0]))),
        "vector": (tg.trace(lambda v: [v[0] * v[1], tg.tanh(v[1])], np.ones(2)),
                   (np.array([0.3, -0.8]),)),
        "rosenbrock": (tg.trace(rosenbrock, np.zeros(6)), (np.linspace(-1, 1, 6),)),
    }


def results(F, args):
    """Everything a Function computes at args: one point and a batch of 5."""
    batch = [np.stack([a] * 5) if np.ndim(a) else np.linspace(a - 1, a + 1, 5) for a in args]
    out = [F(*args), F(*batch)]
    if np.ndim(F(*args)) == 0:
        value, grads = F.value_and_grad(*args)
        out += [value, *(grads if isinstance(grads, tuple) else (grads,))]
        bvalue, bgrads = F.value_and_grad(*batch)
        out += [bvalue, *(bgrads if isinstance(bgrads, tuple) else (bgrads,))]
    else:
        out += [F.jacobian(*args), F.jacobian(*batch)]
    return out


def assert_same_results(G, F, args):
    for got, want in zip(results(G, args), results(F, args)):
        assert_bits(got, want)
    assert (G.n_nodes, G.n_ops, G.n_guards, G.ops_histogram()) == \
           (F.n_nodes, F.n_ops, F.n_guards, F.ops_histogram())


@pytest.mark.parametrize("name", list(functions()))
def test_pickle_round_trip(name):
    F, args = functions()[name]
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        G = pickle.loads(pickle.dumps(F, protocol=protocol))
        assert isinstance(G, tg.Function)
        assert_same_results(G, F, args)


def test_cloudpickle_round_trip_keeps_retracing():
    cloudpickle = pytest.importorskip("cloudpickle")
    F = tg.trace(lambda x: x if x > 0 else -x, 1.0, retrace=True)  # a lambda: by value
    G = cloudpickle.loads(cloudpickle.dumps(F))
    assert (G(-2.0), G.grad(-2.0)) == (2.0, -1.0)  # re-traced in this process
    X = np.array([-1.0, 2.0, -3.0])
    assert_bits(G(X), np.abs(X))
    H, args = functions()["guarded"]
    assert_same_results(cloudpickle.loads(cloudpickle.dumps(H)), H, args)


def test_pickled_guard_still_names_the_comparison():
    F = tg.trace(guarded, 0.5, np.ones(3))
    G = pickle.loads(pickle.dumps(F))
    line = guarded.__code__.co_firstlineno + 3
    with pytest.raises(tg.TraceError, match=f"{__file__}:{line}"):
        G(0.5, np.array([1.0, 1.0, -1.0]))
    with pytest.raises(tg.TraceError, match="indices 1"):
        G(0.5, np.array([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]))


def test_retracing_function_needs_a_picklable_fn():
    F = tg.trace(lambda x: x if x > 0 else -x, 1.0, retrace=True)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(F)  # stdlib pickle cannot store a lambda: it must say so, not drop it
    G = tg.trace(lambda x: x if x > 0 else -x, 1.0)  # no retrace: fn is not needed
    assert pickle.loads(pickle.dumps(G))(3.0) == 3.0


class Crafted:
    """Pickles as a call to `fn(state)`: a Function pickle with a hand-made state."""

    def __init__(self, fn, state):
        self.fn, self.state = fn, state

    def __reduce__(self):
        return (self.fn, (self.state,))


def test_unknown_function_version_is_a_clear_error():
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    restore, (state,) = F.__reduce__()
    assert state[0] == function.PICKLE_VERSION
    for bad in ((99,) + state[1:], (None,) + state[1:], (), "junk"):
        with pytest.raises(ValueError, match="cannot unpickle tapegrad.Function: format version"):
            pickle.loads(pickle.dumps(Crafted(restore, bad)))
    with pytest.raises(ValueError, match=r"version 99, this tapegrad reads version 1"):
        restore((99,) + state[1:])


# ---------------------------------------------------------------------------- corrupt Programs

def program_state():
    F = tg.trace(guarded, 0.5, np.ones(3))
    program = F.__reduce__()[1][0][1][0]
    return type(program), list(program.__getstate__())


def corrupt(index, how):
    Program, state = program_state()
    n = len(state[4])  # one op code byte per slot
    state[index] = how(state, n)
    return Program, tuple(state)


def slot_bytes(values):
    return struct.pack(f"{len(values)}I", *values)


CORRUPTIONS = {
    # out of range: slots, layout, op codes
    "argument slot past the end": (5, lambda s, n: s[5][:-4] + slot_bytes([n + 7])),
    "argument slot not before its node": (6, lambda s, n: s[6][:-4] + slot_bytes([n - 1])),
    "argument slot 2**32-1": (5, lambda s, n: s[5][:-4] + slot_bytes([2**32 - 1])),
    "output slot past the end": (8, lambda s, n: [n]),
    "negative output slot": (8, lambda s, n: [-1]),
    "more inputs than slots": (2, lambda s, n: n + 1),
    "negative input count": (2, lambda s, n: -1),
    "first op past the end": (3, lambda s, n: n + 1),
    "guard slot past the end": (9, lambda s, n: [(2, 0, n, True, "f.py:1")]),
    "guard comparison code": (9, lambda s, n: [(17, 0, 1, True, "f.py:1")]),
    "op code past the name table": (4, lambda s, n: s[4][:-1] + b"\x7f"),
    "leaf code in the op section": (4, lambda s, n: s[4][:-1] + b"\x00"),
    "op code in the input section": (4, lambda s, n: b"\x05" + s[4][1:]),
    "unknown op name": (1, lambda s, n: s[1][:-1] + ["frobnicate"]),
    "truncated constants": (7, lambda s, n: s[7][:-1]),
    "truncated arguments": (5, lambda s, n: s[5][:-4]),
    "unknown program version": (0, lambda s, n: 7),
    # malformed structure
    "guard tuple too short": (9, lambda s, n: [(2, 0)]),
    "outputs not a list": (8, lambda s, n: "abc"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_program_state_raises_value_error(name):
    Program, state = corrupt(*CORRUPTIONS[name])
    program = Program.__new__(Program)
    with pytest.raises(ValueError):
        program.__setstate__(state)
    # and through pickle: a whole Function whose Program is written with this state
    class Tampering(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, Program):
                return (copyreg.__newobj__, (Program,), state)  # as a Program pickles itself
            return NotImplemented

    buffer = io.BytesIO()
    Tampering(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(tg.trace(guarded, 0.5, np.ones(3)))
    with pytest.raises(ValueError):
        pickle.loads(buffer.getvalue())


def test_program_state_is_checked_for_field_count():
    Program, state = program_state()
    for bad in ((), tuple(state[:5]), tuple(state) + (None,)):
        with pytest.raises(ValueError, match="corrupt Program pickle|empty state"):
            Program.__new__(Program).__setstate__(bad)


# Function states whose parts do not fit together: every part is valid, but the program's
# inputs/outputs do not match the recorded argument/output shapes. Run in a child process:
# a crash must show up as a failed test, not end the test session.
MISMATCHES = {
    "no outputs, scalar out_shape": """
        prog = state[1][0]
        st = list(prog.__getstate__()); st[8] = []
        P = type(prog).__new__(type(prog)); P.__setstate__(tuple(st))
        calls = [lambda G: G.grad(1.0), lambda G: G(1.0), lambda G: G.grad(np.ones(3))]
        state = (state[0], [P]) + state[2:]
    """,
    "out_shape larger than the outputs": """
        state = state[:3] + ((1000,),) + state[4:]
        calls = [lambda G: G(1.0), lambda G: G(np.ones(3)), lambda G: G.jacobian(1.0)]
    """,
    "arg_shapes larger than the inputs": """
        state = state[:2] + ([(3,)],) + state[3:]
        calls = [lambda G: G(np.ones(3)), lambda G: G.grad(np.ones((2, 3)))]
    """,
    "no programs": """
        state = (state[0], []) + state[2:]
        calls = [lambda G: G(1.0)]
    """,
}


@pytest.mark.parametrize("name", list(MISMATCHES))
def test_inconsistent_function_state_raises_not_crashes(name):
    code = textwrap.dedent("""
        import pickle, numpy as np, tapegrad as tg
        F = tg.trace(lambda x: x * 2.0, 1.0)
        restore, (state,) = F.__reduce__()
    """) + textwrap.dedent(MISMATCHES[name]) + textwrap.dedent("""
        def attempt(label, f):
            try:
                out = f()
            except Exception as e:
                print(f"{label}: {type(e).__name__}: {e}", flush=True)
                return None
            print(f"{label}: returned {repr(out)[:200]}", flush=True)
            return out

        G = attempt("restore", lambda: restore(state))
        if G is not None:
            for k, call in enumerate(calls):
                attempt(f"call {k}", lambda: call(G))
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60)
    report = f"exit {child.returncode}\n{child.stdout}{child.stderr[-2000:]}"
    assert child.returncode == 0, report  # a negative code: killed by a signal (a crash)
    lines = child.stdout.splitlines()
    if lines and lines[0].startswith("restore: returned"):
        lines = lines[1:]  # restored: then every call must refuse
    assert lines and all(": ValueError: " in line for line in lines), report


# ---------------------------------------------------------------------------- processes

def test_spawned_process_pool():
    """Functions travel to worker processes (spawn: a fresh interpreter, so everything
    goes through pickle) and give the same results there. tg.Function.grad is a plain
    module-level function, so it pickles by reference."""
    F = tg.trace(f3, 0.5, 0.5, 0.5)
    points = [(0.3, -1.2, 0.7), (1.5, 0.5, -0.25), (-2.0, 0.1, 0.0)]
    batch = tuple(np.array(points).T)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        grads = pool.starmap(tg.Function.grad, [(F, *p) for p in points])
        values = pool.starmap(tg.Function.__call__, [(F, *batch)] * 2)
    for got, p in zip(grads, points):
        assert_bits(np.array(got), np.array(F.grad(*p)))
    for got in values:
        assert_bits(got, F(*batch))
