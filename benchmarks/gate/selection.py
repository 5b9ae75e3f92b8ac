"""Which backends a gate run measures on each side: ours always, references only when changed.

The references (classic-*, raw) exist to put our numbers in context; a change that
leaves their code alone cannot make them slower, so timing them in every pair only
spends the CI budget. Each side measures its own formats (a format the head adds is
reported as new), plus every reference whose module differs between the revisions.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.gate.errors import RunError

# Run inside a revision's worktree with its interpreter: what its registry holds.
_LIST_REGISTRY = """
import json
from storage.registry import BACKENDS
print(json.dumps([[name, bool(entry.reference), entry.target.split(":")[0]]
                  for name, entry in BACKENDS.items()]))
"""


@dataclass(frozen=True)
class Registered:
    name: str
    reference: bool
    module_path: str  # e.g. storage/references/raw.py, as git names it


def registered(python: str, worktree: Path) -> list[Registered] | None:
    """The backends a revision registers, read by its own code; None if it has no registry."""
    if not (worktree / "storage" / "registry.py").exists():
        return None
    done = subprocess.run([python, "-c", _LIST_REGISTRY], cwd=worktree, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    if done.returncode != 0:
        raise RunError(f"cannot list the backends of the revision in {worktree}: "
                       f"{done.stderr.strip()[-500:]}")
    entries = []
    for name, reference, module in json.loads(done.stdout):
        path = module.replace(".", "/")
        is_package = (worktree / path).is_dir()
        entries.append(Registered(name, reference, f"{path}/__init__.py" if is_package
                                  else f"{path}.py"))
    return entries


def backends_for(entries: list[Registered], changed: set[str],
                 requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """Ours, plus references whose module changed; or exactly ``requested`` where it exists."""
    names = [entry.name for entry in entries]
    if requested:
        return tuple(name for name in requested if name in names)
    return tuple(entry.name for entry in entries
                 if not entry.reference or entry.module_path in changed)


def changed_files(git, repo: Path, base: str, head: str) -> set[str]:
    """Paths that differ between two revisions."""
    return set(git(repo, "diff", "--name-only", base, head).splitlines())
