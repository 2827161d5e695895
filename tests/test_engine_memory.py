"""What backward keeps and frees, and the in-place accumulation it does (OuterGrad rows, SparseGrad slices)."""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn, viz


def _chain(x):
    """((2x).tanh() * 3).sum(), with no Python name on the intermediates."""
    return ((x * 2).tanh() * 3).sum()


def test_the_graph_keeps_only_what_backward_reads():
    N = 200_000  # 1.6 MB an array: the graph's own bookkeeping is noise beside it
    x = Tensor(np.linspace(-1, 1, N), requires_grad=True)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    # (2x).tanh() * 3: Tanh's backward reads its output, Mul's the constant 3; 2x and the product are
    # read by no backward, so nothing holds them once the caller has let go of their tensors
    loss = _chain(x)
    after_forward = tracemalloc.get_traced_memory()[0] - start
    loss.backward()
    after_backward = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert 0.99 < after_forward / (N * 8) < 1.1  # tanh(2x) alone (a graph of tensors held 3 arrays)
    assert 0.99 < after_backward / (N * 8) < 1.1  # x.grad alone: backward freed tanh(2x)
    np.testing.assert_allclose(x.grad, 6 * (1 - np.tanh(2 * x.data) ** 2), rtol=1e-14)
    inner = loss.grad_fn.parents[0]  # (2x).tanh() * 3: the graph still reaches its node, for pictures
    assert inner.grad_fn.name == "Mul" and inner.shape == (N,) and inner.dtype == np.float64
    assert np.isnan(inner.data).all() and not inner.data.flags.writeable
    assert inner.data.strides == (0,)  # its values are not kept: no memory of its own
    assert "Tanh" in viz.draw(loss).source  # still drawable after backward


def test_a_node_keeps_a_scalar_value_for_pictures():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    loss = _chain(x)
    loss.backward()
    inner = loss.grad_fn.parents[0]
    np.testing.assert_allclose(inner.data, 3 * np.tanh(2 * x.data), rtol=1e-15)  # a few numbers: kept


def test_backward_keeps_what_the_caller_holds_or_retain_graph_asks_for():
    x = Tensor(np.array([0.1, -0.2, 0.3]), requires_grad=True)
    y = (x * 2).tanh()
    loss = (y * 3).sum()
    loss.backward()
    np.testing.assert_allclose(y.data, np.tanh(2 * x.data), rtol=1e-15)  # held by the caller: kept
    loss = _chain(x)
    loss.backward(retain_graph=True)
    x.grad = None
    loss.backward()  # the retained graph runs again
    np.testing.assert_allclose(x.grad, 6 * (1 - np.tanh(2 * x.data) ** 2), rtol=1e-14)


def test_a_weight_used_more_times_than_one_product_takes_sums_every_use():
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    xs = rng.standard_normal((1300, 4))  # more matrix-vector uses than one buffer of rows holds
    gs = rng.standard_normal((1300, 3))
    total = None
    for x, g in zip(xs, gs):
        term = ((W @ Tensor(x)) * Tensor(g)).sum()
        total = term if total is None else total + term
    total.backward()
    np.testing.assert_allclose(W.grad, gs.T @ xs, rtol=1e-12)  # sum_t g_t x_t^T


def test_slices_of_one_intermediate_add_up_in_place_without_touching_shared_gradients():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(6), requires_grad=True)
    z = x * 1.0  # an intermediate whose gradient gathers from slices and from a whole use
    w = np.arange(1.0, 7.0)
    shared = z + z  # Add sends one array to both sides: summing in place into it would double count
    loss = (z[0:2] * 2).sum() + (z[1:4] * 3).sum() + (z * Tensor(w)).sum() + z[5] + (shared * 0.5).sum()
    loss.backward()
    want = w + 1.0  # z * w, and shared * 0.5 = z
    want[0:2] += 2
    want[1:4] += 3
    want[5] += 1
    np.testing.assert_allclose(x.grad, want, rtol=1e-15)


def test_a_fused_lstm_at_many_steps_matches_the_op_level_gradient():
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 5, 700), rng.integers(0, 5, 700)  # W_h's rows fill more than one buffer
    grads = []
    for fused in (False, True):
        model = nn.CharRNN(5, 3, "lstm", rng=np.random.default_rng(1), fused=fused)
        nn.cross_entropy(model(idx)[0], targets).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_the_last_fused_state_does_not_keep_the_whole_sequence_alive():
    model = nn.CharRNN(5, 3, "rnn", rng=np.random.default_rng(0), fused=True)
    logits, h = model(np.arange(5) % 5)
    assert h.data.base is None or h.data.base.shape == h.shape  # its own array, not a row of (T, H)
    with tr.no_grad():
        assert model(np.arange(5) % 5)[1].shape == (3,)


def test_a_fused_lstm_backward_never_builds_dense_zeros_for_its_h_columns():
    # hs = the first H columns of every z_t = [h_t; s_t]: each row's gradient stays a slice until the
    # step's own share arrives, so backward holds dL/dhs (T, H) and no (T, 2H) array of zeros beside it
    T, H = 4000, 64
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 5, T), rng.integers(0, 5, T)
    model = nn.CharRNN(5, H, "lstm", rng=np.random.default_rng(1), fused=True)
    loss = nn.cross_entropy(model(idx)[0], targets)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    loss.backward()
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    # measured: 3.0 T*H*8 (dL/dhs, the slices' objects, W_h's buffered rows); 3.9 with the dense zeros
    assert peak < 3.4 * T * H * 8, peak / (T * H * 8)


def test_a_retained_gradient_lives_on_the_node_the_graph_and_the_tensor_share():
    x = Tensor(np.array([0.3, -0.4]), requires_grad=True)
    h = (x * 2).tanh().retain_grad()
    loss = (h * h).sum()
    loss.backward()
    expected = 2 * np.tanh(2 * x.data)
    np.testing.assert_allclose(h.grad, expected, rtol=1e-15)
    (square,) = loss.grad_fn.parents
    seen = square.grad_fn.parents[0]  # the graph's view of h (h * h)
    assert seen.grad_fn is h.grad_fn and seen.grad is h.grad
    h.grad = None  # resets the node's copy: both views agree
    assert seen.grad is None and h.grad is None
    unretained = (x * 3).tanh()
    (unretained * 1.0).sum().backward()
    assert unretained.grad is None  # as in PyTorch: an op's output keeps no .grad unless asked


class _TwiceBare(tr.Function):
    """y = 2a, whose backward returns the bare array (allowed for a one-input op)."""

    @staticmethod
    def forward(ctx, a):
        return 2 * a

    @staticmethod
    def backward(ctx, g):
        return 2 * g


def test_a_backward_returning_a_bare_array_leaves_no_reference_cycle():
    # the engine's check of the returned count must not make stand-in tensors of the inputs' nodes: a
    # stand-in and its node hold each other, and the graph (here a 800 KB saved array) outlives `del loss`
    x = Tensor(np.linspace(-1, 1, 100_000), requires_grad=True)
    h = x.tanh()
    saved = weakref.ref(h.grad_fn.saved_tensors[0])  # Tanh keeps its output for its backward
    loss = _TwiceBare.apply(h).sum()
    del h
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, 2 * (1 - np.tanh(x.data) ** 2), rtol=1e-14)
    gc.disable()
    try:
        del loss
        assert saved() is None  # freed by reference counting alone, as a graph of plain ops is
    finally:
        gc.enable()


def test_a_few_numbers_sliced_from_a_big_intermediate_do_not_keep_it():
    # a node keeps a small output's values (<= 64 bytes) for pictures; a view of a big array must not keep
    # the whole big array alive once the caller has dropped it
    x = Tensor(np.ones(3), requires_grad=True)
    big = x.reshape(3, 1) + np.zeros((3, 100_000))  # 2.4 MB that no backward reads (Add saves nothing)
    alive = weakref.ref(big.data)
    loss = big[0, :8].sum()  # 8 numbers, 64 bytes: a view of big
    del big
    assert alive() is None
    loss.backward()
    np.testing.assert_allclose(x.grad, [8.0, 0.0, 0.0])
    np.testing.assert_allclose(loss.grad_fn.parents[0].data, np.ones(8))  # the slice's values, kept for pictures


@pytest.mark.parametrize("cell, per_step, bound", [("rnn", 64 + 65, 3.6), ("lstm", 6 * 64 + 65, 3.3)])
def test_the_op_level_graph_peaks_near_what_bptt_must_keep(cell, per_step, bound):
    # peak over forward + backward against h_t (RNN; gates, s_t, h_t for the LSTM) and the softmax, all
    # steps: measured 3.2x (RNN) and 2.9x (LSTM); a graph that held every op's output measured 5.3x and 5.0x
    T = 2000
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, 65, T), rng.integers(0, 65, T)
    model = nn.CharRNN(65, 64, cell, rng=np.random.default_rng(1))
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    nn.cross_entropy(model(inputs)[0], targets).backward()
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    assert peak < bound * T * per_step * 8, peak / (T * per_step * 8)
