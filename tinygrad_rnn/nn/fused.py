"""Fused time steps for CharRNN(fused=True): one graph node per step whose backward is the hand derivation.

The forward and backward of each node are manual's own step functions (manual/rnn.py, lstm.py, gru.py), the
code that the checks prove equal to autodiff; here it becomes the fast path. An LSTM step carries its
state as one array z = [h; s] (..., 2H), so that a step stays one node with one output. Each step writes
its output into row t of one array (T, ..., width), which StackRows then hands on without a copy.
The RNN and LSTM steps of one sequence (or batch of them) share a _WeightSums: the weights' and the bias's
gradients are summed over the sequence a block of rows at a time and handed to the engine once, by step 0.
"""
from __future__ import annotations

import math

import numpy as np

from ..engine import Function, OuterGrad, SparseGrad, _state
from ..function import _affine_tangent, _fill, _times, _total, scatter_add, unstack
from ..manual.gru import _gru_step, _gru_step_back
from ..manual.lstm import _lstm_step, _lstm_step_back
from ..manual.rnn import _rnn_step, _rnn_step_back
from .cells import _ONEHOT_MAX_V, _input_grad

__all__ = ["RNNStep", "LSTMStep", "GRUStep", "StackRows"]


def _bias_grad(da: np.ndarray) -> np.ndarray:
    """A bias's gradient: da itself for one sequence, summed over the rows of a batch."""
    return da if da.ndim == 1 else da.sum(axis=0)


class _WeightSums:
    """The weights' and bias's gradients of one sequence (or batch of them), sum_t da_t^T x_t, sum_t da_t^T h_{t-1}
    and sum_t da_t, summed as the steps' backward run (t = T-1 … 0) and handed out by step 0's. Each step copies its
    dL/da rows and h_{t-1} into buffers of _BLOCK_ROWS rows, and each full block is added with one matrix product per
    weight, so the engine gets one share per parameter instead of T to collect (a step's own work, next to it).
    The buffers go when step 0 has run (nothing of the forward is kept here). A new backward pass (the engine numbers
    them) starts afresh, zeroing the rows above its first step t in its block: a pass may start inside the sequence
    (backward from a state h_t) and may end before step 0 (tr.grad of a state). A step's t is its node's creation
    number less step 0's (the steps are made one after another), so the nodes keep no number (28 B a step)."""
    __slots__ = ("idx", "vocab", "per", "da", "h", "sums", "backward_pass", "seq0", "step_of")

    def __init__(self, idx: np.ndarray, vocab: int) -> None:
        self.idx, self.vocab = idx, vocab
        self.per = max(1, -(-_BLOCK_ROWS // math.prod(idx.shape[1:])))  # steps per block
        self.da = self.h = self.sums = self.backward_pass = self.seq0 = self.step_of = None

    def number(self, steps: list) -> None:
        """Learn each step's t from the step tensors z_0 … z_{T-1} just made (their nodes' creation numbers)."""
        first, last = steps[0]._ctx, steps[-1]._ctx
        if first is None:  # no graph (nothing requires grad): no backward
            return
        self.seq0 = first.seq
        if last.seq - first.seq != len(steps) - 1:  # another thread made nodes in between: number them one by one
            self.step_of = {z._ctx.seq: t for t, z in enumerate(steps)}  # by number: no node <-> sums cycle

    def put(self, ctx: Function, da: np.ndarray, h_prev: np.ndarray) -> tuple:
        """Store step ctx's da ([B,] G) and h_{t-1} ([B,] H); at t = 0 return (dL/dW_x, dL/dW_h, dL/db), each None
        if not needed."""
        t = ctx.seq - self.seq0 if self.step_of is None else self.step_of[ctx.seq]
        t0, need = t - t % self.per, ctx.needs_input_grad
        t1 = min(t0 + self.per, len(self.idx))
        if self.backward_pass != _state.backward_pass:  # the first step of this backward pass
            self.backward_pass = _state.backward_pass
            self.da = np.empty((self.per,) + da.shape, da.dtype)
            self.h = np.empty((self.per,) + h_prev.shape, da.dtype)
            self.da[t - t0 + 1:t1 - t0] = 0  # the steps above t have no gradient in this pass
            self.h[t - t0 + 1:t1 - t0] = 0
            self.sums = [None, None, None]
        self.da[t - t0], self.h[t - t0] = da, h_prev
        if t == t0:  # the block is complete: its rows into the sums
            rows = self.da[:t1 - t0].reshape(-1, da.shape[-1])
            if need[0] and self.vocab <= _ONEHOT_MAX_V:
                self._add(0, rows, np.eye(self.vocab, dtype=da.dtype)[self.idx[t0:t1].reshape(-1)])
            if need[1]:
                self._add(1, rows, self.h[:t1 - t0].reshape(-1, h_prev.shape[-1]))
            if need[2]:
                total = rows.sum(axis=0)
                self.sums[2] = total if self.sums[2] is None else self.sums[2] + total
        if t != 0:
            return None, None, None
        (gx, gh, gb), self.sums, self.da, self.h, self.backward_pass = self.sums, None, None, None, None
        return (*[None if g is None else (np.ascontiguousarray(g.T) if da.dtype == np.float64 else g)
                  for g in (gx, gh)], gb)

    def _add(self, k: int, u: np.ndarray, v: np.ndarray) -> None:
        """sums[k] += u^T v, kept as (v^T u) in float64: OpenBLAS computes that product 1.1-1.2x faster there
        (measured at 512 rows, G = 256-1024, D = 65-256), and the float32 one as u^T v; one transpose at the end."""
        term = np.dot(v.T, u) if u.dtype == np.float64 else np.dot(u.T, v)
        if self.sums[k] is None:
            self.sums[k] = term
        else:
            self.sums[k] += term


_OP_LEVEL = "use the op-level model, CharRNN(..., fused=False), to differentiate twice"
_BLOCK_ROWS = 512  # rows of dL/da summed in one product (as the engine does for OuterGrad terms)


def _fast(W_h: np.ndarray, W_hT) -> np.ndarray:
    """W_h for a step's h_{t-1} W_h^T: W_hT.T when the caller made W_hT, a row-major copy of W_h^T, once per
    sequence (the same values, but the product reads W_h^T row by row: measured up to 1.5x faster at B=32, H=256
    in float32, ~1.1x in float64, than through the transposed view of W_h)."""
    return W_h if W_hT is None else W_hT.T


def _gather_tangent(dW, idx):
    """The tangent of W[:, idx]^T (ColumnGather's rule): (K, H) for one idx, (K, B, H) for B of them."""
    return None if dW is None else np.moveaxis(dW[:, :, idx], 1, -1)


def _weight_grads(ctx: Function, da: np.ndarray, h_prev: np.ndarray) -> tuple:
    """(dL/dW_x, dL/dW_h, dL/db) of one step: its own terms, or (CharRNN) the whole sequence's sums at step 0."""
    if ctx.sums is None:
        return _input_grad(da, ctx.idx, ctx.vocab), OuterGrad(da, h_prev), _bias_grad(da)
    gx, gh, gb = ctx.sums.put(ctx, da, h_prev)
    if ctx.vocab > _ONEHOT_MAX_V and ctx.needs_input_grad[0]:  # a large vocabulary's columns: scattered per step
        gx = _input_grad(da, ctx.idx, ctx.vocab)
    return gx, gh, gb


class RNNStep(Function):
    """h_t = tanh(W_xh[:, x_t] + W_hh h_{t-1} + b_h);  with dhraw = (1 - h_t^2) * g:
    dL/dW_xh[:, x_t] = dhraw,  dL/dW_hh = dhraw h_{t-1}^T,  dL/db_h = dhraw,  dL/dh_{t-1} = W_hh^T dhraw;
    dh_t = (1 - h_t^2) * (dW_xh[:, x_t] + dW_hh h_{t-1} + W_hh dh_{t-1} + db_h)"""
    __slots__ = ("idx", "vocab", "sums")
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op
    create_graph_hint = _OP_LEVEL  # its backward is manual's ndarray code: not differentiated again

    @staticmethod
    def forward(ctx, W_xh, W_hh, b_h, h_prev, idx=None, out=None, W_hT=None, sums=None):
        ctx.idx, ctx.vocab, ctx.sums = idx, W_xh.shape[1], sums
        # x_t one-hot: a column gather; out: CharRNN's row t of all steps' outputs
        h = _rnn_step(W_xh[:, idx].T, h_prev, _fast(W_hh, W_hT), b_h, out=out)
        ctx.save_for_backward(h, h_prev, W_hh)
        return h

    @staticmethod
    def backward(ctx, g):
        h, h_prev, W_hh = ctx.saved_tensors
        dhraw, dh_next = _rnn_step_back(g, h, W_hh)
        return (*_weight_grads(ctx, dhraw, h_prev), dh_next if ctx.needs_input_grad[3] else None)

    @staticmethod
    def jvp(ctx, dW_xh, dW_hh, db_h, dh_prev):
        h, h_prev, W_hh = ctx.saved_tensors
        da = _affine_tangent(h_prev, W_hh, dh_prev, dW_hh, db_h, _gather_tangent(dW_xh, ctx.idx))
        return _times(da, 1 - h * h)


class LSTMStep(Function):
    """z_t = [h_t; s_t] from z_{t-1} = [h_{t-1}; s_{t-1}]: a = W_x[:, x_t] + W_h h_{t-1} + b, gates i, f, g, o,
    s_t = f * s_{t-1} + i * g, h_t = o * tanh(s_t);  dL/da from manual's step back (lstm_bptt's equations):
    dL/dW_x[:, x_t] = da,  dL/dW_h = da h_{t-1}^T,  dL/db = da,  dL/dz_{t-1} = [W_h^T da; ds * f];
    forward: da = dW_x[:, x_t] + dW_h h_{t-1} + W_h dh_{t-1} + db, each gate's tangent da * act'(a),
    ds_t = df * s_{t-1} + f * ds_{t-1} + di * g + i * dg,  dh_t = do * tanh(s_t) + o * (1 - tanh(s_t)^2) * ds_t"""
    __slots__ = ("idx", "vocab", "cell_input", "sums")
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op
    create_graph_hint = _OP_LEVEL  # its backward is manual's ndarray code: not differentiated again

    @staticmethod
    def forward(ctx, W_x, W_h, b, z_prev, idx=None, cell_input="tanh", out=None, W_hT=None, sums=None):
        H = W_h.shape[1]
        ctx.idx, ctx.vocab, ctx.cell_input, ctx.sums = idx, W_x.shape[1], cell_input, sums
        gates, s, h = _lstm_step(W_x[:, idx].T, z_prev[..., :H], z_prev[..., H:], _fast(W_h, W_hT), b, cell_input)
        z = np.empty(z_prev.shape, h.dtype) if out is None else out  # out: CharRNN's row t of all steps' outputs
        z[..., :H], z[..., H:] = h, s
        ctx.save_for_backward(gates, z, z_prev, W_h)  # gates and states: what the backward reads
        return z

    @staticmethod
    def backward(ctx, g):
        gates, z, z_prev, W_h = ctx.saved_tensors
        H = W_h.shape[1]
        h_prev = z_prev[..., :H]
        da, dh_prev, ds_prev = _lstm_step_back(g[..., :H], g[..., H:], gates, z[..., H:], z_prev[..., H:],
                                               W_h, ctx.cell_input)
        dz_prev = np.concatenate([dh_prev, ds_prev], axis=-1) if ctx.needs_input_grad[3] else None
        return (*_weight_grads(ctx, da, h_prev), dz_prev)

    @staticmethod
    def jvp(ctx, dW_x, dW_h, db, dz_prev):
        gates, z, z_prev, W_h = ctx.saved_tensors
        H = W_h.shape[1]
        dh_prev, ds_prev = (None, None) if dz_prev is None else (dz_prev[..., :H], dz_prev[..., H:])
        da = _affine_tangent(z_prev[..., :H], W_h, dh_prev, dW_h, db, _gather_tangent(dW_x, ctx.idx))
        slope = gates * (1 - gates)                   # σ'(a) = σ (1 - σ) for i, f, o
        if ctx.cell_input == "tanh":
            slope[..., 2 * H:3 * H] = 1 - gates[..., 2 * H:3 * H] ** 2  # tanh'(a) = 1 - g^2
        dgates = _times(da, slope)                    # (K, ..., 4H)
        i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
        di, df, dg, do = (dgates[..., k * H:(k + 1) * H] for k in range(4))
        s, s_prev = z[..., H:], z_prev[..., H:]
        ds = _total(df * s_prev + di * g + i * dg, _times(ds_prev, f))  # s = f * s_prev + i * g
        tanh_s = np.tanh(s)
        dh = do * tanh_s + o * (1 - tanh_s * tanh_s) * ds                # h = o * tanh(s)
        return np.concatenate([dh, ds], axis=-1)


class GRUStep(Function):
    """h_t from h_{t-1}: ax = W_x[:, x_t] + b_x, ah = W_h h_{t-1} + b_h, gates r, z, candidate n (PyTorch's GRU);
    dax, dah and dh_next from manual's step back (gru_bptt's equations):
    dL/dW_x[:, x_t] = dax,  dL/db_x = dax,  dL/dW_h = dah h_{t-1}^T,  dL/db_h = dah,  dL/dh_{t-1} = dh_next;
    forward: dax = dW_x[:, x_t] + db_x, dah = dW_h h_{t-1} + W_h dh_{t-1} + db_h, dr = r (1 - r) (dax_r + dah_r),
    dz likewise, dn = (1 - n^2) (dax_n + dr * ah_n + r * dah_n),  dh_t = dz (h_{t-1} - n) + (1 - z) dn + z dh_{t-1}"""
    __slots__ = ("idx", "vocab")
    batched_jvp = True  # takes tangents (K, *shape), as every built-in op
    create_graph_hint = _OP_LEVEL  # its backward is manual's ndarray code: not differentiated again

    @staticmethod
    def forward(ctx, W_x, W_h, b_x, b_h, h_prev, idx=None, out=None, W_hT=None):
        ctx.idx, ctx.vocab = idx, W_x.shape[1]
        r, z, n, ah_n, h = _gru_step(W_x[:, idx].T + b_x, h_prev, _fast(W_h, W_hT), b_h)
        if out is not None:  # CharRNN's row t of all steps' outputs
            out[...], h = h, out
        ctx.save_for_backward(r, z, n, ah_n, h_prev, W_h)
        return h

    @staticmethod
    def backward(ctx, g):
        r, z, n, ah_n, h_prev, W_h = ctx.saved_tensors
        dax, dah, dh_prev = _gru_step_back(g, r, z, n, ah_n, h_prev, W_h)
        return (_input_grad(dax, ctx.idx, ctx.vocab), OuterGrad(dah, h_prev), _bias_grad(dax), _bias_grad(dah),
                dh_prev if ctx.needs_input_grad[4] else None)

    @staticmethod
    def jvp(ctx, dW_x, dW_h, db_x, db_h, dh_prev):
        r, z, n, ah_n, h_prev, W_h = ctx.saved_tensors
        H = W_h.shape[1]

        def gate(t, k):  # gate k's block of a (K, ..., 3H) tangent; a missing one stays missing
            return None if t is None else t[..., k * H:(k + 1) * H]
        dax = _total(_gather_tangent(dW_x, ctx.idx), db_x)      # input side: W_x[:, x_t] + b_x
        dah = _affine_tangent(h_prev, W_h, dh_prev, dW_h, db_h)  # hidden side: W_h h_{t-1} + b_h
        both = _total(dax, dah)
        dr = _times(gate(both, 0), r * (1 - r))
        dz = _times(gate(both, 1), z * (1 - z))
        dn = _times(_total(gate(dax, 2), _times(dr, ah_n), _times(gate(dah, 2), r)), 1 - n * n)
        return _total(_times(dz, h_prev - n), _times(dn, 1 - z), _times(dh_prev, z))  # h = (1 - z) n + z h_prev

class StackRows(Function):
    """y = stack(xs) (T, ...) into `out`, where a step's x_t already written into row t is not copied;
    with cols=k only the first k columns, y = stack(xs)[..., :k] (a fused LSTM's h_t from its z_t = [h_t; s_t]);
    dL/dx_t = g[t] (with cols: g[t] in the first k columns, zeros elsewhere);  dy = stack(dxs)[..., :k]"""
    __slots__ = ("cols",)
    batched_jvp = True
    differentiable_backward = True

    @staticmethod
    def forward(ctx, *xs, out=None, cols=None):
        ctx.cols = cols
        for t, x in enumerate(xs):
            if x.base is not out:  # made elsewhere (the last state, which outlives the sequence): copied in
                out[t] = x
        return out if cols is None else out[..., :cols]

    @staticmethod
    def backward(ctx, g):
        if ctx.cols is None:
            return unstack(g, 0)
        if type(g) is not np.ndarray:  # create_graph: each row's columns placed in a row of zeros, as an op
            width = (ctx.parents[0].shape[-1],)
            return tuple([scatter_add(row, (Ellipsis, slice(None, ctx.cols)), row.shape[:-1] + width)
                          for row in unstack(g, 0)])
        # a slice's share per row: the engine keeps it sparse until the step's own share arrives,
        # so no (T, ..., 2H) array of zeros is ever built
        index = (Ellipsis, slice(None, ctx.cols))
        return tuple([SparseGrad(index, row) for row in g])

    @staticmethod
    def jvp(ctx, *dxs):
        shape = next(d for d in dxs if d is not None).shape[1:]  # (K, ...) each; all rows share a shape
        dy = np.stack(_fill(dxs, [shape] * len(dxs)), axis=1)
        return dy if ctx.cols is None else dy[..., :ctx.cols]
