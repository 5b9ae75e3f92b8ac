"""Each result against its references measured in the same run: ``raw`` (or the operation's
own reference: ``raw-blob`` for encoded images, Pillow for decoding) and its classic twin."""
from __future__ import annotations

from benchmarks.operations import BY_NAME
from storage.registry import BACKENDS

RAW = "raw"


def counterpart(backend: str) -> str | None:
    """The classic reference a backend is measured against, as its registry entry declares."""
    entry = BACKENDS.get(backend)
    return entry.classic if entry else None


def add_ratios(results: list[dict]) -> None:
    """Set ``vs_raw`` and ``vs_classic`` (time / reference time) in each result's extra_info.

    ``results``: dicts with ``extra_info`` (holding operation, backend, N, side) and
    ``median``; a result is compared only with references at its own image side.
    """
    medians = {(_key(result), result["extra_info"].get("backend")): result["median"]
               for result in results}
    for result in results:
        info = result["extra_info"]
        backend = info.get("backend") or ""
        operation, count, side = _key(result)
        raw = BY_NAME[operation].reference if operation in BY_NAME else RAW
        references = (("vs_raw", raw, operation),
                      ("vs_classic", counterpart(backend),
                       BY_NAME[operation].classic if operation in BY_NAME else operation))
        for key, reference, reference_operation in references:
            reference_median = medians.get(((reference_operation, count, side), reference))
            if reference_median and backend != reference:
                info[key] = round(result["median"] / reference_median, 4)


def _key(result: dict) -> tuple:
    info = result["extra_info"]
    return info.get("operation"), info.get("N"), info.get("side")
