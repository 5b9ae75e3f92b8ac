"""The report: figures and report.md from a real run of the suite; bad input refused clearly."""
from __future__ import annotations

import copy
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.gate.run import pytest_child_env
from benchmarks.report.__main__ import main
from benchmarks.report.runs import split_side
from benchmarks.report.styles import KNOWN_STYLES, style_for

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


@pytest.fixture(scope="module")
def suite_json(tmp_path_factory) -> Path:
    """pytest-benchmark JSON of a tiny real run of the suite: hdf5 and raw, N = 10 and 20,
    32 and 64 px (the machine's control benchmark, the access patterns, which read for
    about a second each, and store_single, whose 200 synced rounds per store took most of
    the run, left out: they add time and nothing the report tests need)."""
    path = tmp_path_factory.mktemp("suite") / "run.json"
    env = {name: value for name, value in pytest_child_env().items() if name != "CIFAR10_DIR"}
    command = [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "-q",
               "-p", "no:cacheprovider", "--storage-backends", "hdf5,raw",
               "--storage-n", "10,20", "--storage-size", "32,64", "--storage-max-bytes", "1000000",
               "-k", "not test_control and not test_seq and not test_rand and not test_store_single",
               "--benchmark-max-time=0.02", "--benchmark-min-rounds=3",  # few rounds: a second
               f"--benchmark-json={path}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    # A failing benchmark is the suite's business; the report needs only the JSON it wrote.
    assert path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def suite_data(suite_json) -> dict:
    return json.loads(suite_json.read_text())


@pytest.fixture(scope="module")
def report_dir(suite_json, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main([str(suite_json), "--out", str(out)]) == 0
    return out


def reported_operation(info: dict) -> str:
    """Images of another side than 32 px get tables and figures of their own."""
    return info["operation"] if info["side"] == 32 else f"{info['operation']}_{info['side']}px"


def test_report_md_holds_every_result_with_its_median(suite_data, report_dir):
    tables = _tables((report_dir / "report.md").read_text())
    assert {bench["extra_info"]["side"] for bench in suite_data["benchmarks"]} == {32, 64}
    for bench in suite_data["benchmarks"]:
        info = bench["extra_info"]
        cell = tables[(reported_operation(info), info["N"])]["median"][info["backend"]]
        assert _seconds(cell) == pytest.approx(bench["stats"]["median"], rel=0.005), bench["name"]


def test_every_figure_exists_is_a_png_of_sensible_size_and_is_linked(suite_data, report_dir):
    operations = {reported_operation(bench["extra_info"]) for bench in suite_data["benchmarks"]}
    expected = ({f"time_{operation}.png" for operation in operations}
                | {"throughput.png", "disk.png", "relative_to_raw.png", "image_size.png"})
    assert {path.name for path in report_dir.glob("*.png")} == expected
    for name in expected:
        _check_png(report_dir / name)
    assert set(_links(report_dir / "report.md")) == expected


def test_sides_are_told_apart():
    assert split_side("read_many_256px") == ("read_many", 256)
    assert split_side("read_many") == ("read_many", 32)
    assert split_side("open_read_single") == ("open_read_single", 32)


def test_report_md_says_which_data_and_machine_the_run_came_from(suite_data, report_dir):
    text = (report_dir / "report.md").read_text()
    machine = suite_data["machine_info"]
    assert "synthetic-cifar" in text and "32×32×3" in text
    assert machine["node"] in text and machine["cpu"]["brand_raw"] in text
    assert machine["python_version"] in text
    assert suite_data["commit_info"]["id"][:10] in text


def test_two_runs_compared_and_each_shown_for_what_it_holds(suite_data, tmp_path):
    """Two operations (fewer figures to draw). The later run: hdf5 three times slower,
    read_single and one read_many missing, an operation and a backend the report has never
    heard of, and one entry without timings."""
    earlier = dict(suite_data, benchmarks=[
        b for b in suite_data["benchmarks"]
        if b["extra_info"]["operation"] in ("read_many", "read_single")])
    later = copy.deepcopy(earlier)
    benches = [b for b in later["benchmarks"] if b["extra_info"]["operation"] != "read_single"
               and b["name"] != "test_read_many[hdf5-32px-N=20]"]
    for bench in benches:
        if bench["extra_info"]["backend"] == "hdf5":
            _scale(bench, 3.0)
    newcomer = copy.deepcopy(next(b for b in benches
                                  if b["name"] == "test_read_many[hdf5-32px-N=10]"))
    newcomer["extra_info"].update(operation="read_single_cold", backend="zarr $\\oops$")
    broken = {"name": "test_broken[hdf5-N=10]", "extra_info": {}, "stats": None}
    later["benchmarks"] = benches + [newcomer, broken]
    base, slower, out = tmp_path / "base.json", tmp_path / "slower.json", tmp_path / "out"
    base.write_text(json.dumps(earlier))
    slower.write_text(json.dumps(later))

    assert main([str(base), str(slower), "--out", str(out)]) == 0
    _check_png(out / "ratio_slower_vs_base.png")
    text = (out / "report.md").read_text()
    ratios = re.findall(r"^\| ×([\d.]+) \| \S+ \| (\S+) \|", text, flags=re.MULTILINE)
    hdf5_count = sum(backend == "hdf5" for _, backend in ratios)
    assert 0 < hdf5_count < len(ratios)  # the regression sorts above the unchanged
    assert {(float(r), b) for r, b in ratios[:hdf5_count]} == {(3.0, "hdf5")}
    assert {float(r) for r, _ in ratios[hdf5_count:]} == {1.0}
    later_section = text.split("## Run `slower`")[1]
    assert re.search(r"Operations not in this run: [^\n]*read_single[,.]", later_section)
    assert re.search(r"Not measured: [^\n]*read_many hdf5 N=20[;.]", later_section)
    assert "test_broken[hdf5-N=10]" in later_section and "zarr" in later_section
    assert (out / "slower" / "time_read_single_cold.png").exists()
    assert (out / "base" / "relative_to_raw.png").exists()


def test_merge_reads_files_as_parts_of_one_run(suite_data, tmp_path):
    paths = []
    for backend in ("hdf5", "raw"):
        part = dict(suite_data, benchmarks=[
            b for b in suite_data["benchmarks"]
            if b["extra_info"]["backend"] == backend
            and b["extra_info"]["operation"] == "read_many"])
        paths.append(tmp_path / f"{backend}.json")
        paths[-1].write_text(json.dumps(part))

    assert main([*map(str, paths), "--merge", "--out", str(tmp_path / "out")]) == 0
    table = _tables((tmp_path / "out" / "report.md").read_text())[("read_many", 10)]
    assert set(table["median"]) == {"hdf5", "raw"}
    assert not list((tmp_path / "out").glob("ratio_*.png"))


def test_one_backend_at_one_size_still_gets_its_figures(suite_data, tmp_path):
    lone = [b for b in suite_data["benchmarks"] if b["name"] == "test_read_many[hdf5-32px-N=10]"]
    path = tmp_path / "lone.json"
    path.write_text(json.dumps(dict(suite_data, benchmarks=lone)))

    assert main([str(path), "--out", str(tmp_path / "out")]) == 0
    for name in ("time_read_many.png", "throughput.png", "disk.png"):
        _check_png(tmp_path / "out" / name)
    assert not (tmp_path / "out" / "relative_to_raw.png").exists()  # no raw in the run


def test_name_and_params_stand_in_for_missing_extra_info(suite_data, tmp_path):
    bench = next(b for b in suite_data["benchmarks"]
                 if b["name"] == "test_read_many[hdf5-32px-N=20]")
    bare = dict(copy.deepcopy(bench), extra_info={}, params=None)
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(dict(suite_data, benchmarks=[bare])))

    assert main([str(path), "--out", str(tmp_path / "out")]) == 0
    cell = _tables((tmp_path / "out" / "report.md").read_text())[("read_many", 20)]["median"]
    assert _seconds(cell["hdf5"]) == pytest.approx(bench["stats"]["median"], rel=0.005)


@pytest.mark.parametrize("content, message", [
    ("plain text, not JSON", "is not JSON"),
    ("[1, 2, 3]", "not pytest-benchmark JSON"),
    ('{"machine_info": {}}', "not pytest-benchmark JSON"),
    ('{"benchmarks": []}', "empty run"),
    ('{"benchmarks": [{"name": "test_sort", "stats": {"median": 0.1}}]}',
     "none of its 1 benchmarks can be used"),
    ('{"benchmarks": [{"name": "test_read_many[png-N=10]", "stats": {}}]}',
     "no timing stats"),
], ids=["text", "list", "other-json", "empty-run", "other-tool", "no-stats"])
def test_bad_input_is_refused_with_a_message(tmp_path, capsys, content, message):
    path = tmp_path / "run.json"
    path.write_text(content)

    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out" / "report.md").exists()


def test_missing_file_and_bad_out_folder_are_refused(tmp_path, capsys, suite_json):
    assert main([str(tmp_path / "absent.json"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([str(suite_json), "--out", str(suite_json)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_command_line_exits_2_with_one_line_for_bad_input(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "benchmarks.report", str(path),
                           "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "not pytest-benchmark JSON" in done.stderr and "Traceback" not in done.stderr


def test_each_backend_keeps_one_style_and_unknown_names_get_a_stable_one():
    known = list(KNOWN_STYLES.values())
    assert len({(style.color, style.marker) for style in known}) == len(known)
    assert len({style.color for style in known}) == len(known)
    assert style_for("zarr") == style_for("zarr")
    assert style_for("zarr").color not in {style.color for style in known}
    # The fallback hashes with crc32, not hash(): the same in every interpreter.
    code = "from benchmarks.report.styles import style_for; print(style_for('zarr'))"
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                              text=True, env=dict(os.environ, PYTHONHASHSEED=seed)).stdout
               for seed in ("1", "2")}
    assert outputs == {str(style_for("zarr")) + "\n"}


def _tables(markdown: str) -> dict[tuple[str, int], dict[str, dict[str, str]]]:
    """{(operation, N): {row: {backend: cell}}} from report.md's '#### operation, N=n' tables."""
    tables, current, header = {}, None, None
    for line in markdown.splitlines():
        heading = re.fullmatch(r"#### (\S+), N=([\d,]+)", line)
        if heading:
            current, header = (heading[1], int(heading[2].replace(",", ""))), None
            tables[current] = {}
        elif current and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = cells[1:]
            elif set(cells[0]) - set(":-"):
                tables[current][cells[0]] = dict(zip(header, cells[1:]))
        elif header:
            current = None
    return tables


def _seconds(cell: str) -> float:
    value, unit = re.fullmatch(r"([\d.,]+) (s|ms|µs|ns)", cell).groups()
    return float(value.replace(",", "")) * _TIME_UNITS[unit]


def _links(report: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    assert 500 <= width <= 2000 and 250 <= height <= 4000, (path, width, height)
    assert 5_000 < len(data) < 300_000, (path, len(data))
    with Image.open(path) as image:
        image.verify()


def _scale(bench: dict, factor: float) -> None:
    for key in ("median", "q1", "q3", "min", "max", "mean"):
        bench["stats"][key] *= factor
