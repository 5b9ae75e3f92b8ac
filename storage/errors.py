"""The one exception hierarchy of the storage library.

Every error is a ``StoreError`` and also the built-in it resembles, so callers
can catch either: ``except KeyError`` keeps working for an unknown id.
Messages name the thing, the problem and the fix.
"""


class StoreError(Exception):
    """Base class of every error raised by ``storage``."""

    def __str__(self) -> str:
        # KeyError's own __str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class UnknownBackendError(StoreError, ValueError):
    """The backend name is not in the registry."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path holds no store (and the mode does not create one)."""


class StoreExistsError(StoreError, FileExistsError):
    """Creating a store where one already exists."""


class NotAStoreError(StoreError, ValueError):
    """The path is a file, or a directory holding something other than a store."""


class WrongBackendError(StoreError, ValueError):
    """The store was written by another backend."""


class ReadOnlyError(StoreError, PermissionError):
    """Writing to a store opened for reading, or to a read-only location."""


class StoreClosedError(StoreError, ValueError):
    """Using a store after ``close()``."""


class KeyNotFoundError(StoreError, KeyError):
    """An id the store does not hold."""


class DuplicateKeyError(StoreError, ValueError):
    """An id written twice without ``overwrite=True``."""


class InvalidKeyError(StoreError, ValueError):
    """An id that is not an integer in ``[0, 2**63)``."""


class ImageFormatError(StoreError, ValueError):
    """Images of the wrong dtype or number of dimensions."""


class ShapeMismatchError(StoreError, ValueError):
    """Images whose shape differs from the store's, or image/label counts that differ."""


class LabelError(StoreError, ValueError):
    """Labels that are not integers in the int64 range."""


class CorruptStoreError(StoreError, OSError):
    """Stored bytes fail a check: the store (or one image) is damaged."""


class StorageFullError(StoreError, OSError):
    """The disk or a file-size limit refused a write; committed data is intact."""


class DatasetError(StoreError, ValueError):
    """A dataset file (a CIFAR batch) is missing, malformed or unsafe."""


class UnsafePickleError(DatasetError):
    """A pickle asked for a global outside the allow-list; nothing was run."""


class ReadersFullError(StoreError, OSError):
    """Every LMDB reader slot is taken by open read transactions."""


class UnsupportedOperationError(StoreError, ValueError):
    """The format cannot do what was asked (an overwrite in an append-only format, ...)."""


class NewerFormatError(StoreError, ValueError):
    """The store was written by a newer version of its format than this library reads."""


class InvalidOptionError(StoreError, ValueError, TypeError):
    """An option of ``open_store`` (mode, path, a backend's own option) is not valid."""


class StoreBusyError(StoreError, BlockingIOError):
    """Another process holds what this one needs: a store of a format that allows one
    process at a time (LevelDB), or the lease on a conversion's destination."""


class UnsafeShardError(StoreError, ValueError):
    """A tar shard made elsewhere holds what a store never writes: links, devices, '..' names."""


class IncompleteStoreError(StoreError, ValueError):
    """A sharded store whose conversion has not committed its index.json yet."""


class SchedulerError(StoreError, ConnectionError):
    """The Dask scheduler named cannot be reached."""


class EncodedValueError(ImageFormatError):
    """An encoded image that is not bytes, is empty, or lacks its store's encoding signature."""


class ValueTooLargeError(EncodedValueError):
    """An encoded image longer than the format can hold in one value."""


class StoreModeError(ImageFormatError):
    """Arrays handed to a store of encoded images, or bytes to a store of arrays."""


class EncodingMismatchError(StoreError, ValueError):
    """Opening a store with an encoding other than the one it was created with."""
