"""`python -m benchmarks.gate compare`: reading pytest-benchmark files, the table, exit codes."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.gate.__main__ import main
from benchmarks.gate.pbjson import BLOCKS_KEY, load_run, merge_runs, parse_run
from benchmarks.gate.run import pytest_child_env

READ = "benchmarks/test_read.py::test_read_many[lmdb-N=1000]"
CONTROL = "benchmarks/test_control.py::test_control[npy-N=10000]"


def entry(fullname, data, operation="read_many"):
    return {"group": "read_many N=1000", "name": fullname.split("::")[-1], "fullname": fullname,
            "params": {}, "param": None, "options": {},
            "extra_info": {"operation": operation, "backend": "lmdb", "N": 1000},
            "stats": {"data": list(map(float, data)), "median": float(np.median(data)),
                      "rounds": len(data), "iterations": 1}}


def results_file(path, *entries):
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "datetime": "now",
                                "version": "5.3.1", "benchmarks": list(entries)}))
    return path


def rounds(median, count=40, noise=0.02, seed=0):
    return median * np.random.default_rng(seed).lognormal(0, noise, count)


@pytest.fixture
def base_file(tmp_path):
    return results_file(tmp_path / "base.json", entry(READ, rounds(1e-3)),
                        entry(CONTROL, rounds(4e-3, seed=1), "control"))


def test_same_speed_passes_and_prints_the_table(tmp_path, base_file, capsys):
    head = results_file(tmp_path / "head.json", entry(READ, rounds(1e-3, seed=2)),
                        entry(CONTROL, rounds(4e-3, seed=3), "control"))
    assert main(["compare", str(base_file), str(head)]) == 0
    out = capsys.readouterr().out
    for header in ("benchmark", "base median", "head median", "ratio", "interval", "verdict"):
        assert header in out
    row = next(line for line in out.splitlines() if line.startswith("test_read_many"))
    about_a_millisecond = r"(99\d\.\d{3} µs|1\.00\d ms)"
    assert re.search(rf"{about_a_millisecond} +{about_a_millisecond} +\d\.\d{{3}} +\[", row)
    assert "control: steady" in out and "PASS" in out


def test_a_regression_exits_1_and_writes_markdown(tmp_path, base_file, capsys):
    head = results_file(tmp_path / "head.json", entry(READ, rounds(1.3e-3, seed=2)),
                        entry(CONTROL, rounds(4e-3, seed=3), "control"))
    markdown = tmp_path / "summary.md"
    assert main(["compare", str(base_file), str(head), "--markdown", str(markdown)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    text = markdown.read_text()
    assert "| benchmark | base median |" in text and "**REGRESSION**" in text
    assert "FAIL: 1 regression(s)" in text


def test_the_threshold_decides(tmp_path, base_file):
    head = results_file(tmp_path / "head.json", entry(READ, rounds(1.3e-3, seed=2)))
    assert main(["compare", str(base_file), str(head), "--threshold", "50%"]) == 0
    assert main(["compare", str(base_file), str(head), "--threshold", "10"]) == 1


def test_a_moved_control_is_inconclusive_not_a_failure(tmp_path, base_file, capsys):
    head = results_file(tmp_path / "head.json", entry(READ, rounds(1.3e-3, seed=2)),
                        entry(CONTROL, rounds(5.2e-3, seed=3), "control"))
    assert main(["compare", str(base_file), str(head)]) == 0
    out = capsys.readouterr().out
    assert "inconclusive (machine noise)" in out and "control: MOVED" in out
    assert re.search(r"the control test_control\[npy-N=10000\] moved by \+2\d\.\d%", out)


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    (b"\xff\xfe not text", "is not JSON"),
    (b"{ truncated", "is not JSON"),
    (b'{"results": []}', "not a pytest-benchmark results file"),
    (b'[1, 2]', "not a pytest-benchmark results file"),
    (b'{"benchmarks": []}', "holds no benchmarks"),
    (b'{"benchmarks": [{"name": "x"}]}', "has no 'stats'"),
    (json.dumps({"benchmarks": [{"fullname": "t", "stats": {"median": 1.0}}]}).encode(),
     "--benchmark-save-data"),
    (json.dumps({"benchmarks": [{"fullname": "t", "stats": {"data": [1.0, "x"]}}]}).encode(),
     "other than positive times"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, base_file, capsys, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_bytes(content)
    assert main(["compare", str(base_file), str(bad)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_a_bad_threshold_is_a_usage_error(base_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(base_file), str(base_file), "--threshold", "ten"])
    assert exit_info.value.code == 2
    assert "expected a percentage" in capsys.readouterr().err


def test_merged_runs_keep_pairs_and_recompute_statistics():
    invocations = [(pair, {"benchmarks": [entry(READ, [pair + 1.0, pair + 2.0, pair + 3.0])],
                           "commit_info": {"id": "abc"}, "version": "5.3.1"})
                   for pair in (1, 0)]
    merged = merge_runs(invocations, {"side": "base"})
    stats = merged["benchmarks"][0]["stats"]
    assert stats["data"] == [1.0, 2.0, 3.0, 2.0, 3.0, 4.0]  # in pair order
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["rounds"] == 6
    assert merged["benchmarks"][0]["extra_info"][BLOCKS_KEY] == [
        {"pair": 0, "rounds": 3}, {"pair": 1, "rounds": 3}]
    assert merged["gate"] == {"side": "base"} and merged["commit_info"] == {"id": "abc"}
    blocks = parse_run(merged, "merged")[READ].blocks
    assert [block.pair for block in blocks] == [0, 1]
    assert blocks[1].times.tolist() == [2.0, 3.0, 4.0]


def test_inconsistent_block_layout_is_rejected(tmp_path):
    bad = entry(READ, [1.0, 2.0, 3.0])
    bad["extra_info"][BLOCKS_KEY] = [{"pair": 0, "rounds": 2}]
    with pytest.raises(ValueError, match="counts 2 rounds but stats.data holds 3"):
        parse_run({"benchmarks": [bad]}, "x.json")


def test_real_pytest_benchmark_files(tmp_path):
    """Files written by pytest-benchmark itself: --benchmark-json is read, a plain save is not."""
    (tmp_path / "test_tiny.py").write_text(
        "def test_sum(benchmark):\n"
        "    benchmark.pedantic(sum, args=(range(100),), rounds=5)\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_tiny.py", "-q", "-p", "no:cacheprovider",
         "--benchmark-json=run.json", "--benchmark-save=plain",
         f"--benchmark-storage=file://{tmp_path / 'saved'}"],
        cwd=tmp_path, capture_output=True, text=True, env=pytest_child_env())
    assert done.returncode == 0, done.stdout + done.stderr
    run = load_run(tmp_path / "run.json")
    assert list(run) == ["test_tiny.py::test_sum"] and len(run["test_tiny.py::test_sum"].times) == 5
    saved = next((tmp_path / "saved").rglob("*_plain.json"))
    with pytest.raises(ValueError, match="no per-round times"):
        load_run(saved)
