"""train.fit, the training loop as a library call (no command line): its callbacks, checkpoints, early
stop and resume, on a tiny text and model."""
import math

import numpy as np
import pytest

from tinygrad_rnn import train
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
    with pytest.raises(train.TrainingDiverged, match="training diverged: the loss became nan at step 6"):
        fit(run, TEXT, 10, checkpoint=tmp_path / "c.npz")
    assert (tmp_path / "c.npz").read_bytes() == good
