"""A FUSE file system that passes everything through to a backing directory and
journals each change and sync, so that a power cut can be replayed later.

Run as ``python -m tests.powerloss.fusefs BACKING MOUNT JOURNAL [--freeze-after N]``.
With ``--freeze-after N`` every operation after the N-th change fails with EIO,
as on a machine that lost power (the journal then ends there).

The kernel never forwards ``syncfs`` to an ordinary FUSE daemon (only virtiofs
gets FUSE_SYNCFS), so a writer tells it through the control attribute
``user.powerloss.syncfs`` on the mount's root; ``user.powerloss.mark`` adds a note
(``writer.py`` does both). A write through a descriptor opened with O_SYNC or
O_DSYNC is synced at once, as the kernel's own write path does.
libfuse changes directory to ``/``: every path here is absolute.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # libfuse2 splits writes into 4 KiB

import mfusepy  # noqa: E402

from tests.powerloss.journal import ROOT, JournalWriter  # noqa: E402

CONTROL_PREFIX = "user.powerloss."
_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
_STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
                "st_ctime", "st_blocks", "st_ino")


class JournalingPassthrough(mfusepy.Operations):
    use_ns = True

    def __init__(self, backing: Path, journal: JournalWriter, freeze_after: int | None):
        self.backing = str(backing)
        self.journal = journal
        self.freeze_after = freeze_after
        self.changes = 0
        self.inodes: dict[str, int] = {"/": ROOT}  # path on the mount -> our inode number
        self.next_inode = ROOT + 1
        self.handles: dict[int, tuple[int, bool]] = {}  # fh -> (inode, synced writes)
        self._record_initial_tree()

    # ---- bookkeeping -----------------------------------------------------------------
    def _real(self, path: str) -> str:
        return self.backing + path

    def _check_power(self) -> None:
        if self.freeze_after is not None and self.changes >= self.freeze_after:
            raise OSError(errno.EIO, "the power is off")

    def _change(self, op: str, data: bytes = b"", **fields) -> None:
        self._check_power()
        self.journal.append(op, data, **fields)
        self.changes += 1

    def _sync(self, op: str, **fields) -> None:
        self._check_power()
        self.journal.append(op, **fields)

    def _new_inode(self, path: str) -> int:
        self.inodes[path] = self.next_inode
        self.next_inode += 1
        return self.inodes[path]

    def _parent(self, path: str) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        return self.inodes[parent or "/"], name

    def _inode(self, path: str) -> int:
        inode = self.inodes.get(path)
        return inode if inode is not None else self._new_inode(path)

    def _record_initial_tree(self) -> None:
        """What the backing directory held before: on the disk already."""
        for root, directories, files in os.walk(self.backing):
            mount_root = root[len(self.backing):] or "/"
            for name in sorted(directories):
                path = os.path.join(mount_root, name)
                parent, _ = self._parent(path)
                self.journal.append("link", dir=parent, name=name, ino=self._new_inode(path),
                                    kind="d")
            for name in sorted(files):
                path = os.path.join(mount_root, name)
                parent, _ = self._parent(path)
                inode = self._new_inode(path)
                self.journal.append("link", dir=parent, name=name, ino=inode, kind="f")
                content = Path(self._real(path)).read_bytes()
                self.journal.append("write", content, ino=inode, off=0, len=len(content))
        self.journal.append("syncfs")

    # ---- reading: passed through -------------------------------------------------------
    def getattr(self, path, fh=None):
        self._check_power()
        stat = os.lstat(self._real(path))
        attributes = {key: getattr(stat, key) for key in _STAT_FIELDS}
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attributes[key] = getattr(stat, key + "_ns" if key.endswith("time") else key)
        return attributes

    def access(self, path, amode):
        self._check_power()
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, "")
        return 0

    def readdir(self, path, fh):
        self._check_power()
        return [".", "..", *os.listdir(self._real(path))]

    def opendir(self, path):
        self._check_power()
        return 0

    def releasedir(self, path, fh):
        return 0

    def statfs(self, path):
        stats = os.statvfs(self._real(path))
        return {key: getattr(stats, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def read(self, path, size, offset, fh):
        self._check_power()
        return os.pread(fh, size, offset)

    def readlink(self, path):
        return os.readlink(self._real(path))

    # ---- files --------------------------------------------------------------------------
    def open(self, path, flags):
        self._check_power()
        if flags & os.O_TRUNC:
            self._change("truncate", ino=self._inode(path), size=0)
        descriptor = os.open(self._real(path), flags & ~os.O_CREAT)
        self.handles[descriptor] = (self._inode(path), bool(flags & _SYNC_FLAGS))
        return descriptor

    def create(self, path, mode, flags):
        self._check_power()
        existed = path in self.inodes
        descriptor = os.open(self._real(path), flags | os.O_CREAT, mode)
        if not existed:
            parent, name = self._parent(path)
            self._change("link", dir=parent, name=name, ino=self._new_inode(path), kind="f")
        elif flags & os.O_TRUNC:
            self._change("truncate", ino=self.inodes[path], size=0)
        self.handles[descriptor] = (self.inodes[path], bool(flags & _SYNC_FLAGS))
        return descriptor

    def write(self, path, data, offset, fh):
        inode, synced = self.handles[fh]
        self._change("write", bytes(data), ino=inode, off=offset, len=len(data))
        written = os.pwrite(fh, data, offset)
        if synced:
            self._sync("fsync", ino=inode)
        return written

    def truncate(self, path, length, fh=None):
        inode = self.handles[fh][0] if fh in self.handles else self._inode(path)
        self._change("truncate", ino=inode, size=length)
        if fh in self.handles:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)
        return 0

    def fsync(self, path, datasync, fh):
        inode = self.handles[fh][0] if fh in self.handles else self._inode(path)
        self._sync("fsync", ino=inode)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._sync("fsync", ino=self._inode(path))
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        self.handles.pop(fh, None)
        os.close(fh)
        return 0

    def chmod(self, path, mode):
        self._check_power()
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path, uid, gid):
        self._check_power()
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path, times=None):
        self._check_power()
        os.utime(self._real(path), ns=times)
        return 0

    # ---- directory entries ------------------------------------------------------------
    def mkdir(self, path, mode):
        parent, name = self._parent(path)
        self._check_power()
        os.mkdir(self._real(path), mode)
        self._change("link", dir=parent, name=name, ino=self._new_inode(path), kind="d")
        return 0

    def unlink(self, path):
        parent, name = self._parent(path)
        self._check_power()
        os.unlink(self._real(path))
        self._change("unlink", dir=parent, name=name)
        self.inodes.pop(path, None)
        return 0

    def rmdir(self, path):
        parent, name = self._parent(path)
        self._check_power()
        os.rmdir(self._real(path))
        self._change("unlink", dir=parent, name=name)
        self.inodes.pop(path, None)
        return 0

    def rename(self, old, new):
        source, source_name = self._parent(old)
        destination, destination_name = self._parent(new)
        self._check_power()
        self._inode(old)
        os.rename(self._real(old), self._real(new))
        self._change("rename", sdir=source, sname=source_name, ddir=destination,
                     dname=destination_name)
        for path in [p for p in self.inodes if p == old or p.startswith(old + "/")]:
            self.inodes[new + path[len(old):]] = self.inodes.pop(path)
        return 0

    def link(self, target, source):
        """A second name for the file at ``source`` (``ln source target``): a link record
        for an inode that exists already (exclusive creation of store.json uses it)."""
        parent, name = self._parent(target)
        self._check_power()
        os.link(self._real(source), self._real(target))
        inode = self._inode(source)
        self.inodes[target] = inode
        self._change("link", dir=parent, name=name, ino=inode, kind="f")
        return 0

    def symlink(self, target, source):
        raise OSError(errno.ENOSYS, "symbolic links are not modelled")

    # ---- the writer's control channel ---------------------------------------------------
    def setxattr(self, path, name, value, options, position=0):
        if not name.startswith(CONTROL_PREFIX):
            raise OSError(errno.ENOTSUP, "")
        what = name[len(CONTROL_PREFIX):]
        if what == "syncfs":
            self._sync("syncfs")
        elif what == "mark":
            self._check_power()
            self.journal.append("mark", text=bytes(value).decode())
        else:
            raise OSError(errno.EINVAL, "")
        return 0

    def destroy(self, path):
        self.journal.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mount", type=Path)
    parser.add_argument("journal", type=Path)
    parser.add_argument("--freeze-after", type=int, default=None)
    args = parser.parse_args(argv)
    operations = JournalingPassthrough(
        args.backing.resolve(), JournalWriter(args.journal.resolve()), args.freeze_after)
    # One thread: the journal's order is the order the file system saw. hard_remove:
    # libfuse would otherwise rename a replaced file that is still open to
    # ".fuse_hidden*" first, two renames where the writer made one atomic one.
    mfusepy.FUSE(operations, str(args.mount.resolve()), foreground=True, nothreads=True,
                 fsname="powerloss", hard_remove=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
