"""Checkpoints: atomic save, pickle-free load, one-line errors for every bad file, and the
JSON / RNG-state helpers of tinygrad_rnn.savefile."""
import errno
import pickle

import numpy as np
import pytest

from tinygrad_rnn.savefile import (CheckpointError, load_checkpoint, pack_json, pack_rng,
                                     save_checkpoint, unpack_json, unpack_rng)


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "cell.W_xh": rng.standard_normal((5, 3)),
        "out.b": rng.standard_normal(3).astype(np.float32),
        "vocab": np.array(list("abc"), dtype="<U1"),
        "step": np.array(42, dtype=np.int64),
        "config": pack_json({"cell": "lstm", "hidden": 5, "lr": 0.1}),
    }


def _error_message(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    path = tmp_path / "model.npz"
    arrays = _arrays()
    save_checkpoint(path, arrays)
    loaded = load_checkpoint(path)
    assert sorted(loaded) == sorted(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)
    assert unpack_json(loaded["config"]) == {"cell": "lstm", "hidden": 5, "lr": 0.1}
    assert int(loaded["step"]) == 42


def test_save_writes_exactly_the_given_name_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ckpt"
    save_checkpoint(path, {"a": np.zeros(2)})
    save_checkpoint(path, {"a": np.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    np.testing.assert_array_equal(load_checkpoint(path)["a"], [1.0, 1.0])


def test_failed_write_never_clobbers_the_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _arrays(0))
    good = path.read_bytes()

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, _arrays(1))
    assert "No space left on device" in _error_message(err, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_ctrl_c_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_checkpoint(path, _arrays(0))
    good = path.read_bytes()

    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _arrays(1))
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_save_into_a_missing_directory_is_one_line(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "model.npz"
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"a": np.zeros(1)})
    assert "does not exist" in _error_message(err, path)


def test_save_onto_a_directory_is_one_line(tmp_path):
    path = tmp_path / "adir"
    path.mkdir()
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"a": np.zeros(1)})
    assert "cannot write checkpoint" in _error_message(err, path)
    assert [p.name for p in tmp_path.iterdir()] == ["adir"]


def test_save_refuses_object_arrays(tmp_path):
    path = tmp_path / "model.npz"
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"bad": np.array([{"x": 1}], dtype=object)})
    assert "object array" in _error_message(err, path)
    assert not path.exists()


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, weights=np.zeros(3), payload=np.array([{"code": "x"}], dtype=object))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "pickled objects, refused" in _error_message(err, path)


def test_load_refuses_a_plain_pickle_file(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"W": np.zeros(2)}))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "not an .npz archive" in _error_message(err, path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 30])
def test_load_refuses_a_truncated_file(tmp_path, keep):
    good, cut = tmp_path / "good.npz", tmp_path / "cut.npz"
    save_checkpoint(good, _arrays())
    data = good.read_bytes()
    cut.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    assert "corrupt or truncated" in _error_message(err, cut)


def test_load_refuses_a_corrupted_array(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, {"W": np.zeros(1000)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside W's bytes: only the zip CRC can notice
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "corrupt" in _error_message(err, path)


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"", "file is empty"),
    (b"just some text\n", "not an .npz archive"),
])
def test_load_errors_are_one_line(tmp_path, content, problem):
    path = tmp_path / "model.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert problem in _error_message(err, path)


def test_load_refuses_a_bare_npy_file(tmp_path):
    path = tmp_path / "W.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "not an .npz archive" in _error_message(err, path)


def test_pack_json_takes_numpy_scalars_and_arrays():
    packed = pack_json({"hidden": np.int64(8), "lr": np.float64(0.5), "sizes": np.arange(3)})
    assert packed.shape == () and packed.dtype.kind == "U"
    assert unpack_json(packed) == {"hidden": 8, "lr": 0.5, "sizes": [0, 1, 2]}


def test_unpack_json_error():
    with pytest.raises(CheckpointError, match="stored JSON is unreadable"):
        unpack_json(np.array("{not json"))


@pytest.mark.parametrize("make", [np.random.default_rng, lambda seed: np.random.Generator(
    np.random.MT19937(seed))])
def test_rng_state_survives_a_checkpoint(tmp_path, make):
    rng = make(123)
    rng.standard_normal(17)  # mid-stream, not at the seed
    save_checkpoint(tmp_path / "r.npz", {"rng": pack_rng(rng)})
    restored = unpack_rng(load_checkpoint(tmp_path / "r.npz")["rng"])
    np.testing.assert_array_equal(restored.standard_normal(50), rng.standard_normal(50))
    np.testing.assert_array_equal(restored.integers(0, 100, 20), rng.integers(0, 100, 20))


def test_unpack_rng_refuses_a_foreign_state():
    with pytest.raises(CheckpointError, match="names no NumPy bit generator"):
        unpack_rng(pack_json({"bit_generator": "os.system"}))
    with pytest.raises(CheckpointError, match="PCG64 RNG state is invalid"):
        unpack_rng(pack_json({"bit_generator": "PCG64", "state": 3}))


def test_save_removes_the_partial_files_a_killed_save_of_the_same_checkpoint_left(tmp_path):
    stale = [".model.npz.0badf00d.tmp", ".model.npz.12345678.tmp"]     # kill -9 between write and rename
    kept = [".model.npz.notes.tmp", ".other.npz.0badf00d.tmp", "model.npz.0badf00d.tmp", ".model.npz.0BADF00D.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"PK\x03\x04 half an archive")
    save_checkpoint(tmp_path / "model.npz", _arrays(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["model.npz"])
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "model.npz")["cell.W_xh"], _arrays(0)["cell.W_xh"])
