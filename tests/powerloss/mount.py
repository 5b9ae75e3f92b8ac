"""Mount the journaling file system for the length of a ``with`` block, and say why not.

A daemon that dies leaves a dead mount behind ("Transport endpoint is not
connected"): the block unmounts in ``finally``, lazily if it must, and then waits
for the daemon's process.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.powerloss.journal import read_journal

REPO = Path(__file__).resolve().parents[2]
_MOUNT_WAIT = 15.0
_DAEMON_WAIT = 10.0


@functools.cache
def fuse_unavailable() -> str | None:
    """Why FUSE cannot be used here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing: install the fuse3 package"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse3 is missing: install the fuse3 package"
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy loads it when imported
    try:
        import mfusepy  # noqa: F401
    except ImportError as error:
        return f"the Python binding mfusepy is missing ({error}): pip install -r requirements.txt"
    except (OSError, EnvironmentError) as error:  # it loads libfuse when imported
        return f"mfusepy cannot load libfuse3 ({error})"
    return _mount_refused()


# An empty file system, not ours: if even it cannot mount, the machine forbids FUSE
# mounts (a container without the capability); a failure of ours still fails the tests.
_PROBE = "import sys, mfusepy; mfusepy.FUSE(mfusepy.Operations(), sys.argv[1], foreground=True)"


def _mount_refused() -> str | None:
    """Why an empty FUSE file system does not mount here, or None when it does."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="fuse-probe-") as point:
        probe = subprocess.Popen([sys.executable, "-c", _PROBE, point], env=daemon_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + _MOUNT_WAIT
        while not os.path.ismount(point) and probe.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        mounted = os.path.ismount(point)
        if mounted:
            subprocess.run(["fusermount3", "-u", point], capture_output=True, timeout=30)
        try:
            output = probe.communicate(timeout=_DAEMON_WAIT)[0]
        except subprocess.TimeoutExpired:
            probe.kill()
            output = probe.communicate()[0]
    if mounted:
        return None
    return f"this machine does not allow FUSE mounts: {output.strip()[-300:] or 'no mount'}"


def daemon_env() -> dict:
    return {**os.environ, "FUSE_LIBRARY_NAME": "fuse3", "PYTHONPATH": str(REPO)}


@contextlib.contextmanager
def mounted(workdir: Path, *, freeze_after: int | None = None):
    """Yield a ``Mount``; its journal can be read after the block."""
    workdir = Path(workdir).resolve()
    mount = Mount(workdir)
    command = [sys.executable, "-m", "tests.powerloss.fusefs", str(mount.backing),
               str(mount.point), str(mount.journal_path)]
    if freeze_after is not None:
        command += ["--freeze-after", str(freeze_after)]
    log = open(workdir / "fusefs.log", "w")  # Mount made workdir
    daemon = subprocess.Popen(command, cwd=REPO, env=daemon_env(), stdout=log, stderr=log)
    detached = False
    try:
        mount.wait_until_mounted(daemon)
        yield mount
    finally:
        detached = mount.unmount()
        try:
            daemon.wait(timeout=_DAEMON_WAIT)
        except subprocess.TimeoutExpired:
            # A lazily detached mount keeps its daemon while a descriptor on it lives;
            # the journal is written as it goes, so ending the daemon loses nothing.
            daemon.kill()
            daemon.wait()
        log.close()
    if daemon.returncode != 0 and not detached:
        raise RuntimeError(f"the FUSE daemon failed ({daemon.returncode}): "
                           f"{(workdir / 'fusefs.log').read_text()[-2000:]}")


class Mount:
    def __init__(self, workdir: Path):
        self.backing = workdir / "backing"
        self.point = workdir / "mnt"
        self.journal_path = workdir / "journal.bin"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.point.mkdir(parents=True, exist_ok=True)

    def wait_until_mounted(self, daemon: subprocess.Popen) -> None:
        deadline = time.monotonic() + _MOUNT_WAIT
        while not os.path.ismount(self.point):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the FUSE file system did not mount at '{self.point}'")
            time.sleep(0.02)

    def unmount(self) -> bool:
        """Unmount; True when it had to be detached lazily (busy, or its daemon gone)."""
        if not self.is_mounted():
            return False
        done = subprocess.run(["fusermount3", "-u", str(self.point)], capture_output=True)
        if done.returncode == 0:
            return False
        subprocess.run(["umount", "-l", str(self.point)], capture_output=True)
        return True

    def is_mounted(self) -> bool:
        """From the mount table: a frozen mount fails stat, so os.path.ismount says no."""
        with open("/proc/self/mounts") as table:
            return any(line.split()[1] == str(self.point) for line in table)

    def records(self):
        return read_journal(self.journal_path)
