"""train.fit, the training loop as a library call (no command line): its callbacks, checkpoints, early
stop and resume, on a tiny text and model."""
import math
import re

import numpy as np
import pytest

from tinygrad_rnn import nn, train
from tinygrad_rnn.savefile import CheckpointError, pack_json, unpack_json
from tinygrad_rnn.train import Config, Run, fit

TEXT = " ".join(np.random.default_rng(0).choice("the cat sat on a mat and ran to see a dog".split(), 400))


def _config(**kw):
    return Config(**{**dict(cell="rnn", hidden=10, seq_len=6, batch=3, eval_every=4, sample_every=6,
                            checkpoint_every=5), **kw})


def test_fit_trains_and_calls_back_on_schedule(tmp_path):
    run = Run.start(_config(), TEXT)
    seen = {"step": [], "eval": [], "sample": [], "checkpoint": []}
    result = fit(run, TEXT, 12, checkpoint=tmp_path / "c.npz",
                 on_step=lambda r, loss, speed: seen["step"].append((r.step, loss, speed)),
                 on_eval=lambda r, score: seen["eval"].append((r.step, score)),
                 on_sample=lambda r, prime, text: seen["sample"].append((r.step, prime, text)),
                 on_checkpoint=lambda r, path: seen["checkpoint"].append((r.step, path.name)),
                 sample_chars=17)
    assert [s for s, _, _ in seen["step"]] == list(range(1, 13))
    assert all(math.isfinite(loss) and speed > 0 for _, loss, speed in seen["step"])
    assert [s for s, _ in seen["eval"]] == [4, 8]          # and the final score, in the result
    assert [(s, len(t)) for s, _, t in seen["sample"]] == [(6, 17), (12, 17)]
    assert seen["checkpoint"] == [(5, "c.npz"), (10, "c.npz"), (12, "c.npz")]
    assert not result.stopped and result.step == run.step == 12
    # the held-out score it returns is evaluate's on the held-out part, which the loss went below
    _, val_ids = run.split(TEXT)
    assert result.score == train.evaluate(run.model, val_ids)
    assert result.score["nats_per_char"] < math.log(run.vocab.size)
    assert int(np.load(tmp_path / "c.npz")["step"]) == 12


def test_fit_stopped_saves_and_resumes_bit_identically(tmp_path):
    stop_after = 7
    run = Run.start(_config(), TEXT)
    result = fit(run, TEXT, 20, checkpoint=tmp_path / "a.npz", should_stop=lambda: run.step >= stop_after)
    assert result.stopped and result.score is None and result.step == stop_after
    resumed = Run.load(tmp_path / "a.npz")
    assert resumed.step == stop_after
    fit(resumed, TEXT, 20, checkpoint=tmp_path / "a.npz")
    straight = Run.start(_config(), TEXT)
    fit(straight, TEXT, 20, checkpoint=tmp_path / "b.npz")
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key


def test_fit_without_checkpoint_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Run.start(_config(), TEXT)
    assert fit(run, TEXT, 3).step == 3
    assert list(tmp_path.iterdir()) == []


def test_fit_raises_training_diverged_before_saving(tmp_path, monkeypatch):
    run = Run.start(_config(), TEXT)
    fit(run, TEXT, 5, checkpoint=tmp_path / "c.npz")
    good = (tmp_path / "c.npz").read_bytes()
    monkeypatch.setattr(Run, "train_step", lambda self, ids: (setattr(self, "step", self.step + 1), math.nan)[1])
    with pytest.raises(train.TrainingDiverged, match="training diverged: the loss became nan nats/char at step 6"):
        fit(run, TEXT, 10, checkpoint=tmp_path / "c.npz")
    assert (tmp_path / "c.npz").read_bytes() == good


# ---- checkpoints: every field checked before anything is built (issue 14, items 2 and 3) ---------------
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_param_shapes_known_without_building_match_the_model(cell):
    model = nn.CharRNN(7, 5, cell, rng=np.random.default_rng(0))
    assert train._param_shapes(cell, 5, 7) == {k: p.shape for k, p in model.named_parameters().items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An lstm run after 6 Adagrad steps, saved: its arrays, to be edited one field at a time."""
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    run = Run.start(_config(cell="lstm"), TEXT)
    fit(run, TEXT, 6, checkpoint=path)
    return dict(np.load(path))


def _edited(saved, tmp_path, key, value):
    arrays = dict(saved)
    if key.startswith("config."):
        config = unpack_json(arrays["config"])
        config[key[len("config."):]] = value
        arrays["config"] = pack_json(config)
    else:
        arrays[key] = value(arrays[key]) if callable(value) else value
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("key, value, says", [
    ("config.hidden", 200000, "bad.npz does not fit a CharRNN (lstm, hidden size 200000, "),
    ("config.hidden", 10 ** 22, "does not fit a CharRNN (lstm, hidden size 10000000000000000000000"),
    ("config.lr", math.inf, "its config's lr inf is not a finite positive number"),
    ("config.lr", math.nan, "its config's lr nan is not a finite positive number"),
    ("config.clip", -5.0, "its config's clip -5.0 is not a finite positive number"),
    ("config.seed", -1, "its config's seed -1 is not an integer from 0 to 2**128 - 1"),
    ("config.batch", 2.5, "its config's batch 2.5 is not a positive integer"),
    ("config.val_fraction", 1.0, "its config's val_fraction 1.0 is not a number between 0 and 1"),
    ("config.cell", "transformer", "bad.npz holds a CharRNN with a user-written transformer cell; load it in"),
    ("config.cell", 5, "its config's cell 5 is not one of ('rnn', 'lstm', 'gru') or a cell's class name"),
    ("config.cell_input", "relu", "its config's cell_input 'relu' is not one of ('tanh', 'sigmoid')"),
    ("config.text_sha256", "", "its config's text_sha256 '' is not a SHA-256 hex digest"),
    ("optim.mem.1", lambda a: -np.abs(a) - 1, "mem.1 (negative entries in a sum of squares)"),
    ("optim.mem.0", lambda a: np.full_like(a, np.nan), "mem.0 (holds NaN or inf)"),
    ("state.0", lambda a: np.full_like(a, np.nan), "its carried state holds NaN, inf or a hidden value"),
    ("state.0", lambda a: a + 3.0, "outside [-1, 1]"),
    ("state.1", lambda a: np.full_like(a, np.inf), "its carried state holds NaN, inf"),
    ("smooth_loss", np.float64(np.nan), "'smooth_loss' nan is not a loss after 6 steps"),
    ("smooth_loss", np.float64(-1.0), "'smooth_loss' -1.0 is not a loss after 6 steps"),
    ("unigram", lambda a: -a, "'unigram' must be"),
    ("param.out.W", lambda a: a.astype(np.int64), "out.W (dtype int64, expected floating point)"),
    ("param.cell.W_h", lambda a: a[:, :-1], "cell.W_h (shape (40, 9), expected (40, 10))"),
])
def test_run_load_refuses_each_bad_field_in_one_line_before_building(saved, tmp_path, monkeypatch, key, value,
                                                                       says):
    path = _edited(saved, tmp_path, key, value)
    if not key.startswith("optim."):  # the optimizer checks its buffers against the model, once built
        monkeypatch.setattr(train, "_build", lambda *a: pytest.fail("built a model from a bad checkpoint"))
    with pytest.raises(CheckpointError) as info:
        Run.load(path)
    message = str(info.value)
    assert says in message and "\n" not in message, message


def test_run_load_accepts_the_untouched_checkpoint(saved, tmp_path):
    run = Run.load(_edited(saved, tmp_path, "step", np.int64(6)))
    assert run.step == 6 and run.config.cell == "lstm"


def test_run_start_refuses_a_size_memory_cannot_hold_before_building(monkeypatch):
    monkeypatch.setattr(train, "_build", lambda *a: pytest.fail("built a model too large for memory"))
    with pytest.raises(MemoryError, match=r"^training a lstm of hidden size 200000 needs [\d.]+ TiB of memory "
                                          r"\(adagrad, 6 steps x 3 streams\), more than the "):
        Run.start(_config(cell="lstm", hidden=200000), TEXT)


def test_fit_stops_a_diverging_run_in_one_line_before_saving(tmp_path):
    run = Run.start(_config(lr=1e300), TEXT)
    with pytest.raises(train.TrainingDiverged) as info:
        fit(run, TEXT, 30, checkpoint=tmp_path / "c.npz")
    message = str(info.value)
    assert re.fullmatch(r"training diverged: the loss became \S+ nats/char at step \d+, over 100 times the "
                        r"[\d.]+ of a uniform guess", message), message
    assert len(message) < 120 and not (tmp_path / "c.npz").exists()


def test_fit_with_checkpointing_resumes_bit_identically_and_matches_storage(tmp_path):
    for setting in ("3", "sqrt", "slots=2"):
        config = _config(checkpoint=setting)
        run = Run.start(config, TEXT)
        assert run.model.checkpoint == {"3": 3, "sqrt": "sqrt", "slots=2": nn.MemoryBudget(2)}[setting]
        fit(run, TEXT, 4, checkpoint=tmp_path / "a.npz")
        resumed = Run.load(tmp_path / "a.npz")
        assert resumed.config.checkpoint == setting and resumed.model.checkpoint == run.model.checkpoint
        fit(resumed, TEXT, 8, checkpoint=tmp_path / "a.npz")
        straight = Run.start(config, TEXT)
        fit(straight, TEXT, 8, checkpoint=tmp_path / "b.npz")
        stored = Run.start(_config(), TEXT)  # every state kept: the same training, to rounding
        fit(stored, TEXT, 8)
        a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
        for name, p in straight.model.named_parameters().items():
            np.testing.assert_allclose(p.data, stored.model.named_parameters()[name].data, rtol=1e-10, atol=1e-12)
