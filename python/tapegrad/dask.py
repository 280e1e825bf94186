"""Traced Functions over chunked dask arrays: ``tg.dask.value_and_grad(F, X)`` and friends.

    >>> import dask.array as da, numpy as np, tapegrad as tg
    >>> F = tg.trace(lambda x: (x[0] - 1)**2 + 100*(x[1] - x[0]**2)**2, np.zeros(2))
    >>> X = da.random.random((10**6, 2), chunks=(10**5, 2))
    >>> values, grads = tg.dask.value_and_grad(F, X)   # lazy: (10**6,) and (10**6, 2)
    >>> total, gsum = da.compute(values.sum(), grads.sum(axis=0))

``call`` (``F(...)``), ``value_and_grad``, ``grad`` and ``jacobian`` take
the same arguments as the Function's own methods, each a dask array, a numpy array or a
number. Leading dimensions are batch dimensions, broadcast across arguments as numpy does
(a parameter vector with no batch dimension is shared by every point); the trailing
dimensions of each argument are its traced point shape. Each block of the batch is replayed
by ``F``'s batched C++ replay in one task (``dask.array.apply_gufunc``; chunks along the
batch are aligned for you, point dimensions are merged into one chunk). Results are lazy
float64 dask arrays, chunked like the batch; ``meta`` is a numpy array. The same code runs
on the threaded scheduler, ``scheduler="processes"`` and a ``distributed`` cluster.

How the Function reaches the workers: it is pickled once, on the client, when you build
the graph (so an unpicklable Function fails there, with a message saying why), and enters
the graph as one ``dask.delayed`` key that every block task depends on. Each worker fetches
that key once (the scheduler moves it like any other dependency) and unpickles it once per
process (a small per-process cache keyed by the pickle's hash, which also serves later
graphs that use the same Function). Measured by ``python bench/bench_dask.py --transfer``
(LocalCluster of 2 processes, 100 tasks, an 80001-node Function, 1.4 MB pickled; median
wall time on 2 shared cores):

==================================  ========  ==========================
option                              wall      unpickles of F (2 workers)
==================================  ========  ==========================
embedded in every task              1443 ms   100 (one per task)
``client.scatter(broadcast=True)``   650 ms   2, but needs a Client
``dask.delayed`` single key (used)   657 ms   2
==================================  ========  ==========================

The delayed key was chosen: as cheap as scattering, it needs no ``Client`` (so it works
with any scheduler) and lives as long as the graph. What travels is the pickle's bytes,
unpickled inside a task: when a worker cannot unpickle a Function that was embedded or
scattered, distributed fails in its comm layer instead ("Failed to deserialize", the
worker is removed and its data lost); here it is an ordinary task error.

Bit for bit: a block gives exactly what ``F``'s own batched replay gives for those points
whenever chunk lengths along a 1-D batch are multiples of 8. Otherwise a function with
exp/log/sin/cos/tan/tanh/pow may differ in the last bits, because the replay's SIMD lanes
(glibc libmvec, within 4 ulp of libm) cover other points than in one big call.

What travels is a pickle made with ``cloudpickle``, so a ``retrace=True`` Function whose
``fn`` is a lambda or a closure travels too (plain ``pickle`` refuses those: ``PicklingError``
"Can't pickle <function <lambda>>", or ``AttributeError`` "Can't pickle local object" for
one defined in a function). A ``retrace=False`` Function never carries ``fn``. What still fails
is a ``fn`` that holds something no pickler can carry (a lock, an open file, ...): the
error is raised when the graph is built. A worker whose tapegrad reads another pickle
format version fails its task with a ``RuntimeError`` naming both versions and the worker;
dask does not retry it, and ``.compute()`` raises it.

Threads: dask already runs one task per worker thread, so each task replays with
``threads=1`` by default and dask's processes/threads give the parallelism (the replay
releases the GIL). With one dask thread per worker process you may pass ``threads=k`` to
let each task use k tapegrad threads; don't ask for both, or the cores are oversubscribed.
``python bench/bench_dask.py --threads`` compares the combinations on one worker.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

try:
    import cloudpickle
    import dask
    import dask.array as da
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError("tapegrad.dask needs dask: pip install 'tapegrad[dask]' "
                      f"(original error: {err})") from err

from . import function as _function
from .function import Function, Mode

__all__ = ["call", "grad", "jacobian", "value_and_grad"]

_CACHE_SIZE = 8
_cache: OrderedDict[str, Function] = OrderedDict()  # per process: pickle hash -> Function
_cache_lock = threading.Lock()
_loads = 0  # how many times this process unpickled a Function (bench/test insight)


class _Shipped:
    """A Function as its pickle, so dask moves bytes and the worker unpickles it once.

    Unpickling happens inside a task, so a failure (another tapegrad version) is that
    task's error, reported by ``.compute()``, not a broken data transfer."""

    __slots__ = ("blob", "digest", "function")

    def __init__(self, blob: bytes, digest: str, function: Function | None = None):
        self.blob, self.digest, self.function = blob, digest, function

    @classmethod
    def of(cls, F: Function, where: str) -> _Shipped:
        try:
            blob = cloudpickle.dumps(F, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            hint = (" A retrace=True Function carries fn to the workers: make fn picklable "
                    "(close over no locks, files, ...) or trace with retrace=False."
                    if F._retrace else "")
            raise TypeError(f"{where}: cannot send this Function to dask workers: pickling "
                            f"it failed ({type(err).__name__}: {err}).{hint}") from err
        return cls(blob, hashlib.sha1(blob).hexdigest(), F)

    def __reduce__(self):
        return (_Shipped, (self.blob, self.digest))

    def __dask_tokenize__(self):
        return ("tapegrad.Function", self.digest)

    def load(self) -> Function:
        if self.function is not None:  # same process as the client, or loaded already
            return self.function
        global _loads
        with _cache_lock:
            F = _cache.get(self.digest)
            if F is None:
                try:
                    F = pickle.loads(self.blob)
                except Exception as err:
                    import tapegrad
                    raise RuntimeError(
                        f"tapegrad.dask: worker process {os.getpid()} on "
                        f"{socket.gethostname()} could not load the Function: {err} "
                        f"(worker: tapegrad {tapegrad.__version__}, pickle format "
                        f"{_function.PICKLE_VERSION}). Install the same tapegrad on the "
                        "client and every worker.") from err
                _loads += 1
                _cache[self.digest] = F
                if len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
            else:
                _cache.move_to_end(self.digest)
        self.function = F
        return F


def _block(*blocks: np.ndarray, shipped: _Shipped, mode: Mode, threads: int) -> Any:
    """One task: replay a block of points (numpy arrays) with the shipped Function."""
    F = shipped.load()
    if mode == Mode.VALUE:
        return np.asarray(F(*blocks, threads=threads), dtype=np.float64)
    if mode == Mode.GRAD:
        value, grads = F.value_and_grad(*blocks, threads=threads)
    else:
        value, grads = None, F.jacobian(*blocks, threads=threads)
    grads = grads if isinstance(grads, tuple) else (grads,)
    out = (value, *grads) if mode == Mode.GRAD else grads
    out = tuple(np.asarray(a, dtype=np.float64) for a in out)
    return out if len(out) > 1 else out[0]  # apply_gufunc: a tuple only for several outputs


def _apply(where: str, F: Any, arrays: tuple, mode: Mode, threads: int) -> Any:
    if not isinstance(F, Function):
        raise TypeError(f"{where}: F must be a tapegrad.Function (made by tg.trace), got "
                        f"{type(F).__name__}")
    shapes, out_shape = F.arg_shapes, F.out_shape
    if len(arrays) != len(shapes):
        raise TypeError(f"{where}: the Function takes {len(shapes)} argument(s), got "
                        f"{len(arrays)}")
    if mode == Mode.GRAD and out_shape != ():
        raise ValueError(f"{where}: grad/value_and_grad need a scalar function; use jacobian()")
    threads = _function._threads(threads, f"{where}: threads")

    args, sigs, batches = [], [], []
    for k, (a, shape) in enumerate(zip(arrays, shapes)):
        if not isinstance(a, da.Array):
            a = _function._real_array(a, f"{where}: argument {k}")
        elif a.dtype.kind not in "biuf":
            raise TypeError(f"{where}: argument {k}: expected real numbers, got a dask "
                            f"array of {a.dtype}")
        nd, ndim = len(shape), np.ndim(a)
        if ndim < nd or tuple(a.shape[ndim - nd:]) != shape:
            want = "a scalar" if nd == 0 else f"trailing shape {shape}"
            raise ValueError(f"{where}: argument {k}: expected {want} (traced point shape), "
                             f"got shape {tuple(a.shape)}")
        a = da.asarray(a)
        if nd and a.numblocks[ndim - nd:] != (1,) * nd:  # one point per row of one block
            a = a.rechunk({ax: -1 for ax in range(ndim - nd, ndim)})
        args.append(a)
        batches.append(tuple(a.shape[:ndim - nd]))
        sigs.append("(" + ",".join(f"a{k}_{i}" for i in range(nd)) + ")")
    if not any(np.isnan(d) for b in batches for d in b):
        try:
            np.broadcast_shapes(*batches)
        except ValueError as err:
            raise ValueError(f"{where}: batch dimensions do not broadcast: {batches}") from err
    nbatch = max(len(b) for b in batches)
    # Align the batch chunks across arguments (apply_gufunc wants them equal already).
    if len(args) > 1:
        pairs = []
        for a, b in zip(args, batches):
            pairs += [a, tuple(range(nbatch - len(b), a.ndim - len(b) + nbatch))]
        _, args = da.core.unify_chunks(*pairs)

    out_dims = tuple(f"o{i}" for i in range(len(out_shape)))
    sizes = {f"o{i}": n for i, n in enumerate(out_shape)}
    for k, shape in enumerate(shapes):
        sizes.update({f"a{k}_{i}": n for i, n in enumerate(shape)})
    grad_dims = [tuple(f"a{k}_{i}" for i in range(len(s))) for k, s in enumerate(shapes)]
    if mode == Mode.VALUE:
        outs = [out_dims]
    elif mode == Mode.GRAD:
        outs = [out_dims, *grad_dims]
    else:
        outs = [out_dims + g for g in grad_dims]
    signature = ",".join(sigs) + "->" + ",".join("(" + ",".join(o) + ")" for o in outs)

    carrier = _Shipped.of(F, where)
    shipped = dask.delayed(carrier, name=f"tapegrad-function-{carrier.digest}", traverse=False)
    meta = tuple(np.empty((0,) * (nbatch + len(o))) for o in outs)
    result = da.apply_gufunc(_block, signature, *args, output_sizes=sizes,
                             meta=meta if len(outs) > 1 else meta[0],
                             shipped=shipped, mode=mode, threads=threads)
    if len(outs) == 1:
        return result
    grads = tuple(result[1:]) if mode == Mode.GRAD else tuple(result)
    grads = grads[0] if len(grads) == 1 else grads
    return (result[0], grads) if mode == Mode.GRAD else grads


def call(F: Function, *arrays: Any, threads: int = 1) -> da.Array:
    """``F(*arrays)`` over chunked batches: a lazy dask array of shape batch + F's output
    shape. ``threads``: tapegrad threads per task (see the module docs).

    Examples:
        >>> import dask, dask.array as da, numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, np.zeros(2))
        >>> X = da.ones((1000, 2), chunks=(250, 2))
        >>> values = tg.dask.call(F, X)  # lazy, one task per chunk
        >>> values.shape, float(values.sum().compute())
        ((1000,), 0.0)
    """
    return _apply("tapegrad.dask.call", F, arrays, Mode.VALUE, threads)


def value_and_grad(F: Function, *arrays: Any, threads: int = 1) -> tuple[Any, Any]:
    """Lazy ``F.value_and_grad(*arrays)``: (values shaped like the batch, gradient shaped
    batch + argument shape, a tuple of them for several arguments), from one pass per
    block.

    Examples:
        >>> import dask, dask.array as da, numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, np.zeros(2))
        >>> X = da.ones((1000, 2), chunks=(250, 2))
        >>> values, grads = tg.dask.value_and_grad(F, X)
        >>> total, gsum = dask.compute(values.sum(), grads.sum(axis=0))
        >>> grads.shape, float(total), gsum
        ((1000, 2), 0.0, array([0., 0.]))
    """
    return _apply("tapegrad.dask.value_and_grad", F, arrays, Mode.GRAD, threads)


def grad(F: Function, *arrays: Any, threads: int = 1) -> Any:
    """Lazy ``F.grad(*arrays)``: the gradient part of ``value_and_grad``.

    Examples:
        >>> import dask, dask.array as da, numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, np.zeros(2))
        >>> X = da.ones((1000, 2), chunks=(250, 2))
        >>> tg.dask.grad(F, X).shape
        (1000, 2)
    """
    return _apply("tapegrad.dask.grad", F, arrays, Mode.GRAD, threads)[1]


def jacobian(F: Function, *arrays: Any, threads: int = 1) -> Any:
    """Lazy ``F.jacobian(*arrays)``: per argument, batch + output shape + argument shape.

    Examples:
        >>> import dask, dask.array as da, numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, np.zeros(2))
        >>> X = da.ones((1000, 2), chunks=(250, 2))
        >>> tg.dask.jacobian(F, X).shape  # batch + output shape () + argument shape (2,)
        (1000, 2)
    """
    return _apply("tapegrad.dask.jacobian", F, arrays, Mode.JACOBIAN, threads)
