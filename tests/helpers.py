"""One-line gradient tests, after HIPS autograd's check_grads: `assert_grads_match(fn, *arrays)`,
and `numeric_grads`, the plain central differences the engine's own tests compare against."""
from typing import Callable

import numpy as np

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, check, nn

__all__ = ["assert_grads_match", "numeric_grads", "graph_nodes", "WrongSin", "MGU"]


def assert_grads_match(fn: Callable[..., Tensor], *arrays, eps: float = 1e-6, atol: float = 1e-5,
                       rtol: float = 1e-3) -> None:
    """gradcheck fn on float64 Tensors made from arrays, all requiring grad (named x0, x1, ...).

    Example: assert_grads_match(lambda x, W: (x @ W.T).tanh(), rng.standard_normal((3, 4)),
    rng.standard_normal((5, 4))). Non-differentiable arguments (indices, targets) go in fn's closure.
    Raises check.GradcheckError, naming the input, on the worst mismatching Jacobian entry.
    """
    inputs = tuple(Tensor(np.array(a, dtype=np.float64), requires_grad=True, name=f"x{k}")
                   for k, a in enumerate(arrays))
    assert check.gradcheck(fn, inputs, eps=eps, atol=atol, rtol=rtol)


def numeric_grads(f: Callable[[], float], arrays, eps: float = 1e-6) -> list:
    """Central differences of the scalar f() w.r.t. every entry of each array, perturbed in place.

    NumPy only (no engine backward involved), so it is an independent oracle for the engine's tests.
    """
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = f()
            a[i] = old - eps
            down = f()
            a[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def graph_nodes(root: Tensor) -> list:
    """The op nodes (grad_fn) of the graph behind root, each once (the engine's one graph walk)."""
    return [v for v in tr.engine.walk(root) if isinstance(v, tr.Function)]


class WrongSin(tr.Function):
    """y = sin(a) with a deliberately wrong backward, g * sin(a) for g * cos(a): the checks must catch it."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.sin(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return (g * np.sin(a),)


class MGU(nn.Module):
    """A user-written cell, the minimal gated unit (Zhou et al. 2016):
    f = σ(W_f x + U_f h + b_f), h' = (1 - f) h + f tanh(W x + U (f h) + b)."""

    def __init__(self, input_size, hidden_size, rng):
        self.hidden_size = hidden_size
        k = 1 / np.sqrt(hidden_size)

        def param(*shape):
            return Tensor(rng.uniform(-k, k, shape), requires_grad=True)

        self.W_f, self.U_f, self.b_f = param(hidden_size, input_size), param(hidden_size, hidden_size), param(hidden_size)
        self.W, self.U, self.b = param(hidden_size, input_size), param(hidden_size, hidden_size), param(hidden_size)

    def forward(self, x, h):
        if h is None:
            h = Tensor(np.zeros(x.shape[:-1] + (self.hidden_size,)))
        f = (x @ self.W_f.T + h @ self.U_f.T + self.b_f).sigmoid()
        n = (x @ self.W.T + (f * h) @ self.U.T + self.b).tanh()
        return (1 - f) * h + f * n
