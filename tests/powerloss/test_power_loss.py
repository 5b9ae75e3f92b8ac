"""Power cuts while every registered format writes, and what a new process finds after.

One writer run per test on one mount is recorded; crash states are cut from its
journal at every kind of point (sync boundaries first, then random points
between) and checked in parallel, each in new processes (``verifier``). Set
``POWERLOSS_CUTS`` for more crash states per format (``POWERLOSS_CUTS=500``).
"""
from __future__ import annotations

import os
import random

import pytest

from storage.registry import our_backends
from tests.powerloss import harness, journal
from tests.powerloss.harness import TALLY
from tests.powerloss.facts import facts_for
from tests.powerloss.sequence import make_plan

pytestmark = pytest.mark.timeout(600)
CUTS = int(os.environ.get("POWERLOSS_CUTS", "24"))
CALLS = 12  # write_many and write_one calls per writer run
SEED = 20261203


@pytest.fixture(params=our_backends())
def backend(request) -> str:
    return request.param


def sampled(cuts: list, limit: int = CUTS) -> list:
    """All of ``cuts``, or ``limit`` of them chosen at random (all with POWERLOSS_CUTS=500)."""
    if len(cuts) <= limit:
        return cuts
    return sorted(random.Random(SEED).sample(cuts, limit))


def assert_every_state_kept_its_promise(test, backend, reports, durable):
    facts = facts_for(backend)
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
    of every call before the last returned sync, byte for byte; (c) no wrong pixels."""
    plan = make_plan(SEED, CALLS)
    recording = harness.record(tmp_path, backend, True, SEED, plan)
    assert recording.returncode == 0, recording.stderr
    cuts = harness.choose_cuts(recording.records, CUTS, SEED)
    reports = harness.check_cuts(tmp_path, recording, backend, True, SEED, plan, cuts)
    assert any(report.required for report in reports)  # the cuts reach written data
    assert_every_state_kept_its_promise("durable=True", backend, reports, durable=True)


def test_a_new_store_opens_after_every_cut_once_created(backend, tmp_path):
    """Between open_store(mode="w") returning and the first write_many: every cut, every
    mode. Caught an unsynced store directory entry, a PNG table renamed into place
    before its header was synced, and LMDB's first pages synced only with a commit."""
    plan = make_plan(SEED + 3, 3)
    recording = harness.record(tmp_path, backend, True, SEED + 3, plan)
    assert recording.returncode == 0, recording.stderr
    marks = [i for i, record in enumerate(recording.records) if record.op == "mark"]
    opened, first_call = marks[0] + 1, marks[1] + 1
    cuts = sampled([(cut, mode) for cut in range(opened, first_call + 1)
                    for mode in journal.MODES])
    reports = harness.check_cuts(tmp_path, recording, backend, True, SEED + 3, plan, cuts)
    assert_every_state_kept_its_promise("durable=True, new store", backend, reports,
                                        durable=True)


def test_cuts_just_before_each_sync_lose_nothing_synced(backend, tmp_path):
    """Where the most is unsynced: a torn or partial write-back of everything since the
    last sync. Caught LMDB's meta page reaching the disk before the pages it commits
    and HDF5's /ids growing on the disk before the rows it commits."""
    plan = make_plan(SEED + 4, CALLS)
    recording = harness.record(tmp_path, backend, True, SEED + 4, plan)
    assert recording.returncode == 0, recording.stderr
    before_syncs = [i for i, record in enumerate(recording.records) if record.op in journal.SYNCS]
    cuts = sampled([(cut, mode) for cut in before_syncs for mode in ("prefix", "torn")])
    reports = harness.check_cuts(tmp_path, recording, backend, True, SEED + 4, plan, cuts)
    assert_every_state_kept_its_promise("durable=True, before syncs", backend, reports,
                                        durable=True)


def test_a_real_freeze_mid_write_keeps_what_was_synced(backend, tmp_path):
    """The power goes off for real half way: later calls fail, what was synced stays."""
    plan = make_plan(SEED + 1, CALLS)
    full = harness.record(tmp_path / "full", backend, True, SEED + 1, plan)
    freeze_after = journal.change_count(full.records) // 2
    frozen = harness.record(tmp_path / "frozen", backend, True, SEED + 1, plan,
                            freeze_after=freeze_after)
    assert frozen.returncode == 3, frozen.stderr  # the writer met the dead file system
    assert journal.change_count(frozen.records) == freeze_after
    assert harness.returned_calls(frozen.records, len(frozen.records)) < len(plan)
    cuts = [(len(frozen.records), mode) for mode in journal.MODES for _ in range(2)]
    reports = harness.check_cuts(tmp_path / "frozen", frozen, backend, True, SEED + 1, plan, cuts)
    assert_every_state_kept_its_promise("durable=True, real freeze", backend, reports,
                                        durable=True)


def test_not_durable_writes_never_read_wrong(backend, tmp_path):
    """durable=False promises nothing kept, but a store that opens never returns wrong
    pixels, and one that does not open says so with a declared typed error."""
    plan = make_plan(SEED + 2, CALLS)
    recording = harness.record(tmp_path, backend, False, SEED + 2, plan)
    assert recording.returncode == 0, recording.stderr
    cuts = harness.choose_cuts(recording.records, max(12, CUTS // 2), SEED)
    reports = harness.check_cuts(tmp_path, recording, backend, False, SEED + 2, plan, cuts)
    assert_every_state_kept_its_promise("durable=False", backend, reports, durable=False)
    # What it loses: images whose calls had returned, in some crash state.
    assert any(report.result["r"].get("present", 0) < report.acknowledged
               for report in reports)
