"""Fixtures shared by the tests: every property runs over the registry of our backends."""
from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from storage.registry import our_backends
from tests.memory_backend import register

register()  # the toy format runs through every shared test

_store_numbers = itertools.count()


@pytest.fixture(params=our_backends())
def backend_name(request) -> str:
    """Each recommended backend in the registry (the classic references excluded)."""
    return request.param


@pytest.fixture
def new_store_path(tmp_path_factory):
    """Call for a fresh, not yet existing store path; safe inside hypothesis examples."""
    def make():
        return tmp_path_factory.mktemp("store") / f"store-{next(_store_numbers)}"
    return make
