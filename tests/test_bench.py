"""Every benchmark under bench/ still runs (tiny sizes) and still prints the figures `make bench` tabulates."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.report import BEGIN, BENCHES, END, lookup, once_per_script, parse, run_one, table, write

ROOT = Path(__file__).resolve().parent.parent
HELPERS = {"__init__.py", "common.py", "bare.py", "verify_only.py", "report.py"}


def test_every_benchmark_script_is_run_by_make_bench() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - HELPERS
    assert scripts == {b.script for b in BENCHES}, "a benchmark bench/report.py does not run (or a stale entry)"


TINY = once_per_script(BENCHES)


@pytest.fixture(scope="module")
def tiny_runs() -> list:
    # Each benchmark starts its own Temporal, OpenBao and sandbox; run them side by side (mostly start-up waits).
    with ThreadPoolExecutor(max_workers=len(TINY)) as pool:
        return list(pool.map(lambda b: run_one(b, tiny=True, timeout=240), TINY))


@pytest.mark.bench
@pytest.mark.parametrize("name", [b.name for b in TINY])
def test_benchmark_runs_at_tiny_size_and_reports_every_figure(tiny_runs: list, name: str) -> None:
    run = next(r for r in tiny_runs if r.bench.name == name)
    assert run.returncode == 0, f"{run.bench.script} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    missing = [t.measure for t in run.bench.targets if lookup(run.figures, t.keys) is None]
    assert not missing, f"{run.bench.script} no longer prints {missing} (bench/report.py's docstring: the format)"


def test_the_report_reads_json_and_ratio_lines_and_keeps_the_hand_written_text(tmp_path: Path) -> None:
    out = ("ratio to Slack's limit (1 msg/s per channel: 4 s for 5 per channel): 0.840 (at most 0.909)\n"
           "429 answers with our limiter: 0; the same burst without it: 87 of 100\n"
           "ratio pipeline/plain: 1.59x\n"
           '{"results": [{"database": "sqlite", "ratio_bare_to_project": 0.91}]}\n')
    figures = parse(out)
    assert lookup(figures, ("slack's limit",)) == 0.84
    assert lookup(figures, ("429",)) == 0  # with the limiter, not the naive burst's 87
    assert lookup(figures, ("pipeline/plain",)) == 1.59
    assert lookup(figures, ("results.sqlite.ratio_bare_to_project",)) == 0.91
    assert lookup(figures, ("absent",)) is None
    tagged = parse('RESULT {"median": {"80": {"ratio_to_limit": 0.95, "rejected_130429": 0}}}\n')
    assert lookup(tagged, ("median.80.ratio_to_limit",)) == 0.95
    assert lookup(tagged, ("median.80.rejected_130429",)) == 0

    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\nkept\n")
    write(doc, "new table")
    text = doc.read_text()
    assert "new table" in text and "old table" not in text and "intro" in text and "## Analysis\nkept" in text
    assert "| measure | measured | target | met |" in table([], tiny=True)
