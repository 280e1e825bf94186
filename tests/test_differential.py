"""The C++ tape against the pure-Python reference on random expression DAGs.

Few leaves and operands drawn from every earlier node, so leaves and intermediates are
shared (reuse is where accumulation bugs live); constants on either side; each op called
as a function, a method or an operator; several backward() calls from different roots.
"""
import importlib

from helpers import programs, reachable, run, same
from hypothesis import given, settings
from hypothesis import strategies as st

ref = importlib.import_module("tapegrad.reference")
cpp = importlib.import_module("tapegrad")


@settings(max_examples=400)
@given(data=st.data())
def test_cpp_matches_reference(data):
    program = data.draw(programs(ref.ops()), label="program")
    n = len(program[0]) + len(program[1])
    roots = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3), label="roots")
    roots.append(n - 1)
    a, b = run(program, ref), run(program, cpp)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.op == v.op
        assert same(u.value, v.value, rel=1e-12), (i, u, v)
    n_leaves = len(program[0])
    for root in roots:
        a[root].backward()
        b[root].backward()
        # Leaves accumulate over the calls; nodes in the root's subgraph hold its adjoints.
        for i in sorted(set(range(n_leaves)) | reachable(program, root)):
            assert same(a[i].grad, b[i].grad, rel=1e-9), (root, i, a[i], b[i])
