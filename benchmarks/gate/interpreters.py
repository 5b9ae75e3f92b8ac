"""Which Python runs each side: this one when its requirements match, else a fresh venv."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.gate.errors import RunError

REQUIREMENTS = "requirements.txt"


def requirement_lines(text: str | None) -> list[str]:
    """The requirements that count: comments, blank lines and spacing do not."""
    lines = (line.split("#", 1)[0].strip() for line in (text or "").splitlines())
    return [line for line in lines if line]


def needs_own_environment(side: str | None, installed: str | None) -> bool:
    return requirement_lines(side) != requirement_lines(installed)


def python_for(side: str, worktree: Path, installed_requirements: str | None, scratch: Path,
               install: bool, made: dict[tuple[str, ...], str]) -> str:
    """This interpreter, or one with the side's own pinned requirements installed.

    ``installed_requirements``: the requirements.txt this interpreter was installed
    from; ``made`` maps requirement lists to venvs already built, so base and head
    share one when their requirements agree with each other but not with ours.
    """
    path = worktree / REQUIREMENTS
    text = path.read_text() if path.exists() else None
    if not needs_own_environment(text, installed_requirements):
        return sys.executable
    key = tuple(requirement_lines(text))
    if key in made:
        return made[key]
    if not install:
        raise RunError(f"{side}'s {REQUIREMENTS} differs from the one this Python was installed "
                       "from; run without --no-install to measure it in a virtual environment "
                       "of its own")
    venv = scratch / f"venv-{side}"
    print(f"gate: {side}'s {REQUIREMENTS} differs: installing it into {venv}", file=sys.stderr)
    _run([sys.executable, "-m", "venv", str(venv)], f"creating a venv for {side}")
    python = str(venv / "bin" / "python")
    if text is not None:
        _run([python, "-m", "pip", "install", "--quiet", "-r", str(path)],
             f"installing {side}'s {REQUIREMENTS}")
    made[key] = python
    return python


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RunError(f"{what} failed (exit {done.returncode}):\n{tail}")
