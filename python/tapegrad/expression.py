"""The command line's expressions, ``x**2 + x*y`` or ``sigmoid(w*x)``, evaluated on a
backend's Vars.

The grammar is small and parsed here, with no eval() and no Python parser: numbers, names,
``+ - * / **``, unary ``-`` and ``+``, parentheses, and calls of op functions with
positional arguments. Precedence is Python's: ``-x**2`` is ``-(x**2)``, ``2**-x`` is
``2**(-x)`` and ``**`` groups to the right. The parser (shunting-yard) and the evaluator
keep explicit stacks instead of recursing, so a long chain such as ``x**x**...**x`` costs
memory, not Python's recursion limit or its parser's stack. Every rejected input raises one
ExpressionError with a one-line message.
"""
from __future__ import annotations

import ast
import difflib
import keyword
import math
import operator
import re
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from .graph import fmt

__all__ = ["ExpressionError", "evaluate", "shown"]

CONSTANTS = {"pi": math.pi, "e": math.e}
ALLOWED = "use numbers, variables, + - * / **, and op functions"
BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "**": operator.pow}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "unary": 3, "**": 4}  # ** alone is right-assoc

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*|(?!//)[-+*/(),])
  | (?P<other>//|==|!=|<=|>=|<<|>>|:=|\S))""", re.VERBOSE)


class ExpressionError(ValueError):
    """An expression the command line does not accept."""


def shown(expression: str, most: int = 60) -> str:
    """The expression quoted for a one-line message, shortened when long."""
    if len(expression) <= most:
        return repr(expression)
    return f"{expression[:most - 15] + ' … ' + expression[-10:]!r} ({len(expression)} characters)"


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, column) for each token, then ('end', '', column)."""
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:  # only whitespace is left
            yield "end", "", len(text) + 1
            return
        kind = m.lastgroup
        assert kind is not None
        yield kind, m.group(kind), m.start(kind) + 1
        pos = m.end()


def _short(token: str, most: int = 20) -> str:
    return token if len(token) <= most else token[:most] + "…"


def _number(token: str, where: str) -> float:
    # Past 4300 digits int() refuses a literal with a message about its own limit; any
    # integer above 400 digits overflows a float anyway, so say that.
    digits = token.replace("_", "").lstrip("0")
    if len(digits) > 400 and digits.isdigit():
        raise ExpressionError(f"number too large for a float: {_short(token)} "
                              f"({len(digits)} digits) {where}")
    try:
        value = ast.literal_eval(token)  # one literal, Python's own number syntax
    except (SyntaxError, ValueError):
        raise ExpressionError(f"not a number: {_short(token)!r} {where}") from None
    if isinstance(value, complex):
        raise ExpressionError(f"not allowed in an expression: {_short(token)!r} {where} "
                              f"(complex numbers; {ALLOWED})")
    try:
        return float(value)
    except OverflowError:
        raise ExpressionError(f"number too large for a float: {_short(token)} {where}") from None


def _parse(text: str, arity: Mapping[str, int]) -> list[tuple[Any, ...]]:
    """The expression in postfix order: ('number', value), ('name', name), ('unary', sign),
    ('binary', symbol, column), ('call', name, argument count, column)."""
    tokens = list(_tokens(text))
    out: list[tuple[Any, ...]] = []
    # Operators ('unary' or 'binary', symbol, column) and open brackets
    # ['(' or 'call', function name, column, arguments so far].
    stack: list[Any] = []
    operand = True  # is an operand expected next?
    i = 0

    def at(column: int) -> str:
        return "at the end" if column > len(text) else f"at column {column}"

    def cannot_parse(detail: str) -> ExpressionError:
        return ExpressionError(f"cannot parse {shown(text)}: {detail}")

    def not_allowed(token: str, column: int) -> ExpressionError:
        return ExpressionError(f"not allowed in an expression: {token!r} {at(column)} ({ALLOWED})")

    def check_argument(name: str) -> None:
        """At the start of a call's argument: no *args, **kwargs or name=value."""
        kind, token, _ = tokens[i]
        if token in ("*", "**") or (kind == "name" and tokens[i + 1][1] == "="):
            raise ExpressionError(f"{name}() takes positional arguments only")

    while True:
        kind, token, column = tokens[i]
        i += 1
        if operand:
            if kind == "number":
                out.append(("number", _number(token, at(column))))
                operand = False
            elif kind == "name" and not keyword.iskeyword(token):
                if tokens[i][1] != "(":
                    out.append(("name", token))
                    operand = False
                    continue
                if token not in arity:
                    close = difflib.get_close_matches(token, arity, n=3)
                    hint = f"did you mean {' or '.join(close)}? " if close else ""
                    raise ExpressionError(f"not a tapegrad op: {_short(token)!r}; {hint}"
                                          "the ops: tapegrad.ops(), docs/ops.md")
                i += 1
                if tokens[i][1] == ")":  # no arguments
                    i += 1
                    out.append(("call", token, 0, column))
                    operand = False
                else:
                    check_argument(token)
                    stack.append(["call", token, column, 0])
            elif token == "(":
                stack.append(["(", "", column, 0])
            elif token in ("-", "+"):
                stack.append(("unary", token, column))
            elif token == ")" and stack and stack[-1][0] == "call" and tokens[i - 2][1] == ",":
                _, name, start, count = stack.pop()  # a trailing comma, as in f(x,)
                out.append(("call", name, count, start))
                operand = False
            elif kind == "end":
                raise cannot_parse("the expression is empty" if not out and not stack else
                                   f"it ends after {tokens[i - 2][1]!r}")
            elif kind in ("name", "other"):
                raise not_allowed(token, column)
            else:
                raise cannot_parse(f"expected a number, a name or '(' {at(column)}, "
                                   f"found {token!r}")
            continue

        if token in BINARY:
            mine = PRECEDENCE[token]
            while stack and stack[-1][0] in ("unary", "binary"):
                top = PRECEDENCE["unary" if stack[-1][0] == "unary" else stack[-1][1]]
                if top < mine or (top == mine and token == "**"):
                    break
                out.append(stack.pop())
            stack.append(("binary", token, column))
            operand = True
            continue
        if kind == "other" or (kind == "name" and keyword.iskeyword(token)):
            raise not_allowed(token, column)
        if kind != "end" and token not in (")", ","):
            raise cannot_parse(f"expected an operator {at(column)}, found {_short(token)!r}")
        while stack and stack[-1][0] in ("unary", "binary"):
            out.append(stack.pop())
        if kind == "end":
            if stack:
                raise cannot_parse(f"the '(' at column {stack[-1][2]} is never closed")
            return out
        if not stack:
            if token == ")":
                raise cannot_parse(f"the ')' {at(column)} closes nothing")
            raise not_allowed(token, column)  # a tuple
        if token == ")":
            bracket, name, start, count = stack.pop()
            if bracket == "call":
                out.append(("call", name, count + 1, start))
        elif stack[-1][0] == "(":
            raise not_allowed(token, column)  # a tuple
        else:
            stack[-1][3] += 1
            operand = True
            check_argument(stack[-1][1])


def evaluate(expression: str, variables: Mapping[str, Any], backend: ModuleType) -> Any:
    """Evaluate ``expression`` over ``variables`` with the backend's op functions: numbers,
    names, + - * / **, unary -/+, parentheses and calls of op functions (and ``where``).
    Numbers are Python floats, so an operation of two numbers follows Python's float
    arithmetic (``1/0`` is an error). Raises ExpressionError with a one-line message."""
    functions = {op: getattr(backend, op) for op, _ in backend.ops()}
    arity = dict(backend.ops())
    if hasattr(backend, "where"):
        functions["where"], arity["where"] = backend.where, 3
    postfix = _parse(expression, arity)

    def cannot(detail: str) -> ExpressionError:
        return ExpressionError(f"cannot evaluate {shown(expression)}: {detail}")

    values: list[Any] = []
    for item in postfix:
        kind = item[0]
        if kind == "number":
            values.append(item[1])
        elif kind == "name":
            name = item[1]
            if name in variables:
                values.append(variables[name])
            elif name in CONSTANTS:
                values.append(CONSTANTS[name])
            else:
                raise ExpressionError(
                    f"unknown name {_short(name)!r}: give it a value ({_short(name)}=1.5)"
                    + (" or call it, e.g. sin(x)" if name in functions else ""))
        elif kind == "unary":
            values[-1] = -values[-1] if item[1] == "-" else +values[-1]
        elif kind == "binary":
            b, a = values.pop(), values.pop()
            symbol = item[1]
            try:
                result = BINARY[symbol](a, b)
            except OverflowError:
                raise cannot(f"{fmt(a)} {symbol} {fmt(b)} is too large for a float") from None
            except (ArithmeticError, TypeError, ValueError) as err:
                raise cannot(str(err).partition("\n")[0]) from None
            if isinstance(result, complex):  # a negative number to a fractional power
                raise cannot(f"({fmt(a)}) {symbol} {fmt(b)} is not a real number")
            values.append(result)
        else:
            _, name, count, _ = item
            if count != arity[name]:
                raise cannot(f"{name}() takes {arity[name]} argument"
                             f"{'s' if arity[name] != 1 else ''}, got {count}")
            args = values[len(values) - count:]
            del values[len(values) - count:]
            try:
                values.append(functions[name](*args))
            except (ArithmeticError, TypeError, ValueError) as err:
                raise cannot(str(err).partition("\n")[0]) from None
    assert len(values) == 1
    return values[0]
