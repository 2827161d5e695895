"""Issue 23, wrong results and raw tracebacks: half a PyTorch bias pair, absurd or wrapped checkpoint numbers,
0-d tensors as PyTorch treats them, a custom op's bad forward named, and sizes refused before time or memory
is spent (one line each)."""
import json
import zipfile

import numpy as np
import pytest

from test_cli import ERROR, fails, run
import tinygrad_rnn as tr
from tinygrad_rnn import analysis, nn
from tinygrad_rnn.data import DataError, Vocab, get_batch, load_text
from tinygrad_rnn.savefile import CheckpointError, load_checkpoint
from tinygrad_rnn.train import Config, Run, fit

TEXT = "the cat sat on the mat and the dog ran far " * 20


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    run_ = Run.start(Config(cell="rnn", hidden=6, seq_len=5, batch=2, eval_every=5, sample_every=50,
                            checkpoint_every=50), TEXT)
    fit(run_, TEXT, 4, checkpoint=d / "good.npz")
    return d / "good.npz"


def edited(saved, tmp_path, **changes):
    arrays = dict(np.load(saved))
    for key, change in changes.items():
        arrays[key.replace("__", ".")] = change(arrays[key.replace("__", ".")])
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


# ---- wrong results ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("drop, says", [("bias_hh", "bias_ih without bias_hh"), ("bias_ih", "bias_hh without bias_ih")])
def test_load_torch_state_dict_refuses_half_a_bias_pair(drop, says):
    cell = nn.RNNCell(3, 4, rng=np.random.default_rng(0))
    d = {"weight_ih": np.ones((4, 3)), "weight_hh": np.ones((4, 4)), "bias_ih": np.ones(4), "bias_hh": np.ones(4)}
    del d[drop]
    with pytest.raises(ValueError, match=f"^RNNCell.load_torch_state_dict: {says} "):
        cell.load_torch_state_dict(d)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_load_torch_state_dict_refuses_nan_and_inf(bad):
    cell = nn.LSTMCell(3, 2, rng=np.random.default_rng(0))
    before = cell.W_h.data.copy()
    w = np.zeros((8, 2))
    w[1, 1] = bad
    with pytest.raises(ValueError, match="^LSTMCell.load_torch_state_dict: weight_hh holds NaN or inf$"):
        cell.load_torch_state_dict({"weight_ih": np.zeros((8, 3)), "weight_hh": w})
    np.testing.assert_array_equal(cell.W_h.data, before)


def test_half_a_bias_pair_is_what_torch_refuses_too():
    torch = pytest.importorskip("torch")
    cell = torch.nn.RNNCell(3, 4)
    d = dict(cell.state_dict())
    del d["bias_hh"]
    with pytest.raises(RuntimeError, match="Missing key"):
        cell.load_state_dict(d)


@pytest.mark.parametrize("changes, says", [
    (dict(param__out__W=lambda a: a.astype(np.longdouble) * np.longdouble(10) ** 400 if np.finfo(np.longdouble).max
          > 1e400 else a * 1e300), "bad.npz is corrupt: out.W holds NaN, inf or values beyond 1e+150"),
    (dict(param__out__W=lambda a: a * 1e300), "bad.npz is corrupt: out.W holds NaN, inf or values beyond 1e+150"),
    (dict(unigram=lambda a: np.full(a.shape, 2 ** 64 - 1, dtype=np.uint64)), "'unigram' must be"),
    (dict(config=lambda a: np.array("[" * 100000 + "]" * 100000)), "stored JSON is unreadable"),
])
def test_a_checkpoint_with_absurd_numbers_is_called_corrupt(saved, tmp_path, changes, says):
    with pytest.raises(CheckpointError) as info:
        Run.load(edited(saved, tmp_path, **changes))
    assert says in str(info.value) and "\n" not in str(info.value), info.value


def _rng_edit(name, edit):
    def change(_):
        bg = getattr(np.random, name)()
        state = bg.state
        edit(state["state"])
        return np.array(json.dumps(state, default=lambda o: o.tolist()))
    return change


@pytest.mark.parametrize("name, edit", [
    ("MT19937", lambda s: s.__setitem__("key", [1, 2])),
    ("PCG64", lambda s: s.__setitem__("inc", -1)),
    ("PCG64", lambda s: s.__setitem__("inc", 2 ** 300)),
    ("SFC64", lambda s: s.__setitem__("state", [2 ** 100, 1, 2, 3])),
])
def test_a_bad_rng_state_is_one_line(saved, tmp_path, name, edit):
    with pytest.raises(CheckpointError, match=f"stored {name} RNG state is invalid") as info:
        Run.load(edited(saved, tmp_path, rng=_rng_edit(name, edit)))
    assert "\n" not in str(info.value)


def test_a_zip_bomb_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("config.npy", "w", force_zip64=True) as f:
            for _ in range(64):
                f.write(bytes(2 ** 20))  # 64 MiB of zeros in about 64 KiB
    assert path.stat().st_size < 2 ** 20
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("read the member"))
    with pytest.raises(CheckpointError, match=r"corrupt \(member 'config.npy' would unpack [\d,]+ bytes to 67,108,864"):
        load_checkpoint(path)


def test_zero_d_tensors_behave_as_in_pytorch():
    t = tr.Tensor(2.75)
    with pytest.raises(TypeError, match="^iteration over a 0-d tensor$"):
        list(t)
    with pytest.raises(TypeError, match="^len\\(\\) of a 0-d tensor$"):
        len(t)
    one = tr.Tensor([2.75])
    assert (int(t), int(one), round(t, 1), round(one), f"{t:.3f}", f"{one:.1f}") == (2, 2, 2.8, 3, "2.750", "2.8")
    assert [r.item() for r in tr.Tensor([[1.0, 2.0], [3.0, 4.0]])[1]] == [3.0, 4.0]
    with pytest.raises(ValueError, match=r"^item: a tensor of shape \(2,\) has 2 entries; item\(\) takes exactly one$"):
        tr.Tensor([1.0, 2.0]).item()
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(torch.tensor(2.75))
    assert (int(torch.tensor(2.75)), round(torch.tensor([2.75]).item(), 1), f"{torch.tensor(2.75):.3f}") == (2, 2.8, "2.750")


@pytest.mark.parametrize("data", ["abc", ["a", "b"], np.array(["x"])])
def test_a_tensor_of_strings_is_refused_in_one_line(data):
    with pytest.raises(TypeError, match="^Tensor: holds numbers, not .* data of dtype <U"):
        tr.Tensor(data)


class _Scale(tr.Function):
    """y = x * scale"""

    @staticmethod
    def forward(ctx, x, scale=2.0):
        return x * scale

    @staticmethod
    def backward(ctx, g):
        return (g,)


class _Nothing(tr.Function):
    @staticmethod
    def forward(ctx, x):
        return None


def test_a_custom_forward_that_returns_no_array_is_named():
    with pytest.raises(TypeError, match="^_Scale.forward returned Tensor, not an array of numbers; the keyword "
                                        "argument scale is a Tensor: pass tensors as positional inputs"):
        _Scale.apply(tr.Tensor([1.0, 2.0]), scale=tr.Tensor(3.0))
    with pytest.raises(TypeError, match="^_Nothing.forward returned NoneType, not an array of numbers$"):
        _Nothing.apply(tr.Tensor(1.0))
    assert _Scale.apply(tr.Tensor([1.0]), scale=3.0).item() == 3.0  # a number as a keyword is fine


def test_spectral_radius_of_nan_and_a_dict_state_are_one_line():
    with pytest.raises(ValueError, match="^spectral_radius: the matrix must hold finite numbers"):
        analysis.spectral_radius(np.full((2, 2), np.nan))
    with pytest.raises(TypeError, match="^detach_state: a state is a Tensor or a tuple of states, got dict$"):
        nn.detach_state({"h": tr.Tensor([1.0])})


# ---- sizes before memory and time ---------------------------------------------------------------------
def test_an_endless_or_huge_text_is_refused_after_its_first_mebibyte(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="^/dev/zero: looks binary"):
        load_text("/dev/zero")
    from tinygrad_rnn import data
    monkeypatch.setattr(data, "_text_limit", lambda: 3 * 2 ** 20)
    (tmp_path / "big.txt").write_text("ab" * 2 * 2 ** 20)
    with pytest.raises(DataError, match="big.txt: more than 3.0 MiB of text, more than training can hold"):
        load_text(tmp_path / "big.txt")
    (tmp_path / "ok.txt").write_text("ab" * 2 ** 20)
    assert len(load_text(tmp_path / "ok.txt")) == 2 ** 21


def test_a_step_of_2_to_the_62_reads_the_same_chunk_as_its_remainder():
    ids = np.arange(101)
    x, y = get_batch(ids, 2 ** 62, 7, 3)
    r = (2 ** 62 * 7) % 101
    np.testing.assert_array_equal(x, get_batch(ids, 0, 7 + r, 3)[0][r:])


def test_an_undecodable_prime_is_one_line(tmp_path):
    with pytest.raises(DataError, match="is not in the vocabulary"):
        Vocab("abc").encode("a\udcff")


@pytest.mark.parametrize("args, says", [
    (["gradcheck", "--hidden", "1000", "--steps", "2"], "gradcheck --cell rnn --hidden 1000 --steps 2 would take about"),
    (["gradcheck", "--cell", "lstm", "--hidden", "150", "--steps", "200"], "would take about 3.5 hours"),
    (["demo", "--hidden", "1500"], "the demo's gradient check with --hidden 1500 would take about"),
])
def test_slow_gradient_checks_are_refused_with_the_reason(tmp_path, args, says):
    err = fails(2, *args, cwd=tmp_path, says=says)
    assert "finite differences run the" in err and sorted(tmp_path.iterdir()) == []


def test_gradcheck_refuses_a_huge_steps_before_building_its_sequence(tmp_path, monkeypatch):
    from tinygrad_rnn import cli
    monkeypatch.setattr(cli, "_hello_sequence", lambda steps: pytest.fail("built the sequence first"))
    monkeypatch.setattr(cli._memory, "available", lambda: 2 ** 33)
    assert cli.main(["gradcheck", "--steps", "200000000"]) == 1


def test_a_bogus_matplotlib_backend_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    from test_cli import ENV
    rc, out, err = run("lab", "copies", "-o", "c.png", cwd=tmp_path, env={**ENV, "MPLBACKEND": "bogus"})
    assert rc == 1 and ERROR.match(err) and "matplotlib cannot start" in err and "max |" in out, err


def test_ctrl_c_before_main_catches_it_is_one_line(monkeypatch, capsys):
    from tinygrad_rnn import cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)  # Ctrl-C while the parser is being built
    with pytest.raises(SystemExit) as info:
        cli.console()
    assert info.value.code == 130 and capsys.readouterr().err == "\ntinygrad-rnn: interrupted\n"


_CTRL_C_IN_NUMPYS_IMPORT = """
import os, signal, sys
class CtrlC:  # presses Ctrl-C as NumPy starts to load: the slow part of the command's start
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv = ["/usr/bin/tinygrad-rnn", "gradcheck"]
from tinygrad_rnn.cli import console
console()
"""


def test_ctrl_c_while_the_command_loads_numpy_is_one_line(tmp_path):
    import subprocess
    import sys
    from test_cli import ENV
    done = subprocess.run([sys.executable, "-c", _CTRL_C_IN_NUMPYS_IMPORT], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and done.stderr == "\ntinygrad-rnn: interrupted\n", done.stderr


def test_importing_the_library_leaves_ctrl_c_alone():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", "import signal, tinygrad_rnn; "
                           "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
