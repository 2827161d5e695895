"""The command line under faults (issue 14): sizes memory cannot hold, edited and corrupt checkpoints,
SIGTERM, kill -9 in the middle of a save, absurd learning rates, and a process the library leaves alone.
Every case runs `python -m tinygrad_rnn` as a subprocess, as a user would."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from test_cli import ENV, ERROR, SMALL, fails, run, text_file
from tinygrad_rnn.savefile import pack_json, unpack_json
from tinygrad_rnn.train import Run

BIG = 10 ** 22


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """corpus.txt and an lstm checkpoint good.npz after 12 Adagrad steps."""
    d = tmp_path_factory.mktemp("faults")
    text_file(d / "corpus.txt")
    rc, _, err = run("train", "--text", "corpus.txt", "--cell", "lstm", "--steps", "12", "--out", "good.npz",
                     *SMALL, cwd=d)
    assert rc == 0, err
    return d


def temps(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


# ---- item 1: memory checked before allocating -----------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["train", "--cell", "lstm", "--hidden", "200000", "--steps", "1"], r"--hidden 200000 needs [\d.]+ TiB of memory"),
    (["train", "--hidden", BIG], rf"--hidden {BIG} needs about 10\^\d+ bytes of memory"),
    (["train", "--cell", "rnn", "--hidden", "8", "--seq-len", "100000000", "--batch", "100000"],
     r"--seq-len 100000000 with --batch 100000 needs [\d.]+ PiB of memory to train"),
    (["graph", "--hidden", 10 ** 12], r"--hidden 1000000000000 needs about 10\^\d+ bytes of memory to draw"),
    (["graph", "--steps", 10 ** 11], r"--steps 100000000000 needs [\d.]+ PiB of memory to draw the graph"),
    (["gradcheck", "--hidden", 10 ** 12], r"--hidden 1000000000000 needs .* for the gradient check"),
    (["demo", "--hidden", 10 ** 12], r"--hidden 1000000000000 needs .* for the demo"),
    (["demo", "--hidden", BIG], rf"--hidden {BIG} needs .* for the demo"),
])
def test_sizes_memory_cannot_hold_are_refused_in_one_line(tmp_path, args, says):
    text_file(tmp_path / "t.txt")
    extra = ["--text", "t.txt"] if args[0] == "train" else []
    err = fails(1, *args, *extra, cwd=tmp_path, says="of memory")
    assert re.search(says, err) and re.search(r"more than the [\d.]+ \w+ available\n$", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]  # no checkpoint, no picture


# ---- items 2 and 3: checkpoints edited or corrupt ----------------------------------------------------------
def _edit(d, name, **changes):
    arrays = dict(np.load(d / "good.npz"))
    for key, value in changes.items():
        if key.startswith("config_"):
            config = unpack_json(arrays["config"])
            config[key[len("config_"):]] = value
            arrays["config"] = pack_json(config)
        else:
            arrays[key.replace("__", ".")] = value(arrays[key.replace("__", ".")])
    np.savez(d / name, **arrays)
    return name


@pytest.mark.parametrize("changes, says", [
    (dict(config_hidden=200000), "does not fit a CharRNN (lstm, hidden size 200000, "),
    (dict(config_hidden=BIG), f"does not fit a CharRNN (lstm, hidden size {BIG}, "),
    (dict(config_lr=float("inf")), "its config's lr inf is not a finite positive number"),
    (dict(config_seed=-3), "its config's seed -3 is not an integer from 0 to 2**128 - 1"),
    (dict(optim__mem__0=lambda a: a - a.max() - 1), "mem.0 (negative entries in a sum of squares)"),
    (dict(state__0=lambda a: np.full_like(a, np.nan)), "its carried state holds NaN"),
    (dict(state__1=lambda a: np.full_like(a, np.inf)), "its carried state holds NaN, inf"),
])
def test_an_edited_or_corrupt_checkpoint_is_refused_by_sample_and_resume(trained, changes, says):
    d = trained
    name = _edit(d, "edited.npz", **changes)
    before = (d / name).read_bytes()
    for args in (["sample", name, "--length", "5"], ["train", "--resume", name, "--steps", "20"]):
        rc, out, err = run(*args, cwd=d)
        assert rc == 1 and ERROR.match(err) and says in err and "Warning" not in err, err
        assert "diverged" not in err and f"tinygrad-rnn: error: {name}" in err
    assert (d / name).read_bytes() == before


# ---- item 8: a learning rate that blows up ---------------------------------------------------------------
def test_train_with_lr_1e300_stops_in_one_line_and_saves_nothing(trained, tmp_path):
    text_file(tmp_path / "t.txt")
    rc, out, err = run("train", "--text", "t.txt", "--cell", "rnn", *SMALL, "--lr", "1e300", "--steps", "40",
                       "--out", "x.npz", cwd=tmp_path)
    assert rc == 1 and ERROR.match(err), err
    assert re.search(r"training diverged: the loss became \S+ nats/char at step \d+, over 100 times the [\d.]+ "
                     r"of a uniform guess \(try a lower --lr or --clip\); this state was not saved to x.npz", err)
    assert max(map(len, (out + err).splitlines())) < 200 and "Warning" not in err
    assert not (tmp_path / "x.npz").exists()


def test_sampling_weights_that_overflow_prints_no_warnings(trained):
    d = trained
    name = _edit(d, "huge.npz", param__out__W=lambda a: a * 1e307, param__out__b=lambda a: a * 1e307)
    rc, out, err = run("sample", name, "--prime", "the", "--length", "20", "--seed", "1", cwd=d)
    assert "Warning" not in err and "overflow" not in err.lower() or ERROR.match(err), err
    assert (rc == 0 and len(out) == 23) or (rc == 1 and ERROR.match(err)), (rc, out, err)


# ---- item 4: SIGTERM like Ctrl-C, and partial files removed -----------------------------------------------
def _start(cwd, *args, code=None):
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "tinygrad_rnn", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=60):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, err


def test_sigterm_saves_says_so_in_one_line_and_exits_143(tmp_path):
    text_file(tmp_path / "t.txt")
    proc = _start(tmp_path, "train", "--text", "t.txt", "--cell", "rnn", *SMALL[:6], "--eval-every", "5",
                  "--steps", "10000000", "--out", "term.npz")
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            if line.startswith("step"):
                break
        proc.send_signal(signal.SIGTERM)
        out, err = _finish(proc)
    finally:
        watchdog.cancel()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    step = int(re.search(r"^tinygrad-rnn: terminated at step (\d+); saved term.npz; continue with: "
                         r"tinygrad-rnn train --resume term.npz", err).group(1))
    assert step >= 5 and Run.load(tmp_path / "term.npz").step == step and temps(tmp_path) == []


def test_sigterm_outside_training_is_one_line_too(tmp_path):
    # sample with a huge --length runs until stopped; SIGTERM ends it with one line and 143
    text_file(tmp_path / "t.txt")
    assert run("train", "--text", "t.txt", "--cell", "rnn", *SMALL, "--steps", "3", "--out", "s.npz",
               cwd=tmp_path)[0] == 0
    proc = _start(tmp_path, "sample", "s.npz", "--length", "100000000")
    proc.stdout.read(50)
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == 143 and err.strip() == "tinygrad-rnn: terminated", err


# The save made slow (np.savez sleeps after writing, the temp file open), so a kill lands inside it.
SLOW_SAVE = """
import sys, time
import numpy as np
_savez = np.savez
def slow_savez(file, **arrays):
    _savez(file, **arrays)
    file.flush()
    time.sleep(0.5)
np.savez = slow_savez
sys.argv[0] = "tinygrad-rnn"
from tinygrad_rnn.cli import console
console()
"""


def _written(path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _kill_during_save(d, sig, *args):
    """Start train, send `sig` the moment a temp file of ck.npz holds data; return (returncode, stderr, temps seen).
    An empty one is not a save: the start-up check that the directory is writable makes and removes one too
    (seen once in five full runs, a kill then landed before the save and left the last kill's file)."""
    old = set(temps(d))  # a partial file an earlier kill left is not this run's save
    proc = _start(d, "train", *args, code=SLOW_SAVE)
    deadline = time.monotonic() + 90
    seen = []
    while time.monotonic() < deadline and proc.poll() is None and not seen:
        seen = [n for n in temps(d) if n.startswith(".ck.npz.") and n not in old and _written(d / n)]
        time.sleep(0.005)
    assert seen, "no save was seen in progress"
    proc.send_signal(sig)
    _, err = _finish(proc)
    return proc.returncode, err, seen


def test_fault_injection_kill_9_during_saves_leaves_a_loadable_checkpoint_and_no_temps(tmp_path):
    text_file(tmp_path / "t.txt")
    flags = ["--cell", "lstm", "--hidden", "64", "--seq-len", "8", "--batch", "3", "--eval-every", "1000",
             "--sample-every", "1000"]
    assert run("train", "--text", "t.txt", *flags, "--steps", "2", "--out", "ck.npz", cwd=tmp_path)[0] == 0
    left = []
    for kill in range(3):  # each run resumes what the last kill left, and is killed in its first save
        before = Run.load(tmp_path / "ck.npz").step
        rc, err, seen = _kill_during_save(tmp_path, signal.SIGKILL, "--resume", "ck.npz", "--steps", "100000",
                                          "--checkpoint-every", "1")
        assert rc == -signal.SIGKILL
        left.append(temps(tmp_path))
        assert Run.load(tmp_path / "ck.npz").step == before  # the killed save never replaced the good file
    # each kill left its partial file, and each run's save removed the one before
    assert [len(names) for names in left] == [1, 1, 1] and len({names[0] for names in left}) == 3
    rc, out, err = run("train", "--resume", "ck.npz", "--steps", before + 2, cwd=tmp_path)
    assert rc == 0, err
    assert temps(tmp_path) == [] and Run.load(tmp_path / "ck.npz").step == before + 2


def test_sigterm_during_a_save_finishes_it_then_saves_and_stops(tmp_path):
    text_file(tmp_path / "t.txt")
    flags = ["--text", "t.txt", "--cell", "rnn", *SMALL[:6], "--eval-every", "1000", "--sample-every", "1000"]
    rc, err, _ = _kill_during_save(tmp_path, signal.SIGTERM, *flags, "--steps", "100000", "--checkpoint-every",
                                   "2", "--out", "ck.npz")
    assert rc == 143 and len(err.splitlines()) == 1 and "terminated at step" in err, err
    step = int(re.search(r"at step (\d+)", err).group(1))
    assert temps(tmp_path) == [] and Run.load(tmp_path / "ck.npz").step == step


def test_only_this_checkpoints_partial_files_are_removed(trained, tmp_path):
    text_file(tmp_path / "t.txt")
    names = [".ck.npz.0123abcd.tmp", ".ck.npz.ffffffff.tmp",   # partial saves of ck.npz: removed
             ".other.npz.0123abcd.tmp", ".ck.npz.notes.tmp", "ck.npz.0123abcd.tmp"]  # not ours: kept
    for name in names:
        (tmp_path / name).write_bytes(b"PK\x03\x04 partial")
    assert run("train", "--text", "t.txt", "--cell", "rnn", *SMALL, "--steps", "2", "--out", "ck.npz",
               cwd=tmp_path)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:] + ["ck.npz", "t.txt"])


# ---- item 12: the library leaves the process alone; the command limits its own threads --------------------
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS")
CLEAN_ENV = {k: v for k, v in ENV.items() if k not in BLAS_VARIABLES}


def test_importing_the_library_changes_no_environment_variable():
    code = ("import os; before = dict(os.environ); import tinygrad_rnn, tinygrad_rnn.cli; "
            "print(dict(os.environ) == before)")
    done = subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr


def test_the_command_without_threadpoolctl_or_openblas_restarts_once_with_one_thread():
    code = ("import os, sys; from tinygrad_rnn import cli; cli._openblas_one_thread = lambda: False; "
            "sys.modules['threadpoolctl'] = None; "
            "print(os.environ.get('OPENBLAS_NUM_THREADS')); cli._one_blas_thread(); print('after')")
    done = subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
    lines = done.stdout.split()
    if (os.cpu_count() or 1) == 1 or os.name != "posix":
        assert lines == ["None", "after"]
    else:  # printed before the restart, then by the restarted process with the variables set
        assert lines == ["None", "1", "after"], done.stderr


def test_the_command_sets_openblas_to_one_thread_in_place():
    code = ("import ctypes; from tinygrad_rnn import cli; import numpy; "
            "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.rsplit('/', 1)[-1].lower()}; "
            "lib = ctypes.CDLL(sorted(libs)[0]) if libs else None; "
            "get = lib and next((getattr(lib, n) for n in ('scipy_openblas_get_num_threads64_', "
            "'openblas_get_num_threads64_', 'openblas_get_num_threads') if hasattr(lib, n)), None); "
            "print(cli._openblas_one_thread(), get() if get else None)")
    done = subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
    if done.stdout.split()[:1] != ["True"]:
        pytest.skip("NumPy here is not linked against OpenBLAS")
    assert done.stdout.split() == ["True", "1"], done.stderr
