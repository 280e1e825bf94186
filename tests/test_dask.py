"""tapegrad.dask on a real LocalCluster (2 worker processes on 127.0.0.1): bit-for-bit
agreement with local batched replay, laziness, chunks/dtype/meta, a worker killed
mid-computation, and clear errors for Functions that cannot travel."""
import importlib
import os
import signal
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

tg = importlib.import_module("tapegrad")
tgd = importlib.import_module("tapegrad.dask")
function = importlib.import_module("tapegrad.function")

# distributed warns (UserWarning) when its scratch directories take > 1 s to create, which
# happens on a loaded machine; nothing else is silenced.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Creating scratch directories is taking a surprisingly long time:UserWarning")


def rosen(x):
    return (x[0] - 1) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def wavy(x, p):
    """Scalar x, parameter vector p, libm ops (exp, sin, tanh: SIMD lanes in the replay)."""
    return tg.sin(x * p[0]) + p[1] * tg.exp(-x * x) * tg.tanh(x + p[2])


def pair(v):
    return [v[0] * v[1], tg.tanh(v[1])]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def assert_bits(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.array_equal(g, w), np.max(np.abs(g - w))


def test_value_and_grad_equal_local_replay_bitwise(client):
    F = tg.trace(rosen, np.zeros(2))
    X = da.random.default_rng(1).uniform(-2, 2, size=(10_001, 2), chunks=(777, 1))
    x = X.compute()
    values, grads = dask.compute(*tgd.value_and_grad(F, X))
    want = F.value_and_grad(x)
    assert_bits(values, want[0])
    assert_bits(grads, want[1])
    assert_bits(tgd.grad(F, X).compute(), F.grad(x))
    assert_bits(tgd.call(F, X).compute(), F(x))


def test_libm_function_with_broadcast_parameters_bitwise(client):
    # SIMD (libmvec) lanes cover the same points when chunk lengths are multiples of 8.
    F = tg.trace(wavy, 0.5, np.ones(3))
    p = np.array([1.5, -0.7, 0.2])
    X = da.random.default_rng(2).normal(size=5003, chunks=800)
    x = X.compute()
    value, (gx, gp) = tgd.value_and_grad(F, X, p)
    assert gp.shape == (5003, 3) and gp.chunks == ((800,) * 6 + (203,), (3,))
    assert_bits(dask.compute(value, gx, gp), (F(x, p), *F.grad(x, p)))


def test_vector_function_jacobian_and_two_batch_dims(client):
    F = tg.trace(pair, np.ones(2))
    Y = da.random.default_rng(3).normal(size=(6, 50, 2), chunks=(4, 16, 2))
    y = Y.compute()
    out, jac = tgd.call(F, Y), tgd.jacobian(F, Y)
    assert out.shape == (6, 50, 2) and out.chunks == ((4, 2), (16, 16, 16, 2), (2,))
    assert jac.shape == (6, 50, 2, 2) and jac.chunks[:2] == out.chunks[:2]
    assert_bits(out.compute(), F(y))
    assert_bits(jac.compute(), F.jacobian(y))
    with pytest.raises(ValueError, match="scalar function"):
        tgd.value_and_grad(F, Y)


def test_chunks_dtype_meta_and_broadcast_chunk_alignment():
    G = tg.trace(lambda x, v: x * v[0] + v[1], 0.5, np.ones(2))
    x = da.arange(100, dtype=np.float32, chunks=30)
    V = da.ones((100, 2), chunks=(25, 2))  # other batch chunks: aligned for us
    value, (gx, gv) = tgd.value_and_grad(G, x, V)
    assert value.dtype == gx.dtype == gv.dtype == np.float64
    assert value.chunks == ((25, 5, 20, 10, 15, 15, 10),)  # common refinement
    assert gv.chunks == (value.chunks[0], (2,))
    for a in (value, gx, gv):
        assert type(a._meta) is np.ndarray and a._meta.dtype == np.float64
        assert a._meta.ndim == a.ndim
    assert_bits(value.compute(scheduler="sync"), G(np.arange(100.0), np.ones((100, 2))))
    # numpy inputs only; no batch at all
    assert tgd.call(G, np.arange(3.0), np.array([2.0, 1.0])).compute().tolist() == [1, 3, 5]
    assert tgd.call(G, 2.0, np.array([2.0, 1.0])).compute() == 5.0
    with pytest.raises(ValueError, match="trailing shape"):
        tgd.call(G, x, da.ones((100, 3)))
    with pytest.raises(ValueError, match="do not broadcast"):
        tgd.call(G, x, da.ones((7, 2)))


def test_lazy_until_compute(client, monkeypatch):
    F = tg.trace(rosen, np.zeros(2))
    X = da.random.default_rng(4).uniform(size=(1000, 2), chunks=(100, 2))
    values, grads = tgd.value_and_grad(F, X)
    total = values.sum() + grads.sum()
    # none of this graph's replay tasks, nor its result, reached the scheduler (other
    # tests' tasks may still be draining there, and input arrays made the same way share
    # their keys with them, so look at the keys only this graph has)
    mine = (str(k) for k in dict(total.__dask_graph__()))
    ours = {k for k in mine if k.startswith(("('block-", "('add-"))}
    on_scheduler = client.run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    assert ours and not ours & set(on_scheduler)
    # in this process: the block function runs only when asked, once per chunk
    calls = []
    block = tgd._block
    monkeypatch.setattr(tgd, "_block", lambda *a, **k: calls.append(1) or block(*a, **k))
    values, grads = tgd.value_and_grad(F, X)
    total = values.sum() + grads.sum()
    assert calls == []
    total.compute(scheduler="sync")
    assert len(calls) == 10


def test_threads_parameter(client):
    F = tg.trace(rosen, np.zeros(2))
    X = da.random.default_rng(5).uniform(size=(20_000, 2), chunks=(5_000, 2))
    assert_bits(tgd.call(F, X, threads=2).compute(), tgd.call(F, X).compute())
    with pytest.raises(ValueError, match="threads must be None .every core. or a positive int"):
        tgd.call(F, X, threads=0)


def test_function_loaded_once_per_worker(client):
    F = tg.trace(lambda x: x * x - 3 * x, 0.5)  # a Function no earlier test shipped
    X = da.linspace(0, 1, 400, chunks=10)
    before = client.run(lambda: tgd._loads)
    assert_bits(tgd.call(F, X).compute(), F(X.compute()))
    after = client.run(lambda: tgd._loads)
    loads = [after[w] - before.get(w, 0) for w in after]
    assert sum(loads) <= len(after) and max(loads) == 1  # 40 tasks, at most 1 load each


def test_not_a_function():
    with pytest.raises(TypeError, match="must be a tapegrad.Function .* got function"):
        tgd.value_and_grad(rosen, np.zeros((3, 2)))


def test_unpicklable_function_fails_when_building():
    lock = threading.Lock()

    def f(x):
        with lock:
            return x * x if x > 0 else -x
    F = tg.trace(f, 0.5, retrace=True)  # a retracing Function carries fn, and fn the lock
    with pytest.raises(TypeError, match="cannot send this Function to dask workers.*lock.*"
                                        "retrace=True"):
        tgd.call(F, da.ones(4, chunks=2))
    # retrace=False drops fn: the same function travels
    tgd.call(tg.trace(f, 0.5), da.ones(4, chunks=2))


def test_retracing_lambda_travels_by_cloudpickle(client):
    import pickle
    F = tg.trace(lambda x: x * x if x > 0 else -x, 0.5, retrace=True)
    with pytest.raises((pickle.PicklingError, AttributeError), match="pickle .*lambda"):
        pickle.dumps(F)  # plain pickle refuses; tapegrad.dask uses cloudpickle
    x = np.linspace(-1, 1, 64)
    assert_bits(tgd.call(F, da.from_array(x, chunks=16)).compute(), F(x))


def test_version_mismatch_is_a_clear_error(client, monkeypatch):
    F = tg.trace(lambda x: 2 * x + 1, 0.5)
    X = da.ones(40, chunks=10)
    monkeypatch.setattr(function, "PICKLE_VERSION", 2)  # a client with a newer format
    lazy = tgd.call(F, X)  # the pickle is made here, carrying version 2
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match=r"could not load the Function: cannot unpickle "
                       r"tapegrad.Function: format version 2, this tapegrad reads version 1"):
        lazy.compute()


def test_killed_worker_is_retried(client, tmp_path):
    """Kill a worker process while it replays: dask reruns its lost and in-flight tasks
    (on the other worker or the restarted one) and the answer is unchanged."""
    F = tg.trace(rosen, np.zeros(2))
    X = da.random.default_rng(6).uniform(-2, 2, size=(64_000, 2), chunks=(4_000, 2))
    want = F.value_and_grad(X.compute())
    X = X.persist()  # half of it lives on the worker we kill: regenerated from the graph
    distributed.wait(X)
    name = f"tapegrad-test-go-{os.getpid()}"
    go = distributed.Event(name, client=client)
    go.clear()
    # Chunks 8..15 pass a gate: each says so in a file, then waits for the event; chunks
    # 0..7 replay at once. The kill comes when both workers are inside the graph.
    gated = X.map_blocks(_gate, str(tmp_path), name, 8, dtype=X.dtype)
    values, grads = tgd.value_and_grad(F, gated)
    futures = client.compute([values, grads])
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 30
    while len({p.name.split("-")[0] for p in tmp_path.iterdir()}) < 2:  # both workers gated
        assert time.monotonic() < deadline, "the workers never reached the gate"
        time.sleep(0.02)
    victim = next(iter(pids))
    os.kill(pids[victim], signal.SIGKILL)
    go.set()
    got = client.gather(futures)
    assert_bits(got[0], want[0])
    assert_bits(got[1], want[1])
    client.wait_for_workers(2, timeout=30)
    assert victim not in client.scheduler_info()["workers"]


def _gate(block, folder, name, first, block_info=None):
    i = block_info[0]["chunk-location"][0]
    if i >= first:
        open(os.path.join(folder, f"{os.getpid()}-{i}"), "w").close()
        distributed.Event(name).wait(timeout=30)
    return block
