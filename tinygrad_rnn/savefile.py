"""Checkpoints as plain `.npz` data, never code: written atomically (temp file + os.replace; a temp
file a killed save left behind is removed by the next save of the same checkpoint), through a symlink
to its target, one training run at a time (writer_lock); read with `np.load(..., allow_pickle=False)`
after the archive's sizes are checked. Config and RNG state travel as JSON strings in
0-d unicode arrays, so nothing ever needs pickle. NumPy only: no engine import.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import zipfile
import zlib
from os import PathLike
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

import numpy as np

from . import _memory

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; saves are still atomic
    fcntl = None  # type: ignore[assignment]

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "check_writable", "writer_lock",
           "pack_json", "unpack_json", "pack_rng", "unpack_rng"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


class CheckpointError(Exception):
    """A checkpoint that cannot be written or read; the message is one line naming the path."""


def save_checkpoint(path: Union[str, PathLike], arrays: Mapping[str, Any]) -> None:
    """Write `arrays` (name -> array-like) to the `.npz` file `path`, exactly that name.

    The data goes to a temp file in the same directory, then os.replace: readers see the old
    file or the new one, and a failure (full disk, Ctrl-C) leaves the old one untouched.
    """
    path = _target(Path(path))
    data = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise CheckpointError(f"cannot save {path}: {name!r} is an object array, which "
                                  f"would need pickle")
        data[name] = value
    directory = path.parent
    if not directory.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: "
                              f"directory {directory} does not exist")
    _remove_stale_temps(path)
    # Same directory so os.replace is a rename within one file system, hence atomic.
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb") as f:
            if fcntl is not None:  # held while writing: another save's stale-file sweep leaves a live temp alone
                fcntl.flock(f, fcntl.LOCK_EX)
            np.savez(f, **data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
        raise


def _target(path: Path) -> Path:
    """The file a save replaces: a symlink's target (as editors write through one), else path itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"


def check_writable(path: Union[str, PathLike]) -> None:
    """CheckpointError, before any work, when a save to `path` would fail for its name or directory:
    the temp file the save writes first (its name 14 characters longer) is created and removed."""
    path = _target(Path(path))
    tmp = _temp_path(path)
    try:
        with open(tmp, "xb"):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e} (a save first writes "
                              f"{tmp.name}, {len(tmp.name)} characters)") from None
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def writer_lock(path: Union[str, PathLike]) -> Iterator[None]:
    """Hold `path` for one writer: a second training run on the same checkpoint gets a one-line
    CheckpointError at once instead of the two overwriting each other. An advisory lock (flock) on
    `.NAME.lock` beside it, which the kernel releases when the process dies (kill -9 too: the empty file it
    leaves is reused by the next run). A file system without locks (some NFS) writes unguarded, as before."""
    if fcntl is None:
        yield
        return
    path = _target(Path(path))
    lock = path.parent / f".{path.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # no locks here (some NFS)
                yield
                return
            raise CheckpointError(f"{path} is being written by another training run; wait for it to finish, "
                                  f"or choose another checkpoint") from None
        try:  # the holder before us may have removed the file we opened: lock the one on disk
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _remove_stale_temps(path: Path) -> None:
    """Delete the partial files an earlier save of this same checkpoint left when it was killed
    (kill -9, power loss) before its rename: `.NAME.<8 hex digits>.tmp` next to it, unless a save
    is still writing it (it holds a lock on it)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if pattern.fullmatch(stale.name):
            try:
                with open(stale, "rb") as f:
                    if fcntl is not None:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: a live save holds it
                    stale.unlink()
            except OSError:  # gone already, live, or not ours to delete: the save itself does not need it
                pass


def load_checkpoint(path: Union[str, PathLike]) -> dict[str, np.ndarray]:
    """All arrays of the `.npz` file `path`, read into memory, as a dict name -> ndarray."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"cannot load checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"cannot load checkpoint {path}: is a directory")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if not magic:
            raise CheckpointError(f"cannot load checkpoint {path}: file is empty")
        # np.load would take any other file for a pickle; say what it really is instead.
        if magic not in _ZIP_MAGIC:
            raise CheckpointError(f"cannot load checkpoint {path}: not an .npz archive")
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise CheckpointError(f"cannot load checkpoint {path}: it holds pickled objects, "
                                  f"refused (a checkpoint is data, never code)") from None
        raise CheckpointError(f"cannot load checkpoint {path}: "
                              f"corrupt ({_first_line(e)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"cannot load checkpoint {path}: corrupt or truncated "
                              f"({_first_line(e)})") from None


def _check_sizes(path: Path) -> None:
    """Refuse, before reading any member, an archive that would unpack to more than memory holds, or a
    member compressed far more than a checkpoint's (np.savez stores arrays uncompressed): a zip bomb."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = sum(m.file_size for m in members)
    try:
        _memory.check(f"{path}", total, " when read")
    except MemoryError as e:
        raise CheckpointError(f"cannot load checkpoint {path}: corrupt ({e})") from None
    for m in members:
        if m.file_size > 100 * m.compress_size + 2 ** 20:
            raise CheckpointError(f"cannot load checkpoint {path}: corrupt (member {m.filename!r} would unpack "
                                  f"{m.compress_size:,} bytes to {m.file_size:,}; a checkpoint is stored "
                                  "uncompressed)")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def pack_json(obj: Any) -> np.ndarray:
    """A JSON-serialisable object (config, step, ...) as a 0-d unicode array; NumPy arrays and
    scalars inside become lists and numbers."""
    return np.array(json.dumps(obj, sort_keys=True, default=_plain))


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def unpack_json(array: np.ndarray) -> Any:
    """Inverse of pack_json."""
    try:
        return json.loads(str(np.asarray(array)[()]))
    except (ValueError, TypeError, RecursionError) as e:
        raise CheckpointError(f"stored JSON is unreadable ({_first_line(e)})") from None


def pack_rng(rng: np.random.Generator) -> np.ndarray:
    """The generator's bit_generator.state as JSON in a 0-d unicode array."""
    return pack_json(rng.bit_generator.state)


def unpack_rng(array: np.ndarray) -> np.random.Generator:
    """A new Generator in exactly the state pack_rng saw: it draws the same numbers next."""
    state = unpack_json(array)
    name = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generator = getattr(np.random, str(name), None)
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise CheckpointError(f"stored RNG state names no NumPy bit generator: {name!r}")
    bg = bit_generator()
    try:
        bg.state = state
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as e:
        raise CheckpointError(f"stored {name} RNG state is invalid ({_first_line(e)})") from None
    return np.random.Generator(bg)
