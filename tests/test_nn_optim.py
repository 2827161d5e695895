"""Optimizers against min-char-rnn's Adagrad and PyTorch's SGD and Adam; state_dict round trips; clipping."""
import numpy as np
import pytest

from tinygrad_rnn import Tensor, nn


def quadratic_grads(params, rng):
    """Give each parameter a fresh random gradient (stands in for a backward pass)."""
    for p in params:
        p.grad = rng.standard_normal(p.shape)


def test_adagrad_is_min_char_rnns_update():
    rng = np.random.default_rng(0)
    params = [Tensor(rng.standard_normal((3, 2)), requires_grad=True), Tensor(rng.standard_normal(4), requires_grad=True)]
    ref = [p.data.copy() for p in params]
    mem = [np.zeros_like(p) for p in ref]
    opt = nn.optim.Adagrad(params, lr=0.1)
    for _ in range(5):
        quadratic_grads(params, rng)
        for param, dparam, m in zip(ref, [p.grad for p in params], mem):  # min-char-rnn, verbatim
            m += dparam * dparam
            param += -0.1 * dparam / np.sqrt(m + 1e-8)
        opt.step()
    for p, r in zip(params, ref):
        assert np.array_equal(p.data, r)


def test_step_skips_parameters_without_gradient_and_zero_grad_clears():
    a, b = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    opt = nn.optim.SGD({"a": a, "b": b}, lr=0.5)
    a.grad = np.array([1.0, 2.0])
    opt.step()
    assert np.array_equal(a.data, [0.5, 0.0]) and np.array_equal(b.data, [1.0, 1.0])
    assert list(opt.state_dict()["step"]) == [1, 0]
    opt.zero_grad()
    assert a.grad is None


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_sgd_momentum_and_adam_match_pytorch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    params = [Tensor(a.copy(), requires_grad=True) for a in init]
    ref = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    if name == "sgd":
        opt, topt = nn.optim.SGD(params, lr=0.1, momentum=0.9), torch.optim.SGD(ref, lr=0.1, momentum=0.9)
    else:
        opt, topt = nn.optim.Adam(params, lr=0.01), torch.optim.Adam(ref, lr=0.01)
    for _ in range(6):
        quadratic_grads(params, rng)
        for p, r in zip(params, ref):
            r.grad = torch.tensor(p.grad.copy())
        opt.step()
        topt.step()
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.data, r.detach().numpy(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("make", [lambda ps: nn.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: nn.optim.Adagrad(ps, lr=0.1),
                                  lambda ps: nn.optim.Adam(ps, lr=0.01)], ids=["sgd", "adagrad", "adam"])
def test_state_dict_round_trip_through_npz_continues_bit_identically(make, tmp_path):
    data = np.random.default_rng(1).integers(0, 5, 60)

    def train(model, opt, start, stop):
        for k in range(start, stop):
            chunk = data[k * 6:k * 6 + 7]
            loss = nn.cross_entropy(model(chunk[:-1])[0], chunk[1:])
            opt.zero_grad()
            loss.backward()
            nn.clip_grad_value(model.parameters(), 5)
            opt.step()

    straight = nn.CharRNN(5, 4, cell="lstm", rng=np.random.default_rng(0))
    train(straight, make(straight.parameters()), 0, 8)

    first = nn.CharRNN(5, 4, cell="lstm", rng=np.random.default_rng(0))
    opt = make(first.parameters())
    train(first, opt, 0, 4)
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{f"model/{k}": v for k, v in first.state_dict().items()},
             **{f"optim/{k}": v for k, v in opt.state_dict().items()})
    saved = np.load(path, allow_pickle=False)
    resumed = nn.CharRNN(5, 4, cell="lstm", rng=np.random.default_rng(7))
    opt2 = make(resumed.parameters())
    resumed.load_state_dict({k[6:]: saved[k] for k in saved.files if k.startswith("model/")})
    opt2.load_state_dict({k[6:]: saved[k] for k in saved.files if k.startswith("optim/")})
    train(resumed, opt2, 4, 8)
    for (name, p), q in zip(straight.named_parameters().items(), resumed.parameters()):
        assert np.array_equal(p.data, q.data), name
    fresh = nn.CharRNN(5, 4, cell="lstm", rng=np.random.default_rng(0))
    train(fresh, make(fresh.parameters()), 4, 8)  # without the optimizer's state it would differ
    assert not np.array_equal(fresh.out.W.data, straight.out.W.data)


def test_optimizer_load_state_dict_names_bad_keys():
    params = [Tensor(np.ones((2, 2)), requires_grad=True)]
    opt = nn.optim.Adam(params, lr=0.1)
    state = opt.state_dict()
    assert all(isinstance(v, (float, np.ndarray)) for v in state.values())
    state["m.0"] = np.zeros(3)
    state["extra"] = 1.0
    del state["v.0"]
    with pytest.raises(ValueError) as e:
        opt.load_state_dict(state)
    for key in ("m.0 (shape (3,), expected (2, 2))", "extra (unexpected)", "v.0 (missing)"):
        assert key in str(e.value)
    with pytest.raises(ValueError, match="lr must be positive"):
        nn.optim.SGD(params, lr=0)
    with pytest.raises(ValueError, match="not a Tensor with requires_grad"):
        nn.optim.SGD([Tensor(np.ones(2))], lr=0.1)


def test_optimizer_load_state_dict_refuses_impossible_values():
    params = [Tensor(np.ones(2), requires_grad=True)]
    opt = nn.optim.Adam(params, lr=0.1)
    state = {**opt.state_dict(), "lr": -1.0, "beta2": 1.0, "m.0": np.array([np.nan, 0.0]), "step": np.array([-2])}
    with pytest.raises(ValueError) as e:
        opt.load_state_dict(state)
    for key in ("lr (must be positive, got -1.0)", "beta2 (must be in [0, 1), got 1.0)", "m.0 (holds NaN or inf)",
                "step (negative counts [-2])"):
        assert key in str(e.value)
    assert opt.lr == 0.1 and opt.beta2 == 0.999  # nothing was half-loaded
    with pytest.raises(ValueError, match=r"^Adam: eps must be positive, got 0.0; beta1 must be in \[0, 1\), got 1.0$"):
        nn.optim.Adam(params, lr=0.1, betas=(1.0, 0.9), eps=0)


def test_clip_grad_value_and_norm():
    a, b = Tensor(np.zeros(3), requires_grad=True), Tensor(np.zeros(2), requires_grad=True)
    a.grad, b.grad = np.array([-7.0, 2.0, 9.0]), np.array([4.0, -5.5])
    nn.clip_grad_value([a, b], 5)
    assert np.array_equal(a.grad, [-5, 2, 5]) and np.array_equal(b.grad, [4, -5])
    a.grad, b.grad = np.array([3.0, 0.0, 0.0]), np.array([0.0, 4.0])
    assert nn.clip_grad_norm({"a": a, "b": b}, 10.0) == 5.0
    assert np.array_equal(a.grad, [3, 0, 0])
    assert nn.clip_grad_norm([a, b], 1.0) == 5.0
    np.testing.assert_allclose(np.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()), 1.0, rtol=1e-6)
    np.testing.assert_allclose(a.grad, [0.6, 0, 0], rtol=1e-6)


def test_clip_grad_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ps = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, t, g in zip(ps, ts, grads):
        p.grad, t.grad = g.copy(), torch.tensor(g.copy())
    total = nn.clip_grad_norm(ps, 1.5)
    ref = torch.nn.utils.clip_grad_norm_(ts, 1.5)
    np.testing.assert_allclose(total, ref.item(), rtol=1e-14)
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-14)
