"""Tar shards in the WebDataset layout with a sidecar index; see ``backend`` for the layout."""
from storage.formats.tar.backend import TarBackend

__all__ = ["TarBackend"]
