"""Map ids to the rows where a backend stored them (PNG table rows, HDF5 rows)."""
from __future__ import annotations

from functools import cached_property

import numpy as np


class RowIndex:
    """Ids in row order, searchable in bulk; rows are positions in that order."""

    def __init__(self, ids_by_row: np.ndarray, dense: bool | None = None):
        self.ids_by_row = np.asarray(ids_by_row, dtype=np.int64)
        count = len(self.ids_by_row)
        self.first = int(self.ids_by_row[0]) if count else 0
        # The common layout: ids first, first+1, ... in row order, so row = id - first.
        if dense is None:
            dense = bool(count and np.all(np.diff(self.ids_by_row) == 1))
        self.dense = dense

    def __len__(self) -> int:
        return len(self.ids_by_row)

    @cached_property
    def _order(self) -> np.ndarray:
        return np.argsort(self.ids_by_row, kind="stable")

    @cached_property
    def sorted_ids(self) -> np.ndarray:
        return self.ids_by_row if self.dense else self.ids_by_row[self._order]

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``ids`` and a mask of which ids were found (rows of missing ids are 0)."""
        if self.dense:
            rows = ids - self.first
            found = (rows >= 0) & (rows < len(self))
            return np.where(found, rows, 0), found
        if not len(self):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        positions = np.minimum(np.searchsorted(self.sorted_ids, ids), len(self) - 1)
        found = self.sorted_ids[positions] == ids
        return np.where(found, self._order[positions], 0), found

    @property
    def max_id(self) -> int | None:
        """The largest id, or None when there is none."""
        return int(self.sorted_ids[-1]) if len(self) else None

    def row(self, key: int) -> int | None:
        """The row of one id, or None: on Python ints, without the arrays of ``rows``."""
        key = int(key)
        if self.dense:
            row = key - self.first
            return row if 0 <= row < len(self.ids_by_row) else None
        position = int(np.searchsorted(self.sorted_ids, key))
        if position == len(self.ids_by_row) or self.sorted_ids[position] != key:
            return None
        return int(self._order[position])

    def appended(self, new_ids: np.ndarray) -> "RowIndex":
        count = len(self)
        stays_dense = (self.dense or count == 0) and bool(
            len(new_ids) and new_ids[0] == (self.first + count if count else new_ids[0])
            and np.all(np.diff(new_ids) == 1))
        return RowIndex(np.concatenate([self.ids_by_row, new_ids]), dense=stays_dense)
