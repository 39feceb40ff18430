"""Turning a BenchResult into the aligned table or the JSON document."""

from __future__ import annotations

import json
from typing import Any

from tidings.bench.runner import BenchResult

# (heading, key in the flattened role summary, format)
_COLUMNS = [
    ("role", "role", "{}"),
    ("req/s", "requests_per_s", "{:.1f}"),
    ("msg/s", "messages_per_s", "{:.1f}"),
    ("mean ms", "mean", "{:.2f}"),
    ("p50 ms", "p50", "{:.2f}"),
    ("p99 ms", "p99", "{:.2f}"),
    ("max ms", "max", "{:.2f}"),
    ("errors", "errors", "{}"),
    ("of ping", "fraction_of_ping", "{:.1%}"),
    ("bench cpu", "bench_cpu_pct", "{:.0f}%"),
]


def to_document(result: BenchResult) -> dict[str, Any]:
    ping_rps = result.ping_rps
    return {
        "config": {**result.options.describe(), "prefilled_messages": result.prefilled},
        "roles": {role: stats.summary(ping_rps) for role, stats in result.roles.items()},
        "bench_cpu": result.bench_cpu(),
    }


def to_json(result: BenchResult) -> str:
    return json.dumps(to_document(result), indent=2)


def _cells(role: str, summary: dict[str, Any]) -> list[str]:
    flat = {"role": role, **summary, **summary["latency_ms"]}
    cells = []
    for _, key, fmt in _COLUMNS:
        value = flat.get(key)
        no_messages = key == "messages_per_s" and role == "ping"
        cells.append("-" if value is None or no_messages else fmt.format(value))
    return cells


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    # Names read best left-aligned, numbers right-aligned.
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def to_table(result: BenchResult) -> str:
    doc = to_document(result)
    o = result.options
    lines = [
        f"tidings bench  {o.target.url}  processes={o.processes} workers={o.workers} "
        f"queues={o.queues} time={o.time:g}s warmup={o.warmup:g}s "
        f"prefilled={result.prefilled}",
        "",
    ]
    rows = [[heading for heading, _, _ in _COLUMNS]]
    rows += [_cells(role, summary) for role, summary in doc["roles"].items()]
    lines += _align(rows)
    lines += _error_lines(doc["roles"])
    cpu = doc["bench_cpu"]
    lines += [
        "",
        f"bench cpu: {cpu['cpu_seconds']:.1f} s in {cpu['wall_seconds']:.1f} s wall = "
        f"{cpu['pct_of_one_core']:.0f}% of one core, {cpu['pct_of_all_cores']:.0f}% of "
        f"{cpu['cores']} cores (per-phase figures above are % of one core; near "
        f"{100 * o.processes}% means the bench, not the server, was the limit)",
    ]
    return "\n".join(lines)


def _error_lines(roles: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for role, summary in roles.items():
        if summary["errors"]:
            parts = ", ".join(f"{k} x{v}" for k, v in summary["errors_by_status"].items())
            lines.append(f"  {role} errors: {parts}")
    return ["", *lines] if lines else []
