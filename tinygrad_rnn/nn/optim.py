"""Optimizers that update parameters in place: SGD (momentum), Adagrad (min-char-rnn's), Adam (PyTorch's).

Each keeps one buffer per parameter; state_dict() holds only arrays and numbers ("mem.0", "step"),
so it saves to an .npz without pickle, and load_state_dict() resumes training bit-identically.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tensor import Tensor
from .module import Params, _param_list

__all__ = ["SGD", "Adagrad", "Adam"]

# hyperparameter -> (test, what it must be); checked on construction and on load_state_dict
_RULES = {"lr": (lambda v: math.isfinite(v) and v > 0, "positive"),
          "eps": (lambda v: math.isfinite(v) and v > 0, "positive"),
          "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
          "beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
          "beta2": (lambda v: 0 <= v < 1, "in [0, 1)")}


def _check_hyper(owner: str, values: dict[str, float]) -> None:
    bad = [f"{k} must be {what}, got {values[k]}" for k, (ok, what) in _RULES.items()
           if k in values and not ok(values[k])]
    if bad:
        raise ValueError(f"{owner}: {'; '.join(bad)}")


class Optimizer:
    """Base: holds the parameters and per-parameter buffers (named in `_buffers`)."""
    _buffers: tuple = ()
    _nonnegative: tuple = ()  # buffers of sums of squares: a negative entry is corruption
    _hyper: tuple = ("lr",)

    def __init__(self, params: Params, lr: float) -> None:
        self.params = _param_list(params)
        name = type(self).__name__
        if not self.params:
            raise ValueError(f"{name}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise ValueError(f"{name}: parameter {i} is not a Tensor with requires_grad=True")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter appears more than once")
        self.lr = float(lr)
        _check_hyper(name, {h: getattr(self, h) for h in self._hyper})
        for buf in self._buffers:
            setattr(self, buf, [np.zeros_like(p.data) for p in self.params])
        self.steps = np.zeros(len(self.params), dtype=np.int64)  # updates so far, per parameter

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (.grad = None)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update each parameter that has a gradient, in place."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.steps[i] += 1
                self._update(i, p.data, p.grad)
                p._bump_version()  # a graph made before this step can no longer be differentiated

    def _update(self, i: int, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters (numbers), per-parameter step counts ("step") and buffers ("<buffer>.<i>")."""
        state: dict[str, Any] = {h: getattr(self, h) for h in self._hyper}
        state["step"] = self.steps.copy()
        for buf in self._buffers:
            state.update({f"{buf}.{i}": a.copy() for i, a in enumerate(getattr(self, buf))})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned (also after an .npz round trip), hyperparameters included."""
        want = self.state_dict()
        problems = [f"{k} (missing)" for k in want if k not in state]
        problems += [f"{k} (unexpected)" for k in state if k not in want]
        for k, mine in want.items():
            if k not in state:
                continue
            got = np.asarray(state[k])
            like = np.asarray(mine)
            if got.shape != like.shape:
                problems.append(f"{k} (shape {got.shape}, expected {like.shape})")
            elif isinstance(mine, np.ndarray) and got.dtype != like.dtype:
                problems.append(f"{k} (dtype {got.dtype}, expected {like.dtype})")
            elif k == "step" and (got < 0).any():
                problems.append(f"step (negative counts {got.tolist()})")
            elif isinstance(mine, np.ndarray) and not np.isfinite(got).all():
                problems.append(f"{k} (holds NaN or inf)")
            elif k.split(".")[0] in self._nonnegative and (got < 0).any():
                problems.append(f"{k} (negative entries in a sum of squares)")
            elif k in _RULES and not _RULES[k][0](float(got)):
                problems.append(f"{k} (must be {_RULES[k][1]}, got {float(got)})")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: bad entries: {', '.join(problems)}")
        for k, mine in want.items():
            if k == "step":
                self.steps[...] = state[k]
            elif isinstance(mine, np.ndarray):
                buf, i = k.rsplit(".", 1)
                getattr(self, buf)[int(i)][...] = state[k]
            else:
                setattr(self, k, type(mine)(np.asarray(state[k])))


class SGD(Optimizer):
    """v = momentum * v + g;  w -= lr * v  (PyTorch's SGD without dampening; momentum=0 is plain SGD)."""
    _buffers = ("velocity",)
    _hyper = ("lr", "momentum")

    def __init__(self, params: Params, lr: float, momentum: float = 0.0) -> None:
        self.momentum = float(momentum)
        super().__init__(params, lr)

    def _update(self, i, w, g):
        if self.momentum:
            v = self.velocity[i]
            v *= self.momentum
            v += g
            g = v
        w -= self.lr * g


class Adagrad(Optimizer):
    """mem += g * g;  w -= lr * g / sqrt(mem + eps)  (exactly min-char-rnn's update)."""
    _buffers = ("mem",)
    _nonnegative = ("mem",)
    _hyper = ("lr", "eps")

    def __init__(self, params: Params, lr: float, eps: float = 1e-8) -> None:
        self.eps = float(eps)
        super().__init__(params, lr)

    def _update(self, i, w, g):
        mem = self.mem[i]
        mem += g * g
        w += -self.lr * g / np.sqrt(mem + self.eps)


class Adam(Optimizer):
    """m, v = running means of g and g*g; w -= lr * m_hat / (sqrt(v_hat) + eps)  (bias-corrected, as PyTorch)."""
    _buffers = ("m", "v")
    _nonnegative = ("v",)
    _hyper = ("lr", "beta1", "beta2", "eps")

    def __init__(self, params: Params, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        super().__init__(params, lr)

    def _update(self, i, w, g):
        t = int(self.steps[i])  # counted per parameter, as PyTorch does
        m, v = self.m[i], self.v[i]
        m += (1 - self.beta1) * (g - m)
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        step_size = self.lr / (1 - self.beta1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - self.beta2 ** t) + self.eps
        w -= step_size * (m / denom)
