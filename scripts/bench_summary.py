"""Summarize the runs of scripts/bench_quick.sh as the BENCHMARKS.md table.

    python scripts/bench_summary.py /tmp/tidings-quick

Each ``<name>.<run>.json`` is one ``tidings bench --json`` run; a line per
name shows the median run (by messages per second) and all the runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LABELS = {
    "post1": "post 1 per request",
    "post1_32": "post 1 per request, 32 connections",
    "post10": "post 10 per request",
    "claim": "claim 10 + delete each",
    "claimbulk": "claim 10 + one bulk delete",
    "observer": "observer, pages of 10",
    "post1_half": "post 1, about half load",
    "claim_half": "claim 10 + delete, about half load",
}


def load_runs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.json")):
        name = path.name.split(".")[0]
        try:
            runs.setdefault(name, []).append(json.loads(path.read_text()))
        except ValueError:
            print(f"skipping {path}: not a bench result", file=sys.stderr)
    return runs


def work_role(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The measured role of a run: the one that is not the ping."""
    return next((role, summary) for role, summary in doc["roles"].items() if role != "ping")


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    header = ("| operation | connections | msg/s | requests/s | ping ceiling | fraction of ping "
              "| p50 ms | p99 ms | errors | runs (msg/s) |")
    lines = [header, "| --- " * 10 + "|"]
    for name in sorted(runs, key=lambda n: list(LABELS).index(n) if n in LABELS else 99):
        docs = sorted(runs[name], key=lambda d: work_role(d)[1]["messages_per_s"])
        median = docs[len(docs) // 2]
        _, work = work_role(median)
        ping = median["roles"].get("ping", {}).get("requests_per_s")
        fraction = work.get("fraction_of_ping")
        every = " / ".join(f"{work_role(d)[1]['messages_per_s']:,.0f}" for d in docs)
        ping_cell = f"{ping:,.0f}" if ping else "-"
        fraction_cell = f"{fraction:.1%}" if fraction is not None else "-"
        lines.append(
            f"| {LABELS.get(name, name)} | {median['config']['workers']} "
            f"| {work['messages_per_s']:,.0f} | {work['requests_per_s']:,.0f} "
            f"| {ping_cell} | {fraction_cell} | {work['latency_ms']['p50']:.1f} "
            f"| {work['latency_ms']['p99']:.1f} | {work['errors']} | {every} |")
    return "\n".join(lines)


def main() -> int:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tidings-quick")
    runs = load_runs(directory)
    if not runs:
        print(f"no bench results in {directory}", file=sys.stderr)
        return 1
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
