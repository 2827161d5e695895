"""The README's shell commands, as a new user types them: every `tinygrad-rnn` line parses with today's flags
(fast), and every command of the README's sh and console blocks runs, in order, in one shell in a fresh
clone of this repository (slow: `make readme`, about ten minutes, for it trains and runs `make test`)."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_rnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def readme_commands(text: str) -> list:
    """The shell commands of a README: each line of a ```sh block (comments dropped) and each `$ ` line of
    a ```console block, in order."""
    commands, block = [], None
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            block = fence.group(1) if block is None else None
            continue
        if block == "sh":
            command = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        elif block == "console" and line.startswith("$ "):
            command = line[2:].strip()
        else:
            continue
        if command:
            commands.append(command)
    return commands


def test_the_readme_commands_are_found():
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands[:2] == ["make demo", "make test"]
    assert ". .venv/bin/activate" in commands  # the command lives in .venv/bin: the README says how to reach it
    assert commands.index(". .venv/bin/activate") < min(i for i, c in enumerate(commands)
                                                      if c.startswith("tinygrad-rnn"))


def test_every_tinygrad_rnn_line_of_the_readme_parses():
    parser = build_parser()
    lines = [c for c in readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
             if c.startswith("tinygrad-rnn ")]
    assert len(lines) >= 5
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv == ["--help"]:
            continue
        try:
            parser.parse_args(argv)
        except (SystemExit, Exception) as e:  # the parser raises its one-line usage error
            pytest.fail(f"README command {line!r} does not parse: {e}")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_every_readme_command_runs_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    commands = readme_commands((clone / "README.md").read_text(encoding="utf-8"))
    # one shell, as one terminal: `. .venv/bin/activate` holds for the commands after it
    script = "set -e\n" + "".join(f"echo '>>> {c}' >&2\n{c}\n" for c in commands) + "echo '>>> all done' >&2\n"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.prefix))))  # not this suite's venv
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=3600)
    ran = re.findall(r"^>>> (.*)$", done.stderr, re.M)
    assert done.returncode == 0 and ran[-1] == "all done", (ran[-1:], done.stderr[-3000:])
    assert ran[:-1] == commands
    assert "Traceback" not in done.stdout + done.stderr and "command not found" not in done.stderr
