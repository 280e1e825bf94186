"""Functional transforms, as in JAX and torch.func: ``grad``, ``value_and_grad``,
``jacobian``, ``hessian``, ``jvp``, ``vjp`` and ``hvp``, plus PyTorch's ``no_grad``.

Each transform takes a Python function of numbers and/or numpy arrays and returns a new
function of the same arguments. They are eager: ``fn`` runs again at every call, so its
Python control flow is re-evaluated each time (for trace-once-replay-many speed, use
``tg.trace(fn, ...)`` and the same methods on the ``Function``).

- ``grad`` / ``value_and_grad`` record ``fn`` on the tape and run ``backward()``.
- ``jacobian``, ``hessian``, ``jvp``, ``vjp`` and ``hvp`` record ``fn`` once at the given
  point and evaluate that recording at the same point (forward mode: a tangent sweep;
  second order: forward-over-reverse, each Hessian-vector product one tangent sweep and
  one reverse sweep on dual numbers).

Like ``torch.func``, the transforms (and ``tg.trace``) record gradients even inside an
outer ``no_grad()``; a ``no_grad()`` inside ``fn`` still applies.

Arguments are numbers or arrays of numbers. Results are floats for scalar arguments and
float64 arrays shaped like the argument otherwise; with a tuple ``argnums``, a tuple with
one entry per listed argument.

Nesting: when an argument holds Vars (an enclosing transform's leaves, or a traced
function's), the transform is recorded instead (tapegrad.autograd, create_graph): ``fn``
runs on those Vars and the results are Vars (object arrays of Vars) whose graphs the
enclosing transform differentiates, so ``grad(grad(f))``, ``grad(hessian(f))``,
``jvp(grad(f))`` and ``tg.trace(grad(f))`` all work.
"""
from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core, autograd
from ._core import Var
from ._switch import ThreadSwitch
from .function import _placeholder, _real_array, _refuse_inside_trace, trace

__all__ = ["grad", "value_and_grad", "jacobian", "hessian", "jvp", "vjp", "hvp", "no_grad",
           "is_grad_enabled"]


def _not_inside_trace(where: str) -> None:
    _refuse_inside_trace(
        f"tg.{where}", f"Take it outside: trace the function and use F.{where}"
        f"(...) on the Function, or call tg.{where}(...) outside tg.trace.")


def _argnums(argnums: int | Sequence[int], n_args: int, where: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, numbers.Integral) else tuple(argnums)
    if not nums or not all(isinstance(k, numbers.Integral) for k in nums):
        raise TypeError(f"{where}: argnums must be an int or a non-empty tuple of ints, got "
                        f"{argnums!r}")
    for k in nums:
        if not -n_args <= k < n_args:
            raise ValueError(f"{where}: argnums {k} is out of range for {n_args} "
                             "positional argument(s)")
    return tuple(int(k) % n_args for k in nums)


def _holds_vars(a: Any) -> bool:
    return isinstance(a, Var) or (isinstance(a, np.ndarray) and a.dtype == object and
                                  any(isinstance(v, Var) for v in a.reshape(-1)))


def _any_vars(args: Sequence[Any], kwargs: dict) -> bool:
    """Whether an enclosing transform's Vars reach fn through any argument, differentiated
    or not: then fn's result depends on them, and the transform must be recorded (so the
    enclosing one differentiates through it) rather than computed as numbers."""
    return any(_holds_vars(a) for a in args) or any(_holds_vars(v) for v in kwargs.values())


def _var_argument(a: Any, k: int, where: str) -> Any:
    """A differentiated argument that holds Vars (an enclosing transform's): a Var, or an
    object array of Vars (numbers in it become constants)."""
    if isinstance(a, Var):
        return a
    if not isinstance(a, np.ndarray) or a.dtype != object:  # numbers: new leaves
        arr = _real_array(a, f"{where}: argument {k}")
        return Var(float(arr)) if arr.shape == () else _placeholder(arr, arr.shape)
    flat = [v if isinstance(v, Var) else Var(float(_real_array(v, f"{where}: argument {k}")))
            for v in a.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def _call_recording(fn: Callable, args: Sequence[Any], kwargs: dict) -> Any:
    """fn(*args, **kwargs) with gradients recorded, as torch.func does: an outer no_grad
    is moot (a no_grad inside fn still applies)."""
    grad_was = _core.set_grad_enabled(True)
    try:
        return fn(*args, **kwargs)
    finally:
        _core.set_grad_enabled(grad_was)


def _scalar_and_aux(out: Any, has_aux: bool) -> tuple[Any, Any]:
    """fn's result as (scalar value, aux): with has_aux, fn returns the pair."""
    aux = None
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("value_and_grad(has_aux=True): fn must return a pair "
                            f"(value, aux), got {type(out).__name__}")
        out, aux = out
    return _scalar_output(out, "value_and_grad"), aux


def _var_output(out: Any, where: str) -> tuple[list, tuple]:
    """fn's value on Vars: its entries, flat (Vars or numbers), and its shape."""
    if isinstance(out, (Var, numbers.Real)) and not isinstance(out, bool):
        return [out], ()
    if isinstance(out, np.ndarray):
        return list(out.reshape(-1)), out.shape
    if isinstance(out, (list, tuple)):
        arr = np.empty(len(out), dtype=object)
        arr[:] = list(out)
        return list(arr), arr.shape
    raise TypeError(f"{where}: fn must return a Var, a number or an array of them, got "
                    f"{type(out).__name__}")


def _shaped(flat: list, shape: tuple) -> Any:
    if shape == ():
        return flat[0]
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)


def _recorded_grads(outs: list, cts: list, inputs: list) -> tuple:
    """sum_k cts[k] d outs[k] / d inputs, recorded; outputs that are numbers give 0."""
    pairs = [(o, c) for o, c in zip(outs, cts) if isinstance(o, Var)]
    if not pairs:
        return tuple(_shaped([Var(0.0)] * max(1, np.size(x)), np.shape(x)) if not
                     isinstance(x, Var) else Var(0.0) for x in inputs)
    return autograd.grad([o for o, _ in pairs], list(inputs),
                         grad_outputs=[c for _, c in pairs], create_graph=True)


def _flat_entries(x: Any) -> list:
    return [x] if isinstance(x, (Var, numbers.Real)) and not isinstance(x, bool) else \
        list(np.asarray(x, dtype=object).reshape(-1))


def _lift(a: Any, k: int, where: str) -> tuple[Any, Any]:
    """A differentiated argument as leaf Vars: (what fn receives, the leaves)."""
    arr = _real_array(a, f"{where}: argument {k}")
    leaves = _placeholder(arr, arr.shape)
    return leaves, leaves


def _grad_of(leaves: Any) -> Any:
    if isinstance(leaves, Var):
        return leaves.grad
    return np.array([v.grad for v in leaves.reshape(-1)], dtype=np.float64).reshape(leaves.shape)


def _scalar_output(out: Any, where: str) -> Any:
    if isinstance(out, Var) or (isinstance(out, numbers.Real) and not isinstance(out, bool)):
        return out
    if isinstance(out, np.ndarray) and out.shape == () and isinstance(out[()], Var):
        return out[()]
    raise TypeError(f"{where}: fn must return a scalar (a Var or a number), got "
                    f"{type(out).__name__}{getattr(out, 'shape', '')}; use tg.jacobian for "
                    "vector outputs")


def value_and_grad(fn: Callable, argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable:
    """``fn``'s value and its gradient with respect to argument(s) ``argnums``.

    With ``has_aux=True``, ``fn`` returns ``(value, aux)`` and the result is
    ``((value, aux), grad)``, as in ``jax.value_and_grad``. The value comes back as a float.

    Examples:
        >>> import tapegrad as tg
        >>> tg.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(3.0, 4.0)
        (12.0, (4.0, 3.0))
        >>> tg.value_and_grad(lambda x: (x * x, "aux"), has_aux=True)(3.0)
        ((9.0, 'aux'), 6.0)
    """
    return _value_and_grad(fn, argnums, has_aux, "value_and_grad")


def _value_and_grad(fn: Callable, argnums: int | Sequence[int], has_aux: bool,
                    where: str) -> Callable:
    if not callable(fn):
        raise TypeError(f"value_and_grad: fn must be callable, got {type(fn).__name__}")

    @functools.wraps(fn)
    def value_and_grad_fn(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args), "value_and_grad")
        if _any_vars(args, kwargs):  # nested, or traced: recorded
            return _nested(fn, args, kwargs, nums)
        _not_inside_trace(where)
        call_args, leaves = list(args), {}
        for k in nums:
            call_args[k], leaves[k] = _lift(args[k], k, "value_and_grad")
        out, aux = _scalar_and_aux(_call_recording(fn, call_args, kwargs), has_aux)
        if isinstance(out, Var):
            out.backward()
        grads = tuple(_grad_of(leaves[k]) for k in nums)
        value = float(out.value if isinstance(out, Var) else out)
        g = grads[0] if isinstance(argnums, numbers.Integral) else grads
        return ((value, aux) if has_aux else value), g

    def _nested(fn: Callable, args: tuple, kwargs: dict, nums: tuple[int, ...]) -> Any:
        """Inside an enclosing transform (the arguments hold its Vars): the value and the
        gradient as Vars whose graphs are recorded (tapegrad.autograd, create_graph), so the
        enclosing transform differentiates through them."""
        call_args = list(args)
        for k in nums:
            call_args[k] = _var_argument(args[k], k, where)
        out, aux = _scalar_and_aux(_call_recording(fn, call_args, kwargs), has_aux)
        grads = _recorded_grads([out], [1.0], [call_args[k] for k in nums])
        g = grads[0] if isinstance(argnums, numbers.Integral) else grads
        return ((out, aux) if has_aux else out), g

    return value_and_grad_fn


def grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar ``fn`` with respect to argument(s) ``argnums`` (``jax.grad``):
    a float for a number, an array shaped like an array argument, a tuple for a tuple
    ``argnums``. With ``has_aux=True`` returns ``(grad, aux)``.

    Examples:
        >>> import tapegrad as tg
        >>> tg.grad(lambda x: x ** 3)(2.0)
        12.0
        >>> tg.grad(tg.grad(lambda x: x ** 3))(2.0)  # transforms nest
        12.0
    """
    vg = _value_and_grad(fn, argnums, has_aux, "grad")

    @functools.wraps(fn)
    def grad_fn(*args: Any, **kwargs: Any) -> Any:
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return grad_fn


def _trace_at(fn: Callable, args: Sequence[Any], kwargs: dict, nums: tuple[int, ...],
              where: str):
    """fn recorded at this point as a Function of the arguments listed in ``nums``."""
    examples = [args[k] for k in nums]
    for k in nums:
        _real_array(args[k], f"{where}: argument {k}")

    def of_differentiated(*diff: Any) -> Any:
        full = list(args)
        for k, d in zip(nums, diff):
            full[k] = d
        return fn(*full, **kwargs)

    functools.update_wrapper(of_differentiated, fn)
    return trace(of_differentiated, *examples), examples


def jacobian(fn: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """d fn / d argument: shape ``out_shape + arg_shape`` (``jax.jacobian``); a tuple per
    argument for a tuple ``argnums``.

    Examples:
        >>> import numpy as np, tapegrad as tg
        >>> tg.jacobian(lambda v: np.array([v[0] * v[1], v[0] + v[1]]))(np.array([3.0, 4.0]))
        array([[4., 3.],
               [1., 1.]])
    """
    @functools.wraps(fn)
    def jacobian_fn(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args), "jacobian")
        if _any_vars(args, kwargs):
            jac = _var_jacobian(fn, args, kwargs, nums)
        else:
            _not_inside_trace("jacobian")
            F, xs = _trace_at(fn, args, kwargs, nums, "jacobian")
            jac = F.jacobian(*xs)
        return (jac,) if not isinstance(argnums, numbers.Integral) and len(nums) == 1 else jac

    return jacobian_fn


def _var_jacobian(fn: Callable, args: tuple, kwargs: dict, nums: tuple[int, ...]) -> Any:
    """jacobian on Vars (inside an enclosing transform): recorded, one sweep per output
    entry; Vars of shape out_shape + arg_shape, a tuple for several argnums."""
    call = list(args)
    for k in nums:
        call[k] = _var_argument(args[k], k, "jacobian")
    outs, out_shape = _var_output(_call_recording(fn, call, kwargs), "jacobian")
    inputs = [call[k] for k in nums]
    rows = [_recorded_grads([o], [1.0], inputs) for o in outs]  # rows[i][j]: d out_i / d x_j
    blocks = []
    for j, x in enumerate(inputs):
        entries = [e for row in rows for e in _flat_entries(row[j])]
        blocks.append(_shaped(entries, tuple(out_shape) + np.shape(x)))
    return blocks[0] if len(nums) == 1 else tuple(blocks)


def hessian(fn: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Hessian of a scalar ``fn``: ``arg_shape + arg_shape`` for one argument, else
    nested tuples of blocks ``H[i][j]``, as ``jax.hessian``. It is symmetric up to
    rounding; each column is one Hessian-vector product (forward-over-reverse).

    Examples:
        >>> import tapegrad as tg
        >>> tg.hessian(lambda x, y: x * x * y, argnums=(0, 1))(3.0, 4.0)
        ((8.0, 6.0), (6.0, 0.0))
    """
    @functools.wraps(fn)
    def hessian_fn(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args), "hessian")
        if _any_vars(args, kwargs):
            # on Vars: blocks H[i][j], the Jacobian in argument j of the (recorded) gradient
            # in argument i
            H = tuple(tuple(jacobian(grad(fn, argnums=i), argnums=j)(*args, **kwargs)
                            for j in nums) for i in nums)
            return H[0][0] if isinstance(argnums, numbers.Integral) else H
        _not_inside_trace("hessian")
        F, xs = _trace_at(fn, args, kwargs, nums, "hessian")
        H = F.hessian(*xs)
        return ((H,),) if not isinstance(argnums, numbers.Integral) and len(nums) == 1 else H

    return hessian_fn


def _as_tuple(xs: Any, what: str) -> tuple:
    if not isinstance(xs, (tuple, list)):
        raise TypeError(f"{what} must be a tuple (one entry per argument of fn), got "
                        f"{type(xs).__name__}")
    return tuple(xs)


def jvp(fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    """``(fn(*primals), J @ tangents)`` in forward mode, as ``jax.jvp``: ``primals`` and
    ``tangents`` are tuples with one entry per argument, each tangent shaped like its
    primal.

    Examples:
        >>> import tapegrad as tg
        >>> tg.jvp(lambda x, y: x * y, (3.0, 4.0), (1.0, 0.0))
        (12.0, 4.0)
    """
    primals, tangents = _as_tuple(primals, "jvp: primals"), _as_tuple(tangents, "jvp: tangents")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    if _any_vars(primals + tangents, {}):
        return _var_jvp(fn, primals, tangents)
    _not_inside_trace("jvp")
    F, xs = _trace_at(fn, primals, {}, tuple(range(len(primals))), "jvp")
    return F.jvp(*xs, tangents)


def _var_jvp(fn: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    """jvp on Vars (inside an enclosing transform), recorded, as two reverse sweeps: the
    pullback of a placeholder cotangent u is linear in u, and its reverse sweep seeded
    with the tangents gives J t."""
    xs = [_var_argument(p, k, "jvp") for k, p in enumerate(primals)]
    outs, out_shape = _var_output(_call_recording(fn, xs, {}), "jvp")
    us = [Var(0.0) for _ in outs]
    pulled = _recorded_grads(outs, us, xs)
    ts = [t for k, t in enumerate(tangents) for t in _flat_entries(
        np.broadcast_to(np.asarray(t, dtype=object), np.shape(xs[k])) if not
        isinstance(t, Var) and np.shape(xs[k]) else t)]
    flat_pulled = [g for p in pulled for g in _flat_entries(p)]
    live = [(g, t) for g, t in zip(flat_pulled, ts) if isinstance(g, Var)]
    tout = autograd.grad([g for g, _ in live], us, grad_outputs=[t for _, t in live],
                         create_graph=True)
    return _shaped(outs, out_shape), _shaped(list(tout), out_shape)


def vjp(fn: Callable, *primals: Any) -> tuple[Any, Callable]:
    """``(fn(*primals), vjp_fn)``, as ``jax.vjp``: ``vjp_fn(cotangent)`` returns a tuple
    with ``cotangent @ J`` for each primal (the cotangent shaped like fn's value).

    Examples:
        >>> import tapegrad as tg
        >>> out, vjp_fn = tg.vjp(lambda x, y: x * y, 3.0, 4.0)
        >>> float(out), vjp_fn(1.0)
        (12.0, (4.0, 3.0))
    """
    if not primals:
        raise TypeError("vjp: needs at least one primal")
    if _any_vars(primals, {}):
        xs_var = [_var_argument(p, k, "vjp") for k, p in enumerate(primals)]
        outs, out_shape = _var_output(_call_recording(fn, xs_var, {}), "vjp")

        def var_vjp_fn(cotangent: Any) -> tuple:
            cts = _flat_entries(np.broadcast_to(np.asarray(cotangent, dtype=object), out_shape)
                                if out_shape else cotangent)
            return _recorded_grads(outs, cts, xs_var)

        return _shaped(outs, out_shape), var_vjp_fn
    _not_inside_trace("vjp")
    F, xs = _trace_at(fn, primals, {}, tuple(range(len(primals))), "vjp")
    value, pullback = F.vjp(*xs)
    if isinstance(value, np.floating):  # a float, as every transform gives a scalar
        value = float(value)

    def vjp_fn(cotangent: Any) -> tuple:
        g = pullback(cotangent)
        return g if len(xs) > 1 else (g,)

    return value, vjp_fn


def hvp(fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]) -> Any:
    """The Hessian of a scalar ``fn`` at ``primals`` times ``tangents`` (JAX's
    ``jvp(grad(f), primals, tangents)[1]``), by forward-over-reverse at a few gradients'
    cost, without forming the Hessian. Shaped like the gradient: one array for one
    primal, a tuple for several.

    Examples:
        >>> import tapegrad as tg
        >>> tg.hvp(lambda x, y: x * x * y, (3.0, 4.0), (1.0, 0.0))
        (8.0, 6.0)
    """
    primals, tangents = _as_tuple(primals, "hvp: primals"), _as_tuple(tangents, "hvp: tangents")
    if len(primals) != len(tangents):
        raise ValueError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    if _any_vars(primals + tangents, {}):
        # on Vars: the jvp of the (recorded) gradient, as JAX's jvp(grad(f))
        g = grad(fn, argnums=tuple(range(len(primals))))
        out = _var_jvp(lambda *xs: np.array(
            [e for part in g(*xs) for e in _flat_entries(part)], dtype=object),
            primals, tangents)[1]
        flat = _flat_entries(out)
        parts, at = [], 0
        for p in primals:
            n = max(1, int(np.size(p)))
            parts.append(_shaped(flat[at:at + n], np.shape(p)))
            at += n
        return parts[0] if len(parts) == 1 else tuple(parts)
    _not_inside_trace("hvp")
    F, xs = _trace_at(fn, primals, {}, tuple(range(len(primals))), "hvp")
    return F.hvp(*xs, tangents)


def is_grad_enabled() -> bool:
    """Whether ops on Vars record gradients on this thread (False inside ``no_grad``).

    Examples:
        >>> import tapegrad as tg
        >>> with tg.no_grad():
        ...     tg.is_grad_enabled()
        False
    """
    return _core.is_grad_enabled()


class no_grad(ThreadSwitch):
    """Context manager and decorator, as ``torch.no_grad``: on this thread, ops on Vars
    make constants (their values, no graph, no gradient). While tracing they record a
    ``detach`` node instead, so a replay recomputes the value but passes no gradient.

        with tg.no_grad():
            y = x * 2          # y is a constant: y.backward() leaves x.grad alone

        @tg.no_grad()
        def evaluate(model, x): ...

    Examples:
        >>> import tapegrad as tg
        >>> x = tg.Var(2.0)
        >>> with tg.no_grad():
        ...     y = x * 3
        >>> y.op, y.value  # a constant: no graph to differentiate
        ('const', 6.0)
    """

    _set = staticmethod(_core.set_grad_enabled)
    _value = False
