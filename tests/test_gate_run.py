"""`python -m benchmarks.gate run`: alternation, worktrees, interpreters, profiles, reports.

The measurement itself is replaced by synthetic rounds: what is tested here is the
machinery around it (.ci/run runs the real thing on the smoke profile).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gate import run as gate_run
from benchmarks.gate.__main__ import main
from benchmarks.gate.errors import RunError
from benchmarks.gate.interpreters import needs_own_environment, python_for
from benchmarks.gate.profiles import PROFILES
from benchmarks.gate.worktrees import checked_out, file_at, resolve


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@example.invalid", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with two commits: 'first' holds version 1, HEAD version 2."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "benchmarks").mkdir()
    (path / "benchmarks" / "__init__.py").write_text("")
    (path / "requirements.txt").write_text("numpy==1.0\n")
    for version in ("1", "2"):
        (path / "version.txt").write_text(version)
        git(path, "add", ".")
        git(path, "commit", "-qm", f"version {version}")
        if version == "1":
            git(path, "tag", "first")
    return path


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


def test_pairs_alternate_which_side_goes_first():
    calls = []
    gate_run.alternate(lambda side, pair: calls.append((pair, side)) or {}, pairs=4,
                       budget_s=1e9, log=lambda line: None)
    assert calls == [(0, "base"), (0, "head"), (1, "head"), (1, "base"),
                     (2, "base"), (2, "head"), (3, "head"), (3, "base")]


def test_the_budget_stops_adding_pairs_but_never_before_three():
    now = [0.0]

    def measure(side, pair):
        now[0] += 60  # every invocation takes a minute: two minutes a pair
        return {}

    results = gate_run.alternate(measure, pairs=10, budget_s=7 * 60, clock=lambda: now[0],
                                 log=lambda line: None)
    assert [pair for pair, _ in results["base"]] == [0, 1, 2]  # a 4th would end at 8 minutes
    results = gate_run.alternate(measure, pairs=10, budget_s=60, clock=lambda: now[0],
                                 log=lambda line: None)
    assert len(results["head"]) == gate_run.MIN_PAIRS


def test_worktrees_hold_each_revision_and_are_removed_even_on_error(repo, tmp_path):
    revisions = {"base": resolve(repo, "first"), "head": resolve(repo, "HEAD")}
    with pytest.raises(KeyError):
        with checked_out(repo, revisions, tmp_path / "trees") as trees:
            assert (trees["base"] / "version.txt").read_text() == "1"
            assert (trees["head"] / "version.txt").read_text() == "2"
            assert worktree_count(repo) == 3
            raise KeyError("a failure while measuring")
    assert worktree_count(repo) == 1
    assert not (tmp_path / "trees" / "base").exists()


def test_head_against_itself_needs_only_one_commit(repo, tmp_path):
    head = resolve(repo, "HEAD")
    with checked_out(repo, {"base": head, "head": head}, tmp_path / "trees") as trees:
        assert all((tree / "version.txt").read_text() == "2" for tree in trees.values())
    assert worktree_count(repo) == 1


def test_an_unknown_revision_is_named(repo):
    with pytest.raises(RunError, match="unknown revision 'no-such-branch'"):
        resolve(repo, "no-such-branch")
    assert file_at(repo, "first", "version.txt") == "1"
    assert file_at(repo, "first", "missing.txt") is None


def test_requirements_decide_the_interpreter(tmp_path):
    assert not needs_own_environment("numpy==1.0\n# a comment\n\n", "numpy==1.0  # pinned")
    assert needs_own_environment("numpy==2.0\n", "numpy==1.0\n")
    (tmp_path / "requirements.txt").write_text("numpy==1.0\n")
    assert python_for("base", tmp_path, "numpy==1.0\n", tmp_path, False, {}) == sys.executable
    with pytest.raises(RunError, match="base's requirements.txt differs"):
        python_for("base", tmp_path, "numpy==2.0\n", tmp_path, False, {})
    made = {("numpy==1.0",): "/venvs/shared/bin/python"}  # built already for the other side
    assert python_for("head", tmp_path, "numpy==2.0\n", tmp_path, False, made) \
        == "/venvs/shared/bin/python"


def test_profiles_select_their_benchmarks_and_the_control():
    args = PROFILES["gate"].pytest_args()
    selection = args[args.index("-k") + 1]
    for test in ("test_store_many", "test_read_many", "test_read_single", "test_control"):
        assert test in selection.split(" or ")
    assert args[args.index("--storage-n") + 1] == "1000,10000"
    assert "--storage-backends" not in args  # every backend each revision registers
    smoke = PROFILES["smoke"].pytest_args(("hdf5",))
    assert smoke[smoke.index("--storage-backends") + 1] == "hdf5"


def synthetic_invocation(slowdown: float):
    """A stand-in for measure_once: rounds as a revision at ``slowdown`` would give them."""
    def measure(side, args, raw_dir, pair, scratch):
        assert (side.worktree / "benchmarks" / "test_control.py").exists()
        assert raw_dir.is_absolute()  # pytest runs in the worktree, not where the gate does
        rng = np.random.default_rng(pair * 2 + (side.name == "head"))
        factor = slowdown if side.name == "head" else 1.0
        benchmarks = [
            {"fullname": "benchmarks/test_read.py::test_read_many[lmdb-N=1000]",
             "group": "read_many N=1000", "extra_info": {"operation": "read_many"},
             "stats": {"data": list(1e-3 * factor * rng.lognormal(0, 0.02, 10))}},
            {"fullname": "benchmarks/test_control.py::test_control[npy-N=10000]",
             "group": "control N=10000", "extra_info": {"operation": "control"},
             "stats": {"data": list(4e-3 * rng.lognormal(0, 0.02, 20))}}]
        return {"commit_info": {"id": side.revision}, "benchmarks": benchmarks}
    return measure


@pytest.mark.parametrize("slowdown, status", [(1.0, 0), (1.3, 1)])
def test_run_measures_compares_and_reports(repo, tmp_path, monkeypatch, capsys, slowdown,
                                           status):
    monkeypatch.chdir(repo)
    monkeypatch.setattr(gate_run, "measure_once", synthetic_invocation(slowdown))
    assert main(["run", "--base", "first", "--profile", "smoke", "--pairs", "4", "--all-pairs",
                 "--out", "reports/gate"]) == status
    out = repo / "reports" / "gate"
    assert worktree_count(repo) == 1
    base = json.loads((out / "base.json").read_text())
    assert base["gate"]["revision"] == resolve(repo, "first") and base["gate"]["pairs"] == 4
    assert len(base["benchmarks"][0]["stats"]["data"]) == 40
    verdict = "REGRESSION" if status else "same"
    assert verdict in capsys.readouterr().out
    assert verdict in (out / "report.txt").read_text()
    assert "4 alternating pairs" in (out / "report.md").read_text()


def test_a_side_that_cannot_be_measured_exits_2_and_cleans_up(repo, tmp_path, monkeypatch,
                                                               capsys):
    def failing(side, *args):
        raise RunError(f"pytest on {side.name} exited with 4")

    monkeypatch.chdir(repo)
    monkeypatch.setattr(gate_run, "measure_once", failing)
    assert main(["run", "--base", "first", "--out", str(tmp_path / "r")]) == 2
    assert "pytest on base exited with 4" in capsys.readouterr().err
    assert worktree_count(repo) == 1


def test_run_refuses_too_few_pairs_and_unknown_revisions(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    assert main(["run", "--base", "first", "--pairs", "2"]) == 2
    assert "--pairs must be at least 3" in capsys.readouterr().err
    assert main(["run", "--base", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown revision 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("slowdown, pairs", [(1.0, 3), (1.3, 6)])
def test_a_settled_pass_stops_early_but_a_regression_gets_every_pair(repo, monkeypatch,
                                                                     slowdown, pairs):
    monkeypatch.chdir(repo)
    monkeypatch.setattr(gate_run, "measure_once", synthetic_invocation(slowdown))
    main(["run", "--base", "first", "--profile", "smoke", "--pairs", "6",
          "--out", "reports/gate"])
    base = json.loads((repo / "reports" / "gate" / "base.json").read_text())
    assert base["gate"]["pairs"] == pairs


def test_stores_are_kept_for_both_sides_or_for_neither(tmp_path):
    """A revision whose suite cannot keep stores builds them in every pair; the other side
    must then build them too, or the comparison measures warm against fresh stores."""
    def revision(name: str, keeps_stores: bool) -> Path:
        settings = tmp_path / name / "benchmarks" / "settings.py"
        settings.parent.mkdir(parents=True)
        settings.write_text('"--storage-store-cache"' if keeps_stores else '"--storage-n"')
        return tmp_path / name

    both = gate_run.cached_args_per_side(
        {"base": revision("new-base", True), "head": revision("new-head", True)}, tmp_path)
    assert both == {"base": ["--storage-store-cache", str(tmp_path / "stores-base")],
                    "head": ["--storage-store-cache", str(tmp_path / "stores-head")]}
    mixed = gate_run.cached_args_per_side(
        {"base": revision("old-base", False), "head": revision("head", True)}, tmp_path)
    assert mixed == {"base": [], "head": []}
