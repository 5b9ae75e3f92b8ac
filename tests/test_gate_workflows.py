"""The CI workflows, .ci/run and the README's gate commands: linted, pinned, and still valid."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.gate.__main__ import parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
TESTS, GATE = WORKFLOWS / "tests.yml", WORKFLOWS / "gate.yml"


@pytest.mark.skipif(shutil.which("actionlint") is None,
                    reason="the actionlint executable is not installed "
                           "(pip install -r requirements-dev.txt installs it)")
def test_workflows_pass_actionlint():
    done = subprocess.run(["actionlint", *map(str, sorted(WORKFLOWS.glob("*.yml")))],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_action_is_pinned_to_a_commit():
    for workflow in (TESTS, GATE):
        uses = re.findall(r"uses:\s*(\S+)", workflow.read_text())
        assert uses, workflow
        for action in uses:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), \
                f"{workflow.name}: {action}"


def test_both_workflows_cache_pip():
    for workflow in (TESTS, GATE):
        assert re.search(r"cache:\s*pip", workflow.read_text()), workflow.name


def test_the_tests_workflow_runs_the_readme_test_command_on_push_and_pull_request():
    text = TESTS.read_text()
    assert re.search(r"^on:\n(  \w+:\n)*  push:", text, re.M)
    assert re.search(r"^  pull_request:", text, re.M)
    assert "pip install -r requirements-dev.txt" in text
    assert re.search(r"run: python -m pytest -n auto\s*$", text, re.M)


def test_the_gate_workflow_compares_the_right_revisions_and_publishes_the_report():
    text = GATE.read_text()
    assert re.search(r"^  pull_request:", text, re.M)
    assert re.search(r"^  push:\n    branches: \[main\]", text, re.M)
    assert "fetch-depth: 0" in text
    assert 'git merge-base "$PR_BASE" "$PR_HEAD"' in text
    assert "HEAD~1" in text
    assert "python -m benchmarks.gate run" in text and "--profile gate" in text
    assert '>> "$GITHUB_STEP_SUMMARY"' in text and "reports/gate/report.md" in text
    assert "actions/upload-artifact@" in text and "path: reports/gate/" in text


def test_ci_runs_the_gate_end_to_end_on_head_against_itself():
    text = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"python -m benchmarks\.gate run --base HEAD --head HEAD --profile smoke",
                     text)


def test_readme_gate_commands_are_valid():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Saving, comparing and gating runs", 1)[1].split("\n## ", 1)[0]
    for command in ("--benchmark-save-data", "pytest-benchmark compare", "--group-by=group"):
        assert command in section
    commands = [line.split("#", 1)[0] for line in section.splitlines()
                if line.startswith("python -m benchmarks.gate ")]
    assert any("run --base main" in command for command in commands)
    for command in commands:
        parser().parse_args(shlex.split(command)[3:])  # exits 2 on an invalid option
