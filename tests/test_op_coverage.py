"""docs/ops.md's coverage tables, checked against the backends.

Every ✔ row's `tg.` functions exist on both backends and give the value of C (Python's
math module), CasADi or numpy at a few points; numpy rows that claim to work on object
arrays of Vars are called that way, and their elements are what the "returns" column says.
Every op of the table is named somewhere in the document, and the CasADi table is complete.
A row the tests have no oracle for fails: a new ✔ claim needs its check here.
"""
import functools
import math
import pathlib
import re

import numpy as np
import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "ops.md"
TEXT = DOC.read_text(encoding="utf-8")
TG_NAME = re.compile(r"`tg\.(\w+)`")


def _table(heading):
    """The rows of the table under the '## heading...' section: a dict of key (the first
    cell's code span) to its cells."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", TEXT, re.M | re.S)
    assert match, f"docs/ops.md has no section '## {heading}'"
    lines = [line for line in match.group(1).splitlines() if line.startswith("|")]
    rows = {}
    for line in lines[2:]:  # header, separator
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        key = re.fullmatch(r"`([^`]+)`", cells[0])
        assert key, f"row without a `name` first cell: {line}"
        assert key.group(1) not in rows, f"{key.group(1)} has two rows"
        rows[key.group(1)] = cells
    assert rows, f"the '{heading}' table is empty"
    return rows


C_ROWS = _table("C99")
CASADI_ROWS = _table("CasADi")
NUMPY_ROWS = _table("numpy")
OTHER_ROWS = _table("Other ops")


def _status(cell):
    assert cell in ("✔", "✘"), f"status cell is {cell!r}, not ✔ or ✘"
    return cell == "✔"


# ---------------------------------------------------------------------------- values

def same(got, want, rel):
    """Equal as floats: NaN matches NaN, a zero matches only a zero of the same sign,
    others within rel."""
    got, want = float(got), float(want)
    if math.isnan(want):
        return math.isnan(got)
    if want == 0 or math.isinf(want):
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    return math.isclose(got, want, rel_tol=rel, abs_tol=0.0)


def _erfinv(x):
    """erf's inverse by bisection on math.erf (an oracle independent of the backends)."""
    if x in (-1.0, 0.0, 1.0):
        return x * math.inf if x else x
    lo, hi = -6.0, 6.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < x else (lo, mid)
    return (lo + hi) / 2


def _logaddexp(x, y):
    m = max(x, y)
    return m + math.log1p(math.exp(-abs(x - y)))


def _np(name):
    return lambda *args: float(getattr(np, name)(*args))


def _int_result(f):
    return lambda x: float(f(x))


class Spec:
    """An oracle for one row: ref(*args) on floats, the points, how the row's arguments
    map to the tapegrad function's (call(f, Var, *args)), and the tolerance."""

    def __init__(self, ref, points, call=None, rel=1e-13):
        self.ref, self.points, self.rel = ref, points, rel
        self.call = call or (lambda f, var, *args: f(*map(var, args)))


ANY = (-2.5, -0.7, -0.0, 0.0, 0.3, 1.5, 3.5)
UNIT = (-0.9, -0.3, 0.0, 0.5, 0.99)
POS = (0.1, 1.0, 2.5, 1e10)
GE1 = (1.0, 1.5, 10.0)
ROUNDING = (-2.5, -1.5, -0.5, -0.4, -0.0, 0.0, 0.5, 1.5, 2.5, 2.7, math.inf, math.nan)
PAIRS = ((1.5, 2.0), (-3.7, 1.2), (0.0, -2.0), (5.0, -3.0), (-0.5, -0.25), (2.0, 2.0),
         (-0.0, 0.0))
NONZERO_Y = tuple(p for p in PAIRS if p[1] != 0)
POW_PAIRS = ((2.0, 0.5), (1.5, -2.0), (-2.0, 3.0), (0.0, 2.0), (4.0, 0.0), (0.5, 2.0))
CMP_PAIRS = PAIRS + ((math.nan, 1.0), (1.0, math.nan))

C_SPECS = {
    "acos": Spec(math.acos, UNIT), "asin": Spec(math.asin, UNIT),
    "atan": Spec(math.atan, ANY), "atanh": Spec(math.atanh, UNIT),
    "acosh": Spec(math.acosh, GE1), "asinh": Spec(math.asinh, ANY),
    "atan2": Spec(math.atan2, PAIRS), "cbrt": Spec(math.cbrt, ANY + (-8.0, 27.0)),
    "ceil": Spec(_int_result(np.ceil), ROUNDING), "copysign": Spec(math.copysign, PAIRS),
    "cos": Spec(math.cos, ANY), "cosh": Spec(math.cosh, ANY), "erf": Spec(math.erf, ANY),
    "erfc": Spec(math.erfc, ANY + (10.0,)), "exp": Spec(math.exp, ANY),
    "exp2": Spec(math.exp2, ANY), "expm1": Spec(math.expm1, ANY + (1e-10,)),
    "fabs": Spec(math.fabs, ANY), "floor": Spec(_int_result(np.floor), ROUNDING),
    "fmax": Spec(_np("fmax"), CMP_PAIRS), "fmin": Spec(_np("fmin"), CMP_PAIRS),
    "fmod": Spec(math.fmod, NONZERO_Y), "hypot": Spec(math.hypot, PAIRS),
    "lgamma": Spec(math.lgamma, (0.5, 1.0, 2.0, 3.7, 10.0, -2.5), rel=1e-10),
    "log": Spec(math.log, POS), "log10": Spec(math.log10, POS),
    "remainder": Spec(math.remainder, NONZERO_Y + ((5.0, 3.0),)),
    "log1p": Spec(math.log1p, (-0.5, 0.0, 1e-10, 3.0)), "log2": Spec(math.log2, POS),
    "nearbyint": Spec(_int_result(np.rint), ROUNDING),
    "rint": Spec(_int_result(np.rint), ROUNDING), "pow": Spec(math.pow, POW_PAIRS),
    "sin": Spec(math.sin, ANY), "sinh": Spec(math.sinh, ANY), "sqrt": Spec(math.sqrt, POS),
    "tan": Spec(math.tan, ANY), "tanh": Spec(math.tanh, ANY),
    "trunc": Spec(_int_result(np.trunc), ROUNDING),
    "isgreater": Spec(lambda x, y: float(x > y), CMP_PAIRS),
    "isgreaterequal": Spec(lambda x, y: float(x >= y), CMP_PAIRS),
    "isless": Spec(lambda x, y: float(x < y), CMP_PAIRS),
    "islessequal": Spec(lambda x, y: float(x <= y), CMP_PAIRS),
}


def _casadi_sign(x):
    # CasADi's sign returns x itself at 0 and NaN; tg.sign(-0.0) is 0.0, numpy's (docs/ops.md)
    return -1.0 if x < 0 else 1.0 if x > 0 else 0.0 if x == 0 else x


CASADI_SPECS = {
    "OP_ADD": Spec(lambda x, y: x + y, PAIRS), "OP_SUB": Spec(lambda x, y: x - y, PAIRS),
    "OP_MUL": Spec(lambda x, y: x * y, PAIRS), "OP_DIV": Spec(lambda x, y: x / y, NONZERO_Y),
    "OP_NEG": Spec(lambda x: -x, ANY), "OP_EXP": Spec(math.exp, ANY),
    "OP_LOG": Spec(math.log, POS), "OP_POW": Spec(math.pow, POW_PAIRS),
    "OP_CONSTPOW": Spec(math.pow, POW_PAIRS + ((-1.5, 2.0),),
                        call=lambda f, var, x, c: f(var(x), c)),
    "OP_SQRT": Spec(math.sqrt, POS), "OP_SQ": Spec(lambda x: x * x, ANY),
    "OP_TWICE": Spec(lambda x: x + x, ANY, call=lambda f, var, x: f(var(x), var(x))),
    "OP_SIN": Spec(math.sin, ANY), "OP_COS": Spec(math.cos, ANY),
    "OP_TAN": Spec(math.tan, ANY), "OP_ASIN": Spec(math.asin, UNIT),
    "OP_ACOS": Spec(math.acos, UNIT), "OP_ATAN": Spec(math.atan, ANY),
    "OP_LT": Spec(lambda x, y: float(x < y), CMP_PAIRS),
    "OP_LE": Spec(lambda x, y: float(x <= y), CMP_PAIRS),
    "OP_EQ": Spec(lambda x, y: float(x == y), CMP_PAIRS),
    "OP_NE": Spec(lambda x, y: float(x != y), CMP_PAIRS),
    "OP_NOT": Spec(lambda x: float(not x), ANY),
    "OP_AND": Spec(lambda x, y: float(bool(x) and bool(y)), PAIRS + ((0.0, 1.0), (1.0, 0.0))),
    "OP_OR": Spec(lambda x, y: float(bool(x) or bool(y)), PAIRS + ((0.0, 0.0), (-0.0, 0.0))),
    "OP_FLOOR": Spec(_int_result(np.floor), ROUNDING),
    "OP_CEIL": Spec(_int_result(np.ceil), ROUNDING), "OP_FMOD": Spec(math.fmod, NONZERO_Y),
    "OP_FABS": Spec(math.fabs, ANY), "OP_SIGN": Spec(_casadi_sign, ANY + (math.nan,)),
    "OP_COPYSIGN": Spec(math.copysign, PAIRS),
    "OP_IF_ELSE_ZERO": Spec(lambda c, x: 0.0 if c == 0 else x,
                            ((0.0, 3.0), (1.0, 3.0), (-2.0, -0.5), (-0.0, 4.0))),
    "OP_ERF": Spec(math.erf, ANY), "OP_FMIN": Spec(_np("fmin"), CMP_PAIRS),
    "OP_FMAX": Spec(_np("fmax"), CMP_PAIRS), "OP_INV": Spec(lambda x: 1 / x, (-2.5, 0.3, 4.0)),
    "OP_SINH": Spec(math.sinh, ANY), "OP_COSH": Spec(math.cosh, ANY),
    "OP_TANH": Spec(math.tanh, ANY), "OP_ASINH": Spec(math.asinh, ANY),
    "OP_ACOSH": Spec(math.acosh, GE1), "OP_ATANH": Spec(math.atanh, UNIT),
    "OP_ATAN2": Spec(math.atan2, PAIRS),
    "OP_ERFINV": Spec(_erfinv, (-0.9, -0.3, 0.0, 0.5, 0.999, 1.0), rel=1e-10),
    "OP_LOG1P": Spec(math.log1p, (-0.5, 0.0, 1e-10, 3.0)),
    "OP_EXPM1": Spec(math.expm1, ANY + (1e-10,)), "OP_HYPOT": Spec(math.hypot, PAIRS),
    "OP_LOGSUMEXP": Spec(_logaddexp, PAIRS + ((-800.0, -801.0), (800.0, 799.0))),
    "OP_REMAINDER": Spec(math.remainder, NONZERO_Y + ((5.0, 3.0), (7.5, 5.0), (-2.5, 5.0))),
}

# The scalar ops of CasADi's enum Operation (casadi/core/calculus.hpp, CasADi 3.6).
CASADI_SCALAR_OPS = (
    "ADD SUB MUL DIV NEG EXP LOG POW CONSTPOW SQRT SQ TWICE SIN COS TAN ASIN ACOS ATAN LT LE "
    "EQ NE NOT AND OR FLOOR CEIL FMOD FABS SIGN COPYSIGN IF_ELSE_ZERO ERF FMIN FMAX INV SINH "
    "COSH TANH ASINH ACOSH ATANH ATAN2 ERFINV LOG1P EXPM1 HYPOT LOGSUMEXP REMAINDER").split()

# C99 7.12's real functions and classification and comparison macros.
C99 = (
    "acos acosh asin asinh atan atan2 atanh cbrt ceil copysign cos cosh erf erfc exp exp2 "
    "expm1 fabs fdim floor fma fmax fmin fmod frexp hypot ilogb ldexp lgamma llrint llround "
    "log log10 log1p log2 logb lrint lround modf nan nearbyint nextafter nexttoward pow "
    "remainder remquo rint round scalbln scalbn sin sinh sqrt tan tanh tgamma trunc "
    "fpclassify isfinite isinf isnan isnormal signbit isgreater isgreaterequal isless "
    "islessequal islessgreater isunordered").split()


def _digamma_1():
    return -0.5772156649015329  # -euler_gamma


OTHER_SPECS = {
    "sigmoid": Spec(lambda x: 1 / (1 + math.exp(-x)), ANY),
    "relu": Spec(lambda x: x if x > 0 or x != x else 0.0, ANY[:2] + ANY[4:] + (math.nan,)),
    "softplus": Spec(lambda x: math.log1p(math.exp(x)), ANY[:2] + ANY[3:] + (-40.0,)),
    "log_sigmoid": Spec(lambda x: -math.log1p(math.exp(-x)), ANY[:2] + ANY[3:] + (40.0,)),
    "xlogy": Spec(lambda x, y: 0.0 if x == 0 and y == y else x * math.log(y),
                  ((2.0, 3.0), (0.0, 0.0), (0.0, 5.0), (-1.5, 0.5), (0.0, math.nan))),
    # Closed forms: digamma(1) = -gamma, digamma(1/2) = -gamma - 2 ln 2, digamma(x + 1) =
    # digamma(x) + 1/x.
    "digamma": Spec(lambda x: {1.0: _digamma_1(), 0.5: _digamma_1() - 2 * math.log(2),
                               2.0: _digamma_1() + 1, 3.0: _digamma_1() + 1.5}[x],
                    (1.0, 0.5, 2.0, 3.0), rel=1e-9),
    # polygamma(1, 1) = pi^2/6, polygamma(1, 1/2) = pi^2/2, polygamma(2, 1) = -2 zeta(3),
    # polygamma(0, x) = digamma(x).
    "polygamma": Spec(lambda n, x: {(1.0, 1.0): math.pi ** 2 / 6, (1.0, 0.5): math.pi ** 2 / 2,
                                    (2.0, 1.0): -2 * 1.2020569031595942,
                                    (0.0, 1.0): _digamma_1()}[(n, x)],
                      ((1.0, 1.0), (1.0, 0.5), (2.0, 1.0), (0.0, 1.0)), rel=1e-9),
    "clamp_min": Spec(lambda x, y: max(x, y), PAIRS[:-1]),
    "clamp_max": Spec(lambda x, y: min(x, y), PAIRS[:-1]),
    "if_false": Spec(lambda c, y: y if c == 0 else 0.0, ((0.0, 3.0), (1.0, 3.0), (-2.0, -0.5))),
    "detach": Spec(lambda x: x, ANY),
}


def _check_values(backend, row, names, spec):
    assert names, f"{row}: ✔ without a `tg.` function"
    for name in names:
        f = getattr(backend, name, None)
        assert callable(f), f"{row}: tapegrad.{name} is missing on {backend.__name__}"
        for args in spec.points:
            args = args if isinstance(args, tuple) else (args,)
            want = spec.ref(*args)
            out = spec.call(f, backend.Var, *args)
            assert isinstance(out, backend.Var), f"{row}: tg.{name}{args} is not a Var"
            assert same(out.value, want, spec.rel), (
                f"{row}: tg.{name}{args} = {out.value!r}, expected {want!r}")


def _value_rows(rows, specs):
    return [pytest.param(key, id=key) for key, cells in rows.items() if _status(cells[1])]


@pytest.mark.parametrize("key", _value_rows(C_ROWS, C_SPECS))
def test_c_row(backend, key):
    assert key in C_SPECS, f"C row {key} is ✔ but this test has no oracle for it"
    _check_values(backend, key, TG_NAME.findall(C_ROWS[key][2]), C_SPECS[key])


@pytest.mark.parametrize("key", _value_rows(CASADI_ROWS, CASADI_SPECS))
def test_casadi_row(backend, key):
    assert key in CASADI_SPECS, f"CasADi row {key} is ✔ but this test has no oracle for it"
    _check_values(backend, key, TG_NAME.findall(CASADI_ROWS[key][2]), CASADI_SPECS[key])


@pytest.mark.parametrize("key", _value_rows(OTHER_ROWS, OTHER_SPECS))
def test_other_row(backend, key):
    assert key in OTHER_SPECS, f"row {key} is ✔ but this test has no oracle for it"
    _check_values(backend, key, TG_NAME.findall(OTHER_ROWS[key][2]), OTHER_SPECS[key])


def test_c_table_lists_c99():
    assert sorted(C_ROWS) == sorted(C99)


def test_casadi_table_is_complete_and_all_ticked():
    assert sorted(CASADI_ROWS) == sorted("OP_" + op for op in CASADI_SCALAR_OPS)
    crossed = [key for key, cells in CASADI_ROWS.items() if not _status(cells[1])]
    assert not crossed, f"CasADi ops without a tapegrad op: {crossed}"


@pytest.mark.parametrize("table", [C_ROWS, CASADI_ROWS, NUMPY_ROWS, OTHER_ROWS],
                         ids=["c", "casadi", "numpy", "other"])
def test_crossed_rows_say_why(table):
    for key, cells in table.items():
        if not _status(cells[1]):
            assert cells[-1], f"{key}: ✘ without a reason"


def test_every_op_and_alias_is_in_the_doc(backend):
    named = set(TG_NAME.findall(TEXT))
    missing = [op for op, _ in backend.ops() if op not in named]
    missing += [alias for alias, _ in backend.op_aliases() if alias not in named]
    assert not missing, f"ops not in docs/ops.md: {missing}"


def test_named_functions_exist(backend):
    missing = sorted({name for name in TG_NAME.findall(TEXT) if not hasattr(backend, name)})
    assert not missing, f"docs/ops.md names functions {backend.__name__} lacks: {missing}"


# ---------------------------------------------------------------------------- numpy

X = np.array([-2.5, -0.7, -0.0, 0.3, 1.5, 3.5, 2.0])
Y = np.array([2.0, 1.2, -2.0, -3.0, -0.25, 0.5, 2.0])
XPOS = np.array([0.25, 1.0, 2.5, 10.0])
XUNIT = np.array([-0.9, -0.5, 0.0, 0.3, 0.99])
XGE1 = np.array([1.0, 1.5, 4.0])
XROUND = np.array([-2.5, -1.5, -0.5, -0.4, -0.0, 0.5, 1.5, 2.5, 2.7, 3.5])
PX = np.array([2.0, 1.5, 0.5, 3.0, 4.0])
PY = np.array([0.5, -2.0, 3.0, 2.0, 0.0])


def _np_spec(name, args=(X,), call=None, rel=1e-13):
    fn = call or getattr(np, name[3:])
    return fn, args, rel


NUMPY_SPECS = {k: _np_spec(k, *v) for k, v in {
    "np.add": ((X, Y),), "np.subtract": ((X, Y),), "np.multiply": ((X, Y),),
    "np.divide": ((X, Y),), "np.negative": (), "np.positive": (),
    "np.power": ((PX, PY),), "np.float_power": ((PX, PY),), "np.square": (),
    "np.sqrt": ((XPOS,),), "np.cbrt": (), "np.reciprocal": ((X[X != 0],),),
    "np.absolute": (), "np.fabs": (), "np.deg2rad": (), "np.rad2deg": (), "np.sign": (),
    "np.exp": (), "np.exp2": (),
    "np.expm1": (), "np.log": ((XPOS,),), "np.log2": ((XPOS,),), "np.log10": ((XPOS,),),
    "np.log1p": ((np.array([-0.5, 0.0, 0.3, 4.0]),),), "np.logaddexp": ((X, Y),),
    "np.sin": (), "np.cos": (), "np.tan": (), "np.arcsin": ((XUNIT,),),
    "np.arccos": ((XUNIT,),), "np.arctan": (), "np.arctan2": ((X, Y),),
    "np.hypot": ((X, Y),), "np.sinh": (), "np.cosh": (), "np.tanh": (),
    "np.arcsinh": (), "np.arccosh": ((XGE1,),), "np.arctanh": ((XUNIT,),),
    "np.floor": ((XROUND,),), "np.ceil": ((XROUND,),), "np.trunc": ((XROUND,),),
    "np.rint": ((XROUND,),), "np.round": ((XROUND,),),
    "np.clip": ((X, -1.0, 1.0),), "np.maximum": ((X, Y),), "np.minimum": ((X, Y),),
    "np.fmax": ((X, Y),), "np.fmin": ((X, Y),), "np.remainder": ((X, Y),),
    "np.fmod": ((X, Y),), "np.floor_divide": ((X, Y),), "np.copysign": ((X, Y),),
    "np.greater": ((X, Y),), "np.greater_equal": ((X, Y),), "np.less": ((X, Y),),
    "np.less_equal": ((X, Y),), "np.equal": ((X, Y),), "np.not_equal": ((X, Y),),
    "np.logical_and": ((np.array([0.0, 1.0, 2.0, -0.0]), np.array([1.0, 0.0, 3.0, 0.0])),),
    "np.logical_or": ((np.array([0.0, 1.0, 0.0, -0.0]), np.array([1.0, 0.0, 0.0, 0.0])),),
    "np.logical_not": ((np.array([0.0, 1.0, -0.0, -2.0]),),),
}.items()}
# Rows whose tapegrad functions are ingredients of a replacement, not the ufunc itself.
NOT_THE_UFUNC = {"np.divmod", "np.modf", "np.logical_xor"}
RETURNS = {"Var node", "selected operand", "int", "bool"}


def _numpy_rows(with_tick):
    return [pytest.param(key, id=key) for key, cells in NUMPY_ROWS.items()
            if _status(cells[1]) or not with_tick]


@pytest.mark.parametrize("key", _numpy_rows(with_tick=True))
def test_numpy_object_arrays(backend, key):
    """The ufunc on object arrays of Vars: numpy's values on floats, elements as the
    "returns" column says."""
    assert key in NUMPY_SPECS, f"{key} is ✔ but this test has no oracle for it"
    fn, args, rel = NUMPY_SPECS[key]
    returns = NUMPY_ROWS[key][2]
    assert returns in RETURNS, f"{key}: returns {returns!r}, not one of {sorted(RETURNS)}"
    objects = [np.array([backend.Var(float(x)) for x in a], dtype=object)
               if isinstance(a, np.ndarray) else a for a in args]
    inputs = [list(o) if isinstance(o, np.ndarray) else [o] for o in objects]
    with np.errstate(all="ignore"):
        want = fn(*args)
        got = fn(*objects)
    assert got.shape == want.shape
    for i, (g, w) in enumerate(zip(got, want)):
        if want.dtype == bool:  # logical_and/or select an operand: compare truth values
            assert bool(g) == bool(w), f"{key} element {i}: {g!r}, numpy {w!r}"
        elif returns == "int":  # no signed zeros
            assert float(g) == float(w), f"{key} element {i}: {g!r}, numpy {w!r}"
        else:
            assert same(float(g), float(w), rel), f"{key} element {i}: {g!r}, numpy {w!r}"
        operands = [column[i] if len(column) > 1 else column[0] for column in inputs]
        if returns == "Var node":
            assert isinstance(g, backend.Var), f"{key} element {i} is {type(g).__name__}"
            assert not any(g is o for o in operands), f"{key} element {i} is an operand"
        elif returns == "selected operand":
            assert any(g is o for o in operands), f"{key} element {i} is a new object"
        elif returns == "int":
            assert type(g) is int, f"{key} element {i} is {type(g).__name__}"
        else:
            assert isinstance(g, (bool, np.bool_)), f"{key} element {i} is {type(g).__name__}"


@pytest.mark.parametrize("key", _numpy_rows(with_tick=False))
def test_numpy_row_functions(backend, key):
    """The row's tapegrad functions exist and, unless they are parts of a replacement,
    give the ufunc's values on floats (for every row, ✔ or ✘)."""
    cells = NUMPY_ROWS[key]
    names = TG_NAME.findall(cells[3])
    if not _status(cells[1]) and not names:
        return  # no tapegrad function: the notes give the replacement (test_crossed_rows_say_why)
    for name in names:
        assert callable(getattr(backend, name, None)), (
            f"{key}: tapegrad.{name} is missing on {backend.__name__}")
    if key in NOT_THE_UFUNC:
        return
    assert key in NUMPY_SPECS, f"{key} names {names} but this test has no oracle for it"
    fn, args, rel = NUMPY_SPECS[key]
    with np.errstate(all="ignore"):
        want = fn(*args)
    columns = [a if isinstance(a, np.ndarray) else np.full(len(want), a) for a in args]
    for name in names:
        f = getattr(backend, name)
        for i, w in enumerate(want):
            out = f(*(backend.Var(float(c[i])) for c in columns))
            assert same(out.value, float(w), rel), (
                f"{key}: tg.{name}{tuple(float(c[i]) for c in columns)} = {out.value!r}, "
                f"numpy {w!r}")


def test_numpy_object_loops_are_as_documented():
    """A ✘ row's ufunc does fail on object arrays of Vars (else the row should be ✔)."""
    import tapegrad

    a = np.array([tapegrad.Var(0.5), tapegrad.Var(2.0)], dtype=object)
    for key, cells in NUMPY_ROWS.items():
        # gcd and lcm run (Euclid with %), meaninglessly for non-integers
        if _status(cells[1]) or key in ("np.gcd", "np.lcm"):
            continue
        fn = getattr(np, key[3:])
        with pytest.raises((TypeError, AttributeError)), np.errstate(all="ignore"):
            fn(*([a] * fn.nin))


def test_logsumexp_folds():
    import tapegrad

    xs = [tapegrad.Var(v) for v in (0.5, -1.0, 3.0, 2.5)]
    got = functools.reduce(tapegrad.logaddexp, xs).value
    assert math.isclose(got, math.log(sum(math.exp(float(x)) for x in xs)), rel_tol=1e-14)
