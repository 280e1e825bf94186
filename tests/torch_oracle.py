"""PyTorch float64 as an oracle, shared by test_torch.py, test_transforms_torch.py and the
traced functions' checks in test_trace_oracles.py: each op's PyTorch counterpart, and
float64 tensors. Import it after `pytest.importorskip("torch")`."""
import numpy as np
import pytest
import torch


def _zero(*ts):
    """0 with a zero gradient to each of ts, also where one is NaN (0 * NaN is NaN)."""
    return sum(0 * t.nan_to_num() for t in ts)


TORCH = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum,
    "neg": torch.neg, "abs": torch.abs, "sqrt": torch.sqrt, "exp": torch.exp,
    "log": torch.log, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "square": torch.square,
    "detach": lambda t: t.detach() + 0 * t,  # x with gradient 0 (torch: no graph at all)
    # comparisons are not differentiable in torch: add 0 * operands to get zero grads
    "lt": lambda x, y: (x < y).double() + 0 * (x + y),
    "le": lambda x, y: (x <= y).double() + 0 * (x + y),
    "gt": lambda x, y: (x > y).double() + 0 * (x + y),
    "ge": lambda x, y: (x >= y).double() + 0 * (x + y),
    # (their conventions include NaN operands, so the zero is NaN-free)
    "eq": lambda x, y: (x == y).double() + _zero(x, y),
    "ne": lambda x, y: (x != y).double() + _zero(x, y),
    "logical_and": lambda x, y: torch.logical_and(x, y).double() + _zero(x, y),
    "logical_or": lambda x, y: torch.logical_or(x, y).double() + _zero(x, y),
    "logical_not": lambda x: torch.logical_not(x).double() + _zero(x),
    "if_true": lambda c, a: torch.where(c != 0, a, torch.zeros_like(a)) + 0 * c,
    "if_false": lambda c, a: torch.where(c != 0, torch.zeros_like(a), a) + 0 * c,
    # ---- exponentials and logs
    "expm1": torch.expm1, "log1p": torch.log1p, "exp2": torch.exp2, "log2": torch.log2,
    "log10": torch.log10, "logaddexp": torch.logaddexp,
    # threshold so large that softplus never switches to x (its default does at x > 20)
    "softplus": lambda x: torch.nn.functional.softplus(x, beta=1.0, threshold=1e308),
    "log_sigmoid": torch.nn.functional.logsigmoid, "xlogy": torch.xlogy,
    # ---- trigonometric and hyperbolic
    "asin": torch.asin, "acos": torch.acos, "atan": torch.atan, "atan2": torch.atan2,
    "sinh": torch.sinh, "cosh": torch.cosh, "asinh": torch.asinh, "acosh": torch.acosh,
    "atanh": torch.atanh, "hypot": torch.hypot,
    # ---- roots and reciprocals. torch has no cbrt: sign(x) |x|^(1/3) has its value and,
    # off 0, its gradient (|x|^(-2/3) / 3); at 0 pow's gradient is inf, as cbrt's.
    "cbrt": lambda x: torch.sign(x) * torch.abs(x).pow(1 / 3),
    "reciprocal": torch.reciprocal,
    # ---- special functions (polygamma's n is an int in torch: 0 * n gives it grad 0)
    "erf": torch.erf, "erfc": torch.erfc, "erfinv": torch.erfinv, "lgamma": torch.lgamma,
    "digamma": torch.digamma,
    "polygamma": lambda n, x: torch.polygamma(int(n.item()), x) + 0 * n,
    # ---- piecewise constant (torch's rules give 0; 0 * x makes floor_divide's a graph)
    "floor": torch.floor, "ceil": torch.ceil, "round": torch.round, "trunc": torch.trunc,
    "sign": torch.sign,
    "floor_divide": lambda x, y: torch.div(x, y, rounding_mode="floor").detach() + 0 * (x + y),
    # ---- piecewise linear
    "fmod": torch.fmod, "remainder": torch.remainder, "copysign": torch.copysign,
    # C's remainder: torch has none; x - y * round(x / y) has its value where x / y is
    # exact, and its gradient (1, -round(x / y)) everywhere
    "ieee_remainder": lambda x, y: x - y * torch.round(x / y).detach(),
    "deg2rad": torch.deg2rad, "rad2deg": torch.rad2deg,
    "clamp_min": torch.clamp_min, "clamp_max": torch.clamp_max,
    "fmax": torch.fmax, "fmin": torch.fmin,
}


# torch's trigamma (polygamma(1, x); digamma's derivative, lgamma's second) is accurate to
# about 2e-10 relative (torch 2.13: polygamma(1, 3.6005827875129786) is 1.5e-10 off mpmath;
# ours is within 16 ulp, tests/test_ops_mpmath.py). Comparisons that meet it use this.
TRIGAMMA_REL = 1e-9
USES_TRIGAMMA = {"polygamma": "value", "digamma": "derivative", "lgamma": "second derivative"}


def torch_rel(op, rel):
    """The relative tolerance for comparing op with torch: rel, or torch's trigamma's."""
    return max(rel, TRIGAMMA_REL) if op in USES_TRIGAMMA else rel


def torch_fn(op):
    """The PyTorch counterpart of an op in the table."""
    if op not in TORCH:
        pytest.fail(f"op {op!r} has no PyTorch counterpart: add it to TORCH in "
                    "tests/torch_oracle.py")
    return TORCH[op]


def leaf(value):
    """A float64 scalar tensor that records its gradient."""
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


def torch_grads(op, args):
    """PyTorch's value and gradient of one op at args."""
    ts = [leaf(a) for a in args]
    out = torch_fn(op)(*ts)
    out.backward()
    return out.item(), [t.grad.item() for t in ts]


def tensor(x):
    """x (a number or an array) as a float64 tensor."""
    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)


def value_and_grad(fn, *args):
    """PyTorch's value of fn at args and its gradient with respect to each argument."""
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in args]
    out = fn(*ts)
    out.backward()
    return out.item(), [t.grad.numpy() for t in ts]
