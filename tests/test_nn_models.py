"""Module, Linear, RNNCell, LSTMCell and CharRNN: gradients against central differences, the book's
LSTM equations and PyTorch's cells, batching, the "hello" task and truncated BPTT."""
import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, analysis, nn

from helpers import graph_nodes, numeric_grads


def assert_loss_grads_match(loss_fn, tensors):
    """Autodiff gradients of loss_fn() (a scalar Tensor) equal central differences to 1e-6 relative
    (entries far below the largest are held to 1e-6 of the largest: differences carry rounding noise)."""
    for t in tensors:
        t.grad = None
    loss_fn().backward()
    auto = [t.grad.copy() for t in tensors]
    numeric = numeric_grads(lambda: loss_fn().item(), [t.data for t in tensors], eps=1e-5)
    for t, a, n in zip(tensors, auto, numeric):
        assert np.abs(n).max() > 1e-4, f"{t.name}: the check would be vacuous"
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-6 * np.abs(n).max(), err_msg=t.name)


def weighted_sum(*outs, rng):
    """A scalar that depends on every entry of the outputs, with random weights."""
    total = None
    for out in outs:
        term = (out * rng.standard_normal(out.shape)).sum()
        total = term if total is None else total + term
    return total


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


# ---- Module -------------------------------------------------------------------------------------
def test_named_parameters_nest_in_definition_order():
    rng = np.random.default_rng(0)
    rnn = nn.CharRNN(5, 4, rng=rng)
    lstm = nn.CharRNN(5, 4, cell="lstm", rng=rng)
    assert list(rnn.named_parameters()) == ["cell.W_xh", "cell.W_hh", "cell.b_h", "out.W", "out.b"]
    assert list(lstm.named_parameters()) == ["cell.W_x", "cell.W_h", "cell.b", "out.W", "out.b"]
    shapes = {k: v.shape for k, v in lstm.named_parameters().items()}
    assert shapes == {"cell.W_x": (16, 5), "cell.W_h": (16, 4), "cell.b": (16,), "out.W": (5, 4), "out.b": (5,)}
    p = rnn.named_parameters()
    assert rnn.parameters() == list(p.values())
    assert p["cell.W_hh"].name == "W_hh" and p["out.W"].name == "W"
    assert all(t.requires_grad and t.is_leaf for t in p.values())
    assert (rnn.vocab_size, rnn.hidden_size, rnn.cell_type, lstm.cell_type) == (5, 4, "rnn", "lstm")


def test_init_uniform_bound_normal_scale_and_seeding():
    a = nn.RNNCell(3, 400, rng=np.random.default_rng(1))
    b = nn.RNNCell(3, 400, rng=np.random.default_rng(1))
    assert np.array_equal(a.W_hh.data, b.W_hh.data)
    bound = 1 / np.sqrt(400)
    assert np.abs(a.W_hh.data).max() <= bound and np.abs(a.W_hh.data).max() > 0.95 * bound
    n = nn.RNNCell(3, 400, init="normal", rng=np.random.default_rng(1))
    assert abs(n.W_hh.data.std() - 0.01) < 0.0005 and not n.b_h.data.any()
    with pytest.raises(ValueError, match="init must be one of"):
        nn.RNNCell(3, 4, init="xavier")


def test_zero_grad_state_dict_and_load_in_place():
    rng = np.random.default_rng(0)
    m = nn.CharRNN(5, 4, rng=rng)
    idx = rng.integers(0, 5, 3)
    nn.cross_entropy(m(idx)[0], idx).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    state = m.state_dict()
    state["cell.W_hh"][0, 0] += 1.0  # a copy: the model must not change
    assert m.cell.W_hh.data[0, 0] == state["cell.W_hh"][0, 0] - 1.0
    other = nn.CharRNN(5, 4, rng=rng)
    held = other.cell.W_hh
    other.load_state_dict(state)
    assert other.cell.W_hh is held and np.array_equal(held.data, state["cell.W_hh"])
    state["cell.W_hh"][0, 0] -= 1.0
    other.load_state_dict(state)
    assert np.array_equal(other(idx)[0].data, m(idx)[0].data)


def test_load_state_dict_names_every_bad_key():
    m = nn.CharRNN(5, 4, rng=np.random.default_rng(0))
    state = m.state_dict()
    state["cell.W_hh"] = np.zeros((3, 3))
    state["out.b"] = state["out.b"].astype(np.int64)
    del state["cell.b_h"]
    state["cell.bogus"] = np.zeros(2)
    with pytest.raises(ValueError) as e:
        m.load_state_dict(state)
    msg = str(e.value)
    assert "\n" not in msg
    for key in ("cell.W_hh (shape (3, 3), expected (4, 4))", "out.b (dtype int64, expected floating point", "cell.b_h (missing)",
                "cell.bogus (unexpected)"):
        assert key in msg
    assert not np.array_equal(m.cell.W_hh.data, np.zeros((4, 4)))  # nothing was half-loaded


def test_load_state_dict_casts_other_float_precisions():
    m = nn.RNNCell(3, 4, rng=np.random.default_rng(0))
    state32 = {k: v.astype(np.float32) for k, v in m.state_dict().items()}
    m.load_state_dict(state32)
    for name, p in m.named_parameters().items():
        assert p.dtype == np.float64
        np.testing.assert_array_equal(p.data, state32[name].astype(np.float64))


def test_linear_matches_formula_and_gradients():
    rng = np.random.default_rng(0)
    lin = nn.Linear(3, 2, rng=rng)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(lin(Tensor(x)).data, x @ lin.W.data.T + lin.b.data, rtol=1e-14)
    np.testing.assert_allclose(lin(Tensor(x[0])).data, lin.W.data @ x[0] + lin.b.data, rtol=1e-14)
    xt = Tensor(x, requires_grad=True, name="x")
    assert_loss_grads_match(lambda: weighted_sum(lin(xt), rng=np.random.default_rng(1)), [lin.W, lin.b, xt])
    assert list(nn.Linear(3, 2, bias=False).named_parameters()) == ["W"]


# ---- cells ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [None, 3])
def test_rnn_cell_gradients(batch):
    rng = np.random.default_rng(0)
    cell = nn.RNNCell(3, 4, rng=rng)
    shape = (3,) if batch is None else (batch, 3)
    x = Tensor(rng.standard_normal(shape), requires_grad=True, name="x")
    h = Tensor(rng.standard_normal(shape[:-1] + (4,)), requires_grad=True, name="h_prev")
    np.testing.assert_allclose(cell(x, h).data, np.tanh(x.data @ cell.W_xh.data.T + h.data @ cell.W_hh.data.T
                                                         + cell.b_h.data), rtol=1e-14)
    assert_loss_grads_match(lambda: weighted_sum(cell(x, h), rng=np.random.default_rng(1)),
                       [cell.W_xh, cell.W_hh, cell.b_h, x, h])


@pytest.mark.parametrize("cell_input", ["tanh", "sigmoid"])
@pytest.mark.parametrize("batch", [None, 2])
def test_lstm_cell_gradients(cell_input, batch):
    rng = np.random.default_rng(0)
    cell = nn.LSTMCell(3, 4, cell_input=cell_input, rng=rng)
    shape = (3,) if batch is None else (batch, 3)
    x = Tensor(rng.standard_normal(shape), requires_grad=True, name="x")
    h = Tensor(rng.standard_normal(shape[:-1] + (4,)), requires_grad=True, name="h_prev")
    s = Tensor(rng.standard_normal(shape[:-1] + (4,)), requires_grad=True, name="s_prev")
    assert_loss_grads_match(lambda: weighted_sum(*cell(x, (h, s)), rng=np.random.default_rng(1)),
                       [cell.W_x, cell.W_h, cell.b, x, h, s])


def test_lstm_sigmoid_cell_input_is_the_books_equations():
    rng = np.random.default_rng(0)
    H = 4
    cell = nn.LSTMCell(3, H, cell_input="sigmoid", rng=rng)
    x, h_prev, s_prev = rng.standard_normal(3), rng.standard_normal(H), rng.standard_normal(H)
    # the book's separate matrices are the blocks of the stacked ones (order i, f, g, o)
    blocks = lambda a: [a[k * H:(k + 1) * H] for k in range(4)]  # noqa: E731
    (Ug, Uf, U, Uo), (Wg, Wf, W, Wo), (bg, bf, b, bo) = map(blocks, (cell.W_x.data, cell.W_h.data, cell.b.data))
    f = sigmoid(bf + Uf @ x + Wf @ h_prev)                          # eq. 10.40
    g = sigmoid(bg + Ug @ x + Wg @ h_prev)                          # eq. 10.42
    s = f * s_prev + g * sigmoid(b + U @ x + W @ h_prev)            # eq. 10.41
    q = sigmoid(bo + Uo @ x + Wo @ h_prev)                          # eq. 10.44
    h = np.tanh(s) * q                                              # eq. 10.43
    got_h, got_s = cell(Tensor(x), (Tensor(h_prev), Tensor(s_prev)))
    np.testing.assert_allclose(got_s.data, s, rtol=1e-13)
    np.testing.assert_allclose(got_h.data, h, rtol=1e-13)
    tanh_h, _ = nn.LSTMCell(3, H, rng=np.random.default_rng(0))(Tensor(x), (Tensor(h_prev), Tensor(s_prev)))
    assert np.abs(tanh_h.data - h).max() > 1e-3  # the default cell input really differs


def test_lstm_rejects_unknown_cell_input_and_state():
    with pytest.raises(ValueError, match=r"cell_input must be one of \('tanh', 'sigmoid'\)"):
        nn.LSTMCell(3, 4, cell_input="relu")
    cell = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match="state must be a pair"):
        cell(Tensor(np.zeros(3)), Tensor(np.zeros(4)))
    with pytest.raises(ValueError, match=r"state has shape \(5,\), expected \(4,\)"):
        cell(Tensor(np.zeros(3)), (Tensor(np.zeros(5)), Tensor(np.zeros(4))))


def test_cells_default_state_is_zeros():
    rng = np.random.default_rng(0)
    rnn, lstm = nn.RNNCell(3, 4, rng=rng), nn.LSTMCell(3, 4, rng=rng)
    x = Tensor(rng.standard_normal((2, 3)))
    assert np.array_equal(rnn(x).data, rnn(x, Tensor(np.zeros((2, 4)))).data)
    h, s = lstm(x)
    h0, s0 = lstm(x, (np.zeros((2, 4)), np.zeros((2, 4))))
    assert h.shape == (2, 4) and np.array_equal(h.data, h0.data) and np.array_equal(s.data, s0.data)


def test_cells_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, h0, s0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    lstm = nn.LSTMCell(3, 4, rng=rng)
    ref = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
    rnn = nn.RNNCell(3, 4, rng=rng)
    ref_rnn = torch.nn.RNNCell(3, 4, dtype=torch.float64)
    with torch.no_grad():
        ref.weight_ih.copy_(torch.tensor(lstm.W_x.data))
        ref.weight_hh.copy_(torch.tensor(lstm.W_h.data))
        ref.bias_ih.copy_(torch.tensor(lstm.b.data))
        ref.bias_hh.zero_()
        ref_rnn.weight_ih.copy_(torch.tensor(rnn.W_xh.data))
        ref_rnn.weight_hh.copy_(torch.tensor(rnn.W_hh.data))
        ref_rnn.bias_ih.copy_(torch.tensor(rnn.b_h.data))
        ref_rnn.bias_hh.zero_()
    R1, R2 = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    h, s = lstm(Tensor(x), (Tensor(h0), Tensor(s0)))
    ((h * R1).sum() + (s * R2).sum()).backward()
    th, ts = ref(torch.tensor(x), (torch.tensor(h0), torch.tensor(s0)))
    ((th * torch.tensor(R1)).sum() + (ts * torch.tensor(R2)).sum()).backward()
    np.testing.assert_allclose(h.data, th.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(s.data, ts.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(lstm.W_x.grad, ref.weight_ih.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lstm.W_h.grad, ref.weight_hh.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lstm.b.grad, ref.bias_ih.grad.numpy(), rtol=1e-12)
    h = rnn(Tensor(x), Tensor(h0))
    (h * R1).sum().backward()
    th = ref_rnn(torch.tensor(x), torch.tensor(h0))
    (th * torch.tensor(R1)).sum().backward()
    np.testing.assert_allclose(h.data, th.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(rnn.W_hh.grad, ref_rnn.weight_hh.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rnn.W_xh.grad, ref_rnn.weight_ih.grad.numpy(), rtol=1e-12)


# ---- CharRNN ----------------------------------------------------------------------------------------
CELLS = [("rnn", {}), ("lstm", {}), ("lstm", {"cell_input": "sigmoid"})]


@pytest.mark.parametrize("cell,kw", CELLS)
@pytest.mark.parametrize("batch", [None, 2])
def test_charrnn_gradients(cell, kw, batch):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, cell=cell, rng=rng, **kw)
    shape = (4,) if batch is None else (4, batch)
    idx, targets = rng.integers(0, 5, shape), rng.integers(0, 5, shape)
    idx[1] = idx[0]  # a repeated character: the gather's gradient must add up
    if batch:
        idx[2] = idx[2, 0]  # and repeated within one step's batch
    assert_loss_grads_match(lambda: nn.cross_entropy(model(idx)[0], targets), model.parameters())


@pytest.mark.parametrize("cell,kw", CELLS)
def test_charrnn_batched_equals_unbatched(cell, kw):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(6, 5, cell=cell, rng=rng, **kw)
    idx, targets = rng.integers(0, 6, (7, 3)), rng.integers(0, 6, (7, 3))
    logits, state = model(idx)
    assert logits.shape == (7, 3, 6)
    nn.cross_entropy(logits, targets).backward()
    batched = {k: p.grad for k, p in model.named_parameters().items()}
    summed = {k: 0 for k in batched}
    for b in range(3):
        model.zero_grad()
        one, one_state = model(idx[:, b])
        assert one.shape == (7, 6)
        np.testing.assert_allclose(one.data, logits.data[:, b], rtol=1e-13, atol=1e-15)
        h_b = one_state if cell == "rnn" else one_state[1]
        np.testing.assert_allclose(h_b.data, (state if cell == "rnn" else state[1]).data[b], rtol=1e-13)
        nn.cross_entropy(one, targets[:, b]).backward()
        summed = {k: summed[k] + p.grad for k, p in model.named_parameters().items()}
    for k in batched:
        np.testing.assert_allclose(batched[k], summed[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_charrnn_learns_hello(cell):
    """The "hello" tutorial and the FAU lecture: vocabulary h, e, l, o; input "hell", target "ello"; Adagrad as min-char-rnn."""
    vocab = "helo"
    enc = lambda s: np.array([vocab.index(c) for c in s])  # noqa: E731
    x, y = enc("hell"), enc("ello")
    model = nn.CharRNN(4, 10, cell=cell, rng=np.random.default_rng(0))
    opt = nn.optim.Adagrad(model.parameters(), lr=0.1)
    for _ in range(300):
        loss = nn.cross_entropy(model(x)[0], y)
        if loss.item() / len(x) < 0.05:
            break
        opt.zero_grad()
        loss.backward()
        nn.clip_grad_value(model.parameters(), 5)
        opt.step()
    assert loss.item() / len(x) < 0.05
    with tr.no_grad():
        logits, _ = model(x)
    assert "".join(vocab[i] for i in logits.data.argmax(-1)) == "ello"


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_truncated_bptt_carries_state_and_cuts_the_graph(cell):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, cell=cell, rng=rng)
    data = rng.integers(0, 5, 13)
    whole, _ = model(data[:12])
    state, chunks = None, []
    for start in range(0, 12, 4):
        inputs, targets = data[start:start + 4], data[start + 1:start + 5]
        logits, new_state = model(inputs, state)
        if start:
            fresh, _ = model(inputs)  # the carried state really enters the computation
            assert np.abs(fresh.data - logits.data).max() > 1e-3
        # the first chunk's backward frees its graph: going through it again would raise
        nn.cross_entropy(logits, targets).backward()
        chunks.append(logits.data)
        state = nn.detach_state(new_state)
        for s in (state,) if cell == "rnn" else state:
            assert s.grad_fn is None and not s.requires_grad
    np.testing.assert_allclose(np.concatenate(chunks), whole.data, rtol=1e-13)
    logits, new_state = model(data[:4])
    nn.cross_entropy(logits, data[1:5]).backward()
    logits, _ = model(data[4:8], new_state)  # without detach_state the graph reaches the freed chunk
    with pytest.raises(RuntimeError, match="second time"):
        nn.cross_entropy(logits, data[5:9]).backward()
    assert nn.detach_state(None) is None


def test_charrnn_graph_gathers_columns_and_scopes_steps():
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, rng=rng)
    logits, _ = model(rng.integers(0, 5, 3))
    loss = nn.cross_entropy(logits, rng.integers(0, 5, 3))
    nodes = graph_nodes(loss)
    users = lambda p: [n.name for n in nodes if any(q is p for q in n.parents)]  # noqa: E731
    assert users(model.cell.W_xh) == ["ColumnGather"] * 3
    assert users(model.cell.W_hh) == ["Affine"] * 3
    assert not any(t.shape == (5,) and not t.requires_grad for n in nodes for t in n.parents)  # no one-hot
    assert {n.scope for n in nodes} == {"", "t=0", "t=1", "t=2"}
    assert users(model.out.W) == ["Affine"] * 3  # o_t = c + V h_t at every step, V shared
    # a_t = b + W h_{t-1} + U x_t, h_t = tanh(a_t), o_t = c + V h_t (eq. 10.8-10.10), inside the step's scope
    assert sorted(n.name for n in nodes if n.scope == "t=1") == ["Affine", "Affine", "ColumnGather", "Tanh"]
    assert sorted(n.name for n in nodes if n.scope == "") == ["CrossEntropy", "Stack"]
    assert loss.grad_fn.name == "CrossEntropy"


def test_charrnn_rejects_bad_idx():
    model = nn.CharRNN(5, 4, rng=np.random.default_rng(0))
    for bad, match in [(np.array([0, 5]), r"lie in \[0, 5\)"), (np.array([-1, 2]), r"lie in \[0, 5\)"),
                       (np.array([0.0, 1.0]), "integers"), (np.zeros((2, 2, 2), int), "shape"),
                       (np.zeros(0, int), "shape"), (3, "shape")]:
        with pytest.raises(ValueError, match=match) as e:
            model(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="cell must be one of"):
        nn.CharRNN(5, 4, cell="gated")


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_float32_stays_float32(cell):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, cell=cell, rng=rng, dtype=np.float32)
    opt = nn.optim.Adam(model.parameters(), lr=0.01)
    logits, state = model(rng.integers(0, 5, (3, 2)))
    loss = nn.cross_entropy(logits, rng.integers(0, 5, (3, 2)))
    loss.backward()
    opt.step()
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    assert all(s.dtype == np.float32 for s in ((state,) if cell == "rnn" else state))
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())


# --- learnable initial state h(0) ----------------------------------------------------------

@pytest.mark.parametrize("cell, fused", [("rnn", False), ("lstm", False), ("gru", False),
                                         ("rnn", True), ("lstm", True), ("gru", True)])
def test_learned_h0_is_a_parameter_and_its_gradient_is_the_initial_states(cell, fused):
    rng = np.random.default_rng(0)
    model = nn.CharRNN(5, 4, cell=cell, learn_h0=True, fused=fused, rng=np.random.default_rng(1))
    plain = nn.CharRNN(5, 4, cell=cell, rng=np.random.default_rng(1))
    names = ["h0", "s0"] if cell == "lstm" else ["h0"]
    assert list(model.named_parameters())[-len(names):] == names
    starts = [model.named_parameters()[n] for n in names]
    for p, v in zip(starts, rng.standard_normal((len(names), 4))):
        p.data[...] = v
    for idx in (rng.integers(0, 5, 6), rng.integers(0, 5, (6, 3))):   # unbatched and batched
        targets = rng.integers(0, 5, idx.shape)
        model.zero_grad()
        nn.cross_entropy(model(idx)[0], targets).backward()
        batch = idx.shape[1:]
        given = [Tensor(np.broadcast_to(p.data, batch + (4,)), requires_grad=True) for p in starts]
        state = tuple(given) if cell == "lstm" else given[0]
        nn.cross_entropy(plain(idx, state)[0], targets).backward()
        for p, g in zip(starts, given):       # one h(0) shared by every row: the rows' gradients add up
            assert np.abs(p.grad).max() > 1e-3
            np.testing.assert_allclose(p.grad, g.grad.reshape(-1, 4).sum(axis=0), rtol=1e-12, atol=1e-15)
    assert_loss_grads_match(lambda: nn.cross_entropy(model(idx)[0], targets), starts)


def test_learned_h0_starts_at_zero_trains_and_loads():
    idx = np.array([0, 1, 2, 2])
    model = nn.CharRNN(4, 3, learn_h0=True, rng=np.random.default_rng(0))
    plain = nn.CharRNN(4, 3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(model(idx)[0].data, plain(idx)[0].data)   # h(0) = 0 before training
    opt = nn.optim.Adagrad(model.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        nn.cross_entropy(model(idx)[0], np.array([1, 2, 2, 3])).backward()
        opt.step()
    assert np.abs(model.h0.data).max() > 1e-3                             # updated as part of θ
    copy = nn.CharRNN(4, 3, learn_h0=True, rng=np.random.default_rng(5))
    copy.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(copy(idx)[0].data, model(idx)[0].data)
    assert plain.initial_state() is None and "h0" not in plain.named_parameters()
    batch = np.stack([idx, idx[::-1]], axis=1)                             # h(0) is a copy used at step 0
    copies = analysis.per_step_grads(model, batch, np.stack([idx, idx], axis=1))
    model.zero_grad()
    nn.cross_entropy(model(batch)[0], np.stack([idx, idx], axis=1)).backward()
    np.testing.assert_allclose(copies["h0"][0], model.h0.grad, rtol=1e-12)
    assert np.abs(model.h0.grad).max() > 0 and not copies["h0"][1:].any()
    with pytest.raises(ValueError, match="learn_h0 needs a built-in cell"):
        nn.CharRNN(4, 3, cell=Ungated(4, 3), learn_h0=True)


class Ungated(nn.Module):
    """A user-written cell: h = tanh(W x + h_prev)."""

    def __init__(self, input_size, hidden_size):
        self.hidden_size = hidden_size
        self.W = Tensor(np.ones((hidden_size, input_size)), requires_grad=True)

    def forward(self, x, h_prev=None):
        a = x @ self.W.T
        return (a if h_prev is None else a + h_prev).tanh()


# --- the neural trigram --------------------------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_neural_trigram_is_the_lecture_formula_with_exact_gradients(act):
    rng = np.random.default_rng(0)
    V, H = 5, 4
    model = nn.NeuralTrigram(V, H, act=act, rng=rng)
    assert list(model.named_parameters()) == ["hidden.W", "hidden.b", "out.W", "out.b"]
    assert model.hidden.W.shape == (H, 2 * V)
    w1, w2, w3 = rng.integers(0, V, 7), rng.integers(0, V, 7), rng.integers(0, V, 7)
    x = np.concatenate([np.eye(V)[w1], np.eye(V)[w2]], axis=1)              # [x(w1); x(w2)]
    a = x @ model.hidden.W.data.T + model.hidden.b.data
    h = {"tanh": np.tanh, "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "relu": lambda a: np.maximum(a, 0)}[act](a)
    np.testing.assert_allclose(model(w1, w2).data, h @ model.out.W.data.T + model.out.b.data, rtol=1e-13)
    assert_loss_grads_match(lambda: nn.cross_entropy(model(w1, w2), w3), model.parameters())


def test_neural_trigram_errors():
    model = nn.NeuralTrigram(3, 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"w2 must be non-empty ids in \[0, 3\)"):
        model(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="differ"):
        model(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="act must be one of"):
        nn.NeuralTrigram(3, 2, act="gelu")
    with pytest.raises(ValueError, match=r"^NeuralTrigram: vocab_size must be a positive integer, got 0$"):
        nn.NeuralTrigram(0, 2)  # named as the user wrote it, not as the Linear layer inside
    with pytest.raises(TypeError, match=r"^NeuralTrigram: hidden_size must be a positive integer, got 2.5$"):
        nn.NeuralTrigram(3, 2.5)
