"""Checks of the hand-derived gradients in tinygrad_rnn.manual against finite differences, each other
and reference forward passes written out here from the equations (min-char-rnn, DL book ch. 10)."""
import ast
from pathlib import Path

import numpy as np
import pytest

from tinygrad_rnn import manual

V, H, K = 5, 4, 3  # vocabulary, hidden, classes: all different, so a transposed weight cannot pass


def _rnn_params(rng, dtype=np.float64):
    params = {"W_xh": rng.normal(0, 0.8, (H, V)), "W_hh": rng.normal(0, 0.5, (H, H)),
              "b_h": rng.normal(0, 0.3, H), "W_hy": rng.normal(0, 0.8, (K, H)),
              "b_y": rng.normal(0, 0.3, K)}
    return {k: v.astype(dtype) for k, v in params.items()}


def _lstm_params(rng):
    return {"W_x": rng.normal(0, 0.8, (4 * H, V)), "W_h": rng.normal(0, 0.5, (4 * H, H)),
            "b": rng.normal(0, 0.3, 4 * H), "W_hy": rng.normal(0, 0.8, (K, H)),
            "b_y": rng.normal(0, 0.3, K)}


def _sequences(rng, T, B=None):
    """int inputs in [0, V) and targets in [0, K), shape (T,) or (T, B)."""
    shape = (T,) if B is None else (T, B)
    return rng.integers(0, V, shape), rng.integers(0, K, shape)


def _numerical_grads(loss_fn, params, eps=1e-5):
    """Central differences (L(θ + eps) - L(θ - eps)) / 2eps for every entry of every parameter."""
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = loss_fn(params)
            p[idx] = old - eps
            down = loss_fn(params)
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads[name] = g
    return grads


def _rel_error(a, b):
    """Largest entry-wise difference relative to the largest entry of either array."""
    scale = max(np.abs(a).max(), np.abs(b).max())
    return 0.0 if scale == 0 else np.abs(a - b).max() / scale


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _rnn_forward_reference(params, inputs, targets, h0):
    """Unbatched eqs. 10.8–10.14 as column vectors, one-hot x_t spelled out: ([L_t], [h_t]) per step."""
    W_xh, W_hh, b_h, W_hy, b_y = (params[k] for k in ("W_xh", "W_hh", "b_h", "W_hy", "b_y"))
    h, losses, hs = h0, [], []
    for x_t, y_t in zip(inputs, targets):
        x = np.zeros(V)
        x[x_t] = 1.0
        h = np.tanh(W_xh @ x + W_hh @ h + b_h)
        losses.append(-np.log(_softmax(W_hy @ h + b_y)[y_t]))
        hs.append(h)
    return losses, hs


# --- BPTT against finite differences -----------------------------------------------------------

@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("B", [None, 3])
def test_rnn_bptt_matches_finite_differences(T, B):
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, T, B)
    h0 = rng.normal(0, 0.5, H if B is None else (B, H))
    loss, grads, h_last = manual.rnn_bptt(params, inputs, targets, h0)
    numerical = _numerical_grads(lambda p: manual.rnn_bptt(p, inputs, targets, h0)[0], params)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape and grads[name].dtype == params[name].dtype
        assert _rel_error(grads[name], numerical[name]) < 1e-6, name
    assert h_last.shape == h0.shape


def test_rnn_loss_and_state_match_the_book_forward():
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, 20)
    h0 = rng.normal(0, 0.5, H)
    loss, _, h_last = manual.rnn_bptt(params, inputs, targets, h0)
    ref_losses, ref_hs = _rnn_forward_reference(params, inputs, targets, h0)
    assert loss == pytest.approx(sum(ref_losses), rel=1e-13)
    np.testing.assert_allclose(h_last, ref_hs[-1], rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell_input", ["tanh", "sigmoid"])
@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("B", [None, 3])
def test_lstm_bptt_matches_finite_differences(cell_input, T, B):
    rng = np.random.default_rng(0)
    params = _lstm_params(rng)
    inputs, targets = _sequences(rng, T, B)
    shape = H if B is None else (B, H)
    state0 = (rng.normal(0, 0.5, shape), rng.normal(0, 0.5, shape))
    loss, grads, (h_last, s_last) = manual.lstm_bptt(params, inputs, targets, state0, cell_input)
    numerical = _numerical_grads(
        lambda p: manual.lstm_bptt(p, inputs, targets, state0, cell_input)[0], params)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape and grads[name].dtype == params[name].dtype
        assert _rel_error(grads[name], numerical[name]) < 1e-6, name
    assert h_last.shape == s_last.shape == state0[0].shape


def _lstm_book_forward(params, inputs, targets, state0, act):
    """The book's LSTM written unit by unit (eqs. 10.40–10.44), `act` in place of the σ of 10.41."""
    U_g, U_f, U, U_o = np.split(params["W_x"], 4)  # blocks i, f, g, o: the book's g is our i
    W_g, W_f, W, W_o = np.split(params["W_h"], 4)
    b_g, b_f, b, b_o = np.split(params["b"], 4)
    h_prev, s_prev = state0
    loss = 0.0
    for x_t, y_t in zip(inputs, targets):
        x = np.zeros(V)
        x[x_t] = 1.0
        f, g, q, s, h = (np.zeros(H) for _ in range(5))
        for i in range(H):
            f[i] = _sigmoid(b_f[i] + sum(U_f[i, j] * x[j] for j in range(V))
                            + sum(W_f[i, j] * h_prev[j] for j in range(H)))                  # 10.40
            g[i] = _sigmoid(b_g[i] + sum(U_g[i, j] * x[j] for j in range(V))
                            + sum(W_g[i, j] * h_prev[j] for j in range(H)))                  # 10.42
            s[i] = f[i] * s_prev[i] + g[i] * act(b[i] + sum(U[i, j] * x[j] for j in range(V))
                                                 + sum(W[i, j] * h_prev[j] for j in range(H)))  # 10.41
            q[i] = _sigmoid(b_o[i] + sum(U_o[i, j] * x[j] for j in range(V))
                            + sum(W_o[i, j] * h_prev[j] for j in range(H)))                  # 10.44
            h[i] = np.tanh(s[i]) * q[i]                                                      # 10.43
        loss -= np.log(_softmax(params["W_hy"] @ h + params["b_y"])[y_t])
        h_prev, s_prev = h, s
    return loss, h_prev, s_prev


@pytest.mark.parametrize("cell_input, act", [("sigmoid", _sigmoid), ("tanh", np.tanh)])
def test_lstm_forward_matches_book_equations_10_40_to_10_44(cell_input, act):
    rng = np.random.default_rng(0)
    params = _lstm_params(rng)
    inputs, targets = _sequences(rng, 5)
    state0 = (rng.normal(0, 0.5, H), rng.normal(0, 0.5, H))
    loss, _, (h_last, s_last) = manual.lstm_bptt(params, inputs, targets, state0, cell_input)
    ref_loss, ref_h, ref_s = _lstm_book_forward(params, inputs, targets, state0, act)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(h_last, ref_h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(s_last, ref_s, rtol=0, atol=1e-14)


def test_lstm_cell_inputs_differ():
    rng = np.random.default_rng(0)
    params = _lstm_params(rng)
    inputs, targets = _sequences(rng, 3)
    state0 = (np.zeros(H), np.zeros(H))
    tanh_loss = manual.lstm_bptt(params, inputs, targets, state0, "tanh")[0]
    sigmoid_loss = manual.lstm_bptt(params, inputs, targets, state0, "sigmoid")[0]
    assert abs(tanh_loss - sigmoid_loss) > 1e-3


# --- batches, chunks, RTRL --------------------------------------------------------------------

def test_batched_equals_sum_of_sequences():
    rng = np.random.default_rng(0)
    B = 4
    inputs, targets = _sequences(rng, 7, B)
    runs = [(manual.rnn_bptt, _rnn_params(rng), rng.normal(0, 0.5, (B, H))),
            (manual.lstm_bptt, _lstm_params(rng), (rng.normal(0, 0.5, (B, H)), rng.normal(0, 0.5, (B, H))))]
    for fn, params, state0 in runs:
        loss, grads, last = fn(params, inputs, targets, state0)
        total = {k: np.zeros_like(v) for k, v in params.items()}
        total_loss = 0.0
        for b in range(B):
            row0 = state0[b] if fn is manual.rnn_bptt else (state0[0][b], state0[1][b])
            loss_b, grads_b, last_b = fn(params, inputs[:, b], targets[:, b], row0)
            total_loss += loss_b
            for k in total:
                total[k] += grads_b[k]
            np.testing.assert_allclose(np.asarray(last)[..., b, :], np.asarray(last_b), rtol=0, atol=1e-14)
        assert loss == pytest.approx(total_loss, rel=1e-13)
        for k in params:
            np.testing.assert_allclose(grads[k], total[k], rtol=0, atol=1e-12)


def test_chunks_chain_through_h_last():
    rng = np.random.default_rng(0)
    inputs, targets = _sequences(rng, 20, 2)
    params = _rnn_params(rng)
    h0 = rng.normal(0, 0.5, (2, H))
    full_loss, _, full_h = manual.rnn_bptt(params, inputs, targets, h0)
    loss1, _, h_mid = manual.rnn_bptt(params, inputs[:8], targets[:8], h0)
    loss2, _, h_end = manual.rnn_bptt(params, inputs[8:], targets[8:], h_mid)
    assert loss1 + loss2 == pytest.approx(full_loss, rel=1e-13)
    np.testing.assert_allclose(h_end, full_h, rtol=0, atol=1e-14)

    params = _lstm_params(rng)
    state0 = (rng.normal(0, 0.5, (2, H)), rng.normal(0, 0.5, (2, H)))
    full_loss, _, (full_h, full_s) = manual.lstm_bptt(params, inputs, targets, state0)
    loss1, _, mid = manual.lstm_bptt(params, inputs[:8], targets[:8], state0)
    loss2, _, (h_end, s_end) = manual.lstm_bptt(params, inputs[8:], targets[8:], mid)
    assert loss1 + loss2 == pytest.approx(full_loss, rel=1e-13)
    np.testing.assert_allclose(h_end, full_h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(s_end, full_s, rtol=0, atol=1e-14)


@pytest.mark.parametrize("T", [1, 3, 20])
@pytest.mark.parametrize("B", [None, 3])
def test_rtrl_equals_bptt(T, B):
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, T, B)
    h0 = rng.normal(0, 0.5, H if B is None else (B, H))
    loss, grads, _ = manual.rnn_bptt(params, inputs, targets, h0)
    rtrl_loss, rtrl_grads = manual.rnn_rtrl(params, inputs, targets, h0)
    assert rtrl_loss == pytest.approx(loss, rel=1e-13)
    assert set(rtrl_grads) == set(grads)
    for k in grads:
        assert rtrl_grads[k].shape == grads[k].shape
        assert np.abs(rtrl_grads[k] - grads[k]).max() < 1e-10, k


# --- truncated BPTT ---------------------------------------------------------------------------

def test_truncate_T_or_more_is_full_bptt():
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, 12, 2)
    h0 = rng.normal(0, 0.5, (2, H))
    _, full, _ = manual.rnn_bptt(params, inputs, targets, h0)
    for k in (12, 50):
        _, grads, _ = manual.rnn_bptt(params, inputs, targets, h0, truncate=k)
        for name in full:
            np.testing.assert_allclose(grads[name], full[name], rtol=0, atol=1e-13)
    _, short, _ = manual.rnn_bptt(params, inputs, targets, h0, truncate=11)
    assert np.abs(short["W_hh"] - full["W_hh"]).max() > 1e-8  # one step fewer does change it


def test_truncate_1_is_the_one_step_gradient():
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, 10)
    h0 = rng.normal(0, 0.5, H)
    _, grads, _ = manual.rnn_bptt(params, inputs, targets, h0, truncate=1)

    # by hand: every loss term reaches the weights through its own h_t only, h_{t-1} a constant
    _, hs = _rnn_forward_reference(params, inputs, targets, h0)
    expected = {k: np.zeros_like(v) for k, v in params.items()}
    for t, (x_t, y_t) in enumerate(zip(inputs, targets)):
        h, h_prev = hs[t], (hs[t - 1] if t else h0)
        dy = _softmax(params["W_hy"] @ h + params["b_y"])
        dy[y_t] -= 1.0
        dhraw = (1 - h ** 2) * (params["W_hy"].T @ dy)
        expected["W_hy"] += np.outer(dy, h)
        expected["b_y"] += dy
        expected["W_hh"] += np.outer(dhraw, h_prev)
        expected["W_xh"][:, x_t] += dhraw
        expected["b_h"] += dhraw
    for k in params:
        np.testing.assert_allclose(grads[k], expected[k], rtol=0, atol=1e-13)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_truncate_k_is_the_gradient_with_h_t_minus_k_held_constant(k):
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    inputs, targets = _sequences(rng, 9)
    h0 = rng.normal(0, 0.5, H)
    _, grads, _ = manual.rnn_bptt(params, inputs, targets, h0, truncate=k)
    _, hs = _rnn_forward_reference(params, inputs, targets, h0)
    frozen = [h0] + hs  # frozen[t] = h_{t-1} of the unperturbed run

    def windowed_loss(p):
        """Each loss term rebuilt from h_{t-k}, frozen at its unperturbed value, through k steps."""
        loss = 0.0
        for t in range(len(inputs)):
            start = max(0, t - k + 1)
            losses, _ = _rnn_forward_reference(p, inputs[start:t + 1], targets[start:t + 1], frozen[start])
            loss += losses[-1]
        return loss

    numerical = _numerical_grads(windowed_loss, params)
    for name in params:
        assert _rel_error(grads[name], numerical[name]) < 1e-6, name


# --- softmax ----------------------------------------------------------------------------------

def test_softmax_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 6)
    J = manual.softmax_jacobian(z)
    eps = 1e-6
    numerical = np.zeros((6, 6))
    for j in range(6):
        dz = np.zeros(6)
        dz[j] = eps
        numerical[:, j] = (_softmax(z + dz) - _softmax(z - dz)) / (2 * eps)
    assert J.shape == (6, 6)
    np.testing.assert_allclose(J, numerical, rtol=0, atol=1e-9)
    np.testing.assert_allclose(J, J.T, rtol=0, atol=1e-17)
    np.testing.assert_allclose(J.sum(axis=0), 0.0, rtol=0, atol=1e-15)  # σ sums to 1 whatever z


def test_softmax_jacobian_is_stable_and_chains_to_p_minus_onehot():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 5)
    J_big = manual.softmax_jacobian(z + 1e4)  # exp(1e4) overflows unless the max is subtracted
    np.testing.assert_allclose(J_big, manual.softmax_jacobian(z), rtol=0, atol=1e-12)
    # chain rule for L = -log p[c]: dL/dz = J^T dL/dp = J^T (-onehot / p) = p - onehot (eq. 10.18)
    p, c = _softmax(z), 2
    dL_dp = np.zeros(5)
    dL_dp[c] = -1.0 / p[c]
    onehot = np.eye(5)[c]
    np.testing.assert_allclose(manual.softmax_jacobian(z).T @ dL_dp, p - onehot, rtol=0, atol=1e-14)


def test_large_logits_give_a_finite_loss():
    rng = np.random.default_rng(0)
    params = _rnn_params(rng)
    params["b_y"] = np.array([1e4, 0.0, -1e4])
    _, targets = _sequences(rng, 4)
    loss, grads, _ = manual.rnn_bptt(params, [0, 1, 2, 3], targets, np.zeros(H))
    assert np.isfinite(loss) and loss > 0
    assert all(np.isfinite(g).all() for g in grads.values())


def test_quadratic_vs_cross_entropy_gradient_of_min_char_rnn_derivation():
    rng = np.random.default_rng(0)
    W, b, h = rng.normal(size=(K, H)), rng.normal(size=K), rng.normal(size=H)
    y = W @ h + b  # a linear output layer
    t = rng.normal(size=K)
    eps = 1e-6

    def grad_fd(f, v):
        return np.array([(f(v + eps * e) - f(v - eps * e)) / (2 * eps) for e in np.eye(len(v))])

    def quadratic(v):
        return 0.5 * np.sum((v - t) ** 2)

    c = 1

    def cross_entropy(v):
        return -np.log(_softmax(v)[c])

    np.testing.assert_allclose(grad_fd(quadratic, y), y - t, rtol=0, atol=1e-8)
    p_minus_onehot = _softmax(y) - np.eye(K)[c]
    np.testing.assert_allclose(grad_fd(cross_entropy, y), p_minus_onehot, rtol=0, atol=1e-8)
    assert np.abs((y - t) - p_minus_onehot).max() > 0.1  # the two really are different gradients

    # rnn_bptt's dy is the same p - onehot: at T=1, db_y = dy
    params = _rnn_params(rng)
    _, grads, h1 = manual.rnn_bptt(params, [3], [c], np.zeros(H))
    expected = _softmax(params["W_hy"] @ h1 + params["b_y"]) - np.eye(K)[c]
    np.testing.assert_allclose(grads["b_y"], expected, rtol=0, atol=1e-15)


# --- dtypes, errors, imports ------------------------------------------------------------------

def test_float32_params_give_float32_grads():
    rng = np.random.default_rng(0)
    inputs, targets = _sequences(rng, 3)
    params = _rnn_params(rng, np.float32)
    for fn in (manual.rnn_bptt, manual.rnn_rtrl):
        grads = fn(params, inputs, targets, np.zeros(H, np.float32))[1]
        assert all(grads[k].dtype == np.float32 and grads[k].shape == params[k].shape for k in params)
    lstm_params = {k: v.astype(np.float32) for k, v in _lstm_params(rng).items()}
    grads = manual.lstm_bptt(lstm_params, inputs, targets, (np.zeros(H), np.zeros(H)))[1]
    assert all(grads[k].dtype == np.float32 for k in lstm_params)


def _bad_calls():
    rng = np.random.default_rng(0)
    p, lp = _rnn_params(rng), _lstm_params(rng)
    x, y = np.array([0, 1, 2]), np.array([0, 1, 2])
    h, s = np.zeros(H), np.zeros(H)
    missing = {k: v for k, v in p.items() if k != "W_hh"}
    return [
        (lambda: manual.rnn_bptt(missing, x, y, h), "missing key 'W_hh'"),
        (lambda: manual.rnn_bptt({**p, "W_xy": p["W_xh"]}, x, y, h), "unexpected key 'W_xy'"),
        (lambda: manual.rnn_bptt({**p, "W_hh": np.zeros((H, H + 1))}, x, y, h),
         r"W_hh has shape \(4, 5\), expected \(4, 4\)"),
        (lambda: manual.rnn_bptt({**p, "b_y": np.zeros(K + 1)}, x, y, h), r"b_y has shape \(4,\)"),
        (lambda: manual.rnn_bptt({**p, "b_h": np.zeros((1, H))}, x, y, h), "b_h must be 1-D"),
        (lambda: manual.rnn_bptt({**p, "W_xh": np.zeros((H, V), int)}, x, y, h), "W_xh must be a floating"),
        (lambda: manual.rnn_bptt(p, x, np.array([0, 1, K]), h), r"targets holds 3, outside \[0, 3\)"),
        (lambda: manual.rnn_bptt(p, np.array([0, -1, 2]), y, h), "inputs holds -1"),
        (lambda: manual.rnn_bptt(p, np.array([0.0, 1.0, 2.0]), y, h), "inputs must be integers"),
        (lambda: manual.rnn_bptt(p, x, y[:2], h), "inputs shape .* and targets shape .* differ"),
        (lambda: manual.rnn_bptt(p, [], [], h), "inputs is empty"),
        (lambda: manual.rnn_bptt(p, x, y, np.zeros(H + 1)), r"h0 has shape \(5,\), expected \(4,\)"),
        (lambda: manual.rnn_bptt(p, x[:, None], y[:, None], h), r"h0 has shape \(4,\), expected \(1, 4\)"),
        (lambda: manual.rnn_bptt(p, x, y, h, truncate=0), "truncate must be None or a positive int"),
        (lambda: manual.rnn_bptt(p, x, y, h, truncate=1.5), "truncate must be"),
        (lambda: manual.rnn_rtrl(missing, x, y, h), "rnn_rtrl: params is missing key 'W_hh'"),
        (lambda: manual.rnn_rtrl(p, x, np.array([0, 9, 1]), h), "rnn_rtrl: targets holds 9"),
        (lambda: manual.lstm_bptt(p, x, y, (h, s)), "lstm_bptt: params is missing key 'W_x'"),
        (lambda: manual.lstm_bptt({**lp, "W_h": np.zeros((3 * H, H))}, x, y, (h, s)),
         r"W_h has shape \(12, 4\), expected \(16, 4\)"),
        (lambda: manual.lstm_bptt(lp, x, y, h), r"state0 must be a pair \(h0, s0\)"),
        (lambda: manual.lstm_bptt(lp, x, y, (h, np.zeros(H + 1))), "s0 has shape"),
        (lambda: manual.lstm_bptt(lp, x, y, (h, s), cell_input="relu"),
         "cell_input must be 'tanh' or 'sigmoid'"),
        (lambda: manual.softmax_jacobian(np.zeros((2, 3))), r"z must be 1-D, got shape \(2, 3\)"),
    ]


@pytest.mark.parametrize("call, message", _bad_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_input_raises_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_manual_imports_numpy_only():
    package = Path(manual.__file__).parent
    files = sorted(package.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "rnn.py", "lstm.py", "rtrl.py", "softmax.py"}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." if node.level else node.module]
            else:
                continue
            allowed = {".", "numpy", "__future__", "typing", "collections"}
            for name in names:
                assert name == "." or name.split(".")[0] in allowed, f"{f.name} imports {name}"
    assert set(manual.__all__) == {"rnn_bptt", "lstm_bptt", "gru_bptt", "softmax_jacobian", "rnn_rtrl"}


def test_min_char_rnn_column_state_and_none_work_like_a_vector_of_zeros():
    rng = np.random.default_rng(0)
    H, V = 4, 5
    P = {"W_xh": rng.standard_normal((H, V)), "W_hh": rng.standard_normal((H, H)), "b_h": rng.standard_normal(H),
         "W_hy": rng.standard_normal((V, H)), "b_y": rng.standard_normal(V)}
    x, y = rng.integers(0, V, 6), rng.integers(0, V, 6)
    loss, grads, h_last = manual.rnn_bptt(P, x, y, np.zeros(H))
    for h0 in (np.zeros((H, 1)), None):
        loss2, grads2, h_last2 = manual.rnn_bptt(P, x, y, h0)
        assert loss2 == loss and all(np.array_equal(grads[k], grads2[k]) for k in grads)
        assert h_last2.shape == np.shape(np.zeros(H) if h0 is None else h0)
        np.testing.assert_array_equal(h_last2.ravel(), h_last)
    L = {"W_x": rng.standard_normal((4 * H, V)), "W_h": rng.standard_normal((4 * H, H)), "b": rng.standard_normal(4 * H),
         "W_hy": P["W_hy"], "b_y": P["b_y"]}
    loss, _, (h, s) = manual.lstm_bptt(L, x, y, (np.zeros(H), np.zeros(H)))
    loss2, _, (h2, s2) = manual.lstm_bptt(L, x, y, None)
    assert loss2 == loss and np.array_equal(h2, h) and np.array_equal(s2, s)
