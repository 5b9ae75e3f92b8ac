"""Sharded stores: one directory of same-format stores, each holding a contiguous id range.

Layout of a sharded store directory::

    store.json          {"format": "image-store", "backend": "sharded", "image_shape": [...]}
    index.json          the commit point, see ``storage.sharded.index``; readers refuse a
                        directory without it (its conversion has not finished)
    shard-00000/        a store of the shard format holding ids [start, start + count)
    shard-00000.done    the shard's marker, written after the shard was renamed into place
    ...

``python -m storage convert`` writes them (``storage.convert``); ``open_store(path)``
reads them as one store through ``ShardedBackend``.
"""
