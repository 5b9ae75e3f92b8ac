"""Power cuts while every registered format writes, and what a new process finds after.

One writer run per test on one mount is recorded; crash states are cut from its
journal at every kind of point (sync boundaries, just before syncs, the window
while a new store is made, random points between) and checked in parallel, each
in new processes (``verifier``). What a format may do beyond losing unsynced data
is its ``facts.power_loss`` (``storage.core.facts.PowerLoss``). Set
``POWERLOSS_CUTS`` for more crash states per format and test (``POWERLOSS_CUTS=500``).
Every format's layout of encoded images is cut too, durable, in a run of half as many
calls, at a quarter as many states.
"""
from __future__ import annotations

import os
import random

import pytest

from storage.core.facts import PowerLoss, missing_fact
from storage.registry import backend_class, our_backends
from tests.powerloss import harness, journal
from tests.powerloss.harness import TALLY
from tests.powerloss.sequence import make_plan
from tests.reliability.faults import encoded_modes

pytestmark = pytest.mark.timeout(600)
CUTS = int(os.environ.get("POWERLOSS_CUTS", "20"))  # durable crash states per format
CALLS = 12  # write_many and write_one calls per writer run
SEED = 20261203


@pytest.fixture(params=our_backends())
def backend(request) -> str:
    if backend_class(request.param).facts.power_loss is None:
        pytest.skip(missing_fact(request.param, "power_loss"))
    return request.param


def sampled(cuts: list, limit: int, seed: int) -> list:
    """All of ``cuts``, or ``limit`` of them chosen at random."""
    if len(cuts) <= limit:
        return cuts
    return sorted(random.Random(seed).sample(cuts, limit))


def durable_cuts(records, count: int) -> list[tuple[int, str]]:
    """``count`` (cut, mode) pairs: a fifth while a new store is made (between
    open_store(mode="w") returning and the first call returning, every mode), a
    quarter just before a sync (the most unsynced: a torn or partial write-back), the
    rest at sync boundaries and random points between."""
    marks = [i for i, record in enumerate(records) if record.op == "mark"]
    opened, first_call = marks[0] + 1, marks[1] + 1
    new_store = sampled([(cut, mode) for cut in range(opened, first_call + 1)
                         for mode in journal.MODES], count // 5, SEED)
    syncs = [i for i, record in enumerate(records) if record.op in journal.SYNCS]
    before_syncs = sampled([(cut, mode) for cut in syncs for mode in ("prefix", "torn")],
                           count // 4, SEED + 1)
    rest = count - len(new_store) - len(before_syncs)
    return new_store + before_syncs + harness.choose_cuts(records, rest, SEED)


def assert_every_state_kept_its_promise(test, backend, reports, durable, encoding=None):
    facts: PowerLoss = backend_class(backend).class_for(encoding).facts.power_loss
    broken = [(report, report.problems(facts, durable)) for report in reports]
    broken = [(report, problems) for report, problems in broken if problems]
    tally = TALLY[test, backend]
    tally[0] += len(reports)
    tally[1] += len(reports) - len(broken)
    tally[2] += sum(report.documented() for report in reports if not report.problems(
        facts, durable))
    assert not broken, f"{len(broken)} of {len(reports)} crash states broke a promise:\n" + \
        "\n".join(f"{report.describe()}\n  -> {problems}" for report, problems in broken[:5])


def test_durable_writes_survive_power_cuts(backend, tmp_path):
    """(a) opens, or a declared typed error before the store was created; (b) every image
    of every call before the last returned sync, byte for byte; (c) no wrong pixels.

    The cuts while a new store is made caught an unsynced store directory entry, a PNG
    table renamed into place before its header was synced, PNG's labels.len named
    before its bytes were synced and LMDB's first pages synced only with a commit; the
    cuts just before syncs caught LMDB's meta page reaching the disk before the pages
    it commits and HDF5's /ids growing on the disk before the rows it commits. Then the
    power goes off for real, mid-write, in a second run of the same calls."""
    plan = make_plan(SEED, CALLS)
    recording = harness.record(tmp_path, backend, True, SEED, plan)
    assert recording.returncode == 0, recording.stderr
    cuts = durable_cuts(recording.records, CUTS)
    reports = harness.check_cuts(tmp_path, recording, backend, True, SEED, plan, cuts)
    assert len(reports) == CUTS
    assert any(report.required for report in reports)  # the cuts reach written data
    assert_every_state_kept_its_promise("durable=True", backend, reports, durable=True)

    # The power goes off for real half way (every operation after it fails with EIO):
    # the same plan's later calls fail, and what was synced stays.
    freeze_after = journal.change_count(recording.records) // 2
    frozen = harness.record(tmp_path / "frozen", backend, True, SEED, plan,
                            freeze_after=freeze_after)
    assert frozen.returncode == 3, frozen.stderr  # the writer met the dead file system
    assert journal.change_count(frozen.records) == freeze_after
    assert harness.returned_calls(frozen.records, len(frozen.records)) < len(plan)
    cuts = [(len(frozen.records), mode) for mode in journal.MODES]
    reports = harness.check_cuts(tmp_path / "frozen", frozen, backend, True, SEED, plan, cuts)
    assert_every_state_kept_its_promise("durable=True, real freeze", backend, reports,
                                        durable=True)


@pytest.mark.parametrize("backend, encoding", encoded_modes())
def test_durable_encoded_images_survive_power_cuts(backend, encoding, tmp_path):
    """As for arrays, (a) to (c), in the format's layout of encoded images."""
    power_loss = backend_class(backend).class_for(encoding).facts.power_loss
    if power_loss is None:
        pytest.skip(missing_fact(backend, "power_loss"))
    plan = make_plan(SEED + 4, CALLS // 2)
    recording = harness.record(tmp_path, backend, True, SEED + 4, plan, encoding=encoding)
    assert recording.returncode == 0, recording.stderr
    cuts = durable_cuts(recording.records, max(5, CUTS // 4))
    reports = harness.check_cuts(tmp_path, recording, backend, True, SEED + 4, plan, cuts)
    assert any(report.required for report in reports)  # the cuts reach written data
    assert_every_state_kept_its_promise(f"durable=True, {encoding}", backend, reports,
                                        durable=True, encoding=encoding)


def test_not_durable_writes_never_read_wrong(backend, tmp_path):
    """durable=False promises nothing kept, but a store that opens never returns wrong
    pixels, and one that does not open says so with a declared typed error."""
    plan = make_plan(SEED + 2, CALLS)
    recording = harness.record(tmp_path, backend, False, SEED + 2, plan)
    assert recording.returncode == 0, recording.stderr
    cuts = harness.choose_cuts(recording.records, max(6, CUTS // 3), SEED)
    reports = harness.check_cuts(tmp_path, recording, backend, False, SEED + 2, plan, cuts)
    assert_every_state_kept_its_promise("durable=False", backend, reports, durable=False)
    # What it loses: images whose calls had returned, in some crash state.
    assert any(report.result["r"].get("present", 0) < report.acknowledged
               for report in reports)
