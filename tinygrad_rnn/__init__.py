"""tinygrad_rnn: a small, exact autodiff on NumPy (reverse mode, and forward mode by tr.jvp), with the
Elman RNN and LSTM of the Deep Learning book (ch. 10) built from its ops, graph pictures, and
hand-derived BPTT to check against.
"""
import os

# One BLAS thread unless the user chose otherwise: on the small matrices of an RNN step, BLAS
# threads only fight over the cores (an LSTM trains 5-13x slower with them on 2 cores).
# Takes effect when tinygrad_rnn is imported before NumPy, as the tinygrad-rnn command does.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# imports after the BLAS setting; tensor before function, whose ops it binds at its end
from .tensor import (Function, Tensor, detect_anomaly, is_grad_enabled, jvp, no_grad, ones,  # noqa: E402
                     randn, scope, zeros)
from .function import concat, stack, where  # noqa: E402
from . import analysis, check, manual, nn, viz  # noqa: E402  (tr.nn after `import tinygrad_rnn as tr`, as torch.nn)

__all__ = ["Tensor", "Function", "concat", "stack", "where", "no_grad", "scope", "detect_anomaly",
           "is_grad_enabled", "zeros", "ones", "randn", "jvp", "nn", "manual", "check", "viz", "analysis"]
__version__ = "0.1.0"
