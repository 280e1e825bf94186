"""Replay entry points at their edges: programs with no outputs, the threads= argument,
and direct calls into _core.Program that the Python layer would never make."""
import importlib
import pickle

import numpy as np
import pytest

tg = importlib.import_module("tapegrad")

NO_OUTPUTS_SCALAR = tg.trace(lambda x: [], 1.0)
NO_OUTPUTS_VECTOR = tg.trace(lambda v: [], np.ones(3))


def programs_with_no_outputs():
    p = NO_OUTPUTS_SCALAR._programs[0]
    return [p, pickle.loads(pickle.dumps(p))]  # the loader accepts it: it is a valid program


def test_no_outputs_values_and_jacobians_have_empty_shapes():
    # As jax.jacobian: shape out_shape + arg_shape, with out_shape (0,).
    F, G = NO_OUTPUTS_SCALAR, NO_OUTPUTS_VECTOR
    assert np.shape(F(2.0)) == (0,)
    assert np.shape(F.jacobian(2.0)) == (0,)
    assert np.shape(F.jacobian(np.ones(4))) == (4, 0)  # a batch of 4 points
    assert np.shape(G.jacobian(np.ones(3))) == (0, 3)
    assert np.shape(G.jacobian(np.ones((5, 3)))) == (5, 0, 3)
    assert np.shape(G(np.ones((5, 3)))) == (5, 0)


def test_no_outputs_gradients_raise_clearly():
    for call in (lambda: NO_OUTPUTS_SCALAR.grad(2.0),
                 lambda: NO_OUTPUTS_SCALAR.value_and_grad(2.0),
                 lambda: NO_OUTPUTS_SCALAR.hvp(2.0, 1.0),
                 lambda: NO_OUTPUTS_SCALAR.hessian(2.0)):
        with pytest.raises(ValueError, match="scalar function"):
            call()


@pytest.mark.parametrize("program", programs_with_no_outputs(), ids=("traced", "unpickled"))
def test_core_entry_points_validate_a_program_with_no_outputs(program):
    x = np.ones(1)
    out, jac, failed = program.point(x, 0)
    assert out.shape == (0,) and jac is None and failed == -1
    out, jac, failed = program.point(x, 2)
    assert out.shape == (0,) and jac.shape == (0,)
    with pytest.raises(ValueError, match="needs an output"):
        program.point(x, 1)
    with pytest.raises(ValueError, match="mode must be"):
        program.point(x, 3)
    program.set_signature([[]], [0])  # what Function sets; a bare unpickled Program has none
    assert program.call((2.0,), 1, 0) is None  # declines: the Python path explains
    assert program.call((2.0,), 0, 0).shape == (0,)
    assert program.call((np.ones(3),), 0, 1).shape == (3, 0)  # a batch
    assert program.call((np.ones(3),), 1, 1) is None
    out, tout, hv, failed = program.point_tangent(x, x, False)
    assert out.shape == tout.shape == (0,) and hv is None
    with pytest.raises(ValueError, match="needs an output"):
        program.point_tangent(x, x, True)
    X = np.ones((4, 1))
    for kw in (dict(grads=[np.empty((4, 1))]), dict(tangents=[X], hvp=[np.empty((4, 1))]),
               dict(hessian=np.empty((4, 1, 1)))):
        with pytest.raises(ValueError, match="seed_output out of range"):
            program.batch([X], np.empty((4, 0)), **kw)


@pytest.mark.parametrize("threads", ["2", 1.5, 0, -1, True, object()])
def test_threads_must_be_none_or_a_positive_int(threads):
    F = tg.trace(lambda x, y: x * y, 1.0, 1.0)
    X = np.ones(3)
    calls = [lambda: F(X, X, threads=threads), lambda: F.grad(X, X, threads=threads),
             lambda: F.value_and_grad(X, X, threads=threads),
             lambda: F.jacobian(X, X, threads=threads), lambda: F.hessian(X, X, threads=threads),
             lambda: F.jvp(X, X, (X, X), threads=threads),
             lambda: F.grad(1.0, 2.0, threads=threads)]  # the one-point fast path too
    for call in calls:
        with pytest.raises(ValueError) as err:
            call()
        message = str(err.value)
        assert "threads must be None (every core) or a positive int" in message
        assert "\n" not in message


def test_threads_accepts_any_positive_count():
    F = tg.trace(lambda x, y: x * y, 1.0, 1.0)
    X = np.arange(5.0)
    want = F.grad(X, X, threads=1)
    for threads in (2, np.int64(3), 2**31, 2**70, None):
        got = F.grad(X, X, threads=threads)
        np.testing.assert_array_equal(got, want)


def misaligned(values):
    """A float64 array at an odd address (numpy allows them: arrays read from a byte
    stream at an offset, as dask's workers unpickle them)."""
    raw = np.zeros(values.size * 8 + 1, dtype=np.uint8)
    a = np.frombuffer(raw.data, dtype=np.float64, count=values.size, offset=1).reshape(values.shape)
    a.flags.writeable = True
    a[...] = values
    assert not a.flags.aligned
    return a


def test_misaligned_batches_give_the_aligned_results():
    F = tg.trace(lambda x, y: tg.sin(x * y) + x / y, 1.0, 1.0)
    X, Y = np.linspace(0.5, 2.0, 7), np.linspace(1.0, 3.0, 7)
    want = F.value_and_grad(X, Y)
    got = F.value_and_grad(misaligned(X), misaligned(Y))
    for w, g in zip((want[0], *want[1]), (got[0], *got[1])):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(F.jvp(misaligned(X), Y, (misaligned(Y), X))[1],
                                  F.jvp(X, Y, (Y, X))[1])


def test_core_batch_rejects_misaligned_buffers():
    p = tg.trace(lambda x: x * x, 1.0)._programs[0]
    X = misaligned(np.ones((4, 1)))
    with pytest.raises(ValueError, match="aligned"):
        p.batch([X], np.empty((4, 1)))
    with pytest.raises(ValueError, match="aligned"):
        p.batch([np.ones((4, 1))], misaligned(np.empty((4, 1))))
