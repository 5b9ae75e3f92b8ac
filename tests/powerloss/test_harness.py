"""The harness checks itself: synced data survives every cut, unsynced data does not always."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from tests.powerloss import journal
from tests.powerloss.mount import REPO, daemon_env, mounted

pytestmark = pytest.mark.timeout(120)
SEEDS = range(8)
SYNCED = os.urandom(10_000)  # spans three 4 KiB pieces
UNSYNCED = os.urandom(10_000)


def fsync_path(path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file(path, content: bytes, sync: bool) -> None:
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        if sync:
            os.fsync(file.fileno())


def all_states(records, cut=None):
    cut = len(records) if cut is None else cut
    return [journal.crash_state(records, cut, mode, seed)
            for mode in journal.MODES for seed in SEEDS]


def materialized(records, state, tmp_path, number):
    target = tmp_path / f"state-{number}"
    journal.materialize(records, state, target)
    return target


def test_synced_data_survives_every_cut_and_unsynced_data_is_lost_in_some(tmp_path):
    with mounted(tmp_path / "fs") as mount:
        directory = mount.point / "d"
        directory.mkdir()
        fsync_path(mount.point)
        write_file(directory / "synced", SYNCED, sync=True)
        write_file(directory / "unsynced", UNSYNCED, sync=False)
        fsync_path(directory)  # both names durable; only one file's bytes
        write_file(directory / "unnamed", SYNCED, sync=True)  # its directory never synced
    records = mount.records()
    outcomes = {"unsynced": set(), "unnamed": set()}
    for number, state in enumerate(all_states(records)):
        target = materialized(records, state, tmp_path, number) / "d"
        assert (target / "synced").read_bytes() == SYNCED, state.mode
        unsynced = (target / "unsynced").read_bytes()
        outcomes["unsynced"].add(unsynced == UNSYNCED)
        if state.mode == "synced":
            assert unsynced == b""
        else:  # whatever survives is made of whole 4 KiB pieces of what was written
            for start in range(0, len(unsynced), journal.PIECE):
                piece = unsynced[start:start + journal.PIECE]
                assert piece in (UNSYNCED[start:start + journal.PIECE], bytes(len(piece)))
        outcomes["unnamed"].add((target / "unnamed").exists())
    assert outcomes["unsynced"] == {True, False}  # kept whole in some states, lost in others
    assert outcomes["unnamed"] == {True, False}


def test_a_rename_is_durable_only_once_its_directory_is_synced(tmp_path):
    with mounted(tmp_path / "fs") as mount:
        write_file(mount.point / "file.tmp", SYNCED, sync=True)
        fsync_path(mount.point)
        os.replace(mount.point / "file.tmp", mount.point / "file")
        fsync_path(mount.point)
    records = mount.records()
    rename = next(i for i, record in enumerate(records) if record.op == "rename")
    before = materialized(records, journal.crash_state(records, rename + 1, "synced", 0),
                          tmp_path, "before")
    assert sorted(os.listdir(before)) == ["file.tmp"]
    after = materialized(records, journal.crash_state(records, len(records), "synced", 0),
                         tmp_path, "after")
    assert sorted(os.listdir(after)) == ["file"]
    assert (after / "file").read_bytes() == SYNCED


def test_a_prefix_cut_keeps_unsynced_writes_in_order(tmp_path):
    with mounted(tmp_path / "fs") as mount:
        write_file(mount.point / "log", b"", sync=True)
        fsync_path(mount.point)
        with open(mount.point / "log", "ab") as log:
            for number in range(20):
                log.write(b"%04d" % number)
                log.flush()
    records = mount.records()
    lengths = set()
    for number, state in enumerate(journal.crash_state(records, len(records), "prefix", seed)
                                   for seed in range(12)):
        content = (materialized(records, state, tmp_path, number) / "log").read_bytes()
        assert content == b"".join(b"%04d" % n for n in range(len(content) // 4))
        lengths.add(len(content))
    assert len(lengths) > 1


def test_after_the_nth_change_every_operation_fails_with_eio(tmp_path):
    with mounted(tmp_path / "fs", freeze_after=3) as mount:
        with pytest.raises(OSError) as frozen:
            for number in range(10):  # a create and a write each
                write_file(mount.point / f"file-{number}", b"x", sync=False)
        assert frozen.value.errno == errno.EIO
        with pytest.raises(OSError) as frozen:
            fsync_path(mount.point)
        assert frozen.value.errno == errno.EIO
    records = mount.records()
    assert journal.change_count(records) == 3
    assert records[-1].op in journal.CHANGES


def test_a_writers_syncfs_reaches_the_journal(tmp_path):
    """The kernel keeps syncfs from FUSE; the writer's hook reports it instead."""
    with mounted(tmp_path / "fs") as mount:
        script = ("import sys; from tests.powerloss.writer import report_syncs_to; "
                  "report_syncs_to(sys.argv[1]); "
                  "open(sys.argv[1] + '/f', 'wb').write(b'x'); "
                  "from storage.core.files import sync_filesystem; sync_filesystem(sys.argv[1])")
        subprocess.run([sys.executable, "-c", script, str(mount.point)], cwd=REPO,
                       env=daemon_env(), check=True, timeout=60)
    records = mount.records()
    assert [record.op for record in records][-3:] == ["link", "write", "syncfs"]
    state = journal.crash_state(records, len(records), "synced", 0)
    target = materialized(records, state, tmp_path, "synced")
    assert (target / "f").read_bytes() == b"x"


def test_a_hard_link_is_a_second_name_durable_once_its_directory_is_synced(tmp_path):
    """store.json is created exclusively through a hard link from its temporary file."""
    with mounted(tmp_path / "fs") as mount:
        write_file(mount.point / "file.tmp", SYNCED, sync=True)
        os.link(mount.point / "file.tmp", mount.point / "file")
        os.unlink(mount.point / "file.tmp")
        fsync_path(mount.point)
    records = mount.records()
    link = next(i for i, record in enumerate(records)
                if record.op == "link" and record.name == "file")
    before = materialized(records, journal.crash_state(records, link + 1, "synced", 0),
                          tmp_path, "before")
    assert sorted(os.listdir(before)) == []  # not even the temporary's name was synced
    after = materialized(records, journal.crash_state(records, len(records), "synced", 0),
                         tmp_path, "after")
    assert sorted(os.listdir(after)) == ["file"]
    assert (after / "file").read_bytes() == SYNCED
