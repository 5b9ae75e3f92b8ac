"""One id's row (the single-image read path) agrees with the rows of a batch of ids."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from storage.core.row_index import RowIndex
from storage.formats.latest_rows import LatestRows

IDS = st.integers(0, 2**63 - 1)
SMALL_IDS = st.integers(0, 50)


@st.composite
def indexes(draw) -> RowIndex:
    """Dense runs (first, first+1, ...), shuffled ids, and runs grown by appending."""
    shape = draw(st.sampled_from(["dense", "any", "appended"]))
    if shape == "dense":
        first, count = draw(st.one_of(SMALL_IDS, IDS)), draw(st.integers(0, 30))
        count = min(count, 2**63 - first)
        return RowIndex(np.arange(first, first + count, dtype=np.int64))
    ids = draw(st.lists(st.one_of(SMALL_IDS, IDS), unique=True, max_size=30))
    if shape == "any":
        return RowIndex(np.array(ids, np.int64))
    cut = draw(st.integers(0, len(ids)))
    return RowIndex(np.array(ids[:cut], np.int64)).appended(np.array(ids[cut:], np.int64))


def assert_row_agrees_with_rows(index, asked) -> None:
    rows, found = index.rows(np.array(asked, np.int64))
    for key, row, is_found in zip(asked, rows.tolist(), found.tolist()):
        assert index.row(key) == (row if is_found else None), key
        assert index.row(np.int64(key)) == index.row(key)


@given(indexes(), st.lists(st.one_of(SMALL_IDS, IDS), max_size=10))
def test_one_ids_row_is_the_row_a_batch_finds(index, asked):
    assert_row_agrees_with_rows(index, asked + [int(key) for key in index.ids_by_row[:3]])
    for row, key in enumerate(index.ids_by_row.tolist()):
        assert index.row(key) == row


@given(st.lists(st.integers(0, 12), max_size=30), st.lists(st.integers(0, 14), max_size=10))
def test_one_ids_newest_row_is_the_row_a_batch_finds(ids_by_row, asked):
    """Append-only layouts (Arrow, Parquet, Zarr): the last row of a repeated id counts."""
    latest = LatestRows(np.array(ids_by_row, np.int64))
    assert_row_agrees_with_rows(latest, asked + ids_by_row[:3])
    for key in set(ids_by_row):
        assert latest.row(key) == len(ids_by_row) - 1 - ids_by_row[::-1].index(key)
