"""tapegrad.nn: neural networks as computational graphs, micrograd-style.

    import tapegrad as tg
    X, y = tg.nn.make_moons(100)                          # y in {-1, +1}
    model = tg.nn.MLP(2, [16, 16, 1], seed=1337)

    def loss_fn(model, X, y):
        scores = [model(x) for x in X]
        return tg.nn.hinge_loss(scores, y) + 1e-4 * tg.nn.l2_penalty(model.parameters())

    # eager: the graph is rebuilt every step, as in micrograd
    opt = tg.nn.SGD(model.parameters(), lr=0.1)
    opt.zero_grad(); loss_fn(model, X, y).backward(); opt.step()

    # traced: recorded once, replayed in C++ every step (tapegrad.nn.traced)
    theta = tg.nn.get_parameters(model)
    loss = tg.nn.compile_loss(model, loss_fn, X, y)
    opt = tg.nn.SGD(theta, lr=0.1)
    value, grad = loss.value_and_grad(theta); opt.step(grad)

Modules take ``backend=tapegrad.reference`` to build the same network (same ``seed``,
same initial values) on the pure-Python reference backend.
"""
from .data import make_moons
from .layers import ACTIVATIONS, MLP, Layer, Module, Neuron, relu, replace_parameters, sigmoid, tanh
from .losses import (
    accuracy,
    bce_with_logits,
    binary_cross_entropy_with_logits,
    hinge_loss,
    l2_penalty,
    mse_loss,
    svm_loss,
)
from .optim import SGD, Adam, Optimizer
from .traced import (
    CompiledLoss,
    CompiledModel,
    PointwiseLoss,
    compile_loss,
    compile_model,
    compile_pointwise_loss,
    get_parameters,
    set_parameters,
)

__all__ = ["ACTIVATIONS", "MLP", "SGD", "Adam", "CompiledLoss", "CompiledModel", "Layer",
           "Module", "Neuron", "Optimizer", "accuracy", "bce_with_logits",
           "binary_cross_entropy_with_logits", "compile_loss", "compile_model",
           "compile_pointwise_loss", "PointwiseLoss",
           "get_parameters", "hinge_loss", "l2_penalty", "make_moons", "mse_loss", "relu",
           "replace_parameters", "set_parameters", "sigmoid", "svm_loss", "tanh"]
