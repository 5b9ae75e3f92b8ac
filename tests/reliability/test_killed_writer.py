"""A writer killed with SIGKILL loses nothing it acknowledged, and the store writes on.

Three kinds of kill: at random moments (seeded), at named points inside the
write path, and (with strace) at the N-th write system call to the store's data
file. After each, every acknowledged image and label must read back
byte-identical, nothing else may appear but the write that was cut short, and
the store must take new writes.

The overwrites, crash points and system calls run again on every format's layout
of encoded images (``encoding=``, ``encoded_modes``), with fewer kills: one seed,
and the crash points and system calls its encoded layout declares (the ``facts``
of its ``encoded_variant``). Random moments stay with the array layouts; the
system-call kills reach an encoded layout's moments instead.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from storage.registry import our_backends
from tests.reliability.faults import (KILLED, WriterSession, data_file_and_calls,
                                      encoded_modes, encoding_options, facts_of, needs_strace,
                                      required_fact, tallied)
from tests.reliability.scenario import assert_accepts_writes, assert_holds, fill
from tests.strategies import share, spread


def check_after_kill(path, backend: str, session: WriterSession, before=None,
                     overwrite: bool = False, encoding: str | None = None) -> dict[int, int]:
    """What the store holds after ``session`` was killed; asserts it lost nothing."""
    facts = facts_of(backend, encoding)
    in_flight = session.in_flight()
    torn = set(in_flight) if overwrite and facts.torn_overwrites else set()
    held = assert_holds(path, session.committed(before), in_flight, torn)
    if session.begun and facts.atomic_batches is not None and not torn:
        keys, version = session.begun
        landed = [held.get(key) == version for key in keys]
        if facts.atomic_batches:
            assert len(set(landed)) == 1, f"a killed batch landed in part: {landed}"
        else:  # a prefix of the batch, never one with a gap
            assert landed == sorted(landed, reverse=True), "a killed batch left a gap"
    return held


# ---- random moments ----------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [11, 12, 13][:share(3, at_least=2)])
def test_killed_at_random_moments(backend_name, new_store_path, seed):
    """Two writers in turn, each killed a random time after a random acknowledgement."""
    path, rng, held = new_store_path(), np.random.default_rng(seed), {}
    for generation in range(2):
        session = WriterSession(path, backend_name, seed * 10 + generation, 1000)
        session.kill_after(int(rng.integers(1, 25)), float(rng.uniform(0, 0.005)))
        assert session.process.returncode == KILLED, session.stderr
        with tallied("SIGKILL at a random moment", backend_name):
            held = check_after_kill(path, backend_name, session, held)
    assert_accepts_writes(path, backend_name)


def kill_while_overwriting(path, backend: str, seed: int, encoding: str | None = None) -> None:
    """Overwrites cut short leave each image old, new, or (HDF5 only) reported as torn."""
    rng = np.random.default_rng(seed)
    fill(path, backend, range(300), encoding=encoding)
    session = WriterSession(path, backend, seed, 1000, "--overwrite", 0, 300,
                            *encoding_options(encoding))
    session.kill_after(int(rng.integers(1, 15)), float(rng.uniform(0, 0.005)))
    assert session.process.returncode == KILLED, session.stderr
    with tallied("SIGKILL while overwriting", backend, encoding):
        check_after_kill(path, backend, session, dict.fromkeys(range(300), 0),
                         overwrite=True, encoding=encoding)
        if facts_of(backend, encoding).torn_overwrites:  # rewriting torn images repairs them
            fill(path, backend, range(300), version=7, encoding=encoding)
            assert_holds(path, dict.fromkeys(range(300), 7))
        assert_accepts_writes(path, backend)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [21, 22])
def test_killed_while_overwriting(backend_name, new_store_path, seed):
    kill_while_overwriting(new_store_path(), backend_name, seed)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend, encoding", encoded_modes())
def test_encoded_killed_while_overwriting(new_store_path, backend, encoding):
    kill_while_overwriting(new_store_path(), backend, 23, encoding)


# ---- named points inside the write path --------------------------------------------------------
# (point, n): kill the n-th time the point is reached; see tests/reliability/writer.py.
# Every format has the common points; its own come from its facts.crash_points.
COMMON_POINTS = (("after-commit", 2), ("while-creating", 1))
NEW_STORE_POINTS = {"while-creating", "before-rename"}  # reached only when creating a store


# An encoded layout is tried at its own points only (facts.crash_points of its class).


def crash_points() -> list:
    arrays = [pytest.param(backend, None, point, nth, id=f"{backend}-{point}-{nth}")
              for backend in our_backends()
              for point, nth in COMMON_POINTS + facts_of(backend).crash_points]
    encoded = [pytest.param(backend, encoding, point, nth,
                            id=f"{backend}-{encoding}-{point}-{nth}")
               for backend, encoding in (mode.values for mode in encoded_modes())
               for point, nth in facts_of(backend, encoding).crash_points]
    return arrays + encoded


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend, encoding, point, nth", crash_points())
def test_killed_at_a_crash_point(new_store_path, backend, encoding, point, nth):
    path = new_store_path()
    before = {}
    if point not in NEW_STORE_POINTS:
        fill(path, backend, range(50), encoding=encoding)
        before = dict.fromkeys(range(50), 0)
    session = WriterSession(path, backend, 5, 12, "--crash", f"{point}:{nth}",
                            *encoding_options(encoding))
    assert session.finish() == KILLED, f"{point}:{nth} was never reached\n{session.stderr}"
    with tallied("SIGKILL at a named crash point", backend, encoding):
        check_after_kill(path, backend, session, before, encoding=encoding)
        assert_accepts_writes(path, backend)


# ---- every N-th write system call --------------------------------------------------------------
# Which calls to kill at: about as many as the writer makes (facts.syscall_kills), all of
# them under the thorough profile, an even spread under the test command's quick one.


def kill_at_write_system_calls(tmp_path, backend: str, encoding: str | None = None) -> None:
    """strace delivers SIGKILL as the N-th write to the data file begins."""
    data_file, calls = data_file_and_calls(backend, encoding)
    kill_points = spread(required_fact(backend, "syscall_kills", encoding))
    pristine = tmp_path / "pristine"
    fill(pristine, backend, range(50), encoding=encoding)

    def kill_at(n: int):
        path = tmp_path / f"kill-{n}"
        shutil.copytree(pristine, path)
        prefix = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", str(path / data_file),
                  "-e", f"trace={calls}", "-e", f"inject={calls}:signal=KILL:when={n}"]
        session = WriterSession(path, backend, 6, 8, *encoding_options(encoding),
                                prefix=prefix)
        return path, session, session.finish()

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(kill_at, kill_points))
    killed = 0
    for path, session, returncode in runs:
        if returncode != KILLED:  # the writer made fewer calls than n
            assert returncode == 0 and session.closed, session.stderr
            continue
        killed += 1
        with tallied("SIGKILL at a write system call", backend, encoding):
            check_after_kill(path, backend, session, dict.fromkeys(range(50), 0),
                             encoding=encoding)
            assert_accepts_writes(path, backend)
    assert killed >= 2, "strace never killed the writer: is the data file name right?"


@needs_strace
@pytest.mark.timeout(180)
def test_killed_at_write_system_calls(backend_name, tmp_path):
    kill_at_write_system_calls(tmp_path, backend_name)


@needs_strace
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend, encoding", encoded_modes())
def test_encoded_killed_at_write_system_calls(tmp_path, backend, encoding):
    kill_at_write_system_calls(tmp_path, backend, encoding)
