"""cross_entropy (fused) and mse against NumPy formulas, PyTorch and their gradients."""
import numpy as np
import pytest

from helpers import assert_grads_match, numeric_grads
import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn


def np_cross_entropy(z, t):
    """-sum log softmax(z)[t], written out with log-sum-exp."""
    z = z.reshape(-1, z.shape[-1])
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(z)), t.reshape(-1)].sum()


@pytest.mark.parametrize("shape", [(6, 5), (3, 2, 5)])
def test_cross_entropy_value_and_gradient(shape):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(shape)
    t = rng.integers(0, 5, shape[:-1])
    for reduction, n in [("sum", 1), ("mean", np.prod(shape[:-1]))]:
        logits = Tensor(z, requires_grad=True)
        loss = nn.cross_entropy(logits, t, reduction=reduction)
        assert loss.grad_fn.name == "CrossEntropy" and loss.grad_fn.parents == (logits,)  # one fused op
        np.testing.assert_allclose(loss.item(), np_cross_entropy(z, t) / n, rtol=1e-14)
        (2.0 * loss).backward()
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        onehot = np.eye(5)[t]
        np.testing.assert_allclose(logits.grad, 2.0 * (p - onehot) / n, rtol=1e-13, atol=1e-16)


def test_cross_entropy_backward_reuses_its_softmax_only_when_the_graph_is_freed():
    # a backward that frees the graph writes dL/dz into the saved softmax; a retained graph keeps it intact
    rng = np.random.default_rng(1)
    z, t = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    expected = np.exp(z) / np.exp(z).sum(-1, keepdims=True) - np.eye(5)[t]
    logits = Tensor(z, requires_grad=True)
    loss = nn.cross_entropy(logits * 1.0, t)  # through a node: logits.grad is accumulated, not the array itself
    for _ in range(3):
        loss.backward(retain_graph=True)
    np.testing.assert_allclose(logits.grad, 3 * expected, rtol=1e-13, atol=1e-15)
    loss.backward()  # the fourth use may consume the softmax
    np.testing.assert_allclose(logits.grad, 4 * expected, rtol=1e-13, atol=1e-15)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]])
    logits = Tensor(z, requires_grad=True)
    loss = nn.cross_entropy(logits, np.array([1, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad).all()
    np.testing.assert_allclose(loss.item(), 1e4 + np.log(2), rtol=1e-14)
    np.testing.assert_allclose(logits.grad, [[1, -1, 0], [-0.5, 0.5, 0]], atol=1e-15)


def test_cross_entropy_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((4, 3, 7)) * 3, rng.integers(0, 7, (4, 3))
    for reduction in ("sum", "mean"):
        logits = Tensor(z, requires_grad=True)
        nn.cross_entropy(logits, t, reduction=reduction).backward()
        tz = torch.tensor(z, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(tz.reshape(-1, 7), torch.tensor(t).reshape(-1), reduction=reduction)
        ref.backward()
        loss = nn.cross_entropy(Tensor(z), t, reduction=reduction)
        np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-14)
        np.testing.assert_allclose(logits.grad, tz.grad.numpy(), rtol=1e-12, atol=1e-17)


def test_cross_entropy_rejects_bad_targets():
    logits = Tensor(np.zeros((3, 4)))
    for targets, match in [(np.array([0, 1]), "do not match"), (np.array([0, 1, 4]), r"lie in \[0, 4\)"),
                           (np.array([0.0, 1.0, 2.0]), "integers")]:
        with pytest.raises(ValueError, match=match):
            nn.cross_entropy(logits, targets)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.cross_entropy(logits, np.array([0, 1, 2]), reduction="none")


def test_mse_is_half_the_squared_error_with_gradient_y_minus_t():
    rng = np.random.default_rng(0)
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    pred = Tensor(y, requires_grad=True)
    loss = nn.mse(pred, t)
    np.testing.assert_allclose(loss.item(), 0.5 * ((y - t) ** 2).sum(), rtol=1e-14)
    loss.backward()
    np.testing.assert_allclose(pred.grad, y - t, rtol=1e-14)
    pred.grad = None
    mean = nn.mse(pred, Tensor(t), reduction="mean")
    np.testing.assert_allclose(mean.item(), 0.5 * ((y - t) ** 2).mean(), rtol=1e-14)
    mean.backward()
    np.testing.assert_allclose(pred.grad, (y - t) / 12, rtol=1e-14)
    with pytest.raises(ValueError, match="does not match"):
        nn.mse(pred, t[:2])


def test_cross_entropy_ignore_index_drops_padded_targets():
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((4, 3, 5)), rng.integers(0, 5, (4, 3))
    t[2:, 0] = -100                                   # a short sequence padded at its end
    t[3, 2] = 4
    keep = t != -100
    for reduction, n in [("sum", 1), ("mean", keep.sum())]:
        logits = Tensor(z, requires_grad=True)
        loss = nn.cross_entropy(logits, t, reduction=reduction)
        np.testing.assert_allclose(loss.item(), np_cross_entropy(z[keep], t[keep]) / n, rtol=1e-14)
        loss.backward()
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        want = (p - np.eye(5)[np.where(keep, t, 0)]) / n
        want[~keep] = 0.0                             # ignored targets: exactly zero gradient
        np.testing.assert_allclose(logits.grad, want, rtol=1e-13, atol=1e-16)
        assert (logits.grad[~keep] == 0).all()


def test_cross_entropy_ignore_index_in_range_and_all_ignored():
    z = np.random.default_rng(1).standard_normal((3, 4))
    loss = nn.cross_entropy(Tensor(z), np.array([0, 2, 0]), ignore_index=0)  # a pad id inside [0, V)
    np.testing.assert_allclose(loss.item(), np_cross_entropy(z[1:2], np.array([2])), rtol=1e-14)
    logits = Tensor(z, requires_grad=True)
    total = nn.cross_entropy(logits, np.full(3, -100))
    total.backward()
    assert total.item() == 0.0 and (logits.grad == 0).all()
    assert np.isnan(nn.cross_entropy(Tensor(z), np.full(3, -100), reduction="mean").item())  # 0/0, as torch
    with pytest.raises(ValueError, match=r"lie in \[0, 4\) or equal ignore_index=-100"):
        nn.cross_entropy(Tensor(z), np.array([0, -1, 2]))


def test_cross_entropy_ignore_index_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    z, t = rng.standard_normal((6, 7)) * 3, rng.integers(0, 7, 6)
    t[[1, 4]] = -100
    for reduction in ("sum", "mean"):
        logits = Tensor(z, requires_grad=True)
        loss = nn.cross_entropy(logits, t, reduction=reduction)
        loss.backward()
        tz = torch.tensor(z, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(tz, torch.tensor(t), reduction=reduction)
        ref.backward()
        np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-14)
        np.testing.assert_allclose(logits.grad, tz.grad.numpy(), rtol=1e-12, atol=1e-17)


def np_bce(z, t):
    """-sum [t log σ(z) + (1 - t) log(1 - σ(z))], the textbook form (fine for moderate z)."""
    y = 1 / (1 + np.exp(-z))
    return -(t * np.log(y) + (1 - t) * np.log(1 - y)).sum()


def test_binary_cross_entropy_value_and_gradient_against_finite_differences():
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((4, 3)) * 2, rng.uniform(0, 1, (4, 3))
    for reduction, n in [("sum", 1), ("mean", 12)]:
        logits = Tensor(z, requires_grad=True)
        loss = nn.binary_cross_entropy(logits, t, reduction=reduction)
        assert loss.grad_fn.name == "BinaryCrossEntropy" and loss.grad_fn.parents == (logits,)
        np.testing.assert_allclose(loss.item(), np_bce(z, t) / n, rtol=1e-13)
        loss.backward()
        numeric = numeric_grads(lambda: np_bce(z, t) / n, [z])[0]
        np.testing.assert_allclose(logits.grad, numeric, rtol=1e-6, atol=1e-9)
    assert_grads_match(lambda x: nn.binary_cross_entropy(x, t), z)


def test_binary_cross_entropy_is_stable_for_huge_logits():
    z = np.array([1e4, -1e4, 1e4, -1e4, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    logits = Tensor(z, requires_grad=True)
    loss = nn.binary_cross_entropy(logits, t)
    loss.backward()
    # right answers: 0, 0, then 1e4 twice (a confident wrong answer), log 2 at z = 0
    np.testing.assert_allclose(loss.item(), 2e4 + np.log(2), rtol=1e-14)
    np.testing.assert_allclose(logits.grad, [0, 0, 1, -1, -0.5], atol=1e-15)


def test_binary_cross_entropy_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z, t = rng.standard_normal((5, 2)) * 4, rng.uniform(0, 1, (5, 2))
    z[0, 0], z[1, 1] = 1e4, -1e4
    for reduction in ("sum", "mean"):
        logits = Tensor(z, requires_grad=True)
        loss = nn.binary_cross_entropy(logits, t, reduction=reduction)
        loss.backward()
        tz = torch.tensor(z, requires_grad=True)
        ref = torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.tensor(t), reduction=reduction)
        ref.backward()
        np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-13)
        np.testing.assert_allclose(logits.grad, tz.grad.numpy(), rtol=1e-12, atol=1e-17)


def test_binary_cross_entropy_rejects_bad_targets():
    logits = Tensor(np.zeros(3))
    for targets, match in [(np.zeros(2), "do not match"), (np.array([0.0, 1.5, 0.0]), r"lie in \[0, 1\]"),
                           (np.array(["a", "b", "c"]), "real numbers")]:
        with pytest.raises(ValueError, match=match):
            nn.binary_cross_entropy(logits, targets)
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.binary_cross_entropy(logits, np.zeros(3), reduction="none")


@pytest.mark.parametrize("which", ["cross_entropy", "cross_entropy_ignore", "binary_cross_entropy"])
def test_loss_jvp_equals_directional_finite_difference(which):
    rng = np.random.default_rng(4)
    z, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    t = rng.integers(0, 3, 5)
    t[1] = -100
    fn = {"cross_entropy": lambda x: nn.cross_entropy(x, np.abs(t) % 3, reduction="mean"),
          "cross_entropy_ignore": lambda x: nn.cross_entropy(x, t, reduction="mean"),
          "binary_cross_entropy": lambda x: nn.binary_cross_entropy(x, rng_t, reduction="mean")}[which]
    rng_t = np.random.default_rng(5).uniform(0, 1, (5, 3))
    out, tangent = tr.jvp(fn, (Tensor(z),), (v,))
    eps = 1e-6
    numeric = (fn(Tensor(z + eps * v)).item() - fn(Tensor(z - eps * v)).item()) / (2 * eps)
    np.testing.assert_allclose(out.item(), fn(Tensor(z)).item(), rtol=1e-15)
    np.testing.assert_allclose(tangent, numeric, rtol=1e-7)
