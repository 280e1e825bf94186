"""Trace once, replay many: ``tg.trace(fn, *examples)`` -> ``tg.Function``.

A Function is ``fn`` recorded once on placeholder leaves, compiled into a frozen program
(constant folding, common-subexpression elimination, dead-code elimination) and replayed
in C++ at new inputs: one point at a time, or many points at once from numpy arrays
(leading dimensions are batch dimensions, broadcast across arguments as numpy does),
split across threads with the GIL released.

Python control flow that depends on a traced value is never silently wrong: every
truth value or number taken from a Var while tracing (``if x > 0``, ``bool(v)``,
``float(v)``, ...) is kept as a guard and re-checked on replay; an input that would take
another branch raises ``TraceError`` naming the file:line of the comparison, or, with
``retrace=True``, is evaluated by re-tracing ``fn`` at that input. While tracing, a
comparison (``x > 0``) is a ``tg.Condition``, the comparison's node, and its guard is
recorded only when Python asks for its truth value: ``tg.where(x > 0, a, b)`` (and
``&``, ``|``, ``~`` of conditions) records a branch-free select instead.
"""
from __future__ import annotations

import enum
import functools
import itertools
import linecache
import math
import numbers
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core
from ._core import Var

PICKLE_VERSION = 1


class Mode(enum.IntEnum):
    """What a replay computes. The first three are also _core.Program.point's modes."""

    VALUE = 0     # the outputs
    GRAD = 1      # and the gradient of the (scalar) output
    JACOBIAN = 2  # and d outputs / d inputs, one reverse sweep per output
    JVP = 3       # outputs and their tangents along given input tangents
    VJP = 4       # cotangent · Jacobian
    HVP = 5       # Hessian of the scalar output times a vector
    HESSIAN = 6   # the whole Hessian of the scalar output


class TraceError(RuntimeError):
    """A replayed input takes another branch than the one recorded when tracing, or a
    traced function takes a derivative that the trace cannot record.

    Examples:
        >>> import tapegrad as tg
        >>> F = tg.trace(lambda x: x if x > 0 else -x, 1.0)  # `if` on a Var: a guard
        >>> F(-1.0)
        Traceback (most recent call last):
            ...
        tapegrad.function.TraceError: this input takes another branch than the one traced: ...
    """


_core._set_trace_error(TraceError)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_line() -> str:
    """file:line of the innermost caller outside tapegrad."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "<unknown>"


def _refuse_inside_trace(what: str, instead: str) -> None:
    """Raise TraceError if a trace records on this thread: a derivative taken inside the
    traced function would be a number to the trace, replayed frozen at the traced point."""
    if _core.is_tracing():
        raise TraceError(f"{what} inside a traced function (at {_user_line()}): a trace does "
                         "not record derivatives taken inside it, so a replay would return "
                         f"this one frozen at the traced point. {instead}")


def _location(where: str) -> str:
    file, _, line = where.rpartition(":")
    source = linecache.getline(file, int(line)).strip() if line.isdigit() else ""
    return f"{where}: {source}" if source else where


def _default_threads() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_MAX_THREADS = 2**31 - 1  # the C++ side takes an int; a batch never uses more than its blocks


def _declined(*args: Any, **kwargs: Any) -> None:
    """What a fast path calls when it declines a call: None, for the caller's general path."""
    return None


def _threads(threads: Any, where: str = "threads") -> int:
    """``threads=`` as the replay takes it: None is every core this process may use; an int
    >= 1 is that many threads at most (a batch uses no more threads than it has blocks)."""
    if threads is None:
        return _default_threads()
    if type(threads) is int and threads >= 1:  # the common case, before the ABC checks
        return min(threads, _MAX_THREADS)
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"{where} must be None (every core) or a positive int, got "
                         f"{threads!r}")
    return min(int(threads), _MAX_THREADS)


def _real_array(a: Any, what: str) -> np.ndarray:
    """``a`` as a float64 array, if it holds only real numbers (no None, str, Var, ...)."""
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as err:  # ragged sequences
        raise TypeError(f"{what}: expected real numbers, got {type(a).__name__}") from err
    if arr.dtype.kind == "O" and all(isinstance(v, numbers.Real) and not isinstance(v, Var)
                                     for v in arr.reshape(-1)):
        arr = arr.astype(np.float64)
    if arr.dtype.kind == "O" and any(isinstance(v, Var) for v in arr.reshape(-1)):
        raise TypeError(f"{what}: expected real numbers, got Vars: a Function replays "
                        "numbers, so Vars would lose their gradients. Differentiate it with "
                        "F.grad / F.jacobian / F.hvp, or call the traced fn itself")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected real numbers, got {type(a).__name__}"
                        + (f" of {arr.dtype}" if isinstance(a, np.ndarray) or arr.ndim else ""))
    return arr.astype(np.float64, copy=False)


def _point_array(a: Any, shape: tuple[int, ...], what: str, role: str) -> np.ndarray:
    """``a`` as a float64 array whose trailing dimensions are ``shape`` (leading ones are
    batch dimensions)."""
    arr = _real_array(a, what)
    nd = len(shape)
    if arr.ndim < nd or arr.shape[arr.ndim - nd:] != shape:
        want = "a scalar" if nd == 0 else f"trailing shape {shape}"
        raise ValueError(f"{what}: expected {want} ({role}), got shape {arr.shape}")
    return arr


def _point_shape(example: Any, k: int) -> tuple[int, ...]:
    if isinstance(example, Var):
        raise TypeError(f"trace: example argument {k} is a Var; pass a number or an array "
                        "of numbers (placeholders are made for you)")
    return _real_array(example, f"trace: example argument {k}").shape


def _placeholder(example: Any, shape: tuple[int, ...]) -> Any:
    """New leaves holding ``example``'s values: a Var for shape (), else an object array of
    Vars of that shape. Tracing, the transforms and the gradient report all make theirs
    here."""
    values = np.asarray(example, dtype=np.float64)
    if shape == ():
        return Var(float(values))
    leaves = np.empty(values.size, dtype=object)
    leaves[:] = _core.leaves(values.reshape(-1).tolist())
    return leaves.reshape(shape)


def _flatten_outputs(out: Any) -> tuple[list[Var], tuple[int, ...]]:
    """fn's result as a flat list of Vars and the shape to give values back in."""
    if isinstance(out, Var):
        return [out], ()
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return [Var(float(out))], ()
    try:
        arr = np.asarray(out, dtype=object)
    except Exception as err:  # pragma: no cover - numpy raises many kinds here
        raise TypeError(f"trace: fn must return a Var or a sequence of Vars, got "
                        f"{type(out).__name__}") from err
    if arr.ndim == 0:
        raise TypeError(f"trace: fn must return a Var or a sequence of Vars, got "
                        f"{type(out).__name__}")
    flat = []
    for v in arr.reshape(-1):
        if isinstance(v, Var):
            flat.append(v)
        elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            flat.append(Var(float(v)))  # a constant output
        else:
            raise TypeError(f"trace: fn returned a {type(v).__name__} among its outputs; "
                            "expected Vars or numbers")
    return flat, arr.shape


def _record(fn: Callable, examples: Sequence[Any], cse: bool) -> tuple[Any, list, tuple]:
    shapes = [_point_shape(e, k) for k, e in enumerate(examples)]
    args = [_placeholder(e, s) for e, s in zip(examples, shapes)]
    inputs = [a for arg in args for a in ([arg] if isinstance(arg, Var) else arg.reshape(-1))]
    recording = _core.Recording()
    recording.start()
    grad_was = _core.set_grad_enabled(True)  # a trace records gradients even under no_grad
    try:
        out = fn(*args)
    finally:
        _core.set_grad_enabled(grad_was)
        recording.stop()
    outputs, out_shape = _flatten_outputs(out)
    program = _core.compile(inputs, outputs, recording, cse)
    return program, shapes, out_shape


class Function:
    """A traced function: values, gradients and Jacobians at new inputs, in C++.

    Made by ``tapegrad.trace``. Immutable and safe to call from many threads at once.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> F = tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0)
        >>> F
        <tapegrad.Function <lambda>(scalar, scalar) -> scalar: 5 nodes, 3 ops, 0 guards>
        >>> float(F(3.0, 4.0)), F(np.array([1.0, 2.0]), 4.0)  # one point, or a batch
        (21.0, array([ 5., 12.]))
    """

    def __init__(self, fn: Callable | None, programs: list, arg_shapes: list,
                 out_shape: tuple, retrace: bool, cse: bool):
        self._fn = fn
        self._programs = programs  # the first trace, then any retraces (retrace=True)
        self._arg_shapes = [tuple(s) for s in arg_shapes]
        self._out_shape = tuple(out_shape)
        self._retrace = retrace
        self._cse = cse
        self._sizes = [math.prod(s) for s in self._arg_shapes]
        self._offsets = list(itertools.accumulate(self._sizes, initial=0))
        self._n_out = math.prod(self._out_shape)
        for program in programs:
            program.set_signature(self._arg_shapes, self._out_shape)
        # One point at exactly the traced shapes, or a plain batch, never leaves C++ (None:
        # the general path). A gradient of a non-scalar fn takes the general path, which
        # explains (mode -1 declines).
        self._colorings: dict = {}  # sparse.py's patterns and colorings, per program
        self._fast = programs[0].call
        self._grad_mode = 1 if self._n_out == 1 else -1
        # F.grad(...) and F.value_and_grad(...) without keywords: C callables that run the
        # fast path with no Python frame at all, and call the methods below otherwise.
        self.grad = _core.fast_method(programs[0], 2 if self._n_out == 1 else -1,
                                      functools.partial(Function.grad, self))
        self.value_and_grad = _core.fast_method(programs[0], self._grad_mode,
                                                functools.partial(Function.value_and_grad, self))
        # F(...) is looked up on the class, so __call__ stays a method; without keywords
        # it runs the same C callable, which returns None (_declined) where it cannot.
        self._value = _core.fast_method(programs[0], 0, _declined)
        self._native: Any = None  # native.NativeCode once compile() built programs[0]'s

    # -- insight ------------------------------------------------------------------------

    @property
    def arg_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Each argument's point shape, as traced (``()`` for a number).

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> tg.trace(lambda x, v: x * v[0], 1.0, np.zeros(3)).arg_shapes
            ((), (3,))
        """
        return tuple(self._arg_shapes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape of one point's value: ``()`` for a scalar function.

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> tg.trace(lambda v: v * 2.0, np.zeros(3)).out_shape
            (3,)
        """
        return self._out_shape

    @property
    def fn(self) -> Callable | None:
        """The traced Python function (None for an unpickled Function traced without
        ``retrace``, which needs only its programs)."""
        return self._fn

    @property
    def n_nodes(self) -> int:
        """Nodes of the (first) compiled program: inputs, constants and ops.

        Examples:
            >>> import tapegrad as tg
            >>> tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0).n_nodes  # 2 inputs, 3 ops
            5
        """
        return self._programs[0].n_nodes

    @property
    def n_ops(self) -> int:
        """Ops of the (first) compiled program, after dead code, folding and CSE.

        Examples:
            >>> import tapegrad as tg
            >>> tg.trace(lambda x: x * x + x * x, 3.0).n_ops  # x * x computed once (CSE)
            2
        """
        return self._programs[0].n_ops

    @property
    def n_guards(self) -> int:
        """Guards of the (first) compiled program: truth values and values taken from Vars
        while tracing, each checked at replay.

        Examples:
            >>> import tapegrad as tg
            >>> tg.trace(lambda x: x if x > 0 else -x, 1.0).n_guards  # the `if`
            1
            >>> tg.trace(lambda x: tg.where(x > 0, x, -x), 1.0).n_guards
            0
        """
        return self._programs[0].n_guards

    def ops_histogram(self) -> dict[str, int]:
        """How many instructions of each op the compiled program runs.

        Examples:
            >>> import tapegrad as tg
            >>> tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0).ops_histogram()
            {'add': 1, 'mul': 2}
        """
        return dict(self._programs[0].histogram())

    def __repr__(self) -> str:
        name = getattr(self._fn, "__name__", "fn")
        args = ", ".join("scalar" if s == () else "x".join(map(str, s)) for s in self._arg_shapes)
        out = "scalar" if self._out_shape == () else "x".join(map(str, self._out_shape))
        native = ""
        if self._native is not None:
            n = self._native
            sums = ", sums reassociated" if n.reassociate else ""
            batches = ("; native: batched value, grad, value_and_grad" if n.batch_library
                       else f"; batches interpreted ({n.batch_note})")
            native = (f"; native: one point's value, grad, value_and_grad, jacobian "
                      f"({n.loops} loops{sums}){batches}; interpreted: jvp, vjp, hvp, "
                      "hessian, sparse, retraced branches")
        return (f"<tapegrad.Function {name}({args}) -> {out}: {self.n_nodes} nodes, "
                f"{self.n_ops} ops, {self.n_guards} guards{native}>")

    # -- native code --------------------------------------------------------------------

    def compile(self, *, fallback: bool = False, reassociate: bool = False,
                batch: bool = True) -> Function:
        """A new Function whose one-point calls run native code generated for this
        program; this Function is left as it is (like ``jax.jit(f)`` or
        ``torch.compile(f)``, which return a compiled callable).

        The program's forward and reverse sweeps are written out as C++ (loops for the
        runs ``structure()`` finds, the op table's kernels for every op), built with the
        system's C++ compiler (``$TAPEGRAD_CXX``, ``$CXX``, or c++/g++/clang++ on PATH)
        and cached on disk (``$TAPEGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/tapegrad`` or
        ``~/.cache/tapegrad``), so a second compile of the same program only loads it.
        Values and gradients are bit for bit the interpreter's, and guards are checked
        as before.

        Native: ``F(x)``, ``F.grad``, ``F.value_and_grad`` and ``F.jacobian`` at one
        point, and ``F(X)``, ``F.grad`` and ``F.value_and_grad`` on batches (any
        ``threads=``): the batch code runs each point's forward and reverse in one SIMD
        loop over the points, with the lanes' vector math, so its results are the
        interpreted batch's bit for bit. A program gets no batch code, and its batches
        stay interpreted, when it has more than 1000 ops, when the compiler is not GCC,
        or when GCC does not vectorise the loop (ops such as ``lgamma`` or ``fmod``);
        ``repr(F)`` and ``native.batch_note`` say why. ``batch=False`` builds no batch
        code: its compile (GCC at -O3, about 0.7-1 s for a small program, overlapped
        with the one-point code's 0.1 s) is then saved. Interpreted (as before): ``jvp``,
        ``vjp``, ``hvp``, ``hessian``, sparse derivatives, a batch of one point, and
        programs added by ``retrace=True``.

        ``fallback``: without a working compiler, raise ``tg.CompileError`` (False, the
        default) or warn (``tg.CompileWarning``) and return this Function, interpreted
        (True). See ``native`` for what was built.

        ``reassociate=True`` (a library of its own in the cache) lets a loop add up a sum
        in another order: a running sum ``s = s + t`` (or ``s - t``) over a loop's n
        iterations whose running values nothing reads is added as 8 partial sums (term i
        into sum i mod 8, the first starting from the value carried in), combined
        pairwise: ``((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))``. Each term then
        goes through at most ceil(n/8) + 3 roundings instead of up to n, so the sum's
        error is at most ``gamma(ceil(n/8) + 3) * sum(|t|)`` with ``gamma(m) = m*u/(1 -
        m*u)``, ``u = 2**-53`` (one more rounding for each term added outside the loop,
        such as its first iteration), against ``gamma(n)`` in order. The order is fixed
        by n, so results are deterministic and the same on every CPU; but they are not
        the interpreter's bit for bit, since a sum's last bits (and whatever is computed
        from it) depend on the order. Nothing else changes: every other op, and every
        adjoint's contributions, are as without it. A sum's adjoint is the same in every
        iteration, so the gradient changes only through values computed from the sum.
        ``G.compile(...)`` on a compiled ``G`` returns ``G`` with the same
        ``reassociate`` and ``batch``, and raises ValueError with others.

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> F = tg.trace(lambda v: (v[1:] - v[:-1] ** 2).sum(), np.zeros(5))
            >>> G = F.compile()
            >>> bool(np.array_equal(G.grad(np.arange(5.0)), F.grad(np.arange(5.0))))
            True
            >>> F.compile(reassociate=True).native.reassociate
            True
        """
        if self._native is not None:
            n = self._native
            if (n.reassociate, n.batch_asked) == (reassociate, batch):
                return self
            raise ValueError(f"compile(reassociate={reassociate}, batch={batch}): this "
                             f"Function is compiled with reassociate={n.reassociate}, "
                             f"batch={n.batch_asked}; compile the interpreted Function it "
                             "came from")
        from . import native as _native
        try:
            program, info = _native.build(self._programs[0], reassociate=reassociate,
                                          batch=batch)
        except _native.CompileError as err:
            if not fallback:
                raise
            import warnings
            warnings.warn(f"{err}; running the interpreter", _native.CompileWarning,
                          stacklevel=2)
            return self
        compiled = Function(self._fn, [program, *self._programs[1:]], self._arg_shapes,
                            self._out_shape, self._retrace, self._cse)
        compiled._native = info
        return compiled

    @property
    def native(self) -> Any:
        """What ``compile()`` built for this Function (a ``tapegrad.native.NativeCode``:
        library and source paths, loops, seconds, whether it came from the cache), or
        None for an interpreted Function."""
        return self._native

    # -- calling ------------------------------------------------------------------------

    # The fast path (_fast: one point, or a plain batch) never leaves C++. It returns None
    # where the general path must run: anomaly mode (which checks results in _checked), a
    # failed guard, anything to convert, broadcast or explain.

    def __call__(self, *args: Any, threads: int | None = None, out: Any = None) -> Any:
        """fn's value(s) at these arguments (leading batch dimensions allowed).

        ``out``: an array to write the values into and return, instead of a new one (numpy's
        ufunc ``out=``): a writable, C-contiguous float64 array of the result's shape that
        overlaps no input."""
        if threads is None and out is None:
            r = self._value(*args)
            return r if r is not None else self._checked(args, self._run(args, Mode.VALUE,
                                                                         None))[0]
        n = 0 if threads is None else _threads(threads)
        if out is not None:
            r = self._fast(args, 0, n, out)
            return r if r is not None else self._into(args, Mode.VALUE, threads, out, "out")
        r = self._fast(args, 0, n)
        return r if r is not None else self._checked(args, self._run(args, Mode.VALUE, threads))[0]

    def value_and_grad(self, *args: Any, threads: int | None = None,
                       out: Any = None) -> tuple[Any, Any]:
        """(value, gradient) of a scalar fn; the gradient as in ``grad``.
        ``out``: a pair (values array or None, gradient array or tuple of them) to fill and
        return.

        Examples:
            >>> import tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0)
            >>> value, (dx, dy) = F.value_and_grad(3.0, 4.0)
            >>> float(value), float(dx), float(dy)
            (21.0, 10.0, 3.0)
        """
        n = 0 if threads is None else _threads(threads)
        if out is not None:
            r = self._fast(args, self._grad_mode, n, out)
            return r if r is not None else self._into(args, Mode.GRAD, threads, out, "out")
        r = self._fast(args, self._grad_mode, n)
        return r if r is not None else self._checked(args, self._run(args, Mode.GRAD, threads),
                                                     True)

    def grad(self, *args: Any, threads: int | None = None, out: Any = None) -> Any:
        """Gradient of a scalar fn with respect to every argument, each shaped like its
        argument (a tuple for several arguments, like ``jax.grad(fn, argnums=(0, ...))``).
        ``out``: the gradient array (a tuple of them for several arguments) to fill and
        return.

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x + x * y, 3.0, 4.0)
            >>> dx, dy = F.grad(np.array([1.0, 3.0]), 4.0)  # a batch of two points
            >>> dx, dy
            (array([ 6., 10.]), array([1., 3.]))
        """
        n = 0 if threads is None else _threads(threads)
        if out is not None:
            r = self._fast(args, self._grad_mode, n, (None, out))
            return (r if r is not None else
                    self._into(args, Mode.GRAD, threads, (None, out), "out"))[1]
        r = self._fast(args, self._grad_mode, n)
        return r[1] if r is not None else self._checked(args, self._run(args, Mode.GRAD, threads),
                                                        True)[1]

    def _into(self, args: Sequence[Any], mode: Mode, threads: int | None, out: Any,
              what: str) -> Any:
        """A call that writes its results into the caller's arrays (``out=``), so a loop can
        reuse its buffers. Each must be a writable, C-contiguous float64 numpy array of
        exactly the result's shape (batch + out_shape for values, batch + the argument's
        shape for each gradient) that overlaps neither an input nor another output. For
        value_and_grad, ``out`` is a pair whose first item may be None (values not kept)."""
        if mode == Mode.GRAD and self._n_out != 1:
            raise ValueError("grad/value_and_grad need a scalar function; use jacobian()")
        n_threads = _threads(threads)
        arrays, batch = self._arrays(args)
        value_shape = batch + self._out_shape
        grad_shapes = [batch + s for s in self._arg_shapes]
        inputs = [a for a in args if isinstance(a, np.ndarray)]
        if mode == Mode.VALUE:
            value_out, grad_outs = out, None
        else:
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError(f"{what}: value_and_grad takes a pair (values array or None, "
                                f"gradient array{' tuple' if len(grad_shapes) > 1 else ''}), "
                                f"got {type(out).__name__}")
            value_out, grad_outs = out
            if len(grad_shapes) == 1:
                grad_outs = (grad_outs,)
            elif not isinstance(grad_outs, tuple) or len(grad_outs) != len(grad_shapes):
                raise TypeError(f"{what}: the gradient needs a tuple of {len(grad_shapes)} "
                                "arrays, one per argument")
        checked: list[np.ndarray] = []

        def check(a: Any, shape: tuple, name: str) -> np.ndarray:
            if not isinstance(a, np.ndarray) or a.dtype != np.float64:
                got = f"ndarray of {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise TypeError(f"{name} must be a float64 numpy array, got {got}")
            if a.shape != shape:
                raise ValueError(f"{name} has shape {a.shape}; this call's result has shape "
                                 f"{shape}")
            if not (a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
                raise ValueError(f"{name} must be writable, aligned and C-contiguous "
                                 "(np.empty(shape) is)")
            for b in inputs + checked:
                if np.may_share_memory(a, b):
                    raise ValueError(f"{name} overlaps an input or another output; give it "
                                     "memory of its own")
            checked.append(a)
            return a

        value = None if value_out is None else check(value_out, value_shape,
                                                     f"{what} (values)" if mode else what)
        grads = None if grad_outs is None else [
            check(g, s, f"{what} (gradient" + (f" of argument {k})" if len(grad_shapes) > 1
                                                else ")"))
            for k, (g, s) in enumerate(zip(grad_outs, grad_shapes))]
        if batch == ():
            v, g = self._checked(args, self._point(arrays, mode), mode != Mode.VALUE)
            if value is not None:
                value[...] = v
            if grads is not None:
                for dst, src in zip(grads, (g,) if len(grads) == 1 else g):
                    dst[...] = src
        else:
            self._checked(args, self._batch(arrays, batch, mode, n_threads, value, grads),
                          mode != Mode.VALUE)
        if mode == Mode.VALUE:
            return value
        return value, None if grads is None else grads[0] if len(grads) == 1 else tuple(grads)

    def jacobian(self, *args: Any, threads: int | None = None, sparse: bool = False,
                 wrt: Any = None) -> Any:
        """d outputs / d argument, per argument: shape batch + out_shape + arg_shape
        (one reverse sweep per output).

        ``sparse=True``: at one point, a ``scipy.sparse.csr_matrix`` of shape (outputs,
        inputs), outputs and arguments flattened (arguments concatenated in order, or
        only those listed in ``wrt``, an argument index or a tuple of them), holding
        every structural nonzero of ``jacobian_sparsity``; one tangent or adjoint sweep
        per color (``coloring("jacobian")``), not one per output.

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> G = tg.trace(lambda v: np.array([v[0] * v[1], v[0] + v[1]]), np.zeros(2))
            >>> G.jacobian(np.array([3.0, 4.0]))
            array([[4., 3.],
                   [1., 1.]])
            >>> R = tg.trace(lambda u: u[1:] - u[:-1] ** 2, np.zeros(4))
            >>> R.jacobian(np.array([1.0, 2.0, 3.0, 4.0]), sparse=True).toarray()
            array([[-2.,  1.,  0.,  0.],
                   [ 0., -4.,  1.,  0.],
                   [ 0.,  0., -6.,  1.]])
        """
        if sparse:
            from . import sparse as _sparse
            return _sparse.evaluate(self, args, "jacobian", wrt)
        if wrt is not None:
            raise TypeError("jacobian: wrt= is for sparse=True; the dense Jacobian has one "
                            "block per argument")
        return self._checked(args, self._run(args, Mode.JACOBIAN, threads), True)[1]

    # -- sparse derivatives (sparse.py) -------------------------------------------------

    def jacobian_sparsity(self, wrt: Any = None) -> Any:
        """Which entries of the Jacobian can be nonzero, read off the program without
        evaluating it: a boolean ``scipy.sparse.csr_matrix`` (outputs x inputs, flattened
        as in ``jacobian(sparse=True)``). Exact for the traced branch: an entry is set
        when the output depends on the input through ops whose derivative is not
        identically zero (``floor``, comparisons, ``where``'s condition and ``detach``
        pass nothing; both sides of a ``where`` count).

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> R = tg.trace(lambda u: u[1:] - u[:-1] ** 2, np.zeros(4))
            >>> R.jacobian_sparsity().toarray().astype(int)
            array([[1, 1, 0, 0],
                   [0, 1, 1, 0],
                   [0, 0, 1, 1]])
        """
        from . import sparse as _sparse
        return _sparse.pattern(self, self._programs[0], "jacobian", wrt)[0]

    def hessian_sparsity(self, wrt: Any = None) -> Any:
        """The Hessian's pattern for a scalar F, symmetric, read off the program: for
        every op the gradient's sweep reaches whose local rule is not linear in some pair
        of its arguments, the pairs of inputs those arguments depend on. A boolean
        ``scipy.sparse.csr_matrix`` (inputs x inputs, or the inputs of ``wrt``).

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> F = tg.trace(lambda x: x[0] * x[1] + tg.sin(x[2]) + x[3], np.zeros(4))
            >>> F.hessian_sparsity().toarray().astype(int)
            array([[0, 1, 0, 0],
                   [1, 0, 0, 0],
                   [0, 0, 1, 0],
                   [0, 0, 0, 0]])
        """
        from . import sparse as _sparse
        return _sparse.pattern(self, self._programs[0], "hessian", wrt)[0]

    def coloring(self, kind: str = "jacobian", wrt: Any = None) -> Any:
        """How ``jacobian(sparse=True)`` or ``hessian(sparse=True)`` compresses this
        (first) program's derivative: a ``tapegrad.sparse.Coloring`` with the pattern,
        the mode (forward, reverse or star), the colors and the seconds the pattern and
        the coloring took. Computed once and cached.

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> R = tg.trace(lambda u: u[1:] - u[:-1] ** 2, np.zeros(100))
            >>> c = R.coloring("jacobian")
            >>> c.mode, c.n_colors  # two tangent sweeps for the 99 x 100 Jacobian
            ('forward', 2)
        """
        from . import sparse as _sparse
        return _sparse.coloring(self, self._programs[0], kind, wrt)

    def structure(self, min_count: int = 3) -> Any:
        """The loops in the (first) compiled program: runs of at least ``min_count``
        isomorphic blocks of ops, as a ``tapegrad.structure.Structure`` (see that module
        for what a run is).

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> def f(x):
            ...     s = 0.0
            ...     for i in range(len(x) - 1):
            ...         s = s + (x[i + 1] - x[i]) ** 2
            ...     return s
            >>> F = tg.trace(f, np.zeros(50))
            >>> F.structure()
            <Structure: 1 run cover 100.0% of 147 ops; largest 49 x 3 ops>
            >>> F.structure()[0].ops, F.structure()[0].kinds(0)
            (('sub', 'square', 'add'), ('strided', 'strided'))
        """
        from . import structure as _structure
        return _structure.find(self._programs[0], min_count)

    def _checked(self, args: Sequence[Any], result: Any, backward: bool = False) -> Any:
        """In anomaly mode (tg.detect_anomaly), a result holding NaN or inf is traced back
        to its node and line by running fn eagerly, with detection on, at the first bad
        point; the AnomalyError names that point."""
        if not _core.is_anomaly_enabled():
            return result
        from .anomaly import AnomalyError

        def leaves(r: Any) -> list:
            return [a for x in r for a in leaves(x)] if isinstance(r, (tuple, list)) else \
                [] if r is None else [np.asarray(r, dtype=np.float64)]

        arrays, batch = self._arrays(args)
        nb = len(batch)
        bad = [np.flatnonzero(~np.isfinite(a).reshape(
            (int(np.prod(batch, dtype=np.int64)), -1)).all(axis=1)) for a in leaves(result)]
        bad = [int(b[0]) for b in bad if len(b)]
        if not bad:
            return result
        p = min(bad)
        index = np.unravel_index(p, batch) if batch else ()
        point = [np.broadcast_to(a, batch + s)[index] if nb else a
                 for a, s in zip(arrays, self._arg_shapes)]
        where = f" at batch point {tuple(int(i) for i in index)}" if batch else ""
        if self._fn is not None:
            examples = [float(x) if np.ndim(x) == 0 else np.asarray(x) for x in point]
            holders = [_placeholder(x, np.shape(x)) for x in examples]
            try:
                out = self._fn(*holders)
                if backward:  # each output's sweep, as a Jacobian or a vjp would run
                    for output in _flatten_outputs(out)[0]:
                        output.backward()
            except AnomalyError as err:
                err.args = (f"in a replay of {getattr(self._fn, '__name__', 'fn')}{where}: "
                            f"{err.args[0]}",)
                raise
        raise AnomalyError(f"a replay{where} produced a NaN or an infinity "
                           "(re-running the traced function eagerly did not reproduce it)",
                           kind="replay")

    # -- forward mode and second order ---------------------------------------------------

    def jvp(self, *args: Any, threads: int | None = None) -> tuple[Any, Any]:
        """``F.jvp(*args, tangents)``: (value, J·tangents), the directional derivative of
        every output (forward mode: one tangent sweep). ``tangents`` holds one array per
        argument, shaped like it (a bare array for a one-argument F); batch dimensions
        broadcast with the arguments'.

        Examples:
            >>> import tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x * y, 3.0, 4.0)
            >>> F.jvp(3.0, 4.0, (1.0, 0.0))  # (value, d/dx)
            (36.0, 24.0)
        """
        args, tangents = self._split_last(args, "jvp", "tangents")
        return self._checked(args, self._second(args, tangents, None, Mode.JVP, threads))

    def hvp(self, *args: Any, threads: int | None = None) -> Any:
        """``F.hvp(*args, v)``: the Hessian of a scalar F times ``v`` (forward-over-reverse:
        one tangent sweep and one reverse sweep on dual numbers, a few gradients' cost),
        shaped like ``grad``'s result; ``v`` as ``tangents`` in ``jvp``.

        Examples:
            >>> import tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x * y, 3.0, 4.0)
            >>> F.hvp(3.0, 4.0, (1.0, 0.0))  # the first column of the Hessian
            (8.0, 6.0)
        """
        args, v = self._split_last(args, "hvp", "v")
        return self._checked(args, self._second(args, v, None, Mode.HVP, threads), True)

    def hessian(self, *args: Any, threads: int | None = None, sparse: bool = False,
                wrt: Any = None) -> Any:
        """The Hessian of a scalar F: batch + arg_shape + arg_shape for a one-argument F,
        else a nested tuple of blocks ``H[i][j]`` (batch + shape_i + shape_j), as
        ``jax.hessian(f, argnums=(0, 1, ...))``. One Hessian-vector product per input.

        ``sparse=True``: at one point, a symmetric ``scipy.sparse.csr_matrix`` (inputs x
        inputs, flattened as in ``jacobian(sparse=True)``; ``wrt`` selects arguments)
        with every structural nonzero of ``hessian_sparsity``, from one Hessian-vector
        product per color of a star coloring (``coloring("hessian")``): a banded Hessian
        costs about its bandwidth in products, whatever its size. The second call records
        those products as a program of their own, which later calls replay (docs/sparse.md).

        Examples:
            >>> import numpy as np, tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x * y, 3.0, 4.0)
            >>> F.hessian(3.0, 4.0)
            ((8.0, 6.0), (6.0, 0.0))
            >>> F.hessian(3.0, 4.0, sparse=True).toarray()
            array([[8., 6.],
                   [6., 0.]])
        """
        if sparse:
            from . import sparse as _sparse
            return _sparse.evaluate(self, args, "hessian", wrt)
        if wrt is not None:
            raise TypeError("hessian: wrt= is for sparse=True; the dense Hessian has one "
                            "block per pair of arguments")
        return self._checked(args, self._second(args, None, None, Mode.HESSIAN, threads), True)

    def vjp(self, *args: Any, threads: int | None = None) -> tuple[Any, Callable]:
        """(value, vjp_fn): ``vjp_fn(cotangent)`` gives cotangent·J, shaped like
        ``grad``'s result; ``cotangent`` is shaped like the value (batch dims
        broadcast), as ``jax.vjp``.

        Examples:
            >>> import tapegrad as tg
            >>> F = tg.trace(lambda x, y: x * x * y, 3.0, 4.0)
            >>> value, vjp_fn = F.vjp(3.0, 4.0)
            >>> float(value), vjp_fn(2.0)
            (36.0, (48.0, 18.0))
        """
        value = self(*args, threads=threads)  # validates args

        def vjp_fn(cotangent: Any) -> Any:
            return self._checked(args, self._second(args, None, cotangent, Mode.VJP, threads), True)

        return value, vjp_fn

    def _split_last(self, args: tuple, method: str, name: str) -> tuple[tuple, Any]:
        n = len(self._arg_shapes)
        if len(args) != n + 1:
            raise TypeError(f"{method} takes the Function's {n} argument(s) and then "
                            f"{name}: got {len(args)} positional arguments")
        return args[:n], args[n]

    def _tangent_arrays(self, tangents: Any, name: str) -> list[np.ndarray]:
        n = len(self._arg_shapes)
        if n == 1 and not (isinstance(tangents, tuple) and len(tangents) == 1
                           and np.ndim(tangents[0]) >= len(self._arg_shapes[0])):
            tangents = (tangents,)
        if not isinstance(tangents, (tuple, list)) or len(tangents) != n:
            raise TypeError(f"{name}: expected a tuple of {n} arrays, one per argument")
        return [_point_array(t, shape, f"{name} {k}", "its argument's point shape")
                for k, (t, shape) in enumerate(zip(tangents, self._arg_shapes))]

    def _second(self, args: Sequence[Any], tangents: Any, cotangent: Any, mode: Mode,
                threads: int | None) -> Any:
        """jvp / hvp / hessian / vjp, at one point or a batch, by program.batch."""
        if mode in (Mode.HVP, Mode.HESSIAN) and self._n_out != 1:
            raise ValueError(f"{mode.name.lower()} needs a scalar function; this one returns "
                             f"shape {self._out_shape}")
        arrays, batch = self._arrays(args)
        batches = [batch]
        tan = None
        if tangents is not None:
            tan = self._tangent_arrays(tangents, "tangents" if mode == Mode.JVP else "v")
            batches += [t.shape[:t.ndim - len(s)] for t, s in zip(tan, self._arg_shapes)]
        ct = None
        if cotangent is not None:
            ct = _real_array(cotangent, "cotangent")
            nd = len(self._out_shape)
            if ct.ndim < nd or ct.shape[ct.ndim - nd:] != self._out_shape:
                raise ValueError(f"cotangent: expected trailing shape {self._out_shape} (the "
                                 f"value's), got shape {ct.shape}")
            batches.append(ct.shape[:ct.ndim - nd])
        try:
            batch = np.broadcast_shapes(*batches)
        except ValueError as err:
            raise ValueError(f"batch dimensions do not broadcast: {batches}") from err
        if batch == () and mode in (Mode.JVP, Mode.HVP):
            done = self._point_tangent(arrays, tan, mode)
            if done is not None:
                return done
        n = math.prod(batch)
        threads = _threads(threads)
        cols = self._columns(arrays, self._arg_shapes, batch, n)
        tcols = self._columns(tan, self._arg_shapes, batch, n) if tan is not None else None
        seeds = None
        if ct is not None:
            flat = np.broadcast_to(ct, batch + self._out_shape).reshape(n, self._n_out)
            seeds = [np.require(flat, requirements=("C", "A"))]
        n_in = sum(self._sizes)
        offsets = self._offsets
        out = _core.empty((n, self._n_out))
        kw: dict[str, Any] = {}
        if mode == Mode.JVP:
            tout = _core.empty((n, self._n_out))
            kw = dict(tangents=tcols, tangent_out=tout)
            self._batch_or_repair(cols, out, kw, threads)
            shape = batch + self._out_shape
            return (out.reshape(shape) if shape else float(out[0, 0]),
                    tout.reshape(shape) if shape else float(tout[0, 0]))
        if mode in (Mode.HVP, Mode.VJP):
            res = _core.empty((n, n_in))
            parts = [res[:, offsets[k]:offsets[k + 1]] for k in range(len(self._sizes))]
            kw = (dict(tangents=tcols, hvp=parts) if mode == Mode.HVP
                  else dict(grads=parts, seeds=seeds))
            self._batch_or_repair(cols, out, kw, threads)
            return self._per_arg(res, batch)
        # hessian: in one pass per block, column j the HVP with the j-th unit vector.
        H = _core.empty((n, n_in, n_in))
        self._batch_or_repair(cols, out, dict(hessian=H), threads)
        if len(self._sizes) == 1:
            return H.reshape(batch + self._arg_shapes[0] * 2) if batch or self._arg_shapes[0] \
                else float(H[0, 0, 0])
        blocks = [[H[:, offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]]
                   .reshape(batch + si + sj) for j, sj in enumerate(self._arg_shapes)]
                  for i, si in enumerate(self._arg_shapes)]
        return tuple(tuple(b if b.ndim else float(b) for b in row) for row in blocks)

    def _point_tangent(self, arrays: list, tan: list, mode: Mode) -> Any:
        """jvp / hvp at one point without the batch machinery (the same sweeps as a batch
        of one); None if a guard fails there (the batch path then retraces or raises)."""
        flat = [np.concatenate([a.reshape(-1) for a in arrs]) if len(arrs) != 1
                else arrs[0].reshape(-1) for arrs in (arrays, tan)]
        out, tout, hv, failed = self._programs[0].point_tangent(*flat, mode == Mode.HVP)
        if failed >= 0:
            return None
        if mode == Mode.HVP:
            return self._per_arg(hv.reshape(1, -1), ())
        shape = self._out_shape
        return ((out.reshape(shape), tout.reshape(shape)) if shape
                else (float(out[0]), float(tout[0])))

    def _per_arg(self, res: np.ndarray, batch: tuple) -> Any:
        """(n, n_inputs) rows as one result per argument (batch + its shape; a float for
        a scalar argument at one point), a tuple for several arguments."""
        offsets = self._offsets
        parts = [res[:, offsets[k]:offsets[k + 1]].reshape(batch + s)[()]
                 for k, s in enumerate(self._arg_shapes)]
        parts = [float(p) if isinstance(p, np.floating) else p for p in parts]
        return parts[0] if len(parts) == 1 else tuple(parts)

    def _batch_or_repair(self, cols: list, out: np.ndarray, kw: dict, threads: int) -> None:
        """program.batch over every point; points whose guards fail are re-run one by one
        on a program traced for them (retrace=True), or reported (TraceError). Every
        batched mode goes through here."""
        failed = self._programs[0].batch(cols, out, threads=threads, **kw)
        if not len(failed):
            return
        if not self._retrace:
            self._branch_error(failed, cols, out.shape[0])

        def row(a: Any, p: int) -> Any:
            if isinstance(a, list):
                return [row(c, p) for c in a]
            if not isinstance(a, np.ndarray):
                return a  # seed_output
            return a[p:p + 1] if a.shape[0] > 1 else a

        for p in failed:
            p = int(p)
            x = np.concatenate([c[p if c.shape[0] > 1 else 0] for c in cols])
            self._eval_point(x, Mode.VALUE)  # retraces when no program takes this branch yet
            program = next(q for q in self._programs if q.point(x, Mode.VALUE)[2] < 0)
            program.batch(row(cols, p), out[p:p + 1], threads=1,
                          **{k: row(v, p) for k, v in kw.items()})

    def _branch_error(self, failed: np.ndarray, cols: list, n: int) -> None:
        program = self._programs[0]
        p = int(failed[0])
        x = np.concatenate([c[p if c.shape[0] > 1 else 0] for c in cols])
        _, _, k = program.point(x, Mode.VALUE)
        shown = ", ".join(map(str, failed[:10])) + (", ..." if len(failed) > 10 else "")
        raise TraceError(
            f"{len(failed)} of {n} points take another branch than the one "
            f"traced (flat batch indices {shown}): the comparison at "
            f"{_location(program.guard_location(max(k, 0)))} went the other way. Use "
            "tg.where() for a branch-free select, or trace(..., retrace=True).")

    def _columns(self, arrays: list[np.ndarray], shapes: list, batch: tuple,
                 n: int) -> list[np.ndarray]:
        """Each argument as an (n or 1, size) float64 array, a view where possible."""
        cols = []
        for a, shape in zip(arrays, shapes):
            size = math.prod(shape)
            b = a.shape[:a.ndim - len(shape)]
            if math.prod(b) == 1:
                col = np.ascontiguousarray(a.reshape(1, size))
            elif b == batch:
                col = a.reshape(n, size)  # a view whenever numpy can make one
                if col.strides[0] % 8 or col.strides[1] % 8:
                    col = np.ascontiguousarray(col)
            else:
                col = np.ascontiguousarray(np.broadcast_to(a, batch + shape).reshape(n, size))
            # The replay reads doubles in place: a buffer at an odd address (numpy allows
            # them, e.g. arrays unpickled from a byte stream) is copied first.
            cols.append(col if col.flags.aligned else col.copy())
        return cols

    # -- the machinery ------------------------------------------------------------------

    def _arrays(self, args: Sequence[Any]) -> tuple[list[np.ndarray], tuple[int, ...]]:
        if len(args) != len(self._arg_shapes):
            raise TypeError(f"Function takes {len(self._arg_shapes)} argument(s), got "
                            f"{len(args)}")
        arrays, batches = [], []
        for k, (a, shape) in enumerate(zip(args, self._arg_shapes)):
            arr = _point_array(a, shape, f"argument {k}", "traced point shape")
            arrays.append(arr)
            batches.append(arr.shape[:arr.ndim - len(shape)])
        try:
            batch = np.broadcast_shapes(*batches)
        except ValueError as err:
            raise ValueError(f"batch dimensions do not broadcast: {batches}") from err
        return arrays, batch

    def _run(self, args: Sequence[Any], mode: Mode, threads: int | None) -> tuple[Any, Any]:
        if mode == Mode.GRAD and self._n_out != 1:
            raise ValueError("grad/value_and_grad need a scalar function; use jacobian()")
        threads = _threads(threads)
        arrays, batch = self._arrays(args)
        if batch == ():
            return self._point(arrays, mode)
        return self._batch(arrays, batch, mode, threads)

    def _point(self, arrays: list[np.ndarray], mode: Mode) -> tuple[Any, Any]:
        x = (np.concatenate([a.reshape(-1) for a in arrays]) if len(arrays) != 1
             else arrays[0].reshape(-1))
        out, jac = self._eval_point(x, mode)
        value = out.reshape(self._out_shape) if self._out_shape else out[0]
        if mode == Mode.VALUE:
            return value, None
        jac = jac.reshape((self._n_out if mode == Mode.JACOBIAN else 1, sum(self._sizes)))
        parts = np.split(jac, np.cumsum(self._sizes)[:-1], axis=1)
        if mode == Mode.GRAD:
            grads = [p.reshape(s) if s else p[0, 0] for p, s in zip(parts, self._arg_shapes)]
        else:
            grads = [p.reshape(self._out_shape + s) for p, s in zip(parts, self._arg_shapes)]
        return value, grads[0] if len(grads) == 1 else tuple(grads)

    def _eval_point(self, x: np.ndarray, mode: Mode) -> tuple[np.ndarray, Any]:
        first_failure = None
        for program in self._programs:
            out, jac, failed = program.point(x, mode)
            if failed < 0:
                return out, jac
            if first_failure is None:
                first_failure = (program, failed)
        if self._retrace and self._fn is not None:
            examples = np.split(x, np.cumsum(self._sizes)[:-1])
            examples = [e.reshape(s) if s else float(e[0])
                        for e, s in zip(examples, self._arg_shapes)]
            program, shapes, out_shape = _record(self._fn, examples, self._cse)
            program.set_signature(self._arg_shapes, self._out_shape)
            self._programs.append(program)
            out, jac, failed = program.point(x, mode)
            if failed < 0:
                return out, jac
            first_failure = (program, failed)
        program, k = first_failure
        raise TraceError(
            "this input takes another branch than the one traced: the comparison at "
            f"{_location(program.guard_location(k))} went the other way. Use tg.where() "
            "for a branch-free select, or trace(..., retrace=True) to re-record per branch.")

    def _batch(self, arrays: list[np.ndarray], batch: tuple, mode: Mode, threads: int,
               value_out: np.ndarray | None = None,
               grad_outs: list[np.ndarray] | None = None) -> tuple[Any, Any]:
        """The general batched path. value_out / grad_outs: the caller's C-contiguous
        arrays (out=) to fill instead of new ones."""
        n = int(np.prod(batch, dtype=np.int64))
        cols = self._columns(arrays, self._arg_shapes, batch, n)
        out = (_core.empty((n, self._n_out)) if value_out is None
               else value_out.reshape(n, self._n_out))
        if mode == Mode.VALUE:
            self._batch_or_repair(cols, out, {}, threads)
            return out.reshape(batch + self._out_shape), None
        if mode == Mode.GRAD:
            jac = ([_core.empty((n, size)) for size in self._sizes] if grad_outs is None
                   else [g.reshape(n, size) for g, size in zip(grad_outs, self._sizes)])
            self._batch_or_repair(cols, out, dict(grads=jac), threads)
            grads = [g.reshape(batch + s) for g, s in zip(jac, self._arg_shapes)]
        else:  # one reverse sweep per output, each over the whole batch
            jac = [_core.empty((n, self._n_out, size)) for size in self._sizes]
            if not self._n_out:  # no sweep: the values alone check the guards
                self._batch_or_repair(cols, out, {}, threads)
            for k in range(self._n_out):
                self._batch_or_repair(cols, out, dict(grads=[j[:, k, :] for j in jac],
                                                      seed_output=k), threads)
            grads = [j.reshape(batch + self._out_shape + s) for j, s in zip(jac, self._arg_shapes)]
        value = out.reshape(batch + self._out_shape)
        return value, grads[0] if len(grads) == 1 else tuple(grads)

    # -- pickling -----------------------------------------------------------------------

    def __reduce__(self):
        fn = self._fn if self._retrace else None  # only a retracing Function needs fn
        state = (PICKLE_VERSION, self._programs, self._arg_shapes, self._out_shape,
                 self._retrace, self._cse, fn)
        # A compiled Function pickles its program and compiles again when loaded (from
        # the cache if the library is there); native code does not travel.
        if self._native is None:
            return (_restore, (state,))
        n = self._native
        return (_restore_compiled,
                (state,) if (n.reassociate, n.batch_asked) == (False, True) else
                (state, n.reassociate, n.batch_asked))


def _restore(state: tuple) -> Function:
    if not isinstance(state, tuple) or not state or state[0] != PICKLE_VERSION:
        got = state[0] if isinstance(state, tuple) and state else state
        raise ValueError(f"cannot unpickle tapegrad.Function: format version {got!r}, this "
                         f"tapegrad reads version {PICKLE_VERSION}")
    try:
        _, programs, arg_shapes, out_shape, retrace, cse, fn = state
        programs = list(programs)
        arg_shapes = [tuple(int(d) for d in s) for s in arg_shapes]
        out_shape = tuple(int(d) for d in out_shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot unpickle tapegrad.Function: malformed state ({err})") from err
    if not programs or not all(isinstance(p, _core.Program) for p in programs):
        raise ValueError("cannot unpickle tapegrad.Function: it holds no compiled program")
    return Function(fn, programs, arg_shapes, out_shape, bool(retrace), bool(cse))


def _restore_compiled(state: tuple, reassociate: bool = False, batch: bool = True) -> Function:
    """A compiled Function, unpickled: compiled again (as it was: reassociating sums or
    not, with batch code or not), or interpreted with a CompileWarning where no compiler
    works."""
    return _restore(state).compile(fallback=True, reassociate=bool(reassociate),
                                   batch=bool(batch))


def trace(fn: Callable, *example_args: Any, retrace: bool = False, cse: bool = True) -> Function:
    """Record ``fn`` once at ``example_args`` and return a replayable ``Function``.

    Each example fixes its argument's point shape: a number is a scalar input, an array
    (or sequence) of shape S is an input of shape S, which ``fn`` receives as a numpy
    object array of Vars. ``fn`` returns a Var (scalar function) or a sequence/array of
    Vars (vector function). Vars that ``fn`` closes over are constants of the trace.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> def f(x, y):
        ...     return tg.sin(x * y) + x
        >>> F = tg.trace(f, 0.5, 0.7)  # f runs once, on placeholder leaves
        >>> X = np.linspace(0.0, 1.0, 5)
        >>> np.allclose(F(X, 0.7), np.sin(X * 0.7) + X)  # replayed at 5 points in C++
        True
    """
    if not callable(fn):
        raise TypeError(f"trace: fn must be callable, got {type(fn).__name__}")
    _refuse_inside_trace("tg.trace", "Trace only the outer function: a Function traced "
                         "inside a trace would hold the outer trace's values as constants.")
    program, shapes, out_shape = _record(fn, example_args, cse)
    return Function(fn, [program], shapes, out_shape, retrace, cse)
