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
}


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
