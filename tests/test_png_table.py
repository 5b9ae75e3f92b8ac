"""The PNG table is parsed in one pass when every row is well formed, row by row when
not: both must agree on every table, the odd ones included (padded or signed numbers,
bad CRCs, wrong file names, ids past int64, stray carriage returns), whether they
accept it and what they read, or which line they refuse."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import open_store
from storage.core.encodings import SIGNATURES
from storage.errors import CorruptStoreError
from storage.formats.png import HEADER, PngBackend
from tests.strategies import examples

# Mostly small ids; a few at the top of int64 and just past it.
KEYS = st.one_of(*[st.integers(0, 40)] * 3, st.integers(2**63 - 3, 2**63 + 3))
# How a number may be written other than plainly: ways Python's int() accepts, and not.
ODD_NUMBERS = ["0{}", "+{}", " {}", "{}_0", "-{}", "{}x", "{}0000000000000000000"]
ODD_FILES = ["images/{}{}.{}", "images/{:08d}{}.{}x", "images/{:08d}{}.{}.png",
             "images/../{:08d}{}.{}", "images/{:08d}{}.{}\r"]
# A row has at most one flaw, most have none: tables of several rows then often pass.
FLAWS = [None] * 24 + ["key", "label", "named", "file", "digest", "crc", "upper crc", "no crc",
                      "crlf", "blank line"]


@st.composite
def rows(draw, extension: str, encoded: bool) -> bytes:
    flaw = draw(st.sampled_from(FLAWS))
    key, label = draw(KEYS), draw(st.integers(-5, 9))
    key_text = draw(st.sampled_from(ODD_NUMBERS)).format(key) if flaw == "key" else str(key)
    label_text = draw(st.sampled_from(ODD_NUMBERS)).format(label) if flaw == "label" else str(label)
    named = draw(KEYS) if flaw == "named" else key
    generation = draw(st.sampled_from(["", ".1", ".12"]))
    digest = "-%08x" % draw(st.integers(0, 2**32 - 1)) if encoded != (flaw == "digest") else ""
    form = draw(st.sampled_from(ODD_FILES)) if flaw == "file" else "images/{:08d}{}.{}"
    text = form.format(named, generation + digest, extension)
    text = f"{key_text},{label_text},{text}".encode()
    crc = {"crc": b",%08x" % (zlib.crc32(text) ^ 1), "upper crc": b",%08X" % zlib.crc32(text),
           "no crc": b""}.get(flaw, b",%08x" % zlib.crc32(text))
    return text + crc + {"crlf": b"\r\n", "blank line": b"\n\n"}.get(flaw, b"\n")


def _parsed(store, body: bytes, one_pass: bool):
    """What loading ``body`` as the table gives: (ids, labels, files), or the error."""
    (store.path / "labels.csv").write_bytes(HEADER + body)
    if not one_pass:
        store._parse_rows_at_once = lambda body: None
    try:
        table = store._load_table()
    except CorruptStoreError as error:
        return str(error)
    finally:
        store.__dict__.pop("_parse_rows_at_once", None)
    return table.index.sorted_ids.tolist(), table.labels.tolist(), table.files


@pytest.mark.parametrize("encoding", [None, "jpeg"])
def test_one_pass_and_row_by_row_parses_agree(tmp_path, encoding):
    path = tmp_path / "store"
    image = SIGNATURES["jpeg"] + b"\0" if encoding else np.zeros((1, 2, 2, 3), np.uint8)
    with open_store(path, "png", mode="w", encoding=encoding) as store:
        store.write_many([image] if encoding else image, [1])
    store = open_store(path)
    assert isinstance(store, PngBackend) and store._layout > 1
    (path / "labels.len").write_bytes(b"%020d %08x\n" % (0, zlib.crc32(b"%020d" % 0)))
    extension = "jpg" if encoding else "png"

    @settings(max_examples=examples(400), deadline=None)
    @given(st.lists(rows(extension, encoding is not None), max_size=5))
    def agree(table_rows):
        body = b"".join(table_rows)
        assert _parsed(store, body, one_pass=True) == _parsed(store, body, one_pass=False)

    try:
        agree()
    finally:
        store.close()


def test_a_well_formed_table_is_parsed_in_one_pass(tmp_path):
    """The property above would hold if the one pass never answered: it must, on the
    tables a writer makes, overwrites and all."""
    path = tmp_path / "store"
    with open_store(path, "png", mode="w") as store:
        store.write_many(np.zeros((3, 2, 2, 3), np.uint8), [4, 5, 6])
    with open_store(path, mode="a") as store:
        store.write_many(np.ones((1, 2, 2, 3), np.uint8), [7], [1], overwrite=True)
    with open_store(path) as store:
        body = (path / "labels.csv").read_bytes()[len(HEADER):]
        keys, labels, files = store._parse_rows_at_once(body)
        assert keys.tolist() == [0, 1, 2, 1] and labels.tolist() == [4, 5, 6, 7]
        assert files[3] == b"images/00000001.1.png"
        assert store.ids().tolist() == [0, 1, 2] and store.read_one(1)[1] == 7
