"""The suite's one operations table matches its benchmarks; classic twins come from the registry."""
from __future__ import annotations

import dataclasses

import inspect

from benchmarks import test_access, test_encoded, test_read, test_store
from benchmarks.operations import OPERATIONS
from benchmarks.ratios import add_ratios, counterpart
from benchmarks.settings import SuiteSettings
from storage.registry import BACKENDS


def test_every_benchmark_is_in_the_table_and_back():
    functions = {name for module in (test_access, test_encoded, test_read, test_store)
                 for name, _ in inspect.getmembers(module, inspect.isfunction)
                 if name.startswith("test_")}
    assert functions == {operation.test for operation in OPERATIONS}


def test_the_classic_counterpart_is_declared_in_the_registry():
    assert counterpart("png") == "classic-png" == BACKENDS["png"].classic
    assert counterpart("classic-png") is None and counterpart("raw") is None
    assert counterpart("memory") is None  # the toy declares none


def result(operation, backend, median, side=32):
    return {"extra_info": {"operation": operation, "backend": backend, "N": 10, "side": side},
            "median": median}


def test_ratios_use_the_tables_classic_operation():
    results = [result("read_single", "png", 1.0), result("read_single", "raw", 0.5),
               result("open_read_single", "classic-png", 4.0),
               result("read_single", "classic-png", 2.0)]
    add_ratios(results)
    assert results[0]["extra_info"]["vs_raw"] == 2.0
    assert results[0]["extra_info"]["vs_classic"] == 0.25  # against open_read_single
    assert "vs_classic" not in results[3]["extra_info"]


def test_ratios_compare_images_of_one_side_only():
    results = [result("read_many", "lmdb", 8.0, side=256), result("read_many", "raw", 1.0),
               result("read_many", "raw", 4.0, side=256)]
    add_ratios(results)
    assert results[0]["extra_info"]["vs_raw"] == 2.0


def test_only_the_bulk_operations_run_at_every_default_side():
    default = SuiteSettings(backends=("raw",), sizes=(10, 1_000), cifar=None, measuring=True,
                            sides=(32, 256))
    assert default.combinations(every_side=False) == [(32, 10), (32, 1_000)]
    assert default.combinations() == [(32, 10), (32, 1_000), (256, 10), (256, 1_000)]
    named = dataclasses.replace(default, sides_given=True)
    assert named.combinations(every_side=False) == named.combinations()
    assert {op.name for op in OPERATIONS if op.every_side} >= {"store_many", "read_many"}
