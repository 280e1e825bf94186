"""The tutorial's worked examples (C3, "Computational Graphs"), exactly."""


def test_expression_tree_forward_and_backward(backend):
    # f(x, y) = x*x + x*y at x = 3, y = 4
    x, y = backend.Var(3.0), backend.Var(4.0)
    left, right = x * x, x * y
    f = left + right
    assert (left.value, right.value, f.value) == (9.0, 12.0, 21.0)
    assert (left.op, right.op, f.op) == ("mul", "mul", "add")

    f.backward()
    assert f.grad == 1.0  # the root's seed
    assert left.grad == 1.0 and right.grad == 1.0  # addition passes the gradient through
    assert x.grad == 10.0  # 2x + y
    assert y.grad == 3.0  # x


def test_shared_leaf_accumulates_each_use(backend):
    # x appears three times as a leaf: its gradient is 3 + 3 + 4.
    x, y = backend.Var(3.0), backend.Var(4.0)
    left, right = x * x, x * y
    f = left + right
    uses = [p.id for node in (left, right) for p in node.inputs if p.id == x.id]
    assert len(uses) == 3

    left.backward()  # x*x alone: 3 + 3
    from_left = x.grad
    x.zero_grad()
    right.backward()  # x*y alone: 4
    from_right = x.grad
    x.zero_grad()
    f.backward()
    assert (from_left, from_right) == (6.0, 4.0)
    assert x.grad == from_left + from_right == 10.0


def test_sigmoid_neuron(backend):
    # f(x, w) = sigmoid(w * x) at x = 2, w = 0.5
    w, x = backend.Var(0.5), backend.Var(2.0)
    z = w * x
    f = z.sigmoid()
    assert z.value == 1.0
    assert round(f.value, 4) == 0.7311
    assert round(1 - f.value, 4) == 0.2689

    f.backward()
    assert round(z.grad, 4) == 0.1966  # sigma(1) * (1 - sigma(1))
    assert round(w.grad, 4) == 0.3932  # 0.1966 * x
    assert round(x.grad, 4) == 0.0983  # 0.1966 * w
    assert w.grad == z.grad * 2.0 and x.grad == z.grad * 0.5


def test_pytorch_snippet(backend):
    # z = x * y; z.backward(); x.grad is y and y.grad is x
    x, y = backend.Var(3.0), backend.Var(4.0)
    z = x * y
    z.backward()
    assert (x.grad, y.grad) == (4.0, 3.0)
