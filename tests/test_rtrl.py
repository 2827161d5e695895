"""analysis.rtrl_grads: real-time recurrent learning in the engine's forward mode equals backward (BPTT)."""
import numpy as np
import pytest
from helpers import MGU

import tinygrad_rnn.engine as engine
from tinygrad_rnn import analysis, manual, nn

V, H = 5, 3


def make_model(cell, rng, **kw):
    if cell == "user":
        return nn.CharRNN(V, H, cell=MGU(V, H, rng), rng=rng)
    if cell.endswith("_fused"):
        return nn.CharRNN(V, H, cell=cell[:-len("_fused")], fused=True, rng=rng)
    if cell == "lstm_sigmoid":
        return nn.CharRNN(V, H, cell="lstm", cell_input="sigmoid", rng=rng, **kw)
    return nn.CharRNN(V, H, cell=cell, rng=rng, **kw)


def backward_grads(model, inputs, targets, state=None):
    """The reference: the engine's reverse mode on the whole unrolled sequence."""
    model.zero_grad()
    logits, _ = model(inputs, state)
    nn.cross_entropy(logits, targets).backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters().items()}
    model.zero_grad()
    return grads


def random_state(cell, rng, batch=()):
    h = rng.standard_normal(batch + (H,)) * 0.5
    return (h, rng.standard_normal(batch + (H,)) * 0.5) if cell.startswith("lstm") else h


@pytest.mark.parametrize("cell", ["rnn", "lstm", "lstm_sigmoid", "gru", "user", "rnn_fused", "lstm_fused", "gru_fused"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_rtrl_equals_backward(cell, batch):
    rng = np.random.default_rng(0)
    model = make_model(cell, rng)
    T = 6
    inputs, targets = rng.integers(0, V, (T,) + batch), rng.integers(0, V, (T,) + batch)
    state = None if batch else random_state(cell, rng)
    want = backward_grads(model, inputs, targets, state)
    got = analysis.rtrl_grads(model, inputs, targets, state)
    assert list(got) == list(want)
    for name in want:
        assert got[name].shape == want[name].shape and got[name].dtype == want[name].dtype
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-10, err_msg=name)


def test_rtrl_equals_the_hand_derived_rtrl():
    rng = np.random.default_rng(1)
    model = make_model("rnn", rng)
    inputs, targets = rng.integers(0, V, 8), rng.integers(0, V, 8)
    got = analysis.rtrl_grads(model, inputs, targets)
    P = {k: p.data for k, p in model.named_parameters().items()}
    params = {"W_xh": P["cell.W_xh"], "W_hh": P["cell.W_hh"], "b_h": P["cell.b_h"], "W_hy": P["out.W"], "b_y": P["out.b"]}
    _, hand = manual.rnn_rtrl(params, inputs, targets, np.zeros(H))
    for ours, theirs in [("cell.W_xh", "W_xh"), ("cell.W_hh", "W_hh"), ("cell.b_h", "b_h"), ("out.W", "W_hy"), ("out.b", "b_y")]:
        np.testing.assert_allclose(got[ours], hand[theirs], rtol=0, atol=1e-10, err_msg=ours)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "user"])
def test_rtrl_runs_no_backward_and_leaves_the_model_as_it_was(cell, monkeypatch):
    rng = np.random.default_rng(2)
    model = make_model(cell, rng)
    inputs, targets = rng.integers(0, V, 5), rng.integers(0, V, 5)
    want = backward_grads(model, inputs, targets)
    params = model.named_parameters()
    before = {name: (p, p.data.copy(), p.requires_grad) for name, p in params.items()}
    for p in params.values():
        p.grad = np.full(p.shape, 7.0)  # a gradient someone accumulated: must stay, the same array
    old_grads = {name: p.grad for name, p in params.items()}

    def no_backward(*args, **kwargs):
        raise AssertionError("rtrl_grads ran a backward pass")
    monkeypatch.setattr(engine, "run_backward", no_backward)
    monkeypatch.setattr(engine.Tensor, "backward", no_backward)
    got = analysis.rtrl_grads(model, inputs, targets)

    for name, p in model.named_parameters().items():
        obj, data, requires_grad = before[name]
        assert p is obj and p.requires_grad == requires_grad
        np.testing.assert_array_equal(p.data, data)
        assert p.grad is old_grads[name] and (p.grad == 7.0).all()
        assert engine._tangent_of(p) is None and p._tangent is None
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-10)


def test_rtrl_bad_input():
    model = make_model("rnn", np.random.default_rng(0))
    with pytest.raises(ValueError, match="rtrl_grads: targets must be integers of the inputs' shape"):
        analysis.rtrl_grads(model, np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(TypeError, match="rtrl_grads: model must be a CharRNN"):
        analysis.rtrl_grads(nn.Linear(2, 2), np.zeros(3, int), np.zeros(3, int))


def test_rtrl_refuses_a_model_too_large_for_its_p_by_p_tangents(monkeypatch):
    from tinygrad_rnn import _memory
    model = make_model("lstm", np.random.default_rng(0))
    P = sum(p.size for p in model.parameters())
    monkeypatch.setattr(_memory, "available", lambda: 8 * P * P - 1)  # one byte short of the seeds alone
    with pytest.raises(MemoryError, match=rf"^rtrl_grads: forward mode with one direction per parameter entry "
                                          rf"\(P = {P:,}\) needs [\d.]+ \w+ of memory for the P x P seed tangents "
                                          rf"alone, more than the [\d.]+ \w+ available$"):
        analysis.rtrl_grads(model, np.zeros(3, int), np.zeros(3, int))
    monkeypatch.setattr(_memory, "available", lambda: 8 * P * P * 4)  # enough: the same call runs
    assert set(analysis.rtrl_grads(model, np.zeros(3, int), np.zeros(3, int))) == set(model.named_parameters())


def test_lab_rtrl_experiment_gets_the_same_gradients_both_ways():
    from tinygrad_rnn import lab
    r = lab.run("rtrl", Ts=(3, 12), Hs=(2,), H=3, T=5, V=4, cells=("rnn", "lstm", "gru"))
    runs = r.numbers["runs"]
    assert set(runs) == {(c, h, t) for c in ("rnn", "lstm", "gru") for h, t in ((3, 3), (3, 12), (2, 5), (3, 5))}
    for (cell, h, t), run in runs.items():
        assert run["err"] <= 1e-10, (cell, h, t)
        assert run["P"] == sum(p.size for p in nn.CharRNN(4, h, cell).parameters())
        assert run["rtrl_s"] > 0 and run["bptt_s"] > 0 and run["rtrl_mem"] > 0 and run["bptt_mem"] > 0
    assert r.numbers["worst"] <= 1e-10 and "The gradients agree to" in r.table
    assert r.table.count("\nrnn ") == 4 and r.table.count("\ngru ") == 4
