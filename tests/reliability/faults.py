"""Pieces the fault tests share: writer sessions, strace, and the fault x backend tally."""
from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import tempfile
import threading
from collections import defaultdict

import pytest

from storage.core.facts import FormatFacts, missing_fact
from storage.registry import backend_class, our_backends
from tests.reliability.scenario import REPO, child_command, child_env

KILLED = -9  # what Popen.returncode says of a child killed with SIGKILL

# (fault, backend) -> [points tried, points survived], summed from test reports so that
# the table is whole when tests run in worker processes (pytest -n).
TALLY: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
# The running test's faults, [fault, backend, survived], until its report carries them.
PENDING: list[list] = []


def facts_of(backend: str, encoding: str | None = None) -> FormatFacts:
    """What the format declares it guarantees (see storage.core.facts), for its stores of
    arrays or, with ``encoding``, its layout of encoded images (``encoded_variant``)."""
    return backend_class(backend).class_for(encoding).facts


def required_fact(backend: str, fact: str, encoding: str | None = None):
    """The declared fact, or a skip naming it when the format leaves it undeclared."""
    value = getattr(facts_of(backend, encoding), fact)
    if value is None:
        pytest.skip(missing_fact(backend, fact))
    return value


def data_file_and_calls(backend: str, encoding: str | None = None) -> tuple[str, str]:
    """The file strace watches for ``backend``, and the system calls that write it."""
    return (required_fact(backend, "data_file", encoding),
            required_fact(backend, "write_calls", encoding))


def encoded_modes() -> list:
    """(backend, encoding) for each recommended format that holds encoded images, as
    params named ``backend-encoding``; the formats take their encodings in turn, so
    that both signatures are written across the formats."""
    modes, turn = [], 0
    for name in our_backends():
        encodings = backend_class(name).capabilities.encodings
        if encodings:
            encoding = encodings[turn % len(encodings)]
            modes.append(pytest.param(name, encoding, id=f"{name}-{encoding}"))
            turn += 1
    return modes


def encoding_options(encoding: str | None) -> tuple[str, ...]:
    """The writer's and filler's options for a store of ``encoding`` (None: arrays)."""
    return ("--encoding", encoding) if encoding else ()


@functools.cache
def strace_works() -> bool:
    """strace is installed and may trace here (containers often forbid ptrace)."""
    if shutil.which("strace") is None:
        return False
    try:
        return subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_strace = pytest.mark.skipif(
    not strace_works(), reason="syscall-level faults need strace, with ptrace allowed")


@contextlib.contextmanager
def tallied(fault: str, backend: str, encoding: str | None = None):
    """Count one injected fault for the closing table; survived if the block passes.
    Faults in stores of encoded images have rows of their own."""
    entry = [f"{fault} (encoded)" if encoding else fault, backend, False]
    PENDING.append(entry)
    yield
    entry[2] = True


class WriterSession:
    """A ``writer`` child: what it acknowledged, and what it had begun when it died."""

    def __init__(self, path, backend: str, seed: int, ops: int, *options, prefix=(),
                 timeout: float = 60):
        self._errors = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [*prefix, *child_command("writer", path, backend, seed, ops, *options)],
            cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=self._errors, text=True)
        self._watchdog = threading.Timer(timeout, self.process.kill)
        self._watchdog.start()
        self.acked: list[tuple[list[int], int]] = []  # (ids, version) per acknowledged op
        self.begun: tuple[list[int], int] | None = None  # begun, not acknowledged
        self.opened = self.closed = False

    def _take(self, line: str) -> str:
        if not line.endswith("\n"):
            return "cut"  # killed while printing it
        word, *rest = line.split()
        if word == "begin":
            self.begun = ([int(key) for key in rest[2:]], int(rest[1]))
        elif word == "ack":
            self.acked.append(self.begun)
            self.begun = None
        self.opened |= word == "open"
        self.closed |= word == "closed"
        return word

    def kill_after(self, acks: int, delay: float) -> None:
        """SIGKILL ``delay`` seconds after the acks-th acknowledgement (or at the end)."""
        seen = 0
        while seen < acks:
            line = self.process.stdout.readline()
            if not line:
                break
            seen += self._take(line) == "ack"
        if delay:
            threading.Event().wait(delay)
        self.process.kill()
        self.finish()

    def finish(self) -> int:
        """Wait for the child to end (killed or not) and take the rest of its output."""
        for line in self.process.stdout:  # to the end: the watchdog kills a hung child
            self._take(line)
        self.process.wait()
        self._watchdog.cancel()
        self._errors.seek(0)
        self.stderr = self._errors.read()
        self._errors.close()
        return self.process.returncode

    def committed(self, start: dict[int, int] | None = None) -> dict[int, int]:
        """id -> version after the acknowledged operations, over ``start``."""
        state = dict(start or {})
        for keys, version in self.acked:
            state.update(dict.fromkeys(keys, version))
        return state

    def in_flight(self) -> dict[int, set[int]]:
        if self.begun is None:
            return {}
        keys, version = self.begun
        return {key: {version} for key in keys}
