"""examples/make_pictures.py makes every picture the README shows, byte for byte the committed ones: run twice,
or on another day, it leaves git clean (issue 23). Lessons write their own pictures into out/, which git ignores."""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def _make_pictures(out):
    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "examples" / "make_pictures.py")
    pictures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pictures)
    pictures.OUT = out
    return pictures


@needs_dot
def test_make_pictures_remakes_the_committed_graph_pictures_exactly(tmp_path):
    pictures = _make_pictures(tmp_path)
    for path in (pictures.rnn_book(), pictures.lstm_book(), pictures.rnn_book_grads(), pictures.hello_rnn(),
                 pictures.lstm_grads()):
        assert path.read_bytes() == (ROOT / "docs" / "img" / path.name).read_bytes(), path.name


@pytest.mark.slow
@needs_dot
def test_make_pictures_remakes_every_committed_picture_exactly(tmp_path):
    pytest.importorskip("matplotlib")
    pictures = _make_pictures(tmp_path)
    made = [pictures.rnn_book(), pictures.lstm_book(), pictures.rnn_book_grads(), pictures.hello_rnn(),
            pictures.lstm_grads(), *pictures.lab_plots(timed=False), pictures.quadratic_vs_cross_entropy()]
    for path in made:
        assert path.read_bytes() == (ROOT / "docs" / "img" / path.name).read_bytes(), path.name
    # every picture the README shows is made here, except the plots of measured times (--timed)
    shown = set(re.findall(r"\(docs/img/([^)]+)\)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert shown - {p.name for p in made} == {"lab_rtrl.png", "lab_memory.png"}


def test_lesson_output_folder_is_ignored_by_git():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "check-ignore", "examples/out/my_gru_unrolled.svg", "out/x.png"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == ["examples/out/my_gru_unrolled.svg", "out/x.png"], done.stderr
