"""Recomputation instead of storage: tr.checkpoint against the plain graph, Gruslys et al.'s schedule
(nn.MemoryBudget) against a brute-force search over every schedule, CharRNN(checkpoint=...) and model.loss
against the un-checkpointed model."""
import heapq
import itertools

import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import check, nn
from tinygrad_rnn.nn.memory import actions, cost, cost_table


def _rnn_chain(W, steps=3):
    def fn(h, scale=1.0):
        for _ in range(steps):
            h = (W @ h).tanh() * scale
        return h, (h * h).sum()
    return fn


def _grads(*tensors):
    return [t.grad.copy() for t in tensors]


def test_checkpoint_gradients_equal_the_plain_graph_inputs_and_closed_over_parameters():
    rng = np.random.default_rng(0)
    W = tr.Tensor(rng.normal(size=(4, 4)), requires_grad=True)
    x = tr.Tensor(rng.normal(size=4), requires_grad=True)
    fn = _rnn_chain(W)
    results = []
    for wrap in (False, True):
        W.grad = x.grad = None
        h, s = tr.checkpoint(fn, x, 0.5) if wrap else fn(x, 0.5)  # a non-tensor argument passes through
        ((h * h * 2).sum() + 3 * s).backward()
        results.append(_grads(W, x))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert np.abs(results[0][0]).max() > 0.01


def test_checkpoint_keeps_only_its_inputs_and_runs_fn_once_more_in_backward():
    rng = np.random.default_rng(1)
    W = tr.Tensor(rng.normal(size=(3, 3)), requires_grad=True)
    x = tr.Tensor(rng.normal(size=3), requires_grad=True)
    calls = []

    def fn(h):
        calls.append(tr.is_grad_enabled())
        return (W @ (W @ h).tanh()).tanh()

    y = tr.checkpoint(fn, x)
    assert calls == [False]  # forward: no graph inside
    assert y.grad_fn.name == "Checkpoint" and y.grad_fn.parents == (x,)  # one node; W is found by re-running
    y.sum().backward()
    assert calls == [False, True]
    gx, gW = x.grad.copy(), W.grad.copy()
    x.grad = W.grad = None
    fn(x).sum().backward()
    np.testing.assert_allclose(gx, x.grad, rtol=1e-12)
    np.testing.assert_allclose(gW, W.grad, rtol=1e-12)
    with pytest.raises(RuntimeError, match="second time"):
        y.sum().backward()


def test_checkpoint_of_constants_still_reaches_the_parameters_and_passes_gradcheck():
    rng = np.random.default_rng(2)
    W = tr.Tensor(rng.normal(size=(3, 3)), requires_grad=True)
    c = tr.Tensor(rng.normal(size=3))  # no input requires grad: only W, closed over
    tr.checkpoint(lambda h: (W @ h).tanh().sum(), c).backward()
    g = W.grad.copy()
    W.grad = None
    (W @ c).tanh().sum().backward()
    np.testing.assert_allclose(g, W.grad, rtol=1e-12)
    x = tr.Tensor(rng.normal(size=3), requires_grad=True)
    assert check.gradcheck(lambda v, M: tr.checkpoint(lambda a, b: (b @ a).tanh() * a, v, M), (x, W))


def test_checkpoint_retain_graph_twice_doubles_and_jvp_simply_runs():
    rng = np.random.default_rng(3)
    W = tr.Tensor(rng.normal(size=(3, 3)), requires_grad=True)
    x = tr.Tensor(rng.normal(size=3), requires_grad=True)
    y = tr.checkpoint(lambda h: (W @ h).tanh().sum(), x)
    y.backward(retain_graph=True)
    once = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * once, rtol=1e-12)
    v = rng.normal(size=3)
    out, tangent = tr.jvp(lambda h: tr.checkpoint(lambda a: (W @ a).tanh().sum(), h), (x.data,), (v,))
    ref, ref_tangent = tr.jvp(lambda h: (W @ h).tanh().sum(), (x.data,), (v,))
    assert out.item() == ref.item() and np.allclose(tangent, ref_tangent, rtol=1e-12)
    np.testing.assert_allclose(tangent, once @ v, rtol=1e-12)  # J v = <dy/dx, v>


def test_checkpoint_bad_output_is_a_one_line_error():
    x = tr.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match="checkpoint: fn must return a Tensor or a tuple of Tensors, got float"):
        tr.checkpoint(lambda h: 1.0, x)


# ---- Gruslys et al.'s schedule ---------------------------------------------------------------------------------
def _brute_force(T, m):
    """Fewest forward steps over EVERY schedule (Dijkstra): a state is (stored positions, g), steps >= g done;
    position 0 is always stored and counts; reaching g-1 from a stored p and backpropagating it costs g-1-p+1
    (the running state needs no slot), storing a state q reached from p costs q-p, dropping one costs 0."""
    start = (frozenset([0]), T)
    best, queue, tie = {start: 0}, [(0, 0, start)], itertools.count()
    while queue:
        d, _, (S, g) = heapq.heappop(queue)
        if d > best[(S, g)]:
            continue
        if g == 0:
            return d
        moves = [((frozenset(q for q in S if q < g - 1), g - 1), d + g - p) for p in S if p < g]
        moves += [((S | {q}, g), d + q - p) for p in S for q in range(p + 1, g) if q not in S and len(S) < m]
        moves += [((S - {q}, g), d) for q in S if q]
        for state, c in moves:
            if c < best.get(state, np.inf):
                best[state] = c
                heapq.heappush(queue, (c, next(tie), state))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_plan_is_the_fewest_forward_steps_of_all_schedules(m):
    for T in range(1, 10):
        steps, schedule = nn.MemoryBudget(slots=m).plan(T)
        assert steps == _brute_force(T, m), (T, m)
        ran = sum(a[2] - a[1] if a[0] == "advance" else 1 for a in schedule)
        assert ran == steps
        assert [a[1] for a in schedule if a[0] == "step"] == list(range(T - 1, -1, -1))  # each step once, last first


def test_closed_form_equals_the_recurrence_and_plan_keeps_at_most_m_states():
    C = cost_table(60, 6)
    assert all(C[t, m] == cost(t, m) for t in range(61) for m in range(1, 7))
    assert C[10, 1] == 55 and C[1, 3] == 1 and C[0, 4] == 0  # t(t+1)/2, C(1, m) = 1, C(0, m) = 0
    for m in (1, 2, 5):
        stored, most = [0], 1
        for a in actions(40, m):  # the executor's stack: advance pushes, step pops
            if a[0] == "advance":
                stored.append(a[2])
            else:
                assert stored.pop() == a[1]
            most = max(most, len(stored))
        assert most <= m + 1  # m slots and the running state of the step being differentiated
    # enough slots: every step run twice but the last (2T - 1); 100 slots for 1000 steps: C(1) = 1, then slope 2 for m steps, then 3
    assert cost(1000, 1000) == 1999 and nn.MemoryBudget(slots=100).plan(1000)[0] == 1 + 2 * 100 + 3 * 899


def test_memory_budget_bad_values():
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match="MemoryBudget: slots must be an int >= 1"):
            nn.MemoryBudget(slots=bad)
    with pytest.raises(ValueError, match="MemoryBudget.plan: T must be an int >= 1"):
        nn.MemoryBudget(2).plan(0)


# ---- CharRNN(checkpoint=...) and model.loss ----------------------------------------------------------------------
def _step_grads(model, idx, targets, state, use_loss):
    model.zero_grad()
    if use_loss:
        loss, last = model.loss(idx, targets, state)
    else:
        logits, last = model(idx, state)
        loss = nn.cross_entropy(logits, targets)
    h = last[0] if isinstance(last, tuple) else last
    (loss + (h * h).sum()).backward()  # the carried-out state gets a gradient of its own
    grads = {k: p.grad.copy() for k, p in model.named_parameters().items()}
    return loss.item(), h.data.copy(), grads


MODES = [1, 4, "sqrt", 50, nn.MemoryBudget(1), nn.MemoryBudget(3), nn.MemoryBudget(40)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("fused", [False, True])
def test_charrnn_checkpoint_gradients_equal_the_stored_graph(cell, fused):
    rng = np.random.default_rng(4)
    V, H, T = 5, 4, 11
    for batch, learn_h0 in (((), False), ((3,), True)):
        idx, targets = rng.integers(0, V, (T,) + batch), rng.integers(0, V, (T,) + batch)
        plain = nn.CharRNN(V, H, cell, fused=fused, learn_h0=learn_h0, rng=np.random.default_rng(1))
        loss0, h0, ref = _step_grads(plain, idx, targets, None, False)
        for mode in MODES:
            for use_loss in (False, True):
                model = nn.CharRNN(V, H, cell, fused=fused, learn_h0=learn_h0, checkpoint=mode,
                                   rng=np.random.default_rng(1))
                loss, h, grads = _step_grads(model, idx, targets, None, use_loss)
                assert abs(loss - loss0) <= 1e-12 * abs(loss0) and np.allclose(h, h0, rtol=0, atol=1e-14)
                for k in ref:
                    np.testing.assert_allclose(grads[k], ref[k], rtol=1e-12, atol=1e-13, err_msg=f"{mode} {k}")


class _CountingCell(nn.Module):
    """A user cell with a two-part state (h, c) that counts its forward steps."""

    def __init__(self, V, H, rng):
        self.hidden_size, self.calls = H, 0
        self.W = tr.Tensor(rng.normal(size=(H, V)) * 0.5, requires_grad=True)
        self.U = tr.Tensor(rng.normal(size=(H, H)) * 0.5, requires_grad=True)

    def forward(self, x, state):
        self.calls += 1
        h, c = (tr.zeros(self.hidden_size), tr.zeros(self.hidden_size)) if state is None else state
        h = (x @ self.W.T + h @ self.U.T).tanh()
        return h, c * 0.5 + h

    def hidden(self, state):
        return state[0]


def test_user_cell_given_state_and_the_number_of_forward_steps_the_plan_predicts():
    rng = np.random.default_rng(5)
    V, H, T = 5, 4, 17
    cell = _CountingCell(V, H, rng)
    idx, targets = rng.integers(0, V, T), rng.integers(0, V, T)
    h0 = tr.Tensor(rng.normal(size=H), requires_grad=True)
    c0 = tr.Tensor(rng.normal(size=H), requires_grad=True)
    results = {}
    for mode in (None, 3, "sqrt", nn.MemoryBudget(1), nn.MemoryBudget(2), nn.MemoryBudget(4)):
        model = nn.CharRNN(V, H, cell, checkpoint=mode, rng=np.random.default_rng(1))
        model.zero_grad()
        h0.grad = c0.grad = None
        cell.calls = 0
        loss, (h, c) = model.loss(idx, targets, (h0, c0))
        (loss + (h * c).sum()).backward()
        results[str(mode)] = [p.grad.copy() for p in model.parameters()] + [h0.grad.copy(), c0.grad.copy()]
        expected = {None: T, 3: 2 * T, "sqrt": 2 * T}.get(mode) if not isinstance(mode, nn.MemoryBudget) \
            else mode.plan(T)[0]
        assert cell.calls == expected, mode
    for name, grads in results.items():
        for a, b in zip(grads, results["None"]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)


def test_loss_equals_cross_entropy_of_the_logits_sum_and_mean():
    rng = np.random.default_rng(6)
    V, H, T = 6, 5, 9
    idx, targets = rng.integers(0, V, (T, 2)), rng.integers(0, V, (T, 2))
    for mode in (None, 2, nn.MemoryBudget(2)):
        for reduction in ("sum", "mean"):
            model = nn.CharRNN(V, H, "lstm", checkpoint=mode, rng=np.random.default_rng(2))
            model.zero_grad()
            loss, _ = model.loss(idx, targets, reduction=reduction)
            loss.backward()
            got = [p.grad.copy() for p in model.parameters()]
            model.zero_grad()
            with tr.no_grad():  # no graph: the plain path, as the oracle
                assert abs(model.loss(idx, targets, reduction=reduction)[0].item() - loss.item()) < 1e-12
            ref = nn.cross_entropy(model.unroll(idx)[0], targets, reduction=reduction)  # unroll: every state kept
            assert abs(ref.item() - loss.item()) <= 1e-12 * abs(ref.item())
            ref.backward()
            for a, p in zip(got, model.parameters()):
                np.testing.assert_allclose(a, p.grad, rtol=1e-12, atol=1e-14)


def test_checkpoint_and_loss_bad_values():
    with pytest.raises(ValueError, match="CharRNN: checkpoint must be None, an int k >= 1, 'sqrt'"):
        nn.CharRNN(4, 3, checkpoint=0)
    with pytest.raises(ValueError, match="CharRNN: checkpoint must be"):
        nn.CharRNN(4, 3, checkpoint="log")
    model = nn.CharRNN(4, 3, checkpoint=2)
    with pytest.raises(ValueError, match="CharRNN.loss: targets must be integers of idx's shape"):
        model.loss(np.zeros(5, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="CharRNN.loss: reduction must be 'sum' or 'mean'"):
        model.loss(np.zeros(5, int), np.zeros(5, int), reduction="max")


def test_checkpointed_model_outside_a_graph_runs_plainly_and_a_budget_backward_runs_once():
    rng = np.random.default_rng(7)
    idx, targets = rng.integers(0, 5, 12), rng.integers(0, 5, 12)
    plain = nn.CharRNN(5, 4, "gru", rng=np.random.default_rng(3))
    model = nn.CharRNN(5, 4, "gru", checkpoint=nn.MemoryBudget(2), rng=np.random.default_rng(3))
    with tr.no_grad():
        assert np.array_equal(model(idx)[0].data, plain(idx)[0].data)
    logits, _ = model(idx)
    np.testing.assert_allclose(logits.data, plain(idx)[0].data, rtol=1e-14)
    loss = nn.cross_entropy(logits, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="a MemoryBudget schedule runs once"):
        loss.backward()
