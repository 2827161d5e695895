"""One-line gradient tests, after HIPS autograd's check_grads: `assert_grads_match(fn, *arrays)`."""
from typing import Callable

import numpy as np

from tinygrad_rnn import Tensor, check

__all__ = ["assert_grads_match"]


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
