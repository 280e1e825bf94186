"""The _core type stub lists every op of the table, as a function and as a Var method."""
import ast
import importlib
import pathlib

import pytest

core = importlib.import_module("tapegrad._core")
STUB = pathlib.Path(importlib.import_module("tapegrad").__file__).with_name("_core.pyi")
TREE = ast.parse(STUB.read_text())
FUNCTIONS = {n.name: n for n in TREE.body if isinstance(n, ast.FunctionDef)}
VAR = next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == "Var")
METHODS = {n.name: n for n in VAR.body if isinstance(n, ast.FunctionDef)}


def positional(fn):
    return [a.arg for a in fn.args.posonlyargs + fn.args.args]


@pytest.mark.parametrize("op, arity", core.ops(), ids=[op for op, _ in core.ops()])
def test_every_op_has_a_stub_function_and_method(op, arity):
    assert op in FUNCTIONS, f"add `def {op}(...)` to {STUB.name}"
    assert len(positional(FUNCTIONS[op])) == arity
    assert op in METHODS, f"add `def {op}(self, ...)` to class Var in {STUB.name}"
    assert len(positional(METHODS[op])) == arity  # self plus arity - 1 operands


def test_stub_names_exist_in_the_module():
    for name in FUNCTIONS:
        assert hasattr(core, name), f"{STUB.name} declares {name}, which _core lacks"
    for name in METHODS:
        assert hasattr(core.Var, name), f"{STUB.name} declares Var.{name}, which Var lacks"
