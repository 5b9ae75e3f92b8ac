"""LMDB: several images per value, a CRC per value; see ``backend`` for the layout of
arrays and ``encoded`` for that of encoded images."""
from storage.formats.lmdb.backend import LmdbBackend
from storage.formats.lmdb.encoded import EncodedLmdbBackend

LmdbBackend.encoded_variant = EncodedLmdbBackend

__all__ = ["EncodedLmdbBackend", "LmdbBackend"]
