"""Hand-derived gradients in pure NumPy, to read beside min-char-rnn's derivation and the Deep Learning
book, and to check autodiff against.

rnn: BPTT as in min-char-rnn (optionally truncated); lstm, gru: BPTT for those cells; rtrl: the RNN's
gradient in forward mode; softmax: its Jacobian. Imports NumPy only, never the engine.
"""
from .gru import gru_bptt
from .lstm import lstm_bptt
from .rnn import rnn_bptt
from .rtrl import rnn_rtrl
from .softmax import softmax_jacobian

__all__ = ["rnn_bptt", "lstm_bptt", "gru_bptt", "rnn_rtrl", "softmax_jacobian"]
