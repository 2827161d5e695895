"""Issue 23, data loss: a config is checked by one function (Config, Run.start, Run.save and Run.load agree),
a checkpoint name that cannot be written is refused before training, a closed stdout stops and saves, two
writers on one checkpoint, --out equal to --text, --resume through a symlink. Small models on tiny texts."""
import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from test_cli import ENV, ERROR, SMALL, fails, run, text_file
from tinygrad_rnn.savefile import CheckpointError, writer_lock
from tinygrad_rnn.train import Config, Run, fit


def small(**kw):
    return Config(**{**dict(cell="rnn", hidden=6, seq_len=5, batch=2, eval_every=5, sample_every=50,
                            checkpoint_every=50), **kw})


TEXT = "the cat sat on the mat and the dog ran far " * 20


# ---- one config check ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, says", [
    (dict(eval_every=2.0), "Config: eval_every 2.0 is not a positive integer"),
    (dict(eval_every=0), "Config: eval_every 0 is not a positive integer"),
    (dict(checkpoint_every=True), "Config: checkpoint_every True is not a positive integer"),
    (dict(cell="rnn", cell_input="sigmoid"), "Config: cell_input 'sigmoid' is for an lstm, not a rnn"),
    (dict(seed=2 ** 130), "Config: seed 1361129467683753853853498429727072845824 is not an integer from 0"),
    (dict(seed=-1), "Config: seed -1 is not an integer from 0 to 2**128 - 1"),
    (dict(text_sha256="ABC"), "Config: text_sha256 'ABC' is not a SHA-256 hex digest"),
    (dict(optim="rmsprop"), "Config: optim 'rmsprop' is not one of ('adagrad', 'adam', 'sgd')"),
    (dict(lr=float("nan")), "Config: lr nan is not a finite positive number"),
    (dict(hidden=[3]), "Config: hidden [3] is not a positive integer"),
])
def test_config_refuses_what_the_loader_would_call_corrupt_in_one_line(kw, says):
    with pytest.raises(ValueError) as info:
        Config(**kw)
    assert str(info.value).startswith(says) and "\n" not in str(info.value), info.value


def test_every_config_a_run_starts_with_saves_and_loads_back(tmp_path):
    # the edges of each field: the largest seed, integer lr and clip, NumPy integers
    config = small(seed=2 ** 128 - 1, lr=1, clip=np.int64(3), hidden=np.int64(4), optim="sgd")
    run_ = Run.start(config, TEXT)
    fit(run_, TEXT, 3, checkpoint=tmp_path / "ck.npz")
    loaded = Run.load(tmp_path / "ck.npz")
    assert loaded.config == run_.config and loaded.step == 3 and loaded.config.seed == 2 ** 128 - 1
    np.testing.assert_array_equal(loaded.model.state_dict()["out.W"], run_.model.state_dict()["out.W"])


def test_a_field_assigned_after_start_is_refused_before_training_or_saving(tmp_path):
    run_ = Run.start(small(), TEXT)
    run_.config.eval_every = 0  # a dataclass field, assigned past Config's check
    with pytest.raises(ValueError, match="^Run: config eval_every 0 is not a positive integer$"):
        fit(run_, TEXT, 3, checkpoint=tmp_path / "ck.npz")
    with pytest.raises(ValueError, match="^Run: config eval_every 0 is not a positive integer$"):
        run_.save(tmp_path / "ck.npz")
    assert not (tmp_path / "ck.npz").exists() and run_.step == 0


def test_cli_refuses_a_seed_the_checkpoint_could_not_keep(tmp_path):
    text_file(tmp_path / "t.txt")
    fails(2, "train", "--text", "t.txt", "--seed", 2 ** 128, *SMALL, cwd=tmp_path, says="--seed: must be below 2**128")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


# ---- checkpoint names, texts and links ------------------------------------------------------------------
def test_an_out_name_too_long_for_the_temp_file_is_refused_before_training(tmp_path):
    text_file(tmp_path / "t.txt")
    name = "a" * 245 + ".npz"  # fits the file system's 255, its temp `.NAME.<8 hex>.tmp` does not
    rc, out, err = run("train", "--text", "t.txt", "--out", name, "--steps", "5", *SMALL, cwd=tmp_path)
    assert rc == 1 and ERROR.match(err) and "File name too long (a save first writes ." in err, err
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
    with pytest.raises(CheckpointError, match="File name too long"):  # the library checks it before training too
        fit(Run.start(small(), TEXT), TEXT, 2, checkpoint=tmp_path / name)


def test_out_equal_to_the_training_text_is_refused_and_the_text_kept(tmp_path):
    text = text_file(tmp_path / "t.txt")
    digest = hashlib.sha256(text.read_bytes()).hexdigest()
    fails(1, "train", "--text", "t.txt", "--out", "t.txt", "--force", *SMALL, cwd=tmp_path,
          says="--out t.txt is the training text --text t.txt")
    os.symlink("t.txt", tmp_path / "alias.txt")
    fails(1, "train", "--text", "alias.txt", "--out", "t.txt", "--force", *SMALL, cwd=tmp_path,
          says="is the training text")
    run_ = Run.start(small(text=str(text)), text.read_text())  # the library: a run's own text is not its checkpoint
    with pytest.raises(CheckpointError, match="it is the training text"):
        fit(run_, text.read_text(), 2, checkpoint=text)
    assert hashlib.sha256(text.read_bytes()).hexdigest() == digest


def test_train_checks_a_missing_text_before_the_existing_checkpoint(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"x")
    fails(1, "train", "--text", "missing.txt", cwd=tmp_path, says="missing.txt: no such file")


def test_resume_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path):
    text_file(tmp_path / "t.txt")
    rc, _, err = run("train", "--text", "t.txt", "--steps", "4", "--out", "real.npz", *SMALL, cwd=tmp_path)
    assert rc == 0, err
    os.symlink("real.npz", tmp_path / "link.npz")
    rc, _, err = run("train", "--text", "t.txt", "--resume", "link.npz", "--steps", "9", *SMALL, cwd=tmp_path)
    assert rc == 0, err
    assert os.readlink(tmp_path / "link.npz") == "real.npz"
    assert Run.load(tmp_path / "real.npz").step == 9


# ---- two writers ---------------------------------------------------------------------------------------
def test_a_second_writer_of_one_checkpoint_is_refused_in_one_line(tmp_path):
    ck = tmp_path / "ck.npz"
    with writer_lock(ck):  # another training run holds it
        with pytest.raises(CheckpointError, match=r"^.*ck.npz is being written by another training run; wait"):
            fit(Run.start(small(), TEXT), TEXT, 2, checkpoint=ck)
        assert not ck.exists()
    fit(Run.start(small(), TEXT), TEXT, 2, checkpoint=ck)  # released: the next run writes it
    assert Run.load(ck).step == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]


def test_two_trainers_on_one_checkpoint_the_second_refused_the_first_keeps_its_progress(tmp_path):
    text_file(tmp_path / "t.txt", words=3000)
    first = subprocess.Popen([sys.executable, "-m", "tinygrad_rnn", "train", "--text", "t.txt", "--out", "ck.npz",
                              "--steps", "100000", "--checkpoint-every", "20", *SMALL], cwd=tmp_path, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "ck.npz").exists() and time.time() < deadline:
            time.sleep(0.1)
        for args in (["--resume", "ck.npz"], ["--out", "ck.npz", "--force"]):
            rc, out, err = run("train", "--text", "t.txt", *args, "--steps", "100000", *SMALL, cwd=tmp_path)
            assert rc == 1 and ERROR.match(err) and "ck.npz is being written by another training run" in err, err
        assert first.poll() is None  # the first trains on
    finally:
        first.terminate()
        _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and b"saved ck.npz" in err, err
    assert Run.load(tmp_path / "ck.npz").step > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "t.txt"]  # no temp, no lock file


# ---- closed stdout ----------------------------------------------------------------------------------
def _train_into(shell_redirect, d, steps=30, **env):
    cmd = (f"{sys.executable} -m tinygrad_rnn train --text t.txt --out ck.npz --steps {steps} "
           f"{' '.join(SMALL[:-4])} --eval-every 2 --sample-every 5 {shell_redirect}")
    done = subprocess.run(["bash", "-c", cmd], cwd=d, env={**ENV, **env}, capture_output=True, timeout=120)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_a_closed_pipe_stops_training_and_saves(tmp_path):
    text_file(tmp_path / "t.txt")
    # steps without end: the run must stop because the reader left, whenever head gets to leave
    rc, out, err = _train_into("| head -n 3; exit ${PIPESTATUS[0]}", tmp_path, steps=10 ** 9)
    assert rc == 1 and len(out.splitlines()) == 3 and "Traceback" not in err, err
    if "before training began" in err:  # head left while the report was printed (PYTHONUNBUFFERED set)
        assert ERROR.match(err) and not (tmp_path / "ck.npz").exists(), err
        return
    assert "standard output closed (Broken pipe): stopped at step" in err and "saved ck.npz" in err, err
    step = int(err.split("stopped at step ")[1].split(";")[0])
    assert 0 < step < 10 ** 9 and Run.load(tmp_path / "ck.npz").step == step


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_gone_before_the_first_line_is_one_line_either_way(tmp_path, unbuffered):
    text_file(tmp_path / "t.txt")
    rc, out, err = _train_into("| true; exit ${PIPESTATUS[0]}", tmp_path, steps=10 ** 9, PYTHONUNBUFFERED=unbuffered)
    assert rc == 1 and "Traceback" not in err, err
    if unbuffered:  # the report's first line fails: before any training
        assert err == ("tinygrad-rnn: error: standard output closed before training began (Broken pipe): "
                       "nothing was trained or saved\n") and not (tmp_path / "ck.npz").exists()
    else:  # the report waits in the buffer until the first evaluation's flush, two steps in
        assert err.startswith("tinygrad-rnn: standard output closed (Broken pipe): stopped at step 3; saved ck.npz")
        assert Run.load(tmp_path / "ck.npz").step == 3


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_stdout_on_a_full_device_is_one_line_and_sample_too(tmp_path):
    text_file(tmp_path / "t.txt")
    rc, out, err = _train_into("> /dev/full", tmp_path)
    assert rc == 1 and ERROR.match(err) and "No space left on device" in err, err
    rc, _, err = _train_into("> /dev/null", tmp_path)
    assert rc == 0, err
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m tinygrad_rnn sample ck.npz --length 50 > /dev/full"],
                          cwd=tmp_path, env=ENV, capture_output=True, timeout=60)
    assert done.returncode == 1 and ERROR.match(done.stderr.decode()), done.stderr


@pytest.mark.parametrize("redirect", [">&-", "2>&-"])
def test_closed_stdout_or_stderr_trains_to_the_end_and_saves(tmp_path, redirect):
    text_file(tmp_path / "t.txt")
    rc, out, err = _train_into(redirect, tmp_path)
    assert rc == 0 and "Traceback" not in out + err, err
    assert Run.load(tmp_path / "ck.npz").step == 30
