"""LMDB: several images per value, a CRC per value; see ``backend`` for the layout."""
from storage.formats.lmdb.backend import LmdbBackend

__all__ = ["LmdbBackend"]
