"""`make bench`: run every benchmark under bench/ and write the results table into docs/performance.md.

Each benchmark is a script run in its own process (it starts its own Temporal, OpenBao and sandbox). Its output
is read tolerantly, so a benchmark may change what it prints:

- the last line of stdout that parses as a JSON object (optionally after ``RESULT ``) is its result (nested
  objects and lists of objects are flattened to dotted keys, a list element keyed by its `database`/`name` field
  or its index);
- every line starting with ``ratio`` is read as ``<label>: <number>`` (the last ``: number`` on the line; a
  trailing ``x`` is allowed), so ``ratio pipeline/plain: 1.59x`` gives ``ratio pipeline/plain`` = 1.59;
- other lines mentioning ``rejections`` or ``429`` give a count: the first ``: <number>`` on the line.

A target names a JSON key or, failing that, a fragment of a ratio label; a figure not found shows as "n/a".
docs/performance.md is rewritten only between its `<!-- bench:begin -->` and `<!-- bench:end -->` markers
(the analysis around them is written by hand).

Usage: python bench/report.py [--tiny] [--only NAME[,NAME]] [--out docs/performance.md | --no-write] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Target:
    """One row of the table: a figure found in a run's results, compared with the issue's target."""

    measure: str
    keys: tuple[str, ...]  # JSON keys (flattened) tried first, then ratio-label fragments
    ok: Callable[[float], bool]
    target: str


@dataclass
class Bench:
    name: str
    script: str
    args: list[str]
    tiny: list[str]
    targets: list[Target] = field(default_factory=list)


def _ge(x: float) -> Callable[[float], bool]:
    return lambda v: v >= x


def _le(x: float) -> Callable[[float], bool]:
    return lambda v: v <= x


def _lt(x: float) -> Callable[[float], bool]:
    return lambda v: v < x


ZERO = Target("", (), lambda v: v == 0, "0")

BENCHES = [
    Bench("per_event", "per_event.py", ["--workflows", "300", "--rounds", "3"],
          ["--workflows", "2", "--rounds", "1"], [
              Target("300 concurrent SendWhatsAppMessage vs bare workflow+activity, SQLite (bare/project time)",
                     ("results.sqlite.ratio_bare_to_project", "ratio bare/project [sqlite]"), _ge(0.90), "≥ 0.90"),
              Target("the same, PostgreSQL", ("results.postgresql.ratio_bare_to_project",
                                              "ratio bare/project [postgresql]"), _ge(0.90), "≥ 0.90"),
              Target("… as CPU (worker + Temporal server per workflow), SQLite",
                     ("results.sqlite.cpu_ratio_bare_to_project",), _ge(0.90), "≥ 0.90"),
              Target("… as CPU, PostgreSQL", ("results.postgresql.cpu_ratio_bare_to_project",), _ge(0.90),
                     "≥ 0.90")]),
    Bench("webhook_ingest", "webhook_ingest.py", ["--events", "3000", "--customers", "300", "--concurrency", "32",
                                                  "--rounds", "3"],
          ["--events", "6", "--customers", "3", "--concurrency", "2", "--rounds", "1"], [
              Target("signed WhatsApp inbound webhooks, 3,000 over 300 customers, 32 concurrent: events/s",
                     ("gateway_events_per_s",), _ge(400), "≥ 400"),
              Target("… ack p99 (ms)", ("gateway_p99_ms",), _lt(100), "< 100"),
              Target("… lost", ("lost",), ZERO.ok, "0")]),
    Bench("pipeline_overhead", "pipeline_overhead.py", ["1000"], ["5"], [
        Target("pipeline_overhead 1000: pipeline time / plain httpx", ("ratio_pipeline_to_plain", "pipeline/plain"),
               _le(1.2), "≤ 1.2")]),
    Bench("whatsapp_bulk_80", "whatsapp_bulk.py", ["--messages", "2000", "--mps", "80", "--rounds", "2"],
          ["--messages", "4", "--mps", "80", "--batch-size", "2", "--rounds", "1"], [
              Target("BulkSendWhatsAppTemplate 2,000 at 80 msg/s: ratio to the limit (end to end)",
                     ("median.80.ratio_to_limit", "ratio_to_limit", "per-number limit"), _ge(0.95), "≥ 0.95"),
              Target("… provider side (the sandbox's arrivals, first to last)",
                     ("median.80.provider_side_ratio",), _ge(0.95), "≥ 0.95"),
              Target("… 130429 rejections", ("median.80.rejected_130429", "throughput_errors", "rejections"),
                     ZERO.ok, "0")]),
    Bench("whatsapp_bulk_500", "whatsapp_bulk.py", ["--messages", "5000", "--mps", "500", "--rounds", "1"],
          ["--messages", "4", "--mps", "500", "--batch-size", "2", "--rounds", "1"], [
              Target("BulkSendWhatsAppTemplate 5,000 at 500 msg/s: ratio to the limit",
                     ("median.500.ratio_to_limit", "ratio_to_limit", "per-number limit"), _ge(0.95), "≥ 0.95"),
              Target("… ratio to a plain sequential httpx loop",
                     ("median.500.ratio_to_plain_loop", "ratio_to_plain_loop", "plain httpx loop"), _ge(1.0), "≥ 1.0"),
              Target("… 130429 rejections", ("median.500.rejected_130429", "throughput_errors", "rejections"),
                     ZERO.ok, "0")]),
    Bench("slack_fanout", "slack_fanout.py", ["--channels", "20", "--per-channel", "5", "--rounds", "3"],
          ["--channels", "2", "--per-channel", "2", "--rounds", "1"], [
              Target("Slack fan-out, 100 posts to 20 channels: ratio to 1 msg/s per channel (end to end)",
                     ("median.ratio_to_limit", "ratio_to_slack_limit", "slack's limit"), _ge(0.95), "≥ 0.95"),
              Target("… provider side", ("median.provider_side_ratio",), _ge(0.95), "≥ 0.95"),
              Target("… 429 answers with the limiter", ("median.rejected_429", "429_with_limiter", "429"), ZERO.ok,
                     "0")]),
]


def once_per_script(benches: list[Bench]) -> list[Bench]:
    """At tiny sizes a script is run once (its other entries differ only in their arguments)."""
    out: dict[str, Bench] = {}
    for b in benches:
        out.setdefault(b.script, b)
    return list(out.values())


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as dotted keys; a list of objects keyed by each one's `database`/`name`, else its index."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out |= flatten(v, f"{prefix}{k}.")
    elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            out |= flatten(v, f"{prefix}{v.get('database') or v.get('name') or i}.")
    else:
        out[prefix.rstrip(".")] = value
    return out


NUMBER = re.compile(r":\s*(-?\d+(?:\.\d+)?)x?\b")


def parse(stdout: str) -> dict[str, Any]:
    """A run's figures: its last JSON line (flattened), ratio lines and rejection counts (see the docstring)."""
    figures: dict[str, Any] = {}
    for line in reversed(stdout.splitlines()):
        line = line.strip().removeprefix("RESULT ").strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                figures |= flatten(doc)
                break
    for line in stdout.splitlines():
        line = line.strip()
        found = list(NUMBER.finditer(line))
        if not found:
            continue
        if line.lower().startswith("ratio"):
            figures.setdefault("ratio:" + line[:found[-1].start()].strip().lower(), float(found[-1].group(1)))
        elif "rejections" in line.lower() or "429" in line:
            figures.setdefault("count:" + line[:found[0].start()].strip().lower(), float(found[0].group(1)))
    return figures


def lookup(figures: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = figures.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    for key in keys:
        for label, value in figures.items():
            if label.startswith(("ratio:", "count:")) and key.lower() in label:
                return float(value)
    return None


@dataclass
class Run:
    bench: Bench
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    figures: dict[str, Any]


def run_one(bench: Bench, tiny: bool, timeout: float) -> Run:
    args = [sys.executable, str(ROOT / "bench" / bench.script), *(bench.tiny if tiny else bench.args)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err, rc = f"timed out after {timeout:.0f} s", -1
    return Run(bench, time.monotonic() - t0, rc, out, err, parse(out))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v == int(v) and abs(v) >= 10 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def table(runs: list[Run], tiny: bool) -> str:
    m = machine()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` (`python bench/report.py`"
        f"{' --tiny' if tiny else ''}) on: {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, "
        f"Python {m['python']}, {m['temporal_cli'].splitlines()[0] if m['temporal_cli'] else 'temporal ?'}, "
        f"{m['os']}; load average at the end {load} (1/5/15 min). The machine is shared: compare the ratios, not "
        "the absolute figures.",
        "",
        "| measure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for run in runs:
        if run.returncode != 0:
            lines.append(f"| `{run.bench.script} {' '.join(run.bench.args)}` | **failed** (exit {run.returncode}) "
                         f"| | ✗ |")
            continue
        for t in run.bench.targets:
            v = lookup(run.figures, t.keys)
            shown = "n/a" if v is None else _fmt(v)
            met = "?" if v is None else "✓" if t.ok(v) else "✗"
            lines.append(f"| {t.measure} | {shown} | {t.target} | {met} |")
    lines += ["", "Commands and their own summaries:", ""]
    for run in runs:
        summary = [ln for ln in run.stdout.splitlines() if ln.strip() and not ln.lstrip().startswith("{")]
        lines.append(f"- `python bench/{run.bench.script} {' '.join(run.bench.tiny if tiny else run.bench.args)}` "
                     f"({run.seconds:.0f} s)")
        lines += [f"  > {ln.strip()}" for ln in summary[-8:]]
    return "\n".join(lines)


def write(out: Path, body: str) -> None:
    text = out.read_text() if out.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    out.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tiny", action="store_true", help="smallest sizes: checks that every benchmark runs")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="benchmarks run at once (1 for real figures)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    chosen = [b for b in BENCHES if not only or b.name in only]
    if args.tiny:
        chosen = once_per_script(chosen)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(lambda b: run_one(b, args.tiny, args.timeout), chosen))
    for run in runs:
        print(f"== {run.bench.name}: exit {run.returncode} in {run.seconds:.0f} s")
        print(run.stdout.rstrip())
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
    body = table(runs, args.tiny)
    if not args.no_write:
        write(args.out, body)
        print(f"wrote {args.out}")
    print(json.dumps({"runs": {r.bench.name: {"returncode": r.returncode, "figures": r.figures} for r in runs}},
                     separators=(",", ":")))
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
