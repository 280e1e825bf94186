"""Pure-Python reference backend: the readable spec of what tapegrad's C++ tape computes.

    import tapegrad.reference as tg   # the same API as `import tapegrad as tg`

A Var is one node of a computation graph: its value, its adjoint (``grad``), the op that
made it and that op's inputs. ``backward()`` visits the nodes below the root newest first
and applies each op's local derivative rule from ``OPS``, the mirror of
``csrc/tapegrad/ops.def``.
"""

import itertools
import math
import numbers
import operator

# ---------------------------------------------------------------------------------------
# C99 / IEEE-754 results where Python raises instead (1/0, math.log(0), math.exp(1000),
# math.pow(-2, 0.5), math.sin(inf), ...): the reference never raises on a value.

inf, nan = math.inf, math.nan


def _div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        return nan if a == 0 or a != a else math.copysign(inf, a) * math.copysign(1.0, b)


def _odd_integer(y):
    return math.isfinite(y) and y % 2.0 == 1.0


def _pow(x, y):
    try:
        return math.pow(x, y)
    except OverflowError:
        return -inf if x < 0 and _odd_integer(y) else inf
    except ValueError:  # a pole pow(+-0, y < 0), or a negative base to a non-integer power
        if x == 0:
            return math.copysign(inf, x) if _odd_integer(y) else inf
        return nan


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return inf


def _log(x):
    if x > 0 or x != x:
        return math.log(x)
    return -inf if x == 0 else nan


def _sqrt(x):
    return math.sqrt(x) if x >= 0 or x != x else nan


def _periodic(f):
    return lambda x: nan if math.isinf(x) else f(x)


_sin, _cos, _tan = _periodic(math.sin), _periodic(math.cos), _periodic(math.tan)
_fabs, _tanh = math.fabs, math.tanh

# ---------------------------------------------------------------------------------------
# The op table: one row per op, in the order and with the formulas of csrc/tapegrad/ops.def.
#   name: (arity, forward(x, y), rule(x, y, out, g) -> (d/dx, d/dy),
#          tangent(x, y, out, tx, ty) or PARTIALS)
#   x, y: operand values (y is 0.0 for unary ops); out: this node's value;
#   g: this node's adjoint (never 0); tx, ty: the operands' tangents (forward mode).
#   Unary ops ignore y and their d/dy. Kinks follow PyTorch. PARTIALS: the tangent is
#   d/dx(g=tx) + d/dy(g=ty), a term skipped when its tangent is 0 (see tangent()).
PARTIALS = None


def _NO_TANGENT(x, y, out, tx, ty):
    return 0.0


OPS = {
    "add":     (2, lambda x, y: x + y,
                   lambda x, y, out, g: (g, g), lambda x, y, out, tx, ty: tx + ty),
    "sub":     (2, lambda x, y: x - y,
                   lambda x, y, out, g: (g, -g), lambda x, y, out, tx, ty: tx - ty),
    "mul":     (2, lambda x, y: x * y,
                   lambda x, y, out, g: (g * y, g * x), PARTIALS),
    "div":     (2, lambda x, y: _div(x, y),
                   lambda x, y, out, g: (_div(g, y), _div(-g * out, y)), PARTIALS),
    "pow":     (2, lambda x, y: _pow(x, y),
                   lambda x, y, out, g: (0.0 if y == 0 else g * y * (x if y == 2 else _pow(x, y - 1)),
                                         0.0 if (x == 0 and y >= 0) else g * out * _log(x)), PARTIALS),
    "maximum": (2, lambda x, y: x if (x > y or x != x) else y,
                   lambda x, y, out, g: (g if x > y else 0.5 * g if x == y else 0.0 if x < y else g,
                                         g if y > x else 0.5 * g if x == y else 0.0 if y < x else g), PARTIALS),
    "minimum": (2, lambda x, y: x if (x < y or x != x) else y,
                   lambda x, y, out, g: (g if x < y else 0.5 * g if x == y else 0.0 if x > y else g,
                                         g if y < x else 0.5 * g if x == y else 0.0 if y > x else g), PARTIALS),
    "lt":       (2, lambda x, y: 1.0 if x < y else 0.0,  lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "le":       (2, lambda x, y: 1.0 if x <= y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "gt":       (2, lambda x, y: 1.0 if x > y else 0.0,  lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "ge":       (2, lambda x, y: 1.0 if x >= y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "eq":       (2, lambda x, y: 1.0 if x == y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "ne":       (2, lambda x, y: 1.0 if x != y else 0.0, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    # Logical ops on truth values: nonzero is true, NaN included (C, numpy.logical_and).
    "logical_and": (2, lambda x, y: 1.0 if x != 0 and y != 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "logical_or":  (2, lambda x, y: 1.0 if x != 0 or y != 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "logical_not": (1, lambda x, y: 1.0 if x == 0 else 0.0,
                       lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
    "if_true":  (2, lambda x, y: y if x != 0 else 0.0,
                    lambda x, y, out, g: (0.0, g if x != 0 else 0.0), lambda x, y, out, tx, ty: ty if x != 0 else 0.0),
    "if_false": (2, lambda x, y: 0.0 if x != 0 else y,
                    lambda x, y, out, g: (0.0, 0.0 if x != 0 else g), lambda x, y, out, tx, ty: 0.0 if x != 0 else ty),
    "square":  (1, lambda x, y: x * x,
                   lambda x, y, out, g: (g * 2 * x, 0.0), PARTIALS),
    "neg":     (1, lambda x, y: -x,
                   lambda x, y, out, g: (-g, 0.0), lambda x, y, out, tx, ty: -tx),
    "abs":     (1, lambda x, y: _fabs(x),
                   lambda x, y, out, g: (g if x > 0 else -g if x < 0 else 0.0, 0.0), PARTIALS),
    "sqrt":    (1, lambda x, y: _sqrt(x),
                   lambda x, y, out, g: (_div(g, 2 * out), 0.0), PARTIALS),
    "exp":     (1, lambda x, y: _exp(x),
                   lambda x, y, out, g: (g * out, 0.0), PARTIALS),
    "log":     (1, lambda x, y: _log(x),
                   lambda x, y, out, g: (_div(g, x), 0.0), PARTIALS),
    "sin":     (1, lambda x, y: _sin(x),
                   lambda x, y, out, g: (g * _cos(x), 0.0), PARTIALS),
    "cos":     (1, lambda x, y: _cos(x),
                   lambda x, y, out, g: (-g * _sin(x), 0.0), PARTIALS),
    "tan":     (1, lambda x, y: _tan(x),
                   lambda x, y, out, g: (g * (1 + out * out), 0.0), PARTIALS),
    "tanh":    (1, lambda x, y: _tanh(x),
                   lambda x, y, out, g: (g * (1 - out * out), 0.0), PARTIALS),
    "sigmoid": (1, lambda x, y: _div(1, 1 + _exp(-x)),
                   lambda x, y, out, g: (g * out * (1 - out), 0.0), PARTIALS),
    "relu":    (1, lambda x, y: x if (x > 0 or x != x) else 0.0,
                   lambda x, y, out, g: (0.0 if x <= 0 else g, 0.0), PARTIALS),
    # The value of x with no gradient (PyTorch's detach, JAX's stop_gradient).
    "detach":  (1, lambda x, y: x, lambda x, y, out, g: (0.0, 0.0), _NO_TANGENT),
}


def tangent(name, x, y, tx, ty):
    """The tangent of op ``name``'s value when its operands move by ``tx``, ``ty``
    (forward mode), by the table's tangent column."""
    arity, forward, rule, column = OPS[name]
    out = forward(x, y)
    if column is not PARTIALS:
        return column(x, y, out, tx, ty)
    t = rule(x, y, out, tx)[0] if tx != 0 else 0.0
    return t + (rule(x, y, out, ty)[1] if arity == 2 and ty != 0 else 0.0)


def ops():
    """The op table as a list of ``(name, arity)`` tuples, in table order."""
    return [(name, row[0]) for name, row in OPS.items()]


# ---------------------------------------------------------------------------------------

_next_index = itertools.count().__next__  # creation order, the C++ tape's order
_newest_first = operator.attrgetter("_index")


def _number(x):
    """x as a float if it is a real number (int, float, bool, numpy scalar, ...), else None."""
    if type(x) is float:
        return x
    return float(x) if isinstance(x, numbers.Real) else None


def _node(value, op, inputs):
    v = object.__new__(Var)
    v._value, v._grad, v._op, v._inputs, v._index = value, 0.0, op, inputs, _next_index()
    return v


def _operand(x):
    """x if it is a Var, a new 'const' node if it is a number, else None."""
    if isinstance(x, Var):
        return x
    value = _number(x)
    return None if value is None else _node(value, "const", ())


def _apply(name, inputs, exponent=None):
    """A new node: op `name` over `inputs`. `exponent`: pow's exponent if it was a number."""
    if name == "pow" and exponent == 2.0:  # x ** 2 with a number 2: the square op
        name, inputs = "square", inputs[:1]
    x = inputs[0]._value
    y = inputs[1]._value if len(inputs) == 2 else 0.0
    return _node(OPS[name][1](x, y), name, inputs)


def _partials(v, g):
    """The rule of v's op: (d/dx, d/dy) times v's adjoint g."""
    inputs = v._inputs
    x = inputs[0]._value
    y = inputs[1]._value if len(inputs) == 2 else 0.0
    return OPS[v._op][2](x, y, v._value, g)


def _type_error(where, x):
    return TypeError(f"{where}: expected a Var or a real number, got {type(x).__name__!r}")


class Var:
    """A scalar node of a computation graph: its value, adjoint (grad), op and inputs."""

    __slots__ = ("_value", "_grad", "_op", "_inputs", "_index")

    def __init__(self, value):
        """A leaf holding ``value`` (an int, float, bool or numpy number scalar)."""
        x = _number(value)
        if x is None:
            raise TypeError(f"Var() takes a real number, got {type(value).__name__!r}")
        self._value, self._grad, self._op, self._inputs = x, 0.0, "leaf", ()
        self._index = _next_index()

    # -- value, gradient, introspection -------------------------------------------------

    @property
    def value(self):
        """The forward value; settable on leaves ('leaf' and 'const' nodes) only."""
        return self._value

    @value.setter
    def value(self, x):
        if self._inputs:
            raise ValueError(f"cannot set .value of a non-leaf Var (op {self._op!r}): "
                             "only 'leaf' and 'const' nodes hold values of their own")
        v = _number(x)
        if v is None:
            raise TypeError(f"Var.value must be a real number, got {type(x).__name__!r}")
        self._value = v

    data = value  # micrograd's name

    @property
    def grad(self):
        """The adjoint: d(root)/d(self) after ``root.backward()``; 0.0 before any."""
        return self._grad

    @grad.setter
    def grad(self, g):
        v = 0.0 if g is None else _number(g)
        if v is None:
            raise TypeError(f"Var.grad must be a real number or None, got {type(g).__name__!r}")
        self._grad = v

    @property
    def op(self):
        """The table op that made this node, or 'leaf' / 'const'."""
        return self._op

    @property
    def inputs(self):
        """The parent Vars (a tuple; empty for leaves)."""
        return self._inputs

    @property
    def is_leaf(self):
        """True for 'leaf' and 'const' nodes."""
        return not self._inputs

    @property
    def id(self):
        """An int identifying the node; ``hash(v) == hash(v.id)``."""
        return id(self)

    def item(self):
        """The value as a Python float."""
        return self._value

    def zero_grad(self):
        """Set this node's grad to 0.0."""
        self._grad = 0.0

    def detach(self):
        """A new 'const' node with this value (no gradient flows back through it)."""
        return _node(self._value, "const", ())

    # -- reverse mode --------------------------------------------------------------------

    def backward(self):
        """Seed this node with 1.0 and accumulate d(self)/d(v) into every v below it.

        Adjoints of the non-leaf nodes below are reset first, so a second call gives
        exactly twice the leaf grads: leaf and const grads accumulate.
        """
        nodes = self._subgraph()
        for v in nodes:
            if v._inputs:
                v._grad = 0.0
        self._grad += 1.0
        for v in nodes:  # newest first: every node before its inputs
            g = v._grad
            if g == 0.0 or not v._inputs:  # skip a zero adjoint: 0 * inf must not leak NaN
                continue
            for u, d in zip(v._inputs, _partials(v, g)):  # unary: zip drops d/dy
                if u._op != "const":  # constants take no gradient (nothing reads it)
                    u._grad += d

    def _subgraph(self):
        # Creation order is a topological order (an op's inputs exist before it) and it is
        # the tape's order, so adjoints are summed in the same order as in the C++ backend.
        # Iterative, so a 10**6-deep chain needs no recursion.
        seen = {id(self): self}
        stack = [self]
        while stack:
            for u in stack.pop()._inputs:
                if id(u) not in seen:
                    seen[id(u)] = u
                    stack.append(u)
        return sorted(seen.values(), key=_newest_first, reverse=True)

    # -- Python protocols ----------------------------------------------------------------

    def __repr__(self):
        return f"Var(value={self._value!r}, grad={self._grad!r})"

    def __format__(self, spec):
        return format(self._value, spec)

    def __float__(self):
        return self._value

    def __int__(self):
        return int(self._value)

    def __bool__(self):
        return self._value != 0

    def __hash__(self):  # node identity, so dict/set lookups never compare values
        return hash(id(self))

    def __copy__(self):
        if self._inputs:
            raise RuntimeError(f"cannot copy a non-leaf Var (op {self._op!r}); "
                               "use .detach() or Var(v.value)")
        v = _node(self._value, self._op, ())
        v._grad = self._grad
        return v

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __reduce_ex__(self, protocol):
        raise TypeError("Var objects cannot be pickled: a node belongs to a graph; "
                        "pickle v.value instead")

    def __pos__(self):
        return self

    def __neg__(self):
        return _apply("neg", (self,))

    def __abs__(self):
        return _apply("abs", (self,))

    def __pow__(self, other, mod=None):
        if mod is not None:
            raise TypeError("pow() with a modulus is not supported for Var")
        y = _operand(other)
        return NotImplemented if y is None else _apply("pow", (self, y), _number(other))

    def __rpow__(self, other, mod=None):
        if mod is not None:
            raise TypeError("pow() with a modulus is not supported for Var")
        other = _operand(other)
        return NotImplemented if other is None else _apply("pow", (other, self))


def _operator(name, reflected):
    def method(self, other):
        other = _operand(other)
        if other is None:
            return NotImplemented
        return _apply(name, (other, self) if reflected else (self, other))
    return method


def _comparison(compare):
    def method(self, other):
        o = other._value if isinstance(other, Var) else _number(other)
        return NotImplemented if o is None else compare(self._value, o)
    return method


for _name, _op in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div")):
    setattr(Var, f"__{_name}__", _operator(_op, reflected=False))
    setattr(Var, f"__r{_name}__", _operator(_op, reflected=True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(Var, f"__{_name}__", _comparison(getattr(operator, _name)))


# ---------------------------------------------------------------------------------------
# One method and one module function per table op, generated from OPS.

def _method(name, arity):
    if arity == 1:
        def method(self):
            return _apply(name, (self,))
    else:
        def method(self, other):
            y = _operand(other)
            if y is None:
                raise _type_error(f"Var.{name}()", other)
            return _apply(name, (self, y), _number(other))
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"The {name!r} op of the table (a new node)."
    return method


def _function(name, arity):
    forward = OPS[name][1]

    def apply(args):
        values = [_number(a) for a in args]
        if None not in values:  # only plain numbers: a plain float
            return forward(values[0], values[1] if arity == 2 else 0.0)
        inputs = tuple(_operand(a) for a in args)
        for a, v in zip(args, inputs):
            if v is None:
                raise _type_error(f"{name}()", a)
        exponent = _number(args[1]) if arity == 2 and isinstance(args[0], Var) else None
        return _apply(name, inputs, exponent)

    if arity == 1:
        def function(x):
            return apply((x,))
    else:
        def function(x, y):
            return apply((x, y))
    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"The {name!r} op of the table: a new Var, or a float if every "
                        "argument is a plain number.")
    return function


for _name, (_arity, *_) in OPS.items():
    if _name != "detach":  # Var.detach() makes a constant (see Var.detach)
        setattr(Var, _name, _method(_name, _arity))
    globals()[_name] = _function(_name, _arity)
del _name, _op, _arity


def local_grads(v, g=None):
    """What each input of ``v`` receives from ``v`` in a backward sweep when v's adjoint is
    ``g`` (default: ``v.grad``), by the table's rule: one float per input."""
    if not isinstance(v, Var):
        raise TypeError(f"local_grads() expects a Var, got {type(v).__name__!r}")
    adjoint = v._grad if g is None else _number(g)
    if adjoint is None:
        raise _type_error("local_grads()", g)
    return _partials(v, adjoint)[:len(v._inputs)] if v._inputs else ()


def where(cond, a, b):
    """``a`` where ``cond`` is nonzero, else ``b``, as a branch-free graph node
    (``if_true(cond, a) + if_false(cond, b)``). ``cond`` may be a Python bool (``x > 0``:
    the reference does not trace) or a node from ``lt``/``le``/``gt``/``ge``/``eq``/``ne``
    or the logical ops. Only the chosen side gets a gradient."""
    if not any(isinstance(v, Var) for v in (cond, a, b)):
        return a if cond else b
    return if_true(cond, a) + if_false(cond, b)  # noqa: F821 - generated from OPS above


def zero_grad(variables):
    """Set the grad of every Var in ``variables`` (any iterable) to 0.0."""
    for v in variables:
        if not isinstance(v, Var):
            raise TypeError(f"zero_grad() expects Vars, got {type(v).__name__!r}")
        v._grad = 0.0


__all__ = ["Var", "local_grads", "ops", "where", "zero_grad", *OPS]
