"""CharRNN's autodiff gradients against the hand-derived BPTT of tinygrad_rnn.manual (the derivations of the book, min-char-rnn and the lecture notes)."""
import numpy as np
import pytest

from tinygrad_rnn import Tensor, manual, nn

KEYS = {"rnn": {"cell.W_xh": "W_xh", "cell.W_hh": "W_hh", "cell.b_h": "b_h", "out.W": "W_hy", "out.b": "b_y"},
        "lstm": {"cell.W_x": "W_x", "cell.W_h": "W_h", "cell.b": "b", "out.W": "W_hy", "out.b": "b_y"}}


@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("cell,cell_input", [("rnn", None), ("lstm", "tanh"), ("lstm", "sigmoid")])
def test_charrnn_gradients_equal_manual_bptt(cell, cell_input, batch, T):
    rng = np.random.default_rng(0)
    V, H = 6, 5
    kw = {} if cell_input is None else {"cell_input": cell_input}
    model = nn.CharRNN(V, H, cell=cell, rng=rng, **kw)
    shape = (T,) if batch is None else (T, batch)
    inputs, targets = rng.integers(0, V, shape), rng.integers(0, V, shape)
    state_shape = (H,) if batch is None else (batch, H)
    h0, s0 = 0.5 * rng.standard_normal(state_shape), 0.5 * rng.standard_normal(state_shape)
    state = Tensor(h0) if cell == "rnn" else (Tensor(h0), Tensor(s0))

    logits, last = model(inputs, state)
    loss = nn.cross_entropy(logits, targets)
    loss.backward()

    params = {KEYS[cell][k]: p.data for k, p in model.named_parameters().items()}
    if cell == "rnn":
        ref_loss, ref_grads, ref_h = manual.rnn_bptt(params, inputs, targets, h0)
        np.testing.assert_allclose(last.data, ref_h, rtol=0, atol=1e-12)
    else:
        ref_loss, ref_grads, (ref_h, ref_s) = manual.lstm_bptt(params, inputs, targets, (h0, s0), cell_input=cell_input)
        np.testing.assert_allclose(last[0].data, ref_h, rtol=0, atol=1e-12)
        np.testing.assert_allclose(last[1].data, ref_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-13)
    for name, p in model.named_parameters().items():
        ref = ref_grads[KEYS[cell][name]]
        assert np.abs(ref).max() > 1e-3, name
        np.testing.assert_allclose(p.grad, ref, rtol=0, atol=1e-10, err_msg=name)
