"""Named subsets of the suite that the gate measures, each sized for a CI time budget."""
from __future__ import annotations

from dataclasses import dataclass

from benchmarks.operations import tests_of

CONTROL_TEST = "test_control"  # runs in every invocation: see benchmarks/test_control.py


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    tests: tuple[str, ...]  # benchmark functions, selected with -k
    sizes: tuple[int, ...]
    backends: tuple[str, ...] | None  # None: every backend the revision registers
    pairs: int  # alternating base/head pairs to aim for
    max_minutes: float  # stop adding pairs (after at least 3) once the next would pass this
    sides: tuple[int, ...] = (32,)  # image sides, for revisions whose suite has that axis

    def pytest_args(self, backends: tuple[str, ...] | None = None) -> list[str]:
        """The selection, as arguments to ``pytest`` run in a revision's worktree."""
        args = ["benchmarks", "-k", " or ".join((*self.tests, CONTROL_TEST)),
                "--storage-n", ",".join(map(str, self.sizes))]
        backends = backends or self.backends
        return args + (["--storage-backends", ",".join(backends)] if backends else [])


PROFILES = {profile.name: profile for profile in (
    # A 2-core CI runner: about 2-3 minutes a pair with every backend, cut by the budget.
    Profile("gate", "store_many, read_many and read_single at N=1,000 and 10,000, every backend",
            tests_of("store_many", "read_many", "read_single"), (1_000, 10_000), None,
            pairs=6, max_minutes=13),
    Profile("read", "read_many and read_single at N=1,000 and 10,000, every backend",
            tests_of("read_many", "read_single"), (1_000, 10_000), None,
            pairs=12, max_minutes=10),
    # Keeps the command from rotting in .ci/run; far too small to judge anything.
    Profile("smoke", "read_many at N=100 on lmdb", tests_of("read_many"), (100,), ("lmdb",),
            pairs=3, max_minutes=3),
)}
