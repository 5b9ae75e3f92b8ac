"""Every registered format converts into every other, append-only ones included, and
``info`` and ``verify`` read each.

The default run converts around a ring over the registry (each format once as the source
and once as the destination); STORAGE_CONVERT_ALL_PAIRS=1 converts every ordered pair.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from storage import backend_of, open_store
from storage.cli import main as storage_cli
from storage.convert import convert
from storage.registry import BACKENDS, backend_class, our_backends
from tests.convert.conftest import leftovers, random_samples, read_back_crcs, sample_crcs

pytestmark = pytest.mark.timeout(60)
ALL_PAIRS_ENV = "STORAGE_CONVERT_ALL_PAIRS"
# Every format a store of pixel arrays can be written in (convert moves arrays; raw-blob
# holds encoded bytes only); the toy registered only inside the tests is left out.
FORMATS = [name for name, entry in BACKENDS.items()
           if not entry.container and not entry.target.startswith("tests.")
           and backend_class(name).capabilities.arrays]
COUNT = 12
IDS = np.arange(COUNT) * 3 + 5  # sparse: a conversion numbers the images 0..N-1 in id order


def conversion_pairs() -> list[tuple[str, str]]:
    if os.environ.get(ALL_PAIRS_ENV):
        return [(source, destination) for source in FORMATS for destination in FORMATS]
    return [(source, FORMATS[(number + 1) % len(FORMATS)])
            for number, source in enumerate(FORMATS)]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store of each format (made on first use) and the CRC of each sample, in id order."""
    root = tmp_path_factory.mktemp("formats")
    made = {}

    def get(store_format: str):
        if store_format not in made:
            images, labels = random_samples(COUNT, seed=len(made))
            with open_store(root / store_format, store_format, "w") as store:
                store.write_many(images, labels, ids=IDS)
            made[store_format] = root / store_format, sample_crcs(images, labels)
        return made[store_format]
    return get


def test_the_ring_covers_every_format_both_ways():
    pairs = conversion_pairs()
    assert {source for source, _ in pairs} == set(FORMATS)
    assert {destination for _, destination in pairs} == set(FORMATS)
    # Append-only formats (no overwrites) are among them: a conversion only appends.
    assert any(not backend_class(name).capabilities.overwrite for name in FORMATS)


@pytest.mark.parametrize("source_format,destination_format", conversion_pairs(),
                         ids=lambda name: name)
def test_a_store_converts_into_another_format(source_format, destination_format, stores,
                                             tmp_path):
    source, expected = stores(source_format)
    destination = tmp_path / "out"
    result = convert(source, destination, destination_format)
    assert result.built == ["out"] and result.count == COUNT
    assert backend_of(destination) == destination_format
    assert read_back_crcs(destination) == expected  # pixels and labels, ids 0..N-1
    assert leftovers(destination) == []
    again = convert(source, destination, destination_format)
    assert again.built == [] and again.skipped == ["out"]


@pytest.mark.parametrize("store_format", FORMATS)
def test_info_and_verify_read_every_format(store_format, stores, capsys):
    path, _ = stores(store_format)
    assert storage_cli(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["format"] == store_format and facts["count"] == COUNT
    assert facts["image_shape"] == [8, 8, 3] and facts["id_range"] == [IDS[0], IDS[-1]]
    assert facts["disk_bytes"] > 0
    assert storage_cli(["info", str(path)]) == 0
    assert f"{IDS[0]}..{IDS[-1]}" in capsys.readouterr().out
    assert storage_cli(["verify", str(path), "--quiet"]) == 0
    assert f"{COUNT} images verified, clean" in capsys.readouterr().out


@pytest.mark.parametrize("store_format", [name for name in our_backends() if name in FORMATS])
def test_verify_reports_a_cut_data_file(store_format, stores, tmp_path, capsys):
    import shutil

    path, _ = stores(store_format)
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    data = max((file for file in damaged.rglob("*")
                if file.is_file() and file.name not in ("store.json", "conversion.json")),
               key=lambda file: file.stat().st_size)
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    assert storage_cli(["verify", str(damaged), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and ("damaged ids: " in out or "problem: " in out)
