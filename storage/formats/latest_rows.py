"""Find the newest row of each id in an append-only layout, where later rows supersede earlier ones.

Arrow, Parquet and Zarr stores never rewrite a row: an overwrite appends the new
image, and the newest row of an id is the one that counts. ``LatestRows`` maps
ids to those rows; without repeated ids (the common case) it is a plain
``RowIndex`` and costs nothing more.
"""
from __future__ import annotations

import numpy as np

from storage.core.row_index import RowIndex


class LatestRows:
    """Ids in row order (repeats allowed); maps each id to the last row holding it."""

    def __init__(self, ids_by_row: np.ndarray):
        ids_by_row = np.asarray(ids_by_row, dtype=np.int64)
        self.ids_by_row = ids_by_row
        index = RowIndex(ids_by_row)
        self._live = None  # rows that count, in row order; None: every row counts
        if not index.dense and len(np.unique(ids_by_row)) != len(ids_by_row):
            reversed_first = np.unique(ids_by_row[::-1], return_index=True)[1]
            self._live = np.sort(len(ids_by_row) - 1 - reversed_first)
            index = RowIndex(ids_by_row[self._live])
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def rows_held(self) -> int:
        """Rows in the layout, superseded ones included: where the next row goes."""
        return len(self.ids_by_row)

    @property
    def sorted_ids(self) -> np.ndarray:
        return self._index.sorted_ids

    @property
    def max_id(self) -> int | None:
        return self._index.max_id

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding ``ids`` now, and which ids were found (rows of missing ids are 0)."""
        rows, found = self._index.rows(ids)
        return (rows if self._live is None else self._live[rows]), found

    def row(self, key: int) -> int | None:
        row = self._index.row(key)
        return row if row is None or self._live is None else int(self._live[row])

    def appended(self, new_ids: np.ndarray) -> "LatestRows":
        """The index after appending rows holding ``new_ids``."""
        if self._live is None and self._index.dense:
            grown = self._index.appended(new_ids)
            if grown.dense:
                result = LatestRows.__new__(LatestRows)
                result.ids_by_row, result._live, result._index = grown.ids_by_row, None, grown
                return result
        return LatestRows(np.concatenate([self.ids_by_row, new_ids]))
