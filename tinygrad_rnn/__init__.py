"""tinygrad_rnn: a small, exact autodiff on NumPy (reverse mode, and forward mode by tr.jvp), with the
Elman RNN and LSTM of the Deep Learning book (ch. 10) built from its ops, graph pictures, and
hand-derived BPTT to check against.
"""
import os as _os
import signal as _signal
import sys as _sys

if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "tinygrad-rnn":
    # the command is starting: Ctrl-C while NumPy loads is one line, as later (cli.console restores Ctrl-C)
    _signal.signal(_signal.SIGINT, lambda *_: (_sys.stderr.write("\ntinygrad-rnn: interrupted\n"), _os._exit(130)))
# Importing changes nothing in the user's process (no BLAS thread settings): the tinygrad-rnn command
# limits its own BLAS threads (cli.console).
# engine (nodes, backward, forward mode) <- function (the ops) <- tensor (Tensor and its functions)
from .engine import Function, checkpoint, detect_anomaly, grad, is_grad_enabled, jvp, no_grad, scope
from .tensor import Tensor, concat, ones, randn, stack, where, zeros
from .tracer import Program, trace
from . import analysis, check, func, manual, nn, viz  # tr.nn after `import tinygrad_rnn as tr`, as torch.nn

__all__ = ["Tensor", "Function", "concat", "stack", "where", "no_grad", "scope", "detect_anomaly",
           "is_grad_enabled", "grad", "zeros", "ones", "randn", "jvp", "checkpoint", "func", "trace", "Program", "nn", "manual",
           "check", "viz", "analysis"]
__version__ = "0.1.0"
