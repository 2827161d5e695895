"""Fused time steps for CharRNN(fused=True): one graph node per step whose backward is the hand derivation.

The forward and backward of each node are manual's own step functions (manual/rnn.py, lstm.py, gru.py), the
code that the checks prove equal to autodiff; here it becomes the fast path. An LSTM step carries its
state as one array z = [h; s] (..., 2H), so that a step stays one node with one output. Each step writes
its output into row t of one array (T, ..., width), which StackRows then hands on without a copy.
"""
from __future__ import annotations

import numpy as np

from ..manual.gru import _gru_step, _gru_step_back
from ..manual.lstm import _lstm_step, _lstm_step_back
from ..manual.rnn import _rnn_step, _rnn_step_back
from ..tensor import Function, OuterGrad, SparseGrad

__all__ = ["RNNStep", "LSTMStep", "GRUStep", "StackRows"]


def _bias_grad(da: np.ndarray) -> np.ndarray:
    """A bias's gradient: da itself for one sequence, summed over the rows of a batch."""
    return da if da.ndim == 1 else da.sum(axis=0)


class RNNStep(Function):
    """h_t = tanh(W_xh[:, x_t] + W_hh h_{t-1} + b_h);  with dhraw = (1 - h_t^2) * g:
    dL/dW_xh[:, x_t] = dhraw,  dL/dW_hh = dhraw h_{t-1}^T,  dL/db_h = dhraw,  dL/dh_{t-1} = W_hh^T dhraw"""
    __slots__ = ("idx",)

    @staticmethod
    def forward(ctx, W_xh, W_hh, b_h, h_prev, idx=None, out=None):
        ctx.idx = idx
        out[...] = _rnn_step(W_xh[:, idx].T, h_prev, W_hh, b_h)  # x_t one-hot: a column gather
        ctx.save_for_backward(out, h_prev, W_hh)
        return out

    @staticmethod
    def backward(ctx, g):
        h, h_prev, W_hh = ctx.saved_tensors
        dhraw, dh_next = _rnn_step_back(g, h, W_hh)
        return (SparseGrad((slice(None), ctx.idx), dhraw.T), OuterGrad(dhraw, h_prev), _bias_grad(dhraw),
                dh_next if ctx.needs_input_grad[3] else None)


class LSTMStep(Function):
    """z_t = [h_t; s_t] from z_{t-1} = [h_{t-1}; s_{t-1}]: a = W_x[:, x_t] + W_h h_{t-1} + b, gates i, f, g, o,
    s_t = f * s_{t-1} + i * g, h_t = o * tanh(s_t);  dL/da from manual's step back (lstm_bptt's equations):
    dL/dW_x[:, x_t] = da,  dL/dW_h = da h_{t-1}^T,  dL/db = da,  dL/dz_{t-1} = [W_h^T da; ds * f]"""
    __slots__ = ("idx", "cell_input")

    @staticmethod
    def forward(ctx, W_x, W_h, b, z_prev, idx=None, cell_input="tanh", out=None):
        H = W_h.shape[1]
        ctx.idx, ctx.cell_input = idx, cell_input
        gates, out[..., H:], out[..., :H] = _lstm_step(W_x[:, idx].T, z_prev[..., :H], z_prev[..., H:], W_h, b,
                                                       cell_input)
        ctx.save_for_backward(gates, out, z_prev, W_h)  # gates and states: what the backward reads
        return out

    @staticmethod
    def backward(ctx, g):
        gates, z, z_prev, W_h = ctx.saved_tensors
        H = W_h.shape[1]
        h_prev = z_prev[..., :H]
        da, dh_prev, ds_prev = _lstm_step_back(g[..., :H], g[..., H:], gates, z[..., H:], z_prev[..., H:],
                                               W_h, ctx.cell_input)
        dz_prev = np.concatenate([dh_prev, ds_prev], axis=-1) if ctx.needs_input_grad[3] else None
        return SparseGrad((slice(None), ctx.idx), da.T), OuterGrad(da, h_prev), _bias_grad(da), dz_prev


class GRUStep(Function):
    """h_t from h_{t-1}: ax = W_x[:, x_t] + b_x, ah = W_h h_{t-1} + b_h, gates r, z, candidate n (PyTorch's GRU);
    dax, dah and dh_next from manual's step back (gru_bptt's equations):
    dL/dW_x[:, x_t] = dax,  dL/db_x = dax,  dL/dW_h = dah h_{t-1}^T,  dL/db_h = dah,  dL/dh_{t-1} = dh_next"""
    __slots__ = ("idx",)

    @staticmethod
    def forward(ctx, W_x, W_h, b_x, b_h, h_prev, idx=None, out=None):
        ctx.idx = idx
        r, z, n, ah_n, out[...] = _gru_step(W_x[:, idx].T + b_x, h_prev, W_h, b_h)
        ctx.save_for_backward(r, z, n, ah_n, h_prev, W_h)
        return out

    @staticmethod
    def backward(ctx, g):
        r, z, n, ah_n, h_prev, W_h = ctx.saved_tensors
        dax, dah, dh_prev = _gru_step_back(g, r, z, n, ah_n, h_prev, W_h)
        return (SparseGrad((slice(None), ctx.idx), dax.T), OuterGrad(dah, h_prev), _bias_grad(dax), _bias_grad(dah),
                dh_prev if ctx.needs_input_grad[4] else None)


class StackRows(Function):
    """y = stack(xs) (T, ...) into `out`, where a step's x_t already written into row t is not copied;
    dL/dx_t = g[t]"""
    __slots__ = ()

    @staticmethod
    def forward(ctx, *xs, out=None):
        for t, x in enumerate(xs):
            if x.base is not out:  # made elsewhere (the last state, which outlives the sequence): copied in
                out[t] = x
        return out

    @staticmethod
    def backward(ctx, g):
        return tuple(g)
