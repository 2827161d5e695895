"""Gradient clipping in place: by value (min-char-rnn clips every entry to [-5, 5]) or by global norm (PyTorch's)."""
from __future__ import annotations

import numpy as np

from .module import Params, _param_list

__all__ = ["clip_grad_value", "clip_grad_norm"]

def _grads(params: Params) -> list:
    return [p.grad for p in _param_list(params) if p.grad is not None]


def clip_grad_value(params: Params, clip: float) -> None:
    """Clip every gradient entry to [-clip, clip], in place."""
    if not clip > 0:
        raise ValueError(f"clip_grad_value: clip must be positive, got {clip}")
    for g in _grads(params):
        np.clip(g, -clip, clip, out=g)


def clip_grad_norm(params: Params, max_norm: float) -> float:
    """Scale all gradients in place so their joint L2 norm is at most max_norm; returns the norm before."""
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    grads = _grads(params)
    total = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
    coef = max_norm / (total + 1e-6)  # PyTorch's small constant keeps a zero norm from dividing by 0
    if coef < 1:
        for g in grads:
            g *= coef
    return total
