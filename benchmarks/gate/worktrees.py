"""Both revisions checked out side by side in temporary git worktrees, removed on any exit."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.gate.errors import RunError


def git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise RunError("git is not installed; the gate checks revisions out with git") from None
    if done.returncode != 0:
        raise RunError(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def repository_root(start: Path = Path(".")) -> Path:
    try:
        return Path(git(start, "rev-parse", "--show-toplevel"))
    except RunError:
        raise RunError(f"'{start.resolve()}' is not inside a git repository; run the gate "
                       "from the project's clone") from None


def resolve(repo: Path, ref: str) -> str:
    """The commit a ref names, or a message that says how to get it."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RunError:
        shallow = git(repo, "rev-parse", "--is-shallow-repository") == "true"
        hint = (" this clone is shallow: fetch the history first (`git fetch --unshallow`, or "
                "`fetch-depth: 0` in actions/checkout)" if shallow else
                " check the name, or fetch it first (`git fetch origin main`)")
        raise RunError(f"unknown revision {ref!r};{hint}") from None


def file_at(repo: Path, revision: str, path: str) -> str | None:
    """A file's text at a revision, or None when the revision has no such file."""
    try:
        return git(repo, "show", f"{revision}:{path}")
    except RunError:
        return None


@contextmanager
def checked_out(repo: Path, revisions: dict[str, str], root: Path) -> Iterator[dict[str, Path]]:
    """Detached worktrees ``root/<name>`` of each revision; removed again on any exit."""
    added: list[Path] = []
    try:
        for name, revision in revisions.items():
            path = root / name
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), revision)
            added.append(path)
        yield dict(zip(revisions, added))
    finally:
        for path in added:
            try:
                git(repo, "worktree", "remove", "--force", str(path))
            except RunError:
                pass  # pruned below once its directory is gone
        try:
            git(repo, "worktree", "prune")
        except RunError:
            pass
