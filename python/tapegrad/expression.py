"""The command line's expressions: ``x**2 + x*y``, ``sigmoid(w*x)``, evaluated on a
backend's Vars without eval()."""
from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["ExpressionError", "evaluate"]


class ExpressionError(ValueError):
    """An expression the command line does not accept."""


def evaluate(expression: str, variables: Mapping[str, Any], backend: ModuleType) -> Any:
    """Evaluate ``expression`` over ``variables`` with the backend's op functions, by
    walking its syntax tree: numbers, names, + - * / **, unary -/+, and calls of op
    functions only. Nothing is passed to eval()."""
    functions = {op: getattr(backend, op) for op, _ in backend.ops()}
    if hasattr(backend, "where"):
        functions["where"] = backend.where
    constants = {"pi": math.pi, "e": math.e}
    binary = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.Pow: lambda a, b: a ** b}
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as err:
        raise ExpressionError(f"cannot parse {expression!r}: {err}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in variables:
                return variables[node.id]
            if node.id in constants:
                return constants[node.id]
            raise ExpressionError(
                f"unknown name {node.id!r}: give it a value ({node.id}=1.5)"
                + (" or call it, e.g. sin(x)" if node.id in functions else ""))
        if isinstance(node, ast.BinOp) and type(node.op) in binary:
            return binary[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in functions:
                raise ExpressionError(
                    f"not a tapegrad op: {ast.unparse(node.func)!r}; "
                    f"the functions are: {', '.join(sorted(functions))}")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"{node.func.id}() takes positional arguments only")
            return functions[node.func.id](*[ev(a) for a in node.args])
        raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r} "
                              "(use numbers, variables, + - * / **, and op functions)")

    try:
        return ev(tree.body)
    except ExpressionError:
        raise
    except (ArithmeticError, TypeError, ValueError, RecursionError) as err:
        raise ExpressionError(f"cannot evaluate {expression!r}: {err}") from None
