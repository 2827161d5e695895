"""tinygrad_rnn: a small, exact autodiff on NumPy (reverse mode, and forward mode by tr.jvp), with the
Elman RNN and LSTM of the Deep Learning book (ch. 10) built from its ops, graph pictures, and
hand-derived BPTT to check against.
"""
# Importing changes nothing in the user's process (no BLAS thread settings): the tinygrad-rnn command
# limits its own BLAS threads (cli.console).
# tensor before function, whose ops it binds at its end
from .tensor import (Function, Tensor, detect_anomaly, is_grad_enabled, jvp, no_grad, ones, randn, scope,
                     zeros)
from .function import concat, stack, where
from . import analysis, check, manual, nn, viz  # tr.nn after `import tinygrad_rnn as tr`, as torch.nn

__all__ = ["Tensor", "Function", "concat", "stack", "where", "no_grad", "scope", "detect_anomaly",
           "is_grad_enabled", "zeros", "ones", "randn", "jvp", "nn", "manual", "check", "viz", "analysis"]
__version__ = "0.1.0"
