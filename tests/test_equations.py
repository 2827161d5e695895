"""docs/EQUATIONS.md is a map a reader follows in one step: every link resolves, every function or
class it names is defined in the file it links, every test it names exists, and the README links it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "EQUATIONS.md"
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def links():
    return LINK.findall(DOC.read_text())


def test_every_link_resolves_and_every_named_function_and_test_exists():
    found = links()
    assert len(found) > 100
    for text, target in found:
        path = (DOC.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{text} -> {target}: no such file"
        name = re.fullmatch(r"`([A-Za-z_][\w.]*)`", text)
        if name is None or path.suffix != ".py":
            continue
        last = name[1].split(".")[-1]                   # NGram.probs -> probs, CharRNN.unroll -> unroll
        assert re.search(rf"^\s*(def|class) {re.escape(last)}\b", path.read_text(), re.M), \
            f"{name[1]} is not defined in {target}"
        if last.startswith("test_"):
            assert path.parent.name == "tests"


def test_every_equation_the_documents_number_has_a_row():
    text = DOC.read_text()
    covered = set()
    for a, b in re.findall(r"^\| (\d+\.\d+)(?:–(\d+\.\d+))? \|", text, re.M):  # "10.20–10.21" is a range
        chapter, lo = map(int, a.split("."))
        hi = int((b or a).split(".")[1])
        covered |= {(chapter, n) for n in range(lo, hi + 1)}
    wanted = {(10, n) for n in [*range(8, 12), *range(17, 29), *range(40, 45)]} | {(8, n) for n in range(1, 8)}
    assert wanted <= covered, sorted(wanted - covered)
    for claim in ("quotient rule", "perplexity", "eigenvalue", "truncated BPTT", "RTRL", "W_xhᵀ",
                  "quadratic error", "gate", "h(0)", "sigmoid output"):
        assert claim in text, claim


def test_every_lesson_is_linked_and_the_readme_links_the_map():
    text = DOC.read_text()
    for lesson in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        assert f"../examples/{lesson.name}" in text, lesson.name
    assert "(docs/EQUATIONS.md)" in (ROOT / "README.md").read_text()
    assert not re.search(r"\bseeds?\b", text, re.I)
