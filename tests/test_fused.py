"""CharRNN(fused=True): one node per step (manual's step code) gives the op-level model's values and gradients."""
import gc
import itertools
import re

import numpy as np
import pytest
from helpers import graph_nodes

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn, viz
from tinygrad_rnn.nn import fused as fused_module

CELLS = [("rnn", {}), ("lstm", {}), ("lstm", {"cell_input": "sigmoid"}), ("gru", {})]


def _pair(cell, kw, V=6, H=5):
    op = nn.CharRNN(V, H, cell, rng=np.random.default_rng(1), **kw)
    fused = nn.CharRNN(V, H, cell, rng=np.random.default_rng(1), fused=True, **kw)
    return op, fused


def _state(cell, shape, rng):
    """A random initial state that requires grad, so its gradient is compared too."""
    make = lambda: Tensor(0.5 * rng.standard_normal(shape), requires_grad=True)  # noqa: E731
    return (make(), make()) if cell == "lstm" else make()


def _leaves(state):
    return [state] if isinstance(state, Tensor) else list(state)


def _assert_fused_equals_op_level(results):
    """results: [op-level's gradient dicts, fused's], one dict per backward: equal name by name, not vacuously."""
    for op, fused in zip(*results):
        assert sorted(fused) == sorted(op)
        for name in op:
            np.testing.assert_allclose(fused[name], op[name], rtol=0, atol=1e-12, err_msg=name)
        assert np.abs(op["cell.W_xh" if "cell.W_xh" in op else "cell.W_x"]).max() > 1e-3


@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("cell,kw", CELLS)
def test_fused_equals_op_level_values_and_gradients(cell, kw, batch, T):
    rng = np.random.default_rng(0)
    shape = (T,) if batch is None else (T, batch)
    idx, targets = rng.integers(0, 6, shape), rng.integers(0, 6, shape)
    idx[0] = 2  # a repeated character, within a step's batch too: the column scatter must add up
    if T > 1:
        idx[1] = 2
    state = _state(cell, shape[1:] + (5,), rng)
    results = []
    for model in _pair(cell, kw):
        for s in _leaves(state):
            s.grad = None
        logits, last = model(idx, state)
        loss = nn.cross_entropy(logits, targets)
        loss.backward()
        results.append((logits.data, [s.data for s in _leaves(last)], model.named_parameters(),
                        [s.grad.copy() for s in _leaves(state)]))
    (lo, so, po, go), (lf, sf, pf, gf) = results
    np.testing.assert_allclose(lf, lo, rtol=0, atol=1e-12)
    for a, b in zip(sf, so):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert list(pf) == list(po)  # the same names, in the same order
    for name in po:
        assert pf[name].grad.dtype == po[name].grad.dtype
        np.testing.assert_allclose(pf[name].grad, po[name].grad, rtol=0, atol=1e-12, err_msg=name)
        assert np.abs(po[name].grad).max() > 1e-3, name  # not a vacuous comparison
    for a, b in zip(gf, go):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("V", [6, 200])  # a batch's input weight: one-hot product up to 128 columns, scatter above
@pytest.mark.parametrize("cell,kw", CELLS)
def test_fused_batched_input_weight_gradient_both_routes(cell, kw, V):
    rng = np.random.default_rng(3)
    idx, targets = rng.integers(0, V, (4, 5)), rng.integers(0, V, (4, 5))
    idx[:, :3] = V - 1  # a character repeated within each step's batch: its column's rows must add up
    assert (V > fused_module._ONEHOT_MAX_V) == (V == 200)
    grads = []
    for model in _pair(cell, kw, V=V, H=3):
        nn.cross_entropy(model(idx)[0], targets).backward()
        grads.append({k: p.grad for k, p in model.named_parameters().items()})
    for name, g in grads[0].items():
        np.testing.assert_allclose(grads[1][name], g, rtol=0, atol=1e-12, err_msg=name)
    w_x = next(k for k in grads[0] if k.startswith("cell.W_x"))
    assert np.abs(grads[0][w_x][:, V - 1]).max() > 1e-2  # the repeated column is really compared


@pytest.mark.parametrize("shape", [(7, 3), (9,)])
@pytest.mark.parametrize("cell,kw", CELLS)
def test_fused_batch_weight_sums_over_blocks_and_repeated_backward(cell, kw, shape, monkeypatch):
    """The weights' and bias's gradients are summed by the steps in blocks of rows: 4 rows here, so 2 steps of B=3
    (or 4 steps of one sequence) a block, the last one short. A loss at one step, at all steps, and backward twice
    over one graph: all equal op-level."""
    monkeypatch.setattr(fused_module, "_BLOCK_ROWS", 4)
    rng = np.random.default_rng(5)
    idx, targets = rng.integers(0, 6, shape), rng.integers(0, 6, shape)
    results = []
    for model in _pair(cell, kw):
        logits, _ = model(idx)
        grads = []
        for t in (3, 0):
            model.zero_grad()
            nn.cross_entropy(logits[t], targets[t]).backward(retain_graph=True)
            grads.append({k: p.grad.copy() for k, p in model.named_parameters().items()})
        model.zero_grad()
        loss = nn.cross_entropy(logits, targets)
        loss.backward(retain_graph=True)
        loss.backward()  # twice: every gradient doubles
        grads.append({k: p.grad / 2 for k, p in model.named_parameters().items()})
        results.append(grads)
    _assert_fused_equals_op_level(results)


@pytest.mark.parametrize("shape", [(7, 3), (7,)])
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_fused_batch_backward_from_a_state_inside_a_block(cell, shape, monkeypatch):
    """Backward from h_t runs steps t … 0 only (analysis does this): the rows of later steps hold no gradient,
    whatever an earlier pass over the same graph left in the block's buffer."""
    monkeypatch.setattr(fused_module, "_BLOCK_ROWS", 4 if len(shape) == 2 else 2)
    rng = np.random.default_rng(6)
    idx = rng.integers(0, 6, shape)
    results = []
    for model in _pair(cell, {}):
        _, states = model.unroll(idx)
        grads = []
        for t in (6, 3, 0, 5):  # the last step, inside a block, the first step, below a block's top
            model.zero_grad()
            (states[t] * states[t]).sum().backward(retain_graph=True)
            grads.append({k: p.grad.copy() for k, p in model.named_parameters().items() if p.grad is not None})
        results.append(grads)
    _assert_fused_equals_op_level(results)


@pytest.mark.parametrize("shape", [(8, 3), (8,)])
def test_fused_backward_after_a_pass_that_stopped_before_step_0(shape, monkeypatch):
    """tr.grad of a state inside the sequence runs the steps above it only, so the steps' weight sums never reach
    step 0; the next backward (from below, or the same state again) starts afresh: the op-level model's gradients.
    Found by a second reviewer: the sums carried the stopped pass's rows into the next one."""
    monkeypatch.setattr(fused_module, "_BLOCK_ROWS", 6 if len(shape) == 2 else 3)
    rng = np.random.default_rng(8)
    idx = rng.integers(0, 6, shape)
    results = []
    for model in _pair("rnn", {}):  # an RNN's unroll runs its fused steps (a fused LSTM's runs op-level ones)
        _, h = model.unroll(idx)
        grads = []
        for start, stop in ((5, 4), (7, 4), (2, None), (7, None)):
            if stop is not None:
                tr.grad(h[start].sum(), [h[stop]], retain_graph=True)  # steps start … stop+1, not step 0
                continue
            model.zero_grad()
            (h[start] * h[start]).sum().backward(retain_graph=True)
            grads.append({k: p.grad.copy() for k, p in model.named_parameters().items() if p.grad is not None})
        results.append(grads)
    _assert_fused_equals_op_level(results)


@pytest.mark.parametrize("cell,kw", CELLS[:2])
def test_fused_steps_numbered_when_other_nodes_are_made_in_between(cell, kw, monkeypatch):
    """A step's t is its creation number less step 0's; if numbers were taken in between (another thread building a
    graph), the steps are numbered one by one: the gradients stay the op-level model's."""
    monkeypatch.setattr(tr.engine, "_creation_order", itertools.count(0, 2))  # every other number taken elsewhere
    rng = np.random.default_rng(7)
    idx, targets = rng.integers(0, 6, 8), rng.integers(0, 6, 8)
    grads = []
    for model in _pair(cell, kw):
        gc.collect()
        gc.disable()  # numbered by creation number, not by node: no cycle, the graph goes with its last reference
        try:
            loss = nn.cross_entropy(model(idx)[0], targets)
            steps = [n for n in graph_nodes(loss) if isinstance(n, (fused_module.RNNStep, fused_module.LSTMStep))]
            assert all(n.sums.step_of is not None for n in steps)  # the one-by-one numbering ran
            loss.backward()
            grads.append({k: p.grad for k, p in model.named_parameters().items()})
            del loss, steps
            assert gc.collect() == 0
        finally:
            gc.enable()
    for name, g in grads[0].items():
        np.testing.assert_allclose(grads[1][name], g, rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cell,kw", CELLS)
def test_fused_unroll_gives_every_steps_state_and_its_gradient(cell, kw):
    """analysis reads ∂L/∂h_t from unroll's states: a fused model's must be the same."""
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 6, (4, 2)), rng.integers(0, 6, (4, 2))
    results = []
    for model in _pair(cell, kw):
        logits, states = model.unroll(idx)
        hs = [model.cell.hidden(s).retain_grad() for s in states]
        nn.cross_entropy(logits, targets).backward()
        results.append((logits.data, states, [h.grad for h in hs]))
    (lo, so, go), (lf, sf, gf) = results
    np.testing.assert_allclose(lf, lo, rtol=0, atol=1e-12)
    assert len(sf) == len(so) == 4
    for a, b in zip(sf, so):
        for x, y in zip(_leaves(a), _leaves(b)):
            assert x.shape == y.shape == (2, 5)
            np.testing.assert_allclose(x.data, y.data, rtol=0, atol=1e-12)
    for a, b in zip(gf, go):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell,step", [("rnn", "RNNStep"), ("lstm", "LSTMStep"), ("gru", "GRUStep")])
def test_fused_graph_has_one_node_per_step_and_the_output_layer_once(cell, step):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, cell, rng=rng, fused=True)
    loss = nn.cross_entropy(model(rng.integers(0, 5, 3))[0], rng.integers(0, 5, 3))
    nodes = graph_nodes(loss)
    for t in range(3):
        assert [n.name for n in nodes if n.scope == f"t={t}"] == [step]
    assert sum(n.name == "Affine" for n in nodes) == 1  # o_t = c + V h_t for all t in one product
    assert [n.name for n in nodes if any(p is model.out.W for p in n.parents)] == ["Affine"]
    # the picture: one node per step, labelled for the cell, each inside its time step's cluster
    source = viz.draw(loss, params=model.named_parameters()).source
    assert len(re.findall(rf'label="(?:[^"]* = )?{step}\b', source)) == 3  # h(t) = RNNStep
    clusters = {re.search(r'label="(t=\d+)"', block).group(1): block
                for block in re.findall(r"subgraph cluster_\d+ \{(.*?)\n\t\}", source, re.S)}
    assert sorted(clusters) == ["t=1", "t=2", "t=3"]  # scopes t=0 … t=2, labelled in the book's time as h(1) …
    assert all(len(re.findall(rf'label="(?:[^"]* = )?{step}\b', block)) == 1 for block in clusters.values())


@pytest.mark.parametrize("cell,kw", CELLS)
def test_fused_and_op_level_share_checkpoints(cell, kw):
    rng = np.random.default_rng(0)
    op = nn.CharRNN(6, 5, cell, rng=rng, **kw)
    fused = nn.CharRNN(6, 5, cell, rng=np.random.default_rng(9), fused=True, **kw)
    fused.load_state_dict(op.state_dict())
    assert list(fused.state_dict()) == list(op.state_dict())
    idx = rng.integers(0, 6, 7)
    np.testing.assert_allclose(fused(idx)[0].data, op(idx)[0].data, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_float32_stays_float32(cell):
    model = nn.CharRNN(5, 4, cell, rng=np.random.default_rng(0), dtype=np.float32, fused=True)
    logits, state = model(np.array([[0, 1], [2, 3]]))
    loss = nn.cross_entropy(logits, np.array([[1, 2], [3, 4]]))
    loss.backward()
    assert logits.dtype == np.float32 and all(s.dtype == np.float32 for s in _leaves(state))
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_fused_rejects_a_bad_state_in_one_line():
    model = nn.CharRNN(5, 4, "lstm", rng=np.random.default_rng(0), fused=True)
    with pytest.raises(ValueError, match=r"LSTMCell: state has shape \(3,\), expected \(4,\)"):
        model(np.array([0, 1]), (np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="pair"):
        model(np.array([0, 1]), np.zeros(4))


class TwoTanh(nn.Module):
    """A user-written cell: h = tanh(W x + h_prev), no hand derivation to fuse."""

    def __init__(self, V, H):
        self.hidden_size, self.W = H, tr.randn(H, V, requires_grad=True, rng=np.random.default_rng(0))

    def forward(self, x, h=None):
        a = x @ self.W.T
        return (a if h is None else a + h).tanh()


def test_fused_with_a_user_written_cell_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^CharRNN: fused=True needs a built-in cell .*TwoTanh$"):
        nn.CharRNN(4, 3, cell=TwoTanh(4, 3), fused=True)
    model = nn.CharRNN(4, 3, cell=TwoTanh(4, 3))  # without fused it runs op by op
    assert model(np.array([0, 1]))[0].shape == (2, 4)


def test_fused_builtin_cell_object_runs_fused():
    cell = nn.GRUCell(5, 4, rng=np.random.default_rng(0))
    model = nn.CharRNN(5, 4, cell=cell, fused=True)
    logits, _ = model(np.array([0, 1, 2]))
    assert sorted(n.name for n in graph_nodes(logits)) == ["Affine", "GRUStep", "GRUStep", "GRUStep", "StackRows"]
