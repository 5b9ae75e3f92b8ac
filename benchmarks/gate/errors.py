"""The gate's errors: each one a message for the user and exit status 2, never a traceback."""
from __future__ import annotations


class GateError(Exception):
    """Something the user can fix: bad input, a bad revision, a side that cannot run."""


class InputError(GateError, ValueError):
    """A results file that is unreadable, not pytest-benchmark's, or has no per-round times."""


class RunError(GateError, RuntimeError):
    """A revision that cannot be checked out, installed or measured."""
