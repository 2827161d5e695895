"""Any cell: GRUCell against PyTorch and its hand-derived BPTT, user-written cells through CharRNN,
PyTorch weight exchange for the three built-in cells, and the one-line errors of the cell protocol."""
import re

import numpy as np
import pytest
from helpers import MGU

from tinygrad_rnn import Tensor, check, manual, nn
from tinygrad_rnn.nn.cells import ColumnGather

GRU_KEYS = {"cell.W_x": "W_x", "cell.W_h": "W_h", "cell.b_x": "b_x", "cell.b_h": "b_h", "out.W": "W_hy",
            "out.b": "b_y"}


def _torch_gru(torch, cell):
    ref = torch.nn.GRUCell(cell.input_size, cell.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        for name, value in cell.torch_state_dict().items():
            getattr(ref, name).copy_(torch.tensor(value))
    return ref


# ---- GRUCell = torch.nn.GRUCell ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [None, 3])
def test_gru_cell_equals_pytorch_values_and_gradients(batch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    D, H = 4, 5
    cell = nn.GRUCell(D, H, rng=rng)
    ref = _torch_gru(torch, cell)
    lead = () if batch is None else (batch,)
    xs = [rng.standard_normal(lead + (D,)) for _ in range(3)]
    h0 = rng.standard_normal(lead + (H,))
    w = rng.standard_normal(lead + (H,))  # a random readout, so every entry of h gets its own gradient

    x_ours, h_ours = [Tensor(x, requires_grad=True) for x in xs], Tensor(h0, requires_grad=True)
    x_ref, h_ref = [torch.tensor(x, requires_grad=True) for x in xs], torch.tensor(h0, requires_grad=True)
    h, hr = h_ours, h_ref
    for x, xr in zip(x_ours, x_ref):  # three steps, so gradients flow through h_{t-1} too
        h, hr = cell(x, h), ref(xr, hr)
    np.testing.assert_allclose(h.data, hr.detach().numpy(), rtol=0, atol=1e-10)
    (h * w).sum().backward()
    (hr * torch.tensor(w)).sum().backward()
    for ours, theirs in [(cell.W_x, ref.weight_ih), (cell.W_h, ref.weight_hh), (cell.b_x, ref.bias_ih),
                         (cell.b_h, ref.bias_hh), (h_ours, h_ref), *zip(x_ours, x_ref)]:
        assert np.abs(theirs.grad.numpy()).max() > 1e-3
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("batch", [None, 2])
def test_char_rnn_gru_equals_pytorch(batch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    V, H, T = 6, 4, 5
    model = nn.CharRNN(V, H, cell="gru", rng=rng)
    assert isinstance(model.cell, nn.GRUCell) and model.cell_type == "gru"
    ref = _torch_gru(torch, model.cell)
    out_W, out_b = (torch.tensor(p.data, requires_grad=True) for p in (model.out.W, model.out.b))
    shape = (T,) if batch is None else (T, batch)
    inputs, targets = rng.integers(0, V, shape), rng.integers(0, V, shape)

    logits, h_last = model(inputs)
    loss = nn.cross_entropy(logits, targets)
    loss.backward()
    onehot = torch.nn.functional.one_hot(torch.tensor(inputs), V).double()
    h = torch.zeros(shape[1:] + (H,), dtype=torch.float64)
    ref_logits = []
    for t in range(T):
        h = ref(onehot[t], h)
        ref_logits.append(h @ out_W.T + out_b)
    ref_logits = torch.stack(ref_logits)
    ref_loss = torch.nn.functional.cross_entropy(ref_logits.reshape(-1, V), torch.tensor(targets).reshape(-1),
                                                 reduction="sum")
    ref_loss.backward()
    np.testing.assert_allclose(logits.data, ref_logits.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(h_last.data, h.detach().numpy(), rtol=0, atol=1e-10)
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-10)
    theirs = {"cell.W_x": ref.weight_ih, "cell.W_h": ref.weight_hh, "cell.b_x": ref.bias_ih,
              "cell.b_h": ref.bias_hh, "out.W": out_W, "out.b": out_b}
    for name, p in model.named_parameters().items():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=0, atol=1e-10, err_msg=name)


# ---- manual.gru_bptt = autodiff ---------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("batch", [None, 3])
def test_gru_bptt_equals_autodiff(T, batch):
    rng = np.random.default_rng(2)
    V, H = 6, 5
    model = nn.CharRNN(V, H, cell="gru", rng=rng)
    shape = (T,) if batch is None else (T, batch)
    inputs, targets = rng.integers(0, V, shape), rng.integers(0, V, shape)
    h0 = 0.5 * rng.standard_normal(shape[1:] + (H,))
    logits, last = model(inputs, Tensor(h0))
    loss = nn.cross_entropy(logits, targets)
    loss.backward()
    params = {GRU_KEYS[k]: p.data for k, p in model.named_parameters().items()}
    ref_loss, ref_grads, ref_h = manual.gru_bptt(params, inputs, targets, h0)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(last.data, ref_h, rtol=0, atol=1e-12)
    for name, p in model.named_parameters().items():
        ref = ref_grads[GRU_KEYS[name]]
        assert ref.shape == p.shape and np.abs(ref).max() > 1e-3, name
        np.testing.assert_allclose(p.grad, ref, rtol=0, atol=1e-10, err_msg=name)


def test_gru_bptt_state_conventions_and_errors():
    rng = np.random.default_rng(3)
    V, H = 4, 3
    params = {k: rng.standard_normal(s) for k, s in [("W_x", (3 * H, V)), ("W_h", (3 * H, H)), ("b_x", (3 * H,)),
                                                      ("b_h", (3 * H,)), ("W_hy", (V, H)), ("b_y", (V,))]}
    inputs, targets = np.array([0, 1, 3]), np.array([1, 3, 2])
    zero_loss, zero_grads, h_none = manual.gru_bptt(params, inputs, targets)
    loss, grads, h_zero = manual.gru_bptt(params, inputs, targets, np.zeros(H))
    assert loss == zero_loss and h_none.shape == h_zero.shape == (H,)
    _, _, h_col = manual.gru_bptt(params, inputs, targets, np.zeros((H, 1)))  # min-char-rnn's column
    assert h_col.shape == (H, 1)
    np.testing.assert_array_equal(h_col[:, 0], h_zero)
    with pytest.raises(ValueError, match=r"gru_bptt: params is missing key 'b_h'"):
        manual.gru_bptt({k: v for k, v in params.items() if k != "b_h"}, inputs, targets)
    with pytest.raises(ValueError, match=r"^gru_bptt: W_hy has shape \(4, 4\), expected \(4, 3\)"):
        manual.gru_bptt({**params, "W_hy": np.zeros((V, H + 1))}, inputs, targets)


# ---- a user-written cell ---------------------------------------------------------------------------------


class PairCell(nn.Module):
    """A user cell whose state is a pair (h, c), with hidden(state) -> h, as LSTMCell."""

    def __init__(self, input_size, hidden_size, rng):
        self.hidden_size = hidden_size
        self.W = Tensor(0.3 * rng.standard_normal((hidden_size, input_size)), requires_grad=True)

    def forward(self, x, state):
        h, c = (Tensor(np.zeros(x.shape[:-1] + (self.hidden_size,))),) * 2 if state is None else state
        c = c + x @ self.W.T
        return c.tanh() * (1 - h), c

    def hidden(self, state):
        return state[0]


@pytest.mark.parametrize("shape", [(5,), (5, 3)])
def test_user_cell_gets_one_hot_rows_and_passes_gradcheck(shape):
    rng = np.random.default_rng(4)
    V, H = 5, 4
    seen = []
    cell = MGU(V, H, rng)
    forward = cell.forward
    cell.forward = lambda x, h: seen.append((x.data.copy(), h)) or forward(x, h)
    model = nn.CharRNN(V, H, cell=cell, rng=rng)
    assert model.cell is cell and model.cell_type == "MGU"
    assert set(model.named_parameters()) == {"cell.W_f", "cell.U_f", "cell.b_f", "cell.W", "cell.U", "cell.b",
                                             "out.W", "out.b"}
    idx = rng.integers(0, V, shape)
    logits, states = model.unroll(idx)
    assert logits.shape == shape + (V,) and len(states) == shape[0]
    np.testing.assert_array_equal(np.stack([x for x, _ in seen]), np.eye(V)[idx])  # one-hot rows (V,) / (B, V)
    assert seen[0][1] is None and all(h is s for (_, h), s in zip(seen[1:], states))  # None first: zeros
    seen.clear()
    assert check.gradcheck(lambda *_: model(idx)[0], tuple(model.parameters()))


def test_user_cell_trains_through_the_public_api():
    rng = np.random.default_rng(5)
    text = "hello world " * 4
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text])
    model = nn.CharRNN(len(chars), 8, cell=MGU(len(chars), 8, rng), rng=rng)
    optimizer = nn.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        logits, _ = model(ids[:-1])
        loss = nn.cross_entropy(logits, ids[1:], reduction="mean")
        optimizer.zero_grad()
        loss.backward()
        nn.clip_grad_value(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.8 * np.log(len(chars))  # starts near chance
    assert losses[-1] < 0.3 * losses[0]          # the repeated text is learned
    logits, state = model(ids[:-1], nn.detach_state(model(ids[:3])[1]))  # a carried state works too
    assert logits.shape == (len(ids) - 1, len(chars))


def test_user_cell_with_a_pair_state_uses_its_hidden_method():
    rng = np.random.default_rng(6)
    model = nn.CharRNN(4, 3, cell=PairCell(4, 3, rng), rng=rng)
    logits, (h, c) = model(np.array([[0, 1], [2, 3]]))
    assert logits.shape == (2, 2, 4) and h.shape == c.shape == (2, 3)
    assert model.hidden((h, c)) is h
    assert check.gradcheck(lambda *_: model(np.array([0, 3, 1]))[0], tuple(model.parameters()))


def test_builtin_cell_passed_as_an_object_keeps_its_gather():
    model = nn.CharRNN(5, 3, cell=nn.GRUCell(5, 3, rng=np.random.default_rng(0)), rng=np.random.default_rng(0))
    assert model.cell_type == "gru"
    logits, _ = model(np.array([1, 2]))
    ops = set()
    stack = [logits.grad_fn]
    while stack:
        node = stack.pop()
        ops.add(type(node).__name__)
        stack.extend(p.grad_fn for p in node.parents if p.grad_fn is not None)
    assert "ColumnGather" in ops


# ---- bad cells --------------------------------------------------------------------------------------------
class NoForward(nn.Module):
    hidden_size = 3


class NoSize(nn.Module):
    def forward(self, x, h):
        return h


class WrongShape(nn.Module):
    hidden_size = 3

    def __init__(self, out_size):
        self.out_size = out_size
        self.W = Tensor(np.ones((out_size, 4)), requires_grad=True)

    def forward(self, x, h):
        return (x @ self.W.T).tanh()


class TupleNoHidden(nn.Module):
    hidden_size = 3

    def forward(self, x, h):
        z = Tensor(np.zeros(x.shape[:-1] + (3,)))
        return z, z


@pytest.mark.parametrize("cell,error,message", [
    (NoForward(), TypeError, r"^CharRNN: cell NoForward has no forward\(x, state\) method$"),
    (NoSize(), TypeError, r"^CharRNN: cell NoSize needs an int attribute hidden_size, got None$"),
    (object(), TypeError, r"^CharRNN: cell must be 'rnn', 'lstm', 'gru' or an nn.Module cell, got a object"),
    ("transformer", ValueError, r"^CharRNN: cell must be one of \('rnn', 'lstm', 'gru'\) or a cell object"),
])
def test_a_cell_without_the_protocol_is_a_one_line_error(cell, error, message):
    with pytest.raises(error, match=message) as info:
        nn.CharRNN(4, 3, cell=cell)
    assert "\n" not in str(info.value)


def test_cell_sizes_and_options_must_fit():
    with pytest.raises(ValueError, match=r"^CharRNN: hidden_size 5 differs from the cell's hidden_size 3$"):
        nn.CharRNN(4, 5, cell=MGU(4, 3, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"input_size 6 differs from vocab_size 4"):
        nn.CharRNN(4, 3, cell=nn.RNNCell(6, 3))
    with pytest.raises(TypeError, match=r"options cell_input are for a cell CharRNN builds"):
        nn.CharRNN(4, 3, cell=nn.RNNCell(4, 3), cell_input="tanh")
    for cell in ("rnn", "gru"):  # the LSTM's option given to another cell: named, not Python's keyword error
        with pytest.raises(TypeError, match=rf"^CharRNN: cell '{cell}' takes no option cell_input "
                                            r"\(cell_input is the LSTM's: cell='lstm'\)$"):
            nn.CharRNN(4, 3, cell=cell, cell_input="sigmoid")
    with pytest.raises(TypeError, match=r"^CharRNN: cell 'lstm' takes no option forget_bias$"):
        nn.CharRNN(4, 3, cell="lstm", forget_bias=1.0)
    assert nn.CharRNN(4, 3, cell="lstm", cell_input="sigmoid").cell.cell_input == "sigmoid"


@pytest.mark.parametrize("idx,message", [
    (np.array([0, 1]), r"^CharRNN: cell WrongShape returned a hidden state of shape \(4,\), expected \(3,\) "
                       r"\(hidden_size 3\)$"),
    (np.array([[0, 1], [2, 3]]), r"^CharRNN: cell WrongShape returned a hidden state of shape \(2, 4\), expected "
                                 r"\(2, 3\) \(hidden_size 3, batch 2\)$"),
])
def test_a_user_cell_returning_a_wrong_shape_is_a_one_line_error(idx, message):
    model = nn.CharRNN(4, 3, cell=WrongShape(4))
    with pytest.raises(ValueError, match=message):
        model(idx)


def test_a_tuple_state_without_hidden_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^CharRNN: cell TupleNoHidden returned a state whose hidden vector is a "
                                         r"tuple, not a Tensor; give the cell a hidden\(state\) method"):
        nn.CharRNN(4, 3, cell=TupleNoHidden())(np.array([0, 1]))


# ---- PyTorch weight exchange --------------------------------------------------------------------------------
CELL_CASES = [("rnn", nn.RNNCell, "RNNCell", 1), ("lstm", nn.LSTMCell, "LSTMCell", 4), ("gru", nn.GRUCell, "GRUCell", 3)]


def _run_torch(torch, kind, ref, x, h):
    """Two steps of a PyTorch cell from state h (the LSTM's state is (h, c))."""
    state = (torch.tensor(h), torch.tensor(h * 0.5)) if kind == "lstm" else torch.tensor(h)
    for _ in range(2):
        state = ref(torch.tensor(x), state)
    return (state[0] if kind == "lstm" else state).detach().numpy()


def _run_ours(kind, cell, x, h):
    state = (Tensor(h), Tensor(h * 0.5)) if kind == "lstm" else Tensor(h)
    for _ in range(2):
        state = cell(Tensor(x), state)
    return (state[0] if kind == "lstm" else state).data


@pytest.mark.parametrize("kind,cls,torch_name,gates", CELL_CASES)
def test_torch_round_trip_both_directions(kind, cls, torch_name, gates):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    D, H = 3, 4
    x, h = rng.standard_normal((2, D)), rng.standard_normal((2, H))

    # ours -> torch: the same outputs
    ours = cls(D, H, rng=rng)
    ref = getattr(torch.nn, torch_name)(D, H, dtype=torch.float64)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.torch_state_dict().items()})
    np.testing.assert_allclose(_run_ours(kind, ours, x, h), _run_torch(torch, kind, ref, x, h), rtol=0, atol=1e-12)

    # torch -> ours, from a fresh torch cell (two non-zero biases) given as torch tensors requiring grad
    ref = getattr(torch.nn, torch_name)(D, H, dtype=torch.float64)
    back = cls(D, H, rng=np.random.default_rng(8))
    back.load_torch_state_dict(dict(ref.named_parameters()))
    np.testing.assert_allclose(_run_ours(kind, back, x, h), _run_torch(torch, kind, ref, x, h), rtol=0, atol=1e-12)
    # and out again: torch gets back a cell that computes the same
    again = getattr(torch.nn, torch_name)(D, H, dtype=torch.float64)
    again.load_state_dict({k: torch.tensor(v) for k, v in back.torch_state_dict().items()})
    np.testing.assert_allclose(_run_torch(torch, kind, again, x, h), _run_torch(torch, kind, ref, x, h),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,cls,torch_name,gates", CELL_CASES)
def test_torch_state_dict_names_and_layout_without_torch(kind, cls, torch_name, gates):
    rng = np.random.default_rng(9)
    D, H = 3, 2
    cell = cls(D, H, rng=rng)
    d = cell.torch_state_dict()
    assert {k: v.shape for k, v in d.items()} == {"weight_ih": (gates * H, D), "weight_hh": (gates * H, H),
                                                  "bias_ih": (gates * H,), "bias_hh": (gates * H,)}
    params = list(cell.parameters())
    np.testing.assert_array_equal(d["weight_ih"], params[0].data)
    np.testing.assert_array_equal(d["weight_hh"], params[1].data)
    d["weight_ih"][0, 0] += 1.0
    assert params[0].data[0, 0] != d["weight_ih"][0, 0]  # copies, not views of the weights
    # biases: RNN and LSTM have one, so it goes to bias_ih with zeros in bias_hh, and loading sums the two
    b_ih, b_hh = rng.standard_normal(gates * H), rng.standard_normal(gates * H)
    other = cls(D, H, rng=rng)
    other.load_torch_state_dict({**d, "bias_ih": b_ih, "bias_hh": b_hh})
    if kind == "gru":
        np.testing.assert_array_equal(other.b_x.data, b_ih)
        np.testing.assert_array_equal(other.b_h.data, b_hh)
    else:
        np.testing.assert_array_equal(d["bias_hh"], np.zeros(gates * H))
        np.testing.assert_array_equal(list(other.parameters())[2].data, b_ih + b_hh)
    # float32 (PyTorch's default) is cast; missing biases (bias=False) are zeros
    other.load_torch_state_dict({"weight_ih": d["weight_ih"].astype(np.float32), "weight_hh": d["weight_hh"]})
    assert all(p.dtype == np.float64 for p in other.parameters())
    assert all(not p.data.any() for name, p in other.named_parameters().items() if name.startswith("b"))


@pytest.mark.parametrize("bad,message", [
    ({"weight_ih": np.zeros((12, 3))}, r"^GRUCell.load_torch_state_dict: missing weight_hh \(expected weight_ih"),
    ({"weight_ih": np.zeros((12, 3)), "weight_hh": np.zeros((12, 4)), "weight_ih_l0": 0},
     r"^GRUCell.load_torch_state_dict: unexpected 'weight_ih_l0'"),
    ({"weight_ih": np.zeros((9, 3)), "weight_hh": np.zeros((12, 4))},
     r"^GRUCell.load_torch_state_dict: weight_ih has shape \(9, 3\), expected \(12, 3\)$"),
    ({"weight_ih": np.zeros((12, 3), dtype=int), "weight_hh": np.zeros((12, 4))},
     r"^GRUCell.load_torch_state_dict: weight_ih must be floating point, got dtype int64$"),
    ([1, 2], r"^GRUCell.load_torch_state_dict: expected a dict like torch's state_dict\(\), got list$"),
])
def test_load_torch_state_dict_bad_input(bad, message):
    cell = nn.GRUCell(3, 4, rng=np.random.default_rng(0))
    before = cell.W_x.data.copy()
    with pytest.raises(ValueError, match=message):
        cell.load_torch_state_dict(bad)
    np.testing.assert_array_equal(cell.W_x.data, before)  # nothing half-loaded


def test_book_lstm_has_no_torch_counterpart():
    cell = nn.LSTMCell(3, 2, cell_input="sigmoid", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^LSTMCell.torch_state_dict: cell_input='sigmoid' \(the book's LSTM\) "
                                         r"has no PyTorch counterpart"):
        cell.torch_state_dict()
    with pytest.raises(ValueError, match=r"^LSTMCell.load_torch_state_dict: cell_input='sigmoid'"):
        cell.load_torch_state_dict(nn.LSTMCell(3, 2).torch_state_dict())


def test_package_never_imports_torch():
    import subprocess
    import sys
    code = ("import sys, numpy as np, tinygrad_rnn as tr; from tinygrad_rnn import nn, check, manual, viz, train; "
            "c = nn.GRUCell(2, 3); c.load_torch_state_dict(c.torch_state_dict()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- training and checkpoints with a user-written cell -----------------------------------------------------
def test_a_user_cell_trains_with_fit_and_its_checkpoint_needs_the_same_cell(tmp_path):
    from tinygrad_rnn import train
    from tinygrad_rnn.savefile import CheckpointError

    def make(V, H):
        return MGU(V, H, np.random.default_rng(11))

    text = "the cat sat on the mat and the dog sat on the log " * 12
    config = train.Config(cell="rnn", hidden=8, seq_len=8, batch=4, optim="adam", lr=0.02, eval_every=10,
                          sample_every=1000, checkpoint_every=1000)
    run = train.Run.start(config, text, cell=make)
    assert run.config.cell == "MGU" and isinstance(run.model.cell, MGU) and not run.model.fused
    first = train.evaluate(run.model, run.split(text)[1])["nats_per_char"]
    result = train.fit(run, text, 30, checkpoint=tmp_path / "mgu.npz")
    assert result.score["nats_per_char"] < 0.8 * first  # it learned

    back = train.Run.load(tmp_path / "mgu.npz", cell=make)
    assert back.step == 30 and back.config == run.config
    for name, p in run.model.named_parameters().items():
        np.testing.assert_array_equal(back.model.named_parameters()[name].data, p.data)
    np.testing.assert_array_equal(back.state.data, run.state.data)
    train.fit(back, text, 31)  # and it goes on
    with pytest.raises(CheckpointError, match=r"holds a CharRNN with a user-written MGU cell; load it in Python "
                                              r"with train.Run.load\(path, cell=MGU\), or sample it with tinygrad-rnn sample .*mgu.npz "
                                              r"--cell-module MODULE:MGU$"):
        train.Run.load(tmp_path / "mgu.npz")
    with pytest.raises(CheckpointError, match=r"holds a MGU cell, but the cell given to load it is a gru$"):
        train.Run.load(tmp_path / "mgu.npz", cell=nn.GRUCell)
    with pytest.raises(ValueError, match=r"^Run: config.cell must be one of \('rnn', 'lstm', 'gru'\), got 'MGU'"):
        train.Run(run.config, run.vocab, run.unigram)


def test_a_pair_state_cell_checkpoints_its_carried_state(tmp_path):
    from tinygrad_rnn import train

    def make(V, H):
        return PairCell(V, H, np.random.default_rng(12))

    text = "abcabcabd " * 30
    config = train.Config(hidden=4, seq_len=5, batch=3, eval_every=100, sample_every=100, checkpoint_every=100)
    run = train.Run.start(config, text, cell=make)
    train.fit(run, text, 4, checkpoint=tmp_path / "pair.npz")
    back = train.Run.load(tmp_path / "pair.npz", cell=make)
    assert isinstance(back.state, tuple) and len(back.state) == 2
    for a, b in zip(back.state, run.state):
        np.testing.assert_array_equal(a.data, b.data)


def test_viz_and_analysis_work_on_a_user_cell():
    from tinygrad_rnn import analysis, viz
    rng = np.random.default_rng(13)
    model = nn.CharRNN(4, 3, cell=MGU(4, 3, rng), rng=rng)
    source = viz.draw_unrolled(model, 3).source
    for name in ("cell.U_f", "cell.W", "out.W"):  # one node per weight, an edge into each step that uses it
        node = re.search(rf'^\s*(n\d+) \[label="{re.escape(name)}\\n', source, re.M)[1]
        assert len(re.findall(rf"^\s*{node} -> (?!.*invis)", source, re.M)) == 3, name  # visible edges
    inputs, targets = np.array([0, 3, 1, 2]), np.array([3, 1, 2, 0])
    copies = analysis.per_step_grads(model, inputs, targets)
    nn.cross_entropy(model(inputs)[0], targets).backward()
    for name, p in model.named_parameters().items():  # the copies θ_t add up to the full gradient
        np.testing.assert_allclose(copies[name].sum(axis=0), p.grad, rtol=0, atol=1e-12)


def test_folded_picture_of_a_gru_shows_its_gates():
    from tinygrad_rnn import viz
    source = viz.draw_unrolled(nn.CharRNN(4, 3, cell="gru", rng=np.random.default_rng(0)), 3, folded=True).source
    assert "gates r, z, n" in source and "h = (1 - z)" in source
    assert "forget" not in source and "s<sup>" not in source


@pytest.mark.parametrize("V", [6, 200])  # one-hot factors up to 128 columns, a column scatter above
@pytest.mark.parametrize("idx", [3, [5, 5, 0, 5]], ids=["one", "batch"])
def test_column_gather_gradient_equals_the_one_hot_product(idx, V):
    # W x for one-hot x, gathered as W's columns, against the same product written as onehot @ W^T
    rng = np.random.default_rng(0)
    idx = np.asarray(idx) % V
    W1 = Tensor(rng.standard_normal((3, V)), requires_grad=True)
    W2 = Tensor(W1.data.copy(), requires_grad=True)
    g = rng.standard_normal(idx.shape + (3,))
    for _ in range(2):  # two steps' shares add up in .grad
        ColumnGather.apply(W1, idx=idx).backward(g)
        (Tensor(np.eye(V)[idx]) @ W2.T).backward(g)
    np.testing.assert_allclose(W1.grad, W2.grad, rtol=1e-14, atol=1e-15)
    assert np.abs(W1.grad[:, idx]).min() > 0  # repeated columns (5, 5, 5) really summed
