"""tinygrad_rnn.nn: modules (Linear, RNNCell, LSTMCell, GRUCell, CharRNN, NeuralTrigram), losses, optimizers
and clipping.

Translation table, once: book (ch. 10) U = W_xh, W = W_hh, b = b_h, V = W_hy = out.W, c = b_y = out.b;
PyTorch weight_ih = W_xh (LSTM, GRU: W_x), weight_hh = W_hh (LSTM, GRU: W_h), bias_ih + bias_hh = b_h
(LSTM: b; a GRU keeps both: bias_ih = b_x, bias_hh = b_h).
"""
from . import optim
from .cells import GRUCell, LSTMCell, RNNCell
from .charrnn import CharRNN, detach_state
from .clip import clip_grad_norm, clip_grad_value
from .layers import Linear
from .losses import binary_cross_entropy, cross_entropy, mse
from .memory import MemoryBudget
from .module import Module
from .trigram import NeuralTrigram

__all__ = ["Module", "Linear", "RNNCell", "LSTMCell", "GRUCell", "CharRNN", "detach_state", "NeuralTrigram",
           "cross_entropy", "binary_cross_entropy", "mse", "MemoryBudget",
           "clip_grad_value", "clip_grad_norm", "optim"]
