"""tinygrad_rnn: a small, exact reverse-mode autodiff on NumPy, with the Elman RNN and LSTM of the
Deep Learning book (ch. 10) built from its ops, graph pictures, and hand-derived BPTT to check against.
"""
from .tensor import Function, Tensor, detect_anomaly, is_grad_enabled, no_grad, ones, randn, scope, zeros
from .function import concat, stack, where

__all__ = ["Tensor", "Function", "concat", "stack", "where", "no_grad", "scope", "detect_anomaly",
           "is_grad_enabled", "zeros", "ones", "randn"]
__version__ = "0.1.0"
