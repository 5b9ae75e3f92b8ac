"""Each result against its references measured in the same run: ``raw`` and its classic twin."""
from __future__ import annotations

CLASSIC_PREFIX = "classic-"
RAW = "raw"
# The classic code opens the store for every single read: our warm read_single is
# measured against that, and the open-per-call variant against the same.
_CLASSIC_OPERATION = {"read_single": "open_read_single"}


def counterpart(backend: str) -> str | None:
    """The classic reference a backend is measured against (``png`` -> ``classic-png``)."""
    if backend == RAW or backend.startswith(CLASSIC_PREFIX):
        return None
    return CLASSIC_PREFIX + backend


def add_ratios(results: list[dict]) -> None:
    """Set ``vs_raw`` and ``vs_classic`` (time / reference time) in each result's extra_info.

    ``results``: dicts with ``extra_info`` (holding operation, backend, N) and ``median``.
    """
    medians = {(_key(result), result["extra_info"].get("backend")): result["median"]
               for result in results}
    for result in results:
        info = result["extra_info"]
        backend = info.get("backend") or ""
        operation, count = _key(result)
        references = (("vs_raw", RAW, operation),
                      ("vs_classic", counterpart(backend),
                       _CLASSIC_OPERATION.get(operation, operation)))
        for key, reference, reference_operation in references:
            reference_median = medians.get(((reference_operation, count), reference))
            if reference_median and backend != reference:
                info[key] = round(result["median"] / reference_median, 4)


def _key(result: dict) -> tuple:
    info = result["extra_info"]
    return info.get("operation"), info.get("N")
