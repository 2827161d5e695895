"""Tensors that behave like PyTorch's where Python asks them questions: truth value, ==, hashing, the version
counter that catches an array edited in place between forward and backward, and one-line errors that
name the op (issue 14, items 5, 6, 7 and 9)."""
import numpy as np
import pytest

import tinygrad_rnn as tr
from tinygrad_rnn import Tensor, nn, viz


# ---- item 5: truth value and comparisons --------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(0.5, True), (2.0, False), ([0.5], True), ([[2.0]], False)])
def test_bool_of_one_entry_is_its_truth(value, expected):
    t = Tensor(value)
    assert bool(t < 1.0) is expected
    assert ("yes" if t < 1.0 else "no") == ("yes" if expected else "no")


@pytest.mark.parametrize("data", [[1.0, 2.0], np.zeros((2, 2)), np.zeros(0)])
def test_bool_of_more_or_no_entries_is_ambiguous(data):
    with pytest.raises(RuntimeError, match=r"^bool: the truth value of a tensor of shape .* is ambiguous"):
        bool(Tensor(data) > 5)


def test_comparisons_are_elementwise_boolean_tensors_without_grad():
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = np.array([1.0, 0.0, 3.0])
    for op, fn in [("==", np.equal), ("!=", np.not_equal), ("<", np.less), ("<=", np.less_equal),
                   (">", np.greater), (">=", np.greater_equal)]:
        out = eval(f"a {op} b")
        assert isinstance(out, Tensor) and out.dtype == bool and not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.data, fn(a.data, b))
    assert (Tensor([1.0]) == 1.0).data.tolist() == [True]          # was False: identity
    assert (Tensor([1.0, 2.0]) == Tensor([1.0, 5.0])).data.tolist() == [True, False]
    assert (Tensor(1.0) == None) is False and (Tensor(1.0) != None) is True  # noqa: E711 (as torch)


def test_comparing_shapes_that_do_not_broadcast_names_the_op():
    with pytest.raises(ValueError, match=r"^eq: shapes \(2,\) and \(3,\) cannot be broadcast together$"):
        Tensor([1.0, 2.0]) == Tensor([1.0, 2.0, 3.0])


def test_tensors_hash_by_identity_so_sets_dicts_optimizers_and_pictures_work():
    a, b = Tensor([1.0, 2.0], requires_grad=True), Tensor([1.0, 2.0], requires_grad=True)
    assert len({a, b}) == 2 and {a: 1, b: 2}[b] == 2 and a in {a} and hash(a) != hash(b)
    model = nn.CharRNN(4, 3, rng=np.random.default_rng(0))
    opt = nn.optim.Adam(model.parameters(), lr=0.01)                 # refuses duplicates by identity
    logits, _ = model(np.array([0, 1, 2]))
    loss = nn.cross_entropy(logits, np.array([1, 2, 3]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    dot = viz.draw(loss, params=model.named_parameters()).source
    assert dot.count('label="cell.W_hh') == 1                        # one node per parameter still


# ---- item 6 and 7: one-line messages that name the op ------------------------------------------------
def test_integer_to_a_negative_power_gives_numpys_reason():
    with pytest.raises(ValueError, match=r"^pow: integers to negative integer powers are not allowed"):
        Tensor(np.array([1, 2])) ** -1
    with pytest.raises(ValueError, match=r"^pow: shapes \(2,\) and \(3,\) cannot be broadcast together$"):
        Tensor([1.0, 2.0]) ** Tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize("make, error, says", [
    (lambda: Tensor(np.zeros(3)).sum(axis=1.5), TypeError, "sum: axis must be an int or a tuple of ints, got 1.5"),
    (lambda: Tensor(np.zeros(3)).mean(axis="0"), TypeError, "mean: axis must be an int or a tuple of ints"),
    (lambda: Tensor(np.zeros(3)).max(axis=(0.5,)), TypeError, "max: axis must be an int or a tuple of ints"),
    (lambda: Tensor(np.zeros((2, 3))).reshape(2.5), TypeError, "reshape: the new shape must be ints, got (2.5,)"),
    (lambda: Tensor(np.zeros(3)).clip("a", 2), TypeError, "clip: lo and hi must be numbers or None"),
    (lambda: nn.CharRNN(5, 0), ValueError, "CharRNN: hidden_size must be a positive integer, got 0"),
    (lambda: nn.CharRNN(0, 5), ValueError, "CharRNN: vocab_size must be a positive integer, got 0"),
    (lambda: nn.CharRNN(5, 2.5), TypeError, "CharRNN: hidden_size must be a positive integer, got 2.5"),
    (lambda: nn.RNNCell(3, -1), ValueError, "RNNCell: hidden_size must be a positive integer, got -1"),
    (lambda: nn.LSTMCell(0, 3), ValueError, "LSTMCell: input_size must be a positive integer, got 0"),
    (lambda: nn.GRUCell(3, 0), ValueError, "GRUCell: hidden_size must be a positive integer, got 0"),
    (lambda: nn.Linear(3, 0), ValueError, "Linear: out_features must be a positive integer, got 0"),
    (lambda: nn.CharRNN(5, 10 ** 22), MemoryError, "CharRNN: hidden_size 10000000000000000000000 is larger than"),
    (lambda: nn.CharRNN(5, 10 ** 12), MemoryError, "W_xh of shape (1000000000000, 5) needs "),
])
def test_bad_arguments_are_one_line_naming_the_op(make, error, says):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert says in message and "\n" not in message, message


@pytest.mark.parametrize("method", ["softmax", "log_softmax"])
def test_softmax_of_an_empty_tensor_is_empty_as_in_pytorch(method):
    x = Tensor(np.zeros((2, 0)), requires_grad=True)
    y = getattr(x, method)(axis=-1)
    assert y.shape == (2, 0)
    y.sum().backward()
    assert x.grad.shape == (2, 0)


def test_a_custom_backward_with_too_few_axes_is_named():
    class Bare(tr.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return 2.0  # a bare float for a (1,)-shaped input: PyTorch refuses it too

    x = Tensor(np.ones(1), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"^Bare.backward returned a gradient of shape \(\) for an input "
                                           r"of shape \(1,\)$"):
        Bare.apply(x).sum().backward()


# ---- item 9: the version counter ------------------------------------------------------------------------
def _model_and_loss(seed=0):
    model = nn.CharRNN(4, 3, rng=np.random.default_rng(seed))
    logits, _ = model(np.array([0, 1, 2, 3]))
    return model, nn.cross_entropy(logits, np.array([1, 2, 3, 0]))


@pytest.mark.parametrize("optim", [nn.optim.SGD, nn.optim.Adagrad, nn.optim.Adam])
def test_an_optimizer_step_between_forward_and_backward_is_caught(optim):
    model, loss = _model_and_loss()
    opt = optim(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()                                    # edits the weights the forward pass saved
    with pytest.raises(RuntimeError, match=r"^backward: .* was modified by an inplace operation"):
        loss.backward()


def test_load_state_dict_between_forward_and_backward_is_caught():
    model, loss = _model_and_loss()
    model.load_state_dict(nn.CharRNN(4, 3, rng=np.random.default_rng(1)).state_dict())
    with pytest.raises(RuntimeError, match="was modified by an inplace operation"):
        loss.backward()


def test_retain_graph_then_step_then_backward_again_is_caught_as_in_pytorch():
    model, loss = _model_and_loss()
    opt = nn.optim.SGD(model.parameters(), lr=0.1)
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("through", ["transpose", "reshape", "slice"])
def test_an_edit_of_a_weight_an_op_saved_through_a_view_is_caught(through):
    # h @ W.T saves W.T, a view of W: as PyTorch's views share their base's version counter, the step
    # that edits W in place makes that saved view stale too
    rng = np.random.default_rng(0)
    W = Tensor(rng.standard_normal((3, 4)), requires_grad=True, name="W")
    x = Tensor(rng.standard_normal((2, 4)))
    view = {"transpose": lambda: W.T, "reshape": lambda: W.reshape(12).reshape(3, 4).T,
            "slice": lambda: W[:, :].T}[through]()
    loss = (x @ view).sum()
    W.grad = np.ones((3, 4))
    nn.optim.SGD([W], lr=0.1).step()
    with pytest.raises(RuntimeError, match=r"^backward: 'W' of shape \(3, 4\), which MatMul saved .* inplace"):
        loss.backward()


def test_a_copy_of_a_weight_is_not_a_view_of_it():
    W = Tensor(np.ones((3, 4)), requires_grad=True)
    loss = (Tensor(np.ones((2, 4))) @ W[[0, 1, 2]].T).sum()  # integer indexing copies: no stale view
    W.grad = np.ones((3, 4))
    nn.optim.SGD([W], lr=0.1).step()
    W.grad = None
    loss.backward()
    np.testing.assert_array_equal(W.grad, np.full((3, 4), 2.0))


def test_an_edit_an_op_did_not_save_is_harmless_as_in_pytorch():
    # add saves nothing: its gradient does not depend on the values, so PyTorch lets it pass too
    b = Tensor(np.ones(3), requires_grad=True)
    y = (b + 1.0).sum()
    b.grad = np.zeros(3)
    nn.optim.SGD([b], lr=1.0).step()              # b.grad is zeros: the values stay, the version moves
    y.backward()
    np.testing.assert_array_equal(b.grad, np.ones(3))


def test_normal_training_never_trips_the_counter_and_matches_fresh_gradients():
    model, _ = _model_and_loss()
    opt = nn.optim.Adagrad(model.parameters(), lr=0.1)
    for _ in range(5):
        logits, _ = model(np.array([0, 1, 2, 3]))
        loss = nn.cross_entropy(logits, np.array([1, 2, 3, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # after the steps a fresh forward differentiates the new weights: same as a model built from them
    twin = nn.CharRNN(4, 3, rng=np.random.default_rng(5))
    twin.load_state_dict(model.state_dict())
    for m in (model, twin):
        m.zero_grad()
        logits, _ = m(np.array([0, 1, 2, 3]))
        nn.cross_entropy(logits, np.array([1, 2, 3, 0])).backward()
    for (name, p), q in zip(model.named_parameters().items(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
