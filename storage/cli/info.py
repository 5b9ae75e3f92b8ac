"""What a store holds: format, image shape or encoding, count, ids, shards, disk use, versions."""
from __future__ import annotations

import json
from pathlib import Path

from storage import backend_of, open_store
from storage.convert.single import RECORD, refuse_unfinished
from storage.errors import UnknownBackendError
from storage.registry import BACKENDS, backend_class, container_backends
from storage.sharded.index import INDEX_FORMAT, VERSION


def store_format(path) -> str:
    """The format of the store at ``path``, refusing a missing, unfinished or unknown one."""
    refuse_unfinished(path)
    backend = backend_of(path)
    try:
        backend_class(backend)
    except UnknownBackendError:
        raise UnknownBackendError(
            f"the store at '{path}' is in the format {backend!r}, which this version does not "
            f"read (it reads {sorted(BACKENDS)}); upgrade the storage library") from None
    return backend


def store_info(path) -> dict:
    """The facts ``info`` prints, as a dict (``--json`` prints it as is)."""
    path = Path(path)
    backend = store_format(path)
    marker = json.loads((path / "store.json").read_text())
    with open_store(path) as store:
        ids = store.ids()
        shape = store.image_shape
        facts = {
            "path": str(path), "format": backend, "format_version": marker.get("version"),
            "mode": (f"encoded {store.encoding} images (their bytes as stored)"
                     if store.encoding else "decoded pixels, uint8"),
            "encoding": store.encoding,
            "image_shape": list(shape) if shape else None, "count": len(ids),
            "id_range": [int(ids[0]), int(ids[-1])] if len(ids) else None,
            "disk_bytes": store.disk_usage(),
        }
        if backend in container_backends():
            index = store.index
            facts.update({
                "index_format": f"{INDEX_FORMAT} {VERSION}", "shard_format": index.shard_format,
                "shards": len(index.shards), "source": index.source,
                "classes": list(index.classes) if index.classes is not None else None,
            })
    if (path / RECORD).exists():
        record = json.loads((path / RECORD).read_text())
        facts.update({"source": record.get("source"), "classes": record.get("classes")})
    return facts


def format_info(facts: dict) -> str:
    shape = facts["image_shape"]
    rows = [
        ("store", facts["path"]),
        ("format", f"{facts['format']}" + (f" ({facts['shards']} {facts['shard_format']} shards,"
                                           f" {facts['index_format']})"
                                           if "shards" in facts else "")
         + f", version {facts['format_version']}"),
        ("mode", facts["mode"]),
        ("encoding", facts["encoding"]) if facts.get("encoding") else
        ("image shape", " x ".join(map(str, shape)) if shape else "none yet (empty)"),
        ("images", f"{facts['count']:,}"),
        ("ids", "{:,}..{:,}".format(*facts["id_range"]) if facts["id_range"] else "none"),
        ("disk use", f"{facts['disk_bytes'] / 1e6:,.1f} MB"),
    ]
    if facts.get("source"):
        rows.append(("source", facts["source"]))
    if facts.get("classes"):
        rows.append(("classes", ", ".join(f"{label}={name}"
                                          for label, name in enumerate(facts["classes"]))))
    return "\n".join(f"{name:<12} {value}" for name, value in rows)
