"""The gate's table, as plain text for the terminal and as Markdown for a CI job summary."""
from __future__ import annotations

from benchmarks.gate.verdict import Outcome, Row

HEADERS = ("benchmark", "base median", "head median", "ratio", "interval", "verdict")


def text_report(outcome: Outcome) -> str:
    cells = [HEADERS, *(_cells(row, _names(outcome)) for row in outcome.rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(width) if column in (0, 5) else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(line, widths))).rstrip()
             for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*lines, "", *_footer(outcome)]) + "\n"


def markdown_report(outcome: Outcome, title: str = "Performance gate", context: str = "") -> str:
    names = _names(outcome)
    lines = [f"### {title}", "", *([context, ""] if context else []), f"**{outcome.summary}**", "",
             "| " + " | ".join(HEADERS) + " |",
             "|" + "|".join([":---", "---:", "---:", "---:", ":---:", ":---"]) + "|"]
    for row in outcome.rows:
        benchmark, *numbers, verdict = _cells(row, names)
        verdict = f"**{verdict}**" if verdict.isupper() or verdict.endswith("MOVED") else verdict
        lines.append(f"| `{benchmark}` | " + " | ".join([*numbers, verdict]) + " |")
    return "\n".join([*lines, "", *(f"- {line}" for line in _footer(outcome)[1:])]) + "\n"


_METHODS = {
    "paired": "ratio of medians within each base/head pair, averaged (geometric mean) over "
              "pairs; bootstrap over pairs, widened to Student's t",
    "blocks": "ratio of medians of all rounds; bootstrap over invocations, then rounds",
    "rounds": "ratio of medians of all rounds; bootstrap over rounds",
}


def _footer(outcome: Outcome) -> list[str]:
    methods = sorted({row.interval.method for row in outcome.rows if row.interval})
    return [outcome.summary, *outcome.notes,
            *(f"{method}: {_METHODS[method]}" for method in methods),
            f"interval: {outcome.confidence:.0%} confidence; REGRESSION only when all of it "
            f"is above {1 + outcome.threshold:.2f}"]


def _cells(row: Row, names: dict[str, str]) -> tuple[str, ...]:
    interval = row.interval
    return (names[row.fullname], format_time(row.base_median), format_time(row.head_median),
            f"{interval.ratio:.3f}" if interval else "-",
            f"[{interval.low:.3f}, {interval.high:.3f}]" if interval else "-",
            row.verdict)


def _names(outcome: Outcome) -> dict[str, str]:
    """Test ids without the file path, unless two files hold the same test id."""
    short = {row.fullname: row.fullname.rsplit("::", 1)[-1] for row in outcome.rows}
    clashes = {name for name in short.values() if list(short.values()).count(name) > 1}
    return {full: full if name in clashes else name for full, name in short.items()}


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds / 1e-9:.1f} ns"
