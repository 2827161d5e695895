"""tinygrad_rnn.analysis for every cell (rnn, lstm both ways, gru, a user-written one) against
independent computations: per-step gradients against a model whose steps read separate parameter
copies, influence rows against separate backward passes, ∂L/∂h_t and state Jacobians against central
differences of forward runs, and a linear cell where ‖∂h_{T-1}/∂h_t‖ = ρ^(T-1-t) exactly.
Every function must leave the model exactly as it was."""
import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, analysis, nn
from tinygrad_rnn.function import Affine

V, H, T = 5, 4, 6


class MinimalGatedCell(nn.Module):
    """A user-written cell from tensor ops (the recurrent cell protocol): one gate f,
    f = σ(W_xf x + W_hf h + b_f),  h' = (1 - f) * h + f * tanh(W_xh x + W_hh (f * h) + b_h)."""

    def __init__(self, input_size, hidden_size, rng):
        self.input_size, self.hidden_size = input_size, hidden_size
        u = lambda *shape: Tensor(rng.uniform(-0.6, 0.6, shape), requires_grad=True)
        self.W_xf, self.W_hf, self.b_f = u(hidden_size, input_size), u(hidden_size, hidden_size), u(hidden_size)
        self.W_xh, self.W_hh, self.b_h = u(hidden_size, input_size), u(hidden_size, hidden_size), u(hidden_size)

    def forward(self, x, h=None):
        h = Tensor(np.zeros(x.shape[:-1] + (self.hidden_size,))) if h is None else h
        f = (x @ self.W_xf.T + h @ self.W_hf.T + self.b_f).sigmoid()
        n = (x @ self.W_xh.T + (f * h) @ self.W_hh.T + self.b_h).tanh()
        return (1 - f) * h + f * n


CELLS = [("rnn", {}), ("lstm", {}), ("lstm", {"cell_input": "sigmoid"}), ("gru", {}), ("user", {})]
CELL_IDS = ["rnn", "lstm", "lstm-sigmoid", "gru", "user-cell"]
RECURRENT = ("cell.W_hh", "cell.W_h", "cell.W_hf")  # weights that multiply h_{t-1}: zero at t=0 from h = 0


def make(cell, kw, seed=0):
    if cell == "user":
        return nn.CharRNN(V, H, cell=MinimalGatedCell(V, H, np.random.default_rng(seed)), rng=np.random.default_rng(seed))
    return nn.CharRNN(V, H, cell, rng=np.random.default_rng(seed), **kw)


def sequences(batch, seed=1):
    rng = np.random.default_rng(seed)
    shape = (T,) if batch is None else (T, batch)
    return rng.integers(0, V, shape), rng.integers(0, V, shape)


def initial_state(cell, batch, seed=2):
    rng = np.random.default_rng(seed)
    shape = (H,) if batch is None else (batch, H)
    h = Tensor(rng.uniform(-0.5, 0.5, shape))
    return (h, Tensor(rng.uniform(-0.5, 0.5, shape))) if cell == "lstm" else h


def set_param(model, name, tensor):
    *path, attr = name.split(".")
    owner = model
    for part in path:
        owner = getattr(owner, part)
    setattr(owner, attr, tensor)


def grads_of_copies(model, inputs, targets, state):
    """Unroll step by step, each step reading fresh copies θ_t of every parameter; one backward."""
    params = model.named_parameters()
    copies = {name: [] for name in params}
    loss = None
    try:
        for t in range(len(inputs)):
            for name, p in params.items():
                copies[name].append(Tensor(p.data.copy(), requires_grad=True))
                set_param(model, name, copies[name][-1])
            logits, (state,) = model.unroll(inputs[t:t + 1], state)
            step_loss = nn.cross_entropy(logits, targets[t:t + 1])
            loss = step_loss if loss is None else loss + step_loss
    finally:
        for name, p in params.items():
            set_param(model, name, p)
    loss.backward()
    return {name: np.stack([c.grad for c in cs]) for name, cs in copies.items()}


def snapshot(model):
    return [(name, p, p.data.copy(), p.requires_grad, p.grad, None if p.grad is None else p.grad.copy())
            for name, p in model.named_parameters().items()]


def assert_untouched(model, before):
    after = model.named_parameters()
    assert list(after) == [name for name, *_ in before]
    for name, p, data, requires_grad, grad, grad_values in before:
        assert after[name] is p, name
        np.testing.assert_array_equal(p.data, data)
        assert p.requires_grad == requires_grad
        assert p.grad is grad, name
        if grad is not None:
            np.testing.assert_array_equal(p.grad, grad_values)


def forward_loss(model, inputs, targets, state):
    with tr.no_grad():
        logits, _ = model(inputs, state)
        return nn.cross_entropy(logits, targets).item()


# ---- per_step_grads --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("with_state", [False, True])
def test_per_step_grads_equal_the_gradients_of_separate_copies(cell, kw, batch, with_state):
    model = make(cell, kw)
    inputs, targets = sequences(batch)
    state = initial_state(cell, batch) if with_state else None
    got = analysis.per_step_grads(model, inputs, targets, state)
    want = grads_of_copies(model, inputs, targets, state)
    assert list(got) == list(model.named_parameters())
    for name in want:
        assert got[name].shape == (T, *model.named_parameters()[name].shape)
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-12, err_msg=name)
    # and their sum is the ordinary gradient of the shared weights
    logits, _ = model(inputs, state)
    nn.cross_entropy(logits, targets).backward()
    for name, p in model.named_parameters().items():
        np.testing.assert_allclose(got[name].sum(axis=0), p.grad, rtol=0, atol=1e-12, err_msg=name)
        per_step = np.abs(got[name]).sum(axis=tuple(range(1, p.ndim + 1)))
        recurrent = name in RECURRENT and state is None  # h_{-1} = 0: no step-0 term
        assert per_step[0] == 0 if recurrent else per_step[0] > 0, name
        assert np.all(per_step[1:] > 0), name


def test_per_step_grads_refuses_ops_outside_a_time_step():
    class Outside(nn.CharRNN):  # uses out.W once more after the loop, in no step's scope
        def unroll(self, idx, state=None):
            logits, states = super().unroll(idx, state)
            return logits + (self.out.W * 0.0).sum(), states
    model = Outside(V, H, rng=np.random.default_rng(0))
    inputs, targets = sequences(None)
    with pytest.raises(ValueError, match=r"^per_step_grads: Mul uses out\.W outside a time step scope [^\n]*$"):
        analysis.per_step_grads(model, inputs, targets)


# ---- hidden_grads and influence --------------------------------------------------------------------------
def numeric_hidden_grad(model, inputs, targets, state, k, eps=1e-6):
    """∂L/∂h_k by central differences: run to step k, perturb h_k (an LSTM keeps s_k), run on."""
    with tr.no_grad():
        _, states = model.unroll(inputs[:k + 1], state)
    z = states[-1]
    h = z if isinstance(z, Tensor) else z[0]
    g = np.zeros_like(h.data)
    for i in np.ndindex(h.shape):
        total = []
        for sign in (1, -1):
            hp = h.data.copy()
            hp[i] += sign * eps
            zp = Tensor(hp) if isinstance(z, Tensor) else (Tensor(hp), z[1])
            with tr.no_grad():
                loss = nn.cross_entropy(model.out(zp if isinstance(z, Tensor) else zp[0]), targets[k]).item()
                if k + 1 < len(inputs):
                    loss += forward_loss(model, inputs[k + 1:], targets[k + 1:], zp)
            total.append(loss)
        g[i] = (total[0] - total[1]) / (2 * eps)
    return g


@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("batch", [None, 2])
def test_hidden_grads_match_central_differences(cell, kw, batch):
    model = make(cell, kw)
    inputs, targets = sequences(batch)
    state = initial_state(cell, batch)
    got = analysis.hidden_grads(model, inputs, targets, state)
    assert got.shape == (T, H) if batch is None else (T, batch, H)
    for k in range(T):
        np.testing.assert_allclose(got[k], numeric_hidden_grad(model, inputs, targets, state, k),
                                   rtol=1e-6, atol=1e-8, err_msg=f"t={k}")


@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
def test_hidden_grads_of_one_loss_term_add_up_to_the_sum(cell, kw):
    model = make(cell, kw)
    inputs, targets = sequences(None)
    parts = [analysis.hidden_grads(model, inputs, targets, loss=k) for k in range(T)]
    for k, part in enumerate(parts):
        assert np.all(part[k + 1:] == 0) and np.abs(part[k]).sum() > 0  # L_k cannot reach later steps
    np.testing.assert_allclose(sum(parts), analysis.hidden_grads(model, inputs, targets), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(analysis.hidden_grads(model, inputs, targets, loss="last"), parts[-1])
    np.testing.assert_array_equal(analysis.hidden_grads(model, inputs, targets, loss=-1), parts[-1])


@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("batch", [None, 3])
def test_influence_rows_match_separate_backward_passes(cell, kw, batch):
    model = make(cell, kw)
    inputs, targets = sequences(batch)
    state = initial_state(cell, batch)
    M = analysis.influence(model, inputs, targets, state)
    assert M.shape == (T, T)
    for t in range(T):  # a fresh graph and one backward of L_t alone per row
        logits, states = model.unroll(inputs, state)
        hs = [model.hidden(s).retain_grad() for s in states]
        nn.cross_entropy(logits[t], targets[t]).backward()
        row = [np.linalg.norm(h.grad) if k <= t else 0.0 for k, h in enumerate(hs)]
        np.testing.assert_allclose(M[t], row, rtol=1e-12, atol=0, err_msg=f"row {t}")
    assert np.all(np.triu(M, 1) == 0) and np.all(np.diag(M) > 0)
    model.zero_grad()


# ---- state_jacobians ---------------------------------------------------------------------------------------
def flat(state):
    return np.concatenate([state.data.ravel()] if isinstance(state, Tensor) else [s.data.ravel() for s in state])


def unflat(z, like):
    if isinstance(like, Tensor):
        return Tensor(z.reshape(like.shape))
    return tuple(Tensor(part.reshape(s.shape)) for part, s in zip(np.split(z, len(like)), like))


@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("shape", ["(T,)", "(T, 1)"])
def test_state_jacobians_match_central_differences(cell, kw, shape):
    model = make(cell, kw)
    inputs, _ = sequences(None if shape == "(T,)" else 1)
    state = initial_state(cell, None if shape == "(T,)" else 1)
    J = analysis.state_jacobians(model, inputs, state)
    N = 2 * H if cell == "lstm" else H
    assert J.shape == (T, N, N)
    np.testing.assert_array_equal(J[T - 1], np.eye(N))
    with tr.no_grad():
        _, states = model.unroll(inputs, state)
    eps = 1e-6
    for t in range(T - 1):
        z = flat(states[t])
        numeric = np.zeros((N, N))
        for j in range(N):
            ends = []
            for sign in (1, -1):
                zp = z.copy()
                zp[j] += sign * eps
                with tr.no_grad():
                    _, last = model(inputs[t + 1:], unflat(zp, states[t]))
                ends.append(flat(last))
            numeric[:, j] = (ends[0] - ends[1]) / (2 * eps)
        np.testing.assert_allclose(J[t], numeric, rtol=1e-6, atol=1e-9, err_msg=f"t={t}")


class LinearCell(nn.Module):
    """h_t = W_xh x_t + W_hh h_{t-1} + b_h: no activation, so ∂h_{T-1}/∂h_t = W_hh^(T-1-t)."""

    def __init__(self, input_size, hidden_size, rng):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_xh = Tensor(rng.uniform(-0.5, 0.5, (hidden_size, input_size)), requires_grad=True)
        self.W_hh = Tensor(rng.uniform(-0.5, 0.5, (hidden_size, hidden_size)), requires_grad=True)
        self.b_h = Tensor(rng.uniform(-0.5, 0.5, hidden_size), requires_grad=True)

    def forward(self, x, h=None):
        h = Tensor(np.zeros(x.shape[:-1] + (self.hidden_size,))) if h is None else h
        return Affine.apply(h, self.W_hh, self.b_h, x @ self.W_xh.T)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.3])
def test_linear_cell_jacobian_norms_are_powers_of_the_spectral_radius(rho):
    model = nn.CharRNN(V, H, cell=LinearCell(V, H, np.random.default_rng(0)), rng=np.random.default_rng(0))
    Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((H, H)))
    model.cell.W_hh.data[...] = rho * Q  # a scaled rotation: normal, so ‖W^k‖ = ρ^k exactly
    assert analysis.spectral_radius(model.cell.W_hh) == pytest.approx(rho, rel=1e-12)
    inputs, _ = sequences(None)
    J = analysis.state_jacobians(model, inputs)
    norms = [np.linalg.norm(J[t], 2) for t in range(T)]
    np.testing.assert_allclose(norms, rho ** (T - 1 - np.arange(T)), rtol=1e-12)


# ---- spectral_radius -------------------------------------------------------------------------------------
def test_spectral_radius_of_known_matrices():
    triangular = np.triu(np.random.default_rng(0).standard_normal((5, 5)), 1) + np.diag([0.3, -2.5, 1, 0.1, 2])
    assert analysis.spectral_radius(triangular) == pytest.approx(2.5, rel=1e-12)
    rotation = 1.7 * np.array([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues ±1.7i: complex, radius 1.7
    assert analysis.spectral_radius(Tensor(rotation)) == pytest.approx(1.7, rel=1e-12)
    assert isinstance(analysis.spectral_radius(rotation), float)


# ---- the model is left exactly as it was -------------------------------------------------------------------
@pytest.mark.parametrize("cell,kw", CELLS, ids=CELL_IDS)
def test_every_function_leaves_the_model_as_it_was(cell, kw):
    model = make(cell, kw)
    inputs, targets = sequences(None)
    model.zero_grad()
    logits, _ = model(inputs)
    nn.cross_entropy(logits, targets).backward()  # some .grad arrays to keep
    model.out.b.grad = None                       # and one parameter without
    before = snapshot(model)
    calls = [lambda: analysis.hidden_grads(model, inputs, targets),
             lambda: analysis.influence(model, inputs, targets),
             lambda: analysis.per_step_grads(model, inputs, targets),
             lambda: analysis.state_jacobians(model, inputs)]
    results = [call() for call in calls]
    assert_untouched(model, before)
    with tr.no_grad():  # inside no_grad too: the same numbers, the model untouched
        for call, result in zip(calls, results):
            again = call()
            if isinstance(result, dict):
                assert all(np.array_equal(again[k], result[k]) for k in result)
            else:
                np.testing.assert_array_equal(again, result)
    assert tr.is_grad_enabled()
    assert_untouched(model, before)


# ---- bad input: one-line errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("call,error,says", [
    (lambda m, x, y: analysis.hidden_grads(m, x, y[:-1]), ValueError, "hidden_grads: targets must be integers of the inputs' shape (6,)"),
    (lambda m, x, y: analysis.influence(m, x.astype(float), y), ValueError, "influence: inputs must be integers of shape (T,) or (T, B)"),
    (lambda m, x, y: analysis.hidden_grads(m, x, y, loss="first"), ValueError, "hidden_grads: loss must be 'sum', 'last' or a step index"),
    (lambda m, x, y: analysis.hidden_grads(m, x, y, loss=6), ValueError, "a step index in [0, 6), got 6"),
    (lambda m, x, y: analysis.state_jacobians(m, np.stack([x, x], axis=1)), ValueError, "state_jacobians: needs one sequence (B = 1)"),
    (lambda m, x, y: analysis.per_step_grads(object(), x, y), TypeError, "per_step_grads: model must be a CharRNN"),
    (lambda m, x, y: analysis.spectral_radius(np.ones((3, 4))), ValueError, "spectral_radius: needs a non-empty square matrix, got shape (3, 4)"),
])
def test_bad_input_is_a_one_line_error(call, error, says):
    model = make("rnn", {})
    inputs, targets = sequences(None)
    with pytest.raises(error) as info:
        call(model, inputs, targets)
    assert says in str(info.value) and "\n" not in str(info.value)


# ---- fused models: the same numbers as the op-level model ------------------------------------------------
@pytest.mark.parametrize("cell,kw", CELLS[:3], ids=CELL_IDS[:3])
def test_fused_models_give_the_op_level_numbers(cell, kw):
    op = make(cell, kw)
    fused = nn.CharRNN(V, H, cell, rng=np.random.default_rng(0), fused=True, **kw)
    inputs, targets = sequences(2)
    state = initial_state(cell, 2)
    for fn in (analysis.hidden_grads, analysis.influence):
        np.testing.assert_allclose(fn(fused, inputs, targets, state), fn(op, inputs, targets, state), rtol=1e-10, atol=1e-14)
    got, want = analysis.per_step_grads(fused, inputs, targets, state), analysis.per_step_grads(op, inputs, targets, state)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-14, err_msg=name)
    assert fused.fused is True
    single = inputs[:, :1]
    np.testing.assert_allclose(analysis.state_jacobians(fused, single), analysis.state_jacobians(op, single),
                               rtol=1e-10, atol=1e-14)
